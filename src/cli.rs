//! `uniperf`: iperf3's command line over smoltcp. With `--tap` the stack runs in user space on
//! a Linux TAP device; `uniperf sim` joins a client and a server stack by a simulated link in
//! one process.

use crate::{host, output, sim, tap};

use anyhow::{Context, Result, anyhow, bail};
use netstack::options::{Mode, Options, usage};
use netstack::report::{OutputFormat, ReportConfig, Side};
use netstack::smoltcp::iface::SocketSet;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, Ipv4Address};
use netstack::stack::{Congestion, NetConfig, build_interface, mac_for};
use output::Output;
use std::process::ExitCode;

pub const VERSION: &str = concat!("uniperf ", env!("CARGO_PKG_VERSION"), " (iperf 3.12 protocol, smoltcp 0.14)");

const PLATFORM_NOTE: &str = "uniperf runs its own TCP/IP stack: give it a TAP device and an address \
(--tap IFNAME --ip ADDR/PREFIX), or use `uniperf sim [client options]` for an in-process run.";

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("sim") { sim::run(&args[1..]) } else { run(&args) };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uniperf: error - {e:#}");
            ExitCode::from(1)
        }
    }
}

pub fn report_config(o: &Options, side: Side) -> ReportConfig {
    ReportConfig {
        side,
        format: if o.json {
            OutputFormat::Json
        } else if o.json_stream {
            OutputFormat::JsonStream
        } else {
            OutputFormat::Text
        },
        unit: o.format,
        verbose: o.verbose,
        title: o.title.clone(),
        forceflush: o.forceflush,
    }
}

pub fn parse_options(args: &[String]) -> Result<Options> {
    let o = Options::parse(args.iter().map(String::as_str)).map_err(|e| anyhow!("parameter error - {e}"))?;
    o.validate().map_err(|e| anyhow!("parameter error - {e}"))?;
    Ok(o)
}

pub fn congestion(o: &Options) -> Congestion {
    o.congestion.as_deref().and_then(|c| Congestion::parse(c).ok()).unwrap_or(Congestion::default_for_build())
}

/// Microsecond clock since program start, for smoltcp.
#[derive(Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Default for Clock {
    fn default() -> Self {
        Clock(std::time::Instant::now())
    }
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as i64)
    }
}

