//! The client against an in-process xenstored model sharing the ring "page".

use super::*;
use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::vec;

/// What the model does wrong on purpose.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    BadLength,
    UnknownType,
    WrongId,
    RunAway,
    Silent,
}

struct Model {
    req: [u8; 1024],
    rsp: [u8; 1024],
    req_cons: u32,
    req_prod: u32,
    rsp_cons: u32,
    rsp_prod: u32,
    /// Bytes the server moves per wait() in each direction (small: forces partial reads).
    step: usize,
    tree: BTreeMap<String, String>,
    pending_in: Vec<u8>,
    pending_out: VecDeque<u8>,
    watches: Vec<(String, String)>,
    next_tx: u32,
    eagain_once: bool,
    fault: Fault,
    waits: u32,
    notifies: u32,
}

impl Model {
    fn new(start: u32, step: usize) -> Model {
        Model {
            req: [0; 1024],
            rsp: [0; 1024],
            req_cons: start,
            req_prod: start,
            rsp_cons: start,
            rsp_prod: start,
            step,
            tree: BTreeMap::new(),
            pending_in: Vec::new(),
            pending_out: VecDeque::new(),
            watches: Vec::new(),
            next_tx: 7,
            eagain_once: false,
            fault: Fault::None,
            waits: 0,
            notifies: 0,
        }
    }

    fn reply(&mut self, ty: u32, id: u32, tx: u32, payload: &[u8]) {
        let h = Header { ty, req_id: id, tx_id: tx, len: payload.len() as u32 };
        self.pending_out.extend(h.encode());
        self.pending_out.extend(payload);
    }

    fn fire(&mut self, changed: &str) {
        let hits: Vec<(String, String)> =
            self.watches.iter().filter(|(p, _)| changed.starts_with(p.as_str())).cloned().collect();
        for (_, token) in hits {
            let mut p = changed.as_bytes().to_vec();
            p.push(0);
            p.extend(token.as_bytes());
            p.push(0);
            self.reply(msg::WATCH_EVENT, 0, 0, &p);
        }
    }

    fn handle(&mut self, h: Header, payload: Vec<u8>) {
        let parts: Vec<String> = payload.split(|&b| b == 0).map(|s| String::from_utf8(s.to_vec()).unwrap()).collect();
        let (id, tx) = (h.req_id, h.tx_id);
        let (id, ty) = match self.fault {
            Fault::WrongId => (id + 100, h.ty),
            Fault::UnknownType => (id, 99),
            _ => (id, h.ty),
        };
        match h.ty {
            msg::READ => match self.tree.get(&parts[0]).cloned() {
                Some(v) => self.reply(ty, id, tx, v.as_bytes()),
                None => self.reply(msg::ERROR, id, tx, b"ENOENT\0"),
            },
            msg::WRITE => {
                let value = String::from_utf8(payload[parts[0].len() + 1..].to_vec()).unwrap();
                self.tree.insert(parts[0].clone(), value);
                self.reply(ty, id, tx, b"OK\0");
                let p = parts[0].clone();
                self.fire(&p);
            }
            msg::DIRECTORY => {
                let prefix = alloc::format!("{}/", parts[0]);
                let mut out = Vec::new();
                for k in self.tree.keys().filter(|k| k.starts_with(&prefix)) {
                    let rest = &k[prefix.len()..];
                    if !rest.contains('/') {
                        out.extend(rest.as_bytes());
                        out.push(0);
                    }
                }
                self.reply(ty, id, tx, &out);
            }
            msg::WATCH => {
                self.watches.push((parts[0].clone(), parts[1].clone()));
                self.reply(ty, id, tx, b"OK\0");
                let p = parts[0].clone();
                self.fire(&p);
            }
            msg::TRANSACTION_START => {
                let t = self.next_tx.to_string();
                self.next_tx += 1;
                let mut p = t.into_bytes();
                p.push(0);
                self.reply(ty, id, tx, &p);
            }
            msg::TRANSACTION_END if self.eagain_once => {
                self.eagain_once = false;
                self.reply(msg::ERROR, id, tx, b"EAGAIN\0");
            }
            _ => self.reply(ty, id, tx, b"OK\0"),
        }
        if self.fault == Fault::BadLength {
            // Rewrite the last reply's length field to 5000.
            let out: Vec<u8> = self.pending_out.drain(..).collect();
            let mut hdr = Header::decode(out[..16].try_into().unwrap());
            hdr.len = 5000;
            self.pending_out.extend(hdr.encode());
            self.pending_out.extend(&out[16..]);
        }
    }

    /// One server step: take up to `step` request bytes, handle whole messages, put up to
    /// `step` reply bytes.
    fn serve(&mut self) {
        if self.fault == Fault::Silent {
            return;
        }
        for _ in 0..self.step {
            if self.req_cons == self.req_prod {
                break;
            }
            self.pending_in.push(self.req[(self.req_cons % 1024) as usize]);
            self.req_cons = self.req_cons.wrapping_add(1);
        }
        while self.pending_in.len() >= HEADER_LEN {
            let h = Header::decode(self.pending_in[..16].try_into().unwrap());
            if self.pending_in.len() < HEADER_LEN + h.len as usize {
                break;
            }
            let payload = self.pending_in[16..16 + h.len as usize].to_vec();
            self.pending_in.drain(..16 + h.len as usize);
            self.handle(h, payload);
        }
        if self.fault == Fault::RunAway {
            self.rsp_prod = self.rsp_cons.wrapping_add(5000);
            return;
        }
        for _ in 0..self.step {
            if self.rsp_prod.wrapping_sub(self.rsp_cons) >= 1024 {
                break;
            }
            let Some(b) = self.pending_out.pop_front() else { break };
            self.rsp[(self.rsp_prod % 1024) as usize] = b;
            self.rsp_prod = self.rsp_prod.wrapping_add(1);
        }
    }
}

