//! [`FlowTracker`]: per-flow TCP state rebuilt from the segments both ways, turned into
//! [`FlowSample`]s. It sees only headers, so everything here is an inference from the wire;
//! `docs/flowlog.md` says how each column is derived.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};

use super::{Dir, Event, FlowId, FlowSample, FlowSummary, ProbeConfig, Sampling, TcpState};

/// RTT timing entries per flow (preallocated when the flow is first seen).
pub const RTT_RING: usize = 1024;
/// A retransmission within SRTT/2 of the last ACK, clamped to these bounds (the upper one
/// when there is no SRTT yet), is ACK-clocked (fast); later, timer-driven (timeout, TLP).
const ACK_CLOCK_MIN_GAP_US: u64 = 1_000;
const ACK_CLOCK_MAX_GAP_US: u64 = 100_000;
const ACK_CLOCK_NO_SRTT_GAP_US: u64 = 50_000;
/// Sample storage grows by this many samples at a time.
const SAMPLE_CHUNK: usize = 4096;

/// Frame counters of a tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub frames: u64,
    pub tcp_segments: u64,
    /// Not IPv4/TCP (ARP, UDP, IPv6, VLAN, fragments).
    pub ignored: u64,
    /// Too short or inconsistent headers.
    pub malformed: u64,
    /// Segments of flows beyond `max_flows`.
    pub untracked: u64,
}

/// A callback that receives each sample as it is taken (instead of the buffer).
pub type SampleSink = Box<dyn FnMut(&FlowSample) + Send>;

/// The header fields of one TCP segment that the tracker uses.
#[derive(Clone, Copy, Debug)]
struct Segment {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    syn: bool,
    ack_flag: bool,
    fin: bool,
    rst: bool,
    window: u16,
    payload: u32,
    mss: Option<u16>,
    wscale: Option<u8>,
}

/// What went wrong parsing a frame.
enum Skip {
    NotTcp,
    Malformed,
}

/// Reads the IPv4/TCP headers of `packet`. The payload may be truncated (pcap snap length):
/// its length comes from the IP total length.
fn parse_ipv4(packet: &[u8]) -> Result<Segment, Skip> {
    if packet.len() < 20 {
        return Err(Skip::Malformed);
    }
    let ip = Ipv4Packet::new_unchecked(packet);
    if ip.version() != 4 {
        return Err(Skip::NotTcp);
    }
    let ihl = usize::from(ip.header_len());
    if ihl < 20 || ihl > packet.len() {
        return Err(Skip::Malformed);
    }
    if ip.next_header() != IpProtocol::Tcp {
        return Err(Skip::NotTcp);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(Skip::NotTcp);
    }
    // smoltcp writes 0 for TSO super-segments above 65535 bytes: then the frame is the packet.
    let total = match usize::from(ip.total_len()) {
        0 => packet.len(),
        n => n,
    };
    if total < ihl {
        return Err(Skip::Malformed);
    }
    let tcp_bytes = &packet[ihl..];
    if tcp_bytes.len() < 20 {
        return Err(Skip::Malformed);
    }
    let tcp = TcpPacket::new_unchecked(tcp_bytes);
    let thl = usize::from(tcp.header_len());
    if thl < 20 || thl > tcp_bytes.len() || ihl + thl > total {
        return Err(Skip::Malformed);
    }
    let (mut mss, mut wscale) = (None, None);
    if tcp.syn() {
        parse_options(&tcp_bytes[20..thl], &mut mss, &mut wscale);
    }
    let payload = u32::try_from(total - ihl - thl).unwrap_or(u32::MAX);
    Ok(Segment {
        src: SocketAddrV4::new(Ipv4Addr::from(ip.src_addr().octets()), tcp.src_port()),
        dst: SocketAddrV4::new(Ipv4Addr::from(ip.dst_addr().octets()), tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        window: tcp.window_len(),
        payload,
        mss,
        wscale,
    })
}

/// The addressing of one TCP segment, for tools that look at captures before tracking them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub syn: bool,
    pub ack: bool,
    /// Payload length from the IP total length (the bytes may be truncated in a capture).
    pub payload_len: u32,
    /// Offset of the payload within the packet.
    pub payload_offset: usize,
}

