//! In-process tests of the server beyond iperf3: several tests at once (`--max-tests`), and
//! the policy limits (`--server-max-duration`, `--server-bitrate-limit`, `--max-streams`,
//! `--max-total-streams`, `--rcv-timeout`, `--snd-timeout`) with iperf3's error codes as the
//! client reports them. No root; virtual time.

mod support;

use netstack::driver::Role;
use netstack::proto::ErrorCode;
use netstack::sim::Direction;
use netstack::smoltcp::time::Duration;
use serde_json::Value;
use support::*;

/// The documents a `-J` server printed, one per test, by cookie.
fn server_documents(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text).into_iter::<Value>().map(|d| d.expect("a -J document")).collect()
}

fn cookie(doc: &Value) -> String {
    doc["start"]["cookie"].as_str().expect("start.cookie").to_string()
}

/// Runs `args` as concurrent clients; returns their outputs and the server's.
fn run_together(b: &mut Bench, args: &[&str]) -> (Vec<String>, String, Vec<Result<(), String>>) {
    let clients = args.iter().map(|a| b.client(a)).collect();
    let mut all = Clients::new(clients);
    b.pair.run_test(&mut b.server, &mut all, Duration::from_secs(60)).unwrap();
    // Let the server finish the last test's exchange.
    b.pair.run_for(&mut b.server, &mut all, Duration::from_millis(200));
    let status = all.clients.iter().map(|c| c.status().map_err(String::from)).collect();
    (all.outputs, std::mem::take(&mut b.pair.server.output), status)
}

#[test]
fn four_tests_at_once_each_get_their_own_result_and_a_fifth_is_busy() {
    let mut b = Bench::new("-J --max-tests 4");
    let args = ["-J -t 2 -P 2", "-J -t 2 -P 2 -R", "-J -t 2 --bidir", "-J -n 20M -P 2", "-J -t 2"];
    let (outs, server, status) = run_together(&mut b, &args);
    for (i, s) in status.iter().take(4).enumerate() {
        assert!(s.is_ok(), "client {i} ({}) failed: {s:?}\n{}", args[i], outs[i]);
    }
    let fifth = status[4].as_ref().expect_err("the fifth client must be turned away");
    assert!(fifth.contains(ErrorCode::ACCESS_DENIED.message()), "{fifth}");
    let docs = server_documents(&server);
    assert_eq!(docs.len(), 4, "one server document per test:\n{server}");
    for (i, out) in outs.iter().take(4).enumerate() {
        let c: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("client {i}: {e}\n{out}"));
        let s = docs
            .iter()
            .find(|d| cookie(d) == cookie(&c))
            .unwrap_or_else(|| panic!("no server document for client {i}"));
        // Each side's figures for the data it received equal what the other side says it
        // received, for this test and no other.
        for key in ["sum_received", "sum_received_bidir_reverse"] {
            if let (Some(cb), Some(sb)) = (c["end"][key]["bytes"].as_u64(), s["end"][key]["bytes"].as_u64()) {
                if c["end"][key]["sender"] == false {
                    assert!(cb > 0, "client {i} {key}");
                } else {
                    assert_eq!(cb, sb, "client {i} ({}) {key}: the client prints what the server received", args[i]);
                }
            }
        }
    }
    let c3: Value = serde_json::from_str(&outs[3]).unwrap();
    assert_eq!(c3["end"]["sum_sent"]["bytes"], 20 << 20, "-n is exact with other tests running");
    b.good_client_is_served("four tests at once");
}

#[test]
fn one_test_at_a_time_by_default() {
    let mut b = Bench::new("");
    let (_, _, status) = run_together(&mut b, &["-t 1", "-t 1"]);
    assert!(status[0].is_ok(), "{status:?}");
    assert!(status[1].as_ref().is_err_and(|e| e.contains(ErrorCode::ACCESS_DENIED.message())), "{status:?}");
}

fn refused(server_args: &str, client_args: &str, code: ErrorCode) {
    let mut b = Bench::new(server_args);
    let (c, s, status) = b.run(client_args);
    let e = status.expect_err("refused");
    assert!(e.contains(code.message()), "{server_args} / {client_args}: {e}\n{c}\n{s}");
    let (c, _, status) = b.run("-t 1 -b 10M");
    assert!(status.is_ok(), "after a refusal under {server_args}: {status:?}\n{c}");
}

