//! The iperf3 server role as a sans-IO state machine over smoltcp sockets: a
//! [`netstack::driver::Role`] the platform's loop polls after its interface. It accepts
//! control and data connections, runs up to `--max-tests` tests at once (iperf3: one; more
//! get ACCESS_DENIED), each with its own streams, timers, report and policy checks
//! ([`test`], [`policy`]), and returns to listening after every test, error or vanished
//! client — it never panics on what a client sends.
#![no_std]

extern crate alloc;

pub mod iperf2;
mod policy;
mod test;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use netstack::conn::{Outbox, read_some};
use netstack::driver::{EndedTest, FromOptions, Role, RoleIo, Setup};
use netstack::machine::Machine;
use netstack::options::Options;
use netstack::proto::{COOKIE_LEN, ControlState, Cookie, check_cookie_prefix};
use netstack::report::{OutputFormat, ReportConfig, Reporter};
use netstack::smoltcp::iface::{SocketHandle, SocketSet};
use netstack::smoltcp::socket::tcp;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::stack::{Congestion, SocketSpec, take_accepted, try_tcp_socket};

use test::{Admission, Test};

/// How the platform configured this server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub port: u16,
    /// `-1`: serve one test, then report finished.
    pub one_off: bool,
    /// A client that moves no byte for this long, in any phase, is dropped.
    pub idle_timeout: Duration,
    /// `-i`, in seconds (0 = no interval reports).
    pub interval: f64,
    pub report: ReportConfig,
    /// Used when the client does not ask for one with `-C`.
    pub congestion: Congestion,
    /// The MSS our interface implies, for `tcp_mss_default`.
    pub mss: u32,
    pub version: String,
    /// Bytes the data sockets of all tests may use together (the platform's free memory,
    /// less headroom), shared equally by `max_tests`; a test that cannot fit its share is
    /// refused with SERVER_ERROR.
    pub buffer_budget: usize,
    /// `--max-tests`: tests served at once.
    pub max_tests: u32,
    /// `--server-max-duration`, seconds.
    pub max_duration: Option<u32>,
    /// `--server-bitrate-limit`: (bit/s, averaging seconds).
    pub bitrate_limit: Option<(u64, u32)>,
    /// `--max-streams` (per test) and `--max-total-streams` (all tests).
    pub max_streams: Option<u32>,
    pub max_total_streams: Option<u32>,
    /// `--rcv-timeout` and `--snd-timeout`, ms.
    pub rcv_timeout_ms: Option<u32>,
    pub snd_timeout_ms: Option<u32>,
    /// `--iperf2`: stock iperf 2 clients are served on this port too.
    pub iperf2: Option<iperf2::Iperf2Config>,
}

impl ServerConfig {
    pub fn from_options(o: &Options, setup: &Setup) -> Self {
        let s = &o.server;
        ServerConfig {
            port: o.port,
            one_off: s.one_off,
            idle_timeout: o.idle_timeout(),
            interval: o.output.interval,
            report: o.report_config(netstack::report::Side::Server),
            congestion: o.congestion(),
            mss: setup.mss,
            version: String::from(netstack::VERSION),
            buffer_budget: setup.buffer_budget,
            max_tests: s.max_tests.unwrap_or(1),
            max_duration: s.max_duration,
            bitrate_limit: s.bitrate_limit,
            max_streams: s.max_streams,
            max_total_streams: s.max_total_streams,
            rcv_timeout_ms: o.timeouts.rcv_ms,
            snd_timeout_ms: o.timeouts.snd_ms,
            iperf2: s.iperf2_port.map(|port| {
                let text = o.report_config(netstack::report::Side::Server).format == OutputFormat::Text;
                iperf2::Iperf2Config::new(port, o.output.interval, text, o.idle_timeout(), setup.buffer_budget)
            }),
        }
    }
}