/// Parses the IPv4 and TCP headers of `packet` (no link header); None if it is not a
/// well-formed, unfragmented IPv4 TCP segment.
pub fn peek_segment(packet: &[u8]) -> Option<SegmentInfo> {
    let seg = parse_ipv4(packet).ok()?;
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let thl = usize::from(packet.get(ihl + 12)? >> 4) * 4;
    Some(SegmentInfo {
        src: seg.src,
        dst: seg.dst,
        syn: seg.syn,
        ack: seg.ack_flag,
        payload_len: seg.payload,
        payload_offset: ihl + thl,
    })
}

/// MSS and window-scale options; stops quietly at anything malformed.
fn parse_options(mut opts: &[u8], mss: &mut Option<u16>, wscale: &mut Option<u8>) {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return,
            1 => opts = &opts[1..],
            _ => {
                let Some(&len) = opts.get(1) else { return };
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    return;
                }
                match (kind, len) {
                    (2, 4) => *mss = Some(u16::from_be_bytes([opts[2], opts[3]])),
                    // RFC 7323: shifts above 14 are treated as 14.
                    (3, 3) => *wscale = Some(opts[2].min(14)),
                    _ => {}
                }
                opts = &opts[len..];
            }
        }
    }
}

/// Maps a 32-bit sequence number to a 64-bit offset from `base`, choosing the value nearest
/// to `reference` (an offset already seen in that sequence space).
fn unwrap_seq(seq: u32, base: u32, reference: u64) -> i64 {
    let near = base.wrapping_add(reference as u32);
    reference as i64 + i64::from(seq.wrapping_sub(near) as i32)
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recovery {
    None,
    /// Fast retransmit in progress until `snd_una` reaches the point.
    Fast(u64),
    /// Timeout recovery (go-back-N) until `snd_una` reaches the point.
    Timeout(u64),
}

/// State of one connection.
struct Flow {
    id: FlowId,
    stream: i64,
    state: TcpState,
    first_us: u64,
    last_us: u64,

    // Local sending side, offsets relative to `local_base` (the first byte after our SYN).
    local_base: Option<u32>,
    local_isn: Option<u32>,
    snd_una: u64,
    snd_nxt: u64,
    snd_max: u64,
    local_fin: Option<u64>,
    // Peer sending side, relative to `peer_base`.
    peer_base: Option<u32>,
    peer_isn: Option<u32>,
    rcv_ack: u64,
    peer_max: u64,
    peer_fin: Option<u64>,

    local_wscale: Option<u8>,
    peer_wscale: Option<u8>,
    local_syn_seen: bool,
    peer_syn_seen: bool,
    local_mss: Option<u16>,
    peer_mss: Option<u16>,
    peer_wnd: u32,
    peer_wnd_raw: Option<u16>,
    local_wnd: u32,

    retx_fast_segs: u64,
    retx_fast_bytes: u64,
    retx_rto_segs: u64,
    retx_rto_bytes: u64,
    dupacks: u64,
    zero_wnd_events: u64,
    /// Duplicate ACKs since the last advance, and the retransmission count when they began.
    dup_run: u64,
    dup_run_retx: u64,
    reorder: u64,
    recovery: Recovery,
    last_rx_ack_us: Option<u64>,

    rtt_ring: VecDeque<(u64, u64)>,
    srtt_us: Option<u64>,
    rttvar_us: u64,
    rtt_samples: u64,
    rtt_min: u64,
    rtt_max: u64,
    rtt_sum: u64,
    interval_rtt: Option<u32>,

    round_end: Option<u64>,
    round_max: u64,
    round_limited: bool,
    rounds: u64,
    cwnd_est: u64,
    max_inflight: u64,

    next_interval_us: u64,
    samples: u64,
}

impl Flow {
    fn new(id: FlowId, stream: i64, t_us: u64) -> Flow {
        Flow {
            id,
            stream,
            state: TcpState::Unknown,
            first_us: t_us,
            last_us: t_us,
            local_base: None,
            local_isn: None,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            local_fin: None,
            peer_base: None,
            peer_isn: None,
            rcv_ack: 0,
            peer_max: 0,
            peer_fin: None,
            local_wscale: None,
            peer_wscale: None,
            local_syn_seen: false,
            peer_syn_seen: false,
            local_mss: None,
            peer_mss: None,
            peer_wnd: 0,
            peer_wnd_raw: None,
            local_wnd: 0,
            retx_fast_segs: 0,
            retx_fast_bytes: 0,
            retx_rto_segs: 0,
            retx_rto_bytes: 0,
            dupacks: 0,
            zero_wnd_events: 0,
            dup_run: 0,
            dup_run_retx: 0,
            reorder: 0,
            recovery: Recovery::None,
            last_rx_ack_us: None,
            rtt_ring: VecDeque::with_capacity(RTT_RING),
            srtt_us: None,
            rttvar_us: 0,
            rtt_samples: 0,
            rtt_min: u64::MAX,
            rtt_max: 0,
            rtt_sum: 0,
            interval_rtt: None,
            round_end: None,
            round_max: 0,
            round_limited: false,
            rounds: 0,
            cwnd_est: 0,
            max_inflight: 0,
            next_interval_us: t_us,
            samples: 0,
        }
    }

    /// Window shifts apply only if both SYNs offered the option (RFC 7323).
    fn shifts(&self) -> (u8, u8) {
        match (self.local_wscale, self.peer_wscale) {
            (Some(l), Some(p)) => (l, p),
            _ => (0, 0),
        }
    }

    fn mss(&self) -> Option<u32> {
        match (self.local_mss, self.peer_mss) {
            (Some(a), Some(b)) => Some(u32::from(a.min(b))),
            (Some(a), None) | (None, Some(a)) => Some(u32::from(a)),
            (None, None) => None,
        }
        .filter(|&m| m > 0)
    }

    fn segs(&self, bytes: u64) -> u64 {
        match self.mss() {
            Some(m) => bytes.div_ceil(u64::from(m)).max(1),
            None => 1,
        }
    }

    fn inflight(&self) -> u64 {
        self.snd_max - self.snd_una.min(self.snd_max)
    }

    fn cwnd_now(&self) -> u64 {
        if self.rounds == 0 { self.round_max } else { self.cwnd_est }
    }

    fn bytes_received(&self) -> u64 {
        match self.peer_fin {
            Some(fin) => self.rcv_ack.min(fin),
            None => self.rcv_ack,
        }
    }

    fn sample(&self, t_us: u64, event: Event) -> FlowSample {
        FlowSample {
            t_us,
            flow: self.id,
            stream: self.stream,
            event,
            state: self.state,
            bytes_sent: self.snd_max,
            bytes_acked: self.snd_una.min(self.snd_max),
            bytes_received: self.bytes_received(),
            snd_una: self.snd_una,
            snd_nxt: self.snd_nxt,
            seg_seq: None,
            seg_len: None,
            inflight: clamp_u32(self.inflight()),
            cwnd_est: clamp_u32(self.cwnd_now()),
            rtt_us: None,
            srtt_us: self.srtt_us.map(clamp_u32),
            rttvar_us: self.srtt_us.map(|_| clamp_u32(self.rttvar_us)),
            peer_wnd: self.peer_wnd,
            local_wnd: self.local_wnd,
            retx_fast_segs: self.retx_fast_segs,
            retx_fast_bytes: self.retx_fast_bytes,
            retx_rto_segs: self.retx_rto_segs,
            retx_rto_bytes: self.retx_rto_bytes,
            dupacks: self.dupacks,
            zero_wnd_events: self.zero_wnd_events,
        }
    }

    fn summary(&self) -> FlowSummary {
        let (lw, pw) = (self.local_wscale, self.peer_wscale);
        FlowSummary {
            flow: self.id,
            stream: self.stream,
            state: self.state,
            first_us: self.first_us,
            last_us: self.last_us,
            bytes_sent: self.snd_max,
            bytes_acked: self.snd_una.min(self.snd_max),
            bytes_received: self.bytes_received(),
            retx_fast_segs: self.retx_fast_segs,
            retx_fast_bytes: self.retx_fast_bytes,
            retx_rto_segs: self.retx_rto_segs,
            retx_rto_bytes: self.retx_rto_bytes,
            dupacks: self.dupacks,
            zero_wnd_events: self.zero_wnd_events,
            rtt_samples: self.rtt_samples,
            rtt_min_us: (self.rtt_samples > 0).then(|| clamp_u32(self.rtt_min)),
            rtt_mean_us: (self.rtt_samples > 0).then(|| clamp_u32(self.rtt_sum / self.rtt_samples)),
            rtt_max_us: (self.rtt_samples > 0).then(|| clamp_u32(self.rtt_max)),
            srtt_us: self.srtt_us.map(clamp_u32),
            rttvar_us: self.srtt_us.map(|_| clamp_u32(self.rttvar_us)),
            peer_wnd: self.peer_wnd,
            reorder: self.reorder,
            max_inflight: clamp_u32(self.max_inflight),
            cwnd_est: clamp_u32(self.cwnd_now()),
            mss: self.mss().unwrap_or(0),
            local_wscale: lw,
            peer_wscale: pw,
            local_isn: self.local_isn,
            peer_isn: self.peer_isn,
            samples: self.samples,
        }
    }

    /// RFC 6298 §2, in µs.
    fn add_rtt(&mut self, r: u64) {
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            // In u128: a capture's time stamps may put an ACK centuries after its segment.
            // Each result lies between its two inputs, so it fits back in a u64.
            Some(srtt) => {
                let (srtt, rttvar, r) = (u128::from(srtt), u128::from(self.rttvar_us), u128::from(r));
                self.rttvar_us = ((3 * rttvar + srtt.abs_diff(r)) / 4) as u64;
                self.srtt_us = Some(((7 * srtt + r) / 8) as u64);
            }
        }
        self.rtt_samples += 1;
        self.rtt_min = self.rtt_min.min(r);
        self.rtt_max = self.rtt_max.max(r);
        self.rtt_sum = self.rtt_sum.saturating_add(r);
        self.interval_rtt = Some(clamp_u32(r));
    }
}

