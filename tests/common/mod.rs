//! Shared harness for uniperf's end-to-end tests: network namespaces and the TAP / bridge / veth
//! topologies built in them, child processes that always have a deadline and are killed by PID,
//! readiness polling, helpers that read iperf3-shaped `-J` output, and the unikernel image
//! booted under QEMU (`scripts/qemu.sh`) on a TAP of those topologies.
//!
//! Everything that sends packets runs inside namespaces made here, with addresses from
//! 198.18.0.0/15 only; each namespace is named `up-<pid>-<n>` and deleted on drop.
#![allow(dead_code, unused_macros)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub mod iperf2;
pub mod udp;

pub const UNIPERF: &str = env!("CARGO_BIN_EXE_uniperf");

/// Kernel side of a TAP (or the bridge) in the single-namespace topologies.
pub const KERNEL_IP: &str = "198.18.0.1";
/// uniperf's smoltcp address on tap0 (the server in uniperf↔uniperf runs).
pub const UNIPERF_IP: &str = "198.18.0.2";
/// uniperf's smoltcp address on tap1 (the client in uniperf↔uniperf runs).
pub const UNIPERF_PEER_IP: &str = "198.18.0.3";
/// Prefix length of every address above.
pub const PREFIX_LEN: &str = "/24";
/// Veth topology: the namespace that runs the server.
pub const VETH_SERVER_IP: &str = "198.18.1.1";
/// Veth topology: the namespace that runs the client.
pub const VETH_CLIENT_IP: &str = "198.18.1.2";
/// iperf3's default port.
pub const PORT: u16 = 5201;

/// How long uniperf gets between start and its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default lifetime of a helper command (`ip …`, `ss …`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default lifetime of a spawned process that nobody gave a deadline.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// What uniperf prints on stderr once its server is listening on `ip`.
pub fn ready_line(ip: &str, port: u16) -> String {
    format!("uniperf: ready: listening on {ip}:{port}")
}

// ---------------------------------------------------------------------------------------------
// Root check and serialisation

/// True when the tests that need network namespaces and TAP devices can run. Without root they
/// are skipped loudly, except under CI (`CI=true`), where skipping would hide a broken setup.
pub fn require_root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but not running as root: the network-namespace/TAP tests must run in CI");
    }
    // Straight to stderr, past the test harness's output capture, once per test binary.
    static LOUD: Once = Once::new();
    LOUD.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n**************************************************************************\n\
             *** SKIPPED: needs root for network namespaces/TAP (run as root to test) ***\n\
             **************************************************************************"
        );
    });
    false
}

fn is_root() -> bool {
    // std has no geteuid; /proc/self/status has "Uid: real effective saved fs".
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .is_some_and(|euid| euid == "0")
}

static DATA_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one test binary that move data: the machine has two cores, and two
/// throughput runs at once would starve each other (and the busy-polling uniperf). A test that
/// failed while holding the lock does not poison it for the others.
pub fn data_lock() -> MutexGuard<'static, ()> {
    DATA_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Scratch files

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Scratch file for a spawned process's output: `$TMPDIR/uniperf-test-<pid>-<n>-<label>.<ext>`.
fn scratch_file(n: u32, label: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("uniperf-test-{}-{n:03}-{label}.{ext}", std::process::id()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].iter().map(|l| format!("    {l}\n")).collect()
}

// ---------------------------------------------------------------------------------------------
// Running commands with a deadline

/// The result of a process that has exited.
#[derive(Debug)]
pub struct Finished {
    pub label: String,
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or None if a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// A readable account of the run, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}] `{}` exited with {} after {:.2} s\n  stdout (tail):\n{}  stderr (tail):\n{}",
            self.label,
            self.command,
            self.status,
            self.elapsed.as_secs_f64(),
            tail(&self.stdout, 40),
            tail(&self.stderr, 40),
        )
    }

    /// Panics with the run's output unless it exited 0.
    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        assert!(self.success(), "expected success:\n{}", self.describe());
        self
    }

    /// The stdout parsed as one JSON document (iperf3 `-J`).
    #[track_caller]
    pub fn json(&self) -> Value {
        match serde_json::from_str(&self.stdout) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not one JSON document ({e}):\n{}", self.describe()),
        }
    }

    /// Exit 0 and a `-J` document with no "error" key; returns the document.
    #[track_caller]
    pub fn expect_json_success(&self) -> Value {
        self.expect_success();
        let v = self.json();
        if let Some(err) = v.get("error") {
            panic!("-J output carries an error: {err}\n{}", self.describe());
        }
        v
    }
}

/// A spawned process. It has a deadline; waiting past it kills the process and fails the test.
/// Dropping the guard kills the process (by PID) if it is still running.
pub struct Proc {
    label: String,
    command: String,
    child: Option<Child>,
    pid: u32,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    started: Instant,
    deadline: Instant,
    finished: Option<ExitStatus>,
}

