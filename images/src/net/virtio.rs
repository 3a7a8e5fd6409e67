//! virtio-net as a smoltcp `phy::Device`, on the queues of [`super::queues`].
//!
//! Built for throughput: all receive buffers are posted up front and re-posted in batches once
//! smoltcp has read their frames; transmit buffers come from fixed pools and stay in flight
//! until the device hands them back, so `transmit()` says "no" (backpressure) only when a pool
//! is empty. The virtio-net header sits in front of the frame in the same buffer: one
//! descriptor per frame, no indirect table, no allocation per packet. Doorbells are rung once
//! per batch, not per frame: under TCG each one is an exit into QEMU that takes its big lock
//! and wakes its I/O thread, and the guest CPU is what limits throughput.
//!
//! Segmentation offload (see [`Offloads`]), which cuts smoltcp's per-segment work (one
//! `process_tcp`/dispatch per 64 KiB instead of per 1460 bytes):
//! * transmit (VIRTIO_NET_F_HOST_TSO4): smoltcp is told it may hand over TCP frames of up to
//!   64 KiB (`caps.segmentation.tcpv4`) and says which segment size to cut them into
//!   (`PacketMeta::segmentation_offload_size`, through `TxToken::set_meta`); the header gets
//!   `gso_type` TCPV4, `gso_size` and `hdr_len` (see `virtio_net_hdr::offload_tcpv4`). Such
//!   frames go into a second, small pool of 64 KiB buffers; everything else into the 2 KiB
//!   pool. With a TAP backend QEMU passes the super-segment to the host kernel as one GSO
//!   packet.
//! * receive (VIRTIO_NET_F_GUEST_TSO4, without MRG_RXBUF): the host hands over TCP segments of
//!   up to 64 KiB (GRO/GSO packets from the TAP), so every receive buffer must hold 65562
//!   bytes (virtio 1.2 §5.1.6.3.1). Only `BIG_RX_BUFS` of them are posted (the ring keeps its
//!   256 descriptors). smoltcp takes frames longer than its MTU as they are: ingress checks
//!   the IP length fields only, never the device MTU.
//!
//! The large buffers take 6.4 MiB where the plain path takes 1 MiB, so [`BufferPlan`] gives the
//! driver at most a quarter of the free heap: on a small VM it posts fewer large buffers, and
//! on a tiny one it drops large receive, then TSO, rather than starve the socket buffers.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::num::{NonZeroU16, NonZeroUsize};
use core::slice;

use netstack::smoltcp::phy::{
    Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, PacketMeta, RxToken, TxToken,
};
use netstack::smoltcp::time::Instant;
use netstack::virtio_net_hdr::{self, Header, gso};
use virtio_drivers::transport::SomeTransport;

use super::InterruptRoute;
use super::csum;
use super::hal::DmaRegion;
use super::queues::{FeatureNames, NetQueues, QUEUE_SIZE, SharedQueues, feature};

