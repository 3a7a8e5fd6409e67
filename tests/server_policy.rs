//! The server beyond iperf3, against stock clients over TAP in throw-away namespaces:
//! several tests at once (`--max-tests`) with 3.12 and 3.22 clients in mixed directions, each
//! getting its own correct result and a client beyond the limit told the server is busy; and
//! every policy limit with a stock client, which prints iperf3's own error text.
//! Needs root; skipped loudly without it (never under CI=true).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const LIFE: Duration = Duration::from_secs(120);
const DEADLINE: Duration = Duration::from_secs(60);

fn ready() -> bool {
    require_root_or_skip() && Peer::V312.available_or_skip() && Peer::V322.available_or_skip()
}

/// Starts `clients` (peer, args) at once against one `uniperf -s -J --max-tests N`, waits for
/// all; returns each client's document (or its failure) and the server's documents.
fn concurrent(max_tests: &str, clients: &[(Peer, &[&str])]) -> (Vec<Result<Value, String>>, Vec<Value>) {
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-J", "--max-tests", max_tests], LIFE);
    let docs = concurrent_stock_clients(&ns, UNIPERF_IP, clients, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    let out = server.stop();
    (docs, json_documents(&out.stdout))
}

#[test]
fn two_and_four_stock_clients_at_once() {
    if !ready() {
        return;
    }
    let _l = data_lock();
    let (docs, servers) =
        concurrent("2", &[(Peer::V312, &["-t", "3", "-P", "2"]), (Peer::V322, &["-t", "3", "-P", "2", "-R"])]);
    for (i, d) in docs.iter().enumerate() {
        let d = d.as_ref().unwrap_or_else(|e| panic!("client {i} failed: {e}"));
        check_concurrent_pair(i, d, &servers);
    }
    let four: [(Peer, &[&str]); 5] = [
        (Peer::V312, &["-t", "4", "-P", "2"]),
        (Peer::V322, &["-t", "4", "-P", "2", "-R"]),
        (Peer::V312, &["-t", "4", "--bidir"]),
        (Peer::V322, &["-t", "4", "-P", "2", "--bidir"]),
        (Peer::V322, &["-t", "1"]),
    ];
    let (docs, servers) = concurrent("4", &four);
    for (i, d) in docs.iter().take(4).enumerate() {
        let d = d.as_ref().unwrap_or_else(|e| panic!("client {i} ({:?}) failed: {e}", four[i].1));
        check_concurrent_pair(i, d, &servers);
    }
    let fifth = docs[4].as_ref().expect_err("the fifth client must be turned away");
    assert!(fifth.contains("the server is busy running a test"), "{fifth}");
    let tests = servers.iter().filter(|s| s["start"]["cookie"].is_string()).count();
    assert_eq!(tests, 4, "one server document per test (and one for the interrupt that stopped the server)");
}

/// A stock client's run against `uniperf -s EXTRA`: its JSON error (or None on success).
fn stock_error(peer: Peer, extra: &[&str], args: &[&str]) -> Option<String> {
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, extra, LIFE);
    let bin = peer.bin();
    let mut argv = vec![bin.as_str(), "-c", UNIPERF_IP, "-J"];
    argv.extend_from_slice(args);
    let done = ns.spawn("client", &argv, DEADLINE).wait();
    let v: Value = serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.describe()));
    assert!(server.is_running(), "the server died: {}", server.describe());
    v.get("error").map(|e| e.as_str().unwrap_or_default().to_string())
}

fn policy(peer: Peer) {
    if !require_root_or_skip() || !peer.available_or_skip() {
        return;
    }
    let _l = data_lock();
    let cases: [(&[&str], &[&str], &str); 5] = [
        (&["--server-max-duration", "3"], &["-t", "5"], "requested duration exceeds the server's maximum"),
        (
            &["--server-bitrate-limit", "150M"],
            &["-t", "2", "-b", "100M", "-P", "2"],
            "bandwidth is larger than server limit",
        ),
        (&["--server-bitrate-limit", "200M/1"], &["-t", "5"], "bandwidth is larger than server limit"),
        (&["--max-streams", "2"], &["-t", "1", "-P", "3"], "number of parallel streams"),
        (&["--rcv-timeout", "500"], &["-t", "5", "-b", "1"], "idle timeout for receiving data"),
    ];
    for (extra, args, want) in cases {
        // 3.12 predates code 37 (3.20) and prints only the number.
        let want = if peer == Peer::V312 && want.contains("maximum") { "int_errno=37" } else { want };
        let e = stock_error(peer, extra, args).unwrap_or_else(|| panic!("{extra:?} {args:?}: the test ran"));
        assert!(e.contains(want), "{extra:?} {args:?}: iperf3 {} said {e:?}, expected {want:?}", peer.label());
    }
    // Within the limits a test runs.
    assert_eq!(stock_error(peer, &["--server-max-duration", "3", "--max-streams", "2"], &["-t", "2", "-P", "2"]), None);
}

against_both! {
    policy_limits => policy;
}
