//! Hypercalls through the page Xen fills in (CPUID leaf base+2 names the MSR that installs it).
//! Numbers and argument structures are from Xen's public headers (`xen.h`, `memory.h`,
//! `event_channel.h`, `sched.h`, `hvm/hvm_op.h`, `grant_table.h`, `vcpu.h`); every structure is
//! written here as a `#[repr(C)]` struct with the header's field order and sizes.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

pub const MEMORY_OP: u64 = 12;
pub const XEN_VERSION: u64 = 17;
pub const GRANT_TABLE_OP: u64 = 20;
pub const SCHED_OP: u64 = 29;
pub const EVENT_CHANNEL_OP: u64 = 32;
pub const HVM_OP: u64 = 34;
pub const VCPU_OP: u64 = 24;

pub const DOMID_SELF: u16 = 0x7FF0;

/// One 4 KiB page, page-aligned (hypercall page, shared info, grant frames).
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

/// The hypercall page: Xen writes one 32-byte stub per hypercall into it. It is in .bss,
/// which the boot page tables map writable and executable (EFER.NXE is never set).
static mut HYPERCALL_PAGE: Page = Page([0; 4096]);
static PAGE_ADDR: AtomicU64 = AtomicU64::new(0);

/// Installs the hypercall page through the MSR CPUID leaf `base + 2` names. False if Xen did
/// not fill the page in.
pub fn install(hv_base: u32) -> bool {
    let leaf = crate::cpu::cpuid(hv_base + 2);
    if leaf.eax == 0 {
        return false;
    }
    let addr = &raw mut HYPERCALL_PAGE as u64;
    // SAFETY: the page is ours alone; Xen overwrites it as a side effect of the MSR write.
    unsafe {
        core::ptr::write_volatile(addr as *mut u8, 0xC3); // `ret`, to see it replaced
        x86_64::registers::model_specific::Msr::new(leaf.ebx).write(addr);
    }
    // SAFETY: as above; Xen has written the page during the MSR write.
    let first = unsafe { core::ptr::read_volatile(addr as *const u8) };
    if first == 0xC3 {
        return false;
    }
    PAGE_ADDR.store(addr, Ordering::Release);
    true
}

/// Calls hypercall `nr` with up to five arguments (rdi, rsi, rdx, r10, r8); returns rax.
///
/// # Safety
/// The arguments must be what the hypercall expects: pointers to live, correctly laid out
/// structures that Xen may read and write.
pub unsafe fn call(nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let page = PAGE_ADDR.load(Ordering::Relaxed);
    if page == 0 {
        return -38; // -ENOSYS: not on Xen
    }
    let ret: i64;
    // SAFETY: the stub at page + 32 * nr is Xen's; it follows the C calling convention for
    // the registers named here (a debug Xen scrambles the argument registers: all are outputs).
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) page + 32 * nr,
            inlateout("rax") 0i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            out("r10") _,
            out("r8") _,
        );
    }
    ret
}

/// A hypercall whose second argument is a pointer to `arg`.
pub fn op<T>(nr: u64, cmd: u64, arg: &mut T) -> i64 {
    // SAFETY: `arg` is a live structure of the type the caller's `cmd` expects.
    unsafe { call(nr, cmd, arg as *mut T as u64, 0) }
}

// --- xen_version ---
pub const XENVER_VERSION: u64 = 0;

// --- memory_op ---
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;

#[repr(C)]
pub struct AddToPhysmap {
    pub domid: u16,
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}

/// Maps `space`/`idx` (shared info, a grant frame) over the guest frame holding `page`.
pub fn add_to_physmap(space: u32, idx: u64, page: u64) -> i64 {
    let mut a = AddToPhysmap { domid: DOMID_SELF, size: 0, space, idx, gpfn: page >> 12 };
    op(MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &mut a)
}

pub const XENMEM_MEMORY_MAP: u64 = 9;

#[repr(C)]
pub struct MemoryMap {
    pub nr_entries: u32,
    pub buffer: u64,
}

/// XENMEM_memory_map: the domain's e820 map as `(addr, size, type)`, at most 64 entries.
pub fn memory_map() -> Result<heapless::Vec<(u64, u64, u32), 64>, i64> {
    // e820 entries are 20 bytes, packed: addr u64, size u64, type u32.
    let mut raw = [0u8; 20 * 64];
    let mut m = MemoryMap { nr_entries: 64, buffer: raw.as_mut_ptr() as u64 };
    let rc = op(MEMORY_OP, XENMEM_MEMORY_MAP, &mut m);
    if rc != 0 {
        return Err(rc);
    }
    let mut out = heapless::Vec::new();
    for e in raw.chunks_exact(20).take(m.nr_entries.min(64) as usize) {
        let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap_or([0; 8]));
        let ty = u32::from_le_bytes(e[16..20].try_into().unwrap_or([0; 4]));
        let _ = out.push((u64_at(0), u64_at(8), ty));
    }
    Ok(out)
}

