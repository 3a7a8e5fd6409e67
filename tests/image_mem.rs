//! The image with too little memory for a test: the test is refused cleanly, nothing panics.
//!
//! * server image with `--mem SMALL_MB`: two stock `iperf3 -c` in a row each get iperf3's
//!   "unable to create a new stream" (SERVER_ERROR, the server could not allocate the stream's
//!   buffers); the server keeps listening and its console shows no panic;
//! * client image with `--mem SMALL_MB` against stock `iperf3 -s`, `-P 4`: it either fits (its
//!   buffers are sized from what is free) or prints the error and exits 1; never a panic (2).
//!
//! Before fallible allocation, `-m 11` ended the server image with "memory allocation of
//! 3312160 bytes failed". Needs root, QEMU and a built image; skipped loudly without them
//! (never under CI=true).

mod common;

use std::time::Duration;

use common::*;

/// Guest memory that boots and serves control connections but cannot fit a default test's
/// socket buffers.
const SMALL_MB: u32 = 11;
const REFUSED: &str = "unable to create a new stream";

#[test]
fn server_image_refuses_a_test_that_does_not_fit() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let cmdline = ["-s", "--ip", "198.18.0.2/24", "uniperf.heapstats"];
    let spec = VmSpec { mem_mb: SMALL_MB, ..VmSpec::server("microvm", &cmdline) };
    let mut vm = Vm::boot_server(&ns, "server-image", &spec, UNIPERF_IP);
    for round in 1..=2 {
        let client =
            ns.spawn("iperf3-client", &["iperf3", "-c", UNIPERF_IP, "-t", "1", "-J"], Duration::from_secs(40)).wait();
        let text = client.stdout.clone();
        // The refusal is in the client's `-J` "error" (iperf3 3.12 has been seen to exit 0 as
        // well as 1 after printing it: its status is not ours to pin).
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_default();
        assert!(
            error.contains(REFUSED),
            "round {round}: expected iperf3's -J error to say '{REFUSED}':\n{}\n--- server image:\n{}",
            client.describe(),
            vm.describe()
        );
        assert!(vm.is_running(), "round {round}: the server image ended:\n{}", vm.describe());
    }
    let console = vm.console();
    assert!(!console.contains("panic"), "the server image panicked:\n{}", vm.describe());
    // The server's own line names what it could not allocate; the client got REFUSED.
    assert!(
        console.contains("iperf3: error - out of memory: cannot allocate"),
        "the server image did not report the refusal:\n{}",
        vm.describe()
    );
    eprintln!(
        "--mem {SMALL_MB}: {}",
        console
            .lines()
            .filter(|l| l.contains("out of memory") || l.contains("uniperf: heap:"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

#[test]
fn client_image_with_little_memory_never_panics() {
    if !require_vm_or_skip() {
        return;
    }
    let _serial = data_lock();
    let ns = bridge_topology();
    let mut server = start_iperf3_server(&ns, &["-1", "-B", KERNEL_IP], Duration::from_secs(60));
    let cmdline = ["-c", KERNEL_IP, "-t", "1", "-P", "4", "--ip", "198.18.0.3/24"];
    let spec = VmSpec { mem_mb: SMALL_MB, ..VmSpec::client("microvm", &cmdline) };
    let mut vm = Vm::boot(&ns, "client-image", &spec);
    let done = vm.wait(Duration::from_secs(60));
    let console = done.stdout.replace('\r', "");
    assert!(!console.contains("panic"), "the client image panicked:\n{}", done.describe());
    match done.code() {
        // The client sizes its buffers from what is free, so a -P 4 test may fit after all.
        Some(0) => eprintln!("client --mem {SMALL_MB}: the test fitted (exit 0)"),
        Some(1) => {
            assert!(console.contains("error"), "exit 1 but no error on the client's console:\n{}", done.describe());
            eprintln!(
                "client --mem {SMALL_MB}: exit 1, {}",
                console.lines().find(|l| l.contains("error")).unwrap_or_default().trim()
            );
        }
        _ => panic!("expected exit 0 or 1 (never the crash status 2):\n{}", done.describe()),
    }
    server.kill();
}
