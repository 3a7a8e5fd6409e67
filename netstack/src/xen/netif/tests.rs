//! The rings against a model backend working on the same page.

use super::*;
use alloc::string::ToString;
use alloc::vec;

struct Page(Vec<u8>);

impl Page {
    fn new() -> Page {
        Page(vec![0; PAGE])
    }
}

impl Shared for Page {
    fn load_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    fn store_u16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn load_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    fn store_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn fence(&self) {}
}

/// The backend's side: its own request consumer and response producer.
struct Back {
    req_cons: u32,
    rsp_prod: u32,
}

impl Back {
    fn new(start: u32) -> Back {
        Back { req_cons: start, rsp_prod: start }
    }

    /// Takes the pushed TX requests: (id, gref, offset, size).
    fn take_tx(&mut self, p: &Page) -> Vec<(u16, u32, u16, u16)> {
        let mut out = Vec::new();
        while self.req_cons != p.load_u32(REQ_PROD) {
            let at = slot(self.req_cons, TX_SLOT);
            out.push((p.load_u16(at + 8), p.load_u32(at), p.load_u16(at + 4), p.load_u16(at + 10)));
            self.req_cons = self.req_cons.wrapping_add(1);
        }
        out
    }

    fn tx_respond(&mut self, p: &mut Page, id: u16, status: i16) {
        let at = slot(self.rsp_prod, TX_SLOT);
        p.store_u16(at, id);
        p.store_u16(at + 2, status as u16);
        self.rsp_prod = self.rsp_prod.wrapping_add(1);
        p.store_u32(RSP_PROD, self.rsp_prod);
    }

    fn take_rx(&mut self, p: &Page) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        while self.req_cons != p.load_u32(REQ_PROD) {
            let at = slot(self.req_cons, RX_SLOT);
            out.push((p.load_u16(at), p.load_u32(at + 4)));
            self.req_cons = self.req_cons.wrapping_add(1);
        }
        out
    }

    fn rx_respond(&mut self, p: &mut Page, id: u16, offset: u16, flags: u16, status: i16) {
        let at = slot(self.rsp_prod, RX_SLOT);
        p.store_u16(at, id);
        p.store_u16(at + 2, offset);
        p.store_u16(at + 4, flags);
        p.store_u16(at + 6, status as u16);
        self.rsp_prod = self.rsp_prod.wrapping_add(1);
        p.store_u32(RSP_PROD, self.rsp_prod);
    }
}

#[test]
fn tx_full_ring_out_of_order_and_wrap() {
    for start in [0, u32::MAX - 100] {
        let mut p = Page::new();
        let mut tx = Tx::new(&mut p, start, 256, 0);
        let mut back = Back::new(start);
        let mut sent = 0u64;
        let mut done = 0u64;
        for round in 0..20 {
            // Fill the ring completely.
            while let Some(id) = tx.take() {
                tx.post(&mut p, id, 100 + u32::from(id), 0, 60, 0);
                sent += 1;
            }
            assert_eq!(tx.available(), 0);
            assert_eq!(tx.front.free(), 0);
            tx.push(&mut p);
            let mut reqs = back.take_tx(&p);
            assert_eq!(reqs.len(), 256);
            assert!(reqs.iter().all(|&(id, gref, _, size)| gref == 100 + u32::from(id) && size == 60));
            // Answer in a scrambled order, some as dropped.
            reqs.reverse();
            reqs.rotate_left(round * 7 % 256);
            for (i, (id, ..)) in reqs.iter().enumerate() {
                back.tx_respond(&mut p, *id, if i % 50 == 0 { RSP_DROPPED } else { RSP_OKAY });
            }
            tx.reap(&p, |_| done += 1).unwrap();
            assert_eq!(tx.available(), 256);
        }
        assert_eq!(sent, done);
        assert_eq!(sent, 20 * 256);
    }
}

#[test]
fn tx_bad_responses() {
    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 256, 0);
    let mut back = Back::new(0);
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    tx.push(&mut p);
    back.take_tx(&p);
    back.tx_respond(&mut p, 300, RSP_OKAY);
    assert_eq!(tx.reap(&p, |_| {}).unwrap_err().to_string(), "tx ring: response with id 300 (ids are 0..256)");

    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 256, 0);
    let mut back = Back::new(0);
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    tx.push(&mut p);
    back.take_tx(&p);
    back.tx_respond(&mut p, id + 1, RSP_OKAY);
    assert!(tx.reap(&p, |_| {}).unwrap_err().to_string().contains("not in flight"));

    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 256, 0);
    let mut back = Back::new(0);
    back.tx_respond(&mut p, 0, RSP_OKAY);
    assert!(tx.reap(&p, |_| {}).unwrap_err().to_string().contains("1 responses with 0 requests outstanding"));

    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 256, 0);
    let mut back = Back::new(0);
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    tx.push(&mut p);
    back.take_tx(&p);
    back.tx_respond(&mut p, id, RSP_ERROR);
    assert!(tx.reap(&p, |_| {}).unwrap_err().to_string().contains("rejected frame"));
}

