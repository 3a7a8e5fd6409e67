//! The one writer of flow-log rows (CSV and JSON Lines), generated from the schema
//! (`flow_log_columns!`, documented in `docs/flowlog.md`).

use alloc::format;
use alloc::vec::Vec;

use super::{Event, FlowId, FlowSample, Format, TcpState, flow_log_columns};

/// Writes flow-log rows without `core::fmt` (digits by hand, each flow's `LOCAL>REMOTE` text
/// kept): several times faster than formatting, which decides how fast a guest under TCG can
/// ship its log. Every writer of rows goes through here.
pub struct RowWriter {
    format: Format,
    flows: FlowTexts,
    row: Row,
}

impl RowWriter {
    pub fn new(format: Format) -> Self {
        RowWriter { format, flows: FlowTexts(Vec::new()), row: Row { buf: [0; ROW_MAX], n: 0 } }
    }

    /// The file's first line(s): the CSV header, nothing for JSON Lines.
    pub fn header(&self, out: &mut Vec<u8>) {
        if self.format == Format::Csv {
            out.extend_from_slice(super::CSV_HEADER.as_bytes());
            out.push(b'\n');
        }
    }

    /// Appends one row and its newline.
    pub fn write(&mut self, s: &FlowSample, out: &mut Vec<u8>) {
        let json = self.format == Format::Jsonl;
        self.row.n = 0;
        write_cells(s, &mut Cells { row: &mut self.row, flows: &mut self.flows, json });
        // Every column went out behind a separator; the first one's opens the row instead.
        let start = if json {
            self.row.buf[0] = b'{';
            self.row.byte(b'}');
            0
        } else {
            1
        };
        self.row.byte(b'\n');
        out.extend_from_slice(&self.row.buf[start..self.row.n]);
    }
}

macro_rules! row_writer {
    ($(#[doc = $doc:literal] $name:ident: $ty:ty,)+) => {
        /// Each column: a comma (CSV) or `,"name":` (JSON), then its value.
        #[inline(always)]
        fn write_cells(s: &FlowSample, cells: &mut Cells<'_>) {
            $(
                cells.separator(concat!(",\"", stringify!($name), "\":"));
                s.$name.write_cell(cells);
            )+
        }

        /// The longest row: every JSON key and every value at its longest, braces, newline.
        const ROW_MAX: usize =
            $(concat!(",\"", stringify!($name), "\":").len() + <$ty as WriteCell>::MAX_LEN +)+ 2;
    };
}

flow_log_columns!(row_writer);

/// One row being built on the stack, appended to the output in one copy.
struct Row {
    buf: [u8; ROW_MAX],
    n: usize,
}

/// The row being written, and what its cells need.
struct Cells<'a> {
    row: &'a mut Row,
    flows: &'a mut FlowTexts,
    json: bool,
}

impl Cells<'_> {
    fn separator(&mut self, json_key: &'static str) {
        if self.json {
            self.row.put(json_key.as_bytes());
        } else {
            self.row.byte(b',');
        }
    }

    fn text(&mut self, text: &[u8]) {
        self.row.text(text, self.json);
    }

    fn absent(&mut self) {
        if self.json {
            self.row.put(b"null");
        }
    }
}

/// The length of the longest `name()` of `$ty::ALL`.
macro_rules! longest_name {
    ($ty:ident) => {{
        let (mut i, mut max) = (0, 0);
        while i < $ty::ALL.len() {
            let n = $ty::ALL[i].name().len();
            if n > max {
                max = n;
            }
            i += 1;
        }
        max
    }};
}

