//! End-to-end interop over TAP devices inside throw-away network namespaces: stock `iperf3 -c`
//! against `uniperf -s`, `uniperf -c` against stock `iperf3 -s` — each case against Debian's
//! 3.12 and against 3.22 — and uniperf against itself across a bridge; plus stock iperf3 ↔
//! iperf3 over a veth pair as the reference the byte tolerance was taken from. Needs root;
//! skipped loudly without it (never under CI=true).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// One row of the test matrix: the client flags and what they mean for byte accounting.
struct Case {
    args: &'static [&'static str],
    dir: Direction,
    streams: usize,
    omit: bool,
    /// `-n`: the sender must have sent exactly this much.
    exact_sent: Option<u64>,
    /// Longest the client may take.
    deadline: Duration,
    /// The client reports with `--json-stream` instead of `-J`.
    json_stream: bool,
}

const T2: Duration = Duration::from_secs(40);

const JSON: Case = Case {
    args: &["-t", "2"],
    dir: Direction::Forward,
    streams: 1,
    omit: false,
    exact_sent: None,
    deadline: T2,
    json_stream: false,
};
const REVERSE: Case = Case { args: &["-t", "2", "-R"], dir: Direction::Reverse, ..JSON };
const JSON_STREAM: Case = Case { json_stream: true, ..JSON };
/// `--get-server-output`: the server's own document travels back in the client's.
const SERVER_OUTPUT: Case = Case { args: &["-t", "2", "--get-server-output"], ..JSON };
const BIDIR: Case = Case {
    args: &["-t", "2", "--bidir"],
    dir: Direction::Bidir,
    streams: 1,
    omit: false,
    exact_sent: None,
    deadline: T2,
    json_stream: false,
};
const PARALLEL4: Case = Case {
    args: &["-t", "2", "-P", "4"],
    dir: Direction::Forward,
    streams: 4,
    omit: false,
    exact_sent: None,
    deadline: T2,
    json_stream: false,
};
const BYTES_100M: Case = Case {
    args: &["-n", "100M"],
    dir: Direction::Forward,
    streams: 1,
    omit: false,
    exact_sent: Some(100 << 20),
    deadline: Duration::from_secs(90),
    json_stream: false,
};
const OMIT1: Case = Case {
    args: &["-t", "2", "-O", "1"],
    dir: Direction::Forward,
    streams: 1,
    omit: true,
    exact_sent: None,
    deadline: T2,
    json_stream: false,
};

/// How long a `-1` server may take to print its document and exit once its client is done.
const SERVER_EXIT: Duration = Duration::from_secs(15);
/// Lifetime of a server process (it is killed on drop anyway).
const SERVER_LIFE: Duration = Duration::from_secs(150);

/// The case's client arguments with `-J` (or `--json-stream`).
fn with_json<'a>(case: &Case) -> Vec<&'a str> {
    let mut v = case.args.to_vec();
    v.push(if case.json_stream { "--json-stream" } else { "-J" });
    v
}

/// The client's `-J` document (rebuilt from the events with `--json-stream`); on failure
/// shows the client's and the server's output.
#[track_caller]
fn client_json(client: &Finished, server: &mut Proc) -> Value {
    let doc = if client.stdout.trim_start().starts_with("{\"event\"") {
        json_stream_document(&client.stdout)
    } else {
        serde_json::from_str::<Value>(&client.stdout).map_err(|e| e.to_string())
    };
    match doc {
        Ok(v) if client.success() && v.get("error").is_none() => v,
        other => panic!("client failed ({other:?}):\n{}\n--- server:\n{}", client.describe(), server.describe()),
    }
}

/// The `-1 -J` server's document, once it has exited.
#[track_caller]
fn server_json(server: &mut Proc) -> Value {
    let done = server.wait_timeout(SERVER_EXIT);
    done.expect_json_success()
}

