//! Numbers a user can trust, against stock iperf3 3.12 and 3.22 in both roles over a TAP in a
//! throw-away namespace: exact byte counts for `-n`/`-k` (with and without `-R`/`--bidir`),
//! `-O` that never lets a receiver report more than was sent, a UDP client refused at once,
//! SIGINT/SIGTERM/SIGHUP handled like iperf3 (the peer is free again at once), an iperf 2
//! client cut off, and the server's trailing interval. Where a stock peer decides the count
//! itself (a 3.12 client ends `-n`/`-k` tests early), the test says so and checks what
//! uniperf controls. Needs root; skipped loudly without it (never under CI=true).

#[macro_use]
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const N50M: u64 = 50 * 1024 * 1024;
const K2000: u64 = 2000 * 128 * 1024;
const LIFE: Duration = Duration::from_secs(120);
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn ready(peer: Peer) -> bool {
    require_root_or_skip() && peer.available_or_skip()
}

fn stock_client(peer: Peer, args: &[&str]) -> (Value, Value) {
    stock_client_json(peer, args, LIFE, CLIENT_DEADLINE)
}

fn uniperf_client(peer: Peer, args: &[&str]) -> (Value, Value) {
    uniperf_client_json(peer, args, LIFE, CLIENT_DEADLINE)
}

/// The four totals of a test, as each side printed them: (client sent, server received) for
/// the client→server direction, (server sent, client received) for server→client.
#[derive(Debug)]
struct Totals {
    c2s: (u64, u64),
    s2c: (u64, u64),
}

fn totals(client: &Value, server: &Value, reverse: bool, bidir: bool) -> Totals {
    let get = |v: &Value, k: &str| json_u64(v, &["end", k, "bytes"]);
    if bidir {
        Totals {
            c2s: (get(client, "sum_sent"), get(server, "sum_received")),
            s2c: (get(server, "sum_sent_bidir_reverse"), get(client, "sum_received_bidir_reverse")),
        }
    } else if reverse {
        Totals { c2s: (0, 0), s2c: (get(server, "sum_sent"), get(client, "sum_received")) }
    } else {
        Totals { c2s: (get(client, "sum_sent"), get(server, "sum_received")), s2c: (0, 0) }
    }
}

// ---- -n / -k ------------------------------------------------------------------------------

/// Stock client, uniperf server as receiver (`-n 50M`, `-k 2000`): the stock client sends the
/// exact count. A 3.22 client ends the test at the next interval tick, so the server counts
/// every byte; a 3.12 client sends TEST_END right after its last write, while data is still
/// in flight, so the server may count less (stock 3.12 servers do the same).
fn server_receives_count(peer: Peer, args: &[&str], n: u64) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let (c, s) = stock_client(peer, args);
    let t = totals(&c, &s, false, false);
    assert_stock_sent(peer, t.c2s.0, n, &format!("{args:?}"));
    if peer == Peer::V322 {
        assert_eq!(t.c2s.1, n, "{args:?}: uniperf server received (3.22 waits for its data)");
    } else {
        assert!(t.c2s.1 <= t.c2s.0 && t.c2s.1 > 0, "{args:?}: uniperf server received {}", t.c2s.1);
    }
}

/// Stock client, uniperf server as sender (`-R`): the server stops at exactly the count. A
/// 3.12 client with `-k` counts reads as blocks and ends early; then the server has sent less,
/// never more, and the client received what was sent.
fn server_sends_count(peer: Peer, args: &[&str], n: u64) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let (c, s) = stock_client(peer, args);
    let t = totals(&c, &s, true, false);
    let blocks = args.contains(&"-k");
    if peer == Peer::V312 && blocks {
        assert!(t.s2c.0 <= n && t.s2c.1 <= t.s2c.0 && t.s2c.1 > 0, "{args:?}: {t:?}");
    } else {
        assert_eq!(t.s2c, (n, n), "{args:?}: uniperf server sent, stock client received");
    }
}

/// `--bidir -n 50M` from a stock client: each sender stops at the count. A 3.22 client waits
/// for both directions; a 3.12 client ends when its own half is sent, so the server's half is
/// cut short (never over).
fn server_bidir_count(peer: Peer) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let (c, s) = stock_client(peer, &["--bidir", "-n", "50M"]);
    let t = totals(&c, &s, false, true);
    assert_stock_sent(peer, t.c2s.0, N50M, "--bidir -n 50M");
    if peer == Peer::V322 {
        assert_eq!((t.c2s.1, t.s2c.0, t.s2c.1), (N50M, N50M, N50M), "{t:?}");
    } else {
        assert!(t.c2s.1 <= t.c2s.0 && t.s2c.0 <= N50M && t.s2c.1 <= t.s2c.0, "{t:?}");
    }
}

