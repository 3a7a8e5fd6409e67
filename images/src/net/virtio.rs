//! virtio-net as a smoltcp `phy::Device`, on the queues of [`super::queues`].
//!
//! Built for throughput: all receive buffers are posted up front and re-posted in batches once
//! smoltcp has read their frames; transmit buffers come from a fixed pool and stay in flight
//! until the device hands them back, so `transmit()` says "no" (backpressure) only when the
//! whole ring is queued. The virtio-net header sits in front of the frame in the same buffer:
//! one descriptor per frame, no indirect table, no allocation per packet. Doorbells are rung
//! once per batch, not per frame: under TCG each one is an exit into QEMU that takes its big
//! lock and wakes its I/O thread, and the guest CPU is what limits throughput.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::slice;

use netstack::smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use netstack::smoltcp::time::Instant;
use virtio_drivers::transport::SomeTransport;

use super::csum::{self, NetHdr};
use super::hal::DmaRegion;
use super::queues::{FeatureNames, NetQueues, QUEUE_SIZE, feature};

/// One packet buffer: header plus frame. 2 KiB holds a 1514-byte frame (and a VLAN tag) with
/// room to spare, and keeps buffers from straddling more than one page boundary.
const BUF_LEN: usize = 2048;
/// Ethernet header bytes on top of the IP MTU.
const ETH_HDR: usize = 14;
/// IP MTU when the device does not report one.
const DEFAULT_MTU: usize = 1500;
const NO_SLOT: u16 = u16::MAX;
/// Frames of a burst queued before the transmit doorbell rings at the latest; the rest is
/// kicked when smoltcp comes back to `receive` (the start of its next poll) or the ring fills.
const TX_KICK_BATCH: usize = 32;
/// Receive buffers smoltcp has finished with are re-posted this many at a time (or sooner,
/// when nothing more is waiting): one doorbell per batch instead of one per frame.
const RX_REPOST_BATCH: usize = 32;

/// What the driver asks for: the MAC address, the device's MTU and checksum offload both ways
/// (see `csum`). No segmentation offload and no mergeable buffers (a frame fits one buffer),
/// no EVENT_IDX (see `queues`), no indirect descriptors (one descriptor per frame anyway).
const WANTED_FEATURES: u64 = feature::MAC | feature::MTU | feature::CSUM | feature::GUEST_CSUM;

/// Counters since `open`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NicStats {
    pub rx_frames: u64,
    /// Frames the device returned empty, shorter than the header or longer than the buffer.
    pub rx_bad: u64,
    /// Frames dropped for a wrong TCP/UDP checksum (checked here only with GUEST_CSUM).
    pub rx_bad_checksum: u64,
    pub tx_frames: u64,
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
            "rx {} frames ({} bad, {} bad checksums), tx {} frames ({} dropped, ring full {} times), kicks rx {} tx {}",
            self.rx_frames,
            self.rx_bad,
            self.rx_bad_checksum,
            self.tx_frames,
            self.tx_dropped,
            self.tx_ring_full,
            self.kicks.0,
            self.kicks.1
        )
    }
}

/// `QUEUE_SIZE` packet buffers in one DMA region.
struct Slots {
    region: DmaRegion,
}

impl Slots {
    fn new(what: &str) -> Result<Self, String> {
        let region = DmaRegion::new(QUEUE_SIZE * BUF_LEN).ok_or_else(|| {
            format!("virtio-net: out of memory for {what} buffers ({} KiB)", QUEUE_SIZE * BUF_LEN / 1024)
        })?;
        Ok(Self { region })
    }

    fn ptr(&self, slot: u16) -> *mut u8 {
        debug_assert!(usize::from(slot) < QUEUE_SIZE && self.region.len() >= QUEUE_SIZE * BUF_LEN);
        // SAFETY: slot < QUEUE_SIZE, so the offset stays inside the region.
        unsafe { self.region.as_ptr().add(usize::from(slot) * BUF_LEN) }
    }
}

struct RxRing {
    slots: Slots,
    /// Which slot each posted descriptor (the token virtio-drivers returns) points at.
    slot_of_token: [u16; QUEUE_SIZE],
    /// The slot whose frame was last handed to smoltcp; re-posted on the next call.
    in_hand: Option<u16>,
    /// Slots smoltcp is done with, waiting to be re-posted as one batch.
    done: Vec<u16>,
}

struct TxPool {
    slots: Slots,
    free: Vec<u16>,
    slot_of_token: [u16; QUEUE_SIZE],
    /// Bytes (header + frame) posted from each slot; `complete_tx` wants the same slice.
    posted_len: [u16; QUEUE_SIZE],
    /// Where frames go that cannot be sent (so smoltcp's closure still runs).
    scratch: Vec<u8>,
    /// Frames posted since the last doorbell.
    unkicked: usize,
    /// virtio-net header length: 12 bytes with VERSION_1, 10 for legacy devices.
    hdr_len: usize,
    /// VIRTIO_NET_F_CSUM: the device completes TCP checksums.
    csum_offload: bool,
}

