//! `uniperf compare` end to end with short runs: every case measures (Xen in a test of its own,
//! one rig boot), and the table, the JSON document (with each run's command lines), the bar
//! chart and the flow-log plots are written. Needs root and QEMU; skipped loudly without them (never under CI=true).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn compare_writes_its_table_json_and_plots() {
    if !require_vm_or_skip() {
        return;
    }
    let _l = data_lock();
    let dir = std::env::temp_dir().join(format!("uniperf-compare-test.{}", std::process::id()));
    let dir_s = dir.to_string_lossy().to_string();
    let done = run_host(
        &[UNIPERF, "compare", "-t", "1", "-o", &dir_s, "--cases", "veth,linux-guest,image,tap,image-pair"],
        Duration::from_secs(900),
    );
    assert!(done.success(), "compare failed:\n{}", done.describe());
    for case in ["iperf3 <> iperf3 over veth", "iperf3 <> uniperf on TAP", "uniperf image <> uniperf image"] {
        assert!(done.stdout.contains(case), "the table lacks {case:?}:\n{}", done.stdout);
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    for r in runs {
        assert!(r["gbps"].as_f64().is_some_and(|g| g > 0.0), "{}: no rate", r["case"]);
        assert!(!r["commands"].as_array().unwrap().is_empty(), "{}: no command lines", r["case"]);
    }
    for f in ["compare.png", "compare.svg", "compare.txt", "flowlogs.png", "flowlog-veth.png", "flowlog-tap.png"] {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{f} missing or empty");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The last lines of every file compare kept from a failed rig run.
fn kept_rig_files(dir: &std::path::Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else { return format!("(nothing kept in {})", dir.display()) };
    let mut out = String::new();
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!(
            "--- {} (last lines)\n{}\n",
            e.path().display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        );
    }
    out
}

/// Case 6 alone: one boot of the Xen rig measures dom0's stock iperf3 against the uniperf server
/// domU and against a Linux PV domU; both rows carry a rate and the rig's command line, and the
/// uniperf row says its ratio to the Linux one.
#[test]
fn compare_xen_rows_from_one_rig_boot() {
    if !require_vm_or_skip() {
        return;
    }
    let _l = data_lock();
    let dir = std::env::temp_dir().join(format!("uniperf-compare-xen.{}", std::process::id()));
    let dir_s = dir.to_string_lossy().to_string();
    let done = run_host(
        &[UNIPERF, "compare", "-t", "2", "-o", &dir_s, "--no-plots", "--cases", "xen"],
        Duration::from_secs(1500),
    );
    assert!(done.success(), "compare --cases xen failed:\n{}", done.describe());
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    let cases: Vec<&str> = runs.iter().filter_map(|r| r["case"].as_str()).collect();
    assert_eq!(cases, ["xen", "xen-linux"], "{}", done.stdout);
    for r in runs {
        assert!(
            r["gbps"].as_f64().is_some_and(|g| g > 0.0),
            "{}: no rate:\n{}\n{}",
            r["case"],
            done.describe(),
            kept_rig_files(&dir.join("xen-rig"))
        );
        let commands = r["commands"].as_array().unwrap();
        assert!(commands.iter().any(|c| c.as_str().is_some_and(|c| c.contains("scripts/xen/rig.sh"))), "{r}");
        assert!(commands.iter().any(|c| c.as_str().is_some_and(|c| c.contains("(in dom0) iperf3 -c"))), "{r}");
    }
    for needle in
        ["iperf3 (dom0) <> uniperf server domU (Xen)", "iperf3 (dom0) <> Linux PV domU (Xen)", "x the Linux domU"]
    {
        assert!(done.stdout.contains(needle), "the table lacks {needle:?}:\n{}", done.stdout);
    }
    eprintln!("{}", done.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}
