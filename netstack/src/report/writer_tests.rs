//! Reporter tests: text against iperf3 3.12's reference output, JSON by the keys scripts read.

use super::*;
use alloc::vec;

fn cfg(side: Side, format: OutputFormat) -> ReportConfig {
    ReportConfig { side, format, full_document: false, unit: 'a', verbose: false, title: None, forceflush: false }
}

fn start_info(num_streams: u32, reverse: bool, bidir: bool) -> TestStartInfo {
    TestStartInfo {
        version: "uniperf 0.1.0 (iperf 3.12 protocol)".to_string(),
        system_info: "uniperf test".to_string(),
        timestamp_ms: Some(1795238505123),
        peer_host: "127.0.0.1".to_string(),
        peer_port: 5299,
        cookie: "ektrduatcpqny75w2v7n5idytacs7sr5smqk".to_string(),
        tcp_mss: 32768,
        mss_was_set: false,
        target_bitrate: 200000000,
        fq_rate: 0,
        interval: 1.0,
        sock_bufsize: 0,
        sndbuf_actual: 16384,
        rcvbuf_actual: 131072,
        protocol: "TCP",
        num_streams,
        blksize: 131072,
        omit: 0,
        duration: 2,
        bytes: 0,
        blocks: 0,
        reverse,
        bidir,
        tos: 0,
        title: None,
        extra_data: None,
        congestion: None,
        zerocopy: false,
        skip_rx_copy: false,
    }
}

fn connected(socket: i32, local_port: u16) -> ConnectedStream {
    ConnectedStream {
        socket,
        local_host: "127.0.0.1".to_string(),
        local_port,
        remote_host: "127.0.0.1".to_string(),
        remote_port: 5299,
    }
}

fn tcp(cwnd: u64) -> TcpSenderInfo {
    TcpSenderInfo { retransmits: 0, snd_cwnd: cwnd, snd_wnd: 1464320, rtt: 70, rttvar: 42, pmtu: 65535, reorder: 0 }
}

fn ivl(socket: i32, start: f64, end: f64, bytes: u64, sender: bool, tcp_info: Option<TcpSenderInfo>) -> IntervalStream {
    IntervalStream { socket, start, end, bytes, omitted: false, sender, tcp: tcp_info, udp: None }
}

fn end_tcp() -> EndTcpInfo {
    EndTcpInfo {
        retransmits: 0,
        max_snd_cwnd: 785796,
        max_snd_wnd: 1788928,
        max_rtt: 70,
        min_rtt: 67,
        mean_rtt: 68,
        reorder: 0,
    }
}

/// A captured stock 3.12 `--bidir -t 2` test: 50069504 bytes each way, sender 2.000094 s,
/// receiver ends at 2.000501 s.
fn end_stream(socket: i32, local_is_sender: bool, with_tcp: bool) -> EndStream {
    EndStream {
        socket,
        local_is_sender,
        sender: EndSide {
            start: 0.0,
            end: 2.000094,
            seconds: 2.000094,
            bytes: 50069504,
            tcp: with_tcp.then(end_tcp),
            udp: None,
        },
        receiver: EndSide { start: 0.0, end: 2.000501, seconds: 2.000094, bytes: 50069504, tcp: None, udp: None },
    }
}

fn end_info(streams: Vec<EndStream>) -> TestEndInfo {
    TestEndInfo {
        streams,
        cpu: CpuUtil {
            host_total: 3.997575470477156,
            host_user: 3.997575470477156,
            host_system: 0.0,
            remote_total: 0.789250714194666,
            remote_user: 0.789250714194666,
            remote_system: 0.0,
        },
        sender_tcp_congestion: Some("reno".to_string()),
        receiver_tcp_congestion: Some("cubic".to_string()),
    }
}

