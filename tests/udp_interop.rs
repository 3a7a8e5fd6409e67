//! UDP interop over a TAP device in throw-away namespaces: stock `iperf3 -u` clients against
//! `uniperf -s`, `uniperf -c -u` against stock `iperf3 -s`, each against Debian's 3.12 and
//! 3.22. For every case both sides' `-J` documents are cross-checked:
//!
//! * what each side printed for its peer after the results exchange is exactly what the peer
//!   printed for itself (bytes, datagrams, loss — the same counters);
//! * per direction, sent = received + lost, up to the datagrams still in flight when the
//!   receiver stopped counting at TEST_END (iperf3's own pairs differ the same way), bounded by
//!   20 ms of the rate plus a few;
//! * jitter is of the same order as stock iperf3 ↔ iperf3 over a veth pair (measured once per
//!   run), and never absurd.
//!
//! Needs root; skipped loudly without it (never under CI=true).

#[macro_use]
mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::udp::*;
use common::*;

const LIFE: Duration = Duration::from_secs(90);
const DEADLINE: Duration = Duration::from_secs(40);

fn ready(peer: Peer) -> bool {
    require_root_or_skip() && peer.available_or_skip()
}

/// Jitter of stock iperf3 3.22 ↔ 3.22 over a veth pair at 100 Mbit/s, measured once.
fn reference_jitter_ms() -> f64 {
    static REF: OnceLock<f64> = OnceLock::new();
    *REF.get_or_init(|| {
        let (srv_ns, cli_ns) = veth_topology();
        let bin = Peer::V322.bin();
        let mut server = srv_ns.spawn("ref-server", &[bin.as_str(), "-s", "-1", "-J"], LIFE);
        srv_ns.wait_for_listener(PORT, Duration::from_secs(10));
        let client = cli_ns
            .spawn("ref-client", &[bin.as_str(), "-c", VETH_SERVER_IP, "-u", "-b", "100M", "-t", "2", "-J"], DEADLINE)
            .wait();
        let doc = client.expect_json_success();
        drop(server.wait_timeout(Duration::from_secs(10)));
        let j = half(&doc, "sum_received").jitter_ms;
        eprintln!("reference: iperf3 3.22 <-> 3.22 over veth, -u -b 100M: jitter {j:.4} ms");
        j
    })
}

/// Jitter of the same order as stock iperf3 over veth: at most ten times it, plus 0.5 ms.
fn max_jitter_ms() -> f64 {
    10.0 * reference_jitter_ms() + 0.5
}

fn stock_client_case(peer: Peer, case: &Case) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let mut args = vec!["-u"];
    args.extend_from_slice(case.args);
    let (c, s) = stock_client_json(peer, &args, LIFE, DEADLINE);
    check_case(&format!("iperf3 {} -c {args:?} -> uniperf -s", peer.label()), case, &c, &s, max_jitter_ms());
}

fn uniperf_client_case(peer: Peer, case: &Case) {
    if !ready(peer) {
        return;
    }
    let _l = data_lock();
    let mut args = vec!["-u"];
    args.extend_from_slice(case.args);
    let (c, s) = uniperf_client_json(peer, &args, LIFE, DEADLINE);
    check_case(&format!("uniperf -c {args:?} -> iperf3 {} -s", peer.label()), case, &c, &s, max_jitter_ms());
}

const B100M: Case = Case { args: &["-b", "100M", "-t", "2"], rate: 100_000_000, len: 1460, streams: 1 };
const B1G: Case = Case { args: &["-b", "1G", "-l", "1400", "-t", "2"], rate: 1_000_000_000, len: 1400, streams: 1 };
const P4R: Case = Case { args: &["-b", "50M", "-P", "4", "-R", "-t", "2"], rate: 50_000_000, len: 1460, streams: 4 };
const BIDIR: Case = Case { args: &["-b", "50M", "--bidir", "-t", "2"], rate: 50_000_000, len: 1460, streams: 1 };
const C64: Case =
    Case { args: &["-b", "100M", "--udp-counters-64bit", "-t", "2"], rate: 100_000_000, len: 1460, streams: 1 };

mod stock_client_uniperf_server {
    use super::*;

    against_both! {
        b100m => |p| stock_client_case(p, &B100M);
        b1g_l1400 => |p| stock_client_case(p, &B1G);
        p4_reverse => |p| stock_client_case(p, &P4R);
        bidir => |p| stock_client_case(p, &BIDIR);
        counters_64bit => |p| stock_client_case(p, &C64);
    }
}

mod uniperf_client_stock_server {
    use super::*;

    against_both! {
        b100m => |p| uniperf_client_case(p, &B100M);
        b1g_l1400 => |p| uniperf_client_case(p, &B1G);
        p4_reverse => |p| uniperf_client_case(p, &P4R);
        bidir => |p| uniperf_client_case(p, &BIDIR);
        counters_64bit => |p| uniperf_client_case(p, &C64);
    }
}

/// A stock 3.12 and a 3.22 client's default datagram is the control connection's MSS; ours is
/// the path's (1460 on a 1500-byte MTU) — they agree on what the server sees.
#[test]
fn default_datagram_length_follows_the_path() {
    if !ready(Peer::V322) {
        return;
    }
    let _l = data_lock();
    let (c, _) = uniperf_client_json(Peer::V322, &["-u", "-t", "1"], LIFE, DEADLINE);
    assert_eq!(json_at(&c, &["start", "test_start", "blksize"]), 1460);
    assert_eq!(json_at(&c, &["start", "test_start", "target_bitrate"]), 1_048_576, "iperf3's default UDP rate");
}
