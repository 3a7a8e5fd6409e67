//! Unit tests of the tracker on hand-built segments, and of the log formats.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::machine::SplitMix64;

const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);
const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 5201);

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// Builds an Ethernet/IPv4/TCP frame; `payload` bytes are zeros (they are never read). With
/// `ip_len_zero` the IP total length is 0, as smoltcp writes for super-segments above 64 KiB.
#[allow(clippy::too_many_arguments)]
fn frame_ext(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: usize,
    opts: &[u8],
    ip_len_zero: bool,
) -> Vec<u8> {
    let thl = 20 + opts.len().next_multiple_of(4);
    let total = 20 + thl + payload;
    let mut f = vec![0u8; 14 + total];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    let len = if ip_len_zero { 0 } else { total as u16 };
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let tcp = &mut ip[20..];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((thl / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[20..20 + opts.len()].copy_from_slice(opts);
    f
}

fn frame(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, flags: u8, window: u16, payload: usize) -> Vec<u8> {
    frame_ext(src, dst, seq, ack, flags, window, payload, &[], false)
}

/// MSS 1000 and window scale `ws`.
fn syn_opts(ws: u8) -> Vec<u8> {
    vec![2, 4, 0x03, 0xe8, 1, 3, 3, ws]
}

/// A tracker with an established flow: local ISN `isn_l`, peer ISN `isn_p`, local shift 2,
/// peer shift 3, MSS 1000, at t = 0..3 ms (SYN-ACK after 2 ms).
struct Conn {
    t: FlowTracker,
    isn_l: u32,
    isn_p: u32,
}

impl Conn {
    fn new(sampling: Sampling, isn_l: u32, isn_p: u32) -> Conn {
        let mut t = FlowTracker::new(ProbeConfig { sampling, ..ProbeConfig::default() });
        t.on_frame(0, Dir::Tx, &frame_ext(LOCAL, REMOTE, isn_l, 0, SYN, 1000, 0, &syn_opts(2), false));
        t.on_frame(
            2000,
            Dir::Rx,
            &frame_ext(REMOTE, LOCAL, isn_p, isn_l.wrapping_add(1), SYN | ACK, 2000, 0, &syn_opts(3), false),
        );
        t.on_frame(2000, Dir::Tx, &frame(LOCAL, REMOTE, isn_l.wrapping_add(1), isn_p.wrapping_add(1), ACK, 1000, 0));
        Conn { t, isn_l, isn_p }
    }
    /// Local data at relative `seq`.
    fn send(&mut self, t: u64, seq: u64, len: usize) {
        let f = frame(
            LOCAL,
            REMOTE,
            self.isn_l.wrapping_add(1).wrapping_add(seq as u32),
            self.isn_p.wrapping_add(1),
            ACK,
            1000,
            len,
        );
        self.t.on_frame(t, Dir::Tx, &f);
    }
    /// Peer ACK of relative `ack` with window field `wnd` (scaled by 8).
    fn ack(&mut self, t: u64, ack: u64, wnd: u16) {
        let f = frame(
            REMOTE,
            LOCAL,
            self.isn_p.wrapping_add(1),
            self.isn_l.wrapping_add(1).wrapping_add(ack as u32),
            ACK,
            wnd,
            0,
        );
        self.t.on_frame(t, Dir::Rx, &f);
    }
    fn summary(&self) -> FlowSummary {
        self.t.flows().next().unwrap()
    }
    fn events(&self, e: Event) -> Vec<FlowSample> {
        self.t.samples().iter().copied().filter(|s| s.event == e).collect()
    }
}

#[test]
fn handshake_data_and_rtt() {
    let mut c = Conn::new(Sampling::EveryAck, 1000, 5000);
    let states: Vec<TcpState> = c.events(Event::State).iter().map(|s| s.state).collect();
    assert_eq!(states, [TcpState::SynSent, TcpState::Established]);
    c.send(3000, 0, 1000);
    c.send(3000, 1000, 1000);
    c.ack(13_000, 1000, 100);
    c.ack(14_500, 2000, 100);
    let acks = c.events(Event::Ack);
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0].rtt_us, Some(10_000));
    assert_eq!(acks[1].rtt_us, Some(11_500));
    assert_eq!(acks[1].srtt_us, Some((7 * 10_000 + 11_500) / 8));
    assert_eq!(acks[1].rttvar_us, Some((3 * 5000 + 1500) / 4));
    assert_eq!((acks[1].bytes_sent, acks[1].bytes_acked, acks[1].inflight), (2000, 2000, 0));
    assert_eq!(acks[0].inflight, 1000);
    assert_eq!(acks[0].peer_wnd, 800, "window 100 scaled by 2^3");
    assert_eq!(acks[0].local_wnd, 4000, "window 1000 scaled by 2^2");
    assert_eq!(acks[0].flow.to_string(), "198.18.0.2:40000>198.18.0.1:5201");
    let s = c.summary();
    assert_eq!((s.mss, s.local_wscale, s.peer_wscale, s.local_isn), (1000, Some(2), Some(3), Some(1000)));
    assert_eq!((s.rtt_min_us, s.rtt_max_us, s.rtt_samples), (Some(10_000), Some(11_500), 2));
}