#[test]
fn policy_refusals_carry_iperf3_codes() {
    refused("--server-max-duration 3", "-t 5", ErrorCode::MAX_SERVER_DURATION);
    refused("--server-max-duration 3", "-t 2 -O 2", ErrorCode::MAX_SERVER_DURATION);
    refused("--server-max-duration 3", "-n 1M", ErrorCode::MAX_SERVER_DURATION);
    refused("--server-bitrate-limit 150M", "-b 100M -P 2 -t 1", ErrorCode::TOTAL_RATE);
    refused("--server-bitrate-limit 150M", "-u -b 100M --bidir -t 1", ErrorCode::TOTAL_RATE);
    refused("--max-streams 2", "-P 3 -t 1", ErrorCode::NUM_STREAMS);
    refused("--max-streams 2", "--bidir -P 2 -t 1", ErrorCode::NUM_STREAMS);
    // Within the limits, tests run.
    let mut b = Bench::new("--server-max-duration 3 --server-bitrate-limit 150M --max-streams 2");
    let (c, _, status) = b.run("-t 2 -b 60M -P 2");
    assert!(status.is_ok(), "{status:?}\n{c}");
}

#[test]
fn total_streams_are_capped_across_tests() {
    let mut b = Bench::new("--max-tests 3 --max-total-streams 3");
    let (_, _, status) = run_together(&mut b, &["-t 2 -P 2", "-t 2 -P 2"]);
    assert!(status[0].is_ok(), "{status:?}");
    assert!(status[1].as_ref().is_err_and(|e| e.contains(ErrorCode::NUM_STREAMS.message())), "{status:?}");
}

#[test]
fn bitrate_limit_ends_a_test_that_exceeds_it() {
    // Unlimited TCP asks for no rate, so only the running check can catch it: the average
    // over 1 s crosses 100 Mbit/s on a 1 Gbit/s link.
    let mut b = Bench::new("--server-bitrate-limit 100M/1");
    let (c, s, status) = b.run("-t 5");
    let e = status.expect_err("over the limit");
    assert!(e.contains(ErrorCode::TOTAL_RATE.message()), "{e}\n{c}");
    assert!(s.contains("over the server's limit"), "{s}");
    b.good_client_is_served("a test over the bitrate limit");
}

#[test]
fn receive_and_send_timeouts_end_silent_tests() {
    // --rcv-timeout: a client that starts a test and sends nothing.
    let mut b = Bench::new("--rcv-timeout 500");
    let mut cl = b.client("-t 5 -b 1");
    // -b 1 bit/s: the first byte leaves, then nothing for seconds.
    b.pair.run_test(&mut b.server, &mut cl, Duration::from_secs(10)).unwrap();
    let e = cl.status().expect_err("no data for 500 ms");
    assert!(e.contains(ErrorCode::NO_MSG.message()), "{e}");
    b.good_client_is_served("--rcv-timeout");
    // The client's own --rcv-timeout, receiving nothing from a server told to send 1 bit/s.
    let mut b = Bench::new("");
    let (c, _, status) = b.run("-t 5 -R -b 1 --rcv-timeout 500");
    let e = status.expect_err("the client gave up");
    assert!(e.contains(ErrorCode::NO_MSG.message()), "{e}\n{c}");
    // --snd-timeout: the client vanishes mid-test (nothing it sends arrives any more).
    let mut b = Bench::new("--snd-timeout 300 --idle-timeout 60");
    let mut cl = b.client("-t 5 -R");
    b.pair.run_for(&mut b.server, &mut cl, Duration::from_secs(1));
    b.pair.link.set_loss(Direction::BtoA, 1.0);
    b.pair.run_for(&mut b.server, &mut cl, Duration::from_secs(2));
    let s = std::mem::take(&mut b.pair.server.output);
    assert!(s.contains("acknowledged nothing in time"), "the server gave up on the silent client:\n{s}");
    b.pair.link.set_loss(Direction::BtoA, 0.0);
    let _ = cl.done();
}

#[test]
fn a_test_that_does_not_fit_its_share_is_refused() {
    // Four tests share the budget: one -w 64M test fits the whole of it but not a quarter.
    let mut b = Bench::new("--max-tests 4");
    let (c, _, status) = b.run("-t 1 -w 32M -P 2");
    let e = status.expect_err("over its share");
    assert!(e.contains(ErrorCode::SET_BUF2.message()), "{e}\n{c}");
}