/// uniperf client against a stock server: it sends exactly the count and ends the test only
/// once the server has acknowledged it all, and as receiver once the count arrived, so both
/// ends report the exact figure.
fn client_count(peer: Peer, args: &[&str], n: u64) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let (c, s) = uniperf_client(peer, args);
    let reverse = args.contains(&"-R");
    let bidir = args.contains(&"--bidir");
    let t = totals(&c, &s, reverse, bidir);
    if reverse && peer == Peer::V312 {
        // A 3.12 server checks its count only between batches of blocks and may send one
        // block more than asked (Debian's 3.12 against itself does too); uniperf receives and
        // reports every byte it sent.
        assert!(t.s2c.0 >= n && t.s2c.0 <= n + 128 * 1024 && t.s2c.1 == t.s2c.0, "{args:?}: {t:?}");
    } else if reverse {
        assert_eq!(t.s2c, (n, n), "{args:?}: stock server sent, uniperf client received");
    } else if bidir {
        assert_eq!(t.c2s.0, n, "{args:?}: uniperf client sent");
        if peer == Peer::V312 {
            assert!(t.s2c.0 >= n && t.s2c.0 <= n + 128 * 1024 && t.s2c.1 == t.s2c.0, "{args:?}: {t:?}");
        } else {
            assert_eq!(t.s2c, (n, n), "{args:?}: stock server sent, uniperf client received");
        }
        // A 3.12 server reads its half in the same loop that sends the other; what it had not
        // read yet when TEST_END came is not counted (its own counter, not ours).
        if peer == Peer::V322 {
            assert_v322_server_received(t.c2s.1, n, args);
        } else {
            assert!(t.c2s.1 <= n && t.c2s.1 > 0, "{args:?}: {t:?}");
        }
    } else if peer == Peer::V322 {
        assert_eq!(t.c2s.0, n, "{args:?}: uniperf client sent");
        assert_v322_server_received(t.c2s.1, n, args);
    } else {
        assert_eq!(t.c2s, (n, n), "{args:?}: uniperf client sent, stock server received");
    }
}

/// A 3.22 server reads each stream in a thread of its own and stops reading at TEST_END, which
/// a uniperf client sends once the server's kernel has acknowledged every byte: the thread has
/// almost always read them all by then, but once in a full local run of this file (2026-12-03)
/// it had not read the last 128 KiB block (52,297,728 of 52,428,800 B). Allowed: one read
/// (`-l`, 128 KiB) short, never more, and never more than was sent.
#[track_caller]
fn assert_v322_server_received(received: u64, n: u64, args: &[&str]) {
    assert!(
        received <= n && received >= n.saturating_sub(128 * 1024),
        "{args:?}: 3.22 server received {received} B of the {n} B uniperf sent (at most one 128 KiB read short)"
    );
}

against_both! {
    server_receives_bytes => |p| server_receives_count(p, &["-n", "50M"], N50M);
    server_receives_blocks => |p| server_receives_count(p, &["-k", "2000"], K2000);
    server_sends_bytes => |p| server_sends_count(p, &["-n", "50M", "-R"], N50M);
    server_sends_blocks => |p| server_sends_count(p, &["-k", "2000", "-R"], K2000);
    server_bidir_bytes => server_bidir_count;
    client_sends_bytes => |p| client_count(p, &["-n", "50M"], N50M);
    client_sends_blocks => |p| client_count(p, &["-k", "2000"], K2000);
    client_receives_bytes => |p| client_count(p, &["-n", "50M", "-R"], N50M);
    client_receives_blocks => |p| client_count(p, &["-k", "2000", "-R"], K2000);
    client_bidir_bytes => |p| client_count(p, &["--bidir", "-n", "50M"], N50M);
}

// ---- -O -----------------------------------------------------------------------------------

/// With `-O`, the receiving side never reports more than the sending side sent, whichever end
/// is uniperf (stock pairs do: up to ~13 MB on loopback).
fn omit_receiver_at_most_sender(peer: Peer, uniperf_is_client: bool, reverse: bool) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let mut args = vec!["-t", "3", "-O", "1"];
    if reverse {
        args.push("-R");
    }
    let (c, s) = if uniperf_is_client { uniperf_client(peer, &args) } else { stock_client(peer, &args) };
    let t = totals(&c, &s, reverse, false);
    let (sent, received) = if reverse { t.s2c } else { t.c2s };
    assert!(received > 0 && received <= sent, "{args:?}: receiver {received} B > sender {sent} B");
    assert!(has_omitted_interval(&c) && has_omitted_interval(&s), "{args:?}: omitted intervals are reported");
    eprintln!("-O 1 {args:?} (uniperf client: {uniperf_is_client}): sender {sent} B, receiver {received} B");
}

