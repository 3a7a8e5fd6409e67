//! `uniperf flowlog --pcap FILE`: turns a packet capture (e.g. `tcpdump -w` of a stock iperf3
//! run) into the flow-log format of uniperf's own probe (schema in docs/flowlog.md), so stock
//! Linux flows can be plotted and compared with ours on the same axes.
//!
//! Two passes over the file: the first decides, per connection, which side is "local" and
//! which iperf3 stream it is; the second feeds every frame to a `FlowTracker`.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use netstack::flowlog::{
    Dir, FlowId, FlowSummary, FlowTracker, Format, ProbeConfig, RowWriter, Sampling, SegmentInfo, TrackerStats,
    peek_segment,
};
use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError, TsResolution};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

/// Converts a packet capture into uniperf's flow log (docs/flowlog.md).
///
/// A per-flow summary goes to standard error.
#[derive(Clone, Debug, PartialEq, Parser)]
#[command(name = "uniperf flowlog", disable_version_flag = true)]
pub struct FlowlogArgs {
    /// Capture to read: classic pcap or pcapng (tcpdump -w, dumpcap), with Ethernet, Linux
    /// cooked SLL/SLL2 or raw IPv4 frames
    #[arg(long, value_name = "FILE")]
    pub pcap: String,
    /// Write the log here (default: standard output)
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<String>,
    /// csv or jsonl (default: from OUT's extension, else csv)
    #[arg(long, value_name = "F", value_parser = Format::parse)]
    pub format: Option<Format>,
    /// The address whose view the log takes (default per flow: the data sender, else the
    /// connection's initiator)
    #[arg(long, value_name = "IP")]
    pub local: Option<Ipv4Addr>,
    /// One sample per flow every MS ms instead of one per ACK
    #[arg(long = "interval", value_name = "MS", value_parser = clap::value_parser!(u32).range(1..))]
    pub interval_ms: Option<u32>,
    /// t_us in Unix time instead of time since the first packet
    #[arg(long)]
    pub abs_time: bool,
}

impl FlowlogArgs {
    /// `--format`, else what OUT's extension says, else CSV.
    pub fn format(&self) -> Format {
        self.format.unwrap_or_else(|| self.output.as_deref().map_or(Format::Csv, Format::from_path))
    }
}

/// Parses the arguments of `uniperf NAME ARGS…` (a host subcommand) into `T`: `Ok(None)` once
/// `-h`/`--help` has been printed. Bad arguments are an error of one sentence, so `cli::main`
/// exits 1 as for every other usage error (clap's own `exit` would give 2).
pub(crate) fn parse_subcommand<T: Parser>(name: &str, args: &[String]) -> Result<Option<T>> {
    let argv = std::iter::once(format!("uniperf {name}")).chain(args.iter().cloned());
    match T::try_parse_from(argv) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            e.print().context("cannot print the help")?;
            Ok(None)
        }
        Err(e) => {
            // clap says "error: WHAT\n[more lines of WHAT]\n\n[tip]\n\nUsage: …": keep WHAT, on one line.
            let text = e.to_string();
            let what: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let what = what.join(" ");
            let what = what.strip_prefix("error: ").unwrap_or(&what);
            bail!("{name}: parameter error - {what} (see uniperf {name} --help)")
        }
    }
}

/// `uniperf flowlog ARGS…`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some(a) = parse_subcommand::<FlowlogArgs>("flowlog", args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut out: Box<dyn Write> = match &a.output {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| format!("cannot create flow log '{path}'"))?))
        }
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let conv = convert(&a, &mut out)?;
    out.flush().context("cannot write the flow log")?;
    eprint!("{}", summary_text(&conv));
    Ok(ExitCode::SUCCESS)
}

/// What a conversion produced, besides the log itself.
#[derive(Clone, Debug)]
pub struct Conversion {
    pub flows: Vec<FlowSummary>,
    pub samples: u64,
    pub records: u64,
    pub stats: TrackerStats,
}

/// Reads `a.pcap` twice and writes the flow log to `out`.
pub fn convert(a: &FlowlogArgs, out: &mut dyn Write) -> Result<Conversion> {
    convert_from(a, || CaptureReader::open(&a.pcap), out)
}

