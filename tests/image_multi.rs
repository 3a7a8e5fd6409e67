//! The server image serving four stock iperf3 clients at once (`--max-tests 4`, 3.12 and
//! 3.22, mixed directions, `-P 2`), each getting its own correct result, and a fifth told the
//! server is busy — under QEMU in a throw-away namespace. Needs root and QEMU; skipped loudly
//! without them (never under CI=true).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;

#[test]
fn four_stock_clients_at_once_against_the_server_image() {
    if !require_vm_or_skip() || !Peer::V322.available_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = ["-s", "--ip", "198.18.0.2/24", "-J", "--max-tests", "4"];
    let spec = VmSpec { mem_mb: 128, ..VmSpec::server("microvm", &cmdline) };
    let vm = Vm::boot_server(&ns, "server-image", &spec, UNIPERF_IP);
    let clients: [(Peer, &[&str]); 5] = [
        (Peer::V312, &["-t", "4", "-P", "2"]),
        (Peer::V322, &["-t", "4", "-P", "2", "-R"]),
        (Peer::V312, &["-t", "4", "--bidir"]),
        (Peer::V322, &["-t", "4", "-P", "2", "-R"]),
        (Peer::V322, &["-t", "1"]),
    ];
    let docs = concurrent_stock_clients(&ns, UNIPERF_IP, &clients, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let console = vm.console();
    let servers = json_documents(&console);
    for (i, d) in docs.iter().take(4).enumerate() {
        let d = d.as_ref().unwrap_or_else(|e| panic!("client {i} ({:?}) failed: {e}\n{}", clients[i].1, vm.describe()));
        check_concurrent_pair(i, d, &servers);
    }
    let fifth = docs[4].as_ref().expect_err("the fifth client must be turned away");
    assert!(fifth.contains("the server is busy running a test"), "{fifth}");
    assert_eq!(servers.iter().filter(|s| s["start"]["cookie"].is_string()).count(), 4, "one document per test");
}
