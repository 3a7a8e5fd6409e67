//! iperf3's command-line options, parsed once for every platform: the Linux CLI hands it
//! `argv`, the unikernel hands it its kernel command line. Platform options (`--tap`, `--ip`,
//! the simulator's link settings) are parsed here too and each platform rejects those it
//! cannot honour. Errors are one sentence naming the option.

use crate::proto::{DEFAULT_TCP_BLKSIZE, MAX_STREAMS, MAX_TCP_BLKSIZE, Protocol, TestParams};
use crate::units::{parse_rate, parse_rate_burst, parse_size};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Server,
    Client(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Both,
    Client,
    Server,
    /// Interface and simulator settings: no iperf3 meaning.
    Platform,
}

struct Spec {
    short: Option<char>,
    long: &'static str,
    value: Option<&'static str>,
    scope: Scope,
    help: &'static str,
}

const fn opt(
    short: Option<char>,
    long: &'static str,
    value: Option<&'static str>,
    scope: Scope,
    help: &'static str,
) -> Spec {
    Spec { short, long, value, scope, help }
}

use Scope::*;
const SPECS: &[Spec] = &[
    opt(Some('s'), "server", None, Server, "run in server mode"),
    opt(Some('c'), "client", Some("HOST"), Client, "run in client mode, connecting to HOST"),
    opt(Some('p'), "port", Some("N"), Both, "server port to listen on / connect to (default 5201)"),
    opt(Some('B'), "bind", Some("ADDR"), Both, "bind to this local address (must be the --ip address)"),
    opt(Some('f'), "format", Some("[kmgtKMGT]"), Both, "format to report: Kbits, Mbits, Gbits, Tbits, or KBytes…"),
    opt(Some('i'), "interval", Some("SECS"), Both, "seconds between periodic reports (0 disables; default 1)"),
    opt(Some('J'), "json", None, Both, "output in JSON format"),
    opt(None, "json-stream", None, Both, "output in line-delimited JSON format"),
    opt(None, "logfile", Some("FILE"), Both, "send output to a log file"),
    opt(None, "forceflush", None, Both, "force flushing output at every interval"),
    opt(Some('V'), "verbose", None, Both, "more detailed output"),
    opt(Some('v'), "version", None, Both, "show version information and quit"),
    opt(Some('h'), "help", None, Both, "show this message and quit"),
    opt(Some('1'), "one-off", None, Server, "handle one client connection then exit"),
    opt(
        None,
        "idle-timeout",
        Some("SECS"),
        Server,
        "drop a stalled client and go back to listening after SECS (default 10)",
    ),
    opt(Some('u'), "udp", None, Client, "use UDP rather than TCP (not implemented yet)"),
    opt(None, "connect-timeout", Some("MS"), Client, "timeout for control connection setup (ms)"),
    opt(
        Some('b'),
        "bitrate",
        Some("RATE[/BURST]"),
        Client,
        "target bitrate in bits/sec per stream (0 = unlimited, the TCP default)",
    ),
    opt(None, "bandwidth", Some("RATE[/BURST]"), Client, "alias of --bitrate"),
    opt(Some('t'), "time", Some("SECS"), Client, "time in seconds to transmit for (default 10)"),
    opt(Some('n'), "bytes", Some("SIZE"), Client, "number of bytes to transmit (instead of -t)"),
    opt(Some('k'), "blockcount", Some("N"), Client, "number of blocks to transmit (instead of -t or -n)"),
    opt(Some('l'), "length", Some("SIZE"), Client, "length of buffer to read or write (default 128 KB)"),
    opt(Some('P'), "parallel", Some("N"), Client, "number of parallel client streams to run (1-128)"),
    opt(Some('R'), "reverse", None, Client, "run in reverse mode (server sends, client receives)"),
    opt(None, "bidir", None, Client, "run in bidirectional mode"),
    opt(Some('w'), "window", Some("SIZE"), Client, "socket buffer size (sets both directions)"),
    opt(Some('C'), "congestion", Some("ALGO"), Client, "congestion control: reno, cubic (host builds) or none"),
    opt(
        Some('M'),
        "set-mss",
        Some("N"),
        Client,
        "TCP MSS for the server's data sockets (a stock server applies it; smoltcp cannot)",
    ),
    opt(Some('N'), "no-delay", None, Client, "set TCP no delay, disabling Nagle's algorithm"),
    opt(Some('O'), "omit", Some("N"), Client, "omit the first N seconds"),
    opt(Some('T'), "title", Some("STR"), Client, "prefix every output line with this string"),
    opt(None, "extra-data", Some("STR"), Client, "data string to include in client and server JSON"),
    opt(None, "get-server-output", None, Client, "get results from the server"),
    opt(None, "repeating-payload", None, Client, "use a repeating 0123456789… payload instead of random bytes"),
    opt(
        None,
        "flowlog",
        Some("FILE"),
        Both,
        "write a per-flow TCP log (seq, ack, RTT, in-flight, windows) to FILE; image: `console`",
    ),
    opt(None, "flowlog-format", Some("csv|jsonl"), Both, "flow-log format (default csv; docs/flowlog.md)"),
    opt(
        None,
        "flowlog-interval",
        Some("MS"),
        Both,
        "at most one flow-log sample per flow every MS ms (0 = every segment; default 10)",
    ),
    opt(
        None,
        "flowlog-collect",
        Some("ADDR:PORT"),
        Both,
        "image: send the flow log to `uniperf collect` at ADDR:PORT after each test",
    ),
    opt(None, "tap", Some("IFNAME"), Platform, "run smoltcp on this Linux TAP device (created if missing)"),
    opt(None, "ip", Some("ADDR/PREFIX"), Platform, "IPv4 address of the smoltcp interface"),
    opt(None, "gateway", Some("ADDR"), Platform, "default IPv4 gateway"),
    opt(None, "mtu", Some("N"), Platform, "IP MTU of the interface (default: the device's, or 1500)"),
    opt(None, "delay", Some("MS"), Platform, "sim: one-way link delay in milliseconds"),
    opt(None, "loss", Some("PCT"), Platform, "sim: frame loss in percent, e.g. 0.1"),
    opt(None, "rate", Some("BITS"), Platform, "sim: bottleneck rate in bits/sec (K/M/G suffixes)"),
    opt(None, "queue", Some("BYTES"), Platform, "sim: bottleneck drop-tail queue in bytes"),
    opt(None, "seed", Some("N"), Platform, "sim: random seed of the link"),
];