/// The single-stream client test of the capture, driven through a reporter.
fn run_single_client(r: &mut Reporter) {
    r.connecting("127.0.0.1", 5299);
    r.stream_connected(connected(5, 38796));
    r.test_start(start_info(1, false, false));
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.000078, 25034752, true, Some(tcp(785796)))] });
    r.interval(IntervalReport { streams: vec![ivl(5, 1.000078, 2.000094, 25034752, true, Some(tcp(785796)))] });
    r.test_end(end_info(vec![end_stream(5, true, true)]));
    r.finish();
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() <= b.abs() * 1e-12 + 1e-9)
}

#[test]
fn text_client_single_stream_matches_iperf3() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    run_single_client(&mut r);
    let want = "\
Connecting to host 127.0.0.1, port 5299
[  5] local 127.0.0.1 port 38796 connected to 127.0.0.1 port 5299
[ ID] Interval           Transfer     Bitrate         Retr  Cwnd
[  5]   0.00-1.00   sec  23.9 MBytes   200 Mbits/sec    0    767 KBytes       
[  5]   1.00-2.00   sec  23.9 MBytes   200 Mbits/sec    0    767 KBytes       
- - - - - - - - - - - - - - - - - - - - - - - - -
[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec    0            sender
[  5]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec                  receiver

iperf Done.
";
    assert_eq!(r.take_output(), want);
    assert_eq!(r.take_output(), "");
}

#[test]
fn text_client_parallel_streams_have_sums_and_separators() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    r.connecting("127.0.0.1", 5299);
    r.stream_connected(connected(5, 59132));
    r.stream_connected(connected(7, 59136));
    r.test_start(start_info(2, false, false));
    let mb12 = 12 * 1024 * 1024;
    for (a, b) in [(0.0, 1.0), (1.0, 2.0)] {
        r.interval(IntervalReport {
            streams: vec![
                ivl(5, a, b, mb12, true, Some(tcp(1_174_405))),
                ivl(7, a, b, mb12, true, Some(tcp(1_174_405))),
            ],
        });
    }
    let mut e = end_info(vec![end_stream(5, true, true), end_stream(7, true, true)]);
    for s in &mut e.streams {
        s.sender.bytes = 25034752;
        s.receiver.bytes = 25034752;
    }
    r.test_end(e);
    r.finish();
    let want = "\
Connecting to host 127.0.0.1, port 5299
[  5] local 127.0.0.1 port 59132 connected to 127.0.0.1 port 5299
[  7] local 127.0.0.1 port 59136 connected to 127.0.0.1 port 5299
[ ID] Interval           Transfer     Bitrate         Retr  Cwnd
[  5]   0.00-1.00   sec  12.0 MBytes   101 Mbits/sec    0   1.12 MBytes       
[  7]   0.00-1.00   sec  12.0 MBytes   101 Mbits/sec    0   1.12 MBytes       
[SUM]   0.00-1.00   sec  24.0 MBytes   201 Mbits/sec    0             
- - - - - - - - - - - - - - - - - - - - - - - - -
[  5]   1.00-2.00   sec  12.0 MBytes   101 Mbits/sec    0   1.12 MBytes       
[  7]   1.00-2.00   sec  12.0 MBytes   101 Mbits/sec    0   1.12 MBytes       
[SUM]   1.00-2.00   sec  24.0 MBytes   201 Mbits/sec    0             
- - - - - - - - - - - - - - - - - - - - - - - - -
[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-2.00   sec  23.9 MBytes   100 Mbits/sec    0            sender
[  5]   0.00-2.00   sec  23.9 MBytes   100 Mbits/sec                  receiver
[  7]   0.00-2.00   sec  23.9 MBytes   100 Mbits/sec    0            sender
[  7]   0.00-2.00   sec  23.9 MBytes   100 Mbits/sec                  receiver
[SUM]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec    0             sender
[SUM]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec                  receiver

iperf Done.
";
    assert_eq!(r.take_output(), want);
}