#[test]
fn sequence_numbers_unwrap_past_4_gib() {
    let mut c = Conn::new(Sampling::EveryAck, u32::MAX - 1500, u32::MAX);
    let mut seq = 0u64;
    let mut t = 3000;
    // 5 GB in 50 kB bursts, in steps that cross the 32-bit wrap several times.
    while seq < 5_000_000_000 {
        c.send(t, seq, 50_000);
        seq += 50_000;
        t += 100;
        if seq.is_multiple_of(1_000_000) {
            c.ack(t, seq, 60_000);
        }
    }
    c.ack(t + 1, seq, 60_000);
    let s = c.summary();
    assert_eq!((s.bytes_sent, s.bytes_acked, s.retx_segs()), (5_000_000_000, 5_000_000_000, 0));
}

#[test]
fn fast_retransmit_after_three_dupacks_and_karn() {
    let mut c = Conn::new(Sampling::EveryAck, 7, 9);
    for i in 0..10 {
        c.send(3000, i * 1000, 1000);
    }
    c.ack(13_000, 1000, 1000); // segment 2 lost
    for k in 0..3 {
        c.ack(13_100 + k, 1000, 1000);
    }
    assert_eq!(c.summary().dupacks, 3);
    c.send(13_103, 1000, 1000);
    let s = c.summary();
    assert_eq!((s.retx_fast_segs, s.retx_fast_bytes, s.retx_rto_segs), (1, 1000, 0));
    let r = c.events(Event::RetxFast);
    assert_eq!((r[0].seg_seq, r[0].seg_len), (Some(1000), Some(1000)));
    // The cumulative ACK after the repair gives no sample (Karn: timed before the retransmit).
    c.ack(23_103, 10_000, 1000);
    assert_eq!(c.events(Event::Ack).last().unwrap().rtt_us, None);
    assert_eq!(c.summary().rtt_samples, 1);
    // New data is timed again.
    c.send(24_000, 10_000, 1000);
    c.ack(34_000, 11_000, 1000);
    assert_eq!(c.events(Event::Ack).last().unwrap().rtt_us, Some(10_000));
    // A window change is not a dup ACK.
    c.send(35_000, 11_000, 1000);
    c.ack(36_000, 11_000, 999);
    c.ack(36_001, 11_000, 999);
    assert_eq!(c.summary().dupacks, 4);
}

#[test]
fn timeout_burst_counts_as_rto() {
    let mut c = Conn::new(Sampling::EveryAck, 7, 9);
    for i in 0..4 {
        c.send(3000, i * 1000, 1000);
    }
    // Nothing comes back; after 1 s go-back-N resends all four, ACK-clocked after the first.
    c.send(1_003_000, 0, 1000);
    c.ack(1_013_000, 1000, 1000);
    c.send(1_013_000, 1000, 1000);
    c.send(1_013_000, 2000, 1000);
    c.ack(1_023_000, 3000, 1000);
    c.send(1_023_000, 3000, 1000);
    let s = c.summary();
    assert_eq!((s.retx_rto_segs, s.retx_rto_bytes, s.retx_fast_segs), (4, 4000, 0));
    // The rewind shows in snd_nxt, while in-flight still counts what was sent before.
    let first = c.events(Event::RetxRto)[0];
    assert_eq!((first.snd_nxt, first.bytes_sent, first.inflight), (1000, 4000, 4000));
    // Recovery ends at the old snd_max: a later retransmission is judged afresh.
    c.ack(1_033_000, 4000, 1000);
    c.send(1_034_000, 4000, 1000);
    c.send(1_035_000, 5000, 1000);
    c.ack(1_044_000, 4000, 1000);
    c.ack(1_044_001, 4000, 1000);
    c.ack(1_044_002, 4000, 1000);
    c.ack(1_044_003, 4000, 1000);
    c.send(1_044_003, 4000, 1000);
    assert_eq!(c.summary().retx_fast_segs, 1);
}