impl Proc {
    /// Starts `argv` with stdout and stderr going to scratch files.
    pub fn spawn(label: &str, argv: &[String], deadline: Duration) -> Proc {
        let n = unique();
        let stdout_path = scratch_file(n, label, "stdout");
        let stderr_path = scratch_file(n, label, "stderr");
        let stdout = File::create(&stdout_path).expect("create stdout file");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        let command = argv.join(" ");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("[{label}] cannot start `{command}`: {e}"));
        let started = Instant::now();
        Proc {
            label: label.to_string(),
            command,
            pid: child.id(),
            child: Some(child),
            stdout_path,
            stderr_path,
            started,
            deadline: started + deadline,
            finished: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Still running? (Reaps it if it has exited.)
    pub fn is_running(&mut self) -> bool {
        if self.finished.is_some() {
            return false;
        }
        let child = self.child.as_mut().expect("child present until finished");
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                self.finished = Some(status);
                false
            }
            None => true,
        }
    }

    fn snapshot(&self, status: ExitStatus) -> Finished {
        Finished {
            label: self.label.clone(),
            command: self.command.clone(),
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            elapsed: self.started.elapsed(),
        }
    }

    /// A readable account of a process that may still run, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "[{}] `{}` (pid {}, {:.2} s since start)\n  stdout (tail):\n{}  stderr (tail):\n{}",
            self.label,
            self.command,
            self.pid,
            self.started.elapsed().as_secs_f64(),
            tail(&self.stdout(), 40),
            tail(&self.stderr(), 40),
        )
    }

    /// Waits until it exits, at most until its deadline; past the deadline it is killed and the
    /// test fails.
    #[track_caller]
    pub fn wait(&mut self) -> Finished {
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.wait_timeout(left)
    }

    /// Waits at most `timeout` (and never past the deadline); on expiry kills it and fails.
    #[track_caller]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Finished {
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            if !self.is_running() {
                return self.snapshot(self.finished.expect("finished"));
            }
            if Instant::now() >= until {
                let account = self.describe();
                self.kill();
                panic!("process did not exit within {:.1} s; killed it:\n{account}", timeout.as_secs_f64());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout`; on expiry kills it and returns `Err` with what it had printed
    /// (for callers that retry rather than fail).
    pub fn wait_or_kill(&mut self, timeout: Duration) -> Result<Finished, Finished> {
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            if !self.is_running() {
                return Ok(self.snapshot(self.finished.expect("finished")));
            }
            if Instant::now() >= until {
                self.kill();
                return Err(self.snapshot(self.finished.expect("killed")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls its stderr for a line containing `needle`; fails if it exits first or the timeout
    /// passes.
    #[track_caller]
    pub fn wait_for_stderr_line(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_line_on(false, needle, timeout);
    }

    /// Polls its stdout for a line containing `needle`; fails if it exits first or the timeout
    /// passes.
    #[track_caller]
    pub fn wait_for_stdout_line(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_line_on(true, needle, timeout);
    }

    #[track_caller]
    fn wait_for_line_on(&mut self, stdout: bool, needle: &str, timeout: Duration) {
        let (name, path) = if stdout { ("stdout", &self.stdout_path) } else { ("stderr", &self.stderr_path) };
        let path = path.clone();
        let until = Instant::now() + timeout;
        loop {
            if read_lossy(&path).lines().any(|l| l.contains(needle)) {
                return;
            }
            if !self.is_running() {
                // It may have printed the line just before exiting.
                if read_lossy(&path).lines().any(|l| l.contains(needle)) {
                    return;
                }
                panic!(
                    "process exited ({}) before printing {needle:?} on {name}:\n{}",
                    self.finished.expect("finished"),
                    self.describe()
                );
            }
            if Instant::now() >= until {
                panic!(
                    "{needle:?} did not appear on {name} within {:.1} s:\n{}",
                    timeout.as_secs_f64(),
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks it to stop (SIGTERM), waits up to 3 s, then kills it (SIGKILL). Returns the result.
    pub fn stop(&mut self) -> Finished {
        if self.is_running() {
            // By PID, through kill(1): std has no way to send anything but SIGKILL.
            let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).stderr(Stdio::null()).status();
            let until = Instant::now() + Duration::from_secs(3);
            while self.is_running() && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            self.kill();
        }
        self.snapshot(self.finished.expect("finished"))
    }

    /// SIGKILL by PID and reap.
    pub fn kill(&mut self) {
        if self.finished.is_some() {
            return;
        }
        let child = self.child.as_mut().expect("child present until finished");
        let _ = child.kill();
        if let Ok(status) = child.wait() {
            self.finished = Some(status);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "[{}] output kept in {} and {}",
                self.label,
                self.stdout_path.display(),
                self.stderr_path.display()
            );
        } else {
            let _ = fs::remove_file(&self.stdout_path);
            let _ = fs::remove_file(&self.stderr_path);
        }
    }
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn to_argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs a host command (e.g. `ip netns add`) to completion within `timeout`.
#[track_caller]
pub fn run_host(args: &[&str], timeout: Duration) -> Finished {
    Proc::spawn("host", &to_argv(args), timeout).wait()
}

/// Runs a host command that must succeed.
#[track_caller]
pub fn host(args: &[&str]) -> Finished {
    let done = run_host(args, COMMAND_TIMEOUT);
    done.expect_success();
    done
}

/// Polls `path` until a line contains `needle`; false on timeout.
pub fn wait_for_line(path: &Path, needle: &str, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if read_lossy(path).lines().any(|l| l.contains(needle)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// A network namespace made by this test process, deleted on drop. Declare it before the
/// processes that run in it, so they are dropped (killed) first.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace `up-<pid>-<n>` with loopback up.
    pub fn new() -> Netns {
        let name = format!("up-{}-{}", std::process::id(), unique());
        host(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS…`, which must succeed.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        host(&argv);
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        // `ip netns exec` execs the command, so the spawned PID is the command's own.
        let mut argv = to_argv(&["ip", "netns", "exec", &self.name]);
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    /// Runs `args` inside the namespace within `timeout` (killed and failed past it), whatever
    /// its exit status.
    #[track_caller]
    pub fn run(&self, label: &str, args: &[&str], timeout: Duration) -> Finished {
        Proc::spawn(label, &self.argv(args), timeout).wait()
    }

    /// Runs `args` inside the namespace; it must succeed within 30 s.
    #[track_caller]
    pub fn exec(&self, args: &[&str]) -> Finished {
        let done = self.run("exec", args, COMMAND_TIMEOUT);
        done.expect_success();
        done
    }

    /// Starts `args` inside the namespace with the given lifetime.
    pub fn spawn(&self, label: &str, args: &[&str], deadline: Duration) -> Proc {
        Proc::spawn(label, &self.argv(args), deadline)
    }

    /// Waits until a kernel-side TCP listener on `port` exists in the namespace.
    #[track_caller]
    pub fn wait_for_listener(&self, port: u16, timeout: Duration) {
        let until = Instant::now() + timeout;
        let filter = format!("sport = :{port}");
        loop {
            let done = self.run("ss", &["ss", "-Htln", &filter], COMMAND_TIMEOUT);
            if done.success() && !done.stdout.trim().is_empty() {
                return;
            }
            assert!(
                Instant::now() < until,
                "no TCP listener on port {port} in {} after {:.1} s",
                self.name,
                timeout.as_secs_f64()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds a persistent TAP `tap` to the namespace (no address, txqueuelen 10000, up).
    pub fn add_tap(&self, tap: &str) {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        self.ip(&["link", "set", tap, "txqueuelen", "10000", "up"]);
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Devices (TAPs, bridge, veth) go with the namespace.
        let _ =
            Command::new("ip").args(["netns", "del", &self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Topology (a): one namespace with persistent `tap0`, kernel side 198.18.0.1/24.
/// uniperf attaches to tap0 as 198.18.0.2/24.
pub fn tap_topology() -> Netns {
    let ns = Netns::new();
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["addr", "add", &format!("{KERNEL_IP}{PREFIX_LEN}"), "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "txqueuelen", "10000", "up"]);
    ns
}

/// Topology (b): one namespace with bridge `br0` (198.18.0.1/24) and persistent `tap0` and
/// `tap1` as its ports. uniperf server on tap0 as 198.18.0.2, client on tap1 as 198.18.0.3.
pub fn bridge_topology() -> Netns {
    let ns = Netns::new();
    ns.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"]);
    ns.ip(&["addr", "add", &format!("{KERNEL_IP}{PREFIX_LEN}"), "dev", "br0"]);
    for tap in ["tap0", "tap1"] {
        ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.ip(&["link", "set", tap, "master", "br0"]);
        ns.ip(&["link", "set", tap, "txqueuelen", "10000", "up"]);
    }
    ns.ip(&["link", "set", "br0", "up"]);
    ns
}

/// Topology (c): two namespaces joined by a veth pair; the first holds `va` 198.18.1.1/24 (run
/// the server there), the second `vb` 198.18.1.2/24 (run the client there).
pub fn veth_topology() -> (Netns, Netns) {
    let server = Netns::new();
    let client = Netns::new();
    server.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", client.name()]);
    server.ip(&["addr", "add", &format!("{VETH_SERVER_IP}{PREFIX_LEN}"), "dev", "va"]);
    client.ip(&["addr", "add", &format!("{VETH_CLIENT_IP}{PREFIX_LEN}"), "dev", "vb"]);
    server.ip(&["link", "set", "va", "up"]);
    client.ip(&["link", "set", "vb", "up"]);
    (server, client)
}

// ---------------------------------------------------------------------------------------------
// Starting the programs under test

/// `uniperf -s --tap TAP --ip IP/24 EXTRA…` in `ns`, returned once it printed its readiness line.
#[track_caller]
pub fn start_uniperf_server(ns: &Netns, tap: &str, ip: &str, extra: &[&str], life: Duration) -> Proc {
    let addr = format!("{ip}{PREFIX_LEN}");
    let mut args = vec![UNIPERF, "-s", "--tap", tap, "--ip", &addr];
    args.extend_from_slice(extra);
    let mut server = ns.spawn("uniperf-server", &args, life);
    let port = extra
        .iter()
        .position(|a| *a == "-p" || *a == "--port")
        .and_then(|i| extra.get(i + 1))
        .map_or(PORT, |p| p.parse().expect("port number"));
    server.wait_for_stderr_line(&ready_line(ip, port), READY_TIMEOUT);
    server
}

/// Stock `iperf3 -s EXTRA…` (Debian's 3.12) in `ns`, returned once its listener exists.
#[track_caller]
pub fn start_iperf3_server(ns: &Netns, extra: &[&str], life: Duration) -> Proc {
    start_peer_server(Peer::V312, ns, extra, life)
}

/// Stock `iperf3 -s EXTRA…` of the given release in `ns`, returned once its listener exists.
#[track_caller]
pub fn start_peer_server(peer: Peer, ns: &Netns, extra: &[&str], life: Duration) -> Proc {
    let bin = peer.bin();
    let mut args = vec![bin.as_str(), "-s"];
    args.extend_from_slice(extra);
    let server = ns.spawn(&format!("iperf3-{}-server", peer.label()), &args, life);
    ns.wait_for_listener(PORT, Duration::from_secs(10));
    server
}

/// (client document, server document) of one stock `iperf3 -c UNIPERF_IP -J ARGS` against
/// `uniperf -s -1 -J` on a fresh TAP topology.
#[track_caller]
pub fn stock_client_json(peer: Peer, args: &[&str], life: Duration, deadline: Duration) -> (Value, Value) {
    let ns = tap_topology();
    let mut server = start_uniperf_server(&ns, "tap0", UNIPERF_IP, &["-1", "-J"], life);
    let bin = peer.bin();
    let mut argv = vec![bin.as_str(), "-c", UNIPERF_IP, "-J"];
    argv.extend_from_slice(args);
    let client = ns.spawn("iperf3-client", &argv, deadline).wait();
    if !client.success() {
        panic!("stock client failed:\n{}\n--- server:\n{}", client.describe(), server.describe());
    }
    let done = server.wait_timeout(Duration::from_secs(15));
    (client.expect_json_success(), done.expect_json_success())
}

/// (client document, server document) of `uniperf -c KERNEL_IP -J ARGS` against a stock
/// `iperf3 -s -1 -J` on a fresh TAP topology.
#[track_caller]
pub fn uniperf_client_json(peer: Peer, args: &[&str], life: Duration, deadline: Duration) -> (Value, Value) {
    let ns = tap_topology();
    let mut server = start_peer_server(peer, &ns, &["-1", "-J"], life);
    let mut argv = vec![UNIPERF, "-c", KERNEL_IP, "--tap", "tap0", "--ip", "198.18.0.2/24", "-J"];
    argv.extend_from_slice(args);
    let client = ns.spawn("uniperf-client", &argv, deadline).wait();
    if !client.success() {
        panic!("uniperf client failed:\n{}\n--- server:\n{}", client.describe(), server.describe());
    }
    let done = server.wait_timeout(Duration::from_secs(15));
    (client.expect_json_success(), done.expect_json_success())
}

/// Starts stock clients (peer, args) against `ip` one after another, 300 ms apart, all
/// running at once; returns each one's `-J` document, or its failure (its error, or why its
/// output is not a document).
pub fn concurrent_stock_clients(
    ns: &Netns,
    ip: &str,
    clients: &[(Peer, &[&str])],
    deadline: Duration,
) -> Vec<Result<Value, String>> {
    let mut procs = Vec::new();
    for (i, (peer, args)) in clients.iter().enumerate() {
        let bin = peer.bin();
        let mut argv = vec![bin.as_str(), "-c", ip, "-J"];
        argv.extend_from_slice(args);
        procs.push(ns.spawn(&format!("client{i}-{}", peer.label()), &argv, deadline));
        std::thread::sleep(Duration::from_millis(300));
    }
    procs
        .iter_mut()
        .map(|p| {
            let done = p.wait();
            serde_json::from_str::<Value>(&done.stdout).map_err(|e| format!("{e}: {}", done.describe())).and_then(|v| {
                match v.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v),
                }
            })
        })
        .collect()
}

/// Every JSON document in `text` that starts a line, in order (a `-J` server prints one per
/// test; a console has other lines between them).
pub fn json_documents(text: &str) -> Vec<Value> {
    let text = text.replace('\r', "");
    let mut docs = Vec::new();
    let mut at = 0;
    while let Some(off) = text[at..].find('{') {
        let start = at + off;
        if start > 0 && text.as_bytes()[start - 1] != b'\n' {
            at = start + 1;
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                docs.push(v);
                at = start + stream.byte_offset();
            }
            _ => at = start + 1,
        }
    }
    docs
}

/// Client `i`'s document against the server's document for the same test (found by cookie):
/// what each side received is what the other side reports (the same counters), per direction.
#[track_caller]
pub fn check_concurrent_pair(i: usize, c: &Value, servers: &[Value]) {
    let cookie = |v: &Value| v["start"]["cookie"].as_str().unwrap_or("?").to_string();
    let s =
        servers.iter().find(|s| cookie(s) == cookie(c)).unwrap_or_else(|| panic!("no server document for client {i}"));
    for key in ["sum_received", "sum_received_bidir_reverse", "sum_sent", "sum_sent_bidir_reverse"] {
        let (Some(cv), Some(sv)) = (c["end"][key]["bytes"].as_u64(), s["end"][key]["bytes"].as_u64()) else {
            continue;
        };
        // A server prints zero for the half it did not measure (iperf3's servers do); the
        // client prints both.
        if sv > 0 {
            assert_eq!(cv, sv, "client {i} {key}: client and server disagree");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stock iperf3 releases

/// One `#[test]` per stock release for a case: `NAME::v312` and `NAME::v322`, each calling the
/// body with that [`Peer`].
macro_rules! against_both {
    ($($name:ident => $body:expr;)*) => {
        $(
            mod $name {
                use super::*;

                #[test]
                fn v312() {
                    ($body)(Peer::V312)
                }

                #[test]
                fn v322() {
                    ($body)(Peer::V322)
                }
            }
        )*
    };
}

/// A stock iperf3 release the tests interoperate with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Debian bookworm's iperf3 3.12 (`iperf3` on PATH).
    V312,
    /// Debian sid's iperf3 3.22, run by `.cache/bin/iperf3-sid` (scripts/setup.sh fetches it;
    /// `UNIPERF_IPERF3_SID` overrides the path).
    V322,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::V312, Peer::V322];

    pub fn label(self) -> &'static str {
        match self {
            Peer::V312 => "3.12",
            Peer::V322 => "3.22",
        }
    }

    /// The command that runs it.
    pub fn bin(self) -> String {
        match self {
            Peer::V312 => "iperf3".to_string(),
            Peer::V322 => std::env::var("UNIPERF_IPERF3_SID")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/bin/iperf3-sid").to_string()),
        }
    }

    /// True when this release can run here. Missing, the test is skipped loudly, except under
    /// CI (`CI=true`), where set-up must have fetched it.
    pub fn available_or_skip(self) -> bool {
        let ok = Command::new(self.bin())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return true;
        }
        let why =
            format!("stock iperf3 {} is not runnable as {} (scripts/setup.sh fetches it)", self.label(), self.bin());
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but {why}");
        }
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {why}");
        false
    }
}

// ---------------------------------------------------------------------------------------------
// iperf3 -J output

/// `v[a][b]…` (a number indexes an array) or a clear failure naming the path and showing
/// the document's top level.
#[track_caller]
pub fn json_at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        let next = match (cur, key.parse::<usize>()) {
            (Value::Array(a), Ok(n)) => a.get(n),
            _ => cur.get(key),
        };
        cur = match next {
            Some(next) => next,
            None => panic!(
                "-J output has no {:?} (missing {key:?}); top-level keys: {:?}",
                path[..=i].join("."),
                v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
            ),
        };
    }
    cur
}

/// `--json-stream` output (one `{"event":…,"data":…}` per line) rebuilt as the `-J` document
/// it stands for: `start`, `intervals` in order, `end`, and `error` if one was reported.
pub fn json_stream_document(text: &str) -> Result<Value, String> {
    let mut doc = serde_json::Map::new();
    let mut intervals = Vec::new();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("line {}: not JSON ({e}): {line}", n + 1))?;
        let event = v.get("event").and_then(Value::as_str).ok_or_else(|| format!("line {}: no \"event\"", n + 1))?;
        let data = v.get("data").cloned().ok_or_else(|| format!("line {}: no \"data\"", n + 1))?;
        match event {
            "interval" => intervals.push(data),
            other => {
                doc.insert(other.to_string(), data);
            }
        }
    }
    for key in ["start", "end"] {
        if !doc.contains_key(key) {
            return Err(format!("no \"{key}\" event"));
        }
    }
    doc.insert("intervals".into(), Value::Array(intervals));
    Ok(Value::Object(doc))
}