#[test]
fn text_reverse_line_comes_before_connected_lines() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    r.connecting("198.18.0.2", 5201);
    r.stream_connected(connected(5, 40000));
    // Nothing about the stream yet: its line waits for test_start.
    assert_eq!(r.take_output(), "Connecting to host 198.18.0.2, port 5201\n");
    r.test_start(start_info(1, true, false));
    // A receiving client without TCP details: no Retr/Cwnd columns.
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 1_000_000, false, None)] });
    let out = r.take_output();
    assert_eq!(
        out,
        "Reverse mode, remote host 198.18.0.2 is sending\n\
         [  5] local 127.0.0.1 port 40000 connected to 127.0.0.1 port 5299\n\
         [ ID] Interval           Transfer     Bitrate\n\
         [  5]   0.00-1.00   sec   977 KBytes  8.00 Mbits/sec                  \n"
    );
}

#[test]
fn text_title_prefixes_every_client_line() {
    let mut c = cfg(Side::Client, OutputFormat::Text);
    c.title = Some("run1".to_string());
    let mut r = Reporter::new(c);
    run_single_client(&mut r);
    let out = r.take_output();
    assert!(out.starts_with("run1:  Connecting to host 127.0.0.1, port 5299\nrun1:  [  5] local"));
    for line in out.lines() {
        assert!(line.starts_with("run1:  "), "unprefixed line {line:?}");
    }
    assert!(out.ends_with("run1:  \nrun1:  iperf Done.\n"));
}

#[test]
fn text_server_shows_only_what_it_measured() {
    let mut r = Reporter::new(cfg(Side::Server, OutputFormat::Text));
    r.server_listening(5201, 1);
    r.accepted("198.18.0.1", 41000);
    r.stream_connected(connected(5, 5201));
    r.test_start(start_info(1, false, false));
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 25034752, false, None)] });
    // The client's TCP details arrive with its results.
    r.test_end(end_info(vec![end_stream(5, false, true)]));
    let so_far = r.text_so_far();
    r.finish();
    let want = "\
-----------------------------------------------------------
Server listening on 5201 (test #1)
-----------------------------------------------------------
Accepted connection from 198.18.0.1, port 41000
[  5] local 127.0.0.1 port 38796 connected to 127.0.0.1 port 5299
[ ID] Interval           Transfer     Bitrate
[  5]   0.00-1.00   sec  23.9 MBytes   200 Mbits/sec                  
- - - - - - - - - - - - - - - - - - - - - - - - -
[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec                  receiver
"
    .replace("port 38796 connected", "port 5201 connected");
    assert_eq!(r.take_output(), want);
    // Like iperf3, the copy for --get-server-output starts after the banner.
    let banner_len = want.find("Accepted").unwrap();
    assert_eq!(so_far, want[banner_len..]);
    // finish() starts the next test's record.
    assert_eq!(r.text_so_far(), "");
    r.server_listening(5201, 2);
    assert!(r.take_output().contains("Server listening on 5201 (test #2)\n"));
    assert_eq!(r.text_so_far(), "");
}

#[test]
fn text_verbose_adds_cpu_and_test_lines() {
    let mut c = cfg(Side::Client, OutputFormat::Text);
    c.verbose = true;
    let mut r = Reporter::new(c);
    run_single_client(&mut r);
    let out = r.take_output();
    assert!(out.contains("      Cookie: ektrduatcpqny75w2v7n5idytacs7sr5smqk\n      TCP MSS: 32768 (default)\n"));
    assert!(out.contains(
        "Starting Test: protocol: TCP, 1 streams, 131072 byte blocks, omitting 0 seconds, 2 second test, tos 0\n"
    ));
    assert!(out.contains("Test Complete. Summary Results:\n"));
    assert!(out.contains("CPU Utilization: local/sender 4.0% (4.0%u/0.0%s), remote/receiver 0.8% (0.8%u/0.0%s)\n"));
    assert!(out.contains("snd_tcp_congestion reno\nrcv_tcp_congestion cubic\n"));
    // Cookie lines come before the stream lines, "Starting Test" after them.
    let cookie = out.find("Cookie").unwrap();
    let local = out.find("] local").unwrap();
    let starting = out.find("Starting Test").unwrap();
    assert!(cookie < local && local < starting);

    let mut quiet = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    run_single_client(&mut quiet);
    assert!(!quiet.take_output().contains("CPU Utilization"));
}

#[test]
fn text_omitted_intervals_are_marked_and_header_repeats() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    r.test_start(start_info(1, false, false));
    let mut s = ivl(5, 0.0, 1.0, 1 << 20, true, Some(tcp(65536)));
    s.omitted = true;
    r.interval(IntervalReport { streams: vec![s] });
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 1 << 20, true, Some(tcp(65536)))] });
    let out = r.take_output();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "[ ID] Interval           Transfer     Bitrate         Retr  Cwnd",
            "[  5]   0.00-1.00   sec  1.00 MBytes  8.39 Mbits/sec    0   64.0 KBytes       (omitted)",
            "[ ID] Interval           Transfer     Bitrate         Retr  Cwnd",
            "[  5]   0.00-1.00   sec  1.00 MBytes  8.39 Mbits/sec    0   64.0 KBytes       ",
        ]
    );
}

