//! The parameter JSON a client sends after PARAM_EXCHANGE, as the server decodes it.
//! Invariants: anything accepted is within iperf3's ranges and re-encodes (stock key order and
//! types, our cJSON-style string printer) to JSON that decodes to the same parameters; the
//! figures a server derives from accepted parameters never overflow; every refusal names an
//! iperf3 error code and a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::proto::limits;
use netstack::proto::{Protocol, TestParams};

fuzz_target!(|data: &[u8]| {
    let p = match TestParams::parse(data) {
        Ok(p) => p,
        Err((code, why)) => {
            assert!(!why.is_empty());
            assert!(!code.message().is_empty());
            return;
        }
    };
    assert!(limits::PARALLEL.contains(i64::from(p.parallel)));
    assert!(limits::TIME.contains(i64::from(p.time)) && limits::OMIT.contains(i64::from(p.omit)));
    match p.protocol {
        Protocol::Udp => assert!(p.len == 0 || limits::UDP_LEN.contains(i64::from(p.len))),
        _ => assert!(limits::TCP_LEN.contains(i64::from(p.len))),
    }
    let _ = (p.validate(), p.total_streams(), p.stream_rate(), p.send_limit());
    for i in 0..(p.total_streams() as usize).min(300) {
        let _ = (p.client_sends(i), p.server_sends(i));
    }
    let _ = (p.client_sends_any(), p.client_receives_any(), p.protocol.name());

    let json = p.to_json();
    let again =
        TestParams::parse(json.as_bytes()).unwrap_or_else(|e| panic!("our own encoding is refused: {e:?}\n{json}"));
    assert_eq!(again, p, "decode(encode(p)) != p for {json}");
    assert_eq!(again.to_json(), json);
});
