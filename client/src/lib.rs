//! The iperf3 client role as a sans-IO state machine over smoltcp sockets: a
//! [`netstack::driver::Role`] the platform's loop polls after its interface. It connects,
//! sends the cookie and parameters, opens the data streams one after another, moves data until
//! the end condition, exchanges results and reports; [`Role::status`] says how it went.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netstack::conn::{Outbox, read_some};
use netstack::driver::{EndedTest, FromOptions, Role, RoleIo, Setup};
use netstack::machine::Machine;
use netstack::options::{Mode, Options};
use netstack::proto::udp::{CONNECT_MSG, CONNECT_REPLY, LEGACY_CONNECT_REPLY};
use netstack::proto::{
    COOKIE_LEN, ControlState, Cookie, ErrorCode, FrameReader, MAX_RESULTS_LEN, Protocol, ServerError, TestParams,
    TestResults, encode_frame, limits,
};
use netstack::report::{ConnectedStream, ReportConfig, Reporter, TestStartInfo};
use netstack::smoltcp::iface::{Interface, SocketHandle, SocketSet};
use netstack::smoltcp::socket::{tcp, udp};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, IpEndpoint};
use netstack::stack::{Congestion, SocketSpec, UdpSpec, data_socket_spec, tcp_socket, try_tcp_socket, try_udp_socket};
use netstack::stream::{DataStream, UdpStream};
use netstack::tcpinfo::TcpInfoSource;
use netstack::testrun::TestRun;

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub server: IpAddress,
    /// The name the user gave (`-c HOST`), for "Connecting to host …".
    pub server_name: String,
    pub port: u16,
    pub params: TestParams,
    /// `-i`, in seconds.
    pub interval: f64,
    pub report: ReportConfig,
    /// `--connect-timeout`; iperf3 leaves it to the OS, we default to 10 s.
    pub connect_timeout: Duration,
    /// Give up when the server says nothing (and no data moves) for this long.
    pub stall_timeout: Duration,
    /// `-C`, or the build's default when it is not given.
    pub congestion: Congestion,
    pub mss: u32,
    pub version: String,
    /// Bytes all data sockets of the test may use together.
    pub buffer_budget: usize,
    /// `--cport`: the first data stream's local port.
    pub cport: Option<u16>,
    /// `--rcv-timeout` / `--snd-timeout`, ms.
    pub rcv_timeout_ms: Option<u32>,
    pub snd_timeout_ms: Option<u32>,
}

impl ClientConfig {
    /// The client `-c` asks for; an error if the options are not a client's.
    pub fn from_options(o: &Options, setup: &Setup) -> Result<Self, String> {
        let (Some(Mode::Client(name)), Some(server)) = (&o.mode, o.server_address()?) else {
            return Err(String::from("the options do not describe a client (-c HOST)"));
        };
        let mut params = o.to_params();
        // iperf3's UDP datagrams default to the control connection's MSS: one per frame.
        if params.protocol == Protocol::Udp && o.test.len.is_none() {
            params.len = (setup.mss as i64).clamp(limits::UDP_LEN.min, limits::UDP_LEN.max) as u32;
        }
        Ok(ClientConfig {
            server,
            server_name: name.clone(),
            port: o.port,
            params,
            interval: o.output.interval,
            report: o.report_config(netstack::report::Side::Client),
            connect_timeout: Duration::from_millis(o.test.connect_timeout_ms.unwrap_or(10_000) as u64),
            stall_timeout: Duration::from_secs(30),
            congestion: o.congestion(),
            mss: setup.mss,
            version: String::from(netstack::VERSION),
            buffer_budget: setup.buffer_budget,
            cport: o.test.cport,
            rcv_timeout_ms: o.timeouts.rcv_ms,
            snd_timeout_ms: o.timeouts.snd_ms,
        })
    }
}

impl FromOptions for Client {
    fn from_options(o: &Options, setup: &Setup, now: Instant, machine: &mut dyn Machine) -> Result<Self, String> {
        Ok(Client::new(ClientConfig::from_options(o, setup)?, now, machine))
    }
}

/// How long a UDP stream waits for the server's answer to "9876" (iperf3's socket timeout).
const UDP_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Phase {
    Connecting,
    Control,
    Running,
    /// TEST_END sent; draining until EXCHANGE_RESULTS.
    Ending,
    Done,
}

