//! Renders the report model as iperf3 3.12 text, `-J` JSON or `--json-stream` lines.
//!
//! Streams are reported in direction groups, the way iperf3's `iperf_print_intermediate` and
//! `iperf_print_results` walk them. Outside bidir mode there is one group (every stream). In
//! bidir mode the client reports the streams it sends first (`[TX-C]`), then those it receives
//! (`[RX-C]`); the server reports the streams it receives first (`[RX-S]`), then those it sends
//! (`[TX-S]`). On both sides the first group is the client-to-server direction and its sums
//! are named `sum` / `sum_sent` / `sum_received`; the second group is the server-to-client
//! ("reverse") direction, named `sum_bidir_reverse` / `sum_sent_bidir_reverse` /
//! `sum_received_bidir_reverse`. That keeps the names equal on both ends of one test.

use super::json::{Json, Obj};
use super::text::{self, Columns};
use super::time::rfc1123;
use super::*;
use crate::units::finite;
use alloc::format;
use alloc::string::ToString;
use serde_json::Value;

pub struct Reporter {
    cfg: ReportConfig,
    out: String,
    test: TestState,
}

/// Everything that belongs to one test; `finish()` starts a fresh one.
#[derive(Default)]
struct TestState {
    /// The client's target, for the "Reverse mode, remote host H is sending" line.
    peer_host: Option<String>,
    info: Option<TestStartInfo>,
    connected: Vec<ConnectedStream>,
    /// Text held back until `test_start`: iperf3 prints the reverse-mode and verbose
    /// connection lines before the `[  5] local … connected to …` lines, but those facts
    /// reach us only with `test_start`.
    held: String,
    intervals: Vec<Json>,
    end: Option<Json>,
    error: Option<String>,
    server_text: Option<String>,
    server_json: Option<Value>,
    end_reported: bool,
    header_shown: bool,
    /// Server: this test's text so far, for `--get-server-output`.
    text: String,
}

/// One direction group of an interval or end report.
struct Group<'a, T> {
    /// iperf3's `stream_must_be_sender`: this side sends on the group's streams.
    sender: bool,
    /// `[TX-C]` etc. in bidir mode, else empty.
    role: String,
    /// First group: `sum`; second: `sum_bidir_reverse`.
    reverse: bool,
    streams: Vec<&'a T>,
}

/// bytes * 8 / seconds, 0 when there is no time to divide by.
fn bits_per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 && seconds.is_finite() { bytes as f64 * 8.0 / seconds } else { 0.0 }
}

/// The receiver's own duration. iperf3 3.12 prints the *sender's* duration in
/// `receiver.seconds` but divides by the receiver's (`end - start`) for `bits_per_second`.
fn receiver_time(side: &EndSide) -> f64 {
    let d = finite(side.end) - finite(side.start);
    if d > 0.0 { d } else { finite(side.seconds) }
}

/// A sending stream's interval shows its datagram count; a receiving one jitter and loss.
fn push_udp_interval(o: &mut Obj, u: &UdpFigures, sender: bool) {
    if !sender {
        o.push("jitter_ms", finite(u.jitter) * 1000.0);
        o.push("lost_packets", u.lost);
    }
    o.push("packets", u.packets);
    if !sender {
        o.push("lost_percent", u.lost_percent());
    }
}

/// Several streams' figures as iperf3 sums them: counts add up, jitter is their average.
fn udp_sum(figures: impl Iterator<Item = UdpFigures>) -> UdpFigures {
    let mut sum = UdpFigures::default();
    let mut n = 0;
    for u in figures {
        sum.packets += u.packets;
        sum.lost += u.lost;
        sum.out_of_order += u.out_of_order;
        sum.jitter += finite(u.jitter);
        n += 1;
    }
    if n > 0 {
        sum.jitter /= n as f64;
    }
    sum
}

/// What one side of a UDP summary says: its times, bytes and figures, or zeros where this
/// side did not measure it (a server prints before the results exchange, as iperf3's does).
#[derive(Clone, Copy)]
struct UdpHalf {
    start: f64,
    end: f64,
    seconds: f64,
    bytes: u64,
    udp: UdpFigures,
}

impl UdpHalf {
    fn of(side: &EndSide, receiver: bool) -> Self {
        let seconds = if receiver { receiver_time(side) } else { finite(side.seconds) };
        UdpHalf {
            start: finite(side.start),
            end: finite(side.end),
            seconds,
            bytes: side.bytes,
            udp: side.udp.unwrap_or_default(),
        }
    }

    /// Unknown: timed like the half that is known, everything else zero.
    fn unknown(known: &UdpHalf) -> Self {
        UdpHalf { bytes: 0, udp: UdpFigures::default(), ..*known }
    }
}

impl Reporter {
    pub fn new(cfg: ReportConfig) -> Self {
        Reporter { cfg, out: String::new(), test: TestState::default() }
    }

    pub fn config(&self) -> &ReportConfig {
        &self.cfg
    }

    /// Server, before each test: the "Server listening on PORT (test #N)" banner.
    pub fn server_listening(&mut self, port: u16, test_number: u32) {
        if self.text_mode() {
            // Not part of `text_so_far()`: iperf3 prints the banner before it learns that the
            // client wants the server's output, so its copy starts at "Accepted connection".
            self.out.push_str(&format!(
                "-----------------------------------------------------------\n\
                 Server listening on {port} (test #{test_number})\n\
                 -----------------------------------------------------------\n"
            ));
        }
    }

    /// Client: "Connecting to host H, port P".
    pub fn connecting(&mut self, host: &str, port: u16) {
        self.test.peer_host = Some(host.to_string());
        if self.text_mode() {
            self.print(&format!("Connecting to host {host}, port {port}\n"));
        }
    }