#[test]
fn tso_super_segments_count_in_mss_units() {
    let mut c = Conn::new(Sampling::EveryAck, 1, 2);
    let big = frame_ext(LOCAL, REMOTE, 2, 3, ACK, 1000, 64_000, &[], false);
    c.t.on_frame(3000, Dir::Tx, &big);
    // A super-segment above 64 KiB has IP total length 0: the frame is the packet.
    let huge = frame_ext(LOCAL, REMOTE, 2 + 64_000, 3, ACK, 1000, 70_000, &[], true);
    c.t.on_frame(3000, Dir::Tx, &huge);
    assert_eq!(c.summary().bytes_sent, 134_000);
    // RTO resend of the first one.
    c.t.on_frame(2_000_000, Dir::Tx, &big);
    let s = c.summary();
    assert_eq!((s.retx_rto_segs, s.retx_rto_bytes), (64, 64_000));
    // A GRO-merged ACK-carrying data frame from the peer counts its whole length.
    let gro = frame(REMOTE, LOCAL, 3, 2, ACK, 1000, 30_000);
    c.t.on_frame(2_000_100, Dir::Rx, &gro);
    c.t.on_frame(2_000_100, Dir::Tx, &frame(LOCAL, REMOTE, 2 + 134_000, 3 + 30_000, ACK, 1000, 0));
    assert_eq!(c.summary().bytes_received, 30_000);
}

#[test]
fn zero_window_and_closing_states() {
    let mut c = Conn::new(Sampling::EveryAck, 100, 200);
    c.send(3000, 0, 1000);
    c.ack(4000, 1000, 0);
    c.ack(4001, 1000, 0);
    c.ack(5000, 1000, 10);
    c.ack(6000, 1000, 0);
    assert_eq!(c.summary().zero_wnd_events, 2);
    assert_eq!(c.events(Event::ZeroWindow).len(), 2);
    // Local FIN, peer ACKs it and closes too, local ACKs.
    c.t.on_frame(7000, Dir::Tx, &frame(LOCAL, REMOTE, 101 + 1000, 201, FIN | ACK, 1000, 0));
    c.t.on_frame(8000, Dir::Rx, &frame(REMOTE, LOCAL, 201, 101 + 1001, FIN | ACK, 10, 0));
    c.t.on_frame(8000, Dir::Tx, &frame(LOCAL, REMOTE, 101 + 1001, 202, ACK, 1000, 0));
    let states: Vec<TcpState> = c.events(Event::State).iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [TcpState::SynSent, TcpState::Established, TcpState::FinWait, TcpState::Closing, TcpState::Closed],
        "{:?}",
        c.events(Event::State)
    );
    let s = c.summary();
    assert_eq!((s.bytes_sent, s.bytes_acked, s.bytes_received), (1000, 1000, 0), "FINs are not payload");
    // An RST ends a flow; a new SYN on the same 4-tuple starts a new one.
    c.t.on_frame(9000, Dir::Rx, &frame(REMOTE, LOCAL, 202, 0, RST, 0, 0));
    assert_eq!(c.summary().state, TcpState::Reset);
    c.t.on_frame(10_000, Dir::Tx, &frame_ext(LOCAL, REMOTE, 777, 0, SYN, 1000, 0, &syn_opts(2), false));
    assert_eq!(c.t.flows().count(), 2);
}

#[test]
fn mid_flow_capture_starts_at_zero() {
    let mut t = FlowTracker::new(ProbeConfig::default());
    t.on_frame(0, Dir::Tx, &frame(LOCAL, REMOTE, 123_456, 999, ACK, 100, 1448));
    t.on_frame(10, Dir::Rx, &frame(REMOTE, LOCAL, 999, 123_456 + 1448, ACK, 100, 0));
    let s = t.flows().next().unwrap();
    assert_eq!((s.state, s.bytes_sent, s.bytes_acked, s.rtt_min_us), (TcpState::Established, 1448, 1448, Some(10)));
}

#[test]
fn interval_sampling_and_labels() {
    let mut c = Conn::new(Sampling::Interval(10), 1, 2);
    c.t.label(LOCAL.port(), 3);
    for i in 0..100u64 {
        c.send(3000 + i * 1000, i * 100, 100);
        c.ack(3500 + i * 1000, (i + 1) * 100, 1000);
    }
    c.t.tick(200_000);
    let iv = c.events(Event::Interval);
    // The first frame at t = 0, then one per started 10 ms up to 103 ms, then the tick.
    assert_eq!(iv.len(), 12, "{:?}", iv.iter().map(|s| s.t_us).collect::<Vec<_>>());
    assert!(iv.windows(2).all(|w| w[1].t_us >= w[0].t_us + 10_000));
    assert!(iv.iter().skip(1).all(|s| s.stream == 3));
    assert_eq!(iv[5].rtt_us, Some(500));
    assert!(c.events(Event::Ack).is_empty());
    c.t.finish(300_000);
    let fin = c.events(Event::Final);
    assert_eq!((fin.len(), fin[0].bytes_acked, fin[0].stream), (1, 10_000, 3));
    c.t.label_flow(FlowId::new(LOCAL, REMOTE), 4);
    assert_eq!(c.summary().stream, 4);
}

