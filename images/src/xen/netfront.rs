//! Xen netfront (`io/netif.h`) as a smoltcp `phy::Device`: the xenbus handshake with
//! netback over xenstore, then one TX and one RX ring of 256 slots each. Every buffer is
//! granted once at start-up: 256 RX pages stay posted (re-posted as soon as smoltcp has read
//! their frame), 256 TX half-pages are reused through a free list, so nothing is allocated or
//! granted per packet. Copy-mode receive (`request-rx-copy`).
//!
//! Offloads, as Linux's netfront uses them:
//! - Transmit checksums: smoltcp leaves TCP checksums out; the frame gets the pseudo-header
//!   sum (`virtio_net_hdr::offload_tcpv4`, the same CHECKSUM_PARTIAL form) and
//!   `NETTXF_csum_blank | NETTXF_data_validated`, and netback completes it (or a local
//!   receiver in dom0 never sums the payload at all). UDP checksums stay in software.
//! - Receive checksums: we do not write `feature-no-csum-offload`, so netback may hand us
//!   frames marked `NETRXF_csum_blank` or `NETRXF_data_validated`; those are taken as they
//!   are, and every other IPv4 TCP/UDP frame is verified here (smoltcp checks none).
//! - TSO, when the backend offers `feature-sg` and `feature-gso-tcpv4` and the command line
//!   does not say `virtio_net.tso=off`: smoltcp builds TCP frames up to 65535 bytes into one of
//!   [`LARGE_BUFS`] contiguous 16-page buffers (granted once), sent as a chain of page slots
//!   with a GSO extra-info slot giving the segment size; netback cuts them up.
//! - Receive GSO: we write `feature-sg` and `feature-gso-tcpv4` (unless the command line says
//!   `virtio_net.lro=off`), so netback may hand us TCP packets of up to 64 KiB over several
//!   slots with a GSO extra-info slot. They are copied into one assembly buffer for smoltcp;
//!   one-slot frames are read in place.
//!
//! The rings' bookkeeping and checks are `netstack::xen::netif` (host-tested); a response the
//! checks reject, or the backend leaving the Connected state, stops the NIC with a
//! [`Netfront::fault`] instead of a hang or a panic.

use super::{grant, hypercall, store};
use alloc::alloc::{Layout, alloc_zeroed};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use netstack::smoltcp::phy::{Checksum, ChecksumCapabilities, PacketMeta};
use netstack::smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use netstack::smoltcp::time::Instant;
use netstack::virtio_net_hdr::{self, flags as hdr_flags, gso};
use netstack::xen::netif::{self, Rx, Shared, Tx, TxSlot};
use netstack::xen::xenstore::{Client, Error as XsError};

/// Largest frame: 1500-byte IP MTU plus the Ethernet header.
const MAX_FRAME: usize = 1514;
const TX_BUF: usize = 2048;
const IDS: u16 = 256;
/// Large transmit buffers with TSO: 12 × 64 KiB (768 KiB, 192 grants), ids from [`IDS`] on,
/// [`LARGE_PAGES`] per buffer. At most 12 frames of 44 segments are in flight.
pub const LARGE_BUFS: usize = 12;
const LARGE_PAGES: usize = netif::MAX_TX_SLOTS;
/// The largest frame smoltcp may build with TSO (the netif size field is 16 bits).
const TSO_FRAME: usize = netif::MAX_TX_FRAME;
/// xenbus states (`io/xenbus.h`).
const INIT_WAIT: u32 = 2;
const INITIALISED: u32 = 3;
const CONNECTED: u32 = 4;
const CLOSING: u32 = 5;
/// How long the handshake may take in all.
const HANDSHAKE_SECS: u64 = 20;
/// How often a running NIC looks at xenstore for the backend going away.
const BACKEND_CHECK_US: u64 = 200_000;

/// One shared ring page.
struct RingPage(*mut u8);