/// Raw TX request slots as the backend reads them: (gref, offset, flags, id, size), or for an
/// extra-info slot its first four u16s.
fn raw_tx(p: &Page, from: u32, n: u32) -> Vec<[u32; 5]> {
    (0..n)
        .map(|i| {
            let at = slot(from.wrapping_add(i), TX_SLOT);
            [
                p.load_u32(at),
                u32::from(p.load_u16(at + 4)),
                u32::from(p.load_u16(at + 6)),
                u32::from(p.load_u16(at + 8)),
                u32::from(p.load_u16(at + 10)),
            ]
        })
        .collect()
}

/// A 3-page TSO frame: the first slot carries the whole size and the flags, the GSO extra slot
/// follows it, the rest carry their own sizes with more_data on all but the last. The backend
/// answers the extra slot with RSP_NULL; every chained id comes back once, none into the pool.
#[test]
fn tx_chain_layout_and_responses() {
    for start in [0, u32::MAX - 1] {
        let mut p = Page::new();
        let mut tx = Tx::new(&mut p, start, 4, 16);
        let mut back = Back::new(start);
        let slots = [
            TxSlot { id: 4, gref: 40, offset: 0, len: 4096 },
            TxSlot { id: 5, gref: 41, offset: 0, len: 4096 },
            TxSlot { id: 6, gref: 42, offset: 0, len: 1000 },
        ];
        tx.post_chain(&mut p, &slots, TXF_CSUM_OFFLOAD, Some(1448)).unwrap();
        assert_eq!(tx.front.free(), RING_SIZE - 4);
        tx.push(&mut p);
        let raw = raw_tx(&p, start, 4);
        assert_eq!(raw[0], [40, 0, 1 | 2 | 4 | 8, 4, 9192]);
        // Extra info: type GSO (1), flags 0; size 1448; type TCPv4 (1); features 0.
        assert_eq!(p.load_u16(slot(start.wrapping_add(1), TX_SLOT)), 1);
        assert_eq!(p.load_u16(slot(start.wrapping_add(1), TX_SLOT) + 2), 1448);
        assert_eq!(p.load_u16(slot(start.wrapping_add(1), TX_SLOT) + 4), 1);
        assert_eq!(p.load_u16(slot(start.wrapping_add(1), TX_SLOT) + 6), 0);
        assert_eq!(raw[2], [41, 0, 4, 5, 4096]);
        assert_eq!(raw[3], [42, 0, 0, 6, 1000]);
        assert_eq!(back.take_tx(&p).len(), 4);
        back.tx_respond(&mut p, 4, RSP_OKAY);
        back.tx_respond(&mut p, 0xFFFF, RSP_NULL);
        back.tx_respond(&mut p, 5, RSP_OKAY);
        back.tx_respond(&mut p, 6, RSP_OKAY);
        let mut done = Vec::new();
        tx.reap(&p, |d| done.push(d.id)).unwrap();
        assert_eq!(done, [4, 5, 6]);
        assert_eq!(tx.front.free(), RING_SIZE);
        assert_eq!(tx.available(), 4, "chained ids never join the pool");
        // The same ids may go again once answered; a one-slot chain has no more_data.
        tx.post_chain(&mut p, &slots[..1], 0, None).unwrap();
        assert_eq!(raw_tx(&p, start.wrapping_add(4), 1)[0], [40, 0, 0, 4, 4096]);
    }
}