/// [`convert`] of the capture `open` reads (from the start, each time it is called): a file, or
/// bytes in memory for the fuzzer (`fuzz/fuzz_targets/pcap.rs`).
pub fn convert_from<R: Read>(
    a: &FlowlogArgs,
    open: impl Fn() -> Result<CaptureReader<R>>,
    out: &mut dyn Write,
) -> Result<Conversion> {
    // Pass 1: who is who.
    let mut conns = Connections::default();
    let mut first_us = None;
    open()?.for_each_frame(|frame| {
        first_us.get_or_insert(frame.t_us);
        if let Some(ip) = ipv4_payload(frame.link, frame.data)
            && let Some(seg) = peek_segment(ip)
        {
            conns.observe(&seg, ip);
        }
        Ok(())
    })?;
    let roles = conns.decide(a.local);

    // Pass 2: track.
    let sampling = a.interval_ms.map_or(Sampling::EveryAck, Sampling::Interval);
    let cfg = ProbeConfig { sampling, max_samples: usize::MAX, max_flows: usize::MAX };
    let mut tracker = FlowTracker::new(cfg);
    for (local, remote, stream) in &roles.labels {
        tracker.label_flow(FlowId::new(*local, *remote), *stream);
    }
    let t0 = if a.abs_time { 0 } else { first_us.unwrap_or(0) };
    let mut rows = RowWriter::new(a.format());
    let mut text = Vec::new();
    rows.header(&mut text);
    let mut samples = 0u64;
    let mut records = 0u64;
    let mut last_t = 0;
    open()?.for_each_frame(|frame| {
        records += 1;
        let t = frame.t_us.saturating_sub(t0);
        last_t = last_t.max(t);
        let Some(ip) = ipv4_payload(frame.link, frame.data) else {
            return Ok(());
        };
        let Some(seg) = peek_segment(ip) else {
            tracker.on_ipv4(t, Dir::Rx, ip);
            return Ok(());
        };
        let dir = if roles.local.contains_key(&(seg.src, seg.dst)) { Dir::Tx } else { Dir::Rx };
        tracker.on_ipv4(t, dir, ip);
        if tracker.samples().len() >= 8192 {
            samples += drain(&mut tracker, &mut rows, &mut text);
            out.write_all(&text).context("cannot write the flow log")?;
            text.clear();
        }
        Ok(())
    })?;
    tracker.finish(last_t);
    samples += drain(&mut tracker, &mut rows, &mut text);
    out.write_all(&text).context("cannot write the flow log")?;
    Ok(Conversion { flows: tracker.flows().collect(), samples, records, stats: tracker.stats() })
}

fn drain(tracker: &mut FlowTracker, rows: &mut RowWriter, text: &mut Vec<u8>) -> u64 {
    let samples = tracker.take_samples();
    for s in &samples {
        rows.write(s, text);
    }
    samples.len() as u64
}

/// The per-flow summary printed to stderr.
pub fn summary_text(c: &Conversion) -> String {
    let mut s = format!(
        "uniperf flowlog: {} records, {} TCP segments ({} other, {} malformed), {} flows, {} samples\n",
        c.records,
        c.stats.tcp_segments,
        c.stats.ignored,
        c.stats.malformed,
        c.flows.len(),
        c.samples
    );
    let us = |v: Option<u32>| v.map_or("-".to_string(), |v| format!("{:.3}", f64::from(v) / 1000.0));
    for f in &c.flows {
        s.push_str(&format!(
            "  {} stream {}: sent {} B, acked {} B, received {} B; retransmits fast {} segs ({} B), timeout {} \
             segs ({} B); dupacks {}; RTT min/mean/max {}/{}/{} ms ({} samples); {} log rows\n",
            f.flow,
            f.stream,
            f.bytes_sent,
            f.bytes_acked,
            f.bytes_received,
            f.retx_fast_segs,
            f.retx_fast_bytes,
            f.retx_rto_segs,
            f.retx_rto_bytes,
            f.dupacks,
            us(f.rtt_min_us),
            us(f.rtt_mean_us),
            us(f.rtt_max_us),
            f.rtt_samples,
            f.samples,
        ));
    }
    s
}

/// The IPv4 packet inside a captured frame of `link`, if it carries one.
pub fn ipv4_payload(link: Link, data: &[u8]) -> Option<&[u8]> {
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_VLAN: u16 = 0x8100;
    let be16 = |b: &[u8], at: usize| b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    match link {
        Link::Ethernet => {
            let mut at = 12;
            let mut ethertype = be16(data, at)?;
            // One 802.1Q tag.
            if ethertype == ETHERTYPE_VLAN {
                at += 4;
                ethertype = be16(data, at)?;
            }
            (ethertype == ETHERTYPE_IPV4).then(|| data.get(at + 2..)).flatten()
        }
        Link::LinuxSll => (be16(data, 14)? == ETHERTYPE_IPV4).then(|| data.get(16..)).flatten(),
        Link::LinuxSll2 => (be16(data, 0)? == ETHERTYPE_IPV4).then(|| data.get(20..)).flatten(),
        Link::RawIp => (data.first()? >> 4 == 4).then_some(data),
    }
}

// ---------------------------------------------------------------------------------------------
// Deciding the local side and the stream ids