/// Rebuilds per-flow TCP state from frames and produces [`FlowSample`]s. Independent of any
/// device: [`FlowProbe`](super::FlowProbe) feeds it live, `uniperf flowlog` from a pcap.
pub struct FlowTracker {
    cfg: ProbeConfig,
    flows: Vec<Flow>,
    /// Index of the flow of the previous segment: bulk traffic hits it almost always.
    last_hit: usize,
    port_labels: Vec<(u16, i64)>,
    flow_labels: Vec<(FlowId, i64)>,
    samples: Vec<FlowSample>,
    dropped: u64,
    sink: Option<SampleSink>,
    stats: TrackerStats,
}

impl FlowTracker {
    pub fn new(cfg: ProbeConfig) -> Self {
        FlowTracker {
            cfg,
            flows: Vec::new(),
            last_hit: 0,
            port_labels: Vec::new(),
            flow_labels: Vec::new(),
            samples: Vec::new(),
            dropped: 0,
            sink: None,
            stats: TrackerStats::default(),
        }
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    /// Feeds one Ethernet frame, sent (`Tx`) or received (`Rx`) by the local stack at `t_us`.
    pub fn on_frame(&mut self, t_us: u64, dir: Dir, frame: &[u8]) {
        self.stats.frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.stats.malformed += 1;
            return;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            self.stats.ignored += 1;
            return;
        }
        self.segment(t_us, dir, &frame[EthernetFrame::<&[u8]>::header_len()..]);
    }