#[test]
fn tx_chain_refusals_write_nothing() {
    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 4, 40);
    let s = |id: u16, len: u16| TxSlot { id, gref: 1, offset: 0, len };
    let pooled = tx.take().unwrap();
    let cases: Vec<(Vec<TxSlot>, Option<u16>, &str)> = vec![
        (vec![], None, "a frame of 0 slots"),
        ((4..21).map(|i| s(i, 100)).collect(), None, "a frame of 17 slots"),
        (vec![s(4, 4096); 1].into_iter().chain((5..20).map(|i| s(i, 4096))).collect(), None, "65536 bytes"),
        (vec![TxSlot { offset: 4000, ..s(4, 200) }], None, "do not fit their pages"),
        (vec![s(4, 0)], None, "do not fit their pages"),
        (vec![s(pooled, 60)], None, "not a free chained id"),
        (vec![s(44, 60)], None, "not a free chained id"),
        (vec![s(4, 60)], Some(0), "segment size 0"),
    ];
    for (slots, mss, why) in cases {
        let err = tx.post_chain(&mut p, &slots, 0, mss).unwrap_err().to_string();
        assert!(err.contains(why), "{err:?} lacks {why:?}");
        assert_eq!(tx.front.free(), RING_SIZE, "{why}: something was queued");
    }
    tx.post_chain(&mut p, &[s(4, 60)], 0, None).unwrap();
    let err = tx.post_chain(&mut p, &[s(4, 60)], 0, None).unwrap_err().to_string();
    assert!(err.contains("not a free chained id"), "{err}");
    // A full ring refuses a chain it cannot hold whole.
    while let Some(id) = tx.take() {
        tx.post(&mut p, id, 9, 0, 60, 0);
    }
    let mut p2 = Page::new();
    let mut tx2 = Tx::new(&mut p2, 0, 256, 16);
    for _ in 0..254 {
        let id = tx2.take().unwrap();
        tx2.post(&mut p2, id, 9, 0, 60, 0);
    }
    let err = tx2.post_chain(&mut p2, &[s(256, 60), s(257, 60)], 0, Some(1448)).unwrap_err().to_string();
    assert!(err.contains("3 slots wanted, 2 free"), "{err}");
    tx2.post_chain(&mut p2, &[s(256, 60), s(257, 60)], 0, None).unwrap();
    assert_eq!(tx2.front.free(), 0);
}

#[test]
fn push_notifies_only_when_asked() {
    let mut p = Page::new();
    let mut tx = Tx::new(&mut p, 0, 256, 0);
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    // req_event = 1 after init: the first push crosses it.
    assert!(tx.push(&mut p));
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    // The backend has not re-armed: no notification.
    assert!(!tx.push(&mut p));
    p.store_u32(REQ_EVENT, 3);
    let id = tx.take().unwrap();
    tx.post(&mut p, id, 9, 0, 60, 0);
    assert!(tx.push(&mut p));
    // Arming sees an already produced response.
    assert!(!tx.front.arm(&mut p));
    p.store_u32(RSP_PROD, 1);
    assert!(tx.front.arm(&mut p));
    assert_eq!(p.load_u32(RSP_EVENT), 1);
}

#[test]
fn rx_repost_wrap_and_bad_responses() {
    for start in [0, u32::MAX - 3] {
        let mut p = Page::new();
        let mut rx = Rx::new(&mut p, start, 256, false);
        let mut back = Back::new(start);
        for id in 0..256u16 {
            rx.post(&mut p, id, 1000 + u32::from(id)).unwrap();
        }
        assert!(rx.post(&mut p, 0, 1).unwrap_err().to_string().contains("posted twice"));
        rx.push(&mut p);
        let mut got = 0;
        for _ in 0..10 {
            let posted = back.take_rx(&p);
            // Fill them out of order, one with an error status.
            for (i, (id, _)) in posted.iter().rev().enumerate() {
                back.rx_respond(&mut p, *id, 0, 0, if i == 3 { -1 } else { 1514 });
            }
            while let Some(r) = rx.next_packet(&p).unwrap() {
                assert_eq!(r.n_ids, 1);
                if r.ok {
                    assert_eq!((r.bytes(), r.data()[0].len), (1514, 1514));
                    got += 1;
                } else {
                    assert_eq!((r.bytes(), r.n_data), (0, 0));
                }
                rx.post(&mut p, r.ids[0], 1000 + u32::from(r.ids[0])).unwrap();
            }
            rx.push(&mut p);
        }
        assert_eq!(got, 10 * 255);
    }
    let mut p = Page::new();
    let mut rx = Rx::new(&mut p, 0, 256, false);
    let mut back = Back::new(0);
    rx.post(&mut p, 5, 1).unwrap();
    rx.push(&mut p);
    back.take_rx(&p);
    back.rx_respond(&mut p, 5, 4000, 0, 200);
    assert!(rx.next_packet(&p).unwrap_err().to_string().contains("overrun the page"));
    let mut p = Page::new();
    let mut rx = Rx::new(&mut p, 0, 256, false);
    let mut back = Back::new(0);
    rx.post(&mut p, 5, 1).unwrap();
    rx.push(&mut p);
    back.take_rx(&p);
    back.rx_respond(&mut p, 6, 0, 0, 200);
    assert!(rx.next_packet(&p).unwrap_err().to_string().contains("not posted"));
    let mut p = Page::new();
    let mut rx = Rx::new(&mut p, 0, 256, false);
    let mut back = Back::new(0);
    rx.post(&mut p, 5, 1).unwrap();
    rx.push(&mut p);
    back.take_rx(&p);
    back.rx_respond(&mut p, 5, 0, RXF_MORE_DATA, 200);
    assert!(rx.next_packet(&p).unwrap_err().to_string().contains("multi-slot"));
}

