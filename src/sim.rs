//! `uniperf sim`: a uniperf server and client, each with its own smoltcp interface, joined by
//! a simulated link (delay, loss, rate, queue) on a virtual clock. Deterministic for a given
//! seed, needs no root, and runs as fast as the CPU allows: a `-t 10` test is 10 s of virtual
//! time, however long it takes to compute. With `--flowlog FILE` a flow probe watches each
//! stack's port: the client's log goes to FILE, the server's to FILE with `.server` before the
//! extension (`log.csv` → `log.server.csv`), both on the virtual clock.

use crate::cli::{HOST_MAX_SAMPLES, parse_options, report_log_write, suffixed_path};
use anyhow::{Result, anyhow, bail};
use netstack::driver::FromOptions;
use netstack::flowlog::ProbeConfig;
use netstack::flowlog::ship::{TestLog, probe_config, take_test_log};
use netstack::options::{Mode, Options, Target};
use netstack::sim::{Direction, LinkConfig, Pair, SERVER_IP};
use netstack::smoltcp::time::Duration;
use std::process::ExitCode;

/// Without `--rate` the link still has one: an infinitely fast link lets a whole test happen
/// at one virtual instant.
pub const DEFAULT_RATE: u64 = 10_000_000_000;
/// Default bottleneck queue: twice a default 4 MiB socket window.
pub const DEFAULT_QUEUE: usize = 8 * 1024 * 1024;
/// Bound on virtual time past the test's own length, so a wedged simulation ends.
const SIM_GRACE: Duration = Duration::from_secs(120);

pub struct SimReport {
    pub output: String,
    pub server_output: String,
    pub outcome: Result<(), String>,
    pub virtual_secs: f64,
    pub to_server: netstack::sim::LinkStats,
    pub to_client: netstack::sim::LinkStats,
    /// With `--flowlog`: the client's and the server's flow logs.
    pub flowlogs: Option<(TestLog, TestLog)>,
}

pub fn link_config(o: &Options) -> LinkConfig {
    let mut link = LinkConfig {
        delay: Duration::from_micros((o.sim.delay_ms * 1000.0) as u64),
        jitter: Duration::from_micros((o.sim.jitter_ms * 1000.0) as u64),
        loss: o.sim.loss_pct / 100.0,
        rate_bps: Some(o.sim.rate_bps.unwrap_or(DEFAULT_RATE)),
        seed: o.sim.seed,
        ..LinkConfig::default()
    };
    // By default the bottleneck queue holds a whole default socket window, so a plain
    // `uniperf sim` measures the stacks rather than smoltcp's loss recovery (1 s minimum
    // RTO); pass --queue to study drops.
    link.queue_bytes = o.sim.queue_bytes.map_or(DEFAULT_QUEUE, |q| q as usize);
    if let Some(m) = o.net.mtu {
        link.mtu = m as usize + 14;
    }
    link
}

/// Runs one client test against an in-process server and returns what both printed.
pub fn simulate(o: &Options) -> Result<SimReport> {
    let Some(Mode::Client(_)) = &o.mode else {
        bail!("parameter error - `uniperf sim` runs a client test: give client options (e.g. -t 5 -P 2), not -s");
    };
    // The probes are always on (they give the reports TCP_INFO); they sample for flow logs
    // only with --flowlog.
    let probe = match o.flowlog.path {
        Some(_) => probe_config(&o.flowlog, HOST_MAX_SAMPLES),
        None => ProbeConfig::state_only(),
    };
    let mut pair = Pair::new(link_config(o), o.sim.seed, probe).map_err(|e| anyhow!("parameter error - link {e}"))?;
    let setup = pair.setup();
    let mut server_opts = o.clone();
    server_opts.mode = Some(Mode::Server);
    server_opts.server.one_off = true;
    let mut server = server::Server::new(server::ServerConfig::from_options(&server_opts, &setup));
    let mut client = client::Client::from_options(o, &setup, pair.now, &mut pair.client.machine)
        .map_err(|e| anyhow!("parameter error - {e}"))?;
    let params = o.to_params();
    let limit = Duration::from_secs((params.time + params.omit) as u64) + SIM_GRACE;
    pair.run_test(&mut server, &mut client, limit).map_err(|e| anyhow!(e))?;
    let outcome = client.outcome().cloned().unwrap_or(Err("no outcome".into()));
    let t_us = pair.now.total_micros() as u64;
    let flowlogs = o.flowlog.path.is_some().then(|| {
        let streams = |n: &netstack::sim::Node| n.ended.last().map(|t| t.streams.clone()).unwrap_or_default();
        let (cs, ss) = (streams(&pair.client), streams(&pair.server));
        (take_test_log(&mut pair.client.tracker, &cs, t_us), take_test_log(&mut pair.server.tracker, &ss, t_us))
    });
    Ok(SimReport {
        output: std::mem::take(&mut pair.client.output),
        server_output: std::mem::take(&mut pair.server.output),
        outcome,
        virtual_secs: pair.now.total_micros() as f64 / 1e6,
        to_server: pair.link.stats(Direction::BtoA),
        to_client: pair.link.stats(Direction::AtoB),
        flowlogs,
    })
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let mut args: Vec<String> = args.to_vec();
    // `uniperf sim -t 5` means a client test against the simulated server.
    if !args.iter().any(|a| a == "-c" || a.starts_with("--client") || a == "-h" || a == "--help") {
        args.insert(0, SERVER_IP.to_string());
        args.insert(0, "-c".into());
    }
    let o = parse_options(&args, Target::Sim)?;
    if o.help {
        print!(
            "{}",
            netstack::options::usage(
                "uniperf sim",
                Target::Sim,
                "Runs a client test against an in-process server over a simulated link \
                 (virtual time; deterministic for a given --seed)."
            )
        );
        return Ok(ExitCode::SUCCESS);
    }
    let r = simulate(&o)?;
    print!("{}", r.output);
    let mut logs_ok = true;
    if let (Some(path), Some((client_log, server_log))) = (&o.flowlog.path, &r.flowlogs) {
        let path = std::path::Path::new(path);
        logs_ok &= report_log_write(path, o.flowlog.format, client_log);
        logs_ok &= report_log_write(&suffixed_path(path, "server"), o.flowlog.format, server_log);
    }
    let pct = |s: &netstack::sim::LinkStats| {
        if s.frames_sent == 0 {
            0.0
        } else {
            100.0 * (s.frames_lost + s.frames_queue_dropped) as f64 / s.frames_sent as f64
        }
    };
    eprintln!(
        "uniperf sim: {:.3} s virtual; link to server: {} frames, {} lost, {} queue drops ({:.3}%); \
         to client: {} frames, {} lost, {} queue drops ({:.3}%)",
        r.virtual_secs,
        r.to_server.frames_sent,
        r.to_server.frames_lost,
        r.to_server.frames_queue_dropped,
        pct(&r.to_server),
        r.to_client.frames_sent,
        r.to_client.frames_lost,
        r.to_client.frames_queue_dropped,
        pct(&r.to_client),
    );
    Ok(if r.outcome.is_ok() && logs_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