against_both! {
    omit_stock_sender => |p| omit_receiver_at_most_sender(p, false, false);
    omit_uniperf_sender_server => |p| omit_receiver_at_most_sender(p, false, true);
    omit_uniperf_sender_client => |p| omit_receiver_at_most_sender(p, true, false);
    omit_stock_sender_reverse => |p| omit_receiver_at_most_sender(p, true, true);
}

// ---- protocols not served --------------------------------------------------------------------

/// A protocol uniperf does not serve (SCTP) is refused before CREATE_STREAMS with iperf3's
/// IEPROTOCOL, so a stock client exits at once with a clear message (before this, a UDP client
/// waited for streams nobody accepted); the server serves on.
fn sctp_client_refused(peer: Peer) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &[], LIFE);
    let bin = peer.bin();
    let started = Instant::now();
    let client =
        ns.spawn("sctp-client", &[bin.as_str(), "-c", UNIPERF_IP, "--sctp", "-t", "2"], Duration::from_secs(40)).wait();
    let took = started.elapsed();
    assert!(!client.success(), "an SCTP client must fail:\n{}", client.describe());
    assert!(took < Duration::from_secs(2), "the SCTP client took {took:?} to give up:\n{}", client.describe());
    let said = format!("{}{}", client.stdout, client.stderr);
    assert!(said.contains("protocol does not exist"), "the client's message:\n{}", client.describe());
    let good = ns.spawn("good", &[bin.as_str(), "-c", UNIPERF_IP, "-t", "1", "-J"], Duration::from_secs(30)).wait();
    good.expect_json_success();
    assert!(server.is_running(), "the server died:\n{}", server.describe());
}

against_both! {
    sctp_refused_at_once => sctp_client_refused;
}

// ---- signals ------------------------------------------------------------------------------

/// Sends `sig` to `pid` through kill(1) (by PID, never by name).
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
}

/// A uniperf client interrupted mid-test tells the stock server (CLIENT_TERMINATE), prints its
/// partial report and exits like iperf3 3.19+ (status 0, "interrupt - … by signal …"); the
/// server takes the next client within 2 s.
fn client_interrupted(peer: Peer, sig: &str, name: &str) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let ns = tap_topology();
    let mut server = start_peer_server(peer, &ns, &[], LIFE);
    let argv = [UNIPERF, "-c", KERNEL_IP, "--tap", "tap0", "--ip", "198.18.0.2/24", "-t", "30"];
    let mut client = ns.spawn("uniperf-client", &argv, Duration::from_secs(60));
    // The second interval report: on a busy host it may start at 1.01 as well as 1.00
    // ("[  5]   1.01-2.01   sec …"; the transfer column has two spaces before it, not three).
    client.wait_for_stdout_line("]   1.0", Duration::from_secs(20));
    signal(client.pid(), sig);
    let done = client.wait_timeout(Duration::from_secs(5));
    assert_eq!(done.code(), Some(0), "interrupted client:\n{}", done.describe());
    let want = format!("interrupt - the client has terminated by signal {name}");
    assert!(done.stdout.contains(&want), "client output lacks {want:?}:\n{}", done.describe());
    assert!(done.stdout.contains("sender"), "no partial summary:\n{}", done.describe());
    // The next client is served at once (2 s budget includes its 1 s test's set-up).
    let bin = peer.bin();
    let started = Instant::now();
    let next = ns.spawn("next", &[bin.as_str(), "-c", KERNEL_IP, "-t", "1", "-J"], Duration::from_secs(30)).wait();
    next.expect_json_success();
    let waited = started.elapsed() - Duration::from_secs(1);
    assert!(
        waited < Duration::from_secs(2),
        "the stock server took {waited:?} beyond the test to serve the next client"
    );
    drop(server.stop());
}

/// A uniperf server interrupted mid-test tells the stock client (SERVER_TERMINATE), which
/// ends within 2 s printing iperf3's "the server has terminated"; the server exits 0.
fn server_interrupted(peer: Peer, sig: &str, name: &str) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &[], LIFE);
    let bin = peer.bin();
    let argv = [bin.as_str(), "-c", UNIPERF_IP, "-t", "30", "--forceflush"];
    let mut client = ns.spawn("iperf3-client", &argv, Duration::from_secs(60));
    // The second interval report: on a busy host it may start at 1.01 as well as 1.00
    // ("[  5]   1.01-2.01   sec …"; the transfer column has two spaces before it, not three).
    client.wait_for_stdout_line("]   1.0", Duration::from_secs(20));
    signal(server.pid(), sig);
    let started = Instant::now();
    let c = client.wait_timeout(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(2), "the stock client took {:?} to stop", started.elapsed());
    let said = format!("{}{}", c.stdout, c.stderr);
    assert!(said.contains("the server has terminated"), "stock client:\n{}", c.describe());
    let s = server.wait_timeout(Duration::from_secs(5));
    assert_eq!(s.code(), Some(0), "interrupted server:\n{}", s.describe());
    let want = format!("interrupt - the server has terminated by signal {name}");
    assert!(s.stdout.contains(&want), "server output lacks {want:?}:\n{}", s.describe());
}

