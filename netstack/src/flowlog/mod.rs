//! Per-flow TCP time series from the wire: a device wrapper ([`FlowProbe`]) and the state
//! machine behind it ([`FlowTracker`]), which the pcap converter reuses, plus the CSV and
//! JSON Lines formats of the log. The schema is documented in `docs/flowlog.md`.

mod format;
mod probe;
mod rows;
mod tracker;

#[cfg(test)]
mod tests;

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

pub use format::{
    CSV_HEADER, Format, parse_csv_line, parse_jsonl_line, parse_log, write_csv, write_csv_header, write_jsonl,
    write_sample,
};
pub use probe::{FlowProbe, ProbeRxToken, ProbeTxToken};
pub use rows::RowWriter;
pub use tracker::{FlowTracker, RTT_RING, SampleSink, SegmentInfo, TrackerStats, peek_segment};

/// Which way a frame went, seen from the local stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Sent by the local stack.
    Tx,
    /// Received by the local stack.
    Rx,
}

/// When samples are taken (besides the events that are always logged: retransmissions,
/// zero windows, state changes, `final`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// One sample per ACK that acknowledges new data, duplicate ACK, and ACK the local side
    /// sends for new data.
    EveryAck,
    /// At most one `interval` sample per flow every this many milliseconds (0 acts as 1).
    Interval(u32),
    /// No samples at all: the tracker only keeps per-flow state (TCP_INFO for the reports).
    Off,
}

/// Settings of a [`FlowTracker`] / [`FlowProbe`]. Build with `..ProbeConfig::default()`: fields
/// may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub sampling: Sampling,
    /// Samples kept in memory at most; later ones are dropped and counted. Ignored while a
    /// sink is set.
    pub max_samples: usize,
    /// Flows tracked at most; frames of further flows are counted and ignored.
    pub max_flows: usize,
}

impl ProbeConfig {
    /// Flow state only, for TCP_INFO when no flow log is wanted.
    pub fn state_only() -> Self {
        ProbeConfig { sampling: Sampling::Off, max_samples: 0, ..ProbeConfig::default() }
    }
}

impl Default for ProbeConfig {
    /// Every ACK, up to 100 000 samples (about 20 MB), 256 flows.
    fn default() -> Self {
        ProbeConfig { sampling: Sampling::EveryAck, max_samples: 100_000, max_flows: 256 }
    }
}

/// A TCP connection seen from the local stack: `local>remote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

impl FlowId {
    pub fn new(local: SocketAddrV4, remote: SocketAddrV4) -> Self {
        FlowId { local, remote }
    }

    /// The same connection seen from the other end.
    pub fn reversed(self) -> Self {
        FlowId { local: self.remote, remote: self.local }
    }
}

impl Default for FlowId {
    fn default() -> Self {
        let zero = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        FlowId { local: zero, remote: zero }
    }
}

impl fmt::Display for FlowId {
    /// `198.18.0.2:40000>198.18.0.1:5201`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}>{}", self.local, self.remote)
    }
}

impl core::str::FromStr for FlowId {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (l, r) = s.split_once('>').ok_or("expected LOCALIP:PORT>REMOTEIP:PORT")?;
        let local = l.parse().map_err(|_| "bad local IPv4 address:port")?;
        let remote = r.parse().map_err(|_| "bad remote IPv4 address:port")?;
        Ok(FlowId { local, remote })
    }
}

/// Why a sample was taken (`event` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Event {
    Ack,
    DupAck,
    AckSent,
    #[default]
    Interval,
    RetxFast,
    RetxRto,
    ZeroWindow,
    State,
    Final,
}