/// One packet buffer: header plus frame. 2 KiB holds a 1514-byte frame (and a VLAN tag) with
/// room to spare, and keeps buffers from straddling more than one page boundary.
const BUF_LEN: usize = 2048;
/// One large buffer: at least the 65562 bytes virtio 1.2 §5.1.6.3.1 asks receive buffers to
/// hold with GUEST_TSO4 and no MRG_RXBUF (12-byte header, Ethernet header with a VLAN tag, a
/// 65535-byte IP packet), rounded up to a multiple of 64.
const BIG_BUF_LEN: usize = 65600;
/// Largest frame smoltcp may build for the device to segment (`caps.segmentation.tcpv4`),
/// Ethernet header included: 65535 bytes. A tap hands QEMU's frame to the host kernel as one
/// skb, and the kernel segments any GSO skb of 64 KiB or more (`gso_max_size`) before the
/// next device, so a larger frame reached a second guest on the same bridge as 1514-byte
/// frames (image ↔ image 1.1 Gbit/s here; 3.2 Gbit/s with frames of at most 65000 bytes).
const TSO_FRAME: usize = 65535;
/// Receive buffers posted with large receive on: 64 × 64 KiB = 4 MiB, the most the device can
/// fill between two polls of ours at the rates seen under TCG (32 measured the same, within
/// the noise), when the heap allows (see [`BufferPlan`]); never fewer than `MIN_BIG_RX_BUFS`.
const BIG_RX_BUFS: usize = 64;
const MIN_BIG_RX_BUFS: usize = 16;
/// Large transmit buffers with TSO on, 2 MiB; each carries up to 44 segments, so this is
/// more data in flight in the ring than 256 small buffers (370 KiB). The small pool shrinks by
/// as many, so that no more buffers are ever in flight than the ring has descriptors.
const BIG_TX_BUFS: usize = 32;
const MIN_BIG_TX_BUFS: usize = 8;
/// The share of the free heap the driver's buffers may take (1/4): the rest is for the
/// socket buffers, which the roles size from what is free after `open`.
const DMA_SHARE_DIVISOR: usize = 4;
/// Ethernet header bytes on top of the IP MTU.
const ETH_HDR: usize = 14;
/// IP MTU when the device does not report one.
const DEFAULT_MTU: usize = 1500;
const NO_SLOT: u16 = u16::MAX;
/// Frames of a burst queued before the transmit doorbell rings at the latest; the rest is
/// kicked when smoltcp comes back to `receive` (the start of its next poll) or the ring fills.
const TX_KICK_BATCH: usize = 32;
/// Receive buffers smoltcp has finished with are re-posted this many at a time (or sooner,
/// when nothing more is waiting, and at most a quarter of all posted buffers): one doorbell
/// per batch instead of one per frame.
const RX_REPOST_BATCH: usize = 32;

/// What the driver asks for: the MAC address, the device's MTU and checksum offload both ways
/// (see `csum`), plus segmentation offload both ways unless [`Offloads`] turns it off. No
/// mergeable buffers (a frame fits one buffer), no EVENT_IDX (see `queues`), no indirect
/// descriptors (one descriptor per frame anyway).
const WANTED_FEATURES: u64 = feature::MAC | feature::MTU | feature::CSUM | feature::GUEST_CSUM;

/// Which segmentation offloads to ask the device for (`virtio_net.tso=` and `virtio_net.lro=`
/// on the kernel command line; both on by default). Either one falls back to the plain
/// 1514-byte path when the device does not offer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    /// Transmit: VIRTIO_NET_F_HOST_TSO4.
    pub tso: bool,
    /// Receive: VIRTIO_NET_F_GUEST_TSO4.
    pub lro: bool,
}

impl Default for Offloads {
    fn default() -> Self {
        Offloads { tso: true, lro: true }
    }
}

/// Counters since `open`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NicStats {
    pub rx_frames: u64,
    /// Received frames longer than one MTU (GUEST_TSO4 super-segments).
    pub rx_large: u64,
    /// Frames the device returned empty, shorter than the header or longer than the buffer.
    pub rx_bad: u64,
    /// Frames dropped for a wrong TCP/UDP checksum (checked here only with GUEST_CSUM).
    pub rx_bad_checksum: u64,
    pub tx_frames: u64,
    /// Frames sent for the device to segment (HOST_TSO4), and the segments they make.
    pub tx_tso: u64,
    pub tx_tso_segments: u64,
    /// Frames smoltcp built but that were not sent (no buffer, empty or oversize).
    pub tx_dropped: u64,
    /// `transmit()` calls refused because every transmit buffer was in flight.
    pub tx_ring_full: u64,
    /// Doorbell writes (receive queue, transmit queue).
    pub kicks: (u64, u64),
}

impl fmt::Display for NicStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx {} frames ({} large, {} bad, {} bad checksums), tx {} frames ({} TSO making {} segments, {} \
             dropped, ring full {} times), kicks rx {} tx {}",
            self.rx_frames,
            self.rx_large,
            self.rx_bad,
            self.rx_bad_checksum,
            self.tx_frames,
            self.tx_tso,
            self.tx_tso_segments,
            self.tx_dropped,
            self.tx_ring_full,
            self.kicks.0,
            self.kicks.1
        )
    }
}

