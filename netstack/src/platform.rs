//! What a role's main loop needs from the machine it runs on: a clock, a way to idle until
//! the next frame or deadline, and somewhere to write reports. The TAP program and the
//! unikernel implement this; the loops themselves live with the roles.

use smoltcp::time::{Duration, Instant};

pub trait Platform {
    /// Monotonic time.
    fn now(&mut self) -> Instant;
    /// Nothing to do: return when a frame may have arrived or `delay` (None: a while) passed.
    fn idle(&mut self, delay: Option<Duration>);
    /// Report text or JSON as the roles produce it.
    fn output(&mut self, text: &str);
    /// A request to stop (SIGINT, SIGTERM, SIGHUP on Linux) arrived since the last call: its
    /// name as iperf3 prints it, e.g. `Interrupt(2)`. Platforms without signals never have one.
    fn interrupted(&mut self) -> Option<&'static str> {
        None
    }
}

/// The earlier of the interface's and the role's next deadline, as a delay from `now`.
pub fn next_delay(iface_delay: Option<Duration>, role_at: Option<Instant>, now: Instant) -> Option<Duration> {
    let role = role_at.map(|at| if at > now { at - now } else { Duration::ZERO });
    match (iface_delay, role) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeping after every quiet pass costs a wake-up per ACK (perf showed a quarter of a TAP
/// sender's time in the scheduler), so loops keep polling for a short while first.
#[derive(Default)]
pub struct IdleWait {
    last_busy: Option<Instant>,
}

const SPIN: Duration = Duration::from_micros(200);

impl IdleWait {
    pub fn busy(&mut self, now: Instant) {
        self.last_busy = Some(now);
    }

    pub fn wait(&mut self, p: &mut dyn Platform, now: Instant, delay: Option<Duration>) {
        if delay == Some(Duration::ZERO) || self.last_busy.is_some_and(|t| now - t < SPIN) {
            core::hint::spin_loop();
            return;
        }
        p.idle(delay);
    }
}
