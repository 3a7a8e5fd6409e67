//! A small JSON tree that keeps keys in insertion order, printed the way iperf3's cJSON prints:
//! `-J` documents with tab indentation, `--json-stream` lines with no whitespace. serde_json's
//! `Map` sorts keys in this build, which would scramble iperf3's start/intervals/end layout.
//! Its string and number printers are the crate's only ones; the control-message writer in
//! `proto::json` uses them too.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl From<bool> for Json {
    fn from(v: bool) -> Self {
        Json::Bool(v)
    }
}
impl From<i64> for Json {
    fn from(v: i64) -> Self {
        Json::Int(v)
    }
}
impl From<i32> for Json {
    fn from(v: i32) -> Self {
        Json::Int(v.into())
    }
}
impl From<u64> for Json {
    fn from(v: u64) -> Self {
        Json::UInt(v)
    }
}
impl From<u32> for Json {
    fn from(v: u32) -> Self {
        Json::UInt(v.into())
    }
}
impl From<u16> for Json {
    fn from(v: u16) -> Self {
        Json::UInt(v.into())
    }
}
impl From<f64> for Json {
    fn from(v: f64) -> Self {
        Json::Float(v)
    }
}
impl From<&str> for Json {
    fn from(v: &str) -> Self {
        Json::Str(v.to_string())
    }
}
impl From<String> for Json {
    fn from(v: String) -> Self {
        Json::Str(v)
    }
}

/// An object under construction; keys come out in the order they were pushed.
#[derive(Default)]
pub(crate) struct Obj(Vec<(String, Json)>);

impl Obj {
    pub fn new() -> Self {
        Obj(Vec::new())
    }

    pub fn set(mut self, key: &str, v: impl Into<Json>) -> Self {
        self.0.push((key.to_string(), v.into()));
        self
    }

    pub fn push(&mut self, key: &str, v: impl Into<Json>) {
        self.0.push((key.to_string(), v.into()));
    }

    pub fn build(self) -> Json {
        Json::Obj(self.0)
    }
}

impl From<Obj> for Json {
    fn from(o: Obj) -> Self {
        o.build()
    }
}

impl Json {
    pub fn empty_obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// cJSON_Print: objects open with `{` and a newline, keys are indented with tabs and
    /// separated from values by `:\t`; arrays stay on one line with `, ` between elements.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, Some(0));
        s
    }

    /// cJSON_PrintUnformatted: no whitespace at all.
    pub fn compact(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, None);
        s
    }

    fn write(&self, out: &mut String, depth: Option<usize>) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Json::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            Json::Float(v) => write_number(out, *v),
            Json::Str(s) => write_string(out, s),
            Json::Arr(items) => {
                // cJSON counts arrays as a nesting level too, which is what indents the
                // objects inside `"connected": [{`.
                let inner = depth.map(|d| d + 1);
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                        if depth.is_some() {
                            out.push(' ');
                        }
                    }
                    item.write(out, inner);
                }
                out.push(']');
            }
            Json::Obj(kv) => {
                let inner = depth.map(|d| d + 1);
                out.push('{');
                if depth.is_some() {
                    out.push('\n');
                }
                for (i, (k, v)) in kv.iter().enumerate() {
                    if let Some(d) = inner {
                        push_tabs(out, d);
                    }
                    write_string(out, k);
                    out.push(':');
                    if depth.is_some() {
                        out.push('\t');
                    }
                    v.write(out, inner);
                    if i + 1 < kv.len() {
                        out.push(',');
                    }
                    if depth.is_some() {
                        out.push('\n');
                    }
                }
                if let Some(d) = depth {
                    push_tabs(out, d);
                }
                out.push('}');
            }
        }
    }

    /// For callers that want a `serde_json::Value` (keys get sorted there).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(v) => Value::from(*v),
            Json::UInt(v) => Value::from(*v),
            // Non-finite numbers have no JSON form; cJSON prints them as null too.
            Json::Float(v) => serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(kv) => {
                let mut m = serde_json::Map::new();
                for (k, v) in kv {
                    m.insert(k.clone(), v.to_value());
                }
                Value::Object(m)
            }
        }
    }

    pub fn from_value(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Json::UInt(u)
                } else if let Some(i) = n.as_i64() {
                    Json::Int(i)
                } else {
                    Json::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(a) => Json::Arr(a.iter().map(Json::from_value).collect()),
            Value::Object(m) => Json::Obj(m.iter().map(|(k, v)| (k.clone(), Json::from_value(v))).collect()),
        }
    }
}