/// How many large buffers each direction gets (0: that offload stays off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BufferPlan {
    big_rx: usize,
    big_tx: usize,
}

impl BufferPlan {
    /// The largest plan for the offloads asked for whose buffers fit `budget` bytes: the full
    /// counts, halved down to the minimums, then without large receive, then without TSO.
    fn fit(offloads: Offloads, budget: usize) -> Self {
        let mut plan = BufferPlan {
            big_rx: if offloads.lro { BIG_RX_BUFS } else { 0 },
            big_tx: if offloads.tso { BIG_TX_BUFS } else { 0 },
        };
        while plan.bytes() > budget && (plan.big_rx > MIN_BIG_RX_BUFS || plan.big_tx > MIN_BIG_TX_BUFS) {
            plan.big_rx = (plan.big_rx / 2).max(MIN_BIG_RX_BUFS.min(plan.big_rx));
            plan.big_tx = (plan.big_tx / 2).max(MIN_BIG_TX_BUFS.min(plan.big_tx));
        }
        if plan.bytes() > budget {
            plan.big_rx = 0;
        }
        if plan.bytes() > budget {
            plan.big_tx = 0;
        }
        plan
    }

    /// The DMA bytes of this plan (ring memory aside).
    fn bytes(&self) -> usize {
        let rx = if self.big_rx > 0 { self.big_rx * BIG_BUF_LEN } else { QUEUE_SIZE * BUF_LEN };
        rx + self.big_tx * BIG_BUF_LEN + (QUEUE_SIZE - self.big_tx) * BUF_LEN
    }
}

/// `count` packet buffers of `len` bytes each in one DMA region.
struct Slots {
    region: DmaRegion,
    count: usize,
    len: usize,
}

impl Slots {
    fn new(what: &str, count: usize, len: usize) -> Result<Self, String> {
        let bytes = count * len;
        let region = DmaRegion::new(bytes)
            .ok_or_else(|| format!("virtio-net: out of memory for {what} buffers ({} KiB)", bytes / 1024))?;
        Ok(Self { region, count, len })
    }

    fn ptr(&self, slot: usize) -> *mut u8 {
        debug_assert!(slot < self.count && self.region.len() >= self.count * self.len);
        // SAFETY: slot < count, so the offset stays inside the region.
        unsafe { self.region.as_ptr().add(slot * self.len) }
    }

    fn bytes(&self) -> usize {
        self.region.len()
    }
}

/// Slot ids: at most one per descriptor of a ring.
type SlotList = heapless::Vec<u16, QUEUE_SIZE>;

/// Puts a slot id back on a list. The lists hold ids of one ring's buffers, each at most once,
/// so one can never be full when a slot comes back.
fn give_back(list: &mut SlotList, slot: u16) {
    let pushed = list.push(slot);
    debug_assert!(pushed.is_ok(), "slot list overflow");
}

struct RxRing {
    /// Posted buffers: `QUEUE_SIZE` of 2 KiB, or `BIG_RX_BUFS` of 64 KiB with GUEST_TSO4.
    slots: Slots,
    /// Which slot each posted descriptor (the token virtio-drivers returns) points at.
    slot_of_token: [u16; QUEUE_SIZE],
    /// The slot whose frame was last handed to smoltcp; re-posted on the next call.
    in_hand: Option<u16>,
    /// Slots smoltcp is done with, waiting to be re-posted as one batch (never more than the
    /// ring holds).
    done: SlotList,
    /// How many finished slots make a batch.
    repost_batch: usize,
}