#[test]
fn text_bidir_uses_role_tags_in_iperf3_order() {
    for side in [Side::Client, Side::Server] {
        let mut r = Reporter::new(cfg(side, OutputFormat::Text));
        r.test_start(start_info(1, false, true));
        let (first_sends, role_a, role_b) = match side {
            Side::Client => (true, "[TX-C]", "[RX-C]"),
            Side::Server => (false, "[RX-S]", "[TX-S]"),
        };
        let a = ivl(5, 0.0, 1.0, 1000, first_sends, first_sends.then(|| tcp(1000)));
        let b = ivl(7, 0.0, 1.0, 2000, !first_sends, (!first_sends).then(|| tcp(1000)));
        r.interval(IntervalReport { streams: vec![a, b] });
        r.test_end(end_info(vec![end_stream(5, first_sends, first_sends), end_stream(7, !first_sends, !first_sends)]));
        let out = r.take_output();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "[ ID][Role] Interval           Transfer     Bitrate         Retr  Cwnd", "{side:?}");
        assert!(lines[1].starts_with(&format!("[  5]{role_a}   0.00-1.00   sec")), "{side:?}: {}", lines[1]);
        assert!(lines[2].starts_with(&format!("[  7]{role_b}   0.00-1.00   sec")), "{side:?}: {}", lines[2]);
        assert!(lines.contains(&"[ ID][Role] Interval           Transfer     Bitrate         Retr"));
        let ends: Vec<&&str> = lines.iter().filter(|l| l.ends_with("sender") || l.ends_with("receiver")).collect();
        match side {
            // The client has both sides of both directions.
            Side::Client => assert_eq!(ends.len(), 4),
            // The server: receiver of the RX stream, sender of the TX stream.
            Side::Server => {
                assert_eq!(ends.len(), 2);
                assert!(ends[0].starts_with("[  5][RX-S]") && ends[0].ends_with("receiver"));
                assert!(ends[1].starts_with("[  7][TX-S]") && ends[1].ends_with("sender"));
            }
        }
    }
}

#[test]
fn text_warning_and_error() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    r.connecting("198.18.0.2", 5201);
    r.warning("UDP block size 9000 exceeds TCP MSS 1448, may result in fragmentation / drops");
    r.error("unable to connect to server: Connection refused");
    r.finish();
    assert_eq!(
        r.take_output(),
        "Connecting to host 198.18.0.2, port 5201\n\
         warning: UDP block size 9000 exceeds TCP MSS 1448, may result in fragmentation / drops\n\
         iperf3: error - unable to connect to server: Connection refused\n"
    );
}

