//! `uniperf compare`: every stack side by side in one command. In network namespaces made for
//! the run (198.18.0.0/15 only, removed at exit) it measures, for the same duration, `-P`,
//! direction and protocol:
//!
//! 1. `veth`: stock iperf3 ↔ stock iperf3 over a veth pair (kernel to kernel);
//! 2. `linux-guest`: stock iperf3 ↔ a Linux guest running stock iperf3 under QEMU;
//! 3. `image`: stock iperf3 ↔ the uniperf image on the identical QEMU command line;
//! 4. `tap`: stock iperf3 ↔ uniperf on a TAP device;
//! 5. `image-pair`: the uniperf client image ↔ the uniperf server image on one host;
//! 6. `xen`: the Xen rig (`scripts/xen/rig.sh`: Xen 4.17 and a Linux PV dom0 under QEMU TCG):
//!    dom0's stock iperf3 against the uniperf server domU, and against a Linux PV domU running
//!    stock iperf3 on the same Xen and bridge — two rows, to be read against each other;
//! 7. `sim`: uniperf ↔ uniperf over the simulated link (how path impairment is applied when
//!    the kernel has no `sch_netem`).
//!
//! It prints a progress line per case and a table (Gbit/s, retransmits, CPU, ratio to cases 1
//! and 2); with `-o DIR` it also writes `compare.json` (every run's figures and exact command
//! lines), a bar chart (`compare.png`, `compare.svg`) and, from a short captured run of each
//! case converted with `uniperf flowlog --pcap`, per-flow TCP plots of every case on shared
//! axes.

use crate::flowlog_cmd::parse_subcommand;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, ValueEnum};
use plotters::prelude::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Compares uniperf with Linux and stock iperf3 on the same paths.
///
/// Every case runs in network namespaces created for the run, with addresses in
/// 198.18.0.0/15; QEMU runs inside them. Needs root, QEMU (scripts/setup.sh installs it) and
/// stock iperf3.
#[derive(Parser, Debug)]
#[command(name = "uniperf compare", disable_version_flag = true)]
struct Args {
    /// Seconds per measured run
    #[arg(short = 't', long = "time", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    time: u32,
    /// Parallel streams
    #[arg(short = 'P', long = "parallel", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
    parallel: u32,
    /// The server sends (iperf3's -R)
    #[arg(short = 'R', long)]
    reverse: bool,
    /// UDP at the rate of -b
    #[arg(short = 'u', long)]
    udp: bool,
    /// Target rate per stream (iperf3's -b; with -u, default 1G)
    #[arg(short = 'b', long = "bitrate", value_name = "RATE")]
    bitrate: Option<String>,
    /// Write compare.json, the bar chart and the flow-log plots here
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    out: Option<PathBuf>,
    /// Which cases to run, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "veth,linux-guest,image,tap,image-pair,xen")]
    cases: Vec<CaseKind>,
    /// QEMU machine type for the guest cases
    #[arg(long, default_value = "microvm", value_parser = ["microvm", "pc", "q35"])]
    machine: String,
    /// QEMU accelerator
    #[arg(long, default_value = "tcg", value_parser = ["tcg", "kvm", "auto"])]
    accel: String,
    /// Guest memory in MB
    #[arg(long, default_value_t = 256)]
    mem: u32,
    /// Path impairment: one-way delay in ms
    #[arg(long, value_name = "MS")]
    delay: Option<f64>,
    /// Path impairment: loss in percent
    #[arg(long, value_name = "PCT")]
    loss: Option<f64>,
    /// Path impairment: bottleneck rate (e.g. 1G)
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Skip the captured runs and flow-log plots
    #[arg(long)]
    no_plots: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CaseKind {
    Veth,
    LinuxGuest,
    Image,
    Tap,
    ImagePair,
    Xen,
    Sim,
}

impl CaseKind {
    fn name(self) -> &'static str {
        match self {
            CaseKind::Veth => "veth",
            CaseKind::LinuxGuest => "linux-guest",
            CaseKind::Image => "image",
            CaseKind::Tap => "tap",
            CaseKind::ImagePair => "image-pair",
            CaseKind::Xen => "xen",
            CaseKind::Sim => "sim",
        }
    }

    fn describe(self, machine: &str) -> String {
        match self {
            CaseKind::Veth => "iperf3 <> iperf3 over veth".into(),
            CaseKind::LinuxGuest => format!("iperf3 <> Linux guest ({machine}, QEMU)"),
            CaseKind::Image => format!("iperf3 <> uniperf image ({machine}, QEMU)"),
            CaseKind::Tap => "iperf3 <> uniperf on TAP".into(),
            CaseKind::ImagePair => format!("uniperf image <> uniperf image ({machine})"),
            CaseKind::Xen => "iperf3 (dom0) <> uniperf server domU (Xen)".into(),
            CaseKind::Sim => "uniperf <> uniperf, simulated link".into(),
        }
    }
}

