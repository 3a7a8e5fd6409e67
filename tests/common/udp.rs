//! Cross-checks of UDP tests' `-J` documents (client's and server's), shared by the TAP and
//! image UDP tests.

use super::json_at;
use serde_json::Value;

/// One direction's figures as one side printed them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Half {
    pub bytes: u64,
    pub packets: u64,
    pub lost: i64,
    pub jitter_ms: f64,
}

pub fn half(doc: &Value, key: &str) -> Half {
    let s = json_at(doc, &["end", key]);
    Half {
        bytes: s["bytes"].as_u64().unwrap_or_else(|| panic!("{key}.bytes in {s}")),
        packets: s["packets"].as_u64().unwrap_or_else(|| panic!("{key}.packets in {s}")),
        lost: s["lost_packets"].as_i64().unwrap_or_else(|| panic!("{key}.lost_packets in {s}")),
        jitter_ms: s["jitter_ms"].as_f64().unwrap_or_else(|| panic!("{key}.jitter_ms in {s}")),
    }
}

/// Datagrams that may still be in flight at TEST_END: 20 ms of `rate_bps` per stream, plus 32.
pub fn in_flight(rate_bps: u64, len: u64, streams: u64) -> u64 {
    streams * (rate_bps / 8 * 20 / 1000 / len + 32)
}

/// The checks above for one direction, whose sums are `sum_sent{suffix}` and
/// `sum_received{suffix}`. A server prints only its own half (iperf3's servers print before the
/// results exchange), so the peer's copies are checked in the client's document.
#[track_caller]
pub fn check_direction(
    what: &str,
    client: &Value,
    server: &Value,
    suffix: &str,
    server_sends: bool,
    case: &Case,
    max_jitter_ms: f64,
) {
    let sent_key = format!("sum_sent{suffix}");
    let received_key = format!("sum_received{suffix}");
    let (sender, receiver) = if server_sends { (server, client) } else { (client, server) };
    let sent = half(sender, &sent_key);
    let received = half(receiver, &received_key);
    // The client's copy of the server's half is the server's own count, exactly.
    let (copy, own) =
        if server_sends { (half(client, &sent_key), sent) } else { (half(client, &received_key), received) };
    assert_eq!(
        (copy.bytes, copy.packets, copy.lost),
        (own.bytes, own.packets, own.lost),
        "{what}: the client's copy of the server's counts"
    );
    // sent = received + lost, but for what was in flight at TEST_END.
    assert!(received.packets <= sent.packets, "{what}: received {received:?} more than sent {sent:?}");
    let missing = sent.packets - received.packets;
    let bound = in_flight(case.rate, case.len, case.streams);
    assert!(
        missing <= bound,
        "{what}: {missing} datagrams unaccounted for (in-flight bound {bound}): {sent:?} {received:?}"
    );
    assert!(received.lost >= 0 && received.lost as u64 <= received.packets, "{what}: loss {received:?}");
    assert!(received.packets > 0, "{what}: nothing received");
    assert!(
        received.jitter_ms.is_finite() && received.jitter_ms <= max_jitter_ms,
        "{what}: jitter {} ms (at most {max_jitter_ms} ms expected)",
        received.jitter_ms
    );
}

/// A UDP case: client flags, rate and datagram length per stream, streams per direction.
pub struct Case {
    pub args: &'static [&'static str],
    pub rate: u64,
    pub len: u64,
    pub streams: u64,
}

#[track_caller]
pub fn check_case(what: &str, case: &Case, client: &Value, server: &Value, max_jitter_ms: f64) {
    let reverse = case.args.contains(&"-R");
    let bidir = case.args.contains(&"--bidir");
    assert_eq!(json_at(client, &["start", "test_start", "protocol"]), "UDP", "{what}");
    if bidir {
        check_direction(&format!("{what} client->server"), client, server, "", false, case, max_jitter_ms);
        check_direction(&format!("{what} server->client"), client, server, "_bidir_reverse", true, case, max_jitter_ms);
    } else {
        check_direction(what, client, server, "", reverse, case, max_jitter_ms);
    }
}
