//! The machine a role runs on, as the roles see it: CPU time, the date, a description of the
//! system and randomness. (How the loop runs — clock, waiting, output, signals — is the
//! platform's part, in [`crate::driver`].) The unikernel, the Linux CLI and the simulator
//! each implement this once.

use alloc::string::String;

/// Process CPU time consumed so far, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user_us: u64,
    pub system_us: u64,
}

impl CpuTimes {
    /// (user %, system %) of one CPU used between `self` and `now` over `wall_us` of wall time,
    /// as iperf3's `cpu_util` computes them.
    pub fn percent_until(self, now: CpuTimes, wall_us: u64) -> (f64, f64) {
        let wall = wall_us.max(1) as f64;
        let user = now.user_us.saturating_sub(self.user_us) as f64 * 100.0 / wall;
        let system = now.system_us.saturating_sub(self.system_us) as f64 * 100.0 / wall;
        (user, system)
    }
}

pub trait Machine {
    /// CPU time used by this program so far; zeros where the platform cannot tell.
    fn cpu_times(&mut self) -> CpuTimes {
        CpuTimes::default()
    }
    /// Milliseconds since the Unix epoch, if the platform knows the date.
    fn unix_time_ms(&mut self) -> Option<u64> {
        None
    }
    /// A `uname -a`-like description for `start.system_info`.
    fn system_info(&self) -> String;
    /// Fills `buf` with unpredictable bytes (cookies, payload, port choice).
    fn fill_random(&mut self, buf: &mut [u8]);
}

/// SplitMix64: a tiny, seedable generator for simulations and platforms without an entropy
/// source. Not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// A machine for simulations: fixed description, seeded randomness, no CPU accounting.
pub struct SimMachine {
    pub rng: SplitMix64,
    pub name: String,
}

impl Machine for SimMachine {
    fn system_info(&self) -> String {
        self.name.clone()
    }
    fn fill_random(&mut self, buf: &mut [u8]) {
        self.rng.fill(buf)
    }
}
