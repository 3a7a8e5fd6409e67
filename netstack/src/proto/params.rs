//! The parameter JSON the client sends after PARAM_EXCHANGE. Emission follows the stock
//! 3.12 key order and types exactly (booleans only as `true`, some flags as the integer 1);
//! parsing follows the 3.12 server (presence means on, numbers read leniently) but checks
//! types and ranges so a hostile client gets a clear error instead of a wedged server.

use super::json::{ObjectWriter, get_i64, get_string, parse_object};
use super::limits::{self, Limit};
use super::{DEFAULT_TCP_BLKSIZE, ErrorCode, ProtoError};
use alloc::format;
use alloc::string::String;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As iperf3 names it in `start.test_start.protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TestParams {
    pub protocol: Protocol,
    /// `-O`: seconds omitted at the start.
    pub omit: u32,
    /// `-t`: seconds; 0 with `-n`/`-k` (or unlimited).
    pub time: u32,
    /// `-n`: byte limit, 0 = unused.
    pub num: u64,
    /// `-k`: block limit, 0 = unused.
    pub blockcount: u64,
    /// `-M`: TCP MSS for data sockets.
    pub mss: Option<u32>,
    /// `-N`: TCP_NODELAY on data sockets.
    pub nodelay: bool,
    /// `-P`: streams per direction.
    pub parallel: u32,
    pub reverse: bool,
    pub bidirectional: bool,
    /// `-w`: socket buffer size in bytes.
    pub window: Option<u32>,
    /// `-l`: block or datagram size.
    pub len: u32,
    /// `-b`: bit/s per stream, 0 = unlimited.
    pub bandwidth: u64,
    pub fqrate: Option<u64>,
    pub pacing_timer: Option<u32>,
    pub burst: Option<u32>,
    pub tos: Option<u32>,
    pub title: Option<String>,
    pub extra_data: Option<String>,
    /// `-C`: congestion control algorithm name.
    pub congestion: Option<String>,
    pub get_server_output: bool,
    pub udp_counters_64bit: bool,
    pub repeating_payload: bool,
    pub zerocopy: bool,
    pub dont_fragment: bool,
    /// 3.19+ `--skip-rx-copy`.
    pub skip_rx_copy: bool,
    pub client_version: Option<String>,
}

impl Default for TestParams {
    fn default() -> Self {
        TestParams {
            protocol: Protocol::Tcp,
            omit: 0,
            time: 10,
            num: 0,
            blockcount: 0,
            mss: None,
            nodelay: false,
            parallel: 1,
            reverse: false,
            bidirectional: false,
            window: None,
            len: DEFAULT_TCP_BLKSIZE,
            bandwidth: 0,
            fqrate: None,
            pacing_timer: Some(1000),
            burst: None,
            tos: None,
            title: None,
            extra_data: None,
            congestion: None,
            get_server_output: false,
            udp_counters_64bit: false,
            repeating_payload: false,
            zerocopy: false,
            dont_fragment: false,
            skip_rx_copy: false,
            client_version: Some(String::from(super::IPERF_VERSION)),
        }
    }
}

impl TestParams {
    /// Total data connections the client opens.
    pub fn total_streams(&self) -> u32 {
        if self.bidirectional { self.parallel * 2 } else { self.parallel }
    }

    /// Whether the client sends on the data stream it opens `index`-th (0-based). It opens
    /// its sending streams first: with `--bidir` the first `-P` send and the rest receive.
    /// The server accepts them in the same order, so it sends on exactly the others.
    pub fn client_sends(&self, index: usize) -> bool {
        if self.bidirectional { index < self.parallel as usize } else { !self.reverse }
    }

    /// Whether the server sends on the data stream it accepts `index`-th.
    pub fn server_sends(&self, index: usize) -> bool {
        !self.client_sends(index)
    }

    /// Whether the client sends on at least one stream (its server receives).
    pub fn client_sends_any(&self) -> bool {
        !self.reverse || self.bidirectional
    }

    /// Whether the client receives on at least one stream (its server sends).
    pub fn client_receives_any(&self) -> bool {
        self.reverse || self.bidirectional
    }

    /// The pace of one stream: `-b`, held to `--fq-rate` when that is lower (0: unlimited).
    pub fn stream_rate(&self) -> u64 {
        match (self.bandwidth, self.fqrate.unwrap_or(0)) {
            (b, 0) => b,
            (0, f) => f,
            (b, f) => b.min(f),
        }
    }

    /// `-n` or `-k` as a byte count: what each sending side sends in all (None: ends by time).
    pub fn send_limit(&self) -> Option<u64> {
        if self.num > 0 {
            Some(self.num)
        } else if self.blockcount > 0 {
            Some(self.blockcount.saturating_mul(u64::from(self.len.max(1))))
        } else {
            None
        }
    }

    /// Serialises as the stock 3.12 client does.
    pub fn to_json(&self) -> String {
        let mut w = ObjectWriter::new();
        match self.protocol {
            Protocol::Tcp => w.bool_true("tcp"),
            Protocol::Udp => w.bool_true("udp"),
            Protocol::Sctp => w.bool_true("sctp"),
        }
        w.int("omit", self.omit as i64);
        w.int("time", self.time as i64);
        w.int("num", self.num as i64);
        w.int("blockcount", self.blockcount as i64);
        if let Some(m) = self.mss {
            w.int("MSS", m as i64);
        }
        if self.nodelay {
            w.bool_true("nodelay");
        }
        w.int("parallel", self.parallel as i64);
        if self.reverse {
            w.bool_true("reverse");
        }
        if self.bidirectional {
            w.bool_true("bidirectional");
        }
        if let Some(win) = self.window {
            w.int("window", win as i64);
        }
        w.int("len", self.len as i64);
        if self.bandwidth != 0 {
            w.int("bandwidth", self.bandwidth as i64);
        }
        if let Some(f) = self.fqrate {
            w.int("fqrate", f as i64);
        }
        if let Some(p) = self.pacing_timer {
            w.int("pacing_timer", p as i64);
        }
        if let Some(b) = self.burst {
            w.int("burst", b as i64);
        }
        if let Some(t) = self.tos {
            w.int("TOS", t as i64);
        }
        if let Some(t) = &self.title {
            w.string("title", t);
        }
        if let Some(x) = &self.extra_data {
            w.string("extra_data", x);
        }
        if let Some(c) = &self.congestion {
            w.string("congestion", c);
        }
        for (on, key) in [
            (self.get_server_output, "get_server_output"),
            (self.udp_counters_64bit, "udp_counters_64bit"),
            (self.repeating_payload, "repeating_payload"),
            (self.zerocopy, "zerocopy"),
            (self.dont_fragment, "dont_fragment"),
            (self.skip_rx_copy, "skip_rx_copy"),
        ] {
            if on {
                w.int(key, 1);
            }
        }
        if let Some(v) = &self.client_version {
            w.string("client_version", v);
        }
        w.finish()
    }

    /// Parses a params body as a 3.22 server does: JSON types are checked, and numbers
    /// outside iperf3's ranges are refused with the `i_errno` 3.22 sends for them (e.g. 6 for
    /// `"parallel":0`); anything malformed is IERECVPARAMS. Unknown keys are ignored.
    pub fn parse(body: &[u8]) -> Result<Self, (ErrorCode, String)> {
        let malformed = |e: ProtoError| (ErrorCode::RECV_PARAMS, format!("{e}"));
        let m = parse_object(body).map_err(malformed)?;
        let protocol = match (flag(&m, "tcp"), flag(&m, "udp"), flag(&m, "sctp")) {
            (Ok(tcp), Ok(udp), Ok(sctp)) => match (tcp, udp, sctp) {
                (true, false, false) => Protocol::Tcp,
                (false, true, false) => Protocol::Udp,
                (false, false, true) => Protocol::Sctp,
                (false, false, false) => return Err(malformed(ProtoError::MissingKey("tcp"))),
                _ => {
                    let why = "more than one protocol requested".into();
                    return Err(malformed(ProtoError::BadValue { key: "tcp", why }));
                }
            },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(malformed(e)),
        };
        let limited = |l: &Limit| -> Result<Option<i64>, (ErrorCode, String)> {
            get_i64(&m, l.key).map_err(malformed)?.map(|v| l.check(v)).transpose()
        };
        let count = |key: &'static str| -> Result<Option<u64>, (ErrorCode, String)> {
            match get_i64(&m, key).map_err(malformed)? {
                Some(v) if v < 0 => Err(malformed(ProtoError::BadValue { key, why: format!("negative value {v}") })),
                v => Ok(v.map(|v| v as u64)),
            }
        };
        let on = |key: &'static str| flag(&m, key).map_err(malformed);
        let text = |key: &'static str| get_string(&m, key).map_err(malformed);
        let len = get_i64(&m, "len").map_err(malformed)?.unwrap_or(0);
        let params = TestParams {
            protocol,
            omit: limited(&limits::OMIT)?.unwrap_or(0) as u32,
            time: limited(&limits::TIME)?.unwrap_or(0) as u32,
            num: count("num")?.unwrap_or(0),
            blockcount: count("blockcount")?.unwrap_or(0),
            mss: limited(&limits::MSS)?.map(|v| v as u32).filter(|&v| v != 0),
            nodelay: on("nodelay")?,
            parallel: limited(&limits::PARALLEL)?.unwrap_or(1) as u32,
            reverse: on("reverse")?,
            bidirectional: on("bidirectional")?,
            window: limited(&limits::WINDOW)?.map(|v| v as u32).filter(|&v| v != 0),
            len: len as u32,
            bandwidth: count("bandwidth")?.unwrap_or(0),
            fqrate: count("fqrate")?,
            pacing_timer: count("pacing_timer")?.map(|v| v.min(u32::MAX as u64) as u32),
            burst: limited(&limits::BURST)?.map(|v| v as u32),
            tos: limited(&limits::TOS)?.map(|v| v as u32),
            title: text("title")?,
            extra_data: text("extra_data")?,
            congestion: text("congestion")?,
            get_server_output: on("get_server_output")?,
            udp_counters_64bit: on("udp_counters_64bit")?,
            repeating_payload: on("repeating_payload")?,
            zerocopy: on("zerocopy")?,
            dont_fragment: on("dont_fragment")?,
            skip_rx_copy: on("skip_rx_copy")?,
            client_version: text("client_version")?,
        };
        // Checked after every key, as 3.22 does (0 for UDP: the client picks the size).
        match protocol {
            Protocol::Udp if len != 0 => limits::UDP_LEN.check(len).map(drop)?,
            Protocol::Udp => {}
            _ => limits::TCP_LEN.check(len).map(drop)?,
        }
        Ok(params)
    }

    /// Checks between parameters, with the iperf3 error code a server reports for each (the
    /// ranges of single values are checked by [`Self::parse`] and by the command line).
    pub fn validate(&self) -> Result<(), (ErrorCode, String)> {
        if self.reverse && self.bidirectional {
            return Err((ErrorCode::REVERSE_BIDIR, String::from("reverse and bidirectional")));
        }
        Ok(())
    }
}

/// A boolean parameter: stock clients send `true`; 3.12 servers test presence only.
/// Integer flags (`get_server_output`: 1) count as on when non-zero.
fn flag(m: &Map<String, Value>, key: &'static str) -> Result<bool, ProtoError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v @ Value::Number(_)) => Ok(super::json::lenient_i64(v) != Some(0)),
        Some(_) => Err(ProtoError::BadType { key, expected: "a boolean or integer flag" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from stock iperf3 3.12 clients.
    const DEFAULT_200M: &str = r#"{"tcp":true,"omit":0,"time":2,"num":0,"blockcount":0,"parallel":1,"len":131072,"bandwidth":200000000,"pacing_timer":1000,"client_version":"3.12"}"#;
    const UDP_MANY: &str = r#"{"udp":true,"omit":1,"time":2,"num":0,"blockcount":0,"MSS":1400,"nodelay":true,"parallel":1,"reverse":true,"window":262144,"len":1000,"bandwidth":1000000,"pacing_timer":1000,"TOS":16,"title":"mytitle","extra_data":"xyz","congestion":"cubic","get_server_output":1,"udp_counters_64bit":1,"client_version":"3.12"}"#;

    #[test]
    fn captured_params_round_trip_byte_for_byte() {
        for captured in [DEFAULT_200M, UDP_MANY] {
            let p = TestParams::parse(captured.as_bytes()).unwrap();
            assert_eq!(p.to_json(), captured);
            p.validate().unwrap();
        }
    }

    #[test]
    fn captured_udp_params_decode() {
        let p = TestParams::parse(UDP_MANY.as_bytes()).unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.omit, 1);
        assert_eq!(p.mss, Some(1400));
        assert!(p.nodelay && p.reverse && !p.bidirectional);
        assert_eq!(p.window, Some(262144));
        assert_eq!(p.tos, Some(16));
        assert_eq!(p.congestion.as_deref(), Some("cubic"));
        assert!(p.get_server_output && p.udp_counters_64bit);
    }

    #[test]
    fn presence_means_on_like_312() {
        let p = TestParams::parse(br#"{"tcp":true,"parallel":2,"len":100,"reverse":1}"#).unwrap();
        assert!(p.reverse);
        assert_eq!(p.parallel, 2);
    }

    #[test]
    fn hostile_params_are_rejected_with_the_key_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "malformed JSON"),
            (b"[1,2]", "not an object"),
            (br#"{"omit":0}"#, "\"tcp\""),
            (br#"{"tcp":true,"udp":true}"#, "more than one protocol"),
            (br#"{"tcp":true,"parallel":-3}"#, "\"parallel\""),
            (br#"{"tcp":true,"parallel":"x"}"#, "\"parallel\""),
            (br#"{"tcp":true,"title":5}"#, "\"title\""),
            (br#"{"tcp":true,"time":1e30}"#, "\"time\""),
        ];
        for (body, want) in cases {
            let (_, msg) = TestParams::parse(body).unwrap_err();
            assert!(msg.contains(want), "{} -> {msg}", core::str::from_utf8(body).unwrap());
        }
    }

    /// What a 3.22 server answers (captured with a hand-made client against stock 3.22).
    #[test]
    fn ranges_map_to_the_codes_a_322_server_sends() {
        let cases: &[(&str, ErrorCode)] = &[
            (r#"{"tcp":true,"parallel":0,"len":131072}"#, ErrorCode::NUM_STREAMS),
            (r#"{"tcp":true,"parallel":129,"len":131072}"#, ErrorCode::NUM_STREAMS),
            (r#"{"tcp":true,"len":0}"#, ErrorCode::BLOCK_SIZE),
            (r#"{"tcp":true,"len":2097152}"#, ErrorCode::BLOCK_SIZE),
            (r#"{"tcp":true,"omit":1000,"len":131072}"#, ErrorCode::OMIT),
            (r#"{"tcp":true,"time":-1,"len":131072}"#, ErrorCode::DURATION),
            (r#"{"tcp":true,"time":86401,"len":131072}"#, ErrorCode::DURATION),
            (r#"{"tcp":true,"MSS":40000,"len":131072}"#, ErrorCode::MSS),
            (r#"{"tcp":true,"window":1073741824,"len":131072}"#, ErrorCode::BUF_SIZE),
            (r#"{"tcp":true,"burst":0,"len":131072}"#, ErrorCode::BURST),
            (r#"{"tcp":true,"TOS":256,"len":131072}"#, ErrorCode::BAD_TOS),
            (r#"{"udp":true,"len":8}"#, ErrorCode::UDP_BLOCK_SIZE),
            (r#"{"tcp":true,"num":-5,"len":131072}"#, ErrorCode::RECV_PARAMS),
        ];
        for (body, code) in cases {
            assert_eq!(TestParams::parse(body.as_bytes()).unwrap_err().0, *code, "{body}");
        }
        let p = TestParams { reverse: true, bidirectional: true, ..TestParams::default() };
        assert_eq!(p.validate().unwrap_err().0, ErrorCode::REVERSE_BIDIR);
        // Within range: 3.21 raised the MSS limit to 32767.
        assert!(TestParams::parse(br#"{"tcp":true,"MSS":9000,"len":1000}"#).is_ok());
    }
}
