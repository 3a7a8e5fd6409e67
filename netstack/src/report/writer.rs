//! Renders the report model as iperf3 3.12 text, `-J` JSON or `--json-stream` lines.
//! (Stub: to be completed.)

use super::*;
use serde_json::Value;

pub struct Reporter {
    cfg: ReportConfig,
    out: String,
}

impl Reporter {
    pub fn new(cfg: ReportConfig) -> Self {
        Reporter { cfg, out: String::new() }
    }

    pub fn config(&self) -> &ReportConfig {
        &self.cfg
    }

    /// Server, before each test: the "Server listening on PORT (test #N)" banner.
    pub fn server_listening(&mut self, _port: u16, _test_number: u32) {}

    /// Client: "Connecting to host H, port P".
    pub fn connecting(&mut self, _host: &str, _port: u16) {}

    /// Server: "Accepted connection from H, port P".
    pub fn accepted(&mut self, _host: &str, _port: u16) {}

    /// A data stream is connected: the `[  5] local … connected to …` line / `start.connected[]`.
    pub fn stream_connected(&mut self, _s: ConnectedStream) {}

    /// The test starts (after TEST_START): `start` in JSON; the column header in text.
    pub fn test_start(&mut self, _info: TestStartInfo) {}

    /// One interval ended.
    pub fn interval(&mut self, _r: IntervalReport) {}

    /// The test ended and both sides' results are known.
    pub fn test_end(&mut self, _info: TestEndInfo) {}

    /// Client with `--get-server-output`: what the server sent back.
    pub fn server_output(&mut self, _text: Option<String>, _json: Option<Value>) {}

    /// A warning line ("warning: …"); in JSON it goes nowhere (iperf3 does the same).
    pub fn warning(&mut self, _msg: &str) {}

    /// An error that ends the test.
    pub fn error(&mut self, _msg: &str) {}

    /// The test is over: the client's "iperf Done.", or the whole `-J` document. Resets the
    /// per-test state so the next test starts clean.
    pub fn finish(&mut self) {}

    /// Drains what has been written so far.
    pub fn take_output(&mut self) -> String {
        core::mem::take(&mut self.out)
    }

    /// Server, for `--get-server-output` in text mode: all text this test produced so far.
    pub fn text_so_far(&self) -> String {
        String::new()
    }

    /// Server, for `--get-server-output` in `-J` mode: `{start, intervals, end}` so far.
    pub fn json_so_far(&self) -> Value {
        Value::Null
    }
}
