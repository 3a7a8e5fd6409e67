//! The image as a `netstack` platform ([`ImagePlatform`]: the TSC clock, an idle wait —
//! `hlt` until the NIC's interrupt or the local APIC timer at the loop's next deadline, or,
//! where interrupts could not be set up, a spin in short slices — and the console for reports) and machine ([`ImageMachine`]: busy time as CPU time, the CMOS date,
//! RDRAND where the CPU has it), and the console as the `log` facade's sink.

use crate::net::{InterruptRoute, SharedQueues};
use crate::{apic, clock, console, cpu};
use alloc::format;
use alloc::string::String;
use core::arch::x86_64::_rdrand64_step;
use netstack::driver::Platform;
use netstack::machine::{CpuTimes, Machine, SplitMix64};
use netstack::report::time::{stamp_lines, strftime_utc};
use netstack::smoltcp::time::{Duration, Instant};

/// The longest one idle call spins before the loop polls the NIC again: without interrupts
/// this bounds how late a frame that arrives meanwhile is seen.
const IDLE_SLICE_US: u64 = 50;
/// The longest one halt lasts without a deadline: a safety net should an interrupt be lost.
const MAX_SLEEP_US: u64 = 100_000;
/// With interrupts, how long the loop keeps polling after progress before it halts.
const SPIN_WITH_INTERRUPTS_US: u64 = 0;
/// The longest halt waiting for the device to finish a transmit when the ring is full.
const STALL_SLEEP_US: u64 = 1000;
/// Waits shorter than this spin: arming and disarming costs about as much.
const MIN_SLEEP_US: u64 = 20;

/// The longest one idle call blocks on Xen (events from the NIC end it sooner): the same
/// safety net as [`MAX_SLEEP_US`].
const XEN_IDLE_MAX_US: u64 = MAX_SLEEP_US;

/// Clock, idle wait and console for the role loops.
#[derive(Default)]
pub struct ImagePlatform {
    /// `--timestamps`: the strftime format and the Unix time at boot (text output only).
    stamps: Option<(String, u64)>,
    mid_line: bool,
    /// The NIC's queues when its interrupt is routed: the idle wait then halts.
    wake: Option<SharedQueues>,
}

/// Routes the NIC's queue interrupts (virtio-mmio: the GSI from the command line, through the
/// I/O APIC; virtio-pci: an MSI-X message to the local APIC) and calibrates the local APIC
/// timer, so the idle wait can halt. Returns the queue handle for [`ImagePlatform::with_wake`]
/// and a line for the console saying which idle mode is in use and, for busy-polling, why.
pub fn setup_interrupts(nic: &crate::net::Nic) -> (Option<SharedQueues>, String) {
    let nic = match nic {
        crate::net::Nic::Virtio(n) => n,
        crate::net::Nic::Xen(_) => {
            return (None, crate::xen::idle_mode());
        }
    };
    if let InterruptRoute::Unknown(why) = nic.interrupt() {
        return (None, format!("busy-poll ({why})"));
    }
    let hz = match apic::init() {
        Ok(hz) => hz,
        Err(e) => return (None, format!("busy-poll ({e})")),
    };
    let route = match nic.interrupt() {
        InterruptRoute::Gsi(irq) => match apic::route_gsi(*irq, apic::NIC_VECTOR) {
            Ok(()) => format!("NIC IRQ {irq} via the I/O APIC"),
            Err(e) => return (None, format!("busy-poll (IRQ {irq}: {e})")),
        },
        InterruptRoute::Msix(msix) => {
            let (address, data) = apic::msi_message(apic::NIC_VECTOR);
            match msix.route(address, data) {
                Ok(()) => {
                    format!("NIC MSI-X entry 0 of {} to vector {:#x} at {address:#x}", msix.entries(), apic::NIC_VECTOR)
                }
                Err(e) => return (None, format!("busy-poll (MSI-X: {e})")),
            }
        }
        // Answered before the local APIC was touched.
        InterruptRoute::Unknown(why) => return (None, format!("busy-poll ({why})")),
    };
    let mode = format!(
        "interrupts ({route}, local APIC timer at {}.{:03} MHz; hlt when idle)",
        hz / 1_000_000,
        hz / 1000 % 1000
    );
    (Some(nic.idle_queues()), mode)
}

