//! The iperf3 client role as a sans-IO state machine over smoltcp sockets: connect, send the
//! cookie and parameters, open the data streams one after another, move data until the end
//! condition, exchange results and report. The platform polls the interface, then calls
//! [`Client::poll`] until [`Client::outcome`] is known.
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
    COOKIE_LEN, ControlState, Cookie, ErrorCode, FrameReader, MAX_RESULTS_LEN, TestParams, TestResults, encode_frame,
};
use netstack::report::{ConnectedStream, CpuUtil, ReportConfig, Reporter, TestEndInfo, TestStartInfo};
use netstack::smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use netstack::smoltcp::phy::Device;
use netstack::smoltcp::socket::tcp;
use netstack::smoltcp::time::{Duration, Instant};
use netstack::smoltcp::wire::{IpAddress, IpEndpoint};
use netstack::stack::{Congestion, SocketSpec, data_socket_spec, poll_interleaved, tcp_socket};
use netstack::stream::{DataStream, MeasureConfig, Measurement, Payload, sender_has_retransmits};
use netstack::tcpinfo::TcpInfoSource;

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
}

impl ClientConfig {
    /// `server` is the parsed `-c` address; the options supply the rest.
    pub fn from_options(o: &netstack::options::Options, server: IpAddress, mss: u32, version: &str) -> Self {
        let server_name = match &o.mode {
            Some(netstack::options::Mode::Client(h)) => h.clone(),
            _ => server.to_string(),
        };
        ClientConfig {
            server,
            server_name,
            port: o.port,
            params: o.to_params(),
            interval: o.output.interval,
            report: o.report_config(netstack::report::Side::Client),
            connect_timeout: Duration::from_millis(o.test.connect_timeout_ms.unwrap_or(10_000) as u64),
            stall_timeout: Duration::from_secs(30),
            congestion: o.congestion(),
            mss,
            version: version.into(),
            buffer_budget: netstack::stack::DATA_BUF_BUDGET,
            cport: o.test.cport,
        }
    }
}

/// Runs the test to its end and returns the outcome: the platform's main loop for the
/// client role. Keeps polling briefly after the outcome so IPERF_DONE and FIN leave.
pub fn run<D: Device>(
    cl: &mut Client,
    iface: &mut Interface,
    dev: &mut FlowProbe<D>,
    sockets: &mut SocketSet<'static>,
    host: &mut dyn Host,
    platform: &mut dyn Platform,
) -> Result<(), String> {
    let mut idle = IdleWait::default();
    let mut done_at: Option<Instant> = None;
    loop {
        let now = platform.now();
        if let Some(signal) = platform.interrupted() {
            cl.interrupt(now, sockets, host, dev.tracker(), signal);
        }
        let mut progress = poll_interleaved(iface, dev, sockets, || platform.now()) != PollResult::None;
        progress |= cl.poll(now, iface, sockets, host, dev.tracker());
        let out = cl.take_output();
        if !out.is_empty() {
            platform.output(&out);
        }
        if let Some(outcome) = cl.outcome() {
            let t = *done_at.get_or_insert(now);
            if !cl.flushing(sockets) || now - t > Duration::from_millis(500) {
                let outcome = outcome.clone();
                let now = platform.now();
                iface.poll(now, dev, sockets);
                return outcome;
            }
        }
        if progress {
            idle.busy(now);
        } else {
            let mut delay = next_delay(iface.poll_delay(now, sockets), cl.poll_at(), now);
            if done_at.is_some() {
                delay = Some(Duration::from_millis(5));
            }
            idle.wait(platform, now, delay);
        }
    }
}

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
    ServerError { buf: [u8; 8], got: usize },
}

pub struct Client {
    cfg: ClientConfig,
    reporter: Reporter,
    ctrl: Option<SocketHandle>,
    out: Outbox,
    rx: CtrlRx,
    phase: Phase,
    cookie: Cookie,
    congestion: Congestion,
    data_spec_send: SocketSpec,
    data_spec_recv: SocketSpec,
    /// The test cannot run here (e.g. its buffers do not fit); reported at the first poll.
    setup_error: Option<String>,
    streams: Vec<DataStream>,
    /// A data stream whose connect is in progress.
    connecting: Option<(SocketHandle, usize)>,
    creating: bool,
    meas: Option<Measurement>,
    payload: Option<Payload>,
    next_port: u16,
    started: Instant,
    last_progress: Instant,
    end_secs: f64,
    cpu_start: CpuTimes,
    /// Our user and system CPU percentages, as sent in our results.
    local_cpu: (f64, f64),
    server_results: Option<TestResults>,
    outcome: Option<Result<(), String>>,
    interrupted: bool,
    /// (iperf3 stream id, local, remote) of each connected data stream.
    stream_endpoints: Vec<(i64, IpEndpoint, IpEndpoint)>,
}