/// A JSON number as u64 (iperf3 prints byte counts as integers; a float is accepted if whole).
#[track_caller]
pub fn json_u64(v: &Value, path: &[&str]) -> u64 {
    let x = json_at(v, path);
    if let Some(n) = x.as_u64() {
        return n;
    }
    match x.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 => f as u64,
        _ => panic!("{} is not a byte count: {x}", path.join(".")),
    }
}

#[track_caller]
pub fn json_f64(v: &Value, path: &[&str]) -> f64 {
    let x = json_at(v, path);
    x.as_f64().unwrap_or_else(|| panic!("{} is not a number: {x}", path.join(".")))
}

/// end.sum_sent.bytes
#[track_caller]
pub fn sum_sent_bytes(v: &Value) -> u64 {
    json_u64(v, &["end", "sum_sent", "bytes"])
}

/// end.sum_received.bytes
#[track_caller]
pub fn sum_received_bytes(v: &Value) -> u64 {
    json_u64(v, &["end", "sum_received", "bytes"])
}

/// end.sum_sent_bidir_reverse.bytes
#[track_caller]
pub fn sum_sent_reverse_bytes(v: &Value) -> u64 {
    json_u64(v, &["end", "sum_sent_bidir_reverse", "bytes"])
}

/// end.sum_received_bidir_reverse.bytes
#[track_caller]
pub fn sum_received_reverse_bytes(v: &Value) -> u64 {
    json_u64(v, &["end", "sum_received_bidir_reverse", "bytes"])
}

