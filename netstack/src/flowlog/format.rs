//! The flow log on disk: CSV and JSON Lines writers and strict readers (schema in
//! `docs/flowlog.md`). Writers append to a caller's `String` so a platform can batch rows.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{Event, FlowId, FlowSample, RowWriter, TcpState};

/// The CSV header line (without newline). Column order of every CSV row.
pub const CSV_HEADER: &str = "t_us,flow,stream,event,state,bytes_sent,bytes_acked,bytes_received,snd_una,snd_nxt,\
seg_seq,seg_len,inflight,cwnd_est,rtt_us,srtt_us,rttvar_us,peer_wnd,local_wnd,retx_fast_segs,retx_fast_bytes,\
retx_rto_segs,retx_rto_bytes,dupacks,zero_wnd_events";

const COLUMNS: usize = 25;

/// On-disk format of a flow log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// `csv` or `jsonl` (also `json`, `ndjson`).
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "csv" => Ok(Format::Csv),
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            other => Err(format!("unknown flow-log format '{other}' (use csv or jsonl)")),
        }
    }

    /// From a file name's extension: `.jsonl`/`.json`/`.ndjson` → JSON Lines, else CSV.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".json") || lower.ends_with(".ndjson") {
            Format::Jsonl
        } else {
            Format::Csv
        }
    }

    /// What a file starts with: the CSV header line, nothing for JSON Lines.
    pub fn write_header(self, out: &mut String) {
        if self == Format::Csv {
            write_csv_header(out);
        }
    }
}

/// Appends one sample in `format`, newline included. For many rows, keep a [`RowWriter`].
pub fn write_sample(format: Format, s: &FlowSample, out: &mut String) {
    let mut bytes = Vec::new();
    RowWriter::new(format).write(s, &mut bytes);
    // Rows are ASCII: numbers, names and the flow's addresses.
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// Appends [`CSV_HEADER`] and a newline.
pub fn write_csv_header(out: &mut String) {
    out.push_str(CSV_HEADER);
    out.push('\n');
}

/// Appends one CSV row and a newline.
pub fn write_csv(s: &FlowSample, out: &mut String) {
    write_sample(Format::Csv, s, out);
}

/// Appends one JSON Lines row and a newline.
pub fn write_jsonl(s: &FlowSample, out: &mut String) {
    write_sample(Format::Jsonl, s, out);
}

/// Builds a sample field by field from named raw values; shared by both readers so they
/// accept and reject exactly the same things.
struct Fields<'a> {
    line_no: usize,
    get: &'a dyn Fn(&str) -> Result<Option<String>, String>,
}

impl Fields<'_> {
    fn err(&self, field: &str, msg: impl core::fmt::Display) -> String {
        format!("line {}: field '{}': {}", self.line_no, field, msg)
    }

    fn raw(&self, field: &str) -> Result<Option<String>, String> {
        (self.get)(field).map_err(|m| self.err(field, m))
    }

    fn opt<T: core::str::FromStr>(&self, field: &str) -> Result<Option<T>, String> {
        match self.raw(field)? {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| self.err(field, format!("invalid number {v:?}"))),
        }
    }

    fn req<T: core::str::FromStr>(&self, field: &str) -> Result<T, String> {
        self.opt(field)?.ok_or_else(|| self.err(field, "missing value"))
    }

    fn text(&self, field: &str) -> Result<String, String> {
        self.raw(field)?.ok_or_else(|| self.err(field, "missing value"))
    }

    fn sample(&self) -> Result<FlowSample, String> {
        let flow_text = self.text("flow")?;
        let flow: FlowId = flow_text.parse().map_err(|e| self.err("flow", format!("{e}, got {flow_text:?}")))?;
        let event_text = self.text("event")?;
        let event =
            Event::from_name(&event_text).ok_or_else(|| self.err("event", format!("unknown event {event_text:?}")))?;
        let state_text = self.text("state")?;
        let state = TcpState::from_name(&state_text)
            .ok_or_else(|| self.err("state", format!("unknown state {state_text:?}")))?;
        Ok(FlowSample {
            t_us: self.req("t_us")?,
            flow,
            stream: self.req("stream")?,
            event,
            state,
            bytes_sent: self.req("bytes_sent")?,
            bytes_acked: self.req("bytes_acked")?,
            bytes_received: self.req("bytes_received")?,
            snd_una: self.req("snd_una")?,
            snd_nxt: self.req("snd_nxt")?,
            seg_seq: self.opt("seg_seq")?,
            seg_len: self.opt("seg_len")?,
            inflight: self.req("inflight")?,
            cwnd_est: self.req("cwnd_est")?,
            rtt_us: self.opt("rtt_us")?,
            srtt_us: self.opt("srtt_us")?,
            rttvar_us: self.opt("rttvar_us")?,
            peer_wnd: self.req("peer_wnd")?,
            local_wnd: self.req("local_wnd")?,
            retx_fast_segs: self.req("retx_fast_segs")?,
            retx_fast_bytes: self.req("retx_fast_bytes")?,
            retx_rto_segs: self.req("retx_rto_segs")?,
            retx_rto_bytes: self.req("retx_rto_bytes")?,
            dupacks: self.req("dupacks")?,
            zero_wnd_events: self.req("zero_wnd_events")?,
        })
    }
}

