//! Stock iperf 2 (Debian's 2.1.8) clients against `uniperf -s --iperf2` on a TAP device in a
//! throw-away namespace. TCP (`-t`, `-n`, `-P 2`, `-P 8`): the bytes the client says it sent are
//! exactly the bytes uniperf says it received, per connection and in sum. UDP: the "Server
//! Report" the client prints is uniperf's own count (bytes, lost, total), and the total is
//! the client's end-of-test id, as with a stock iperf 2 server. `-d`, `-r`, `--full-duplex`
//! are refused visibly on both sides; malformed headers are reset with a reason and the
//! server serves on. Needs root; skipped loudly without it (never under CI=true).

#[macro_use]
mod common;

use std::time::Duration;

use common::iperf2::*;
use common::*;

const LIFE: Duration = Duration::from_secs(60);
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);
const REPORT_WAIT: Duration = Duration::from_secs(10);

fn ready() -> bool {
    require_root_or_skip() && iperf2_available_or_skip()
}

/// A namespace with tap0 and `uniperf -s --iperf2` on it.
fn server() -> (Netns, Proc) {
    let ns = tap_topology();
    let server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["--iperf2"], LIFE);
    (ns, server)
}

fn iperf2(ns: &Netns, args: &[&str]) -> Finished {
    let mut argv = vec!["iperf", "-c", UNIPERF_IP, "-p", IPERF2_PORT];
    argv.extend_from_slice(args);
    ns.run("iperf2-client", &argv, CLIENT_DEADLINE)
}

#[track_caller]
fn tcp_case(args: &[&str], streams: usize) {
    if !ready() {
        return;
    }
    let _l = data_lock();
    let (ns, mut server) = server();
    let client = iperf2(&ns, args);
    assert!(client.success(), "iperf 2 client failed:\n{}", client.describe());
    let needle = if streams > 1 { "[SUM] exact:" } else { "exact:" };
    server.wait_for_stdout_line(needle, REPORT_WAIT);
    let out = server.stdout();
    let sent = client_tcp_total(&client.stdout);
    let (per, sum) = uniperf_tcp(&out);
    eprintln!("iperf {args:?}: iperf 2 client sent {sent} bytes; uniperf received {per:?} (sum {sum:?})");
    eprintln!("--- iperf 2 client:\n{}--- uniperf:\n{out}", client.stdout);
    assert_eq!(per.len(), streams, "uniperf reported {} connections:\n{out}", per.len());
    if streams > 1 {
        assert_eq!(sum, Some(sent), "[SUM]: uniperf vs the client's total");
        assert_eq!(per, client_tcp_streams(&client.stdout), "per connection");
    } else {
        assert_eq!(per[0], sent, "bytes: uniperf received vs iperf 2 sent");
    }
    assert!(out.contains("[ ID] Interval       Transfer     Bandwidth"), "iperf 2 style header:\n{out}");
    drop(server.stop());
}

#[test]
fn tcp_time() {
    tcp_case(&["-t", "2", "-f", "B"], 1);
}

#[test]
fn tcp_bytes() {
    tcp_case(&["-n", "20M", "-f", "B"], 1);
    // -n is exact: 20 MiB, header included (iperf 2 counts it as data).
}

#[test]
fn tcp_parallel() {
    tcp_case(&["-t", "2", "-P", "2", "-f", "B"], 2);
}

/// More connections at once than the server keeps listeners (four): each SYN is answered
/// before the next is read and the taken listener replaced, so none is refused.
#[test]
fn tcp_parallel_beyond_the_listeners() {
    tcp_case(&["-t", "2", "-P", "8", "-f", "B"], 8);
}