impl Shared for RingPage {
    fn load_u16(&self, off: usize) -> u16 {
        // SAFETY: offsets inside the ring page, aligned (callers: netif's slot layout).
        unsafe { read_volatile(self.0.add(off) as *const u16) }
    }
    fn store_u16(&mut self, off: usize, v: u16) {
        // SAFETY: as above.
        unsafe { write_volatile(self.0.add(off) as *mut u16, v) }
    }
    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: as above.
        unsafe { read_volatile(self.0.add(off) as *const u32) }
    }
    fn store_u32(&mut self, off: usize, v: u32) {
        // SAFETY: as above.
        unsafe { write_volatile(self.0.add(off) as *mut u32, v) }
    }
    fn fence(&self) {
        fence(Ordering::SeqCst);
    }
}

/// `n` zeroed, contiguous, page-aligned pages for `what`, allocated once at start-up.
fn pages(n: usize, what: &str) -> Result<*mut u8, String> {
    let layout = Layout::from_size_align(n * 4096, 4096).map_err(|_| format!("layout of {n} pages"))?;
    // SAFETY: non-zero size (n >= 1 at every call).
    let p = unsafe { alloc_zeroed(layout) };
    if p.is_null() {
        return Err(format!("out of memory for netfront's {what}"));
    }
    Ok(p)
}

#[derive(Clone, Copy, Default)]
pub struct Stats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub notifies: u64,
    /// Frames the backend vouched for (`data_validated` or `csum_blank`), and frames dropped
    /// for a wrong TCP/UDP checksum when it did not.
    pub rx_csum_trusted: u64,
    pub rx_bad_checksum: u64,
    pub tx_tso: u64,
    pub tx_tso_segments: u64,
    /// Received packets that spanned several slots (GSO from netback).
    pub rx_large: u64,
}

/// One large transmit buffer: 16 contiguous pages, each granted, and how many of its slots
/// the backend has not answered yet (free at 0).
struct LargeBuf {
    base: *mut u8,
    grefs: [u32; LARGE_PAGES],
    pending: usize,
}

pub struct Netfront {
    tx_page: RingPage,
    rx_page: RingPage,
    tx: Tx,
    rx: Rx,
    /// Per TX id: buffer address and (gref, offset).
    tx_bufs: Vec<(*mut u8, u32, u16)>,
    /// Per RX id: page address and gref.
    rx_bufs: Vec<(*mut u8, u32)>,
    /// The RX id whose frame smoltcp is reading (re-posted at the next `receive`).
    in_hand: Option<u16>,
    port: u32,
    mac: [u8; 6],
    description: String,
    store: Client<store::StoreRing>,
    backend_state: String,
    last_check_us: u64,
    store_failed: bool,
    stats: Stats,
    fault: Option<String>,
    scratch: Vec<u8>,
    /// TSO: the large buffers and the free ones (None: frames stay at 1514 bytes).
    large: Option<(Vec<LargeBuf>, Vec<usize>)>,
    /// Where a packet spanning several receive slots is put together for smoltcp
    /// ([`netif::MAX_RX_SLOTS`] pages; null without receive GSO).
    assembly: *mut u8,
}

/// What the idle loop needs to arm the rings: pages, consumer indices, the event channel.
static IDLE_RX: AtomicU64 = AtomicU64::new(0);
static IDLE_TX: AtomicU64 = AtomicU64::new(0);
static IDLE_RX_CONS: AtomicU32 = AtomicU32::new(0);
static IDLE_TX_CONS: AtomicU32 = AtomicU32::new(0);
static IDLE_PORT: AtomicU32 = AtomicU32::new(0);

