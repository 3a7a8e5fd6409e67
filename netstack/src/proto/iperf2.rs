//! iperf 2's wire formats, for serving stock iperf 2 clients (2.0.5 to 2.1.x): the client
//! header a test starts with (24 bytes in 2.0.5, plus an extension in 2.1+), the header of
//! every UDP datagram, the server report datagram that answers a UDP client's end-of-test
//! datagram, and a UDP receiver's counters as iperf 2 keeps them. Layouts were learned from
//! iperf 2's `payloads.h` and from captures of Debian's iperf 2.1.8; all fields are
//! big-endian 32-bit words. Parsing never panics: short or contradictory input is an
//! [`Iperf2Error`] naming what was wrong.

use core::fmt;

/// iperf 2's default port.
pub const DEFAULT_PORT: u16 = 5001;

/// `flags` bits of the client header (the first word).
pub mod flags {
    /// 1.7+: the header carries a dual (`-d`) or tradeoff (`-r`) test request.
    pub const VERSION1: u32 = 0x8000_0000;
    /// 2.1+: the extension follows the 24-byte base header.
    pub const EXTEND: u32 = 0x4000_0000;
    pub const UDPTESTS: u32 = 0x2000_0000;
    /// UDP datagram ids are 64 bits (`id` low, `id2` high).
    pub const SEQNO64B: u32 = 0x0800_0000;
    /// 2.1+: reverse / full-duplex / peer-detect tests.
    pub const VERSION2: u32 = 0x0400_0000;
    pub const V2PEERDETECT: u32 = 0x0200_0000;
    pub const BOUNCEBACK: u32 = 0x0080_0000;
    /// With VERSION1: `-d` (both directions at once) rather than `-r` (one after the other).
    pub const RUN_NOW: u32 = 0x0000_0001;
    /// The bits that say a header is there at all; without any, iperf 2 ignores the words
    /// (2.0.5 sends zero flags for a plain test, `-C` sends no header).
    pub const ANY_HEADER: u32 = VERSION1 | EXTEND | VERSION2;
}

/// `upperflags` bits of the 2.1 extension.
pub mod upper {
    pub const ISOCH: u16 = 0x0001;
    pub const NOUDPFIN: u16 = 0x0008;
    pub const TRIPTIME: u16 = 0x0010;
    pub const REVERSE: u16 = 0x0400;
    pub const FULLDUPLEX: u16 = 0x0800;
    pub const PERIODICBURST: u16 = 0x2000;
}

/// `flags`, `numThreads`, `mPort`, `bufferlen`, `mWinBand`, `mAmount`.
pub const CLIENT_HDR_V1_LEN: usize = 24;
/// The 2.1 extension up to `TCPWritePrefetch` (type, length, upper/lower flags, version
/// major and minor, reserved/TOS, rate low and high, write prefetch).
pub const CLIENT_HDR_EXT_LEN: usize = 36;
/// A 2.1 client's header: base and extension.
pub const CLIENT_HDR_EXT_TOTAL: usize = CLIENT_HDR_V1_LEN + CLIENT_HDR_EXT_LEN;
/// 2.0.5's datagram header: id, sec, usec.
pub const UDP_HDR_V1_LEN: usize = 12;
/// 2.0.10+: id, sec, usec, id2.
pub const UDP_HDR_LEN: usize = 16;
/// The server report: the base (10 words), the transit extension (15) and the 64-bit count
/// extension (3).
pub const SERVER_HDR_LEN: usize = 40 + 60 + 12;
/// Most datagram ids a test may skip at once before the id is not believed.
pub const MAX_ID_JUMP: u64 = 1 << 24;
/// Largest `-P` we accept in a header.
pub const MAX_THREADS: i32 = 128;

/// What was wrong with iperf 2 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Iperf2Error {
    /// Fewer bytes than the structure needs.
    Truncated { what: &'static str, need: usize, got: usize },
    /// `numThreads` outside 1..=[`MAX_THREADS`].
    Threads(i32),
    /// A datagram id of 0 (ids start at 1) or one that jumps implausibly far.
    DatagramId(i64),
}

