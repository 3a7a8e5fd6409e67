//! Data streams: moving payload through a smoltcp socket — a TCP connection as fast as it
//! will take it, or UDP datagrams at the paced rate — and the per-stream counters behind
//! interval and end reports. Shared by both roles.

use crate::machine::Machine;
use crate::proto::udp::{Datagram, DatagramRepr, header_len};
use crate::proto::{ErrorCode, StreamResult};
use crate::report::{EndSide, EndStream, EndTcpInfo, UdpFigures};
use crate::tcpinfo::{SenderTally, TcpInfo, TcpInfoSource};
use crate::udp::{Pacer, UdpRx, UdpTx, arrival_micros};
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// The block written over and over: random bytes like iperf3, or `0123456789…` with
/// `--repeating-payload`.
pub struct Payload {
    buf: Vec<u8>,
}

impl Payload {
    pub fn new(len: usize, repeating: bool, machine: &mut dyn Machine) -> Self {
        let len = len.max(1);
        let mut buf = vec![0u8; len];
        if repeating {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = b'0' + (i % 10) as u8;
            }
        } else {
            machine.fill_random(&mut buf);
        }
        Payload { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The least [`DataStream::queue_cap`] allows: enough for the first round trips, before the
/// probe has a window estimate (64 KiB per 100 µs round trip is 5 Gbit/s; the cap then doubles
/// with each round the probe sees).
pub const QUEUE_FLOOR: u64 = 64 << 10;

/// One data connection of a test and its counters.
#[derive(Debug)]
pub struct DataStream {
    pub handle: SocketHandle,
    /// iperf3 stream id: 1, 3, 4, 5… in creation order on both sides.
    pub id: i64,
    /// The number shown as `[  5]` and `socket` in reports.
    pub socket_no: i32,
    /// This side sends on the stream (else it receives).
    pub sends: bool,
    /// Bytes since the measurement started (after `-O`).
    pub bytes: u64,
    /// Bytes since the test started, omitted period included.
    pub total_bytes: u64,
    interval_bytes: u64,
    /// The socket's send ring holds the payload from end to end (see `pump`).
    prefilled: bool,
    /// The peer closed its side (or the socket died).
    pub peer_closed: bool,
    /// Bytes the peer had acknowledged at the last three pumps, newest first. A reading is
    /// taken at some point during a loop pass, so only the one from two passes before the
    /// pass that sees the omit timer run out is known to be from before it.
    acked: [u64; 3],
    /// Seconds after the measurement's start at which this stream's own measurement began (a
    /// receiver that drained its sender's queue after `-O`; see `Measurement::receive_drain`).
    late_start: f64,
    /// (local, remote), for looking up TCP_INFO.
    pub endpoints: Option<(IpEndpoint, IpEndpoint)>,
    /// TCP_INFO statistics while this side sends.
    pub tcp: SenderTally,
    /// UDP streams only: the peer and the datagram counters.
    pub udp: Option<UdpStream>,
}

/// What a UDP stream adds: its peer (server streams share one socket and are told apart by
/// it), the datagram length and counter width, the pacer and the counters.
#[derive(Debug)]
pub struct UdpStream {
    pub peer: IpEndpoint,
    pub len: usize,
    pub counters_64bit: bool,
    pub tx: UdpTx,
    pub rx: UdpRx,
    pacer: Pacer,
}

impl UdpStream {
    /// `rate_bps`: `-b` for this stream (0: unlimited).
    pub fn new(peer: IpEndpoint, len: usize, counters_64bit: bool, rate_bps: u64) -> Self {
        let len = len.max(header_len(counters_64bit));
        UdpStream {
            peer,
            len,
            counters_64bit,
            tx: UdpTx::default(),
            rx: UdpRx::default(),
            pacer: Pacer::new(rate_bps, len),
        }
    }

    /// When the pacer lets the next datagram go.
    pub fn next_send_at(&self) -> Option<Instant> {
        self.pacer.next_at(self.len)
    }

    fn figures(&self, sends: bool) -> UdpFigures {
        if sends {
            UdpFigures { packets: self.tx.measured(), ..UdpFigures::default() }
        } else {
            let (packets, lost, out_of_order) = self.rx.measured();
            UdpFigures { packets, lost, out_of_order, jitter: self.rx.jitter }
        }
    }
}

/// Datagrams a test skipped, by reason (never counted as data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkippedDatagrams {
    /// Shorter than the header, or with an impossible time.
    pub malformed: u64,
    /// From an address and port that is no stream of the test.
    pub unknown_sender: u64,
    /// A sequence number the sender cannot have reached.
    pub implausible: u64,
}

impl SkippedDatagrams {
    pub fn total(&self) -> u64 {
        self.malformed + self.unknown_sender + self.implausible
    }
}

/// Fills `b` with the payload `pl` repeated from its first byte.
fn fill_with_payload(b: &mut [u8], pl: &[u8]) {
    for chunk in b.chunks_mut(pl.len()) {
        chunk.copy_from_slice(&pl[..chunk.len()]);
    }
}

/// iperf3's stream ids: the first is 1, then 2 + the number of streams already there.
pub fn stream_id(index: usize) -> i64 {
    if index == 0 { 1 } else { index as i64 + 2 }
}

impl DataStream {
    pub fn new(handle: SocketHandle, index: usize, sends: bool) -> Self {
        DataStream {
            handle,
            id: stream_id(index),
            socket_no: 5 + index as i32,
            sends,
            bytes: 0,
            total_bytes: 0,
            interval_bytes: 0,
            prefilled: false,
            peer_closed: false,
            acked: [0; 3],
            late_start: 0.0,
            endpoints: None,
            tcp: SenderTally::default(),
            udp: None,
        }
    }

