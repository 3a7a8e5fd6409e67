//! `uniperf`: iperf3's command line over smoltcp. With `--tap` the stack runs in user space on
//! a Linux TAP device; `uniperf sim` joins a client and a server stack by a simulated link in
//! one process.

use crate::{host, output, sim, tap};

use anyhow::{Context, Result, anyhow, bail};
use netstack::options::{Mode, Options, usage};
use netstack::platform::Platform;
use netstack::smoltcp::iface::SocketSet;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, Ipv4Address};
use netstack::stack::{NetConfig, build_interface, mac_for};
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

/// The TAP program's clock, idle wait (poll(2) on the TAP) and report output.
struct TapPlatform {
    clock: Clock,
    fd: std::os::fd::RawFd,
    out: Output,
    error: Option<anyhow::Error>,
}

impl TapPlatform {
    fn result(&mut self) -> Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

impl Platform for TapPlatform {
    fn now(&mut self) -> Instant {
        self.clock.now()
    }
    fn idle(&mut self, delay: Option<Duration>) {
        tap::wait_readable(self.fd, delay);
    }
    fn output(&mut self, text: &str) {
        if let Err(e) = self.out.write(text)
            && self.error.is_none()
        {
            self.error = Some(e);
        }
    }
}

pub fn parse_options(args: &[String]) -> Result<Options> {
    let o = Options::parse(args.iter().map(String::as_str)).map_err(|e| anyhow!("parameter error - {e}"))?;
    o.validate().map_err(|e| anyhow!("parameter error - {e}"))?;
    Ok(o)
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
    let out = Output::open(o.logfile.as_deref(), o.forceflush)?;
    let offload = std::env::var_os("UNIPERF_TAP_OFFLOAD").is_none_or(|v| v != "0");
    let (mut dev, created) = tap::TapDevice::open(&tap_name, o.mtu, offload)?;
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
    let mut platform = TapPlatform { clock, fd: dev.raw_fd(), out, error: None };
    match o.mode.clone() {
        Some(Mode::Server) => {
            let mut srv = server::Server::new(server::ServerConfig::from_options(&o, mss, VERSION));
            eprintln!("uniperf: ready: listening on {}:{}", ip.address(), o.port);
            server::run(&mut srv, &mut iface, &mut dev, &mut sockets, &mut host, &mut platform);
            platform.result()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Mode::Client(host_name)) => {
            let server: Ipv4Address = host_name.parse().with_context(|| {
                format!("parameter error - '{host_name}' is not an IPv4 address (uniperf has no DNS resolver)")
            })?;
            let cfg = client::ClientConfig::from_options(&o, IpAddress::Ipv4(server), mss, VERSION);
            let mut cl = client::Client::new(cfg, platform.clock.now(), &mut host);
            let outcome = client::run(&mut cl, &mut iface, &mut dev, &mut sockets, &mut host, &mut platform);
            platform.result()?;
            Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        None => bail!("parameter error - must either be a client (-c HOST) or server (-s)"),
    }
}