/// One measured case.
#[derive(Debug, Default)]
struct Run {
    case: &'static str,
    label: String,
    /// Receiver's rate, Gbit/s.
    gbps: Option<f64>,
    retransmits: Option<i64>,
    cpu_client: Option<f64>,
    cpu_server: Option<f64>,
    /// UDP: loss in percent.
    lost_percent: Option<f64>,
    commands: Vec<String>,
    note: Option<String>,
    client_json: Option<Value>,
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some(mut a) = parse_subcommand::<Args>("compare", args)? else { return Ok(ExitCode::SUCCESS) };
    let impaired = a.delay.is_some() || a.loss.is_some() || a.rate.is_some();
    if impaired && !a.cases.contains(&CaseKind::Sim) && !netem_available() {
        // Without netem the simulated link is the only impaired path: show it.
        a.cases.push(CaseKind::Sim);
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("compare: it creates network namespaces and TAP devices: run it as root");
    }
    let root = repo_root()?;
    let bin = std::env::current_exe().context("cannot find the uniperf binary")?;
    let ctx = Ctx::new(&a, &root, &bin)?;
    let _work = WorkDir(ctx.work.clone());
    prerequisites(&a, &root)?;
    let mut runs = Vec::new();
    let total = a.cases.len();
    for (i, case) in a.cases.iter().enumerate() {
        eprintln!("compare: [{}/{total}] {} ...", i + 1, case.describe(&a.machine));
        let started = Instant::now();
        let done = if *case == CaseKind::Xen {
            ctx.xen()
        } else {
            vec![ctx.measure(*case).unwrap_or_else(|e| Run {
                case: case.name(),
                label: case.describe(&a.machine),
                note: Some(format!("{e:#}")),
                ..Run::default()
            })]
        };
        for r in done {
            eprintln!(
                "compare: [{}/{total}] {}: {} ({:.0} s)",
                i + 1,
                r.label,
                match (r.gbps, &r.note) {
                    (Some(g), _) => format!("{g:.2} Gbit/s"),
                    (None, Some(n)) => format!("not measured: {n}"),
                    (None, None) => "not measured".into(),
                },
                started.elapsed().as_secs_f64()
            );
            runs.push(r);
        }
    }
    let table = table(&a, &runs, &ctx);
    print!("{table}");
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("compare.txt"), &table)?;
        let doc = document(&a, &runs, &ctx);
        std::fs::write(dir.join("compare.json"), serde_json::to_string_pretty(&doc)?)?;
        for ext in ["png", "svg"] {
            let path = dir.join(format!("compare.{ext}"));
            bar_chart(&path, &a, &runs).with_context(|| format!("cannot draw {}", path.display()))?;
        }
        eprintln!("compare: wrote compare.txt, compare.json, compare.png and compare.svg to {}", dir.display());
        if !a.no_plots {
            ctx.flow_plots(&a, dir)?;
        }
    }
    // The Xen rows need the rig (root, fetched packages, minutes of TCG): not having them is not
    // a failure of the comparison.
    let all_measured = runs.iter().filter(|r| !r.case.starts_with("xen")).all(|r| r.gbps.is_some());
    Ok(if all_measured { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Builds what the chosen cases need and is missing: the image, the Linux guest.
fn prerequisites(a: &Args, root: &Path) -> Result<()> {
    let needs = |k: &[CaseKind]| a.cases.iter().any(|c| k.contains(c));
    if needs(&[CaseKind::Image, CaseKind::ImagePair])
        && !root.join("images/target/x86_64-unknown-none/release/uniperf-image").is_file()
    {
        eprintln!("compare: building the image (scripts/build-image.sh)");
        let ok = Command::new(root.join("scripts/build-image.sh")).stdout(Stdio::null()).status()?.success();
        if !ok {
            bail!("scripts/build-image.sh failed");
        }
    }
    if needs(&[CaseKind::LinuxGuest]) && !root.join("out/linux-guest/vmlinuz").is_file() {
        eprintln!("compare: building the Linux guest from Debian packages (benches/linux-guest.sh)");
        let ok = Command::new(root.join("benches/linux-guest.sh")).stdout(Stdio::null()).status()?.success();
        if !ok {
            bail!("benches/linux-guest.sh failed");
        }
    }
    for tool in ["iperf3", "ip", "tcpdump", "qemu-system-x86_64"] {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).stdout(Stdio::null()).status()?.success() {
            continue;
        }
        bail!("compare: `{tool}` is missing (scripts/setup.sh installs it)");
    }
    Ok(())
}

fn repo_root() -> Result<PathBuf> {
    // The binary lives in target/{debug,release}/ of the checkout whose scripts it runs.
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors() {
        if dir.join("scripts/qemu.sh").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    let cwd = std::env::current_dir()?;
    if cwd.join("scripts/qemu.sh").is_file() {
        return Ok(cwd);
    }
    bail!("compare: run it from a uniperf checkout (scripts/qemu.sh not found)")
}

/// What every case needs: paths, the client flags, the impairment.
#[derive(Clone)]
struct Ctx {
    root: PathBuf,
    bin: PathBuf,
    time: u32,
    client_flags: Vec<String>,
    machine: String,
    accel: String,
    mem: u32,
    netem: Option<Vec<String>>,
    /// Why the kernel cases are not impaired, when an impairment was asked for.
    impairment_note: Option<String>,
    sim_flags: Vec<String>,
    work: PathBuf,
    /// `-o DIR`: where a failed case's evidence is kept (else a kept directory under /tmp).
    out: Option<PathBuf>,
}

impl Ctx {
    fn new(a: &Args, root: &Path, bin: &Path) -> Result<Ctx> {
        let mut flags = vec!["-t".to_string(), a.time.to_string(), "-P".into(), a.parallel.to_string()];
        if a.reverse {
            flags.push("-R".into());
        }
        if a.udp {
            flags.extend(["-u".into(), "-b".into(), a.bitrate.clone().unwrap_or_else(|| "1G".into())]);
        } else if let Some(b) = &a.bitrate {
            flags.extend(["-b".into(), b.clone()]);
        }
        let mut netem = Vec::new();
        let mut sim_flags = Vec::new();
        if let Some(d) = a.delay {
            netem.extend(["delay".into(), format!("{d}ms")]);
            sim_flags.extend(["--delay".into(), d.to_string()]);
        }
        if let Some(l) = a.loss {
            netem.extend(["loss".into(), format!("{l}%")]);
            sim_flags.extend(["--loss".into(), l.to_string()]);
        }
        if let Some(r) = &a.rate {
            netem.extend(["rate".into(), format!("{r}bit")]);
            sim_flags.extend(["--rate".into(), r.clone()]);
        }
        let (netem, impairment_note) = if netem.is_empty() {
            (None, None)
        } else if netem_available() {
            (Some(netem), None)
        } else {
            let note = "this kernel has no sch_netem: the impairment applies to the simulated link (case sim) only";
            eprintln!("compare: {note}");
            (None, Some(note.to_string()))
        };
        let work = std::env::temp_dir().join(format!("uniperf-compare.{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        Ok(Ctx {
            root: root.to_path_buf(),
            bin: bin.to_path_buf(),
            time: a.time,
            client_flags: flags,
            machine: a.machine.clone(),
            accel: a.accel.clone(),
            mem: a.mem,
            netem,
            impairment_note,
            sim_flags,
            out: a.out.clone(),
            work,
        })
    }

    fn measure(&self, case: CaseKind) -> Result<Run> {
        let label = case.describe(&self.machine);
        let mut run = Run { case: case.name(), label, ..Run::default() };
        let client_json = match case {
            CaseKind::Veth => self.veth(&mut run, None)?,
            CaseKind::Tap => self.tap(&mut run, None)?,
            CaseKind::LinuxGuest => self.guest(&mut run, Guest::Linux, None)?,
            CaseKind::Image => self.guest(&mut run, Guest::Image, None)?,
            CaseKind::ImagePair => self.image_pair(&mut run, None)?,
            CaseKind::Sim => self.sim(&mut run)?,
            CaseKind::Xen => return Err(anyhow!("the Xen case is measured by Ctx::xen")),
        };
        figures(&mut run, &client_json);
        if self.impairment_note.is_some() && case != CaseKind::Sim {
            run.note = Some("unimpaired (no sch_netem)".into());
        }
        run.client_json = Some(client_json);
        Ok(run)
    }

    fn iperf3_client(&self, target: &str) -> Vec<String> {
        let mut v = vec!["iperf3".to_string(), "-c".into(), target.into(), "-J".into()];
        v.extend(self.client_flags.iter().cloned());
        v
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.time as u64 + 60)
    }

    /// Case 1. `capture`: a pcap of the client's interface while it runs.
    fn veth(&self, run: &mut Run, capture: Option<&Path>) -> Result<Value> {
        let srv = Netns::new("s")?;
        let cli = Netns::new("c")?;
        srv.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &cli.name])?;
        srv.ip(&["addr", "add", "198.18.1.1/24", "dev", "va"])?;
        cli.ip(&["addr", "add", "198.18.1.2/24", "dev", "vb"])?;
        srv.ip(&["link", "set", "va", "up"])?;
        cli.ip(&["link", "set", "vb", "up"])?;
        self.impair(&cli, "vb")?;
        self.impair(&srv, "va")?;
        let server = srv.spawn(&["iperf3", "-s", "-1", "-B", "198.18.1.1"], &self.work.join("veth-server.log"))?;
        let _server = Kill(server);
        srv.wait_for_port(5201)?;
        let _cap = capture.map(|p| cli.capture("vb", p)).transpose()?;
        self.client(run, &cli, &self.iperf3_client("198.18.1.1"))
    }

    /// Case 4.
    fn tap(&self, run: &mut Run, capture: Option<&Path>) -> Result<Value> {
        let ns = Netns::new("t")?;
        ns.tap("tap0", "198.18.0.1/24")?;
        self.impair(&ns, "tap0")?;
        let bin = self.bin.to_string_lossy().to_string();
        let argv = [bin.as_str(), "-s", "-1", "--tap", "tap0", "--ip", "198.18.0.2/24"];
        run.commands.push(format!("ip netns exec NS {}", argv.join(" ")));
        let log = self.work.join("tap-server.log");
        let server = ns.spawn(&argv, &log)?;
        let _server = Kill(server);
        wait_for_text(&log, "ready: listening", Duration::from_secs(15))?;
        let _cap = capture.map(|p| ns.capture("tap0", p)).transpose()?;
        self.client(run, &ns, &self.iperf3_client("198.18.0.2"))
    }

    /// Cases 2 and 3: a guest on tap0 of a bridge, stock iperf3 -c from the bridge.
    fn guest(&self, run: &mut Run, guest: Guest, capture: Option<&Path>) -> Result<Value> {
        let ns = Netns::new("g")?;
        ns.bridge(&["tap0"])?;
        self.impair(&ns, "br0")?;
        let qemu = self.qemu_argv(&ns, guest, "tap0", "52:54:00:18:00:02", &["-s", "--ip", "198.18.0.2/24"])?;
        run.commands.push(qemu.join(" "));
        let console = self.work.join(format!("{}-console.log", run.case));
        let vm = spawn_host(&qemu, &console)?;
        let _vm = Kill(vm);
        wait_for_text(&console, "ready: listening on 198.18.0.2", Duration::from_secs(180))?;
        let _cap = capture.map(|p| ns.capture("br0", p)).transpose()?;
        self.client(run, &ns, &self.iperf3_client("198.18.0.2"))
    }

    /// Case 5: server image on tap0, client image on tap1; the client's -J from its console.
    fn image_pair(&self, run: &mut Run, capture: Option<&Path>) -> Result<Value> {
        let ns = Netns::new("p")?;
        ns.bridge(&["tap0", "tap1"])?;
        self.impair(&ns, "br0")?;
        let server =
            self.qemu_argv(&ns, Guest::Image, "tap0", "52:54:00:18:00:02", &["-s", "--ip", "198.18.0.2/24"])?;
        run.commands.push(server.join(" "));
        let sconsole = self.work.join("pair-server.log");
        let vm = spawn_host(&server, &sconsole)?;
        let _vm = Kill(vm);
        wait_for_text(&sconsole, "ready: listening on 198.18.0.2", Duration::from_secs(180))?;
        let mut cmd: Vec<String> =
            vec!["-c".into(), "198.18.0.2".into(), "-J".into(), "--ip".into(), "198.18.0.3/24".into()];
        cmd.extend(self.client_flags.iter().cloned());
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let client = self.qemu_argv(&ns, Guest::Image, "tap1", "52:54:00:18:00:03", &refs)?;
        run.commands.push(client.join(" "));
        let cconsole = self.work.join("pair-client.log");
        let _cap = capture.map(|p| ns.capture("tap1", p)).transpose()?;
        let mut vm = spawn_host(&client, &cconsole)?;
        wait_child(&mut vm, self.limit() + Duration::from_secs(120))?;
        let text = std::fs::read_to_string(&cconsole)?;
        first_json(&text)
            .ok_or_else(|| anyhow!("the client image printed no -J document (console in {})", cconsole.display()))
    }

    /// Case 6: one boot of the Xen rig. In dom0, stock iperf3 with this run's flags against the
    /// uniperf server domU (`xl.sh`), then against a Linux PV domU running stock iperf3 -s
    /// (`linux-domu`), one after the other on the same Xen and bridge. Two rows; under nested
    /// TCG only their ratio means anything. Path impairment does not apply here.
    fn xen(&self) -> Vec<Run> {
        let mut uni = Run { case: "xen", label: CaseKind::Xen.describe(&self.machine), ..Run::default() };
        let mut linux =
            Run { case: "xen-linux", label: "iperf3 (dom0) <> Linux PV domU (Xen)".into(), ..Run::default() };
        let flags = self.client_flags.join(" ");
        match self.xen_rig(&mut uni) {
            Ok(out) => {
                for (run, name, addr) in [(&mut uni, "uniperf", "198.18.0.2"), (&mut linux, "linux", "198.18.0.4")] {
                    run.commands.push(format!("(in dom0) iperf3 -c {addr} -J {flags}"));
                    let json = std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap_or_default();
                    match serde_json::from_str::<Value>(&json) {
                        Ok(doc) if doc.get("error").is_none() && doc["end"]["sum_received"].is_object() => {
                            figures(run, &doc);
                            run.client_json = Some(doc);
                        }
                        _ => {
                            let err = std::fs::read_to_string(out.join(format!("{name}.err"))).unwrap_or_default();
                            let why = [err.trim(), json.trim()].into_iter().find(|t| !t.is_empty());
                            let why = why.unwrap_or("no output").lines().take(3).collect::<Vec<_>>().join(" / ");
                            run.note = Some(format!("dom0's iperf3 against {addr}: {why}"));
                        }
                    }
                }
                if self.netem.is_some() {
                    for run in [&mut uni, &mut linux] {
                        run.note.get_or_insert_with(|| "unimpaired (the Xen rig has no netem)".into());
                    }
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                linux.note = Some(why.clone());
                uni.note = Some(why);
            }
        }
        if uni.gbps.is_none() || linux.gbps.is_none() {
            // The work directory goes at exit: keep what the rig left (its log, dom0's files,
            // the guests' consoles) where the user can read why.
            match self.keep_xen_evidence() {
                Ok(Some(dir)) => {
                    for run in [&mut uni, &mut linux] {
                        if run.gbps.is_none() {
                            let note = run.note.take().unwrap_or_default();
                            run.note = Some(format!("{note} (the rig's files: {})", dir.display()));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("compare: cannot keep the Xen rig's files: {e:#}"),
            }
        }
        // Both rows come from the one rig boot.
        if let Some(rig) = uni.commands.first().cloned() {
            linux.commands.insert(0, rig);
        }
        if let (Some(u), Some(l)) = (uni.gbps, linux.gbps)
            && l > 0.0
        {
            uni.note = Some(format!("{:.2}x the Linux domU on the same Xen", u / l));
        }
        vec![uni, linux]
    }

    /// Copies the rig's log and output directory out of the work directory, to `-o DIR`'s
    /// `xen-rig/` or a new `/tmp/uniperf-compare-xen.*`; None when the rig left nothing.
    fn keep_xen_evidence(&self) -> Result<Option<PathBuf>> {
        let dest = match &self.out {
            Some(d) => d.join("xen-rig"),
            None => std::env::temp_dir().join(format!("uniperf-compare-xen.{}", std::process::id())),
        };
        Ok(keep_rig_files(&self.work, &dest)?.then_some(dest))
    }

    /// Boots the rig with the two measurements as its dom0 script; the directory its files
    /// came back to.
    fn xen_rig(&self, run: &mut Run) -> Result<PathBuf> {
        let fetch = self.root.join("scripts/xen/fetch.sh");
        let out = Command::new(&fetch).stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!(
                "the Xen rig is not available: scripts/xen/fetch.sh failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let image = self.root.join("images/target/x86_64-unknown-none/release/uniperf-image");
        if !image.is_file() {
            bail!("no image at {} (scripts/build-image.sh)", image.display());
        }
        if let Some(f) =
            self.client_flags.iter().find(|f| !f.chars().all(|c| c.is_ascii_alphanumeric() || "-.:_/".contains(c)))
        {
            bail!("the flag {f:?} cannot be passed to dom0's shell");
        }
        let script = XEN_SCRIPT
            .replace("@FLAGS@", &self.client_flags.join(" "))
            .replace("@LIMIT@", &(self.time + 60).to_string());
        let script_path = self.work.join("xen-compare.sh");
        std::fs::write(&script_path, script)?;
        let rig_out = self.work.join("xen-rig");
        let rig = self.root.join("scripts/xen/rig.sh");
        let timeout = (2 * self.time + 600).to_string();
        let argv: Vec<String> = [
            rig.to_string_lossy().as_ref(),
            "--script",
            script_path.to_string_lossy().as_ref(),
            "--image",
            image.to_string_lossy().as_ref(),
            "--out",
            rig_out.to_string_lossy().as_ref(),
            "--linux-domu",
            "--timeout",
            &timeout,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        run.commands.push(argv.join(" "));
        let log = self.work.join("xen-rig.log");
        let mut child = spawn_host(&argv, &log)?;
        wait_child(&mut child, Duration::from_secs(2 * self.time as u64 + 720)).map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            anyhow!("scripts/xen/rig.sh {e}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / "))
        })?;
        Ok(rig_out)
    }

    /// Case 7: `uniperf sim` with the flags and the impairment.
    fn sim(&self, run: &mut Run) -> Result<Value> {
        let bin = self.bin.to_string_lossy().to_string();
        let mut argv = vec![bin, "sim".into(), "-J".into()];
        argv.extend(self.client_flags.iter().cloned());
        argv.extend(self.sim_flags.iter().cloned());
        run.commands.push(argv.join(" "));
        let out = Command::new(&argv[0]).args(&argv[1..]).stderr(Stdio::null()).output()?;
        serde_json::from_slice(&out.stdout).context("uniperf sim printed no -J document")
    }

    fn qemu_argv(&self, ns: &Netns, guest: Guest, tap: &str, mac: &str, image_args: &[&str]) -> Result<Vec<String>> {
        let qemu_sh = self.root.join("scripts/qemu.sh").to_string_lossy().to_string();
        let acpi = if self.machine == "microvm" { "on" } else { "off" };
        let mut v = vec![
            qemu_sh,
            "--accel".into(),
            self.accel.clone(),
            "--machine".into(),
            self.machine.clone(),
            "--acpi".into(),
            acpi.into(),
            "--mem".into(),
            self.mem.to_string(),
            "--netns".into(),
            ns.name.clone(),
            "--tap".into(),
            tap.into(),
            "--mac".into(),
            mac.into(),
            "--timeout".into(),
            (self.time + 300).to_string(),
        ];
        match guest {
            Guest::Image => {
                let image = self.root.join("images/target/x86_64-unknown-none/release/uniperf-image");
                if !image.is_file() {
                    bail!("no image at {} (scripts/build-image.sh builds it)", image.display());
                }
                v.extend(["--kernel".into(), image.to_string_lossy().to_string(), "--".into()]);
                v.extend(image_args.iter().map(|s| s.to_string()));
            }
            Guest::Linux => {
                let dir = self.root.join("out/linux-guest");
                if !dir.join("vmlinuz").is_file() {
                    bail!("no Linux guest in {} (benches/linux-guest.sh builds it)", dir.display());
                }
                let tsc = tsc_khz().map(|k| format!("tsc_early_khz={k}")).unwrap_or_default();
                v.extend([
                    "--kernel".into(),
                    dir.join("vmlinuz").to_string_lossy().to_string(),
                    "--initrd".into(),
                    dir.join("initrd.gz").to_string_lossy().to_string(),
                    "--".into(),
                    "console=ttyS0".into(),
                    "quiet".into(),
                    "panic=-1".into(),
                    "tsc=reliable".into(),
                    tsc,
                    "linuxguest.ip=198.18.0.2/24".into(),
                ]);
            }
        }
        Ok(v)
    }

    fn impair(&self, ns: &Netns, dev: &str) -> Result<()> {
        let Some(netem) = &self.netem else { return Ok(()) };
        let mut args = vec!["tc", "qdisc", "add", "dev", dev, "root", "netem"];
        args.extend(netem.iter().map(String::as_str));
        ns.exec(&args).map(|_| ())
    }

    /// Runs a client in `ns` to its end; returns its -J document.
    fn client(&self, run: &mut Run, ns: &Netns, argv: &[String]) -> Result<Value> {
        run.commands.push(format!("ip netns exec NS {}", argv.join(" ")));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.work.join(format!("{}-client.json", run.case));
        let mut child = ns.spawn(&refs, &out)?;
        wait_child(&mut child, self.limit())?;
        let text = std::fs::read_to_string(&out)?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("the client printed no -J document: {text}"))?;
        if let Some(e) = v.get("error") {
            bail!("the client failed: {e}");
        }
        Ok(v)
    }

    /// A short captured run of every measured case, converted to flow logs and plotted: one
    /// figure per case and one with all cases on shared axes.
    fn flow_plots(&self, a: &Args, dir: &Path) -> Result<()> {
        let short = Ctx { time: 2, client_flags: replace_time(&self.client_flags, 2), ..self.clone() };
        let mut logs = Vec::new();
        for case in &a.cases {
            let pcap = self.work.join(format!("{}.pcap", case.name()));
            let mut run = Run::default();
            let result = match case {
                CaseKind::Veth => short.veth(&mut run, Some(&pcap)),
                CaseKind::Tap => short.tap(&mut run, Some(&pcap)),
                CaseKind::LinuxGuest => short.guest(&mut run, Guest::Linux, Some(&pcap)),
                CaseKind::Image => short.guest(&mut run, Guest::Image, Some(&pcap)),
                CaseKind::ImagePair => short.image_pair(&mut run, Some(&pcap)),
                CaseKind::Xen | CaseKind::Sim => continue,
            };
            if let Err(e) = result {
                eprintln!("compare: no flow plot for {}: {e:#}", case.name());
                continue;
            }
            let csv = dir.join(format!("flowlog-{}.csv", case.name()));
            let png = dir.join(format!("flowlog-{}.png", case.name()));
            let bin = self.bin.to_string_lossy().to_string();
            let conv = Command::new(&bin).args(["flowlog", "--pcap"]).arg(&pcap).arg("-o").arg(&csv).output()?;
            if !conv.status.success() {
                eprintln!(
                    "compare: flowlog --pcap {}: {}",
                    pcap.display(),
                    String::from_utf8_lossy(&conv.stderr).trim()
                );
                continue;
            }
            let plot = Command::new(&bin)
                .arg("plot")
                .arg(&csv)
                .arg("-o")
                .arg(&png)
                .arg("--title")
                .arg(case.describe(&a.machine))
                .output()?;
            if plot.status.success() {
                logs.push(csv);
            } else {
                eprintln!("compare: plot {}: {}", csv.display(), String::from_utf8_lossy(&plot.stderr).trim());
            }
        }
        if !logs.is_empty() {
            let all = dir.join("flowlogs.png");
            let status = Command::new(&self.bin)
                .arg("plot")
                .args(&logs)
                .arg("-o")
                .arg(&all)
                .arg("--title")
                .arg("every case, 2 s captured runs (time from each run's first data segment)")
                .status()?;
            if status.success() {
                eprintln!("compare: flow-log plots in {} (flowlog-CASE.png, flowlogs.png)", dir.display());
            }
        }
        Ok(())
    }
}

/// Copies `work/xen-rig.log` (as `rig.log`) and the files of `work/xen-rig/` into `dest`;
/// false (and nothing created) when neither exists.
fn keep_rig_files(work: &Path, dest: &Path) -> Result<bool> {
    let (log, out) = (work.join("xen-rig.log"), work.join("xen-rig"));
    if !log.exists() && !out.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    if log.exists() {
        std::fs::copy(&log, dest.join("rig.log")).with_context(|| format!("cannot copy {}", log.display()))?;
    }
    if out.is_dir() {
        for entry in std::fs::read_dir(&out)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), dest.join(entry.file_name()))
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
    }
    Ok(true)
}