/// Before the vCPU blocks: clears the NIC's pending event, then asks the backend for an event
/// on the next response of either ring. Returns the ports to poll in `ports` (their count),
/// or `usize::MAX` if responses are already waiting.
pub fn arm_idle(ports: &mut [u32; 2]) -> usize {
    let rx = IDLE_RX.load(Ordering::Relaxed) as *mut u8;
    if rx.is_null() {
        return 0;
    }
    let port = IDLE_PORT.load(Ordering::Relaxed);
    super::clear_pending(port);
    let tx = IDLE_TX.load(Ordering::Relaxed) as *mut u8;
    for (page, cons) in [(rx, &IDLE_RX_CONS), (tx, &IDLE_TX_CONS)] {
        let cons = cons.load(Ordering::Relaxed);
        let front = netif::Front { req_prod_pvt: cons, rsp_cons: cons };
        if front.arm(&mut RingPage(page)) {
            return usize::MAX;
        }
    }
    ports[0] = port;
    1
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn xs(what: &str) -> impl Fn(XsError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Reads `path` as a number.
fn read_num(c: &mut Client<store::StoreRing>, path: &str) -> Result<u32, String> {
    let v = c.read(0, path).map_err(xs(path))?;
    v.trim().parse().map_err(|_| format!("{path} = {v:?} is not a number"))
}

/// The handshake: finds `device/vif/N`, grants rings and buffers to the backend, writes the
/// ring refs, event channel and features in one transaction, and waits for Connected.
pub fn open(tso_wanted: bool, gso_rx: bool) -> Result<Netfront, String> {
    grant::init()?;
    let mut c = store::open()?;
    c.ring().set_deadline(HANDSHAKE_SECS);
    let vifs = c.directory(0, "device/vif").map_err(xs("device/vif (no vif in the domain's config?)"))?;
    let Some(vif) = vifs.first() else { return Err(String::from("device/vif is empty: no vif configured")) };
    let dev = format!("device/vif/{vif}");
    let backend = c.read(0, &format!("{dev}/backend")).map_err(xs("backend path"))?;
    let backend_id = read_num(&mut c, &format!("{dev}/backend-id"))?;
    let backend_id = u16::try_from(backend_id).map_err(|_| format!("backend-id {backend_id} out of range"))?;
    let mac_text = c.read(0, &format!("{dev}/mac")).map_err(xs("mac"))?;
    let mac = parse_mac(&mac_text).ok_or_else(|| format!("{dev}/mac = {mac_text:?} is not a MAC address"))?;

    // Wait for the backend to reach InitWait (netback is ready for our rings).
    let state_path = format!("{backend}/state");
    c.watch(&state_path, "be").map_err(xs("watch backend state"))?;
    loop {
        let s = read_num(&mut c, &state_path)?;
        if s >= CLOSING {
            return Err(format!("backend {backend} is closing (state {s}) before we connected"));
        }
        if s >= INIT_WAIT {
            break;
        }
        c.wait_event().map_err(xs("waiting for the backend's InitWait"))?;
    }
    match c.read(0, &format!("{backend}/feature-rx-copy")) {
        Ok(v) if v.trim() == "1" => {}
        other => return Err(format!("backend {backend} lacks feature-rx-copy ({other:?})")),
    }

    let backend_offers = |c: &mut Client<store::StoreRing>, key: &str| {
        c.read(0, &format!("{backend}/{key}")).is_ok_and(|v| v.trim() == "1")
    };
    let backend_tso = backend_offers(&mut c, "feature-sg") && backend_offers(&mut c, "feature-gso-tcpv4");
    let tso = tso_wanted && backend_tso;

    let mut tx_page = RingPage(pages(1, "ring pages")?);
    let mut rx_page = RingPage(pages(1, "ring pages")?);
    let tx_ref = grant::grant(backend_id, tx_page.0 as u64, false)?;
    let rx_ref = grant::grant(backend_id, rx_page.0 as u64, false)?;
    let chained = if tso { (LARGE_BUFS * LARGE_PAGES) as u16 } else { 0 };
    let tx = Tx::new(&mut tx_page, 0, IDS, chained);
    let mut rx = Rx::new(&mut rx_page, 0, IDS, gso_rx);
    let assembly = if gso_rx { pages(netif::MAX_RX_SLOTS, "receive assembly buffer")? } else { core::ptr::null_mut() };
    let mut tx_bufs = Vec::with_capacity(usize::from(IDS));
    for _ in 0..usize::from(IDS) * TX_BUF / 4096 {
        let p = pages(1, "transmit buffers")?;
        let gref = grant::grant(backend_id, p as u64, true)?;
        for half in 0..4096 / TX_BUF {
            // SAFETY: inside the page just allocated.
            tx_bufs.push((unsafe { p.add(half * TX_BUF) }, gref, (half * TX_BUF) as u16));
        }
    }
    let large = if tso {
        let mut bufs = Vec::with_capacity(LARGE_BUFS);
        for _ in 0..LARGE_BUFS {
            let base = pages(LARGE_PAGES, "TSO buffers")?;
            let mut grefs = [0; LARGE_PAGES];
            for (i, g) in grefs.iter_mut().enumerate() {
                *g = grant::grant(backend_id, base as u64 + (i * 4096) as u64, true)?;
            }
            bufs.push(LargeBuf { base, grefs, pending: 0 });
        }
        Some((bufs, (0..LARGE_BUFS).rev().collect()))
    } else {
        None
    };
    let mut rx_bufs = Vec::with_capacity(usize::from(IDS));
    for id in 0..IDS {
        let p = pages(1, "receive pages")?;
        let gref = grant::grant(backend_id, p as u64, false)?;
        rx_bufs.push((p, gref));
        rx.post(&mut rx_page, id, gref).map_err(|e| e.0)?;
    }
    rx.push(&mut rx_page);
    let port = hypercall::evtchn_alloc_unbound(backend_id).map_err(|e| format!("EVTCHNOP_alloc_unbound: error {e}"))?;

    // Ring refs, event channel and features in one transaction (retried on EAGAIN).
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tx_id = c.transaction_start().map_err(xs("transaction start"))?;
        let writes = [
            ("tx-ring-ref", format!("{tx_ref}")),
            ("rx-ring-ref", format!("{rx_ref}")),
            ("event-channel", format!("{port}")),
            ("request-rx-copy", String::from("1")),
            ("feature-rx-notify", String::from("1")),
            ("feature-no-csum-offload", String::from("0")),
            ("feature-sg", String::from(if gso_rx { "1" } else { "0" })),
            ("feature-gso-tcpv4", String::from(if gso_rx { "1" } else { "0" })),
            ("state", format!("{INITIALISED}")),
        ];
        for (key, value) in &writes {
            c.write(tx_id, &format!("{dev}/{key}"), value).map_err(xs(key))?;
        }
        match c.transaction_end(tx_id, true) {
            Ok(()) => break,
            Err(XsError::Xenstore(e)) if e == "EAGAIN" && attempts < 10 => continue,
            Err(e) => return Err(format!("transaction end: {e}")),
        }
    }
    c.write(0, &format!("{dev}/state"), &format!("{CONNECTED}")).map_err(xs("state"))?;
    loop {
        let s = read_num(&mut c, &state_path)?;
        if s == CONNECTED {
            break;
        }
        if s >= CLOSING {
            return Err(format!("backend {backend} went to state {s} instead of Connected"));
        }
        c.wait_event().map_err(xs("waiting for the backend to connect"))?;
    }
    // From now on xenstore is only looked at now and then, without waiting.
    c.ring().set_deadline(1);

    IDLE_RX.store(rx_page.0 as u64, Ordering::Relaxed);
    IDLE_TX.store(tx_page.0 as u64, Ordering::Relaxed);
    IDLE_PORT.store(port, Ordering::Relaxed);
    let tso_text = if tso {
        format!("TSO on (frames up to {TSO_FRAME} B, {LARGE_BUFS} buffers)")
    } else if !tso_wanted {
        String::from("TSO off (virtio_net.tso=off)")
    } else {
        String::from("TSO off (the backend lacks feature-sg or feature-gso-tcpv4)")
    };
    let description = format!(
        "Xen netfront {dev} (backend {backend} in domain {backend_id}, event channel {port}), {IDS} rx + {IDS} tx \
         slots, rx-copy, checksum offload both ways, {tso_text}, {}",
        if gso_rx { "receive GSO on (feature-sg, feature-gso-tcpv4)" } else { "receive GSO off (virtio_net.lro=off)" }
    );
    Ok(Netfront {
        tx_page,
        rx_page,
        tx,
        rx,
        tx_bufs,
        rx_bufs,
        in_hand: None,
        port,
        mac,
        description,
        store: c,
        backend_state: state_path,
        last_check_us: crate::clock::now_us(),
        store_failed: false,
        stats: Stats::default(),
        fault: None,
        scratch: alloc::vec![0; MAX_FRAME],
        large,
        assembly,
    })
}

impl Netfront {
    /// A packet off the ring: its frame for smoltcp, or None when it is dropped (an error
    /// status, a wrong checksum). One data slot is read in place (its page stays in hand until
    /// the next `receive`); several are copied into the assembly buffer. Every other page goes
    /// back on the ring at once.
    fn take_packet(&mut self, pkt: &netif::RxPacket) -> Result<Option<&'static [u8]>, netif::RingError> {
        let data: Option<&'static [u8]> = match pkt.data() {
            _ if !pkt.ok => {
                self.stats.rx_errors += 1;
                None
            }
            [one] => {
                let base = self.rx_bufs[usize::from(one.id)].0;
                self.in_hand = Some(one.id);
                // SAFETY: the page is off the ring (in hand) until the next `receive`, and
                // smoltcp's token cannot outlive that; offset + len <= 4096 was checked by
                // `Rx::next_packet`.
                Some(unsafe { core::slice::from_raw_parts(base.add(usize::from(one.offset)), usize::from(one.len)) })
            }
            slots => {
                let mut at = 0;
                for f in slots {
                    let src = self.rx_bufs[usize::from(f.id)].0;
                    // SAFETY: each page is off the ring until posted again below, offset + len
                    // <= 4096 (checked), and the assembly buffer holds MAX_RX_SLOTS pages.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            src.add(usize::from(f.offset)),
                            self.assembly.add(at),
                            usize::from(f.len),
                        );
                    }
                    at += usize::from(f.len);
                }
                self.stats.rx_large += 1;
                // SAFETY: written just above; read by smoltcp before the next `receive`.
                Some(unsafe { core::slice::from_raw_parts(self.assembly, at) })
            }
        };
        let data = data.filter(|d| {
            if pkt.flags & (netif::RXF_DATA_VALIDATED | netif::RXF_CSUM_BLANK) != 0 {
                self.stats.rx_csum_trusted += 1;
                true
            } else if crate::net::rx_checksum_ok(d) {
                true
            } else {
                self.stats.rx_bad_checksum += 1;
                false
            }
        });
        if data.is_none() {
            self.in_hand = None;
        }
        for &id in pkt.ids() {
            if self.in_hand != Some(id) {
                self.rx.post(&mut self.rx_page, id, self.rx_bufs[usize::from(id)].1)?;
            }
        }
        Ok(data)
    }

    /// Room for whatever smoltcp builds next: a pooled id and, with TSO, a free large buffer
    /// and ring slots for its longest chain (a token cannot know the frame's length).
    fn can_transmit(&self) -> bool {
        self.tx.available() > 0
            && self
                .large
                .as_ref()
                .is_none_or(|(_, free)| !free.is_empty() && self.tx.front.free() as usize > netif::MAX_TX_SLOTS + 1)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn describe(&self) -> String {
        self.description.clone()
    }

    pub fn stats(&self) -> String {
        let s = self.stats;
        let (polls, timeouts, upcalls) = super::idle_stats();
        format!(
            "{} rx frames ({} of several slots, {} checksums vouched for by the backend, {} bad checksums), {} tx \
             frames ({} TSO making {} segments), {} tx dropped, {} rx errors, {} notifications; {polls} idle blocks ({timeouts} ran to \
             their deadline), {upcalls} upcalls",
            s.rx_frames,
            s.rx_large,
            s.rx_csum_trusted,
            s.rx_bad_checksum,
            s.tx_frames,
            s.tx_tso,
            s.tx_tso_segments,
            s.tx_dropped,
            s.rx_errors,
            s.notifies
        )
    }

    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    fn set_fault(&mut self, what: String) {
        if self.fault.is_none() {
            crate::println!("uniperf: error - netfront: {what}");
            self.fault = Some(what);
        }
    }

    fn notify(&mut self) {
        self.stats.notifies += 1;
        hypercall::evtchn_send(self.port);
    }

    fn reap_tx(&mut self) {
        let mut dropped = 0;
        let mut large = self.large.as_mut();
        let r = self.tx.reap(&self.tx_page, |d| {
            if d.status == netif::RSP_DROPPED {
                dropped += 1;
            }
            // A chained id: one page slot of large buffer k answered.
            if let (Some(k), Some((bufs, free))) = (usize::from(d.id).checked_sub(usize::from(IDS)), large.as_mut()) {
                let k = k / LARGE_PAGES;
                if let Some(b) = bufs.get_mut(k) {
                    b.pending = b.pending.saturating_sub(1);
                    if b.pending == 0 {
                        free.push(k);
                    }
                }
            }
        });
        self.stats.tx_dropped += dropped;
        IDLE_TX_CONS.store(self.tx.front.rsp_cons, Ordering::Relaxed);
        if let Err(e) = r {
            self.set_fault(e.0);
        }
    }

    /// Now and then: has the backend left Connected (domain teardown, `xl network-detach`)?
    fn check_backend(&mut self) {
        let now = crate::clock::now_us();
        if self.store_failed || now - self.last_check_us < BACKEND_CHECK_US {
            return;
        }
        self.last_check_us = now;
        let ring = self.store.ring();
        if !ring.has_reply() {
            return;
        }
        ring.set_deadline(5);
        let path = self.backend_state.clone();
        match self.store.wait_event().and_then(|_| self.store.read(0, &path)) {
            Ok(s) if s.trim().parse::<u32>().is_ok_and(|s| s >= CLOSING) => {
                self.set_fault(format!("the backend is closing ({path} = {s})"))
            }
            Ok(_) => {}
            // A slow or broken xenstore does not stop a NIC whose rings still work: stop
            // watching (the client refuses further requests once broken) and say so.
            Err(e) if !self.store_failed => {
                self.store_failed = true;
                crate::println!("uniperf: warning - netfront: no longer watching the backend's state: {e}");
            }
            Err(_) => {}
        }
    }
}