impl Client {
    pub fn new(cfg: ClientConfig, now: Instant, host: &mut dyn Host) -> Self {
        let mut random = [0u8; COOKIE_LEN - 1 + 2];
        host.fill_random(&mut random);
        let mut cookie_bytes = [0u8; COOKIE_LEN - 1];
        cookie_bytes.copy_from_slice(&random[..COOKIE_LEN - 1]);
        let port_seed = u16::from_le_bytes([random[36], random[37]]);
        // `-C` (already checked by the options) or the build's default.
        let congestion = cfg.congestion;
        let p = &cfg.params;
        let total = p.total_streams();
        let budget = cfg.buffer_budget;
        let send_spec = data_socket_spec(true, false, p.window, total, congestion, p.nodelay, budget);
        let recv_spec = data_socket_spec(false, true, p.window, total, congestion, p.nodelay, budget);
        let mut reporter = Reporter::new(cfg.report.clone());
        reporter.connecting(&cfg.server_name, cfg.port);
        Client {
            // Each stream carries data one way only, so only that direction gets a big buffer.
            data_spec_send: send_spec.clone().unwrap_or(SocketSpec::control()),
            data_spec_recv: recv_spec.clone().unwrap_or(SocketSpec::control()),
            setup_error: send_spec.and(recv_spec).err(),
            reporter,
            ctrl: None,
            out: Outbox::default(),
            rx: CtrlRx::State,
            phase: Phase::Connecting,
            cookie: Cookie::from_random(&cookie_bytes),
            congestion,
            streams: Vec::new(),
            connecting: None,
            creating: false,
            meas: None,
            payload: None,
            next_port: 49152 + port_seed % 16000,
            started: now,
            last_progress: now,
            end_secs: 0.0,
            cpu_start: host.cpu_times(),
            local_cpu: (0.0, 0.0),
            server_results: None,
            outcome: None,
            interrupted: false,
            stream_endpoints: Vec::new(),
            cfg,
        }
    }

    /// `Some(Ok)` once the test completed, `Some(Err(message))` once it failed.
    pub fn outcome(&self) -> Option<&Result<(), String>> {
        self.outcome.as_ref()
    }

    pub fn take_output(&mut self) -> String {
        self.reporter.take_output()
    }

    /// (iperf3 stream id, local endpoint, remote endpoint) of each data stream connected so
    /// far: for labelling flow logs.
    pub fn stream_endpoints(&self) -> &[(i64, IpEndpoint, IpEndpoint)] {
        &self.stream_endpoints
    }

    pub fn poll_at(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        // The streams are up and TEST_START is due: keep polling rather than sleep. The test's
        // clocks start when it is read, and a loop that sleeps wakes up late (about a
        // millisecond on a busy host), which would start ours after the server's and let a
        // receiver count, with -O, data this side omitted.
        let total = self.cfg.params.total_streams() as usize;
        if self.meas.is_none() && !self.creating && total > 0 && self.streams.len() == total {
            return Some(self.last_progress);
        }
        let mut at = self.last_progress + self.cfg.stall_timeout;
        if let Some(m) = self.meas.as_ref().and_then(|m| m.poll_at()) {
            at = at.min(m);
        }
        if let Some(end) = self.time_limit() {
            at = at.min(end);
        }
        Some(at)
    }

    /// When a timed test ends: `-t` seconds of measurement after the omit period.
    fn time_limit(&self) -> Option<Instant> {
        let m = self.meas.as_ref()?;
        let p = &self.cfg.params;
        if p.time == 0 || p.send_limit().is_some() {
            return None;
        }
        m.time_limit(p.time)
    }