#[test]
fn text_fixed_unit_format() {
    let mut c = cfg(Side::Client, OutputFormat::Text);
    c.unit = 'M';
    let mut r = Reporter::new(c);
    r.test_start(start_info(1, false, false));
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 25034752, true, None)] });
    assert!(r.take_output().contains("  23.9 MBytes  23.9 MBytes/sec  "));
}

#[test]
fn text_client_prints_server_output_after_summary() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Text));
    r.test_start(start_info(1, false, false));
    r.server_output(Some("Accepted connection from x\n".to_string()), None);
    r.test_end(end_info(vec![end_stream(5, true, true)]));
    r.finish();
    let out = r.take_output();
    assert!(out.ends_with("receiver\n\nServer output:\nAccepted connection from x\n\n\niperf Done.\n"), "{out}");
}

#[test]
fn json_client_document_has_iperf3_keys() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Json));
    run_single_client(&mut r);
    let out = r.take_output();
    assert!(out.starts_with("{\n\t\"start\":\t{\n\t\t\"connected\":\t[{\n"), "{out}");
    assert!(out.ends_with("}\n"));
    // iperf3's key order: start, intervals, end; and inside start.
    let pos = |k: &str| out.find(k).unwrap_or_else(|| panic!("{k} missing"));
    assert!(pos("\"start\"") < pos("\"intervals\"") && pos("\"intervals\"") < pos("\"end\""));
    assert!(pos("\"version\"") < pos("\"timestamp\"") && pos("\"cookie\"") < pos("\"test_start\""));

    let v = parse(&out);
    let s = &v["start"];
    assert_eq!(s["connected"][0]["socket"], 5);
    assert_eq!(s["connected"][0]["local_port"], 38796);
    assert_eq!(s["timestamp"]["time"], "Sat, 21 Nov 2026 05:21:45 GMT");
    assert_eq!(s["timestamp"]["timesecs"], 1795238505u64);
    assert_eq!(s["timestamp"]["timemillisecs"], 1795238505123u64);
    assert_eq!(s["fq_rate"], 0);
    for key in ["bidir", "fqrate", "interval", "gso", "gro"] {
        assert!(s["test_start"].get(key).is_some(), "test_start.{key} (3.13-3.21 keys)");
    }
    assert_eq!(s["connecting_to"]["host"], "127.0.0.1");
    assert_eq!(s["connecting_to"]["port"], 5299);
    assert_eq!(s["tcp_mss_default"], 32768);
    assert!(s.get("tcp_mss").is_none());
    assert_eq!(s["test_start"]["num_streams"], 1);
    assert_eq!(s["test_start"]["protocol"], "TCP");
    assert_eq!(s["test_start"]["reverse"], 0);
    assert_eq!(s["test_start"]["bidir"], 0);
    assert_eq!(s["test_start"]["target_bitrate"], 200000000);

    let i0 = &v["intervals"][0];
    assert_eq!(i0["sum"]["bytes"], 25034752);
    assert!(close(&i0["sum"]["bits_per_second"], 25034752.0 * 8.0 / 1.000078));
    assert_eq!(i0["sum"]["retransmits"], 0);
    assert_eq!(i0["sum"]["sender"], true);
    assert_eq!(i0["streams"][0]["snd_cwnd"], 785796);
    assert_eq!(i0["streams"][0]["rtt"], 70);
    assert_eq!(i0["streams"][0]["omitted"], false);
    assert!(close(&v["intervals"][1]["streams"][0]["start"], 1.000078));

    let e = &v["end"];
    assert_eq!(e["sum_sent"]["bytes"], 50069504);
    assert_eq!(e["sum_sent"]["retransmits"], 0);
    assert!(close(&e["sum_sent"]["bits_per_second"], 200268603.37564138));
    assert!(close(&e["sum_received"]["bits_per_second"], 200227858.92134023));
    assert!(close(&e["sum_received"]["seconds"], 2.000501));
    assert_eq!(e["streams"][0]["sender"]["max_snd_cwnd"], 785796);
    assert_eq!(e["streams"][0]["sender"]["mean_rtt"], 68);
    // 3.12's quirk: the receiver shows the sender's duration but its own rate.
    assert!(close(&e["streams"][0]["receiver"]["seconds"], 2.000094));
    assert!(close(&e["streams"][0]["receiver"]["bits_per_second"], 200227858.92134023));
    assert!(e["streams"][0]["receiver"].get("retransmits").is_none());
    assert!(close(&e["cpu_utilization_percent"]["host_total"], 3.997575470477156));
    assert_eq!(e["cpu_utilization_percent"]["host_system"], 0);
    assert_eq!(e["sender_tcp_congestion"], "reno");
    assert_eq!(e["receiver_tcp_congestion"], "cubic");
    assert!(v.get("error").is_none());
    assert!(v.get("title").is_none());
}

