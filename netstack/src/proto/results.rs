//! The results JSON both sides exchange during EXCHANGE_RESULTS. Mandatory keys are checked
//! (a missing one is iperf3's IERECVRESULTS); numbers are read leniently because 3.12 prints
//! -1 as 18446744073709551615.

use super::ProtoError;
use super::json::{ObjectWriter, get_i64, get_string, parse_object, require_f64, require_i64};
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct StreamResult {
    pub id: i64,
    pub bytes: u64,
    pub retransmits: i64,
    /// Seconds.
    pub jitter: f64,
    pub errors: i64,
    pub packets: i64,
    pub omitted_errors: Option<i64>,
    pub omitted_packets: Option<i64>,
    pub start_time: f64,
    pub end_time: f64,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TestResults {
    pub cpu_util_total: f64,
    pub cpu_util_user: f64,
    pub cpu_util_system: f64,
    /// 1: TCP sender with retransmit counts; 0: sender without; -1: receiver only.
    pub sender_has_retransmits: i64,
    pub congestion_used: Option<String>,
    pub server_output_text: Option<String>,
    pub server_output_json: Option<Value>,
    pub streams: Vec<StreamResult>,
}

impl TestResults {
    pub fn to_json(&self) -> String {
        let mut w = ObjectWriter::new();
        w.float("cpu_util_total", self.cpu_util_total);
        w.float("cpu_util_user", self.cpu_util_user);
        w.float("cpu_util_system", self.cpu_util_system);
        w.int("sender_has_retransmits", self.sender_has_retransmits);
        if let Some(c) = &self.congestion_used {
            w.string("congestion_used", c);
        }
        if let Some(t) = &self.server_output_text {
            w.string("server_output_text", t);
        }
        if let Some(j) = &self.server_output_json {
            w.raw("server_output_json", &serde_json::to_string(j).unwrap_or_default());
        }
        let mut streams = String::from("[");
        for (i, s) in self.streams.iter().enumerate() {
            if i > 0 {
                streams.push(',');
            }
            let mut o = ObjectWriter::new();
            o.int("id", s.id);
            o.int("bytes", s.bytes as i64);
            o.int("retransmits", s.retransmits);
            o.float("jitter", s.jitter);
            o.int("errors", s.errors);
            if let (Some(e), Some(p)) = (s.omitted_errors, s.omitted_packets) {
                o.int("omitted_errors", e);
                o.int("packets", s.packets);
                o.int("omitted_packets", p);
            } else {
                o.int("packets", s.packets);
            }
            o.float("start_time", s.start_time);
            o.float("end_time", s.end_time);
            streams.push_str(&o.finish());
        }
        streams.push(']');
        w.raw("streams", &streams);
        w.finish()
    }

    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let m = parse_object(body)?;
        let streams_v = match m.get("streams") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(ProtoError::BadType { key: "streams", expected: "an array" }),
            None => return Err(ProtoError::MissingKey("streams")),
        };
        let mut streams = Vec::with_capacity(streams_v.len());
        for sv in streams_v {
            let Value::Object(s) = sv else {
                return Err(ProtoError::BadType { key: "streams", expected: "an array of objects" });
            };
            let omitted_errors = get_i64(s, "omitted_errors")?;
            let omitted_packets = get_i64(s, "omitted_packets")?;
            if omitted_errors.is_some() != omitted_packets.is_some() {
                return Err(ProtoError::BadValue {
                    key: "omitted_errors",
                    why: "omitted_errors and omitted_packets must come together".into(),
                });
            }
            let bytes = require_i64(s, "bytes")?;
            if bytes < 0 {
                return Err(ProtoError::BadValue { key: "bytes", why: "negative byte count".into() });
            }
            streams.push(StreamResult {
                id: require_i64(s, "id")?,
                bytes: bytes as u64,
                retransmits: require_i64(s, "retransmits")?,
                jitter: require_f64(s, "jitter")?,
                errors: require_i64(s, "errors")?,
                packets: require_i64(s, "packets")?,
                omitted_errors,
                omitted_packets,
                start_time: opt_f64(s, "start_time")?,
                end_time: opt_f64(s, "end_time")?,
            });
        }
        Ok(TestResults {
            cpu_util_total: require_f64(&m, "cpu_util_total")?,
            cpu_util_user: require_f64(&m, "cpu_util_user")?,
            cpu_util_system: require_f64(&m, "cpu_util_system")?,
            sender_has_retransmits: require_i64(&m, "sender_has_retransmits")?,
            congestion_used: get_string(&m, "congestion_used")?,
            server_output_text: get_string(&m, "server_output_text")?,
            server_output_json: m.get("server_output_json").cloned(),
            streams,
        })
    }
}

