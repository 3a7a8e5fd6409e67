//! The parameter JSON the client sends after PARAM_EXCHANGE. Emission follows the stock
//! 3.12 key order and types exactly (booleans only as `true`, some flags as the integer 1);
//! parsing follows the 3.12 server (presence means on, numbers read leniently) but checks
//! types and ranges so a hostile client gets a clear error instead of a wedged server.

use super::json::{ObjectWriter, get_i64, get_string, parse_object};
use super::{DEFAULT_TCP_BLKSIZE, ErrorCode, MAX_STREAMS, MAX_TCP_BLKSIZE, ProtoError};
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
            client_version: Some(String::from(super::IPERF_VERSION)),
        }
    }
}

impl TestParams {
    /// Total data connections the client opens.
    pub fn total_streams(&self) -> u32 {
        if self.bidirectional { self.parallel * 2 } else { self.parallel }
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

    /// Parses a params body. Checks JSON types; ranges are checked by [`Self::validate`].
    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let m = parse_object(body)?;
        let protocol = match (flag(&m, "tcp")?, flag(&m, "udp")?, flag(&m, "sctp")?) {
            (true, false, false) => Protocol::Tcp,
            (false, true, false) => Protocol::Udp,
            (false, false, true) => Protocol::Sctp,
            (false, false, false) => return Err(ProtoError::MissingKey("tcp")),
            _ => {
                return Err(ProtoError::BadValue { key: "tcp", why: "more than one protocol requested".into() });
            }
        };
        Ok(TestParams {
            protocol,
            omit: uint(&m, "omit", u32::MAX as u64)?.unwrap_or(0) as u32,
            time: uint(&m, "time", u32::MAX as u64)?.unwrap_or(0) as u32,
            num: uint(&m, "num", i64::MAX as u64)?.unwrap_or(0),
            blockcount: uint(&m, "blockcount", i64::MAX as u64)?.unwrap_or(0),
            mss: uint(&m, "MSS", u32::MAX as u64)?.map(|v| v as u32).filter(|&v| v != 0),
            nodelay: flag(&m, "nodelay")?,
            parallel: uint(&m, "parallel", u32::MAX as u64)?.unwrap_or(1) as u32,
            reverse: flag(&m, "reverse")?,
            bidirectional: flag(&m, "bidirectional")?,
            window: uint(&m, "window", u32::MAX as u64)?.map(|v| v as u32).filter(|&v| v != 0),
            len: uint(&m, "len", u32::MAX as u64)?.unwrap_or(0) as u32,
            bandwidth: uint(&m, "bandwidth", i64::MAX as u64)?.unwrap_or(0),
            fqrate: uint(&m, "fqrate", i64::MAX as u64)?,
            pacing_timer: uint(&m, "pacing_timer", u32::MAX as u64)?.map(|v| v as u32),
            burst: uint(&m, "burst", u32::MAX as u64)?.map(|v| v as u32),
            tos: uint(&m, "TOS", u32::MAX as u64)?.map(|v| v as u32),
            title: get_string(&m, "title")?,
            extra_data: get_string(&m, "extra_data")?,
            congestion: get_string(&m, "congestion")?,
            get_server_output: flag(&m, "get_server_output")?,
            udp_counters_64bit: flag(&m, "udp_counters_64bit")?,
            repeating_payload: flag(&m, "repeating_payload")?,
            zerocopy: flag(&m, "zerocopy")?,
            dont_fragment: flag(&m, "dont_fragment")?,
            client_version: get_string(&m, "client_version")?,
        })
    }

    /// Range checks, with the iperf3 error code a server reports for each.
    pub fn validate(&self) -> Result<(), (ErrorCode, String)> {
        if self.parallel == 0 || self.parallel > MAX_STREAMS {
            return Err((ErrorCode::NUM_STREAMS, format!("parallel = {} (1-128)", self.parallel)));
        }
        if self.time > 86400 {
            return Err((ErrorCode::DURATION, format!("time = {} s (0-86400)", self.time)));
        }
        if self.omit > 600 {
            return Err((ErrorCode::OMIT, format!("omit = {} s (0-600)", self.omit)));
        }
        if self.reverse && self.bidirectional {
            return Err((ErrorCode::REVERSE_BIDIR, String::from("reverse and bidirectional")));
        }
        match self.protocol {
            Protocol::Tcp if self.len == 0 || self.len > MAX_TCP_BLKSIZE => {
                return Err((ErrorCode::BLOCK_SIZE, format!("len = {} (1-1048576)", self.len)));
            }
            Protocol::Udp if !(16..=65507).contains(&self.len) => {
                return Err((ErrorCode(20), format!("UDP len = {} (16-65507)", self.len)));
            }
            _ => {}
        }
        if let Some(w) = self.window
            && w > 512 * 1024 * 1024
        {
            return Err((ErrorCode::BUF_SIZE, format!("window = {w} (max 536870912)")));
        }
        if let Some(m) = self.mss
            && m > 9216
        {
            return Err((ErrorCode::MSS, format!("MSS = {m} (max 9216)")));
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

fn uint(m: &Map<String, Value>, key: &'static str, max: u64) -> Result<Option<u64>, ProtoError> {
    match get_i64(m, key)? {
        None => Ok(None),
        Some(v) if v < 0 => Err(ProtoError::BadValue { key, why: format!("negative value {v}") }),
        Some(v) if v as u64 > max => Err(ProtoError::BadValue { key, why: format!("{v} is larger than {max}") }),
        Some(v) => Ok(Some(v as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from stock iperf3 3.12 clients (research notes §1.3 and §2.2).
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
            let e = TestParams::parse(body).unwrap_err();
            let msg = format!("{e}");
            assert!(msg.contains(want), "{} -> {msg}", core::str::from_utf8(body).unwrap());
        }
    }

    #[test]
    fn ranges_map_to_iperf_error_codes() {
        let p = TestParams { parallel: 129, ..TestParams::default() };
        assert_eq!(p.validate().unwrap_err().0, ErrorCode::NUM_STREAMS);
        let p = TestParams { len: 2 * 1024 * 1024, ..TestParams::default() };
        assert_eq!(p.validate().unwrap_err().0, ErrorCode::BLOCK_SIZE);
        let p = TestParams { reverse: true, bidirectional: true, ..TestParams::default() };
        assert_eq!(p.validate().unwrap_err().0, ErrorCode::REVERSE_BIDIR);
    }
}