impl Device for Netfront {
    type RxToken<'a> = NetfrontRx<'a>;
    type TxToken<'a> = NetfrontTx<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if let Some(id) = self.in_hand.take() {
            let gref = self.rx_bufs[usize::from(id)].1;
            if let Err(e) = self.rx.post(&mut self.rx_page, id, gref) {
                self.set_fault(e.0);
            }
            if self.rx.push(&mut self.rx_page) {
                self.notify();
            }
        }
        self.check_backend();
        if self.fault.is_some() {
            return None;
        }
        self.reap_tx();
        let data = loop {
            let pkt = match self.rx.next_packet(&self.rx_page) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    IDLE_RX_CONS.store(self.rx.front.rsp_cons, Ordering::Relaxed);
                    // Pages given back without a frame were posted again: publish them.
                    if self.rx.push(&mut self.rx_page) {
                        self.notify();
                    }
                    return None;
                }
                Err(e) => {
                    self.set_fault(e.0);
                    return None;
                }
            };
            match self.take_packet(&pkt) {
                Ok(Some(data)) => break data,
                Ok(None) => {}
                Err(e) => {
                    self.set_fault(e.0);
                    return None;
                }
            }
        };
        IDLE_RX_CONS.store(self.rx.front.rsp_cons, Ordering::Relaxed);
        self.stats.rx_frames += 1;
        Some((NetfrontRx { data }, NetfrontTx { nic: TxSide::from(self), gso_size: None }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.fault.is_some() {
            return None;
        }
        if !self.can_transmit() {
            self.reap_tx();
            if !self.can_transmit() {
                return None;
            }
        }
        Some(NetfrontTx { nic: TxSide::from(self), gso_size: None })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None;
        // TCP: the backend completes transmit checksums, the driver checks what it did not
        // vouch for on receive; UDP: transmit in smoltcp, receive checked by the driver.
        let mut checksum = ChecksumCapabilities::default();
        checksum.tcp = Checksum::None;
        checksum.udp = Checksum::Tx;
        caps.checksum = checksum;
        if self.large.is_some() {
            caps.segmentation.tcpv4 = core::num::NonZeroUsize::new(TSO_FRAME);
        }
        caps
    }
}

