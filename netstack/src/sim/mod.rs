//! A deterministic simulated Ethernet link between two smoltcp interfaces, on a virtual clock:
//! one-way delay, Bernoulli loss from a seeded PRNG, and a drop-tail bottleneck with a
//! serialization rate. It is what `uniperf sim` and the root-free tests run on.
//!
//! Each direction is an independent lane. A frame sent into a lane goes through three steps:
//!
//! 1. **Bottleneck admission** (only with `rate_bps`): the frame starts serializing when the
//!    link is free (`busy_until`). If it has to wait and the bytes already waiting plus its own
//!    length would exceed `queue_bytes`, it is tail-dropped. The frame being clocked out does
//!    not count as waiting, so `queue_bytes = 0` models a switch port with no buffer.
//! 2. **Loss**: an admitted frame then draws once from the lane's PRNG and is lost with
//!    probability `loss`. Loss is applied *after* the queue: a lost frame still took its place
//!    in the queue and its time on the wire, as a frame corrupted in propagation would. Frames
//!    dropped by the queue consume no random draw.
//! 3. **Propagation**: the survivor arrives `delay` after its serialization ends, and is handed
//!    to the receiving interface by the first `receive` whose timestamp is at or after that.
//!    Delivery is in order per direction.
//!
//! The two interfaces are polled one after the other, each with a freshly borrowed
//! [`SimLink::port`], so no `Rc<RefCell<…>>` is needed. Frame buffers are recycled through a
//! per-lane pool: in steady state no packet allocates.

mod pair;
mod script;
pub use pair::{CLIENT_IP, Node, Pair, SERVER_IP};
pub use script::{RawConn, RawPeer};

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

use crate::machine::SplitMix64;

/// Smallest allowed `mtu`: the IPv4 minimum datagram every host must accept (576) plus the
/// 14-byte Ethernet header.
pub const MIN_MTU: usize = 576 + 14;
/// Largest allowed `mtu`.
pub const MAX_MTU: usize = 65535;
/// Largest allowed one-way `delay`; keeps all time arithmetic far from overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Largest allowed `drop_log_capacity` (records are preallocated).
pub const MAX_DROP_LOG: usize = 1 << 20;
/// How many leading bytes of a dropped frame a [`DropRecord`] keeps: enough for the Ethernet,
/// IPv4 and TCP headers (sequence and ACK numbers) of an option-less segment and then some.
pub const DROP_HEAD_LEN: usize = 64;

/// Properties of one direction of the link (or of both, with [`SimLink::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay, added after serialization.
    pub delay: Duration,
    /// Probability in `0.0..=1.0` that a frame admitted to the link is lost (e.g. 0.001).
    pub loss: f64,
    /// Bottleneck serialization rate in bit/s, counting the L2 frame bytes (Ethernet header
    /// included; no preamble, FCS or inter-frame gap). `None`: infinitely fast, no queue.
    pub rate_bps: Option<u64>,
    /// Drop-tail limit, in bytes, of frames waiting for serialization at the bottleneck
    /// (the frame on the wire excluded). Only meaningful with `rate_bps`.
    pub queue_bytes: usize,
    /// L2 frame size including the 14-byte Ethernet header; becomes the devices'
    /// `max_transmission_unit`.
    pub mtu: usize,
    /// Seed of this link's PRNG. Each direction derives its own independent stream from it, so
    /// the loss pattern of one direction does not depend on the traffic of the other.
    pub seed: u64,
    /// Whether smoltcp computes and verifies IPv4/TCP/UDP/ICMP checksums on this link. Off by
    /// default: both ends are smoltcp, the link never corrupts a frame, and software
    /// checksums cost about a quarter of the stack's CPU time.
    pub checksums: bool,
    /// How many [`DropRecord`]s each direction keeps (the most recent ones); 0 disables the log.
    pub drop_log_capacity: usize,
    /// Extra propagation delay per frame, uniform in `0..=jitter`. Frames stay in order: one
    /// that would overtake the frame before it arrives with it instead.
    pub jitter: Duration,
    /// How many [`Delivery`] records each direction keeps (the first ones); 0 keeps none.
    pub delivery_log_capacity: usize,
}

impl Default for LinkConfig {
    /// An ideal 1500-byte-MTU link: no delay, no loss, no rate limit. The queue limit of 1 MiB,
    /// used once a rate is set, is about what Linux's default 1000-frame `txqueuelen` holds.
    fn default() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bps: None,
            queue_bytes: 1 << 20,
            mtu: 1514,
            seed: 0,
            checksums: false,
            drop_log_capacity: 1024,
            jitter: Duration::ZERO,
            delivery_log_capacity: 0,
        }
    }
}

impl LinkConfig {
    /// Checks every field; the error names the offending field and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) {
            // NaN fails `contains` too.
            return Err(format!("loss must be a probability between 0 and 1, got {}", self.loss));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(format!(
                "mtu must be between {MIN_MTU} and {MAX_MTU} bytes (Ethernet header included), got {}",
                self.mtu
            ));
        }
        if self.rate_bps == Some(0) {
            return Err(String::from("rate_bps must be positive (use None for an unlimited rate)"));
        }
        if self.delay > MAX_DELAY {
            return Err(format!("delay must be at most {} s, got {} ms", MAX_DELAY.secs(), self.delay.total_millis()));
        }
        if self.jitter > MAX_DELAY {
            return Err(format!(
                "jitter must be at most {} s, got {} ms",
                MAX_DELAY.secs(),
                self.jitter.total_millis()
            ));
        }
        if self.delivery_log_capacity > MAX_DROP_LOG {
            return Err(format!(
                "delivery_log_capacity must be at most {MAX_DROP_LOG}, got {}",
                self.delivery_log_capacity
            ));
        }
        if self.drop_log_capacity > MAX_DROP_LOG {
            return Err(format!("drop_log_capacity must be at most {MAX_DROP_LOG}, got {}", self.drop_log_capacity));
        }
        Ok(())
    }
}