#[test]
fn udp_server_report_is_uniperfs() {
    if !ready() {
        return;
    }
    let _l = data_lock();
    let (ns, mut server) = server();
    let client = iperf2(&ns, &["-u", "-b", "50M", "-t", "2", "-f", "B"]);
    assert!(client.success(), "iperf 2 client failed:\n{}", client.describe());
    server.wait_for_stdout_line("datagrams received", REPORT_WAIT);
    assert_udp_report_agrees(&client.stdout, &server.stdout(), "uniperf");
    drop(server.stop());
}

/// `-d`, `-r` and `--full-duplex` (TCP) and `-u -d`: refused. The client says so (a reset,
/// no reverse connection, no server report), uniperf says why, and then serves a plain test.
#[test]
fn dual_tradeoff_full_duplex_refused() {
    if !ready() {
        return;
    }
    let _l = data_lock();
    let (ns, mut server) = server();
    for (args, option) in [
        (&["-d", "-t", "1"][..], "-d (--dualtest)"),
        (&["-r", "-t", "1"][..], "-r (--tradeoff)"),
        (&["--full-duplex", "-t", "1"][..], "--full-duplex"),
    ] {
        let client = iperf2(&ns, args);
        let said = format!("{}{}", client.stdout, client.stderr);
        eprintln!("--- iperf {args:?}:\n{said}");
        assert!(said.contains("Connection reset by peer"), "iperf {args:?}: the client must see the reset:\n{said}");
        server.wait_for_stdout_line(&format!("iperf 2 {option} is not served"), REPORT_WAIT);
        assert!(server.stderr().contains("reset connection"), "the log says why:\n{}", server.stderr());
    }
    let client = iperf2(&ns, &["-u", "-d", "-t", "1"]);
    let said = format!("{}{}", client.stdout, client.stderr);
    eprintln!("--- iperf -u -d:\n{said}");
    assert!(!said.contains("Server Report"), "no server report for a refused UDP test:\n{said}");
    assert!(said.contains("did not receive ack of last datagram"), "the client warns:\n{said}");
    server.wait_for_stdout_line("refused UDP test", REPORT_WAIT);
    // Still serving.
    let client = iperf2(&ns, &["-n", "1M", "-f", "B"]);
    assert_eq!(client_tcp_total(&client.stdout), 1 << 20);
    server.wait_for_stdout_line("exact: 1048576 bytes", REPORT_WAIT);
    drop(server.stop());
}

/// A header with -5 parallel streams and a connection that closes after 10 bytes: each is
/// reset with the reason logged, no panic, and a good client is served afterwards.
#[test]
fn malformed_headers_are_reset() {
    if !ready() {
        return;
    }
    let _l = data_lock();
    let (ns, mut server) = server();
    // flags EXTEND|VERSION1-less 2.1 header, numThreads = -5, then the rest of 60 bytes.
    let bad = format!(
        "printf '\\x40\\x01\\x00\\x78\\xff\\xff\\xff\\xfb{}' > /dev/tcp/{UNIPERF_IP}/{IPERF2_PORT}",
        "\\x00".repeat(52)
    );
    let done = ns.run("bad-header", &["bash", "-c", &bad], CLIENT_DEADLINE);
    eprintln!("{}", done.describe());
    server.wait_for_stdout_line("asks for -5 parallel streams", REPORT_WAIT);
    let short = format!("printf '0123456789' > /dev/tcp/{UNIPERF_IP}/{IPERF2_PORT}");
    ns.run("short-header", &["bash", "-c", &short], CLIENT_DEADLINE);
    server.wait_for_stdout_line("ended after 10 bytes, before an iperf 2 client header", REPORT_WAIT);
    let client = iperf2(&ns, &["-n", "1M", "-f", "B"]);
    assert_eq!(client_tcp_total(&client.stdout), 1 << 20, "{}", client.describe());
    server.wait_for_stdout_line("exact: 1048576 bytes", REPORT_WAIT);
    eprintln!("--- uniperf:\n{}\n{}", server.stdout(), server.stderr());
    assert!(server.is_running(), "uniperf still serving");
    drop(server.stop());
}