impl FromOptions for Server {
    fn from_options(o: &Options, setup: &Setup, _now: Instant, _machine: &mut dyn Machine) -> Result<Self, String> {
        if o.server.iperf2_port == Some(o.port) {
            return Err(format!(
                "--iperf2-port {} is the iperf3 port too: iperf 2 clients need a port of their own",
                o.port
            ));
        }
        Ok(Server::new(ServerConfig::from_options(o, setup)))
    }
}

/// How long a closed socket may linger (FIN handshake) before we abort it.
const LINGER: Duration = Duration::from_secs(3);

struct Pending {
    handle: SocketHandle,
    cookie: [u8; COOKIE_LEN],
    got: usize,
    since: Instant,
}

/// A connection on its way out: it delivers what it still has to say, closes, and is freed
/// once the peer is gone or after [`LINGER`].
pub(crate) struct Closing {
    handle: SocketHandle,
    out: Outbox,
    since: Instant,
    close_sent: bool,
    seen_gone: bool,
    /// Until then, data that arrives is read and dropped; then the socket is reset.
    quiet_until: Option<Instant>,
}

impl Closing {
    /// A socket already closed or aborted: it stays until its FIN or RST has left.
    fn closed(handle: SocketHandle, now: Instant) -> Self {
        Closing { handle, out: Outbox::default(), since: now, close_sent: true, seen_gone: false, quiet_until: None }
    }
}

pub struct Server {
    cfg: ServerConfig,
    listeners: Vec<SocketHandle>,
    listener_spec: Option<SocketSpec>,
    pending: Vec<Pending>,
    closing: Vec<Closing>,
    tests: Vec<Test>,
    /// Tests accepted so far (the next one gets this plus one).
    accepted: u32,
    tests_done: u32,
    /// Tests that ended and the platform has not been told about yet.
    ended: Vec<EndedTest>,
    /// Banners and warnings that belong to no test.
    reporter: Reporter,
    /// Output in the order it was produced, not yet taken.
    out: String,
    finished: bool,
    /// Why the last data listener could not be allocated: the test creating streams is
    /// refused with it (SERVER_ERROR, "unable to create a new stream", ENOMEM).
    alloc_failure: Option<String>,
    /// `--iperf2`: the iperf 2 server beside this one.
    iperf2: Option<iperf2::Iperf2Server>,
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Self {
        let mut reporter = Reporter::new(cfg.report.clone());
        reporter.server_listening(cfg.port, 1);
        let mut out = reporter.take_output();
        let mut iperf2 = cfg.iperf2.clone().map(iperf2::Iperf2Server::new);
        if let Some(i2) = iperf2.as_mut() {
            out.push_str(&i2.take_output());
        }
        Server {
            iperf2,
            cfg,
            listeners: Vec::new(),
            listener_spec: None,
            pending: Vec::new(),
            closing: Vec::new(),
            tests: Vec::new(),
            accepted: 0,
            tests_done: 0,
            ended: Vec::new(),
            reporter,
            out,
            finished: false,
            alloc_failure: None,
        }
    }

