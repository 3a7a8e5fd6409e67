//! The length-framed JSON of the control connection, fed in arbitrary pieces, plus the state
//! byte and the SERVER_ERROR body that share the connection with it.
//!
//! Input: byte 0 picks the cap (the 8 KiB parameter cap or the 16 MiB results cap) and seeds
//! the piece sizes; the rest is the wire. Invariants: the reader never consumes more than it is
//! given, never buffers more than the cap, gives the same answer however the bytes are cut,
//! and a body it returns re-encodes to exactly the bytes it consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::proto::{ControlState, FrameReader, MAX_PARAMS_LEN, MAX_RESULTS_LEN, ServerError, encode_frame};

/// Feeds `wire` in pieces of the sizes `cut` yields; returns (consumed, outcome).
fn read(max: u32, wire: &[u8], mut cut: impl FnMut() -> usize) -> (usize, Option<Result<Vec<u8>, String>>) {
    let mut r = FrameReader::new(max);
    let mut used = 0;
    while used < wire.len() {
        let piece = &wire[used..(used + cut().max(1)).min(wire.len())];
        let (n, out) = r.feed(piece);
        assert!(n <= piece.len(), "consumed {n} of a {}-byte piece", piece.len());
        used += n;
        if let Some(out) = out {
            return (used, Some(out.map_err(|e| e.to_string())));
        }
        assert_eq!(n, piece.len(), "an unfinished frame must take every byte it is given");
        assert!(r.started());
    }
    (used, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, wire)) = data.split_first() else { return };
    let max = if ctl & 1 == 0 { MAX_PARAMS_LEN } else { MAX_RESULTS_LEN };
    let whole = read(max, wire, || usize::MAX);
    let mut seed = u32::from(ctl >> 1) + 1;
    let pieces = read(max, wire, || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 16) as usize % 9
    });
    assert_eq!(whole, pieces, "the outcome depends on how the bytes were cut");
    if let (used, Some(Ok(body))) = &whole {
        assert!(!body.is_empty() && body.len() <= max as usize);
        assert_eq!(encode_frame(body), wire[..*used]);
    }

    // The single bytes and the error body read on the same connection.
    for &b in wire.iter().take(64) {
        if let Some(s) = ControlState::from_byte(b) {
            assert_eq!(s.to_byte(), b);
        }
    }
    match ServerError::parse(wire) {
        Some(e) => {
            assert!(wire.len() >= 4);
            let _ = e.to_string();
            if wire.len() >= ServerError::LEN {
                assert_eq!(e.to_wire()[1..], wire[..ServerError::LEN]);
            }
        }
        None => assert!(wire.len() < 4),
    }
});