/// end.sum_sent.bits_per_second (the sender's rate as the client reports it).
#[track_caller]
pub fn sum_sent_bps(v: &Value) -> f64 {
    json_f64(v, &["end", "sum_sent", "bits_per_second"])
}

/// end.sum_received.bits_per_second
#[track_caller]
pub fn sum_received_bps(v: &Value) -> f64 {
    json_f64(v, &["end", "sum_received", "bits_per_second"])
}

/// end.streams[] (one entry per data stream; 2N with --bidir).
#[track_caller]
pub fn end_streams(v: &Value) -> &Vec<Value> {
    json_at(v, &["end", "streams"]).as_array().unwrap_or_else(|| panic!("end.streams is not an array"))
}

/// intervals[]
#[track_caller]
pub fn intervals(v: &Value) -> &Vec<Value> {
    json_at(v, &["intervals"]).as_array().unwrap_or_else(|| panic!("intervals is not an array"))
}

/// True if any interval's sum (or sum_bidir_reverse) is marked omitted.
pub fn has_omitted_interval(v: &Value) -> bool {
    v.get("intervals").and_then(Value::as_array).is_some_and(|ivs| {
        ivs.iter().any(|iv| {
            ["sum", "sum_bidir_reverse"]
                .iter()
                .any(|k| iv.get(k).and_then(|s| s.get("omitted")).and_then(Value::as_bool) == Some(true))
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Byte agreement between the two ends of a test

/// The most one stream may leave "sent but not received" at the end of a test.
///
/// iperf3 counts a byte as sent when write() accepts it and as received when read() returns it;
/// the test ends while data sits in the sender's socket buffer, in flight and in the receiver's
/// socket buffer. On this kernel tcp_wmem[2] is 4 MiB and tcp_rmem[2] is 32 MiB, so one Linux
/// pair can hold up to 36 MiB per stream; smoltcp's buffers on the uniperf side are smaller than
/// the Linux one they replace. Stock iperf3 3.12 ↔ iperf3 over a veth pair (`-t 2`, 9 runs per
/// mode) left per stream at most: default 6.0 MiB, -R 12.6 MiB, -P 4 1.25 MiB, -P 4 -R 3.6 MiB,
/// -n 100M 3.75 MiB, --bidir 32.6 MiB (client→server) and 13.5 MiB (server→client); with -O 1
/// the receiver exceeded the sender by up to 3.6 MiB. Hence the buffer bound, 36 MiB per stream,
/// and no relative slack (a relative one would hide lost counts on long runs).
pub const SLACK_PER_STREAM: u64 = 36 << 20;

/// Checks the sender's and the receiver's byte counts of one direction of a test.
///
/// Without omit: receiver ≤ sender ≤ receiver + SLACK_PER_STREAM × streams.
/// With `-O`: each side zeroes its counters on its own omit timer, so the receiver may also
/// exceed the sender (stock iperf3 over veth: by up to 3.6 MiB); the same slack applies both ways.
#[track_caller]
pub fn assert_bytes_agree(what: &str, sender: u64, receiver: u64, streams: usize, omit: bool) {
    assert_bytes_agree_with(what, sender, receiver, streams, omit, 0)
}

/// [`assert_bytes_agree`] where the sender may have written up to `unreported` bytes it did not
/// count ([`stock_writer_race`]): the receiver may then exceed the sender's figure by that much.
#[track_caller]
pub fn assert_bytes_agree_with(what: &str, sender: u64, receiver: u64, streams: usize, omit: bool, unreported: u64) {
    let slack = SLACK_PER_STREAM * streams as u64;
    assert!(sender > 0 && receiver > 0, "{what}: no data moved: sender {sender} B, receiver {receiver} B");
    if omit {
        assert!(
            sender.abs_diff(receiver) <= slack,
            "{what}: sender {sender} B and receiver {receiver} B differ by {} B > {slack} B ({streams} stream(s), -O)",
            sender.abs_diff(receiver)
        );
    } else {
        assert!(
            receiver <= sender + unreported,
            "{what}: receiver reports {receiver} B, more than the sender's {sender} B (+ {unreported} B it may \
             have written uncounted)"
        );
        assert!(
            sender.saturating_sub(receiver) <= slack,
            "{what}: sender {sender} B exceeds receiver {receiver} B by {} B > {slack} B ({streams} stream(s))",
            sender - receiver
        );
    }
}

/// Mode of a test, as far as byte accounting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client sends (default).
    Forward,
    /// `-R`: server sends.
    Reverse,
    /// `--bidir`: both send.
    Bidir,
}

/// How far a stock server's own `sum_sent` may differ from the count it sent in its results:
/// 0, except for iperf3 3.16+ as the sender, whose sending threads can finish one more block
/// after the server printed its summary at TEST_END (its results carry the later count).
pub fn stock_sender_race(peer: Peer, streams: usize) -> u64 {
    match peer {
        Peer::V312 => 0,
        Peer::V322 => 128 * 1024 * streams as u64,
    }
}

/// What a stock client sends for `-n`/`-k` = `n`: exactly `n`, except that 3.12 checks the count
/// before every message of a batch of ten but the last, so when a short write has shifted the
/// batches it sends one block (128 KiB) more — its own quirk, seen against any server.
#[track_caller]
pub fn assert_stock_sent(peer: Peer, sent: u64, n: u64, what: &str) {
    let overshoot = if peer == Peer::V312 { 128 * 1024 } else { 0 };
    assert!(sent == n || sent == n + overshoot, "{what}: stock client sent {sent}, asked for {n}");
}

/// How many bytes a stock iperf3 client sending TCP may have put on the wire without counting
/// them in its `end.sum_sent`: 0 for 3.12 (one thread, non-blocking writes, every byte written is
/// counted), under one 128 KiB block per stream for 3.16+. Its sending threads are stopped with
/// `pthread_cancel` when the test ends; `Nwrite` loops over partial writes of a block and adds
/// the block's bytes to the stream's count only when the loop returns, so a thread cancelled
/// inside the `write` of a block's second part (the socket buffer was full) has sent the first
/// part uncounted. The receiver counts those bytes (CI saw a receiver 29 424 bytes over what a
/// 3.22 `-P 4` client reported, against `uniperf -s` on TAP). A stock 3.22 server hides
/// this: it stops reading at TEST_END, so its receiver trails its sender by megabytes.
pub fn stock_writer_race(peer: Peer, streams: usize) -> u64 {
    match peer {
        Peer::V312 => 0,
        Peer::V322 => (128 * 1024 - 1) * streams as u64,
    }
}

/// Cross-checks a client's and a server's `-J` documents from the same test.
///
/// * Each side's own count equals what the other side printed for it after the results exchange
///   (stock iperf3 pairs agree exactly on these: the numbers are the same counter).
/// * Sender and receiver of each direction agree within [`assert_bytes_agree`].
///
/// Returns (bytes client→server as received, bytes server→client as received).
#[track_caller]
pub fn assert_pair_consistent(
    client: &Value,
    server: &Value,
    dir: Direction,
    streams: usize,
    omit: bool,
) -> (u64, u64) {
    assert_pair_consistent_with(client, server, dir, streams, omit, 0, 0)
}

/// [`assert_pair_consistent`] where the server's own `sum_sent` may trail what its results
/// said by `server_sent_race` bytes ([`stock_sender_race`]), and the client may have sent up to
/// `client_unreported` bytes it did not count ([`stock_writer_race`]).
#[track_caller]
pub fn assert_pair_consistent_with(
    client: &Value,
    server: &Value,
    dir: Direction,
    streams: usize,
    omit: bool,
    server_sent_race: u64,
    client_unreported: u64,
) -> (u64, u64) {
    let mut forward = 0;
    let mut reverse = 0;
    let expected_streams = if dir == Direction::Bidir { 2 * streams } else { streams };
    assert_eq!(end_streams(client).len(), expected_streams, "client end.streams[] length (one per data stream)");
    assert_eq!(end_streams(server).len(), expected_streams, "server end.streams[] length (one per data stream)");
    assert!(!intervals(client).is_empty(), "client intervals[] is empty");
    assert!(!intervals(server).is_empty(), "server intervals[] is empty");
    if matches!(dir, Direction::Forward | Direction::Bidir) {
        let sent = sum_sent_bytes(client);
        let received = sum_received_bytes(client);
        let server_received = sum_received_bytes(server);
        assert_eq!(
            received, server_received,
            "client→server: the client's end.sum_received.bytes (from the server's results) must equal \
             the server's own end.sum_received.bytes"
        );
        assert_bytes_agree_with("client→server", sent, received, streams, omit, client_unreported);
        forward = received;
    }
    match dir {
        Direction::Reverse => {
            let sent = sum_sent_bytes(client);
            let server_sent = sum_sent_bytes(server);
            let received = sum_received_bytes(client);
            assert!(
                sent >= server_sent && sent - server_sent <= server_sent_race,
                "server→client (-R): the client's end.sum_sent.bytes {sent} (from the server's results) must \
                 equal the server's own end.sum_sent.bytes {server_sent} (give or take {server_sent_race})"
            );
            assert_bytes_agree("server→client", sent, received, streams, omit);
            reverse = received;
        }
        Direction::Bidir => {
            let sent = sum_sent_reverse_bytes(client);
            let server_sent = sum_sent_reverse_bytes(server);
            let received = sum_received_reverse_bytes(client);
            assert!(
                sent >= server_sent && sent - server_sent <= server_sent_race,
                "server→client (--bidir): the client's end.sum_sent_bidir_reverse.bytes {sent} must equal the \
                 server's own end.sum_sent_bidir_reverse.bytes {server_sent} (give or take {server_sent_race})"
            );
            assert_bytes_agree("server→client", sent, received, streams, omit);
            reverse = received;
        }
        Direction::Forward => {}
    }
    (forward, reverse)
}

/// The sending side's `-J` carries iperf3's TCP_INFO keys with real values: every interval's
/// sending streams have `retransmits snd_cwnd snd_wnd rtt rttvar pmtu reorder`, some RTT is
/// above zero, and the end summary has the maxima and mean.
#[track_caller]
pub fn assert_sender_tcp_info(what: &str, doc: &Value) {
    let mut rtts = Vec::new();
    for iv in intervals(doc) {
        for s in json_at(iv, &["streams"]).as_array().into_iter().flatten() {
            if s.get("sender").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            for key in ["retransmits", "snd_cwnd", "snd_wnd", "rtt", "rttvar", "pmtu", "reorder"] {
                assert!(s.get(key).is_some(), "{what}: a sending stream's interval lacks {key}: {s}");
            }
            rtts.push(json_u64(s, &["rtt"]));
        }
    }
    assert!(rtts.iter().any(|&r| r > 0), "{what}: no interval has an RTT above 0: {rtts:?}");
    let sender = json_at(doc, &["end", "streams", "0", "sender"]);
    for key in ["retransmits", "max_snd_cwnd", "max_rtt", "min_rtt", "mean_rtt"] {
        assert!(sender.get(key).is_some(), "{what}: end.streams[0].sender lacks {key}");
    }
    assert!(json_u64(sender, &["max_rtt"]) > 0, "{what}: max_rtt is 0");
}

/// Gbit/s from bits per second, for log lines.
pub fn gbps(bps: f64) -> f64 {
    bps / 1e9
}

// ---------------------------------------------------------------------------------------------
// The unikernel image under QEMU (scripts/qemu.sh)

/// The launcher: boots an image on a TAP inside a namespace and passes the guest's exit code
/// through (see its header for the status table).
pub const QEMU_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/qemu.sh");
/// Where `scripts/build-image.sh` leaves the image (overridden by `UNIPERF_IMAGE`).
pub const DEFAULT_IMAGE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/images/target/x86_64-unknown-none/release/uniperf-image");
/// qemu.sh's status when --timeout passed.
pub const QEMU_TIMEOUT: i32 = 124;
/// How long a booted image gets to print its readiness line. It needs ~0.1 s of guest time
/// under TCG; the rest is QEMU starting (and SeaBIOS on pc) on a loaded 2-core machine.
pub const VM_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// MAC of the server guest (tap0, 198.18.0.2) and the client guest (tap1, 198.18.0.3).
pub const SERVER_GUEST_MAC: &str = "52:54:00:18:00:02";
pub const CLIENT_GUEST_MAC: &str = "52:54:00:18:00:03";

/// The image under test: `$UNIPERF_IMAGE`, else the release build of `images/`.
pub fn image_path() -> PathBuf {
    std::env::var_os("UNIPERF_IMAGE").map_or_else(|| PathBuf::from(DEFAULT_IMAGE), PathBuf::from)
}

/// QEMU's accelerator for the tests: `$UNIPERF_QEMU_ACCEL` (kvm|tcg|auto), default tcg — the
/// project's machines have kvm_pvm, on which guests fail or crawl; real KVM hosts may set kvm.
pub fn qemu_accel() -> String {
    std::env::var("UNIPERF_QEMU_ACCEL").unwrap_or_else(|_| "tcg".to_string())
}

/// True when the image tests can run: root, QEMU and a built image. Without them they are
/// skipped loudly, except under CI (`CI=true`), where that would hide a broken set-up.
pub fn require_vm_or_skip() -> bool {
    if !require_root_or_skip() {
        return false;
    }
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let image = image_path();
    let missing = if !qemu {
        Some("qemu-system-x86_64 is not installed (scripts/setup.sh installs it)".to_string())
    } else if !image.is_file() {
        Some(format!("no image at {} (build it with scripts/build-image.sh)", image.display()))
    } else {
        None
    };
    let Some(why) = missing else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the image tests cannot run: {why}");
    }
    static LOUD: Once = Once::new();
    LOUD.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\n**************************************************************************\n\
             *** SKIPPED image tests: {why}\n\
             **************************************************************************"
        );
    });
    false
}