    /// A UDP stream on `handle` (shared with the test's other streams on a server).
    pub fn new_udp(handle: SocketHandle, index: usize, sends: bool, udp: UdpStream) -> Self {
        DataStream { udp: Some(udp), ..DataStream::new(handle, index, sends) }
    }

    /// The connection's addresses, once it is connected.
    pub fn with_endpoints(mut self, local: IpEndpoint, remote: IpEndpoint) -> Self {
        self.endpoints = Some((local, remote));
        self
    }

    /// TCP_INFO of a sending stream, where the platform has it.
    fn tcp_info(&self, info: &dyn TcpInfoSource) -> Option<TcpInfo> {
        if self.udp.is_some() {
            return None;
        }
        let (l, r) = self.endpoints?;
        if self.sends { info.tcp_info(l, r) } else { None }
    }

    /// The most a sending stream keeps queued in its socket (unacknowledged plus unsent): twice
    /// the congestion window the flow probe sees, as Linux sizes a socket's send buffer
    /// (`tcp_sndbuf_expand`), never under [`QUEUE_FLOOR`]; unlimited without TCP_INFO. iperf3
    /// counts bytes written as sent, so a buffer far beyond what the path holds makes a sender
    /// report seconds of data its receiver never got: 16.5 MB over on a 2 Mbit/s link at
    /// -P 4 -R -t 2 with fixed 4 MiB buffers, while Linux's sender stays within about a window.
    fn queue_cap(&self, info: &dyn TcpInfoSource) -> u64 {
        match self.tcp_info(info) {
            Some(i) => (2 * i.snd_cwnd).max(QUEUE_FLOOR),
            None => u64::MAX,
        }
    }

    /// How many bytes this stream may write now to hold `rate` bit/s on average since
    /// `since` (iperf3's pacing is against the long-run average). 0 rate = unlimited.
    pub fn send_allowance(&self, rate: u64, since: Instant, now: Instant) -> u64 {
        if !self.sends {
            return 0;
        }
        if rate == 0 {
            return u64::MAX;
        }
        let elapsed_us = (now - since).total_micros() as u128;
        let due = (rate as u128 * elapsed_us / 8_000_000) as u64;
        due.saturating_sub(self.total_bytes)
    }

