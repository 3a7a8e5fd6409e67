//! The iperf3 server role as a sans-IO state machine over smoltcp sockets: a
//! [`netstack::driver::Role`] the platform's loop polls after its interface. It accepts
//! control and data connections, runs one test at a time (others get ACCESS_DENIED), and
//! returns to listening after every test, error or vanished client — it never panics on what a
//! client sends.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netstack::conn::{Outbox, read_some};
use netstack::driver::{EndedTest, FromOptions, Role, RoleIo, Setup};
use netstack::machine::Machine;
use netstack::options::Options;
use netstack::proto::udp::{CONNECT_MSG, CONNECT_REPLY};
use netstack::proto::{
    COOKIE_LEN, ControlState, Cookie, ErrorCode, FrameReader, MAX_PARAMS_LEN, MAX_RESULTS_LEN, Protocol, ServerError,
    TestParams, TestResults, check_cookie_prefix, encode_frame,
};
use netstack::report::{ConnectedStream, ReportConfig, Reporter, TestStartInfo};
use netstack::smoltcp::iface::{SocketHandle, SocketSet};
use netstack::smoltcp::socket::{tcp, udp};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::IpEndpoint;
use netstack::stack::{Congestion, SocketSpec, UdpSpec, data_socket_spec, tcp_socket, udp_socket};
use netstack::stream::{DataStream, UdpStream};
use netstack::testrun::TestRun;

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
    pub fn from_options(o: &Options, setup: &Setup) -> Self {
        ServerConfig {
            port: o.port,
            one_off: o.server.one_off,
            idle_timeout: o.idle_timeout(),
            interval: o.output.interval,
            report: o.report_config(netstack::report::Side::Server),
            congestion: o.congestion(),
            mss: setup.mss,
            version: String::from(netstack::VERSION),
            buffer_budget: setup.buffer_budget,
        }
    }
}

impl FromOptions for Server {
    fn from_options(o: &Options, setup: &Setup, _now: Instant, _machine: &mut dyn Machine) -> Result<Self, String> {
        Ok(Server::new(ServerConfig::from_options(o, setup)))
    }
}

/// How long a closed socket may linger (FIN handshake) before we abort it.
const LINGER: Duration = Duration::from_secs(3);
/// iperf3's safety margin after `time + omit` before a server gives up on a test.
const SAFETY_MARGIN: Duration = Duration::from_secs(40);
/// How long data streams linger after SERVER_TERMINATE before they are reset.
const TERMINATE_GRACE: Duration = Duration::from_millis(250);

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
    /// UDP tests: the buffers of the one socket all streams share, and that socket once
    /// it is bound to the server port.
    udp_spec: Option<UdpSpec>,
    udp: Option<SocketHandle>,
    pending_streams: Vec<DataStream>,
    run: Option<TestRun>,
    last_progress: Instant,
    safety_deadline: Option<Instant>,
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

impl Closing {
    /// A socket already closed or aborted: it stays until its FIN or RST has left.
    fn closed(handle: SocketHandle, now: Instant) -> Self {
        Closing { handle, out: Outbox::default(), since: now, close_sent: true, seen_gone: false, quiet_until: None }
    }
}

/// How [`Server::release`] ends a test's data streams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    Graceful,
    Reset,
    Terminate,
}

