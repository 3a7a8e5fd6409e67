//! Flow logs out of the unikernel without its console: the image, booted by `scripts/qemu.sh`
//! on the bridge topology (br0 198.18.0.1, server guest 198.18.0.2 on tap0, client guest
//! 198.18.0.3 on tap1), gets `--flowlog-collect 198.18.0.1:6000` and sends each test's log to
//! `uniperf collect` listening on br0; the tests check the stored logs and report how fast they
//! came (samples/s as the guest and as the collector measured). One more test checks the console
//! fallback (`--flowlog console`).
//!
//! Needs root, QEMU and a built image; skipped loudly without them (never under CI=true).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use netstack::flowlog::{Event, FlowSample, parse_log};

const COLLECT_ADDR: &str = "198.18.0.1:6000";
/// Guest memory: room for a few hundred thousand samples next to the socket buffers.
const GUEST_MB: u32 = 256;
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uniperf-image-flowlog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// `uniperf collect` in the namespace, returned once it listens.
fn start_collector(ns: &Netns, dir: &Path, count: u32) -> Proc {
    let count = count.to_string();
    let args = [
        UNIPERF,
        "collect",
        "--listen",
        COLLECT_ADDR,
        "-o",
        dir.to_str().unwrap(),
        "--count",
        &count,
        "--timeout",
        "240",
    ];
    let mut p = ns.spawn("collect", &args, Duration::from_secs(300));
    p.wait_for_stderr_line("uniperf collect: listening on", Duration::from_secs(15));
    p
}

fn read_log(path: &Path) -> Vec<FlowSample> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no log at {}: {e}", path.display()));
    parse_log(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The number before `what` on the first line containing `marker`, e.g. "= 123456 samples/s".
fn number_before(text: &str, marker: &str, what: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let end = line.find(what)?;
    line[..end].split_whitespace().last()?.parse().ok()
}

/// Checks one stored log and prints what both ends measured.
fn check_log(what: &str, path: &Path, collect_out: &str, console: &str, guest_marker: &str, sends: bool) -> usize {
    let samples = read_log(path);
    assert!(!samples.is_empty(), "{what}: the log is empty");
    let data: Vec<&FlowSample> = samples.iter().filter(|s| s.stream == 1).collect();
    assert!(!data.is_empty(), "{what}: no rows for stream 1");
    let fin = samples.iter().find(|s| s.stream == 1 && s.event == Event::Final).expect("final row of stream 1");
    if sends {
        assert!(fin.bytes_acked > 0, "{what}: stream 1 sent nothing: {fin:?}");
        assert!(data.iter().any(|s| s.rtt_us.is_some()), "{what}: no RTT samples");
    } else {
        assert!(fin.bytes_received > 0, "{what}: stream 1 received nothing: {fin:?}");
    }
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let collector_rate = number_before(collect_out, &name, "samples/s").unwrap_or(0.0);
    let guest_line = console.lines().find(|l| l.contains(guest_marker) && l.contains("sent to")).unwrap_or("");
    let guest_rate = number_before(guest_line, "sent to", "samples/s").unwrap_or(0.0);
    eprintln!(
        "{what}: {} samples ({} of stream 1) in {name}; shipping rate: guest {guest_rate:.0} samples/s, \
         collector {collector_rate:.0} samples/s\n  guest: {}\n  collector: {}",
        samples.len(),
        data.len(),
        guest_line.trim(),
        collect_out.lines().find(|l| l.contains(&name)).unwrap_or("").trim()
    );
    samples.len()
}

/// The server image (not `-1`) serves two stock `iperf3 -c -R` tests (the image sends, so it
/// logs every ACK it gets; the first with 4 streams for a larger log) and ships a log after
/// each; both arrive, numbered 1 and 2.
#[test]
fn server_image_ships_a_log_after_each_test() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let dir = scratch("server");
    let ns = bridge_topology();
    let mut collector = start_collector(&ns, &dir, 2);
    let cmdline = ["-s", "--ip", "198.18.0.2/24", "--flowlog-collect", COLLECT_ADDR, "--flowlog-interval", "0"];
    let spec = VmSpec { mem_mb: GUEST_MB, ..VmSpec::server("microvm", &cmdline) };
    let mut vm = Vm::boot_server(&ns, "server-image", &spec, UNIPERF_IP);
    let runs: [&[&str]; 2] = [&["-t", "3", "-R", "-P", "4"], &["-t", "1", "-R"]];
    for (test, args) in (1..).zip(runs) {
        let mut argv = vec!["iperf3", "-c", UNIPERF_IP];
        argv.extend_from_slice(args);
        let client = ns.spawn("iperf3-client", &argv, CLIENT_DEADLINE).wait();
        if !client.success() {
            panic!("iperf3 -c -R #{test} failed:\n{}\n--- image:\n{}", client.describe(), vm.describe());
        }
        vm.wait_for_console(&format!("server test {test}: "), Duration::from_secs(60));
    }
    let got = collector.wait_timeout(Duration::from_secs(120));
    if !got.success() {
        panic!("collect failed:\n{}\n--- image:\n{}", got.describe(), vm.describe());
    }
    let console = vm.console();
    for test in 1..=2 {
        let path = dir.join(format!("server-{UNIPERF_IP}-test{test}.csv"));
        let marker = format!("server test {test}: ");
        let n = check_log(&format!("server image test {test}"), &path, &got.stdout, &console, &marker, true);
        assert!(n > 100, "server image test {test}: only {n} samples");
    }
    assert!(vm.is_running(), "the server image stopped:\n{}", vm.describe());
    vm.stop();
}