    /// Writes up to `send_limit` payload bytes into the socket while it has room, and drains
    /// and discards whatever arrived. Returns the bytes moved either way.
    pub fn pump(&mut self, sock: &mut tcp::Socket, payload: &Payload, send_limit: u64) -> u64 {
        let mut moved = 0u64;
        while sock.can_recv() {
            let n = sock.recv(|b| (b.len(), b.len())).unwrap_or(0);
            if n == 0 {
                break;
            }
            if !self.sends {
                self.count(n as u64);
            }
            moved += n as u64;
        }
        if self.sends && send_limit > 0 {
            let pl = &payload.buf;
            let capacity = sock.send_capacity();
            let mut left = send_limit;
            while sock.can_send() && left > 0 {
                let prefilled = &mut self.prefilled;
                let n = sock
                    .send(|b| {
                        if !*prefilled {
                            // Fill what smoltcp offers with the payload. The first send gets
                            // the whole ring (a queue that is empty hands it over whole), so
                            // this runs once: ring byte i = payload byte i mod its length, and
                            // as smoltcp never writes into a send ring, every byte it sends
                            // from then on is a payload byte and sending copies nothing. Like
                            // iperf3, which restarts its block after a short write, the stream
                            // is pieces of the block, not one continuous repetition.
                            fill_with_payload(b, pl);
                            *prefilled = b.len() == capacity;
                        }
                        let take = (b.len() as u64).min(left) as usize;
                        (take, take)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n as u64);
                self.count(n as u64);
                moved += n as u64;
            }
        }
        if self.sends {
            let acked = self.total_bytes.saturating_sub(sock.send_queue() as u64);
            self.acked = [acked, self.acked[0], self.acked[1]];
        }
        if !sock.may_recv() && sock.state() != tcp::State::SynSent {
            self.peer_closed = true;
        }
        moved
    }

    /// Sends as many datagrams as the pacer and `send_limit` (bytes) allow and the socket
    /// takes, each stamped with `clock()` and the next sequence number. Returns bytes sent.
    fn send_udp(
        &mut self,
        sock: &mut udp::Socket,
        payload: &Payload,
        send_limit: u64,
        now: Instant,
        clock: &mut dyn FnMut() -> Instant,
    ) -> u64 {
        let Some(u) = self.udp.as_mut() else { return 0 };
        let (len, wide, peer) = (u.len, u.counters_64bit, u.peer);
        let mut sent = 0u64;
        while sent < send_limit && u.pacer.take(now, len) {
            let Ok(buf) = sock.send(len, peer) else {
                u.pacer.refund(len);
                break;
            };
            let t = clock().total_micros().max(0);
            let seq = u.tx.sent + 1;
            let h = DatagramRepr { sec: (t / 1_000_000) as u32, usec: (t % 1_000_000) as u32, seq };
            let hdr = header_len(wide);
            h.emit(buf, wide);
            let pl = &payload.buf;
            let mut at = hdr;
            while at < len {
                let take = (len - at).min(pl.len());
                buf[at..at + take].copy_from_slice(&pl[..take]);
                at += take;
            }
            u.tx.sent = seq;
            sent += len as u64;
        }
        self.count(sent);
        sent
    }

    fn count(&mut self, n: u64) {
        self.bytes += n;
        self.total_bytes += n;
        self.interval_bytes += n;
    }

    /// Returns the bytes of the interval that just ended and starts a new one.
    pub fn take_interval(&mut self) -> u64 {
        core::mem::take(&mut self.interval_bytes)
    }

    /// The omit period ended: measured counters restart. A receiver starts from zero, as
    /// iperf3's does. A sender counts as omitted only what its peer can have read by now:
    /// bytes still in its own socket buffer or in flight, and up to a receive window the peer
    /// has acknowledged but may not have read yet, reach the peer's reader during its measured
    /// period, so they count as measured here too. (iperf3 counts them as omitted, which lets
    /// a receiver report more than its sender sent.) `info` gives the peer's window.
    pub fn reset_after_omit(&mut self, info: &dyn TcpInfoSource) {
        if let Some(u) = self.udp.as_mut() {
            // A datagram is either sent in the omit period or after it: nothing carries over.
            u.tx.reset_after_omit();
            u.rx.reset_after_omit();
            self.bytes = 0;
            self.interval_bytes = 0;
            return;
        }
        let carried = if self.sends {
            let acked = self.acked[2];
            let window = self.tcp_info(info).map_or(0, |i| i.snd_wnd).max(self.tcp.max_snd_wnd());
            self.total_bytes - (acked - acked.min(window))
        } else {
            0
        };
        self.bytes = carried;
        self.interval_bytes = carried;
        self.tcp.reset();
    }

    /// True when this side sends and has TCP_INFO for the stream (iperf3's
    /// `sender_has_retransmits`).
    pub fn has_retransmits(&self) -> bool {
        self.sends && self.tcp.seen()
    }

    /// This side's entry in the results JSON.
    pub fn result(&self, seconds: f64) -> StreamResult {
        let seconds = (seconds - self.late_start).max(0.0);
        let mut r = StreamResult {
            id: self.id,
            bytes: self.bytes,
            retransmits: if self.has_retransmits() { self.tcp.retransmits() as i64 } else { -1 },
            jitter: 0.0,
            errors: 0,
            packets: 0,
            omitted_errors: None,
            omitted_packets: None,
            start_time: 0.0,
            end_time: seconds,
        };
        // iperf3 sends totals and what of them was omitted; the peer subtracts.
        if let Some(u) = &self.udp {
            if self.sends {
                r.packets = u.tx.sent as i64;
                r.omitted_packets = Some(u.tx.omitted as i64);
                r.omitted_errors = Some(0);
            } else {
                r.packets = u.rx.highest as i64;
                r.errors = u.rx.lost;
                r.jitter = u.rx.jitter;
                r.omitted_packets = Some(u.rx.omitted_packets as i64);
                r.omitted_errors = Some(u.rx.omitted_lost);
            }
        }
        r
    }

    /// Combines our counters with the peer's results into the end summary of this stream.
    /// 3.12 shows the sender's duration as the receiver's `seconds`; we do the same.
    /// The end summary of a test cut short (a signal, a terminating peer): this side's own
    /// counters, and zero for the side the results exchange would have told us.
    pub fn partial_summary(&self, seconds: f64) -> EndStream {
        let seconds = (seconds - self.late_start).max(0.0);
        let tcp = self.has_retransmits().then(|| self.tcp.end());
        let udp = self.udp.as_ref().map(|u| u.figures(self.sends));
        let local = EndSide { start: 0.0, end: seconds, seconds, bytes: self.bytes, tcp, udp };
        let unknown = EndSide { start: 0.0, end: seconds, seconds, bytes: 0, tcp: None, udp: None };
        if self.sends {
            EndStream { socket: self.socket_no, local_is_sender: true, sender: local, receiver: unknown }
        } else {
            EndStream { socket: self.socket_no, local_is_sender: false, sender: unknown, receiver: local }
        }
    }

    /// `remote_has_retransmits`: the peer's results say its sending streams carry
    /// retransmission counts (iperf3 then shows them, and zeros for the rest of TCP_INFO).
    pub fn end_summary(
        &self,
        seconds: f64,
        remote: &[StreamResult],
        remote_has_retransmits: bool,
    ) -> Result<EndStream, ErrorCode> {
        let r = remote.iter().find(|r| r.id == self.id).ok_or(ErrorCode::STREAM_ID)?;
        let seconds = (seconds - self.late_start).max(0.0);
        let tcp = self.has_retransmits().then(|| self.tcp.end());
        let udp = self.udp.as_ref().map(|u| u.figures(self.sends));
        let local = EndSide { start: 0.0, end: seconds, seconds, bytes: self.bytes, tcp, udp };
        let remote_end = if r.end_time > 0.0 { r.end_time } else { seconds };
        let remote_tcp =
            remote_has_retransmits.then(|| EndTcpInfo { retransmits: r.retransmits, ..EndTcpInfo::default() });
        // The peer's totals less what it omitted (a 3.12 peer sends no omitted counts).
        let remote_udp = self.udp.as_ref().map(|_| UdpFigures {
            packets: (r.packets - r.omitted_packets.unwrap_or(0)).max(0) as u64,
            lost: r.errors - r.omitted_errors.unwrap_or(0),
            out_of_order: 0,
            jitter: r.jitter,
        });
        Ok(if self.sends {
            EndStream {
                socket: self.socket_no,
                local_is_sender: true,
                receiver: EndSide { start: 0.0, end: remote_end, seconds, bytes: r.bytes, tcp: None, udp: remote_udp },
                sender: local,
            }
        } else {
            EndStream {
                socket: self.socket_no,
                local_is_sender: false,
                sender: EndSide {
                    start: 0.0,
                    end: remote_end,
                    seconds: remote_end,
                    bytes: r.bytes,
                    tcp: remote_tcp,
                    udp: remote_udp,
                },
                receiver: EndSide { seconds: remote_end, ..local },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_iperf3() {
        let ids: Vec<i64> = (0..5).map(stream_id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 6]);
    }

    /// The prefilled send ring: every byte the peer receives is a payload byte, in runs that
    /// follow the payload (`0123456789` repeated), and the count is exact.
    #[test]
    fn sent_bytes_are_payload_bytes() {
        use smoltcp::iface::{Config, Interface, SocketSet};
        use smoltcp::phy::{Loopback, Medium};
        use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
        let mut dev = Loopback::new(Medium::Ethernet);
        let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1])));
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
        let mut sockets = SocketSet::new(alloc::vec![]);
        let buf = |n: usize| tcp::SocketBuffer::new(alloc::vec![0u8; n]);
        // A send ring that is not a multiple of the payload: the pieces still follow it.
        let mut server = tcp::Socket::new(buf(7000), buf(1000));
        server.listen(5201).unwrap();
        let server = sockets.add(server);
        let mut client = tcp::Socket::new(buf(1000), buf(23_456));
        client.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 5201), 40000).unwrap();
        let client = sockets.add(client);
        let payload = Payload { buf: (0..1000).map(|i| b'0' + (i % 10) as u8).collect() };
        let mut stream = DataStream::new(client, 0, true);
        let total = 300_000u64;
        let (mut sent, mut got) = (0u64, alloc::vec::Vec::new());
        let mut now = Instant::ZERO;
        for _ in 0..100_000 {
            iface.poll(now, &mut dev, &mut sockets);
            let limit = total - sent;
            sent += stream.pump(sockets.get_mut::<tcp::Socket>(client), &payload, limit);
            let s = sockets.get_mut::<tcp::Socket>(server);
            while let Ok(n) = s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), b.len())
            }) {
                if n == 0 {
                    break;
                }
            }
            if got.len() as u64 == total {
                break;
            }
            now += Duration::from_millis(1);
        }
        assert_eq!((sent, got.len() as u64), (total, total));
        assert!(stream.prefilled);
        let mut breaks = 0;
        for w in got.windows(2) {
            assert!(w[1].is_ascii_digit(), "a byte that is not the payload's: {}", w[1]);
            if w[1] != b'0' + (w[0] - b'0' + 1) % 10 {
                breaks += 1;
            }
        }
        // Only where the ring wraps (its length is not a multiple of 10).
        assert!(breaks <= total as usize / 23_456 + 1, "{breaks} breaks in the payload");
    }
}