impl Ring for Model {
    fn req_cons(&self) -> u32 {
        self.req_cons
    }
    fn req_prod(&self) -> u32 {
        self.req_prod
    }
    fn set_req_prod(&mut self, v: u32) {
        self.req_prod = v;
    }
    fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }
    fn rsp_prod(&self) -> u32 {
        self.rsp_prod
    }
    fn set_rsp_cons(&mut self, v: u32) {
        self.rsp_cons = v;
    }
    fn write_req(&mut self, at: usize, bytes: &[u8]) {
        self.req[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn read_rsp(&self, at: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.rsp[at..at + out.len()]);
    }
    fn notify(&mut self) {
        self.notifies += 1;
    }
    fn wait(&mut self) -> bool {
        self.waits += 1;
        if self.waits > 100_000 {
            return false;
        }
        self.serve();
        true
    }
}

fn client(start: u32, step: usize) -> Client<Model> {
    Client::new(Model::new(start, step))
}

#[test]
fn read_write_directory() {
    let mut c = client(0, 1024);
    c.write(0, "device/vif/0/state", "1").unwrap();
    c.write(0, "device/vif/0/mac", "00:16:3e:00:00:02").unwrap();
    assert_eq!(c.read(0, "device/vif/0/mac").unwrap(), "00:16:3e:00:00:02");
    assert_eq!(c.directory(0, "device/vif/0").unwrap(), vec!["mac".to_string(), "state".to_string()]);
    assert_eq!(c.directory(0, "nothing").unwrap(), Vec::<String>::new());
    assert_eq!(c.read(0, "device/vif/9/mac"), Err(Error::Xenstore("ENOENT".into())));
    // An XS_ERROR reply is not fatal: the next request works.
    assert_eq!(c.read(0, "device/vif/0/state").unwrap(), "1");
}

#[test]
fn ring_wraps_around_u32_and_the_page() {
    // Indices start just below u32::MAX and the server moves 7 bytes at a time, so headers
    // and payloads straddle both the page end and the index wrap.
    let mut c = client(u32::MAX - 20, 7);
    let long = "x".repeat(3000);
    for i in 0..20 {
        let path = alloc::format!("data/{i}");
        c.write(0, &path, &long).unwrap();
        assert_eq!(c.read(0, &path).unwrap(), long);
    }
    assert!(c.ring().req_prod < 100_000, "indices wrapped");
}

#[test]
fn watches_and_transactions() {
    let mut c = client(0, 64);
    c.write(0, "backend/vif/1/0/state", "2").unwrap();
    c.watch("backend/vif/1/0/state", "be").unwrap();
    // The initial firing, then one per write (queued while other replies were read).
    assert_eq!(c.wait_event().unwrap(), WatchEvent { path: "backend/vif/1/0/state".into(), token: "be".into() });
    c.write(0, "backend/vif/1/0/state", "4").unwrap();
    assert_eq!(c.wait_event().unwrap().token, "be");
    let tx = c.transaction_start().unwrap();
    assert_eq!(tx, 7);
    c.write(tx, "device/vif/0/tx-ring-ref", "8").unwrap();
    c.transaction_end(tx, true).unwrap();
    c.ring().eagain_once = true;
    let tx = c.transaction_start().unwrap();
    assert_eq!(c.transaction_end(tx, true), Err(Error::Xenstore("EAGAIN".into())));
    let tx = c.transaction_start().unwrap();
    c.transaction_end(tx, true).unwrap();
}

fn broken_with(fault: Fault) -> (Error, Error) {
    let mut c = client(100, 1024);
    c.write(0, "a", "1").unwrap();
    c.ring().fault = fault;
    let first = c.read(0, "a").unwrap_err();
    c.ring().fault = Fault::None;
    // Once the stream is broken every later request gets the same error at once.
    let second = c.read(0, "a").unwrap_err();
    (first, second)
}

#[test]
fn malformed_replies_are_errors() {
    for (fault, want) in [
        (Fault::BadLength, "reply length 5000"),
        (Fault::UnknownType, "unknown type 99"),
        (Fault::WrongId, "reply to request 102 while waiting for 2"),
        (Fault::RunAway, "response ring indices 5000 bytes apart"),
        (Fault::Silent, "timed out waiting for a reply"),
    ] {
        let (first, second) = broken_with(fault);
        assert!(first.to_string().contains(want), "{fault:?}: {first}");
        assert_eq!(first, second);
    }
}

#[test]
fn requests_that_cannot_be_sent() {
    let mut c = client(0, 1024);
    let huge = "y".repeat(5000);
    assert!(matches!(c.write(0, "p", &huge), Err(Error::Request(_))));
    assert!(matches!(c.read(0, "a\0b"), Err(Error::Request(_))));
    // Still usable.
    c.write(0, "p", "ok").unwrap();
}

#[test]
fn header_round_trip_and_split() {
    let h = Header { ty: 2, req_id: 9, tx_id: 3, len: 17 };
    assert_eq!(Header::decode(&h.encode()), h);
    assert_eq!(split_nul(b"a\0bc\0").unwrap(), vec!["a".to_string(), "bc".to_string()]);
    assert!(split_nul(b"\xff\0").is_err());
}