/// The client image against stock `iperf3 -s -1`: its log leaves before it powers off, and it
/// still exits 0.
#[test]
fn client_image_ships_its_log_before_powering_off() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let dir = scratch("client");
    let ns = bridge_topology();
    let mut collector = start_collector(&ns, &dir, 1);
    let mut server = start_iperf3_server(&ns, &["-1", "-B", KERNEL_IP], Duration::from_secs(120));
    let cmdline = [
        "-c",
        KERNEL_IP,
        "-t",
        "3",
        "-P",
        "2",
        "--ip",
        "198.18.0.3/24",
        "--flowlog-collect",
        COLLECT_ADDR,
        "--flowlog-interval",
        "0",
    ];
    let spec = VmSpec { mem_mb: GUEST_MB, ..VmSpec::client("microvm", &cmdline) };
    let mut vm = Vm::boot(&ns, "client-image", &spec);
    let done = vm.wait(Duration::from_secs(120));
    if done.code() != Some(0) {
        panic!("client image: expected exit 0:\n{}\n--- iperf3 -s:\n{}", done.describe(), server.describe());
    }
    let got = collector.wait_timeout(Duration::from_secs(60));
    if !got.success() {
        panic!("collect failed:\n{}\n--- image:\n{}", got.describe(), done.describe());
    }
    server.wait_timeout(Duration::from_secs(30));
    let path = dir.join(format!("client-{UNIPERF_PEER_IP}-test1.csv"));
    let console = done.stdout.replace('\r', "");
    let n = check_log("client image", &path, &got.stdout, &console, "client test 1: ", true);
    assert!(n > 100, "client image: only {n} samples");
}

/// `--flowlog console --flowlog-format jsonl`: the log appears between marker lines and parses.
#[test]
fn console_fallback() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = ["-s", "-1", "--ip", "198.18.0.2/24", "--flowlog", "console", "--flowlog-format", "jsonl"];
    let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server("microvm", &cmdline), UNIPERF_IP);
    let client = ns.spawn("iperf3-client", &["iperf3", "-c", UNIPERF_IP, "-t", "1"], CLIENT_DEADLINE).wait();
    client.expect_success();
    let done = vm.wait(Duration::from_secs(60));
    assert_eq!(done.code(), Some(0), "{}", done.describe());
    let console = done.stdout.replace('\r', "");
    let begin = console.find("----- BEGIN UNIPERF FLOWLOG -----\n").expect("no BEGIN marker on the console");
    let end = console.find("----- END UNIPERF FLOWLOG -----").expect("no END marker on the console");
    let body = &console[begin..end];
    let mut lines = body.lines().skip(1);
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("uniperf-flowlog 1 role=server test=1 format=jsonl"), "header: {header}");
    let log: String = lines.map(|l| format!("{l}\n")).collect();
    let samples = parse_log(&log).unwrap_or_else(|e| panic!("the console log does not parse: {e}"));
    assert!(samples.iter().any(|s| s.stream == 1), "no stream 1 rows on the console");
    eprintln!("console fallback: {} samples, {} bytes of JSON Lines", samples.len(), log.len());
}
