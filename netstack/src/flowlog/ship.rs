//! Getting a flow log out of wherever it was recorded: cutting the probe's samples into one
//! log per test (labelled with iperf3 stream ids), and sending a log to `uniperf collect` over
//! TCP with the platform's own smoltcp interface, so a unikernel's logs need no console.
//!
//! Wire format of one upload: one header line ([`ShipHeader`]), then the log exactly as it
//! would be on disk (CSV with its header line, or JSON Lines), then FIN.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddrV4;

use super::{Event, FlowId, FlowSample, FlowTracker, Format, ProbeConfig, RowWriter, Sampling};
use crate::driver::{self, Platform, Role, RoleIo, Stack};
use crate::machine::Machine;
use crate::options::FlowLogOptions;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};

/// First word of an upload's header line.
pub const MAGIC: &str = "uniperf-flowlog";
/// Version of the upload framing (not of the log schema, which docs/flowlog.md versions).
pub const VERSION: u32 = 1;
/// Send buffer of the upload socket: enough to keep a LAN path busy without an RTT stall.
const SHIP_TX_BUF: usize = 1024 * 1024;

/// `csv` or `jsonl`: in headers and as a file extension.
pub fn format_name(f: Format) -> &'static str {
    match f {
        Format::Csv => "csv",
        Format::Jsonl => "jsonl",
    }
}

/// The probe settings for `--flowlog-interval`, holding at most `max_samples` per test.
pub fn probe_config(o: &FlowLogOptions, max_samples: usize) -> ProbeConfig {
    let sampling = if o.interval_ms == 0 { Sampling::EveryAck } else { Sampling::Interval(o.interval_ms) };
    ProbeConfig { sampling, max_samples, ..ProbeConfig::default() }
}

fn flow_of(local: &IpEndpoint, remote: &IpEndpoint) -> Option<FlowId> {
    match (local.addr, remote.addr) {
        (IpAddress::Ipv4(l), IpAddress::Ipv4(r)) => {
            Some(FlowId::new(SocketAddrV4::new(l, local.port), SocketAddrV4::new(r, remote.port)))
        }
        _ => None,
    }
}

/// One test's log, taken out of `tracker` (which starts afresh for the next test with `cfg`):
/// every flow gets its `final` row at `t_us`, and rows of the data streams in `streams`
/// ((iperf3 id, local, remote), as the roles report them) carry their stream id, also rows
/// taken before the role knew which stream a connection was.
pub struct TestLog {
    pub samples: Vec<FlowSample>,
    /// Samples the probe could not keep (its `max_samples` was reached).
    pub dropped: u64,
}

pub fn take_test_log(tracker: &mut FlowTracker, streams: &[(i64, IpEndpoint, IpEndpoint)], t_us: u64) -> TestLog {
    let cfg = *tracker.config();
    let mut old = core::mem::replace(tracker, FlowTracker::new(cfg));
    let labels: Vec<(FlowId, i64)> = streams.iter().filter_map(|(id, l, r)| Some((flow_of(l, r)?, *id))).collect();
    for (flow, id) in &labels {
        old.label_flow(*flow, *id);
    }
    old.finish(t_us);
    let dropped = old.dropped_samples();
    let mut samples = old.take_samples();
    for s in samples.iter_mut() {
        if let Some((_, id)) = labels.iter().find(|(f, _)| *f == s.flow) {
            s.stream = *id;
        }
    }
    TestLog { samples, dropped }
}

/// Appends `samples[from..]` in `format` to `out` until it holds about `max_bytes`; returns
/// the index of the first sample not written.
pub fn write_some(
    rows: &mut RowWriter,
    samples: &[FlowSample],
    from: usize,
    out: &mut Vec<u8>,
    max_bytes: usize,
) -> usize {
    let mut i = from;
    while i < samples.len() && out.len() < max_bytes {
        rows.write(&samples[i], out);
        i += 1;
    }
    i
}