/// One end of the link, where an interface attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    A,
    B,
}

impl End {
    /// The direction this end transmits into.
    pub fn tx_direction(self) -> Direction {
        match self {
            End::A => Direction::AtoB,
            End::B => Direction::BtoA,
        }
    }

    /// The direction this end receives from.
    pub fn rx_direction(self) -> Direction {
        self.tx_direction().reverse()
    }
}

/// One direction of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    AtoB,
    BtoA,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::AtoB => Direction::BtoA,
            Direction::BtoA => Direction::AtoB,
        }
    }

    /// Distinct per direction, so one seed yields two unrelated PRNG streams.
    fn seed_salt(self) -> u64 {
        match self {
            Direction::AtoB => 0x243f_6a88_85a3_08d3,
            Direction::BtoA => 0x1319_8a2e_0370_7344,
        }
    }
}

/// Counters of one direction. `frames_sent = frames_delivered + frames_lost +
/// frames_queue_dropped + frames still in flight`, and likewise for bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames (and their bytes) the sending interface put into the link.
    pub frames_sent: u64,
    pub bytes_sent: u64,
    /// Frames handed to the receiving interface.
    pub frames_delivered: u64,
    pub bytes_delivered: u64,
    /// Frames lost by the Bernoulli draw.
    pub frames_lost: u64,
    pub bytes_lost: u64,
    /// Frames tail-dropped because the bottleneck queue was full.
    pub frames_queue_dropped: u64,
    pub bytes_queue_dropped: u64,
    /// The most bytes ever waiting for serialization at once.
    pub max_queue_bytes: u64,
    /// Drops that fell out of a full drop log (oldest first) or were not logged at all.
    pub drops_unlogged: u64,
}

/// Why the link discarded a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// The Bernoulli loss draw.
    Loss,
    /// The bottleneck queue was full.
    QueueOverflow,
}

/// One discarded frame: when the sender put it into the link, which way, why, and its leading
/// bytes so a flow log can tell which TCP segment it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropRecord {
    pub at: Instant,
    pub direction: Direction,
    pub cause: DropCause,
    /// Length of the whole frame.
    pub frame_len: usize,
    head: [u8; DROP_HEAD_LEN],
}

impl DropRecord {
    /// The first `min(frame_len, DROP_HEAD_LEN)` bytes of the frame.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.frame_len.min(DROP_HEAD_LEN)]
    }
}

/// A delivered frame: when it arrived at the receiving interface, and its leading bytes (for
/// checking what a receiver measured against the link's own times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub at: Instant,
    pub frame_len: usize,
    head: [u8; DROP_HEAD_LEN],
}

impl Delivery {
    /// The first `min(frame_len, DROP_HEAD_LEN)` bytes of the frame.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.frame_len.min(DROP_HEAD_LEN)]
    }
}

/// A frame in propagation, due at the receiver at `arrival_us`.
#[derive(Debug)]
struct InFlight {
    arrival_us: i64,
    buf: Vec<u8>,
}

/// One direction of the link: its bottleneck, its frames in flight and its accounting.
#[derive(Debug)]
struct Lane {
    cfg: LinkConfig,
    direction: Direction,
    rng: SplitMix64,
    /// Delay in µs, checked against `MAX_DELAY` at construction.
    delay_us: i64,
    /// Surviving frames in departure order; arrival times never decrease along it.
    in_flight: VecDeque<InFlight>,
    /// Admitted frames that may still be waiting to start serialization: (start, length),
    /// with start in rate units (see `Lane::units`). Start times never decrease along it.
    waiting: VecDeque<(u128, usize)>,
    waiting_bytes: usize,
    /// When the bottleneck finishes the last admitted frame, in rate units.
    busy_until: u128,
    /// Arrival of the newest surviving frame; keeps delivery in order even if the caller's
    /// clock goes backwards.
    last_arrival_us: i64,
    /// Spare frame buffers.
    pool: Vec<Vec<u8>>,
    /// Buffers ever allocated by this lane (the pool never shrinks).
    buffers_allocated: usize,
    stats: LinkStats,
    drop_log: VecDeque<DropRecord>,
    deliveries: Vec<Delivery>,
    /// Draws for `jitter`, independent of the loss draws so adding jitter keeps the losses.
    jitter_rng: SplitMix64,
}

