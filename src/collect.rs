//! `uniperf collect`: receives flow logs that unikernel images send over TCP
//! (`--flowlog-collect ADDR:PORT` on their command line) and stores one file per upload, so a
//! VM's logs never have to crawl out through its console. Each upload is a header line
//! ([`ShipHeader`]) followed by the log as it would be on disk; the collector checks it,
//! measures how fast it came, and writes `DIR/<role>-<sender IP>-test<N>.<csv|jsonl>`.

use crate::flowlog_cmd::parse_subcommand;
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use netstack::flowlog::ship::{ShipHeader, format_name};
use netstack::flowlog::{Format, parse_log};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A connection that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest header line accepted.
const MAX_HEADER: u64 = 1024;

/// Receives the flow logs of uniperf images started with --flowlog-collect ADDR:PORT.
///
/// Each is written to DIR/<role>-<sender IP>-test<N>.<csv|jsonl> (replacing a file of that
/// name). One line per log goes to stdout: sender, role, test, samples, bytes, seconds and
/// samples/s as received.
#[derive(Parser)]
#[command(name = "uniperf collect", disable_version_flag = true)]
struct Args {
    /// Address to listen on (e.g. 198.18.0.1:6000)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Directory for the logs (created if missing)
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    dir: PathBuf,
    /// Exit after N logs (default: run until --timeout or killed)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// Give up after SECS seconds; exits 1 if fewer than --count logs came
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    timeout: Option<Duration>,
}

fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 1e7 => Ok(Duration::from_secs_f64(s)),
        _ => Err("not a positive number of seconds".into()),
    }
}

/// One received log, as measured here.
#[derive(Debug)]
pub struct Received {
    pub peer: SocketAddr,
    pub header: ShipHeader,
    pub path: PathBuf,
    /// Rows received (CSV header line not counted).
    pub samples: u64,
    /// Bytes after the header line.
    pub bytes: u64,
    /// From the header line's arrival to the end of the upload.
    pub elapsed: Duration,
}

impl Received {
    pub fn samples_per_sec(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some(a) = parse_subcommand::<Args>("collect", args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&a.dir).with_context(|| format!("cannot create directory '{}'", a.dir.display()))?;
    let listener = TcpListener::bind(a.listen).with_context(|| format!("cannot listen on {}", a.listen))?;
    eprintln!("uniperf collect: listening on {}; logs go to {}", a.listen, a.dir.display());

    // One thread per upload (a server and a client image may send at once); results come back
    // here, where the counting and the deadline are.
    let (tx, rx) = mpsc::channel::<Result<Received, String>>();
    let dir = a.dir.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            let (tx, dir) = (tx.clone(), dir.clone());
            std::thread::spawn(move || {
                let peer = stream.peer_addr().map(|p| p.to_string()).unwrap_or_else(|_| "?".into());
                let r = receive(stream, &dir).map_err(|e| format!("upload from {peer}: {e:#}"));
                let _ = tx.send(r);
            });
        }
    });

    let deadline = a.timeout.map(|t| Instant::now() + t);
    let (mut got, mut failed) = (0u32, 0u32);
    loop {
        if a.count.is_some_and(|n| got + failed >= n) {
            break;
        }
        let msg = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(_) => {
                    let want = a.count.map(|n| format!(" of {n}")).unwrap_or_default();
                    eprintln!(
                        "uniperf collect: timed out after {:.0} s with {got}{want} logs",
                        a.timeout.unwrap_or_default().as_secs_f64()
                    );
                    return Ok(if a.count.is_some() || failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS });
                }
            },
            None => rx.recv().map_err(|_| anyhow!("the listener stopped"))?,
        };
        match msg {
            Ok(r) => {
                got += 1;
                let secs = r.elapsed.as_secs_f64();
                // Below a millisecond the clock says more about scheduling than about the link.
                let rate = if secs >= 1e-3 {
                    format!("{:.0} samples/s ({:.1} Mbit/s)", r.samples_per_sec(), r.bytes as f64 * 8.0 / secs / 1e6)
                } else {
                    "too quick to time".to_string()
                };
                println!(
                    "uniperf collect: {} {} test {}: {} samples, {} bytes in {secs:.3} s = {rate} -> {}",
                    r.peer.ip(),
                    r.header.role,
                    r.header.test,
                    r.samples,
                    r.bytes,
                    r.path.display()
                );
                if r.header.dropped > 0 {
                    eprintln!(
                        "uniperf collect: warning - {} {} test {}: the sender dropped {} samples (memory limit)",
                        r.peer.ip(),
                        r.header.role,
                        r.header.test,
                        r.header.dropped
                    );
                }
                let _ = std::io::stdout().flush();
            }
            Err(e) => {
                failed += 1;
                eprintln!("uniperf collect: error - {e}");
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Reads one upload into its file and checks it: complete (as many rows as the header
/// promised) and well-formed (every row parses).
fn receive(stream: TcpStream, dir: &Path) -> Result<Received> {
    let peer = stream.peer_addr().context("no peer address")?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok();
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut line = String::new();
    (&mut reader).take(MAX_HEADER).read_line(&mut line).context("cannot read the header line")?;
    if !line.ends_with('\n') {
        bail!("no complete header line in the first {MAX_HEADER} bytes");
    }
    let started = Instant::now();
    let header = ShipHeader::parse(&line).map_err(|e| anyhow!("{e}"))?;
    let name = format!("{}-{}-test{}.{}", header.role, peer.ip(), header.test, format_name(header.format));
    let path = dir.join(name);
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).with_context(|| format!("cannot create '{}'", path.display()))?,
    );
    let (mut bytes, mut newlines) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context(format!("reading the log after {bytes} bytes")),
        };
        bytes += n as u64;
        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        file.write_all(&buf[..n]).with_context(|| format!("cannot write '{}'", path.display()))?;
    }
    let elapsed = started.elapsed();
    file.flush().with_context(|| format!("cannot write '{}'", path.display()))?;
    drop(file);
    // Closing our side tells the sender it may forget the log.
    drop(reader);
    let samples = if header.format == Format::Csv { newlines.saturating_sub(1) } else { newlines };
    if samples != header.samples {
        bail!(
            "incomplete log from {} ({} test {}): the header promised {} samples, {} arrived; kept in {}",
            peer.ip(),
            header.role,
            header.test,
            header.samples,
            samples,
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read back '{}'", path.display()))?;
    let rows = parse_log(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if rows.len() as u64 != samples {
        bail!("{}: {} rows parse, {} lines arrived", path.display(), rows.len(), samples);
    }
    Ok(Received { peer, header, path, samples, bytes, elapsed })
}