#[derive(Debug)]
enum CtrlRx {
    State,
    ServerResults(FrameReader),
    /// The body of a SERVER_ERROR message.
    ServerError {
        buf: [u8; ServerError::LEN],
        got: usize,
    },
}

pub struct Client {
    cfg: ClientConfig,
    reporter: Reporter,
    ctrl: Option<SocketHandle>,
    out: Outbox,
    rx: CtrlRx,
    phase: Phase,
    cookie: Cookie,
    data_spec_send: SocketSpec,
    data_spec_recv: SocketSpec,
    /// The test cannot run here (e.g. its buffers do not fit); reported at the first poll.
    setup_error: Option<String>,
    /// Data streams connected before the test starts.
    streams: Vec<DataStream>,
    /// A data stream whose connect is in progress, and since when.
    connecting: Option<(SocketHandle, usize)>,
    connecting_since: Instant,
    /// UDP tests: the buffers of each stream's socket.
    udp_spec: Option<UdpSpec>,
    creating: bool,
    run: Option<TestRun>,
    next_port: u16,
    started: Instant,
    last_progress: Instant,
    /// When data last arrived on a receiving stream (for `--rcv-timeout`).
    last_received: Instant,
    server_results: Option<TestResults>,
    outcome: Option<Result<(), String>>,
    /// (iperf3 stream id, local, remote) of each connected data stream.
    stream_endpoints: Vec<(i64, IpEndpoint, IpEndpoint)>,
    /// The test ended and the platform has not been told yet.
    ended: Option<EndedTest>,
}

impl Client {
    pub fn new(cfg: ClientConfig, now: Instant, machine: &mut dyn Machine) -> Self {
        let mut random = [0u8; COOKIE_LEN - 1 + 2];
        machine.fill_random(&mut random);
        let mut cookie_bytes = [0u8; COOKIE_LEN - 1];
        cookie_bytes.copy_from_slice(&random[..COOKIE_LEN - 1]);
        let port_seed = u16::from_le_bytes([random[36], random[37]]);
        let p = &cfg.params;
        let total = p.total_streams();
        let (budget, cc) = (cfg.buffer_budget, cfg.congestion);
        let udp_spec = (p.protocol == Protocol::Udp)
            .then(|| UdpSpec::for_streams(p.stream_rate(), p.len as usize, 1, budget / total.max(1) as usize));
        let (send_spec, recv_spec) = if udp_spec.is_some() {
            (Ok(SocketSpec::control()), Ok(SocketSpec::control()))
        } else {
            (
                data_socket_spec(true, false, p.window, total, cc, p.nodelay, budget),
                data_socket_spec(false, true, p.window, total, cc, p.nodelay, budget),
            )
        };
        let udp_error = udp_spec.as_ref().and_then(|r| r.as_ref().err().cloned());
        let mut reporter = Reporter::new(cfg.report.clone());
        reporter.connecting(&cfg.server_name, cfg.port);
        Client {
            // Each stream carries data one way only, so only that direction gets a big buffer.
            data_spec_send: send_spec.clone().unwrap_or(SocketSpec::control()),
            data_spec_recv: recv_spec.clone().unwrap_or(SocketSpec::control()),
            setup_error: send_spec.and(recv_spec).err().or(udp_error),
            udp_spec: udp_spec.and_then(Result::ok),
            connecting_since: now,
            reporter,
            ctrl: None,
            out: Outbox::default(),
            rx: CtrlRx::State,
            phase: Phase::Connecting,
            cookie: Cookie::from_random(&cookie_bytes),
            streams: Vec::new(),
            connecting: None,
            creating: false,
            run: None,
            next_port: 49152 + port_seed % 16000,
            started: now,
            last_progress: now,
            last_received: now,
            server_results: None,
            outcome: None,
            stream_endpoints: Vec::new(),
            ended: None,
            cfg,
        }
    }

    /// `Some(Ok)` once the test completed (or was interrupted by a signal, which iperf3 3.19+
    /// treats as a clean end), `Some(Err(message))` once it failed.
    pub fn outcome(&self) -> Option<&Result<(), String>> {
        self.outcome.as_ref()
    }

    /// When a timed test ends: `-t` seconds of measurement after the omit period.
    fn time_limit(&self) -> Option<Instant> {
        let run = self.run.as_ref()?;
        let p = &self.cfg.params;
        if p.time == 0 || p.send_limit().is_some() {
            return None;
        }
        run.meas.time_limit(p.time)
    }

