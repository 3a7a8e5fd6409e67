//! The virtio-net device at the virtqueue level: feature negotiation, the receive and transmit
//! queues (virtio-drivers' split-ring `VirtQueue`) and the doorbell.
//!
//! This replaces virtio-drivers' `VirtIONetRaw`, which always negotiates RING_EVENT_IDX. Its
//! `VirtQueue::should_notify` tests `avail_idx >= avail_event + 1` rather than whether the new
//! entries crossed `avail_event`, and QEMU moves `avail_event` along with every buffer it pops,
//! so while the device is busy nearly every re-posted buffer rang the doorbell (measured under
//! QEMU: one receive-queue kick per 3 frames), and with EVENT_IDX interrupts cannot be turned off.
//! Without EVENT_IDX the device's NO_NOTIFY flag and our NO_INTERRUPT flag do the batching.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{Ordering, fence};

use virtio_drivers::Error;
use virtio_drivers::PAGE_SIZE;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, SomeTransport, Transport};

use super::hal::DmaHal;

/// Descriptors per queue (a power of two; QEMU's virtio-net default is 256).
pub const QUEUE_SIZE: usize = 256;

const RECEIVEQ: u16 = 0;
const TRANSMITQ: u16 = 1;

/// Feature bits (virtio 1.2 §5.1.3 and §6).
pub mod feature {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    pub const CTRL_VQ: u64 = 1 << 17;
    pub const MQ: u64 = 1 << 22;
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    pub const VERSION_1: u64 = 1 << 32;
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    pub const RING_PACKED: u64 = 1 << 34;

    /// Names for the log, in bit order.
    pub const NAMES: &[(u64, &str)] = &[
        (CSUM, "CSUM"),
        (GUEST_CSUM, "GUEST_CSUM"),
        (MTU, "MTU"),
        (MAC, "MAC"),
        (GUEST_TSO4, "GUEST_TSO4"),
        (HOST_TSO4, "HOST_TSO4"),
        (MRG_RXBUF, "MRG_RXBUF"),
        (STATUS, "STATUS"),
        (CTRL_VQ, "CTRL_VQ"),
        (MQ, "MQ"),
        (RING_INDIRECT_DESC, "RING_INDIRECT_DESC"),
        (RING_EVENT_IDX, "RING_EVENT_IDX"),
        (VERSION_1, "VERSION_1"),
        (ACCESS_PLATFORM, "ACCESS_PLATFORM"),
        (RING_PACKED, "RING_PACKED"),
    ];
}

/// Feature bits by their spec names, `|`-separated (unnamed bits are left out).
pub struct FeatureNames(pub u64);

impl fmt::Display for FeatureNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = feature::NAMES.iter().filter(|(bit, _)| self.0 & bit != 0).map(|(_, name)| name);
        match names.next() {
            None => f.write_str("none"),
            Some(first) => {
                f.write_str(first)?;
                names.try_for_each(|name| write!(f, "|{name}"))
            }
        }
    }
}

/// Config-space offsets (virtio 1.2 §5.1.4): mac[6], status, max_virtqueue_pairs, mtu.
const CONFIG_MAC: usize = 0;
const CONFIG_MTU: usize = 10;

/// Both queues of one virtio-net device, driven by polling.
pub struct NetQueues {
    transport: SomeTransport<'static>,
    rx: VirtQueue<DmaHal, QUEUE_SIZE>,
    tx: VirtQueue<DmaHal, QUEUE_SIZE>,
    /// What the device offered and what both sides agreed on.
    pub offered: u64,
    pub features: u64,
    /// Largest queue sizes the device accepts (receive, transmit).
    pub queue_max: (u32, u32),
    pub mac: [u8; 6],
    /// The device's MTU when it reports one (VIRTIO_NET_F_MTU).
    pub mtu: Option<u16>,
    /// Doorbell writes so far (receive, transmit).
    pub kicks: (u64, u64),
    /// Transmit buffers posted since the last doorbell check.
    tx_unkicked: bool,
    /// The NIC had a frame to send and no buffer for it; cleared when a transmit completes.
    pub tx_starved: bool,
}