/// How a value of each column type is written.
trait WriteCell {
    /// Bytes the value takes at most (for [`ROW_MAX`]).
    const MAX_LEN: usize;
    fn write_cell(&self, cells: &mut Cells<'_>);
}

impl WriteCell for u64 {
    const MAX_LEN: usize = 20;
    fn write_cell(&self, cells: &mut Cells<'_>) {
        cells.row.num(*self);
    }
}

impl WriteCell for u32 {
    const MAX_LEN: usize = 10;
    fn write_cell(&self, cells: &mut Cells<'_>) {
        cells.row.num(u64::from(*self));
    }
}

impl WriteCell for i64 {
    const MAX_LEN: usize = 20;
    fn write_cell(&self, cells: &mut Cells<'_>) {
        if *self < 0 {
            cells.row.byte(b'-');
        }
        cells.row.num(self.unsigned_abs());
    }
}

impl<T: WriteCell> WriteCell for Option<T> {
    const MAX_LEN: usize = if T::MAX_LEN > 4 { T::MAX_LEN } else { 4 };
    fn write_cell(&self, cells: &mut Cells<'_>) {
        match self {
            Some(v) => v.write_cell(cells),
            None => cells.absent(),
        }
    }
}

impl WriteCell for FlowId {
    /// Quoted `255.255.255.255:65535>255.255.255.255:65535`.
    const MAX_LEN: usize = 2 + 43;
    fn write_cell(&self, cells: &mut Cells<'_>) {
        let text = cells.flows.text(*self);
        cells.row.text(text, cells.json);
    }
}

impl WriteCell for Event {
    const MAX_LEN: usize = 2 + longest_name!(Event);
    fn write_cell(&self, cells: &mut Cells<'_>) {
        cells.text(self.name().as_bytes());
    }
}

impl WriteCell for TcpState {
    const MAX_LEN: usize = 2 + longest_name!(TcpState);
    fn write_cell(&self, cells: &mut Cells<'_>) {
        cells.text(self.name().as_bytes());
    }
}

/// The text of the last flows seen (a log interleaves a handful of flows).
struct FlowTexts(Vec<(FlowId, Vec<u8>)>);

impl FlowTexts {
    fn text(&mut self, flow: FlowId) -> &[u8] {
        let i = match self.0.iter().position(|(f, _)| *f == flow) {
            Some(i) => i,
            None => {
                if self.0.len() >= 64 {
                    self.0.remove(0);
                }
                self.0.push((flow, format!("{flow}").into_bytes()));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
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

    /// A string value: quoted in JSON (names and addresses never need escaping).
    fn text(&mut self, text: &[u8], json: bool) {
        if json {
            self.byte(b'"');
            self.put(text);
            self.byte(b'"');
        } else {
            self.put(text);
        }
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
    use alloc::string::{String, ToString};
    use alloc::vec;

    /// A plain `core::fmt` rendering of each column type, the oracle for the hand-written
    /// digits and the separators: (text, quoted in JSON), None if absent.
    trait Reference {
        fn reference(&self) -> Option<(String, bool)>;
    }
    macro_rules! reference_numbers {
        ($($ty:ty),+) => {
            $(impl Reference for $ty {
                fn reference(&self) -> Option<(String, bool)> {
                    Some((self.to_string(), false))
                }
            })+
        };
    }
    reference_numbers!(u64, u32, i64);
    impl Reference for FlowId {
        fn reference(&self) -> Option<(String, bool)> {
            Some((self.to_string(), true))
        }
    }
    impl<T: Reference> Reference for Option<T> {
        fn reference(&self) -> Option<(String, bool)> {
            self.as_ref().and_then(T::reference)
        }
    }
    impl Reference for Event {
        fn reference(&self) -> Option<(String, bool)> {
            Some((self.name().into(), true))
        }
    }
    impl Reference for TcpState {
        fn reference(&self) -> Option<(String, bool)> {
            Some((self.name().into(), true))
        }
    }

    macro_rules! reference_row {
        ($(#[doc = $doc:literal] $name:ident: $ty:ty,)+) => {
            fn reference_row(format: Format, s: &FlowSample) -> String {
                let cells = [$((stringify!($name), s.$name.reference())),+];
                let row: Vec<String> = cells
                    .into_iter()
                    .map(|(name, cell)| match (format, cell) {
                        (Format::Csv, cell) => cell.map(|c| c.0).unwrap_or_default(),
                        (Format::Jsonl, None) => alloc::format!("\"{name}\":null"),
                        (Format::Jsonl, Some((text, false))) => alloc::format!("\"{name}\":{text}"),
                        (Format::Jsonl, Some((text, true))) => alloc::format!("\"{name}\":\"{text}\""),
                    })
                    .collect();
                match format {
                    Format::Csv => alloc::format!("{}\n", row.join(",")),
                    Format::Jsonl => alloc::format!("{{{}}}\n", row.join(",")),
                }
            }
        };
    }
    flow_log_columns!(reference_row);

    /// The value of each column type that takes the most bytes.
    trait Longest {
        fn longest() -> Self;
    }
    impl Longest for u64 {
        fn longest() -> Self {
            u64::MAX
        }
    }
    impl Longest for u32 {
        fn longest() -> Self {
            u32::MAX
        }
    }
    impl Longest for i64 {
        fn longest() -> Self {
            i64::MIN
        }
    }
    impl<T: Longest> Longest for Option<T> {
        fn longest() -> Self {
            Some(T::longest())
        }
    }
    impl Longest for FlowId {
        fn longest() -> Self {
            "255.255.255.255:65535>255.255.255.255:65535".parse().unwrap()
        }
    }
    impl Longest for Event {
        fn longest() -> Self {
            Event::ALL.into_iter().max_by_key(|e| e.name().len()).unwrap()
        }
    }
    impl Longest for TcpState {
        fn longest() -> Self {
            TcpState::ALL.into_iter().max_by_key(|e| e.name().len()).unwrap()
        }
    }
    macro_rules! longest_sample {
        ($(#[doc = $doc:literal] $name:ident: $ty:ty,)+) => {
            /// Every column at its longest.
            fn longest() -> FlowSample {
                FlowSample { $($name: <$ty as Longest>::longest()),+ }
            }
        };
    }
    flow_log_columns!(longest_sample);

    #[test]
    fn the_longest_row_fills_the_row_buffer_exactly() {
        let mut out = Vec::new();
        RowWriter::new(Format::Jsonl).write(&longest(), &mut out);
        assert_eq!(out.len(), ROW_MAX, "{}", core::str::from_utf8(&out).unwrap());
    }

    #[test]
    fn fast_rows_match_the_reference() {
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
            ..FlowSample::default()
        };
        let sparse = FlowSample { flow: other, stream: -1, event: Event::State, ..FlowSample::default() };
        let mut samples = vec![full, sparse, full, sparse, longest()];
        let mut v = 1u64;
        while let Some(next) = v.checked_mul(10) {
            // Around every power of ten, and numbers of every length.
            for t_us in [v - 1, v, v + 1, v / 3, v / 7 * 6] {
                samples.push(FlowSample {
                    t_us,
                    snd_una: t_us / 3,
                    bytes_received: u64::MAX / v,
                    stream: -(v as i64 % 7),
                    ..full
                });
            }
            v = next;
        }
        for t_us in [4_294_967_295, 4_294_967_296, 999_999_999, 1_000_000_000, u64::MAX] {
            samples.push(FlowSample { t_us, ..sparse });
        }
        for format in [Format::Csv, Format::Jsonl] {
            let mut fast = RowWriter::new(format);
            let mut a = Vec::new();
            fast.header(&mut a);
            let mut b =
                if format == Format::Csv { alloc::format!("{}\n", crate::flowlog::CSV_HEADER) } else { String::new() };
            for s in &samples {
                fast.write(s, &mut a);
                b.push_str(&reference_row(format, s));
            }
            assert_eq!(core::str::from_utf8(&a).unwrap(), b, "{format:?}");
        }
    }
}