/// What pass 1 learns about one connection.
#[derive(Debug, Default)]
struct Conn {
    /// The endpoint that sent the first SYN (no ACK), if seen.
    initiator: Option<SocketAddrV4>,
    /// Order of that SYN in the file.
    syn_order: Option<u64>,
    first_src: Option<SocketAddrV4>,
    /// Payload bytes sent by the lower / higher endpoint of the key.
    bytes: [u64; 2],
    /// The initiator's first payload if it was a 37-byte iperf3 cookie.
    cookie: Option<[u8; 37]>,
    initiator_sent_data: bool,
}

#[derive(Default)]
struct Connections {
    conns: HashMap<(SocketAddrV4, SocketAddrV4), Conn>,
    syns: u64,
}

/// The outcome of pass 1: (src, dst) pairs sent by the local side, and stream labels.
struct Roles {
    local: HashMap<(SocketAddrV4, SocketAddrV4), ()>,
    labels: Vec<(SocketAddrV4, SocketAddrV4, i64)>,
}

fn key(a: SocketAddrV4, b: SocketAddrV4) -> (SocketAddrV4, SocketAddrV4) {
    if (a.ip().octets(), a.port()) <= (b.ip().octets(), b.port()) { (a, b) } else { (b, a) }
}

impl Connections {
    fn observe(&mut self, seg: &SegmentInfo, ip: &[u8]) {
        let k = key(seg.src, seg.dst);
        let c = self.conns.entry(k).or_default();
        c.first_src.get_or_insert(seg.src);
        if seg.syn && !seg.ack && c.initiator.is_none() {
            c.initiator = Some(seg.src);
            c.syn_order = Some(self.syns);
            self.syns += 1;
        }
        c.bytes[usize::from(seg.src != k.0)] += u64::from(seg.payload_len);
        if seg.payload_len > 0 && c.initiator == Some(seg.src) && !c.initiator_sent_data {
            c.initiator_sent_data = true;
            if seg.payload_len == 37
                && let Some(p) = ip.get(seg.payload_offset..seg.payload_offset + 37)
            {
                let mut cookie = [0u8; 37];
                cookie.copy_from_slice(p);
                c.cookie = Some(cookie);
            }
        }
    }

    fn decide(&self, local_ip: Option<Ipv4Addr>) -> Roles {
        let mut local = HashMap::new();
        for (&(a, b), c) in &self.conns {
            let by_ip = local_ip.and_then(|ip| {
                if *a.ip() == ip {
                    Some(a)
                } else if *b.ip() == ip {
                    Some(b)
                } else {
                    None
                }
            });
            let by_bytes = match c.bytes[0].cmp(&c.bytes[1]) {
                std::cmp::Ordering::Greater => Some(a),
                std::cmp::Ordering::Less => Some(b),
                std::cmp::Ordering::Equal => None,
            };
            let me = by_ip.or(by_bytes).or(c.initiator).or(c.first_src).unwrap_or(a);
            let other = if me == a { b } else { a };
            local.insert((me, other), ());
        }
        // iperf3 stream ids: connections sharing a cookie belong to one test; the first is
        // the control connection, then streams 1, 3, 4, … in SYN order. Without a cookie
        // (payload not captured) connections to the same server endpoint form the group.
        let mut groups: HashMap<Vec<u8>, Vec<(u64, SocketAddrV4, SocketAddrV4)>> = HashMap::new();
        for (&(a, b), c) in &self.conns {
            let (Some(init), Some(order)) = (c.initiator, c.syn_order) else { continue };
            let server = if init == a { b } else { a };
            let group = match c.cookie {
                Some(cookie) => cookie.to_vec(),
                None => format!("{server}").into_bytes(),
            };
            groups.entry(group).or_default().push((order, init, server));
        }
        let mut labels = Vec::new();
        for members in groups.values_mut() {
            members.sort();
            for (i, &(_, init, server)) in members.iter().enumerate() {
                let stream = if i == 0 { -1 } else { netstack::stream::stream_id(i - 1) };
                // Label the flow whichever way round it is seen.
                let flow = if local.contains_key(&(init, server)) { (init, server) } else { (server, init) };
                labels.push((flow.0, flow.1, stream));
            }
        }
        Roles { local, labels }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading captures (the pcap and pcapng formats are pcap-file's)

/// The link layers whose frames we unwrap to IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet, with or without one 802.1Q tag (link type 1).
    Ethernet,
    /// Linux cooked capture v1 (113), e.g. `tcpdump -i any`.
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
    /// Raw IP (101) or IPv4 (228).
    RawIp,
}

impl Link {
    pub fn from_datalink(link: DataLink) -> Result<Link> {
        // The upper bits of pcap's link-type field carry FCS information.
        match DataLink::from(u32::from(link) & 0x0fff_ffff) {
            DataLink::ETHERNET => Ok(Link::Ethernet),
            DataLink::LINUX_SLL => Ok(Link::LinuxSll),
            DataLink::LINUX_SLL2 => Ok(Link::LinuxSll2),
            DataLink::RAW | DataLink::IPV4 => Ok(Link::RawIp),
            other => bail!(
                "unsupported link type {} (supported: Ethernet 1, Linux cooked SLL 113 and SLL2 276, raw IP 101/228)",
                u32::from(other)
            ),
        }
    }
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Capture time, µs since the Unix epoch.
    pub t_us: u64,
    pub link: Link,
    /// The captured bytes (possibly cut to the snap length).
    pub data: &'a [u8],
}

/// A pcapng interface: its link layer, clock and snap length.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: Link,
    /// `if_tsresol`: time stamps count 10^-n s, or 2^-n s if the top bit is set.
    tsresol: u8,
    /// `if_tsoffset`: seconds to add to every time stamp.
    tsoffset_s: i64,
    snaplen: u32,
}

impl Interface {
    fn new(idb: &InterfaceDescriptionBlock<'_>) -> Result<Interface> {
        let mut iface =
            Interface { link: Link::from_datalink(idb.linktype)?, tsresol: 6, tsoffset_s: 0, snaplen: idb.snaplen };
        for opt in &idb.options {
            match opt {
                InterfaceDescriptionOption::IfTsResol(r) => iface.tsresol = *r,
                InterfaceDescriptionOption::IfTsOffset(s) => iface.tsoffset_s = *s as i64,
                _ => {}
            }
        }
        Ok(iface)
    }

