//! The iperf3 server role as a sans-IO state machine over smoltcp sockets. The platform polls
//! the interface, then calls [`Server::poll`]; the server accepts control and data
//! connections, runs one test at a time (others get ACCESS_DENIED), and returns to listening
//! after every test, error or vanished client — it never panics on what a client sends.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netstack::conn::{Outbox, read_some};
use netstack::flowlog::FlowProbe;
use netstack::host::{CpuTimes, Host};
use netstack::platform::{IdleWait, Platform, next_delay};
use netstack::proto::{
    COOKIE_LEN, ControlState, Cookie, ErrorCode, FrameReader, MAX_PARAMS_LEN, MAX_RESULTS_LEN, Protocol, TestParams,
    TestResults, check_cookie_prefix, encode_frame,
};
use netstack::report::{ConnectedStream, CpuUtil, ReportConfig, Reporter, TestEndInfo, TestStartInfo};
use netstack::smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use netstack::smoltcp::phy::Device;
use netstack::smoltcp::socket::tcp;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::IpEndpoint;
use netstack::stack::{Congestion, SocketSpec, data_socket_spec, poll_interleaved, tcp_socket};
use netstack::stream::{DataStream, MeasureConfig, Measurement, Payload, sender_has_retransmits};
use netstack::tcpinfo::TcpInfoSource;

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
    /// Bytes all data sockets of one test may use together (the platform's free memory,
    /// less headroom); tests that cannot fit are refused with SERVER_ERROR.
    pub buffer_budget: usize,
}

impl ServerConfig {
    pub fn from_options(o: &netstack::options::Options, mss: u32, version: &str) -> Self {
        ServerConfig {
            port: o.port,
            one_off: o.server.one_off,
            idle_timeout: o.idle_timeout(),
            interval: o.output.interval,
            report: o.report_config(netstack::report::Side::Server),
            congestion: o.congestion(),
            mss,
            version: version.into(),
            buffer_budget: netstack::stack::DATA_BUF_BUDGET,
        }
    }
}

/// Serves until a `-1` server has served its test (forever otherwise): the platform's main
/// loop for the server role.
pub fn run<D: Device>(
    srv: &mut Server,
    iface: &mut Interface,
    dev: &mut FlowProbe<D>,
    sockets: &mut SocketSet<'static>,
    host: &mut dyn Host,
    platform: &mut dyn Platform,
) {
    run_with(srv, iface, dev, sockets, host, platform, |_: &mut BetweenTests<'_, D>| {});
}

/// What [`run_with`]'s hook gets after each test: everything the loop owns, so the platform
/// can e.g. write or send that test's flow log over the same interface.
pub struct BetweenTests<'a, D: Device> {
    pub srv: &'a mut Server,
    pub iface: &'a mut Interface,
    pub dev: &'a mut FlowProbe<D>,
    pub sockets: &'a mut SocketSet<'static>,
    pub host: &'a mut dyn Host,
    pub platform: &'a mut dyn Platform,
}

/// [`run`], calling `after_test` each time a test has ended (completed, failed or dropped;
/// [`Server::tests_done`] has counted it), before the server goes back to serving.
pub fn run_with<D: Device, F: FnMut(&mut BetweenTests<'_, D>)>(
    srv: &mut Server,
    iface: &mut Interface,
    dev: &mut FlowProbe<D>,
    sockets: &mut SocketSet<'static>,
    host: &mut dyn Host,
    platform: &mut dyn Platform,
    mut after_test: F,
) {
    let mut idle = IdleWait::default();
    let mut tests_seen = srv.tests_done();
    loop {
        let now = platform.now();
        if let Some(signal) = platform.interrupted() {
            srv.interrupt(now, sockets, host, dev.tracker(), signal);
        }
        let mut progress = poll_interleaved(iface, dev, sockets, || platform.now()) != PollResult::None;
        progress |= srv.poll(now, sockets, host, dev.tracker());
        let out = srv.take_output();
        if !out.is_empty() {
            platform.output(&out);
        }
        if srv.tests_done() != tests_seen {
            tests_seen = srv.tests_done();
            after_test(&mut BetweenTests { srv, iface, dev, sockets, host, platform });
            continue;
        }
        if srv.finished() {
            // Let the last words, FINs and RSTs leave (at least 200 ms, at most 1 s).
            let start = platform.now();
            loop {
                let now = platform.now();
                let settled = now - start >= Duration::from_millis(200) && !srv.flushing(sockets);
                if settled || now - start >= Duration::from_secs(1) {
                    return;
                }
                poll_interleaved(iface, dev, sockets, || platform.now());
                srv.poll(now, sockets, host, dev.tracker());
                platform.idle(Some(Duration::from_millis(10)));
            }
        }
        if progress {
            idle.busy(now);
        } else {
            let delay = next_delay(iface.poll_delay(now, sockets), srv.poll_at(), now);
            idle.wait(platform, now, delay);
        }
    }
}

