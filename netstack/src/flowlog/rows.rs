//! The one writer of flow-log rows (CSV and JSON Lines, schema in `docs/flowlog.md`).

use alloc::format;
use alloc::vec::Vec;

use super::{FlowId, FlowSample, Format};

/// Writes flow-log rows without `core::fmt` (digits by hand, each flow's `LOCAL>REMOTE` text
/// kept): several times faster than formatting, which decides how fast a guest under TCG can
/// ship its log. Every writer of rows goes through here.
pub struct RowWriter {
    format: Format,
    /// The last flows seen and their text (a log interleaves a handful of flows).
    flows: Vec<(FlowId, Vec<u8>)>,
    row: Row,
}

impl RowWriter {
    pub fn new(format: Format) -> Self {
        RowWriter { format, flows: Vec::new(), row: Row { buf: [0; ROW_MAX], n: 0 } }
    }

    /// The file's first line(s): the CSV header, nothing for JSON Lines.
    pub fn header(&self, out: &mut Vec<u8>) {
        if self.format == Format::Csv {
            out.extend_from_slice(crate::flowlog::CSV_HEADER.as_bytes());
            out.push(b'\n');
        }
    }

    fn flow_text(&mut self, flow: FlowId) -> usize {
        if let Some(i) = self.flows.iter().position(|(f, _)| *f == flow) {
            return i;
        }
        if self.flows.len() >= 64 {
            self.flows.remove(0);
        }
        self.flows.push((flow, format!("{flow}").into_bytes()));
        self.flows.len() - 1
    }

    /// Appends one row and its newline.
    pub fn write(&mut self, s: &FlowSample, out: &mut Vec<u8>) {
        let fi = self.flow_text(s.flow);
        let json = self.format == Format::Jsonl;
        let flow = &self.flows[fi].1;
        let row = &mut self.row;
        row.n = 0;
        // Each column: its key (JSON) or a comma (CSV), then the value.
        macro_rules! key {
            ($first:expr, $key:literal) => {
                if json {
                    row.put(if $first { concat!("{\"", $key, "\":") } else { concat!(",\"", $key, "\":") }.as_bytes());
                } else if !$first {
                    row.byte(b',');
                }
            };
        }
        macro_rules! text {
            ($v:expr) => {
                if json {
                    row.byte(b'"');
                    row.put($v);
                    row.byte(b'"');
                } else {
                    row.put($v);
                }
            };
        }
        macro_rules! opt {
            ($v:expr) => {
                match $v {
                    Some(v) => row.num(u64::from(v)),
                    None if json => row.put(b"null"),
                    None => {}
                }
            };
        }
        key!(true, "t_us");
        row.num(s.t_us);
        key!(false, "flow");
        text!(flow);
        key!(false, "stream");
        if s.stream < 0 {
            row.byte(b'-');
        }
        row.num(s.stream.unsigned_abs());
        key!(false, "event");
        text!(s.event.name().as_bytes());
        key!(false, "state");
        text!(s.state.name().as_bytes());
        key!(false, "bytes_sent");
        row.num(s.bytes_sent);
        key!(false, "bytes_acked");
        row.num(s.bytes_acked);
        key!(false, "bytes_received");
        row.num(s.bytes_received);
        key!(false, "snd_una");
        row.num(s.snd_una);
        key!(false, "snd_nxt");
        row.num(s.snd_nxt);
        key!(false, "seg_seq");
        opt!(s.seg_seq);
        key!(false, "seg_len");
        opt!(s.seg_len);
        key!(false, "inflight");
        row.num(s.inflight.into());
        key!(false, "cwnd_est");
        row.num(s.cwnd_est.into());
        key!(false, "rtt_us");
        opt!(s.rtt_us);
        key!(false, "srtt_us");
        opt!(s.srtt_us);
        key!(false, "rttvar_us");
        opt!(s.rttvar_us);
        key!(false, "peer_wnd");
        row.num(s.peer_wnd.into());
        key!(false, "local_wnd");
        row.num(s.local_wnd.into());
        key!(false, "retx_fast_segs");
        row.num(s.retx_fast_segs);
        key!(false, "retx_fast_bytes");
        row.num(s.retx_fast_bytes);
        key!(false, "retx_rto_segs");
        row.num(s.retx_rto_segs);
        key!(false, "retx_rto_bytes");
        row.num(s.retx_rto_bytes);
        key!(false, "dupacks");
        row.num(s.dupacks);
        key!(false, "zero_wnd_events");
        row.num(s.zero_wnd_events);
        if json {
            row.byte(b'}');
        }
        row.byte(b'\n');
        out.extend_from_slice(&row.buf[..row.n]);
    }
}

