//! `uniperf sim`: client and server stacks joined by a simulated link in one process, in virtual
//! time. No root needed. Checks that the client's `-J` sums are consistent on a clean link and on
//! a lossy, delayed one, and that a seed makes a run reproducible.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Wall-clock limit of one simulated run (debug build; the test itself is virtual time).
const SIM_DEADLINE: Duration = Duration::from_secs(300);
const LOSSY: &[&str] = &["--loss", "0.5", "--delay", "5"];

fn run_sim(args: &[&str]) -> Finished {
    let mut argv = vec![UNIPERF.to_string(), "sim".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    Proc::spawn("uniperf-sim", &argv, SIM_DEADLINE).wait()
}

fn sim_json(args: &[&str]) -> Value {
    let done = run_sim(args);
    let v = done.expect_json_success();
    eprintln!(
        "uniperf sim {args:?}: {:.3} Gbit/s received, {:.1} s wall",
        gbps(sum_received_bps(&v)),
        done.elapsed.as_secs_f64()
    );
    v
}

/// received ≤ sent and both > 0 for one direction of the client's document.
#[track_caller]
fn assert_direction(what: &str, sent: u64, received: u64) {
    assert!(sent > 0, "{what}: nothing sent");
    assert!(received > 0, "{what}: nothing received");
    assert!(received <= sent, "{what}: received {received} B > sent {sent} B");
}

#[track_caller]
fn check(v: &Value, dir: Direction, streams: usize) {
    let expected = if dir == Direction::Bidir { 2 * streams } else { streams };
    assert_eq!(end_streams(v).len(), expected, "end.streams[] length");
    assert!(!intervals(v).is_empty(), "intervals[] is empty");
    assert_direction(
        if dir == Direction::Reverse { "server→client" } else { "client→server" },
        sum_sent_bytes(v),
        sum_received_bytes(v),
    );
    if dir == Direction::Bidir {
        assert_direction("server→client", sum_sent_reverse_bytes(v), sum_received_reverse_bytes(v));
    }
}

fn case(extra: &[&str], dir: Direction, streams: usize) {
    let _serial = data_lock();
    let mut args = vec!["-t", "2", "-J"];
    args.extend_from_slice(extra);
    let v = sim_json(&args);
    check(&v, dir, streams);
}

#[test]
fn default() {
    case(&[], Direction::Forward, 1);
}

#[test]
fn parallel4() {
    case(&["-P", "4"], Direction::Forward, 4);
}

#[test]
fn reverse() {
    case(&["-R"], Direction::Reverse, 1);
}

#[test]
fn bidir() {
    case(&["--bidir"], Direction::Bidir, 1);
}

#[test]
fn lossy_default() {
    case(LOSSY, Direction::Forward, 1);
}

#[test]
fn lossy_parallel4() {
    let mut extra = vec!["-P", "4"];
    extra.extend_from_slice(LOSSY);
    case(&extra, Direction::Forward, 4);
}

#[test]
fn lossy_reverse() {
    let mut extra = vec!["-R"];
    extra.extend_from_slice(LOSSY);
    case(&extra, Direction::Reverse, 1);
}

#[test]
fn lossy_bidir() {
    let mut extra = vec!["--bidir"];
    extra.extend_from_slice(LOSSY);
    case(&extra, Direction::Bidir, 1);
}

/// Same flags and seed, same byte counts (the help promises determinism for a given --seed).
#[test]
fn same_seed_same_result() {
    let _serial = data_lock();
    let args = ["-t", "2", "-J", "--loss", "0.5", "--delay", "5", "--seed", "7"];
    let a = sim_json(&args);
    let b = sim_json(&args);
    assert_eq!(
        (sum_sent_bytes(&a), sum_received_bytes(&a)),
        (sum_sent_bytes(&b), sum_received_bytes(&b)),
        "two runs with --seed 7 disagree on (end.sum_sent.bytes, end.sum_received.bytes)"
    );
}

#[test]
fn text_output() {
    let _serial = data_lock();
    let done = run_sim(&["-t", "2"]);
    done.expect_success();
    for needle in ["sender", "receiver", "iperf Done."] {
        assert!(done.stdout.contains(needle), "sim text output lacks {needle:?}:\n{}", done.describe());
    }
}

/// `uniperf sim -u` with 1 % injected loss over more than 100 000 datagrams: the receiver's
/// loss is within 0.2 percentage points of it, and the same seed gives the same figures.
#[test]
fn udp_loss_matches_the_injected_rate() {
    let args = ["-u", "-b", "1G", "-l", "1400", "-t", "2", "--loss", "1", "--seed", "9", "-J"];
    let v = sim_json(&args);
    let r = &v["end"]["sum_received"];
    let (lost, packets) = (r["lost_packets"].as_u64().unwrap(), r["packets"].as_u64().unwrap());
    assert!(packets > 100_000, "{packets} datagrams");
    let pct = 100.0 * lost as f64 / packets as f64;
    assert!((pct - 1.0).abs() <= 0.2, "{pct:.3} % lost for 1 % injected");
    assert_eq!(sim_json(&args)["end"]["sum_received"], *r, "same seed, same figures");
}
