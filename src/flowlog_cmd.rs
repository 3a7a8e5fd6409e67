//! `uniperf flowlog --pcap FILE`: turns a packet capture (e.g. `tcpdump -w` of a stock iperf3
//! run) into the flow-log format of uniperf's own probe (schema in docs/flowlog.md), so stock
//! Linux flows can be plotted and compared with ours on the same axes.
//!
//! Two passes over the file: the first decides, per connection, which side is "local" and
//! which iperf3 stream it is; the second feeds every frame to a `FlowTracker`.

use anyhow::{Context, Result, anyhow, bail};
use netstack::flowlog::{
    Dir, FlowSummary, FlowTracker, Format, ProbeConfig, RowWriter, Sampling, SegmentInfo, peek_segment,
};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: uniperf flowlog --pcap FILE.pcap [-o OUT] [--format csv|jsonl] [--local IP] [--interval MS] [--abs-time]

Converts a packet capture (classic pcap: tcpdump -w) into uniperf's flow log (docs/flowlog.md).
  --pcap FILE      capture to read (Ethernet, Linux cooked SLL/SLL2 or raw IPv4)
  -o, --output OUT write the log here (default: standard output)
  --format F       csv or jsonl (default: from OUT's extension, else csv)
  --local IP       the address whose view the log takes (default per flow: the data sender,
                   else the connection's initiator)
  --interval MS    one sample per flow every MS ms instead of one per ACK
  --abs-time       t_us in Unix time instead of time since the first packet
A per-flow summary goes to standard error.
";

/// Link-layer header types (tcpdump.org/linktypes.html).
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Largest captured length of one record we accept (a GRO/TSO frame plus link headers).
const MAX_RECORD: u32 = 256 * 1024;
const ETHERTYPE_IPV4: u16 = 0x0800;

/// Command-line settings of `uniperf flowlog`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowlogArgs {
    pub pcap: String,
    pub output: Option<String>,
    pub format: Format,
    pub local: Option<Ipv4Addr>,
    pub interval_ms: Option<u32>,
    pub abs_time: bool,
}

fn parse_args(args: &[String]) -> Result<Option<FlowlogArgs>> {
    let (mut pcap, mut output, mut format, mut local, mut interval_ms, mut abs_time) =
        (None, None, None, None, None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| anyhow!("parameter error - {name} needs a value"))
        };
        match name {
            "-h" | "--help" => return Ok(None),
            "--pcap" => pcap = Some(value()?),
            "-o" | "--output" => output = Some(value()?),
            "--format" => format = Some(Format::parse(&value()?).map_err(|e| anyhow!("parameter error - {e}"))?),
            "--local" => {
                let v = value()?;
                local = Some(
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| anyhow!("parameter error - --local '{v}' is not an IPv4 address"))?,
                );
            }
            "--interval" => {
                let v = value()?;
                let ms = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| anyhow!("parameter error - --interval '{v}' is not a positive number of ms"))?;
                interval_ms = Some(ms);
            }
            "--abs-time" => abs_time = true,
            other => bail!("parameter error - unknown flowlog option '{other}' (see uniperf flowlog --help)"),
        }
    }
    let pcap = pcap.ok_or_else(|| anyhow!("parameter error - flowlog needs --pcap FILE.pcap"))?;
    let format = format.unwrap_or_else(|| output.as_deref().map_or(Format::Csv, Format::from_path));
    Ok(Some(FlowlogArgs { pcap, output, format, local, interval_ms, abs_time }))
}