pub struct NetfrontRx<'a> {
    data: &'a [u8],
}

impl RxToken for NetfrontRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.data)
    }
}

/// The parts of the NIC a transmit token needs (the receive token holds the RX page).
struct TxSide<'a> {
    tx: &'a mut Tx,
    page: &'a mut RingPage,
    bufs: &'a [(*mut u8, u32, u16)],
    stats: &'a mut Stats,
    scratch: &'a mut Vec<u8>,
    large: Option<&'a mut (Vec<LargeBuf>, Vec<usize>)>,
    port: u32,
}

impl<'a> TxSide<'a> {
    fn from(n: &'a mut Netfront) -> Self {
        TxSide {
            tx: &mut n.tx,
            page: &mut n.tx_page,
            bufs: &n.tx_bufs,
            stats: &mut n.stats,
            scratch: &mut n.scratch,
            large: n.large.as_mut(),
            port: n.port,
        }
    }

    /// Builds a frame nowhere the backend sees and counts it as dropped.
    fn drop_frame<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        self.stats.tx_dropped += 1;
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        f(&mut self.scratch[..len])
    }

    fn publish(self) {
        self.stats.tx_frames += 1;
        if self.tx.push(self.page) {
            self.stats.notifies += 1;
            hypercall::evtchn_send(self.port);
        }
    }
}

