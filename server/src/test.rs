//! One test the server runs: its control connection through the phases of iperf3's protocol
//! (parameters, stream creation, running, results), its data streams, its own report, and the
//! policy checks that apply to it. The [`crate::Server`] owns several of these at once.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netstack::conn::{Outbox, read_some};
use netstack::driver::{EndedTest, RoleIo};
use netstack::proto::udp::{CONNECT_MSG, CONNECT_REPLY};
use netstack::proto::{
    ControlState, Cookie, ErrorCode, FrameReader, MAX_PARAMS_LEN, MAX_RESULTS_LEN, Protocol, ServerError, TestParams,
    TestResults, encode_frame,
};
use netstack::report::{ConnectedStream, OutputFormat, Reporter, TestStartInfo};
use netstack::smoltcp::iface::{SocketHandle, SocketSet};
use netstack::smoltcp::socket::{tcp, udp};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::IpEndpoint;
use netstack::stack::{Congestion, SocketSpec, UdpSpec, data_socket_spec, try_udp_socket};
use netstack::stream::{DataStream, UdpStream};
use netstack::testrun::TestRun;

use crate::policy::RateWindow;
use crate::{Closing, ServerConfig};

/// iperf3's safety margin after `time + omit` before a server gives up on a test.
const SAFETY_MARGIN: Duration = Duration::from_secs(40);
/// How long data streams linger after SERVER_TERMINATE before they are reset.
const TERMINATE_GRACE: Duration = Duration::from_millis(250);
/// Slack after `--server-max-duration` for a test's own end (TEST_END) to arrive.
const MAX_DURATION_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) enum Phase {
    Params(FrameReader),
    /// Parameters accepted; CREATE_STREAMS waits until no other test is creating streams
    /// (listeners are sized for one test's streams at a time).
    WaitCreate,
    CreateStreams,
    Running,
    Results(FrameReader),
    AwaitDone,
}

/// Why a test stops.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Protocol error or a policy refusal: send SERVER_ERROR with this code.
    Fail(ErrorCode, String),
    /// The client went away.
    Abort(String),
    /// IPERF_DONE after DISPLAY_RESULTS.
    Done,
    /// CLIENT_TERMINATE: the client was interrupted.
    Terminated,
}

/// How a stopped test's data streams end.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    Graceful,
    Reset,
    /// Close, and reset after [`TERMINATE_GRACE`], so the client reads SERVER_TERMINATE
    /// before its data streams fail.
    Terminate,
}

/// What the server-wide state says about one test's parameters.
pub(crate) struct Admission {
    /// Bytes this test's data sockets may use.
    pub budget: usize,
    /// Data streams other tests hold now.
    pub streams_elsewhere: u32,
}

pub(crate) struct Test {
    /// 1 for the first test this server accepted.
    pub number: u32,
    pub ctrl: SocketHandle,
    pub out: Outbox,
    pub cookie: Cookie,
    peer: IpEndpoint,
    pub phase: Phase,
    pub params: TestParams,
    congestion: Congestion,
    pub data_spec: SocketSpec,
    /// UDP tests: the buffers of the one socket all streams share, and that socket once
    /// it is bound to the server port.
    pub udp_spec: Option<UdpSpec>,
    udp: Option<SocketHandle>,
    pub pending_streams: Vec<DataStream>,
    run: Option<TestRun>,
    last_progress: Instant,
    /// Bytes our data streams still had queued to send at the last poll: while that shrinks,
    /// the client is taking our data, so the test is not idle (a slow link drains seconds of
    /// queued -R data after TEST_END, and the control reply waits behind it).
    queued_to_send: usize,
    /// When the last data byte arrived on a receiving stream (for `--rcv-timeout`).
    last_received: Instant,
    safety_deadline: Option<Instant>,
    max_duration_deadline: Option<Instant>,
    rate: Option<RateWindow>,
    pub reporter: Reporter,
    /// (iperf3 stream id, local, remote) of the test's data streams.
    pub endpoints: Vec<(i64, IpEndpoint, IpEndpoint)>,
}

