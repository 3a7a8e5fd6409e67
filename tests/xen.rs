//! The image under real Xen: Debian's Xen 4.17 with a Linux PV dom0, booted once under QEMU TCG
//! by `scripts/xen/rig.sh`, where `tests/xen_cases.sh` runs every case in dom0 with the real
//! toolstack (`xl.sh` → `xl create -c`, xen-netback on bridge xenbr0 198.18.0.1/24, stock
//! iperf3 3.12) and sends back what each printed. The tests below share that one boot (the first
//! to run boots the rig, the rest wait for it) and each judges one case:
//!
//! * `readnotes` shows the image's PHYS32_ENTRY note; the generated xl configs pass `xl create -n`;
//! * stock `iperf3 -c` in dom0 against the server domU: text, -J, -R, --bidir, -P 4, with the
//!   client's and the domU's `-J` documents cross-checked as in tests/image.rs;
//! * a client domU against the server domU, and a client domU against stock `iperf3 -s` in dom0:
//!   exit status through `xl.sh`, the `-J` document over the PV console;
//! * the server domU's flow logs, shipped over netfront to `uniperf collect` in dom0;
//! * apart from the rig (after it, never beside it): the image as Xen's PVH dom0
//!   (`scripts/xen/pvh-dom0.sh`), memory map from XENMEM_memory_map, a clear error for the
//!   network it cannot have there.
//!
//! Needs root, `scripts/xen/fetch.sh` (scripts/setup.sh runs it; this test runs it too, it is
//! idempotent) and a built image; skipped loudly without them, never under CI=true. The rig's
//! files stay in `$TMPDIR/uniperf-xen-test` (com1.log has Xen's and dom0's console).
//! Run by hand: `flock /tmp/uniperf-qemu.lock cargo test --test xen -- --nocapture`; with
//! `UNIPERF_XEN_RIG_OUT=DIR` the tests judge the files of an earlier rig run in DIR instead.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use common::*;
use netstack::flowlog::parse_log;
use serde_json::Value;

const RIG_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/xen/rig.sh");
const FETCH_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/xen/fetch.sh");
const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xen_cases.sh");
const PVH_DOM0_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/xen/pvh-dom0.sh");
/// rig.sh's hard limit for the whole boot. On an idle 2-core machine the run takes about two
/// minutes; a loaded one stretches TCG several times over.
const RIG_TIMEOUT_SECS: u64 = 1200;
/// The same for the no-domU subset (Xen and dom0's toolstack, readnotes, xl create -n).
const RIG_TIMEOUT_CI_SECS: u64 = 600;
// Every case runs by default (CI too). UNIPERF_XEN_CASES=ci runs the short subset with no domU
// (readnotes, xl create -n, the boot itself) for a quick look at the rig.

/// Every case (the default), or only the no-domU subset (UNIPERF_XEN_CASES=ci).
fn all_cases() -> bool {
    std::env::var("UNIPERF_XEN_CASES").map_or(true, |v| v != "ci")
}
/// Tests reaching the server domU (five stock clients, the client domU and four reference
/// runs), one flow log each.
const SERVER_TESTS: usize = 10;

/// One boot of the rig: where its files are and how it ended.
struct RigRun {
    out: PathBuf,
    /// rig.sh's exit status (the cases script's; 124 timeout, 125 rig failure).
    status: Option<i32>,
    /// rig.sh's own report (progress, marks, file list).
    report: String,
}

impl RigRun {
    fn read(&self, name: &str) -> Option<String> {
        fs::read(self.out.join(name)).ok().map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
    }

    /// A file the cases script must have sent; its absence fails the test with the rig's story.
    #[track_caller]
    fn file(&self, name: &str) -> String {
        self.read(name).unwrap_or_else(|| panic!("the rig sent no {name}\n{}", self.context()))
    }

    /// The exit status a case wrote to NAME.status.
    #[track_caller]
    fn status_of(&self, case: &str) -> i32 {
        let text = self.file(&format!("{case}.status"));
        text.trim().parse().unwrap_or_else(|_| panic!("{case}.status is not a number: {text:?}"))
    }