pub struct NetfrontTx<'a> {
    nic: TxSide<'a>,
    /// smoltcp's segment size for a frame longer than one MTU (`PacketMeta`).
    gso_size: Option<u16>,
}

impl TxToken for NetfrontTx<'_> {
    fn set_meta(&mut self, meta: PacketMeta) {
        self.gso_size = meta.segmentation_offload_size.map(core::num::NonZeroU16::get);
    }

    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let n = self.nic;
        if len > MAX_FRAME {
            return consume_large(n, self.gso_size, len, f);
        }
        let id = if len >= 1 { n.tx.take() } else { None };
        let Some(id) = id else {
            // No free slot (a receive's reply token while the ring is full) or an empty frame.
            return n.drop_frame(len, f);
        };
        let (buf, gref, offset) = n.bufs[usize::from(id)];
        // SAFETY: id came off the free list, so the backend is done with its buffer;
        // len <= 1514 < TX_BUF.
        let frame = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        let r = f(frame);
        let hdr = virtio_net_hdr::offload_tcpv4(frame, None);
        let flags = if hdr.flags & hdr_flags::NEEDS_CSUM != 0 { netif::TXF_CSUM_OFFLOAD } else { 0 };
        n.tx.post(n.page, id, gref, offset, len as u16, flags);
        n.publish();
        r
    }
}