    fn alloc_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p == u16::MAX { 49152 } else { p + 1 };
        p
    }

    pub fn poll(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        match self.step(now, iface, sockets, host, info) {
            Ok(progress) => progress,
            Err(msg) => {
                self.fail(&msg, sockets);
                true
            }
        }
    }

    fn step(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> Result<bool, String> {
        let mut progress = false;
        if let Some(e) = self.setup_error.take() {
            return Err(e);
        }
        if self.ctrl.is_none() {
            let mut s = tcp_socket(&SocketSpec::control());
            let local = self.alloc_port();
            s.connect(iface.context(), IpEndpoint::new(self.cfg.server, self.cfg.port), local)
                .map_err(|e| format!("unable to connect to server: {e}"))?;
            self.ctrl = Some(sockets.add(s));
            self.started = now;
            self.last_progress = now;
        }
        let ctrl = self.ctrl.unwrap_or_else(|| unreachable!());

        if let Phase::Connecting = self.phase {
            let sock = sockets.get_mut::<tcp::Socket>(ctrl);
            match sock.state() {
                tcp::State::Established => {
                    self.out.push(self.cookie.as_bytes());
                    self.phase = Phase::Control;
                    self.last_progress = now;
                    self.cpu_start = host.cpu_times();
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
            progress |= self.create_streams(now, iface, sockets)?;
        }
        if matches!(self.phase, Phase::Running | Phase::Ending) {
            progress |= self.move_data(now, sockets);
        }

        // Control input.
        let mut buf = [0u8; 4096];
        loop {
            let sock = sockets.get_mut::<tcp::Socket>(ctrl);
            let n = read_some(sock, &mut buf);
            if n == 0 {
                if !sock.may_recv() {
                    if let CtrlRx::ServerError { buf, got } = &self.rx
                        && *got >= 4
                    {
                        return Err(server_error_message(buf));
                    }
                    return Err(ErrorCode::CTRL_CLOSE.message().into());
                }
                break;
            }
            progress = true;
            self.last_progress = now;
            self.control_input(now, &buf[..n], sockets, host, info)?;
            if self.outcome.is_some() {
                return Ok(true);
            }
        }
        let sock = sockets.get_mut::<tcp::Socket>(ctrl);
        if !self.out.flush(sock) {
            return Err(ErrorCode::CTRL_WRITE.message().into());
        }

        if let Phase::Running = self.phase {
            if let Some(m) = self.meas.as_mut()
                && let Some(rep) = m.poll_timers(now, info)
            {
                self.reporter.interval(rep);
            }
            if self.end_condition(now, sockets) {
                self.send_test_end(now, info);
                progress = true;
            }
        }
        if now - self.last_progress > self.cfg.stall_timeout {
            return Err(format!("the server did not respond for {} s", self.cfg.stall_timeout.secs()));
        }
        Ok(progress)
    }

    fn control_input(
        &mut self,
        now: Instant,
        mut input: &[u8],
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> Result<(), String> {
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
                    let n = (8 - *got).min(input.len());
                    buf[*got..*got + n].copy_from_slice(&input[..n]);
                    *got += n;
                    input = &input[n..];
                    if *got == 8 {
                        return Err(server_error_message(buf));
                    }
                }
                CtrlRx::State => {
                    let byte = input[0];
                    input = &input[1..];
                    self.state_byte(now, byte, sockets, host, info)?;
                    if self.outcome.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn state_byte(
        &mut self,
        now: Instant,
        byte: u8,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
    ) -> Result<(), String> {
        let state = ControlState::from_byte(byte)
            .ok_or_else(|| format!("{} (byte {byte:#04x})", ErrorCode::MESSAGE.message()))?;
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
                self.start_measuring(now, host);
            }
            ControlState::TestRunning => {
                if self.meas.is_none() {
                    self.start_measuring(now, host);
                }
                self.phase = Phase::Running;
            }
            ControlState::ExchangeResults => self.send_results(now, host),
            ControlState::DisplayResults => self.display_results(sockets)?,
            ControlState::AccessDenied => return Err(ErrorCode::ACCESS_DENIED.message().into()),
            ControlState::ServerError => self.rx = CtrlRx::ServerError { buf: [0; 8], got: 0 },
            ControlState::ServerTerminate => {
                // As iperf3: show what we measured, then the error; answer IPERF_DONE.
                self.partial_report(now, host, info);
                self.out.push(&[ControlState::IperfDone.to_byte()]);
                return Err(ErrorCode::SERVER_TERM.message().into());
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
        let p = &self.cfg.params;
        let total = p.total_streams() as usize;
        if let Some((h, index)) = self.connecting {
            let sock = sockets.get_mut::<tcp::Socket>(h);
            match sock.state() {
                tcp::State::Established => {
                    if sock.send_slice(self.cookie.as_bytes()) != Ok(COOKIE_LEN) {
                        return Err(ErrorCode::STREAM_CONNECT.message().into());
                    }
                    let sends = p.client_sends(index);
                    let mut stream = DataStream::new(h, index, sends);
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
        let sends = p.client_sends(index);
        let spec = if sends { self.data_spec_send } else { self.data_spec_recv };
        let mut s = tcp_socket(&spec);
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

    fn start_measuring(&mut self, now: Instant, host: &mut dyn Host) {
        let p = &self.cfg.params;
        self.payload = Some(Payload::new(p.len as usize, p.repeating_payload, host));
        let streams = core::mem::take(&mut self.streams);
        let cfg = MeasureConfig {
            omit_secs: p.omit,
            interval_secs: self.cfg.interval,
            send_limit: p.send_limit(),
            rcv_buf: self.data_spec_recv.rx,
        };
        self.meas = Some(Measurement::new(streams, now, cfg));
        self.cpu_start = host.cpu_times();
        let spec = if !p.reverse || p.bidirectional { self.data_spec_send } else { self.data_spec_recv };
        self.reporter.test_start(TestStartInfo {
            version: self.cfg.version.clone(),
            system_info: host.system_info(),
            timestamp_ms: host.unix_time_ms(),
            interval: self.cfg.interval,
            peer_host: self.cfg.server_name.clone(),
            peer_port: self.cfg.port,
            cookie: self.cookie.to_text(),
            ..TestStartInfo::for_test(p, &spec, self.congestion, self.cfg.mss)
        });
    }

    fn move_data(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let (Some(m), Some(payload)) = (self.meas.as_mut(), self.payload.as_ref()) else { return false };
        let sending = matches!(self.phase, Phase::Running);
        let moved = m.pump(sockets, payload, self.cfg.params.bandwidth, now, sending);
        if moved > 0 {
            self.last_progress = now;
        }
        moved > 0
    }

    /// iperf3's end test: past the omit period, `-t` has run out, or `-n`/`-k` is done. A
    /// count is done in a direction once its sender has written exactly that many bytes and
    /// the peer has acknowledged them all (so the receiver counts every one), and on receive
    /// once that many arrived; with `--bidir` both directions must be done, so both ends of
    /// both directions report the exact count.
    fn end_condition(&self, now: Instant, sockets: &SocketSet<'static>) -> bool {
        let Some(m) = &self.meas else { return false };
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
        let received_done = !we_receive || m.received() >= limit;
        sent_done && received_done
    }

    fn send_test_end(&mut self, now: Instant, info: &dyn TcpInfoSource) {
        if let Some(m) = self.meas.as_mut() {
            if let Some(rep) = m.finish(now, info) {
                self.reporter.interval(rep);
            }
            self.end_secs = m.elapsed(now);
        }
        self.out.push(&[ControlState::TestEnd.to_byte()]);
        self.phase = Phase::Ending;
    }

    fn send_results(&mut self, now: Instant, host: &mut dyn Host) {
        let Some(m) = &self.meas else { return };
        let (user, system) = self.cpu_start.percent_until(host.cpu_times(), (now - m.started).total_micros());
        let results = TestResults {
            cpu_util_total: user + system,
            cpu_util_user: user,
            cpu_util_system: system,
            sender_has_retransmits: sender_has_retransmits(&m.streams),
            congestion_used: Some(self.congestion.name().to_string()),
            server_output_text: None,
            server_output_json: None,
            streams: m.streams.iter().map(|s| s.result(self.end_secs)).collect(),
        };
        self.local_cpu = (user, system);
        self.out.push(&encode_frame(results.to_json().as_bytes()));
        self.rx = CtrlRx::ServerResults(FrameReader::new(MAX_RESULTS_LEN));
        self.phase = Phase::Done;
    }

    fn display_results(&mut self, sockets: &mut SocketSet<'static>) -> Result<(), String> {
        let remote = self
            .server_results
            .take()
            .ok_or_else(|| String::from("the server asked to display results before sending them"))?;
        let Some(m) = &self.meas else { return Err("results before the test ran".into()) };
        let mut streams = Vec::with_capacity(m.streams.len());
        for s in &m.streams {
            streams.push(
                s.end_summary(self.end_secs, &remote.streams, remote.sender_has_retransmits == 1)
                    .map_err(|c| format!("{} ({})", c.message(), s.id))?,
            );
        }
        let we_send = m.streams.iter().any(|s| s.sends);
        let we_receive = m.streams.iter().any(|s| !s.sends);
        let ours = Some(self.congestion.name().to_string());
        let theirs = remote.congestion_used.clone();
        self.reporter.test_end(TestEndInfo {
            streams,
            cpu: CpuUtil {
                host_total: self.local_cpu.0 + self.local_cpu.1,
                host_user: self.local_cpu.0,
                host_system: self.local_cpu.1,
                remote_total: remote.cpu_util_total,
                remote_user: remote.cpu_util_user,
                remote_system: remote.cpu_util_system,
            },
            sender_tcp_congestion: if we_send { ours.clone() } else { theirs.clone() },
            receiver_tcp_congestion: if we_receive { ours } else { theirs },
        });
        if remote.server_output_text.is_some() || remote.server_output_json.is_some() {
            self.reporter.server_output(remote.server_output_text, remote.server_output_json);
        }
        self.reporter.finish();
        self.out.push(&[ControlState::IperfDone.to_byte()]);
        self.finish_sockets(sockets, true);
        self.outcome = Some(Ok(()));
        Ok(())
    }

    /// The test is cut short (a signal here, SERVER_TERMINATE from the peer): the final
    /// partial interval and a summary of what this side measured, the peer's half as zero,
    /// as iperf3 prints them. Nothing if no data stream ever ran.
    fn partial_report(&mut self, now: Instant, host: &mut dyn Host, info: &dyn TcpInfoSource) {
        let Some(m) = self.meas.as_mut() else { return };
        if matches!(self.phase, Phase::Running) {
            if let Some(rep) = m.finish(now, info) {
                self.reporter.interval(rep);
            }
            self.end_secs = m.elapsed(now);
        }
        let (user, system) = self.cpu_start.percent_until(host.cpu_times(), (now - m.started).total_micros());
        let streams = m.streams.iter().map(|s| s.partial_summary(self.end_secs)).collect();
        let ours = Some(self.congestion.name().to_string());
        self.reporter.test_end(TestEndInfo {
            streams,
            cpu: CpuUtil { host_total: user + system, host_user: user, host_system: system, ..CpuUtil::default() },
            sender_tcp_congestion: ours.clone(),
            receiver_tcp_congestion: ours,
        });
    }

    /// The platform caught `signal` (e.g. "Interrupt(2)"): report what was measured, tell the
    /// server CLIENT_TERMINATE, reset the data streams and close. The outcome is the iperf3
    /// 3.19+ one: `interrupt - the client has terminated by signal …`, a clean exit.
    pub fn interrupt(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        host: &mut dyn Host,
        info: &dyn TcpInfoSource,
        signal: &str,
    ) {
        if self.outcome.is_some() {
            return;
        }
        self.partial_report(now, host, info);
        if !matches!(self.phase, Phase::Connecting) {
            self.out.push(&[ControlState::ClientTerminate.to_byte()]);
        }
        let msg = format!("interrupt - {} by signal {signal}", ErrorCode::CLIENT_TERM.message());
        self.reporter.ended(&msg);
        self.reporter.finish();
        self.finish_sockets(sockets, true);
        self.interrupted = true;
        self.outcome = Some(Err(msg));
    }

    /// True when the test ended because the platform caught a signal (iperf3 3.19+ exits 0).
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    fn finish_sockets(&mut self, sockets: &mut SocketSet<'static>, graceful: bool) {
        if let Some(ctrl) = self.ctrl {
            let sock = sockets.get_mut::<tcp::Socket>(ctrl);
            self.out.flush(sock);
            if graceful { sock.close() } else { sock.abort() }
        }
        let mut handles: Vec<SocketHandle> = self.streams.iter().map(|s| s.handle).collect();
        if let Some(m) = &self.meas {
            handles.extend(m.streams.iter().map(|s| s.handle));
        }
        if let Some((h, _)) = self.connecting {
            handles.push(h);
        }
        for h in handles {
            sockets.get_mut::<tcp::Socket>(h).abort();
        }
    }

    fn fail(&mut self, msg: &str, sockets: &mut SocketSet<'static>) {
        self.reporter.error(msg);
        self.reporter.finish();
        self.finish_sockets(sockets, false);
        self.outcome = Some(Err(msg.to_string()));
    }

    /// True while control bytes (IPERF_DONE, FIN) still need to leave; the platform keeps
    /// polling the interface briefly after the outcome so the server sees a clean end.
    pub fn flushing(&self, sockets: &SocketSet<'static>) -> bool {
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
}

fn server_error_message(buf: &[u8; 8]) -> String {
    let code = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut m = format!("server error - {}", ErrorCode(code).message());
    if errno != 0 {
        m.push_str(&format!(" (errno {errno})"));
    }
    m
}