/// Longest row: 25 JSON keys (~300 bytes), 20 numbers of up to 20 digits, a 43-byte flow.
const ROW_MAX: usize = 1024;

/// One row being built on the stack, appended to the output in one copy.
struct Row {
    buf: [u8; ROW_MAX],
    n: usize,
}

impl Row {
    fn byte(&mut self, b: u8) {
        self.buf[self.n] = b;
        self.n += 1;
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.n..self.n + bytes.len()].copy_from_slice(bytes);
        self.n += bytes.len();
    }

    /// Decimal digits of `v`, written in place. Values that fit 32 bits (most columns) use
    /// 32-bit division, which a TCG guest does inline; 64-bit division by a constant needs a
    /// 128-bit multiply there.
    fn num(&mut self, v: u64) {
        match u32::try_from(v) {
            Ok(small) => self.num32(small, 0),
            Err(_) => {
                const E9: u64 = 1_000_000_000;
                self.num(v / E9);
                self.num32((v % E9) as u32, 9);
            }
        }
    }

    /// `v` with at least `width` digits (zero-padded).
    fn num32(&mut self, mut v: u32, width: usize) {
        let len = decimal_len(v).max(width);
        let mut i = self.n + len;
        self.n = i;
        while v >= 100 {
            let r = (v % 100) as usize * 2;
            v /= 100;
            i -= 2;
            self.buf[i] = PAIRS[r];
            self.buf[i + 1] = PAIRS[r + 1];
        }
        if v >= 10 {
            let r = v as usize * 2;
            i -= 2;
            self.buf[i] = PAIRS[r];
            self.buf[i + 1] = PAIRS[r + 1];
        } else {
            i -= 1;
            self.buf[i] = b'0' + v as u8;
        }
        let start = self.n - len;
        while i > start {
            i -= 1;
            self.buf[i] = b'0';
        }
    }
}

fn decimal_len(v: u32) -> usize {
    match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1_000..=9_999 => 4,
        10_000..=99_999 => 5,
        100_000..=999_999 => 6,
        1_000_000..=9_999_999 => 7,
        10_000_000..=99_999_999 => 8,
        100_000_000..=999_999_999 => 9,
        _ => 10,
    }
}