/// A TSO frame: built in a free large buffer, given its pseudo-header checksum and segment
/// size, and posted as a chain of page slots behind a GSO extra-info slot.
fn consume_large<R, F: FnOnce(&mut [u8]) -> R>(mut n: TxSide<'_>, gso_size: Option<u16>, len: usize, f: F) -> R {
    let count = len.div_ceil(4096);
    // Slots for the pages and the extra-info slot.
    let ring_room = n.tx.front.free() as usize > count;
    let picked = match n.large.as_mut() {
        Some((bufs, free)) if len <= TSO_FRAME && ring_room => free.pop().map(|k| (k, bufs[k].base, bufs[k].grefs)),
        _ => None,
    };
    let Some((k, base, grefs)) = picked else { return n.drop_frame(len, f) };
    // SAFETY: buffer k was on the free list, so the backend has answered every slot of its
    // last frame; len <= 65535 < its 16 pages.
    let frame = unsafe { core::slice::from_raw_parts_mut(base, len) };
    let r = f(frame);
    // smoltcp sets the size whenever it builds a frame this long; a wrapper that lost it gets
    // the segment size our MTU allows.
    let mss = gso_size.or_else(|| crate::net::fallback_gso_size(frame, MAX_FRAME));
    let hdr = virtio_net_hdr::offload_tcpv4(frame, mss);
    let mut slots = [TxSlot { id: 0, gref: 0, offset: 0, len: 0 }; LARGE_PAGES];
    for (i, slot) in slots.iter_mut().enumerate().take(count) {
        let id = usize::from(IDS) + k * LARGE_PAGES + i;
        *slot = TxSlot { id: id as u16, gref: grefs[i], offset: 0, len: (len - i * 4096).min(4096) as u16 };
    }
    let posted = if hdr.gso_type == gso::TCPV4 {
        n.tx.post_chain(n.page, &slots[..count], netif::TXF_CSUM_OFFLOAD, Some(hdr.gso_size)).is_ok()
    } else {
        // Too long for the wire and not a TCP frame the backend can cut up.
        false
    };
    let Some((bufs, free)) = n.large.as_mut() else { return r };
    if !posted {
        free.push(k);
        n.stats.tx_dropped += 1;
        return r;
    }
    bufs[k].pending = count;
    n.stats.tx_tso += 1;
    let payload = len - usize::from(hdr.hdr_len);
    n.stats.tx_tso_segments += payload.div_ceil(usize::from(hdr.gso_size.max(1))) as u64;
    n.publish();
    r
}
