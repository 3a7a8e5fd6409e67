//! In-process UDP tests: a uniperf client and server over the seeded simulated link, on
//! virtual time. The link knows exactly which datagrams it dropped and when each one arrived,
//! so loss and jitter are pinned against the link's own records, not against a range.

mod support;

use netstack::proto::udp::{Datagram, DatagramRepr, HEADER_LEN_32};
use netstack::sim::{Delivery, Direction, LinkConfig, RawPeer};
use netstack::smoltcp::time::Duration;
use netstack::smoltcp::wire::{EthernetFrame, UdpPacket};
use serde_json::Value;
use support::*;

/// (packets, lost, bytes) of one `end` sum.
fn udp_sum(doc: &Value, key: &str) -> (u64, i64, u64) {
    let s = &doc["end"][key];
    let n = |k: &str| s[k].as_i64().unwrap_or_else(|| panic!("{key}.{k} in {s}"));
    (n("packets") as u64, n("lost_packets"), n("bytes") as u64)
}

/// The iperf3 header of a UDP datagram to the server port in a frame's leading bytes.
fn data_header(frame: &[u8]) -> Option<DatagramRepr> {
    // The records hold only a frame's first bytes, so the IPv4 length cannot be checked.
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = eth.payload();
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let l4 = &ip[usize::from(ip[0] & 0x0f) * 4..];
    if l4.len() < 8 + HEADER_LEN_32 || UdpPacket::new_unchecked(l4).dst_port() != PORT {
        return None;
    }
    DatagramRepr::parse(&Datagram::new_checked(&l4[8..], false).ok()?).ok()
}

#[test]
fn forward_counts_agree_exactly() {
    let mut b = Bench::new("-J");
    let (c, s) = b.run_json("-u -b 100M -t 1");
    let sent = udp_sum(&c, "sum_sent");
    // Data and TEST_END share the link's FIFO, so every datagram sent is counted.
    assert_eq!(udp_sum(&s, "sum_received"), (sent.0, 0, sent.2));
    assert_eq!(udp_sum(&c, "sum_received"), udp_sum(&s, "sum_received"), "the client's copy");
    assert_eq!(sent.0, 8562, "1 s at 100 Mbit/s in 1460-byte datagrams (one goes at once)");
}

#[test]
fn reverse_and_bidir_counts_agree_up_to_what_was_in_flight() {
    for args in ["-R -P 2", "--bidir"] {
        let mut b = Bench::new("-J");
        let (c, s) = b.run_json(&format!("-u -b 100M -t 1 {args}"));
        // Server to client: what left the server after the client stopped counting (the
        // link holds 1 ms, 8.6 datagrams per stream at this rate).
        let (sent_key, recv_key) = if args == "--bidir" {
            ("sum_sent_bidir_reverse", "sum_received_bidir_reverse")
        } else {
            ("sum_sent", "sum_received")
        };
        let sent = udp_sum(&s, sent_key);
        let received = udp_sum(&c, recv_key);
        assert!(received.0 <= sent.0 && sent.0 - received.0 <= 20, "{args}: sent {sent:?} received {received:?}");
        assert_eq!(received.1, 0, "{args}: nothing is lost on this link");
        assert_eq!(udp_sum(&c, sent_key), sent, "{args}: the client's copy of the server's count");
    }
}

#[test]
fn loss_is_exactly_what_the_link_dropped() {
    let link =
        LinkConfig { loss: 0.01, rate_bps: Some(10_000_000_000), drop_log_capacity: 10_000, seed: 3, ..Bench::link() };
    let mut b = Bench::with_link("-J", link);
    // 100 000+ datagrams: 1 Gbit/s for 2 s.
    let (c, s) = b.run_json("-u -b 1G -t 2");
    let (packets, lost, _) = udp_sum(&s, "sum_received");
    assert!(packets >= 100_000, "{packets} datagrams");
    // Every data datagram the link dropped before the last one the server saw is a loss.
    let dropped = b
        .pair
        .link
        .drop_log(Direction::BtoA)
        .filter_map(|d| data_header(d.head()))
        .filter(|h| h.seq <= packets)
        .count() as i64;
    assert_eq!(lost, dropped, "loss against the link's own drop log");
    let pct = 100.0 * lost as f64 / packets as f64;
    assert!((pct - 1.0).abs() <= 0.2, "{pct:.3} % lost for 1 % injected");
    assert_eq!(udp_sum(&c, "sum_received").1, lost, "the client prints the server's loss");
}

