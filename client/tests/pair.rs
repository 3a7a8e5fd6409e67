//! In-process tests of the client role against scripted servers ([`RawPeer`]) over the
//! seeded simulated link, on virtual time: every way a server can refuse, break the protocol,
//! stall or vanish must end the client with iperf3's message and a failure status, never a
//! hang or a panic. (The client against the real server role is covered in
//! `server/tests/pair.rs`.)

use client::Client;
use netstack::driver::{FromOptions, Role};
use netstack::flowlog::ProbeConfig;
use netstack::options::{Options, Target};
use netstack::proto::{COOKIE_LEN, ControlState, ErrorCode, ServerError, TestResults, encode_frame};
use netstack::sim::{LinkConfig, Pair, RawPeer, SERVER_IP};
use netstack::smoltcp::time::{Duration, Instant};

const PORT: u16 = 5201;

/// What a scripted server does, given what its control connection received so far and the
/// time; true once it has nothing more to do.
type Script = dyn FnMut(&mut RawPeer, &[u8], Instant) -> bool;

struct Bench {
    pair: Pair,
    server: RawPeer,
    client: Client,
}

impl Bench {
    fn new(args: &str, link: LinkConfig) -> Bench {
        let mut pair = Pair::new(link, 3, ProbeConfig::state_only()).unwrap();
        let o = Options::parse(format!("-c {SERVER_IP} {args}").split_whitespace(), Target::Tap).unwrap();
        o.validate().unwrap();
        let setup = pair.setup();
        let client = Client::from_options(&o, &setup, pair.now, &mut pair.client.machine).unwrap();
        Bench { pair, server: RawPeer::server(PORT, 2), client }
    }

    fn plain(args: &str) -> Bench {
        let link =
            LinkConfig { delay: Duration::from_millis(1), rate_bps: Some(1_000_000_000), ..LinkConfig::default() };
        Bench::new(args, link)
    }

    /// Runs until the client is done, letting `script` act on the server side after every
    /// pass with what the control connection received so far (it returns true when it has
    /// nothing more to do). Fails the test if the client is not done within `limit`.
    fn run(&mut self, limit: Duration, script: &mut Script) -> (String, Result<(), String>) {
        let deadline = self.pair.now + limit;
        let mut scripted = false;
        while !self.client.done() {
            let progress = self.pair.step(&mut self.server, &mut self.client);
            if !scripted && let Some(ctrl) = self.server.conns().first() {
                let rx = ctrl.rx.clone();
                scripted = script(&mut self.server, &rx, self.pair.now);
            }
            assert!(self.pair.now <= deadline, "the client was not done after {} s", limit.secs());
            self.pair.advance(progress, &self.server, &self.client);
        }
        let status = self.client.status().map_err(String::from);
        (std::mem::take(&mut self.pair.client.output), status)
    }
}

fn state(s: ControlState) -> u8 {
    s.to_byte()
}

/// Once the cookie is in, sends `reply` on the control connection (and closes it if `close`).
fn after_cookie(reply: Vec<u8>, close: bool) -> impl FnMut(&mut RawPeer, &[u8], Instant) -> bool {
    move |peer, rx, _| {
        if rx.len() < COOKIE_LEN {
            return false;
        }
        peer.send(0, &reply);
        if close {
            peer.close(0);
        }
        true
    }
}

fn expect_failure(out: &str, status: Result<(), String>, want: &str) {
    let e = status.expect_err("the client must fail");
    assert!(e.contains(want), "status {e:?} does not say {want:?}");
    assert!(out.contains(&format!("iperf3: error - {want}")), "the output does not say {want:?}:\n{out}");
}

#[test]
fn busy_server_is_access_denied() {
    let mut b = Bench::plain("-t 1");
    let (out, status) = b.run(Duration::from_secs(5), &mut after_cookie(vec![state(ControlState::AccessDenied)], true));
    expect_failure(&out, status, ErrorCode::ACCESS_DENIED.message());
}

#[test]
fn server_error_with_and_without_errno() {
    // 3.19+: i_errno and errno; 3.12-3.18 after an authentication failure: i_errno, then FIN.
    let full = ServerError { code: ErrorCode::SET_BUF2, errno: 0 }.to_wire().to_vec();
    let short = full[..5].to_vec();
    for (reply, close) in [(full, false), (short, true)] {
        let mut b = Bench::plain("-t 1");
        let (out, status) = b.run(Duration::from_secs(5), &mut after_cookie(reply, close));
        expect_failure(&out, status, "server error - socket buffer size not set correctly");
    }
}

#[test]
fn unknown_state_byte_is_a_protocol_error() {
    let mut b = Bench::plain("-t 1");
    let (out, status) = b.run(Duration::from_secs(5), &mut after_cookie(vec![0x42], false));
    expect_failure(&out, status, ErrorCode::MESSAGE.message());
}

#[test]
fn server_closing_the_control_connection_is_reported() {
    let mut b = Bench::plain("-t 1");
    let (out, status) = b.run(Duration::from_secs(5), &mut after_cookie(Vec::new(), true));
    expect_failure(&out, status, ErrorCode::CTRL_CLOSE.message());
}