#[track_caller]
/// `stock_client`: the stock release that was the client, if one was (its `-n` has its own
/// quirks, [`assert_stock_sent`]); `races`: ([`stock_sender_race`], [`stock_writer_race`]).
fn check_case(
    case: &Case,
    label: &str,
    client: &Value,
    server: &Value,
    stock_pair: bool,
    stock_client: Option<Peer>,
    races: (u64, u64),
) {
    // uniperf counts -O so that a receiver never reports more than its sender sent; stock
    // iperf3 pairs do (the reference checks them with the tolerance).
    let omit = case.omit && stock_pair;
    let (fwd, rev) = assert_pair_consistent_with(client, server, case.dir, case.streams, omit, races.0, races.1);
    if let Some(n) = case.exact_sent {
        let sent = sum_sent_bytes(client);
        match stock_client {
            Some(peer) => assert_stock_sent(peer, sent, n, "-n"),
            None => assert_eq!(sent, n, "-n: the client sent {sent} B, not the {n} B asked for"),
        }
    }
    if case.args.contains(&"--get-server-output") {
        let inner = json_at(client, &["server_output_json"]);
        assert_eq!(
            sum_received_bytes(inner),
            sum_received_bytes(client),
            "server_output_json.end.sum_received.bytes must equal the client's end.sum_received.bytes"
        );
    }
    if case.omit {
        assert!(has_omitted_interval(client), "-O 1: the client's intervals[] has none marked omitted");
        assert!(has_omitted_interval(server), "-O 1: the server's intervals[] has none marked omitted");
    }
    // sum_received is the client→server direction, or server→client with -R.
    let rate = gbps(sum_received_bps(client));
    eprintln!("{label} {:?}: received client→server {fwd} B, server→client {rev} B; {rate:.3} Gbit/s", case.args);
}

#[track_caller]
fn assert_client_text(out: &str) {
    for needle in ["Connecting to host", "sender", "receiver", "iperf Done."] {
        assert!(out.contains(needle), "client text output lacks {needle:?}:\n{out}");
    }
    assert!(
        out.lines().any(|l| l.contains(" sec ") && l.contains("bits/sec")),
        "client text output has no interval/summary line with \" sec \" and \"bits/sec\":\n{out}"
    );
}

#[track_caller]
fn assert_server_text(out: &str) {
    for needle in ["Server listening on 5201", "Accepted connection from", "receiver"] {
        assert!(out.contains(needle), "server text output lacks {needle:?}:\n{out}");
    }
}

/// Stock `iperf3 -c 198.18.0.2` in the namespace against `uniperf -s` on the TAP.
mod stock_client_uniperf_server {
    use super::*;

    fn run(peer: Peer, case: &Case) {
        if !require_root_or_skip() || !peer.available_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = tap_topology();
        let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1", "-J"], SERVER_LIFE);
        let bin = peer.bin();
        let mut args = vec![bin.as_str(), "-c", UNIPERF_IP];
        args.extend(with_json(case));
        let client = ns.spawn("iperf3-client", &args, case.deadline).wait();
        let cj = client_json(&client, &mut server);
        let sj = server_json(&mut server);
        let unreported = stock_writer_race(peer, case.streams);
        check_case(
            case,
            &format!("iperf3 {} -c → uniperf -s", peer.label()),
            &cj,
            &sj,
            false,
            Some(peer),
            (0, unreported),
        );
        if case.dir == Direction::Reverse {
            assert_sender_tcp_info("uniperf server (-R)", &sj);
        }
    }

    fn default_text(peer: Peer) {
        if !require_root_or_skip() || !peer.available_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = tap_topology();
        let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1"], SERVER_LIFE);
        let bin = peer.bin();
        let client = ns.spawn("iperf3-client", &[bin.as_str(), "-c", UNIPERF_IP, "-t", "2"], T2).wait();
        if !client.success() {
            panic!("client failed:\n{}\n--- server:\n{}", client.describe(), server.describe());
        }
        assert_client_text(&client.stdout);
        let done = server.wait_timeout(SERVER_EXIT);
        done.expect_success();
        assert_server_text(&done.stdout);
    }

    against_both! {
        default_text => default_text;
        json => |p| run(p, &JSON);
        reverse => |p| run(p, &REVERSE);
        bidir => |p| run(p, &BIDIR);
        parallel4 => |p| run(p, &PARALLEL4);
        bytes_100m => |p| run(p, &BYTES_100M);
        omit1 => |p| run(p, &OMIT1);
        server_output => |p| run(p, &SERVER_OUTPUT);
    }