    /// What to show when a case fails: rig.sh's report, dom0's test log, Xen's last lines.
    fn context(&self) -> String {
        let tail = |name: &str, n: usize| {
            let text = self.read(name).unwrap_or_default();
            // Shipped files' base64 says nothing to a reader.
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("@@RIG-B ")).collect();
            lines[lines.len().saturating_sub(n)..].join("\n    ")
        };
        format!(
            "--- rig.sh (status {:?}, files in {}):\n    {}\n--- dom0 test.log (tail):\n    {}\n--- COM1 (tail):\n    {}",
            self.status,
            self.out.display(),
            self.report.trim_end().replace('\n', "\n    "),
            tail("test.log", 30),
            tail("com1.log", 30),
        )
    }

    /// (name, host seconds since QEMU started) of each dom0 mark, in order.
    fn marks(&self) -> Vec<(String, f64)> {
        self.read("marks")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?.to_string();
                let _dom0 = w.next()?;
                Some((name, w.next()?.parse().ok()?))
            })
            .collect()
    }

    fn mark(&self, name: &str) -> Option<f64> {
        self.marks().into_iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// CI must run this; elsewhere a missing piece skips it loudly.
fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Xen rig cannot run: {why}");
    }
    static LOUD: Once = Once::new();
    LOUD.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n**************************************************************************\n\
             *** SKIPPED Xen tests: {why}\n\
             **************************************************************************"
        );
    });
}

/// The release build of uniperf beside the test build, if there is one (smaller and faster in
/// dom0's initramfs than the debug one), else the binary under test.
fn uniperf_for_dom0() -> PathBuf {
    let test_bin = PathBuf::from(UNIPERF);
    let release = test_bin.parent().and_then(Path::parent).map(|t| t.join("release").join("uniperf"));
    match release {
        Some(r) if r.is_file() => r,
        _ => test_bin,
    }
}

/// The shared boot: the first caller runs it, the others wait and get the same result. `None`
/// when the tests are skipped.
fn rig() -> Option<&'static RigRun> {
    static RIG: OnceLock<Result<Option<RigRun>, String>> = OnceLock::new();
    match RIG.get_or_init(boot) {
        Ok(run) => run.as_ref(),
        Err(e) => panic!("{e}"),
    }
}

/// The shared boot, for a case with a domU: `None` (and a line saying so) under
/// UNIPERF_XEN_CASES=ci, which boots none.
fn domu_rig() -> Option<&'static RigRun> {
    if !all_cases() {
        eprintln!("xen: UNIPERF_XEN_CASES=ci boots no domU; this case is not run");
        return None;
    }
    rig()
}

