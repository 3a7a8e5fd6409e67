//! The unikernel image end to end: booted by `scripts/qemu.sh` (TCG by default, see
//! `UNIPERF_QEMU_ACCEL`) on TAPs of a bridge in a throw-away namespace (br0 198.18.0.1, server
//! guest 198.18.0.2 on tap0, client guest 198.18.0.3 on tap1):
//!
//! * stock `iperf3 -c` against the server image on microvm and pc (text, -J, -R, --bidir, -P 4)
//!   and q35 (text, -J, -R),
//!   with the client's and the image's `-J` documents cross-checked as in tap_interop.rs;
//! * the client image against stock `iperf3 -s -1 -B 198.18.0.1` (-J, -R, -P 4), its console
//!   document against the server's;
//! * the client image against the server image, two VMs on the bridge;
//! * garbage kernel command lines: a parameter error and guest exit code 1;
//! * a bounded malformed-frame flood (tests/clients/flood.py) that must not crash the server.
//!
//! Needs root, QEMU and a built image (`scripts/build-image.sh`); skipped loudly without them
//! (never under CI=true). The image is `$UNIPERF_IMAGE` or the release build in images/target.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const FLOOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/flood.py");
/// The server guest's and the client guest's kernel-side addresses.
const SERVER_GUEST_IP: &str = UNIPERF_IP;
const CLIENT_GUEST_IP: &str = UNIPERF_PEER_IP;
/// How long a stock iperf3 client of a 2 s test may take (TCG guests are slow to tear down).
const CLIENT_DEADLINE: Duration = Duration::from_secs(40);
/// How long a `-1` guest or a `-1` stock server may take to finish once the client is done.
const EXIT_AFTER_TEST: Duration = Duration::from_secs(20);
/// How long a client guest may run for a 2 s test, boot included.
const CLIENT_GUEST_RUN: Duration = Duration::from_secs(60);

/// One row of the matrix: the iperf3 flags and what they mean for byte accounting.
struct Case {
    args: &'static [&'static str],
    dir: Direction,
    streams: usize,
}

const FORWARD: Case = Case { args: &["-t", "2"], dir: Direction::Forward, streams: 1 };
const REVERSE: Case = Case { args: &["-t", "2", "-R"], dir: Direction::Reverse, streams: 1 };
const BIDIR: Case = Case { args: &["-t", "2", "--bidir"], dir: Direction::Bidir, streams: 1 };
const PARALLEL4: Case = Case { args: &["-t", "2", "-P", "4"], dir: Direction::Forward, streams: 4 };

fn server_cmdline(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["-s", "--ip", "198.18.0.2/24"];
    v.extend_from_slice(extra);
    v
}

/// Waits for a guest that should end by itself and checks its exit code.
#[track_caller]
fn expect_guest_exit(vm: &mut Vm, what: &str, code: i32, timeout: Duration) -> Finished {
    let done = vm.wait(timeout);
    assert_eq!(
        done.code(),
        Some(code),
        "{what}: expected qemu.sh to exit {code} (the guest's code):\n{}",
        done.describe()
    );
    done
}

/// Stock `iperf3 -c 198.18.0.2` from the bridge against the server image (`-s -1`).
mod stock_client_server_image {
    use super::*;

