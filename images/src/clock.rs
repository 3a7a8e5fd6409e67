//! The monotonic clock: the TSC, with its frequency from CPUID leaf 0x15, the hypervisor's
//! timing leaf, or a calibration against the i8254 PIT (channel 0, read with latch commands).
//! Never a guessed frequency: without any of these, [`init`] fails.
//!
//! Under QEMU TCG the guest TSC runs at the host TSC's rate and the PIT follows the host
//! clock, so the calibration measures the host TSC.

use crate::cpu;
use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::{PortRead, PortWrite};

/// TSC ticks to microseconds: `us = ticks * MULT >> SHIFT`.
const SHIFT: u32 = 48;
static MULT: AtomicU64 = AtomicU64::new(0);
static HZ: AtomicU64 = AtomicU64::new(0);
static BASE: AtomicU64 = AtomicU64::new(0);
/// On Xen: pvclock system time (ns) at [`init`]; 0 means the clock is the TSC.
static XEN_BASE_NS: AtomicU64 = AtomicU64::new(0);

/// How the TSC frequency was found.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub hz: u64,
    pub method: &'static str,
}

pub fn ticks() -> u64 {
    // SAFETY: rdtsc is available on every x86_64 CPU and has no memory effects.
    unsafe { _rdtsc() }
}

/// Microseconds since [`init`]; 0 before it.
pub fn now_us() -> u64 {
    let xen_base = XEN_BASE_NS.load(Ordering::Relaxed);
    if xen_base != 0 {
        return crate::xen::system_time_ns().saturating_sub(xen_base) / 1000;
    }
    let mult = MULT.load(Ordering::Relaxed);
    let elapsed = ticks().wrapping_sub(BASE.load(Ordering::Relaxed));
    ((u128::from(elapsed) * u128::from(mult)) >> SHIFT) as u64
}

/// The TSC frequency in Hz (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    HZ.load(Ordering::Relaxed)
}

/// Converts a TSC tick count to microseconds (after [`init`]).
pub fn ticks_to_us(t: u64) -> u64 {
    ((u128::from(t) * u128::from(MULT.load(Ordering::Relaxed))) >> SHIFT) as u64
}

/// Finds the TSC frequency and starts the clock at 0.
pub fn init(hv: &cpu::Hypervisor) -> Result<Calibration, &'static str> {
    if crate::xen::active() {
        // Xen's pvclock (vcpu_time_info in shared info) is the clock; the TSC rate it implies
        // is kept for tick conversions.
        let cal = Calibration { hz: crate::xen::pvclock_tsc_hz(), method: "Xen pvclock" };
        if !(MIN_HZ..=MAX_HZ).contains(&cal.hz) {
            return Err("Xen pvclock's TSC rate is outside 100 MHz..20 GHz");
        }
        HZ.store(cal.hz, Ordering::Relaxed);
        MULT.store(((1_000_000u128 << SHIFT) / u128::from(cal.hz)) as u64, Ordering::Relaxed);
        BASE.store(ticks(), Ordering::Relaxed);
        XEN_BASE_NS.store(crate::xen::system_time_ns().max(1), Ordering::Relaxed);
        return Ok(cal);
    }
    let cal = from_cpuid_15()
        .map(|hz| Calibration { hz, method: "CPUID 0x15" })
        .or_else(|| hv.tsc_hz().map(|(hz, method)| Calibration { hz, method }))
        .map_or_else(|| pit_calibrate().map(|hz| Calibration { hz, method: "PIT calibration" }), Ok)?;
    if !(MIN_HZ..=MAX_HZ).contains(&cal.hz) {
        return Err("TSC frequency outside 100 MHz..20 GHz");
    }
    HZ.store(cal.hz, Ordering::Relaxed);
    MULT.store(((1_000_000u128 << SHIFT) / u128::from(cal.hz)) as u64, Ordering::Relaxed);
    BASE.store(ticks(), Ordering::Relaxed);
    Ok(cal)
}