    fn alloc_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p == u16::MAX { 49152 } else { p + 1 };
        p
    }

    fn step(&mut self, now: Instant, io: &mut RoleIo<'_>) -> Result<bool, String> {
        let mut progress = false;
        if let Some(e) = self.setup_error.take() {
            return Err(e);
        }
        let ctrl = match self.ctrl {
            Some(h) => h,
            None => {
                let mut s = tcp_socket(&SocketSpec::control());
                let local = self.alloc_port();
                s.connect(io.iface.context(), IpEndpoint::new(self.cfg.server, self.cfg.port), local)
                    .map_err(|e| format!("unable to connect to server: {e}"))?;
                let h = io.sockets.add(s);
                self.ctrl = Some(h);
                self.started = now;
                self.last_progress = now;
                h
            }
        };

        if let Phase::Connecting = self.phase {
            let sock = io.sockets.get_mut::<tcp::Socket>(ctrl);
            match sock.state() {
                tcp::State::Established => {
                    self.out.push(self.cookie.as_bytes());
                    self.phase = Phase::Control;
                    self.last_progress = now;
                    progress = true;
                }
                tcp::State::Closed => return Err("unable to connect to server: Connection refused".into()),
                _ if now - self.started > self.cfg.connect_timeout => {
                    return Err("unable to connect to server: Connection timed out".into());
                }
                _ => return Ok(false),
            }
        }

        if self.creating {
            progress |= self.create_streams(now, io.iface, io.sockets)?;
        }
        if let Some(run) = self.run.as_mut()
            && matches!(self.phase, Phase::Running | Phase::Ending)
        {
            let sending = matches!(self.phase, Phase::Running);
            let received_before = run.meas.received();
            if run.pump(io.sockets, self.cfg.params.bandwidth, now, sending, io.clock, io.tcp_info) > 0 {
                self.last_progress = now;
                progress = true;
            }
            if run.meas.received() != received_before {
                self.last_received = now;
            }
        }

        // Control input.
        let mut buf = [0u8; 4096];
        loop {
            let sock = io.sockets.get_mut::<tcp::Socket>(ctrl);
            let n = read_some(sock, &mut buf);
            if n == 0 {
                if !sock.may_recv() {
                    // 3.12-3.18 servers close after i_errno alone.
                    if let CtrlRx::ServerError { buf, got } = &self.rx
                        && let Some(e) = ServerError::parse(&buf[..*got])
                    {
                        return Err(e.to_string());
                    }
                    return Err(ErrorCode::CTRL_CLOSE.message().into());
                }
                break;
            }
            progress = true;
            self.last_progress = now;
            self.control_input(now, &buf[..n], io)?;
            if self.outcome.is_some() {
                return Ok(true);
            }
        }
        if !self.out.flush(io.sockets.get_mut::<tcp::Socket>(ctrl)) {
            return Err(ErrorCode::CTRL_WRITE.message().into());
        }

        if let (Phase::Running, Some(run)) = (&self.phase, self.run.as_mut()) {
            if let Some(rep) = run.meas.poll_timers(now, io.tcp_info) {
                self.reporter.interval(rep);
            }
            if self.end_condition(now, io.sockets) {
                self.send_test_end(now, io.tcp_info);
                progress = true;
            }
            self.check_timeouts(now, io.sockets)?;
        }
        if now - self.last_progress > self.cfg.stall_timeout {
            return Err(format!("the server did not respond for {} s", self.cfg.stall_timeout.secs()));
        }
        Ok(progress)
    }

    fn control_input(&mut self, now: Instant, mut input: &[u8], io: &mut RoleIo<'_>) -> Result<(), String> {
        while !input.is_empty() {
            match &mut self.rx {
                CtrlRx::ServerResults(reader) => {
                    let (used, done) = reader.feed(input);
                    input = &input[used..];
                    if let Some(body) = done {
                        let body = body.map_err(|e| format!("unable to receive results: {e}"))?;
                        let r = TestResults::parse(&body).map_err(|e| format!("unable to receive results: {e}"))?;
                        self.server_results = Some(r);
                        self.rx = CtrlRx::State;
                    }
                }
                CtrlRx::ServerError { buf, got } => {
                    let n = (buf.len() - *got).min(input.len());
                    buf[*got..*got + n].copy_from_slice(&input[..n]);
                    *got += n;
                    input = &input[n..];
                    if *got == buf.len()
                        && let Some(e) = ServerError::parse(buf)
                    {
                        return Err(e.to_string());
                    }
                }
                CtrlRx::State => {
                    let byte = input[0];
                    input = &input[1..];
                    self.state_byte(now, byte, io)?;
                    if self.outcome.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn state_byte(&mut self, now: Instant, byte: u8, io: &mut RoleIo<'_>) -> Result<(), String> {
        let state = ControlState::from_byte(byte)
            .ok_or_else(|| format!("{} (byte {byte:#04x})", ErrorCode::MESSAGE.message()))?;
        log::debug!("client: control state {state:?} in phase {:?}", self.phase);
        match state {
            ControlState::ParamExchange => {
                let json = self.cfg.params.to_json();
                self.out.push(&encode_frame(json.as_bytes()));
            }
            ControlState::CreateStreams => self.creating = true,
            ControlState::TestStart => {
                if self.streams.len() != self.cfg.params.total_streams() as usize {
                    return Err("the server started the test before all streams were connected".into());
                }
                self.start_measuring(now, io.machine);
            }
            ControlState::TestRunning => {
                if self.run.is_none() {
                    self.start_measuring(now, io.machine);
                }
                self.phase = Phase::Running;
            }
            ControlState::ExchangeResults => self.send_results(now, io.machine),
            ControlState::DisplayResults => self.display_results(io.sockets)?,
            ControlState::AccessDenied => return Err(ErrorCode::ACCESS_DENIED.message().into()),
            ControlState::ServerError => self.rx = CtrlRx::ServerError { buf: [0; ServerError::LEN], got: 0 },
            ControlState::ServerTerminate => {
                // As iperf3: show what we measured, then the error; answer IPERF_DONE, which
                // must leave before the connection closes.
                self.partial_report(now, io);
                self.out.push(&[ControlState::IperfDone.to_byte()]);
                self.end_with_error(ErrorCode::SERVER_TERM.message(), io.sockets, true);
            }
            other => return Err(format!("{} ({other:?})", ErrorCode::MESSAGE.message())),
        }
        Ok(())
    }

    /// Data streams are opened one at a time, each fully connected and carrying the cookie
    /// before the next: the server numbers streams in accept order.
    fn create_streams(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
    ) -> Result<bool, String> {
        if let Some(spec) = self.udp_spec {
            return self.create_udp_streams(now, iface, sockets, spec);
        }
        let p = &self.cfg.params;
        let total = p.total_streams() as usize;
        if let Some((h, index)) = self.connecting {
            let sock = sockets.get_mut::<tcp::Socket>(h);
            match sock.state() {
                tcp::State::Established => {
                    if sock.send_slice(self.cookie.as_bytes()) != Ok(COOKIE_LEN) {
                        return Err(ErrorCode::STREAM_CONNECT.message().into());
                    }
                    if let Some(ms) = self.cfg.snd_timeout_ms {
                        sock.set_timeout(Some(Duration::from_millis(ms as u64)));
                    }
                    let mut stream = DataStream::new(h, index, p.client_sends(index));
                    if let (Some(l), Some(r)) = (sock.local_endpoint(), sock.remote_endpoint()) {
                        stream = stream.with_endpoints(l, r);
                        self.stream_endpoints.push((stream.id, l, r));
                        self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, l, r));
                    }
                    self.streams.push(stream);
                    self.connecting = None;
                    self.last_progress = now;
                }
                tcp::State::Closed => {
                    return Err(format!("{}: connection refused", ErrorCode::STREAM_CONNECT.message()));
                }
                _ => return Ok(false),
            }
        }
        if self.streams.len() == total {
            self.creating = false;
            return Ok(true);
        }
        let index = self.streams.len();
        let spec = if p.client_sends(index) { self.data_spec_send } else { self.data_spec_recv };
        let mut s = try_tcp_socket(&spec).map_err(|e| format!("{}: {e}", ErrorCode::CREATE_STREAM.message()))?;
        // --cport: stream i binds PORT + i (the receive half of --bidir follows the send half).
        let local = match self.cfg.cport {
            Some(base) => base + index as u16,
            None => self.alloc_port(),
        };
        s.connect(iface.context(), IpEndpoint::new(self.cfg.server, self.cfg.port), local)
            .map_err(|e| format!("{}: {e}", ErrorCode::STREAM_CONNECT.message()))?;
        self.connecting = Some((sockets.add(s), index));
        Ok(true)
    }

    /// UDP streams, one after another as iperf3 opens them: a socket on the stream's port
    /// sends "9876" to the server's port and waits for "6789" (or the legacy answer). With
    /// `-R` a server may already send data before its answer; that is skipped. No answer in
    /// [`UDP_SETUP_TIMEOUT`] ends the test.
    fn create_udp_streams(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        spec: UdpSpec,
    ) -> Result<bool, String> {
        let p = &self.cfg.params;
        let total = p.total_streams() as usize;
        let server = IpEndpoint::new(self.cfg.server, self.cfg.port);
        if let Some((h, index)) = self.connecting {
            let sock = sockets.get_mut::<udp::Socket>(h);
            let mut answered = false;
            while let Ok((data, meta)) = sock.recv() {
                if meta.endpoint == server && (data == CONNECT_REPLY || data == LEGACY_CONNECT_REPLY) {
                    answered = true;
                    break;
                }
            }
            if !answered {
                if now - self.connecting_since > UDP_SETUP_TIMEOUT {
                    return Err(format!(
                        "{}: the server did not answer the UDP stream set-up in {} s",
                        ErrorCode::STREAM_READ.message(),
                        UDP_SETUP_TIMEOUT.secs()
                    ));
                }
                return Ok(false);
            }
            let sends = p.client_sends(index);
            let udp = UdpStream::new(server, p.len as usize, p.udp_counters_64bit, p.stream_rate());
            let mut stream = DataStream::new_udp(h, index, sends, udp);
            if let Some(ip) = iface.ipv4_addr() {
                let local = IpEndpoint::new(ip.into(), sock.endpoint().port);
                stream = stream.with_endpoints(local, server);
                self.stream_endpoints.push((stream.id, local, server));
                self.reporter.stream_connected(ConnectedStream::new(stream.socket_no, local, server));
            }
            self.streams.push(stream);
            self.connecting = None;
            self.last_progress = now;
        }
        if self.streams.len() == total {
            self.creating = false;
            return Ok(true);
        }
        let index = self.streams.len();
        let local = match self.cfg.cport {
            Some(base) => base + index as u16,
            None => self.alloc_port(),
        };
        let mut sock = try_udp_socket(&spec).map_err(|e| format!("{}: {e}", ErrorCode::CREATE_STREAM.message()))?;
        sock.bind(local).map_err(|e| format!("{}: {e}", ErrorCode::STREAM_CONNECT.message()))?;
        sock.send_slice(&CONNECT_MSG, server).map_err(|e| format!("{}: {e}", ErrorCode::STREAM_WRITE.message()))?;
        self.connecting = Some((sockets.add(sock), index));
        self.connecting_since = now;
        Ok(true)
    }

    fn start_measuring(&mut self, now: Instant, machine: &mut dyn Machine) {
        let p = &self.cfg.params;
        let streams = core::mem::take(&mut self.streams);
        let cc = self.cfg.congestion;
        let run = TestRun::start(streams, now, p, self.cfg.interval, self.data_spec_recv.rx, cc, machine);
        self.run = Some(run);
        self.last_received = now;
        let spec = if p.client_sends_any() { self.data_spec_send } else { self.data_spec_recv };
        self.reporter.test_start(TestStartInfo {
            version: self.cfg.version.clone(),
            system_info: machine.system_info(),
            timestamp_ms: machine.unix_time_ms(),
            interval: self.cfg.interval,
            peer_host: self.cfg.server_name.clone(),
            peer_port: self.cfg.port,
            cookie: self.cookie.to_text(),
            ..TestStartInfo::for_test(p, &spec, cc, self.cfg.mss)
        });
    }

    /// `--rcv-timeout`: no data on the receiving streams for that long ends the test;
    /// `--snd-timeout`: smoltcp resets a sending stream whose data stays unacknowledged.
    fn check_timeouts(&self, now: Instant, sockets: &SocketSet<'static>) -> Result<(), String> {
        let Some(run) = &self.run else { return Ok(()) };
        if let Some(ms) = self.cfg.rcv_timeout_ms
            && run.meas.streams.iter().any(|s| !s.sends)
            && now - self.last_received >= Duration::from_millis(ms as u64)
        {
            return Err(format!("{} ({ms} ms)", ErrorCode::NO_MSG.message()));
        }
        for s in run.meas.streams.iter().filter(|s| s.sends && s.udp.is_none()) {
            if sockets.get::<tcp::Socket>(s.handle).state() == tcp::State::Closed {
                return Err(format!("{}: the server acknowledged nothing in time", ErrorCode::STREAM_WRITE.message()));
            }
        }
        Ok(())
    }

    /// iperf3's end test: past the omit period, `-t` has run out, or `-n`/`-k` is done. A
    /// count is done in a direction once its sender has written exactly that many bytes and
    /// the peer has acknowledged them all (so the receiver counts every one), and on receive
    /// once that many arrived; with `--bidir` both directions must be done, so both ends of
    /// both directions report the exact count.
    fn end_condition(&self, now: Instant, sockets: &SocketSet<'static>) -> bool {
        let Some(run) = &self.run else { return false };
        let m = &run.meas;
        if m.omitting(now) {
            return false;
        }
        if let Some(limit) = self.time_limit() {
            return now >= limit;
        }
        let Some(limit) = m.send_limit() else { return false };
        let we_send = m.streams.iter().any(|s| s.sends);
        let we_receive = m.streams.iter().any(|s| !s.sends);
        let sent_done = !we_send || (m.send_complete() && m.all_acked(sockets));
        let received_done = !we_receive || m.receive_complete(limit);
        sent_done && received_done
    }

    fn send_test_end(&mut self, now: Instant, info: &dyn TcpInfoSource) {
        if let Some(rep) = self.run.as_mut().and_then(|r| r.end(now, info)) {
            self.reporter.interval(rep);
        }
        self.out.push(&[ControlState::TestEnd.to_byte()]);
        self.phase = Phase::Ending;
    }

    fn send_results(&mut self, now: Instant, machine: &mut dyn Machine) {
        let Some(run) = self.run.as_mut() else { return };
        let results = run.results(now, machine);
        self.out.push(&encode_frame(results.to_json().as_bytes()));
        self.rx = CtrlRx::ServerResults(FrameReader::new(MAX_RESULTS_LEN));
        self.phase = Phase::Done;
    }

    fn display_results(&mut self, sockets: &mut SocketSet<'static>) -> Result<(), String> {
        let remote = self
            .server_results
            .take()
            .ok_or_else(|| String::from("the server asked to display results before sending them"))?;
        let Some(run) = &self.run else { return Err("results before the test ran".into()) };
        let summary = run.summary(&remote).map_err(|(code, id)| format!("{} ({id})", code.message()))?;
        for note in run.udp_notes(self.cfg.params.stream_rate()) {
            self.reporter.warning(&note);
        }
        self.reporter.test_end(summary);
        if remote.server_output_text.is_some() || remote.server_output_json.is_some() {
            self.reporter.server_output(remote.server_output_text, remote.server_output_json);
        }
        self.reporter.finish();
        self.out.push(&[ControlState::IperfDone.to_byte()]);
        self.finish_sockets(sockets, true);
        self.set_outcome(Ok(()));
        Ok(())
    }

    /// The test is cut short (a signal here, SERVER_TERMINATE from the peer): the final
    /// partial interval and a summary of what this side measured, the peer's half as zero,
    /// as iperf3 prints them. Nothing if no data stream ever ran.
    fn partial_report(&mut self, now: Instant, io: &mut RoleIo<'_>) {
        let Some(run) = self.run.as_mut() else { return };
        let (rep, summary) = run.partial(now, io.machine, io.tcp_info);
        if let Some(rep) = rep {
            self.reporter.interval(rep);
        }
        self.reporter.test_end(summary);
    }

    fn finish_sockets(&mut self, sockets: &mut SocketSet<'static>, graceful: bool) {
        if let Some(ctrl) = self.ctrl {
            let sock = sockets.get_mut::<tcp::Socket>(ctrl);
            self.out.flush(sock);
            if graceful { sock.close() } else { sock.abort() }
        }
        let mut handles: Vec<SocketHandle> = self.streams.iter().map(|s| s.handle).collect();
        if let Some(run) = &self.run {
            handles.extend(run.meas.streams.iter().map(|s| s.handle));
        }
        if let Some((h, _)) = self.connecting {
            handles.push(h);
        }
        for h in handles {
            // UDP sockets have nothing to reset: they stop listening.
            match sockets.get_mut::<netstack::smoltcp::socket::Socket>(h) {
                netstack::smoltcp::socket::Socket::Tcp(t) => t.abort(),
                netstack::smoltcp::socket::Socket::Udp(u) => u.close(),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
    }

    fn set_outcome(&mut self, outcome: Result<(), String>) {
        self.outcome = Some(outcome);
        self.ended = Some(EndedTest { number: 1, streams: self.stream_endpoints.clone() });
    }

    /// Reports `msg` as the error the test ended with; the control connection closes
    /// (`graceful`, after what is queued) or is reset.
    fn end_with_error(&mut self, msg: &str, sockets: &mut SocketSet<'static>, graceful: bool) {
        self.reporter.error(msg);
        self.reporter.finish();
        self.finish_sockets(sockets, graceful);
        self.set_outcome(Err(msg.to_string()));
    }
}

impl Role for Client {
    fn poll(&mut self, now: Instant, io: &mut RoleIo<'_>) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        match self.step(now, io) {
            Ok(progress) => progress,
            Err(msg) => {
                self.end_with_error(&msg, io.sockets, false);
                true
            }
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        // The streams are up and TEST_START is due: keep polling rather than sleep. The test's
        // clocks start when it is read, and a loop that sleeps wakes up late (about a
        // millisecond on a busy host), which would start ours after the server's and let a
        // receiver count, with -O, data this side omitted.
        let total = self.cfg.params.total_streams() as usize;
        if self.run.is_none() && !self.creating && total > 0 && self.streams.len() == total {
            return Some(self.last_progress);
        }
        self.next_timer()
    }

    /// While `poll_at` asks to be polled continuously only TEST_START arriving can move the
    /// client, or these timers.
    fn next_timer(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let mut at = self.last_progress + self.cfg.stall_timeout;
        if let Some(m) = self.run.as_ref().and_then(|r| r.meas.poll_at()) {
            at = at.min(m);
        }
        if let (Phase::Running, Some(t)) = (&self.phase, self.run.as_ref().and_then(|r| r.meas.next_send_at())) {
            at = at.min(t);
        }
        if let (Phase::Running, Some(ms)) = (&self.phase, self.cfg.rcv_timeout_ms) {
            at = at.min(self.last_received + Duration::from_millis(ms as u64));
        }
        if let Some(end) = self.time_limit() {
            at = at.min(end);
        }
        if matches!(self.phase, Phase::Connecting) {
            at = at.min(self.started + self.cfg.connect_timeout);
        }
        Some(at)
    }

    fn take_output(&mut self) -> String {
        self.reporter.take_output()
    }

    /// Report what was measured, tell the server CLIENT_TERMINATE, reset the data streams and
    /// close. iperf3 3.19+ then says `interrupt - the client has terminated by signal …` and
    /// exits 0, and so do we.
    fn interrupt(&mut self, now: Instant, io: &mut RoleIo<'_>, signal: &str) {
        if self.outcome.is_some() {
            return;
        }
        self.partial_report(now, io);
        if !matches!(self.phase, Phase::Connecting) {
            self.out.push(&[ControlState::ClientTerminate.to_byte()]);
        }
        let msg = format!("interrupt - {} by signal {signal}", ErrorCode::CLIENT_TERM.message());
        self.reporter.ended(&msg);
        self.reporter.finish();
        self.finish_sockets(io.sockets, true);
        self.set_outcome(Ok(()));
    }

    fn done(&self) -> bool {
        self.outcome.is_some()
    }

    /// True while control bytes (IPERF_DONE, FIN) still need to leave, so the server sees a
    /// clean end.
    fn flushing(&self, sockets: &SocketSet<'static>) -> bool {
        match self.ctrl {
            Some(h) => {
                let s = sockets.get::<tcp::Socket>(h);
                !self.out.is_empty()
                    || (s.send_queue() > 0 && s.may_send())
                    || matches!(s.state(), tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck)
            }
            None => false,
        }
    }

    fn take_ended_test(&mut self) -> Option<EndedTest> {
        self.ended.take()
    }

    fn status(&self) -> Result<(), &str> {
        match &self.outcome {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}