impl fmt::Display for Iperf2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iperf2Error::Truncated { what, need, got } => {
                write!(f, "iperf 2 {what} is {got} bytes, needs {need}")
            }
            Iperf2Error::Threads(n) => {
                write!(f, "iperf 2 client header asks for {n} parallel streams (1 to {MAX_THREADS})")
            }
            Iperf2Error::DatagramId(id) => write!(f, "iperf 2 datagram id {id} is not a plausible sequence number"),
        }
    }
}

fn word(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

fn put(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// How long a test runs, from `mAmount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amount {
    /// `-t`: hundredths of a second.
    Time(u32),
    /// `-n`: bytes.
    Bytes(u32),
    /// Zero: the header does not say.
    Unset,
}

/// The 2.1 extension's fields we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeaderExt {
    pub upper_flags: u16,
    pub lower_flags: u16,
    /// iperf 2's version: major<<16|minor, and release<<16|kind (3 = final).
    pub version_u: u32,
    pub version_l: u32,
    pub tos: u16,
    /// `-b`, as the client sends it (low and high words).
    pub rate: u64,
}

/// The client header a TCP test's first bytes and every UDP datagram carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHeader {
    pub flags: u32,
    pub num_threads: i32,
    pub port: i32,
    pub buffer_len: i32,
    pub win_band: i32,
    pub amount: i32,
    pub ext: Option<HeaderExt>,
}

/// What a client asks the server to do besides receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestMode {
    /// Client sends, server receives: what we serve.
    Normal,
    /// `-d`: the server also connects back and sends at once.
    Dual,
    /// `-r`: the server connects back and sends once the client is done.
    Tradeoff,
    /// 2.1 `-R`: the server sends on the client's connection.
    Reverse,
    /// 2.1 `--full-duplex`: both send on one connection.
    FullDuplex,
    /// 2.1 `--bounceback`, isochronous or periodic-burst tests and other 2.1 extras.
    Other(&'static str),
}

impl TestMode {
    /// How the mode is named on iperf 2's command line.
    pub fn option(self) -> &'static str {
        match self {
            TestMode::Normal => "a plain test",
            TestMode::Dual => "-d (--dualtest)",
            TestMode::Tradeoff => "-r (--tradeoff)",
            TestMode::Reverse => "-R (--reverse)",
            TestMode::FullDuplex => "--full-duplex",
            TestMode::Other(what) => what,
        }
    }
}

impl ClientHeader {
    /// True when iperf 2 would look at the header at all.
    pub fn present(&self) -> bool {
        self.flags & flags::ANY_HEADER != 0
    }

    /// Bytes a parser wants before deciding: the extension too when the flags announce it.
    pub fn wanted_len(first_word: u32) -> usize {
        if first_word & flags::EXTEND != 0 { CLIENT_HDR_EXT_TOTAL } else { CLIENT_HDR_V1_LEN }
    }

    /// Parses the base header and, when announced and present, the extension. Without any
    /// header bit the words are taken as they are (iperf 2 ignores them; see [`Self::present`]).
    pub fn parse(b: &[u8]) -> Result<Self, Iperf2Error> {
        if b.len() < CLIENT_HDR_V1_LEN {
            return Err(Iperf2Error::Truncated { what: "client header", need: CLIENT_HDR_V1_LEN, got: b.len() });
        }
        let flags = word(b, 0);
        let h = ClientHeader {
            flags,
            num_threads: word(b, 4) as i32,
            port: word(b, 8) as i32,
            buffer_len: word(b, 12) as i32,
            win_band: word(b, 16) as i32,
            amount: word(b, 20) as i32,
            ext: None,
        };
        if !h.present() {
            return Ok(h);
        }
        if !(1..=MAX_THREADS).contains(&h.num_threads) {
            return Err(Iperf2Error::Threads(h.num_threads));
        }
        if flags & flags::EXTEND == 0 {
            return Ok(h);
        }
        if b.len() < CLIENT_HDR_EXT_TOTAL {
            return Err(Iperf2Error::Truncated {
                what: "extended client header",
                need: CLIENT_HDR_EXT_TOTAL,
                got: b.len(),
            });
        }
        let e = CLIENT_HDR_V1_LEN;
        let fl = word(b, e + 8);
        let ext = HeaderExt {
            upper_flags: (fl >> 16) as u16,
            lower_flags: fl as u16,
            version_u: word(b, e + 12),
            version_l: word(b, e + 16),
            tos: word(b, e + 20) as u16,
            rate: word(b, e + 24) as u64 | (word(b, e + 28) as u64) << 32,
        };
        Ok(ClientHeader { ext: Some(ext), ..h })
    }