fn boot() -> Result<Option<RigRun>, String> {
    // Judge the files of an earlier boot again (no root or QEMU needed): UNIPERF_XEN_RIG_OUT=DIR.
    if let Some(dir) = std::env::var_os("UNIPERF_XEN_RIG_OUT") {
        let out = PathBuf::from(dir);
        let status = fs::read_to_string(out.join("status")).ok().and_then(|s| s.trim().parse().ok());
        let report = format!("reused the rig run in {} (UNIPERF_XEN_RIG_OUT)", out.display());
        return Ok(Some(RigRun { out, status, report }));
    }
    if !require_root_or_skip() {
        return Ok(None);
    }
    let image = image_path();
    if !image.is_file() {
        skip_or_fail(&format!("no image at {} (scripts/build-image.sh)", image.display()));
        return Ok(None);
    }
    let fetch = Proc::spawn("xen-fetch", &[FETCH_SH.to_string()], Duration::from_secs(1800)).wait();
    if !fetch.success() {
        skip_or_fail(&format!("scripts/xen/fetch.sh failed:\n{}", fetch.describe()));
        return Ok(None);
    }
    let out = std::env::temp_dir().join("uniperf-xen-test");
    let cases_file = std::env::temp_dir().join("uniperf-xen-cases");
    let (cases, timeout) = if all_cases() { ("all", RIG_TIMEOUT_SECS) } else { ("ci", RIG_TIMEOUT_CI_SECS) };
    fs::write(&cases_file, cases).map_err(|e| format!("cannot write {}: {e}", cases_file.display()))?;
    let cases_arg = format!("{}:cases", cases_file.display());
    let argv: Vec<String> = [
        RIG_SH,
        "--script",
        CASES,
        "--image",
        image.to_str().expect("image path is UTF-8"),
        "--uniperf",
        uniperf_for_dom0().to_str().expect("binary path is UTF-8"),
        "--out",
        out.to_str().expect("temp dir is UTF-8"),
        "--file",
        &cases_arg,
        "--linux-domu",
        "--timeout",
        &timeout.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let done = Proc::spawn("xen-rig", &argv, Duration::from_secs(timeout + 120)).wait();
    let run = RigRun { out, status: done.code(), report: done.stderr.clone() };
    eprintln!("xen rig: {}", run.report.trim_end().replace('\n', "\n  "));
    if !matches!(run.status, Some(0..=123)) {
        return Err(format!("the Xen rig failed (rig.sh status {:?})\n{}", run.status, run.context()));
    }
    Ok(Some(run))
}

// ---------------------------------------------------------------------------------------------
// The cases

/// xen-utils' readnotes finds the PVH entry note (type 18) Xen's domain builder boots from.
#[test]
fn readnotes_shows_the_pvh_entry() {
    let Some(rig) = rig() else { return };
    let text = rig.file("readnotes.txt");
    assert_eq!(rig.status_of("readnotes"), 0, "readnotes failed:\n{text}");
    let line = text.lines().find(|l| l.trim_start().starts_with("PHYS32_ENTRY")).unwrap_or_else(|| {
        panic!("readnotes shows no PHYS32_ENTRY note:\n{text}");
    });
    let addr = line.split_whitespace().nth(1).unwrap_or("");
    let value = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap_or(0);
    assert!(value != 0, "PHYS32_ENTRY is not a nonzero address: {line}");
    eprintln!("readnotes: {}", line.trim());
}

/// The image as Xen's PVH dom0 (`scripts/xen/pvh-dom0.sh`, its own QEMU, after the rig's boot):
/// start info v0 without a memory map, so the map comes from XENMEM_memory_map; it knows it is
/// dom0, prints through Xen's debug port, and stops with status 1 and a clear reason instead of
/// waiting for a xenstore and netback a dom0 does not have.
#[test]
fn image_boots_as_pvh_dom0() {
    // After the rig, so that two TCG guests never share the two cores.
    if rig().is_none() {
        return;
    }
    if std::env::var_os("UNIPERF_XEN_RIG_OUT").is_some() {
        eprintln!("xen: UNIPERF_XEN_RIG_OUT judges an earlier rig run; the PVH dom0 boot is not run");
        return;
    }
    let out = std::env::temp_dir().join("uniperf-xen-pvh-dom0.log");
    let argv = [PVH_DOM0_SH, "--image", image_path().to_str().expect("image path is UTF-8"), "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().expect("temp dir is UTF-8").to_string()])
        .collect::<Vec<_>>();
    let done = Proc::spawn("pvh-dom0", &argv, Duration::from_secs(300)).wait();
    let console = fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        done.code(),
        Some(1),
        "the dom0 image's status (1: no network):
{}",
        done.describe()
    );
    for needle in [
        "(d0) uniperf: boot: PVH, hvm_start_info v0",
        "(d0) uniperf: xen: version 4.17, PVH dom0",
        "(d0) uniperf: console: Xen's debug port 0xE9",
        " map entries (from XENMEM_memory_map), heap ",
        "(d0) uniperf: error - network device: running as Xen's dom0: there is no netback here",
        "(d0) uniperf: exit status 1",
    ] {
        assert!(console.contains(needle), "the dom0 console lacks {needle:?}:\n{console}");
    }
    let memory = console.lines().find(|l| l.contains("(d0) uniperf: memory:")).unwrap_or_default();
    eprintln!("xen: PVH dom0: {}", memory.trim());
}

/// scripts/xl.sh --dry-run: xl-config.sh's server and client configs pass `xl create -n`.
#[test]
fn generated_xl_configs_parse() {
    let Some(rig) = rig() else { return };
    for role in ["server", "client"] {
        let text = rig.file(&format!("dryrun-{role}.txt"));
        assert_eq!(rig.status_of(&format!("dryrun-{role}")), 0, "{role} config rejected:\n{text}");
        for needle in ["type = \"pvh\"", "kernel = ", "vif = [", "xl create -n accepts"] {
            assert!(text.contains(needle), "{role}: the dry run's output lacks {needle:?}:\n{text}");
        }
    }
}

/// The server domU's console: its `-J` documents, one per test it served.
#[track_caller]
fn server_documents(rig: &RigRun) -> Vec<Value> {
    if let Some(why) = rig.read("server.not-ready") {
        panic!(
            "{}\n--- server domU console:\n{}\n--- xl.sh:\n{}\n{}",
            why.trim(),
            rig.read("server.console").unwrap_or_default(),
            rig.read("server.xlsh").unwrap_or_default(),
            rig.context()
        );
    }
    json_documents(&rig.file("server.console"))
}

/// The server domU's document of the test whose client document is `client`.
#[track_caller]
fn server_document_for<'a>(servers: &'a [Value], client: &Value, what: &str) -> &'a Value {
    let cookie = json_at(client, &["start", "cookie"]);
    servers.iter().find(|s| s["start"]["cookie"] == *cookie).unwrap_or_else(|| {
        panic!("{what}: the server domU printed no document with cookie {cookie} ({} documents)", servers.len())
    })
}