#[test]
fn json_without_tcp_info_omits_tcp_keys() {
    let mut r = Reporter::new(cfg(Side::Server, OutputFormat::Json));
    r.stream_connected(connected(5, 5201));
    r.test_start(start_info(1, false, false));
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 1000, false, None)] });
    let mut es = end_stream(5, false, false);
    es.sender.bytes = 0;
    r.test_end(end_info(vec![es]));
    r.finish();
    let v = parse(&r.take_output());
    assert_eq!(v["start"]["accepted_connection"]["port"], 5299);
    assert!(v["start"].get("connecting_to").is_none());
    let st = &v["intervals"][0]["streams"][0];
    assert_eq!(st["sender"], false);
    for k in ["retransmits", "snd_cwnd", "snd_wnd", "rtt", "rttvar", "pmtu"] {
        assert!(st.get(k).is_none(), "{k}");
    }
    assert!(v["intervals"][0]["sum"].get("retransmits").is_none());
    assert!(v["end"]["sum_sent"].get("retransmits").is_none());
    assert_eq!(v["end"]["sum_sent"]["bytes"], 0);
    assert_eq!(v["end"]["sum_sent"]["sender"], false);
    assert_eq!(v["end"]["sum_received"]["bytes"], 50069504);
    assert_eq!(v["end"]["streams"][0]["sender"]["bits_per_second"], 0);
}

#[test]
fn json_bidir_sums_by_direction() {
    // Client: sends on 5 and 9, receives on 7 and 11.
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Json));
    r.test_start(start_info(2, false, true));
    r.interval(IntervalReport {
        streams: vec![
            ivl(5, 0.0, 1.0, 100, true, Some(TcpSenderInfo { retransmits: 2, ..tcp(1) })),
            ivl(9, 0.0, 1.0, 200, true, Some(TcpSenderInfo { retransmits: 3, ..tcp(1) })),
            ivl(7, 0.0, 1.0, 1000, false, None),
            ivl(11, 0.0, 1.0, 3000, false, None),
        ],
    });
    let mut tx1 = end_stream(5, true, true);
    tx1.sender.bytes = 100;
    let mut tx2 = end_stream(9, true, true);
    tx2.sender.bytes = 200;
    let mut rx1 = end_stream(7, false, false);
    rx1.receiver.bytes = 1000;
    let mut rx2 = end_stream(11, false, false);
    rx2.receiver.bytes = 3000;
    r.test_end(end_info(vec![tx1, rx1, tx2, rx2]));
    r.finish();
    let out = r.take_output();
    let v = parse(&out);
    let i0 = &v["intervals"][0];
    assert_eq!(i0["sum"]["bytes"], 300);
    assert_eq!(i0["sum"]["retransmits"], 5);
    assert_eq!(i0["sum"]["sender"], true);
    assert_eq!(i0["sum_bidir_reverse"]["bytes"], 4000);
    assert_eq!(i0["sum_bidir_reverse"]["sender"], false);
    assert!(i0["sum_bidir_reverse"].get("retransmits").is_none());
    let sockets: Vec<i64> = i0["streams"].as_array().unwrap().iter().map(|s| s["socket"].as_i64().unwrap()).collect();
    assert_eq!(sockets, [5, 9, 7, 11]);
    let e = &v["end"];
    assert_eq!(e["sum_sent"]["bytes"], 300);
    assert_eq!(e["sum_sent"]["sender"], true);
    assert_eq!(e["sum_received_bidir_reverse"]["bytes"], 4000);
    assert_eq!(e["sum_sent_bidir_reverse"]["sender"], false);
    let pos = |k: &str| out.find(k).unwrap();
    assert!(pos("\"sum_received\"") < pos("\"sum_sent_bidir_reverse\""));
    assert!(pos("\"sum_received_bidir_reverse\"") < pos("\"cpu_utilization_percent\""));

    // Server of the same test: it receives on 5 and 9 (the main direction, "sum").
    let mut r = Reporter::new(cfg(Side::Server, OutputFormat::Json));
    r.test_start(start_info(2, false, true));
    r.interval(IntervalReport {
        streams: vec![
            ivl(5, 0.0, 1.0, 100, false, None),
            ivl(9, 0.0, 1.0, 200, false, None),
            ivl(7, 0.0, 1.0, 1000, true, Some(tcp(1))),
            ivl(11, 0.0, 1.0, 3000, true, Some(tcp(1))),
        ],
    });
    let v = r.json_so_far();
    assert_eq!(v["intervals"][0]["sum"]["bytes"], 300);
    assert_eq!(v["intervals"][0]["sum"]["sender"], false);
    assert_eq!(v["intervals"][0]["sum_bidir_reverse"]["bytes"], 4000);
    assert_eq!(v["intervals"][0]["sum_bidir_reverse"]["retransmits"], 0);
    assert_eq!(v["end"], serde_json::json!({}));
}