    /// True after a `-1` server has served its test, or after a signal.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn tests_done(&self) -> u32 {
        self.tests_done
    }

    // ---- listening and accepting -------------------------------------------------------

    /// smoltcp has no listen backlog: we keep as many listening sockets as connections we
    /// expect at once — one for a control connection (or a busy client to turn away), and
    /// one per data stream while a test creates them (one test at a time does).
    fn wanted_listeners(&self) -> (usize, SocketSpec) {
        match self.tests.iter().find_map(Test::listeners_wanted) {
            Some((left, spec)) => (left.max(1), spec),
            None => (1, SocketSpec::control()),
        }
    }

    fn keep_listeners(&mut self, sockets: &mut SocketSet<'static>) {
        let (want, spec) = self.wanted_listeners();
        let same_spec = self.listener_spec.is_some_and(|s| s.rx == spec.rx && s.tx == spec.tx);
        if !same_spec {
            for h in self.listeners.drain(..) {
                sockets.remove(h);
            }
            self.listener_spec = Some(spec);
        }
        while self.listeners.len() > want {
            if let Some(h) = self.listeners.pop() {
                sockets.remove(h);
            }
        }
        while self.listeners.len() < want {
            let mut s = match try_tcp_socket(&spec) {
                Ok(s) => s,
                Err(e) => {
                    // Data listeners: the test they are for is refused. The control listener
                    // (a few KiB) is simply tried again on the next poll.
                    let control = SocketSpec::control();
                    if (spec.rx, spec.tx) != (control.rx, control.tx) {
                        self.alloc_failure = Some(e);
                    }
                    return;
                }
            };
            if s.listen(self.cfg.port).is_err() {
                return;
            }
            self.listeners.push(sockets.add(s));
        }
    }

    fn accept(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let pending = &mut self.pending;
        let any = take_accepted(&mut self.listeners, sockets, |handle| {
            pending.push(Pending { handle, cookie: [0; COOKIE_LEN], got: 0, since: now })
        });
        if any {
            self.keep_listeners(sockets);
        }
        any
    }

    /// Every new connection starts with a cookie. Until it has arrived we cannot tell a
    /// control connection from a data stream, so we read it before deciding.
    fn read_cookies(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let sock = io.sockets.get_mut::<tcp::Socket>(p.handle);
            let n = read_some(sock, &mut p.cookie[p.got..]);
            p.got += n;
            progress |= n > 0;
            let dead = !sock.is_active()
                || (sock.state() != tcp::State::Established
                    && !sock.can_recv()
                    && !matches!(sock.state(), tcp::State::SynReceived));
            // Not an iperf3 client (an iperf 2 header, a scanner): reset it at once, so it
            // cannot mistake our ACKs for a test.
            if let Err(why) = check_cookie_prefix(&p.cookie[..p.got]) {
                let from = sock.remote_endpoint().map(|e| format!(" from {e}")).unwrap_or_default();
                sock.abort();
                let h = p.handle;
                self.pending.swap_remove(i);
                self.closing.push(Closing::closed(h, now));
                self.reporter.warning(&format!("reset a connection{from}: {why}"));
                self.note();
                continue;
            }
            if p.got < COOKIE_LEN {
                if dead || now - p.since > self.cfg.idle_timeout {
                    sock.abort();
                    let h = p.handle;
                    self.pending.swap_remove(i);
                    self.closing.push(Closing::closed(h, now));
                } else {
                    i += 1;
                }
                continue;
            }
            let p = self.pending.swap_remove(i);
            match Cookie::from_wire(&p.cookie) {
                Some(cookie) => self.classify(now, p.handle, cookie, io.sockets),
                None => {
                    io.sockets.get_mut::<tcp::Socket>(p.handle).abort();
                    self.closing.push(Closing::closed(p.handle, now));
                }
            }
        }
        progress
    }

    /// A connection whose cookie is in: a data stream of the test with that cookie, a new
    /// test, or — over `--max-tests`, or a stream nobody expects — ACCESS_DENIED, as iperf3.
    fn classify(&mut self, now: Instant, handle: SocketHandle, cookie: Cookie, sockets: &mut SocketSet<'static>) {
        if let Some(t) = self.tests.iter_mut().find(|t| t.cookie == cookie) {
            if t.add_stream(handle, now, &self.cfg, sockets) {
                return;
            }
        } else if self.tests.len() < self.cfg.max_tests as usize {
            self.accepted += 1;
            self.tests.push(Test::new(self.accepted, handle, cookie, now, &self.cfg, sockets));
            return;
        }
        let mut out = Outbox::default();
        out.push(&[ControlState::AccessDenied.to_byte()]);
        self.closing.push(Closing { close_sent: false, out, ..Closing::closed(handle, now) });
    }

    // ---- running tests -------------------------------------------------------------------

    /// Drives every test; one that must stop is stopped. Then the next test waiting to
    /// create streams may, if none is creating.
    fn drive_tests(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        let mut progress = false;
        if let Some(why) = self.alloc_failure.take()
            && let Some(i) = self.tests.iter().position(|t| matches!(t.phase, test::Phase::CreateStreams))
        {
            let t = self.tests.remove(i);
            let ended = t.stop(now, test::Stop::Fail(netstack::proto::ErrorCode::CREATE_STREAM, why), io);
            self.retire(ended);
            progress = true;
        }
        let budget = self.cfg.buffer_budget / self.cfg.max_tests.max(1) as usize;
        let mut i = 0;
        while i < self.tests.len() {
            let streams_elsewhere: u32 =
                self.tests.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, t)| t.streams()).sum();
            let admit = Admission { budget, streams_elsewhere };
            match self.tests[i].drive(now, io, &self.cfg, &admit) {
                Ok(p) => {
                    progress |= p;
                    i += 1;
                }
                Err(why) => {
                    let t = self.tests.remove(i);
                    let ended = t.stop(now, why, io);
                    self.retire(ended);
                    progress = true;
                }
            }
        }
        if !self.tests.iter().any(|t| matches!(t.phase, test::Phase::CreateStreams))
            && let Some(t) = self.tests.iter_mut().find(|t| matches!(t.phase, test::Phase::WaitCreate))
        {
            t.start_creating();
            progress = true;
        }
        progress
    }

    /// A test has ended: its last words go out, its report is kept for the platform, and the
    /// server listens on (or, with `-1`, is done once no test is left).
    fn retire(&mut self, (closing, output, ended): (Vec<Closing>, String, EndedTest)) {
        self.closing.extend(closing);
        self.push_test_output(ended.number, &output);
        self.ended.push(ended);
        self.tests_done += 1;
        if self.cfg.one_off {
            if self.tests.is_empty() {
                self.finished = true;
            }
        } else if self.tests.is_empty() {
            self.reporter.server_listening(self.cfg.port, self.accepted + 1);
            self.note();
        }
    }

    /// Moves what the server's own reporter wrote into the output, in order.
    fn note(&mut self) {
        let text = self.reporter.take_output();
        self.out.push_str(&text);
    }

    /// A test's report text; with several tests at once, each text line says which test it
    /// belongs to (`[#2] …`), since their lines interleave. JSON documents stay whole.
    fn push_test_output(&mut self, number: u32, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.cfg.max_tests > 1 && self.cfg.report.format == OutputFormat::Text {
            for line in text.split_inclusive('\n') {
                self.out.push_str(&format!("[#{number}] {line}"));
            }
        } else {
            self.out.push_str(text);
        }
    }

    /// Flushes what closing sockets still have to say, sends FIN, discards late data, and
    /// frees the socket once the peer is gone (or after [`LINGER`]).
    fn reap_closing(&mut self, now: Instant, sockets: &mut SocketSet<'static>) {
        let mut i = 0;
        while i < self.closing.len() {
            let c = &mut self.closing[i];
            let sock = sockets.get_mut::<tcp::Socket>(c.handle);
            let writable = c.out.flush(sock);
            if let Some(until) = c.quiet_until {
                if now >= until {
                    sock.abort();
                    c.quiet_until = None;
                } else {
                    while sock.recv(|b| (b.len(), b.len())).is_ok_and(|n| n > 0) {}
                }
            } else if sock.can_recv() {
                // Bytes that arrive once our last word (SERVER_ERROR, ACCESS_DENIED) has been
                // delivered come from a peer that does not listen (a flood, a client that
                // ignored the error): reset it, as a kernel does when a socket closes with
                // unread data, rather than ACK it on. Until then they are dropped, so the
                // error still goes out.
                if c.out.is_empty() && sock.send_queue() == 0 {
                    sock.abort();
                    c.close_sent = true;
                } else {
                    while sock.recv(|b| (b.len(), b.len())).is_ok_and(|n| n > 0) {}
                }
            }
            if !c.close_sent && (c.out.is_empty() || !writable) {
                sock.close();
                c.close_sent = true;
            }
            // An aborted socket sends its RST on the interface's next poll; removing it
            // before then would leave the peer believing it is still connected.
            let gone = matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait);
            if gone && !c.seen_gone {
                c.seen_gone = true;
                i += 1;
            } else if gone || now - c.since > LINGER {
                let h = c.handle;
                self.closing.swap_remove(i);
                sockets.remove(h);
            } else {
                i += 1;
            }
        }
    }
}