/// Stock `iperf3 -c 198.18.0.2 -J ARGS` in dom0 against the server domU.
#[track_caller]
fn stock_case(name: &str, dir: Direction, streams: usize) {
    let Some(rig) = domu_rig() else { return };
    let out = rig.file(&format!("stock-{name}.out"));
    let status = rig.status_of(&format!("stock-{name}"));
    let client: Result<Value, _> = serde_json::from_str(&out);
    let ok = status == 0 && client.as_ref().is_ok_and(|v| v.get("error").is_none());
    if !ok {
        panic!(
            "stock iperf3 ({name}) exited {status}:\n{out}\n{}\n--- server domU console:\n{}\n{}",
            rig.read(&format!("stock-{name}.err")).unwrap_or_default(),
            rig.read("server.console").unwrap_or_default(),
            rig.context()
        );
    }
    let client = client.expect("checked");
    let servers = server_documents(rig);
    let server = server_document_for(&servers, &client, name);
    let (fwd, rev) = assert_pair_consistent(&client, server, dir, streams, false);
    if dir == Direction::Reverse {
        assert_sender_tcp_info("server domU (-R)", server);
    }
    eprintln!(
        "xen: iperf3 -c (dom0) → server domU {name}: client→server {fwd} B, server→client {rev} B; {:.3} Gbit/s",
        gbps(sum_received_bps(&client))
    );
}

/// The server domU booted under `xl create` with its vif: Xen found (hypercall page, PV
/// console), netfront connected to netback (xenstore handshake, grants, rings), and the server
/// listening on its address.
#[test]
fn server_domu_boots_and_connects_netfront() {
    let Some(rig) = domu_rig() else { return };
    let console = rig.read("server.console").unwrap_or_default();
    for needle in [
        "uniperf: xen: version 4.17, PVH domU",
        "uniperf: nic: Xen netfront",
        // netback offers feature-sg and feature-gso-tcpv4.
        "checksum offload both ways, TSO on (frames up to 65535 B",
        "receive GSO on (feature-sg, feature-gso-tcpv4)",
        // Idle halts, woken by the event-channel upcall (NIC events, VIRQ_TIMER deadlines).
        "uniperf: idle: Xen event-channel upcall on vector 0x32",
        "uniperf: ready: listening on 198.18.0.2:5201",
    ] {
        assert!(
            console.contains(needle),
            "the server domU's console lacks {needle:?}:\n{console}\n--- xl.sh:\n{}\n{}",
            rig.read("server.xlsh").unwrap_or_default(),
            rig.context()
        );
    }
    let nic = console.lines().find(|l| l.contains("uniperf: nic: Xen netfront")).unwrap_or_default();
    eprintln!("xen: {}", nic.trim());
}

/// Plain `iperf3 -c` (text) against the server domU.
#[test]
fn stock_client_text() {
    let Some(rig) = domu_rig() else { return };
    let out = rig.file("stock-text.out");
    assert_eq!(rig.status_of("stock-text"), 0, "stock iperf3 (text) failed:\n{out}\n{}", rig.context());
    for needle in ["Connecting to host 198.18.0.2", "sender", "receiver", "iperf Done."] {
        assert!(out.contains(needle), "iperf3's text output lacks {needle:?}:\n{out}");
    }
}