#[test]
fn json_omitted_interval() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Json));
    r.test_start(start_info(1, false, false));
    let mut s = ivl(5, 0.0, 1.0, 10, true, None);
    s.omitted = true;
    r.interval(IntervalReport { streams: vec![s] });
    r.finish();
    let v = parse(&r.take_output());
    assert_eq!(v["intervals"][0]["streams"][0]["omitted"], true);
    assert_eq!(v["intervals"][0]["sum"]["omitted"], true);
}

#[test]
fn json_error_document_before_test_start() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Json));
    r.connecting("198.18.0.2", 5201);
    r.warning("ignored in JSON");
    r.error("unable to connect to server: Connection refused");
    assert_eq!(r.take_output(), "", "JSON is written by finish()");
    r.finish();
    let out = r.take_output();
    let v = parse(&out);
    assert_eq!(v["start"]["connected"], serde_json::json!([]));
    assert_eq!(v["intervals"], serde_json::json!([]));
    assert_eq!(v["end"], serde_json::json!({}));
    assert_eq!(v["error"], "unable to connect to server: Connection refused");
    assert!(out.find("\"end\"").unwrap() < out.find("\"error\"").unwrap());
    // The next test starts clean.
    r.finish();
    assert!(parse(&r.take_output()).get("error").is_none());
}

#[test]
fn json_top_level_optional_keys() {
    let mut c = cfg(Side::Client, OutputFormat::Json);
    c.title = Some("cfg title".to_string());
    let mut r = Reporter::new(c);
    let mut info = start_info(1, false, false);
    info.title = Some("t1".to_string());
    info.extra_data = Some("x=1".to_string());
    info.mss_was_set = true;
    r.test_start(info);
    r.server_output(None, Some(serde_json::json!({"start": {"connected": []}, "intervals": [], "end": {}})));
    r.finish();
    let v = parse(&r.take_output());
    assert_eq!(v["title"], "t1");
    assert_eq!(v["extra_data"], "x=1");
    assert_eq!(v["start"]["tcp_mss"], 32768);
    assert!(v["start"].get("tcp_mss_default").is_none());
    assert_eq!(v["server_output_json"]["intervals"], serde_json::json!([]));
    assert!(v.get("server_output_text").is_none());

    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::Json));
    r.server_output(Some("text from server\n".to_string()), None);
    r.finish();
    assert_eq!(parse(&r.take_output())["server_output_text"], "text from server\n");
}

