//! The report model and its writers. Role state machines describe what happened (a test
//! started, an interval ended, the test ended) with the plain structs below; the [`Reporter`]
//! turns them into iperf3 3.12's text, `-J` JSON or `--json-stream` lines, so scripts that parse
//! iperf3 parse ours. Output accumulates in a buffer that the platform drains.

use alloc::string::String;
use alloc::vec::Vec;

pub(crate) mod json;
mod text;
pub mod time;
mod writer;

pub use writer::Reporter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    /// `-J`: one pretty document per test.
    Json,
    /// `--json-stream`: one compact `{"event":…,"data":…}` object per line.
    JsonStream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

#[derive(Clone, Debug)]
pub struct ReportConfig {
    pub side: Side,
    pub format: OutputFormat,
    /// `--json-stream-full-output`: with `JsonStream`, the whole `-J` document after `end`.
    pub full_document: bool,
    /// `-f`: 'k','m','g','t' (bits), 'K','M','G','T' (bytes), or 'a' (adaptive bits, default).
    pub unit: char,
    /// `-V`.
    pub verbose: bool,
    /// `-T`: prefix for every text line (`"title:  "`), and `title` in JSON.
    pub title: Option<String>,
    /// `--forceflush` is honoured by the platform; kept here so writers can mark flush points.
    pub forceflush: bool,
}

/// One data connection, as `start.connected[]` and the `[  5] local … connected to …` line.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectedStream {
    /// iperf3 prints the socket fd; we print a small per-test number with the same role.
    pub socket: i32,
    pub local_host: String,
    pub local_port: u16,
    pub remote_host: String,
    pub remote_port: u16,
}

impl ConnectedStream {
    pub fn new(socket: i32, local: smoltcp::wire::IpEndpoint, remote: smoltcp::wire::IpEndpoint) -> Self {
        use alloc::string::ToString;
        ConnectedStream {
            socket,
            local_host: local.addr.to_string(),
            local_port: local.port,
            remote_host: remote.addr.to_string(),
            remote_port: remote.port,
        }
    }
}

/// Everything in the JSON `start` object that is known when the test starts.
#[derive(Clone, Debug, PartialEq)]
pub struct TestStartInfo {
    /// e.g. "uniperf 0.1.0 (iperf 3.12 protocol)".
    pub version: String,
    pub system_info: String,
    /// Milliseconds since the epoch: `timestamp.timemillisecs` (3.20+), `timesecs`, and
    /// `time` rendered RFC 1123 in GMT.
    pub timestamp_ms: Option<u64>,
    /// Client: `connecting_to`; server: `accepted_connection`.
    pub peer_host: String,
    pub peer_port: u16,
    pub cookie: String,
    /// `tcp_mss_default`, or `tcp_mss` when the MSS was set with `-M`.
    pub tcp_mss: u32,
    pub mss_was_set: bool,
    pub target_bitrate: u64,
    /// `--fq-rate` (3.13+ `fq_rate`, `test_start.fqrate`).
    pub fq_rate: u64,
    /// This side's `-i` (3.17+ `test_start.interval`).
    pub interval: f64,
    pub sock_bufsize: u32,
    pub sndbuf_actual: u32,
    pub rcvbuf_actual: u32,
    /// "TCP" or "UDP".
    pub protocol: &'static str,
    pub num_streams: u32,
    pub blksize: u32,
    pub omit: u32,
    pub duration: u32,
    pub bytes: u64,
    pub blocks: u64,
    pub reverse: bool,
    pub bidir: bool,
    pub tos: u32,
    pub title: Option<String>,
    pub extra_data: Option<String>,
    /// Congestion control in use on the data sockets ("reno", "cubic", "none").
    pub congestion: Option<String>,
    /// `-Z` / `--skip-rx-copy` were asked for (`-V` says what they do here).
    pub zerocopy: bool,
    pub skip_rx_copy: bool,
}