#[test]
fn stock_client_json() {
    stock_case("json", Direction::Forward, 1);
}

#[test]
fn stock_client_reverse() {
    stock_case("reverse", Direction::Reverse, 1);
}

#[test]
fn stock_client_bidir() {
    stock_case("bidir", Direction::Bidir, 1);
}

#[test]
fn stock_client_parallel4() {
    stock_case("parallel4", Direction::Forward, 4);
}

/// A client domU's run: exit status 0 through xl.sh, its `-J` document from the PV console.
#[track_caller]
fn client_domu_document(rig: &RigRun, case: &str) -> Value {
    let console = rig.file(&format!("{case}.console"));
    let status = rig.status_of(case);
    if status != 0 {
        panic!(
            "{case}: xl.sh exited {status} (the client domU's status, 124 timeout, 125 no status line):\n\
             --- console:\n{console}\n--- xl.sh:\n{}\n{}",
            rig.read(&format!("{case}.xlsh")).unwrap_or_default(),
            rig.context()
        );
    }
    let done =
        console_json(&console).unwrap_or_else(|e| panic!("{case}: no -J document on the console ({e}):\n{console}"));
    if let Some(err) = done.get("error") {
        panic!("{case}: the client domU's document carries an error: {err}\n{console}");
    }
    done
}

/// The client domU (`-c 198.18.0.1 -J`) against stock `iperf3 -s -1 -J` in dom0.
#[test]
fn client_domu_against_stock_server() {
    let Some(rig) = domu_rig() else { return };
    let client = client_domu_document(rig, "client");
    let text = rig.file("stocksrv.json");
    let server: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stock iperf3 -s printed no JSON document ({e}):\n{text}\n{}",
            rig.read("stocksrv.err").unwrap_or_default()
        )
    });
    assert_eq!(rig.status_of("stocksrv"), 0, "stock iperf3 -s -1 failed:\n{text}");
    let (fwd, _) = assert_pair_consistent(&client, &server, Direction::Forward, 1, false);
    assert_sender_tcp_info("client domU", &client);
    eprintln!("xen: client domU → iperf3 -s (dom0): {fwd} B; {:.3} Gbit/s", gbps(sum_received_bps(&client)));
}

/// A client domU and the server domU on the same Xen and bridge, testing each other.
#[test]
fn client_domu_against_server_domu() {
    let Some(rig) = domu_rig() else { return };
    let client = client_domu_document(rig, "pair");
    let servers = server_documents(rig);
    let server = server_document_for(&servers, &client, "client domU");
    let (fwd, _) = assert_pair_consistent(&client, server, Direction::Forward, 1, false);
    eprintln!("xen: client domU → server domU: {fwd} B; {:.3} Gbit/s", gbps(sum_received_bps(&client)));
    // Both domUs offload: the sender's data went out as TSO frames with blank checksums, and
    // its receive side took the server's ACKs (checksum blank, from the other netfront) as
    // vouched for by netback.
    let console = rig.file("pair.console");
    let nic = console
        .lines()
        .find(|l| l.contains("uniperf: nic:") && l.contains("rx frames"))
        .unwrap_or_else(|| panic!("the client domU (-V) printed no netfront counters:\n{console}"));
    eprintln!("xen: client domU {}", nic.trim());
    let count = |after: &str| -> u64 {
        let tail = nic.split(after).nth(1).unwrap_or_else(|| panic!("no {after:?} in {nic:?}"));
        tail.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse().unwrap_or(0)
    };
    assert!(count("TSO making") > 0 && nic.contains(" TSO making "), "no TSO frames: {nic}");
    assert!(count("of several slots, ") > 0, "no checksums vouched for: {nic}");
    assert!(nic.contains(" 0 bad checksums"), "bad checksums: {nic}");
}