#[test]
fn json_stream_lines_each_parse() {
    let mut r = Reporter::new(cfg(Side::Client, OutputFormat::JsonStream));
    r.connecting("127.0.0.1", 5299);
    r.stream_connected(connected(5, 38796));
    r.test_start(start_info(1, false, false));
    let first = r.take_output();
    assert_eq!(first.lines().count(), 1);
    let ev = parse(&first);
    assert_eq!(ev["event"], "start");
    assert_eq!(ev["data"]["connected"][0]["socket"], 5);
    assert!(first.starts_with("{\"event\":\"start\",\"data\":{\"connected\":[{\"socket\":5,"));

    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 25034752, true, Some(tcp(785796)))] });
    r.interval(IntervalReport { streams: vec![ivl(5, 1.0, 2.0, 25034752, true, Some(tcp(785796)))] });
    r.test_end(end_info(vec![end_stream(5, true, true)]));
    r.server_output(Some("srv".to_string()), None);
    r.error("late failure");
    r.finish();
    let out = r.take_output();
    let events: Vec<Value> = out.lines().map(parse).collect();
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["interval", "interval", "error", "server_output_text", "end"]);
    assert_eq!(events[0]["data"]["sum"]["bytes"], 25034752);
    assert_eq!(events[1]["data"]["streams"][0]["start"], 1);
    assert_eq!(events[2]["data"], "late failure");
    assert_eq!(events[3]["data"], "srv");
    assert_eq!(events[4]["data"]["sum_sent"]["bytes"], 50069504);
    assert!(!out.contains('\t'));
}

#[test]
fn json_so_far_on_server() {
    let mut r = Reporter::new(cfg(Side::Server, OutputFormat::Json));
    r.stream_connected(connected(5, 5201));
    r.test_start(start_info(1, false, false));
    r.interval(IntervalReport { streams: vec![ivl(5, 0.0, 1.0, 1000, false, None)] });
    r.test_end(end_info(vec![end_stream(5, false, false)]));
    let v = r.json_so_far();
    assert_eq!(v["start"]["test_start"]["num_streams"], 1);
    assert_eq!(v["intervals"][0]["sum"]["bytes"], 1000);
    assert_eq!(v["end"]["sum_received"]["bytes"], 50069504);
    assert!(v.get("error").is_none());
    r.finish();
    let v = r.json_so_far();
    assert_eq!(v["intervals"], serde_json::json!([]));
}

#[test]
fn hostile_values_do_not_panic() {
    for format in [OutputFormat::Text, OutputFormat::Json, OutputFormat::JsonStream] {
        for side in [Side::Client, Side::Server] {
            let mut c = cfg(side, format);
            c.unit = '?';
            c.verbose = true;
            let mut r = Reporter::new(c);
            r.interval(IntervalReport { streams: Vec::new() });
            r.interval(IntervalReport {
                streams: vec![ivl(
                    -1,
                    f64::NAN,
                    f64::INFINITY,
                    u64::MAX,
                    true,
                    Some(TcpSenderInfo { retransmits: -1, ..tcp(u64::MAX) }),
                )],
            });
            let mut e = end_stream(i32::MIN, true, true);
            e.sender.seconds = f64::NAN;
            e.receiver.end = -5.0;
            r.test_end(TestEndInfo { streams: vec![e], ..end_info(Vec::new()) });
            r.test_end(end_info(Vec::new()));
            r.server_output(Some(String::new()), Some(Value::Null));
            r.finish();
            let out = r.take_output();
            if format != OutputFormat::Text {
                for line in out.lines().filter(|l| l.starts_with("{\"event\"")) {
                    parse(line);
                }
                if format == OutputFormat::Json {
                    parse(&out);
                }
            }
        }
    }
}
