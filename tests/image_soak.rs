//! The soak harness (benches/soak.sh --target image) at a small count in CI: misbehaving clients
//! of every kind interleaved with good stock iperf3 clients against the server image under
//! QEMU. Every good client is served, the image survives without a panic, and its heap in use
//! after the soak (the `uniperf.heapstats` line after a last good test) is within a margin of
//! what it was after the warm-up test; the high-water mark is reported. The long run (1000
//! misbehaving, 50 good) is in the README. Needs root, QEMU and a built image; skipped loudly
//! without them (never under CI=true).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn image_survives_misbehaving_clients() {
    if !require_vm_or_skip() {
        return;
    }
    let _l = data_lock();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/soak.sh");
    let image = image_path();
    let done = run_host(
        &[
            "env",
            &format!("UNIPERF_IMAGE={}", image.display()),
            script,
            "--target",
            "image",
            "--bad",
            "48",
            "--good",
            "4",
            "--no-build",
        ],
        Duration::from_secs(400),
    );
    assert!(done.success(), "image soak failed:\n{}", done.describe());
    let out = &done.stdout;
    assert!(out.contains("server alive: yes; panics: 0"), "{out}");
    assert!(out.contains("\"good_served\": 4"), "{out}");
    let heap = out.lines().find(|l| l.starts_with("heap (bytes)")).expect("heap line");
    let nums: Vec<u64> = heap.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (used0, used1) = (nums[0], nums[1]);
    assert!(used1 <= used0 + 256 * 1024, "heap in use grew from {used0} to {used1} B: {heap}");
    eprintln!("{heap}");
}
