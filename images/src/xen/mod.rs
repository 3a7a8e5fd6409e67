//! Running as a Xen PVH domU: hypercalls, shared info (event-channel bits, pvclock, wall
//! clock), the PV console ring, shutdown with a status, xenstore, grant tables and netfront.
//! Nothing here runs unless CPUID says Xen ([`init`]); the QEMU paths never touch it.
//!
//! Layouts follow Xen's public headers (`xen.h`, `io/console.h`, `io/xs_wire.h`,
//! `io/netif.h`, `io/ring.h`, `grant_table.h`); the wire logic that can be tested on the host
//! (xenstore messages, netif rings) lives in `netstack::xen`.

pub mod console;
pub mod grant;
pub mod hypercall;
pub mod netfront;
pub mod store;

use crate::cpu::{Hypervisor, HypervisorKind};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use hypercall::Page;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static VERSION: AtomicU32 = AtomicU32::new(0);

/// The shared-info page: Xen's frame is mapped over this one.
static mut SHARED_INFO: Page = Page([0; 4096]);

/// Offsets in `struct shared_info` (x86_64): vcpu_info[32] of 64 bytes each, then the
/// event-channel bitmaps, then the wall clock.
const VCPU0_TIME: usize = 32;
const EVTCHN_PENDING: usize = 2048;
const WC_VERSION: usize = 3072;
const WC_SEC: usize = 3076;
const WC_NSEC: usize = 3080;
const WC_SEC_HI: usize = 3084;

/// Whether [`init`] found Xen and set it up.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Xen's version as (major, minor).
pub fn version() -> (u32, u32) {
    let v = VERSION.load(Ordering::Relaxed);
    (v >> 16, v & 0xFFFF)
}

/// On Xen: installs the hypercall page, checks `xen_version`, maps shared info and opens the
/// PV console. Needs no heap. Returns an error when CPUID says Xen but the set-up fails
/// (the console then stays on port 0xE9).
pub fn init(hv: &Hypervisor) -> Result<bool, &'static str> {
    if hv.kind != HypervisorKind::Xen {
        return Ok(false);
    }
    if !hypercall::install(hv.base) {
        return Err("Xen did not fill in the hypercall page");
    }
    // SAFETY: XENVER_version takes no argument.
    let v = unsafe { hypercall::call(hypercall::XEN_VERSION, hypercall::XENVER_VERSION, 0, 0) };
    if v <= 0 || (v >> 16) < 4 {
        return Err("xen_version: not a Xen 4.x hypervisor");
    }
    VERSION.store(v as u32, Ordering::Relaxed);
    let si = &raw mut SHARED_INFO as u64;
    if hypercall::add_to_physmap(hypercall::XENMAPSPACE_SHARED_INFO, 0, si) != 0 {
        return Err("XENMEM_add_to_physmap(shared_info) failed");
    }
    ACTIVE.store(true, Ordering::Release);
    console::init();
    Ok(true)
}

fn si_ptr(off: usize) -> *mut u8 {
    (&raw mut SHARED_INFO as *mut u8).wrapping_add(off)
}

fn si_u32(off: usize) -> u32 {
    // SAFETY: an aligned offset inside the shared-info page, which Xen updates concurrently.
    unsafe { read_volatile(si_ptr(off) as *const u32) }
}

fn si_u64(off: usize) -> u64 {
    // SAFETY: as above.
    unsafe { read_volatile(si_ptr(off) as *const u64) }
}

/// Xen system time in nanoseconds (since the host booted) from vCPU 0's `vcpu_time_info`:
/// `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`, re-read while Xen updates.
pub fn system_time_ns() -> u64 {
    loop {
        let version = si_u32(VCPU0_TIME);
        fence(Ordering::Acquire);
        let tsc_stamp = si_u64(VCPU0_TIME + 8);
        let system = si_u64(VCPU0_TIME + 16);
        let mul = si_u32(VCPU0_TIME + 24);
        // SAFETY: as in `si_u32`.
        let shift = unsafe { read_volatile(si_ptr(VCPU0_TIME + 28) as *const i8) };
        let tsc = crate::clock::ticks();
        fence(Ordering::Acquire);
        if version & 1 != 0 || version != si_u32(VCPU0_TIME) {
            core::hint::spin_loop();
            continue;
        }
        let mut delta = tsc.wrapping_sub(tsc_stamp);
        if delta > (1 << 63) {
            delta = 0; // a TSC read just before Xen's stamp
        }
        delta = if shift >= 0 { delta << shift } else { delta >> -shift };
        return system + ((u128::from(delta) * u128::from(mul)) >> 32) as u64;
    }
}