    /// `iperf3 -c … -J` against `-s -1 -J`: both documents, cross-checked; the guest exits 0.
    fn run(machine: &str, case: &Case) {
        if !require_vm_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = bridge_topology();
        let cmdline = server_cmdline(&["-1", "-J"]);
        let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server(machine, &cmdline), SERVER_GUEST_IP);
        let mut args = vec!["iperf3", "-c", SERVER_GUEST_IP, "-J"];
        args.extend_from_slice(case.args);
        let client = ns.spawn("iperf3-client", &args, CLIENT_DEADLINE).wait();
        let ok =
            client.success() && serde_json::from_str::<Value>(&client.stdout).is_ok_and(|v| v.get("error").is_none());
        if !ok {
            panic!("stock client failed:\n{}\n--- server image:\n{}", client.describe(), vm.describe());
        }
        let cj = client.json();
        let done = expect_guest_exit(&mut vm, "server image -s -1", 0, EXIT_AFTER_TEST);
        let sj = expect_console_json("server image", &done);
        let (fwd, rev) = assert_pair_consistent(&cj, &sj, case.dir, case.streams, false);
        if case.dir == Direction::Reverse {
            assert_sender_tcp_info("server image (-R)", &sj);
        }
        eprintln!(
            "iperf3 -c → image -s ({machine}) {:?}: client→server {fwd} B, server→client {rev} B; {:.3} Gbit/s",
            case.args,
            gbps(sum_received_bps(&cj))
        );
    }

    /// Plain `iperf3 -c` (text) against `-s -1` (text on the console).
    fn text(machine: &str) {
        if !require_vm_or_skip() {
            return;
        }
        let _serial = data_lock();
        let ns = bridge_topology();
        let cmdline = server_cmdline(&["-1"]);
        let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server(machine, &cmdline), SERVER_GUEST_IP);
        let client = ns.spawn("iperf3-client", &["iperf3", "-c", SERVER_GUEST_IP, "-t", "2"], CLIENT_DEADLINE).wait();
        if !client.success() {
            panic!("stock client failed:\n{}\n--- server image:\n{}", client.describe(), vm.describe());
        }
        for needle in ["Connecting to host", "sender", "receiver", "iperf Done."] {
            assert!(client.stdout.contains(needle), "client text output lacks {needle:?}:\n{}", client.stdout);
        }
        let done = expect_guest_exit(&mut vm, "server image -s -1", 0, EXIT_AFTER_TEST);
        let console = done.stdout.replace('\r', "");
        for needle in ["Server listening on 5201", "Accepted connection from", "receiver", idle_mode(machine)] {
            assert!(console.contains(needle), "server console lacks {needle:?}:\n{}", done.describe());
        }
    }

    /// The console line the image prints for its idle wait on `machine`: it halts on all three,
    /// woken by the NIC's I/O APIC line (microvm) or its MSI-X message (pc, q35).
    fn idle_mode(machine: &str) -> &'static str {
        match machine {
            "microvm" => "uniperf: idle: interrupts (NIC IRQ ",
            _ => "uniperf: idle: interrupts (NIC MSI-X ",
        }
    }

    mod microvm {
        use super::*;

        #[test]
        fn text_output() {
            text("microvm");
        }

        #[test]
        fn json() {
            run("microvm", &FORWARD);
        }

        #[test]
        fn reverse() {
            run("microvm", &REVERSE);
        }

        #[test]
        fn bidir() {
            run("microvm", &BIDIR);
        }

        #[test]
        fn parallel4() {
            run("microvm", &PARALLEL4);
        }
    }

    mod pc {
        use super::*;

        #[test]
        fn text_output() {
            text("pc");
        }

        #[test]
        fn json() {
            run("pc", &FORWARD);
        }

        #[test]
        fn reverse() {
            run("pc", &REVERSE);
        }

        #[test]
        fn bidir() {
            run("pc", &BIDIR);
        }

        #[test]
        fn parallel4() {
            run("pc", &PARALLEL4);
        }
    }

    /// q35: PCI Express, the NIC on the root complex, the ICH9 interrupt routing.
    mod q35 {
        use super::*;

        #[test]
        fn text_output() {
            text("q35");
        }

        #[test]
        fn json() {
            run("q35", &FORWARD);
        }

        #[test]
        fn reverse() {
            run("q35", &REVERSE);
        }
    }
}

/// The client image (`-c 198.18.0.1 … -J --ip 198.18.0.3/24` on tap1) against stock
/// `iperf3 -s -1 -B 198.18.0.1 -J` on the bridge.
mod client_image_stock_server {
    use super::*;

    fn run(machine: &str, case: &Case) {
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
            panic!(
                "client image: expected qemu.sh to exit 0:\n{}\n--- stock server:\n{}",
                done.describe(),
                server.describe()
            );
        }
        let cj = expect_console_json("client image", &done);
        let sj = server.wait_timeout(EXIT_AFTER_TEST).expect_json_success();
        let (fwd, rev) = assert_pair_consistent(&cj, &sj, case.dir, case.streams, false);
        if case.dir == Direction::Forward {
            assert_sender_tcp_info("client image", &cj);
        }
        eprintln!(
            "image -c ({machine}) → iperf3 -s {:?}: client→server {fwd} B, server→client {rev} B; {:.3} Gbit/s",
            case.args,
            gbps(sum_received_bps(&cj))
        );
    }

    #[test]
    fn microvm_json() {
        run("microvm", &FORWARD);
    }

    #[test]
    fn microvm_reverse() {
        run("microvm", &REVERSE);
    }

    #[test]
    fn microvm_parallel4() {
        run("microvm", &PARALLEL4);
    }

    #[test]
    fn pc_json() {
        run("pc", &FORWARD);
    }
}