/// RFC 1889 over what the link delivered: transit = arrival - send time in the header.
fn rfc1889_jitter(deliveries: &[Delivery]) -> (f64, usize) {
    let mut jitter = 0.0f64;
    let mut prev: Option<f64> = None;
    let mut n = 0;
    for d in deliveries {
        let Some(h) = data_header(d.head()) else { continue };
        let transit = (d.at.total_micros() - h.micros()) as f64 / 1e6;
        if let Some(p) = prev {
            jitter += ((transit - p).abs() - jitter) / 16.0;
        }
        prev = Some(transit);
        n += 1;
    }
    (jitter * 1000.0, n)
}

#[test]
fn jitter_is_the_rfc1889_estimate_of_the_links_own_times() {
    let link = LinkConfig { jitter: Duration::from_micros(300), delivery_log_capacity: 50_000, ..Bench::link() };
    let mut b = Bench::with_link("-J", link);
    let (_, s) = b.run_json("-u -b 100M -t 1");
    let reported = s["end"]["sum_received"]["jitter_ms"].as_f64().expect("jitter_ms");
    let (expected, n) = rfc1889_jitter(b.pair.link.deliveries(Direction::BtoA));
    assert_eq!(n as u64, udp_sum(&s, "sum_received").0, "the log holds every datagram the server counted");
    assert!(expected > 0.01, "the link's jitter shows: {expected} ms");
    assert!((reported - expected).abs() < 1e-9, "reported {reported} ms, the link's times give {expected} ms");
}

#[test]
fn pacing_holds_every_100ms_window_within_one_percent() {
    for rate in ["10M", "100M", "1G"] {
        let mut b = Bench::new("-J");
        let (c, _) = b.run_json(&format!("-u -b {rate} -t 2 -i 0.1"));
        let target = netstack::units::parse_rate(rate).unwrap() as f64;
        let windows: Vec<f64> =
            c["intervals"].as_array().unwrap().iter().map(|i| i["sum"]["bits_per_second"].as_f64().unwrap()).collect();
        assert!(windows.len() >= 19, "{rate}: {} windows", windows.len());
        // 10 Mbit/s is 85.6 datagrams a window: whole datagrams alone make it ±1.2 %.
        let tolerance = if rate == "10M" { 0.013 } else { 0.01 };
        for (i, w) in windows.iter().enumerate().take(20) {
            assert!((w / target - 1.0).abs() <= tolerance, "{rate}: window {i} at {w} bit/s");
        }
    }
}

#[test]
fn count_limits_and_omit() {
    let mut b = Bench::new("-J");
    let (c, s) = b.run_json("-u -b 100M -n 1M");
    let sent = udp_sum(&c, "sum_sent");
    // Whole datagrams: the last one crosses the count.
    assert_eq!(sent.2, 1_048_576u64.div_ceil(1460) * 1460);
    assert_eq!(udp_sum(&s, "sum_received"), (sent.0, 0, sent.2));
    let (c, s) = b.run_json("-u -b 100M -t 1 -O 1");
    let sent = udp_sum(&c, "sum_sent");
    assert_eq!(udp_sum(&s, "sum_received"), (sent.0, 0, sent.2), "-O 1: both sides omit the same datagrams");
    assert_eq!(sent.0, 8562, "one second measured after one omitted (8561.6 datagrams' worth)");
}

#[test]
fn stray_datagrams_are_counted_and_skipped() {
    let mut b = Bench::new("");
    let mut cl = b.client("-u -b 10M -t 1");
    b.pair.run_for(&mut b.server, &mut cl, Duration::from_millis(300));
    let mut raw = RawPeer::client();
    let mut header = [0u8; 16];
    DatagramRepr { sec: 0, usec: 5, seq: 1 }.emit(&mut header, false);
    raw.send_udp(40100, server_at(), &header); // a stranger with a valid header
    raw.send_udp(40101, server_at(), &[1, 2, 3]); // too short for anything
    b.pair.run_for(&mut b.server, &mut Both(&mut cl, &mut raw), Duration::from_millis(100));
    b.pair.run_test(&mut b.server, &mut cl, Duration::from_secs(10)).unwrap();
    let s = std::mem::take(&mut b.pair.server.output);
    assert!(s.contains("skipped 2 datagrams"), "the server says what it skipped:\n{s}");
    assert!(s.contains("2 from unknown senders"), "{s}");
    assert!(s.contains("(0%)  receiver"), "the test's own datagrams are all there:\n{s}");
    b.good_client_is_served("stray datagrams");
}