/// Transmit buffers: slot ids `0..small.count` are 2 KiB buffers, the ids after them 64 KiB
/// buffers (TSO only). Together they never outnumber the ring's descriptors.
struct TxPool {
    small: Slots,
    big: Option<Slots>,
    free_small: SlotList,
    free_big: SlotList,
    slot_of_token: [u16; QUEUE_SIZE],
    /// Bytes (header + frame) posted from each slot; `complete_tx` wants the same slice.
    posted_len: [u32; QUEUE_SIZE],
    /// Where frames go that cannot be sent (so smoltcp's closure still runs).
    scratch: Vec<u8>,
    /// Frames posted since the last doorbell.
    unkicked: usize,
    /// virtio-net header length: 12 bytes with VERSION_1, 10 for legacy devices.
    hdr_len: usize,
    /// VIRTIO_NET_F_CSUM: the device completes TCP checksums.
    csum_offload: bool,
    /// VIRTIO_NET_F_HOST_TSO4 (implies `csum_offload` and `big`): the device segments.
    tso: bool,
    /// Largest frame the device may put on the wire as it is (Ethernet header included).
    max_frame: usize,
}

impl TxPool {
    /// Where a slot's buffer starts and how long it is.
    fn buffer(&self, slot: u16) -> (*mut u8, usize) {
        let slot = usize::from(slot);
        match slot.checked_sub(self.small.count) {
            None => (self.small.ptr(slot), self.small.len),
            Some(big) => match &self.big {
                Some(pool) => (pool.ptr(big), pool.len),
                // Never handed out: the ids after the small pool exist only with a big pool.
                None => (core::ptr::null_mut(), 0),
            },
        }
    }

    fn release(&mut self, slot: u16) {
        if usize::from(slot) < self.small.count {
            give_back(&mut self.free_small, slot);
        } else {
            give_back(&mut self.free_big, slot);
        }
    }

    /// A free buffer for `total` bytes: a small one when it fits (a large one if no small one
    /// is left), else a large one.
    fn take(&mut self, total: usize) -> Option<u16> {
        if total <= self.small.len
            && let Some(slot) = self.free_small.pop()
        {
            return Some(slot);
        }
        if self.big.as_ref().is_some_and(|pool| total <= pool.len) {
            return self.free_big.pop();
        }
        None
    }

    /// Whether any frame smoltcp may build has a buffer to go to.
    fn ready(&self) -> bool {
        !self.free_small.is_empty() && (self.big.is_none() || !self.free_big.is_empty())
    }
}

/// A virtio-net device driven by polling.
pub struct Nic {
    queues: SharedQueues,
    rx: RxRing,
    tx: TxPool,
    /// virtio-net header length: 12 bytes with VERSION_1, 10 for legacy devices.
    hdr_len: usize,
    /// VIRTIO_NET_F_GUEST_CSUM: the device vouches for checksums (see `csum`).
    rx_csum_offload: bool,
    /// Largest frame, Ethernet header included.
    max_frame: usize,
    description: String,
    stats: NicStats,
    /// Set when the device broke the protocol; the NIC then stops moving frames.
    fault: Option<String>,
    /// How the device's queue interrupts reach the CPU, if they can.
    interrupt: InterruptRoute,
}

