//! Stock iperf 2 (Debian's 2.1.8, `iperf`) as the peer of `uniperf -s --iperf2`: running it,
//! and reading its report (run with `-f B`, so transfers are exact byte counts) and uniperf's
//! `exact:` lines beside its iperf 2 style report.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// uniperf's and iperf 2's default iperf 2 port.
pub const IPERF2_PORT: &str = "5001";

/// True when stock iperf 2 runs here. Missing, the test is skipped loudly, except under CI.
pub fn iperf2_available_or_skip() -> bool {
    let ok = Command::new("iperf").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if ok {
        return true;
    }
    let why = "stock iperf 2 (`iperf`) is not installed (scripts/setup.sh installs it)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {why}");
    }
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {why}");
    false
}

/// The bytes of a `-f B` report line: `[  1] 0.0000-2.0031 sec  934805564 Bytes  466679429 Bytes/sec…`.
fn line_bytes(line: &str) -> Option<u64> {
    let after = line.split(" sec ").nth(1)?;
    let mut words = after.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next()? == "Bytes").then_some(n)
}

/// What an iperf 2 TCP client printed as its total: the `[SUM]` line with `-P`, else the one
/// final line (the one whose interval starts at 0 and is the last printed).
#[track_caller]
pub fn client_tcp_total(out: &str) -> u64 {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" sec ") && line_bytes(l).is_some()).collect();
    let pick = lines.iter().rev().find(|l| l.starts_with("[SUM]")).or(lines.last());
    pick.and_then(|l| line_bytes(l)).unwrap_or_else(|| panic!("no iperf 2 total in:\n{out}"))
}

/// The per-connection final byte counts an iperf 2 TCP client printed (sorted).
pub fn client_tcp_streams(out: &str) -> Vec<u64> {
    let mut v: Vec<u64> = out
        .lines()
        .filter(|l| !l.starts_with("[SUM]") && l.contains(" 0.0000-") && l.contains(" sec "))
        .filter_map(line_bytes)
        .collect();
    v.sort_unstable();
    v
}

/// The "Server Report" an iperf 2 UDP client printed: (bytes, lost, total), and its "Sent N".
#[derive(Debug, PartialEq, Eq)]
pub struct ClientUdp {
    pub sent: u64,
    pub report_bytes: u64,
    pub lost: u64,
    pub total: u64,
}

#[track_caller]
pub fn client_udp(out: &str) -> ClientUdp {
    let sent = out
        .lines()
        .find_map(|l| l.split(" Sent ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()))
        .unwrap_or_else(|| panic!("no 'Sent N datagrams' in:\n{out}"));
    let report = out
        .split("Server Report:")
        .nth(1)
        .and_then(|r| r.lines().find(|l| l.contains(" ms ")))
        .unwrap_or_else(|| panic!("no Server Report in:\n{out}"));
    let frac = report.split(" ms ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
    let (lost, total) = frac.split_once('/').unwrap_or_else(|| panic!("no lost/total in {report:?}"));
    ClientUdp {
        sent,
        report_bytes: line_bytes(report).unwrap_or_else(|| panic!("no bytes in {report:?}")),
        lost: lost.parse().expect("lost"),
        total: total.parse().expect("total"),
    }
}

/// uniperf's `exact:` TCP lines: per connection (sorted) and the `[SUM]` one if any.
pub fn uniperf_tcp(out: &str) -> (Vec<u64>, Option<u64>) {
    let bytes = |l: &str| l.split("exact: ").nth(1)?.split_whitespace().next()?.parse::<u64>().ok();
    let mut per: Vec<u64> =
        out.lines().filter(|l| !l.starts_with("[SUM]") && l.contains("exact: ")).filter_map(bytes).collect();
    per.sort_unstable();
    let sum = out.lines().filter(|l| l.starts_with("[SUM] exact: ")).find_map(bytes);
    (per, sum)
}

/// uniperf's UDP `exact:` line: (bytes, received, lost, out of order, total).
#[track_caller]
pub fn uniperf_udp(out: &str) -> (u64, u64, u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("exact: ") && l.contains("datagrams received"))
        .unwrap_or_else(|| panic!("no UDP exact line in uniperf's output:\n{out}"));
    let nums: Vec<u64> = line
        .split("exact: ")
        .nth(1)
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter(|w| !w.is_empty() && !w.contains('.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(nums.len() >= 5, "cannot read {line:?}");
    (nums[0], nums[1], nums[2], nums[3], nums[4])
}

/// A stock iperf 2 UDP client's output against uniperf's (`who`: "uniperf", "image"): the
/// Server Report the client printed is uniperf's exact figures, the total is the end datagram's
/// id (one below the client's "Sent", as with `iperf -s`), received + lost make the total, and
/// every datagram is iperf 2's default 1470 bytes.
#[track_caller]
pub fn assert_udp_report_agrees(client_out: &str, uniperf_out: &str, who: &str) {
    let c = client_udp(client_out);
    let (bytes, received, lost, ooo, total) = uniperf_udp(uniperf_out);
    eprintln!(
        "iperf 2 client: sent {} datagrams; its Server Report: {} bytes, {}/{} lost/total\n\
         {who}: {bytes} bytes, {received} received, {lost} lost, {ooo} out of order, total {total}",
        c.sent, c.report_bytes, c.lost, c.total
    );
    eprintln!("--- iperf 2 client:\n{client_out}--- {who}:\n{uniperf_out}");
    assert_eq!((c.report_bytes, c.lost, c.total), (bytes, lost, total), "the client printed {who}'s figures");
    assert_eq!(total, c.sent - 1, "total vs the client's Sent");
    assert_eq!(received + lost, total, "received + lost accounts for the total (no duplicates)");
    assert_eq!(bytes, received * 1470, "every datagram 1470 bytes");
}
