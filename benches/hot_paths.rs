//! Criterion benchmarks of the per-frame and per-datagram hot paths: the flow probe's parse
//! and bookkeeping of one TCP segment (data out, ACK in), the virtio-net offload header of a
//! 64 KiB TSO frame (TAP and image transmit), the UDP receive accounting of one datagram, the
//! pacer's decision, the payload copy of a 1460-byte UDP datagram, and the TCP send loop
//! (`DataStream::pump` into smoltcp, over a loopback interface to a receiving socket). Run with
//! `cargo bench --bench hot_paths`; figures before and after a change go in its commit message.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netstack::flowlog::{Dir, FlowTracker, ProbeConfig, Sampling};
use netstack::proto::udp::{Datagram, DatagramRepr};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::udp::{Pacer, UdpRx};
use std::hint::black_box;

/// An Ethernet/IPv4/TCP frame with `payload` bytes.
fn tcp_frame(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
    f
}

fn probe(c: &mut Criterion) {
    let mut g = c.benchmark_group("probe");
    for (name, sampling) in [("state_only", Sampling::Off), ("every_ack", Sampling::EveryAck)] {
        g.bench_function(format!("segment_and_ack_{name}"), |b| {
            let mut t = FlowTracker::new(ProbeConfig { sampling, max_samples: 1 << 16, ..ProbeConfig::default() });
            t.on_frame(0, Dir::Tx, &tcp_frame(40000, 5201, 1000, 0, 0x02, 0));
            t.on_frame(10, Dir::Rx, &tcp_frame(5201, 40000, 5000, 1001, 0x12, 0));
            let mut seq = 1001u32;
            let mut us = 20u64;
            let data = tcp_frame(40000, 5201, seq, 5001, 0x10, 1448);
            b.iter(|| {
                let mut f = data.clone();
                f[38..42].copy_from_slice(&seq.to_be_bytes());
                t.on_frame(us, Dir::Tx, black_box(&f));
                seq = seq.wrapping_add(1448);
                let ack = tcp_frame(5201, 40000, 5001, seq, 0x10, 0);
                t.on_frame(us + 5, Dir::Rx, black_box(&ack));
                us += 10;
                if t.take_samples().len() > 60_000 {
                    t = FlowTracker::new(ProbeConfig { sampling, ..ProbeConfig::default() });
                }
            })
        });
    }
    g.finish();
}

fn offload(c: &mut Criterion) {
    let mut g = c.benchmark_group("virtio_net_hdr");
    let frame = tcp_frame(40000, 5201, 1, 1, 0x10, 65_000);
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("offload_tcpv4_64k", |b| {
        let mut f = frame.clone();
        b.iter(|| black_box(netstack::virtio_net_hdr::offload_tcpv4(black_box(&mut f), Some(1448))))
    });
    g.finish();
}

fn udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp");
    g.bench_function("receive_one_datagram", |b| {
        let mut rx = UdpRx::default();
        let mut buf = [0u8; 1460];
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            DatagramRepr { sec: (seq / 100_000) as u32, usec: (seq % 100_000 * 10) as u32, seq }.emit(&mut buf, false);
            let d = Datagram::new_checked(black_box(&buf[..]), false).unwrap();
            let h = DatagramRepr::parse(&d).unwrap();
            black_box(rx.on_datagram(&h, h.micros() + 50));
        })
    });
    g.bench_function("pacer_take", |b| {
        let mut p = Pacer::new(1_000_000_000, 1460);
        let mut now = Instant::from_micros(0);
        b.iter(|| {
            now += Duration::from_micros(12);
            black_box(p.take(now, 1460))
        })
    });
    g.finish();
}

/// The TCP send loop end to end inside one process: `DataStream::pump` fills the sender's
/// ring, smoltcp builds 64 KiB frames over a loopback device (MTU 65535, like TSO frames) and
/// the receiving socket's data is read and dropped, as a server does. 4 MiB per iteration.
fn send_loop(c: &mut Criterion) {
    use netstack::machine::{SimMachine, SplitMix64};
    use netstack::smoltcp::iface::{Config, Interface, SocketSet};
    use netstack::smoltcp::phy::{Loopback, Medium};
    use netstack::smoltcp::socket::tcp;
    use netstack::smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
    use netstack::stream::{DataStream, Payload};
    const CHUNK: u64 = 4 << 20;
    let mut g = c.benchmark_group("send_loop");
    g.throughput(Throughput::Bytes(CHUNK));
    g.sample_size(20);
    g.bench_function("pump_4MiB_loopback", |b| {
        let mut dev = Loopback::new(Medium::Ethernet);
        let cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1])));
        let mut now = Instant::ZERO;
        let mut iface = Interface::new(cfg, &mut dev, now);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)).unwrap());
        let mut sockets = SocketSet::new(vec![]);
        let buf = |n: usize| tcp::SocketBuffer::new(vec![0u8; n]);
        let mut server = tcp::Socket::new(buf(4 << 20), buf(4096));
        server.listen(5201).unwrap();
        let server = sockets.add(server);
        let mut client = tcp::Socket::new(buf(4096), buf(4 << 20));
        client.set_ack_delay(None);
        client.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), 5201), 40000).unwrap();
        let client = sockets.add(client);
        let mut machine = SimMachine { rng: SplitMix64(1), name: String::new() };
        let payload = Payload::new(128 * 1024, false, &mut machine);
        let mut stream = DataStream::new(client, 0, true);
        b.iter(|| {
            let mut got = 0u64;
            while got < CHUNK {
                iface.poll(now, &mut dev, &mut sockets);
                stream.pump(sockets.get_mut::<tcp::Socket>(client), &payload, u64::MAX);
                let s = sockets.get_mut::<tcp::Socket>(server);
                while let Ok(n @ 1..) = s.recv(|d| (d.len(), d.len())) {
                    got += n as u64;
                }
                now += Duration::from_micros(10);
            }
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, probe, offload, udp, send_loop);
criterion_main!(benches);
