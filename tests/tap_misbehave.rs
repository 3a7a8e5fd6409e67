//! Server robustness over TAP: `uniperf -s --idle-timeout 2` faces one misbehaving client
//! (tests/clients/misbehave.py, or a second stock iperf3 during a test), then a good stock
//! `iperf3 -c -t 1 -J` that must succeed. We assert what the misbehaving client receives where
//! the protocol defines it (0xff ACCESS_DENIED, 0xfe SERVER_ERROR + i_errno) and that the server
//! is still alive afterwards. Needs root; skipped loudly without it (never under CI=true).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MISBEHAVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/misbehave.py");
/// The server's idle timeout in these tests.
const IDLE: u64 = 2;
const SERVER_LIFE: Duration = Duration::from_secs(240);

/// SERVER_ERROR state byte; followed by int32 BE i_errno and int32 BE errno.
const SERVER_ERROR: u8 = 0xfe;
/// ACCESS_DENIED state byte.
const ACCESS_DENIED: u8 = 0xff;
const PARAM_EXCHANGE: u8 = 0x09;
const CREATE_STREAMS: u8 = 0x0a;
/// iperf3's i_errno for "unable to receive parameters from client" — what iperf3 records when
/// JSON_read of the params fails (bad length, short read or unparsable JSON).
const IERECVPARAMS: i32 = 114;

/// A namespace with a TAP and a running `uniperf -s`. Fields drop in order: the server is
/// killed before the namespace goes.
struct Fixture {
    server: Proc,
    ns: Netns,
}

impl Fixture {
    fn new() -> Fixture {
        let ns = tap_topology();
        let idle = IDLE.to_string();
        let server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["--idle-timeout", &idle], SERVER_LIFE);
        Fixture { server, ns }
    }

    /// Runs a misbehave.py scenario to completion and returns its JSON report.
    #[track_caller]
    fn misbehave(&mut self, scenario: &str, extra: &[&str], deadline: Duration) -> Value {
        let mut args = vec!["python3", MISBEHAVE, scenario, "--host", UNIPERF_IP];
        args.extend_from_slice(extra);
        let done = self.ns.spawn(scenario, &args, deadline).wait();
        if !done.success() {
            panic!(
                "misbehaving client {scenario} failed itself:\n{}\n--- server:\n{}",
                done.describe(),
                self.server.describe()
            );
        }
        let line = done.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{scenario}: report is not JSON ({e}):\n{}", done.describe()))
    }

    /// The server process is still running.
    #[track_caller]
    fn assert_server_alive(&mut self, after: &str) {
        if !self.server.is_running() {
            panic!("uniperf server died after {after}:\n{}", self.server.describe());
        }
    }

    /// A good `iperf3 -c -t 1 -J` must succeed and move data.
    #[track_caller]
    fn good_client(&mut self, after: &str) {
        self.assert_server_alive(after);
        let client = self
            .ns
            .spawn("good-client", &["iperf3", "-c", UNIPERF_IP, "-t", "1", "-J"], Duration::from_secs(30))
            .wait();
        let ok =
            client.success() && serde_json::from_str::<Value>(&client.stdout).is_ok_and(|v| v.get("error").is_none());
        if !ok {
            panic!(
                "the good client after {after} failed:\n{}\n--- server:\n{}",
                client.describe(),
                self.server.describe()
            );
        }
        let v = client.json();
        assert!(sum_received_bytes(&v) > 0, "the good client after {after} moved no data");
        self.assert_server_alive(&format!("the good client after {after}"));
    }
}

