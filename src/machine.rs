//! The Linux machine as the roles see it: process CPU time, wall clock, `uname` and
//! /dev/urandom.

use netstack::machine::{CpuTimes, Machine, SplitMix64};
use std::io::Read;

pub struct LinuxMachine {
    urandom: Option<std::fs::File>,
    fallback: SplitMix64,
}

impl Default for LinuxMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxMachine {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (std::process::id() as u64) << 32;
        LinuxMachine { urandom: std::fs::File::open("/dev/urandom").ok(), fallback: SplitMix64(seed) }
    }
}

fn tv_us(tv: libc::timeval) -> u64 {
    tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64
}

impl Machine for LinuxMachine {
    fn cpu_times(&mut self) -> CpuTimes {
        // SAFETY: getrusage fills the zeroed struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; RUSAGE_SELF is always valid.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        CpuTimes { user_us: tv_us(ru.ru_utime), system_us: tv_us(ru.ru_stime) }
    }

    fn unix_time_ms(&mut self) -> Option<u64> {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
    }

    fn system_info(&self) -> String {
        // SAFETY: uname fills the zeroed struct we pass.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::uname(&mut u) } != 0 {
            return "Linux".into();
        }
        let field = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        format!(
            "{} {} {} {} {}",
            field(&u.sysname),
            field(&u.nodename),
            field(&u.release),
            field(&u.version),
            field(&u.machine)
        )
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        if let Some(f) = self.urandom.as_mut()
            && f.read_exact(buf).is_ok()
        {
            return;
        }
        self.fallback.fill(buf);
    }
}