const MIN_HZ: u64 = 100_000_000;
const MAX_HZ: u64 = 20_000_000_000;

/// CPUID 0x15: TSC = crystal * EBX / EAX, when all three are reported.
fn from_cpuid_15() -> Option<u64> {
    if cpu::max_basic_leaf() < 0x15 {
        return None;
    }
    let r = cpu::cpuid(0x15);
    if r.eax == 0 || r.ebx == 0 || r.ecx == 0 {
        return None;
    }
    Some(u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax))
}

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL0: u16 = 0x40;
const PIT_COMMAND: u16 = 0x43;
/// Channel 0 (bits 7-6 = 00), lobyte/hibyte access (11), mode 2 rate generator (010), binary.
const CH0_MODE2: u8 = 0b0011_0100;
/// Counter-latch command for channel 0 (access bits 00).
const CH0_LATCH: u8 = 0b0000_0000;
/// PIT ticks per run (~17 ms; three runs with warm-ups take ~57 ms). The median of three
/// absorbs a run where the vCPU was descheduled at the wrong moment.
const RUN_TICKS: u64 = PIT_HZ * 17 / 1000;
/// PIT ticks (~2 ms) before a run starts measuring.
const WARMUP_TICKS: u64 = PIT_HZ * 2 / 1000;
/// Counter reads before a run is given up on (a PIT that never counts)...
const MAX_POLLS: u32 = 20_000_000;
/// ...or that never moves at all (it ticks every 0.84 µs; absent ports read all-ones).
const STILL_POLLS: u32 = 10_000;

fn inb(port: u16) -> u8 {
    // SAFETY: PIT registers; no memory effects.
    unsafe { u8::read_from_port(port) }
}

fn outb(port: u16, v: u8) {
    // SAFETY: as above.
    unsafe { u8::write_to_port(port, v) }
}

fn pit_count() -> u16 {
    outb(PIT_COMMAND, CH0_LATCH);
    let lo = inb(PIT_CHANNEL0);
    let hi = inb(PIT_CHANNEL0);
    u16::from_le_bytes([lo, hi])
}

/// Counts TSC ticks against PIT channel 0 free-running over its full 16-bit range, reading
/// the counter with latch commands. (Channel 2's output bit in port 0x61 would need the PC
/// speaker's port, which `microvm` lacks.) Interrupts are off, so IRQ0 goes nowhere.
fn pit_calibrate() -> Result<u64, &'static str> {
    outb(PIT_COMMAND, CH0_MODE2);
    outb(PIT_CHANNEL0, 0); // reload value 0 = 65536
    outb(PIT_CHANNEL0, 0);
    let mut runs = [0u64; 3];
    for run in runs.iter_mut() {
        *run = pit_run()?;
    }
    runs.sort_unstable();
    Ok(runs[1])
}

fn pit_run() -> Result<u64, &'static str> {
    let mut prev = pit_count();
    let mut elapsed = 0u64;
    // (TSC, PIT ticks) where the measurement starts: after a short warm-up, because under
    // TCG something in a run's first milliseconds (translating this loop, at least) biased
    // 17 ms runs by ~0.1 % low; measured from the warm-up on they agree with the host's TSC
    // rate to ~0.002 %.
    let mut start: Option<(u64, u64)> = None;
    for i in 0..MAX_POLLS {
        let now = pit_count();
        let tsc = ticks();
        // The counter runs down and reloads from 65536.
        elapsed += u64::from(prev.wrapping_sub(now));
        prev = now;
        match start {
            None if elapsed >= WARMUP_TICKS => start = Some((tsc, elapsed)),
            Some((t0, e0)) if elapsed - e0 >= RUN_TICKS => return Ok((tsc - t0) * PIT_HZ / (elapsed - e0)),
            _ => {}
        }
        if elapsed == 0 && i >= STILL_POLLS {
            break;
        }
    }
    Err("no PIT counts on port 0x40 and CPUID gives no TSC frequency")
}