    /// Feeds one IPv4 packet (no link header), e.g. from a cooked or raw-IP capture.
    pub fn on_ipv4(&mut self, t_us: u64, dir: Dir, packet: &[u8]) {
        self.stats.frames += 1;
        self.segment(t_us, dir, packet);
    }

    fn segment(&mut self, t_us: u64, dir: Dir, packet: &[u8]) {
        let seg = match parse_ipv4(packet) {
            Ok(seg) => seg,
            Err(Skip::NotTcp) => {
                self.stats.ignored += 1;
                return;
            }
            Err(Skip::Malformed) => {
                self.stats.malformed += 1;
                return;
            }
        };
        self.stats.tcp_segments += 1;
        let id = match dir {
            Dir::Tx => FlowId::new(seg.src, seg.dst),
            Dir::Rx => FlowId::new(seg.dst, seg.src),
        };
        let Some(idx) = self.flow_index(id, t_us, dir, &seg) else {
            self.stats.untracked += 1;
            return;
        };
        let mut out = Emitted::default();
        let flow = &mut self.flows[idx];
        flow.last_us = flow.last_us.max(t_us);
        match dir {
            Dir::Tx => on_tx(flow, t_us, &seg, &mut out),
            Dir::Rx => on_rx(flow, t_us, &seg, &mut out),
        }
        self.flush(idx, t_us, &mut out);
    }

    /// The flow of a segment, created if new (None: the table is full).
    fn flow_index(&mut self, id: FlowId, t_us: u64, dir: Dir, seg: &Segment) -> Option<usize> {
        let found = match self.flows.get(self.last_hit) {
            Some(f) if f.id == id => Some(self.last_hit),
            _ => self.flows.iter().rposition(|f| f.id == id),
        };
        if let Some(i) = found {
            // A new SYN with another ISN on a known 4-tuple starts a new connection.
            let f = &self.flows[i];
            let isn = if dir == Dir::Tx { f.local_isn } else { f.peer_isn };
            let new_conn = seg.syn && !seg.ack_flag && isn.is_some_and(|isn| isn != seg.seq);
            if !new_conn {
                self.last_hit = i;
                return Some(i);
            }
        }
        if self.flows.len() >= self.cfg.max_flows {
            return None;
        }
        let stream = self.label_for(id);
        self.flows.push(Flow::new(id, stream, t_us));
        self.last_hit = self.flows.len() - 1;
        Some(self.last_hit)
    }