/// Parses one CSV data row (not the header) in [`CSV_HEADER`] column order. `line_no` is
/// 1-based and only used in error messages.
pub fn parse_csv_line(line: &str, line_no: usize) -> Result<FlowSample, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let cells: Vec<&str> = line.split(',').collect();
    if cells.len() != COLUMNS {
        return Err(format!("line {line_no}: expected {COLUMNS} comma-separated fields, found {}", cells.len()));
    }
    let get = |field: &str| -> Result<Option<String>, String> {
        let i = CSV_HEADER.split(',').position(|c| c == field).ok_or("not in the schema")?;
        let v = cells[i].trim();
        Ok(if v.is_empty() { None } else { Some(v.to_string()) })
    };
    Fields { line_no, get: &get }.sample()
}

/// Parses one JSON Lines row. Unknown keys are ignored (newer schema versions append columns).
pub fn parse_jsonl_line(line: &str, line_no: usize) -> Result<FlowSample, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("line {line_no}: not a JSON object: {e}"))?;
    let obj = value.as_object().ok_or_else(|| format!("line {line_no}: not a JSON object"))?;
    let get = |field: &str| -> Result<Option<String>, String> {
        match obj.get(field) {
            None => Err("missing".into()),
            Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("unexpected value {other}")),
        }
    };
    Fields { line_no, get: &get }.sample()
}

/// Parses a whole log in either format: a first line equal to [`CSV_HEADER`] (or starting with
/// `t_us,`) means CSV, a first line starting with `{` JSON Lines. Blank lines are skipped.
pub fn parse_log(text: &str) -> Result<Vec<FlowSample>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((first_no, first)) = lines.next() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if first.trim_start().starts_with('{') {
        out.push(parse_jsonl_line(first, first_no + 1)?);
        for (i, l) in lines {
            out.push(parse_jsonl_line(l, i + 1)?);
        }
    } else if first.trim_end() == CSV_HEADER || first.starts_with("t_us,") {
        // A header from a newer schema has extra trailing columns; map by name.
        let header: Vec<&str> = first.trim_end().split(',').collect();
        for c in CSV_HEADER.split(',') {
            if !header.contains(&c) {
                return Err(format!("line {}: CSV header lacks column '{c}'", first_no + 1));
            }
        }
        for (i, l) in lines {
            if header.len() == COLUMNS {
                out.push(parse_csv_line(l, i + 1)?);
            } else {
                let cells: Vec<&str> = l.trim_end().split(',').collect();
                if cells.len() != header.len() {
                    return Err(format!(
                        "line {}: expected {} comma-separated fields, found {}",
                        i + 1,
                        header.len(),
                        cells.len()
                    ));
                }
                let get = |field: &str| -> Result<Option<String>, String> {
                    let k = header.iter().position(|c| *c == field).ok_or("not in the header")?;
                    let v = cells[k].trim();
                    Ok(if v.is_empty() { None } else { Some(v.to_string()) })
                };
                out.push(Fields { line_no: i + 1, get: &get }.sample()?);
            }
        }
    } else {
        return Err(format!(
            "line {}: not a flow log (expected the CSV header starting with 't_us,' or a JSON object)",
            first_no + 1
        ));
    }
    Ok(out)
}