/// Responses as netback writes a GSO packet: data slot (more_data | extra_info), the extra
/// slot (GSO, size), more data slots; the frontend sees nothing until the last is there.
#[test]
fn rx_gso_packet_across_slots() {
    for start in [0, u32::MAX - 2] {
        let mut p = Page::new();
        let mut rx = Rx::new(&mut p, start, 256, true);
        let mut back = Back::new(start);
        for id in 0..8u16 {
            rx.post(&mut p, id * 3, u32::from(id)).unwrap();
        }
        rx.push(&mut p);
        let posted = back.take_rx(&p);
        assert_eq!(posted.len(), 8);
        let first = RXF_MORE_DATA | RXF_EXTRA_INFO | RXF_DATA_VALIDATED | RXF_CSUM_BLANK;
        back.rx_respond(&mut p, posted[0].0, 0, first, 4096);
        // The extra slot: type GSO (1), flags 0; gso size 1448, type TCPv4.
        let at = slot(back.rsp_prod, RX_SLOT);
        p.store_u16(at, 1);
        p.store_u16(at + 2, 1448);
        p.store_u16(at + 4, 1);
        back.rsp_prod = back.rsp_prod.wrapping_add(1);
        p.store_u32(RSP_PROD, back.rsp_prod);
        back.rx_respond(&mut p, posted[2].0, 0, RXF_MORE_DATA, 4096);
        assert_eq!(rx.next_packet(&p).unwrap(), None, "a packet is taken only whole");
        back.rx_respond(&mut p, posted[3].0, 0, 0, 700);
        let pkt = rx.next_packet(&p).unwrap().expect("the whole packet");
        assert!(pkt.ok);
        assert_eq!(pkt.ids(), [0, 3, 6, 9]);
        assert_eq!(pkt.data().iter().map(|f| (f.id, f.len)).collect::<Vec<_>>(), [(0, 4096), (6, 4096), (9, 700)]);
        assert_eq!((pkt.bytes(), pkt.gso_size, pkt.flags), (8892, 1448, first));
        assert_eq!(rx.next_packet(&p).unwrap(), None);
        // The ids may be posted again; an error status in a chain drops the packet whole.
        for &id in pkt.ids() {
            rx.post(&mut p, id, 1).unwrap();
        }
        back.rx_respond(&mut p, posted[4].0, 0, RXF_MORE_DATA, 4096);
        back.rx_respond(&mut p, posted[5].0, 0, 0, -1i16);
        let bad = rx.next_packet(&p).unwrap().unwrap();
        assert!(!bad.ok);
        assert_eq!((bad.ids(), bad.n_data, bad.bytes()), (&[12u16, 15][..], 0, 0));
    }
}

#[test]
fn rx_chain_refusals() {
    let setup = || {
        let mut p = Page::new();
        let mut rx = Rx::new(&mut p, 0, 256, true);
        let mut back = Back::new(0);
        for id in 0..30u16 {
            rx.post(&mut p, id, 1).unwrap();
        }
        rx.push(&mut p);
        back.take_rx(&p);
        (p, rx, back)
    };
    // Longer than any packet can be.
    let (mut p, mut rx, mut back) = setup();
    for id in 0..21u16 {
        back.rx_respond(&mut p, id, 0, RXF_MORE_DATA, 100);
    }
    let err = rx.next_packet(&p).unwrap_err().to_string();
    assert!(err.contains("more than 20 responses"), "{err}");
    // The same id twice in one packet.
    let (mut p, mut rx, mut back) = setup();
    back.rx_respond(&mut p, 4, 0, RXF_MORE_DATA, 100);
    back.rx_respond(&mut p, 4, 0, 0, 100);
    let err = rx.next_packet(&p).unwrap_err().to_string();
    assert!(err.contains("id 4, which is not posted"), "{err}");
    // An id out of range in the middle of a chain.
    let (mut p, mut rx, mut back) = setup();
    back.rx_respond(&mut p, 1, 0, RXF_MORE_DATA, 100);
    back.rx_respond(&mut p, 999, 0, 0, 100);
    let err = rx.next_packet(&p).unwrap_err().to_string();
    assert!(err.contains("id 999 (ids are 0..256)"), "{err}");
    // A later slot overrunning its page.
    let (mut p, mut rx, mut back) = setup();
    back.rx_respond(&mut p, 1, 0, RXF_MORE_DATA, 100);
    back.rx_respond(&mut p, 2, 100, 0, 4000);
    let err = rx.next_packet(&p).unwrap_err().to_string();
    assert!(err.contains("overrun the page"), "{err}");
}