/// Everything the command line can say.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub mode: Option<Mode>,
    pub port: u16,
    pub bind: Option<Ipv4Address>,
    pub format: char,
    pub interval: f64,
    pub json: bool,
    pub json_stream: bool,
    pub logfile: Option<String>,
    pub forceflush: bool,
    pub verbose: bool,
    pub version: bool,
    pub help: bool,
    pub one_off: bool,
    pub idle_timeout: Option<u32>,
    pub udp: bool,
    pub connect_timeout_ms: Option<u32>,
    pub bitrate: u64,
    pub burst: Option<u32>,
    pub time: Option<u32>,
    pub bytes: Option<u64>,
    pub blocks: Option<u64>,
    pub len: Option<u32>,
    pub parallel: u32,
    pub reverse: bool,
    pub bidir: bool,
    pub window: Option<u32>,
    /// `-M`: sent to the server; smoltcp has no per-socket MSS, so our own sockets keep the
    /// MTU-derived one (the peer's smaller MSS still limits what we send).
    pub mss: Option<u32>,
    pub congestion: Option<String>,
    pub nodelay: bool,
    pub omit: u32,
    pub title: Option<String>,
    pub extra_data: Option<String>,
    pub get_server_output: bool,
    pub repeating_payload: bool,
    pub tap: Option<String>,
    pub ip: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Address>,
    pub mtu: Option<u32>,
    pub sim: SimOptions,
    pub flowlog: FlowLogOptions,
    /// Long names of every option given, in order (for role checks and platform checks).
    pub given: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SimOptions {
    pub delay_ms: f64,
    pub loss_pct: f64,
    pub rate_bps: Option<u64>,
    pub queue_bytes: Option<u64>,
    pub seed: u64,
}

