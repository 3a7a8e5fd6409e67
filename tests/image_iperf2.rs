//! The server image serving stock iperf 2 (Debian's 2.1.8) clients, under QEMU in a
//! throw-away namespace: `-s --iperf2` on the kernel command line, then TCP `-t 2`, `-n 20M`,
//! `-P 2` and UDP against it. As on TAP (tests/iperf2_interop.rs), the client's bytes are
//! exactly the guest's, and the client's "Server Report" is the guest's own count.
//! Hold `flock /tmp/uniperf-qemu.lock` around it on shared machines.

#[macro_use]
mod common;

use std::time::Duration;

use common::iperf2::*;
use common::*;

const CLIENT_DEADLINE: Duration = Duration::from_secs(40);
const REPORT_WAIT: Duration = Duration::from_secs(15);

#[test]
fn stock_iperf2_against_server_image() {
    if !require_vm_or_skip() || !iperf2_available_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = ["-s", "--ip", "198.18.0.2/24", "--iperf2"];
    let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server("microvm", &cmdline), UNIPERF_IP);
    vm.wait_for_console("iperf 2 clients served", REPORT_WAIT);
    let run = |args: &[&str]| {
        let mut argv = vec!["iperf", "-c", UNIPERF_IP, "-p", IPERF2_PORT];
        argv.extend_from_slice(args);
        let done = ns.run("iperf2-client", &argv, CLIENT_DEADLINE);
        assert!(done.success(), "iperf 2 {args:?}:\n{}", done.describe());
        done
    };
    // How many `exact:` lines the console had before a case, so each case reads its own.
    let exact_lines = |vm: &Vm| vm.console().lines().filter(|l| l.contains("exact: ")).count();
    let mut seen = 0;
    for (args, streams) in [
        (&["-t", "2", "-f", "B"][..], 1usize),
        (&["-n", "20M", "-f", "B"][..], 1),
        (&["-t", "2", "-P", "2", "-f", "B"][..], 2),
    ] {
        let client = run(args);
        let want = seen + streams + usize::from(streams > 1);
        let until = std::time::Instant::now() + REPORT_WAIT;
        while exact_lines(&vm) < want && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let console = vm.console();
        let mine: String =
            console.lines().filter(|l| l.contains("exact: ")).skip(seen).map(|l| format!("{l}\n")).collect();
        seen = want;
        let sent = client_tcp_total(&client.stdout);
        let (per, sum) = uniperf_tcp(&mine);
        eprintln!("iperf {args:?}: iperf 2 client sent {sent} bytes; image received {per:?} (sum {sum:?})");
        eprintln!("--- iperf 2 client:\n{}", client.stdout);
        assert_eq!(per.len(), streams, "image's exact lines:\n{mine}\n--- console:\n{console}");
        if streams > 1 {
            assert_eq!(sum, Some(sent));
            assert_eq!(per, client_tcp_streams(&client.stdout));
        } else {
            assert_eq!(per[0], sent, "bytes: image received vs iperf 2 sent");
        }
    }
    let client = run(&["-u", "-b", "20M", "-t", "2", "-f", "B"]);
    vm.wait_for_console("datagrams received", REPORT_WAIT);
    assert_udp_report_agrees(&client.stdout, &vm.console(), "image");
    drop(vm.stop());
}