fn received(report: &Value) -> Vec<u8> {
    let hex = report["received"].as_str().unwrap_or_default();
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn closed(report: &Value) -> &str {
    report["closed"].as_str().unwrap_or_default()
}

/// A SERVER_ERROR frame: 0xfe, i_errno, errno (9 bytes). Returns i_errno.
#[track_caller]
fn server_error_code(bytes: &[u8], report: &Value) -> i32 {
    assert!(
        bytes.len() == 9 && bytes[0] == SERVER_ERROR,
        "expected a 9-byte SERVER_ERROR frame (fe + i_errno + errno), got {:02x?}; report {report}",
        bytes
    );
    i32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"))
}

/// `count` control connections stall (nothing at all, or nothing after PARAM_EXCHANGE). After
/// idle timeout + 1 s, with the stallers still holding their sockets, a good client must succeed;
/// and the server must have closed every stalled connection by then.
fn stall_case(scenario: &str, count: usize) {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let hold = (IDLE + 8).to_string();
    let count_arg = count.to_string();
    let mut staller = f.ns.spawn(
        scenario,
        &["python3", MISBEHAVE, scenario, "--host", UNIPERF_IP, "--hold", &hold, "--count", &count_arg],
        Duration::from_secs(60),
    );
    staller.wait_for_stderr_line("phase: stalling", Duration::from_secs(20));
    thread::sleep(Duration::from_secs(IDLE + 1));
    f.good_client(&format!("{count} stalled connection(s) ({scenario})"));
    let done = staller.wait();
    done.expect_success();
    let line = done.stdout.lines().last().unwrap_or_default().to_string();
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{scenario}: bad report ({e}): {line}"));
    let conns = report["connections"].as_array().cloned().unwrap_or_default();
    assert_eq!(conns.len(), count, "report lists every connection: {report}");
    for (i, c) in conns.iter().enumerate() {
        let how = closed(c);
        let after = c["closed_after"].as_f64();
        assert!(
            (how == "eof" || how == "reset") && after.is_some_and(|t| t <= (IDLE + 1) as f64),
            "stalled connection {i} of {count} ({scenario}) was not closed by the server within idle timeout + 1 s \
             = {} s (idle timeout {IDLE} s): {c}",
            IDLE + 1
        );
        let bytes = received(c);
        let rest = if scenario == "stall-after-cookie" {
            assert_eq!(bytes.first(), Some(&PARAM_EXCHANGE), "no PARAM_EXCHANGE after the cookie: {c}");
            &bytes[1..]
        } else {
            &bytes[..]
        };
        assert!(
            rest.is_empty() || server_error_code(rest, c) > 0,
            "stalled connection {i} got {bytes:02x?}; expected nothing more or a SERVER_ERROR frame"
        );
    }
}

#[test]
fn stalled_connection_is_dropped_after_idle_timeout() {
    stall_case("stall", 1);
}

#[test]
fn stall_after_cookie_is_dropped_after_idle_timeout() {
    stall_case("stall-after-cookie", 1);
}

#[test]
fn many_stalled_connections_are_dropped_and_do_not_starve_the_server() {
    stall_case("stall", 8);
}

#[test]
fn garbage_cookie_then_garbage() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let report = f.misbehave("garbage-cookie", &["--wait", "10"], Duration::from_secs(30));
    assert_ne!(closed(&report), "open", "the server kept a garbage connection open for 10 s: {report}");
    let bytes = received(&report);
    // The cookie is opaque to the server, so it may answer PARAM_EXCHANGE; the "length" that
    // follows ("GET " = 0x47455420) is far over 8 KiB, which ends in SERVER_ERROR or a close.
    let rest = bytes.strip_prefix(&[PARAM_EXCHANGE]).unwrap_or(&bytes);
    assert!(
        rest.is_empty() || server_error_code(rest, &report) > 0,
        "after a garbage cookie the server sent {bytes:02x?}; expected [09] then nothing or a SERVER_ERROR frame"
    );
    f.good_client("a garbage cookie");
}

#[test]
fn oversized_params_length_gets_server_error() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let report = f.misbehave("oversized-length", &["--wait", "10"], Duration::from_secs(30));
    let bytes = received(&report);
    assert_eq!(bytes.first(), Some(&PARAM_EXCHANGE), "no PARAM_EXCHANGE after the cookie: {report}");
    let code = server_error_code(&bytes[1..], &report);
    assert_eq!(code, IERECVPARAMS, "i_errno for a 1 MiB params length; report {report}");
    assert_ne!(closed(&report), "open", "the server did not close after SERVER_ERROR: {report}");
    f.good_client("an oversized params length");
}

#[test]
fn malformed_params_json_gets_server_error() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let report = f.misbehave("malformed-json", &["--wait", "10"], Duration::from_secs(30));
    let bytes = received(&report);
    assert_eq!(bytes.first(), Some(&PARAM_EXCHANGE), "no PARAM_EXCHANGE after the cookie: {report}");
    let code = server_error_code(&bytes[1..], &report);
    assert_eq!(code, IERECVPARAMS, "i_errno for unparsable params JSON; report {report}");
    assert_ne!(closed(&report), "open", "the server did not close after SERVER_ERROR: {report}");
    f.good_client("malformed params JSON");
}

#[test]
fn unknown_state_byte_ends_the_test() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let report = f.misbehave("bad-state", &["--wait", "10"], Duration::from_secs(30));
    let bytes = received(&report);
    assert!(
        bytes.starts_with(&[PARAM_EXCHANGE, CREATE_STREAMS]),
        "expected PARAM_EXCHANGE and CREATE_STREAMS before the bad state byte: {report}"
    );
    // iperf3 fails such a test with IEMESSAGE (110) and closes; it may say so with SERVER_ERROR.
    let rest = &bytes[2..];
    assert!(
        rest.is_empty() || server_error_code(rest, &report) > 0,
        "after state byte 0x63 the server sent {rest:02x?}; expected nothing or a SERVER_ERROR frame"
    );
    assert_ne!(closed(&report), "open", "the server kept the control connection open 10 s after 0x63: {report}");
    f.good_client("an unknown state byte (0x63)");
}

