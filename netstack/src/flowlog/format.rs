//! The flow log on disk: its two formats and their strict readers, generated from the schema
//! (`flow_log_columns!`, documented in `docs/flowlog.md`). Rows are written by [`RowWriter`].
//!
//! [`RowWriter`]: super::RowWriter

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{COLUMNS, CSV_HEADER, Event, FlowId, FlowSample, TcpState, flow_log_columns};

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
}

/// How a value of each column type is read back from its text (`None`: an empty CSV field or
/// JSON `null`). Errors complete "line N: field 'name': …".
trait ReadCell: Sized {
    fn read_cell(raw: Option<&str>) -> Result<Self, String>;
}

fn required(raw: Option<&str>) -> Result<&str, String> {
    raw.ok_or_else(|| "missing value".to_string())
}

macro_rules! read_numbers {
    ($($ty:ty),+) => {
        $(
            impl ReadCell for $ty {
                fn read_cell(raw: Option<&str>) -> Result<Self, String> {
                    let v = required(raw)?;
                    v.parse().map_err(|_| format!("invalid number {v:?}"))
                }
            }
            impl ReadCell for Option<$ty> {
                fn read_cell(raw: Option<&str>) -> Result<Self, String> {
                    raw.map(|v| <$ty>::read_cell(Some(v))).transpose()
                }
            }
        )+
    };
}

read_numbers!(u64, u32, i64);

impl ReadCell for FlowId {
    fn read_cell(raw: Option<&str>) -> Result<Self, String> {
        let v = required(raw)?;
        v.parse().map_err(|e| format!("{e}, got {v:?}"))
    }
}

impl ReadCell for Event {
    fn read_cell(raw: Option<&str>) -> Result<Self, String> {
        let v = required(raw)?;
        Event::from_name(v).ok_or_else(|| format!("unknown event {v:?}"))
    }
}

impl ReadCell for TcpState {
    fn read_cell(raw: Option<&str>) -> Result<Self, String> {
        let v = required(raw)?;
        TcpState::from_name(v).ok_or_else(|| format!("unknown state {v:?}"))
    }
}

/// A row's raw value of column (`index` in [`COLUMNS`], `name`): `Ok(None)` if absent, `Err`
/// if the row lacks it or holds something that is no value.
type Lookup<'a> = dyn Fn(usize, &'static str) -> Result<Option<Cow<'a, str>>, String> + 'a;

macro_rules! sample_reader {
    ($(#[doc = $doc:literal] $name:ident: $ty:ty,)+) => {
        /// Builds a sample from a row's raw values, column by column in schema order; shared by
        /// both formats so they accept and reject exactly the same things.
        fn read_sample(line_no: usize, get: &Lookup<'_>) -> Result<FlowSample, String> {
            #[allow(non_camel_case_types)]
            enum Index { $($name),+ }
            Ok(FlowSample {$(
                $name: get(Index::$name as usize, stringify!($name))
                    .and_then(|raw| <$ty as ReadCell>::read_cell(raw.as_deref()))
                    .map_err(|e| format!("line {line_no}: field '{}': {e}", stringify!($name)))?,
            )+})
        }
    };
}

flow_log_columns!(sample_reader);

/// Reads one CSV row whose fields are in the order of `header` (`positions[i]`: where schema
/// column `i` is; `None`: [`CSV_HEADER`]'s own order).
fn read_csv(line: &str, line_no: usize, width: usize, positions: Option<&[usize]>) -> Result<FlowSample, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let cells: Vec<&str> = line.split(',').collect();
    if cells.len() != width {
        return Err(format!("line {line_no}: expected {width} comma-separated fields, found {}", cells.len()));
    }
    let get = |i: usize, _: &'static str| -> Result<Option<Cow<'_, str>>, String> {
        let v = cells[positions.map_or(i, |p| p[i])].trim();
        Ok((!v.is_empty()).then_some(Cow::Borrowed(v)))
    };
    read_sample(line_no, &get)
}

/// Parses one CSV data row (not the header) in [`CSV_HEADER`] column order. `line_no` is
/// 1-based and only used in error messages.
pub fn parse_csv_line(line: &str, line_no: usize) -> Result<FlowSample, String> {
    read_csv(line, line_no, COLUMNS.len(), None)
}

/// Parses one JSON Lines row. Unknown keys are ignored (newer schema versions append columns).
pub fn parse_jsonl_line(line: &str, line_no: usize) -> Result<FlowSample, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("line {line_no}: not a JSON object: {e}"))?;
    let obj = value.as_object().ok_or_else(|| format!("line {line_no}: not a JSON object"))?;
    let get = |_: usize, name: &'static str| -> Result<Option<Cow<'_, str>>, String> {
        match obj.get(name) {
            None => Err("missing".into()),
            Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
            Some(serde_json::Value::String(s)) => Ok(Some(Cow::Borrowed(s))),
            Some(other) => Err(format!("unexpected value {other}")),
        }
    };
    read_sample(line_no, &get)
}

/// Parses a whole log in either format: a first line that starts with the first column's name
/// and a comma (the CSV header, possibly of a newer schema with more columns) means CSV, a first
/// line starting with `{` JSON Lines. Blank lines are skipped.
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
    } else if first.split_once(',').is_some_and(|(c, _)| c == COLUMNS[0].name) {
        // A header from a newer schema has extra columns; map by name.
        let header: Vec<&str> = first.trim_end().split(',').collect();
        let mut positions = Vec::with_capacity(COLUMNS.len());
        for c in COLUMNS {
            let at = header.iter().position(|h| *h == c.name);
            positions.push(at.ok_or_else(|| format!("line {}: CSV header lacks column '{}'", first_no + 1, c.name))?);
        }
        let positions = (first.trim_end() != CSV_HEADER).then_some(&positions[..]);
        for (i, l) in lines {
            out.push(read_csv(l, i + 1, header.len(), positions)?);
        }
    } else {
        return Err(format!(
            "line {}: not a flow log (expected the CSV header starting with '{},' or a JSON object)",
            first_no + 1,
            COLUMNS[0].name
        ));
    }
    Ok(out)
}