#[test]
fn silent_server_times_out() {
    let mut b = Bench::plain("-t 1");
    let (out, status) = b.run(Duration::from_secs(40), &mut |_, _, _| false);
    expect_failure(&out, status, "the server did not respond for 30 s");
}

#[test]
fn refused_and_unreachable_servers() {
    // Nobody listens: the server's stack answers the SYN with RST.
    let mut b = Bench::plain("-t 1");
    b.server = RawPeer::client();
    let (out, status) = b.run(Duration::from_secs(5), &mut |_, _, _| false);
    expect_failure(&out, status, "unable to connect to server: Connection refused");
    // Every frame is lost: --connect-timeout decides.
    let link = LinkConfig { loss: 1.0, ..LinkConfig::default() };
    let mut b = Bench::new("-t 1 --connect-timeout 1500", link);
    let (out, status) = b.run(Duration::from_secs(5), &mut |_, _, _| false);
    expect_failure(&out, status, "unable to connect to server: Connection timed out");
}

/// How a scripted test ends.
enum Ending {
    /// After TEST_END: EXCHANGE_RESULTS, then these results bytes and these state bytes.
    Results(Vec<u8>, Vec<u8>),
    /// This long after TEST_RUNNING: SERVER_TERMINATE, and the data stream is reset.
    Terminate(Duration),
}

/// A server that runs a one-stream test properly up to its `ending`.
fn scripted_test(ending: Ending) -> impl FnMut(&mut RawPeer, &[u8], Instant) -> bool {
    let mut step = 0;
    let mut running_at = Instant::ZERO;
    move |peer, rx, now| {
        match (step, &ending) {
            (0, _) if rx.len() >= COOKIE_LEN => {
                peer.send(0, &[state(ControlState::ParamExchange)]);
                step = 1;
            }
            // The parameters: 4-byte length and JSON.
            (1, _) if rx.len() >= COOKIE_LEN + 4 => {
                let len = u32::from_be_bytes(rx[COOKIE_LEN..COOKIE_LEN + 4].try_into().unwrap()) as usize;
                if rx.len() >= COOKIE_LEN + 4 + len {
                    peer.send(0, &[state(ControlState::CreateStreams)]);
                    step = 2;
                }
            }
            // The data stream arrived (the second connection) with its cookie.
            (2, _) if peer.conns().get(1).is_some_and(|c| c.rx.len() >= COOKIE_LEN) => {
                peer.send(0, &[state(ControlState::TestStart), state(ControlState::TestRunning)]);
                running_at = now;
                step = 3;
            }
            (3, Ending::Terminate(after)) if now >= running_at + *after => {
                peer.send(0, &[state(ControlState::ServerTerminate)]);
                peer.abort(1);
                return true;
            }
            (3, Ending::Results(..)) if rx.last() == Some(&state(ControlState::TestEnd)) => {
                peer.send(0, &[state(ControlState::ExchangeResults)]);
                step = 4;
            }
            // The client's results arrived (a frame header after TEST_END will do).
            (4, Ending::Results(results, after))
                if rx.len() > rx.iter().rposition(|&b| b == state(ControlState::TestEnd)).unwrap() + 4 =>
            {
                peer.send(0, results);
                peer.send(0, after);
                return true;
            }
            _ => {}
        }
        false
    }
}

#[test]
fn malformed_server_results_are_reported() {
    let mut b = Bench::plain("-t 1");
    let mut script = scripted_test(Ending::Results(encode_frame(b"{\"cpu_util_total\": [}"), Vec::new()));
    let (out, status) = b.run(Duration::from_secs(10), &mut script);
    expect_failure(&out, status, "unable to receive results");
}

#[test]
fn results_lacking_our_stream_are_refused() {
    let mut b = Bench::plain("-t 1");
    let results = encode_frame(TestResults::default().to_json().as_bytes());
    let mut script = scripted_test(Ending::Results(results, vec![state(ControlState::DisplayResults)]));
    let (out, status) = b.run(Duration::from_secs(10), &mut script);
    expect_failure(&out, status, ErrorCode::STREAM_ID.message());
}

#[test]
fn display_before_results_is_a_protocol_error() {
    let mut b = Bench::plain("-t 1");
    // DISPLAY_RESULTS where a results frame belongs is read as its length: the client must
    // still end with an error, not wait for a frame that never comes.
    let mut script = scripted_test(Ending::Results(Vec::new(), vec![state(ControlState::DisplayResults)]));
    let (out, status) = b.run(Duration::from_secs(40), &mut script);
    assert!(status.is_err(), "the client accepted DISPLAY_RESULTS without results:\n{out}");
}

#[test]
fn server_terminate_mid_test_prints_a_partial_report() {
    let mut b = Bench::plain("-t 5");
    let mut script = scripted_test(Ending::Terminate(Duration::from_millis(1500)));
    let (out, status) = b.run(Duration::from_secs(10), &mut script);
    expect_failure(&out, status, ErrorCode::SERVER_TERM.message());
    assert!(out.contains("sender"), "no partial report:\n{out}");
    // iperf3 answers SERVER_TERMINATE with IPERF_DONE.
    b.pair.run_for(&mut b.server, &mut b.client, Duration::from_millis(100));
    assert_eq!(b.server.conn(0).rx.last(), Some(&state(ControlState::IperfDone)));
}
