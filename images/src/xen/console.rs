//! The PV console (`io/console.h`): a 2 KiB output ring in the page HVM_PARAM_CONSOLE_PFN
//! names, drained by xenconsoled (`xl console`, `xl create -c`, its log). Writes are stateless
//! (atomics only) so the panic and exception handlers can use them too.

use super::{hypercall, load_u32, store_u32};
use core::ptr::write_volatile;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

const OUT: usize = 1024;
const OUT_SIZE: u32 = 2048;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;
/// How long a write waits for xenconsoled to make room before the console is given up on.
const FULL_WAIT_NS: u64 = 2_000_000_000;

static RING: AtomicU64 = AtomicU64::new(0);
static PORT: AtomicU32 = AtomicU32::new(0);

/// Finds the ring; without one (no console configured) output goes to port 0xE9 only.
pub fn init() {
    let Ok(pfn) = hypercall::hvm_get_param(hypercall::HVM_PARAM_CONSOLE_PFN) else { return };
    let Ok(port) = hypercall::hvm_get_param(hypercall::HVM_PARAM_CONSOLE_EVTCHN) else { return };
    let Some(page) = super::page_at(pfn) else { return };
    PORT.store(port as u32, Ordering::Relaxed);
    RING.store(page as u64, Ordering::Release);
}

pub fn present() -> bool {
    RING.load(Ordering::Relaxed) != 0
}

/// The ring's guest address and event channel, for the boot log.
pub fn describe() -> (u64, u32) {
    (RING.load(Ordering::Relaxed), PORT.load(Ordering::Relaxed))
}

/// Copies `bytes` into the ring (`\n` as `\r\n`), notifying xenconsoled after each chunk.
/// Returns false if there is no ring or it stayed full (the console is then dropped).
pub fn write(bytes: &[u8]) -> bool {
    let base = RING.load(Ordering::Acquire) as *mut u8;
    if base.is_null() {
        return false;
    }
    let port = PORT.load(Ordering::Relaxed);
    let mut prod = load_u32(base, OUT_PROD);
    let mut since_wait: Option<u64> = None;
    let expanded = bytes.iter().flat_map(|b| if *b == b'\n' { &b"\r\n"[..] } else { core::slice::from_ref(b) });
    for b in expanded {
        loop {
            let cons = load_u32(base, OUT_CONS);
            if prod.wrapping_sub(cons) < OUT_SIZE {
                break;
            }
            fence(Ordering::Release);
            store_u32(base, OUT_PROD, prod);
            hypercall::evtchn_send(port);
            let now = super::system_time_ns();
            match since_wait {
                None => since_wait = Some(now),
                Some(t) if now - t > FULL_WAIT_NS => {
                    RING.store(0, Ordering::Relaxed);
                    return false;
                }
                Some(_) => {
                    hypercall::poll(&[port], now + 1_000_000);
                }
            }
        }
        // SAFETY: inside the ring's output array (index masked).
        unsafe { write_volatile(base.add(OUT + (prod % OUT_SIZE) as usize), *b) };
        prod = prod.wrapping_add(1);
    }
    fence(Ordering::Release);
    store_u32(base, OUT_PROD, prod);
    hypercall::evtchn_send(port);
    true
}

/// Waits (at most `max_ns`) until xenconsoled has read everything written, so the last lines
/// (the exit status) are not lost when the domain is destroyed right after shutting down.
pub fn drain(max_ns: u64) {
    let base = RING.load(Ordering::Acquire) as *mut u8;
    if base.is_null() {
        return;
    }
    let port = PORT.load(Ordering::Relaxed);
    let until = super::system_time_ns() + max_ns;
    loop {
        fence(Ordering::SeqCst);
        if load_u32(base, OUT_CONS) == load_u32(base, OUT_PROD) {
            return;
        }
        let now = super::system_time_ns();
        if now >= until {
            return;
        }
        hypercall::evtchn_send(port);
        hypercall::poll(&[port], (now + 1_000_000).min(until));
    }
}