impl ImagePlatform {
    /// Stamps every console line with `format` (UTC: the image has no time zone data),
    /// counting from `boot_unix`; without a date source the lines stay unstamped.
    pub fn with_timestamps(format: Option<&str>, boot_unix: Option<u64>) -> Self {
        let stamps = format.zip(boot_unix).map(|(f, t)| (String::from(f), t));
        ImagePlatform { stamps, mid_line: false, wake: None }
    }

    /// Halts when idle, woken by the NIC behind `queues` or the timer.
    pub fn with_wake(mut self, queues: Option<SharedQueues>) -> Self {
        self.wake = queues;
        self
    }

    /// Spins for up to [`IDLE_SLICE_US`].
    fn spin(delay: Option<Duration>) {
        let slice = delay.map_or(IDLE_SLICE_US, |d| d.total_micros().min(IDLE_SLICE_US));
        let start = clock::now_us();
        let until = start + slice;
        let mut now = start;
        while now < until {
            core::hint::spin_loop();
            now = clock::now_us();
        }
        IDLE_US.fetch_add(now - start, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Idle waits that halted, and how many of those found work when arming (for `-V`).
static HALTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Halts so far and the interrupts that ended them (NIC, timer).
pub fn idle_counts() -> (u64, u64, u64) {
    use core::sync::atomic::Ordering::Relaxed;
    (HALTS.load(Relaxed), apic::NIC_IRQS.load(Relaxed), apic::TIMER_IRQS.load(Relaxed))
}

/// Microseconds spent in [`ImagePlatform::idle`], for [`ImageMachine`]'s CPU-time reports.
static IDLE_US: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Microseconds spent idling since boot.
pub fn idle_us() -> u64 {
    IDLE_US.load(core::sync::atomic::Ordering::Relaxed)
}

/// The clock for the flow probe's per-frame stamps (same scale as [`ImagePlatform::now`]).
pub fn frame_clock() -> Instant {
    Instant::from_micros(clock::now_us() as i64)
}

impl Platform for ImagePlatform {
    fn now(&mut self) -> Instant {
        Instant::from_micros(clock::now_us() as i64)
    }

    fn idle(&mut self, delay: Option<Duration>) {
        if crate::xen::active() {
            // Xen hook: block in the hypervisor until an event or the deadline.
            let start = clock::now_us();
            crate::xen::idle(delay.map_or(XEN_IDLE_MAX_US, |d| d.total_micros().min(XEN_IDLE_MAX_US)));
            IDLE_US.fetch_add(clock::now_us() - start, core::sync::atomic::Ordering::Relaxed);
            return;
        }
        let Some(queues) = self.wake.as_mut() else {
            return Self::spin(delay);
        };
        let stalled = queues.peek().tx_starved;
        let sleep = match delay {
            // The stack wants to send but the transmit ring is full: wait for the device.
            Some(d) if d == Duration::ZERO && stalled => STALL_SLEEP_US,
            Some(d) => d.total_micros().min(MAX_SLEEP_US),
            None => MAX_SLEEP_US,
        };
        if sleep < MIN_SLEEP_US {
            return Self::spin(delay);
        }
        let start = clock::now_us();
        // Interrupts are off (they only ever go on inside `wait_for_interrupt`): whatever the
        // device finishes after `arm_interrupts` looked raises an interrupt, which stays
        // pending until the `sti; hlt` and then ends the halt at once.
        let q = queues.get();
        if !q.arm_interrupts() {
            apic::arm_timer(sleep);
            HALTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            apic::wait_for_interrupt();
            apic::disarm_timer();
        }
        q.disarm_interrupts();
        IDLE_US.fetch_add(clock::now_us() - start, core::sync::atomic::Ordering::Relaxed);
    }

    fn device_stalled(&mut self) -> bool {
        self.wake.as_ref().is_some_and(|q| q.peek().tx_starved)
    }

    fn spin_after_progress(&self) -> Duration {
        // Halting is cheap (an interrupt ends it) and spinning takes a core from the peer VM.
        match self.wake {
            Some(_) => Duration::from_micros(SPIN_WITH_INTERRUPTS_US),
            None => Duration::from_micros(200),
        }
    }

    fn output(&mut self, text: &str) {
        match &self.stamps {
            Some((format, boot)) => {
                let stamp = strftime_utc(format, boot + clock::now_us() / 1_000_000);
                console::write_str(&stamp_lines(text, &stamp, &mut self.mid_line));
            }
            None => console::write_str(text),
        }
    }
}

/// CPU time, date, description and randomness for the roles.
pub struct ImageMachine {
    info: String,
    boot_unix: Option<u64>,
    rdrand: bool,
    fallback: SplitMix64,
}

impl ImageMachine {
    /// `boot_unix` is the RTC date read when the clock started (at `now_us() == 0`, roughly).
    pub fn new(hv: &cpu::Hypervisor, boot_unix: Option<u64>) -> Self {
        let hz = clock::tsc_hz();
        let info = format!(
            "uniperf-image x86_64 ({}, TSC {}.{:02} GHz)",
            hv.name(),
            hz / 1_000_000_000,
            hz / 10_000_000 % 100
        );
        let seed = clock::ticks() ^ boot_unix.unwrap_or(0).rotate_left(32) ^ 0x0075_6e69_7065_7266;
        ImageMachine { info, boot_unix, rdrand: cpu::has_rdrand(), fallback: SplitMix64(seed) }
    }

    /// The Unix time at boot, if the platform has a date.
    pub fn boot_unix(&self) -> Option<u64> {
        self.boot_unix
    }

    /// Whether randomness comes from RDRAND (else a TSC-seeded SplitMix64).
    pub fn uses_rdrand(&self) -> bool {
        self.rdrand
    }
}

/// One RDRAND value, retried as Intel's guide recommends; None if the DRNG stays empty.
#[target_feature(enable = "rdrand")]
fn rdrand64() -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..10 {
        if _rdrand64_step(&mut v) == 1 {
            return Some(v);
        }
    }
    None
}

impl Machine for ImageMachine {
    fn cpu_times(&mut self) -> CpuTimes {
        // The CPU is ours alone: whatever was not spent idling was work.
        let busy = clock::now_us().saturating_sub(idle_us());
        CpuTimes { user_us: busy, system_us: 0 }
    }

    fn unix_time_ms(&mut self) -> Option<u64> {
        self.boot_unix.map(|t| t * 1000 + clock::now_us() / 1000)
    }

    fn system_info(&self) -> String {
        self.info.clone()
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            // SAFETY: `rdrand` is set only when CPUID reports RDRAND.
            let r = if self.rdrand { unsafe { rdrand64() } } else { None };
            let r = r.unwrap_or_else(|| self.fallback.next_u64() ^ clock::ticks());
            chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// uniperf's own diagnostics on the console, as `uniperf: …`.
struct ConsoleLog;

static LOGGER: ConsoleLog = ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match r.level() {
            log::Level::Error => crate::println!("uniperf: error - {}", r.args()),
            log::Level::Warn => crate::println!("uniperf: warning - {}", r.args()),
            log::Level::Info => crate::println!("uniperf: {}", r.args()),
            _ => crate::println!("uniperf: debug: {}: {}", r.target(), r.args()),
        }
    }

    fn flush(&self) {}
}

/// Routes the `log` facade to the console: info and above, debug too with `-d`.
pub fn init_log(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}