impl Lane {
    fn new(cfg: LinkConfig, direction: Direction) -> Lane {
        let seed = SplitMix64(cfg.seed ^ direction.seed_salt()).next_u64();
        let delay_us = i64::try_from(cfg.delay.total_micros()).unwrap_or(i64::MAX);
        let drop_log = VecDeque::with_capacity(cfg.drop_log_capacity);
        let jitter_rng = SplitMix64(seed ^ 0x6a17_7e42);
        Lane {
            deliveries: Vec::with_capacity(cfg.delivery_log_capacity),
            jitter_rng,
            cfg,
            direction,
            rng: SplitMix64(seed),
            delay_us,
            in_flight: VecDeque::new(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            busy_until: 0,
            last_arrival_us: i64::MIN,
            pool: Vec::new(),
            buffers_allocated: 0,
            stats: LinkStats::default(),
            drop_log,
        }
    }

    /// Time in "rate units" of 1/rate µs: a frame of `n` bytes takes exactly `n * 8 * 10^6`
    /// of them, so serialization is exact at any rate. Times before zero count as zero.
    fn units(us: i64, rate: u64) -> u128 {
        u128::from(us.max(0).unsigned_abs()).saturating_mul(u128::from(rate))
    }

    /// The first µs at or after the time `units`.
    fn micros_ceil(units: u128, rate: u64) -> i64 {
        let rate = u128::from(rate.max(1));
        let us = units / rate + u128::from(!units.is_multiple_of(rate));
        i64::try_from(us).unwrap_or(i64::MAX)
    }

    fn next_arrival_us(&self) -> Option<i64> {
        self.in_flight.front().map(|f| f.arrival_us)
    }

    fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = match self.pool.pop() {
            Some(buf) => buf,
            None => {
                self.buffers_allocated += 1;
                Vec::with_capacity(len.max(self.cfg.mtu))
            }
        };
        // Zeroed so nothing of an earlier frame can leak into a shorter one.
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// Decides the fate of a frame the interface has just written, sent at `now`.
    fn submit(&mut self, now: Instant, buf: Vec<u8>) {
        let len = buf.len();
        let len64 = len as u64;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += len64;
        let now_us = now.total_micros();

        let departure_us = match self.cfg.rate_bps {
            None => now_us,
            Some(rate) => {
                let now_units = Self::units(now_us, rate);
                while let Some(&(start, n)) = self.waiting.front() {
                    if start > now_units {
                        break;
                    }
                    self.waiting.pop_front();
                    self.waiting_bytes -= n;
                }
                let start = self.busy_until.max(now_units);
                let must_wait = start > now_units;
                if must_wait && self.waiting_bytes.saturating_add(len) > self.cfg.queue_bytes {
                    self.stats.frames_queue_dropped += 1;
                    self.stats.bytes_queue_dropped += len64;
                    self.discard(now, DropCause::QueueOverflow, buf);
                    return;
                }
                if must_wait {
                    self.waiting.push_back((start, len));
                    self.waiting_bytes += len;
                    self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(self.waiting_bytes as u64);
                }
                let serialization = u128::from(len64).saturating_mul(8_000_000);
                self.busy_until = start.saturating_add(serialization);
                Self::micros_ceil(self.busy_until, rate)
            }
        };

        // `loss == 0` takes no draw; `loss == 1` always drops since `next_f64() < 1`.
        if self.cfg.loss > 0.0 && self.rng.next_f64() < self.cfg.loss {
            self.stats.frames_lost += 1;
            self.stats.bytes_lost += len64;
            self.discard(now, DropCause::Loss, buf);
            return;
        }

        let jitter_us = match self.cfg.jitter.total_micros() {
            0 => 0,
            j => (self.jitter_rng.next_u64() % (j + 1)) as i64,
        };
        let arrival_us = departure_us.saturating_add(self.delay_us + jitter_us).max(self.last_arrival_us);
        self.last_arrival_us = arrival_us;
        self.in_flight.push_back(InFlight { arrival_us, buf });
    }

    fn discard(&mut self, now: Instant, cause: DropCause, buf: Vec<u8>) {
        if self.cfg.drop_log_capacity == 0 {
            self.stats.drops_unlogged += 1;
        } else {
            if self.drop_log.len() >= self.cfg.drop_log_capacity {
                self.drop_log.pop_front();
                self.stats.drops_unlogged += 1;
            }
            let mut head = [0u8; DROP_HEAD_LEN];
            let n = buf.len().min(DROP_HEAD_LEN);
            head[..n].copy_from_slice(&buf[..n]);
            self.drop_log.push_back(DropRecord {
                at: now,
                direction: self.direction,
                cause,
                frame_len: buf.len(),
                head,
            });
        }
        self.pool.push(buf);
    }
}

/// Two directions of a simulated link between ends A and B.
#[derive(Debug)]
pub struct SimLink {
    a_to_b: Lane,
    b_to_a: Lane,
}

impl SimLink {
    /// A symmetric link: both directions behave as `cfg` says (with independent loss draws).
    pub fn new(cfg: LinkConfig) -> Result<SimLink, String> {
        Self::asymmetric(cfg.clone(), cfg)
    }

    /// A link whose directions differ, e.g. loss only on the data path. Port A's device
    /// capabilities (MTU, checksums) come from `a_to_b`, port B's from `b_to_a`.
    pub fn asymmetric(a_to_b: LinkConfig, b_to_a: LinkConfig) -> Result<SimLink, String> {
        a_to_b.validate().map_err(|e| format!("A->B: {e}"))?;
        b_to_a.validate().map_err(|e| format!("B->A: {e}"))?;
        Ok(SimLink { a_to_b: Lane::new(a_to_b, Direction::AtoB), b_to_a: Lane::new(b_to_a, Direction::BtoA) })
    }

    /// The device an interface at `end` polls with. Borrow it afresh for each `poll`.
    pub fn port(&mut self, end: End) -> Port<'_> {
        let (tx, rx) = match end {
            End::A => (&mut self.a_to_b, &mut self.b_to_a),
            End::B => (&mut self.b_to_a, &mut self.a_to_b),
        };
        Port { tx, rx }
    }