fn push_tabs(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push('\t');
    }
}

/// A JSON string, escaped as JSON requires (serde_json's escaping, which cJSON's matches for
/// everything iperf3 prints).
pub(crate) fn write_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        // Serializing a &str cannot fail; keep a valid (if lossy) string just in case.
        Err(_) => out.push_str("\"\""),
    }
}

/// A JSON number as cJSON's `print_number` writes it, so our output diffs clean against
/// iperf3's: integral values below 10^15 print as integers (`"start": 0`, not `0.0`; cJSON
/// prints them with `%d` or `%1.15g`, neither adds a fraction or an exponent below 10^15, and
/// -0.0 comes out as `0`); other values in the shortest form that reads back to the same
/// double (cJSON's `%1.15g`, else `%1.17g`, may spell it with more digits or an exponent: the
/// same value). NaN and infinity have no JSON form: they print `null`, as cJSON prints them,
/// rather than a bare `NaN` that every JSON parser would reject.
pub(crate) fn write_number(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str("null");
    } else if v.abs() < 1e15 && (v as i64) as f64 == v {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Json {
        Obj::new()
            .set("start", Obj::new().set("connected", Json::Arr(alloc::vec![Obj::new().set("socket", 5i32).build()])))
            .set("intervals", Json::Arr(Vec::new()))
            .set("end", Json::empty_obj())
            .set("x", 0.5f64)
            .set("z", 2.0f64)
            .build()
    }

    #[test]
    fn pretty_matches_cjson_layout() {
        let s = sample().pretty();
        let want = "{\n\t\"start\":\t{\n\t\t\"connected\":\t[{\n\t\t\t\t\"socket\":\t5\n\t\t\t}]\n\t},\n\
                    \t\"intervals\":\t[],\n\t\"end\":\t{\n\t},\n\t\"x\":\t0.5,\n\t\"z\":\t2\n}";
        assert_eq!(s, want);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["start"]["connected"][0]["socket"], 5);
    }

    #[test]
    fn compact_has_no_whitespace_and_keeps_order() {
        let s = sample().compact();
        assert_eq!(s, r#"{"start":{"connected":[{"socket":5}]},"intervals":[],"end":{},"x":0.5,"z":2}"#);
    }

    #[test]
    fn strings_are_escaped_and_floats_round_trip() {
        let j = Obj::new().set("s", "a\"b\\c\n\u{1}").set("f", 200262402.96723694f64).set("n", f64::NAN).build();
        let s = j.compact();
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["s"], "a\"b\\c\n\u{1}");
        assert_eq!(v["f"].as_f64(), Some(200262402.96723694));
        assert!(v["n"].is_null());
    }

    #[test]
    fn numbers_print_as_cjson_prints_them() {
        let print = |v: f64| {
            let mut s = String::new();
            write_number(&mut s, v);
            s
        };
        assert_eq!(print(0.0), "0");
        assert_eq!(print(-0.0), "0");
        assert_eq!(print(2.0), "2");
        assert_eq!(print(-7.0), "-7");
        assert_eq!(print(999_999_999_999_999.0), "999999999999999");
        assert_eq!(print(0.5), "0.5");
        assert_eq!(print(2.000094), "2.000094");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(print(v), "null");
        }
        // Past 10^15 the digits are Rust's, still a plain JSON number of the same value.
        let big = print(4e15);
        assert_eq!(big.parse::<f64>(), Ok(4e15));
        assert!(big.bytes().all(|b| b.is_ascii_digit()), "{big}");
    }

    #[test]
    fn value_round_trip() {
        let v = sample().to_value();
        let back = Json::from_value(&v);
        assert_eq!(back.to_value(), v);
        assert_eq!(v["x"].as_f64(), Some(0.5));
    }
}