    fn label_for(&self, id: FlowId) -> i64 {
        if let Some(&(_, s)) = self.flow_labels.iter().rev().find(|(f, _)| *f == id) {
            return s;
        }
        self.port_labels.iter().rev().find(|(p, _)| *p == id.local.port()).map_or(-1, |&(_, s)| s)
    }

    /// Pushes what one segment produced, then any due interval sample.
    fn flush(&mut self, idx: usize, t_us: u64, out: &mut Emitted) {
        if self.cfg.sampling == Sampling::Off {
            return;
        }
        let every_ack = self.cfg.sampling == Sampling::EveryAck;
        for i in 0..out.len {
            let (event, seg_seq, seg_len, rtt) = out.items[i];
            let always = !matches!(event, Event::Ack | Event::DupAck | Event::AckSent);
            if !(always || every_ack) {
                continue;
            }
            let flow = &mut self.flows[idx];
            let mut s = flow.sample(t_us, event);
            s.seg_seq = seg_seq;
            s.seg_len = seg_len;
            s.rtt_us = rtt;
            flow.samples += 1;
            self.push(s);
        }
        self.interval(idx, t_us);
    }

    fn interval(&mut self, idx: usize, t_us: u64) {
        let Sampling::Interval(ms) = self.cfg.sampling else { return };
        let step = u64::from(ms.max(1)) * 1000;
        let flow = &mut self.flows[idx];
        if t_us < flow.next_interval_us {
            return;
        }
        let k = (t_us - flow.first_us) / step + 1;
        flow.next_interval_us = flow.first_us.saturating_add(k.saturating_mul(step));
        let mut s = flow.sample(t_us, Event::Interval);
        s.rtt_us = flow.interval_rtt.take();
        flow.samples += 1;
        self.push(s);
    }

    fn push(&mut self, s: FlowSample) {
        if let Some(sink) = self.sink.as_mut() {
            sink(&s);
            return;
        }
        if self.samples.len() >= self.cfg.max_samples {
            self.dropped += 1;
            return;
        }
        if self.samples.len() == self.samples.capacity() {
            let room = self.cfg.max_samples - self.samples.len();
            self.samples.reserve_exact(room.min(SAMPLE_CHUNK));
        }
        self.samples.push(s);
    }

    /// Lets `Interval` sampling emit due samples of open flows when no frame passes.
    pub fn tick(&mut self, t_us: u64) {
        for i in 0..self.flows.len() {
            if !matches!(self.flows[i].state, TcpState::Closed | TcpState::Reset) {
                self.interval(i, t_us);
            }
        }
    }

    /// Emits one `final` sample per flow with its totals (end of run / end of capture).
    pub fn finish(&mut self, t_us: u64) {
        if self.cfg.sampling == Sampling::Off {
            return;
        }
        for i in 0..self.flows.len() {
            let flow = &mut self.flows[i];
            let mut s = flow.sample(t_us.max(flow.last_us), Event::Final);
            s.rtt_us = None;
            flow.samples += 1;
            self.push(s);
        }
    }

    /// Attaches an iperf3 stream id to the flows whose local port is `local_port`, including
    /// ones not seen yet. On a server, where every data flow has the same local port, use
    /// [`label_flow`](Self::label_flow).
    pub fn label(&mut self, local_port: u16, stream_id: i64) {
        self.port_labels.retain(|(p, _)| *p != local_port);
        self.port_labels.push((local_port, stream_id));
        for f in self.flows.iter_mut().filter(|f| f.id.local.port() == local_port) {
            f.stream = stream_id;
        }
    }

    /// Attaches an iperf3 stream id to one flow (also before its first frame).
    pub fn label_flow(&mut self, flow: FlowId, stream_id: i64) {
        self.flow_labels.retain(|(f, _)| *f != flow);
        self.flow_labels.push((flow, stream_id));
        if let Some(f) = self.flows.iter_mut().rev().find(|f| f.id == flow) {
            f.stream = stream_id;
        }
    }

    /// Sends every further sample to `sink` instead of the buffer (`None`: back to the buffer).
    pub fn set_sink(&mut self, sink: Option<SampleSink>) {
        self.sink = sink;
    }

