//! iperf3's command line, parsed once for every platform: the Linux program hands it `argv`,
//! the simulator its arguments, the unikernel its kernel command line. Each option is one
//! [`Flag`] in [`FLAGS`]: its names, help, which roles and platforms take it, and the
//! function that parses and range-checks its value into the typed [`Options`] (ranges of
//! test parameters come from [`crate::proto::limits`], which the server checks too). Adding
//! an option touches that table and the field it sets. Errors are one sentence naming the
//! option.

use crate::proto::{DEFAULT_TCP_BLKSIZE, DEFAULT_UDP_BLKSIZE, DEFAULT_UDP_RATE, Protocol, TestParams, limits};
use crate::stack::Congestion;
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

/// Where uniperf runs; options say which of these take them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The Linux program on a TAP device.
    Tap,
    /// `uniperf sim`: both ends in one process over a simulated link.
    Sim,
    /// The unikernel (QEMU, Xen); options come from the kernel command line.
    Image,
}

impl Target {
    const fn bit(self) -> u8 {
        match self {
            Target::Tap => 1,
            Target::Sim => 2,
            Target::Image => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Tap => "the Linux program (--tap)",
            Target::Sim => "`uniperf sim`",
            Target::Image => "the unikernel image",
        }
    }
}

const TAP: u8 = Target::Tap.bit();
const SIM: u8 = Target::Sim.bit();
const IMAGE: u8 = Target::Image.bit();
const ALL: u8 = TAP | SIM | IMAGE;

/// Which role takes an option (iperf3's IECLIENTONLY / IESERVERONLY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Both,
    Client,
    Server,
}

/// Whether an option takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    None,
    /// `--name VALUE`, `--name=VALUE`, `-xVALUE`, `-x VALUE`.
    Required(&'static str),
    /// Only `--name=VALUE` (like getopt's optional arguments).
    Optional(&'static str),
}

/// One command-line option.
pub struct Flag {
    pub short: Option<char>,
    pub long: &'static str,
    /// Other long names (iperf3's `--bandwidth`, getopt's `--json-stream-full` abbreviation).
    pub aliases: &'static [&'static str],
    pub arg: Arg,
    pub role: Role,
    /// Bit set of the platforms that take it.
    platforms: u8,
    /// Shown after "not taken by …" when given on a platform outside `platforms`.
    elsewhere: &'static str,
    pub help: &'static str,
    apply: fn(&mut Options, Option<&str>) -> Result<(), String>,
}

impl Flag {
    pub fn taken_by(&self, p: Target) -> bool {
        self.platforms & p.bit() != 0
    }
}

/// Report and output settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputOptions {
    /// `-f`: 'k','m','g','t' (bits), 'K','M','G','T' (bytes), or 'a' (adaptive bits).
    pub format: char,
    /// `-i`, seconds (0: no interval reports).
    pub interval: f64,
    pub json: bool,
    pub json_stream: bool,
    /// `--json-stream-full-output` (3.20): the whole document after the stream too.
    pub json_stream_full: bool,
    pub logfile: Option<String>,
    pub forceflush: bool,
    pub verbose: bool,
    /// `-d`/`--debug`: uniperf's own diagnostics (the `log` facade's debug level) too.
    pub debug: bool,
    /// `--timestamps[=FORMAT]`: strftime format put before every text line.
    pub timestamps: Option<String>,
}

/// iperf3's default `--timestamps` format (`%c` plus a space).
pub const DEFAULT_TIMESTAMP_FORMAT: &str = "%c ";

/// Server settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServerOptions {
    /// `-1`.
    pub one_off: bool,
    /// `--idle-timeout`, seconds.
    pub idle_timeout: Option<u32>,
    /// `--max-tests`: tests served at once (iperf3: 1).
    pub max_tests: Option<u32>,
    /// `--server-max-duration`, seconds: longer tests (and tests that end by count) are refused.
    pub max_duration: Option<u32>,
    /// `--server-bitrate-limit RATE[/SECS]`: bit/s over all streams of a test, averaged over
    /// SECS (default 5).
    pub bitrate_limit: Option<(u64, u32)>,
    /// `--max-streams`: data streams one test may open.
    pub max_streams: Option<u32>,
    /// `--max-total-streams`: data streams of all tests at once.
    pub max_total_streams: Option<u32>,
    /// `--iperf2[=PORT]`: also serve stock iperf 2 clients on this port (TCP and UDP).
    pub iperf2_port: Option<u16>,
}

/// Time limits both roles apply to their data streams.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TimeoutOptions {
    /// `--rcv-timeout`, ms: a receiving side that gets no data for this long ends the test.
    pub rcv_ms: Option<u32>,
    /// `--snd-timeout`, ms: a sending TCP stream whose data stays unacknowledged this long fails.
    pub snd_ms: Option<u32>,
}

/// What a client asks of a test (most of it travels in the parameter JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct TestOptions {
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
    pub congestion: Option<Congestion>,
    pub nodelay: bool,
    pub omit: u32,
    pub title: Option<String>,
    pub extra_data: Option<String>,
    pub get_server_output: bool,
    pub repeating_payload: bool,
    /// `--cport`: data stream i binds this port + i (+ `-P` for the receive half of --bidir).
    pub cport: Option<u16>,
    pub zerocopy: bool,
    pub skip_rx_copy: bool,
    /// `--udp-counters-64bit`.
    pub udp_counters_64bit: bool,
    /// `--pacing-timer`, µs (sent as iperf3 does; our pacer needs no timer).
    pub pacing_timer: Option<u32>,
    /// `--fq-rate`, bit/s per stream.
    pub fq_rate: Option<u64>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            udp: false,
            udp_counters_64bit: false,
            pacing_timer: None,
            fq_rate: None,
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
            cport: None,
            zerocopy: false,
            skip_rx_copy: false,
        }
    }
}

/// The interface uniperf's own stack runs on.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NetOptions {
    /// `--tap IFNAME` (Linux).
    pub tap: Option<String>,
    pub ip: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Address>,
    /// IP MTU.
    pub mtu: Option<u32>,
}