#[test]
fn sample_memory_is_bounded_and_counted() {
    let mut t = FlowTracker::new(ProbeConfig { max_samples: 5, ..ProbeConfig::default() });
    for i in 0..20u32 {
        t.on_frame(u64::from(i), Dir::Tx, &frame(LOCAL, REMOTE, 1 + i * 10, 1, ACK, 10, 10));
        t.on_frame(u64::from(i), Dir::Rx, &frame(REMOTE, LOCAL, 1, 11 + i * 10, ACK, 10, 0));
    }
    assert_eq!(t.samples().len(), 5);
    assert_eq!(t.dropped_samples(), 16, "1 state change + 20 ACKs - 5 kept");
    assert_eq!(t.take_samples().len(), 5);
    assert!(t.samples().is_empty());
}

#[test]
fn hostile_bytes_never_panic() {
    let mut rng = SplitMix64(7);
    let mut t = FlowTracker::new(ProbeConfig { max_samples: 1000, max_flows: 8, ..ProbeConfig::default() });
    let good = frame_ext(LOCAL, REMOTE, 1, 1, SYN | ACK, 1, 100, &syn_opts(14), false);
    for n in 0..good.len() {
        t.on_frame(1, Dir::Tx, &good[..n]);
        t.on_frame(1, Dir::Rx, &good[..n]);
        t.on_ipv4(1, Dir::Rx, &good[14..n.max(14)]);
    }
    for round in 0..20_000u64 {
        let mut f = good.clone();
        let flips = 1 + (rng.next_u64() % 8) as usize;
        for _ in 0..flips {
            let i = (rng.next_u64() as usize) % f.len();
            f[i] = rng.next_u64() as u8;
        }
        let cut = (rng.next_u64() as usize) % (f.len() + 1);
        let dir = if round % 2 == 0 { Dir::Tx } else { Dir::Rx };
        t.on_frame(rng.next_u64() % 1_000_000, dir, &f[..cut]);
        let noise: Vec<u8> = (0..(rng.next_u64() % 80)).map(|_| rng.next_u64() as u8).collect();
        t.on_frame(round, dir, &noise);
    }
    t.tick(u64::MAX);
    t.finish(u64::MAX);
    assert!(t.stats().malformed > 0 && t.stats().ignored > 0);
    assert!(t.flows().count() <= 8);
}

// ---- formats ----

fn example() -> FlowSample {
    FlowSample {
        t_us: 1_234_567,
        flow: FlowId::new(LOCAL, REMOTE),
        stream: 5,
        event: Event::RetxFast,
        state: TcpState::Established,
        bytes_sent: 10_000_000_000,
        bytes_acked: 9_999_000_000,
        bytes_received: 12,
        snd_una: 9_999_000_000,
        snd_nxt: 10_000_000_000,
        seg_seq: Some(9_999_000_000),
        seg_len: Some(1448),
        inflight: 1_000_000,
        cwnd_est: 900_000,
        rtt_us: None,
        srtt_us: Some(20_000),
        rttvar_us: Some(1000),
        peer_wnd: 4 << 20,
        local_wnd: 65535,
        retx_fast_segs: 3,
        retx_fast_bytes: 4344,
        dupacks: 9,
        zero_wnd_events: 1,
        ..FlowSample::default()
    }
}

/// `samples` as a log file in `format`, header included, written by the one row writer.
fn log_text(format: Format, samples: &[FlowSample]) -> String {
    let mut rows = RowWriter::new(format);
    let mut out = Vec::new();
    rows.header(&mut out);
    for s in samples {
        rows.write(s, &mut out);
    }
    String::from_utf8(out).unwrap()
}