against_both! {
    client_sigint => |p| client_interrupted(p, "INT", "Interrupt(2)");
    client_sigterm => |p| client_interrupted(p, "TERM", "Terminated(15)");
    client_sighup => |p| client_interrupted(p, "HUP", "Hangup(1)");
    server_sigint => |p| server_interrupted(p, "INT", "Interrupt(2)");
    server_sigterm => |p| server_interrupted(p, "TERM", "Terminated(15)");
}

// ---- iperf 2 ------------------------------------------------------------------------------

/// An iperf 2 client against the uniperf server (on iperf3's port) is reset as soon as its
/// first bytes arrive, so it cannot believe a test ran: it fails at once with "Connection
/// reset by peer" and reports only what its kernel had already taken into its send buffer
/// before our reset could arrive (75.6 KB in under a millisecond; a stock 3.12 server gets
/// the same from it). It cannot report zero: connect() has succeeded and its first write()
/// returned before any reply can reach it, and it exits 0 after a write error. The server
/// says why it reset the connection and serves a stock client afterwards.
#[test]
fn iperf2_client_is_cut_off() {
    if !require_root_or_skip() {
        return;
    }
    let _l = data_lock();
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &[], LIFE);
    let done =
        ns.run("iperf2", &["iperf", "-c", UNIPERF_IP, "-p", "5201", "-t", "2", "-y", "C"], Duration::from_secs(30));
    // -y C: one CSV line per report, the interval in the 7th field, bytes in the 8th.
    let reports: Vec<(String, u64)> = done
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.get(6)?.to_string(), f.get(7)?.trim().parse().ok()?))
        })
        .collect();
    assert!(done.stderr.contains("Connection reset by peer"), "iperf 2 was not reset:\n{}", done.describe());
    assert!(done.elapsed < Duration::from_secs(1), "iperf 2 ran for {:?}:\n{}", done.elapsed, done.describe());
    for (interval, bytes) in &reports {
        assert!(*bytes < 1 << 20, "iperf 2 reports {bytes} B over {interval}:\n{}", done.describe());
        assert!(interval.starts_with("0.0-0.0"), "iperf 2 reports a test of {interval} s:\n{}", done.describe());
    }
    thread::sleep(Duration::from_millis(200));
    let good = ns.spawn("good", &["iperf3", "-c", UNIPERF_IP, "-t", "1", "-J"], Duration::from_secs(30)).wait();
    good.expect_json_success();
    assert!(server.is_running(), "the server died:\n{}", server.describe());
    let out = server.stop();
    assert!(out.stdout.contains("not an iperf3 client"), "the server says why it reset:\n{}", out.describe());
}

// ---- the server's trailing interval -----------------------------------------------------------

/// A server keeps reading until TEST_END arrives, so like a stock server it reports the short
/// trailing interval (`2.00-2.00`) when it moved data: its intervals cover its whole test, up
/// to the end its summary gives. iperf3 drops a final interval shorter than a tenth of `-i`
/// that moved no byte (its 2 s timer took the last bytes and TEST_END came a moment later);
/// then the summary ends up to that tenth after the last interval, and the intervals still
/// hold every byte the summary counts.
fn trailing_interval(peer: Peer) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let (c, s) = stock_client(peer, &["-t", "2"]);
    let ivs = intervals(&s);
    let last = ivs.last().expect("server intervals");
    let last_end = json_f64(last, &["sum", "end"]);
    let summary_end = json_f64(&s, &["end", "streams", "0", "receiver", "end"]);
    let gap = summary_end - last_end;
    let tail_dropped = gap >= 1e-3;
    assert!(
        gap.abs() < 1e-3 || (tail_dropped && gap < 0.1 && last_end >= 2.0),
        "last interval ends at {last_end}, the summary at {summary_end}"
    );
    let interval_bytes: u64 = ivs.iter().map(|iv| json_u64(iv, &["sum", "bytes"])).sum();
    assert_eq!(interval_bytes, sum_received_bytes(&s), "the server's intervals against its summary");
    assert!(ivs.len() >= intervals(&c).len(), "server {} intervals, client {}", ivs.len(), intervals(&c).len());
    if ivs.len() == 3 {
        assert!(json_u64(last, &["sum", "bytes"]) > 0, "a short trailing interval is shown only with data");
    }
}

against_both! {
    server_trailing_interval => trailing_interval;
}