impl Test {
    pub fn new(
        number: u32,
        ctrl: SocketHandle,
        cookie: Cookie,
        now: Instant,
        cfg: &ServerConfig,
        sockets: &mut SocketSet<'static>,
    ) -> Self {
        let sock = sockets.get_mut::<tcp::Socket>(ctrl);
        sock.set_nagle_enabled(false);
        let peer =
            sock.remote_endpoint().unwrap_or(IpEndpoint::new(netstack::smoltcp::wire::IpAddress::v4(0, 0, 0, 0), 0));
        let mut reporter = Reporter::new(cfg.report.clone());
        reporter.accepted(&peer.addr.to_string(), peer.port);
        let mut out = Outbox::default();
        out.push(&[ControlState::ParamExchange.to_byte()]);
        Test {
            number,
            ctrl,
            out,
            cookie,
            peer,
            phase: Phase::Params(FrameReader::new(MAX_PARAMS_LEN)),
            params: TestParams::default(),
            congestion: cfg.congestion,
            data_spec: SocketSpec::control(),
            udp_spec: None,
            udp: None,
            pending_streams: Vec::new(),
            run: None,
            last_progress: now,
            queued_to_send: 0,
            last_received: now,
            safety_deadline: None,
            max_duration_deadline: None,
            rate: None,
            reporter,
            endpoints: Vec::new(),
        }
    }

    /// Data streams the test holds or is about to open (0 before its parameters).
    pub fn streams(&self) -> u32 {
        match self.phase {
            Phase::Params(_) => 0,
            _ => self.params.total_streams(),
        }
    }

    /// Listeners this test needs: one per TCP data stream still to come while it creates them.
    pub fn listeners_wanted(&self) -> Option<(usize, SocketSpec)> {
        match self.phase {
            Phase::CreateStreams if self.udp_spec.is_none() => {
                let left = self.params.total_streams() as usize - self.pending_streams.len();
                Some((left, self.data_spec))
            }
            _ => None,
        }
    }

    /// CREATE_STREAMS may be sent now (no other test is creating streams).
    pub fn start_creating(&mut self) {
        if matches!(self.phase, Phase::WaitCreate) {
            self.phase = Phase::CreateStreams;
            self.out.push(&[ControlState::CreateStreams.to_byte()]);
        }
    }