    /// Earliest time a frame becomes deliverable in either direction. Advance the virtual
    /// clock to the minimum of this and both interfaces' `poll_at`.
    pub fn next_arrival(&self) -> Option<Instant> {
        let a = self.a_to_b.next_arrival_us();
        let b = self.b_to_a.next_arrival_us();
        let us = match (a, b) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return None,
        };
        Some(Instant::from_micros(us))
    }

    /// Counters of one direction.
    pub fn stats(&self, dir: Direction) -> LinkStats {
        self.lane(dir).stats
    }

    pub fn config(&self, dir: Direction) -> &LinkConfig {
        &self.lane(dir).cfg
    }

    /// Frames of one direction still in propagation (sent, not lost, not yet received).
    pub fn frames_in_flight(&self, dir: Direction) -> usize {
        self.lane(dir).in_flight.len()
    }

    /// The most recent drops of one direction, oldest first.
    pub fn drop_log(&self, dir: Direction) -> impl Iterator<Item = &DropRecord> + '_ {
        self.lane(dir).drop_log.iter()
    }

    /// Changes one direction's loss rate from now on (e.g. 1.0: the peer vanishes).
    pub fn set_loss(&mut self, dir: Direction, loss: f64) {
        self.lane_mut(dir).cfg.loss = loss.clamp(0.0, 1.0);
    }

    /// The first deliveries of one direction (up to `delivery_log_capacity`), in order.
    pub fn deliveries(&self, dir: Direction) -> &[Delivery] {
        &self.lane(dir).deliveries
    }

    /// Forgets the logged drops of one direction (counters stay).
    pub fn clear_drop_log(&mut self, dir: Direction) {
        self.lane_mut(dir).drop_log.clear();
    }

    fn lane(&self, dir: Direction) -> &Lane {
        match dir {
            Direction::AtoB => &self.a_to_b,
            Direction::BtoA => &self.b_to_a,
        }
    }

    fn lane_mut(&mut self, dir: Direction) -> &mut Lane {
        match dir {
            Direction::AtoB => &mut self.a_to_b,
            Direction::BtoA => &mut self.b_to_a,
        }
    }
}

/// One end of a [`SimLink`] as a smoltcp device: it transmits into its end's outgoing
/// direction and receives from the other.
#[derive(Debug)]
pub struct Port<'a> {
    tx: &'a mut Lane,
    rx: &'a mut Lane,
}

impl Device for Port<'_> {
    type RxToken<'b>
        = PortRxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PortTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(PortRxToken<'_>, PortTxToken<'_>)> {
        let due = self.rx.next_arrival_us()? <= timestamp.total_micros();
        if !due {
            return None;
        }
        Some((PortRxToken { lane: self.rx }, PortTxToken { lane: self.tx, now: timestamp }))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<PortTxToken<'_>> {
        // Never back-pressure: a full bottleneck drops, as a real switch port would.
        Some(PortTxToken { lane: self.tx, now: timestamp })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.tx.cfg.mtu;
        caps.max_burst_size = None;
        caps.checksum =
            if self.tx.cfg.checksums { ChecksumCapabilities::default() } else { ChecksumCapabilities::ignored() };
        caps
    }
}

/// Receives the frame at the head of the port's incoming direction. Dropping the token
/// unconsumed leaves the frame in place.
#[derive(Debug)]
pub struct PortRxToken<'a> {
    lane: &'a mut Lane,
}

impl phy::RxToken for PortRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self.lane.in_flight.pop_front() {
            Some(frame) => {
                self.lane.stats.frames_delivered += 1;
                self.lane.stats.bytes_delivered += frame.buf.len() as u64;
                if self.lane.deliveries.len() < self.lane.cfg.delivery_log_capacity {
                    let mut head = [0u8; DROP_HEAD_LEN];
                    let n = frame.buf.len().min(DROP_HEAD_LEN);
                    head[..n].copy_from_slice(&frame.buf[..n]);
                    let at = Instant::from_micros(frame.arrival_us);
                    self.lane.deliveries.push(Delivery { at, frame_len: frame.buf.len(), head });
                }
                let result = f(&frame.buf);
                self.lane.pool.push(frame.buf);
                result
            }
            // `receive` only hands out a token when a frame is due, and the token's borrow
            // keeps anyone else from taking it; an empty frame is still better than a panic.
            None => f(&[]),
        }
    }
}

/// Sends one frame into the port's outgoing direction.
#[derive(Debug)]
pub struct PortTxToken<'a> {
    lane: &'a mut Lane,
    now: Instant,
}