    /// Server: "Accepted connection from H, port P".
    pub fn accepted(&mut self, host: &str, port: u16) {
        if self.text_mode() {
            self.print(&format!("Accepted connection from {host}, port {port}\n"));
        }
    }

    /// A data stream is connected: the `[  5] local … connected to …` line / `start.connected[]`.
    pub fn stream_connected(&mut self, s: ConnectedStream) {
        if self.text_mode() {
            let line = format!(
                "{} local {} port {} connected to {} port {}\n",
                text::stream_id(s.socket),
                s.local_host,
                s.local_port,
                s.remote_host,
                s.remote_port
            );
            if self.test.info.is_some() {
                self.print(&line);
            } else {
                let line = self.prefixed(&line);
                self.test.held.push_str(&line);
            }
        }
        self.test.connected.push(s);
    }

    /// The test starts (after TEST_START): `start` in JSON; the column header in text.
    pub fn test_start(&mut self, info: TestStartInfo) {
        match self.cfg.format {
            OutputFormat::Text => self.text_test_start(&info),
            OutputFormat::Json => {}
            OutputFormat::JsonStream => {}
        }
        self.test.info = Some(info);
        if self.cfg.format == OutputFormat::JsonStream {
            let start = self.start_json();
            self.emit_event("start", start);
        }
    }

    /// One interval ended.
    pub fn interval(&mut self, r: IntervalReport) {
        match self.cfg.format {
            OutputFormat::Text => {
                self.release_held();
                if self.udp() {
                    self.text_interval_udp(&r);
                } else {
                    self.text_interval(&r);
                }
            }
            OutputFormat::Json | OutputFormat::JsonStream => {
                let j = self.interval_json(&r);
                if self.cfg.format == OutputFormat::JsonStream {
                    self.emit_event("interval", j.clone());
                    // The client never needs them again (unless it prints the whole document
                    // too); the server may, for --get-server-output.
                    if self.cfg.side == Side::Client && !self.cfg.full_document {
                        return;
                    }
                }
                self.test.intervals.push(j);
            }
        }
    }

    /// The test ended and both sides' results are known.
    pub fn test_end(&mut self, info: TestEndInfo) {
        match self.cfg.format {
            OutputFormat::Text => {
                self.release_held();
                if self.udp() {
                    self.text_end_udp(&info);
                } else {
                    self.text_end(&info);
                }
            }
            OutputFormat::Json | OutputFormat::JsonStream => {
                let end = if self.udp() { self.end_json_udp(&info) } else { self.end_json(&info) };
                self.test.end = Some(end);
            }
        }
        self.test.end_reported = true;
    }

    /// Client with `--get-server-output`: what the server sent back.
    pub fn server_output(&mut self, text: Option<String>, json: Option<Value>) {
        if text.is_some() {
            self.test.server_text = text;
        }
        if json.is_some() {
            self.test.server_json = json;
        }
        // iperf3 prints it with the end summary; if that is already out, print it now.
        if self.text_mode() && self.cfg.side == Side::Client && self.test.end_reported {
            self.release_held();
            self.print_server_output();
        }
    }

    /// A warning line ("warning: …"); in JSON it goes nowhere (iperf3 does the same).
    pub fn warning(&mut self, msg: &str) {
        if self.text_mode() {
            self.release_held();
            // iperf3 writes these to stderr, so no title prefix and no --get-server-output copy.
            self.out.push_str(&format!("warning: {msg}\n"));
        }
    }

    /// An error that ends the test: `iperf3: error - MSG` in text, `"error"` in JSON.
    pub fn error(&mut self, msg: &str) {
        self.end_with(&format!("iperf3: error - {msg}\n"), msg);
    }

    /// An ending iperf3 reports without "error -": an interrupt (`interrupt - the client has
    /// terminated by signal Interrupt(2)`) or a peer that terminated (`the client has
    /// terminated`). In JSON it is the `"error"` all the same.
    pub fn ended(&mut self, msg: &str) {
        self.end_with(&format!("iperf3: {msg}\n"), msg);
    }

    fn end_with(&mut self, line: &str, msg: &str) {
        if self.text_mode() {
            self.release_held();
            self.out.push_str(line);
        }
        // The first error is the cause; later ones are fallout.
        if self.test.error.is_none() {
            self.test.error = Some(msg.to_string());
        }
    }

    /// The test is over: the client's "iperf Done.", or the whole `-J` document. Resets the
    /// per-test state so the next test starts clean.
    pub fn finish(&mut self) {
        match self.cfg.format {
            OutputFormat::Text => {
                self.release_held();
                if self.cfg.side == Side::Client && self.test.error.is_none() {
                    self.print("\n");
                    self.print("iperf Done.\n");
                }
            }
            OutputFormat::Json => {
                let doc = self.document();
                self.out.push_str(&doc.pretty());
                self.out.push('\n');
            }
            OutputFormat::JsonStream => {
                // iperf3 (3.17+) emits these at the end, in this order.
                if let Some(e) = self.test.error.clone() {
                    self.emit_event("error", Json::Str(e));
                }
                if let Some(j) = self.test.server_json.as_ref().map(Json::from_value) {
                    self.emit_event("server_output_json", j);
                }
                if let Some(t) = self.test.server_text.clone() {
                    self.emit_event("server_output_text", Json::Str(t));
                }
                let end = self.test.end.clone().unwrap_or_else(Json::empty_obj);
                self.emit_event("end", end);
                if self.cfg.full_document {
                    let doc = self.document();
                    self.out.push_str(&doc.pretty());
                    self.out.push('\n');
                }
            }
        }
        self.test = TestState::default();
    }

    /// Drains what has been written so far.
    pub fn take_output(&mut self) -> String {
        core::mem::take(&mut self.out)
    }

