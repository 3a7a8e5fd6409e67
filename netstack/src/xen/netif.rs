//! The netif shared rings (`io/ring.h`, `io/netif.h`) from the frontend's side: one page per
//! direction, a 64-byte header `{req_prod, req_event, rsp_prod, rsp_event}` then 256 entries
//! (12-byte TX slots, 8-byte RX slots). Indices are free-running u32s.
//!
//! [`Tx`] and [`Rx`] keep the frontend's private state and check every response the backend
//! writes: an id out of range or not in flight, more responses than requests, an error
//! status, a receive that would overrun its page — each is a [`RingError`], never a panic.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Entries per ring: the largest power of two that fits a page after the header, for both.
pub const RING_SIZE: u32 = 256;
pub const HEADER: usize = 64;
pub const TX_SLOT: usize = 12;
pub const RX_SLOT: usize = 8;
pub const PAGE: usize = 4096;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

pub const RSP_OKAY: i16 = 0;
pub const RSP_ERROR: i16 = -1;
pub const RSP_DROPPED: i16 = -2;
pub const RSP_NULL: i16 = 1;
/// `NETRXF_more_data` / `NETRXF_extra_info` (and the same bits in TX flags).
pub const RXF_MORE_DATA: u16 = 4;
pub const RXF_EXTRA_INFO: u16 = 8;
/// `NETRXF_data_validated`: the backend (or the NIC behind it) checked the TCP/UDP checksum.
pub const RXF_DATA_VALIDATED: u16 = 1;
/// `NETRXF_csum_blank`: built by a stack on the host with its checksum left to offload.
pub const RXF_CSUM_BLANK: u16 = 2;
/// `NETTXF_csum_blank | NETTXF_data_validated`: the checksum field holds the pseudo-header
/// sum and the backend completes it (Linux's CHECKSUM_PARTIAL).
pub const TXF_CSUM_OFFLOAD: u16 = 1 | 2;
pub const TXF_MORE_DATA: u16 = 4;
pub const TXF_EXTRA_INFO: u16 = 8;
/// `XEN_NETIF_EXTRA_TYPE_GSO` and `XEN_NETIF_GSO_TYPE_TCPV4`.
const EXTRA_TYPE_GSO: u16 = 1;
const GSO_TYPE_TCPV4: u16 = 1;
/// The most data slots one transmitted frame may take: netback drops a frame with 18 or more
/// (`XEN_NETBK_LEGACY_SLOTS_MAX`), and 16 pages hold the largest frame the 16-bit size allows.
pub const MAX_TX_SLOTS: usize = 16;
/// The largest frame: the first slot's size field (the whole frame) is 16 bits.
pub const MAX_TX_FRAME: usize = 0xFFFF;

/// One shared ring page. `fence` is a full memory barrier between the two ends.
pub trait Shared {
    fn load_u16(&self, off: usize) -> u16;
    fn store_u16(&mut self, off: usize, v: u16);
    fn load_u32(&self, off: usize) -> u32;
    fn store_u32(&mut self, off: usize, v: u32);
    fn fence(&self);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingError(pub String);

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The frontend's private indices of one ring.
#[derive(Clone, Copy, Debug)]
pub struct Front {
    pub req_prod_pvt: u32,
    pub rsp_cons: u32,
}

impl Front {
    /// `SHARED_RING_INIT` + `FRONT_RING_INIT`, with indices starting at `start` (0 in use;
    /// tests start near the u32 wrap).
    pub fn init<S: Shared>(page: &mut S, start: u32) -> Front {
        page.store_u32(REQ_PROD, start);
        page.store_u32(RSP_PROD, start);
        page.store_u32(REQ_EVENT, start.wrapping_add(1));
        page.store_u32(RSP_EVENT, start.wrapping_add(1));
        page.fence();
        Front { req_prod_pvt: start, rsp_cons: start }
    }

    /// Requests not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    pub fn free(&self) -> u32 {
        RING_SIZE - self.outstanding()
    }