/// Default `--flowlog-interval`: 100 samples a second per flow, enough to see slow start
/// and recovery without a log the size of the test.
pub const DEFAULT_FLOWLOG_INTERVAL_MS: u32 = 10;

/// Where and how the per-flow TCP log is written.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowLogOptions {
    /// `--flowlog FILE` (the image takes `console`: the log is printed between marker lines).
    pub path: Option<String>,
    pub format: crate::flowlog::Format,
    /// Minimum spacing of samples per flow; 0 = one per segment.
    pub interval_ms: u32,
    /// `--flowlog-collect ADDR:PORT`: a `uniperf collect` listener the image sends its logs to.
    pub collect: Option<(Ipv4Address, u16)>,
}

impl Default for FlowLogOptions {
    fn default() -> Self {
        FlowLogOptions {
            path: None,
            format: crate::flowlog::Format::Csv,
            interval_ms: DEFAULT_FLOWLOG_INTERVAL_MS,
            collect: None,
        }
    }
}

impl FlowLogOptions {
    /// True when a flow log is wanted at all.
    pub fn enabled(&self) -> bool {
        self.path.is_some() || self.collect.is_some()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: None,
            port: crate::proto::DEFAULT_PORT,
            bind: None,
            format: 'a',
            interval: 1.0,
            json: false,
            json_stream: false,
            logfile: None,
            forceflush: false,
            verbose: false,
            version: false,
            help: false,
            one_off: false,
            idle_timeout: None,
            udp: false,
            connect_timeout_ms: None,
            bitrate: 0,
            burst: None,
            time: None,
            bytes: None,
            blocks: None,
            len: None,
            parallel: 1,
            reverse: false,
            bidir: false,
            window: None,
            mss: None,
            congestion: None,
            nodelay: false,
            omit: 0,
            title: None,
            extra_data: None,
            get_server_output: false,
            repeating_payload: false,
            tap: None,
            ip: None,
            gateway: None,
            mtu: None,
            sim: SimOptions { seed: 1, ..SimOptions::default() },
            flowlog: FlowLogOptions::default(),
            given: Vec::new(),
        }
    }
}

fn num<T: core::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim().parse::<T>().map_err(|_| format!("option --{name}: '{v}' is not a valid number"))
}

fn size_u32(name: &str, v: &str) -> Result<u32, String> {
    let n = parse_size(v).map_err(|e| format!("option --{name}: {e}"))?;
    u32::try_from(n).map_err(|_| format!("option --{name}: '{v}' is too large"))
}

pub fn parse_ipv4(name: &str, v: &str) -> Result<Ipv4Address, String> {
    v.parse::<Ipv4Address>().map_err(|_| format!("option --{name}: '{v}' is not an IPv4 address"))
}

/// `ADDR:PORT` with an IPv4 address and a non-zero port.
pub fn parse_endpoint(name: &str, v: &str) -> Result<(Ipv4Address, u16), String> {
    let (a, p) = v.rsplit_once(':').ok_or_else(|| format!("option --{name}: '{v}' is not ADDR:PORT"))?;
    let addr = parse_ipv4(name, a)?;
    let port: u16 = num(name, p)?;
    if port == 0 {
        return Err(format!("option --{name}: port 0 is not usable"));
    }
    Ok((addr, port))
}

