//! Interrupts for the idle wait: the local APIC (its one-shot timer, calibrated against the
//! TSC the clock uses, wakes the loop at the role's next deadline), the I/O APIC (routes the
//! virtio-mmio NIC's interrupt line to a vector) and the MSI message a virtio-pci NIC sends.
//! Interrupts stay disabled everywhere except inside the idle wait's `sti; hlt`, so the
//! handlers (traps.rs) only acknowledge them.
//!
//! xAPIC register interface only (MMIO at the base IA32_APIC_BASE names): QEMU's `microvm`,
//! `pc` and `q35` all start the CPU in xAPIC mode.

use crate::clock;
use crate::net::ensure_mapped;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// The NIC's interrupt vector.
pub const NIC_VECTOR: u8 = 0x30;
/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x31;
/// Xen's event-channel upcall (`HVM_PARAM_CALLBACK_IRQ`, injected directly: no EOI).
pub const XEN_VECTOR: u8 = 0x32;
/// The spurious-interrupt vector (low four bits all ones, as older APICs require).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

const IA32_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Local APIC registers (SDM vol. 3, table 11-1).
const LAPIC_ID: usize = 0x20;
const LAPIC_TPR: usize = 0x80;
const LAPIC_EOI: usize = 0xB0;
const LAPIC_SVR: usize = 0xF0;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_TIMER_INITIAL: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 0b1011: the timer counts at the APIC bus clock itself.
const DIVIDE_BY_1: u32 = 0b1011;

const IOAPIC_BASE: u64 = 0xFEC0_0000;
/// QEMU `microvm,ioapic2=on` puts a second I/O APIC here for GSIs 24..48.
const IOAPIC2_BASE: u64 = 0xFEC1_0000;
const IOAPIC_PINS: u32 = 24;
const IOAPIC_VERSION: u32 = 0x01;
const IOAPIC_REDIRECTION: u32 = 0x10;

static LAPIC: AtomicU64 = AtomicU64::new(0);
/// Local APIC timer ticks per second (0 until calibrated).
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Interrupts taken so far, NIC and timer (for the verbose report).
pub static NIC_IRQS: AtomicU64 = AtomicU64::new(0);
pub static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC (CPUID.1:EDX.APIC, checked
    // by the caller); reading it has no side effects.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    u64::from(hi) << 32 | u64::from(lo)
}

fn lapic_read(reg: usize) -> u32 {
    let base = LAPIC.load(Ordering::Relaxed) as usize;
    // SAFETY: `init` mapped the local APIC page at `base`; registers are 32-bit, 16-aligned.
    unsafe { core::ptr::read_volatile((base + reg) as *const u32) }
}

fn lapic_write(reg: usize, value: u32) {
    let base = LAPIC.load(Ordering::Relaxed) as usize;
    // SAFETY: as in `lapic_read`.
    unsafe { core::ptr::write_volatile((base + reg) as *mut u32, value) }
}

/// Turns on the local APIC (spurious vector, priority 0), masks the legacy 8259 PICs and
/// calibrates the timer against the TSC. Returns the timer's rate in Hz.
pub fn init() -> Result<u64, &'static str> {
    if core::arch::x86_64::__cpuid(1).edx & (1 << 9) == 0 {
        return Err("the CPU has no local APIC");
    }
    let msr = rdmsr(IA32_APIC_BASE);
    if msr & APIC_BASE_ENABLE == 0 {
        return Err("the local APIC is disabled (IA32_APIC_BASE)");
    }
    if msr & APIC_BASE_X2APIC != 0 {
        return Err("the local APIC is in x2APIC mode (only xAPIC is driven)");
    }
    let base = msr & 0x000F_FFFF_FFFF_F000;
    ensure_mapped(base, 4096).map_err(|_| "cannot map the local APIC")?;
    LAPIC.store(base, Ordering::Relaxed);
    mask_pics();
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    lapic_write(LAPIC_TIMER_DIVIDE, DIVIDE_BY_1);

    // Count down from the top for 2 ms of TSC time.
    const CALIBRATION_US: u64 = 2000;
    lapic_write(LAPIC_TIMER_INITIAL, u32::MAX);
    let start = clock::now_us();
    let mut now = start;
    while now - start < CALIBRATION_US {
        core::hint::spin_loop();
        now = clock::now_us();
    }
    let left = lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    let counted = u64::from(u32::MAX - left);
    let hz = counted * 1_000_000 / (now - start).max(1);
    if hz < 1_000_000 {
        return Err("the local APIC timer does not count (under 1 MHz against the TSC)");
    }
    TIMER_HZ.store(hz, Ordering::Relaxed);
    Ok(hz)
}