    /// `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`: publishes the private producer; true if the
    /// backend asked to be told (its `req_event` lies in the newly pushed range).
    pub fn push<S: Shared>(&mut self, page: &mut S) -> bool {
        let old = page.load_u32(REQ_PROD);
        let new = self.req_prod_pvt;
        page.fence();
        page.store_u32(REQ_PROD, new);
        page.fence();
        let event = page.load_u32(REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses ready to consume; an error if the backend claims more than are outstanding.
    pub fn ready<S: Shared>(&self, page: &S, what: &str) -> Result<u32, RingError> {
        let prod = page.load_u32(RSP_PROD);
        page.fence();
        let n = prod.wrapping_sub(self.rsp_cons);
        if n > self.outstanding() {
            return Err(RingError(format!(
                "{what} ring: backend produced {n} responses with {} requests outstanding",
                self.outstanding()
            )));
        }
        Ok(n)
    }

    /// The first half of `RING_FINAL_CHECK_FOR_RESPONSES`: asks for an event on the next
    /// response; true if one arrived meanwhile (so there is no need to wait for the event).
    pub fn arm<S: Shared>(&self, page: &mut S) -> bool {
        page.store_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        page.fence();
        page.load_u32(RSP_PROD) != self.rsp_cons
    }
}

fn slot(idx: u32, size: usize) -> usize {
    HEADER + (idx % RING_SIZE) as usize * size
}

/// Transmit side. Ids below `pooled` each own a pre-granted buffer and come from a free list
/// ([`Tx::take`]); ids from `pooled` to `pooled + chained` are the caller's to manage (the
/// slots of its large multi-page buffers, posted with [`Tx::post_chain`]).
pub struct Tx {
    pub front: Front,
    free: Vec<u16>,
    in_flight: Vec<bool>,
    pooled: u16,
}

/// A transmit response that was consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxDone {
    pub id: u16,
    pub status: i16,
}

/// One data slot of a frame: `len` bytes at `offset` in grant `gref`, under request `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSlot {
    pub id: u16,
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
}

impl Tx {
    pub fn new<S: Shared>(page: &mut S, start: u32, pooled: u16, chained: u16) -> Tx {
        let front = Front::init(page, start);
        let pooled = pooled.min(RING_SIZE as u16);
        let ids = usize::from(pooled) + usize::from(chained);
        Tx { front, free: (0..pooled).rev().collect(), in_flight: alloc::vec![false; ids], pooled }
    }

    /// A free pooled id (its buffer may be written), or None when all are in flight.
    pub fn take(&mut self) -> Option<u16> {
        if self.front.free() == 0 {
            return None;
        }
        self.free.pop()
    }

    /// Gives back an id taken but never posted.
    pub fn untake(&mut self, id: u16) {
        self.free.push(id);
    }

    /// Whether `id` is one of the pooled ids (else a chained one the caller manages).
    pub fn is_pooled(&self, id: u16) -> bool {
        id < self.pooled
    }

    /// Publishes posted frames; true if the backend asked to be told.
    pub fn push<S: Shared>(&mut self, page: &mut S) -> bool {
        self.front.push(page)
    }

    pub fn available(&self) -> usize {
        if self.front.free() == 0 { 0 } else { self.free.len() }
    }

    /// Queues a one-slot frame of `len` bytes at `offset` in grant `gref` (not yet pushed).
    /// `flags` is 0 (checksum present) or [`TXF_CSUM_OFFLOAD`].
    pub fn post<S: Shared>(&mut self, page: &mut S, id: u16, gref: u32, offset: u16, len: u16, flags: u16) {
        self.write_request(page, TxSlot { id, gref, offset, len }, flags & TXF_CSUM_OFFLOAD);
    }