fn parse_cidr(name: &str, v: &str) -> Result<Ipv4Cidr, String> {
    let (a, p) =
        v.split_once('/').ok_or_else(|| format!("option --{name}: '{v}' needs a prefix length, e.g. 198.18.0.2/24"))?;
    let addr = parse_ipv4(name, a)?;
    let prefix: u8 = num(name, p)?;
    if prefix > 32 {
        return Err(format!("option --{name}: prefix length {prefix} is larger than 32"));
    }
    Ok(Ipv4Cidr::new(addr, prefix))
}

impl Options {
    /// Parses arguments (without the program name). Unknown options, missing values and bad
    /// numbers are errors; role and consistency checks happen in [`Options::validate`].
    pub fn parse<'a, I: IntoIterator<Item = &'a str>>(args: I) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.into_iter().peekable();
        while let Some(arg) = it.next() {
            if arg == "--" {
                return Err("unexpected '--'".to_string());
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (long, None),
                };
                let spec = SPECS
                    .iter()
                    .find(|s| s.long == name)
                    .ok_or_else(|| format!("unrecognized option '--{name}' (try -h)"))?;
                let value = match (spec.value, inline) {
                    (None, Some(_)) => return Err(format!("option '--{name}' takes no value")),
                    (None, None) => None,
                    (Some(_), Some(v)) => Some(v),
                    (Some(meta), None) => {
                        Some(it.next().ok_or_else(|| format!("option '--{name}' needs a value ({meta})"))?)
                    }
                };
                o.apply(spec, value)?;
            } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (i, c) in shorts.char_indices() {
                    let spec = SPECS
                        .iter()
                        .find(|s| s.short == Some(c))
                        .ok_or_else(|| format!("unrecognized option '-{c}' (try -h)"))?;
                    if let Some(meta) = spec.value {
                        let rest = &shorts[i + c.len_utf8()..];
                        let v = if !rest.is_empty() {
                            rest
                        } else {
                            it.next().ok_or_else(|| format!("option '-{c}' needs a value ({meta})"))?
                        };
                        o.apply(spec, Some(v))?;
                        break;
                    }
                    o.apply(spec, None)?;
                }
            } else {
                return Err(format!("unexpected argument '{arg}' (options start with '-'; try -h)"));
            }
        }
        Ok(o)
    }

    fn apply(&mut self, spec: &Spec, v: Option<&str>) -> Result<(), String> {
        let name = spec.long;
        let val = v.unwrap_or("");
        self.given.push(name);
        match name {
            "server" => self.set_mode(Mode::Server)?,
            "client" => self.set_mode(Mode::Client(val.to_string()))?,
            "port" => {
                let p: u16 = num(name, val)?;
                if p == 0 {
                    return Err("option --port: 0 is not a usable port".to_string());
                }
                self.port = p;
            }
            "bind" => self.bind = Some(parse_ipv4(name, val.split('%').next().unwrap_or(val))?),
            "format" => {
                let c = val.chars().next().filter(|_| val.len() == 1);
                match c {
                    Some(c @ ('k' | 'm' | 'g' | 't' | 'K' | 'M' | 'G' | 'T' | 'a' | 'A')) => self.format = c,
                    _ => return Err(format!("option --format: '{val}' is not one of k m g t K M G T")),
                }
            }
            "interval" => {
                let i: f64 = num(name, val)?;
                if !(i == 0.0 || (0.1..=60.0).contains(&i)) {
                    return Err(format!("option --interval: {val} must be 0 or between 0.1 and 60 seconds"));
                }
                self.interval = i;
            }
            "json" => self.json = true,
            "json-stream" => self.json_stream = true,
            "logfile" => self.logfile = Some(val.to_string()),
            "forceflush" => self.forceflush = true,
            "verbose" => self.verbose = true,
            "version" => self.version = true,
            "help" => self.help = true,
            "one-off" => self.one_off = true,
            "idle-timeout" => {
                let t: u32 = num(name, val)?;
                if t == 0 {
                    return Err("option --idle-timeout: must be at least 1 second".to_string());
                }
                self.idle_timeout = Some(t);
            }
            "udp" => self.udp = true,
            "connect-timeout" => self.connect_timeout_ms = Some(num(name, val)?),
            "bitrate" | "bandwidth" => {
                let (r, b) = parse_rate_burst(val).map_err(|e| format!("option --{name}: {e}"))?;
                self.bitrate = r;
                self.burst = b;
            }
            "time" => {
                let t: u32 = num(name, val)?;
                if t > 86400 {
                    return Err(format!("option --time: {t} s is longer than the maximum of 86400 s"));
                }
                self.time = Some(t);
            }
            "bytes" => self.bytes = Some(parse_size(val).map_err(|e| format!("option --bytes: {e}"))?),
            "blockcount" => self.blocks = Some(parse_size(val).map_err(|e| format!("option --blockcount: {e}"))?),
            "length" => {
                let l = size_u32(name, val)?;
                if l == 0 || l > MAX_TCP_BLKSIZE {
                    return Err(format!("option --length: {val} must be between 1 byte and 1 MiB"));
                }
                self.len = Some(l);
            }
            "parallel" => {
                let p: u32 = num(name, val)?;
                if p == 0 || p > MAX_STREAMS {
                    return Err(format!("option --parallel: {p} must be between 1 and {MAX_STREAMS}"));
                }
                self.parallel = p;
            }
            "reverse" => self.reverse = true,
            "bidir" => self.bidir = true,
            "window" => {
                let w = size_u32(name, val)?;
                if w > 512 * 1024 * 1024 {
                    return Err(format!("option --window: {val} is larger than the maximum of 512 MiB"));
                }
                if w < 1024 {
                    return Err(format!("option --window: {val} is smaller than 1 KiB"));
                }
                self.window = Some(w);
            }
            "congestion" => {
                crate::stack::Congestion::parse(val).map_err(|e| format!("option --congestion: {e}"))?;
                self.congestion = Some(val.to_string());
            }
            "set-mss" => {
                let m: u32 = num(name, val)?;
                if !(88..=9216).contains(&m) {
                    return Err(format!("option --set-mss: {m} must be between 88 and 9216 bytes"));
                }
                self.mss = Some(m);
            }
            "no-delay" => self.nodelay = true,
            "omit" => {
                let n: u32 = num(name, val)?;
                if n > 600 {
                    return Err(format!("option --omit: {n} s is longer than the maximum of 600 s"));
                }
                self.omit = n;
            }
            "title" => self.title = Some(val.to_string()),
            "extra-data" => self.extra_data = Some(val.to_string()),
            "get-server-output" => self.get_server_output = true,
            "repeating-payload" => self.repeating_payload = true,
            "flowlog" => {
                if val.is_empty() {
                    return Err("option --flowlog: needs a file name".to_string());
                }
                self.flowlog.path = Some(val.to_string());
            }
            "flowlog-format" => {
                self.flowlog.format =
                    crate::flowlog::Format::parse(val).map_err(|e| format!("option --flowlog-format: {e}"))?;
            }
            "flowlog-interval" => {
                let ms: u32 = num(name, val)?;
                if ms > 60_000 {
                    return Err(format!("option --flowlog-interval: {ms} ms is longer than the maximum of 60000"));
                }
                self.flowlog.interval_ms = ms;
            }
            "flowlog-collect" => self.flowlog.collect = Some(parse_endpoint(name, val)?),
            "tap" => {
                if val.is_empty() || val.len() > 15 {
                    return Err(format!("option --tap: '{val}' is not a valid interface name (1-15 characters)"));
                }
                self.tap = Some(val.to_string());
            }
            "ip" => self.ip = Some(parse_cidr(name, val)?),
            "gateway" => self.gateway = Some(parse_ipv4(name, val)?),
            "mtu" => {
                let m: u32 = num(name, val)?;
                if !(576..=65000).contains(&m) {
                    return Err(format!("option --mtu: {m} must be between 576 and 65000"));
                }
                self.mtu = Some(m);
            }
            "delay" => {
                let d: f64 = num(name, val)?;
                if !(0.0..=10_000.0).contains(&d) {
                    return Err(format!("option --delay: {val} ms must be between 0 and 10000"));
                }
                self.sim.delay_ms = d;
            }
            "loss" => {
                let l: f64 = num(name, val)?;
                if !(0.0..=100.0).contains(&l) {
                    return Err(format!("option --loss: {val} % must be between 0 and 100"));
                }
                self.sim.loss_pct = l;
            }
            "rate" => {
                let r = parse_rate(val).map_err(|e| format!("option --rate: {e}"))?;
                if r < 8000 {
                    return Err(format!("option --rate: {val} is below the minimum of 8 kbit/s"));
                }
                self.sim.rate_bps = Some(r);
            }
            "queue" => {
                let q = parse_size(val).map_err(|e| format!("option --queue: {e}"))?;
                if q < 1514 {
                    return Err(format!("option --queue: {val} bytes cannot hold one frame"));
                }
                self.sim.queue_bytes = Some(q);
            }
            "seed" => self.sim.seed = num(name, val)?,
            _ => return Err(format!("option --{name} is not handled")),
        }
        Ok(())
    }

    fn set_mode(&mut self, m: Mode) -> Result<(), String> {
        if self.mode.is_some() && self.mode != Some(m.clone()) {
            return Err("cannot be both server (-s) and client (-c)".to_string());
        }
        self.mode = Some(m);
        Ok(())
    }

    /// Role and consistency checks, as iperf3 does them after parsing.
    pub fn validate(&self) -> Result<(), String> {
        if self.help || self.version {
            return Ok(());
        }
        let mode = self.mode.as_ref().ok_or("must either be a client (-c HOST) or server (-s)")?;
        let wrong_scope = match mode {
            Mode::Server => Scope::Client,
            Mode::Client(_) => Scope::Server,
        };
        for name in &self.given {
            if let Some(spec) = SPECS.iter().find(|s| s.long == *name)
                && spec.scope == wrong_scope
            {
                let role = if wrong_scope == Scope::Client { "client" } else { "server" };
                return Err(format!("option --{name} is {role} only"));
            }
        }
        if self.udp {
            return Err("UDP tests (-u) are not implemented yet; only TCP is supported".to_string());
        }
        if self.reverse && self.bidir {
            return Err("cannot be both reverse (-R) and bidirectional (--bidir)".to_string());
        }
        let ends = [self.time.is_some(), self.bytes.is_some(), self.blocks.is_some()];
        if ends.iter().filter(|&&b| b).count() > 1 {
            return Err("only one test end condition (-t, -n, -k) may be specified".to_string());
        }
        if self.json && self.json_stream {
            return Err("--json and --json-stream cannot be used together".to_string());
        }
        if !self.flowlog.enabled()
            && let Some(n) = self.given.iter().find(|n| matches!(**n, "flowlog-format" | "flowlog-interval"))
        {
            return Err(format!("--{n} needs --flowlog FILE (or --flowlog-collect ADDR:PORT on the image)"));
        }
        if let (Some(b), Some(ip)) = (self.bind, self.ip)
            && b != ip.address()
        {
            return Err(format!("--bind {b} differs from the interface address --ip {}", ip.address()));
        }
        Ok(())
    }

    pub fn is_given(&self, long: &str) -> bool {
        self.given.contains(&long)
    }

    /// The first option given that a platform does not support, from a list of long names.
    pub fn first_unsupported(&self, supported: &[&str]) -> Option<&'static str> {
        self.given
            .iter()
            .copied()
            .find(|n| SPECS.iter().any(|s| s.long == *n && s.scope == Scope::Platform) && !supported.contains(n))
    }

    /// How reports look for these options.
    pub fn report_config(&self, side: crate::report::Side) -> crate::report::ReportConfig {
        use crate::report::OutputFormat;
        crate::report::ReportConfig {
            side,
            format: if self.json {
                OutputFormat::Json
            } else if self.json_stream {
                OutputFormat::JsonStream
            } else {
                OutputFormat::Text
            },
            unit: self.format,
            verbose: self.verbose,
            title: self.title.clone(),
            forceflush: self.forceflush,
        }
    }

    /// `-C`, or this build's default controller.
    pub fn congestion(&self) -> crate::stack::Congestion {
        use crate::stack::Congestion;
        self.congestion.as_deref().and_then(|c| Congestion::parse(c).ok()).unwrap_or(Congestion::default_for_build())
    }

    /// `--idle-timeout`, defaulting to iperf3 3.15's 10 s control read timeout.
    pub fn idle_timeout(&self) -> smoltcp::time::Duration {
        smoltcp::time::Duration::from_secs(self.idle_timeout.unwrap_or(10) as u64)
    }

    /// The parameters a client sends for these options.
    pub fn to_params(&self) -> TestParams {
        let end_by_count = self.bytes.is_some() || self.blocks.is_some();
        TestParams {
            protocol: Protocol::Tcp,
            omit: self.omit,
            time: if end_by_count { 0 } else { self.time.unwrap_or(10) },
            num: self.bytes.unwrap_or(0),
            blockcount: self.blocks.unwrap_or(0),
            mss: self.mss,
            nodelay: self.nodelay,
            parallel: self.parallel,
            reverse: self.reverse,
            bidirectional: self.bidir,
            window: self.window,
            len: self.len.unwrap_or(DEFAULT_TCP_BLKSIZE),
            bandwidth: self.bitrate,
            fqrate: None,
            pacing_timer: Some(1000),
            burst: self.burst,
            tos: None,
            title: self.title.clone(),
            extra_data: self.extra_data.clone(),
            congestion: self.congestion.clone(),
            get_server_output: self.get_server_output,
            udp_counters_64bit: false,
            repeating_payload: self.repeating_payload,
            zerocopy: false,
            dont_fragment: false,
            client_version: Some(String::from(crate::proto::IPERF_VERSION)),
        }
    }
}