/// Masks every line of both 8259s, so only the I/O APIC delivers device interrupts.
fn mask_pics() {
    // SAFETY: writing the interrupt mask registers (OCW1) of the master and slave PICs; on
    // machines without them the ports are unclaimed and the writes go nowhere.
    unsafe {
        asm!("out 0x21, al", in("al") 0xFFu8, options(nomem, nostack, preserves_flags));
        asm!("out 0xA1, al", in("al") 0xFFu8, options(nomem, nostack, preserves_flags));
    }
}

/// Routes GSI `gsi` to `vector` on this CPU: fixed delivery, physical destination, edge
/// triggered, active high (virtio-mmio raises its line while its interrupt status is non-zero;
/// the idle wait acknowledges the device before it sleeps, so every new event is a new edge).
pub fn route_gsi(gsi: u32, vector: u8) -> Result<(), &'static str> {
    let (base, pin) = if gsi < IOAPIC_PINS { (IOAPIC_BASE, gsi) } else { (IOAPIC2_BASE, gsi - IOAPIC_PINS) };
    ensure_mapped(base, 4096).map_err(|_| "cannot map the I/O APIC")?;
    let version = ioapic_read(base, IOAPIC_VERSION);
    if version == u32::MAX {
        return Err("no I/O APIC answers for this interrupt line");
    }
    let entries = (version >> 16 & 0xFF) + 1;
    if pin >= entries {
        return Err("the interrupt line is beyond the I/O APIC's redirection entries");
    }
    let apic_id = lapic_read(LAPIC_ID) >> 24;
    let reg = IOAPIC_REDIRECTION + 2 * pin;
    ioapic_write(base, reg + 1, apic_id << 24);
    ioapic_write(base, reg, u32::from(vector));
    Ok(())
}

/// The MSI message (address, data) that delivers `vector` to this CPU: fixed delivery,
/// physical destination (this local APIC's ID), edge-triggered (SDM vol. 3, §11.11).
pub fn msi_message(vector: u8) -> (u64, u32) {
    const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;
    let apic_id = lapic_read(LAPIC_ID) >> 24;
    (MSI_ADDRESS_BASE | u64::from(apic_id) << 12, u32::from(vector))
}

fn ioapic_read(base: u64, reg: u32) -> u32 {
    // SAFETY: `base` is a mapped I/O APIC: the index register at +0, the window at +0x10.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::read_volatile((base + 0x10) as *const u32)
    }
}

fn ioapic_write(base: u64, reg: u32, value: u32) {
    // SAFETY: as in `ioapic_read`.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::write_volatile((base + 0x10) as *mut u32, value);
    }
}

/// Signals the end of an interrupt to the local APIC.
pub fn eoi() {
    lapic_write(LAPIC_EOI, 0);
}

/// Fires [`TIMER_VECTOR`] once, `us` microseconds from now (at least one tick).
pub fn arm_timer(us: u64) {
    let hz = TIMER_HZ.load(Ordering::Relaxed);
    let ticks = (u128::from(us) * u128::from(hz) / 1_000_000).clamp(1, u128::from(u32::MAX)) as u32;
    lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR));
    lapic_write(LAPIC_TIMER_INITIAL, ticks);
}

/// Stops the timer (a zero initial count) and masks it.
pub fn disarm_timer() {
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// Called by the interrupt stubs with interrupts disabled.
pub fn handle(vector: u8) {
    match vector {
        NIC_VECTOR => {
            NIC_IRQS.fetch_add(1, Ordering::Relaxed);
            eoi();
        }
        TIMER_VECTOR => {
            TIMER_IRQS.fetch_add(1, Ordering::Relaxed);
            eoi();
        }
        XEN_VECTOR => crate::xen::upcall(),
        // Spurious interrupts take no EOI.
        _ => {}
    }
}

/// Enables interrupts and halts until one arrives, then disables them again. `sti` takes
/// effect after the next instruction, so an interrupt pending since before cannot slip in
/// between the caller's last check and the `hlt`: it wakes the `hlt` at once.
pub fn wait_for_interrupt() {
    // SAFETY: the IDT has handlers for every vector that can be delivered (traps.rs), and
    // they return; interrupts are off again before this returns.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