/// A virtio-net device driven by polling.
pub struct Nic {
    queues: NetQueues,
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
}

impl Nic {
    /// Negotiates features, sets up both queues, posts every receive buffer.
    pub fn new(transport: SomeTransport<'static>, location: &str) -> Result<Nic, String> {
        let queues = NetQueues::new(transport, WANTED_FEATURES).map_err(|e| format!("virtio-net ({location}): {e}"))?;
        let hdr_len = if queues.features & (feature::VERSION_1 | feature::MRG_RXBUF) != 0 { 12 } else { 10 };
        // A reported MTU below the IPv4 minimum is nonsense; above what a buffer holds, too big.
        let ip_mtu = match queues.mtu {
            Some(m) if usize::from(m) >= 68 => usize::from(m).min(BUF_LEN - hdr_len - ETH_HDR),
            _ => DEFAULT_MTU,
        };
        let csum_offload = queues.features & feature::CSUM != 0;
        let rx_csum_offload = queues.features & feature::GUEST_CSUM != 0;
        let description = format!(
            "virtio-net on {location}: features {} (device offered {:#x}), queues rx {QUEUE_SIZE} / tx \
             {QUEUE_SIZE} (device max {}/{}), no EVENT_IDX, no interrupts, {hdr_len}-byte header in the \
             frame buffer, MTU {ip_mtu}{}, checksums: TCP transmit {}, TCP/UDP receive {}",
            FeatureNames(queues.features),
            queues.offered,
            queues.queue_max.0,
            queues.queue_max.1,
            if queues.mtu.is_some() { " (from the device)" } else { "" },
            if csum_offload { "offloaded" } else { "in software" },
            if rx_csum_offload { "trusted when the device vouches" } else { "in software" },
        );
        let mut nic = Nic {
            queues,
            rx: RxRing {
                slots: Slots::new("receive")?,
                slot_of_token: [NO_SLOT; QUEUE_SIZE],
                in_hand: None,
                done: Vec::with_capacity(QUEUE_SIZE),
            },
            tx: TxPool {
                slots: Slots::new("transmit")?,
                free: (0..QUEUE_SIZE as u16).rev().collect(),
                slot_of_token: [NO_SLOT; QUEUE_SIZE],
                posted_len: [0; QUEUE_SIZE],
                scratch: Vec::new(),
                unkicked: 0,
                hdr_len,
                csum_offload,
            },
            hdr_len,
            rx_csum_offload,
            max_frame: ip_mtu + ETH_HDR,
            description,
            stats: NicStats::default(),
            fault: None,
        };
        nic.rx.done.extend(0..QUEUE_SIZE as u16);
        nic.repost_rx();
        match nic.fault.take() {
            Some(fault) => Err(format!("virtio-net ({location}): posting receive buffers: {fault}")),
            None => Ok(nic),
        }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.queues.mac
    }

    /// Transport, negotiated features, queue sizes, MTU: one line for the boot log.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    pub fn stats(&self) -> NicStats {
        NicStats { kicks: self.queues.kicks, ..self.stats }
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
            self.queues.kick_tx();
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
        self.queues.kick_rx();
    }

    /// Hands a receive slot to the device (the caller kicks).
    fn post_rx(&mut self, slot: u16) {
        // SAFETY: the slot is not posted and not in smoltcp's hands (callers own it), so this
        // is the only reference to its bytes until the device returns it.
        let buf = unsafe { slice::from_raw_parts_mut(self.rx.slots.ptr(slot), BUF_LEN) };
        // SAFETY: the buffer lives as long as `self` (the DMA region) and is not touched again
        // until `complete_rx` returns it.
        match unsafe { self.queues.post_rx(buf) } {
            Ok(token) => match self.rx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) => *entry = slot,
                None => self.set_fault(format!("receive token {token} out of range")),
            },
            Err(e) => self.set_fault(format!("posting a receive buffer: {e}")),
        }
    }

    /// Takes completed transmit buffers back into the pool.
    fn reclaim_tx(&mut self) {
        while let Some(token) = self.queues.peek_tx() {
            let slot = match self.tx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) if *entry != NO_SLOT => core::mem::replace(entry, NO_SLOT),
                _ => return self.set_fault(format!("device completed transmit token {token}, which is not in flight")),
            };
            let len = usize::from(self.tx.posted_len[usize::from(slot)]);
            // SAFETY: the device has finished with the slot (it is in the used ring); this is
            // the slice `post_tx` was given.
            let buf = unsafe { slice::from_raw_parts(self.tx.slots.ptr(slot), len) };
            // SAFETY: same buffer as passed to `post_tx` for this token.
            if let Err(e) = unsafe { self.queues.complete_tx(token, buf) } {
                return self.set_fault(format!("completing a transmit: {e}"));
            }
            self.tx.free.push(slot);
        }
    }

    /// The next good received frame as (slot, length); bad ones are counted and re-posted.
    fn next_rx_frame(&mut self) -> Option<(u16, usize)> {
        for _ in 0..QUEUE_SIZE {
            let token = self.queues.peek_rx()?;
            let slot = match self.rx.slot_of_token.get_mut(usize::from(token)) {
                Some(entry) if *entry != NO_SLOT => core::mem::replace(entry, NO_SLOT),
                _ => {
                    self.set_fault(format!("device returned receive token {token}, which was not posted"));
                    return None;
                }
            };
            // SAFETY: the device has returned this slot (it is in the used ring), so the
            // driver owns its bytes again.
            let buf = unsafe { slice::from_raw_parts_mut(self.rx.slots.ptr(slot), BUF_LEN) };
            // SAFETY: same buffer as passed to `post_rx` for this token.
            match unsafe { self.queues.complete_rx(token, buf) } {
                Ok(written) if written > self.hdr_len && written <= BUF_LEN => {
                    let (header, frame) = buf[..written].split_at(self.hdr_len);
                    if self.rx_csum_offload && !self.checksum_acceptable(header, frame) {
                        self.stats.rx_bad_checksum += 1;
                        self.rx.done.push(slot);
                        continue;
                    }
                    return Some((slot, written - self.hdr_len));
                }
                // Popped but unusable: no frame after the header, or longer than the buffer.
                Ok(_) => {
                    self.stats.rx_bad += 1;
                    self.rx.done.push(slot);
                }
                Err(e) => {
                    self.set_fault(format!("completing a receive: {e}"));
                    return None;
                }
            }
        }
        None
    }

    /// With GUEST_CSUM smoltcp does not check TCP/UDP checksums: frames the device marks
    /// DATA_VALID or NEEDS_CSUM are fine as they are, the rest are checked here.
    fn checksum_acceptable(&self, header: &[u8], frame: &[u8]) -> bool {
        let vouched = NetHdr::DATA_VALID | NetHdr::NEEDS_CSUM;
        NetHdr::parse(header).is_some_and(|h| h.flags & vouched != 0) || csum::rx_checksum_ok(frame)
    }
}

