//! Per-flow TCP time series from the wire: a device wrapper ([`FlowProbe`]) and the state
//! machine behind it ([`FlowTracker`]), which the pcap converter reuses, plus the CSV and
//! JSON Lines formats of the log. The schema is declared once, in `flow_log_columns!` below,
//! and documented in `docs/flowlog.md`.

mod format;
mod probe;
mod rows;
pub mod ship;
mod tracker;

#[cfg(test)]
mod tests;

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

pub use format::{Format, parse_csv_line, parse_jsonl_line, parse_log};
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

    pub const fn name(self) -> &'static str {
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

    pub const fn name(self) -> &'static str {
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

/// The flow-log schema (version 1): every column once, in file order, as `name: type` with a
/// one-line doc. The name is the `FlowSample` field, the CSV header field and the JSON key; the
/// type says how the value is written and read (`Option`: may be absent). Everything that knows
/// the columns is generated from this list — [`FlowSample`], [`COLUMNS`], [`CSV_HEADER`], the
/// row writer (rows.rs) and the readers (format.rs) — by `flow_log_columns!(m)`, which hands it
/// to macro `m`. `docs/flowlog.md`'s column table is checked against it (tests.rs). Columns
/// are only ever appended.
macro_rules! flow_log_columns {
    ($then:ident) => {
        $then! {
            /// Time of the frame (or tick) that produced this sample, µs.
            t_us: u64,
            /// The connection seen from the local side, `LOCALIP:PORT>REMOTEIP:PORT`.
            flow: FlowId,
            /// iperf3 stream id (1, 3, 4, …), -1 if unknown (control connection, unlabelled).
            stream: i64,
            /// Why this sample was taken.
            event: Event,
            /// TCP state inferred from the wire after this event.
            state: TcpState,
            /// Unique payload bytes sent (the highest relative sequence sent).
            bytes_sent: u64,
            /// Payload bytes the peer acknowledged cumulatively.
            bytes_acked: u64,
            /// Payload bytes received in order (the highest cumulative ACK the local side sent).
            bytes_received: u64,
            /// Oldest unacknowledged relative sequence number.
            snd_una: u64,
            /// End of the most recent data segment sent (relative).
            snd_nxt: u64,
            /// Relative start of this row's segment (`ack` rows: the ACK number).
            seg_seq: Option<u64>,
            /// Payload length of that segment.
            seg_len: Option<u32>,
            /// Bytes in flight: the highest relative sequence sent minus `snd_una`.
            inflight: u32,
            /// Congestion window estimate, bytes, 0 while unknown.
            cwnd_est: u32,
            /// The RTT sample taken on this row (`interval` rows: the interval's latest), µs.
            rtt_us: Option<u32>,
            /// Smoothed RTT per RFC 6298, µs.
            srtt_us: Option<u32>,
            /// RTT variation per RFC 6298, µs.
            rttvar_us: Option<u32>,
            /// Receive window the peer last advertised, scaled, bytes.
            peer_wnd: u32,
            /// Receive window the local side last advertised, scaled, bytes.
            local_wnd: u32,
            /// Cumulative segments retransmitted as fast retransmits (MSS units).
            retx_fast_segs: u64,
            /// Cumulative payload bytes retransmitted as fast retransmits.
            retx_fast_bytes: u64,
            /// Cumulative segments retransmitted on timeout (MSS units).
            retx_rto_segs: u64,
            /// Cumulative payload bytes retransmitted on timeout.
            retx_rto_bytes: u64,
            /// Cumulative duplicate ACKs received.
            dupacks: u64,
            /// Cumulative times the peer's advertised window went from non-zero to 0.
            zero_wnd_events: u64,
        }
    };
}
pub(crate) use flow_log_columns;

/// One column of the flow log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The CSV header field and JSON key (and the [`FlowSample`] field).
    pub name: &'static str,
    /// The type as `docs/flowlog.md` writes it: `u64`, `u32`, `i64`, `string`; `u64?`, `u32?`
    /// may be absent (an empty CSV field, JSON `null`).
    pub ty: &'static str,
    /// What it holds, in one line.
    pub doc: &'static str,
}

/// The kinds of value a column can hold, named as in `docs/flowlog.md`.
trait ColumnType {
    const NAME: &'static str;
}

macro_rules! column_types {
    ($($ty:ty => $name:literal),+ $(,)?) => {
        $(impl ColumnType for $ty {
            const NAME: &'static str = $name;
        })+
    };
}

column_types! {
    u64 => "u64", u32 => "u32", i64 => "i64", Option<u64> => "u64?", Option<u32> => "u32?",
    FlowId => "string", Event => "string", TcpState => "string",
}

/// `a,b,c` from the identifiers `a b c`.
macro_rules! comma_separated {
    ($first:ident $($rest:ident)*) => {
        concat!(stringify!($first), $(",", stringify!($rest)),*)
    };
}

macro_rules! define_flow_sample {
    ($(#[doc = $doc:literal] $name:ident: $ty:ty,)+) => {
        /// One row of the flow log: the columns of [`COLUMNS`], in order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct FlowSample {
            $(#[doc = $doc] pub $name: $ty,)+
        }

        /// The columns of the flow log, in file order.
        pub const COLUMNS: &[Column] = &[$(Column {
            name: stringify!($name),
            ty: <$ty as ColumnType>::NAME,
            doc: $doc.trim_ascii(),
        }),+];

        /// The CSV header line (without newline): the column names in order.
        pub const CSV_HEADER: &str = comma_separated!($($name)+);
    };
}

flow_log_columns!(define_flow_sample);

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