impl Nic {
    /// Negotiates features, sets up both queues, posts every receive buffer.
    pub fn new(
        transport: SomeTransport<'static>,
        location: &str,
        interrupt: InterruptRoute,
        offloads: Offloads,
    ) -> Result<Nic, String> {
        let budget = crate::mem::heap_usage().1 / DMA_SHARE_DIVISOR;
        let plan = BufferPlan::fit(offloads, budget);
        let mut wanted = WANTED_FEATURES;
        if plan.big_tx > 0 {
            wanted |= feature::HOST_TSO4;
        }
        if plan.big_rx > 0 {
            wanted |= feature::GUEST_TSO4;
        }
        let queues = NetQueues::new(transport, wanted).map_err(|e| format!("virtio-net ({location}): {e}"))?;
        let hdr_len = if queues.features & (feature::VERSION_1 | feature::MRG_RXBUF) != 0 { 12 } else { 10 };
        // A reported MTU below the IPv4 minimum is nonsense; above what a buffer holds, too big.
        let ip_mtu = match queues.mtu {
            Some(m) if usize::from(m) >= 68 => usize::from(m).min(BUF_LEN - hdr_len - ETH_HDR),
            _ => DEFAULT_MTU,
        };
        let csum_offload = queues.features & feature::CSUM != 0;
        let rx_csum_offload = queues.features & feature::GUEST_CSUM != 0;
        // `NetQueues::new` drops TSO without its checksum offload; checked again because
        // smoltcp asserts that segmentation comes with TCP transmit checksums off.
        let tso = csum_offload && queues.features & feature::HOST_TSO4 != 0 && plan.big_tx > 0;
        let lro = rx_csum_offload && queues.features & feature::GUEST_TSO4 != 0 && plan.big_rx > 0;
        let rx_slots = if lro {
            Slots::new("large receive", plan.big_rx, BIG_BUF_LEN)?
        } else {
            Slots::new("receive", QUEUE_SIZE, BUF_LEN)?
        };
        let (small_tx, big_tx) = if tso {
            (
                Slots::new("transmit", QUEUE_SIZE - plan.big_tx, BUF_LEN)?,
                Some(Slots::new("segmentation offload", plan.big_tx, BIG_BUF_LEN)?),
            )
        } else {
            (Slots::new("transmit", QUEUE_SIZE, BUF_LEN)?, None)
        };
        let dma_kib = (rx_slots.bytes() + small_tx.bytes() + big_tx.as_ref().map_or(0, Slots::bytes)) / 1024;
        let why_off = |asked: bool, planned: usize, bit: &str| {
            if !asked {
                String::from("off (command line)")
            } else if planned == 0 {
                format!("off (too little memory: {} KiB free)", budget * DMA_SHARE_DIVISOR / 1024)
            } else {
                format!("off (the device does not offer {bit})")
            }
        };
        let tso_state = match tso {
            true => format!("on (frames up to {TSO_FRAME} B)"),
            false => why_off(offloads.tso, plan.big_tx, "HOST_TSO4+CSUM"),
        };
        let lro_state = match lro {
            true => String::from("on (frames up to 64 KiB)"),
            false => why_off(offloads.lro, plan.big_rx, "GUEST_TSO4+GUEST_CSUM"),
        };
        let description = format!(
            "virtio-net on {location}: features {} (device offered {:#x}), queues rx {QUEUE_SIZE} / tx \
             {QUEUE_SIZE} (device max {}/{}), no EVENT_IDX, interrupts only when idle, {hdr_len}-byte header in the \
             frame buffer, MTU {ip_mtu}{}, checksums: TCP transmit {}, TCP/UDP receive {}; TSO {}; large \
             receive {}; buffers {} rx x {} B, {} + {} tx, {dma_kib} KiB",
            FeatureNames(queues.features),
            queues.offered,
            queues.queue_max.0,
            queues.queue_max.1,
            if queues.mtu.is_some() { " (from the device)" } else { "" },
            if csum_offload { "offloaded" } else { "in software" },
            if rx_csum_offload { "trusted when the device vouches" } else { "in software" },
            tso_state,
            lro_state,
            rx_slots.count,
            rx_slots.len,
            small_tx.count,
            big_tx.as_ref().map_or(0, |b| b.count),
        );
        let small_count = small_tx.count as u16;
        let big_count = big_tx.as_ref().map_or(0, |b| b.count) as u16;
        let rx_count = rx_slots.count as u16;
        let repost_batch = RX_REPOST_BATCH.min(rx_slots.count / 4).max(1);
        let mut nic = Nic {
            queues: SharedQueues::new(queues),
            rx: RxRing {
                slots: rx_slots,
                slot_of_token: [NO_SLOT; QUEUE_SIZE],
                in_hand: None,
                done: SlotList::new(),
                repost_batch,
            },
            tx: TxPool {
                small: small_tx,
                big: big_tx,
                free_small: (0..small_count).rev().collect(),
                free_big: (small_count..small_count + big_count).rev().collect(),
                slot_of_token: [NO_SLOT; QUEUE_SIZE],
                posted_len: [0; QUEUE_SIZE],
                scratch: Vec::new(),
                unkicked: 0,
                hdr_len,
                csum_offload,
                tso,
                max_frame: ip_mtu + ETH_HDR,
            },
            hdr_len,
            rx_csum_offload,
            max_frame: ip_mtu + ETH_HDR,
            description,
            stats: NicStats::default(),
            fault: None,
            interrupt,
        };
        for slot in 0..rx_count {
            give_back(&mut nic.rx.done, slot);
        }
        nic.repost_rx();
        match nic.fault.take() {
            Some(fault) => Err(format!("virtio-net ({location}): posting receive buffers: {fault}")),
            None => Ok(nic),
        }
    }