    /// Server, for `--get-server-output` in text mode: all text this test produced so far.
    pub fn text_so_far(&self) -> String {
        let mut s = self.test.text.clone();
        s.push_str(&self.test.held);
        s
    }

    /// Server, for `--get-server-output` in `-J` mode: `{start, intervals, end}` so far.
    pub fn json_so_far(&self) -> Value {
        Obj::new()
            .set("start", self.start_json())
            .set("intervals", Json::Arr(self.test.intervals.clone()))
            .set("end", self.test.end.clone().unwrap_or_else(Json::empty_obj))
            .build()
            .to_value()
    }

    // ---- output plumbing -------------------------------------------------------------

    fn text_mode(&self) -> bool {
        self.cfg.format == OutputFormat::Text
    }

    fn udp(&self) -> bool {
        self.test.info.as_ref().is_some_and(|i| i.protocol == "UDP")
    }

    /// iperf_printf: the client puts `title:  ` before each printed piece (the server never
    /// does); the server keeps a copy for `--get-server-output`.
    fn prefixed(&self, s: &str) -> String {
        match (&self.cfg.title, self.cfg.side) {
            (Some(t), Side::Client) => format!("{t}:  {s}"),
            _ => s.to_string(),
        }
    }

    fn print(&mut self, s: &str) {
        let line = self.prefixed(s);
        self.emit_text(&line);
    }

    fn emit_text(&mut self, s: &str) {
        self.out.push_str(s);
        if self.cfg.side == Side::Server {
            self.test.text.push_str(s);
        }
    }

    fn release_held(&mut self) {
        if !self.test.held.is_empty() {
            let held = core::mem::take(&mut self.test.held);
            self.emit_text(&held);
        }
    }

    fn emit_event(&mut self, event: &str, data: Json) {
        let line = Obj::new().set("event", event).set("data", data).build().compact();
        self.out.push_str(&line);
        self.out.push('\n');
    }

    fn print_server_output(&mut self) {
        if let Some(j) = self.test.server_json.take() {
            let s = format!("\nServer JSON output:\n{}\n", Json::from_value(&j).pretty());
            self.print(&s);
        }
        if let Some(t) = self.test.server_text.take() {
            self.print(&format!("\nServer output:\n{t}\n"));
        }
    }

    // ---- grouping --------------------------------------------------------------------

    fn bidir(&self, any_send: bool, any_recv: bool) -> bool {
        match &self.test.info {
            Some(i) => i.bidir,
            None => any_send && any_recv,
        }
    }

    /// Outside bidir: does this side send? (client unless -R; server only with -R.)
    fn default_sender(&self) -> bool {
        let reverse = self.test.info.as_ref().is_some_and(|i| i.reverse);
        match self.cfg.side {
            Side::Client => !reverse,
            Side::Server => reverse,
        }
    }

    /// `-P`, which decides whether `[SUM]` lines and interval separators are printed.
    fn num_streams(&self, group_sizes: impl Iterator<Item = usize>) -> usize {
        match &self.test.info {
            Some(i) => i.num_streams as usize,
            None => group_sizes.max().unwrap_or(0),
        }
    }