/// The earlier of the interface's and the role's next deadline, as a delay from `now`.
fn next_delay(iface_delay: Option<Duration>, role_at: Option<Instant>, now: Instant) -> Option<Duration> {
    let role = role_at.map(|at| if at > now { at - now } else { Duration::ZERO });
    match (iface_delay, role) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sleeping in poll(2) after every quiet pass costs a context switch per ACK (perf showed a
/// quarter of the sender's time in the scheduler), so we spin for a short while first.
#[derive(Default)]
struct IdleWait {
    last_busy: Option<Instant>,
}

const SPIN: Duration = Duration::from_micros(200);

impl IdleWait {
    fn busy(&mut self, now: Instant) {
        self.last_busy = Some(now);
    }

    fn wait(&mut self, dev: &tap::TapDevice, now: Instant, delay: Option<Duration>) {
        if delay == Some(Duration::ZERO) || self.last_busy.is_some_and(|t| now - t < SPIN) {
            std::hint::spin_loop();
            return;
        }
        dev.wait(delay);
    }
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let o = parse_options(args)?;
    if o.help {
        print!("{}", usage("uniperf", PLATFORM_NOTE));
        return Ok(ExitCode::SUCCESS);
    }
    if o.version {
        println!("{VERSION}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(opt) = o.first_unsupported(&["tap", "ip", "gateway", "mtu"]) {
        bail!("parameter error - --{opt} is a `uniperf sim` option");
    }
    let Some(tap_name) = o.tap.clone() else {
        bail!("parameter error - no network: {PLATFORM_NOTE}");
    };
    let Some(ip) = o.ip else {
        bail!("parameter error - --tap needs --ip ADDR/PREFIX for uniperf's own stack (e.g. --ip 198.18.0.2/24)");
    };
    let mut out = Output::open(o.logfile.as_deref(), o.forceflush)?;
    let (mut dev, created) = tap::TapDevice::open(&tap_name, o.mtu)?;
    if created {
        eprintln!(
            "uniperf: created TAP device {tap_name}; it has no host-side address: give the kernel side one \
             (e.g. `ip addr add 198.18.0.1/24 dev {tap_name}`) or bridge it, while uniperf runs"
        );
    }
    let clock = Clock::new();
    let mut host = host::LinuxHost::new();
    let mut seed = [0u8; 8];
    netstack::host::Host::fill_random(&mut host, &mut seed);
    let net = NetConfig { mac: mac_for(ip.address(), 0x42), ip, gateway: o.gateway };
    let mut iface = build_interface(&mut dev, &net, clock.now(), u64::from_le_bytes(seed));
    let mut sockets = SocketSet::new(vec![]);
    let mss = (dev.ip_mtu() - 40) as u32;
    match o.mode.clone() {
        Some(Mode::Server) => {
            let cfg = server::ServerConfig {
                port: o.port,
                one_off: o.one_off,
                idle_timeout: Duration::from_secs(o.idle_timeout.unwrap_or(10) as u64),
                interval: o.interval,
                report: report_config(&o, Side::Server),
                congestion: congestion(&o),
                mss,
                version: VERSION.into(),
            };
            let mut srv = server::Server::new(cfg);
            let mut idle = IdleWait::default();
            eprintln!("uniperf: ready: listening on {}:{}", ip.address(), o.port);
            loop {
                let now = clock.now();
                let mut progress =
                    iface.poll(now, &mut dev, &mut sockets) != netstack::smoltcp::iface::PollResult::None;
                progress |= srv.poll(now, &mut sockets, &mut host);
                out.write(&srv.take_output())?;
                if srv.finished() {
                    // Let the last FIN and ACKs leave.
                    let until = clock.now() + Duration::from_millis(200);
                    while clock.now() < until {
                        iface.poll(clock.now(), &mut dev, &mut sockets);
                        dev.wait(Some(Duration::from_millis(10)));
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                if progress {
                    idle.busy(now);
                } else {
                    let delay = next_delay(iface.poll_delay(now, &sockets), srv.poll_at(), now);
                    idle.wait(&dev, now, delay);
                }
            }
        }
        Some(Mode::Client(host_name)) => {
            let server: Ipv4Address = host_name.parse().with_context(|| {
                format!("parameter error - '{host_name}' is not an IPv4 address (uniperf has no DNS resolver)")
            })?;
            let cfg = client::ClientConfig {
                server: IpAddress::Ipv4(server),
                server_name: host_name.clone(),
                port: o.port,
                params: o.to_params(),
                interval: o.interval,
                report: report_config(&o, Side::Client),
                connect_timeout: Duration::from_millis(o.connect_timeout_ms.unwrap_or(10_000) as u64),
                stall_timeout: Duration::from_secs(30),
                congestion: congestion(&o),
                mss,
                version: VERSION.into(),
            };
            let mut cl = client::Client::new(cfg, clock.now(), &mut host);
            let mut done_at: Option<Instant> = None;
            let mut idle = IdleWait::default();
            loop {
                let now = clock.now();
                let mut progress =
                    iface.poll(now, &mut dev, &mut sockets) != netstack::smoltcp::iface::PollResult::None;
                progress |= cl.poll(now, &mut iface, &mut sockets, &mut host);
                out.write(&cl.take_output())?;
                if let Some(outcome) = cl.outcome() {
                    let t = *done_at.get_or_insert(now);
                    if !cl.flushing(&sockets) || now - t > Duration::from_millis(500) {
                        iface.poll(clock.now(), &mut dev, &mut sockets);
                        return Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) });
                    }
                }
                if progress {
                    idle.busy(now);
                } else {
                    let mut delay = next_delay(iface.poll_delay(now, &sockets), cl.poll_at(), now);
                    if done_at.is_some() {
                        delay = Some(Duration::from_millis(5));
                    }
                    idle.wait(&dev, now, delay);
                }
            }
        }
        None => bail!("parameter error - must either be a client (-c HOST) or server (-s)"),
    }
}