    pub fn samples(&self) -> &[FlowSample] {
        &self.samples
    }

    /// Takes the buffered samples; the buffer starts again empty (and small).
    pub fn take_samples(&mut self) -> Vec<FlowSample> {
        core::mem::take(&mut self.samples)
    }

    /// Samples lost to `max_samples`.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped
    }

    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// The totals of the newest flow with this id.
    pub fn flow_summary(&self, id: FlowId) -> Option<FlowSummary> {
        let f = match self.flows.get(self.last_hit) {
            Some(f) if f.id == id => f,
            _ => self.flows.iter().rev().find(|f| f.id == id)?,
        };
        Some(f.summary())
    }

    /// Per-flow totals, in order of first appearance.
    pub fn flows(&self) -> impl Iterator<Item = FlowSummary> + '_ {
        self.flows.iter().map(Flow::summary)
    }
}

/// One event a segment produced: (event, seg_seq, seg_len, rtt).
type EmittedEvent = (Event, Option<u64>, Option<u32>, Option<u32>);

/// Up to four events one segment can produce.
#[derive(Default)]
struct Emitted {
    items: [EmittedEvent; 4],
    len: usize,
}

impl Emitted {
    fn push(&mut self, event: Event, seg_seq: Option<u64>, seg_len: Option<u32>, rtt: Option<u32>) {
        if self.len < self.items.len() {
            self.items[self.len] = (event, seg_seq, seg_len, rtt);
            self.len += 1;
        }
    }
}

fn set_state(flow: &mut Flow, state: TcpState, out: &mut Emitted) {
    if flow.state != state {
        flow.state = state;
        out.push(Event::State, None, None, None);
    }
}

/// After a FIN or an ACK: moves through the closing states.
fn closing_state(flow: &mut Flow, out: &mut Emitted) {
    if matches!(flow.state, TcpState::Reset | TcpState::Closed) {
        return;
    }
    let local_fin_acked = flow.local_fin.is_some_and(|f| flow.snd_una > f);
    let peer_fin_acked = flow.peer_fin.is_some_and(|f| flow.rcv_ack > f);
    let next = match (flow.local_fin.is_some(), flow.peer_fin.is_some()) {
        (true, true) if local_fin_acked && peer_fin_acked => TcpState::Closed,
        (true, true) => TcpState::Closing,
        (true, false) => TcpState::FinWait,
        (false, true) => TcpState::CloseWait,
        (false, false) => return,
    };
    set_state(flow, next, out);
}

fn on_tx(flow: &mut Flow, t_us: u64, seg: &Segment, out: &mut Emitted) {
    if seg.rst {
        set_state(flow, TcpState::Reset, out);
        return;
    }
    let (local_shift, _) = flow.shifts();
    if seg.syn {
        if flow.local_isn.is_none() {
            flow.local_isn = Some(seg.seq);
            flow.local_base = Some(seg.seq.wrapping_add(1));
            flow.local_mss = seg.mss;
            flow.local_wscale = seg.wscale;
            flow.local_syn_seen = true;
        }
        flow.local_wnd = u32::from(seg.window);
        if flow.state == TcpState::Unknown {
            set_state(flow, if seg.ack_flag { TcpState::SynReceived } else { TcpState::SynSent }, out);
        }
        return;
    }
    flow.local_wnd = u32::from(seg.window) << local_shift;

    // Our ACK of the peer's data.
    if seg.ack_flag {
        let base = *flow.peer_base.get_or_insert(seg.ack);
        let rel = unwrap_seq(seg.ack, base, flow.rcv_ack).max(0) as u64;
        if rel > flow.rcv_ack {
            let data_before = flow.bytes_received();
            flow.rcv_ack = rel;
            if flow.bytes_received() > data_before {
                out.push(Event::AckSent, Some(data_before), Some(clamp_u32(flow.bytes_received() - data_before)), None);
            }
        }
        if flow.state == TcpState::SynSent && flow.peer_syn_seen {
            set_state(flow, TcpState::Established, out);
        }
        closing_state(flow, out);
    }
    if flow.state == TcpState::Unknown {
        set_state(flow, TcpState::Established, out);
    }

    let base = *flow.local_base.get_or_insert(seg.seq);
    let seq = unwrap_seq(seg.seq, base, flow.snd_max).max(0) as u64;
    let end = seq + u64::from(seg.payload);
    if seg.payload > 0 {
        if seq < flow.snd_max {
            let bytes = flow.snd_max.min(end) - seq;
            retransmission(flow, t_us, seq, seg.payload, bytes, out);
        } else if flow.snd_max == flow.snd_una && flow.rounds > 0 && flow.last_rx_ack_us.is_some_and(|t| t < t_us) {
            // The pipe had drained and the sender waited: this round is application-limited.
            flow.round_limited = true;
        }
        if end > flow.snd_max {
            if flow.rtt_ring.len() < RTT_RING {
                flow.rtt_ring.push_back((end, t_us));
            }
            flow.snd_max = end;
        }
        flow.snd_nxt = end;
        // cwnd estimate: the flight right after a send.
        let flight = flow.snd_nxt.saturating_sub(flow.snd_una);
        flow.round_max = flow.round_max.max(flight);
        if flow.round_end.is_none() {
            flow.round_end = Some(flow.snd_nxt);
        }
        let mss = u64::from(flow.mss().unwrap_or(536));
        if flow.inflight() + mss > u64::from(flow.peer_wnd) {
            flow.round_limited = true;
        }
        flow.max_inflight = flow.max_inflight.max(flow.inflight());
    }
    if seg.fin && flow.local_fin.is_none() {
        flow.local_fin = Some(end);
        closing_state(flow, out);
    }
}