    /// Writes the header as a client would; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Iperf2Error> {
        let len = if self.ext.is_some() { CLIENT_HDR_EXT_TOTAL } else { CLIENT_HDR_V1_LEN };
        if out.len() < len {
            return Err(Iperf2Error::Truncated { what: "client header buffer", need: len, got: out.len() });
        }
        put(out, 0, self.flags);
        put(out, 4, self.num_threads as u32);
        put(out, 8, self.port as u32);
        put(out, 12, self.buffer_len as u32);
        put(out, 16, self.win_band as u32);
        put(out, 20, self.amount as u32);
        if let Some(x) = self.ext {
            let e = CLIENT_HDR_V1_LEN;
            out[e..e + CLIENT_HDR_EXT_LEN].fill(0);
            put(out, e + 8, (x.upper_flags as u32) << 16 | x.lower_flags as u32);
            put(out, e + 12, x.version_u);
            put(out, e + 16, x.version_l);
            put(out, e + 20, x.tos as u32);
            put(out, e + 24, x.rate as u32);
            put(out, e + 28, (x.rate >> 32) as u32);
        }
        Ok(len)
    }

    /// Parallel streams of the test (1 when the header is absent or ignored).
    pub fn threads(&self) -> u32 {
        if self.present() && self.num_threads > 0 { self.num_threads as u32 } else { 1 }
    }

    pub fn amount(&self) -> Amount {
        match self.amount {
            0 => Amount::Unset,
            a if a < 0 => Amount::Time(a.unsigned_abs()),
            a => Amount::Bytes(a as u32),
        }
    }

    /// What the client asks for.
    pub fn mode(&self) -> TestMode {
        if !self.present() {
            return TestMode::Normal;
        }
        if self.flags & flags::VERSION1 != 0 {
            return if self.flags & flags::RUN_NOW != 0 { TestMode::Dual } else { TestMode::Tradeoff };
        }
        if self.flags & flags::BOUNCEBACK != 0 {
            return TestMode::Other("--bounceback");
        }
        let up = self.ext.map(|e| e.upper_flags).unwrap_or(0);
        if up & upper::FULLDUPLEX != 0 {
            TestMode::FullDuplex
        } else if up & upper::REVERSE != 0 {
            TestMode::Reverse
        } else if up & upper::ISOCH != 0 {
            TestMode::Other("--isochronous")
        } else if up & upper::PERIODICBURST != 0 {
            TestMode::Other("--burst-period")
        } else if self.flags & flags::VERSION2 != 0 {
            // Peer detection and other VERSION2 exchanges expect an answer we do not give.
            TestMode::Other("-X (--peer-detect)")
        } else {
            TestMode::Normal
        }
    }
}

/// The header of a UDP datagram: its id (negative: the client's end-of-test datagram) and
/// when it was sent, by the client's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramHeader {
    pub id: i64,
    pub sec: u32,
    pub usec: u32,
}

/// Where a client's datagram header ends: 2.0.5 writes 12 bytes (id, sec, usec), 2.0.10+
/// 16 (id2 too). Told apart by the word where a 2.0.10+ client's header flags sit: it always
/// has one of the header bits there, a 2.0.5 client has its `numThreads` (a small count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpLayout {
    V1,
    Id64,
}

impl UdpLayout {
    pub fn detect(first: &[u8]) -> UdpLayout {
        if first.len() >= UDP_HDR_LEN + 4 && word(first, UDP_HDR_LEN) & (flags::ANY_HEADER | flags::SEQNO64B) != 0 {
            UdpLayout::Id64
        } else {
            UdpLayout::V1
        }
    }