/// One row of `s` in `format`, newline included.
fn row(format: Format, s: &FlowSample) -> String {
    let mut out = Vec::new();
    RowWriter::new(format).write(s, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn csv_and_jsonl_round_trip() {
    let samples = [example(), FlowSample { rtt_us: Some(1), seg_seq: None, seg_len: None, stream: -1, ..example() }];
    for format in [Format::Csv, Format::Jsonl] {
        let text = log_text(format, &samples);
        assert_eq!(parse_log(&text).unwrap(), samples, "{text}");
    }
    let csv = row(Format::Csv, &samples[1]);
    assert_eq!(parse_csv_line(&csv, 2).unwrap(), samples[1]);
    assert!(csv.contains(",,"), "absent values are empty fields: {csv}");
    let json = row(Format::Jsonl, &samples[0]);
    assert!(json.contains("\"rtt_us\":null"), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["flow"], "198.18.0.2:40000>198.18.0.1:5201");
    assert_eq!(CSV_HEADER.split(',').count(), v.as_object().unwrap().len());
}

#[test]
fn readers_name_the_line_and_field() {
    let csv = row(Format::Csv, &example());
    let bad = csv.replacen("1448", "14x8", 1);
    let e = parse_csv_line(&bad, 7).unwrap_err();
    assert!(e.starts_with("line 7: field 'seg_len'"), "{e}");
    let e = parse_csv_line("1,2,3", 3).unwrap_err();
    assert!(e.contains("line 3") && e.contains("25"), "{e}");
    let e = parse_csv_line(&csv.replace("retx_fast", "retx_slow"), 4).unwrap_err();
    assert!(e.contains("field 'event'"), "{e}");
    let e = parse_csv_line(&csv.replace("198.18.0.2:40000>", "198.18.0.2>"), 4).unwrap_err();
    assert!(e.contains("field 'flow'"), "{e}");
    let json = row(Format::Jsonl, &example());
    let e = parse_jsonl_line(&json.replace("\"dupacks\":9", "\"dupacks\":-9"), 2).unwrap_err();
    assert!(e.starts_with("line 2: field 'dupacks'"), "{e}");
    let e = parse_jsonl_line(&json.replace("\"state\":\"established\",", ""), 5).unwrap_err();
    assert!(e.starts_with("line 5: field 'state'"), "{e}");
    assert!(parse_jsonl_line("[1]", 1).unwrap_err().contains("line 1"));
    assert!(parse_jsonl_line("{", 1).unwrap_err().contains("line 1"));
    let e = parse_log(&alloc::format!("{CSV_HEADER}\n{csv}garbage\n")).unwrap_err();
    assert!(e.starts_with("line 3"), "{e}");
    assert!(parse_log("hello\n").unwrap_err().contains("not a flow log"));
    assert_eq!(parse_log("\n\n").unwrap(), vec![]);
    // A newer schema's extra column is tolerated, wherever it sits.
    let newer = alloc::format!("{CSV_HEADER},extra\n{},42\n", csv.trim_end());
    assert_eq!(parse_log(&newer).unwrap(), vec![example()]);
    let header = CSV_HEADER.replacen("t_us,", "t_us,extra,", 1);
    let inserted = alloc::format!("{header}\n{}", csv.replacen("1234567,", "1234567,42,", 1));
    assert_eq!(parse_log(&inserted).unwrap(), vec![example()], "{inserted}");
    // Hostile text never panics.
    let mut rng = SplitMix64(3);
    for _ in 0..2000 {
        let mut line: Vec<u8> = csv.clone().into_bytes();
        let i = (rng.next_u64() as usize) % line.len();
        line[i] = b"0,x{}\":-\n9"[(rng.next_u64() % 10) as usize];
        if let Ok(s) = core::str::from_utf8(&line) {
            let _ = parse_csv_line(s, 1);
            let _ = parse_jsonl_line(s, 1);
            let _ = parse_log(s);
        }
    }
}

/// `docs/flowlog.md` documents the columns in a table; it must list exactly the declared ones,
/// in order, with their types.
#[test]
fn docs_list_exactly_the_declared_columns() {
    const DOCS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/flowlog.md"));
    let section = DOCS.split("\n## Columns\n").nth(1).expect("docs/flowlog.md has a '## Columns' section");
    let section = section.split("\n## ").next().unwrap_or_default();
    // Rows look like "| `name` | type | meaning |".
    let documented: Vec<(&str, &str)> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name, *cells.get(2)?))
        })
        .collect();
    let declared: Vec<(&str, &str)> = COLUMNS.iter().map(|c| (c.name, c.ty)).collect();
    assert_eq!(documented, declared, "docs/flowlog.md's column table differs from flow_log_columns!");
    assert_eq!(CSV_HEADER, COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(","));
}

#[test]
fn sample_size_is_what_the_docs_say() {
    assert_eq!(core::mem::size_of::<FlowSample>(), 184);
}