    /// Queues a frame spread over `slots` (in order; the frame is their concatenation), with
    /// `flags` ([`TXF_CSUM_OFFLOAD`] or 0) and, with `gso_mss`, a GSO extra-info slot asking the
    /// backend to cut it into TCPv4 segments of that size. Nothing is written unless it is all
    /// valid: 1 to [`MAX_TX_SLOTS`] slots of caller-managed ids not in flight, at most
    /// [`MAX_TX_FRAME`] bytes in all, and room in the ring for every slot.
    pub fn post_chain<S: Shared>(
        &mut self,
        page: &mut S,
        slots: &[TxSlot],
        flags: u16,
        gso_mss: Option<u16>,
    ) -> Result<(), RingError> {
        let need = slots.len() + usize::from(gso_mss.is_some());
        if slots.is_empty() || slots.len() > MAX_TX_SLOTS {
            return Err(RingError(format!("tx ring: a frame of {} slots (1 to {MAX_TX_SLOTS})", slots.len())));
        }
        if need > self.front.free() as usize {
            return Err(RingError(format!("tx ring: {need} slots wanted, {} free", self.front.free())));
        }
        let total: usize = slots.iter().map(|s| usize::from(s.len)).sum();
        if total > MAX_TX_FRAME || slots.iter().any(|s| s.len == 0 || usize::from(s.offset) + usize::from(s.len) > PAGE)
        {
            return Err(RingError(format!("tx ring: a frame of {total} bytes whose slots do not fit their pages")));
        }
        for s in slots {
            match self.in_flight.get(usize::from(s.id)) {
                Some(false) if !self.is_pooled(s.id) => {}
                _ => return Err(RingError(format!("tx ring: id {} is not a free chained id", s.id))),
            }
        }
        if gso_mss == Some(0) {
            return Err(RingError(String::from("tx ring: GSO segment size 0")));
        }
        let flags = flags & TXF_CSUM_OFFLOAD;
        let more = if slots.len() > 1 { TXF_MORE_DATA } else { 0 };
        let extra = if gso_mss.is_some() { TXF_EXTRA_INFO } else { 0 };
        // The first request's size is the whole frame's, the others' their own.
        self.write_request(page, TxSlot { len: total as u16, ..slots[0] }, flags | more | extra);
        if let Some(mss) = gso_mss {
            // struct netif_extra_info: type, flags, then gso {size, type, pad, features}.
            let at = slot(self.front.req_prod_pvt, TX_SLOT);
            page.store_u16(at, EXTRA_TYPE_GSO);
            page.store_u16(at + 2, mss);
            page.store_u16(at + 4, GSO_TYPE_TCPV4);
            page.store_u16(at + 6, 0);
            self.front.req_prod_pvt = self.front.req_prod_pvt.wrapping_add(1);
        }
        for (i, s) in slots.iter().enumerate().skip(1) {
            let more = if i + 1 < slots.len() { TXF_MORE_DATA } else { 0 };
            self.write_request(page, *s, more);
        }
        Ok(())
    }

    fn write_request<S: Shared>(&mut self, page: &mut S, s: TxSlot, flags: u16) {
        let at = slot(self.front.req_prod_pvt, TX_SLOT);
        page.store_u32(at, s.gref);
        page.store_u16(at + 4, s.offset);
        page.store_u16(at + 6, flags);
        page.store_u16(at + 8, s.id);
        page.store_u16(at + 10, s.len);
        self.in_flight[usize::from(s.id)] = true;
        self.front.req_prod_pvt = self.front.req_prod_pvt.wrapping_add(1);
    }