    /// How the device's queue interrupts reach the CPU, if they can.
    pub fn interrupt(&self) -> &InterruptRoute {
        &self.interrupt
    }

    /// A handle on the queues for the idle wait, which arms the device's interrupts before
    /// it sleeps ([`NetQueues::arm_interrupts`]).
    pub fn idle_queues(&self) -> SharedQueues {
        self.queues.share()
    }

    pub fn mac(&self) -> [u8; 6] {
        self.queues.peek().mac
    }

    /// Transport, negotiated features, queue sizes, MTU: one line for the boot log.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    pub fn stats(&self) -> NicStats {
        NicStats { kicks: self.queues.peek().kicks, ..self.stats }
    }

    /// Why the NIC stopped, if the device broke the virtio protocol.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Rings the transmit doorbell for frames queued since the last one. `receive` does this
    /// at the start of every smoltcp poll; call it after a poll if the loop may then sleep.
    pub fn flush(&mut self) {
        if self.tx.unkicked > 0 {
            self.tx.unkicked = 0;
            self.queues.get().kick_tx();
        }
    }

    fn set_fault(&mut self, what: String) {
        if self.fault.is_none() {
            self.fault = Some(what);
        }
    }

    /// Hands the finished receive slots back to the device, with at most one doorbell.
    fn repost_rx(&mut self) {
        while let Some(slot) = self.rx.done.pop() {
            self.post_rx(slot);
        }
        self.queues.get().kick_rx();
    }

    /// Hands a receive slot to the device (the caller kicks).
    fn post_rx(&mut self, slot: u16) {
        // SAFETY: the slot is not posted and not in smoltcp's hands (callers own it), so this
        // is the only reference to its bytes until the device returns it.
        let buf = unsafe { slice::from_raw_parts_mut(self.rx.slots.ptr(usize::from(slot)), self.rx.slots.len) };
        // SAFETY: the buffer lives as long as `self` (the DMA region) and is not touched again
        // until `complete_rx` returns it.
        match unsafe { self.queues.get().post_rx(buf) } {
            Ok(token) => match self.rx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) => *entry = slot,
                None => self.set_fault(format!("receive token {token} out of range")),
            },
            Err(e) => self.set_fault(format!("posting a receive buffer: {e}")),
        }
    }

    /// Takes completed transmit buffers back into the pool.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.queues.get().peek_tx() {
            let slot = match self.tx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) if *entry != NO_SLOT => core::mem::replace(entry, NO_SLOT),
                _ => return self.set_fault(format!("device completed transmit token {token}, which is not in flight")),
            };
            let (ptr, cap) = self.tx.buffer(slot);
            let len = self.tx.posted_len.get(usize::from(slot)).map_or(0, |&l| l as usize);
            if ptr.is_null() || len == 0 || len > cap {
                return self.set_fault(format!("transmit slot {slot} has no posted buffer"));
            }
            // SAFETY: the device has finished with the slot (it is in the used ring); this is
            // the slice `post_tx` was given.
            let buf = unsafe { slice::from_raw_parts(ptr, len) };
            // SAFETY: same buffer as passed to `post_tx` for this token.
            if let Err(e) = unsafe { self.queues.get().complete_tx(token, buf) } {
                return self.set_fault(format!("completing a transmit: {e}"));
            }
            self.tx.release(slot);
            self.queues.get().tx_starved = false;
        }
    }

    /// The next good received frame as (slot, length); bad ones are counted and re-posted.
    fn next_rx_frame(&mut self) -> Option<(u16, usize)> {
        for _ in 0..self.rx.slots.count {
            let token = self.queues.get().peek_rx()?;
            let slot = match self.rx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) if *entry != NO_SLOT => core::mem::replace(entry, NO_SLOT),
                _ => {
                    self.set_fault(format!("device returned receive token {token}, which was not posted"));
                    return None;
                }
            };
            // SAFETY: the device has returned this slot (it is in the used ring), so the
            // driver owns its bytes again.
            let buf = unsafe { slice::from_raw_parts_mut(self.rx.slots.ptr(usize::from(slot)), self.rx.slots.len) };
            // SAFETY: same buffer as passed to `post_rx` for this token.
            match unsafe { self.queues.get().complete_rx(token, buf) } {
                Ok(written) if written > self.hdr_len && written <= buf.len() => {
                    let (header, frame) = buf[..written].split_at(self.hdr_len);
                    if self.rx_csum_offload && !csum::rx_checksum_acceptable(header, frame) {
                        self.stats.rx_bad_checksum += 1;
                        give_back(&mut self.rx.done, slot);
                        continue;
                    }
                    if frame.len() > self.max_frame {
                        self.stats.rx_large += 1;
                    }
                    return Some((slot, frame.len()));
                }
                // Popped but unusable: no frame after the header, or longer than the buffer.
                Ok(_) => {
                    self.stats.rx_bad += 1;
                    give_back(&mut self.rx.done, slot);
                }
                Err(e) => {
                    self.set_fault(format!("completing a receive: {e}"));
                    return None;
                }
            }
        }
        None
    }
}

