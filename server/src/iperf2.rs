//! Stock iperf 2 clients served on their own port (`--iperf2`, default 5001) beside the
//! iperf3 server: TCP tests (one or `-P` connections, `-t` or `-n`) and UDP tests (the
//! end-of-test datagram answered with the server report the client prints), each reported in
//! iperf 2's text style. The server only receives: `-d`, `-r`, `-R`, `--full-duplex` and the
//! other 2.1 exchanges are refused — a TCP connection is reset once its header says so, a
//! UDP test gets no report (its client warns that none came) — and the log says why.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use netstack::proto::iperf2::{ClientHeader, DatagramHeader, ServerReport, TestMode, UdpCounters, UdpLayout, flags};
use netstack::smoltcp::iface::{SocketHandle, SocketSet};
use netstack::smoltcp::socket::{tcp, udp};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::IpEndpoint;
use netstack::stack::{SocketSpec, UdpSpec, take_accepted, try_tcp_socket, try_udp_socket};

/// Listening sockets kept ready: smoltcp has no backlog, and a `-P` client's connections
/// arrive together, before the first one's header says how many there will be.
const LISTENERS: usize = 4;
/// How long a finished UDP test keeps answering repeated end datagrams (the client retries
/// for two seconds).
const UDP_LINGER: Duration = Duration::from_secs(3);
/// Answers to repeated end datagrams of one test at most (iperf 2's server tries ten times).
const MAX_ANSWERS: u32 = 20;
/// How long an aborted or closed socket may take to get its RST or FIN out.
const CLOSE_LINGER: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Iperf2Config {
    pub port: u16,
    /// Seconds between interval lines (0: none).
    pub interval: f64,
    /// False under `-J`: the text goes to the log instead, so the JSON stays whole.
    pub text: bool,
    pub idle_timeout: Duration,
    /// Receive buffer of each TCP connection, and of the UDP socket.
    pub tcp_rx: usize,
    pub udp_rx: usize,
}

impl Iperf2Config {
    /// Buffers sized from the data budget of the platform, so the image keeps its heap.
    pub fn new(port: u16, interval: f64, text: bool, idle_timeout: Duration, budget: usize) -> Self {
        Iperf2Config {
            port,
            interval,
            text,
            idle_timeout,
            tcp_rx: (budget / 32).clamp(64 << 10, 1 << 20),
            udp_rx: (budget / 16).clamp(256 << 10, 4 << 20),
        }
    }
}

// ---- iperf 2's number formats -------------------------------------------------------------

/// iperf 2's `byte_snprintf`: `upper` picks bytes in powers of 1024 (Byte, KByte…), else bits
/// in powers of 1000 (bit, Kbit…); the number fits four places.
pub fn iperf2_units(value: f64, upper: bool) -> String {
    const BYTES: [&str; 6] = ["Byte", "KByte", "MByte", "GByte", "TByte", "PByte"];
    const BITS: [&str; 6] = ["bit", "Kbit", "Mbit", "Gbit", "Tbit", "Pbit"];
    let (base, mut v) = if upper { (1024.0, value) } else { (1000.0, value * 8.0) };
    let mut conv = 0;
    while v.abs() >= base && conv < 5 {
        v /= base;
        conv += 1;
    }
    let suffix = if upper { BYTES[conv] } else { BITS[conv] };
    let a = v.abs();
    if a < 0.9995 {
        format!("{v:4.3} {suffix}")
    } else if a < 9.995 {
        format!("{v:4.2} {suffix}")
    } else if a < 99.95 {
        format!("{v:4.1} {suffix}")
    } else {
        format!("{v:4.0} {suffix}")
    }
}