/// `uniperf sim`'s link.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SimOptions {
    pub delay_ms: f64,
    /// `--jitter`: extra delay per frame, uniform in 0..this, ms.
    pub jitter_ms: f64,
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

/// Everything the command line can say, by concern.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub mode: Option<Mode>,
    pub port: u16,
    pub bind: Option<Ipv4Address>,
    pub output: OutputOptions,
    pub server: ServerOptions,
    pub timeouts: TimeoutOptions,
    pub test: TestOptions,
    pub net: NetOptions,
    pub sim: SimOptions,
    pub flowlog: FlowLogOptions,
    pub version: bool,
    pub help: bool,
    /// Long names of every option given, in order (for role checks).
    given: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: None,
            port: crate::proto::DEFAULT_PORT,
            bind: None,
            output: OutputOptions {
                format: 'a',
                interval: 1.0,
                json: false,
                json_stream: false,
                json_stream_full: false,
                logfile: None,
                forceflush: false,
                verbose: false,
                debug: false,
                timestamps: None,
            },
            server: ServerOptions::default(),
            timeouts: TimeoutOptions::default(),
            test: TestOptions::default(),
            net: NetOptions::default(),
            sim: SimOptions { seed: 1, ..SimOptions::default() },
            flowlog: FlowLogOptions::default(),
            version: false,
            help: false,
            given: Vec::new(),
        }
    }
}

// ---- value parsers ------------------------------------------------------------------------

fn num<T: core::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim().parse::<T>().map_err(|_| format!("option --{name}: '{v}' is not a valid number"))
}

/// A number within one of the shared parameter limits.
fn limited(name: &str, v: &str, l: &limits::Limit) -> Result<i64, String> {
    let n: i64 = num(name, v)?;
    if !l.contains(n) {
        return Err(format!("option --{name}: {n} must be between {} and {}", l.min, l.max));
    }
    Ok(n)
}