/// "00" to "99": two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowlog::{Event, TcpState};
    use alloc::string::String;
    use core::fmt::Write;

    // A plain `core::fmt` rendering of the schema, kept as the oracle for the fast writer.
    fn write_sample(format: Format, s: &FlowSample, out: &mut String) {
        match format {
            Format::Csv => write_csv(s, out),
            Format::Jsonl => write_jsonl(s, out),
        }
    }

    struct Opt<T>(Option<T>);

    impl<T: core::fmt::Display> core::fmt::Display for Opt<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match &self.0 {
                Some(v) => v.fmt(f),
                None => Ok(()),
            }
        }
    }

    struct JsonOpt<T>(Option<T>);

    impl<T: core::fmt::Display> core::fmt::Display for JsonOpt<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match &self.0 {
                Some(v) => v.fmt(f),
                None => f.write_str("null"),
            }
        }
    }

    /// Appends one CSV row and a newline.
    fn write_csv(s: &FlowSample, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.t_us,
            s.flow,
            s.stream,
            s.event.name(),
            s.state.name(),
            s.bytes_sent,
            s.bytes_acked,
            s.bytes_received,
            s.snd_una,
            s.snd_nxt,
            Opt(s.seg_seq),
            Opt(s.seg_len),
            s.inflight,
            s.cwnd_est,
            Opt(s.rtt_us),
            Opt(s.srtt_us),
            Opt(s.rttvar_us),
            s.peer_wnd,
            s.local_wnd,
            s.retx_fast_segs,
            s.retx_fast_bytes,
            s.retx_rto_segs,
            s.retx_rto_bytes,
            s.dupacks,
            s.zero_wnd_events,
        );
    }

    /// Appends one JSON object and a newline.
    fn write_jsonl(s: &FlowSample, out: &mut String) {
        let _ = writeln!(
            out,
            "{{\"t_us\":{},\"flow\":\"{}\",\"stream\":{},\"event\":\"{}\",\"state\":\"{}\",\"bytes_sent\":{},\
    \"bytes_acked\":{},\"bytes_received\":{},\"snd_una\":{},\"snd_nxt\":{},\"seg_seq\":{},\"seg_len\":{},\
    \"inflight\":{},\"cwnd_est\":{},\"rtt_us\":{},\"srtt_us\":{},\"rttvar_us\":{},\"peer_wnd\":{},\"local_wnd\":{},\
    \"retx_fast_segs\":{},\"retx_fast_bytes\":{},\"retx_rto_segs\":{},\"retx_rto_bytes\":{},\"dupacks\":{},\
    \"zero_wnd_events\":{}}}",
            s.t_us,
            s.flow,
            s.stream,
            s.event.name(),
            s.state.name(),
            s.bytes_sent,
            s.bytes_acked,
            s.bytes_received,
            s.snd_una,
            s.snd_nxt,
            JsonOpt(s.seg_seq),
            JsonOpt(s.seg_len),
            s.inflight,
            s.cwnd_est,
            JsonOpt(s.rtt_us),
            JsonOpt(s.srtt_us),
            JsonOpt(s.rttvar_us),
            s.peer_wnd,
            s.local_wnd,
            s.retx_fast_segs,
            s.retx_fast_bytes,
            s.retx_rto_segs,
            s.retx_rto_bytes,
            s.dupacks,
            s.zero_wnd_events,
        );
    }

    #[test]
    fn fast_rows_match_the_reference_writers() {
        let flow = "198.18.0.2:40000>198.18.0.1:5201".parse().unwrap();
        let other = "10.0.0.1:1>10.0.0.2:65535".parse().unwrap();
        let full = FlowSample {
            t_us: u64::MAX,
            flow,
            stream: 3,
            event: Event::RetxRto,
            state: TcpState::Established,
            bytes_sent: 10_000_000_007,
            bytes_acked: 1,
            bytes_received: 0,
            snd_una: 99,
            snd_nxt: 100,
            seg_seq: Some(0),
            seg_len: Some(u32::MAX),
            inflight: 65536,
            cwnd_est: 14600,
            rtt_us: Some(1234),
            srtt_us: Some(0),
            rttvar_us: Some(7),
            peer_wnd: 4 << 20,
            local_wnd: 16384,
            retx_fast_segs: 1,
            retx_fast_bytes: 1448,
            retx_rto_segs: 2,
            retx_rto_bytes: 2896,
            dupacks: 3,
            zero_wnd_events: 4,
        };
        let sparse = FlowSample { flow: other, stream: -1, event: Event::State, ..FlowSample::default() };
        let mut numbers = Vec::new();
        for v in [0u64, 9, 10, 99, 100, 101, 4_294_967_295, 4_294_967_296, 1_000_000_000_000, u64::MAX] {
            numbers.push(FlowSample { t_us: v, snd_una: v / 3, bytes_received: v / 7, ..full });
        }
        for format in [Format::Csv, Format::Jsonl] {
            let mut fast = RowWriter::new(format);
            let (mut a, mut b) = (Vec::new(), String::new());
            fast.header(&mut a);
            format.write_header(&mut b);
            for s in [full, sparse, full, sparse].iter().chain(&numbers) {
                fast.write(s, &mut a);
                write_sample(format, s, &mut b);
            }
            assert_eq!(core::str::from_utf8(&a).unwrap(), b, "{format:?}");
        }
    }
}