/// C's `%.2g` for a non-negative percentage (iperf 2's loss figure).
pub fn percent_g2(p: f64) -> String {
    if !(p.is_finite()) || p <= 0.0 {
        return String::from("0");
    }
    // Round to two significant digits, finding the exponent without libm.
    let mut e: i32 = 0;
    let mut m = p;
    while m >= 10.0 {
        m /= 10.0;
        e += 1;
    }
    while m < 1.0 {
        m *= 10.0;
        e -= 1;
    }
    let mut r = (m * 10.0 + 0.5) as u32; // two digits, 10..=100
    if r >= 100 {
        r = 10;
        e += 1;
    }
    let (d1, d2) = (r / 10, r % 10);
    if !(-4..2).contains(&e) {
        let mant = if d2 == 0 { format!("{d1}") } else { format!("{d1}.{d2}") };
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", e.abs());
    }
    // Fixed notation with 1 - e decimals, trailing zeros dropped.
    let decimals = (1 - e).max(0) as usize;
    let value = r as f64 * pow10(e - 1);
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

fn pow10(e: i32) -> f64 {
    let mut v = 1.0;
    for _ in 0..e.unsigned_abs() {
        v *= 10.0;
    }
    if e < 0 { 1.0 / v } else { v }
}

fn id_prefix(id: u32) -> String {
    format!("[{id:3}] ")
}

/// One report line: `[  1] 0.0000-2.0202 sec  1.69 GBytes  7.20 Gbits/sec`.
fn bw_line(prefix: &str, from: f64, to: f64, bytes: u64) -> String {
    let secs = to - from;
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    format!(
        "{prefix}{from:4.4}-{to:4.4} sec  {}s  {}s/sec",
        iperf2_units(bytes as f64, true),
        iperf2_units(rate, false)
    )
}

const SEPARATOR: &str = "------------------------------------------------------------\n";
const TCP_HEADER: &str = "[ ID] Interval       Transfer     Bandwidth\n";
const UDP_HEADER: &str = "[ ID] Interval       Transfer     Bandwidth        Jitter   Lost/Total Datagrams\n";

// ---- TCP ----------------------------------------------------------------------------------

struct TcpConn {
    handle: SocketHandle,
    id: u32,
    start: Instant,
    last_rx: Instant,
    hdr: [u8; netstack::proto::iperf2::CLIENT_HDR_EXT_TOTAL],
    got: usize,
    header: Option<ClientHeader>,
    bytes: u64,
    /// Interval bookkeeping: its start (s since `start`) and bytes at its start.
    iv_from: f64,
    iv_bytes: u64,
    /// The `-P` group it belongs to.
    group: Option<u32>,
}

/// The connections of one `-P` test: a [SUM] line once all have ended.
struct Group {
    key: u32,
    peer: netstack::smoltcp::wire::IpAddress,
    threads: u32,
    joined: u32,
    start: Option<Instant>,
    end: Option<Instant>,
    ended: u32,
    bytes: u64,
}

// ---- UDP ----------------------------------------------------------------------------------

struct UdpFlow {
    peer: IpEndpoint,
    id: u32,
    layout: UdpLayout,
    seq64: bool,
    c: UdpCounters,
    start: Instant,
    last_rx: Instant,
    /// Why the test is refused (no report is sent).
    refused: Option<String>,
    bad: u64,
    iv_from: f64,
    iv: UdpCounters,
    /// The answer, once the end datagram came: the bytes, when, how often sent.
    answer: Option<(Vec<u8>, Instant, u32)>,
}

pub struct Iperf2Server {
    cfg: Iperf2Config,
    listeners: Vec<SocketHandle>,
    udp: Option<SocketHandle>,
    conns: Vec<TcpConn>,
    groups: Vec<Group>,
    flows: Vec<UdpFlow>,
    /// Sockets on their way out: (handle, since, seen closed once).
    closing: Vec<(SocketHandle, Instant, bool)>,
    next_id: u32,
    next_group: u32,
    out: String,
    announced: bool,
    /// The heap could not give a socket once: said once, retried quietly on every poll.
    alloc_failed: bool,
}

impl Iperf2Server {
    pub fn new(cfg: Iperf2Config) -> Self {
        let mut s = Iperf2Server {
            cfg,
            listeners: Vec::new(),
            udp: None,
            alloc_failed: false,
            conns: Vec::new(),
            groups: Vec::new(),
            flows: Vec::new(),
            closing: Vec::new(),
            next_id: 1,
            next_group: 1,
            out: String::new(),
            announced: false,
        };
        let port = s.cfg.port;
        let banner = format!(
            "{SEPARATOR}Server listening on TCP port {port} (iperf 2 clients)\nServer listening on UDP port {port} (iperf 2 clients)\nTCP window size: {} (default)\n{SEPARATOR}",
            iperf2_units(s.cfg.tcp_rx as f64, true)
        );
        s.emit(&banner);
        s
    }

    fn emit(&mut self, text: &str) {
        if self.cfg.text {
            self.out.push_str(text);
        } else {
            for line in text.lines() {
                log::info!("iperf 2: {line}");
            }
        }
    }

    pub fn take_output(&mut self) -> String {
        core::mem::take(&mut self.out)
    }

    fn spec(&self) -> SocketSpec {
        SocketSpec { rx: self.cfg.tcp_rx, tx: 4096, ..SocketSpec::control() }
    }

    /// An image with little memory left serves iperf 2 with fewer sockets (or none) rather
    /// than aborting on a failed allocation.
    fn note_alloc_failure(&mut self, why: &str) {
        if !self.alloc_failed {
            log::warn!("iperf 2: cannot allocate a socket ({why}); serving with the sockets it has");
            self.alloc_failed = true;
        }
    }

    fn keep_sockets(&mut self, sockets: &mut SocketSet<'static>) {
        while self.listeners.len() < LISTENERS {
            let mut s = match try_tcp_socket(&self.spec()) {
                Ok(s) => s,
                Err(e) => {
                    self.note_alloc_failure(&e);
                    break;
                }
            };
            if s.listen(self.cfg.port).is_err() {
                break;
            }
            self.listeners.push(sockets.add(s));
        }
        if self.udp.is_none() {
            let spec = UdpSpec { rx: self.cfg.udp_rx, tx: 64 << 10, datagram: 1470 };
            let mut s = match try_udp_socket(&spec) {
                Ok(s) => s,
                Err(e) => {
                    self.note_alloc_failure(&e);
                    return;
                }
            };
            match s.bind(self.cfg.port) {
                Ok(()) => self.udp = Some(sockets.add(s)),
                Err(e) => {
                    log::warn!("iperf 2: cannot bind UDP port {}: {e}", self.cfg.port);
                }
            }
        }
    }

    /// Does all pending work; true if anything moved.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'static>, clock: &mut dyn FnMut() -> Instant) -> bool {
        if !self.announced {
            self.announced = true;
            log::info!("ready: iperf 2 clients served on TCP and UDP port {}", self.cfg.port);
        }
        self.keep_sockets(sockets);
        let mut progress = self.accept(now, sockets);
        progress |= self.drive_tcp(now, sockets);
        progress |= self.drive_udp(now, sockets, clock);
        self.keep_sockets(sockets);
        self.reap(now, sockets);
        progress
    }

    pub fn poll_at(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut take = |t: Instant| at = Some(at.map_or(t, |a: Instant| a.min(t)));
        if self.cfg.interval > 0.0 {
            for c in self.conns.iter().filter(|c| c.header.is_some()) {
                take(c.start + secs(c.iv_from + self.cfg.interval));
            }
            for f in self.flows.iter().filter(|f| f.answer.is_none() && f.refused.is_none()) {
                take(f.start + secs(f.iv_from + self.cfg.interval));
            }
        }
        for f in &self.flows {
            take(match &f.answer {
                Some((_, at, _)) => *at + UDP_LINGER,
                None => f.last_rx + self.cfg.idle_timeout,
            });
        }
        for c in &self.conns {
            take(c.last_rx + self.cfg.idle_timeout);
        }
        // A closing socket is freed on the next poll after it is gone (any frame wakes the
        // loop), at the latest when its linger is over.
        for &(_, since, _) in &self.closing {
            take(since + CLOSE_LINGER);
        }
        at
    }

    /// Resets every connection (a signal ends the server).
    pub fn shut(&mut self, sockets: &mut SocketSet<'static>) {
        for c in self.conns.drain(..) {
            sockets.get_mut::<tcp::Socket>(c.handle).abort();
        }
        for h in self.listeners.drain(..) {
            sockets.remove(h);
        }
    }

    // ---- TCP --------------------------------------------------------------------------------

    fn accept(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let (next_id, conns) = (&mut self.next_id, &mut self.conns);
        take_accepted(&mut self.listeners, sockets, |handle| {
            let id = *next_id;
            *next_id += 1;
            conns.push(TcpConn {
                handle,
                id,
                start: now,
                last_rx: now,
                hdr: [0; netstack::proto::iperf2::CLIENT_HDR_EXT_TOTAL],
                got: 0,
                header: None,
                bytes: 0,
                iv_from: 0.0,
                iv_bytes: 0,
                group: None,
            });
        })
    }

    fn drive_tcp(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.conns.len() {
            let (moved, end) = self.drive_conn(i, now, sockets);
            progress |= moved;
            match end {
                None => i += 1,
                Some(ConnEnd::Finished) => {
                    let c = self.conns.remove(i);
                    self.finish_conn(c, now, sockets);
                    progress = true;
                }
                Some(ConnEnd::Refuse(why)) => {
                    let c = self.conns.remove(i);
                    let sock = sockets.get_mut::<tcp::Socket>(c.handle);
                    let from = sock.remote_endpoint().map(|e| format!(" from {e}")).unwrap_or_default();
                    sock.abort();
                    self.closing.push((c.handle, now, false));
                    log::warn!("iperf 2: reset connection {}{from}: {why}", c.id);
                    self.emit(&format!("{}refused{from}: {why}\n", id_prefix(c.id)));
                    progress = true;
                }
            }
        }
        progress
    }

    /// Reads what connection `i` has; says whether it has ended or must be refused.
    fn drive_conn(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'static>) -> (bool, Option<ConnEnd>) {
        let interval = self.cfg.interval;
        let idle = self.cfg.idle_timeout;
        let c = &mut self.conns[i];
        let sock = sockets.get_mut::<tcp::Socket>(c.handle);
        let mut progress = false;
        if c.header.is_none() {
            // The header: 24 bytes, or 60 when its first word announces the extension.
            let want = if c.got >= 4 {
                ClientHeader::wanted_len(u32::from_be_bytes([c.hdr[0], c.hdr[1], c.hdr[2], c.hdr[3]]))
            } else {
                4
            };
            if c.got < want && sock.can_recv() {
                let n = sock.recv_slice(&mut c.hdr[c.got..want]).unwrap_or(0);
                c.got += n;
                c.bytes += n as u64;
                c.last_rx = now;
                return (n > 0, None);
            }
            let closed = peer_done(sock);
            if c.got < want {
                if closed || !sock.is_active() {
                    let why = format!("the connection ended after {} bytes, before an iperf 2 client header", c.got);
                    return (false, Some(ConnEnd::Refuse(why)));
                }
                if now - c.last_rx > idle {
                    return (false, Some(ConnEnd::Refuse(String::from("no iperf 2 client header arrived"))));
                }
                return (false, None);
            }
            let h = match ClientHeader::parse(&c.hdr[..c.got]) {
                Ok(h) => h,
                Err(e) => return (true, Some(ConnEnd::Refuse(format!("{e}")))),
            };
            let mode = h.mode();
            if mode != TestMode::Normal {
                let why = format!(
                    "iperf 2 {} is not served (uniperf's iperf 2 server only receives; run the test without it)",
                    mode.option()
                );
                return (true, Some(ConnEnd::Refuse(why)));
            }
            c.header = Some(h);
            let (local, remote) = (sock.local_endpoint(), sock.remote_endpoint());
            let id = c.id;
            let line = match (local, remote) {
                (Some(l), Some(r)) => {
                    format!(
                        "{}local {} port {} connected with {} port {}\n",
                        id_prefix(id),
                        l.addr,
                        l.port,
                        r.addr,
                        r.port
                    )
                }
                _ => String::new(),
            };
            let peer = remote.map(|r| r.addr);
            self.join_group(i, &h, peer, now);
            self.emit(&line);
            return (true, None);
        }
        // Data: counted and dropped.
        while let Ok(n) = sock.recv(|b| (b.len(), b.len())) {
            if n == 0 {
                break;
            }
            c.bytes += n as u64;
            c.last_rx = now;
            progress = true;
        }
        let elapsed = secs_since(c.start, now);
        if interval > 0.0 && elapsed >= c.iv_from + interval {
            let to = c.iv_from + interval;
            let line = format!("{}\n", bw_line(&id_prefix(c.id), c.iv_from, to, c.bytes - c.iv_bytes));
            let first = c.iv_from == 0.0;
            c.iv_from = to;
            c.iv_bytes = c.bytes;
            if first && c.group.is_none() {
                self.emit(TCP_HEADER);
            }
            self.emit(&line);
            let c = &mut self.conns[i];
            let sock = sockets.get_mut::<tcp::Socket>(c.handle);
            return (progress, Self::conn_over(sock, c, now, idle));
        }
        (progress, Self::conn_over(sock, c, now, idle))
    }

    fn conn_over(sock: &tcp::Socket, c: &TcpConn, now: Instant, idle: Duration) -> Option<ConnEnd> {
        if peer_done(sock) || !sock.is_active() || now - c.last_rx > idle { Some(ConnEnd::Finished) } else { None }
    }

    fn join_group(
        &mut self,
        i: usize,
        h: &ClientHeader,
        peer: Option<netstack::smoltcp::wire::IpAddress>,
        now: Instant,
    ) {
        let threads = h.threads();
        let Some(peer) = peer.filter(|_| threads > 1) else { return };
        let key = match self.groups.iter_mut().find(|g| g.peer == peer && g.threads == threads && g.joined < threads) {
            Some(g) => {
                g.joined += 1;
                g.key
            }
            None => {
                let key = self.next_group;
                self.next_group += 1;
                self.groups.push(Group { key, peer, threads, joined: 1, start: None, end: None, ended: 0, bytes: 0 });
                self.emit(TCP_HEADER);
                key
            }
        };
        let _ = now;
        self.conns[i].group = Some(key);
    }

    fn finish_conn(&mut self, c: TcpConn, now: Instant, sockets: &mut SocketSet<'static>) {
        let sock = sockets.get_mut::<tcp::Socket>(c.handle);
        sock.close();
        self.closing.push((c.handle, now, false));
        if c.header.is_none() {
            return;
        }
        let end = c.last_rx.max(c.start);
        let dur = secs_since(c.start, end);
        let mut text = String::new();
        if c.group.is_none() && c.iv_from == 0.0 {
            text.push_str(TCP_HEADER);
        }
        text.push_str(&format!("{}\n", bw_line(&id_prefix(c.id), 0.0, dur, c.bytes)));
        text.push_str(&format!("{}exact: {} bytes in {:.6} s\n", id_prefix(c.id), c.bytes, dur));
        if let Some(key) = c.group
            && let Some(gi) = self.groups.iter().position(|g| g.key == key)
        {
            let g = &mut self.groups[gi];
            g.start = Some(g.start.map_or(c.start, |s| s.min(c.start)));
            g.end = Some(g.end.map_or(end, |e| e.max(end)));
            g.ended += 1;
            g.bytes += c.bytes;
            if g.ended == g.threads {
                let g = self.groups.remove(gi);
                let (s, e) = (g.start.unwrap_or(now), g.end.unwrap_or(now));
                let d = secs_since(s, e);
                text.push_str(&format!("{}\n", bw_line("[SUM] ", 0.0, d, g.bytes)));
                text.push_str(&format!("[SUM] exact: {} bytes in {:.6} s\n", g.bytes, d));
            }
        }
        self.emit(&text);
    }

    // ---- UDP --------------------------------------------------------------------------------

    fn drive_udp(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        clock: &mut dyn FnMut() -> Instant,
    ) -> bool {
        let Some(h) = self.udp else { return false };
        let mut progress = false;
        let mut texts: Vec<String> = Vec::new();
        {
            let sock = sockets.get_mut::<udp::Socket>(h);
            while let Ok((data, meta)) = sock.recv() {
                progress = true;
                let at = clock();
                let from = meta.endpoint;
                let i = match self.flows.iter().position(|f| f.peer == from) {
                    Some(i) => i,
                    None => {
                        let layout = UdpLayout::detect(data);
                        let head = DatagramHeader::parse(data, layout, false);
                        let Ok(head) = head else {
                            log::warn!("iperf 2: ignored a {}-byte UDP datagram from {from}: too short", data.len());
                            continue;
                        };
                        if head.id < 0 {
                            // The end of a test we do not know (served before, or never seen).
                            continue;
                        }
                        let ch = DatagramHeader::client_header(data, layout);
                        let refused = match &ch {
                            Ok(h) if h.mode() == TestMode::Normal => None,
                            Ok(h) => Some(format!(
                                "iperf 2 {} is not served (uniperf's iperf 2 server only receives); no server report is sent",
                                h.mode().option()
                            )),
                            Err(e) if data.len() >= layout.header_len() + 24 => Some(format!("{e}")),
                            // Datagrams too short for a header (`-l` below it): plain test.
                            Err(_) => None,
                        };
                        let seq64 = ch.as_ref().is_ok_and(|h| h.flags & flags::SEQNO64B != 0);
                        let id = self.next_id;
                        self.next_id += 1;
                        let local = meta.local_address.map(|a| format!("{a} ")).unwrap_or_default();
                        match &refused {
                            Some(why) => {
                                log::warn!("iperf 2: refused UDP test {id} from {from}: {why}");
                                texts.push(format!("{}refused UDP test from {from}: {why}\n", id_prefix(id)));
                            }
                            None => texts.push(format!(
                                "{}local {local}port {} connected with {} port {}\n{UDP_HEADER}",
                                id_prefix(id),
                                self.cfg.port,
                                from.addr,
                                from.port
                            )),
                        }
                        self.flows.push(UdpFlow {
                            peer: from,
                            id,
                            layout,
                            seq64,
                            c: UdpCounters::default(),
                            start: at,
                            last_rx: at,
                            refused,
                            bad: 0,
                            iv_from: 0.0,
                            iv: UdpCounters::default(),
                            answer: None,
                        });
                        self.flows.len() - 1
                    }
                };
                let f = &mut self.flows[i];
                let Ok(head) = DatagramHeader::parse(data, f.layout, f.seq64) else {
                    f.bad += 1;
                    continue;
                };
                if f.refused.is_some() {
                    f.last_rx = at;
                    continue;
                }
                if head.id > 0 {
                    if f.answer.is_some() {
                        // A new test from the same port: the old one is done.
                        continue;
                    }
                    f.last_rx = at;
                    let arrived = at.total_micros();
                    if f.c.datagram(head.id as u64, data.len(), head.sent_us(), arrived).is_err() {
                        f.bad += 1;
                    }
                    continue;
                }
                // The end datagram: it counts as the last datagram (its id and bytes, as iperf 2's
                // server counts it, so a lost tail shows), then is answered with the report, and
                // so is every repeat.
                if f.answer.is_none() {
                    f.last_rx = at;
                    let arrived = at.total_micros();
                    if f.c.datagram(head.id.unsigned_abs(), data.len(), head.sent_us(), arrived).is_err() {
                        f.bad += 1;
                    }
                    let dur = secs_since(f.start, at);
                    let report = ServerReport {
                        bytes: f.c.bytes,
                        duration_s: dur,
                        lost: f.c.lost(),
                        out_of_order: f.c.out_of_order,
                        datagrams: f.c.max_id,
                        jitter_s: f.c.jitter_s,
                    };
                    let mut buf = alloc::vec![0u8; f.layout.header_len() + netstack::proto::iperf2::SERVER_HDR_LEN];
                    if report.emit(&mut buf, f.layout, 0).is_ok() {
                        f.answer = Some((buf, at, 0));
                    }
                    texts.push(udp_final(f, dur));
                }
                if let Some((buf, _, sent)) = f.answer.as_mut()
                    && *sent < MAX_ANSWERS
                {
                    *sent += 1;
                    let _ = sock.send_slice(buf, from);
                }
            }
        }
        // Interval lines, idle tests, and finished tests whose linger is over.
        let interval = self.cfg.interval;
        let idle = self.cfg.idle_timeout;
        let mut i = 0;
        while i < self.flows.len() {
            let f = &mut self.flows[i];
            if f.answer.is_none() && f.refused.is_none() && interval > 0.0 {
                let to = f.iv_from + interval;
                if secs_since(f.start, now) >= to {
                    texts.push(udp_interval(f, to));
                }
            }
            let drop = match &f.answer {
                Some((_, at, _)) => now - *at > UDP_LINGER,
                None => now - f.last_rx > idle,
            };
            if drop {
                if f.answer.is_none() && f.refused.is_none() {
                    log::warn!("iperf 2: UDP test {} from {} went silent without its end datagram", f.id, f.peer);
                    let dur = secs_since(f.start, f.last_rx);
                    texts.push(udp_final(f, dur));
                }
                self.flows.swap_remove(i);
            } else {
                i += 1;
            }
        }
        for t in texts {
            self.emit(&t);
        }
        progress
    }

    fn reap(&mut self, now: Instant, sockets: &mut SocketSet<'static>) {
        let mut i = 0;
        while i < self.closing.len() {
            let (h, since, seen) = self.closing[i];
            let sock = sockets.get_mut::<tcp::Socket>(h);
            while sock.recv(|b| (b.len(), b.len())).is_ok_and(|n| n > 0) {}
            let gone = matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait);
            // An aborted socket sends its RST on the next interface poll: keep it until then.
            if gone && !seen {
                self.closing[i].2 = true;
                i += 1;
            } else if gone || now - since > CLOSE_LINGER {
                sockets.remove(h);
                self.closing.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }
}

/// The peer has closed (or reset) and every byte it sent has been read. A connection still
/// in its handshake has not begun.
fn peer_done(sock: &tcp::Socket) -> bool {
    match sock.state() {
        tcp::State::Listen | tcp::State::SynReceived => false,
        _ => !sock.may_recv() && !sock.can_recv(),
    }
}

enum ConnEnd {
    Finished,
    Refuse(String),
}

fn secs(s: f64) -> Duration {
    Duration::from_micros((s.max(0.0) * 1e6) as u64)
}

fn secs_since(start: Instant, t: Instant) -> f64 {
    if t > start { (t - start).total_micros() as f64 / 1e6 } else { 0.0 }
}

/// `[  1] 0.0000-1.0000 sec  6.25 MBytes  52.4 Mbits/sec   0.009 ms 0/4460 (0%)`, and the
/// interval's counters start afresh.
fn udp_interval(f: &mut UdpFlow, to: f64) -> String {
    let bytes = f.c.bytes - f.iv.bytes;
    let total = f.c.max_id - f.iv.max_id;
    let lost = f.c.gaps.saturating_sub(f.iv.gaps).saturating_sub(f.c.out_of_order - f.iv.out_of_order);
    let line = udp_line(&id_prefix(f.id), f.iv_from, to, bytes, f.c.jitter_s, lost, total);
    f.iv_from = to;
    f.iv = f.c.clone();
    line
}

fn udp_line(prefix: &str, from: f64, to: f64, bytes: u64, jitter_s: f64, lost: u64, total: u64) -> String {
    let pct = if total > 0 { lost as f64 * 100.0 / total as f64 } else { 0.0 };
    format!(
        "{}  {:6.3} ms {}/{} ({}%)\n",
        bw_line(prefix, from, to, bytes),
        jitter_s * 1000.0,
        lost,
        total,
        percent_g2(pct)
    )
}

fn udp_final(f: &UdpFlow, dur: f64) -> String {
    let p = id_prefix(f.id);
    let mut s = udp_line(&p, 0.0, dur, f.c.bytes, f.c.jitter_s, f.c.lost(), f.c.max_id);
    if f.c.out_of_order > 0 {
        s.push_str(&format!("{p}0.0000-{dur:4.4} sec  {} datagrams received out-of-order\n", f.c.out_of_order));
    }
    s.push_str(&format!(
        "{p}exact: {} bytes, {} datagrams received, {} lost, {} out of order, total {} in {dur:.6} s{}\n",
        f.c.bytes,
        f.c.received,
        f.c.lost(),
        f.c.out_of_order,
        f.c.max_id,
        if f.bad > 0 { format!(", {} malformed datagrams skipped", f.bad) } else { String::new() }
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_match_iperf2() {
        assert_eq!(iperf2_units(1_814_000_000.0, true), "1.69 GByte");
        assert_eq!(iperf2_units(20.0 * 1024.0 * 1024.0, true), "20.0 MByte");
        assert_eq!(iperf2_units(867_000_000.0, true), " 827 MByte");
        assert_eq!(iperf2_units(900_000_000.0, false), "7.20 Gbit");
        assert_eq!(iperf2_units(6_550_000.0, false), "52.4 Mbit");
        assert_eq!(iperf2_units(500.0, true), " 500 Byte");
        assert_eq!(iperf2_units(0.0, false), "0.000 bit");
    }

    #[test]
    fn percent_like_c_g2() {
        for (v, s) in [
            (0.0, "0"),
            (1.0752688, "1.1"),
            (100.0, "1e+02"),
            (50.0, "50"),
            (0.01, "0.01"),
            (0.0123, "0.012"),
            (9.96, "10"),
            (0.00001, "1e-05"),
            (33.3, "33"),
        ] {
            assert_eq!(percent_g2(v), s, "{v}");
        }
    }

    #[test]
    fn report_lines() {
        assert_eq!(
            bw_line("[  1] ", 0.0, 2.0202, 1_814_000_000),
            "[  1] 0.0000-2.0202 sec  1.69 GBytes  7.18 Gbits/sec"
        );
        assert_eq!(
            udp_line("[  1] ", 0.0, 2.0003, 13_111_930, 0.000_009, 0, 8919),
            "[  1] 0.0000-2.0003 sec  12.5 MBytes  52.4 Mbits/sec   0.009 ms 0/8919 (0%)\n"
        );
    }
}