fn size_within(name: &str, v: &str, l: &limits::Limit) -> Result<u32, String> {
    let n = parse_size(v).map_err(|e| format!("option --{name}: {e}"))?;
    if n < l.min as u64 || n > l.max as u64 {
        return Err(format!("option --{name}: {v} must be between {} and {} bytes", l.min, l.max));
    }
    Ok(n as u32)
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

fn port(name: &str, v: &str) -> Result<u16, String> {
    let p: u16 = num(name, v)?;
    if p == 0 {
        return Err(format!("option --{name}: 0 is not a usable port (1-65535)"));
    }
    Ok(p)
}

fn set_mode(o: &mut Options, m: Mode) -> Result<(), String> {
    if o.mode.is_some() && o.mode != Some(m.clone()) {
        return Err("cannot be both server (-s) and client (-c)".to_string());
    }
    o.mode = Some(m);
    Ok(())
}

/// The value of an option that takes one (the parser guarantees it is there).
fn val(v: Option<&str>) -> &str {
    v.unwrap_or("")
}

// ---- the options --------------------------------------------------------------------------

macro_rules! flag {
    ($short:expr, $long:expr, $arg:expr, $role:expr, $platforms:expr, $help:expr, $apply:expr) => {
        flag!($short, $long, &[], $arg, $role, $platforms, "", $help, $apply)
    };
    ($short:expr, $long:expr, $aliases:expr, $arg:expr, $role:expr, $platforms:expr, $elsewhere:expr, $help:expr,
     $apply:expr) => {
        Flag {
            short: $short,
            long: $long,
            aliases: $aliases,
            arg: $arg,
            role: $role,
            platforms: $platforms,
            elsewhere: $elsewhere,
            help: $help,
            apply: $apply,
        }
    };
}

use Arg::{None as NoArg, Optional, Required};
use Role::{Both, Client, Server};

/// Every option uniperf understands, each once.
pub static FLAGS: &[Flag] = &[
    flag!(Some('s'), "server", NoArg, Server, ALL, "run in server mode", |o, _| set_mode(o, Mode::Server)),
    flag!(Some('c'), "client", Required("HOST"), Client, ALL, "run in client mode, connecting to HOST", |o, v| {
        set_mode(o, Mode::Client(val(v).to_string()))
    }),
    flag!(
        Some('p'),
        "port",
        Required("N"),
        Both,
        ALL,
        "server port to listen on / connect to (default 5201)",
        |o, v| {
            o.port = port("port", val(v))?;
            Ok(())
        }
    ),
    flag!(
        Some('B'),
        "bind",
        Required("ADDR"),
        Both,
        TAP | IMAGE,
        "bind to this local address (must be the --ip address)",
        |o, v| {
            let v = val(v);
            o.bind = Some(parse_ipv4("bind", v.split('%').next().unwrap_or(v))?);
            Ok(())
        }
    ),
    flag!(
        Some('4'),
        "version4",
        NoArg,
        Both,
        ALL,
        "only use IPv4 (uniperf's stack is IPv4 only anyway)",
        |_, _| Ok(())
    ),
    flag!(
        Some('6'),
        "version6",
        NoArg,
        Both,
        ALL,
        "only use IPv6 (not supported: uniperf's stack is IPv4 only)",
        |_, _| { Err("option --version6: IPv6 is not supported (uniperf's stack is IPv4 only)".to_string()) }
    ),
    flag!(
        Some('f'),
        "format",
        Required("[kmgtKMGT]"),
        Both,
        ALL,
        "format to report: Kbits, Mbits, Gbits, Tbits, or KBytes…",
        |o, v| {
            let v = val(v);
            match v.chars().next().filter(|_| v.len() == 1) {
                Some(c @ ('k' | 'm' | 'g' | 't' | 'K' | 'M' | 'G' | 'T' | 'a' | 'A')) => o.output.format = c,
                _ => return Err(format!("option --format: '{v}' is not one of k m g t K M G T")),
            }
            Ok(())
        }
    ),
    flag!(
        Some('i'),
        "interval",
        Required("SECS"),
        Both,
        ALL,
        "seconds between periodic reports (0 disables; default 1)",
        |o, v| {
            let i: f64 = num("interval", val(v))?;
            if !(i == 0.0 || (0.1..=60.0).contains(&i)) {
                return Err(format!("option --interval: {} must be 0 or between 0.1 and 60 seconds", val(v)));
            }
            o.output.interval = i;
            Ok(())
        }
    ),
    flag!(Some('J'), "json", NoArg, Both, ALL, "output in JSON format", |o, _| {
        o.output.json = true;
        Ok(())
    }),
    flag!(None, "json-stream", NoArg, Both, ALL, "output in line-delimited JSON format", |o, _| {
        o.output.json_stream = true;
        Ok(())
    }),
    flag!(
        None,
        "json-stream-full-output",
        &["json-stream-full"],
        NoArg,
        Both,
        ALL,
        "",
        "with --json-stream: print the whole JSON document at the end too",
        |o, _| {
            o.output.json_stream_full = true;
            Ok(())
        }
    ),
    flag!(
        None,
        "logfile",
        &[],
        Required("FILE"),
        Both,
        TAP | SIM,
        "the image has no file system; reports go to the console",
        "send output to a log file",
        |o, v| {
            o.output.logfile = Some(val(v).to_string());
            Ok(())
        }
    ),
    flag!(None, "forceflush", NoArg, Both, ALL, "force flushing output at every interval", |o, _| {
        o.output.forceflush = true;
        Ok(())
    }),
    flag!(
        None,
        "timestamps",
        Optional("FORMAT"),
        Both,
        ALL,
        "prefix every output line with a timestamp (strftime FORMAT, default \"%c \")",
        |o, v| {
            o.output.timestamps = Some(v.unwrap_or(DEFAULT_TIMESTAMP_FORMAT).to_string());
            Ok(())
        }
    ),
    flag!(Some('V'), "verbose", NoArg, Both, ALL, "more detailed output", |o, _| {
        o.output.verbose = true;
        Ok(())
    }),
    flag!(Some('d'), "debug", NoArg, Both, ALL, "emit debugging output (uniperf's own diagnostics)", |o, _| {
        o.output.debug = true;
        Ok(())
    }),
    flag!(Some('v'), "version", NoArg, Both, ALL, "show version information and quit", |o, _| {
        o.version = true;
        Ok(())
    }),
    flag!(Some('h'), "help", NoArg, Both, ALL, "show this message and quit", |o, _| {
        o.help = true;
        Ok(())
    }),
    flag!(Some('1'), "one-off", NoArg, Server, ALL, "handle one client connection then exit", |o, _| {
        o.server.one_off = true;
        Ok(())
    }),
    flag!(
        None,
        "idle-timeout",
        Required("SECS"),
        Server,
        ALL,
        "drop a stalled client and go back to listening after SECS (default 10)",
        |o, v| {
            let t: u32 = num("idle-timeout", val(v))?;
            if !(1..=86_400).contains(&t) {
                return Err(format!("option --idle-timeout: {t} must be between 1 and 86400 seconds"));
            }
            o.server.idle_timeout = Some(t);
            Ok(())
        }
    ),
    flag!(
        None,
        "max-tests",
        Required("N"),
        Server,
        ALL,
        "serve up to N tests at once (default 1, as iperf3)",
        |o, v| {
            let n: u32 = num("max-tests", val(v))?;
            if !(1..=64).contains(&n) {
                return Err(format!("option --max-tests: {n} must be between 1 and 64"));
            }
            o.server.max_tests = Some(n);
            Ok(())
        }
    ),
    flag!(
        None,
        "server-max-duration",
        Required("SECS"),
        Server,
        ALL,
        "refuse tests longer than SECS (-t plus -O), and tests that end by -n/-k",
        |o, v| {
            let n: u32 = num("server-max-duration", val(v))?;
            if !(1..=86_400).contains(&n) {
                return Err(format!("option --server-max-duration: {n} must be between 1 and 86400 seconds"));
            }
            o.server.max_duration = Some(n);
            Ok(())
        }
    ),
    flag!(
        None,
        "server-bitrate-limit",
        Required("RATE[/SECS]"),
        Server,
        ALL,
        "refuse or end a test over RATE bit/s in total, averaged over SECS (default 5)",
        |o, v| {
            let (rate, secs) = match val(v).split_once('/') {
                Some((r, s)) => (r, num::<u32>("server-bitrate-limit", s)?),
                None => (val(v), 5),
            };
            let rate = parse_rate(rate).map_err(|e| format!("option --server-bitrate-limit: {e}"))?;
            if rate == 0 || !(1..=3600).contains(&secs) {
                return Err(format!(
                    "option --server-bitrate-limit: '{}' needs a positive rate and 1..3600 seconds",
                    val(v)
                ));
            }
            o.server.bitrate_limit = Some((rate, secs));
            Ok(())
        }
    ),
    flag!(None, "max-streams", Required("N"), Server, ALL, "refuse tests with more than N data streams", |o, v| {
        o.server.max_streams = Some(limited("max-streams", val(v), &limits::TOTAL_STREAMS)? as u32);
        Ok(())
    }),
    flag!(
        None,
        "max-total-streams",
        Required("N"),
        Server,
        ALL,
        "refuse a test that would bring the data streams of all tests over N",
        |o, v| {
            o.server.max_total_streams = Some(limited("max-total-streams", val(v), &limits::TOTAL_STREAMS)? as u32);
            Ok(())
        }
    ),
    flag!(
        None,
        "rcv-timeout",
        Required("MS"),
        Both,
        ALL,
        "end the test when a receiving side gets no data for MS milliseconds",
        |o, v| {
            let n: u32 = num("rcv-timeout", val(v))?;
            if !(100..=86_400_000).contains(&n) {
                return Err(format!("option --rcv-timeout: {n} must be between 100 and 86400000 ms"));
            }
            o.timeouts.rcv_ms = Some(n);
            Ok(())
        }
    ),
    flag!(
        None,
        "snd-timeout",
        Required("MS"),
        Both,
        ALL,
        "fail a TCP stream whose sent data stays unacknowledged for MS milliseconds",
        |o, v| {
            let n: u32 = num("snd-timeout", val(v))?;
            if n > 86_400_000 {
                return Err(format!("option --snd-timeout: {n} must be at most 86400000 ms"));
            }
            o.timeouts.snd_ms = Some(n);
            Ok(())
        }
    ),
    flag!(Some('u'), "udp", NoArg, Client, ALL, "use UDP rather than TCP", |o, _| {
        o.test.udp = true;
        Ok(())
    }),
    flag!(None, "udp-counters-64bit", NoArg, Client, ALL, "use 64-bit counters in UDP test packets", |o, _| {
        o.test.udp_counters_64bit = true;
        Ok(())
    }),
    flag!(
        None,
        "pacing-timer",
        Required("USEC"),
        Client,
        ALL,
        "pacing timer in microseconds (accepted and sent; uniperf paces every datagram)",
        |o, v| {
            o.test.pacing_timer = Some(num("pacing-timer", val(v))?);
            Ok(())
        }
    ),
    flag!(
        None,
        "fq-rate",
        Required("RATE"),
        Client,
        ALL,
        "fair-queueing pacing rate in bits/sec (uniperf holds each stream to it)",
        |o, v| {
            o.test.fq_rate = Some(parse_rate(val(v)).map_err(|e| format!("option --fq-rate: {e}"))?);
            Ok(())
        }
    ),
    flag!(None, "connect-timeout", Required("MS"), Client, ALL, "timeout for control connection setup (ms)", |o, v| {
        o.test.connect_timeout_ms = Some(num("connect-timeout", val(v))?);
        Ok(())
    }),
    flag!(
        Some('b'),
        "bitrate",
        &["bandwidth"],
        Required("RATE[/BURST]"),
        Client,
        ALL,
        "",
        "target bitrate in bits/sec per stream (0 = unlimited, the TCP default; 1 Mbit/s for UDP)",
        |o, v| {
            let (r, b) = parse_rate_burst(val(v)).map_err(|e| format!("option --bitrate: {e}"))?;
            if let Some(b) = b
                && !limits::BURST.contains(b as i64)
            {
                return Err(format!("option --bitrate: burst {b} must be between 1 and {}", limits::BURST.max));
            }
            o.test.bitrate = r;
            o.test.burst = b;
            Ok(())
        }
    ),
    flag!(Some('t'), "time", Required("SECS"), Client, ALL, "time in seconds to transmit for (default 10)", |o, v| {
        o.test.time = Some(limited("time", val(v), &limits::TIME)? as u32);
        Ok(())
    }),
    flag!(Some('n'), "bytes", Required("SIZE"), Client, ALL, "number of bytes to transmit (instead of -t)", |o, v| {
        o.test.bytes = Some(parse_size(val(v)).map_err(|e| format!("option --bytes: {e}"))?);
        Ok(())
    }),
    flag!(
        Some('k'),
        "blockcount",
        Required("N"),
        Client,
        ALL,
        "number of blocks to transmit (instead of -t or -n)",
        |o, v| {
            o.test.blocks = Some(parse_size(val(v)).map_err(|e| format!("option --blockcount: {e}"))?);
            Ok(())
        }
    ),
    flag!(
        Some('l'),
        "length",
        Required("SIZE"),
        Client,
        ALL,
        "length of buffer to read or write (default 128 KB for TCP, the path MSS for UDP)",
        |o, v| {
            o.test.len = Some(size_within("length", val(v), &limits::TCP_LEN)?);
            Ok(())
        }
    ),
    flag!(
        Some('P'),
        "parallel",
        Required("N"),
        Client,
        ALL,
        "number of parallel client streams to run (1-128)",
        |o, v| {
            o.test.parallel = limited("parallel", val(v), &limits::PARALLEL)? as u32;
            Ok(())
        }
    ),
    flag!(Some('R'), "reverse", NoArg, Client, ALL, "run in reverse mode (server sends, client receives)", |o, _| {
        o.test.reverse = true;
        Ok(())
    }),
    flag!(None, "bidir", NoArg, Client, ALL, "run in bidirectional mode", |o, _| {
        o.test.bidir = true;
        Ok(())
    }),
    flag!(Some('w'), "window", Required("SIZE"), Client, ALL, "socket buffer size (sets both directions)", |o, v| {
        // smoltcp needs room for at least one segment; the maximum is iperf3's.
        let w = size_within("window", val(v), &limits::WINDOW)?;
        if w < 1024 {
            return Err(format!("option --window: {} is smaller than 1 KiB", val(v)));
        }
        o.test.window = Some(w);
        Ok(())
    }),
    flag!(
        Some('C'),
        "congestion",
        &["linux-congestion"],
        Required("ALGO"),
        Client,
        ALL,
        "",
        "congestion control: reno, cubic (host builds) or none",
        |o, v| {
            o.test.congestion = Some(Congestion::parse(val(v)).map_err(|e| format!("option --congestion: {e}"))?);
            Ok(())
        }
    ),
    flag!(
        Some('M'),
        "set-mss",
        Required("N"),
        Client,
        ALL,
        "TCP MSS for the server's data sockets (a stock server applies it; smoltcp cannot)",
        |o, v| {
            // 88 is the smallest MSS Linux accepts; the maximum is iperf3's.
            let m = limited("set-mss", val(v), &limits::MSS)?;
            if m < 88 {
                return Err(format!("option --set-mss: {m} must be between 88 and {}", limits::MSS.max));
            }
            o.test.mss = Some(m as u32);
            Ok(())
        }
    ),
    flag!(Some('N'), "no-delay", NoArg, Client, ALL, "set TCP no delay, disabling Nagle's algorithm", |o, _| {
        o.test.nodelay = true;
        Ok(())
    }),
    flag!(Some('O'), "omit", Required("N"), Client, ALL, "omit the first N seconds", |o, v| {
        o.test.omit = limited("omit", val(v), &limits::OMIT)? as u32;
        Ok(())
    }),
    flag!(Some('T'), "title", Required("STR"), Client, ALL, "prefix every output line with this string", |o, v| {
        o.test.title = Some(val(v).to_string());
        Ok(())
    }),
    flag!(
        None,
        "extra-data",
        Required("STR"),
        Client,
        ALL,
        "data string to include in client and server JSON",
        |o, v| {
            o.test.extra_data = Some(val(v).to_string());
            Ok(())
        }
    ),
    flag!(None, "get-server-output", NoArg, Client, ALL, "get results from the server", |o, _| {
        o.test.get_server_output = true;
        Ok(())
    }),
    flag!(
        None,
        "repeating-payload",
        NoArg,
        Client,
        ALL,
        "use a repeating 0123456789… payload instead of random bytes",
        |o, _| {
            o.test.repeating_payload = true;
            Ok(())
        }
    ),
    flag!(None, "cport", Required("PORT"), Client, ALL, "bind data stream i to local port PORT+i", |o, v| {
        o.test.cport = Some(port("cport", val(v))?);
        Ok(())
    }),
    flag!(
        Some('Z'),
        "zerocopy",
        NoArg,
        Client,
        ALL,
        "ask for zero-copy sending (smoltcp copies anyway; a stock peer may use sendfile)",
        |o, _| {
            o.test.zerocopy = true;
            Ok(())
        }
    ),
    flag!(
        None,
        "skip-rx-copy",
        NoArg,
        Client,
        ALL,
        "ask receivers to skip copying (smoltcp copies anyway; a stock peer uses MSG_TRUNC)",
        |o, _| {
            o.test.skip_rx_copy = true;
            Ok(())
        }
    ),
    flag!(
        None,
        "flowlog",
        Required("FILE"),
        Both,
        ALL,
        "write a per-flow TCP log (seq, ack, RTT, in-flight, windows) to FILE; image: `console`",
        |o, v| {
            if val(v).is_empty() {
                return Err("option --flowlog: needs a file name".to_string());
            }
            o.flowlog.path = Some(val(v).to_string());
            Ok(())
        }
    ),
    flag!(
        None,
        "flowlog-format",
        Required("csv|jsonl"),
        Both,
        ALL,
        "flow-log format (default csv; docs/flowlog.md)",
        |o, v| {
            o.flowlog.format =
                crate::flowlog::Format::parse(val(v)).map_err(|e| format!("option --flowlog-format: {e}"))?;
            Ok(())
        }
    ),
    flag!(
        None,
        "flowlog-interval",
        Required("MS"),
        Both,
        ALL,
        "at most one flow-log sample per flow every MS ms (0 = every segment; default 10)",
        |o, v| {
            let ms: u32 = num("flowlog-interval", val(v))?;
            if ms > 60_000 {
                return Err(format!("option --flowlog-interval: {ms} ms is longer than the maximum of 60000"));
            }
            o.flowlog.interval_ms = ms;
            Ok(())
        }
    ),
    flag!(
        None,
        "flowlog-collect",
        &[],
        Required("ADDR:PORT"),
        Both,
        IMAGE,
        "on Linux, --flowlog FILE writes the log directly",
        "send each test's flow log to `uniperf collect` at ADDR:PORT",
        |o, v| {
            o.flowlog.collect = Some(parse_endpoint("flowlog-collect", val(v))?);
            Ok(())
        }
    ),
    flag!(
        None,
        "tap",
        &[],
        Required("IFNAME"),
        Both,
        TAP,
        "the image drives its own NIC",
        "run smoltcp on this Linux TAP device (created if missing)",
        |o, v| {
            let v = val(v);
            if v.is_empty() || v.len() > 15 {
                return Err(format!("option --tap: '{v}' is not a valid interface name (1-15 characters)"));
            }
            o.net.tap = Some(v.to_string());
            Ok(())
        }
    ),
    flag!(
        None,
        "ip",
        &[],
        Required("ADDR/PREFIX"),
        Both,
        TAP | IMAGE,
        "the simulator's ends are 198.18.0.1 and .2",
        "IPv4 address of uniperf's own interface",
        |o, v| {
            o.net.ip = Some(parse_cidr("ip", val(v))?);
            Ok(())
        }
    ),
    flag!(
        None,
        "gateway",
        &[],
        Required("ADDR"),
        Both,
        TAP | IMAGE,
        "the simulated link has no router",
        "default IPv4 gateway",
        |o, v| {
            o.net.gateway = Some(parse_ipv4("gateway", val(v))?);
            Ok(())
        }
    ),
    flag!(None, "mtu", Required("N"), Both, ALL, "IP MTU of the interface (default: the device's, or 1500)", |o, v| {
        let m: u32 = num("mtu", val(v))?;
        if !(576..=65000).contains(&m) {
            return Err(format!("option --mtu: {m} must be between 576 and 65000"));
        }
        o.net.mtu = Some(m);
        Ok(())
    }),
    flag!(None, "delay", &[], Required("MS"), Both, SIM, "", "sim: one-way link delay in milliseconds", |o, v| {
        let d: f64 = num("delay", val(v))?;
        if !(0.0..=10_000.0).contains(&d) {
            return Err(format!("option --delay: {} ms must be between 0 and 10000", val(v)));
        }
        o.sim.delay_ms = d;
        Ok(())
    }),
    flag!(
        None,
        "jitter",
        &[],
        Required("MS"),
        Both,
        SIM,
        "",
        "sim: extra one-way delay per frame, uniform in 0..MS (frames stay in order)",
        |o, v| {
            let j: f64 = num("jitter", val(v))?;
            if !(0.0..=10_000.0).contains(&j) {
                return Err(format!("option --jitter: {} ms must be between 0 and 10000", val(v)));
            }
            o.sim.jitter_ms = j;
            Ok(())
        }
    ),
    flag!(None, "loss", &[], Required("PCT"), Both, SIM, "", "sim: frame loss in percent, e.g. 0.1", |o, v| {
        let l: f64 = num("loss", val(v))?;
        if !(0.0..=100.0).contains(&l) {
            return Err(format!("option --loss: {} % must be between 0 and 100", val(v)));
        }
        o.sim.loss_pct = l;
        Ok(())
    }),
    flag!(
        None,
        "rate",
        &[],
        Required("BITS"),
        Both,
        SIM,
        "",
        "sim: bottleneck rate in bits/sec (K/M/G suffixes)",
        |o, v| {
            let r = parse_rate(val(v)).map_err(|e| format!("option --rate: {e}"))?;
            if r < 8000 {
                return Err(format!("option --rate: {} is below the minimum of 8 kbit/s", val(v)));
            }
            o.sim.rate_bps = Some(r);
            Ok(())
        }
    ),
    flag!(None, "queue", &[], Required("BYTES"), Both, SIM, "", "sim: bottleneck drop-tail queue in bytes", |o, v| {
        let q = parse_size(val(v)).map_err(|e| format!("option --queue: {e}"))?;
        if q < 1514 {
            return Err(format!("option --queue: {} bytes cannot hold one frame", val(v)));
        }
        o.sim.queue_bytes = Some(q);
        Ok(())
    }),
    flag!(None, "seed", &[], Required("N"), Both, SIM, "", "sim: random seed of the link", |o, v| {
        o.sim.seed = num("seed", val(v))?;
        Ok(())
    }),
    flag!(
        None,
        "iperf2",
        &[],
        NoArg,
        Server,
        TAP | IMAGE,
        "stock iperf 2 clients cannot reach the simulated link",
        "also serve stock iperf 2 clients (TCP and UDP) on port 5001",
        |o, _| {
            o.server.iperf2_port.get_or_insert(crate::proto::iperf2::DEFAULT_PORT);
            Ok(())
        }
    ),
    flag!(
        None,
        "iperf2-port",
        &[],
        Required("N"),
        Server,
        TAP | IMAGE,
        "stock iperf 2 clients cannot reach the simulated link",
        "the port iperf 2 clients are served on (implies --iperf2)",
        |o, v| {
            o.server.iperf2_port = Some(port("iperf2-port", val(v))?);
            Ok(())
        }
    ),
];

fn by_long(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.long == name || f.aliases.contains(&name))
}

