//! `uniperf sim`: a uniperf server and client, each with its own smoltcp interface, joined by
//! a simulated link (delay, loss, rate, queue) on a virtual clock. Deterministic for a given
//! seed, needs no root, and runs as fast as the CPU allows: a `-t 10` test is 10 s of virtual
//! time, however long it takes to compute. With `--flowlog FILE` a flow probe watches each
//! stack's port: the client's log goes to FILE, the server's to FILE with `.server` before the
//! extension (`log.csv` → `log.server.csv`), both on the virtual clock.

use crate::cli::{HOST_MAX_SAMPLES, parse_options, report_log_write, suffixed_path};
use anyhow::{Result, anyhow, bail};
use netstack::VERSION;
use netstack::flowlog::{FlowProbe, FlowTracker, ProbeConfig};
use netstack::flowlog_ship::{TestLog, probe_config, take_test_log};
use netstack::host::{SimHost, SplitMix64};
use netstack::options::{Mode, Options, Target};
use netstack::sim::{Direction, End, LinkConfig, SimLink};
use netstack::smoltcp::iface::{Interface, PollResult, SocketSet};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Cidr};
use netstack::stack::{NetConfig, build_interface, mac_for};
use std::process::ExitCode;

/// Without `--rate` the link still has one: an infinitely fast link lets a whole test happen
/// at one virtual instant.
pub const DEFAULT_RATE: u64 = 10_000_000_000;
/// Default bottleneck queue: twice a default 4 MiB socket window.
pub const DEFAULT_QUEUE: usize = 8 * 1024 * 1024;
/// Bound on virtual time past the test's own length, so a wedged simulation ends.
const SIM_GRACE: Duration = Duration::from_secs(120);

const SERVER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);

/// One end of the simulation: an interface, its sockets and a host.
struct Node {
    iface: Interface,
    sockets: SocketSet<'static>,
    host: SimHost,
}

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

/// The two stacks' flow trackers. The simulated link hands out a fresh port per poll, so each
/// poll wraps that port in a probe holding the stack's tracker for the duration of the poll.
struct Probes {
    cfg: ProbeConfig,
    server: FlowTracker,
    client: FlowTracker,
}

/// Polls one stack through its probe: the tracker is lent to a probe around this poll's port
/// (the link hands out a port per poll).
fn poll_probed(
    iface: &mut Interface,
    port: netstack::sim::Port<'_>,
    sockets: &mut SocketSet<'static>,
    now: Instant,
    tracker: &mut FlowTracker,
) -> bool {
    iface.poll(now, &mut FlowProbe::with_tracker(port, tracker), sockets) != PollResult::None
}

pub fn link_config(o: &Options) -> LinkConfig {
    let mut link = LinkConfig {
        delay: Duration::from_micros((o.sim.delay_ms * 1000.0) as u64),
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
    let link_cfg = link_config(o);
    let mut link = SimLink::new(link_cfg.clone()).map_err(|e| anyhow!("parameter error - link {e}"))?;
    let mut now = Instant::ZERO;
    let mut rng = SplitMix64(o.sim.seed ^ 0x5eed);
    let node = |ip: Ipv4Address, salt: u8, end: End, link: &mut SimLink, rng: &mut SplitMix64| Node {
        iface: build_interface(
            &mut link.port(end),
            &NetConfig { mac: mac_for(ip, salt), ip: Ipv4Cidr::new(ip, 24), gateway: None },
            Instant::ZERO,
            rng.next_u64(),
        ),
        sockets: SocketSet::new(vec![]),
        host: SimHost { rng: SplitMix64(rng.next_u64()), name: format!("uniperf-sim {ip}") },
    };
    let mut srv_node = node(SERVER_IP, 0x51, End::A, &mut link, &mut rng);
    let mut cli_node = node(CLIENT_IP, 0xc1, End::B, &mut link, &mut rng);
    let mss = (link_cfg.mtu - 14 - 40) as u32;

    let mut server = server::Server::new(server::ServerConfig {
        one_off: true,
        ..server::ServerConfig::from_options(o, mss, VERSION)
    });
    let mut client = client::Client::new(
        client::ClientConfig::from_options(o, IpAddress::Ipv4(SERVER_IP), mss, VERSION),
        now,
        &mut cli_node.host,
    );
    let params = o.to_params();
    let limit = Duration::from_secs((params.time + params.omit) as u64) + SIM_GRACE;
    let mut output = String::new();
    let mut server_output = String::new();
    let mut done_at: Option<Instant> = None;
    let mut same_instant = 0u32;
    // The probes are always on (they give the reports TCP_INFO); they sample for flow logs
    // only with --flowlog.
    let cfg = match o.flowlog.path {
        Some(_) => probe_config(&o.flowlog, HOST_MAX_SAMPLES),
        None => ProbeConfig::state_only(),
    };
    let mut probes = Probes { cfg, server: FlowTracker::new(cfg), client: FlowTracker::new(cfg) };
    loop {
        let p = &mut probes;
        let mut progress =
            poll_probed(&mut srv_node.iface, link.port(End::A), &mut srv_node.sockets, now, &mut p.server);
        progress |= server.poll(now, &mut srv_node.sockets, &mut srv_node.host, &p.server);
        progress |= poll_probed(&mut cli_node.iface, link.port(End::B), &mut cli_node.sockets, now, &mut p.client);
        progress |= client.poll(now, &mut cli_node.iface, &mut cli_node.sockets, &mut cli_node.host, &p.client);
        output.push_str(&client.take_output());
        server_output.push_str(&server.take_output());

        if client.outcome().is_some() {
            let t = *done_at.get_or_insert(now);
            if (server.finished() && !client.flushing(&cli_node.sockets)) || now - t > Duration::from_secs(5) {
                break;
            }
        }
        if now > Instant::ZERO + limit {
            bail!("simulation did not finish within {} s of virtual time", limit.secs());
        }
        // Stay at this instant while work is being done; then jump to the next event.
        if progress && same_instant < 64 {
            same_instant += 1;
            continue;
        }
        same_instant = 0;
        let mut next = now + Duration::from_secs(1);
        for t in [
            srv_node.iface.poll_at(now, &srv_node.sockets),
            cli_node.iface.poll_at(now, &cli_node.sockets),
            link.next_arrival(),
            server.poll_at(),
            client.poll_at(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        now = if next > now { next } else { now + Duration::from_micros(1) };
    }
    let outcome = client.outcome().cloned().unwrap_or(Err("no outcome".into()));
    let t_us = now.total_micros() as u64;
    let flowlogs = o.flowlog.path.is_some().then(|| {
        let p = &mut probes;
        (
            take_test_log(&mut p.client, p.cfg, client.stream_endpoints(), t_us),
            take_test_log(&mut p.server, p.cfg, server.stream_endpoints(), t_us),
        )
    });
    Ok(SimReport {
        output,
        server_output,
        outcome,
        virtual_secs: now.total_micros() as f64 / 1e6,
        to_server: link.stats(Direction::BtoA),
        to_client: link.stats(Direction::AtoB),
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
