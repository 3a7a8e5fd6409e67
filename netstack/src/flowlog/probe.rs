//! [`FlowProbe`]: a `phy::Device` that hands every frame to a [`FlowTracker`] on its way
//! through, modelled on smoltcp's `Tracer` but holding real state.

use core::borrow::BorrowMut;
use core::cell::{Cell, RefCell};

use smoltcp::phy::{Device, DeviceCapabilities, PacketMeta, RxToken, TxToken};
use smoltcp::time::Instant;

use super::{Dir, FlowId, FlowSample, FlowSummary, FlowTracker, ProbeConfig};

/// Wraps a device and logs the TCP flows passing through it. Frames are parsed on RX before
/// smoltcp sees them and on TX after smoltcp wrote them, stamped with the `Instant` given to
/// `receive`/`transmit` — or, with [`FlowProbe::with_frame_clock`], with the time each frame
/// is actually read or written (one poll can write a whole window; stamping all of it with
/// the poll's instant inflated RTTs on TAP from microseconds to milliseconds).
///
/// The tracker is owned (`T = FlowTracker`, the default) or borrowed (`T = &mut FlowTracker`):
/// a device that is borrowed afresh for each poll, such as `SimLink::port`, is wrapped per
/// poll with `FlowProbe::with_tracker(port, &mut tracker)`, which costs nothing.
pub struct FlowProbe<D: Device, T: BorrowMut<FlowTracker> = FlowTracker> {
    inner: D,
    // Shared by the RX and TX tokens `receive` hands out together; never borrowed across a
    // call into smoltcp, so the borrow cannot collide.
    tracker: RefCell<T>,
    clock: Option<FrameClock>,
    /// A TCP SYN (without ACK) came in since [`FlowProbe::take_syn`] was last asked.
    syn: Cell<bool>,
}

/// The platform's monotonic clock, read when a frame passes (same epoch as the poll's
/// timestamps).
pub type FrameClock = fn() -> Instant;

impl<D: Device> FlowProbe<D> {
    pub fn new(inner: D, cfg: ProbeConfig) -> Self {
        FlowProbe { inner, tracker: RefCell::new(FlowTracker::new(cfg)), clock: None, syn: Cell::new(false) }
    }
}

impl<D: Device, T: BorrowMut<FlowTracker>> FlowProbe<D, T> {
    /// Wraps `inner` around an existing tracker, owned or `&mut`.
    pub fn with_tracker(inner: D, tracker: T) -> Self {
        FlowProbe { inner, tracker: RefCell::new(tracker), clock: None, syn: Cell::new(false) }
    }

    /// Stamps each frame with `clock` when it is read or written, not with the poll's time.
    pub fn with_frame_clock(mut self, clock: FrameClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// True once after a frame opening a TCP connection (SYN without ACK) was received.
    pub fn take_syn(&self) -> bool {
        self.syn.replace(false)
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The tracker, for reading (TCP_INFO) while the probe is shared.
    pub fn tracker_ref(&self) -> core::cell::Ref<'_, T> {
        self.tracker.borrow()
    }

    pub fn into_parts(self) -> (D, T) {
        (self.inner, self.tracker.into_inner())
    }

    /// The flow state machine: samples, summaries, labels, sink.
    pub fn tracker(&mut self) -> &mut FlowTracker {
        self.tracker.get_mut().borrow_mut()
    }

    /// Attaches an iperf3 stream id to the flow(s) with this local port (see
    /// [`FlowTracker::label`]).
    pub fn label(&mut self, local_port: u16, stream_id: i64) {
        self.tracker().label(local_port, stream_id);
    }

    pub fn label_flow(&mut self, flow: FlowId, stream_id: i64) {
        self.tracker().label_flow(flow, stream_id);
    }

    pub fn take_samples(&mut self) -> alloc::vec::Vec<FlowSample> {
        self.tracker().take_samples()
    }

    pub fn flows(&mut self) -> alloc::vec::Vec<FlowSummary> {
        self.tracker().flows().collect()
    }
}

fn micros(t: Instant) -> u64 {
    u64::try_from(t.total_micros()).unwrap_or(0)
}

impl<D: Device, T: BorrowMut<FlowTracker>> Device for FlowProbe<D, T> {
    type RxToken<'a>
        = ProbeRxToken<'a, D::RxToken<'a>, T>
    where
        Self: 'a;
    type TxToken<'a>
        = ProbeTxToken<'a, D::TxToken<'a>, T>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        let (poll, clock) = (timestamp, self.clock);
        Some((
            ProbeRxToken { inner: rx, tracker: &self.tracker, poll, clock, syn: &self.syn },
            ProbeTxToken { inner: tx, tracker: &self.tracker, poll, clock },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(ProbeTxToken { inner: tx, tracker: &self.tracker, poll: timestamp, clock: self.clock })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// When a frame passed: the frame clock's reading now, else the poll's timestamp.
fn stamp(poll: Instant, clock: Option<FrameClock>) -> u64 {
    micros(clock.map_or(poll, |c| c()))
}

pub struct ProbeRxToken<'a, X: RxToken, T: BorrowMut<FlowTracker> = FlowTracker> {
    inner: X,
    tracker: &'a RefCell<T>,
    poll: Instant,
    clock: Option<FrameClock>,
    syn: &'a Cell<bool>,
}

/// An Ethernet frame carrying an IPv4 TCP segment with SYN set and ACK clear.
fn opens_connection(frame: &[u8]) -> bool {
    let Some(ip) = frame.get(14..) else { return false };
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return false;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip.get(ihl + 13).is_some_and(|flags| flags & 0x12 == 0x02)
}

impl<X: RxToken, T: BorrowMut<FlowTracker>> RxToken for ProbeRxToken<'_, X, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let (tracker, poll, clock, syn) = (self.tracker, self.poll, self.clock, self.syn);
        self.inner.consume(|frame| {
            if let Ok(mut t) = tracker.try_borrow_mut() {
                (*t).borrow_mut().on_frame(stamp(poll, clock), Dir::Rx, frame);
            }
            if opens_connection(frame) {
                syn.set(true);
            }
            f(frame)
        })
    }

    /// The inner device's metadata with `id` set to when the frame was read (the low 32 bits
    /// of the frame clock in µs): a UDP socket hands it back with each datagram, which gives
    /// the receiver per-datagram arrival times for jitter (see `udp::arrival_micros`).
    fn meta(&self) -> PacketMeta {
        let mut meta = self.inner.meta();
        meta.id = (stamp(self.poll, self.clock) as u32).max(1);
        meta
    }
}

pub struct ProbeTxToken<'a, X: TxToken, T: BorrowMut<FlowTracker> = FlowTracker> {
    inner: X,
    tracker: &'a RefCell<T>,
    poll: Instant,
    clock: Option<FrameClock>,
}

impl<X: TxToken, T: BorrowMut<FlowTracker>> TxToken for ProbeTxToken<'_, X, T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let (tracker, poll, clock) = (self.tracker, self.poll, self.clock);
        self.inner.consume(len, |buf| {
            let r = f(buf);
            if let Ok(mut t) = tracker.try_borrow_mut() {
                (*t).borrow_mut().on_frame(stamp(poll, clock), Dir::Tx, buf);
            }
            r
        })
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta);
    }
}