/// The run's scratch directory, removed at the end.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy)]
enum Guest {
    Linux,
    Image,
}

fn replace_time(flags: &[String], secs: u32) -> Vec<String> {
    let mut v = flags.to_vec();
    if let Some(i) = v.iter().position(|f| f == "-t") {
        v[i + 1] = secs.to_string();
    }
    v
}

/// The figures the table shows, from a client's -J document.
fn figures(run: &mut Run, doc: &Value) {
    let end = &doc["end"];
    let udp = doc["start"]["test_start"]["protocol"] == "UDP";
    run.gbps = end["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9);
    run.retransmits = end["sum_sent"]["retransmits"].as_i64();
    run.cpu_client = end["cpu_utilization_percent"]["host_total"].as_f64();
    run.cpu_server = end["cpu_utilization_percent"]["remote_total"].as_f64();
    if udp {
        run.lost_percent = end["sum_received"]["lost_percent"].as_f64();
    }
}

fn table(a: &Args, runs: &[Run], ctx: &Ctx) -> String {
    let base = |case: &str| runs.iter().find(|r| r.case == case).and_then(|r| r.gbps);
    let (veth, linux) = (base("veth"), base("linux-guest"));
    let ratio = |g: Option<f64>, b: Option<f64>| match (g, b) {
        (Some(g), Some(b)) if b > 0.0 => format!("{:.2}", g / b),
        _ => "-".into(),
    };
    let mut s = String::new();
    s.push_str(&format!(
        "\nuniperf compare: {} s per run, -P {}{}{}, {} CPUs, Linux {}, QEMU {} ({})\n",
        a.time,
        a.parallel,
        if a.reverse { ", -R (the server sends)" } else { "" },
        if a.udp { format!(", UDP at {} per stream", a.bitrate.as_deref().unwrap_or("1G")) } else { String::new() },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        uname_r(),
        a.machine,
        a.accel
    ));
    if let Some(n) = &ctx.impairment_note {
        s.push_str(&format!("{n}\n"));
    }
    s.push('\n');
    let second = if a.udp { "loss %" } else { "retransmits" };
    s.push_str(&format!(
        "{:<46} {:>9} {:>12} {:>9} {:>9} {:>8} {:>8}\n",
        "case", "Gbit/s", second, "cpu cli%", "cpu srv%", "/veth", "/linux"
    ));
    s.push_str(&"-".repeat(107));
    s.push('\n');
    for r in runs {
        let opt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
        let second = if a.udp { opt(r.lost_percent, 3) } else { r.retransmits.map_or("-".into(), |x| x.to_string()) };
        s.push_str(&format!(
            "{:<46} {:>9} {:>12} {:>9} {:>9} {:>8} {:>8}{}\n",
            r.label,
            opt(r.gbps, 2),
            second,
            opt(r.cpu_client, 1),
            opt(r.cpu_server, 1),
            ratio(r.gbps, veth),
            ratio(r.gbps, linux),
            r.note.as_ref().map(|n| format!("  ({n})")).unwrap_or_default()
        ));
    }
    s.push_str("\nGbit/s at the receiver; CPU as iperf3 reports it (the guests' own figures where a guest is the\n");
    s.push_str("server; under TCG a guest's CPU is emulated). Ratios: this case / case veth, / case linux-guest.\n");
    if runs.iter().any(|r| r.case.starts_with("xen")) {
        s.push_str("The Xen rows run inside the Xen rig (Xen, dom0 and both guests on one emulated vCPU under QEMU\n");
        s.push_str("TCG): read them against each other, not against the rows above.\n");
    }
    s
}

fn document(a: &Args, runs: &[Run], ctx: &Ctx) -> Value {
    json!({
        "generated_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "uniperf": netstack::VERSION,
        "kernel": uname_r(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "settings": {
            "time": a.time, "parallel": a.parallel, "reverse": a.reverse, "udp": a.udp,
            "bitrate": a.bitrate, "machine": a.machine, "accel": a.accel, "mem_mb": a.mem,
            "delay_ms": a.delay, "loss_pct": a.loss, "rate": a.rate,
            "impairment": ctx.netem.as_ref().map(|n| n.join(" ")),
            "impairment_note": ctx.impairment_note,
        },
        "runs": runs.iter().map(|r| json!({
            "case": r.case,
            "label": r.label,
            "gbps": r.gbps,
            "retransmits": r.retransmits,
            "lost_percent": r.lost_percent,
            "cpu_client_percent": r.cpu_client,
            "cpu_server_percent": r.cpu_server,
            "commands": r.commands,
            "note": r.note,
            "client_json": r.client_json,
        })).collect::<Vec<_>>(),
    })
}

fn bar_chart(path: &Path, a: &Args, runs: &[Run]) -> Result<()> {
    crate::plot::register_fonts();
    let bars: Vec<(String, f64)> = runs.iter().filter_map(|r| Some((r.label.clone(), r.gbps?))).collect();
    let title = format!(
        "uniperf compare: -t {} -P {}{}{} (Gbit/s at the receiver)",
        a.time,
        a.parallel,
        if a.reverse { " -R" } else { "" },
        if a.udp { " -u" } else { "" }
    );
    let size = (1000u32, 120 + 60 * bars.len().max(1) as u32);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => draw_bars(SVGBackend::new(path, size).into_drawing_area(), &title, &bars),
        _ => draw_bars(BitMapBackend::new(path, size).into_drawing_area(), &title, &bars),
    }
}

fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    bars: &[(String, f64)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(0.1) * 1.15;
    let font = "sans-serif";
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (font, 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0.0..max, (0..bars.len().saturating_sub(1)).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("Gbit/s")
        .label_style((font, 14))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, g))| {
            let colour = crate::plot::PALETTE[i % crate::plot::PALETTE.len()];
            Rectangle::new([(0.0, SegmentValue::Exact(i)), (*g, SegmentValue::Exact(i + 1))], colour.filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, (_, g))| Text::new(format!(" {g:.2}"), (*g, SegmentValue::CenterOf(i)), (font, 14))),
        )
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

