//! One running test as both roles see it once its data streams are up: the streams and their
//! clock ([`Measurement`]), the payload, the CPU-time baseline and the congestion controller,
//! and what both roles build from them alike — the final interval, their results message, the
//! end summary from the peer's results, and the partial summary of a test cut short.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

use crate::machine::{CpuTimes, Machine};
use crate::proto::{ErrorCode, TestParams, TestResults};
use crate::report::{CpuUtil, IntervalReport, TestEndInfo};
use crate::stack::Congestion;
use crate::stream::{DataStream, MeasureConfig, Measurement, Payload, sender_has_retransmits};
use crate::tcpinfo::TcpInfoSource;

pub struct TestRun {
    pub meas: Measurement,
    payload: Payload,
    cpu_start: CpuTimes,
    congestion: Congestion,
    /// Seconds measured when the test ended (TEST_END), or when it was cut short.
    end_secs: f64,
    ended: bool,
    /// (user %, system %) as sent in our results.
    local_cpu: (f64, f64),
}

impl TestRun {
    /// The test starts (TEST_START): `streams` are its data connections, `rcv_buf` their
    /// receive buffer, `interval` this side's `-i`.
    pub fn start(
        streams: Vec<DataStream>,
        now: Instant,
        params: &TestParams,
        interval: f64,
        rcv_buf: usize,
        congestion: Congestion,
        machine: &mut dyn Machine,
    ) -> Self {
        let payload = Payload::new(params.len as usize, params.repeating_payload, machine);
        let cfg =
            MeasureConfig { omit_secs: params.omit, interval_secs: interval, send_limit: params.send_limit(), rcv_buf };
        TestRun {
            meas: Measurement::new(streams, now, cfg),
            payload,
            cpu_start: machine.cpu_times(),
            congestion,
            end_secs: 0.0,
            ended: false,
            local_cpu: (0.0, 0.0),
        }
    }

    pub fn congestion(&self) -> Congestion {
        self.congestion
    }

    /// Moves data on every stream (see [`Measurement::pump`]).
    pub fn pump(
        &mut self,
        sockets: &mut SocketSet<'_>,
        rate: u64,
        now: Instant,
        sending: bool,
        clock: &mut dyn FnMut() -> Instant,
        info: &dyn TcpInfoSource,
    ) -> u64 {
        self.meas.pump(sockets, &self.payload, rate, now, sending, clock, info)
    }

    /// The test's data phase ended (TEST_END): the final partial interval, if any.
    pub fn end(&mut self, now: Instant, info: &dyn TcpInfoSource) -> Option<IntervalReport> {
        if self.ended {
            return None;
        }
        self.ended = true;
        let rep = self.meas.finish(now, info);
        self.end_secs = self.meas.elapsed(now);
        rep
    }

    /// What a UDP test's text report should say beyond iperf3's lines: a sending stream that
    /// fell more than 1 % short of its `-b` (the platform could not keep up; the figures show
    /// what was really sent), and datagrams that were skipped as not belonging to the test.
    pub fn udp_notes(&self, rate_bps: u64) -> Vec<String> {
        let mut notes = Vec::new();
        let secs = self.end_secs;
        for s in self.meas.streams.iter().filter(|s| s.sends && s.udp.is_some()) {
            let sent = s.bytes as f64 * 8.0 / secs.max(1e-9);
            if rate_bps > 0 && secs > 0.0 && sent < rate_bps as f64 * 0.99 {
                notes.push(alloc::format!(
                    "stream {} sent {:.1} Mbit/s of the {:.1} Mbit/s asked for: this host could not keep up, and the \
                     report shows what was really sent",
                    s.socket_no,
                    sent / 1e6,
                    rate_bps as f64 / 1e6
                ));
            }
        }
        let k = self.meas.skipped;
        if k.total() > 0 {
            notes.push(alloc::format!(
                "skipped {} datagrams that were not this test's data ({} malformed, {} from unknown senders, {} with \
                 impossible sequence numbers)",
                k.total(),
                k.malformed,
                k.unknown_sender,
                k.implausible
            ));
        }
        notes
    }

    /// This side's results message for the exchange.
    pub fn results(&mut self, now: Instant, machine: &mut dyn Machine) -> TestResults {
        let wall = (now - self.meas.started).total_micros();
        let (user, system) = self.cpu_start.percent_until(machine.cpu_times(), wall);
        self.local_cpu = (user, system);
        let m = &self.meas;
        TestResults {
            cpu_util_total: user + system,
            cpu_util_user: user,
            cpu_util_system: system,
            sender_has_retransmits: sender_has_retransmits(&m.streams),
            congestion_used: Some(self.congestion.name().to_string()),
            server_output_text: None,
            server_output_json: None,
            streams: m.streams.iter().map(|s| s.result(self.end_secs)).collect(),
        }
    }

    /// The end summary from our counters and the peer's `remote` results. An error names the
    /// stream the peer did not report (iperf3's IESTREAMID).
    pub fn summary(&self, remote: &TestResults) -> Result<TestEndInfo, (ErrorCode, i64)> {
        let has_retransmits = remote.sender_has_retransmits == 1;
        let mut streams = Vec::with_capacity(self.meas.streams.len());
        for s in &self.meas.streams {
            streams.push(s.end_summary(self.end_secs, &remote.streams, has_retransmits).map_err(|c| (c, s.id))?);
        }
        let (user, system) = self.local_cpu;
        let cpu = CpuUtil {
            host_total: user + system,
            host_user: user,
            host_system: system,
            remote_total: remote.cpu_util_total,
            remote_user: remote.cpu_util_user,
            remote_system: remote.cpu_util_system,
        };
        let ours = Some(String::from(self.congestion.name()));
        let theirs = remote.congestion_used.clone();
        let we_send = self.meas.streams.iter().any(|s| s.sends);
        let we_receive = self.meas.streams.iter().any(|s| !s.sends);
        Ok(TestEndInfo {
            streams,
            cpu,
            sender_tcp_congestion: if we_send { ours.clone() } else { theirs.clone() },
            receiver_tcp_congestion: if we_receive { ours } else { theirs },
        })
    }

    /// The test is cut short (a signal, or the peer terminated): the final partial interval
    /// (if the data phase was still on) and a summary of what this side measured, the peer's
    /// half as zero, as iperf3 prints them.
    pub fn partial(
        &mut self,
        now: Instant,
        machine: &mut dyn Machine,
        info: &dyn TcpInfoSource,
    ) -> (Option<IntervalReport>, TestEndInfo) {
        let rep = self.end(now, info);
        let wall = (now - self.meas.started).total_micros();
        let (user, system) = self.cpu_start.percent_until(machine.cpu_times(), wall);
        let streams = self.meas.streams.iter().map(|s| s.partial_summary(self.end_secs)).collect();
        let ours = Some(String::from(self.congestion.name()));
        let info = TestEndInfo {
            streams,
            cpu: CpuUtil { host_total: user + system, host_user: user, host_system: system, ..CpuUtil::default() },
            sender_tcp_congestion: ours.clone(),
            receiver_tcp_congestion: ours,
        };
        (rep, info)
    }
}