/// The TSC frequency pvclock implies: 2^32 * 10^9 / mul, corrected for the shift.
pub fn pvclock_tsc_hz() -> u64 {
    let mul = u128::from(si_u32(VCPU0_TIME + 24).max(1));
    // SAFETY: as in `si_u32`.
    let shift = unsafe { read_volatile(si_ptr(VCPU0_TIME + 28) as *const i8) };
    let hz = (1u128 << 32) * 1_000_000_000 / mul;
    (if shift >= 0 { hz >> shift } else { hz << -shift }) as u64
}

/// The Unix time now, from shared info's wall clock (the Unix time at Xen system time 0) plus
/// the system time; None when Xen left the wall clock at zero.
pub fn unix_time() -> Option<u64> {
    for _ in 0..1000 {
        let v = si_u32(WC_VERSION);
        fence(Ordering::Acquire);
        let sec = u64::from(si_u32(WC_SEC)) | (u64::from(si_u32(WC_SEC_HI)) << 32);
        let nsec = u64::from(si_u32(WC_NSEC));
        fence(Ordering::Acquire);
        if v & 1 != 0 || v != si_u32(WC_VERSION) {
            continue;
        }
        if sec == 0 {
            return None;
        }
        return Some(sec + (nsec + system_time_ns()) / 1_000_000_000);
    }
    None
}

/// Clears `port`'s pending bit in shared info.
pub fn clear_pending(port: u32) {
    let word = si_ptr(EVTCHN_PENDING + (port as usize / 64) * 8) as *const core::sync::atomic::AtomicU64;
    // SAFETY: an aligned word of the pending bitmap; Xen sets bits with locked operations.
    unsafe { (*word).fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst) };
}

/// Ends the domain: prints the status line the launcher reads, then SCHEDOP_shutdown
/// (poweroff for statuses 0 and 1, crash for 2).
pub fn shutdown(code: u8) -> ! {
    crate::println!("uniperf: exit status {code}");
    console::drain(2_000_000_000);
    let reason = if code == crate::exit::CRASH { hypercall::SHUTDOWN_CRASH } else { hypercall::SHUTDOWN_POWEROFF };
    hypercall::shutdown(reason);
    crate::exit::halt()
}

/// Idles until an event on one of the ports the drivers registered, or for `max_us`: the
/// vCPU blocks in Xen (SCHEDOP_poll), so dom0 and the backend get the CPU meanwhile.
pub fn idle(max_us: u64) {
    let mut ports = [0u32; 2];
    let n = netfront::arm_idle(&mut ports);
    if n == usize::MAX {
        return; // the rings have work already
    }
    let deadline = system_time_ns() + max_us * 1000;
    hypercall::poll(&ports[..n], deadline);
    IDLE_POLLS.fetch_add(1, Ordering::Relaxed);
    if system_time_ns() >= deadline {
        IDLE_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Idle blocks so far, and how many of them ran to their deadline (no event came).
static IDLE_POLLS: AtomicU64 = AtomicU64::new(0);
static IDLE_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

pub fn idle_stats() -> (u64, u64) {
    (IDLE_POLLS.load(Ordering::Relaxed), IDLE_TIMEOUTS.load(Ordering::Relaxed))
}

/// A shared page at a guest physical address (identity-mapped below 4 GiB).
pub fn page_at(pfn: u64) -> Option<*mut u8> {
    let addr = pfn.checked_mul(4096)?;
    (pfn != 0 && addr < (1 << 32)).then_some(addr as *mut u8)
}

/// Volatile helpers for shared pages.
pub fn load_u32(base: *mut u8, off: usize) -> u32 {
    // SAFETY: callers pass a live shared page and an aligned offset inside it.
    unsafe { read_volatile(base.add(off) as *const u32) }
}

pub fn store_u32(base: *mut u8, off: usize, v: u32) {
    // SAFETY: as above.
    unsafe { write_volatile(base.add(off) as *mut u32, v) }
}