/// iperf3's `sender_has_retransmits` for one side's results: 1 when it sends TCP and has
/// TCP_INFO, 0 when it sends without, -1 when it only receives.
pub fn sender_has_retransmits(streams: &[DataStream]) -> i64 {
    if !streams.iter().any(|s| s.sends) {
        -1
    } else if streams.iter().any(|s| s.has_retransmits()) {
        1
    } else {
        0
    }
}

/// Where a test is in its `-O` period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Omit {
    /// No omit period, or it is over.
    Over,
    /// The omit timer runs until then.
    Until(Instant),
    /// The timer ran out and the sending streams measure, but the receiving ones still drain
    /// what their sender queued before its own omit period ended (see
    /// [`Measurement::receive_drain`]); they start measuring then.
    Draining(Instant),
}

/// How late a UDP sender may end its omit period after this side's timer ran out: the
/// one-way delay of TEST_START plus the time the peer takes to read it (a stock iperf3
/// sleeping in select(2) wakes up to about a millisecond late on a loaded host). A paced UDP
/// sender checks its timers between datagrams; every millisecond more would omit datagrams
/// its sender counted (3 ms is 26 at 100 Mbit/s).
const UDP_SENDER_REACTION: Duration = Duration::from_millis(2);

/// The same for a TCP sender once its timer has run out, on top of the lag measured between
/// the two timers' starts (see [`Measurement::receive_drain`]). A stock iperf3 sending at full
/// speed runs its timers only between batches of writes (3.12: up to ten 128 KiB blocks), and
/// a loaded host adds its scheduling delay. With a fixed 2 ms for both, a uniperf receiver
/// against a 3.12 sender once counted 0.3 MB and once 0.5 MB more than it sent (two tests of
/// one CI run), and with 5 ms one against a 3.22 sender went over once in a local run of the
/// fidelity tests. A TCP receiver pays for the margin in bytes only (its rate is taken over its
/// own, later, start), but at 35 Gbit/s each millisecond is 4.4 MB its report lacks: 10 ms
/// put a TAP receiver's total more than the 36 MiB end-of-test slack of `tests/tap_interop.rs`
/// below its sender's.
const TCP_SENDER_REACTION: Duration = Duration::from_millis(3);