/// The `-h` text, listing every option this build understands.
pub fn usage(program: &str, platform_note: &str) -> String {
    let mut out = format!(
        "Usage: {program} [-s|-c host] [options]\n       {program} -h|--help\n\n\
         An iperf3-compatible throughput tester on the smoltcp TCP/IP stack.\n{platform_note}\n"
    );
    for (title, scope) in [
        ("Server or Client:", Scope::Both),
        ("Server specific:", Scope::Server),
        ("Client specific:", Scope::Client),
        ("Interface and simulator:", Scope::Platform),
    ] {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        for s in SPECS.iter().filter(|s| s.scope == scope) {
            let short = s.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let val = s.value.map(|v| format!(" {v}")).unwrap_or_default();
            let left = format!("  {short}--{}{val}", s.long);
            out.push_str(&format!("{left:<34} {}\n", s.help));
        }
    }
    out.push_str("\n[SIZE] and [BITS] take K/M/G/T suffixes (1024-based for sizes, 1000-based for rates).\n");
    out
}

/// Splits a kernel command line into words, honouring double quotes (`-T "my title"`).
pub fn split_cmdline(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(core::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated double quote in command line".to_string());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, String> {
        let words = split_cmdline(line)?;
        let o = Options::parse(words.iter().map(|s| s.as_str()))?;
        o.validate()?;
        Ok(o)
    }

    #[test]
    fn iperf3_syntax_variants() {
        let o = parse("-c 198.18.0.1 -t10 -P 4 --bidir -J -O1 --time=3 -w 256K -l 64K").unwrap();
        assert_eq!(o.mode, Some(Mode::Client("198.18.0.1".into())));
        assert_eq!(o.time, Some(3));
        assert_eq!(o.parallel, 4);
        assert!(o.bidir && o.json);
        assert_eq!(o.window, Some(262144));
        assert_eq!(o.len, Some(65536));
        let p = o.to_params();
        assert_eq!(p.omit, 1);
        assert!(p.to_json().contains("\"bidirectional\":true"));
    }

    #[test]
    fn clustered_short_flags() {
        let o = parse("-s1J -p 5999").unwrap();
        assert!(o.one_off && o.json);
        assert_eq!(o.port, 5999);
    }

    #[test]
    fn byte_limit_zeroes_time() {
        let p = parse("-c h -n 100M").unwrap().to_params();
        assert_eq!(p.time, 0);
        assert_eq!(p.num, 100 * 1024 * 1024);
    }

    #[test]
    fn network_options() {
        let o = parse("-s --ip 198.18.0.2/24 --gateway 198.18.0.1 --mtu 9000 --tap tap0").unwrap();
        assert_eq!(o.ip.unwrap().prefix_len(), 24);
        assert_eq!(o.gateway, Some(Ipv4Address::new(198, 18, 0, 1)));
        assert_eq!(o.first_unsupported(&["ip", "gateway", "mtu"]), Some("tap"));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("-c h -s", "both server"),
            ("-t 5", "client (-c HOST) or server"),
            ("-s -R", "--reverse is client only"),
            ("-c h --one-off", "--one-off is server only"),
            ("-c h -R --bidir", "reverse"),
            ("-c h -t 5 -n 1M", "end condition"),
            ("-c h -P 0", "--parallel"),
            ("-c h -P 129", "--parallel"),
            ("-c h -l 2M", "--length"),
            ("-c h -t", "needs a value"),
            ("-c h --frobnicate", "--frobnicate"),
            ("-c h -x", "'-x'"),
            ("-s --ip 198.18.0.2", "prefix length"),
            ("-s --ip 300.1.1.1/24", "not an IPv4 address"),
            ("-c h -C bbr", "bbr"),
            ("-c h -u", "UDP"),
            ("-c h -t abc", "'abc'"),
            ("-c h -T \"open", "quote"),
            ("-c h stray", "stray"),
            ("-c h -M 20000", "--set-mss"),
        ];
        for (line, want) in cases {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn flowlog_options() {
        let o = parse("-s --flowlog log.csv").unwrap();
        assert_eq!(o.flowlog.path.as_deref(), Some("log.csv"));
        assert_eq!(o.flowlog.format, crate::flowlog::Format::Csv);
        assert_eq!(o.flowlog.interval_ms, DEFAULT_FLOWLOG_INTERVAL_MS);
        let o = parse("-c h --flowlog f --flowlog-format jsonl --flowlog-interval 0").unwrap();
        assert_eq!((o.flowlog.format, o.flowlog.interval_ms), (crate::flowlog::Format::Jsonl, 0));
        let o = parse("-s --flowlog-collect 198.18.0.1:6000").unwrap();
        assert_eq!(o.flowlog.collect, Some((Ipv4Address::new(198, 18, 0, 1), 6000)));
        assert!(o.flowlog.enabled());
        for (line, want) in [
            ("-s --flowlog-format xml --flowlog f", "xml"),
            ("-s --flowlog-interval 5", "needs --flowlog"),
            ("-s --flowlog f --flowlog-interval 70000", "60000"),
            ("-s --flowlog-collect 198.18.0.1", "ADDR:PORT"),
            ("-s --flowlog-collect 198.18.0.1:0", "port 0"),
            ("-s --flowlog-collect host:6000", "not an IPv4"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn quoted_titles() {
        let o = parse("-c h -T \"my title\"").unwrap();
        assert_eq!(o.title.as_deref(), Some("my title"));
    }

    #[test]
    fn usage_lists_every_option() {
        let u = usage("uniperf", "");
        for s in SPECS {
            assert!(u.contains(&format!("--{}", s.long)), "{}", s.long);
        }
    }
}