/// What to boot: machine type, TAP, MAC and the kernel command line.
#[derive(Clone, Debug)]
pub struct VmSpec<'a> {
    /// microvm, pc or q35.
    pub machine: &'a str,
    pub tap: &'a str,
    pub mac: &'a str,
    /// Guest memory in MB.
    pub mem_mb: u32,
    /// The words of the kernel command line (QEMU -append).
    pub cmdline: &'a [&'a str],
    /// qemu.sh --timeout: QEMU is stopped after this (a safety net; tests stop VMs earlier).
    pub timeout: Duration,
}

impl<'a> VmSpec<'a> {
    /// The server guest on tap0 with `cmdline`.
    pub fn server(machine: &'a str, cmdline: &'a [&'a str]) -> VmSpec<'a> {
        VmSpec { machine, tap: "tap0", mac: SERVER_GUEST_MAC, mem_mb: 64, cmdline, timeout: Duration::from_secs(120) }
    }

    /// The client guest on tap1 with `cmdline`.
    pub fn client(machine: &'a str, cmdline: &'a [&'a str]) -> VmSpec<'a> {
        VmSpec { tap: "tap1", mac: CLIENT_GUEST_MAC, ..VmSpec::server(machine, cmdline) }
    }
}

/// A VM started by `scripts/qemu.sh` (run on the host; it enters the namespace itself). Its
/// stdout is the guest's serial console. Dropping it stops qemu.sh with SIGTERM, which stops
/// QEMU by PID (and QEMU dies with qemu.sh in any case: parent-death signal). Declare it after
/// the namespace so it is dropped first.
pub struct Vm {
    proc: Proc,
}

impl Vm {
    /// Boots `spec` in `ns`; does not wait for anything.
    pub fn boot(ns: &Netns, label: &str, spec: &VmSpec) -> Vm {
        let image = image_path();
        let mem = spec.mem_mb.to_string();
        let timeout = spec.timeout.as_secs().max(1).to_string();
        let accel = qemu_accel();
        let mut argv: Vec<String> = to_argv(&[
            QEMU_SH,
            "--accel",
            &accel,
            "--machine",
            spec.machine,
            "--mem",
            &mem,
            "--netns",
            ns.name(),
            "--tap",
            spec.tap,
            "--mac",
            spec.mac,
            "--timeout",
            &timeout,
            "--kernel",
            image.to_str().expect("image path is UTF-8"),
            "--",
        ]);
        argv.extend(spec.cmdline.iter().map(|s| s.to_string()));
        Vm { proc: Proc::spawn(label, &argv, spec.timeout + Duration::from_secs(30)) }
    }

    /// Boots a server guest and waits until its console says it listens on `ip`:5201.
    #[track_caller]
    pub fn boot_server(ns: &Netns, label: &str, spec: &VmSpec, ip: &str) -> Vm {
        let mut vm = Vm::boot(ns, label, spec);
        vm.wait_for_console(&ready_line(ip, PORT), VM_READY_TIMEOUT);
        vm
    }

    /// The serial console so far, without carriage returns.
    pub fn console(&self) -> String {
        self.proc.stdout().replace('\r', "")
    }

    /// Waits for a console line containing `needle`; fails if QEMU ends first or on timeout.
    #[track_caller]
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) {
        self.proc.wait_for_stdout_line(needle, timeout);
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    pub fn describe(&self) -> String {
        self.proc.describe()
    }

    /// Waits for qemu.sh to exit (at most `timeout`; past it the VM is stopped and the test
    /// fails). The result's code is the guest's exit code.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        self.proc.wait_timeout(timeout)
    }

    /// Stops the VM (SIGTERM to qemu.sh, which stops QEMU) and returns what it printed.
    pub fn stop(&mut self) -> Finished {
        self.proc.stop()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.proc.is_running() {
            self.proc.stop();
        }
    }
}

/// The first JSON document on a serial console: boot lines (and SeaBIOS's) come before it,
/// the document starts on a line of its own with `{`, and anything after it is ignored.
pub fn console_json(console: &str) -> Result<Value, String> {
    let text = console.replace('\r', "");
    let start = if text.starts_with('{') {
        0
    } else {
        match text.find("\n{") {
            Some(i) => i + 1,
            None => return Err("no line starts with '{'".to_string()),
        }
    };
    let mut docs = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
    match docs.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(format!("the document from byte {start} does not parse: {e}")),
        None => Err("nothing after the '{' line".to_string()),
    }
}

/// The console's JSON document, which must parse and carry no "error" key.
#[track_caller]
pub fn expect_console_json(what: &str, done: &Finished) -> Value {
    match console_json(&done.stdout) {
        Ok(v) => {
            if let Some(err) = v.get("error") {
                panic!("{what}: the console's -J document carries an error: {err}\n{}", done.describe());
            }
            v
        }
        Err(e) => panic!("{what}: no JSON document on the console ({e}):\n{}", done.describe()),
    }
}
