//! `uniperf`: iperf3's command line over smoltcp. With `--tap` the stack runs in user space on
//! a Linux TAP device; `uniperf sim` joins a client and a server stack by a simulated link in
//! one process; `uniperf plot`, `collect` and `flowlog` work on per-flow TCP logs.

use crate::{collect, flowlog_cmd, host, output, plot, sim, tap};

use anyhow::{Context, Result, anyhow, bail};
use netstack::VERSION;
use netstack::flowlog::{FlowProbe, Format, ProbeConfig};
use netstack::flowlog_ship::{TestLog, format_name, probe_config, take_test_log};
use netstack::options::{Mode, Options, Target, usage};
use netstack::platform::Platform;
use netstack::smoltcp::iface::SocketSet;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use netstack::stack::{NetConfig, build_interface, mac_for};
use output::Output;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PLATFORM_NOTE: &str = "uniperf runs its own TCP/IP stack: give it a TAP device and an address \
(--tap IFNAME --ip ADDR/PREFIX), or use `uniperf sim [client options]` for an in-process run.";

const SUBCOMMANDS_NOTE: &str = "Flow logs: `uniperf plot LOG... -o OUT.png|.svg`, `uniperf collect --listen ADDR:PORT -o DIR` (logs \
from the unikernel), `uniperf flowlog --pcap FILE` (logs from a capture); schema in docs/flowlog.md.";

/// Flow-log samples a Linux run keeps in memory per test (about 200 bytes each); beyond it
/// samples are dropped and the run says so.
pub const HOST_MAX_SAMPLES: usize = 1_000_000;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("sim") => sim::run(rest),
        Some("plot") => plot::run(rest),
        Some("collect") => collect::run(rest),
        Some("flowlog") => flowlog_cmd::run(rest),
        _ => run(&args),
    };
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
    fn interrupted(&mut self) -> Option<&'static str> {
        crate::signals::take()
    }
}

pub fn parse_options(args: &[String], platform: Target) -> Result<Options> {
    let o = Options::parse(args.iter().map(String::as_str), platform).map_err(|e| anyhow!("parameter error - {e}"))?;
    o.validate().map_err(|e| anyhow!("parameter error - {e}"))?;
    Ok(o)
}

/// Microsecond clock since program start, for smoltcp. One epoch for the whole process, so
/// the flow probe can read it per frame (a plain `fn`) on the same scale as the poll loop.
#[derive(Clone, Copy, Default)]
pub struct Clock;

static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

impl Clock {
    pub fn new() -> Self {
        EPOCH.get_or_init(std::time::Instant::now);
        Clock
    }
    pub fn now(&self) -> Instant {
        monotonic_now()
    }
}

