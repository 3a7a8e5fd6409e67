//! The unikernel image in UDP tests, under QEMU in a throw-away namespace (bridge topology):
//! stock `iperf3 -c -u` against the server image and the client image against stock
//! `iperf3 -s`, on microvm and pc. Both `-J` documents (the guest's from its console) are
//! cross-checked as the TAP UDP tests do: the client's copy of the server's counts equals the
//! server's own, received <= sent with the gap bounded by what was in flight at TEST_END.
//! Under TCG the guest is slow, so the rates are modest and the jitter bound is loose (a
//! sanity bound: a broken arrival clock shows as seconds).

#[macro_use]
mod common;

use std::time::Duration;

use common::udp::*;
use common::*;

const CLIENT_DEADLINE: Duration = Duration::from_secs(40);
const EXIT_AFTER_TEST: Duration = Duration::from_secs(20);
const CLIENT_GUEST_RUN: Duration = Duration::from_secs(60);
const MAX_JITTER_MS: f64 = 50.0;

const FORWARD: Case = Case { args: &["-u", "-b", "50M", "-t", "2"], rate: 50_000_000, len: 1460, streams: 1 };
const REVERSE_P2: Case =
    Case { args: &["-u", "-b", "20M", "-t", "2", "-R", "-P", "2"], rate: 20_000_000, len: 1460, streams: 2 };

fn stock_client(machine: &str, case: &Case) {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = ["-s", "--ip", "198.18.0.2/24", "-1", "-J"];
    let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server(machine, &cmdline), UNIPERF_IP);
    let mut args = vec!["iperf3", "-c", UNIPERF_IP, "-J"];
    args.extend_from_slice(case.args);
    let client = ns.spawn("iperf3-client", &args, CLIENT_DEADLINE).wait();
    if !client.success() {
        panic!("stock client failed:\n{}\n--- server image:\n{}", client.describe(), vm.describe());
    }
    let cj = client.expect_json_success();
    let done = vm.wait(EXIT_AFTER_TEST);
    assert_eq!(done.code(), Some(0), "server image -s -1:\n{}", done.describe());
    let sj = expect_console_json("server image", &done);
    check_case(&format!("iperf3 -c {:?} -> image -s ({machine})", case.args), case, &cj, &sj, MAX_JITTER_MS);
}

fn client_image(machine: &str, case: &Case) {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let mut server = start_iperf3_server(&ns, &["-1", "-B", KERNEL_IP, "-J"], Duration::from_secs(120));
    let mut cmdline = vec!["-c", KERNEL_IP, "-J", "--ip", "198.18.0.3/24"];
    cmdline.extend_from_slice(case.args);
    let mut vm = Vm::boot(&ns, "client-image", &VmSpec::client(machine, &cmdline));
    let done = vm.wait(CLIENT_GUEST_RUN);
    if done.code() != Some(0) {
        panic!("client image: expected exit 0:\n{}\n--- stock server:\n{}", done.describe(), server.describe());
    }
    let cj = expect_console_json("client image", &done);
    let sj = server.wait_timeout(EXIT_AFTER_TEST).expect_json_success();
    check_case(&format!("image -c {:?} ({machine}) -> iperf3 -s", case.args), case, &cj, &sj, MAX_JITTER_MS);
}

#[test]
fn stock_client_server_image_microvm() {
    stock_client("microvm", &FORWARD);
}

#[test]
fn stock_client_server_image_pc_reverse() {
    stock_client("pc", &REVERSE_P2);
}

#[test]
fn client_image_stock_server_microvm_reverse() {
    client_image("microvm", &REVERSE_P2);
}

#[test]
fn client_image_stock_server_pc() {
    client_image("pc", &FORWARD);
}