    /// µs since the Unix epoch of a time stamp of `ticks` units.
    fn t_us(&self, ticks: u64) -> u64 {
        let exp = u32::from(self.tsresol & 0x7f);
        let us = u128::from(ticks) * 1_000_000;
        let us = if self.tsresol & 0x80 == 0 {
            10u128.checked_pow(exp).map_or(0, |unit| us / unit)
        } else {
            us.checked_shr(exp).unwrap_or(0)
        };
        u64::try_from(us).unwrap_or(u64::MAX).saturating_add_signed(self.tsoffset_s.saturating_mul(1_000_000))
    }
}

enum Capture {
    Pcap { parser: PcapParser, link: Link, nanos: bool },
    PcapNg { parser: PcapNgParser },
}

/// A streaming reader of packet captures: classic pcap (both byte orders, µs and ns time
/// stamps) and pcapng (Enhanced, Simple and obsolete Packet Blocks; link type and time stamp
/// resolution per interface; several sections). Nothing in a file makes it panic: a truncated
/// or malformed file is an error naming the record (pcap) or block (pcapng) and what is wrong.
pub struct CaptureReader<R: Read> {
    capture: Capture,
    input: Window<R>,
    /// What the file is called in errors.
    origin: String,
}

/// Block type of a pcapng Section Header Block, the first four bytes of the file.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The longest record (pcap) or block (pcapng) read; a longer one is "cut short", as with
/// pcap-file's own readers, whose buffer is this long. It bounds what a corrupt length field
/// makes us buffer of a big file.
const MAX_RECORD: usize = 8_000_000;

/// What one read asks for at least.
const READ_CHUNK: usize = 64 * 1024;

/// The input as pcap-file's slice parsers want it: the unparsed bytes of a buffer that starts
/// small and grows only as far as one record needs. (pcap-file's readers allocate and zero
/// `MAX_RECORD` bytes each, which a capture of a few packets paid for in full.)
struct Window<R: Read> {
    input: R,
    buf: Vec<u8>,
    /// Where the unparsed bytes in `buf` start.
    start: usize,
}

impl<R: Read> Window<R> {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Whether anything is left to parse (reading more if the buffer is used up).
    fn has_more(&mut self) -> Result<bool, PcapError> {
        Ok(!self.bytes().is_empty() || self.read_more()? > 0)
    }

    /// Reads more after the unparsed bytes, for a record they hold only the start of: as many
    /// again (at least `READ_CHUNK`), so a long record takes few reads. The end of the input,
    /// or a record longer than `MAX_RECORD`, is `UnexpectedEof`.
    fn grow(&mut self) -> Result<(), PcapError> {
        match self.read_more()? {
            0 => Err(PcapError::IoError(std::io::ErrorKind::UnexpectedEof.into())),
            _ => Ok(()),
        }
    }