// ---- processes and namespaces -------------------------------------------------------------

/// A network namespace made for one case, removed (with its devices) when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Result<Netns> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("upc-{}-{tag}{n}", std::process::id());
        run_checked(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run_checked(&v)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run_checked(&v).map(|_| ())
    }

    fn tap(&self, dev: &str, addr: &str) -> Result<()> {
        self.ip(&["tuntap", "add", "dev", dev, "mode", "tap"])?;
        self.ip(&["addr", "add", addr, "dev", dev])?;
        self.ip(&["link", "set", dev, "txqueuelen", "10000", "up"])
    }

    /// br0 at 198.18.0.1/24 with `taps` as its ports.
    fn bridge(&self, taps: &[&str]) -> Result<()> {
        self.ip(&["link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])?;
        self.ip(&["addr", "add", "198.18.0.1/24", "dev", "br0"])?;
        for t in taps {
            self.ip(&["tuntap", "add", "dev", t, "mode", "tap"])?;
            self.ip(&["link", "set", t, "master", "br0"])?;
            self.ip(&["link", "set", t, "txqueuelen", "10000", "up"])?;
        }
        self.ip(&["link", "set", "br0", "up"])
    }

    fn spawn(&self, argv: &[&str], out: &Path) -> Result<Child> {
        let file = std::fs::File::create(out)?;
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", argv.join(" ")))
    }

    fn wait_for_port(&self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self.exec(&["ss", "-Htln", &format!("sport = :{port}")])?;
            if !out.stdout.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nothing listens on port {port} in {}", self.name)
    }

    /// tcpdump of `dev` (headers only) into `path` until dropped.
    fn capture(&self, dev: &str, path: &Path) -> Result<Capture> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "tcpdump", "-i", dev, "-s", "128", "-B", "65536", "-U", "-w"])
            .arg(path)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start tcpdump")?;
        std::thread::sleep(Duration::from_millis(500));
        Ok(Capture(Kill(child)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A child stopped (SIGTERM, then SIGKILL) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rig's dom0 script for case 6 (`@FLAGS@`: iperf3's flags, checked to be plain words;
/// `@LIMIT@`: seconds each iperf3 may take). Every file it writes comes back to the host.
const XEN_SCRIPT: &str = r#". /rig/lib.sh
cd "$RIG_OUT" || exit 125
xl.sh --role server --vif-script vif-sh --timeout 900 -- -s --ip 198.18.0.2/24 >server.console 2>server.xlsh &
SERVER=$!
if rig_wait_for server.console "ready: listening on 198.18.0.2:5201" 120; then
    timeout @LIMIT@ iperf3 -c 198.18.0.2 -J @FLAGS@ >uniperf.json 2>uniperf.err
else
    echo "the server domU printed no readiness line within 120 s" >uniperf.err
fi
rig_ship uniperf.json uniperf.err server.console
xl destroy uniperf-server >/dev/null 2>&1
wait $SERVER
if linux-domu start linux-ref 198.18.0.4/24 00:16:3e:18:00:04 >linux.out 2>&1; then
    timeout @LIMIT@ iperf3 -c 198.18.0.4 -J @FLAGS@ >linux.json 2>linux.err
else
    echo "the Linux domU did not start: $(tail -n 3 linux.out | tr '\n' ' ')" >linux.err
fi
linux-domu stop linux-ref >/dev/null 2>&1
rig_ship linux.json linux.err linux.out
"#;

/// A running tcpdump; dropping it stops the capture (SIGTERM flushes the file).
struct Capture(#[allow(dead_code)] Kill);

fn spawn_host(argv: &[String], out: &Path) -> Result<Child> {
    let file = std::fs::File::create(out)?;
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", argv[0]))
}

fn wait_child(child: &mut Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() { Ok(()) } else { Err(anyhow!("exited with {status}")) };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(path).unwrap_or_default();
    let tail: String = tail.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
    bail!("'{needle}' did not appear within {} s; output ends:\n{tail}", limit.as_secs())
}

fn run_checked(argv: &[&str]) -> Result<std::process::Output> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| format!("cannot run {}", argv[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

fn netem_available() -> bool {
    let Ok(ns) = Netns::new("q") else { return false };
    ns.ip(&["link", "add", "d0", "type", "dummy"]).is_ok()
        && ns.exec(&["tc", "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"]).is_ok()
}

fn tsc_khz() -> Option<u64> {
    let f = std::fs::File::open("/proc/cpuinfo").ok()?;
    BufReader::new(f).lines().map_while(Result::ok).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != "cpu MHz" {
            return None;
        }
        Some((v.trim().parse::<f64>().ok()? * 1000.0) as u64)
    })
}

fn uname_r() -> String {
    let mut s = String::new();
    let _ = std::fs::File::open("/proc/sys/kernel/osrelease").and_then(|mut f| f.read_to_string(&mut s));
    s.trim().to_string()
}

/// The first JSON document that starts a line of a console log.
fn first_json(text: &str) -> Option<Value> {
    let text = text.replace('\r', "");
    let mut at = 0;
    while let Some(off) = text[at..].find('{') {
        let start = at + off;
        if start == 0 || text.as_bytes()[start - 1] == b'\n' {
            let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
            if let Some(Ok(v)) = stream.next() {
                return Some(v);
            }
        }
        at = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rig_leaves_its_files_behind() {
        let base = std::env::temp_dir().join(format!("uniperf-keep-test.{}", std::process::id()));
        let (work, dest) = (base.join("work"), base.join("kept"));
        std::fs::create_dir_all(work.join("xen-rig")).unwrap();
        assert!(!keep_rig_files(&base.join("nothing"), &dest).unwrap());
        assert!(!dest.exists());
        std::fs::write(work.join("xen-rig.log"), "rig: timed out\n").unwrap();
        std::fs::write(work.join("xen-rig/server.console"), "uniperf: ready\n").unwrap();
        assert!(keep_rig_files(&work, &dest).unwrap());
        assert_eq!(std::fs::read_to_string(dest.join("rig.log")).unwrap(), "rig: timed out\n");
        assert_eq!(std::fs::read_to_string(dest.join("server.console")).unwrap(), "uniperf: ready\n");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
