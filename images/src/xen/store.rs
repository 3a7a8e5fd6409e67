//! The xenstore ring page (HVM_PARAM_STORE_PFN / STORE_EVTCHN) behind
//! `netstack::xen::xenstore::Ring`; waiting blocks in Xen on the store's event channel.

use super::{hypercall, load_u32, store_u32};
use alloc::string::String;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{Ordering, fence};
use netstack::xen::xenstore::{Client, Ring};

const REQ: usize = 0;
const RSP: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

pub struct StoreRing {
    page: *mut u8,
    port: u32,
    /// Xen system time after which `wait` gives up.
    deadline_ns: u64,
}

impl StoreRing {
    /// Gives every operation from now on `secs` seconds in all.
    pub fn set_deadline(&mut self, secs: u64) {
        self.deadline_ns = super::system_time_ns() + secs * 1_000_000_000;
    }
}

impl StoreRing {
    /// Whether xenstored has written something not yet read (a watch event).
    pub fn has_reply(&self) -> bool {
        load_u32(self.page, RSP_PROD) != load_u32(self.page, RSP_CONS)
    }
}

impl Ring for StoreRing {
    fn req_cons(&self) -> u32 {
        let v = load_u32(self.page, REQ_CONS);
        fence(Ordering::Acquire);
        v
    }
    fn req_prod(&self) -> u32 {
        load_u32(self.page, REQ_PROD)
    }
    fn set_req_prod(&mut self, v: u32) {
        fence(Ordering::Release);
        store_u32(self.page, REQ_PROD, v);
    }
    fn rsp_cons(&self) -> u32 {
        load_u32(self.page, RSP_CONS)
    }
    fn rsp_prod(&self) -> u32 {
        let v = load_u32(self.page, RSP_PROD);
        fence(Ordering::Acquire);
        v
    }
    fn set_rsp_cons(&mut self, v: u32) {
        fence(Ordering::SeqCst);
        store_u32(self.page, RSP_CONS, v);
    }
    fn write_req(&mut self, at: usize, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: at + len <= 1024 (the trait's contract), inside the request ring.
            unsafe { write_volatile(self.page.add(REQ + at + i), b) };
        }
    }
    fn read_rsp(&self, at: usize, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: as above, inside the response ring.
            *b = unsafe { read_volatile(self.page.add(RSP + at + i)) };
        }
    }
    fn notify(&mut self) {
        fence(Ordering::SeqCst);
        hypercall::evtchn_send(self.port);
    }
    fn wait(&mut self) -> bool {
        let now = super::system_time_ns();
        if now >= self.deadline_ns {
            return false;
        }
        super::clear_pending(self.port);
        // Anything that arrived before the pending bit was cleared is seen by the caller's
        // re-check of the indices; anything after sets the bit and ends the poll at once.
        hypercall::poll(&[self.port], (now + 1_000_000).min(self.deadline_ns));
        true
    }
}

/// Connects to xenstore.
pub fn open() -> Result<Client<StoreRing>, String> {
    let pfn = hypercall::hvm_get_param(hypercall::HVM_PARAM_STORE_PFN)
        .map_err(|e| alloc::format!("HVM_PARAM_STORE_PFN: error {e}"))?;
    let port = hypercall::hvm_get_param(hypercall::HVM_PARAM_STORE_EVTCHN)
        .map_err(|e| alloc::format!("HVM_PARAM_STORE_EVTCHN: error {e}"))?;
    if pfn == 0 {
        return Err(alloc::string::String::from("no xenstore: HVM_PARAM_STORE_PFN is 0 (a dom0 has none of its own)"));
    }
    let page = super::page_at(pfn).ok_or_else(|| alloc::format!("xenstore page at pfn {pfn:#x} is not below 4 GiB"))?;
    let mut ring = StoreRing { page, port: port as u32, deadline_ns: 0 };
    ring.set_deadline(10);
    Ok(Client::new(ring))
}