#[test]
fn client_resetting_mid_test() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let report = f.misbehave("vanish-reset", &["--wait", "10"], Duration::from_secs(30));
    assert_eq!(
        received(&report),
        [PARAM_EXCHANGE, CREATE_STREAMS, 0x01, 0x02],
        "the abandoned test did not get to TEST_RUNNING: {report}"
    );
    assert!(report["sent"].as_u64().unwrap_or(0) > 0, "no data was sent before the reset: {report}");
    // The RSTs reach the server at once; give it a moment to tear the test down.
    thread::sleep(Duration::from_secs(1));
    f.good_client("a client that reset its sockets mid-test");
}

#[test]
fn client_that_stops_reading_and_sleeps() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    // A reverse test of `time` 1 s whose client stops reading after TEST_RUNNING and holds both
    // sockets open for longer than the server may wait. iperf3's server gives up at the latest
    // when its safety timer (time + omit + 40 s) fires; allow that plus the idle timeout and 10 s.
    let limit = Duration::from_secs(1 + 40 + IDLE + 10);
    let hold = (limit.as_secs() + 30).to_string();
    let mut staller = f.ns.spawn(
        "vanish-stall",
        &["python3", MISBEHAVE, "vanish-stall", "--host", UNIPERF_IP, "--hold", &hold],
        limit + Duration::from_secs(60),
    );
    staller.wait_for_stderr_line("phase: stalling", Duration::from_secs(20));
    let stalled_at = Instant::now();
    let mut attempts = Vec::new();
    loop {
        f.assert_server_alive("a client stopped reading");
        let mut attempt =
            f.ns.spawn("probe-client", &["iperf3", "-c", UNIPERF_IP, "-t", "1", "-J"], Duration::from_secs(20));
        let outcome = attempt.wait_or_kill(Duration::from_secs(20));
        let at = stalled_at.elapsed().as_secs_f64();
        match outcome {
            Ok(done)
                if done.success()
                    && serde_json::from_str::<Value>(&done.stdout).is_ok_and(|v| v.get("error").is_none()) =>
            {
                eprintln!(
                    "server recovered {at:.1} s after the client stopped reading (attempts before: {attempts:?})"
                );
                break;
            }
            Ok(done) => {
                let why = serde_json::from_str::<Value>(&done.stdout)
                    .ok()
                    .and_then(|v| v.get("error").map(|e| e.to_string()))
                    .unwrap_or_else(|| done.stderr.trim().to_string());
                attempts.push(format!("{at:.1}s: {why}"));
            }
            Err(killed) => attempts.push(format!("{at:.1}s: hung for 20 s and was killed: {}", killed.stdout.trim())),
        }
        if stalled_at.elapsed() > limit {
            panic!(
                "the server did not serve a good client within {} s of a client that stopped reading; attempts:\n  {}\n--- server:\n{}",
                limit.as_secs(),
                attempts.join("\n  "),
                f.server.describe()
            );
        }
        thread::sleep(Duration::from_secs(1));
    }
    // The staller still holds its sockets; the server must have let go of them on its own.
    assert!(staller.is_running(), "the stalling client exited early:\n{}", staller.describe());
    f.good_client("a client that stopped reading");
}

#[test]
fn second_client_during_a_test_is_told_busy() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let mut f = Fixture::new();
    let mut first = f.ns.spawn("first-client", &["iperf3", "-c", UNIPERF_IP, "-t", "4", "-J"], Duration::from_secs(40));
    // Wait until the first test runs: its control connection and data stream are established.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let ss = f.ns.exec(&["ss", "-Htn", "state", "established", "dst", UNIPERF_IP]).stdout.clone();
        if ss.lines().filter(|l| !l.trim().is_empty()).count() >= 2 {
            break;
        }
        assert!(first.is_running(), "the first client ended before its test ran:\n{}", first.describe());
        assert!(Instant::now() < until, "the first client's test did not start within 15 s:\n{}", first.describe());
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));

    let second = f.ns.spawn("second-client", &["iperf3", "-c", UNIPERF_IP, "-t", "1"], Duration::from_secs(20)).wait();
    assert!(!second.success(), "a second client during a running test succeeded:\n{}", second.describe());
    let text = format!("{}{}", second.stdout, second.stderr);
    assert!(
        text.contains("the server is busy running a test. try again later"),
        "the second client did not report a busy server:\n{}",
        second.describe()
    );

    let probe = f.misbehave("busy-probe", &["--wait", "5"], Duration::from_secs(20));
    assert_eq!(
        received(&probe),
        [ACCESS_DENIED],
        "a raw second control connection expects exactly ACCESS_DENIED (ff): {probe}"
    );
    assert_ne!(closed(&probe), "open", "the server did not close the denied connection: {probe}");

    assert!(
        first.is_running(),
        "the first client ended during the busy probes (its -t 4 is not over):\n{}",
        first.describe()
    );
    let done = first.wait();
    if !done.success() {
        panic!("the first client failed:\n{}\n--- server:\n{}", done.describe(), f.server.describe());
    }
    let v = done.expect_json_success();
    assert!(sum_received_bytes(&v) > 0, "the first client's test moved no data");
    f.good_client("a busy rejection");
}