    fn groups<'a, T>(&self, streams: &'a [T], is_sender: impl Fn(&T) -> bool) -> (bool, Vec<Group<'a, T>>) {
        let any_send = streams.iter().any(&is_sender);
        let any_recv = streams.iter().any(|s| !is_sender(s));
        let bidir = self.bidir(any_send, any_recv);
        if !bidir {
            let sender = streams.first().map_or_else(|| self.default_sender(), &is_sender);
            let group = Group { sender, role: String::new(), reverse: false, streams: streams.iter().collect() };
            return (false, alloc::vec![group]);
        }
        let order = match self.cfg.side {
            Side::Client => [true, false],
            Side::Server => [false, true],
        };
        let side = match self.cfg.side {
            Side::Client => "C",
            Side::Server => "S",
        };
        let groups = order
            .iter()
            .enumerate()
            .map(|(i, &sender)| Group {
                sender,
                role: format!("[{}-{side}]", if sender { "TX" } else { "RX" }),
                reverse: i > 0,
                streams: streams.iter().filter(|s| is_sender(s) == sender).collect(),
            })
            .collect();
        (true, groups)
    }

    // ---- text ------------------------------------------------------------------------

    fn text_test_start(&mut self, info: &TestStartInfo) {
        let tcp = info.protocol == "TCP";
        if self.cfg.side == Side::Client && info.reverse {
            let host = self.test.peer_host.clone().unwrap_or_else(|| info.peer_host.clone());
            self.print(&format!("Reverse mode, remote host {host} is sending\n"));
        }
        if self.cfg.verbose {
            self.print(&format!("      Cookie: {}\n", info.cookie));
            if tcp {
                if info.mss_was_set {
                    self.print(&format!("      TCP MSS: {}\n", info.tcp_mss));
                } else {
                    self.print(&format!("      TCP MSS: {} (default)\n", info.tcp_mss));
                }
            }
            if info.target_bitrate > 0 {
                self.print(&format!("      Target Bitrate: {}\n", info.target_bitrate));
            }
            // Accepted for scripts that pass them; say plainly that they change nothing here.
            if info.zerocopy {
                self.print(
                    "      Zerocopy (-Z): requested, but smoltcp copies every byte; a stock peer may use sendfile\n",
                );
            }
            if info.skip_rx_copy {
                self.print(
                    "      Skip RX copy: requested, but smoltcp copies every byte; a stock peer may use MSG_TRUNC\n",
                );
            }
        }
        self.release_held();
        if self.cfg.verbose {
            let what = if info.bytes > 0 {
                format!("{} bytes to send", info.bytes)
            } else if info.blocks > 0 {
                format!("{} blocks to send", info.blocks)
            } else {
                format!("{} second test", info.duration)
            };
            self.print(&format!(
                "Starting Test: protocol: {}, {} streams, {} byte blocks, omitting {} seconds, {what}, tos {}\n",
                info.protocol, info.num_streams, info.blksize, info.omit, info.tos
            ));
        }
    }

    fn text_interval(&mut self, r: &IntervalReport) {
        let (bidir, groups) = self.groups(&r.streams, |s| s.sender);
        let num_streams = self.num_streams(groups.iter().map(|g| g.streams.len()));
        let retr_cwnd = r.streams.iter().any(|s| s.sender && s.tcp.is_some());
        let unit = self.cfg.unit;
        let mut lines = String::new();
        let mut first_line = true;
        for g in &groups {
            for s in &g.streams {
                if first_line {
                    first_line = false;
                    // iperf3 prints the header when the first stream's interval starts at the
                    // (omit-reset) test start, and a separator between intervals with -P > 1.
                    if s.start.abs() < 1e-9 || !self.test.header_shown {
                        self.test.header_shown = true;
                        lines.push_str(&self.prefixed(text::interval_header(retr_cwnd, bidir)));
                    } else if num_streams > 1 {
                        lines.push_str(&self.prefixed(text::SEPARATOR));
                    }
                }
                let id = text::stream_id(s.socket);
                let c = Columns {
                    id: &id,
                    role: &g.role,
                    start: s.start,
                    end: s.end,
                    bytes: s.bytes,
                    seconds: finite(s.end) - finite(s.start),
                    unit,
                };
                let tail = if s.omitted { text::OMITTED } else { "" };
                let line = match (s.sender, s.tcp) {
                    (true, Some(t)) => text::bw_retrans_cwnd(&c, t.retransmits, t.snd_cwnd, tail),
                    _ => text::bw(&c, tail),
                };
                lines.push_str(&self.prefixed(&line));
            }
            // Sums take their timing from the first stream, like iperf3.
            if let (true, Some(first)) = (num_streams > 1, r.streams.first()) {
                let bytes = g.streams.iter().map(|s| s.bytes).fold(0, u64::saturating_add);
                let c = Columns {
                    id: text::SUM_ID,
                    role: &g.role,
                    start: first.start,
                    end: first.end,
                    bytes,
                    seconds: finite(first.end) - finite(first.start),
                    unit,
                };
                let tail = if first.omitted { text::OMITTED } else { "" };
                let has_retr = g.sender && g.streams.iter().any(|s| s.sender && s.tcp.is_some());
                let line = if has_retr {
                    let retr =
                        g.streams.iter().filter_map(|s| s.tcp).map(|t| t.retransmits).fold(0, i64::saturating_add);
                    text::sum_bw_retrans(&c, retr, tail)
                } else {
                    text::bw(&c, tail)
                };
                lines.push_str(&self.prefixed(&line));
            }
        }
        self.emit_text(&lines);
    }

    fn text_end(&mut self, info: &TestEndInfo) {
        let (bidir, groups) = self.groups(&info.streams, |s| s.local_is_sender);
        let num_streams = self.num_streams(groups.iter().map(|g| g.streams.len()));
        let server = self.cfg.side == Side::Server;
        let verbose = self.cfg.verbose;
        let tcp = self.test.info.as_ref().is_none_or(|i| i.protocol == "TCP");
        let unit = self.cfg.unit;
        let any_retr = info.streams.iter().any(|s| s.sender.tcp.is_some());
        let first = info.streams.first();

        self.print(text::SEPARATOR);
        if verbose {
            self.print("Test Complete. Summary Results:\n");
        }
        self.print(text::summary_header(any_retr, bidir));

        for g in &groups {
            let has_retr = g.streams.iter().any(|s| s.sender.tcp.is_some());
            for s in &g.streams {
                let id = text::stream_id(s.socket);
                // The server's own summary lacks the side it did not measure (iperf3 3.12).
                if server && !s.local_is_sender {
                    if verbose {
                        self.print(&format!("{id} (sender statistics not available)\n"));
                    }
                } else {
                    let c = Columns {
                        id: &id,
                        role: &g.role,
                        start: s.sender.start,
                        end: s.sender.end,
                        bytes: s.sender.bytes,
                        seconds: s.sender.seconds,
                        unit,
                    };
                    let line = if has_retr {
                        text::bw_retrans(&c, s.sender.tcp.map_or(0, |t| t.retransmits), text::SENDER)
                    } else {
                        text::bw(&c, text::SENDER)
                    };
                    self.print(&line);
                }
                if server && s.local_is_sender {
                    if verbose {
                        self.print(&format!("{id} (receiver statistics not available)\n"));
                    }
                } else {
                    let c = Columns {
                        id: &id,
                        role: &g.role,
                        start: s.receiver.start,
                        end: s.receiver.end,
                        bytes: s.receiver.bytes,
                        seconds: receiver_time(&s.receiver),
                        unit,
                    };
                    self.print(&text::bw(&c, text::RECEIVER));
                }
            }

            if num_streams > 1 {
                let sent: u64 = g.streams.iter().map(|s| s.sender.bytes).fold(0, u64::saturating_add);
                let received: u64 = g.streams.iter().map(|s| s.receiver.bytes).fold(0, u64::saturating_add);
                let (s_start, s_end, s_secs) =
                    first.map_or((0.0, 0.0, 0.0), |f| (f.sender.start, f.sender.end, f.sender.seconds));
                let (r_start, r_end, r_secs) =
                    first.map_or((0.0, 0.0, 0.0), |f| (f.receiver.start, f.receiver.end, receiver_time(&f.receiver)));
                if server && !g.sender {
                    if verbose {
                        self.print("[SUM] (sender statistics not available)\n");
                    }
                } else {
                    let c = Columns {
                        id: text::SUM_ID,
                        role: &g.role,
                        start: s_start,
                        end: s_end,
                        bytes: sent,
                        seconds: s_secs,
                        unit,
                    };
                    let line = if has_retr {
                        let retr = g
                            .streams
                            .iter()
                            .filter_map(|s| s.sender.tcp)
                            .map(|t| t.retransmits)
                            .fold(0, i64::saturating_add);
                        text::sum_bw_retrans(&c, retr, text::SENDER)
                    } else {
                        text::bw(&c, text::SENDER)
                    };
                    self.print(&line);
                }
                if server && g.sender {
                    if verbose {
                        self.print("[SUM] (receiver statistics not available)\n");
                    }
                } else {
                    let c = Columns {
                        id: text::SUM_ID,
                        role: &g.role,
                        start: r_start,
                        end: r_end,
                        bytes: received,
                        seconds: r_secs,
                        unit,
                    };
                    self.print(&text::bw(&c, text::RECEIVER));
                }
            }

            if verbose {
                // iperf3 3.12 prints CPU use only in the group this side sends in.
                if g.sender {
                    self.print(&text::cpu(text::SENDER, text::RECEIVER, &info.cpu));
                    if bidir {
                        self.print(&text::cpu(text::RECEIVER, text::SENDER, &info.cpu));
                    }
                }
                if tcp {
                    let (snd, rcv) = self.congestion_for_group(info, bidir, g.sender);
                    if let Some(c) = snd {
                        self.print(&format!("snd_tcp_congestion {c}\n"));
                    }
                    if let Some(c) = rcv {
                        self.print(&format!("rcv_tcp_congestion {c}\n"));
                    }
                }
            }

            if self.cfg.side == Side::Client {
                self.print_server_output();
            }
        }
    }

    /// A UDP stream's sender and receiver halves; on a server the half it did not measure
    /// is unknown (zeros), as in iperf3, whose server prints before the results exchange.
    fn udp_halves(&self, s: &EndStream) -> (UdpHalf, UdpHalf) {
        let snd = UdpHalf::of(&s.sender, false);
        let rcv = UdpHalf::of(&s.receiver, true);
        match (self.cfg.side, s.local_is_sender) {
            (Side::Server, true) => (snd, UdpHalf::unknown(&snd)),
            (Side::Server, false) => (UdpHalf::unknown(&rcv), rcv),
            (Side::Client, _) => (snd, rcv),
        }
    }

    fn text_interval_udp(&mut self, r: &IntervalReport) {
        let (bidir, groups) = self.groups(&r.streams, |s| s.sender);
        let num_streams = self.num_streams(groups.iter().map(|g| g.streams.len()));
        let unit = self.cfg.unit;
        let mut lines = String::new();
        let mut first_line = true;
        for g in &groups {
            for s in &g.streams {
                if first_line {
                    first_line = false;
                    if s.start.abs() < 1e-9 || !self.test.header_shown {
                        self.test.header_shown = true;
                        lines.push_str(&self.prefixed(text::udp_interval_header(g.sender, bidir)));
                    } else if num_streams > 1 {
                        lines.push_str(&self.prefixed(text::SEPARATOR));
                    }
                }
                let id = text::stream_id(s.socket);
                let c = Columns {
                    id: &id,
                    role: &g.role,
                    start: s.start,
                    end: s.end,
                    bytes: s.bytes,
                    seconds: finite(s.end) - finite(s.start),
                    unit,
                };
                let tail = if s.omitted { text::OMITTED } else { "" };
                let u = s.udp.unwrap_or_default();
                let line = if s.sender {
                    text::udp_sender(&c, u.packets, bidir, tail)
                } else {
                    text::udp_jitter_loss(&c, u.jitter, u.lost, u.packets, tail)
                };
                lines.push_str(&self.prefixed(&line));
            }
            if let (true, Some(first)) = (num_streams > 1, r.streams.first()) {
                let bytes = g.streams.iter().map(|s| s.bytes).fold(0, u64::saturating_add);
                let u = udp_sum(g.streams.iter().filter_map(|s| s.udp));
                let c = Columns {
                    id: text::SUM_ID,
                    role: &g.role,
                    start: first.start,
                    end: first.end,
                    bytes,
                    seconds: finite(first.end) - finite(first.start),
                    unit,
                };
                let tail = if first.omitted { text::OMITTED } else { "" };
                let line = if g.sender {
                    text::udp_sender(&c, u.packets, bidir, tail)
                } else {
                    text::udp_jitter_loss(&c, u.jitter, u.lost, u.packets, tail)
                };
                lines.push_str(&self.prefixed(&line));
            }
        }
        self.emit_text(&lines);
    }

    fn text_end_udp(&mut self, info: &TestEndInfo) {
        let (bidir, groups) = self.groups(&info.streams, |s| s.local_is_sender);
        let num_streams = self.num_streams(groups.iter().map(|g| g.streams.len()));
        let server = self.cfg.side == Side::Server;
        let unit = self.cfg.unit;
        self.print(text::SEPARATOR);
        if self.cfg.verbose {
            self.print("Test Complete. Summary Results:\n");
        }
        self.print(text::udp_summary_header(bidir));
        let first = info.streams.first().map(|f| self.udp_halves(f));
        for g in &groups {
            let mut sent = (0u64, 0u64);
            let mut received = (0u64, Vec::new());
            for s in &g.streams {
                let (snd, rcv) = self.udp_halves(s);
                sent = (sent.0.saturating_add(snd.bytes), sent.1 + snd.udp.packets);
                received.0 = received.0.saturating_add(rcv.bytes);
                received.1.push(rcv.udp);
                let id = text::stream_id(s.socket);
                let col = |h: &UdpHalf| Columns {
                    id: &id,
                    role: &g.role,
                    start: h.start,
                    end: h.end,
                    bytes: h.bytes,
                    seconds: h.seconds,
                    unit,
                };
                if !server || s.local_is_sender {
                    self.print(&text::udp_jitter_loss(&col(&snd), 0.0, 0, snd.udp.packets, text::SENDER));
                }
                if !server || !s.local_is_sender {
                    let u = rcv.udp;
                    self.print(&text::udp_jitter_loss(&col(&rcv), u.jitter, u.lost, u.packets, text::RECEIVER));
                    if u.out_of_order > 0 {
                        self.print(&text::udp_out_of_order(&g.role, rcv.start, rcv.end, u.out_of_order));
                    }
                }
            }
            if let (true, Some((fs, fr))) = (num_streams > 1, first) {
                let col = |h: &UdpHalf, bytes: u64| Columns {
                    id: text::SUM_ID,
                    role: &g.role,
                    start: h.start,
                    end: h.end,
                    bytes,
                    seconds: h.seconds,
                    unit,
                };
                if !server || g.sender {
                    self.print(&text::udp_jitter_loss(&col(&fs, sent.0), 0.0, 0, sent.1, text::SENDER));
                }
                if !server || !g.sender {
                    let u = udp_sum(received.1.iter().copied());
                    self.print(&text::udp_jitter_loss(
                        &col(&fr, received.0),
                        u.jitter,
                        u.lost,
                        u.packets,
                        text::RECEIVER,
                    ));
                    if u.out_of_order > 0 {
                        self.print(&text::udp_out_of_order(&g.role, fr.start, fr.end, u.out_of_order));
                    }
                }
            }
            if self.cfg.verbose && g.sender {
                self.print(&text::cpu(text::SENDER, text::RECEIVER, &info.cpu));
                if bidir {
                    self.print(&text::cpu(text::RECEIVER, text::SENDER, &info.cpu));
                }
            }
            if self.cfg.side == Side::Client {
                self.print_server_output();
            }
        }
    }

    /// (sending side's, receiving side's) congestion control for one group's direction.
    /// `TestEndInfo` holds iperf3's JSON pair: outside bidir, the test's sender and receiver;
    /// in bidir, iperf3 fills it from its last group, which makes `sender_tcp_congestion` the
    /// server's algorithm and `receiver_tcp_congestion` the client's on both sides.
    fn congestion_for_group(
        &self,
        info: &TestEndInfo,
        bidir: bool,
        group_sends: bool,
    ) -> (Option<String>, Option<String>) {
        let snd = info.sender_tcp_congestion.clone();
        let rcv = info.receiver_tcp_congestion.clone();
        if !bidir {
            return (snd, rcv);
        }
        let (local, remote) = match self.cfg.side {
            Side::Client => (rcv, snd),
            Side::Server => (snd, rcv),
        };
        if group_sends { (local, remote) } else { (remote, local) }
    }

    // ---- JSON ------------------------------------------------------------------------

    fn start_json(&self) -> Json {
        let connected: Vec<Json> = self
            .test
            .connected
            .iter()
            .map(|c| {
                Obj::new()
                    .set("socket", c.socket)
                    .set("local_host", c.local_host.as_str())
                    .set("local_port", c.local_port)
                    .set("remote_host", c.remote_host.as_str())
                    .set("remote_port", c.remote_port)
                    .build()
            })
            .collect();
        let mut o = Obj::new().set("connected", Json::Arr(connected));
        let Some(i) = &self.test.info else {
            return o.build();
        };
        o.push("version", i.version.as_str());
        o.push("system_info", i.system_info.as_str());
        if let Some(ms) = i.timestamp_ms {
            let secs = ms / 1000;
            o.push("timestamp", Obj::new().set("time", rfc1123(secs)).set("timesecs", secs).set("timemillisecs", ms));
        }
        let peer = Obj::new().set("host", i.peer_host.as_str()).set("port", i.peer_port);
        match self.cfg.side {
            Side::Client => o.push("connecting_to", peer),
            Side::Server => o.push("accepted_connection", peer),
        }
        o.push("cookie", i.cookie.as_str());
        if i.protocol == "TCP" {
            o.push(if i.mss_was_set { "tcp_mss" } else { "tcp_mss_default" }, i.tcp_mss);
        }
        o.push("target_bitrate", i.target_bitrate);
        o.push("fq_rate", i.fq_rate);
        o.push("sock_bufsize", i.sock_bufsize);
        o.push("sndbuf_actual", i.sndbuf_actual);
        o.push("rcvbuf_actual", i.rcvbuf_actual);
        o.push(
            "test_start",
            Obj::new()
                .set("protocol", i.protocol)
                .set("num_streams", i.num_streams)
                .set("blksize", i.blksize)
                .set("omit", i.omit)
                .set("duration", i.duration)
                .set("bytes", i.bytes)
                .set("blocks", i.blocks)
                .set("reverse", u32::from(i.reverse))
                .set("tos", i.tos)
                .set("target_bitrate", i.target_bitrate)
                // 3.13+ (bidir, fqrate), 3.17+ (interval), 3.21+ (gso, gro: uniperf has
                // neither); 3.12 readers ignore them.
                .set("bidir", u32::from(i.bidir))
                .set("fqrate", i.fq_rate)
                .set("interval", i.interval)
                .set("gso", 0u32)
                .set("gro", 0u32),
        );
        o.build()
    }

    fn interval_json(&self, r: &IntervalReport) -> Json {
        let (_, groups) = self.groups(&r.streams, |s| s.sender);
        let mut streams = Vec::new();
        let mut sums = Vec::new();
        for g in &groups {
            for s in &g.streams {
                let seconds = finite(s.end) - finite(s.start);
                let mut o = Obj::new()
                    .set("socket", s.socket)
                    .set("start", finite(s.start))
                    .set("end", finite(s.end))
                    .set("seconds", seconds)
                    .set("bytes", s.bytes)
                    .set("bits_per_second", bits_per_second(s.bytes, seconds));
                if let (true, Some(t)) = (s.sender, s.tcp) {
                    o.push("retransmits", t.retransmits);
                    o.push("snd_cwnd", t.snd_cwnd);
                    o.push("snd_wnd", t.snd_wnd);
                    o.push("rtt", t.rtt);
                    o.push("rttvar", t.rttvar);
                    o.push("pmtu", t.pmtu);
                    // 3.20+; older readers ignore it.
                    o.push("reorder", t.reorder);
                }
                if let Some(u) = s.udp {
                    push_udp_interval(&mut o, &u, s.sender);
                }
                o.push("omitted", s.omitted);
                o.push("sender", s.sender);
                streams.push(o.build());
            }
            // Like iperf3, sums take their timing from the first stream of the test.
            let Some(first) = r.streams.first() else { continue };
            let seconds = finite(first.end) - finite(first.start);
            let bytes = g.streams.iter().map(|s| s.bytes).fold(0, u64::saturating_add);
            let mut o = Obj::new()
                .set("start", finite(first.start))
                .set("end", finite(first.end))
                .set("seconds", seconds)
                .set("bytes", bytes)
                .set("bits_per_second", bits_per_second(bytes, seconds));
            if g.sender && g.streams.iter().any(|s| s.sender && s.tcp.is_some()) {
                let retr: i64 =
                    g.streams.iter().filter_map(|s| s.tcp).map(|t| t.retransmits).fold(0, i64::saturating_add);
                o.push("retransmits", retr);
            }
            if g.streams.iter().any(|s| s.udp.is_some()) {
                push_udp_interval(&mut o, &udp_sum(g.streams.iter().filter_map(|s| s.udp)), g.sender);
            }
            o.push("omitted", first.omitted);
            o.push("sender", g.sender);
            sums.push((if g.reverse { "sum_bidir_reverse" } else { "sum" }, o.build()));
        }
        let mut o = Obj::new().set("streams", Json::Arr(streams));
        for (name, sum) in sums {
            o.push(name, sum);
        }
        o.build()
    }

    fn end_side_json(socket: i32, side: &EndSide, is_sender_side: bool, group_sends: bool) -> Json {
        let (seconds_for_rate, with_tcp) =
            if is_sender_side { (finite(side.seconds), side.tcp) } else { (receiver_time(side), None) };
        let mut o = Obj::new()
            .set("socket", socket)
            .set("start", finite(side.start))
            .set("end", finite(side.end))
            .set("seconds", finite(side.seconds))
            .set("bytes", side.bytes)
            .set("bits_per_second", bits_per_second(side.bytes, seconds_for_rate));
        if let Some(t) = with_tcp {
            o.push("retransmits", t.retransmits);
            o.push("reorder", t.reorder);
            o.push("max_snd_cwnd", t.max_snd_cwnd);
            o.push("max_snd_wnd", t.max_snd_wnd);
            o.push("max_rtt", t.max_rtt);
            o.push("min_rtt", t.min_rtt);
            o.push("mean_rtt", t.mean_rtt);
        }
        o.push("sender", group_sends);
        o.build()
    }

    fn end_json(&self, info: &TestEndInfo) -> Json {
        let (_, groups) = self.groups(&info.streams, |s| s.local_is_sender);
        let first = info.streams.first();
        let mut streams = Vec::new();
        let mut sums = Vec::new();
        for g in &groups {
            for s in &g.streams {
                streams.push(
                    Obj::new()
                        .set("sender", Self::end_side_json(s.socket, &s.sender, true, g.sender))
                        .set("receiver", Self::end_side_json(s.socket, &s.receiver, false, g.sender))
                        .build(),
                );
            }
            let sent: u64 = g.streams.iter().map(|s| s.sender.bytes).fold(0, u64::saturating_add);
            let received: u64 = g.streams.iter().map(|s| s.receiver.bytes).fold(0, u64::saturating_add);
            // Sums are timed by the test's first stream, like iperf3.
            let (s_start, s_end, s_secs) = first
                .map_or((0.0, 0.0, 0.0), |f| (finite(f.sender.start), finite(f.sender.end), finite(f.sender.seconds)));
            let (r_start, r_end, r_secs) = first.map_or((0.0, 0.0, 0.0), |f| {
                (finite(f.receiver.start), finite(f.receiver.end), receiver_time(&f.receiver))
            });
            let mut sent_o = Obj::new()
                .set("start", s_start)
                .set("end", s_end)
                .set("seconds", s_secs)
                .set("bytes", sent)
                .set("bits_per_second", bits_per_second(sent, s_secs));
            if g.streams.iter().any(|s| s.sender.tcp.is_some()) {
                let retr: i64 =
                    g.streams.iter().filter_map(|s| s.sender.tcp).map(|t| t.retransmits).fold(0, i64::saturating_add);
                sent_o.push("retransmits", retr);
            }
            sent_o.push("sender", g.sender);
            let received_o = Obj::new()
                .set("start", r_start)
                .set("end", r_end)
                .set("seconds", r_secs)
                .set("bytes", received)
                .set("bits_per_second", bits_per_second(received, r_secs))
                .set("sender", g.sender);
            let (sn, rn) = if g.reverse {
                ("sum_sent_bidir_reverse", "sum_received_bidir_reverse")
            } else {
                ("sum_sent", "sum_received")
            };
            sums.push((sn, sent_o.build()));
            sums.push((rn, received_o.build()));
        }
        let mut o = Obj::new().set("streams", Json::Arr(streams));
        for (name, sum) in sums {
            o.push(name, sum);
        }
        let c = &info.cpu;
        o.push(
            "cpu_utilization_percent",
            Obj::new()
                .set("host_total", c.host_total)
                .set("host_user", c.host_user)
                .set("host_system", c.host_system)
                .set("remote_total", c.remote_total)
                .set("remote_user", c.remote_user)
                .set("remote_system", c.remote_system),
        );
        if self.test.info.as_ref().is_none_or(|i| i.protocol == "TCP") {
            if let Some(s) = &info.sender_tcp_congestion {
                o.push("sender_tcp_congestion", s.as_str());
            }
            if let Some(s) = &info.receiver_tcp_congestion {
                o.push("receiver_tcp_congestion", s.as_str());
            }
        }
        o.build()
    }

    /// `end` of a UDP test: one `udp` object per stream and iperf3's UDP sums.
    fn end_json_udp(&self, info: &TestEndInfo) -> Json {
        let (_, groups) = self.groups(&info.streams, |s| s.local_is_sender);
        let first = info.streams.first().map(|f| self.udp_halves(f));
        let mut streams = Vec::new();
        let mut sums = Vec::new();
        for g in &groups {
            let mut snd_bytes = 0u64;
            let mut snd_packets = 0u64;
            let mut rcv_bytes = 0u64;
            let mut rcv = Vec::new();
            for s in &g.streams {
                let (sh, rh) = self.udp_halves(s);
                snd_bytes = snd_bytes.saturating_add(sh.bytes);
                snd_packets += sh.udp.packets;
                rcv_bytes = rcv_bytes.saturating_add(rh.bytes);
                rcv.push(rh.udp);
                // Timed by the sender where it is known; packets are the sender's count if
                // known, else what the receiver saw; loss and jitter are the receiver's.
                let timing = if sh.bytes > 0 || sh.udp.packets > 0 { sh } else { rh };
                let packets = if sh.udp.packets > 0 { sh.udp.packets } else { rh.udp.packets };
                let fig = UdpFigures { packets, ..rh.udp };
                streams.push(
                    Obj::new()
                        .set(
                            "udp",
                            Obj::new()
                                .set("socket", s.socket)
                                .set("start", timing.start)
                                .set("end", timing.end)
                                .set("seconds", timing.seconds)
                                .set("bytes", sh.bytes)
                                .set("bits_per_second", bits_per_second(sh.bytes, timing.seconds))
                                .set("jitter_ms", finite(fig.jitter) * 1000.0)
                                .set("lost_packets", fig.lost)
                                .set("packets", fig.packets)
                                .set("lost_percent", fig.lost_percent())
                                .set("out_of_order", fig.out_of_order)
                                .set("sender", g.sender),
                        )
                        .build(),
                );
            }
            let Some((fs, fr)) = first else { continue };
            let r = udp_sum(rcv.iter().copied());
            let sum_obj = |start: f64, end: f64, seconds: f64, bytes: u64, rate: f64, u: &UdpFigures, sender: bool| {
                Obj::new()
                    .set("start", start)
                    .set("end", end)
                    .set("seconds", seconds)
                    .set("bytes", bytes)
                    .set("bits_per_second", rate)
                    .set("jitter_ms", finite(u.jitter) * 1000.0)
                    .set("lost_packets", u.lost)
                    .set("packets", u.packets)
                    .set("lost_percent", u.lost_percent())
                    .set("sender", sender)
                    .build()
            };
            let sent_fig = UdpFigures { packets: snd_packets, ..UdpFigures::default() };
            let sum_fig = UdpFigures { packets: if snd_packets > 0 { snd_packets } else { r.packets }, ..r };
            let sum_rate = bits_per_second(snd_bytes, fs.seconds);
            let sum = sum_obj(0.0, fr.end, fr.seconds, snd_bytes, sum_rate, &sum_fig, g.sender);
            let sent = sum_obj(0.0, fs.end, fs.seconds, snd_bytes, sum_rate, &sent_fig, true);
            let received =
                sum_obj(0.0, fr.end, fr.seconds, rcv_bytes, bits_per_second(rcv_bytes, fr.seconds), &r, false);
            let names = if g.reverse {
                ["sum_bidir_reverse", "sum_sent_bidir_reverse", "sum_received_bidir_reverse"]
            } else {
                ["sum", "sum_sent", "sum_received"]
            };
            sums.push((names[0], sum));
            sums.push((names[1], sent));
            sums.push((names[2], received));
        }
        let mut o = Obj::new().set("streams", Json::Arr(streams));
        for (name, sum) in sums {
            o.push(name, sum);
        }
        let c = &info.cpu;
        o.push(
            "cpu_utilization_percent",
            Obj::new()
                .set("host_total", c.host_total)
                .set("host_user", c.host_user)
                .set("host_system", c.host_system)
                .set("remote_total", c.remote_total)
                .set("remote_user", c.remote_user)
                .set("remote_system", c.remote_system),
        );
        o.build()
    }

    /// The `-J` document: start, intervals, end, then the optional top-level keys in the
    /// order iperf3 adds them.
    fn document(&self) -> Json {
        let mut o = Obj::new()
            .set("start", self.start_json())
            .set("intervals", Json::Arr(self.test.intervals.clone()))
            .set("end", self.test.end.clone().unwrap_or_else(Json::empty_obj));
        if let Some(e) = &self.test.error {
            o.push("error", e.as_str());
        }
        let info = self.test.info.as_ref();
        if let Some(t) = info.and_then(|i| i.title.as_ref()).or(self.cfg.title.as_ref()) {
            o.push("title", t.as_str());
        }
        if let Some(x) = info.and_then(|i| i.extra_data.as_ref()) {
            o.push("extra_data", x.as_str());
        }
        if let Some(j) = &self.test.server_json {
            o.push("server_output_json", Json::from_value(j));
        }
        if let Some(t) = &self.test.server_text {
            o.push("server_output_text", t.as_str());
        }
        o.build()
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