/// The longest a receiver extends its omit period to drain its sender's queue.
const MAX_RECEIVE_DRAIN: Duration = Duration::from_secs(2);

/// The clock of one running test: the omit period, interval boundaries and the final
/// partial interval. Times in reports are seconds since the measured period began.
#[derive(Debug)]
pub struct Measurement {
    pub streams: Vec<DataStream>,
    /// `-n` / `-k` as bytes: the most this side sends over all its sending streams after the
    /// omit period (iperf3 counts the limit test-wide and restarts it when omitting ends).
    send_limit: Option<u64>,
    /// Receive buffer of one data socket, for sizing the receive drain.
    rcv_buf: u64,
    /// TEST_START (omit period included).
    pub started: Instant,
    /// When the first data byte moved, either way.
    first_data: Option<Instant>,
    measure_start: Instant,
    omit: Omit,
    interval: Option<Duration>,
    interval_start: Instant,
    next_interval: Option<Instant>,
    /// UDP datagrams that were not counted, by reason.
    pub skipped: SkippedDatagrams,
}

fn secs(d: Duration) -> f64 {
    d.total_micros() as f64 / 1e6
}

/// What a [`Measurement`] needs to know about the test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasureConfig {
    /// `-O`, seconds.
    pub omit_secs: u32,
    /// `-i`, seconds (0: no interval reports).
    pub interval_secs: f64,
    /// `-n`/`-k` as bytes for this side's sending streams.
    pub send_limit: Option<u64>,
    /// Receive buffer of one data socket.
    pub rcv_buf: usize,
}