/// A whole log in `format` (header line, then one row per sample), handed to `out` in chunks
/// of about `chunk` bytes: how a file or a console gets a log without holding it all as text.
pub fn write_chunks<E>(
    format: Format,
    samples: &[FlowSample],
    chunk: usize,
    mut out: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut rows = RowWriter::new(format);
    let mut buf = Vec::with_capacity(chunk + 1024);
    rows.header(&mut buf);
    let mut next = 0;
    loop {
        next = write_some(&mut rows, samples, next, &mut buf, chunk);
        if buf.is_empty() {
            return Ok(());
        }
        out(&buf)?;
        buf.clear();
    }
}

/// What an upload says about itself, as one line:
/// `uniperf-flowlog 1 role=server test=2 format=csv samples=12345 dropped=0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipHeader {
    /// `server` or `client`.
    pub role: String,
    /// 1 for the first test the sender served or ran.
    pub test: u32,
    pub format: Format,
    /// Rows that follow (the CSV header line not counted).
    pub samples: u64,
    /// Rows the probe had to drop (memory limit): the log is incomplete if non-zero.
    pub dropped: u64,
}

impl ShipHeader {
    /// The header line, newline included.
    pub fn to_line(&self) -> String {
        format!(
            "{MAGIC} {VERSION} role={} test={} format={} samples={} dropped={}\n",
            self.role,
            self.test,
            format_name(self.format),
            self.samples,
            self.dropped
        )
    }

    /// Parses a header line (with or without its newline). Errors name what is wrong.
    pub fn parse(line: &str) -> Result<ShipHeader, String> {
        let mut words = line.trim_end_matches(['\r', '\n']).split(' ');
        if words.next() != Some(MAGIC) {
            return Err(format!("not a uniperf flow-log upload (the first line must start with '{MAGIC}')"));
        }
        match words.next().map(|v| v.parse::<u32>()) {
            Some(Ok(VERSION)) => {}
            Some(Ok(v)) => return Err(format!("upload version {v} is not supported (this build speaks {VERSION})")),
            _ => return Err(String::from("the header has no version number")),
        }
        let (mut role, mut test, mut format, mut samples, mut dropped) = (None, None, None, None, 0);
        for w in words.filter(|w| !w.is_empty()) {
            let (k, v) = w.split_once('=').ok_or_else(|| format!("header field '{w}' is not KEY=VALUE"))?;
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("header field '{k}': '{v}' is not a number"));
            match k {
                "role" if matches!(v, "server" | "client") => role = Some(String::from(v)),
                "role" => return Err(format!("header field 'role': '{v}' is not server or client")),
                "test" => test = Some(u32::try_from(number(v)?).map_err(|_| String::from("test number too large"))?),
                "format" => format = Some(Format::parse(v).map_err(|e| format!("header field 'format': {e}"))?),
                "samples" => samples = Some(number(v)?),
                "dropped" => dropped = number(v)?,
                _ => {} // newer senders may add fields
            }
        }
        Ok(ShipHeader {
            role: role.ok_or("the header lacks role=")?,
            test: test.ok_or("the header lacks test=")?,
            format: format.ok_or("the header lacks format=")?,
            samples: samples.ok_or("the header lacks samples=")?,
            dropped,
        })
    }
}

/// How an upload went, as the sender saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShipReport {
    pub samples: u64,
    /// Bytes sent, header line included.
    pub bytes: u64,
    /// SYN to connection established.
    pub connect: Duration,
    /// Connection established to the last byte and FIN acknowledged.
    pub transfer: Duration,
    /// Part of `transfer` after the last byte was queued: sending what was buffered, and the
    /// collector's close.
    pub drain: Duration,
}

impl ShipReport {
    pub fn samples_per_sec(&self) -> u64 {
        let us = self.transfer.total_micros().max(1);
        (self.samples as u128 * 1_000_000 / us as u128) as u64
    }
}

/// Where to send and how long to try.
#[derive(Clone, Copy, Debug)]
pub struct Collector {
    pub endpoint: IpEndpoint,
    /// Local port of the upload connection (pick one no role socket uses).
    pub local_port: u16,
    /// Give up after this long in total (connect, transfer and close).
    pub timeout: Duration,
}