    pub fn header_len(self) -> usize {
        match self {
            UdpLayout::V1 => UDP_HDR_V1_LEN,
            UdpLayout::Id64 => UDP_HDR_LEN,
        }
    }
}

impl DatagramHeader {
    /// `seq64`: the client said (SEQNO64B) that `id2` holds the id's high word.
    pub fn parse(b: &[u8], layout: UdpLayout, seq64: bool) -> Result<Self, Iperf2Error> {
        let need = layout.header_len();
        if b.len() < need {
            return Err(Iperf2Error::Truncated { what: "UDP datagram", need, got: b.len() });
        }
        let lo = word(b, 0);
        let id = if layout == UdpLayout::Id64 && seq64 {
            (lo as u64 | (word(b, 12) as u64) << 32) as i64
        } else {
            lo as i32 as i64
        };
        Ok(DatagramHeader { id, sec: word(b, 4), usec: word(b, 8) })
    }

    /// The client header after the datagram header, if the datagram is long enough.
    pub fn client_header(b: &[u8], layout: UdpLayout) -> Result<ClientHeader, Iperf2Error> {
        ClientHeader::parse(b.get(layout.header_len()..).unwrap_or(&[]))
    }

    pub fn emit(&self, out: &mut [u8], layout: UdpLayout) -> Result<usize, Iperf2Error> {
        let need = layout.header_len();
        if out.len() < need {
            return Err(Iperf2Error::Truncated { what: "UDP datagram buffer", need, got: out.len() });
        }
        put(out, 0, self.id as u32);
        put(out, 4, self.sec);
        put(out, 8, self.usec);
        if layout == UdpLayout::Id64 {
            put(out, 12, (self.id >> 32) as u32);
        }
        Ok(need)
    }

    /// Sent time in microseconds of the client's clock.
    pub fn sent_us(&self) -> i64 {
        self.sec as i64 * 1_000_000 + self.usec as i64
    }
}

/// What the server tells a UDP client at the end: the figures its "Server Report" prints.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ServerReport {
    pub bytes: u64,
    /// Seconds from the first datagram to the end.
    pub duration_s: f64,
    /// Datagrams lost (iperf 2's error count).
    pub lost: u64,
    pub out_of_order: u64,
    /// The highest id seen: iperf 2's "Total Datagrams".
    pub datagrams: u64,
    pub jitter_s: f64,
}

/// Splits seconds into whole seconds and microseconds, as iperf 2's two words.
fn split_secs(s: f64) -> (u32, u32) {
    let s = if s.is_finite() && s > 0.0 { s } else { 0.0 };
    let whole = s as u32;
    let frac = ((s - whole as f64) * 1e6) as u32;
    (whole, frac.min(999_999))
}

impl ServerReport {
    /// The whole answer datagram: a datagram header (iperf 2's server sends id 0) and
    /// the server header after it. The 64-bit count words are filled (SEQNO64B); the transit
    /// extension is left out (no SERVER_HEADER_EXTEND), so the client prints the classic
    /// report line.
    pub fn emit(&self, out: &mut [u8], layout: UdpLayout, id: i64) -> Result<usize, Iperf2Error> {
        let at = layout.header_len();
        let need = at + SERVER_HDR_LEN;
        if out.len() < need {
            return Err(Iperf2Error::Truncated { what: "server report buffer", need, got: out.len() });
        }
        out[..need].fill(0);
        DatagramHeader { id, sec: 0, usec: 0 }.emit(out, layout)?;
        let (stop_s, stop_us) = split_secs(self.duration_s);
        let (jit_s, jit_us) = split_secs(self.jitter_s);
        put(out, at, flags::VERSION1 | flags::SEQNO64B);
        put(out, at + 4, (self.bytes >> 32) as u32);
        put(out, at + 8, self.bytes as u32);
        put(out, at + 12, stop_s);
        put(out, at + 16, stop_us);
        put(out, at + 20, self.lost as u32);
        put(out, at + 24, self.out_of_order as u32);
        put(out, at + 28, self.datagrams as u32);
        put(out, at + 32, jit_s);
        put(out, at + 36, jit_us);
        let x2 = at + 100;
        put(out, x2, (self.lost >> 32) as u32);
        put(out, x2 + 4, (self.out_of_order >> 32) as u32);
        put(out, x2 + 8, (self.datagrams >> 32) as u32);
        Ok(need)
    }

