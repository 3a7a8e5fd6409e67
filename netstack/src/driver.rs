//! The one event loop every platform runs. A platform supplies a device (inside the flow probe,
//! in a [`Stack`]), a [`Machine`], and a [`Platform`]: a clock, a way to wait, somewhere to
//! write reports, and signals. A [`Role`] — the iperf3 server or client, or a flow-log upload
//! — is a sans-IO state machine the loop polls after the interface; the loop idles until the
//! next frame or deadline, hands each finished test to the platform (for its flow log), and
//! when the role is done lets its last segments leave. The simulator, whose two stacks share
//! a virtual clock, calls [`step`] itself.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::borrow::BorrowMut;

use smoltcp::iface::{Interface, PollResult, SocketSet};
use smoltcp::phy::Device;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::flowlog::ship::{TestLog, take_test_log};
use crate::flowlog::{FlowProbe, FlowTracker};
use crate::machine::Machine;
use crate::options::{Mode, Options};
use crate::stack::{NetConfig, build_interface, poll_interleaved};
use crate::tcpinfo::TcpInfoSource;

/// How a platform runs the loop.
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
    /// How long the loop keeps polling after the last progress before it calls `idle`
    /// ([`IdleWait`]): worth it where a wake-up is dear (a thread's sleep), not where idling
    /// is cheap and spinning takes the CPU from a neighbour (a VM halting).
    fn spin_after_progress(&self) -> Duration {
        SPIN
    }
    /// The device can take no frames until it finishes some (its transmit ring is full): the
    /// loop then calls `idle` even when the stack wants to send at once, and the platform may
    /// wait for the device rather than spin.
    fn device_stalled(&mut self) -> bool {
        false
    }
}

/// What a role's poll works with.
pub struct RoleIo<'a> {
    /// For opening connections (`connect` needs the interface's context).
    pub iface: &'a mut Interface,
    pub sockets: &'a mut SocketSet<'static>,
    pub machine: &'a mut dyn Machine,
    /// TCP_INFO of the role's connections (the flow probe).
    pub tcp_info: &'a dyn TcpInfoSource,
    /// The platform's clock, read afresh (UDP datagrams carry the time they were written).
    pub clock: &'a mut dyn FnMut() -> Instant,
}

/// A test that ended: which one, and its data streams (iperf3 id, local, remote), for
/// labelling its flow log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndedTest {
    /// 1 for the first test this role ran or served.
    pub number: u32,
    pub streams: Vec<(i64, IpEndpoint, IpEndpoint)>,
}

