//! The iperf 2 server (`-s --iperf2`) in process, over a simulated link, played against by a
//! scripted iperf 2 client (headers built with `netstack::proto::iperf2`): exact byte counts
//! for TCP, a UDP test with a gap, a late datagram and the end datagram answered with the
//! report iperf 2 reads, refusals, and malformed headers reset without a panic.

mod support;

use netstack::proto::iperf2::{ClientHeader, DatagramHeader, HeaderExt, ServerReport, UdpLayout, flags, upper};
use netstack::sim::{RawPeer, SERVER_IP};
use netstack::smoltcp::time::Duration;
use netstack::smoltcp::wire::{IpAddress, IpEndpoint};
use support::*;

fn at() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 5001)
}

/// A 2.1.8-style header: EXTEND, `threads`, `-t 2`.
fn header(flags: u32, threads: i32, up: u16) -> Vec<u8> {
    let h = ClientHeader {
        flags,
        num_threads: threads,
        port: 5001,
        buffer_len: 0,
        win_band: 0,
        amount: -200,
        ext: Some(HeaderExt { upper_flags: up, version_u: 0x0002_0001, version_l: 0x0008_0003, ..Default::default() }),
    };
    let mut b = vec![0u8; 60];
    h.emit(&mut b).unwrap();
    b
}

#[test]
fn tcp_bytes_are_counted_exactly_header_included() {
    let mut b = Bench::new("--iperf2");
    let mut peer = RawPeer::client();
    let c = peer.connect(at(), 40000);
    let mut data = header(flags::EXTEND | 0x0001_0078, 1, 0);
    data.resize(3_000_000, b'7');
    peer.send(c, &data);
    peer.close(c);
    b.raw_until(&mut peer, Duration::from_secs(30), |p| p.conn(c).gone);
    b.raw_until(&mut peer, Duration::from_secs(2), |_| false);
    let out = std::mem::take(&mut b.pair.server.output);
    assert!(out.contains("exact: 3000000 bytes"), "{out}");
    assert!(out.contains("[ ID] Interval       Transfer     Bandwidth"), "{out}");
    assert!(out.contains("2.86 MBytes"), "{out}");
    b.good_client_is_served("an iperf 2 test");
}

#[test]
fn two_connections_of_one_test_get_a_sum() {
    let mut b = Bench::new("--iperf2");
    let mut peer = RawPeer::client();
    let sizes = [1_000_000usize, 1_500_000];
    let conns: Vec<usize> = (0..2).map(|i| peer.connect(at(), 40010 + i)).collect();
    for (&c, &n) in conns.iter().zip(&sizes) {
        let mut d = header(flags::EXTEND, 2, 0);
        d.resize(n, b'1');
        peer.send(c, &d);
        peer.close(c);
    }
    b.raw_until(&mut peer, Duration::from_secs(30), |p| conns.iter().all(|&c| p.conn(c).gone));
    b.raw_until(&mut peer, Duration::from_secs(2), |_| false);
    let out = std::mem::take(&mut b.pair.server.output);
    assert!(out.contains("exact: 1000000 bytes") && out.contains("exact: 1500000 bytes"), "{out}");
    assert!(out.contains("[SUM] exact: 2500000 bytes"), "{out}");
}

#[test]
fn dual_reverse_full_duplex_and_malformed_are_reset() {
    let mut b = Bench::new("--iperf2");
    let cases: [(Vec<u8>, &str); 5] = [
        (header(flags::VERSION1 | flags::EXTEND | flags::RUN_NOW, 1, 0), "-d (--dualtest) is not served"),
        (header(flags::VERSION1 | flags::EXTEND, 1, 0), "-r (--tradeoff) is not served"),
        (header(flags::VERSION2 | flags::EXTEND, 1, upper::FULLDUPLEX), "--full-duplex is not served"),
        (header(flags::EXTEND, -5, 0), "asks for -5 parallel streams"),
        (b"0123456789".to_vec(), "ended after 10 bytes"),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        let mut peer = RawPeer::client();
        let c = peer.connect(at(), 40100 + i as u16);
        let mut d = bytes.clone();
        if d.len() == 60 {
            d.resize(100_000, b'x');
        }
        peer.send(c, &d);
        if d.len() < 60 {
            peer.close(c);
        }
        b.raw_until(&mut peer, Duration::from_secs(10), |p| p.conn(c).gone);
        let out = std::mem::take(&mut b.pair.server.output);
        assert!(out.contains(why), "case {i}: {out}");
        if d.len() >= 60 {
            assert!(peer.conn(c).reset, "case {i}: the client must see a reset");
        }
    }
    b.good_client_is_served("refused iperf 2 clients");
}

