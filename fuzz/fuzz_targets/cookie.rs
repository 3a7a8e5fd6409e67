//! The 37-byte cookie a connection opens with. Invariants: the prefix check is monotone (a
//! prefix refused stays refused with the same reason once more bytes arrive; an accepted
//! whole was accepted at every prefix), `from_wire` accepts exactly the 37-byte inputs the
//! check accepts and keeps their bytes, and generated cookies always pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstack::proto::{COOKIE_LEN, Cookie, check_cookie_prefix};

fuzz_target!(|data: &[u8]| {
    let whole = check_cookie_prefix(data);
    let mut first_err = None;
    for n in 0..=data.len().min(COOKIE_LEN) {
        match check_cookie_prefix(&data[..n]) {
            Ok(()) => assert!(first_err.is_none(), "prefix {n} accepted after a shorter one was refused"),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    assert_eq!(whole.err(), first_err, "the whole input and its first refused prefix disagree");

    match Cookie::from_wire(data) {
        Some(c) => {
            assert_eq!(data.len(), COOKIE_LEN);
            assert!(whole.is_ok());
            assert_eq!(c.as_bytes()[..], data[..]);
            let text = c.to_text();
            assert!(text.len() < COOKIE_LEN && !text.contains('\0'));
            let _ = format!("{c:?}");
        }
        None => assert!(data.len() != COOKIE_LEN || whole.is_err()),
    }
    if let Some(e) = whole.err() {
        let _ = e.to_string();
    }

    let mut random = [0u8; COOKIE_LEN - 1];
    for (r, d) in random.iter_mut().zip(data.iter().cycle()) {
        *r = *d;
    }
    let made = Cookie::from_random(&random);
    assert_eq!(Cookie::from_wire(made.as_bytes()), Some(made));
    assert_eq!(made.to_text().len(), COOKIE_LEN - 1);
});
