//! `uniperf`: iperf3's command line over smoltcp. With `--tap` the stack runs in user space on
//! a Linux TAP device; `uniperf sim` joins a client and a server stack by a simulated link in
//! one process; `uniperf plot`, `collect` and `flowlog` work on per-flow TCP logs.

use crate::machine::LinuxMachine;
use crate::{collect, compare, flowlog_cmd, output, plot, sim, tap};

use anyhow::{Context, Result, anyhow, bail};
use netstack::driver::{self, Platform, Setup, Stack};
use netstack::flowlog::ship::{TestLog, format_name, probe_config};
use netstack::flowlog::{FlowProbe, Format, ProbeConfig};
use netstack::machine::Machine;
use netstack::options::{Options, Target, usage};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::stack::{DATA_BUF_BUDGET, NetConfig, mac_for};
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
    crate::logger::init(false);
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("sim") => sim::run(rest),
        Some("plot") => plot::run(rest),
        Some("collect") => collect::run(rest),
        Some("compare") => compare::run(rest),
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
    let mut machine = LinuxMachine::new();
    if o.version {
        print!("{}", netstack::version_text(&machine.system_info()));
        return Ok(ExitCode::SUCCESS);
    }
    crate::logger::init(o.output.debug);
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
        log::info!(
            "created TAP device {tap_name}; it has no host-side address: give the kernel side one \
             (e.g. `ip addr add 198.18.0.1/24 dev {tap_name}`) or bridge it, while uniperf runs"
        );
    }
    let fd = dev.raw_fd();
    // The probe is always on: it is where the reports' TCP_INFO comes from. It samples for a
    // flow log only when one is wanted.
    let flowlog = o.flowlog.path.as_ref().map(|path| (PathBuf::from(path), o.flowlog.format));
    let cfg = match flowlog {
        Some(_) => probe_config(&o.flowlog, HOST_MAX_SAMPLES),
        None => ProbeConfig::state_only(),
    };
    let dev = FlowProbe::new(dev, cfg).with_frame_clock(monotonic_now);
    let mut seed = [0u8; 8];
    machine.fill_random(&mut seed);
    let net = NetConfig { mac: mac_for(ip.address(), 0x42), ip, gateway: o.net.gateway };
    let mut stack = Stack::new(dev, &net, Clock::new().now(), u64::from_le_bytes(seed));
    let setup = Setup { mss: stack.mss(), buffer_budget: DATA_BUF_BUDGET };
    let mut platform = TapPlatform { clock: Clock::new(), fd, out, error: None };
    crate::signals::install().context("cannot install the SIGINT/SIGTERM/SIGHUP handlers")?;
    let heapstats = crate::heap::stats_wanted();
    if heapstats {
        eprintln!("{}", crate::heap::line("start"));
    }
    let ok = driver::run_options::<server::Server, client::Client, _>(
        &o,
        &setup,
        &mut stack,
        &mut machine,
        &mut platform,
        &mut |_, _, _, role, test, log| {
            let shipped = match &flowlog {
                Some((path, format)) => {
                    let path =
                        if role == "server" { suffixed_path(path, &format!("test{test}")) } else { path.clone() };
                    report_log_write(&path, *format, &log)
                }
                None => true,
            };
            drop(log);
            if heapstats {
                eprintln!("{}", crate::heap::line(&format!("after {role} test {test}")));
            }
            shipped
        },
    )
    .map_err(|e| anyhow!("parameter error - {e}"))?;
    platform.result()?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
    netstack::flowlog::ship::write_chunks(format, &log.samples, 60 * 1024, |chunk| w.write_all(chunk))
        .with_context(|| format!("cannot write flow log '{}'", path.display()))?;
    w.flush().with_context(|| format!("cannot write flow log '{}'", path.display()))?;
    Ok(())
}

/// Writes the log and says where it went (stderr); false if it could not be written.
pub fn report_log_write(path: &Path, format: Format, log: &TestLog) -> bool {
    match write_log_file(path, format, log) {
        Ok(()) => {
            let flows = netstack::flowlog::ship::final_rows(&log.samples);
            log::info!(
                "flow log: {} samples of {flows} flows ({}) written to {}",
                log.samples.len(),
                format_name(format),
                path.display()
            );
            if log.dropped > 0 {
                log::warn!(
                    "flow log: {} samples were dropped (limit {} per test); use a larger \
                     --flowlog-interval",
                    log.dropped,
                    HOST_MAX_SAMPLES
                );
            }
            true
        }
        Err(e) => {
            log::error!("{e:#}");
            false
        }
    }
}