impl NetQueues {
    /// Resets the device, negotiates `wanted` (VERSION_1 is always accepted when offered, as
    /// the spec requires), sets up both queues with notifications from the device off.
    pub fn new(mut transport: SomeTransport<'static>, wanted: u64) -> Result<Self, String> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let mut features = offered & (wanted | feature::VERSION_1);
        // Segmentation offload needs checksum offload in the same direction (virtio 1.2
        // §5.1.3.1): TSO is never accepted without it, whatever the device offers.
        if features & feature::CSUM == 0 {
            features &= !feature::HOST_TSO4;
        }
        if features & feature::GUEST_CSUM == 0 {
            features &= !feature::GUEST_TSO4;
        }
        transport.write_driver_features(features);
        let features_ok = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
        transport.set_status(features_ok);
        // Legacy devices have no FEATURES_OK handshake; modern ones clear the bit to refuse.
        if features & feature::VERSION_1 != 0 && !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            transport.set_status(DeviceStatus::FAILED);
            return Err(format!("the device refused features {features:#x}"));
        }
        transport.set_guest_page_size(PAGE_SIZE as u32);

        let queue_max = (transport.max_queue_size(RECEIVEQ), transport.max_queue_size(TRANSMITQ));
        if (queue_max.0 as usize) < QUEUE_SIZE || (queue_max.1 as usize) < QUEUE_SIZE {
            transport.set_status(DeviceStatus::FAILED);
            return Err(format!(
                "queues hold at most {}/{} descriptors, the driver needs {QUEUE_SIZE}",
                queue_max.0, queue_max.1
            ));
        }
        let mac = if features & feature::MAC != 0 {
            transport.read_config_space::<[u8; 6]>(CONFIG_MAC).map_err(|e| format!("reading the MAC address: {e}"))?
        } else {
            // A locally administered address; QEMU always offers MAC, others might not.
            [0x02, 0x75, 0x6e, 0x69, 0x70, 0x66]
        };
        let mtu = if features & feature::MTU != 0 {
            Some(transport.read_config_space::<u16>(CONFIG_MTU).map_err(|e| format!("reading the MTU: {e}"))?)
        } else {
            None
        };
        let mut rx = VirtQueue::new(&mut transport, RECEIVEQ, false, false)
            .map_err(|e| format!("setting up the receive queue: {e}"))?;
        let mut tx = VirtQueue::new(&mut transport, TRANSMITQ, false, false)
            .map_err(|e| format!("setting up the transmit queue: {e}"))?;
        // Polling only: ask the device not to raise interrupts (VRING_AVAIL_F_NO_INTERRUPT).
        rx.set_dev_notify(false);
        tx.set_dev_notify(false);
        transport.set_status(features_ok | DeviceStatus::DRIVER_OK);
        Ok(Self {
            transport,
            rx,
            tx,
            offered,
            features,
            queue_max,
            mac,
            mtu,
            kicks: (0, 0),
            tx_unkicked: false,
            tx_starved: false,
        })
    }

    /// Offers a receive buffer to the device; returns its token (the descriptor index).
    ///
    /// # Safety
    ///
    /// `buf` must stay valid and untouched until `complete_rx` returns it.
    pub unsafe fn post_rx(&mut self, buf: &mut [u8]) -> Result<u16, Error> {
        // SAFETY: passed on from the caller.
        unsafe { self.rx.add(&[], &mut [buf]) }
    }

    /// Rings the receive doorbell if the device asked for it (it does when it ran out of
    /// buffers). Call once after posting a batch.
    pub fn kick_rx(&mut self) {
        // The avail-index store in `add` must be visible before we read the device's
        // NO_NOTIFY flag, or we may miss its request and both sides wait (store-load order
        // needs a full fence even on x86).
        fence(Ordering::SeqCst);
        if self.rx.should_notify() {
            self.kicks.0 += 1;
            self.transport.notify(RECEIVEQ);
        }
    }

    /// The token of the oldest filled receive buffer, if any.
    pub fn peek_rx(&self) -> Option<u16> {
        self.rx.peek_used()
    }

    /// Takes back the buffer `peek_rx` named; returns how many bytes the device wrote.
    ///
    /// # Safety
    ///
    /// `buf` must be the buffer posted with this token.
    pub unsafe fn complete_rx(&mut self, token: u16, buf: &mut [u8]) -> Result<usize, Error> {
        // SAFETY: passed on from the caller.
        unsafe { self.rx.pop_used(token, &[], &mut [buf]).map(|len| len as usize) }
    }

    /// Queues a frame (virtio-net header included) for transmission (the caller kicks).
    ///
    /// # Safety
    ///
    /// `buf` must stay valid and unmodified until `complete_tx` returns it.
    pub unsafe fn post_tx(&mut self, buf: &[u8]) -> Result<u16, Error> {
        self.tx_unkicked = true;
        // SAFETY: passed on from the caller.
        unsafe { self.tx.add(&[buf], &mut []) }
    }

    /// Rings the transmit doorbell unless the device is already working through the queue.
    pub fn kick_tx(&mut self) {
        // See `kick_rx` for the fence.
        fence(Ordering::SeqCst);
        self.tx_unkicked = false;
        if self.tx.should_notify() {
            self.kicks.1 += 1;
            self.transport.notify(TRANSMITQ);
        }
    }

    /// The token of the oldest transmitted buffer, if any.
    pub fn peek_tx(&self) -> Option<u16> {
        self.tx.peek_used()
    }

    /// Takes back a transmitted buffer.
    ///
    /// # Safety
    ///
    /// `buf` must be the buffer posted with this token.
    pub unsafe fn complete_tx(&mut self, token: u16, buf: &[u8]) -> Result<(), Error> {
        // SAFETY: passed on from the caller.
        unsafe { self.tx.pop_used(token, &[buf], &mut []).map(drop) }
    }
}