    /// Reads a server report datagram as an iperf 2 client does (for tests and a client).
    pub fn parse(b: &[u8], layout: UdpLayout) -> Result<Self, Iperf2Error> {
        let at = layout.header_len();
        let base = at + 40;
        if b.len() < base {
            return Err(Iperf2Error::Truncated { what: "server report", need: base, got: b.len() });
        }
        let fl = word(b, at);
        let hi = |off: usize| -> u64 {
            if fl & flags::SEQNO64B != 0 && b.len() >= at + SERVER_HDR_LEN {
                (word(b, at + 100 + off) as u64) << 32
            } else {
                0
            }
        };
        Ok(ServerReport {
            bytes: (word(b, at + 4) as u64) << 32 | word(b, at + 8) as u64,
            duration_s: word(b, at + 12) as f64 + word(b, at + 16) as f64 / 1e6,
            lost: hi(0) | word(b, at + 20) as u64,
            out_of_order: hi(4) | word(b, at + 24) as u64,
            datagrams: hi(8) | word(b, at + 28) as u64,
            jitter_s: word(b, at + 32) as f64 + word(b, at + 36) as f64 / 1e6,
        })
    }
}

/// A UDP receiver's counters by iperf 2's rules: the highest id seen is the total, a gap
/// adds to the lost count, an id below the next expected one is out of order (and taken
/// back off the lost count at the end), jitter is RFC 1889's smoothed transit difference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UdpCounters {
    pub bytes: u64,
    /// Highest id seen (iperf 2's PacketID).
    pub max_id: u64,
    /// Sum of the gaps.
    pub gaps: u64,
    pub out_of_order: u64,
    /// Datagrams received.
    pub received: u64,
    pub jitter_s: f64,
    last_transit_us: Option<i64>,
}

impl UdpCounters {
    /// Counts one data datagram (id > 0) of `len` bytes, sent at `sent_us` by the client's
    /// clock and received at `arrived_us` by ours (only differences of the two matter).
    pub fn datagram(&mut self, id: u64, len: usize, sent_us: i64, arrived_us: i64) -> Result<(), Iperf2Error> {
        if id == 0 || id > self.max_id.saturating_add(MAX_ID_JUMP) {
            return Err(Iperf2Error::DatagramId(id as i64));
        }
        self.bytes += len as u64;
        self.received += 1;
        let next = self.max_id + 1;
        if id > next {
            self.gaps += id - next;
        } else if id < next {
            self.out_of_order += 1;
        }
        self.max_id = self.max_id.max(id);
        let transit = arrived_us.wrapping_sub(sent_us);
        if let Some(last) = self.last_transit_us {
            let d = transit.wrapping_sub(last).unsigned_abs() as f64 / 1e6;
            self.jitter_s += (d - self.jitter_s) / 16.0;
        }
        self.last_transit_us = Some(transit);
        Ok(())
    }