fn by_short(c: char) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.short == Some(c))
}

impl Options {
    /// Parses arguments (without the program name) for `platform`. Unknown options, options
    /// the platform does not take, missing values and bad values are errors; role and
    /// consistency checks follow in [`Options::validate`].
    pub fn parse<'a, I: IntoIterator<Item = &'a str>>(args: I, platform: Target) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                return Err("unexpected '--'".to_string());
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (long, None),
                };
                let flag = by_long(name).ok_or_else(|| format!("unrecognized option '--{name}' (try -h)"))?;
                let value = match (flag.arg, inline) {
                    (Arg::None, Some(_)) => return Err(format!("option '--{name}' takes no value")),
                    (Arg::None, None) | (Arg::Optional(_), None) => None,
                    (_, Some(v)) => Some(v),
                    (Arg::Required(meta), None) => {
                        Some(it.next().ok_or_else(|| format!("option '--{name}' needs a value ({meta})"))?)
                    }
                };
                o.apply(flag, value, platform)?;
            } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (i, c) in shorts.char_indices() {
                    let flag = by_short(c).ok_or_else(|| format!("unrecognized option '-{c}' (try -h)"))?;
                    if let Arg::Required(meta) = flag.arg {
                        let rest = &shorts[i + c.len_utf8()..];
                        let v = if !rest.is_empty() {
                            rest
                        } else {
                            it.next().ok_or_else(|| format!("option '-{c}' needs a value ({meta})"))?
                        };
                        o.apply(flag, Some(v), platform)?;
                        break;
                    }
                    o.apply(flag, None, platform)?;
                }
            } else {
                return Err(format!("unexpected argument '{arg}' (options start with '-'; try -h)"));
            }
        }
        Ok(o)
    }

    fn apply(&mut self, flag: &'static Flag, value: Option<&str>, platform: Target) -> Result<(), String> {
        if !flag.taken_by(platform) {
            let name = flag.long;
            let takers: Vec<&str> = [Target::Tap, Target::Sim, Target::Image]
                .iter()
                .filter(|p| flag.taken_by(**p))
                .map(|p| p.name())
                .collect();
            let mut msg =
                format!("option --{name} is not taken by {} (it is for {})", platform.name(), takers.join(" and "));
            if !flag.elsewhere.is_empty() {
                msg.push_str(&format!("; {}", flag.elsewhere));
            }
            return Err(msg);
        }
        self.given.push(flag.long);
        (flag.apply)(self, value)
    }

    /// Role and consistency checks, as iperf3 does them after parsing.
    pub fn validate(&self) -> Result<(), String> {
        if self.help || self.version {
            return Ok(());
        }
        let mode = self.mode.as_ref().ok_or("must either be a client (-c HOST) or server (-s)")?;
        self.server_address()?;
        let (wrong, role) = match mode {
            Mode::Server => (Role::Client, "client"),
            Mode::Client(_) => (Role::Server, "server"),
        };
        if let Some(name) = self.given.iter().find(|n| by_long(n).is_some_and(|f| f.role == wrong)) {
            return Err(format!("option --{name} is {role} only"));
        }
        let t = &self.test;
        if let Some(len) = t.len.filter(|_| t.udp)
            && !limits::UDP_LEN.contains(len as i64)
        {
            let (min, max) = (limits::UDP_LEN.min, limits::UDP_LEN.max);
            return Err(format!("option --length: {len} is outside {min}..={max} for UDP"));
        }
        if self.timeouts.rcv_ms.is_some() && matches!(mode, Mode::Client(_)) && !t.reverse && !t.bidir {
            return Err("client receive timeout is valid only in receiving mode (-R or --bidir)".to_string());
        }
        if t.udp_counters_64bit && !t.udp {
            return Err("--udp-counters-64bit needs a UDP test (-u)".to_string());
        }
        if t.reverse && t.bidir {
            return Err("cannot be both reverse (-R) and bidirectional (--bidir)".to_string());
        }
        if [t.time.is_some(), t.bytes.is_some(), t.blocks.is_some()].iter().filter(|&&b| b).count() > 1 {
            return Err("only one test end condition (-t, -n, -k) may be specified".to_string());
        }
        if self.output.json && self.output.json_stream {
            return Err("--json and --json-stream cannot be used together".to_string());
        }
        if let Some(c) = t.cport {
            let streams = if t.bidir { 2 * t.parallel } else { t.parallel };
            if c as u32 + streams - 1 > u16::MAX as u32 {
                return Err(format!("option --cport: {c} + {streams} streams runs past port 65535"));
            }
        }
        if !self.flowlog.enabled()
            && let Some(n) = self.given.iter().find(|n| matches!(**n, "flowlog-format" | "flowlog-interval"))
        {
            return Err(format!("--{n} needs --flowlog FILE (or --flowlog-collect ADDR:PORT on the image)"));
        }
        if let (Some(b), Some(ip)) = (self.bind, self.net.ip)
            && b != ip.address()
        {
            return Err(format!("--bind {b} differs from the interface address --ip {}", ip.address()));
        }
        Ok(())
    }

    /// The address `-c HOST` names (None for a server). uniperf has no resolver, so HOST must
    /// be an IPv4 address.
    pub fn server_address(&self) -> Result<Option<smoltcp::wire::IpAddress>, String> {
        match &self.mode {
            Some(Mode::Client(host)) => match host.parse::<Ipv4Address>() {
                Ok(a) => Ok(Some(smoltcp::wire::IpAddress::Ipv4(a))),
                Err(_) => Err(format!("'{host}' is not an IPv4 address (uniperf has no DNS resolver)")),
            },
            _ => Ok(None),
        }
    }

    pub fn is_given(&self, long: &str) -> bool {
        self.given.contains(&long)
    }

    /// How reports look for these options.
    pub fn report_config(&self, side: crate::report::Side) -> crate::report::ReportConfig {
        use crate::report::OutputFormat;
        let out = &self.output;
        crate::report::ReportConfig {
            side,
            format: if out.json {
                OutputFormat::Json
            } else if out.json_stream {
                OutputFormat::JsonStream
            } else {
                OutputFormat::Text
            },
            full_document: out.json_stream_full,
            unit: out.format,
            verbose: out.verbose,
            title: self.test.title.clone(),
            forceflush: out.forceflush,
        }
    }

    /// `-C`, or this build's default controller.
    pub fn congestion(&self) -> Congestion {
        self.test.congestion.unwrap_or(Congestion::default_for_build())
    }

    /// `--idle-timeout`, defaulting to iperf3 3.15's 10 s control read timeout.
    pub fn idle_timeout(&self) -> smoltcp::time::Duration {
        smoltcp::time::Duration::from_secs(self.server.idle_timeout.unwrap_or(10) as u64)
    }

    /// The parameters a client sends for these options.
    pub fn to_params(&self) -> TestParams {
        let t = &self.test;
        let end_by_count = t.bytes.is_some() || t.blocks.is_some();
        let bandwidth = if t.udp && !self.is_given("bitrate") { DEFAULT_UDP_RATE } else { t.bitrate };
        TestParams {
            protocol: if t.udp { Protocol::Udp } else { Protocol::Tcp },
            omit: t.omit,
            time: if end_by_count { 0 } else { t.time.unwrap_or(10) },
            num: t.bytes.unwrap_or(0),
            blockcount: t.blocks.unwrap_or(0),
            mss: t.mss,
            nodelay: t.nodelay,
            parallel: t.parallel,
            reverse: t.reverse,
            bidirectional: t.bidir,
            window: t.window,
            len: t.len.unwrap_or(if t.udp { DEFAULT_UDP_BLKSIZE } else { DEFAULT_TCP_BLKSIZE }),
            bandwidth,
            fqrate: t.fq_rate,
            pacing_timer: Some(t.pacing_timer.unwrap_or(1000)),
            burst: t.burst,
            tos: None,
            title: t.title.clone(),
            extra_data: t.extra_data.clone(),
            congestion: t.congestion.map(|c| String::from(c.name())),
            get_server_output: t.get_server_output,
            udp_counters_64bit: t.udp_counters_64bit,
            repeating_payload: t.repeating_payload,
            zerocopy: t.zerocopy,
            dont_fragment: false,
            skip_rx_copy: t.skip_rx_copy,
            client_version: Some(String::from(crate::proto::IPERF_VERSION)),
        }
    }
}