/// The server domU shipped each test's flow log over netfront to `uniperf collect` in dom0.
#[test]
fn server_domu_ships_flow_logs() {
    let Some(rig) = domu_rig() else { return };
    let collect =
        format!("{}{}", rig.read("collect.stdout").unwrap_or_default(), rig.read("collect.stderr").unwrap_or_default());
    let status = rig.status_of("collect");
    let mut logs: Vec<String> = fs::read_dir(&rig.out)
        .expect("rig output directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("flowlog-"))
        .collect();
    logs.sort();
    assert!(
        status == 0 && logs.len() == SERVER_TESTS,
        "uniperf collect exited {status} with {} of {SERVER_TESTS} logs ({logs:?}):\n{collect}\n{}",
        logs.len(),
        rig.context()
    );
    for name in &logs {
        let text = rig.file(name);
        let samples = parse_log(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!samples.is_empty(), "{name}: no samples");
        eprintln!("xen: {name}: {} samples", samples.len());
    }
}

/// The boot itself: the cases script ran to its end, and how long each stretch took.
#[test]
fn rig_boot_and_timings() {
    let Some(rig) = rig() else { return };
    assert_eq!(rig.status, Some(0), "the cases script did not finish cleanly\n{}", rig.context());
    let marks = rig.marks();
    let at = |n: &str| rig.mark(n).map_or("-".to_string(), |t| format!("{t:.1} s"));
    let span = |a: &str, b: &str| match (rig.mark(a), rig.mark(b)) {
        (Some(a), Some(b)) => format!("{:.1} s", b - a),
        _ => "-".to_string(),
    };
    eprintln!(
        "xen rig timings (host seconds since QEMU start): dom0 /init {}, toolstack {}, bridge ready {}, \
         powered off {}; server domU xl create → listening {}; client domU run (xl create → exit) {}",
        at("init"),
        at("toolstack"),
        at("ready"),
        at("poweroff"),
        span("server-create", "server-ready"),
        span("client-create", "client-done"),
    );
    let image = fs::metadata(image_path()).map(|m| m.len()).unwrap_or(0);
    eprintln!("xen: image {image} B; {} marks: {marks:?}", marks.len());
}

/// The server domU against a Linux PV domU running stock `iperf3 -s` on the same Xen and
/// bridge, each measured by dom0's stock iperf3 the same four ways (-P 1 and 4, both
/// directions): every run must complete with data; the rates and their ratios are printed
/// (absolute figures mean nothing under nested TCG, ratios from one boot are the report).
#[test]
fn linux_domu_reference() {
    let Some(rig) = domu_rig() else { return };
    assert_eq!(
        rig.status_of("linux"),
        0,
        "the Linux reference domU did not come up:\n{}\n--- its console:\n{}\n{}",
        rig.read("linux.out").unwrap_or_default(),
        rig.read("linux.console").unwrap_or_default(),
        rig.context()
    );
    let rate = |who: &str, run: &str| -> f64 {
        let name = format!("ref-{who}-{run}");
        let text = rig.file(&format!("{name}.out"));
        assert_eq!(
            rig.status_of(&name),
            0,
            "{name}: iperf3 failed:\n{text}\n{}\n{}",
            rig.read(&format!("{name}.err")).unwrap_or_default(),
            rig.context()
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON ({e}):\n{text}"));
        let end = &v["end"];
        let bytes = end["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
        // dom0's clock: the sender's seconds forward, the receiver's (dom0 itself) with -R.
        let secs = if run.ends_with('r') { &end["sum_received"]["seconds"] } else { &end["sum_sent"]["seconds"] };
        let secs = secs.as_f64().unwrap_or(0.0);
        assert!(bytes > 0.0 && secs > 0.0, "{name}: {bytes} B in {secs} s:\n{text}");
        bytes * 8.0 / secs
    };
    let mut table = String::from("xen reference (Mbit/s, dom0's stock iperf3 -c; same boot):\n");
    table.push_str("  run            uniperf domU   Linux domU   ratio\n");
    for (run, what) in [("p1", "-P 1"), ("p1r", "-P 1 -R"), ("p4", "-P 4"), ("p4r", "-P 4 -R")] {
        let (u, l) = (rate("uniperf", run), rate("linux", run));
        table.push_str(&format!("  {what:<12} {:>12.1} {:>12.1} {:>7.2}\n", u / 1e6, l / 1e6, u / l));
    }
    eprintln!("{table}");
}