/// The queues, shared by the [`super::Nic`] (which moves frames) and the idle wait (which
/// arms interrupts before it sleeps and disarms them after).
pub struct SharedQueues(Rc<UnsafeCell<NetQueues>>);

impl SharedQueues {
    pub fn new(queues: NetQueues) -> Self {
        SharedQueues(Rc::new(UnsafeCell::new(queues)))
    }

    /// Another handle on the same queues.
    pub fn share(&self) -> Self {
        SharedQueues(Rc::clone(&self.0))
    }

    /// The queues, exclusively for as long as the borrow lasts.
    pub fn get(&mut self) -> &mut NetQueues {
        // SAFETY: the holders are the NIC and the idle wait, which never run at the same time:
        // one CPU, the idle wait runs between two polls of the NIC (no NIC transmit token
        // lives across a poll), and interrupt handlers never touch the queues. So the borrow
        // returned here never overlaps another holder's.
        unsafe { &mut *self.0.get() }
    }

    /// The queues, to read a field.
    pub fn peek(&self) -> &NetQueues {
        // SAFETY: as in `get`; no `&mut` from another holder is alive while this one runs.
        unsafe { &*self.0.get() }
    }
}

impl NetQueues {
    /// Before sleeping: rings the transmit doorbell for anything posted since the last one,
    /// asks the device for an interrupt on every used buffer from now on, clears (acknowledges)
    /// the interrupt it may have raised already, then looks at both used rings. True if there
    /// is work after all (the caller polls instead of sleeping); an interrupt comes for
    /// anything the device finishes after this check.
    pub fn arm_interrupts(&mut self) -> bool {
        if self.tx_unkicked {
            self.kick_tx();
        }
        self.rx.set_dev_notify(true);
        self.tx.set_dev_notify(true);
        // The flag stores must be visible to the device before we read its used indexes.
        fence(Ordering::SeqCst);
        self.transport.ack_interrupt();
        self.rx.peek_used().is_some() || self.tx.peek_used().is_some()
    }

    /// While polling: no interrupts (VRING_AVAIL_F_NO_INTERRUPT on both queues).
    pub fn disarm_interrupts(&mut self) {
        self.rx.set_dev_notify(false);
        self.tx.set_dev_notify(false);
    }
}

impl Drop for NetQueues {
    fn drop(&mut self) {
        // A reset stops all DMA before the queues and the buffers behind them are freed.
        self.transport.set_status(DeviceStatus::empty());
    }
}