/// How long a closed socket may linger (FIN handshake) before we abort it.
const LINGER: Duration = Duration::from_secs(3);
/// iperf3's safety margin after `time + omit` before a server gives up on a test.
const SAFETY_MARGIN: Duration = Duration::from_secs(40);

#[derive(Debug)]
enum Phase {
    Params(FrameReader),
    CreateStreams,
    Running,
    Results(FrameReader),
    AwaitDone,
}

struct Test {
    ctrl: SocketHandle,
    out: Outbox,
    cookie: Cookie,
    peer: IpEndpoint,
    phase: Phase,
    params: TestParams,
    congestion: Congestion,
    data_spec: SocketSpec,
    pending_streams: Vec<DataStream>,
    meas: Option<Measurement>,
    payload: Option<Payload>,
    last_progress: Instant,
    safety_deadline: Option<Instant>,
    end_secs: f64,
    cpu_start: CpuTimes,
}

struct Pending {
    handle: SocketHandle,
    cookie: [u8; COOKIE_LEN],
    got: usize,
    since: Instant,
}

struct Closing {
    handle: SocketHandle,
    out: Outbox,
    since: Instant,
    close_sent: bool,
    seen_gone: bool,
    /// Until then, data that arrives is read and dropped; then the socket is reset.
    quiet_until: Option<Instant>,
}

/// How [`Server::release`] ends a test's data streams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    Graceful,
    Reset,
    Terminate,
}