impl Device for Nic {
    type RxToken<'a> = NicRxToken<'a>;
    type TxToken<'a> = NicTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // smoltcp polls ingress first: whatever the last poll queued for sending goes now.
        self.flush();
        if let Some(slot) = self.rx.in_hand.take() {
            give_back(&mut self.rx.done, slot);
        }
        // Re-post in batches: when the device starves it asks for a kick on every buffer.
        if self.rx.done.len() >= self.rx.repost_batch || self.queues.get().peek_rx().is_none() {
            self.repost_rx();
        }
        if self.fault.is_some() {
            return None;
        }
        self.reclaim_tx();
        let (slot, len) = self.next_rx_frame()?;
        self.rx.in_hand = Some(slot);
        self.stats.rx_frames += 1;
        // SAFETY: the slot is out of the ring (in hand) until the next `receive`, which cannot
        // run while this token borrows `self`; hdr_len + len <= the slot's length was checked.
        let frame = unsafe { slice::from_raw_parts(self.rx.slots.ptr(usize::from(slot)).add(self.hdr_len), len) };
        let tx = NicTxToken { queues: self.queues.get(), tx: &mut self.tx, stats: &mut self.stats, gso_size: None };
        Some((NicRxToken { frame }, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.fault.is_some() {
            return None;
        }
        self.reclaim_tx();
        // With TSO smoltcp may build a frame for either pool, and a frame without a buffer is
        // a loss (a 1 s retransmission timeout): say "no" until both have room.
        if !self.tx.ready() {
            self.stats.tx_ring_full += 1;
            self.queues.get().tx_starved = true;
            self.flush();
            return None;
        }
        Some(NicTxToken { queues: self.queues.get(), tx: &mut self.tx, stats: &mut self.stats, gso_size: None })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        caps.max_burst_size = None;
        // smoltcp computes what the device does not (transmit offload covers TCP only) and
        // checks nothing the driver checks (see `csum`).
        let l4 = |tx_offloaded: bool| match (tx_offloaded, self.rx_csum_offload) {
            (true, true) => Checksum::None,
            (true, false) => Checksum::Rx,
            (false, true) => Checksum::Tx,
            (false, false) => Checksum::Both,
        };
        let mut checksum = ChecksumCapabilities::default();
        checksum.tcp = l4(self.tx.csum_offload);
        checksum.udp = l4(false);
        caps.checksum = checksum;
        if self.tx.tso {
            // TCP frames up to 64 KiB, which the device cuts into MTU-sized segments.
            caps.segmentation.tcpv4 = NonZeroUsize::new(TSO_FRAME);
        }
        caps
    }
}

pub struct NicRxToken<'a> {
    frame: &'a [u8],
}

impl RxToken for NicRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