    /// Consumes every response, returning ids to the free list; `on_done` sees each.
    pub fn reap<S: Shared>(&mut self, page: &S, mut on_done: impl FnMut(TxDone)) -> Result<(), RingError> {
        let n = self.front.ready(page, "tx")?;
        for _ in 0..n {
            let at = slot(self.front.rsp_cons, TX_SLOT);
            let id = page.load_u16(at);
            let status = page.load_u16(at + 2) as i16;
            self.front.rsp_cons = self.front.rsp_cons.wrapping_add(1);
            if status == RSP_NULL {
                continue;
            }
            match self.in_flight.get_mut(usize::from(id)) {
                Some(f) if *f => *f = false,
                Some(_) => return Err(RingError(format!("tx ring: response for id {id}, which is not in flight"))),
                None => {
                    return Err(RingError(format!(
                        "tx ring: response with id {id} (ids are 0..{})",
                        self.in_flight.len()
                    )));
                }
            }
            if self.is_pooled(id) {
                self.free.push(id);
            }
            if status == RSP_ERROR {
                return Err(RingError(format!("tx ring: backend rejected frame id {id} (status {status})")));
            }
            on_done(TxDone { id, status });
        }
        Ok(())
    }
}

/// Receive side: every id owns one granted page, posted whenever the frontend is not
/// holding its frame. With scatter-gather a packet spans several responses (`more_data`),
/// and a GSO packet has an extra-info response after its first; [`Rx::next_packet`] takes
/// them together.
pub struct Rx {
    pub front: Front,
    posted: Vec<bool>,
    /// The id posted at each ring index: an extra-info response carries none, but it used up
    /// the request at its index.
    at_index: Vec<u16>,
    sg: bool,
}

/// One data slot of a received packet: `len` bytes at `offset` in id's page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxFrame {
    pub id: u16,
    pub offset: u16,
    pub len: u16,
    pub flags: u16,
}

/// The most responses one packet may take: 17 pages for a 65535-byte IP packet with its
/// Ethernet header, and extra-info slots.
pub const MAX_RX_SLOTS: usize = 20;

/// A received packet, taken off the ring whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPacket {
    /// Every id it used, in ring order; each must be posted again (data ids once their bytes
    /// have been read).
    pub ids: [u16; MAX_RX_SLOTS],
    pub n_ids: usize,
    /// The data slots in order; their concatenation is the frame.
    pub data: [RxFrame; MAX_RX_SLOTS],
    pub n_data: usize,
    /// The first slot's flags (`NETRXF_data_validated`, `NETRXF_csum_blank`, …).
    pub flags: u16,
    /// The GSO segment size the backend gave (0: none).
    pub gso_size: u16,
    /// False when a slot carried an error status: drop the packet, post the ids again.
    pub ok: bool,
}

impl RxPacket {
    pub fn ids(&self) -> &[u16] {
        &self.ids[..self.n_ids]
    }

    pub fn data(&self) -> &[RxFrame] {
        &self.data[..self.n_data]
    }

    /// Bytes in all data slots (0 for a packet that is not `ok`).
    pub fn bytes(&self) -> usize {
        self.data().iter().map(|f| usize::from(f.len)).sum()
    }
}

/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
const EXTRA_FLAG_MORE: u16 = 1;

impl Rx {
    /// `sg`: we offered `feature-sg` (and GSO), so packets may span several responses.
    pub fn new<S: Shared>(page: &mut S, start: u32, ids: u16, sg: bool) -> Rx {
        let front = Front::init(page, start);
        Rx {
            front,
            posted: alloc::vec![false; usize::from(ids.min(RING_SIZE as u16))],
            at_index: alloc::vec![u16::MAX; RING_SIZE as usize],
            sg,
        }
    }