    /// A TCP connection that sent this test's cookie while it creates streams: its next stream.
    /// False if the test takes no more streams.
    pub fn add_stream(
        &mut self,
        handle: SocketHandle,
        now: Instant,
        cfg: &ServerConfig,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        if !matches!(self.phase, Phase::CreateStreams)
            || self.udp_spec.is_some()
            || self.pending_streams.len() >= self.params.total_streams() as usize
        {
            return false;
        }
        let index = self.pending_streams.len();
        let mut stream = DataStream::new(handle, index, self.params.server_sends(index));
        let sock = sockets.get_mut::<tcp::Socket>(handle);
        if let Some(ms) = cfg.snd_timeout_ms {
            sock.set_timeout(Some(Duration::from_millis(ms as u64)));
        }
        if let (Some(l), Some(r)) = (sock.local_endpoint(), sock.remote_endpoint()) {
            stream = stream.with_endpoints(l, r);
            self.endpoints.push((stream.id, l, r));
            self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, l, r));
        }
        self.pending_streams.push(stream);
        self.last_progress = now;
        true
    }

    /// The next instant a timer needs the test polled.
    pub fn poll_at(&self, cfg: &ServerConfig) -> Instant {
        let mut at = self.last_progress + cfg.idle_timeout;
        if let Some(m) = self.run.as_ref().and_then(|r| r.meas.poll_at()) {
            at = at.min(m);
        }
        if let (Phase::Running, Some(run)) = (&self.phase, self.run.as_ref()) {
            if let Some(n) = run.meas.next_send_at() {
                at = at.min(n);
            }
            if let Some(ms) = cfg.rcv_timeout_ms {
                at = at.min(self.last_received + Duration::from_millis(ms as u64));
            }
            if let Some(r) = &self.rate {
                at = at.min(r.next_check());
            }
        }
        for d in [self.safety_deadline, self.max_duration_deadline].into_iter().flatten() {
            at = at.min(d);
        }
        at
    }

    /// Does the test's pending work: data, control input, timers. `Err` when it must stop.
    pub fn drive(
        &mut self,
        now: Instant,
        io: &mut RoleIo<'_>,
        cfg: &ServerConfig,
        admit: &Admission,
    ) -> Result<bool, Stop> {
        let mut progress = false;
        let ctrl_ok = self.out.flush(io.sockets.get_mut::<tcp::Socket>(self.ctrl));

        // Data first, so a TEST_END read below sees every byte that arrived before it.
        if let (Phase::Running, Some(run)) = (&self.phase, self.run.as_mut()) {
            let received_before = run.meas.received();
            if run.pump(io.sockets, self.params.bandwidth, now, true, io.clock, io.tcp_info) > 0 {
                self.last_progress = now;
                progress = true;
            }
            if run.meas.received() != received_before {
                self.last_received = now;
            }
        }
        // Control input for the current phase.
        let mut buf = [0u8; 2048];
        let eof = loop {
            let sock = io.sockets.get_mut::<tcp::Socket>(self.ctrl);
            let n = read_some(sock, &mut buf);
            if n == 0 {
                break !sock.may_recv();
            }
            progress = true;
            self.last_progress = now;
            self.control_input(now, &buf[..n], io, cfg, admit)?;
        };
        if matches!(self.phase, Phase::AwaitDone) && (eof || !ctrl_ok) {
            // The client closed after DISPLAY_RESULTS without IPERF_DONE: still a clean end.
            return Err(Stop::Done);
        }
        if eof || !ctrl_ok {
            return Err(Stop::Abort(String::from("the client has unexpectedly closed the connection")));
        }
        if matches!(self.phase, Phase::CreateStreams) && self.udp_spec.is_some() {
            progress |= self.accept_udp_streams(now, io, cfg)?;
        }
        if matches!(self.phase, Phase::CreateStreams)
            && self.pending_streams.len() == self.params.total_streams() as usize
        {
            self.begin_running(now, io, cfg);
            progress = true;
        }
        if let (Phase::Running, Some(run)) = (&self.phase, self.run.as_mut()) {
            if let Some(rep) = run.meas.poll_timers(now, io.tcp_info) {
                self.reporter.interval(rep);
            }
            self.check_running(now, io.sockets, cfg)?;
        }
        if self.safety_deadline.is_some_and(|d| now >= d) {
            return Err(Stop::Abort(String::from("the test ran past its length; the client did not end it")));
        }
        if let Some(run) = self.run.as_ref() {
            let queued = run.meas.queued_to_send(io.sockets);
            if queued < self.queued_to_send {
                self.last_progress = now;
            }
            self.queued_to_send = queued;
        }
        if now - self.last_progress > cfg.idle_timeout {
            let why = format!("no data from the client for {} s; dropping the test", cfg.idle_timeout.secs());
            return Err(Stop::Abort(why));
        }
        Ok(progress)
    }

    /// The limits that apply while data flows.
    fn check_running(&mut self, now: Instant, sockets: &SocketSet<'static>, cfg: &ServerConfig) -> Result<(), Stop> {
        let Some(run) = self.run.as_ref() else { return Ok(()) };
        if self.max_duration_deadline.is_some_and(|d| now >= d) {
            let why = format!("the test ran past the server's limit of {} s", cfg.max_duration.unwrap_or(0));
            return Err(Stop::Fail(ErrorCode::SERVER_DURATION_EXPIRED, why));
        }
        if let Some(r) = self.rate.as_mut() {
            let moved = run.meas.sent().saturating_add(run.meas.received());
            if let Some(avg) = r.update(now, moved) {
                let why = format!("the test averaged {:.1} Mbit/s, over the server's limit", avg as f64 / 1e6);
                return Err(Stop::Fail(ErrorCode::TOTAL_RATE, why));
            }
        }
        if let Some(ms) = cfg.rcv_timeout_ms
            && run.meas.streams.iter().any(|s| !s.sends)
            && now - self.last_received >= Duration::from_millis(ms as u64)
        {
            return Err(Stop::Fail(ErrorCode::NO_MSG, format!("no data received for {ms} ms")));
        }
        // --snd-timeout: smoltcp resets a connection whose data stays unacknowledged.
        for s in run.meas.streams.iter().filter(|s| s.sends && s.udp.is_none()) {
            if sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Closed {
                let why = format!("{}: the client acknowledged nothing in time", ErrorCode::STREAM_WRITE.message());
                return Err(Stop::Abort(why));
            }
        }
        Ok(())
    }

    fn control_input(
        &mut self,
        now: Instant,
        mut input: &[u8],
        io: &mut RoleIo<'_>,
        cfg: &ServerConfig,
        admit: &Admission,
    ) -> Result<(), Stop> {
        while !input.is_empty() {
            match &mut self.phase {
                Phase::Params(reader) => {
                    let (used, done) = reader.feed(input);
                    input = &input[used..];
                    if let Some(body) = done {
                        let body = body.map_err(|e| Stop::Fail(ErrorCode::RECV_PARAMS, format!("{e}")))?;
                        let params = TestParams::parse(&body)
                            .map_err(|(code, why)| Stop::Fail(code, format!("bad parameters: {why}")))?;
                        params.validate().map_err(|(code, why)| Stop::Fail(code, format!("bad parameters: {why}")))?;
                        self.accept_params(params, cfg, admit)?;
                    }
                }
                Phase::Results(reader) => {
                    let (used, done) = reader.feed(input);
                    input = &input[used..];
                    if let Some(body) = done {
                        let body = body.map_err(|e| Stop::Fail(ErrorCode::RECV_RESULTS, format!("{e}")))?;
                        let results = TestResults::parse(&body)
                            .map_err(|e| Stop::Fail(ErrorCode::RECV_RESULTS, format!("bad results: {e}")))?;
                        self.exchange_results(now, results, io, cfg)?;
                    }
                }
                Phase::WaitCreate | Phase::CreateStreams | Phase::Running | Phase::AwaitDone => {
                    let byte = input[0];
                    input = &input[1..];
                    self.control_byte(now, byte, io)?;
                }
            }
        }
        Ok(())
    }

    fn control_byte(&mut self, now: Instant, byte: u8, io: &mut RoleIo<'_>) -> Result<(), Stop> {
        log::debug!("server: test {}: control byte {byte:#04x} in phase {:?}", self.number, self.phase);
        match (ControlState::from_byte(byte), &self.phase) {
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

    fn accept_params(&mut self, params: TestParams, cfg: &ServerConfig, admit: &Admission) -> Result<(), Stop> {
        if params.protocol == Protocol::Sctp {
            // Refused before CREATE_STREAMS, so the client stops at once with iperf3's
            // "protocol does not exist" instead of waiting for streams nobody accepts.
            let name = params.protocol.name();
            return Err(Stop::Fail(ErrorCode::PROTOCOL, format!("{name} tests are not served by this server")));
        }
        crate::policy::admit(&params, cfg, admit.streams_elsewhere)?;
        if params.protocol == Protocol::Udp {
            let spec =
                UdpSpec::for_streams(params.stream_rate(), params.len as usize, params.total_streams(), admit.budget)
                    .map_err(|why| Stop::Fail(ErrorCode::SET_BUF2, why))?;
            self.udp_spec = Some(spec);
            self.congestion = Congestion::None;
        } else {
            let congestion = match params.congestion.as_deref() {
                None => cfg.congestion,
                Some(name) => match Congestion::parse(name) {
                    Ok(c) => c,
                    Err(e) => {
                        // iperf3 only warns when the kernel lacks the algorithm; so do we.
                        self.reporter.warning(&e);
                        cfg.congestion
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
            self.data_spec = data_socket_spec(
                params.client_receives_any(),
                params.client_sends_any(),
                params.window,
                params.total_streams(),
                congestion,
                params.nodelay,
                admit.budget,
            )
            .map_err(|why| Stop::Fail(ErrorCode::SET_BUF2, why))?;
            self.congestion = congestion;
        }
        self.params = params;
        self.phase = Phase::WaitCreate;
        Ok(())
    }

    /// UDP stream set-up: each datagram from an address and port that is not yet a stream
    /// of the test opens the next one (iperf3 does not look at the four bytes, "9876"), and
    /// is answered "6789". Datagrams of any other length are not set-up messages: skipped.
    fn accept_udp_streams(&mut self, now: Instant, io: &mut RoleIo<'_>, cfg: &ServerConfig) -> Result<bool, Stop> {
        let Some(spec) = self.udp_spec else { return Ok(false) };
        let h = match self.udp {
            Some(h) => h,
            None => {
                let mut sock = try_udp_socket(&spec).map_err(|e| Stop::Fail(ErrorCode::CREATE_STREAM, e))?;
                sock.bind(cfg.port).map_err(|e| {
                    // Another UDP test holds the port: iperf3 serves one, and so do we.
                    Stop::Fail(ErrorCode::STREAM_ACCEPT, format!("cannot bind the UDP port {}: {e}", cfg.port))
                })?;
                let h = io.sockets.add(sock);
                self.udp = Some(h);
                h
            }
        };
        let mut progress = false;
        let total = self.params.total_streams() as usize;
        let local_ip = io.iface.ipv4_addr();
        let sock = io.sockets.get_mut::<udp::Socket>(h);
        while self.pending_streams.len() < total {
            let Ok((data, meta)) = sock.recv() else { break };
            let from = meta.endpoint;
            let known = self.pending_streams.iter().any(|s| s.udp.as_ref().is_some_and(|u| u.peer == from));
            if data.len() != CONNECT_MSG.len() || known {
                continue;
            }
            let index = self.pending_streams.len();
            let p = &self.params;
            let udp = UdpStream::new(from, p.len as usize, p.udp_counters_64bit, p.stream_rate());
            let mut stream = DataStream::new_udp(h, index, p.server_sends(index), udp);
            if let Some(ip) = local_ip {
                let local = IpEndpoint::new(ip.into(), cfg.port);
                stream = stream.with_endpoints(local, from);
                self.endpoints.push((stream.id, local, from));
                self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, local, from));
            }
            // A full send buffer would lose the answer; the client then times out, as with a
            // lost datagram.
            let _ = sock.send_slice(&CONNECT_REPLY, from);
            self.pending_streams.push(stream);
            self.last_progress = now;
            progress = true;
        }
        Ok(progress)
    }

    fn begin_running(&mut self, now: Instant, io: &mut RoleIo<'_>, cfg: &ServerConfig) {
        let streams = core::mem::take(&mut self.pending_streams);
        let rcv_buf = if self.udp_spec.is_some() { 0 } else { self.data_spec.rx };
        let run = TestRun::start(streams, now, &self.params, cfg.interval, rcv_buf, self.congestion, io.machine);
        self.run = Some(run);
        let p = &self.params;
        if p.time > 0 {
            self.safety_deadline = Some(now + Duration::from_secs((p.time + p.omit) as u64) + SAFETY_MARGIN);
        }
        self.max_duration_deadline = cfg.max_duration.map(|m| now + Duration::from_secs(m as u64) + MAX_DURATION_GRACE);
        self.rate = cfg.bitrate_limit.map(|(limit, secs)| RateWindow::new(limit, secs, now));
        self.last_received = now;
        self.out.push(&[ControlState::TestStart.to_byte(), ControlState::TestRunning.to_byte()]);
        self.phase = Phase::Running;
        let info = TestStartInfo {
            version: cfg.version.clone(),
            system_info: io.machine.system_info(),
            timestamp_ms: io.machine.unix_time_ms(),
            interval: cfg.interval,
            peer_host: self.peer.addr.to_string(),
            peer_port: self.peer.port,
            cookie: self.cookie.to_text(),
            ..TestStartInfo::for_test(&self.params, &self.data_spec, self.congestion, cfg.mss)
        };
        self.reporter.test_start(info);
    }

    /// TEST_END: take the final sample, close the data streams, ask for the client's results.
    fn end_running(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        if let Some(run) = self.run.as_mut() {
            if let Some(rep) = run.end(now, io.tcp_info) {
                self.reporter.interval(rep);
            }
            for s in run.meas.streams.iter().filter(|s| s.udp.is_none()) {
                io.sockets.get_mut::<tcp::Socket>(s.handle).close();
            }
        }
        self.safety_deadline = None;
        self.max_duration_deadline = None;
        self.out.push(&[ControlState::ExchangeResults.to_byte()]);
        self.phase = Phase::Results(FrameReader::new(MAX_RESULTS_LEN));
    }

    /// The client's results arrived: report, answer with ours (and our output if asked).
    fn exchange_results(
        &mut self,
        now: Instant,
        remote: TestResults,
        io: &mut RoleIo<'_>,
        cfg: &ServerConfig,
    ) -> Result<(), Stop> {
        let Some(run) = self.run.as_mut() else { return Ok(()) };
        let mut results = run.results(now, io.machine);
        let summary = run
            .summary(&remote)
            .map_err(|(code, id)| Stop::Fail(code, format!("the client's results lack stream id {id}")))?;
        for note in run.udp_notes(self.params.stream_rate()) {
            self.reporter.warning(&note);
        }
        self.reporter.test_end(summary);
        if self.params.get_server_output {
            if cfg.report.format == OutputFormat::Text {
                results.server_output_text = Some(self.reporter.text_so_far());
            } else {
                results.server_output_json = Some(self.reporter.json_so_far());
            }
        }
        self.out.push(&encode_frame(results.to_json().as_bytes()));
        self.out.push(&[ControlState::DisplayResults.to_byte()]);
        self.phase = Phase::AwaitDone;
        Ok(())
    }

    /// The test is cut short: what this side measured, as iperf3 prints it (nothing before
    /// the data streams ran).
    pub fn partial_report(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        let Some(run) = self.run.as_mut() else { return };
        let (rep, summary) = run.partial(now, io.machine, io.tcp_info);
        if let Some(rep) = rep {
            self.reporter.interval(rep);
        }
        self.reporter.test_end(summary);
    }

    /// Ends the test for `why`: its report says so, its connections close as `why` asks
    /// (the returned [`Closing`]s deliver the last words), and its flow-log labels go to the
    /// platform.
    pub fn stop(mut self, now: Instant, why: Stop, io: &mut RoleIo<'_>) -> (Vec<Closing>, String, EndedTest) {
        log::debug!("server: test {} ends: {why:?}", self.number);
        let how = match why {
            Stop::Done => Release::Graceful,
            Stop::Fail(code, msg) => {
                // The client broke the protocol or a policy: SERVER_ERROR says why, then close.
                // Mid-test, the data streams stay quiet a moment before they are reset, so a
                // client busy writing (3.12 is single-threaded) reads the error first rather
                // than failing on a reset stream.
                self.reporter.error(&msg);
                let mut err = ServerError::new(code);
                if code == ErrorCode::CREATE_STREAM {
                    // As iperf3 when it cannot allocate a stream: "Cannot allocate memory".
                    err.errno = ServerError::ENOMEM;
                }
                self.out.push(&err.to_wire());
                if self.run.is_some() { Release::Terminate } else { Release::Reset }
            }
            Stop::Abort(msg) => {
                // The client vanished or stalled: drop everything.
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
        self.finish(now, io.sockets, how)
    }

    /// The server was interrupted: report what was measured and tell the client.
    pub fn terminate(mut self, now: Instant, io: &mut RoleIo<'_>, signal: &str) -> (Vec<Closing>, String, EndedTest) {
        self.partial_report(now, io);
        self.out.push(&[ControlState::ServerTerminate.to_byte()]);
        self.reporter.ended(&format!("interrupt - {} by signal {signal}", ErrorCode::SERVER_TERM.message()));
        self.finish(now, io.sockets, Release::Terminate)
    }

    /// The control connection delivers what it still has to say and closes; the data
    /// streams close, reset, or (Terminate) close and reset after [`TERMINATE_GRACE`].
    fn finish(
        mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        how: Release,
    ) -> (Vec<Closing>, String, EndedTest) {
        let mut closing = Vec::new();
        // UDP streams share one socket with nothing to close: it goes at once.
        if let Some(h) = self.udp.take() {
            sockets.remove(h);
        }
        let mut data: Vec<SocketHandle> =
            self.pending_streams.iter().filter(|s| s.udp.is_none()).map(|s| s.handle).collect();
        if let Some(run) = &self.run {
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
            closing.push(c);
        }
        let out = core::mem::take(&mut self.out);
        closing.push(Closing { close_sent: false, out, ..Closing::closed(self.ctrl, now) });
        self.reporter.finish();
        let ended = EndedTest { number: self.number, streams: core::mem::take(&mut self.endpoints) };
        (closing, self.reporter.take_output(), ended)
    }
}