/// One log on its way to a collector, as a [`Role`] the platform's loop drives: connect, stream
/// the header line and the rows (formatted a chunk at a time, so the interface sends between
/// chunks), close, and be done once the collector has acknowledged everything and closed its
/// side (so it has read it all), or on error or timeout.
pub struct Upload<'a> {
    to: Collector,
    samples: &'a [FlowSample],
    rows: RowWriter,
    /// Bytes formatted and not yet all in the socket, from `offset`.
    staged: Vec<u8>,
    offset: usize,
    /// Next sample to format.
    next: usize,
    bytes: u64,
    handle: Option<SocketHandle>,
    start: Option<Instant>,
    established: Option<Instant>,
    closed: Option<Instant>,
    outcome: Option<Result<ShipReport, String>>,
}

impl<'a> Upload<'a> {
    pub fn new(to: Collector, header: &ShipHeader, samples: &'a [FlowSample]) -> Self {
        let rows = RowWriter::new(header.format);
        let mut staged = Vec::with_capacity(64 * 1024);
        staged.extend_from_slice(header.to_line().as_bytes());
        rows.header(&mut staged);
        Upload {
            to,
            samples,
            rows,
            staged,
            offset: 0,
            next: 0,
            bytes: 0,
            handle: None,
            start: None,
            established: None,
            closed: None,
            outcome: None,
        }
    }

    /// How it went, once [`Role::done`].
    pub fn outcome(&self) -> Option<&Result<ShipReport, String>> {
        self.outcome.as_ref()
    }

    /// The upload socket is no longer needed: it leaves the set (reset first after a failure).
    pub fn remove(&mut self, sockets: &mut SocketSet<'static>) {
        if let Some(h) = self.handle.take() {
            sockets.remove(h);
        }
    }

    fn fail(&mut self, why: String, sock: &mut tcp::Socket) {
        sock.abort();
        self.outcome = Some(Err(why));
    }

    fn step(&mut self, now: Instant, sock: &mut tcp::Socket) {
        if self.established.is_none() {
            match sock.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {}
                tcp::State::Closed => {
                    return self.fail(format!("the collector {} refused the connection", self.to.endpoint), sock);
                }
                _ => self.established = Some(now),
            }
        }
        if self.established.is_some() && self.closed.is_none() {
            let mut formatted = false;
            while sock.can_send() {
                if self.offset == self.staged.len() {
                    if formatted {
                        break;
                    }
                    formatted = true;
                    self.staged.clear();
                    self.offset = 0;
                    self.next = write_some(&mut self.rows, self.samples, self.next, &mut self.staged, 60 * 1024);
                    if self.staged.is_empty() {
                        break;
                    }
                }
                match sock.send_slice(&self.staged[self.offset..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.offset += n;
                        self.bytes += n as u64;
                    }
                    Err(_) => return self.fail(String::from("the collector connection broke during the upload"), sock),
                }
            }
            if self.offset == self.staged.len() && self.next == self.samples.len() {
                sock.close();
                self.closed = Some(now);
            }
        }
        if let Some(closed_at) = self.closed {
            if matches!(sock.state(), tcp::State::TimeWait | tcp::State::Closed) && sock.send_queue() == 0 {
                let start = self.start.unwrap_or(now);
                let t0 = self.established.unwrap_or(start);
                self.outcome = Some(Ok(ShipReport {
                    samples: self.samples.len() as u64,
                    bytes: self.bytes,
                    connect: t0 - start,
                    transfer: now - t0,
                    drain: now - closed_at,
                }));
                return;
            }
            if sock.state() == tcp::State::Closed {
                return self.fail(String::from("the collector reset the connection"), sock);
            }
        }
        if self.start.is_some_and(|s| now >= s + self.to.timeout) {
            let what = if self.established.is_none() {
                "no connection"
            } else if self.closed.is_some() {
                "sent everything but the collector did not close"
            } else {
                "upload unfinished"
            };
            let why = format!(
                "the upload to {} timed out after {} s ({what}, {} bytes sent)",
                self.to.endpoint,
                self.to.timeout.secs(),
                self.bytes
            );
            self.fail(why, sock);
        }
    }
}