/// The process clock as a [`netstack::flowlog::FrameClock`].
pub fn monotonic_now() -> Instant {
    Instant::from_micros(EPOCH.get_or_init(std::time::Instant::now).elapsed().as_micros() as i64)
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let o = parse_options(args, Target::Tap)?;
    if o.help {
        print!("{}", usage("uniperf", Target::Tap, &format!("{PLATFORM_NOTE}\n{SUBCOMMANDS_NOTE}")));
        return Ok(ExitCode::SUCCESS);
    }
    if o.version {
        print!("{}", netstack::version_text(&netstack::host::Host::system_info(&host::LinuxHost::new())));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(tap_name) = o.net.tap.clone() else {
        bail!("parameter error - no network: {PLATFORM_NOTE}");
    };
    let Some(ip) = o.net.ip else {
        bail!("parameter error - --tap needs --ip ADDR/PREFIX for uniperf's own stack (e.g. --ip 198.18.0.2/24)");
    };
    // iperf3 stamps text lines only, never JSON.
    let text = !o.output.json && !o.output.json_stream;
    let out = Output::open(o.output.logfile.as_deref(), o.output.timestamps.as_deref().filter(|_| text))?;
    let offload = std::env::var_os("UNIPERF_TAP_OFFLOAD").is_none_or(|v| v != "0");
    let (dev, created) = tap::TapDevice::open(&tap_name, o.net.mtu, offload)?;
    if created {
        eprintln!(
            "uniperf: created TAP device {tap_name}; it has no host-side address: give the kernel side one \
             (e.g. `ip addr add 198.18.0.1/24 dev {tap_name}`) or bridge it, while uniperf runs"
        );
    }
    let fd = dev.raw_fd();
    let mss = (dev.ip_mtu() - 40) as u32;
    // The probe is always on: it is where the reports' TCP_INFO comes from. It samples for a
    // flow log only when one is wanted.
    let flowlog = o.flowlog.path.clone().map(|path| FlowLogFile {
        path: PathBuf::from(path),
        format: o.flowlog.format,
        cfg: probe_config(&o.flowlog, HOST_MAX_SAMPLES),
    });
    let cfg = flowlog.as_ref().map_or(ProbeConfig::state_only(), |f| f.cfg);
    let clock = Clock::new();
    let dev = FlowProbe::new(dev, cfg).with_frame_clock(monotonic_now);
    run_on(&o, dev, clock, fd, mss, ip, out, flowlog)
}

/// Where a Linux run writes its flow log.
struct FlowLogFile {
    path: PathBuf,
    format: Format,
    cfg: ProbeConfig,
}

/// The test that just ended: its flow log (if one is wanted), and a fresh tracker for the next.
fn take_log(
    dev: &mut FlowProbe<tap::TapDevice>,
    flowlog: Option<&FlowLogFile>,
    streams: &[(i64, IpEndpoint, IpEndpoint)],
    now: Instant,
) -> TestLog {
    let cfg = flowlog.map_or(ProbeConfig::state_only(), |f| f.cfg);
    take_test_log(dev.tracker(), cfg, streams, now.total_micros().max(0) as u64)
}

#[allow(clippy::too_many_arguments)]
fn run_on(
    o: &Options,
    mut dev: FlowProbe<tap::TapDevice>,
    clock: Clock,
    fd: std::os::fd::RawFd,
    mss: u32,
    ip: netstack::smoltcp::wire::Ipv4Cidr,
    out: Output,
    flowlog: Option<FlowLogFile>,
) -> Result<ExitCode> {
    let mut host = host::LinuxHost::new();
    let mut seed = [0u8; 8];
    netstack::host::Host::fill_random(&mut host, &mut seed);
    let net = NetConfig { mac: mac_for(ip.address(), 0x42), ip, gateway: o.net.gateway };
    let mut iface = build_interface(&mut dev, &net, clock.now(), u64::from_le_bytes(seed));
    let mut sockets = SocketSet::new(vec![]);
    let mut platform = TapPlatform { clock, fd, out, error: None };
    crate::signals::install().context("cannot install the SIGINT/SIGTERM/SIGHUP handlers")?;
    match o.mode.clone() {
        Some(Mode::Server) => {
            let mut srv = server::Server::new(server::ServerConfig::from_options(o, mss, VERSION));
            eprintln!("uniperf: ready: listening on {}:{}", ip.address(), o.port);
            server::run_with(&mut srv, &mut iface, &mut dev, &mut sockets, &mut host, &mut platform, |b| {
                let now = b.platform.now();
                let log = take_log(b.dev, flowlog.as_ref(), b.srv.stream_endpoints(), now);
                if let Some(f) = &flowlog {
                    let path = suffixed_path(&f.path, &format!("test{}", b.srv.tests_done()));
                    report_log_write(&path, f.format, &log);
                }
            });
            platform.result()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Mode::Client(host_name)) => {
            let server: Ipv4Address = host_name.parse().with_context(|| {
                format!("parameter error - '{host_name}' is not an IPv4 address (uniperf has no DNS resolver)")
            })?;
            let cfg = client::ClientConfig::from_options(o, IpAddress::Ipv4(server), mss, VERSION);
            let mut cl = client::Client::new(cfg, platform.clock.now(), &mut host);
            let outcome = client::run(&mut cl, &mut iface, &mut dev, &mut sockets, &mut host, &mut platform);
            if let Some(f) = &flowlog {
                let log = take_log(&mut dev, Some(f), cl.stream_endpoints(), platform.clock.now());
                if !report_log_write(&f.path, f.format, &log) {
                    return Ok(ExitCode::from(1));
                }
            }
            platform.result()?;
            // iperf3 3.19+ ends an interrupted test with status 0 after its partial report.
            Ok(if outcome.is_ok() || cl.interrupted() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        None => bail!("parameter error - must either be a client (-c HOST) or server (-s)"),
    }
}

/// `dir/log.csv` + `server` → `dir/log.server.csv`; `log` + `test2` → `log.test2`.
pub fn suffixed_path(path: &Path, tag: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{tag}"),
    };
    path.with_file_name(name)
}

/// Writes one test's flow log (header, then one row per sample).
pub fn write_log_file(path: &Path, format: Format, log: &TestLog) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create flow log '{}'", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rows = netstack::flowlog::RowWriter::new(format);
    let mut buf = Vec::with_capacity(1 << 16);
    rows.header(&mut buf);
    let mut next = 0;
    loop {
        next = netstack::flowlog_ship::write_some(&mut rows, &log.samples, next, &mut buf, 60 * 1024);
        if buf.is_empty() {
            break;
        }
        w.write_all(&buf).with_context(|| format!("cannot write flow log '{}'", path.display()))?;
        buf.clear();
    }
    w.flush().with_context(|| format!("cannot write flow log '{}'", path.display()))?;
    Ok(())
}

/// Writes the log and says where it went (stderr); false if it could not be written.
pub fn report_log_write(path: &Path, format: Format, log: &TestLog) -> bool {
    match write_log_file(path, format, log) {
        Ok(()) => {
            let flows = netstack::flowlog_ship::final_rows(&log.samples);
            eprintln!(
                "uniperf: flow log: {} samples of {flows} flows ({}) written to {}",
                log.samples.len(),
                format_name(format),
                path.display()
            );
            if log.dropped > 0 {
                eprintln!(
                    "uniperf: flow log: {} samples were dropped (limit {} per test); use a larger \
                     --flowlog-interval",
                    log.dropped, HOST_MAX_SAMPLES
                );
            }
            true
        }
        Err(e) => {
            eprintln!("uniperf: error - {e:#}");
            false
        }
    }
}