pub struct NicTxToken<'a> {
    queues: &'a mut NetQueues,
    tx: &'a mut TxPool,
    stats: &'a mut NicStats,
    /// smoltcp's segment size for a frame longer than one MSS (TSO only).
    gso_size: Option<u16>,
}

impl NicTxToken<'_> {
    /// The frame smoltcp built can't be posted: count it and keep the buffer.
    fn drop_frame(&mut self, slot: u16) {
        self.tx.release(slot);
        self.stats.tx_dropped += 1;
    }
}

impl TxToken for NicTxToken<'_> {
    fn set_meta(&mut self, meta: PacketMeta) {
        self.gso_size = meta.segmentation_offload_size.map(NonZeroU16::get);
    }

    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, len: usize, f: F) -> R {
        let hdr_len = self.tx.hdr_len;
        let total = hdr_len + len;
        // Frames longer than one MTU are only for the device to segment.
        let allowed = if self.tx.tso { TSO_FRAME } else { self.tx.max_frame };
        let fits = len > 0 && len <= allowed;
        let Some(slot) = fits.then(|| self.tx.take(total)).flatten() else {
            // No buffer (a receive's reply token while the ring is full), or a frame we must
            // not post: let smoltcp build it somewhere and drop it.
            self.stats.tx_dropped += 1;
            if self.tx.scratch.len() < len {
                self.tx.scratch.resize(len, 0);
            }
            return f(&mut self.tx.scratch[..len]);
        };
        let (ptr, cap) = self.tx.buffer(slot);
        if ptr.is_null() || total > cap {
            // `take` only hands out buffers that fit; nothing to build the frame in otherwise.
            self.tx.release(slot);
            self.stats.tx_dropped += 1;
            if self.tx.scratch.len() < len {
                self.tx.scratch.resize(len, 0);
            }
            return f(&mut self.tx.scratch[..len]);
        }
        // SAFETY: the slot came off a free list, so neither the device nor anyone else uses
        // it; total <= its length.
        let buf = unsafe { slice::from_raw_parts_mut(ptr, total) };
        let (header, frame) = buf.split_at_mut(hdr_len);
        let result = f(frame);
        // Without checksum offload every header is all zero (as allocated): flags 0, GSO none.
        // With it every header is written in full, so a slot's previous GSO fields never linger.
        if self.tx.csum_offload {
            let mut gso_size = if self.tx.tso { self.gso_size } else { None };
            if self.tx.tso && len > self.tx.max_frame && gso_size.is_none() {
                // smoltcp sets the size whenever it builds a frame this long; a wrapper that
                // lost it gets the segment size our MTU allows.
                gso_size = csum::fallback_gso_size(frame, self.tx.max_frame);
            }
            let hdr = virtio_net_hdr::offload_tcpv4(frame, gso_size);
            if len > self.tx.max_frame && hdr.gso_type != gso::TCPV4 {
                // Too long for the wire and not something the device can cut up.
                self.drop_frame(slot);
                return result;
            }
            if hdr.gso_type == gso::TCPV4 {
                let payload = len - usize::from(hdr.hdr_len);
                self.stats.tx_tso += 1;
                self.stats.tx_tso_segments += payload.div_ceil(usize::from(hdr.gso_size.max(1))) as u64;
            }
            // `header` is the 10- or 12-byte header (`hdr_len`), never shorter than `emit` writes.
            hdr.emit(&mut Header::new_unchecked(header));
        } else if len > self.tx.max_frame {
            self.drop_frame(slot);
            return result;
        }
        // SAFETY: the slot stays off the free lists, untouched, until `reclaim_tx` sees the
        // device return this token.
        match unsafe { self.queues.post_tx(buf) } {
            Ok(token) => {
                self.tx.slot_of_token[usize::from(token) % QUEUE_SIZE] = slot;
                self.tx.posted_len[usize::from(slot)] = total as u32;
                self.stats.tx_frames += 1;
                self.tx.unkicked += 1;
                if self.tx.unkicked >= TX_KICK_BATCH {
                    self.tx.unkicked = 0;
                    self.queues.kick_tx();
                }
            }
            Err(_) => self.drop_frame(slot),
        }
        result
    }
}