impl Measurement {
    pub fn new(streams: Vec<DataStream>, now: Instant, cfg: MeasureConfig) -> Self {
        let interval = (cfg.interval_secs > 0.0).then(|| Duration::from_micros((cfg.interval_secs * 1e6) as u64));
        // Both timers start now, with TEST_START, as iperf3's do.
        let omit = match cfg.omit_secs {
            0 => Omit::Over,
            n => Omit::Until(now + Duration::from_secs(n as u64)),
        };
        let mut m = Measurement {
            streams,
            send_limit: cfg.send_limit,
            rcv_buf: cfg.rcv_buf as u64,
            started: now,
            first_data: None,
            measure_start: now,
            omit,
            interval,
            interval_start: now,
            next_interval: None,
            skipped: SkippedDatagrams::default(),
        };
        m.next_interval = m.boundary(now);
        m
    }

    /// The next instant a timer fires after `from`: an interval's end or the omit deadline.
    fn boundary(&self, from: Instant) -> Option<Instant> {
        let next = self.interval.map(|i| from + i);
        let omit = match self.omit {
            Omit::Until(t) | Omit::Draining(t) => Some(t),
            Omit::Over => None,
        };
        match (next, omit) {
            (Some(n), Some(o)) => Some(n.min(o)),
            (n, o) => n.or(o),
        }
    }

    /// Measured bytes this side has sent (after the omit period), over all its streams.
    pub fn sent(&self) -> u64 {
        self.streams.iter().filter(|s| s.sends).map(|s| s.bytes).fold(0, u64::saturating_add)
    }

    /// Measured bytes this side has received (after the omit period), over all its streams.
    pub fn received(&self) -> u64 {
        self.streams.iter().filter(|s| !s.sends).map(|s| s.bytes).fold(0, u64::saturating_add)
    }

    /// True once this side's receiving streams have taken in `limit` bytes — for UDP, once
    /// their senders' sequence numbers show that many were sent (lost datagrams never arrive).
    pub fn receive_complete(&self, limit: u64) -> bool {
        let total = self
            .streams
            .iter()
            .filter(|s| !s.sends)
            .map(|s| match &s.udp {
                Some(u) => (u.rx.highest - u.rx.omitted_packets).saturating_mul(u.len as u64),
                None => s.bytes,
            })
            .fold(0, u64::saturating_add);
        total >= limit
    }

    /// `-n`/`-k` as bytes, if the test ends by count.
    pub fn send_limit(&self) -> Option<u64> {
        self.send_limit
    }

    /// True once this side has written everything `-n`/`-k` allows (never without a limit).
    pub fn send_complete(&self) -> bool {
        self.send_limit.is_some_and(|l| self.sent() >= l)
    }

    /// True when the peer has acknowledged every byte this side wrote: the data has left the
    /// stack, so a receiver that counts what reached it will count all of it.
    pub fn all_acked(&self, sockets: &SocketSet<'_>) -> bool {
        self.queued_to_send(sockets) == 0
    }

    /// Bytes this side's TCP streams hold in their sockets: written, not yet acknowledged.
    pub fn queued_to_send(&self, sockets: &SocketSet<'_>) -> usize {
        self.streams
            .iter()
            .filter(|s| s.sends && s.udp.is_none())
            .map(|s| sockets.get::<tcp::Socket>(s.handle).send_queue())
            .sum()
    }