fn opt_f64(m: &serde_json::Map<String, Value>, key: &'static str) -> Result<f64, ProtoError> {
    match m.get(key) {
        None => Ok(0.0),
        Some(_) => require_f64(m, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both results messages of a captured 3.12 test.
    const CLIENT: &str = r#"{"cpu_util_total":3.9975754704771558,"cpu_util_user":3.9975754704771558,"cpu_util_system":0,"sender_has_retransmits":1,"congestion_used":"bbr","streams":[{"id":1,"bytes":50069504,"retransmits":0,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":2.000094}]}"#;
    const SERVER: &str = r#"{"cpu_util_total":0.789250714194666,"cpu_util_user":0.789250714194666,"cpu_util_system":0,"sender_has_retransmits":18446744073709551615,"congestion_used":"bbr","streams":[{"id":1,"bytes":50069504,"retransmits":18446744073709551615,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":2.000501}]}"#;

    #[test]
    fn captured_results_parse() {
        let c = TestResults::parse(CLIENT.as_bytes()).unwrap();
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams[0].bytes, 50069504);
        assert_eq!(c.sender_has_retransmits, 1);
        let s = TestResults::parse(SERVER.as_bytes()).unwrap();
        assert_eq!(s.sender_has_retransmits, -1, "3.12 prints -1 as u64::MAX");
        assert_eq!(s.streams[0].retransmits, -1);
        assert_eq!(s.streams[0].end_time, 2.000501);
    }

    #[test]
    fn client_results_reencode_to_the_same_values() {
        // Floats print shortest-round-trip (cJSON uses %.17g), so compare values, and the
        // exact bytes of everything after the floats.
        let c = TestResults::parse(CLIENT.as_bytes()).unwrap();
        let out = c.to_json();
        assert_eq!(TestResults::parse(out.as_bytes()).unwrap(), c);
        let tail = &CLIENT[CLIENT.find("\"cpu_util_system\"").unwrap()..];
        assert!(out.ends_with(tail), "{out}");
    }

    #[test]
    fn negative_values_are_sent_signed() {
        let s = TestResults::parse(SERVER.as_bytes()).unwrap();
        let out = s.to_json();
        assert!(out.contains(r#""sender_has_retransmits":-1"#), "{out}");
        assert_eq!(TestResults::parse(out.as_bytes()).unwrap(), s);
    }

    #[test]
    fn missing_or_mistyped_keys_are_named() {
        let cases: &[(&str, &str)] = &[
            (r#"{"cpu_util_total":1}"#, "streams"),
            (
                r#"{"cpu_util_total":1,"cpu_util_user":1,"cpu_util_system":0,"sender_has_retransmits":1,"streams":[{"id":1}]}"#,
                "bytes",
            ),
            (r#"{"cpu_util_total":"x","streams":[]}"#, "cpu_util_total"),
            (
                r#"{"cpu_util_total":1,"cpu_util_user":1,"cpu_util_system":0,"sender_has_retransmits":1,"streams":[5]}"#,
                "streams",
            ),
        ];
        for (body, key) in cases {
            let msg = alloc::format!("{}", TestResults::parse(body.as_bytes()).unwrap_err());
            assert!(msg.contains(key), "{body} -> {msg}");
        }
    }
}