/// How long data streams linger after SERVER_TERMINATE before they are reset.
const TERMINATE_GRACE: Duration = Duration::from_millis(250);

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
    test: Option<Test>,
    tests_done: u32,
    /// (iperf3 stream id, local, remote) of the current or last test's data streams.
    stream_endpoints: Vec<(i64, IpEndpoint, IpEndpoint)>,
    reporter: Reporter,
    finished: bool,
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Self {
        let mut reporter = Reporter::new(cfg.report.clone());
        reporter.server_listening(cfg.port, 1);
        Server {
            cfg,
            listeners: Vec::new(),
            listener_spec: None,
            pending: Vec::new(),
            closing: Vec::new(),
            test: None,
            tests_done: 0,
            stream_endpoints: Vec::new(),
            reporter,
            finished: false,
        }
    }

    /// Text or JSON produced since the last call.
    pub fn take_output(&mut self) -> String {
        self.reporter.take_output()
    }

    /// True after a `-1` server has served its test.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn tests_done(&self) -> u32 {
        self.tests_done
    }

    /// (iperf3 stream id, local endpoint, remote endpoint) of each data stream of the current
    /// test, or of the last one until the next starts: for labelling flow logs.
    pub fn stream_endpoints(&self) -> &[(i64, IpEndpoint, IpEndpoint)] {
        &self.stream_endpoints
    }

    /// The next instant a timer needs the server polled.
    pub fn poll_at(&self) -> Option<Instant> {
        let t = self.test.as_ref()?;
        let mut at = t.last_progress + self.cfg.idle_timeout;
        if let Some(m) = t.meas.as_ref().and_then(|m| m.poll_at()) {
            at = at.min(m);
        }
        Some(at)
    }

    /// Does all pending work; returns true if any byte moved (poll again soon).
    pub fn poll(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> bool {
        if self.finished {
            // Closing connections still deliver their last words (SERVER_TERMINATE, FIN).
            self.reap_closing(now, sockets);
            return false;
        }
        let mut progress = false;
        self.keep_listeners(sockets);
        progress |= self.accept(now, sockets);
        progress |= self.read_cookies(now, sockets, host);
        if self.test.is_some() {
            progress |= self.drive_test(now, sockets, host, info);
        }
        self.reap_closing(now, sockets);
        progress
    }

    // ---- listening and accepting -------------------------------------------------------

    /// smoltcp has no listen backlog: we keep as many listening sockets as connections we
    /// expect at once — one between tests (a control connection, or a busy client to turn
    /// away), and one per data stream while the client creates them.
    fn wanted_listeners(&self) -> (usize, SocketSpec) {
        match &self.test {
            Some(t) if matches!(t.phase, Phase::CreateStreams) => {
                let left = t.params.total_streams() as usize - t.pending_streams.len();
                (left.max(1), t.data_spec)
            }
            _ => (1, SocketSpec::control()),
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
            let mut s = tcp_socket(&spec);
            if s.listen(self.cfg.port).is_err() {
                return;
            }
            self.listeners.push(sockets.add(s));
        }
    }

    fn accept(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.listeners.len() {
            let h = self.listeners[i];
            let state = sockets.get::<tcp::Socket>(h).state();
            if state == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.listeners.swap_remove(i);
            self.pending.push(Pending { handle: h, cookie: [0; COOKIE_LEN], got: 0, since: now });
            any = true;
        }
        if any {
            self.keep_listeners(sockets);
        }
        any
    }

    /// Every new connection starts with a cookie. Until it has arrived we cannot tell a
    /// control connection from a data stream, so we read it before deciding.
    fn read_cookies(&mut self, now: Instant, sockets: &mut SocketSet<'static>, host: &mut dyn Host) -> bool {
        let mut progress = false;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            let sock = sockets.get_mut::<tcp::Socket>(p.handle);
            let n = read_some(sock, &mut p.cookie[p.got..]);
            p.got += n;
            progress |= n > 0;
            let dead = !sock.is_active()
                || (sock.state() != tcp::State::Established
                    && !sock.can_recv()
                    && !matches!(sock.state(), tcp::State::SynReceived));
            // Not an iperf3 client (an iperf 2 header, a scanner): reset it at once, so it
            // cannot mistake our ACKs for a test.
            let not_iperf3 = check_cookie_prefix(&p.cookie[..p.got]).err();
            if let Some(why) = not_iperf3 {
                let peer = sock.remote_endpoint();
                let h = p.handle;
                self.pending.swap_remove(i);
                sockets.get_mut::<tcp::Socket>(h).abort();
                self.closing.push(Closing::closed(h, now));
                let from = peer.map(|e| format!(" from {e}")).unwrap_or_default();
                self.reporter.warning(&format!("reset a connection{from}: {why}"));
                continue;
            }
            if p.got < COOKIE_LEN {
                if dead || now - p.since > self.cfg.idle_timeout {
                    let h = p.handle;
                    self.pending.swap_remove(i);
                    sockets.get_mut::<tcp::Socket>(h).abort();
                    self.closing.push(Closing::closed(h, now));
                } else {
                    i += 1;
                }
                continue;
            }
            let p = self.pending.swap_remove(i);
            match Cookie::from_wire(&p.cookie) {
                Some(cookie) => self.classify(now, p.handle, cookie, sockets, host),
                None => {
                    sockets.get_mut::<tcp::Socket>(p.handle).abort();
                    self.closing.push(Closing::closed(p.handle, now));
                }
            }
        }
        progress
    }

    fn classify(
        &mut self,
        now: Instant,
        handle: SocketHandle,
        cookie: Cookie,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
    ) {
        match &mut self.test {
            None => self.start_test(now, handle, cookie, sockets, host),
            Some(t)
                if matches!(t.phase, Phase::CreateStreams)
                    && t.cookie == cookie
                    && t.pending_streams.len() < t.params.total_streams() as usize =>
            {
                let index = t.pending_streams.len();
                let sends = t.params.server_sends(index);
                let mut stream = DataStream::new(handle, index, sends);
                let sock = sockets.get::<tcp::Socket>(handle);
                if let (Some(l), Some(r)) = (sock.local_endpoint(), sock.remote_endpoint()) {
                    stream = stream.with_endpoints(l, r);
                    self.stream_endpoints.push((stream.id, l, r));
                    self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, l, r));
                }
                t.pending_streams.push(stream);
                t.last_progress = now;
            }
            Some(_) => {
                // Busy (or a data stream with the wrong cookie): ACCESS_DENIED, as iperf3.
                let mut out = Outbox::default();
                out.push(&[ControlState::AccessDenied.to_byte()]);
                self.closing.push(Closing { close_sent: false, out, ..Closing::closed(handle, now) });
            }
        }
    }

    // ---- one test ------------------------------------------------------------------------

    fn start_test(
        &mut self,
        now: Instant,
        ctrl: SocketHandle,
        cookie: Cookie,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
    ) {
        let sock = sockets.get_mut::<tcp::Socket>(ctrl);
        sock.set_nagle_enabled(false);
        let peer =
            sock.remote_endpoint().unwrap_or(IpEndpoint::new(netstack::smoltcp::wire::IpAddress::v4(0, 0, 0, 0), 0));
        self.reporter.accepted(&peer.addr.to_string(), peer.port);
        self.stream_endpoints.clear();
        let mut out = Outbox::default();
        out.push(&[ControlState::ParamExchange.to_byte()]);
        self.test = Some(Test {
            ctrl,
            out,
            cookie,
            peer,
            phase: Phase::Params(FrameReader::new(MAX_PARAMS_LEN)),
            params: TestParams::default(),
            congestion: self.cfg.congestion,
            data_spec: SocketSpec::control(),
            pending_streams: Vec::new(),
            meas: None,
            payload: None,
            last_progress: now,
            safety_deadline: None,
            end_secs: 0.0,
            cpu_start: host.cpu_times(),
        });
    }

    fn drive_test(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> bool {
        let Some(t) = self.test.as_mut() else { return false };
        let mut progress = false;
        let ctrl_ok = {
            let sock = sockets.get_mut::<tcp::Socket>(t.ctrl);
            t.out.flush(sock)
        };

        // Data first, so a TEST_END read below sees every byte that arrived before it.
        if matches!(t.phase, Phase::Running) {
            progress |= self.move_data(now, sockets);
        }
        // Control input for the current phase.
        let mut buf = [0u8; 2048];
        let eof = loop {
            let Some(t) = self.test.as_mut() else { return progress };
            let sock = sockets.get_mut::<tcp::Socket>(t.ctrl);
            let n = read_some(sock, &mut buf);
            if n == 0 {
                break !sock.may_recv();
            }
            progress = true;
            t.last_progress = now;
            match self.control_input(now, &buf[..n], sockets, host, info) {
                Ok(()) => {}
                Err(Stop::Fail(code, msg)) => {
                    self.fail_test(now, code, &msg, sockets);
                    return true;
                }
                Err(Stop::Abort(msg)) => {
                    self.abort_test(now, &msg, sockets);
                    return true;
                }
                Err(Stop::Terminated) => {
                    // As iperf3: what we measured, then "the client has terminated".
                    self.partial_report(now, host, info);
                    self.reporter.ended(ErrorCode::CLIENT_TERM.message());
                    self.release(now, sockets, Release::Reset);
                    self.next_test();
                    return true;
                }
                Err(Stop::Done) => {
                    self.complete_test(now, sockets);
                    return true;
                }
            }
            if self.test.is_none() {
                return true;
            }
        };
        let Some(t) = self.test.as_mut() else { return progress };
        if matches!(t.phase, Phase::AwaitDone) && (eof || !ctrl_ok) {
            // The client closed after DISPLAY_RESULTS without IPERF_DONE: still a clean end.
            self.complete_test(now, sockets);
            return true;
        }
        if eof || !ctrl_ok {
            self.abort_test(now, "the client has unexpectedly closed the connection", sockets);
            return true;
        }

        // Phase transitions that wait on something other than control input.
        if matches!(t.phase, Phase::CreateStreams) && t.pending_streams.len() == t.params.total_streams() as usize {
            self.begin_running(now, sockets, host);
            progress = true;
        }

        let Some(t) = self.test.as_mut() else { return progress };
        if let Some(m) = t.meas.as_mut()
            && matches!(t.phase, Phase::Running)
            && let Some(rep) = m.poll_timers(now, info)
        {
            self.reporter.interval(rep);
        }
        let Some(t) = self.test.as_mut() else { return progress };
        if t.safety_deadline.is_some_and(|d| now >= d) {
            self.abort_test(now, "the test ran past its length; the client did not end it", sockets);
        } else if now - t.last_progress > self.cfg.idle_timeout {
            let msg = format!("no data from the client for {} s; dropping the test", self.cfg.idle_timeout.secs());
            self.abort_test(now, &msg, sockets);
        }
        progress
    }

    fn move_data(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let Some(t) = self.test.as_mut() else { return false };
        let (Some(m), Some(payload)) = (t.meas.as_mut(), t.payload.as_ref()) else { return false };
        let moved = m.pump(sockets, payload, t.params.bandwidth, now, true);
        if moved > 0 {
            t.last_progress = now;
        }
        moved > 0
    }

    fn control_input(
        &mut self,
        now: Instant,
        mut input: &[u8],
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> Result<(), Stop> {
        while !input.is_empty() {
            let Some(t) = self.test.as_mut() else { return Ok(()) };
            match &mut t.phase {
                Phase::Params(reader) => {
                    let (used, done) = reader.feed(input);
                    input = &input[used..];
                    if let Some(body) = done {
                        let body = body.map_err(|e| Stop::Fail(ErrorCode::RECV_PARAMS, format!("{e}")))?;
                        let params = TestParams::parse(&body)
                            .map_err(|(code, why)| Stop::Fail(code, format!("bad parameters: {why}")))?;
                        params.validate().map_err(|(code, why)| Stop::Fail(code, format!("bad parameters: {why}")))?;
                        self.accept_params(params)?;
                    }
                }
                Phase::Results(reader) => {
                    let (used, done) = reader.feed(input);
                    input = &input[used..];
                    if let Some(body) = done {
                        let body = body.map_err(|e| Stop::Fail(ErrorCode::RECV_RESULTS, format!("{e}")))?;
                        let results = TestResults::parse(&body)
                            .map_err(|e| Stop::Fail(ErrorCode::RECV_RESULTS, format!("bad results: {e}")))?;
                        self.exchange_results(now, results, host)?;
                    }
                }
                Phase::CreateStreams | Phase::Running | Phase::AwaitDone => {
                    let byte = input[0];
                    input = &input[1..];
                    self.control_byte(now, byte, sockets, info)?;
                }
            }
        }
        Ok(())
    }

    fn control_byte(
        &mut self,
        now: Instant,
        byte: u8,
        sockets: &mut SocketSet<'static>,
        info: &dyn TcpInfoSource,
    ) -> Result<(), Stop> {
        let Some(t) = self.test.as_mut() else { return Ok(()) };
        match (ControlState::from_byte(byte), &t.phase) {
            (Some(ControlState::TestStart), _) => Ok(()),
            (Some(ControlState::TestEnd), Phase::Running) => {
                self.end_running(now, sockets, info);
                Ok(())
            }
            (Some(ControlState::IperfDone), Phase::AwaitDone) => Err(Stop::Done),
            (Some(ControlState::ClientTerminate), _) => Err(Stop::Terminated),
            (Some(ControlState::IperfDone), _) => Err(Stop::Abort(String::from("the client has terminated"))),
            (Some(s), _) => {
                Err(Stop::Fail(ErrorCode::MESSAGE, format!("unexpected control message {s:?} ({byte:#04x})")))
            }
            (None, _) => Err(Stop::Fail(ErrorCode::MESSAGE, format!("unknown control byte {byte:#04x}"))),
        }
    }

    fn accept_params(&mut self, params: TestParams) -> Result<(), Stop> {
        let Some(t) = self.test.as_mut() else { return Ok(()) };
        if params.protocol != Protocol::Tcp {
            // Refused before CREATE_STREAMS, so the client stops at once with iperf3's
            // "protocol does not exist" instead of waiting for streams nobody accepts.
            let name = params.protocol.name();
            return Err(Stop::Fail(ErrorCode::PROTOCOL, format!("{name} tests are not served by this server")));
        }
        let congestion = match params.congestion.as_deref() {
            None => self.cfg.congestion,
            Some(name) => match Congestion::parse(name) {
                Ok(c) => c,
                Err(e) => {
                    // iperf3 only warns when the kernel lacks the algorithm; so do we.
                    self.reporter.warning(&e);
                    self.cfg.congestion
                }
            },
        };
        if let Some(mss) = params.mss {
            self.reporter.warning(&format!(
                "the client asked for MSS {mss}; smoltcp cannot set a socket's MSS, so the interface's is used"
            ));
        }
        let server_sends = params.reverse || params.bidirectional;
        let server_receives = !params.reverse || params.bidirectional;
        t.data_spec = data_socket_spec(
            server_sends,
            server_receives,
            params.window,
            params.total_streams(),
            congestion,
            params.nodelay,
            self.cfg.buffer_budget,
        )
        .map_err(|why| Stop::Fail(ErrorCode::SET_BUF2, why))?;
        t.congestion = congestion;
        t.params = params;
        t.phase = Phase::CreateStreams;
        t.out.push(&[ControlState::CreateStreams.to_byte()]);
        Ok(())
    }

    fn begin_running(&mut self, now: Instant, sockets: &mut SocketSet<'static>, host: &mut dyn Host) {
        let Some(t) = self.test.as_mut() else { return };
        let streams = core::mem::take(&mut t.pending_streams);
        t.payload = Some(Payload::new(t.params.len as usize, t.params.repeating_payload, host));
        let cfg = MeasureConfig {
            omit_secs: t.params.omit,
            interval_secs: self.cfg.interval,
            send_limit: t.params.send_limit(),
            rcv_buf: t.data_spec.rx,
        };
        t.meas = Some(Measurement::new(streams, now, cfg));
        if t.params.time > 0 {
            t.safety_deadline = Some(now + Duration::from_secs((t.params.time + t.params.omit) as u64) + SAFETY_MARGIN);
        }
        t.cpu_start = host.cpu_times();
        t.out.push(&[ControlState::TestStart.to_byte(), ControlState::TestRunning.to_byte()]);
        t.phase = Phase::Running;
        let p = &t.params;
        let info = TestStartInfo {
            version: self.cfg.version.clone(),
            system_info: host.system_info(),
            timestamp_ms: host.unix_time_ms(),
            interval: self.cfg.interval,
            peer_host: t.peer.addr.to_string(),
            peer_port: t.peer.port,
            cookie: t.cookie.to_text(),
            ..TestStartInfo::for_test(p, &t.data_spec, t.congestion, self.cfg.mss)
        };
        self.reporter.test_start(info);
        self.keep_listeners(sockets);
    }

    /// TEST_END: take the final sample, close the data streams, ask for the client's results.
    fn end_running(&mut self, now: Instant, sockets: &mut SocketSet<'static>, info: &dyn TcpInfoSource) {
        let Some(t) = self.test.as_mut() else { return };
        if let Some(m) = t.meas.as_mut() {
            if let Some(rep) = m.finish(now, info) {
                self.reporter.interval(rep);
            }
            t.end_secs = m.elapsed(now);
            for s in &m.streams {
                sockets.get_mut::<tcp::Socket>(s.handle).close();
            }
        }
        t.safety_deadline = None;
        t.out.push(&[ControlState::ExchangeResults.to_byte()]);
        t.phase = Phase::Results(FrameReader::new(MAX_RESULTS_LEN));
    }

    fn exchange_results(&mut self, now: Instant, remote: TestResults, host: &mut dyn Host) -> Result<(), Stop> {
        let Some(t) = self.test.as_mut() else { return Ok(()) };
        let Some(m) = t.meas.as_ref() else { return Ok(()) };
        let mut streams = Vec::with_capacity(m.streams.len());
        for s in &m.streams {
            let e = s
                .end_summary(t.end_secs, &remote.streams, remote.sender_has_retransmits == 1)
                .map_err(|code| Stop::Fail(code, format!("the client's results lack stream id {}", s.id)))?;
            streams.push(e);
        }
        let (user, system) = t.cpu_start.percent_until(host.cpu_times(), (now - m.started).total_micros());
        let we_send = m.streams.iter().any(|s| s.sends);
        let we_receive = m.streams.iter().any(|s| !s.sends);
        let ours = Some(t.congestion.name().to_string());
        let theirs = remote.congestion_used.clone();
        self.reporter.test_end(TestEndInfo {
            streams,
            cpu: CpuUtil {
                host_total: user + system,
                host_user: user,
                host_system: system,
                remote_total: remote.cpu_util_total,
                remote_user: remote.cpu_util_user,
                remote_system: remote.cpu_util_system,
            },
            sender_tcp_congestion: if we_send { ours.clone() } else { theirs.clone() },
            receiver_tcp_congestion: if we_receive { ours.clone() } else { theirs },
        });
        let mut results = TestResults {
            cpu_util_total: user + system,
            cpu_util_user: user,
            cpu_util_system: system,
            sender_has_retransmits: sender_has_retransmits(&m.streams),
            congestion_used: ours,
            server_output_text: None,
            server_output_json: None,
            streams: m.streams.iter().map(|s| s.result(t.end_secs)).collect(),
        };
        if t.params.get_server_output {
            if self.cfg.report.format == netstack::report::OutputFormat::Text {
                results.server_output_text = Some(self.reporter.text_so_far());
            } else {
                results.server_output_json = Some(self.reporter.json_so_far());
            }
        }
        t.out.push(&encode_frame(results.to_json().as_bytes()));
        t.out.push(&[ControlState::DisplayResults.to_byte()]);
        t.phase = Phase::AwaitDone;
        Ok(())
    }

    // ---- ending a test -------------------------------------------------------------------

    /// The test is cut short (CLIENT_TERMINATE, or a signal here): the final partial interval
    /// and a summary of what this side measured, the client's half as zero, as iperf3 prints
    /// them. Nothing before the data streams ran.
    fn partial_report(&mut self, now: Instant, host: &mut dyn Host, info: &dyn TcpInfoSource) {
        let Some(t) = self.test.as_mut() else { return };
        let Some(m) = t.meas.as_mut() else { return };
        if matches!(t.phase, Phase::Running) {
            if let Some(rep) = m.finish(now, info) {
                self.reporter.interval(rep);
            }
            t.end_secs = m.elapsed(now);
        }
        let (user, system) = t.cpu_start.percent_until(host.cpu_times(), (now - m.started).total_micros());
        let streams = m.streams.iter().map(|s| s.partial_summary(t.end_secs)).collect();
        let ours = Some(t.congestion.name().to_string());
        self.reporter.test_end(TestEndInfo {
            streams,
            cpu: CpuUtil { host_total: user + system, host_user: user, host_system: system, ..CpuUtil::default() },
            sender_tcp_congestion: ours.clone(),
            receiver_tcp_congestion: ours,
        });
    }

    /// The platform caught `signal` (e.g. "Interrupt(2)"): during a test, report what was
    /// measured and tell the client SERVER_TERMINATE; then reset every connection and stop
    /// serving, with iperf3 3.19+'s `interrupt - the server has terminated by signal …`.
    pub fn interrupt(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
        signal: &str,
    ) {
        if self.finished {
            return;
        }
        self.partial_report(now, host, info);
        if let Some(t) = self.test.as_mut() {
            t.out.push(&[ControlState::ServerTerminate.to_byte()]);
        }
        self.reporter.ended(&format!("interrupt - {} by signal {signal}", ErrorCode::SERVER_TERM.message()));
        if self.test.is_some() {
            self.release(now, sockets, Release::Terminate);
        }
        for p in self.pending.drain(..) {
            sockets.get_mut::<tcp::Socket>(p.handle).abort();
            self.closing.push(Closing::closed(p.handle, now));
        }
        for h in self.listeners.drain(..) {
            sockets.remove(h);
        }
        self.reporter.finish();
        self.finished = true;
    }

    /// True while closing connections still have something to say (SERVER_TERMINATE, FIN,
    /// RST): the platform polls the interface until then, briefly, before it exits.
    pub fn flushing(&self, sockets: &SocketSet<'static>) -> bool {
        self.closing.iter().any(|c| {
            let s = sockets.get::<tcp::Socket>(c.handle);
            !c.out.is_empty() || (s.send_queue() > 0 && s.may_send()) || !matches!(s.state(), tcp::State::Closed)
        })
    }

    /// Ends the current test's connections: the control connection delivers what it still
    /// has to say and closes; the data streams close (`Release::Graceful`), reset at once
    /// (`Reset`), or (`Terminate`) close and reset after [`TERMINATE_GRACE`], so the client
    /// reads SERVER_TERMINATE before its data streams fail.
    fn release(&mut self, now: Instant, sockets: &mut SocketSet<'static>, how: Release) -> Option<Test> {
        let mut t = self.test.take()?;
        let mut data: Vec<SocketHandle> = t.pending_streams.iter().map(|s| s.handle).collect();
        if let Some(m) = &t.meas {
            data.extend(m.streams.iter().map(|s| s.handle));
        }
        for h in data {
            let sock = sockets.get_mut::<tcp::Socket>(h);
            let mut c = Closing::closed(h, now);
            match how {
                Release::Graceful => sock.close(),
                Release::Reset => sock.abort(),
                Release::Terminate => {
                    sock.close();
                    c.quiet_until = Some(now + TERMINATE_GRACE);
                }
            }
            self.closing.push(c);
        }
        let out = core::mem::take(&mut t.out);
        self.closing.push(Closing { close_sent: false, out, ..Closing::closed(t.ctrl, now) });
        Some(t)
    }

    fn next_test(&mut self) {
        self.reporter.finish();
        self.tests_done += 1;
        if self.cfg.one_off {
            self.finished = true;
        } else {
            self.reporter.server_listening(self.cfg.port, self.tests_done + 1);
        }
    }

    fn complete_test(&mut self, now: Instant, sockets: &mut SocketSet<'static>) {
        self.release(now, sockets, Release::Graceful);
        self.next_test();
    }

    /// The client broke the protocol: tell it why with SERVER_ERROR, then close.
    fn fail_test(&mut self, now: Instant, code: ErrorCode, msg: &str, sockets: &mut SocketSet<'static>) {
        self.reporter.error(msg);
        if let Some(t) = self.test.as_mut() {
            let mut frame = [0u8; 9];
            frame[0] = ControlState::ServerError.to_byte();
            frame[1..5].copy_from_slice(&code.0.to_be_bytes());
            t.out.push(&frame);
        }
        self.release(now, sockets, Release::Reset);
        self.next_test();
    }

    /// The client vanished, stalled or terminated: drop everything and listen again.
    fn abort_test(&mut self, now: Instant, msg: &str, sockets: &mut SocketSet<'static>) {
        self.reporter.error(msg);
        self.release(now, sockets, Release::Reset);
        self.next_test();
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

enum Stop {
    /// Protocol error: send SERVER_ERROR with this code.
    Fail(ErrorCode, String),
    /// The client went away or terminated.
    Abort(String),
    /// IPERF_DONE after DISPLAY_RESULTS.
    Done,
    /// CLIENT_TERMINATE: the client was interrupted.
    Terminated,
}