    /// Moves data on every stream: drains what arrived and, if `sending`, writes payload as
    /// far as the socket, the `-b` pacing and the `-n`/`-k` limit allow. Returns the bytes
    /// moved either way. `clock` stamps UDP datagrams as they are written; `info` (the flow
    /// probe's TCP_INFO) bounds what a TCP stream keeps queued ([`DataStream::queue_cap`]).
    // The loop's inputs as they are: grouping them in a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn pump(
        &mut self,
        sockets: &mut SocketSet<'_>,
        payload: &Payload,
        rate: u64,
        now: Instant,
        sending: bool,
        clock: &mut dyn FnMut() -> Instant,
        info: &dyn TcpInfoSource,
    ) -> u64 {
        let mut left = match self.send_limit {
            Some(l) => l.saturating_sub(self.sent()),
            None => u64::MAX,
        };
        let started = self.started;
        let mut moved = self.receive_udp(sockets, now);
        for s in &mut self.streams {
            let before = s.bytes;
            if s.udp.is_some() {
                if s.sends && sending {
                    let sock = sockets.get_mut::<udp::Socket>(s.handle);
                    moved += s.send_udp(sock, payload, left, now, clock);
                }
            } else {
                let sock = sockets.get_mut::<tcp::Socket>(s.handle);
                // The probe lookup only when the socket can take data (at full speed it often
                // cannot, and this runs on every pass of the loop).
                let limit = if sending && sock.can_send() {
                    let queue_room = s.queue_cap(info).saturating_sub(sock.send_queue() as u64);
                    s.send_allowance(rate, started, now).min(left).min(queue_room)
                } else {
                    0
                };
                moved += s.pump(sock, payload, limit);
            }
            if s.sends {
                left = left.saturating_sub(s.bytes - before);
            }
        }
        if moved > 0 && self.first_data.is_none() {
            self.first_data = Some(now);
        }
        moved
    }

    /// Reads every datagram the UDP sockets hold and gives each to the receiving stream of
    /// its sender (a server's streams share one socket); what belongs to no stream, is too
    /// short or carries an impossible sequence number is counted in `skipped`.
    fn receive_udp(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> u64 {
        let mut moved = 0;
        let mut done: heapless::Vec<SocketHandle, 8> = heapless::Vec::new();
        for i in 0..self.streams.len() {
            let Some(h) = self.streams[i].udp.as_ref().map(|_| self.streams[i].handle) else { continue };
            if done.contains(&h) {
                continue;
            }
            // More sockets than fit are read again; reading an empty socket costs nothing.
            let _ = done.push(h);
            let sock = sockets.get_mut::<udp::Socket>(h);
            while let Ok((data, meta)) = sock.recv() {
                let from = meta.endpoint;
                let arrival = arrival_micros(meta.meta.id, now);
                let Some(s) = self
                    .streams
                    .iter_mut()
                    .find(|s| !s.sends && s.handle == h && s.udp.as_ref().is_some_and(|u| u.peer == from))
                else {
                    self.skipped.unknown_sender += 1;
                    continue;
                };
                let Some(u) = s.udp.as_mut() else { continue };
                let parsed = Datagram::new_checked(data, u.counters_64bit).and_then(|d| DatagramRepr::parse(&d));
                let Ok(repr) = parsed else {
                    self.skipped.malformed += 1;
                    continue;
                };
                if u.rx.on_datagram(&repr, arrival) == crate::udp::Arrival::Implausible {
                    self.skipped.implausible += 1;
                    continue;
                }
                let n = data.len() as u64;
                s.count(n);
                moved += n;
            }
        }
        moved
    }

    /// The earliest time a UDP stream's pacer lets its next datagram go.
    pub fn next_send_at(&self) -> Option<Instant> {
        self.streams.iter().filter(|s| s.sends).filter_map(|s| s.udp.as_ref()?.next_send_at()).min()
    }

    /// When `-t` runs out: `time` seconds after the omit timer ran out (None before).
    pub fn time_limit(&self, time_secs: u32) -> Option<Instant> {
        (!matches!(self.omit, Omit::Until(_))).then(|| self.measure_start + Duration::from_secs(time_secs as u64))
    }

    /// True until every stream measures (the omit period, and a receiver's drain after it).
    pub fn omitting(&self, now: Instant) -> bool {
        match self.omit {
            Omit::Over => false,
            Omit::Until(t) | Omit::Draining(t) => now < t,
        }
    }

    /// Seconds of measured time (0 during the omit period).
    pub fn elapsed(&self, now: Instant) -> f64 {
        if matches!(self.omit, Omit::Until(t) if now < t) { 0.0 } else { secs(now - self.measure_start) }
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.next_interval
    }

    /// How long a receiving side extends its omit period past its timer. A sender omits what
    /// it has *written* by its omit end, but part of that still sits in its socket buffer and
    /// in flight, and reaches the receiver only later; counting it would let the receiver
    /// report more than was sent (iperf3 does, by up to ~10 MB on a veth pair). A Linux sender
    /// holds at most about three receive windows (its send buffer grows to about twice its
    /// congestion window, which the receive window bounds, plus the window in flight), so the
    /// receiver waits for that much data at the rate it saw during the omit period, plus
    /// [`TCP_SENDER_REACTION`] and the time from our TEST_START to the first data byte (any
    /// receiving TCP stream), or [`UDP_SENDER_REACTION`]. Bounded by [`MAX_RECEIVE_DRAIN`]; 0
    /// for a side that only sends.
    fn receive_drain(&self, now: Instant) -> Duration {
        let receiving: Vec<&DataStream> = self.streams.iter().filter(|s| !s.sends).collect();
        let Some(since) = self.first_data else { return Duration::ZERO };
        if receiving.is_empty() {
            return Duration::ZERO;
        }
        let bytes = receiving.iter().map(|s| s.total_bytes).fold(0, u64::saturating_add);
        let elapsed = (now - since).total_micros();
        if bytes == 0 || elapsed == 0 {
            return MAX_RECEIVE_DRAIN;
        }
        let queued = 3 * self.rcv_buf * receiving.len() as u64;
        // A sender starts its omit timer before it sends its first byte, so it started it at
        // most `lag` after ours: a stock client starts it on TEST_START and sends after
        // TEST_RUNNING (3.22 from a thread it starts then), which follows at once.
        let (reaction, lag) = if receiving.iter().any(|s| s.udp.is_none()) {
            (TCP_SENDER_REACTION, since - self.started)
        } else {
            (UDP_SENDER_REACTION, Duration::ZERO)
        };
        let drain = queued as u128 * elapsed as u128 / bytes as u128 + (reaction + lag).total_micros() as u128;
        Duration::from_micros(drain.min(MAX_RECEIVE_DRAIN.total_micros() as u128) as u64)
    }

    fn report(&mut self, now: Instant, omitted: bool, info: &dyn TcpInfoSource) -> crate::report::IntervalReport {
        let base = if omitted { self.started } else { self.measure_start };
        let start = secs(self.interval_start - base);
        let end = secs(now - base);
        let streams = self
            .streams
            .iter_mut()
            .map(|s| {
                let tcp = s.tcp_info(info).map(|i| s.tcp.sample(&i));
                let udp = s.udp.as_mut().map(|u| {
                    if s.sends {
                        UdpFigures { packets: u.tx.take_interval(), ..UdpFigures::default() }
                    } else {
                        let i = u.rx.take_interval();
                        UdpFigures { packets: i.packets, lost: i.lost, out_of_order: i.out_of_order, jitter: i.jitter }
                    }
                });
                crate::report::IntervalStream {
                    socket: s.socket_no,
                    start,
                    end,
                    bytes: s.take_interval(),
                    omitted,
                    sender: s.sends,
                    tcp,
                    udp,
                }
            })
            .collect();
        self.interval_start = now;
        crate::report::IntervalReport { streams }
    }

    /// The omit timer ran out: the measured period starts; the sending streams restart
    /// their counters now, the receiving ones when their drain is over (`receive_drain`).
    fn end_omit(&mut self, now: Instant, info: &dyn TcpInfoSource) {
        self.measure_start = now;
        self.interval_start = now;
        for s in self.streams.iter_mut().filter(|s| s.sends) {
            s.reset_after_omit(info);
        }
        match self.receive_drain(now) {
            Duration::ZERO => self.end_drain(now, info),
            d => self.omit = Omit::Draining(now + d),
        }
    }

    /// The receiving streams start measuring; what they read since the omit timer ran out
    /// belongs to no report, like iperf3's data between its last omitted tick and the timer.
    fn end_drain(&mut self, now: Instant, info: &dyn TcpInfoSource) {
        let late = secs(now - self.measure_start);
        for s in self.streams.iter_mut().filter(|s| !s.sends) {
            s.reset_after_omit(info);
            s.late_start = late;
        }
        self.omit = Omit::Over;
    }

    /// Emits the interval that ended at `now`, if one did, and handles the end of the omit
    /// period (counters restart and report times restart at 0.0).
    pub fn poll_timers(&mut self, now: Instant, info: &dyn TcpInfoSource) -> Option<crate::report::IntervalReport> {
        let due = self.next_interval?;
        if now < due {
            return None;
        }
        let rep = match self.omit {
            Omit::Until(t) if now >= t => {
                let rep = self.interval.map(|_| self.report(now, true, info));
                self.end_omit(now, info);
                rep
            }
            Omit::Draining(t) if now >= t => {
                self.end_drain(now, info);
                None
            }
            _ => {
                let omitted = matches!(self.omit, Omit::Until(_));
                self.interval.map(|_| self.report(now, omitted, info))
            }
        };
        self.next_interval = self.boundary(now);
        rep
    }

    /// The test ended: the final partial interval, unless it is under a tenth of the interval
    /// and empty (iperf3 skips those) and an earlier one was reported. A test shorter than one
    /// interval (`-n` on a fast path) still gets its one interval.
    pub fn finish(&mut self, now: Instant, info: &dyn TcpInfoSource) -> Option<crate::report::IntervalReport> {
        let Some(i) = self.interval else {
            // No interval reports, but the end summary still wants its TCP_INFO snapshot.
            for s in &mut self.streams {
                if let Some(t) = s.tcp_info(info) {
                    s.tcp.sample(&t);
                }
            }
            return None;
        };
        let omitted = matches!(self.omit, Omit::Until(t) if now < t);
        let len = now - self.interval_start;
        let first = self.interval_start == self.started;
        self.next_interval = None;
        // Taken even when not shown: the end summary wants this TCP_INFO snapshot.
        let rep = self.report(now, omitted, info);
        // iperf3 keeps a final interval that is at least a tenth of `-i` or moved any byte: a
        // server that reads on until TEST_END shows the short `2.00-2.00` tail a client lacks.
        let moved = rep.streams.iter().any(|s| s.bytes > 0);
        if len.total_micros() * 10 < i.total_micros() && !moved && !first {
            return None;
        }
        Some(rep)
    }
}
