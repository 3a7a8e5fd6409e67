//! The 12/16-byte header of iperf3's UDP data datagrams. Input: byte 0 picks the counter width,
//! the rest is the datagram. Invariants: the view is refused exactly when the datagram is
//! shorter than the header; a parsed header re-emits to the bytes it was read from (usec in
//! range, time in µs without overflow).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::proto::udp::{Datagram, DatagramError, DatagramRepr, header_len};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, dgram)) = data.split_first() else { return };
    let wide = ctl & 1 == 1;
    let need = header_len(wide);
    let d = match Datagram::new_checked(dgram, wide) {
        Ok(d) => d,
        Err(e) => {
            assert_eq!(e, DatagramError::Truncated { len: dgram.len(), need });
            let _ = e.to_string();
            return;
        }
    };
    assert!(dgram.len() >= need);
    match DatagramRepr::parse(&d) {
        Ok(repr) => {
            assert!(repr.usec < 1_000_000);
            assert!(wide || repr.seq <= u64::from(u32::MAX));
            let mut out = vec![0u8; need];
            repr.emit(&mut out, wide);
            assert_eq!(out[..], dgram[..need], "emit(parse(x)) differs from x");
            assert_eq!(repr.micros(), i64::from(repr.sec) * 1_000_000 + i64::from(repr.usec));
        }
        Err(e) => {
            assert_eq!(e, DatagramError::BadMicros(d.usec()));
            let _ = e.to_string();
        }
    }
});
