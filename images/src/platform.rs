//! The image as a `netstack` platform ([`ImagePlatform`]: the TSC clock, an idle wait that
//! spins — there are no interrupts, so the loop must come back soon to poll the NIC — and the
//! console for reports) and machine ([`ImageMachine`]: busy time as CPU time, the CMOS date,
//! RDRAND where the CPU has it), and the console as the `log` facade's sink.

use crate::{clock, console, cpu};
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

/// The longest one idle call blocks on Xen (events from the NIC end it sooner).
const XEN_IDLE_MAX_US: u64 = 10_000;

/// Clock, idle wait and console for the role loops.
#[derive(Default)]
pub struct ImagePlatform {
    /// `--timestamps`: the strftime format and the Unix time at boot (text output only).
    stamps: Option<(String, u64)>,
    mid_line: bool,
}

impl ImagePlatform {
    /// Stamps every console line with `format` (UTC: the image has no time zone data),
    /// counting from `boot_unix`; without a date source the lines stay unstamped.
    pub fn with_timestamps(format: Option<&str>, boot_unix: Option<u64>) -> Self {
        let stamps = format.zip(boot_unix).map(|(f, t)| (String::from(f), t));
        ImagePlatform { stamps, mid_line: false }
    }
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