impl Event {
    pub const ALL: [Event; 9] = [
        Event::Ack,
        Event::DupAck,
        Event::AckSent,
        Event::Interval,
        Event::RetxFast,
        Event::RetxRto,
        Event::ZeroWindow,
        Event::State,
        Event::Final,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::Ack => "ack",
            Event::DupAck => "dupack",
            Event::AckSent => "ack_sent",
            Event::Interval => "interval",
            Event::RetxFast => "retx_fast",
            Event::RetxRto => "retx_rto",
            Event::ZeroWindow => "zero_window",
            Event::State => "state",
            Event::Final => "final",
        }
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// TCP state inferred from the segments both ways (`state` column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No SYN seen (capture started mid-flow) and no data yet.
    #[default]
    Unknown,
    SynSent,
    SynReceived,
    Established,
    /// The local side sent FIN first.
    FinWait,
    /// The peer sent FIN first.
    CloseWait,
    /// Both FINs sent, not both acknowledged.
    Closing,
    /// Both FINs acknowledged.
    Closed,
    /// An RST went either way.
    Reset,
}

impl TcpState {
    pub const ALL: [TcpState; 9] = [
        TcpState::Unknown,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::Closing,
        TcpState::Closed,
        TcpState::Reset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TcpState::Unknown => "unknown",
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::FinWait => "fin_wait",
            TcpState::CloseWait => "close_wait",
            TcpState::Closing => "closing",
            TcpState::Closed => "closed",
            TcpState::Reset => "reset",
        }
    }

    pub fn from_name(name: &str) -> Option<TcpState> {
        TcpState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One row of the flow log; fields are the columns of `docs/flowlog.md`, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSample {
    pub t_us: u64,
    pub flow: FlowId,
    /// iperf3 stream id, -1 if unknown.
    pub stream: i64,
    pub event: Event,
    pub state: TcpState,
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub snd_una: u64,
    pub snd_nxt: u64,
    pub seg_seq: Option<u64>,
    pub seg_len: Option<u32>,
    pub inflight: u32,
    pub cwnd_est: u32,
    pub rtt_us: Option<u32>,
    pub srtt_us: Option<u32>,
    pub rttvar_us: Option<u32>,
    pub peer_wnd: u32,
    pub local_wnd: u32,
    pub retx_fast_segs: u64,
    pub retx_fast_bytes: u64,
    pub retx_rto_segs: u64,
    pub retx_rto_bytes: u64,
    pub dupacks: u64,
    pub zero_wnd_events: u64,
}

/// Totals of one flow, for summaries (`FlowTracker::flows`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FlowSummary {
    pub flow: FlowId,
    pub stream: i64,
    pub state: TcpState,
    /// First and last frame of the flow, µs.
    pub first_us: u64,
    pub last_us: u64,
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub retx_fast_segs: u64,
    pub retx_fast_bytes: u64,
    pub retx_rto_segs: u64,
    pub retx_rto_bytes: u64,
    pub dupacks: u64,
    pub zero_wnd_events: u64,
    pub rtt_samples: u64,
    pub rtt_min_us: Option<u32>,
    pub rtt_mean_us: Option<u32>,
    pub rtt_max_us: Option<u32>,
    pub srtt_us: Option<u32>,
    pub rttvar_us: Option<u32>,
    /// The peer's receive window as last advertised (scaled), bytes.
    pub peer_wnd: u32,
    /// Duplicate-ACK runs that ended without a retransmission: segments the peer got late.
    pub reorder: u64,
    pub max_inflight: u32,
    pub cwnd_est: u32,
    /// MSS used for segment counting (the smaller MSS option of the handshake), 0 if unknown.
    pub mss: u32,
    /// Window scale shifts from the SYNs (None: not seen / not offered).
    pub local_wscale: Option<u8>,
    pub peer_wscale: Option<u8>,
    /// Initial sequence numbers from the SYNs (None: not seen); relative sequence numbers
    /// count from ISN + 1.
    pub local_isn: Option<u32>,
    pub peer_isn: Option<u32>,
    /// Samples this flow produced (including dropped ones).
    pub samples: u64,
}

impl FlowSummary {
    pub fn retx_segs(&self) -> u64 {
        self.retx_fast_segs + self.retx_rto_segs
    }
    pub fn retx_bytes(&self) -> u64 {
        self.retx_fast_bytes + self.retx_rto_bytes
    }
}