fn datagram(id: i64, sent_ms: u32, hdr: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; 1470];
    DatagramHeader { id, sec: sent_ms / 1000, usec: (sent_ms % 1000) * 1000 }.emit(&mut d, UdpLayout::Id64).unwrap();
    d[16..16 + hdr.len()].copy_from_slice(hdr);
    d
}

#[test]
fn udp_end_datagram_is_answered_with_the_report() {
    let mut b = Bench::new("--iperf2");
    let mut peer = RawPeer::client();
    let hdr = header(flags::EXTEND | flags::SEQNO64B, 1, 0);
    // 1..=10 without 5, then 5 late, 12 (11 lost), then the end datagram -13.
    for (k, id) in [1i64, 2, 3, 4, 6, 7, 8, 9, 10, 5, 12].iter().enumerate() {
        peer.send_udp(50000, at(), &datagram(*id, k as u32 * 10, &hdr));
        b.raw_until(&mut peer, Duration::from_millis(5), |_| false);
    }
    peer.send_udp(50000, at(), &datagram(-13, 200, &hdr));
    b.raw_until(&mut peer, Duration::from_secs(2), |p| !p.udp_in.is_empty());
    assert_eq!(peer.udp_in.len(), 1, "one answer");
    let r = ServerReport::parse(&peer.udp_in[0].1, UdpLayout::Id64).unwrap();
    // 12 datagrams arrived (the end one counts, as iperf 2's server counts it).
    assert_eq!((r.bytes, r.datagrams, r.lost, r.out_of_order), (12 * 1470, 13, 1, 1), "{r:?}");
    // A repeated end datagram (the answer was lost): answered again, same figures.
    peer.send_udp(50000, at(), &datagram(-14, 210, &hdr));
    b.raw_until(&mut peer, Duration::from_secs(2), |p| p.udp_in.len() > 1);
    assert_eq!(peer.udp_in[1].1, peer.udp_in[0].1);
    let out = std::mem::take(&mut b.pair.server.output);
    assert!(out.contains("1/13 (7.7%)"), "{out}");
    assert!(out.contains("1 datagrams received out-of-order"), "{out}");
    assert!(out.contains("exact: 17640 bytes, 12 datagrams received, 1 lost, 1 out of order, total 13"), "{out}");
    // A refused UDP test (-d) gets no answer.
    let dual = header(flags::VERSION1 | flags::EXTEND | flags::SEQNO64B | flags::RUN_NOW, 1, 0);
    peer.send_udp(50001, at(), &datagram(1, 0, &dual));
    peer.send_udp(50001, at(), &datagram(-2, 10, &dual));
    b.raw_until(&mut peer, Duration::from_secs(1), |_| false);
    assert!(peer.udp_in.iter().all(|(p, _)| *p == 50000), "no report for a refused test");
    let out = std::mem::take(&mut b.pair.server.output);
    assert!(out.contains("refused UDP test") && out.contains("-d (--dualtest)"), "{out}");
}

#[test]
fn iperf2_port_must_differ_from_the_iperf3_port() {
    use netstack::driver::FromOptions;
    let mut pair = netstack::sim::Pair::new(Bench::link(), 1, netstack::flowlog::ProbeConfig::state_only()).unwrap();
    let setup = pair.setup();
    let o = options("-s -p 6000 --iperf2-port 6000");
    let err = server::Server::from_options(&o, &setup, pair.now, &mut pair.server.machine).err().unwrap();
    assert!(err.contains("port of their own"), "{err}");
}