impl Role for Server {
    /// Does all pending work; returns true if any byte moved (poll again soon).
    fn poll(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        if self.finished {
            // Closing connections still deliver their last words (SERVER_TERMINATE, FIN).
            self.reap_closing(now, io.sockets);
            return false;
        }
        let mut progress = false;
        self.keep_listeners(io.sockets);
        progress |= self.accept(now, io.sockets);
        progress |= self.read_cookies(now, io);
        progress |= self.drive_tests(now, io);
        self.keep_listeners(io.sockets);
        self.reap_closing(now, io.sockets);
        if let Some(i2) = self.iperf2.as_mut() {
            progress |= i2.poll(now, io.sockets, io.clock);
        }
        progress
    }

    /// The next instant a timer needs the server polled.
    fn poll_at(&self) -> Option<Instant> {
        let tests = self.tests.iter().map(|t| t.poll_at(&self.cfg)).min();
        let iperf2 = self.iperf2.as_ref().and_then(|i2| i2.poll_at());
        match (tests, iperf2) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take_output(&mut self) -> String {
        self.note();
        if let Some(i2) = self.iperf2.as_mut() {
            let text = i2.take_output();
            self.out.push_str(&text);
        }
        for i in 0..self.tests.len() {
            let text = self.tests[i].reporter.take_output();
            self.push_test_output(self.tests[i].number, &text);
        }
        core::mem::take(&mut self.out)
    }

    /// Every running test reports what it measured and tells its client SERVER_TERMINATE;
    /// then every connection is reset and the server stops, with iperf3 3.19+'s
    /// `interrupt - the server has terminated by signal …`.
    fn interrupt(&mut self, now: Instant, io: &mut RoleIo<'_>, signal: &str) {
        if self.finished {
            return;
        }
        let tests = core::mem::take(&mut self.tests);
        if tests.is_empty() {
            let msg = format!("interrupt - {} by signal {signal}", netstack::proto::ErrorCode::SERVER_TERM.message());
            self.reporter.ended(&msg);
        }
        for t in tests {
            let ended = t.terminate(now, io, signal);
            self.retire(ended);
        }
        for p in self.pending.drain(..) {
            io.sockets.get_mut::<tcp::Socket>(p.handle).abort();
            self.closing.push(Closing::closed(p.handle, now));
        }
        for h in self.listeners.drain(..) {
            io.sockets.remove(h);
        }
        if let Some(i2) = self.iperf2.as_mut() {
            i2.shut(io.sockets);
        }
        self.reporter.finish();
        self.note();
        self.finished = true;
    }

    fn done(&self) -> bool {
        self.finished
    }

    /// True while closing connections still have something to say (SERVER_TERMINATE, FIN,
    /// RST).
    fn flushing(&self, sockets: &SocketSet<'static>) -> bool {
        self.closing.iter().any(|c| {
            let s = sockets.get::<tcp::Socket>(c.handle);
            !c.out.is_empty() || (s.send_queue() > 0 && s.may_send()) || !matches!(s.state(), tcp::State::Closed)
        })
    }

    fn take_ended_test(&mut self) -> Option<EndedTest> {
        (!self.ended.is_empty()).then(|| self.ended.remove(0))
    }
}
