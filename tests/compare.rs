//! `uniperf compare` end to end with short runs: every case but Xen measures, and the table,
//! the JSON document (with each run's command lines), the bar chart and the flow-log plots
//! are written. Needs root and QEMU; skipped loudly without them (never under CI=true).

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