impl TestStartInfo {
    /// The parts that follow from the test's parameters and data-socket set-up; the caller
    /// fills in who and where (version, system, time, peer, cookie) with struct update syntax.
    pub fn for_test(
        p: &crate::proto::TestParams,
        spec: &crate::stack::SocketSpec,
        congestion: crate::stack::Congestion,
        mss: u32,
    ) -> Self {
        TestStartInfo {
            version: String::new(),
            system_info: String::new(),
            timestamp_ms: None,
            peer_host: String::new(),
            peer_port: 0,
            cookie: String::new(),
            tcp_mss: mss,
            mss_was_set: false,
            target_bitrate: p.bandwidth,
            fq_rate: p.fqrate.unwrap_or(0),
            interval: 0.0,
            sock_bufsize: p.window.unwrap_or(0),
            sndbuf_actual: spec.tx as u32,
            rcvbuf_actual: spec.rx as u32,
            protocol: p.protocol.name(),
            num_streams: p.parallel,
            blksize: p.len,
            omit: p.omit,
            duration: p.time,
            bytes: p.num,
            blocks: p.blockcount,
            reverse: p.reverse,
            bidir: p.bidirectional,
            tos: p.tos.unwrap_or(0),
            title: p.title.clone(),
            extra_data: p.extra_data.clone(),
            congestion: Some(String::from(congestion.name())),
            zerocopy: p.zerocopy,
            skip_rx_copy: p.skip_rx_copy,
        }
    }
}

/// TCP sender details where known (from a flow probe); absent means iperf3's "no TCP_INFO"
/// output shape (no `retransmits`, `snd_cwnd`… keys; no Retr/Cwnd text columns).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TcpSenderInfo {
    pub retransmits: i64,
    pub snd_cwnd: u64,
    pub snd_wnd: u64,
    /// Microseconds.
    pub rtt: u64,
    pub rttvar: u64,
    pub pmtu: u32,
    /// Reordering events seen (3.20+ `reorder`).
    pub reorder: i64,
}

/// A UDP stream's datagram figures for an interval or a summary: a sender's count, or what
/// its receiver saw (iperf3's `packets`, `lost_packets`, `out_of_order`, `jitter_ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UdpFigures {
    pub packets: u64,
    pub lost: i64,
    pub out_of_order: u64,
    /// Seconds.
    pub jitter: f64,
}

impl UdpFigures {
    /// `lost_percent`: 0 when nothing was counted.
    pub fn lost_percent(&self) -> f64 {
        if self.packets > 0 { 100.0 * self.lost as f64 / self.packets as f64 } else { 0.0 }
    }
}

/// One stream's share of one interval. Times are seconds since the test (or omit) start.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalStream {
    pub socket: i32,
    pub start: f64,
    pub end: f64,
    pub bytes: u64,
    pub omitted: bool,
    /// True when this side sends on the stream.
    pub sender: bool,
    pub tcp: Option<TcpSenderInfo>,
    /// UDP tests only.
    pub udp: Option<UdpFigures>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IntervalReport {
    pub streams: Vec<IntervalStream>,
}

/// One side (sender or receiver) of one stream's end summary.
#[derive(Clone, Debug, PartialEq)]
pub struct EndSide {
    pub start: f64,
    pub end: f64,
    pub seconds: f64,
    pub bytes: u64,
    /// Sender side only, where known.
    pub tcp: Option<EndTcpInfo>,
    /// UDP tests only: the sender's datagram count, or what the receiver saw.
    pub udp: Option<UdpFigures>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EndTcpInfo {
    pub retransmits: i64,
    pub max_snd_cwnd: u64,
    pub max_snd_wnd: u64,
    pub max_rtt: u64,
    pub min_rtt: u64,
    pub mean_rtt: u64,
    pub reorder: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EndStream {
    pub socket: i32,
    /// True when this side sends on the stream (selects `sum_sent`/`sum` vs the bidir-reverse sums).
    pub local_is_sender: bool,
    pub sender: EndSide,
    pub receiver: EndSide,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUtil {
    pub host_total: f64,
    pub host_user: f64,
    pub host_system: f64,
    pub remote_total: f64,
    pub remote_user: f64,
    pub remote_system: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TestEndInfo {
    pub streams: Vec<EndStream>,
    pub cpu: CpuUtil,
    pub sender_tcp_congestion: Option<String>,
    pub receiver_tcp_congestion: Option<String>,
}