    /// Queues id's page for the backend to fill (not yet pushed).
    pub fn post<S: Shared>(&mut self, page: &mut S, id: u16, gref: u32) -> Result<(), RingError> {
        match self.posted.get(usize::from(id)) {
            Some(false) => {}
            Some(true) => return Err(RingError(format!("rx ring: id {id} posted twice"))),
            None => return Err(RingError(format!("rx ring: no id {id}"))),
        }
        if self.front.free() == 0 {
            return Err(RingError(String::from("rx ring: full")));
        }
        let at = slot(self.front.req_prod_pvt, RX_SLOT);
        page.store_u16(at, id);
        page.store_u16(at + 2, 0);
        page.store_u32(at + 4, gref);
        self.posted[usize::from(id)] = true;
        self.at_index[(self.front.req_prod_pvt % RING_SIZE) as usize] = id;
        self.front.req_prod_pvt = self.front.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// The next whole packet, checked; None until all of its responses are there. Every
    /// response must name a posted id (an extra-info slot: the id posted at its index), a data
    /// slot must fit its page, and a packet may not span more than [`MAX_RX_SLOTS`]
    /// responses, or more than one without `sg`. A slot with an error status makes the packet
    /// `ok: false` (its pages come back, nothing to read).
    pub fn next_packet<S: Shared>(&mut self, page: &S) -> Result<Option<RxPacket>, RingError> {
        let ready = self.front.ready(page, "rx")?;
        let mut p = RxPacket {
            ids: [0; MAX_RX_SLOTS],
            n_ids: 0,
            data: [RxFrame::default(); MAX_RX_SLOTS],
            n_data: 0,
            flags: 0,
            gso_size: 0,
            ok: true,
        };
        // Walk the responses without consuming them until the packet is complete.
        let mut extra_next = false;
        let mut more = true;
        let mut i = 0u32;
        while more || extra_next {
            if i == ready {
                return Ok(None); // the rest of the packet is not there yet
            }
            if p.n_ids == MAX_RX_SLOTS {
                return Err(RingError(format!("rx ring: a packet of more than {MAX_RX_SLOTS} responses")));
            }
            let idx = self.front.rsp_cons.wrapping_add(i);
            let at = slot(idx, RX_SLOT);
            if extra_next {
                // struct netif_extra_info: type u8, flags u8, gso {size u16, type u8, …}.
                let head = page.load_u16(at);
                let (ty, xflags) = (head & 0xFF, head >> 8);
                if ty == EXTRA_TYPE_GSO {
                    p.gso_size = page.load_u16(at + 2);
                }
                extra_next = xflags & EXTRA_FLAG_MORE != 0;
                p.ids[p.n_ids] = self.at_index[(idx % RING_SIZE) as usize];
            } else {
                let id = page.load_u16(at);
                let offset = page.load_u16(at + 2);
                let flags = page.load_u16(at + 4);
                let status = page.load_u16(at + 6) as i16;
                if p.n_ids == 0 {
                    p.flags = flags;
                    extra_next = flags & RXF_EXTRA_INFO != 0;
                }
                more = flags & RXF_MORE_DATA != 0;
                if (more || extra_next) && !self.sg {
                    return Err(RingError(format!(
                        "rx ring: multi-slot frame (flags {flags:#x}) though neither feature-sg nor GSO was offered"
                    )));
                }
                if status <= 0 {
                    p.ok = false;
                } else if usize::from(offset) + status as usize > PAGE {
                    return Err(RingError(format!("rx ring: {status} bytes at offset {offset} overrun the page")));
                } else {
                    p.data[p.n_data] = RxFrame { id, offset, len: status as u16, flags };
                    p.n_data += 1;
                }
                p.ids[p.n_ids] = id;
            }
            p.n_ids += 1;
            i += 1;
        }
        // Every id must be posted, and once only in this packet.
        for (k, &id) in p.ids().iter().enumerate() {
            let posted = self.posted.get(usize::from(id)).copied();
            if posted != Some(true) || p.ids()[..k].contains(&id) {
                return Err(match posted {
                    None => RingError(format!("rx ring: response with id {id} (ids are 0..{})", self.posted.len())),
                    _ => RingError(format!("rx ring: response for id {id}, which is not posted")),
                });
            }
        }
        for &id in p.ids() {
            self.posted[usize::from(id)] = false;
        }
        self.front.rsp_cons = self.front.rsp_cons.wrapping_add(i);
        if !p.ok {
            p.n_data = 0;
        }
        Ok(Some(p))
    }

    /// Publishes posted pages; true if the backend asked to be told.
    pub fn push<S: Shared>(&mut self, page: &mut S) -> bool {
        self.front.push(page)
    }
}

#[cfg(test)]
mod tests;