    /// `--json-stream` came with iperf3 3.17: only the 3.22 client has it.
    #[test]
    fn json_stream_v322() {
        run(Peer::V322, &JSON_STREAM);
    }
}

/// `uniperf -c 198.18.0.1 --tap tap0` against stock `iperf3 -s -1` on the kernel side of the TAP.
mod uniperf_client_stock_server {
    use super::*;

    fn client_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![UNIPERF, "-c", KERNEL_IP, "--tap", "tap0", "--ip", "198.18.0.2/24"];
        args.extend_from_slice(extra);
        args
    }

    fn run(peer: Peer, case: &Case) {
        if !require_root_or_skip() || !peer.available_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = tap_topology();
        let mut server = start_peer_server(peer, &ns, &["-1", "-J"], SERVER_LIFE);
        let client = ns.spawn("uniperf-client", &client_args(&with_json(case)), case.deadline).wait();
        let cj = client_json(&client, &mut server);
        let sj = server_json(&mut server);
        let race = stock_sender_race(peer, case.streams);
        check_case(case, &format!("uniperf -c → iperf3 {} -s", peer.label()), &cj, &sj, false, None, (race, 0));
        if case.dir == Direction::Forward {
            assert_sender_tcp_info("uniperf client", &cj);
        }
    }

    fn default_text(peer: Peer) {
        if !require_root_or_skip() || !peer.available_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = tap_topology();
        let mut server = start_peer_server(peer, &ns, &["-1"], SERVER_LIFE);
        let client = ns.spawn("uniperf-client", &client_args(&["-t", "2"]), T2).wait();
        if !client.success() {
            panic!("client failed:\n{}\n--- server:\n{}", client.describe(), server.describe());
        }
        assert_client_text(&client.stdout);
        let done = server.wait_timeout(SERVER_EXIT);
        done.expect_success();
        assert_server_text(&done.stdout);
    }

    against_both! {
        default_text => default_text;
        json => |p| run(p, &JSON);
        reverse => |p| run(p, &REVERSE);
        bidir => |p| run(p, &BIDIR);
        parallel4 => |p| run(p, &PARALLEL4);
        bytes_100m => |p| run(p, &BYTES_100M);
        omit1 => |p| run(p, &OMIT1);
        json_stream => |p| run(p, &JSON_STREAM);
        server_output => |p| run(p, &SERVER_OUTPUT);
    }
}

/// `uniperf -c` on tap1 (198.18.0.3) against `uniperf -s` on tap0 (198.18.0.2), both TAPs on one
/// bridge.
mod uniperf_client_uniperf_server {
    use super::*;

    fn run(case: &Case) {
        if !require_root_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = bridge_topology();
        let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1", "-J"], SERVER_LIFE);
        let mut args = vec![UNIPERF, "-c", UNIPERF_IP, "--tap", "tap1", "--ip", "198.18.0.3/24"];
        args.extend(with_json(case));
        let client = ns.spawn("uniperf-client", &args, case.deadline).wait();
        let cj = client_json(&client, &mut server);
        let sj = server_json(&mut server);
        check_case(case, "uniperf -c → uniperf -s", &cj, &sj, false, None, (0, 0));
    }

    #[test]
    fn default_text() {
        if !require_root_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = bridge_topology();
        let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1"], SERVER_LIFE);
        let args = [UNIPERF, "-c", UNIPERF_IP, "--tap", "tap1", "--ip", "198.18.0.3/24", "-t", "2"];
        let client = ns.spawn("uniperf-client", &args, T2).wait();
        if !client.success() {
            panic!("client failed:\n{}\n--- server:\n{}", client.describe(), server.describe());
        }
        assert_client_text(&client.stdout);
        let done = server.wait_timeout(SERVER_EXIT);
        done.expect_success();
        assert_server_text(&done.stdout);
    }

    #[test]
    fn json() {
        run(&JSON);
    }

    #[test]
    fn reverse() {
        run(&REVERSE);
    }