/// A sans-IO state machine the loop drives: polled after the interface with the time, it
/// reads and writes its sockets and says when it wants to be polled again.
pub trait Role {
    /// Does all pending work at `now`; true if anything moved (poll again soon).
    fn poll(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool;
    /// The next instant a timer needs the role polled.
    fn poll_at(&self) -> Option<Instant>;
    /// The next instant a timer needs the role polled, for a platform on virtual time (the
    /// simulator, where nothing happens between events). It differs from `poll_at` while the
    /// role asks to be polled continuously (`poll_at` in the past) although only arriving
    /// frames or these timers can move it: stepping the clock a microsecond at a time through
    /// such a wait cost the simulator thousands of passes per round trip.
    fn next_timer(&self) -> Option<Instant> {
        self.poll_at()
    }
    /// Report text produced since the last call.
    fn take_output(&mut self) -> String {
        String::new()
    }
    /// The platform caught `signal` (e.g. `Interrupt(2)`): end as iperf3 does.
    fn interrupt(&mut self, _now: Instant, _io: &mut RoleIo<'_>, _signal: &str) {}
    /// True once the role has nothing left to do.
    fn done(&self) -> bool;
    /// True while what it said last (control bytes, FIN, RST) is still leaving.
    fn flushing(&self, sockets: &SocketSet<'static>) -> bool;
    /// A test ended since the last call.
    fn take_ended_test(&mut self) -> Option<EndedTest> {
        None
    }
    /// How the role ended, once done: the message of a failure (the program then exits with
    /// a failure status).
    fn status(&self) -> Result<(), &str> {
        Ok(())
    }
}

/// What a platform tells a role it builds from the options.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// The MSS the interface's MTU implies.
    pub mss: u32,
    /// Bytes all data sockets of one test may use together.
    pub buffer_budget: usize,
}

/// A role built from the iperf3 options (the server for `-s`, the client for `-c`).
pub trait FromOptions: Role + Sized {
    fn from_options(o: &Options, setup: &Setup, now: Instant, machine: &mut dyn Machine) -> Result<Self, String>;
}

/// Where the flow log of each test goes: called with the stack (to send the log over it), the
/// role (`server` or `client`), the test's number and its log. False if the log could not be
/// saved.
pub type LogSink<'a, D> =
    dyn FnMut(&mut Stack<D>, &mut dyn Machine, &mut dyn Platform, &'static str, u32, TestLog) -> bool + 'a;

/// The whole run on a platform: builds the role the options ask for (`S` for `-s`, `C` for
/// `-c`), runs it on `stack` until it is done, gives each test's flow log to `logs` (the
/// probe starts afresh for the next test), and says whether it went well: `Ok(false)` when
/// the role failed (its report already says why) or a client's flow log could not be saved,
/// `Err` when the options do not describe a role.
pub fn run_options<S: FromOptions, C: FromOptions, D: Device>(
    o: &Options,
    setup: &Setup,
    stack: &mut Stack<D>,
    machine: &mut dyn Machine,
    platform: &mut dyn Platform,
    logs: &mut LogSink<'_, D>,
) -> Result<bool, String> {
    let now = platform.now();
    let (mut role, name): (Box<dyn Role>, &'static str) = match o.mode {
        Some(Mode::Server) => {
            let server = S::from_options(o, setup, now, machine)?;
            if let Some(ip) = stack.iface.ipv4_addr() {
                log::info!("ready: listening on {ip}:{}", o.port);
            }
            (Box::new(server), "server")
        }
        Some(Mode::Client(_)) => (Box::new(C::from_options(o, setup, now, machine)?), "client"),
        None => return Err(String::from("must either be a client (-c HOST) or server (-s)")),
    };
    let mut logs_ok = true;
    run(stack, role.as_mut(), machine, platform, &mut |stack, machine, platform, test| {
        let t_us = platform.now().total_micros().max(0) as u64;
        let log = take_test_log(stack.dev.tracker(), &test.streams, t_us);
        logs_ok &= logs(stack, machine, platform, name, test.number, log);
    });
    Ok(role.status().is_ok() && (logs_ok || name == "server"))
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
/// sender's time in the scheduler), so the loop keeps polling for a short while first.
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
        let spin = p.spin_after_progress();
        if delay == Some(Duration::ZERO) && p.device_stalled() {
            return p.idle(delay);
        }
        if delay == Some(Duration::ZERO) || self.last_busy.is_some_and(|t| now - t < spin) {
            core::hint::spin_loop();
            return;
        }
        p.idle(delay);
    }
}

/// How long a finished role may take to get its last segments out.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// One pass: the interface (through the probe), then the role. True if anything moved.
#[allow(clippy::too_many_arguments)]
pub fn step<D: Device, T: BorrowMut<FlowTracker>>(
    now: Instant,
    iface: &mut Interface,
    dev: &mut FlowProbe<D, T>,
    sockets: &mut SocketSet<'static>,
    role: &mut dyn Role,
    machine: &mut dyn Machine,
    mut clock: impl FnMut() -> Instant,
) -> bool {
    let mut progress = poll_interleaved(iface, dev, sockets, &mut clock, |d| d.take_syn()) != PollResult::None;
    let mut io = RoleIo { iface, sockets, machine, tcp_info: dev.tracker(), clock: &mut clock };
    progress |= role.poll(now, &mut io);
    progress
}

/// One smoltcp stack on a platform: the interface, its sockets, and the device in the probe.
pub struct Stack<D: Device> {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub dev: FlowProbe<D>,
}

impl<D: Device> Stack<D> {
    pub fn new(mut dev: FlowProbe<D>, net: &NetConfig, now: Instant, seed: u64) -> Self {
        let iface = build_interface(&mut dev, net, now, seed);
        Stack { iface, sockets: SocketSet::new(Vec::new()), dev }
    }

    /// The MSS the interface's MTU implies (IPv4 and TCP headers without options).
    pub fn mss(&self) -> u32 {
        let ip_mtu = self.dev.capabilities().max_transmission_unit.saturating_sub(14);
        ip_mtu.saturating_sub(40) as u32
    }

    /// One pass of [`step`] on this stack.
    pub fn step(
        &mut self,
        now: Instant,
        role: &mut dyn Role,
        machine: &mut dyn Machine,
        platform: &mut dyn Platform,
    ) -> bool {
        step(now, &mut self.iface, &mut self.dev, &mut self.sockets, role, machine, || platform.now())
    }
}

/// What [`run`] calls after each test.
pub type BetweenTests<'a, D> = dyn FnMut(&mut Stack<D>, &mut dyn Machine, &mut dyn Platform, EndedTest) + 'a;

/// Runs `role` on `stack` until it is done (forever for a server without `-1`), then lets its
/// last segments leave for at most [`SETTLE_LIMIT`]. After each test `between_tests` gets the
/// stack, the machine, the platform and the test (for its flow log), before the role goes on.
pub fn run<D: Device>(
    stack: &mut Stack<D>,
    role: &mut dyn Role,
    machine: &mut dyn Machine,
    platform: &mut dyn Platform,
    between_tests: &mut BetweenTests<'_, D>,
) {
    let mut idle = IdleWait::default();
    let mut done_at: Option<Instant> = None;
    loop {
        let now = platform.now();
        if let Some(signal) = platform.interrupted() {
            let mut io = RoleIo {
                iface: &mut stack.iface,
                sockets: &mut stack.sockets,
                machine,
                tcp_info: stack.dev.tracker(),
                clock: &mut || now,
            };
            role.interrupt(now, &mut io, signal);
        }
        let progress = stack.step(now, role, machine, platform);
        let out = role.take_output();
        if !out.is_empty() {
            platform.output(&out);
        }
        if let Some(test) = role.take_ended_test() {
            between_tests(stack, machine, platform, test);
            continue;
        }
        if role.done() {
            let t = *done_at.get_or_insert(now);
            if !role.flushing(&stack.sockets) {
                return;
            }
            if now - t >= SETTLE_LIMIT {
                log::debug!("the role's last segments were still leaving after {} ms", SETTLE_LIMIT.millis());
                return;
            }
            platform.idle(Some(Duration::from_millis(1)));
            continue;
        }
        if progress {
            idle.busy(now);
        } else {
            let delay = next_delay(stack.iface.poll_delay(now, &stack.sockets), role.poll_at(), now);
            idle.wait(platform, now, delay);
        }
    }
}
