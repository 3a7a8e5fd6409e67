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

/// Offsets in `struct shared_info` (x86_64): vcpu_info[32] of 64 bytes each (vCPU 0's:
/// `evtchn_upcall_pending` u8, `evtchn_upcall_mask` u8, `evtchn_pending_sel` at 8, the time
/// at 32), then the event-channel bitmaps, then the wall clock.
const VCPU0_UPCALL_PENDING: usize = 0;
const VCPU0_UPCALL_MASK: usize = 1;
const VCPU0_PENDING_SEL: usize = 8;
const VCPU0_TIME: usize = 32;
const EVTCHN_PENDING: usize = 2048;
const EVTCHN_MASK: usize = 2560;
const WC_VERSION: usize = 3072;
const WC_SEC: usize = 3076;
const WC_NSEC: usize = 3080;
const WC_SEC_HI: usize = 3084;

static DOM0: AtomicBool = AtomicBool::new(false);

/// Records that Xen started the image as its dom0 (`SIF_INITDOMAIN` in the start info).
pub fn set_dom0(dom0: bool) {
    DOM0.store(dom0, Ordering::Relaxed);
}

/// Whether the image runs as Xen's dom0 (no xenstore to read, no netback to connect to).
pub fn dom0() -> bool {
    DOM0.load(Ordering::Relaxed)
}

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
    setup_upcall();
    Ok(true)
}

/// The event channel VIRQ_TIMER is bound to when events arrive as [`crate::apic::XEN_VECTOR`]
/// (0: no upcall, the idle wait blocks in SCHEDOP_poll instead).
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
/// Why the upcall could not be set up (for the idle-mode line), if it could not.
static UPCALL_ERROR: AtomicU64 = AtomicU64::new(0);
/// Upcalls taken (the vector's interrupts).
static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Binds VIRQ_TIMER to a port and asks Xen to signal events with [`crate::apic::XEN_VECTOR`]
/// (`HVM_PARAM_CALLBACK_IRQ`, vector type). Interrupts stay off except inside the idle wait's
/// `sti; hlt`, so the vector only ever ends a halt.
fn setup_upcall() {
    let port = match hypercall::evtchn_bind_virq(hypercall::VIRQ_TIMER) {
        Ok(p) if p != 0 => p,
        Ok(_) => return UPCALL_ERROR.store(1, Ordering::Relaxed),
        Err(e) => return UPCALL_ERROR.store(e.unsigned_abs() << 8 | 2, Ordering::Relaxed),
    };
    let via = hypercall::CALLBACK_VIA_VECTOR << 56 | u64::from(crate::apic::XEN_VECTOR);
    let rc = hypercall::hvm_set_param(hypercall::HVM_PARAM_CALLBACK_IRQ, via);
    if rc != 0 {
        return UPCALL_ERROR.store(rc.unsigned_abs() << 8 | 3, Ordering::Relaxed);
    }
    unmask(port);
    // SAFETY: vCPU 0's upcall mask byte in shared info; 0 lets Xen raise the upcall.
    unsafe { write_volatile(si_ptr(VCPU0_UPCALL_MASK), 0u8) };
    TIMER_PORT.store(port, Ordering::Release);
}

/// How the idle wait waits on Xen, for the console's idle-mode line.
pub fn idle_mode() -> alloc::string::String {
    let port = TIMER_PORT.load(Ordering::Acquire);
    if port != 0 {
        return alloc::format!(
            "Xen event-channel upcall on vector {:#x} (VIRQ_TIMER on port {port} for deadlines; hlt when idle)",
            crate::apic::XEN_VECTOR
        );
    }
    let e = UPCALL_ERROR.load(Ordering::Relaxed);
    let why = match e & 0xFF {
        1 => alloc::string::String::from("EVTCHNOP_bind_virq(VIRQ_TIMER) gave port 0"),
        2 => alloc::format!("EVTCHNOP_bind_virq(VIRQ_TIMER): error -{}", e >> 8),
        3 => alloc::format!("HVMOP_set_param(CALLBACK_IRQ): error -{}", e >> 8),
        _ => alloc::string::String::from("not set up"),
    };
    alloc::format!("Xen event channel, blocking in SCHEDOP_poll when idle (no upcall vector: {why})")
}

/// The upcall vector's handler (interrupts off): clears vCPU 0's `evtchn_upcall_pending`,
/// which Xen injects the vector for as long as it is set. The idle loop looks at the rings.
pub fn upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: vCPU 0's upcall-pending byte in shared info.
    unsafe { write_volatile(si_ptr(VCPU0_UPCALL_PENDING), 0u8) };
}

/// Clears `port`'s mask bit, so its events raise the upcall.
fn unmask(port: u32) {
    let word = si_ptr(EVTCHN_MASK + (port as usize / 64) * 8) as *const core::sync::atomic::AtomicU64;
    // SAFETY: an aligned word of the mask bitmap.
    unsafe { (*word).fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst) };
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
/// vCPU halts (woken by the upcall vector: a NIC event or the VIRQ_TIMER deadline) or, without
/// the upcall, blocks in SCHEDOP_poll; either way dom0 and the backend get the CPU meanwhile.
pub fn idle(max_us: u64) {
    let timer = TIMER_PORT.load(Ordering::Relaxed);
    if timer != 0 {
        // Xen raises the upcall only when a port's pending bit, its selector bit and the
        // upcall-pending byte each go from 0 to 1: clear all three before looking at the
        // rings, so that whatever arrives after the look ends the halt.
        // SAFETY: vCPU 0's upcall-pending byte and pending selector in shared info.
        unsafe {
            write_volatile(si_ptr(VCPU0_UPCALL_PENDING), 0u8);
            (*(si_ptr(VCPU0_PENDING_SEL) as *const AtomicU64)).swap(0, Ordering::SeqCst);
        }
        clear_pending(timer);
    }
    let mut ports = [0u32; 2];
    let n = netfront::arm_idle(&mut ports);
    if n == usize::MAX {
        return; // the rings have work already
    }
    let deadline = system_time_ns() + max_us * 1000;
    if timer != 0 {
        for &p in &ports[..n] {
            unmask(p);
        }
        hypercall::set_singleshot_timer(deadline);
        crate::apic::wait_for_interrupt();
    } else {
        hypercall::poll(&ports[..n], deadline);
    }
    IDLE_POLLS.fetch_add(1, Ordering::Relaxed);
    if system_time_ns() >= deadline {
        IDLE_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Idle blocks so far, and how many of them ran to their deadline (no event came).
static IDLE_POLLS: AtomicU64 = AtomicU64::new(0);
static IDLE_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Idle blocks, how many ran to their deadline, and upcalls taken.
pub fn idle_stats() -> (u64, u64, u64) {
    (IDLE_POLLS.load(Ordering::Relaxed), IDLE_TIMEOUTS.load(Ordering::Relaxed), UPCALLS.load(Ordering::Relaxed))
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
