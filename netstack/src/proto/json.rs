//! Small helpers shared by the params and results codecs: lenient number reading (3.12
//! prints -1 as 18446744073709551615; older versions print exponents) and a compact,
//! key-ordered JSON object writer that emits exactly the stock types, with the report's
//! cJSON-style string and number printers.

use super::ProtoError;
use crate::report::json::{write_number, write_string};
use alloc::string::String;
use core::fmt::Write;
use serde_json::{Map, Value};

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ProtoError::BadJson(alloc::format!("{e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ProtoError::NotAnObject),
    }
}

/// Reads a JSON number as i64 the way a 3.12 peer means it: u64 values of 2^63 and above
/// wrap (so 18446744073709551615 is -1), floats truncate, and huge floats clamp.
pub(crate) fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else if let Some(u) = n.as_u64() {
                Some(u as i64)
            } else {
                n.as_f64().map(|f| f as i64)
            }
        }
        _ => None,
    }
}

pub(crate) fn lenient_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

pub(crate) fn get_i64(m: &Map<String, Value>, key: &'static str) -> Result<Option<i64>, ProtoError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => lenient_i64(v).map(Some).ok_or(ProtoError::BadType { key, expected: "a number" }),
    }
}

pub(crate) fn require_i64(m: &Map<String, Value>, key: &'static str) -> Result<i64, ProtoError> {
    get_i64(m, key)?.ok_or(ProtoError::MissingKey(key))
}

pub(crate) fn require_f64(m: &Map<String, Value>, key: &'static str) -> Result<f64, ProtoError> {
    match m.get(key) {
        None | Some(Value::Null) => Err(ProtoError::MissingKey(key)),
        Some(v) => lenient_f64(v).ok_or(ProtoError::BadType { key, expected: "a number" }),
    }
}

pub(crate) fn get_string(m: &Map<String, Value>, key: &'static str) -> Result<Option<String>, ProtoError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProtoError::BadType { key, expected: "a string" }),
    }
}

/// Writes `{"k":v,...}` in insertion order with no whitespace, as cJSON's unformatted print.
pub(crate) struct ObjectWriter {
    out: String,
    first: bool,
}

impl ObjectWriter {
    pub fn new() -> Self {
        ObjectWriter { out: String::from("{"), first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_string(&mut self.out, k);
        self.out.push(':');
    }

    pub fn bool_true(&mut self, k: &str) {
        self.key(k);
        self.out.push_str("true");
    }

    pub fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }

    /// A number the peer requires: a value we could not measure (NaN, infinity) is sent as 0,
    /// not as the `null` the report printer would write, because a results reader that wants
    /// a number (ours: `require_f64`) takes `null` for a missing key and fails the test.
    pub fn float(&mut self, k: &str, v: f64) {
        self.key(k);
        write_number(&mut self.out, crate::units::finite(v));
    }

    pub fn string(&mut self, k: &str, v: &str) {
        self.key(k);
        write_string(&mut self.out, v);
    }

    /// Inserts already-serialised JSON (an array or object built elsewhere).
    pub fn raw(&mut self, k: &str, json: &str) {
        self.key(k);
        self.out.push_str(json);
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_are_always_numbers() {
        let mut w = ObjectWriter::new();
        w.float("a", 3.0);
        w.float("b", 2.000501);
        w.float("c", f64::NAN);
        w.float("d", f64::INFINITY);
        w.int("e", -1);
        w.string("f", "x\"y");
        w.bool_true("g");
        assert_eq!(w.finish(), r#"{"a":3,"b":2.000501,"c":0,"d":0,"e":-1,"f":"x\"y","g":true}"#);
    }
}