    fn read_more(&mut self) -> Result<usize, PcapError> {
        self.buf.drain(..self.start);
        self.start = 0;
        let want = self.buf.len().max(READ_CHUNK).min(MAX_RECORD.saturating_sub(self.buf.len()));
        (&mut self.input).take(want as u64).read_to_end(&mut self.buf).map_err(PcapError::IoError)
    }
}

impl CaptureReader<File> {
    pub fn open(path: &str) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open capture '{path}'"))?;
        let origin = format!("capture '{path}'");
        let reader = CaptureReader::new(file).context(origin.clone())?;
        Ok(CaptureReader { origin, ..reader })
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the file header (pcap) or first section header (pcapng).
    pub fn new(mut input: R) -> Result<Self> {
        // Enough to tell the format, and the whole header of a classic pcap.
        const PCAP_HEADER_LEN: u64 = 24;
        let mut head = Vec::new();
        (&mut input).take(PCAP_HEADER_LEN).read_to_end(&mut head).context("cannot read the capture")?;
        if head.len() < 4 {
            bail!("not a capture: only {} bytes long", head.len());
        }
        let pcapng = head[..4] == PCAPNG_MAGIC;
        if !pcapng {
            // The magic number first (padded, as the header parser wants all of it), then the length.
            let mut padded = head.clone();
            padded.resize(PCAP_HEADER_LEN as usize, 0);
            if PcapHeader::from_slice(&padded).is_err() {
                let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                bail!("not a pcap or pcapng file (magic number {magic:#010x})");
            }
            if head.len() < padded.len() {
                bail!("truncated pcap header: {} of {PCAP_HEADER_LEN} bytes", head.len());
            }
        }
        let mut input = Window { input, buf: head, start: 0 };
        let capture = if pcapng {
            let what = "the pcapng section header";
            let parser = loop {
                match PcapNgParser::new(input.bytes()) {
                    Ok((rem, parser)) => {
                        let used = input.bytes().len() - rem.len();
                        input.consume(used);
                        break parser;
                    }
                    Err(PcapError::IncompleteBuffer) => input.grow().map_err(|e| describe(e, what))?,
                    Err(e) => return Err(describe(e, what)),
                }
            };
            Capture::PcapNg { parser }
        } else {
            let (_, parser) = PcapParser::new(input.bytes()).map_err(|e| describe(e, "the pcap header"))?;
            input.consume(PCAP_HEADER_LEN as usize);
            let header = parser.header();
            let link = Link::from_datalink(header.datalink)?;
            Capture::Pcap { parser, link, nanos: header.ts_resolution == TsResolution::NanoSecond }
        };
        Ok(CaptureReader { capture, input, origin: "capture".into() })
    }