/// Why a test stops early.
#[derive(Debug)]
enum Stop {
    /// Protocol error: send SERVER_ERROR with this code.
    Fail(ErrorCode, String),
    /// The client went away.
    Abort(String),
    /// IPERF_DONE after DISPLAY_RESULTS.
    Done,
    /// CLIENT_TERMINATE: the client was interrupted.
    Terminated,
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
    /// A test ended and the platform has not been told yet.
    ended: Option<EndedTest>,
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
            ended: None,
            reporter,
            finished: false,
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
    /// expect at once — one between tests (a control connection, or a busy client to turn
    /// away), and one per data stream while the client creates them.
    fn wanted_listeners(&self) -> (usize, SocketSpec) {
        match &self.test {
            Some(t) if matches!(t.phase, Phase::CreateStreams) && t.udp_spec.is_none() => {
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
            if sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen {
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

    fn classify(&mut self, now: Instant, handle: SocketHandle, cookie: Cookie, sockets: &mut SocketSet<'static>) {
        match &mut self.test {
            None => self.start_test(now, handle, cookie, sockets),
            Some(t)
                if matches!(t.phase, Phase::CreateStreams)
                    && t.cookie == cookie
                    && t.pending_streams.len() < t.params.total_streams() as usize =>
            {
                let index = t.pending_streams.len();
                let mut stream = DataStream::new(handle, index, t.params.server_sends(index));
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

    fn start_test(&mut self, now: Instant, ctrl: SocketHandle, cookie: Cookie, sockets: &mut SocketSet<'static>) {
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
            udp_spec: None,
            udp: None,
            pending_streams: Vec::new(),
            run: None,
            last_progress: now,
            safety_deadline: None,
        });
    }

    fn drive_test(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        let Some(t) = self.test.as_mut() else { return false };
        let mut progress = false;
        let ctrl_ok = t.out.flush(io.sockets.get_mut::<tcp::Socket>(t.ctrl));

        // Data first, so a TEST_END read below sees every byte that arrived before it.
        if let (Phase::Running, Some(run)) = (&t.phase, t.run.as_mut())
            && run.pump(io.sockets, t.params.bandwidth, now, true, io.clock) > 0
        {
            t.last_progress = now;
            progress = true;
        }
        // Control input for the current phase.
        let mut buf = [0u8; 2048];
        let eof = loop {
            let Some(t) = self.test.as_mut() else { return progress };
            let sock = io.sockets.get_mut::<tcp::Socket>(t.ctrl);
            let n = read_some(sock, &mut buf);
            if n == 0 {
                break !sock.may_recv();
            }
            progress = true;
            t.last_progress = now;
            if let Err(stop) = self.control_input(now, &buf[..n], io) {
                self.stop(now, stop, io);
                return true;
            }
            if self.test.is_none() {
                return true;
            }
        };
        let Some(t) = self.test.as_mut() else { return progress };
        if matches!(t.phase, Phase::AwaitDone) && (eof || !ctrl_ok) {
            // The client closed after DISPLAY_RESULTS without IPERF_DONE: still a clean end.
            self.stop(now, Stop::Done, io);
            return true;
        }
        if eof || !ctrl_ok {
            self.stop(now, Stop::Abort(String::from("the client has unexpectedly closed the connection")), io);
            return true;
        }

        if matches!(t.phase, Phase::CreateStreams) && t.udp_spec.is_some() {
            progress |= self.accept_udp_streams(now, io);
        }
        let Some(t) = self.test.as_mut() else { return progress };
        // Phase transitions that wait on something other than control input.
        if matches!(t.phase, Phase::CreateStreams) && t.pending_streams.len() == t.params.total_streams() as usize {
            self.begin_running(now, io);
            progress = true;
        }

        let Some(t) = self.test.as_mut() else { return progress };
        if let (Phase::Running, Some(run)) = (&t.phase, t.run.as_mut())
            && let Some(rep) = run.meas.poll_timers(now, io.tcp_info)
        {
            self.reporter.interval(rep);
        }
        let Some(t) = self.test.as_mut() else { return progress };
        if t.safety_deadline.is_some_and(|d| now >= d) {
            let why = String::from("the test ran past its length; the client did not end it");
            self.stop(now, Stop::Abort(why), io);
        } else if now - t.last_progress > self.cfg.idle_timeout {
            let why = format!("no data from the client for {} s; dropping the test", self.cfg.idle_timeout.secs());
            self.stop(now, Stop::Abort(why), io);
        }
        progress
    }

    fn control_input(&mut self, now: Instant, mut input: &[u8], io: &mut RoleIo<'_>) -> Result<(), Stop> {
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
                        self.exchange_results(now, results, io)?;
                    }
                }
                Phase::CreateStreams | Phase::Running | Phase::AwaitDone => {
                    let byte = input[0];
                    input = &input[1..];
                    self.control_byte(now, byte, io)?;
                }
            }
        }
        Ok(())
    }

    fn control_byte(&mut self, now: Instant, byte: u8, io: &mut RoleIo<'_>) -> Result<(), Stop> {
        let Some(t) = self.test.as_mut() else { return Ok(()) };
        log::debug!("server: control byte {byte:#04x} in phase {:?}", t.phase);
        match (ControlState::from_byte(byte), &t.phase) {
            (Some(ControlState::TestStart), _) => Ok(()),
            (Some(ControlState::TestEnd), Phase::Running) => {
                self.end_running(now, io);
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
        if params.protocol == Protocol::Sctp {
            // Refused before CREATE_STREAMS, so the client stops at once with iperf3's
            // "protocol does not exist" instead of waiting for streams nobody accepts.
            let name = params.protocol.name();
            return Err(Stop::Fail(ErrorCode::PROTOCOL, format!("{name} tests are not served by this server")));
        }
        if params.protocol == Protocol::Udp {
            let spec = UdpSpec::for_streams(
                params.stream_rate(),
                params.len as usize,
                params.total_streams(),
                self.cfg.buffer_budget,
            )
            .map_err(|why| Stop::Fail(ErrorCode::SET_BUF2, why))?;
            t.udp_spec = Some(spec);
            t.congestion = Congestion::None;
            t.params = params;
            t.phase = Phase::CreateStreams;
            t.out.push(&[ControlState::CreateStreams.to_byte()]);
            return Ok(());
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
        // Listeners exist before a stream's direction is known, so every data socket gets
        // the buffers of both directions the test uses.
        t.data_spec = data_socket_spec(
            params.client_receives_any(),
            params.client_sends_any(),
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

    /// UDP stream set-up: each datagram from an address and port that is not yet a stream
    /// of the test opens the next one (iperf3 does not look at the four bytes, "9876"), and
    /// is answered "6789". Datagrams of any other length are not set-up messages: skipped.
    fn accept_udp_streams(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        let Some(t) = self.test.as_mut() else { return false };
        let Some(spec) = t.udp_spec else { return false };
        let h = match t.udp {
            Some(h) => h,
            None => {
                let mut sock = udp_socket(&spec);
                if let Err(e) = sock.bind(self.cfg.port) {
                    let why = format!("cannot bind the UDP port {}: {e}", self.cfg.port);
                    self.stop(now, Stop::Fail(ErrorCode::STREAM_ACCEPT, why), io);
                    return true;
                }
                let h = io.sockets.add(sock);
                t.udp = Some(h);
                h
            }
        };
        let mut progress = false;
        let total = t.params.total_streams() as usize;
        let local_ip = io.iface.ipv4_addr();
        let sock = io.sockets.get_mut::<udp::Socket>(h);
        while t.pending_streams.len() < total {
            let Ok((data, meta)) = sock.recv() else { break };
            let from = meta.endpoint;
            if data.len() != CONNECT_MSG.len()
                || t.pending_streams.iter().any(|s| s.udp.as_ref().is_some_and(|u| u.peer == from))
            {
                continue;
            }
            let index = t.pending_streams.len();
            let p = &t.params;
            let udp = UdpStream::new(from, p.len as usize, p.udp_counters_64bit, p.stream_rate());
            let mut stream = DataStream::new_udp(h, index, p.server_sends(index), udp);
            if let Some(ip) = local_ip {
                let local = IpEndpoint::new(ip.into(), self.cfg.port);
                stream = stream.with_endpoints(local, from);
                self.stream_endpoints.push((stream.id, local, from));
                self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, local, from));
            }
            // A full send buffer would lose the answer; the client then times out, as with a
            // lost datagram.
            let _ = sock.send_slice(&CONNECT_REPLY, from);
            t.pending_streams.push(stream);
            t.last_progress = now;
            progress = true;
        }
        progress
    }

    fn begin_running(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        let Some(t) = self.test.as_mut() else { return };
        let streams = core::mem::take(&mut t.pending_streams);
        let rcv_buf = if t.udp_spec.is_some() { 0 } else { t.data_spec.rx };
        let run = TestRun::start(streams, now, &t.params, self.cfg.interval, rcv_buf, t.congestion, io.machine);
        t.run = Some(run);
        if t.params.time > 0 {
            t.safety_deadline = Some(now + Duration::from_secs((t.params.time + t.params.omit) as u64) + SAFETY_MARGIN);
        }
        t.out.push(&[ControlState::TestStart.to_byte(), ControlState::TestRunning.to_byte()]);
        t.phase = Phase::Running;
        let info = TestStartInfo {
            version: self.cfg.version.clone(),
            system_info: io.machine.system_info(),
            timestamp_ms: io.machine.unix_time_ms(),
            interval: self.cfg.interval,
            peer_host: t.peer.addr.to_string(),
            peer_port: t.peer.port,
            cookie: t.cookie.to_text(),
            ..TestStartInfo::for_test(&t.params, &t.data_spec, t.congestion, self.cfg.mss)
        };
        self.reporter.test_start(info);
        self.keep_listeners(io.sockets);
    }

    /// TEST_END: take the final sample, close the data streams, ask for the client's results.
    fn end_running(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        let Some(t) = self.test.as_mut() else { return };
        if let Some(run) = t.run.as_mut() {
            if let Some(rep) = run.end(now, io.tcp_info) {
                self.reporter.interval(rep);
            }
            for s in run.meas.streams.iter().filter(|s| s.udp.is_none()) {
                io.sockets.get_mut::<tcp::Socket>(s.handle).close();
            }
        }
        t.safety_deadline = None;
        t.out.push(&[ControlState::ExchangeResults.to_byte()]);
        t.phase = Phase::Results(FrameReader::new(MAX_RESULTS_LEN));
    }

    /// The client's results arrived: report, answer with ours (and our output if asked).
    fn exchange_results(&mut self, now: Instant, remote: TestResults, io: &mut RoleIo<'_>) -> Result<(), Stop> {
        let Some(t) = self.test.as_mut() else { return Ok(()) };
        let Some(run) = t.run.as_mut() else { return Ok(()) };
        let mut results = run.results(now, io.machine);
        let summary = run
            .summary(&remote)
            .map_err(|(code, id)| Stop::Fail(code, format!("the client's results lack stream id {id}")))?;
        for note in run.udp_notes(t.params.stream_rate()) {
            self.reporter.warning(&note);
        }
        self.reporter.test_end(summary);
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

    /// The test is cut short: what this side measured, as iperf3 prints it (nothing before
    /// the data streams ran).
    fn partial_report(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        let Some(run) = self.test.as_mut().and_then(|t| t.run.as_mut()) else { return };
        let (rep, summary) = run.partial(now, io.machine, io.tcp_info);
        if let Some(rep) = rep {
            self.reporter.interval(rep);
        }
        self.reporter.test_end(summary);
    }

    /// Ends the current test for `why` and gets ready for the next.
    fn stop(&mut self, now: Instant, why: Stop, io: &mut RoleIo<'_>) {
        log::debug!("server: test {} ends: {why:?}", self.tests_done + 1);
        let how = match why {
            Stop::Done => Release::Graceful,
            Stop::Fail(code, msg) => {
                // The client broke the protocol: tell it why with SERVER_ERROR, then close.
                self.reporter.error(&msg);
                if let Some(t) = self.test.as_mut() {
                    t.out.push(&ServerError::new(code).to_wire());
                }
                Release::Reset
            }
            Stop::Abort(msg) => {
                // The client vanished or stalled: drop everything and listen again.
                self.reporter.error(&msg);
                Release::Reset
            }
            Stop::Terminated => {
                // As iperf3: what we measured, then "the client has terminated".
                self.partial_report(now, io);
                self.reporter.ended(ErrorCode::CLIENT_TERM.message());
                Release::Reset
            }
        };
        self.release(now, io.sockets, how);
        self.reporter.finish();
        self.tests_done += 1;
        self.ended = Some(EndedTest { number: self.tests_done, streams: self.stream_endpoints.clone() });
        if self.cfg.one_off {
            self.finished = true;
        } else {
            self.reporter.server_listening(self.cfg.port, self.tests_done + 1);
        }
    }

    /// Ends the current test's connections: the control connection delivers what it still
    /// has to say and closes; the data streams close (`Release::Graceful`), reset at once
    /// (`Reset`), or (`Terminate`) close and reset after [`TERMINATE_GRACE`], so the client
    /// reads SERVER_TERMINATE before its data streams fail.
    fn release(&mut self, now: Instant, sockets: &mut SocketSet<'static>, how: Release) {
        let Some(mut t) = self.test.take() else { return };
        // UDP streams share one socket with nothing to close: it goes at once.
        if let Some(h) = t.udp.take() {
            sockets.remove(h);
        }
        let mut data: Vec<SocketHandle> =
            t.pending_streams.iter().filter(|s| s.udp.is_none()).map(|s| s.handle).collect();
        if let Some(run) = &t.run {
            data.extend(run.meas.streams.iter().filter(|s| s.udp.is_none()).map(|s| s.handle));
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
        if self.test.is_some() {
            progress |= self.drive_test(now, io);
        }
        self.reap_closing(now, io.sockets);
        progress
    }

    /// The next instant a timer needs the server polled.
    fn poll_at(&self) -> Option<Instant> {
        let t = self.test.as_ref()?;
        let mut at = t.last_progress + self.cfg.idle_timeout;
        if let Some(m) = t.run.as_ref().and_then(|r| r.meas.poll_at()) {
            at = at.min(m);
        }
        if let (Phase::Running, Some(n)) = (&t.phase, t.run.as_ref().and_then(|r| r.meas.next_send_at())) {
            at = at.min(n);
        }
        Some(at)
    }

    fn take_output(&mut self) -> String {
        self.reporter.take_output()
    }

    /// During a test, report what was measured and tell the client SERVER_TERMINATE; then
    /// reset every connection and stop serving, with iperf3 3.19+'s `interrupt - the server
    /// has terminated by signal …`.
    fn interrupt(&mut self, now: Instant, io: &mut RoleIo<'_>, signal: &str) {
        if self.finished {
            return;
        }
        self.partial_report(now, io);
        if let Some(t) = self.test.as_mut() {
            t.out.push(&[ControlState::ServerTerminate.to_byte()]);
        }
        self.reporter.ended(&format!("interrupt - {} by signal {signal}", ErrorCode::SERVER_TERM.message()));
        self.release(now, io.sockets, Release::Terminate);
        for p in self.pending.drain(..) {
            io.sockets.get_mut::<tcp::Socket>(p.handle).abort();
            self.closing.push(Closing::closed(p.handle, now));
        }
        for h in self.listeners.drain(..) {
            io.sockets.remove(h);
        }
        self.reporter.finish();
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
        self.ended.take()
    }
}
