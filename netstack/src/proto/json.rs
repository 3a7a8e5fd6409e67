//! Small helpers shared by the params and results codecs: lenient number reading (3.12
//! prints -1 as 18446744073709551615; older versions print exponents) and a compact,
//! key-ordered JSON object writer that emits exactly the stock types.

use super::ProtoError;
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
        push_json_string(&mut self.out, k);
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

    pub fn float(&mut self, k: &str, v: f64) {
        self.key(k);
        push_json_f64(&mut self.out, v);
    }

    pub fn string(&mut self, k: &str, v: &str) {
        self.key(k);
        push_json_string(&mut self.out, v);
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

pub(crate) fn push_json_string(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; a &str always serialises.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\"")));
}

/// Integral values print without a fraction, as cJSON 1.7 does; NaN/inf become 0.
pub(crate) fn push_json_f64(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push('0');
    } else if v == (v as i64) as f64 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}