fn retransmission(flow: &mut Flow, t_us: u64, seq: u64, len: u32, bytes: u64, out: &mut Emitted) {
    let gap = flow
        .srtt_us
        .map_or(ACK_CLOCK_NO_SRTT_GAP_US, |srtt| (srtt / 2).clamp(ACK_CLOCK_MIN_GAP_US, ACK_CLOCK_MAX_GAP_US));
    let ack_clocked = flow.last_rx_ack_us.is_some_and(|t| t_us.saturating_sub(t) < gap);
    // Not "3 dup ACKs since the last advance": SACK/RACK senders (Linux) retransmit on SACK
    // information before that, and a capture sees a retransmission after the ACKs that
    // overtook it in the sender's queue. Whether a timer or an ACK sent it is what holds.
    let fast = ack_clocked && !matches!(flow.recovery, Recovery::Timeout(_));
    let segs = flow.segs(bytes);
    if fast {
        flow.retx_fast_segs += segs;
        flow.retx_fast_bytes += bytes;
        if flow.recovery == Recovery::None {
            flow.recovery = Recovery::Fast(flow.snd_max);
        }
        out.push(Event::RetxFast, Some(seq), Some(len), None);
    } else {
        flow.retx_rto_segs += segs;
        flow.retx_rto_bytes += bytes;
        if !matches!(flow.recovery, Recovery::Timeout(_)) {
            flow.recovery = Recovery::Timeout(flow.snd_max);
            // The congestion window restarts: a fresh round from the rewind.
            flow.round_end = None;
            flow.round_max = 0;
            flow.round_limited = false;
            flow.cwnd_est = 0;
            flow.rounds = 0;
        }
        out.push(Event::RetxRto, Some(seq), Some(len), None);
    }
    // Karn: nothing timed before a retransmission may give a sample.
    flow.rtt_ring.clear();
}

fn on_rx(flow: &mut Flow, t_us: u64, seg: &Segment, out: &mut Emitted) {
    if seg.rst {
        set_state(flow, TcpState::Reset, out);
        return;
    }
    if seg.syn {
        if flow.peer_isn.is_none() {
            flow.peer_isn = Some(seg.seq);
            flow.peer_base = Some(seg.seq.wrapping_add(1));
            flow.peer_mss = seg.mss;
            flow.peer_wscale = seg.wscale;
            flow.peer_syn_seen = true;
        }
        flow.peer_wnd = u32::from(seg.window);
        flow.peer_wnd_raw = None;
        if flow.state == TcpState::Unknown && !seg.ack_flag {
            set_state(flow, TcpState::SynReceived, out);
        }
        return;
    }
    let (_, peer_shift) = flow.shifts();
    let window = u32::from(seg.window) << peer_shift;

    // The peer's data and FIN.
    let pbase = *flow.peer_base.get_or_insert(seg.seq);
    let pseq = unwrap_seq(seg.seq, pbase, flow.peer_max).max(0) as u64;
    let pend = pseq + u64::from(seg.payload);
    flow.peer_max = flow.peer_max.max(pend);
    if seg.fin && flow.peer_fin.is_none() {
        flow.peer_fin = Some(pend);
    }

    if seg.ack_flag {
        let base = *flow.local_base.get_or_insert(seg.ack);
        let rel = unwrap_seq(seg.ack, base, flow.snd_una).max(0) as u64;
        if rel > flow.snd_una {
            on_ack_advance(flow, t_us, rel, out);
        } else if rel == flow.snd_una
            && seg.payload == 0
            && !seg.fin
            && flow.peer_wnd_raw == Some(seg.window)
            && flow.snd_max > flow.snd_una
        {
            flow.dupacks += 1;
            if flow.dup_run == 0 {
                flow.dup_run_retx = flow.retx_fast_segs + flow.retx_rto_segs;
            }
            flow.dup_run += 1;
            out.push(Event::DupAck, Some(rel), None, None);
        }
        flow.last_rx_ack_us = Some(t_us);
        if flow.state == TcpState::SynReceived && flow.local_syn_seen {
            set_state(flow, TcpState::Established, out);
        }
    }
    if flow.state == TcpState::Unknown {
        set_state(flow, TcpState::Established, out);
    }

    let was_zero = flow.peer_wnd == 0 && flow.peer_wnd_raw.is_some();
    flow.peer_wnd = window;
    flow.peer_wnd_raw = Some(seg.window);
    if window == 0 && !was_zero {
        flow.zero_wnd_events += 1;
        out.push(Event::ZeroWindow, None, None, None);
    }
    if seg.fin || seg.ack_flag {
        closing_state(flow, out);
    }
}