    /// iperf 2's error count: gaps less late arrivals, never below zero.
    pub fn lost(&self) -> u64 {
        self.gaps.saturating_sub(self.out_of_order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 60 bytes of Debian iperf 2.1.8's `-c -t 1` TCP stream (captured).
    const TCP_218: &str = "4001007800000001000013930000000000000000ffffff9c000000000000000000000000000200010008000300000000000000000000000000000000";

    fn hex(s: &str) -> alloc::vec::Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn parses_a_captured_2_1_8_tcp_header() {
        let b = hex(TCP_218);
        assert_eq!(ClientHeader::wanted_len(word(&b, 0)), 60);
        let h = ClientHeader::parse(&b).unwrap();
        assert_eq!(h.threads(), 1);
        assert_eq!(h.port, 5011);
        assert_eq!(h.amount(), Amount::Time(100));
        assert_eq!(h.mode(), TestMode::Normal);
        let x = h.ext.unwrap();
        assert_eq!((x.version_u, x.version_l), (0x0002_0001, 0x0008_0003));
    }

    #[test]
    fn tells_the_modes_apart() {
        let mut b = hex(TCP_218);
        let set = |b: &mut [u8], f: u32| put(b, 0, f);
        set(&mut b, 0xc001_0079);
        assert_eq!(ClientHeader::parse(&b).unwrap().mode(), TestMode::Dual);
        set(&mut b, 0xc001_0078);
        assert_eq!(ClientHeader::parse(&b).unwrap().mode(), TestMode::Tradeoff);
        // --full-duplex as 2.1.8 sends it: VERSION2 and the upper flag.
        set(&mut b, 0x4401_0078);
        put(&mut b, 32, 0x0800_0000);
        assert_eq!(ClientHeader::parse(&b).unwrap().mode(), TestMode::FullDuplex);
        put(&mut b, 32, 0x0400_0000);
        assert_eq!(ClientHeader::parse(&b).unwrap().mode(), TestMode::Reverse);
    }

    #[test]
    fn a_2_0_5_plain_header_is_24_bytes_and_ignored_flags() {
        let h =
            ClientHeader { flags: 0, num_threads: 2, port: 5001, buffer_len: 0, win_band: 0, amount: -1000, ext: None };
        let mut b = [0u8; 24];
        assert_eq!(h.emit(&mut b).unwrap(), 24);
        let p = ClientHeader::parse(&b).unwrap();
        assert_eq!(p, h);
        assert!(!p.present());
        assert_eq!(p.mode(), TestMode::Normal);
        // An absent header says nothing about threads.
        assert_eq!(p.threads(), 1);
        // 2.0.5's -d: VERSION1 | RUN_NOW, 24 bytes suffice.
        let d = ClientHeader { flags: flags::VERSION1 | flags::RUN_NOW, ..h };
        d.emit(&mut b).unwrap();
        let p = ClientHeader::parse(&b).unwrap();
        assert_eq!((p.mode(), p.threads(), p.amount()), (TestMode::Dual, 2, Amount::Time(1000)));
        assert_eq!(ClientHeader { amount: 20 << 20, ..h }.amount(), Amount::Bytes(20 << 20));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert_eq!(
            ClientHeader::parse(&[0x40, 0, 0]),
            Err(Iperf2Error::Truncated { what: "client header", need: 24, got: 3 })
        );
        let b = hex(TCP_218);
        assert!(matches!(ClientHeader::parse(&b[..40]), Err(Iperf2Error::Truncated { need: 60, got: 40, .. })));
        let mut bad = b.clone();
        put(&mut bad, 4, 0xffff_fffb);
        assert_eq!(ClientHeader::parse(&bad), Err(Iperf2Error::Threads(-5)));
        put(&mut bad, 4, 100_000);
        assert_eq!(ClientHeader::parse(&bad), Err(Iperf2Error::Threads(100_000)));
        assert!(alloc::format!("{}", Iperf2Error::Threads(-5)).contains("-5 parallel streams"));
        // Every prefix and every byte value at every position: no panic.
        for n in 0..b.len() {
            let _ = ClientHeader::parse(&b[..n]);
            let _ = DatagramHeader::parse(&b[..n], UdpLayout::Id64, true);
            let _ = DatagramHeader::client_header(&b[..n], UdpLayout::V1);
            let _ = ServerReport::parse(&b[..n], UdpLayout::Id64);
            for v in [0u8, 0x7f, 0x80, 0xff] {
                let mut m = b.clone();
                m[n] = v;
                let _ = ClientHeader::parse(&m).map(|h| (h.mode(), h.amount(), h.threads()));
            }
        }
    }

    #[test]
    fn datagram_layouts() {
        // 2.1.8 -u: id 0x13, then sec, usec, id2, then flags with EXTEND|SEQNO64B.
        let b = hex(
            "000000136b100b13000b90d4000000004801009800000001000013950000000000000000ffffff9c000000000000000000000000000200010008000300000000001000000000000000000000",
        );
        assert_eq!(UdpLayout::detect(&b), UdpLayout::Id64);
        let d = DatagramHeader::parse(&b, UdpLayout::Id64, true).unwrap();
        assert_eq!((d.id, d.sec, d.usec), (0x13, 0x6b10_0b13, 0x000b_90d4));
        let h = DatagramHeader::client_header(&b, UdpLayout::Id64).unwrap();
        assert_eq!((h.flags & flags::SEQNO64B != 0, h.amount(), h.mode()), (true, Amount::Time(100), TestMode::Normal));
        // The end datagram: -94, as 64 bits (id2 all ones).
        let mut fin = b.clone();
        put(&mut fin, 0, (-94i32) as u32);
        put(&mut fin, 12, 0xffff_ffff);
        assert_eq!(DatagramHeader::parse(&fin, UdpLayout::Id64, true).unwrap().id, -94);
        // 2.0.5: 12-byte datagram header, zero flags, numThreads 1 after it.
        let mut old = [0u8; 40];
        put(&mut old, 0, 7);
        put(&mut old, 16, 1);
        assert_eq!(UdpLayout::detect(&old), UdpLayout::V1);
        assert_eq!(DatagramHeader::parse(&old, UdpLayout::V1, false).unwrap().id, 7);
        put(&mut old, 0, (-9i32) as u32);
        assert_eq!(DatagramHeader::parse(&old, UdpLayout::V1, false).unwrap().id, -9);
        assert!(DatagramHeader::parse(&old[..11], UdpLayout::V1, false).is_err());
    }

    #[test]
    fn server_report_round_trips_at_both_offsets() {
        let r = ServerReport {
            bytes: 13_111_930 + (5 << 32),
            duration_s: 2.000_312,
            lost: 3,
            out_of_order: 1,
            datagrams: 8919,
            jitter_s: 0.000_009,
        };
        for layout in [UdpLayout::V1, UdpLayout::Id64] {
            let mut buf = [0u8; 200];
            let n = r.emit(&mut buf, layout, -8920).unwrap();
            assert_eq!(n, layout.header_len() + SERVER_HDR_LEN);
            let back = ServerReport::parse(&buf[..n], layout).unwrap();
            assert_eq!((back.bytes, back.lost, back.out_of_order, back.datagrams), (r.bytes, 3, 1, 8919));
            assert!((back.duration_s - r.duration_s).abs() < 2e-6);
            assert!((back.jitter_s - r.jitter_s).abs() < 2e-6);
            assert_eq!(DatagramHeader::parse(&buf, layout, true).unwrap().id & 0xffff_ffff, (-8920i64) & 0xffff_ffff);
        }
        assert!(r.emit(&mut [0u8; 50], UdpLayout::Id64, -1).is_err());
    }

    #[test]
    fn counters_follow_iperf2s_rules() {
        let mut c = UdpCounters::default();
        for (i, id) in [1u64, 2, 4, 3, 5, 8].iter().enumerate() {
            c.datagram(*id, 100, i as i64 * 1000, i as i64 * 1000 + 50).unwrap();
        }
        // Gaps: 4 skipped 3 (1), 8 skipped 6 and 7 (2); 3 arrived late (1).
        assert_eq!((c.max_id, c.gaps, c.out_of_order, c.lost(), c.bytes, c.received), (8, 3, 1, 2, 600, 6));
        assert_eq!(c.jitter_s, 0.0);
        assert_eq!(c.datagram(0, 1, 0, 0), Err(Iperf2Error::DatagramId(0)));
        assert!(c.datagram(1 << 40, 1, 0, 0).is_err());
        // A transit that grows by 1 ms moves the jitter a sixteenth of the way.
        let mut j = UdpCounters::default();
        j.datagram(1, 10, 0, 100).unwrap();
        j.datagram(2, 10, 0, 1100).unwrap();
        assert!((j.jitter_s - 0.001 / 16.0).abs() < 1e-12);
    }
}