/// `uniperf flowlog ARGS…`.
pub fn run(args: &[String]) -> Result<ExitCode> {
    let Some(a) = parse_args(args)? else {
        print!("{USAGE}");
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
    pub stats: netstack::flowlog::TrackerStats,
}

/// Reads `a.pcap` twice and writes the flow log to `out`.
pub fn convert(a: &FlowlogArgs, out: &mut dyn Write) -> Result<Conversion> {
    let open = || -> Result<PcapReader<BufReader<File>>> {
        let f = File::open(&a.pcap).with_context(|| format!("cannot open capture '{}'", a.pcap))?;
        PcapReader::new(BufReader::with_capacity(1 << 20, f)).with_context(|| format!("'{}'", a.pcap))
    };

    // Pass 1: who is who.
    let mut conns = Connections::default();
    let mut reader = open()?;
    let linktype = reader.linktype;
    let mut first_us = None;
    while let Some(rec) = reader.next_record().with_context(|| format!("'{}'", a.pcap))? {
        first_us.get_or_insert(rec.t_us);
        if let Some(ip) = ipv4_payload(linktype, rec.data)
            && let Some(seg) = peek_segment(ip)
        {
            conns.observe(&seg, ip);
        }
    }
    let roles = conns.decide(a.local);

    // Pass 2: track.
    let sampling = a.interval_ms.map_or(Sampling::EveryAck, Sampling::Interval);
    let cfg = ProbeConfig { sampling, max_samples: usize::MAX, max_flows: usize::MAX };
    let mut tracker = FlowTracker::new(cfg);
    for (local, remote, stream) in &roles.labels {
        tracker.label_flow(netstack::flowlog::FlowId::new(*local, *remote), *stream);
    }
    let t0 = if a.abs_time { 0 } else { first_us.unwrap_or(0) };
    let mut rows = RowWriter::new(a.format);
    let mut text = Vec::new();
    rows.header(&mut text);
    let mut samples = 0u64;
    let mut records = 0u64;
    let mut last_t = 0;
    let mut reader = open()?;
    while let Some(rec) = reader.next_record().with_context(|| format!("'{}'", a.pcap))? {
        records += 1;
        let t = rec.t_us.saturating_sub(t0);
        last_t = last_t.max(t);
        let Some(ip) = ipv4_payload(linktype, rec.data) else {
            continue;
        };
        let Some(seg) = peek_segment(ip) else {
            tracker.on_ipv4(t, Dir::Rx, ip);
            continue;
        };
        let dir = if roles.local.contains_key(&(seg.src, seg.dst)) { Dir::Tx } else { Dir::Rx };
        tracker.on_ipv4(t, dir, ip);
        if tracker.samples().len() >= 8192 {
            samples += drain(&mut tracker, &mut rows, &mut text);
            out.write_all(&text).context("cannot write the flow log")?;
            text.clear();
        }
    }
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

/// The IPv4 packet inside a captured frame of `linktype`, if it carries one.
pub fn ipv4_payload(linktype: u32, data: &[u8]) -> Option<&[u8]> {
    let be16 = |b: &[u8], at: usize| b.get(at..at + 2).map(|x| u16::from_be_bytes([x[0], x[1]]));
    match linktype {
        LINKTYPE_ETHERNET => {
            let mut at = 12;
            let mut ethertype = be16(data, at)?;
            // One 802.1Q tag.
            if ethertype == 0x8100 {
                at += 4;
                ethertype = be16(data, at)?;
            }
            (ethertype == ETHERTYPE_IPV4).then(|| data.get(at + 2..)).flatten()
        }
        LINKTYPE_LINUX_SLL => (be16(data, 14)? == ETHERTYPE_IPV4).then(|| data.get(16..)).flatten(),
        LINKTYPE_LINUX_SLL2 => (be16(data, 0)? == ETHERTYPE_IPV4).then(|| data.get(20..)).flatten(),
        LINKTYPE_RAW | LINKTYPE_IPV4 => (data.first()? >> 4 == 4).then_some(data),
        _ => None,
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
// Classic pcap

/// One captured packet.
#[derive(Debug)]
pub struct PcapRecord<'a> {
    /// Capture time, µs since the Unix epoch.
    pub t_us: u64,
    /// The captured bytes (possibly truncated to the snap length).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
}

/// A streaming reader of classic pcap files (both byte orders, µs and ns time stamps).
pub struct PcapReader<R: Read> {
    input: R,
    big_endian: bool,
    nanos: bool,
    pub linktype: u32,
    pub snaplen: u32,
    buf: Vec<u8>,
    records: u64,
    offset: u64,
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the 24-byte file header.
    pub fn new(mut input: R) -> Result<Self> {
        let mut hdr = [0u8; 24];
        let n = read_full(&mut input, &mut hdr).context("cannot read the pcap header")?;
        if n < 4 {
            bail!("not a pcap file: only {n} bytes long");
        }
        let magic = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let (big_endian, nanos) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xd4c3_b2a1 => (true, false),
            0xa1b2_3c4d => (false, true),
            0x4d3c_b2a1 => (true, true),
            0x0a0d_0d0a => bail!(
                "this is a pcapng file; uniperf reads classic pcap (tcpdump -w writes it; convert with `editcap -F pcap IN OUT`)"
            ),
            other => bail!("not a pcap file (magic number {other:#010x})"),
        };
        if n < 24 {
            bail!("truncated pcap header: {n} of 24 bytes");
        }
        let u32_at = |at: usize| {
            let b = [hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]];
            if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        let snaplen = u32_at(16);
        // The upper bits of the link-type field carry FCS information.
        let linktype = u32_at(20) & 0x0fff_ffff;
        match linktype {
            LINKTYPE_ETHERNET | LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2 | LINKTYPE_RAW | LINKTYPE_IPV4 => {}
            other => bail!(
                "unsupported pcap link type {other} (supported: Ethernet 1, Linux cooked SLL 113 and SLL2 276, raw IP 101/228)"
            ),
        }
        Ok(PcapReader { input, big_endian, nanos, linktype, snaplen, buf: Vec::new(), records: 0, offset: 24 })
    }

    /// The next record; None at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<PcapRecord<'_>>> {
        let mut hdr = [0u8; 16];
        let n = read_full(&mut self.input, &mut hdr).context("cannot read the capture")?;
        let index = self.records + 1;
        if n == 0 {
            return Ok(None);
        }
        if n < 16 {
            bail!("truncated pcap: record {index} at byte {} has a {n}-byte header (16 expected)", self.offset);
        }
        let u32_at = |at: usize| {
            let b = [hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]];
            if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        let (secs, frac, incl, orig) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        if incl > MAX_RECORD {
            bail!(
                "malformed pcap: record {index} at byte {} claims {incl} captured bytes (at most {MAX_RECORD} accepted)",
                self.offset
            );
        }
        let frac_us = if self.nanos { u64::from(frac) / 1000 } else { u64::from(frac) };
        let t_us = u64::from(secs) * 1_000_000 + frac_us;
        self.buf.resize(incl as usize, 0);
        let got = read_full(&mut self.input, &mut self.buf).context("cannot read the capture")?;
        if got < incl as usize {
            bail!(
                "truncated pcap: record {index} at byte {} has {got} of its {incl} bytes (was the capture cut short?)",
                self.offset
            );
        }
        self.records = index;
        self.offset += 16 + u64::from(incl);
        Ok(Some(PcapRecord { t_us, data: &self.buf, orig_len: orig }))
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(magic: u32, linktype: u32, big: bool) -> Vec<u8> {
        let w = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut h = Vec::new();
        h.extend_from_slice(&if big { magic.to_be_bytes() } else { magic.to_le_bytes() });
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

    #[test]
    fn reads_both_byte_orders_and_time_resolutions() {
        for (magic, nanos) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
            for big in [false, true] {
                let mut file = pcap_header(magic, LINKTYPE_ETHERNET, big);
                file.extend(record(big, 10, if nanos { 5_000_000 } else { 5_000 }, &[1, 2, 3]));
                let mut r = PcapReader::new(&file[..]).unwrap();
                assert_eq!(r.linktype, LINKTYPE_ETHERNET);
                let rec = r.next_record().unwrap().unwrap();
                assert_eq!((rec.t_us, rec.data), (10_005_000, &[1u8, 2, 3][..]));
                assert!(r.next_record().unwrap().is_none());
            }
        }
    }

    #[test]
    fn malformed_captures_are_clear_errors() {
        let err = |bytes: &[u8]| -> String {
            match PcapReader::new(bytes) {
                Err(e) => format!("{e:#}"),
                Ok(mut r) => loop {
                    match r.next_record() {
                        Ok(Some(_)) => {}
                        Ok(None) => break String::from("ok"),
                        Err(e) => break format!("{e:#}"),
                    }
                },
            }
        };
        assert!(err(b"").contains("only 0 bytes"), "{}", err(b""));
        assert!(err(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0]).contains("pcapng"));
        assert!(err(b"GIF89a not a capture").contains("magic"));
        let hdr = pcap_header(0xa1b2_c3d4, LINKTYPE_ETHERNET, false);
        assert!(err(&hdr[..20]).contains("truncated pcap header"));
        assert!(err(&pcap_header(0xa1b2_c3d4, 147, false)).contains("link type 147"));
        let mut file = hdr.clone();
        file.extend(record(false, 1, 0, &[0; 60]));
        assert_eq!(err(&file), "ok");
        assert!(err(&file[..file.len() - 1]).contains("record 1"), "{}", err(&file[..file.len() - 1]));
        assert!(err(&file[..24 + 7]).contains("7-byte header"));
        let mut huge = hdr.clone();
        huge.extend(record(false, 1, 0, &[]));
        huge[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&huge).contains("claims"), "{}", err(&huge));
        // Any prefix of a valid file fails cleanly or succeeds, never panics.
        for n in 0..file.len() {
            let _ = err(&file[..n]);
        }
    }

    #[test]
    fn link_layers_are_unwrapped() {
        let ip = [0x45u8, 0, 0, 20];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(LINKTYPE_ETHERNET, &eth), Some(&ip[..]));
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0, 5, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(LINKTYPE_ETHERNET, &vlan), Some(&ip[..]));
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(LINKTYPE_LINUX_SLL, &sll), Some(&ip[..]));
        let mut sll2 = vec![0x08u8, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(ipv4_payload(LINKTYPE_LINUX_SLL2, &sll2), Some(&ip[..]));
        assert_eq!(ipv4_payload(LINKTYPE_RAW, &ip), Some(&ip[..]));
        assert_eq!(ipv4_payload(LINKTYPE_RAW, &[0x60]), None);
        for lt in [LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW] {
            for n in 0..eth.len() {
                let _ = ipv4_payload(lt, &eth[..n]);
            }
        }
    }

    #[test]
    fn arguments_are_checked() {
        let args = |s: &[&str]| parse_args(&s.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let a = args(&["--pcap", "x.pcap", "-o", "out.jsonl", "--local", "198.18.0.1"]).unwrap().unwrap();
        assert_eq!(a.format, Format::Jsonl);
        assert_eq!(a.local, Some(Ipv4Addr::new(198, 18, 0, 1)));
        let a = args(&["--pcap=x.pcap", "--format", "csv", "-o", "out.jsonl", "--interval", "10"]).unwrap().unwrap();
        assert_eq!((a.format, a.interval_ms), (Format::Csv, Some(10)));
        assert!(args(&["-h"]).unwrap().is_none());
        for bad in [&["-o", "x"][..], &["--pcap"], &["--pcap", "x", "--local", "nope"], &["--pcap", "x", "--bogus"]] {
            let e = args(bad).unwrap_err().to_string();
            assert!(e.starts_with("parameter error"), "{e}");
        }
    }
}