fn on_ack_advance(flow: &mut Flow, t_us: u64, rel: u64, out: &mut Emitted) {
    flow.snd_una = rel;
    // Duplicate ACKs that end in an advance with nothing retransmitted meanwhile: a segment
    // reached the peer late, not lost (what Linux counts as reordering seen without SACK).
    if flow.dup_run > 0 && flow.retx_fast_segs + flow.retx_rto_segs == flow.dup_run_retx {
        flow.reorder += 1;
    }
    flow.dup_run = 0;
    // ACKs beyond what we saw sent (frames missing from a capture) still move the edges,
    // except for the FIN's own sequence number.
    let data_acked = match flow.local_fin {
        Some(fin) => rel.min(fin),
        None => rel,
    };
    if data_acked > flow.snd_max {
        flow.snd_max = data_acked;
    }
    flow.snd_nxt = flow.snd_nxt.max(flow.snd_una.min(flow.snd_max));

    // RTT from the newest timed segment this ACK covers.
    let mut newest = None;
    while let Some(&(end, t_tx)) = flow.rtt_ring.front() {
        if end > rel {
            break;
        }
        newest = Some(t_tx);
        flow.rtt_ring.pop_front();
    }
    let rtt = newest.filter(|&t| t <= t_us).map(|t| t_us - t);
    if let Some(r) = rtt {
        flow.add_rtt(r);
    }

    match flow.recovery {
        Recovery::Fast(point) | Recovery::Timeout(point) if flow.snd_una >= point => flow.recovery = Recovery::None,
        _ => {}
    }

    if let Some(end) = flow.round_end
        && flow.snd_una >= end
    {
        flow.cwnd_est =
            if flow.round_limited || flow.rounds == 0 { flow.cwnd_est.max(flow.round_max) } else { flow.round_max };
        flow.rounds += 1;
        flow.round_end = (flow.snd_nxt > flow.snd_una).then_some(flow.snd_nxt);
        flow.round_max = flow.snd_nxt.saturating_sub(flow.snd_una);
        flow.round_limited = false;
    }
    out.push(Event::Ack, Some(rel), None, rtt.map(clamp_u32));
}

#[cfg(test)]
mod rtt_tests {
    use super::*;

    #[test]
    fn rtt_estimate_takes_any_sample() {
        // fuzz/corpus/pcap/crash-e585796da622eab1c1e7651237ad39ddfa8d5dee: RTTs near u64::MAX
        // from a capture's time stamps overflowed `7 * srtt`.
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        let mut flow = Flow::new(FlowId::new(addr, addr), -1, 0);
        for r in [u64::MAX, u64::MAX - 1, 0, u64::MAX, 1000] {
            flow.add_rtt(r);
        }
        assert!(flow.srtt_us.is_some_and(|s| s < u64::MAX) && flow.rttvar_us < u64::MAX);
        // Ordinary samples are unchanged: RFC 6298's integer steps.
        let mut flow = Flow::new(FlowId::new(addr, addr), -1, 0);
        for r in [1000, 2000, 1500] {
            flow.add_rtt(r);
        }
        assert_eq!((flow.srtt_us, flow.rttvar_us), (Some(1171), 562));
    }
}
