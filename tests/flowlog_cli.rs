//! Flow logs from the command line, no root needed: `uniperf sim --flowlog` writes a client and a
//! server log with rows for every stream, in CSV and JSON Lines; `uniperf plot` turns them into
//! PNG and SVG figures and refuses malformed logs with the file, line and field; `uniperf
//! collect` stores uploads that arrive on loopback and rejects incomplete ones.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use netstack::flowlog::{Event, FlowSample, parse_log};

const DEADLINE: Duration = Duration::from_secs(300);

fn uniperf(label: &str, args: &[&str]) -> Finished {
    let mut argv = vec![UNIPERF.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    Proc::spawn(label, &argv, DEADLINE).wait()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uniperf-flowlog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn read_samples(path: &Path) -> Vec<FlowSample> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_log(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Rows per iperf3 stream id (-1: control connection).
fn rows_per_stream(samples: &[FlowSample]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for s in samples {
        *m.entry(s.stream).or_default() += 1;
    }
    m
}

/// `uniperf sim -t 2 -P 2 --flowlog F`: both logs parse, each data stream (ids 1 and 3) has rows
/// in both and a `final` row with its totals; the client's streams send and are acked, the
/// server's receive the same byte counts.
#[test]
fn sim_writes_a_log_per_side_with_rows_for_each_stream() {
    let dir = scratch("sim");
    let log = dir.join("run.csv");
    let done = uniperf("sim-flowlog", &["sim", "-t", "2", "-P", "2", "--flowlog", log.to_str().unwrap()]);
    done.expect_success();
    let server_log = dir.join("run.server.csv");
    for (path, sender) in [(&log, true), (&server_log, false)] {
        let samples = read_samples(path);
        let per_stream = rows_per_stream(&samples);
        eprintln!("{}: {} rows, per stream {per_stream:?}", path.display(), samples.len());
        for id in [1, 3] {
            let rows = per_stream.get(&id).copied().unwrap_or(0);
            assert!(rows > 10, "{}: stream {id} has {rows} rows: {per_stream:?}", path.display());
            let last = samples
                .iter()
                .find(|s| s.stream == id && s.event == Event::Final)
                .unwrap_or_else(|| panic!("{}: no final row for stream {id}", path.display()));
            if sender {
                assert!(
                    last.bytes_acked > 1 << 20,
                    "{}: stream {id} acked only {} B",
                    path.display(),
                    last.bytes_acked
                );
                assert!(samples.iter().any(|s| s.stream == id && s.rtt_us.is_some()), "no RTT samples for stream {id}");
            } else {
                assert!(
                    last.bytes_received > 1 << 20,
                    "{}: stream {id} received {} B",
                    path.display(),
                    last.bytes_received
                );
            }
        }
        assert!(done.stderr.contains(&format!("written to {}", path.display())), "{}", done.stderr);
    }
    // Both ends agree on what moved.
    let totals = |p: &Path, f: fn(&FlowSample) -> u64| -> u64 {
        read_samples(p).iter().filter(|s| s.event == Event::Final && s.stream >= 0).map(f).sum()
    };
    let acked = totals(&log, |s| s.bytes_acked);
    let received = totals(&server_log, |s| s.bytes_received);
    assert_eq!(acked, received, "client acked {acked} B, server received {received} B");
}

/// JSON Lines: every row an object, the same schema as CSV; every ACK with interval 0.
#[test]
fn sim_jsonl_every_ack() {
    let dir = scratch("jsonl");
    let log = dir.join("run.jsonl");
    let args =
        ["sim", "-t", "1", "--flowlog", log.to_str().unwrap(), "--flowlog-format", "jsonl", "--flowlog-interval", "0"];
    uniperf("sim-jsonl", &args).expect_success();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "not JSON Lines:\n{}",
        &text[..400.min(text.len())]
    );
    let samples = read_samples(&log);
    let acks = samples.iter().filter(|s| s.event == Event::Ack).count();
    assert!(acks > 1000, "every-ACK sampling gave only {acks} ack rows");
    assert!(dir.join("run.server.jsonl").is_file());
}

/// `uniperf plot` of both logs: a PNG (signature, some size) and an SVG carrying the panel
/// titles and axis labels as text.
#[test]
fn plot_png_and_svg() {
    let dir = scratch("plot");
    let log = dir.join("lossy.csv");
    let args = ["sim", "-t", "2", "--delay", "5", "--loss", "0.3", "--rate", "100M", "--queue", "256K"];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--flowlog", log.to_str().unwrap(), "--flowlog-interval", "0"]);
    uniperf("sim-lossy", &args).expect_success();
    let server_log = dir.join("lossy.server.csv");
    let png = dir.join("flows.png");
    let svg = dir.join("flows.svg");
    for out in [&png, &svg] {
        let done = uniperf(
            "plot",
            &["plot", log.to_str().unwrap(), server_log.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        done.expect_success();
        eprintln!("{}", done.stderr.trim());
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(bytes.len() > 50_000, "PNG is only {} bytes", bytes.len());
    let text = std::fs::read_to_string(&svg).unwrap();
    for needle in [
        "<svg",
        "Throughput",
        "Time-sequence",
        "Congestion window",
        "Round-trip time",
        "Receive windows",
        "time (s)",
        "Mbit/s",
        "stream 1",
    ] {
        assert!(text.contains(needle), "the SVG lacks {needle:?}");
    }
    eprintln!("PNG {} bytes, SVG {} bytes", bytes.len(), text.len());
}

/// Malformed logs: a clear error naming file, line and field, and exit status 1.
#[test]
fn plot_rejects_malformed_logs() {
    let dir = scratch("bad");
    let good = dir.join("good.csv");
    uniperf("sim", &["sim", "-t", "1", "--flowlog", good.to_str().unwrap()]).expect_success();
    let text = std::fs::read_to_string(&good).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Line 3 of the file: break its rtt_us column (index 14).
    let mut cells: Vec<String> = lines[2].split(',').map(String::from).collect();
    cells[14] = "12x".into();
    lines[2] = cells.join(",");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let not_log = dir.join("notes.txt");
    std::fs::write(&not_log, "hello\nworld\n").unwrap();
    let short = dir.join("short.jsonl");
    std::fs::write(&short, "{\"t_us\":1,\"flow\":\"1.2.3.4:1>5.6.7.8:2\"}\n").unwrap();
    let cases: [(&Path, &[&str]); 4] = [
        (&bad, &["bad.csv", "line 3", "rtt_us", "12x"]),
        (&not_log, &["notes.txt", "line 1", "not a flow log"]),
        (&short, &["short.jsonl", "line 1", "field"]),
        (&dir.join("missing.csv"), &["missing.csv", "cannot read"]),
    ];
    for (path, needles) in cases {
        let out = dir.join("x.png");
        let done = uniperf("plot-bad", &["plot", path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(done.code(), Some(1), "plot of {} should fail:\n{}", path.display(), done.describe());
        for n in needles {
            assert!(done.stderr.contains(n), "error for {} lacks {n:?}: {}", path.display(), done.stderr);
        }
        assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
        eprintln!("{}", done.stderr.trim());
    }
    let done = uniperf("plot-ext", &["plot", good.to_str().unwrap(), "-o", dir.join("x.jpg").to_str().unwrap()]);
    assert_eq!(done.code(), Some(1));
    assert!(done.stderr.contains(".png or .svg"), "{}", done.stderr);
}

/// Flow-log options that make no sense are refused before anything runs.
#[test]
fn flowlog_option_errors() {
    let cases: [(&[&str], &str); 4] = [
        (&["sim", "--flowlog-interval", "5"], "needs --flowlog"),
        (&["sim", "--flowlog", "f.csv", "--flowlog-format", "xml"], "xml"),
        (
            &["sim", "--flowlog-collect", "198.18.0.1:6000"],
            "--flowlog-collect is not taken by `uniperf sim` (it is for the unikernel",
        ),
        (&["-s", "--tap", "tapx", "--ip", "198.18.0.2/24", "--flowlog-collect", "198.18.0.1:6000"], "unikernel"),
    ];
    for (args, want) in cases {
        let done = uniperf("options", args);
        assert_eq!(done.code(), Some(1), "{args:?}:\n{}", done.describe());
        assert!(done.stderr.contains(want), "{args:?}: {}", done.stderr);
    }
}

/// `uniperf collect` on loopback: a well-formed upload is stored under its role, sender and
/// test number and measured; one that ends early is reported as incomplete (exit 1).
#[test]
fn collect_stores_uploads_and_rejects_incomplete_ones() {
    let dir = scratch("collect");
    let log = dir.join("src.csv");
    uniperf("sim", &["sim", "-t", "1", "--flowlog", log.to_str().unwrap(), "--flowlog-interval", "0"]).expect_success();
    let body = std::fs::read_to_string(&log).unwrap();
    let rows = body.lines().count() - 1;
    let out = dir.join("got");
    // A free loopback port: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut collector = Proc::spawn(
        "collect",
        &[UNIPERF, "collect", "--listen", &listen, "-o", out.to_str().unwrap(), "--count", "2", "--timeout", "60"]
            .map(String::from),
        Duration::from_secs(90),
    );
    collector.wait_for_stderr_line("uniperf collect: listening on", Duration::from_secs(15));
    let upload = |header: String, body: &str| {
        let mut s = std::net::TcpStream::connect(&listen).expect("connect to the collector");
        s.write_all(header.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Wait for the collector's close, as the image does.
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    };
    upload(format!("uniperf-flowlog 1 role=client test=1 format=csv samples={rows} dropped=0\n"), &body);
    let half: String = body.lines().take(rows / 2).map(|l| format!("{l}\n")).collect();
    upload(format!("uniperf-flowlog 1 role=server test=7 format=csv samples={rows} dropped=0\n"), &half);
    let done = collector.wait_timeout(Duration::from_secs(60));
    eprintln!("{}\n{}", done.stdout.trim(), done.stderr.trim());
    assert_eq!(done.code(), Some(1), "an incomplete upload must make collect fail:\n{}", done.describe());
    let stored = out.join("client-127.0.0.1-test1.csv");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), body, "the stored log differs from what was sent");
    assert!(done.stdout.contains(&format!("client test 1: {rows} samples")), "{}", done.stdout);
    assert!(done.stderr.contains("incomplete log") && done.stderr.contains("server test 7"), "{}", done.stderr);
}

/// On a TAP (root): a server writes one log per test (`srv.test1.csv`, `srv.test2.csv`) as each
/// test ends, labelled with the stream ids; a client against stock `iperf3 -s` writes its log
/// (JSON Lines here) when its test ends.
#[test]
fn tap_server_and_client_write_logs() {
    if !require_root_or_skip() {
        return;
    }
    let _serial = data_lock();
    let dir = scratch("tap");
    let srv_log = dir.join("srv.csv");
    let ns = tap_topology();
    let extra = ["--flowlog", srv_log.to_str().unwrap()];
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &extra, Duration::from_secs(120));
    for (test, args) in [(1, &["-t", "1"][..]), (2, &["-t", "1", "-R", "-P", "2"][..])] {
        let mut argv = vec!["iperf3", "-c", UNIPERF_IP];
        argv.extend_from_slice(args);
        ns.run("iperf3-client", &argv, Duration::from_secs(60)).expect_success();
        let path = dir.join(format!("srv.test{test}.csv"));
        let name = path.display().to_string();
        assert!(
            wait_for_line_in(&server, &format!("written to {name}")),
            "no log for test {test}:\n{}",
            server.describe()
        );
        let samples = read_samples(&path);
        let per_stream = rows_per_stream(&samples);
        eprintln!("{name}: {} rows, per stream {per_stream:?}", samples.len());
        assert!(per_stream.get(&1).is_some_and(|&n| n > 10), "{name}: {per_stream:?}");
        if test == 2 {
            assert!(per_stream.contains_key(&3), "{name}: no stream 3 in a -P 2 test: {per_stream:?}");
            let fin = samples.iter().find(|s| s.stream == 1 && s.event == Event::Final).unwrap();
            assert!(fin.bytes_acked > 0 && samples.iter().any(|s| s.rtt_us.is_some()), "{fin:?}");
        }
    }
    server.stop();
    drop(ns);

    let ns = tap_topology();
    let mut stock = start_iperf3_server(&ns, &["-1", "-B", KERNEL_IP], Duration::from_secs(60));
    let cl_log = dir.join("client.jsonl");
    let addr = format!("{UNIPERF_IP}{PREFIX_LEN}");
    let argv = [
        UNIPERF,
        "-c",
        KERNEL_IP,
        "--tap",
        "tap0",
        "--ip",
        &addr,
        "-t",
        "1",
        "--flowlog",
        cl_log.to_str().unwrap(),
        "--flowlog-format",
        "jsonl",
    ];
    ns.run("uniperf-client", &argv, Duration::from_secs(60)).expect_success();
    stock.wait_timeout(Duration::from_secs(20));
    let samples = read_samples(&cl_log);
    assert!(rows_per_stream(&samples).get(&1).is_some_and(|&n| n > 10), "{:?}", rows_per_stream(&samples));
    eprintln!("{}: {} rows", cl_log.display(), samples.len());
}

/// Polls a process's stderr for a line (the server writes its log after the client is done).
fn wait_for_line_in(p: &Proc, needle: &str) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        if p.stderr().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