    #[test]
    fn bidir() {
        run(&BIDIR);
    }

    #[test]
    fn parallel4() {
        run(&PARALLEL4);
    }

    #[test]
    fn get_server_output() {
        if !require_root_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = bridge_topology();
        let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1", "-J"], SERVER_LIFE);
        let args = [
            UNIPERF,
            "-c",
            UNIPERF_IP,
            "--tap",
            "tap1",
            "--ip",
            "198.18.0.3/24",
            "-t",
            "1",
            "-J",
            "--get-server-output",
        ];
        let client = ns.spawn("uniperf-client", &args, T2).wait();
        let cj = client_json(&client, &mut server);
        let inner = json_at(&cj, &["server_output_json"]);
        assert_eq!(
            sum_received_bytes(inner),
            sum_received_bytes(&cj),
            "server_output_json.end.sum_received.bytes must equal the client's end.sum_received.bytes"
        );
        server_json(&mut server);
    }
}

/// Stock iperf3 ↔ iperf3 over a veth pair through the same checks: proves the harness and the
/// tolerance on the reference implementation.
mod reference_veth {
    use super::*;

    fn run(case: &Case) {
        if !require_root_or_skip() {
            return;
        }
        let _serial = data_lock();
        let (server_ns, client_ns) = veth_topology();
        let mut server = start_iperf3_server(&server_ns, &["-1", "-J"], SERVER_LIFE);
        let mut args = vec!["iperf3", "-c", VETH_SERVER_IP];
        args.extend(with_json(case));
        let client = client_ns.spawn("iperf3-client", &args, case.deadline).wait();
        let cj = client_json(&client, &mut server);
        let sj = server_json(&mut server);
        check_case(case, "iperf3 ↔ iperf3 (veth)", &cj, &sj, true, Some(Peer::V312), (0, 0));
    }

    #[test]
    fn forward() {
        run(&JSON);
    }

    #[test]
    fn reverse() {
        run(&REVERSE);
    }

    #[test]
    fn bidir() {
        run(&BIDIR);
    }

    #[test]
    fn omit1() {
        run(&OMIT1);
    }
}

/// The topologies build as documented and leave nothing behind.
#[test]
fn topologies_build_and_clean_up() {
    if !require_root_or_skip() {
        return;
    }
    let names: Vec<String>;
    {
        let tap = tap_topology();
        let bridge = bridge_topology();
        let (a, b) = veth_topology();
        let shown = tap.exec(&["ip", "-o", "addr", "show", "dev", "tap0"]).stdout.clone();
        assert!(shown.contains("198.18.0.1/24"), "tap0 lacks 198.18.0.1/24: {shown}");
        let shown = tap.exec(&["ip", "-d", "link", "show", "dev", "tap0"]).stdout.clone();
        assert!(
            shown.contains("tun type tap") && shown.contains("qlen 10000"),
            "tap0 is not a tap with qlen 10000: {shown}"
        );
        for port in ["tap0", "tap1"] {
            let shown = bridge.exec(&["ip", "link", "show", "dev", port]).stdout.clone();
            assert!(shown.contains("master br0"), "{port} is not on br0: {shown}");
        }
        let shown = bridge.exec(&["ip", "-o", "addr", "show", "dev", "br0"]).stdout.clone();
        assert!(shown.contains("198.18.0.1/24"), "br0 lacks 198.18.0.1/24: {shown}");
        let shown = a.exec(&["ip", "-o", "addr", "show", "dev", "va"]).stdout.clone();
        assert!(shown.contains("198.18.1.1/24"), "va lacks 198.18.1.1/24: {shown}");
        let shown = b.exec(&["ip", "-o", "addr", "show", "dev", "vb"]).stdout.clone();
        assert!(shown.contains("198.18.1.2/24"), "vb lacks 198.18.1.2/24: {shown}");
        names = [tap.name(), bridge.name(), a.name(), b.name()].iter().map(|s| s.to_string()).collect();
    }
    let list = host(&["ip", "netns", "list"]).stdout;
    for name in names {
        assert!(
            !list.lines().any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "namespace {name} survived its guard: {list}"
        );
    }
}