impl Device for Nic {
    type RxToken<'a> = NicRxToken<'a>;
    type TxToken<'a> = NicTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // smoltcp polls ingress first: whatever the last poll queued for sending goes now.
        self.flush();
        if let Some(slot) = self.rx.in_hand.take() {
            self.rx.done.push(slot);
        }
        // Re-post in batches: when the device starves it asks for a kick on every buffer.
        if self.rx.done.len() >= RX_REPOST_BATCH || self.queues.peek_rx().is_none() {
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
        // run while this token borrows `self`; hdr_len + len <= BUF_LEN was checked.
        let frame = unsafe { slice::from_raw_parts(self.rx.slots.ptr(slot).add(self.hdr_len), len) };
        let tx = NicTxToken { queues: &mut self.queues, tx: &mut self.tx, stats: &mut self.stats };
        Some((NicRxToken { frame }, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.fault.is_some() {
            return None;
        }
        self.reclaim_tx();
        if self.tx.free.is_empty() {
            self.stats.tx_ring_full += 1;
            self.flush();
            return None;
        }
        Some(NicTxToken { queues: &mut self.queues, tx: &mut self.tx, stats: &mut self.stats })
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
}

impl TxToken for NicTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let fits = len > 0 && self.tx.hdr_len + len <= BUF_LEN;
        let Some(slot) = fits.then(|| self.tx.free.pop()).flatten() else {
            // No buffer (a receive's reply token while the ring is full), or a frame we must
            // not post: let smoltcp build it somewhere and drop it.
            self.stats.tx_dropped += 1;
            if self.tx.scratch.len() < len {
                self.tx.scratch.resize(len, 0);
            }
            return f(&mut self.tx.scratch[..len]);
        };
        let hdr_len = self.tx.hdr_len;
        let total = hdr_len + len;
        // SAFETY: the slot came off the free list, so neither the device nor anyone else uses
        // it; total <= BUF_LEN.
        let buf = unsafe { slice::from_raw_parts_mut(self.tx.slots.ptr(slot), total) };
        let (header, frame) = buf.split_at_mut(hdr_len);
        let result = f(frame);
        // Without checksum offload every header is all zero (as allocated): flags 0, GSO none.
        if self.tx.csum_offload {
            csum::offload_tx(frame).emit(header);
        }
        // SAFETY: the slot stays off the free list, untouched, until `reclaim_tx` sees the
        // device return this token.
        match unsafe { self.queues.post_tx(buf) } {
            Ok(token) => {
                self.tx.slot_of_token[usize::from(token) % QUEUE_SIZE] = slot;
                self.tx.posted_len[usize::from(slot)] = total as u16;
                self.stats.tx_frames += 1;
                self.tx.unkicked += 1;
                if self.tx.unkicked >= TX_KICK_BATCH {
                    self.tx.unkicked = 0;
                    self.queues.kick_tx();
                }
            }
            Err(_) => {
                self.tx.free.push(slot);
                self.stats.tx_dropped += 1;
            }
        }
        result
    }
}