/// The `-h` text for `platform`, listing every option it takes.
pub fn usage(program: &str, platform: Target, platform_note: &str) -> String {
    let mut out = format!(
        "Usage: {program} [-s|-c host] [options]\n       {program} -h|--help\n\n\
         An iperf3-compatible throughput tester on the smoltcp TCP/IP stack.\n{platform_note}\n"
    );
    for (title, role) in
        [("Server or Client:", Role::Both), ("Server specific:", Role::Server), ("Client specific:", Role::Client)]
    {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        for f in FLAGS.iter().filter(|f| f.role == role && f.taken_by(platform)) {
            let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let value = match f.arg {
                Arg::None => String::new(),
                Arg::Required(m) => format!(" {m}"),
                Arg::Optional(m) => format!("[={m}]"),
            };
            let left = format!("  {short}--{}{value}", f.long);
            out.push_str(&format!("{left:<34} {}\n", f.help));
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

    fn parse_on(line: &str, p: Target) -> Result<Options, String> {
        let words = split_cmdline(line)?;
        let o = Options::parse(words.iter().map(|s| s.as_str()), p)?;
        o.validate()?;
        Ok(o)
    }

    fn parse(line: &str) -> Result<Options, String> {
        parse_on(line, Target::Tap)
    }

    #[test]
    fn iperf3_syntax_variants() {
        let o = parse("-c 198.18.0.1 -t10 -P 4 --bidir -J -O1 --time=3 -w 256K -l 64K").unwrap();
        assert_eq!(o.mode, Some(Mode::Client("198.18.0.1".into())));
        assert_eq!(o.test.time, Some(3));
        assert_eq!(o.test.parallel, 4);
        assert!(o.test.bidir && o.output.json);
        assert_eq!(o.test.window, Some(262144));
        assert_eq!(o.test.len, Some(65536));
        let p = o.to_params();
        assert_eq!(p.omit, 1);
        assert!(p.to_json().contains("\"bidirectional\":true"));
    }

    #[test]
    fn clustered_short_flags() {
        let o = parse("-s1J -p 5999").unwrap();
        assert!(o.server.one_off && o.output.json);
        assert_eq!(o.port, 5999);
    }

    #[test]
    fn byte_limit_zeroes_time() {
        let p = parse("-c 198.18.0.9 -n 100M").unwrap().to_params();
        assert_eq!(p.time, 0);
        assert_eq!(p.num, 100 * 1024 * 1024);
    }

    #[test]
    fn network_options_and_platforms() {
        let o = parse("-s --ip 198.18.0.2/24 --gateway 198.18.0.1 --mtu 9000 --tap tap0").unwrap();
        assert_eq!(o.net.ip.unwrap().prefix_len(), 24);
        assert_eq!(o.net.gateway, Some(Ipv4Address::new(198, 18, 0, 1)));
        let e = parse_on("-s --ip 198.18.0.2/24 --tap tap0", Target::Image).unwrap_err();
        assert!(e.contains("--tap is not taken by the unikernel image") && e.contains("own NIC"), "{e}");
        let e = parse_on("-c 198.18.0.9 --delay 5", Target::Tap).unwrap_err();
        assert!(e.contains("--delay") && e.contains("uniperf sim"), "{e}");
        let e = parse_on("-s --logfile x --ip 198.18.0.2/24", Target::Image).unwrap_err();
        assert!(e.contains("no file system"), "{e}");
        assert!(parse_on("-c 198.18.0.9 --delay 5 --loss 0.1", Target::Sim).is_ok());
    }

    #[test]
    fn newer_iperf3_options() {
        let o = parse("-c 198.18.0.9 -4 --cport 6000 -Z --skip-rx-copy --timestamps -P 2").unwrap();
        assert_eq!(o.test.cport, Some(6000));
        assert_eq!(o.output.timestamps.as_deref(), Some(DEFAULT_TIMESTAMP_FORMAT));
        let p = o.to_params().to_json();
        assert!(p.contains("\"zerocopy\":1") && p.contains("\"skip_rx_copy\":1"), "{p}");
        let o = parse("-s --timestamps=%H:%M:%S --json-stream --json-stream-full").unwrap();
        assert_eq!(o.output.timestamps.as_deref(), Some("%H:%M:%S"));
        assert!(o.output.json_stream_full);
        assert!(parse("-c 198.18.0.9 -C reno").unwrap().to_params().to_json().contains("\"congestion\":\"reno\""));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("-c 198.18.0.9 -s", "both server"),
            ("-t 5", "client (-c HOST) or server"),
            ("-s -R", "--reverse is client only"),
            ("-c 198.18.0.9 --one-off", "--one-off is server only"),
            ("-c 198.18.0.9 -R --bidir", "reverse"),
            ("-c 198.18.0.9 -t 5 -n 1M", "end condition"),
            ("-c 198.18.0.9 -P 0", "--parallel"),
            ("-c 198.18.0.9 -P 129", "--parallel"),
            ("-c 198.18.0.9 -l 2M", "--length"),
            ("-c 198.18.0.9 -t", "needs a value"),
            ("-c 198.18.0.9 --frobnicate", "--frobnicate"),
            ("-c 198.18.0.9 -x", "'-x'"),
            ("-s --ip 198.18.0.2", "prefix length"),
            ("-s --ip 300.1.1.1/24", "not an IPv4 address"),
            ("-c 198.18.0.9 -C bbr", "bbr"),
            ("-c 198.18.0.9 -u -l 10", "for UDP"),
            ("-c 198.18.0.9 --udp-counters-64bit", "needs a UDP test"),
            ("-c 198.18.0.9 -t abc", "'abc'"),
            ("-c 198.18.0.9 -T \"open", "quote"),
            ("-c 198.18.0.9 stray", "stray"),
            ("-c 198.18.0.9 -M 40000", "--set-mss"),
            ("-c 198.18.0.9 -O 601", "--omit"),
            ("-c 198.18.0.9 -t 86401", "--time"),
            ("-c 198.18.0.9 -6", "IPv6"),
            ("-c 198.18.0.9 --cport 0", "--cport"),
            ("-c 198.18.0.9 --cport 65535 -P 2", "65535"),
            ("-c 198.18.0.9 -b 1M/0", "burst"),
            ("-c 198.18.0.9 --timestamps x", "unexpected argument 'x'"),
            ("-c example.net", "'example.net' is not an IPv4 address (uniperf has no DNS resolver)"),
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
        let o = parse("-c 198.18.0.9 --flowlog f --flowlog-format jsonl --flowlog-interval 0").unwrap();
        assert_eq!((o.flowlog.format, o.flowlog.interval_ms), (crate::flowlog::Format::Jsonl, 0));
        let o = parse_on("-s --flowlog-collect 198.18.0.1:6000", Target::Image).unwrap();
        assert_eq!(o.flowlog.collect, Some((Ipv4Address::new(198, 18, 0, 1), 6000)));
        assert!(o.flowlog.enabled());
        for (line, want) in [
            ("-s --flowlog-format xml --flowlog f", "xml"),
            ("-s --flowlog-interval 5", "needs --flowlog"),
            ("-s --flowlog f --flowlog-interval 70000", "60000"),
            ("-s --flowlog-collect 198.18.0.1:6000", "writes the log directly"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        for (line, want) in [
            ("-s --flowlog-collect 198.18.0.1", "ADDR:PORT"),
            ("-s --flowlog-collect 198.18.0.1:0", "port 0"),
            ("-s --flowlog-collect host:6000", "not an IPv4"),
        ] {
            let e = parse_on(line, Target::Image).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn quoted_titles() {
        let o = parse("-c 198.18.0.9 -T \"my title\"").unwrap();
        assert_eq!(o.test.title.as_deref(), Some("my title"));
    }

    #[test]
    fn usage_lists_every_option_a_platform_takes() {
        for p in [Target::Tap, Target::Sim, Target::Image] {
            let u = usage("uniperf", p, "");
            for f in FLAGS {
                assert_eq!(
                    u.contains(&format!("--{} ", f.long)) || u.contains(&format!("--{}[", f.long)),
                    f.taken_by(p),
                    "{}",
                    f.long
                );
            }
        }
    }

    #[test]
    fn every_name_is_unique() {
        let mut names: Vec<&str> =
            FLAGS.iter().flat_map(|f| core::iter::once(f.long).chain(f.aliases.iter().copied())).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a long option name is defined twice");
        let mut shorts: Vec<char> = FLAGS.iter().filter_map(|f| f.short).collect();
        shorts.sort_unstable();
        let before = shorts.len();
        shorts.dedup();
        assert_eq!(before, shorts.len(), "a short option is defined twice");
    }
}
