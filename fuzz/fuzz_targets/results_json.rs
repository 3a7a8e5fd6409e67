//! The results JSON both ends exchange at the end of a test. Invariants: anything accepted
//! re-encodes to JSON that decodes to the same results (floats through the cJSON-style number
//! printer, strings through its string printer, the embedded server output through
//! serde_json), and the stream list never holds more entries than the input could describe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::proto::TestResults;

fuzz_target!(|data: &[u8]| {
    let r = match TestResults::parse(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // Each stream object takes at least `{"id":0,...}`: far more than 16 bytes.
    assert!(r.streams.len() <= data.len() / 16);
    let json = r.to_json();
    let again =
        TestResults::parse(json.as_bytes()).unwrap_or_else(|e| panic!("our own encoding is refused: {e}\n{json}"));
    assert_eq!(again, r, "decode(encode(r)) != r for {json}");
});