    /// Calls `f` with every frame, in file order; stops at the first error, `f`'s or the file's.
    pub fn for_each_frame(self, mut f: impl FnMut(Frame<'_>) -> Result<()>) -> Result<()> {
        let origin = self.origin;
        let bad = |e: anyhow::Error| e.context(origin.clone());
        let mut input = self.input;
        match self.capture {
            Capture::Pcap { parser, link, nanos } => {
                let mut index = 0u64;
                while input.has_more().map_err(|e| bad(describe(e, &format!("record {}", index + 1))))? {
                    index += 1;
                    let at = || format!("record {index}");
                    loop {
                        let bytes = input.bytes();
                        // Raw: the checked packet also refuses an original length above the
                        // snap length, which is every packet of a `tcpdump -s` capture.
                        match parser.next_raw_packet(bytes) {
                            Ok((rem, p)) => {
                                let used = bytes.len() - rem.len();
                                let frac_us = if nanos { u64::from(p.ts_frac) / 1000 } else { u64::from(p.ts_frac) };
                                f(Frame { t_us: u64::from(p.ts_sec) * 1_000_000 + frac_us, link, data: &p.data })?;
                                input.consume(used);
                                break;
                            }
                            Err(PcapError::IncompleteBuffer) => input.grow().map_err(|e| bad(describe(e, &at())))?,
                            Err(e) => return Err(bad(describe(e, &at()))),
                        }
                    }
                }
            }
            Capture::PcapNg { mut parser } => {
                // Interfaces of the current section; Simple Packet Blocks have no time stamp and
                // take the previous packet's.
                let mut interfaces: Vec<Interface> = Vec::new();
                let mut last_t_us = 0;
                let mut index = 0u64;
                while input.has_more().map_err(|e| bad(describe(e, &format!("block {}", index + 1))))? {
                    index += 1;
                    let at = || format!("block {index}");
                    let iface = |interfaces: &[Interface], id: u32| {
                        interfaces.get(id as usize).copied().ok_or_else(|| {
                            bad(anyhow!(
                                "malformed: block {index} is a packet of interface {id}, which no Interface \
                                 Description Block declared"
                            ))
                        })
                    };
                    loop {
                        let bytes = input.bytes();
                        let (rem, block) = match parser.next_block(bytes) {
                            Ok(parsed) => parsed,
                            Err(PcapError::IncompleteBuffer) => {
                                input.grow().map_err(|e| bad(describe(e, &at())))?;
                                continue;
                            }
                            Err(e) => return Err(bad(describe(e, &at()))),
                        };
                        let used = bytes.len() - rem.len();
                        match block {
                            Block::SectionHeader(_) => interfaces.clear(),
                            Block::InterfaceDescription(idb) => {
                                let id = interfaces.len();
                                let iface = Interface::new(&idb).with_context(|| format!("{}: interface {id}", at()));
                                interfaces.push(iface.map_err(bad)?);
                            }
                            // The crate hands the raw count of time units over as nanoseconds.
                            Block::EnhancedPacket(p) => {
                                let i = iface(&interfaces, p.interface_id)?;
                                last_t_us = i.t_us(u64::try_from(p.timestamp.as_nanos()).unwrap_or(u64::MAX));
                                f(Frame { t_us: last_t_us, link: i.link, data: &p.data })?;
                            }
                            Block::Packet(p) => {
                                let i = iface(&interfaces, u32::from(p.interface_id))?;
                                last_t_us = i.t_us(p.timestamp);
                                f(Frame { t_us: last_t_us, link: i.link, data: &p.data })?;
                            }
                            Block::SimplePacket(p) => {
                                let i = iface(&interfaces, 0)?;
                                // The block's data includes its padding; the packet is the
                                // original length cut to the snap length.
                                let snap = if i.snaplen == 0 { u32::MAX } else { i.snaplen };
                                let len = (p.original_len.min(snap) as usize).min(p.data.len());
                                f(Frame { t_us: last_t_us, link: i.link, data: &p.data[..len] })?;
                            }
                            _ => {}
                        }
                        input.consume(used);
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A pcap-file error as one sentence about `what` (a header, record or block).
fn describe(e: PcapError, what: &str) -> anyhow::Error {
    match e {
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            anyhow!("truncated: {what} is cut short (the file ends inside it, or its length field is corrupt)")
        }
        PcapError::IoError(io) => anyhow!("cannot read {what}: {io}"),
        PcapError::InvalidField(field) => anyhow!("malformed: {what}: {field}"),
        other => anyhow!("malformed: {what}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::Endianness;
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
    use pcap_file::pcapng::blocks::simple_packet::SimplePacketBlock;
    use std::borrow::Cow;
    use std::time::Duration;

    /// A classic pcap header, by hand (independent of the reader under test).
    fn pcap_header(magic: u32, linktype: u32, big: bool) -> Vec<u8> {
        let w = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut h = Vec::new();
        h.extend_from_slice(&w(magic));
        h.extend_from_slice(&(if big { 2u16.to_be_bytes() } else { 2u16.to_le_bytes() }));
        h.extend_from_slice(&(if big { 4u16.to_be_bytes() } else { 4u16.to_le_bytes() }));
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&w(65535));
        h.extend_from_slice(&w(linktype));
        h
    }

    fn record(big: bool, secs: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let w = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut r = Vec::new();
        for v in [secs, frac, data.len() as u32, data.len() as u32] {
            r.extend_from_slice(&w(v));
        }
        r.extend_from_slice(data);
        r
    }

    /// Every frame of a capture: (µs, link, bytes), or the error as text.
    fn frames(bytes: &[u8]) -> Result<Vec<(u64, Link, Vec<u8>)>, String> {
        let mut out = Vec::new();
        CaptureReader::new(bytes)
            .and_then(|r| {
                r.for_each_frame(|f| {
                    out.push((f.t_us, f.link, f.data.to_vec()));
                    Ok(())
                })
            })
            .map_err(|e| format!("{e:#}"))?;
        Ok(out)
    }

    fn err(bytes: &[u8]) -> String {
        frames(bytes).err().unwrap_or_else(|| "ok".into())
    }

    #[test]
    fn reads_both_byte_orders_and_time_resolutions() {
        for (magic, nanos) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
            for big in [false, true] {
                let mut file = pcap_header(magic, 1, big);
                file.extend(record(big, 10, if nanos { 5_000_000 } else { 5_000 }, &[1, 2, 3]));
                // An original length above the snap length (tcpdump -s) is fine.
                let mut cut = record(big, 11, 0, &[4]);
                cut[12..16].copy_from_slice(&if big { 100_000u32.to_be_bytes() } else { 100_000u32.to_le_bytes() });
                file.extend(cut);
                let got = frames(&file).unwrap();
                assert_eq!(got, [(10_005_000, Link::Ethernet, vec![1, 2, 3]), (11_000_000, Link::Ethernet, vec![4])]);
            }
        }
    }

    #[test]
    fn malformed_captures_are_clear_errors() {
        assert!(err(b"").contains("only 0 bytes"), "{}", err(b""));
        assert!(err(b"GIF89a not a capture").contains("magic"), "{}", err(b"GIF89a not a capture"));
        let hdr = pcap_header(0xa1b2_c3d4, 1, false);
        assert!(err(&hdr[..20]).contains("truncated pcap header: 20 of 24 bytes"), "{}", err(&hdr[..20]));
        assert!(err(&pcap_header(0xa1b2_c3d4, 147, false)).contains("link type 147"));
        let mut file = hdr.clone();
        file.extend(record(false, 1, 0, &[0; 60]));
        file.extend(record(false, 2, 0, &[0; 60]));
        assert_eq!(err(&file), "ok");
        let e = err(&file[..file.len() - 1]);
        assert!(e.starts_with("capture: truncated: record 2 is cut short"), "{e}");
        assert!(err(&file[..24 + 7]).contains("record 1"));
        let mut huge = hdr.clone();
        huge.extend(record(false, 1, 0, &[]));
        huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&huge).contains("record 1"), "{}", err(&huge));
        let ng = pcapng(&[(1, vec![0x45, 0, 0, 20])], Endianness::Little);
        assert!(err(&ng[..ng.len() - 1]).contains("truncated: block 3"), "{}", err(&ng[..ng.len() - 1]));
        assert!(err(&ng[..6]).contains("pcapng section header"), "{}", err(&ng[..6]));
        // Any prefix of a valid file, and any single damaged byte, fails cleanly or reads.
        for bytes in [&file, &ng] {
            for n in 0..bytes.len() {
                let _ = err(&bytes[..n]);
                for v in [0x00, 0x01, 0x7f, 0xff] {
                    let mut damaged = bytes.to_vec();
                    damaged[n] = v;
                    let _ = err(&damaged);
                }
            }
        }
    }

    /// A reader that hands out at most `n` bytes per read, like a pipe or a slow disk.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_longer_than_a_read_stream_through() {
        // Records of 0 to 3 reads' worth, in a file of several reads, read whole and a few
        // bytes at a time, both formats.
        let sizes = [60, READ_CHUNK - 16, READ_CHUNK, 3 * READ_CHUNK + 5, 1, 200_000];
        let sent: Vec<(u64, Vec<u8>)> =
            sizes.iter().enumerate().map(|(i, &n)| (1_000_000 * i as u64, vec![i as u8 + 1; n])).collect();
        let mut classic = pcap_header(0xa1b2_c3d4, 1, false);
        for (t, data) in &sent {
            classic.extend(record(false, (t / 1_000_000) as u32, 0, data));
        }
        let ng = pcapng(&sent, Endianness::Big);
        for file in [&classic, &ng] {
            let whole = frames(file).unwrap();
            assert_eq!(whole.iter().map(|(t, _, d)| (*t, d.clone())).collect::<Vec<_>>(), sent);
            for n in [1, 7, 4096] {
                let mut got = Vec::new();
                CaptureReader::new(Trickle(file, n))
                    .and_then(|r| {
                        r.for_each_frame(|f| {
                            got.push((f.t_us, f.link, f.data.to_vec()));
                            Ok(())
                        })
                    })
                    .unwrap();
                assert_eq!(got, whole, "{n} bytes a read");
            }
        }
        // A record longer than MAX_RECORD is refused as before (pcap-file's readers had a
        // buffer that long), also when the file holds it all.
        let mut long = pcap_header(0xa1b2_c3d4, 1, false);
        long.extend(record(false, 1, 0, &vec![0; MAX_RECORD]));
        assert!(err(&long).starts_with("capture: truncated: record 1 is cut short"), "{}", err(&long));
    }

    /// `frames` (µs, bytes) as pcapng: interface 0 Ethernet in µs (the default, as tcpdump
    /// writes), interface 1 Ethernet in ns; frames alternate between them.
    fn pcapng(frames: &[(u64, Vec<u8>)], endianness: Endianness) -> Vec<u8> {
        let section = SectionHeaderBlock { endianness, ..Default::default() };
        let mut w = PcapNgWriter::with_section_header(Vec::new(), section).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0)).unwrap();
        let ns = InterfaceDescriptionBlock {
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
            ..InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0)
        };
        w.write_pcapng_block(ns).unwrap();
        for (i, (t_us, data)) in frames.iter().enumerate() {
            // pcap-file takes the count of the interface's time units as nanoseconds.
            let units = if i % 2 == 0 { *t_us } else { t_us * 1000 };
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: (i % 2) as u32,
                timestamp: Duration::from_nanos(units),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn pcapng_reads_like_pcap() {
        let sent: Vec<(u64, Vec<u8>)> =
            (0..7u64).map(|i| (1_700_000_000_000_000 + i * 1234, vec![i as u8; 60 + i as usize])).collect();
        let mut classic = PcapWriter::with_header(
            Vec::new(),
            PcapHeader { datalink: DataLink::ETHERNET, snaplen: 65535, ..PcapHeader::default() },
        )
        .unwrap();
        for (t, data) in &sent {
            classic.write_packet(&PcapPacket::new(Duration::from_micros(*t), data.len() as u32, data)).unwrap();
        }
        let want: Vec<(u64, Link, Vec<u8>)> = sent.iter().map(|(t, d)| (*t, Link::Ethernet, d.clone())).collect();
        assert_eq!(frames(&classic.into_writer()).unwrap(), want);
        for endianness in [Endianness::Little, Endianness::Big] {
            assert_eq!(frames(&pcapng(&sent, endianness)).unwrap(), want, "{endianness:?}");
        }
        // Simple Packet Blocks: interface 0, cut to its snap length, the previous time stamp.
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::LINUX_SLL2, 0)).unwrap();
        w.write_pcapng_block(SimplePacketBlock { original_len: 5, data: Cow::Borrowed(&[9; 5]) }).unwrap();
        let mut snapped = InterfaceDescriptionBlock::new(DataLink::RAW, 3);
        snapped.options.push(InterfaceDescriptionOption::IfTsResol(0x80 | 10));
        w.write_pcapng_block(SectionHeaderBlock::default()).unwrap();
        w.write_pcapng_block(snapped).unwrap();
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(3 * 1024),
            original_len: 2,
            data: Cow::Borrowed(&[1, 2]),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        w.write_pcapng_block(SimplePacketBlock { original_len: 40, data: Cow::Borrowed(&[7; 3]) }).unwrap();
        let got = frames(&w.into_inner()).unwrap();
        assert_eq!(
            got,
            [
                (0, Link::LinuxSll2, vec![9; 5]),
                (3_000_000, Link::RawIp, vec![1, 2]),
                (3_000_000, Link::RawIp, vec![7; 3])
            ]
        );
        // A packet of an undeclared interface, an unsupported link type.
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::USB_LINUX, 0)).unwrap();
        assert!(err(&w.into_inner()).contains("interface 0: unsupported link type 189"));
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(SimplePacketBlock { original_len: 1, data: Cow::Borrowed(&[0]) }).unwrap();
        assert!(err(&w.into_inner()).contains("interface 0, which no Interface Description Block declared"));
    }

    #[test]
    fn link_layers_are_unwrapped() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(Link::Ethernet, &eth), Some(&ip[..]));
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(Link::Ethernet, &vlan), Some(&ip[..]));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(Link::LinuxSll, &sll), Some(&ip[..]));
        let mut sll2 = vec![0x08u8, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(Link::LinuxSll2, &sll2), Some(&ip[..]));
        assert_eq!(ipv4_payload(Link::RawIp, &ip), Some(&ip[..]));
        assert_eq!(ipv4_payload(Link::RawIp, &[0x60]), None);
        for link in [Link::Ethernet, Link::LinuxSll, Link::LinuxSll2, Link::RawIp] {
            for n in 0..eth.len() {
                let _ = ipv4_payload(link, &eth[..n]);
            }
        }
        // FCS bits in a classic link-type field are not a different link.
        assert_eq!(Link::from_datalink(DataLink::from(0x1000_0001)).unwrap(), Link::Ethernet);
        assert_eq!(Link::from_datalink(DataLink::IPV4).unwrap(), Link::RawIp);
    }

    #[test]
    fn arguments_are_checked() {
        let args = |s: &[&str]| {
            parse_subcommand::<FlowlogArgs>("flowlog", &s.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        let a = args(&["--pcap", "x.pcap", "-o", "out.jsonl", "--local", "198.18.0.1"]).unwrap().unwrap();
        assert_eq!(a.format(), Format::Jsonl);
        assert_eq!(a.local, Some(Ipv4Addr::new(198, 18, 0, 1)));
        let a = args(&["--pcap=x.pcap", "--format", "csv", "-o", "out.jsonl", "--interval", "10"]).unwrap().unwrap();
        assert_eq!((a.format(), a.interval_ms, a.abs_time), (Format::Csv, Some(10), false));
        assert_eq!(args(&["--pcap", "x", "--abs-time"]).unwrap().unwrap().format(), Format::Csv);
        assert!(args(&["-h"]).unwrap().is_none());
        for (bad, says) in [
            (&["-o", "x"][..], "--pcap"),
            (&["--pcap"], "--pcap"),
            (&["--pcap", "x", "--local", "nope"], "nope"),
            (&["--pcap", "x", "--bogus"], "--bogus"),
            (&["--pcap", "x", "--interval", "0"], "--interval"),
            (&["--pcap", "x", "--format", "xml"], "use csv or jsonl"),
        ] {
            let e = args(bad).unwrap_err().to_string();
            assert!(e.starts_with("flowlog: parameter error - ") && e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains('\n') && !e.contains("\x1b"), "one plain line: {e:?}");
        }
    }
}