impl Role for Upload<'_> {
    fn poll(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        let handle = match self.handle {
            Some(h) => h,
            None => {
                let mut sock = tcp::Socket::new(
                    tcp::SocketBuffer::new(alloc::vec![0; 4096]),
                    tcp::SocketBuffer::new(alloc::vec![0; SHIP_TX_BUF]),
                );
                sock.set_nagle_enabled(false);
                sock.set_congestion_control(tcp::CongestionControl::Reno);
                self.start = Some(now);
                if let Err(e) = sock.connect(io.iface.context(), self.to.endpoint, self.to.local_port) {
                    self.outcome = Some(Err(format!("cannot connect to the collector {}: {e}", self.to.endpoint)));
                    return false;
                }
                let h = io.sockets.add(sock);
                self.handle = Some(h);
                h
            }
        };
        let before = (self.bytes, self.established, self.closed);
        let sock = io.sockets.get_mut::<tcp::Socket>(handle);
        self.step(now, sock);
        (self.bytes, self.established, self.closed) != before || self.outcome.is_some()
    }

    fn poll_at(&self) -> Option<Instant> {
        // Poll at least every millisecond while sending: the socket takes more as ACKs come.
        self.start.map(|s| (s + self.to.timeout).min(s + Duration::from_millis(1)))
    }

    fn done(&self) -> bool {
        self.outcome.is_some()
    }

    fn flushing(&self, sockets: &SocketSet<'static>) -> bool {
        // A failed upload's RST must leave before the socket is removed.
        self.handle.is_some_and(|h| {
            let s = sockets.get::<tcp::Socket>(h);
            !matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait)
        })
    }
}

/// Sends one log to a collector with the platform's own stack and loop, then removes the
/// upload's socket. The stack's other sockets are served meanwhile. The upload passes through
/// the flow probe, which starts afresh afterwards so the next test's log holds no upload rows.
pub fn ship<D: Device>(
    stack: &mut Stack<D>,
    machine: &mut dyn Machine,
    platform: &mut dyn Platform,
    to: &Collector,
    header: &ShipHeader,
    samples: &[FlowSample],
) -> Result<ShipReport, String> {
    let mut upload = Upload::new(*to, header, samples);
    driver::run(stack, &mut upload, machine, platform, &mut |_, _, _, _| {});
    upload.remove(&mut stack.sockets);
    let tracker = stack.dev.tracker();
    *tracker = FlowTracker::new(*tracker.config());
    upload.outcome.unwrap_or_else(|| Err(String::from("the upload ended without an outcome")))
}

/// Rows of `samples` that are `final` rows (one per flow): a quick sanity figure for logs.
pub fn final_rows(samples: &[FlowSample]) -> usize {
    samples.iter().filter(|s| s.event == Event::Final).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = ShipHeader { role: "server".into(), test: 3, format: Format::Jsonl, samples: 12, dropped: 1 };
        let line = h.to_line();
        assert_eq!(line, "uniperf-flowlog 1 role=server test=3 format=jsonl samples=12 dropped=1\n");
        assert_eq!(ShipHeader::parse(&line).unwrap(), h);
        assert_eq!(
            ShipHeader::parse("uniperf-flowlog 1 role=client test=1 format=csv samples=0 extra=x").unwrap().role,
            "client"
        );
    }

    #[test]
    fn bad_headers_say_why() {
        for (line, want) in [
            ("GET / HTTP/1.1", "not a uniperf"),
            ("uniperf-flowlog 2 role=server", "version 2"),
            ("uniperf-flowlog 1 role=peer test=1 format=csv samples=1", "role"),
            ("uniperf-flowlog 1 role=server test=x format=csv samples=1", "'x'"),
            ("uniperf-flowlog 1 role=server test=1 format=xml samples=1", "xml"),
            ("uniperf-flowlog 1 role=server test=1 format=csv", "samples="),
        ] {
            let e = ShipHeader::parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}