/// Client image (microvm, tap1) against server image (pc, tap0): two VMs on the bridge.
#[test]
fn client_image_server_image() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let server_cmdline = server_cmdline(&["-1", "-J"]);
    let mut server = Vm::boot_server(&ns, "server-image", &VmSpec::server("pc", &server_cmdline), SERVER_GUEST_IP);
    let client_cmdline = ["-c", SERVER_GUEST_IP, "-t", "2", "-J", "--ip", "198.18.0.3/24"];
    let mut client = Vm::boot(&ns, "client-image", &VmSpec::client("microvm", &client_cmdline));
    let cdone = client.wait(CLIENT_GUEST_RUN);
    if cdone.code() != Some(0) {
        panic!(
            "client image: expected qemu.sh to exit 0:\n{}\n--- server image:\n{}",
            cdone.describe(),
            server.describe()
        );
    }
    let cj = expect_console_json("client image", &cdone);
    let sdone = expect_guest_exit(&mut server, "server image -s -1", 0, EXIT_AFTER_TEST);
    let sj = expect_console_json("server image", &sdone);
    let (fwd, _) = assert_pair_consistent(&cj, &sj, Direction::Forward, 1, false);
    eprintln!(
        "image -c (microvm, {CLIENT_GUEST_IP}) → image -s (pc): {fwd} B; {:.3} Gbit/s",
        gbps(sum_received_bps(&cj))
    );
}

/// Kernel command lines the image must refuse: a parameter error on the console and guest exit
/// code 1, on both machine types.
#[test]
fn garbage_command_lines() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cases: &[(&str, &[&str])] = &[
        ("microvm", &["-s", "--bogus"]),
        ("pc", &["-s", "--bogus"]),
        ("microvm", &["--bogus", "x"]),
        ("microvm", &["-c"]),
        ("microvm", &["-s", "-P", "many", "--ip", "198.18.0.2/24"]),
        ("microvm", &["-s", "--ip", "198.18.0.999/24"]),
        ("microvm", &["-s"]),
    ];
    for (machine, cmdline) in cases {
        let spec = VmSpec { timeout: Duration::from_secs(60), ..VmSpec::server(machine, cmdline) };
        let mut vm = Vm::boot(&ns, "garbage", &spec);
        let what = format!("{machine} -append {:?}", cmdline.join(" "));
        let done = expect_guest_exit(&mut vm, &what, 1, Duration::from_secs(60));
        let console = done.stdout.replace('\r', "");
        assert!(
            console.contains("uniperf: parameter error"),
            "{what}: the console has no 'uniperf: parameter error' line:\n{}",
            done.describe()
        );
        assert!(
            !console.contains("ready: listening"),
            "{what}: the image started serving anyway:\n{}",
            done.describe()
        );
        eprintln!(
            "{what}: exit 1, {}",
            console.lines().find(|l| l.contains("parameter error")).unwrap_or_default().trim()
        );
    }
}

/// ~20k malformed frames at the server guest in ≤ 5 s; afterwards QEMU still runs, nothing
/// panicked, and a good `iperf3 -c -t 1` works.
#[test]
fn malformed_frame_flood() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = server_cmdline(&[]);
    let mut vm = Vm::boot_server(&ns, "server-image", &VmSpec::server("microvm", &cmdline), SERVER_GUEST_IP);
    let flood = ns
        .spawn(
            "flood",
            &[
                "python3",
                FLOOD,
                "--iface",
                "tap0",
                "--dst-mac",
                SERVER_GUEST_MAC,
                "--dst-ip",
                SERVER_GUEST_IP,
                "--count",
                "20000",
                "--seconds",
                "5",
            ],
            Duration::from_secs(30),
        )
        .wait();
    flood.expect_success();
    let report: Value = serde_json::from_str(flood.stdout.trim())
        .unwrap_or_else(|e| panic!("flood report is not JSON ({e}):\n{}", flood.describe()));
    let sent = report["sent"].as_u64().unwrap_or(0);
    assert!(sent >= 10_000, "the flood sent only {sent} frames (expected ~20000): {report}");
    eprintln!("flood: {report}");

    assert!(vm.is_running(), "QEMU ended during the flood:\n{}", vm.describe());
    let client = ns.spawn("iperf3-client", &["iperf3", "-c", SERVER_GUEST_IP, "-t", "1", "-J"], CLIENT_DEADLINE).wait();
    let ok = client.success() && serde_json::from_str::<Value>(&client.stdout).is_ok_and(|v| v.get("error").is_none());
    if !ok {
        panic!("iperf3 -t 1 after the flood failed:\n{}\n--- server image:\n{}", client.describe(), vm.describe());
    }
    let cj = client.json();
    let received = sum_received_bytes(&cj);
    assert!(received > 0, "iperf3 -t 1 after the flood moved no data: {cj}");
    assert!(vm.is_running(), "QEMU ended after the flood:\n{}", vm.describe());
    let console = vm.console();
    for bad in ["panic", "exception", "error - "] {
        assert!(
            !console.to_lowercase().contains(bad),
            "the server image's console mentions {bad:?} after the flood:\n{}",
            vm.describe()
        );
    }
    eprintln!("after the flood: iperf3 -t 1 received {received} B at {:.3} Gbit/s", gbps(sum_received_bps(&cj)));
    vm.stop();
}