impl phy::TxToken for PortTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = self.lane.take_buffer(len);
        let result = f(&mut buf);
        self.lane.submit(self.now, buf);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{RxToken, TxToken};
    use smoltcp::socket::tcp;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

    // ---- device-level helpers ----

    fn send_frame(link: &mut SimLink, end: End, at: Instant, len: usize, tag: u8) {
        let mut port = link.port(end);
        let tx = port.transmit(at).expect("the link never back-pressures");
        tx.consume(len, |buf| buf.fill(tag));
    }

    /// Receives one due frame at `at`: its first byte and length.
    fn recv_frame(link: &mut SimLink, end: End, at: Instant) -> Option<(u8, usize)> {
        let mut port = link.port(end);
        let (rx, _tx) = port.receive(at)?;
        Some(rx.consume(|buf| (buf.first().copied().unwrap_or(0), buf.len())))
    }

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn sim_frame_arrives_after_delay_in_order() {
        let cfg = LinkConfig { delay: Duration::from_millis(10), ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        send_frame(&mut link, End::A, ms(0), 100, 1);
        send_frame(&mut link, End::A, ms(1), 100, 2);
        send_frame(&mut link, End::B, ms(2), 60, 9);
        assert_eq!(link.next_arrival(), Some(ms(10)));
        assert_eq!(recv_frame(&mut link, End::B, Instant::from_micros(9_999)), None);
        // Port A receives only what B sent, and nothing before it is due.
        assert_eq!(recv_frame(&mut link, End::A, ms(10)), None);
        assert_eq!(recv_frame(&mut link, End::B, ms(10)), Some((1, 100)));
        assert_eq!(recv_frame(&mut link, End::B, ms(10)), None);
        assert_eq!(link.next_arrival(), Some(ms(11)));
        assert_eq!(recv_frame(&mut link, End::B, ms(50)), Some((2, 100)));
        assert_eq!(recv_frame(&mut link, End::A, ms(12)), Some((9, 60)));
        assert_eq!(link.next_arrival(), None);
        let s = link.stats(Direction::AtoB);
        assert_eq!((s.frames_sent, s.frames_delivered, s.bytes_delivered), (2, 2, 200));
        assert_eq!(link.stats(Direction::BtoA).frames_delivered, 1);
    }

    #[test]
    fn sim_rate_serializes_back_to_back() {
        // 1500 bytes at 1.2 Mbit/s is exactly 10 ms on the wire.
        let cfg = LinkConfig { delay: Duration::from_millis(5), rate_bps: Some(1_200_000), ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        for i in 0..5 {
            send_frame(&mut link, End::A, ms(0), 1500, i);
        }
        for i in 0..5u8 {
            let due = ms(5 + 10 * (i64::from(i) + 1));
            assert_eq!(link.next_arrival(), Some(due));
            assert_eq!(recv_frame(&mut link, End::B, due - Duration::from_micros(1)), None);
            assert_eq!(recv_frame(&mut link, End::B, due), Some((i, 1500)));
        }
        // An idle link sends at once again.
        send_frame(&mut link, End::A, ms(200), 1500, 7);
        assert_eq!(link.next_arrival(), Some(ms(215)));
        // Sub-µs serialization times add up exactly, with no rounding per frame: each frame
        // below takes 1/3 µs.
        let cfg = LinkConfig { rate_bps: Some(3_000_000_000), ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        for _ in 0..3000 {
            send_frame(&mut link, End::A, ms(0), 125, 0);
        }
        // 3000 * 1000 bits / 3 Gbit/s = 1 ms for the last one.
        let mut last = Instant::ZERO;
        while let Some(t) = link.next_arrival() {
            last = t;
            recv_frame(&mut link, End::B, t).unwrap();
        }
        assert_eq!(last, ms(1));
    }

    #[test]
    fn sim_queue_overflow_tail_drops() {
        let cfg = LinkConfig { rate_bps: Some(1_000_000), queue_bytes: 3028, ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        for i in 0..10 {
            send_frame(&mut link, End::A, ms(0), 1514, i);
        }
        // One on the wire, two waiting (3028 bytes), the other seven dropped.
        let s = link.stats(Direction::AtoB);
        assert_eq!(s.frames_queue_dropped, 7);
        assert_eq!(s.bytes_queue_dropped, 7 * 1514);
        assert_eq!(s.max_queue_bytes, 3028);
        assert_eq!(link.frames_in_flight(Direction::AtoB), 3);
        let log: Vec<_> = link.drop_log(Direction::AtoB).collect();
        assert_eq!(log.len(), 7);
        assert!(log.iter().all(|d| d.cause == DropCause::QueueOverflow && d.frame_len == 1514));
        assert_eq!(log[0].head()[0], 3, "the tail is dropped, not the head");
        // Once the first frame is clocked out (12.112 ms), one more fits.
        send_frame(&mut link, End::A, Instant::from_micros(12_112), 1514, 20);
        send_frame(&mut link, End::A, Instant::from_micros(12_112), 1514, 21);
        assert_eq!(link.stats(Direction::AtoB).frames_queue_dropped, 8);
        let mut got = Vec::new();
        while let Some(t) = link.next_arrival() {
            got.push(recv_frame(&mut link, End::B, t).unwrap().0);
        }
        assert_eq!(got, [0, 1, 2, 20]);
        // Queue size 0: only the frame on the wire, nothing waits.
        let cfg = LinkConfig { rate_bps: Some(1_000_000), queue_bytes: 0, ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        for i in 0..3 {
            send_frame(&mut link, End::B, ms(0), 1000, i);
        }
        assert_eq!(link.stats(Direction::BtoA).frames_queue_dropped, 2);
    }

    #[test]
    fn sim_loss_rate_is_binomial_and_per_seed() {
        const N: u64 = 100_000;
        let run = |seed: u64, loss: f64| {
            let cfg = LinkConfig { loss, seed, drop_log_capacity: 16, ..LinkConfig::default() };
            let mut link = SimLink::new(cfg).unwrap();
            for i in 0..N {
                let t = Instant::from_micros(i as i64);
                send_frame(&mut link, End::A, t, 64, 0);
                let _ = recv_frame(&mut link, End::B, t);
            }
            let log: Vec<Instant> = link.drop_log(Direction::AtoB).map(|d| d.at).collect();
            (link.stats(Direction::AtoB), log, link.a_to_b.buffers_allocated)
        };
        let (s, log, allocated) = run(1, 0.01);
        // Mean 1000, standard deviation ~31.5: allow five.
        assert!(s.frames_lost.abs_diff(1000) < 160, "lost {}", s.frames_lost);
        assert_eq!(s.frames_delivered + s.frames_lost, N);
        assert_eq!(s.drops_unlogged, s.frames_lost - 16, "the log keeps the newest 16");
        assert_eq!(allocated, 1, "one buffer, recycled for every frame");
        assert_eq!(run(1, 0.01).1, log, "same seed, same drops");
        assert_ne!(run(2, 0.01).1, log, "different seed, different drops");
        let (fine, _, _) = run(7, 0.001);
        assert!(fine.frames_lost.abs_diff(100) < 50, "lost {}", fine.frames_lost);
        assert_eq!(run(3, 1.0).0.frames_delivered, 0);
        assert_eq!(run(3, 0.0).0.frames_lost, 0);
    }

    #[test]
    fn sim_directions_draw_independently() {
        let cfg = LinkConfig { loss: 0.5, seed: 9, ..LinkConfig::default() };
        let pattern = |busy_other_way: bool| {
            let mut link = SimLink::new(cfg.clone()).unwrap();
            for i in 0..200 {
                send_frame(&mut link, End::A, ms(i), 64, 0);
                if busy_other_way {
                    send_frame(&mut link, End::B, ms(i), 64, 0);
                }
            }
            link.drop_log(Direction::AtoB).map(|d| d.at).collect::<Vec<_>>()
        };
        assert_eq!(pattern(false), pattern(true));
        let mut link = SimLink::new(cfg.clone()).unwrap();
        for i in 0..200 {
            send_frame(&mut link, End::A, ms(i), 64, 0);
            send_frame(&mut link, End::B, ms(i), 64, 0);
        }
        let ab: Vec<_> = link.drop_log(Direction::AtoB).map(|d| d.at).collect();
        let ba: Vec<_> = link.drop_log(Direction::BtoA).map(|d| d.at).collect();
        assert_ne!(ab, ba);
    }

    #[test]
    fn sim_survives_odd_input() {
        let cfg = LinkConfig { delay: MAX_DELAY, rate_bps: Some(1), queue_bytes: 0, ..LinkConfig::default() };
        let mut link = SimLink::new(cfg).unwrap();
        send_frame(&mut link, End::A, Instant::from_micros(i64::MAX), 0, 0);
        send_frame(&mut link, End::A, Instant::from_micros(i64::MIN), 70_000, 0);
        send_frame(&mut link, End::B, Instant::from_micros(-5), 10, 0);
        let _ = recv_frame(&mut link, End::B, Instant::from_micros(i64::MAX));
        let _ = recv_frame(&mut link, End::A, Instant::from_micros(i64::MIN));
        // Time running backwards does not reorder frames.
        let mut link = SimLink::new(LinkConfig::default()).unwrap();
        send_frame(&mut link, End::A, ms(10), 64, 1);
        send_frame(&mut link, End::A, ms(5), 64, 2);
        assert_eq!(recv_frame(&mut link, End::B, ms(10)), Some((1, 64)));
        assert_eq!(recv_frame(&mut link, End::B, ms(10)), Some((2, 64)));
        // A received token dropped unconsumed leaves the frame in place.
        send_frame(&mut link, End::A, ms(20), 64, 3);
        {
            let mut port = link.port(End::B);
            let (_rx, _tx) = port.receive(ms(20)).unwrap();
        }
        assert_eq!(recv_frame(&mut link, End::B, ms(20)), Some((3, 64)));
    }

    #[test]
    fn sim_validate_names_the_field() {
        let bad = |f: fn(&mut LinkConfig), field: &str| {
            let mut cfg = LinkConfig::default();
            f(&mut cfg);
            let err = cfg.validate().unwrap_err();
            assert!(err.starts_with(field), "{err:?} should name {field}");
            let err = SimLink::asymmetric(LinkConfig::default(), cfg).unwrap_err();
            assert!(err.contains(field) && err.starts_with("B->A"), "{err:?}");
        };
        bad(|c| c.loss = -0.01, "loss");
        bad(|c| c.loss = 1.0001, "loss");
        bad(|c| c.loss = f64::NAN, "loss");
        bad(|c| c.loss = f64::INFINITY, "loss");
        bad(|c| c.mtu = 589, "mtu");
        bad(|c| c.mtu = 65536, "mtu");
        bad(|c| c.rate_bps = Some(0), "rate_bps");
        bad(|c| c.delay = Duration::from_secs(3601), "delay");
        bad(|c| c.drop_log_capacity = MAX_DROP_LOG + 1, "drop_log_capacity");
        assert_eq!(LinkConfig::default().validate(), Ok(()));
        let edge = LinkConfig {
            loss: 1.0,
            mtu: MIN_MTU,
            rate_bps: Some(1),
            queue_bytes: 0,
            delay: MAX_DELAY,
            ..LinkConfig::default()
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    // ---- two smoltcp interfaces over the link ----

    const SERVER_PORT: u16 = 5201;

    struct Node {
        iface: Interface,
        sockets: SocketSet<'static>,
        tcp: SocketHandle,
    }

    impl Node {
        fn new(link: &mut SimLink, end: End, host: u8, buf: usize, cc: tcp::CongestionControl) -> Node {
            let mac = EthernetAddress([0x02, 0, 0, 0, 0, host]);
            let mut config = Config::new(HardwareAddress::Ethernet(mac));
            config.random_seed = u64::from(host);
            let mut iface = Interface::new(config, &mut link.port(end), Instant::ZERO);
            iface.update_ip_addrs(|addrs| {
                addrs.push(IpCidr::new(IpAddress::v4(198, 18, 0, host), 24)).unwrap();
            });
            let mut socket =
                tcp::Socket::new(tcp::SocketBuffer::new(vec![0; buf]), tcp::SocketBuffer::new(vec![0; buf]));
            socket.set_congestion_control(cc);
            let mut sockets = SocketSet::new(Vec::new());
            let tcp = sockets.add(socket);
            Node { iface, sockets, tcp }
        }

        fn socket(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.tcp)
        }
    }

    /// Client at A (198.18.0.1) sending to a server at B (198.18.0.2).
    struct Pair {
        link: SimLink,
        client: Node,
        server: Node,
        now: Instant,
    }

    impl Pair {
        fn new(cfg: LinkConfig, buf: usize, cc: tcp::CongestionControl) -> Pair {
            let mut link = SimLink::new(cfg).unwrap();
            let client = Node::new(&mut link, End::A, 1, buf, cc);
            let mut server = Node::new(&mut link, End::B, 2, buf, cc);
            server.socket().listen(SERVER_PORT).unwrap();
            Pair { link, client, server, now: Instant::ZERO }
        }

        fn connect(&mut self) {
            let remote = (IpAddress::v4(198, 18, 0, 2), SERVER_PORT);
            let socket = self.client.sockets.get_mut::<tcp::Socket>(self.client.tcp);
            socket.connect(self.client.iface.context(), remote, 49152).unwrap();
        }

        fn poll(&mut self) {
            let now = self.now;
            let c = &mut self.client;
            c.iface.poll(now, &mut self.link.port(End::A), &mut c.sockets);
            let s = &mut self.server;
            s.iface.poll(now, &mut self.link.port(End::B), &mut s.sockets);
        }

        /// Moves the clock to the next event; false if nothing is pending.
        fn advance(&mut self) -> bool {
            let now = self.now;
            let next = [
                self.client.iface.poll_at(now, &self.client.sockets),
                self.server.iface.poll_at(now, &self.server.sockets),
                self.link.next_arrival(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) => {
                    self.now = t.max(now);
                    true
                }
                None => false,
            }
        }
    }

    fn pattern(offset: usize) -> u8 {
        let x = (offset as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x >> 56) as u8 ^ (offset >> 12) as u8
    }

    #[derive(Debug, PartialEq)]
    struct Transfer {
        /// Virtual time the first and the last payload byte reached the server's app.
        first_byte: Instant,
        /// When the server's app had received half of the bytes.
        half_byte: Instant,
        last_byte: Instant,
        received: usize,
        ab: LinkStats,
        ba: LinkStats,
        drops: Vec<(Instant, Direction, DropCause)>,
    }

    /// Connects, sends `total` pattern bytes client→server and checks each one on arrival.
    fn transfer(cfg: LinkConfig, buf: usize, cc: tcp::CongestionControl, total: usize) -> Transfer {
        let mut p = Pair::new(cfg, buf, cc);
        p.connect();
        let (mut sent, mut received) = (0usize, 0usize);
        let (mut first_byte, mut half_byte, mut last_byte) = (None, None, Instant::ZERO);
        for _ in 0..2_000_000 {
            p.poll();
            let client = p.client.socket();
            if client.can_send() && sent < total {
                let n = client
                    .send(|buf| {
                        let n = buf.len().min(total - sent);
                        for (i, b) in buf[..n].iter_mut().enumerate() {
                            *b = pattern(sent + i);
                        }
                        (n, n)
                    })
                    .unwrap();
                sent += n;
            }
            let server = p.server.socket();
            if server.can_recv() {
                let n = server
                    .recv(|buf| {
                        for (i, b) in buf.iter().enumerate() {
                            assert_eq!(*b, pattern(received + i), "byte {}", received + i);
                        }
                        (buf.len(), buf.len())
                    })
                    .unwrap();
                if n > 0 {
                    first_byte.get_or_insert(p.now);
                    last_byte = p.now;
                }
                received += n;
                if received >= total / 2 {
                    half_byte.get_or_insert(p.now);
                }
            }
            if received == total {
                break;
            }
            assert!(p.now < Instant::from_secs(600), "stuck at {received} of {total} bytes");
            // The app may have queued data: poll again at once before letting time pass.
            p.poll();
            assert!(p.advance(), "no event pending at {received} of {total} bytes");
        }
        assert_eq!(received, total, "ran out of iterations");
        let drops = [Direction::AtoB, Direction::BtoA]
            .into_iter()
            .flat_map(|d| p.link.drop_log(d).map(|r| (r.at, r.direction, r.cause)))
            .collect::<Vec<_>>();
        Transfer {
            first_byte: first_byte.unwrap_or(Instant::ZERO),
            half_byte: half_byte.unwrap_or(Instant::ZERO),
            last_byte,
            received,
            ab: p.link.stats(Direction::AtoB),
            ba: p.link.stats(Direction::BtoA),
            drops,
        }
    }

    #[test]
    fn sim_tcp_handshake_takes_the_round_trips() {
        let d = Duration::from_millis(20);
        let cfg = LinkConfig { delay: d, ..LinkConfig::default() };
        let mut p = Pair::new(cfg, 8192, tcp::CongestionControl::Reno);
        p.connect();
        let (mut client_up, mut server_up) = (None, None);
        for _ in 0..1000 {
            p.poll();
            if client_up.is_none() && p.client.socket().state() == tcp::State::Established {
                client_up = Some(p.now);
            }
            if server_up.is_none() && p.server.socket().state() == tcp::State::Established {
                server_up = Some(p.now);
            }
            if server_up.is_some() || !p.advance() {
                break;
            }
        }
        let t0 = Instant::ZERO;
        // ARP request and reply (one round trip), then SYN and SYN-ACK (another): the client
        // is established after 4·D, the server one ACK later.
        assert_eq!(client_up, Some(t0 + d * 4));
        assert_eq!(server_up, Some(t0 + d * 5));

        // A second connection finds the neighbours cached: SYN→SYN-ACK is exactly 2·D.
        let start = p.now + Duration::from_millis(1);
        p.now = start;
        p.client.socket().abort();
        p.poll();
        let listener = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 8192]), tcp::SocketBuffer::new(vec![0; 8192]));
        let second = p.server.sockets.add(listener);
        p.server.sockets.get_mut::<tcp::Socket>(second).listen(SERVER_PORT + 1).unwrap();
        let remote = (IpAddress::v4(198, 18, 0, 2), SERVER_PORT + 1);
        let client = p.client.sockets.get_mut::<tcp::Socket>(p.client.tcp);
        client.connect(p.client.iface.context(), remote, 49153).unwrap();
        let mut up = None;
        for _ in 0..1000 {
            p.poll();
            if p.client.socket().state() == tcp::State::Established {
                up = Some(p.now);
                break;
            }
            assert!(p.advance());
        }
        assert_eq!(up, Some(start + d * 2));
    }

    #[test]
    fn sim_tcp_goodput_tracks_the_bottleneck() {
        let rate = 10_000_000u64;
        let cfg = LinkConfig {
            delay: Duration::from_millis(5),
            rate_bps: Some(rate),
            queue_bytes: 256 * 1024,
            ..LinkConfig::default()
        };
        let total = 3_000_000;
        let t = transfer(cfg, 64 * 1024, tcp::CongestionControl::Reno, total);
        assert_eq!(t.ab.frames_queue_dropped + t.ab.frames_lost, 0);
        let bits_per_sec =
            |bytes: usize, from: Instant, to: Instant| bytes as f64 * 8.0 / ((to - from).total_micros() as f64 / 1e6);
        let goodput = bits_per_sec(t.received, t.first_byte, t.last_byte);
        let steady = bits_per_sec(t.received - total / 2, t.half_byte, t.last_byte);
        // Payload is 1460 of every 1514 bytes on the wire, so the ceiling is 96.4 % of rate.
        let ceiling = rate as f64 * 1460.0 / 1514.0;
        assert!(goodput <= ceiling * 1.001, "goodput {goodput} above {ceiling}");
        assert!(steady <= ceiling * 1.001, "steady goodput {steady} above {ceiling}");
        assert!(goodput >= 0.9 * rate as f64, "goodput {goodput} too far below {rate}");
        assert!(steady >= 0.95 * ceiling, "steady goodput {steady} too far below {ceiling}");
        // The wire never carried more than the rate allows.
        let wire_secs = t.last_byte.total_micros() as f64 / 1e6;
        assert!((t.ab.bytes_delivered * 8) as f64 <= rate as f64 * wire_secs);
    }

    #[test]
    fn sim_tcp_delivers_everything_through_loss() {
        let cfg = LinkConfig { delay: Duration::from_millis(2), loss: 0.01, seed: 42, ..LinkConfig::default() };
        let t = transfer(cfg, 32 * 1024, tcp::CongestionControl::Reno, 600_000);
        assert_eq!(t.received, 600_000);
        assert!(t.ab.frames_lost > 0, "{:?}", t.ab);
        // Binomial check on what the link actually saw (n ≈ 450 data frames, p = 1 %).
        let n = t.ab.frames_sent - t.ab.frames_queue_dropped;
        let expected = n as f64 * 0.01;
        let sd = (n as f64 * 0.01 * 0.99).sqrt();
        assert!((t.ab.frames_lost as f64 - expected).abs() <= 4.0 * sd + 1.0, "lost {} of {n}", t.ab.frames_lost);
        assert_eq!(t.drops.len() as u64, t.ab.frames_lost + t.ba.frames_lost, "every loss is logged");
    }

    #[test]
    fn sim_tcp_runs_are_deterministic() {
        let cfg = |seed| LinkConfig {
            delay: Duration::from_millis(3),
            loss: 0.02,
            rate_bps: Some(50_000_000),
            queue_bytes: 32 * 1024,
            seed,
            ..LinkConfig::default()
        };
        let run = |seed| transfer(cfg(seed), 32 * 1024, tcp::CongestionControl::Reno, 200_000);
        let first = run(5);
        assert!(!first.drops.is_empty());
        assert_eq!(run(5), first);
        let other = run(6);
        assert_ne!(other.drops, first.drops);
        assert_eq!(other.received, first.received);
    }

    #[test]
    fn sim_tcp_overflows_a_small_queue() {
        let cfg = LinkConfig {
            delay: Duration::from_millis(5),
            rate_bps: Some(2_000_000),
            queue_bytes: 8 * 1024,
            ..LinkConfig::default()
        };
        let t = transfer(cfg, 64 * 1024, tcp::CongestionControl::Reno, 200_000);
        assert!(t.ab.frames_queue_dropped > 0, "{:?}", t.ab);
        assert_eq!(t.ab.frames_lost, 0);
        assert!(t.ab.max_queue_bytes <= 8 * 1024);
        assert!(t.drops.iter().all(|d| d.2 == DropCause::QueueOverflow));
    }
}