// --- hvm_op ---
pub const HVMOP_SET_PARAM: u64 = 0;
pub const HVMOP_GET_PARAM: u64 = 1;
/// `HVM_PARAM_CALLBACK_IRQ`: how Xen signals pending events; `CALLBACK_VIA_VECTOR << 56 | v`
/// asks for vector v, injected whenever vCPU 0's `evtchn_upcall_pending` is set (no EOI).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
pub const CALLBACK_VIA_VECTOR: u64 = 2;
pub const HVM_PARAM_STORE_PFN: u32 = 1;
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

#[repr(C)]
pub struct HvmParam {
    pub domid: u16,
    pub index: u32,
    pub value: u64,
}

pub fn hvm_set_param(index: u32, value: u64) -> i64 {
    let mut p = HvmParam { domid: DOMID_SELF, index, value };
    op(HVM_OP, HVMOP_SET_PARAM, &mut p)
}

pub fn hvm_get_param(index: u32) -> Result<u64, i64> {
    let mut p = HvmParam { domid: DOMID_SELF, index, value: 0 };
    match op(HVM_OP, HVMOP_GET_PARAM, &mut p) {
        0 => Ok(p.value),
        e => Err(e),
    }
}

// --- event_channel_op ---
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
pub const EVTCHNOP_SEND: u64 = 4;
pub const VIRQ_TIMER: u32 = 0;

#[repr(C)]
pub struct BindVirq {
    pub virq: u32,
    pub vcpu: u32,
    pub port: u32,
}

/// Binds `virq` on vCPU 0 to a new event channel; returns its port.
pub fn evtchn_bind_virq(virq: u32) -> Result<u32, i64> {
    let mut b = BindVirq { virq, vcpu: 0, port: 0 };
    match op(EVENT_CHANNEL_OP, EVTCHNOP_BIND_VIRQ, &mut b) {
        0 => Ok(b.port),
        e => Err(e),
    }
}
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;

#[repr(C)]
pub struct AllocUnbound {
    pub dom: u16,
    pub remote_dom: u16,
    pub port: u32,
}

pub fn evtchn_send(port: u32) {
    let mut p = port;
    op(EVENT_CHANNEL_OP, EVTCHNOP_SEND, &mut p);
}

pub fn evtchn_alloc_unbound(remote: u16) -> Result<u32, i64> {
    let mut a = AllocUnbound { dom: DOMID_SELF, remote_dom: remote, port: 0 };
    match op(EVENT_CHANNEL_OP, EVTCHNOP_ALLOC_UNBOUND, &mut a) {
        0 => Ok(a.port),
        e => Err(e),
    }
}

// --- sched_op ---
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_POLL: u64 = 3;
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_CRASH: u32 = 3;

#[repr(C)]
pub struct SchedPoll {
    pub ports: u64,
    pub nr_ports: u32,
    pub timeout: u64,
}

pub fn shutdown(reason: u32) -> i64 {
    let mut r = reason;
    op(SCHED_OP, SCHEDOP_SHUTDOWN, &mut r)
}

/// Blocks until one of `ports` is pending or Xen's system time reaches `timeout_ns` (0: no
/// timeout).
pub fn poll(ports: &[u32], timeout_ns: u64) -> i64 {
    let mut p = SchedPoll { ports: ports.as_ptr() as u64, nr_ports: ports.len() as u32, timeout: timeout_ns };
    op(SCHED_OP, SCHEDOP_POLL, &mut p)
}

// --- vcpu_op ---
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;

#[repr(C)]
pub struct SingleshotTimer {
    pub timeout_abs_ns: u64,
    pub flags: u32,
}

/// Fires VIRQ_TIMER on vCPU 0 once, when Xen's system time reaches `at_ns` (at once if it is
/// past: no `VCPU_SSHOTTMR_future` flag).
pub fn set_singleshot_timer(at_ns: u64) -> i64 {
    let mut t = SingleshotTimer { timeout_abs_ns: at_ns, flags: 0 };
    // SAFETY: VCPUOP_set_singleshot_timer takes (cmd, vcpu id, pointer to the structure).
    unsafe { call(VCPU_OP, VCPUOP_SET_SINGLESHOT_TIMER, 0, &mut t as *mut SingleshotTimer as u64) }
}

// --- grant_table_op ---
pub const GNTTABOP_QUERY_SIZE: u64 = 6;

#[repr(C)]
pub struct QuerySize {
    pub dom: u16,
    pub nr_frames: u32,
    pub max_nr_frames: u32,
    pub status: i16,
}

pub fn grant_query_size() -> Result<(u32, u32), i64> {
    let mut q = QuerySize { dom: DOMID_SELF, nr_frames: 0, max_nr_frames: 0, status: 0 };
    // SAFETY: GNTTABOP_query_size takes (cmd, pointer to an array of `count` structures, count).
    let rc = unsafe { call(GRANT_TABLE_OP, GNTTABOP_QUERY_SIZE, &mut q as *mut QuerySize as u64, 1) };
    if rc != 0 {
        return Err(rc);
    }
    if q.status != 0 {
        return Err(i64::from(q.status));
    }
    Ok((q.nr_frames, q.max_nr_frames))
}
