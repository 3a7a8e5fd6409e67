//! The 37-byte test cookie: 36 printable characters and a NUL. Peers may send any bytes
//! (3.0–3.1 used hostnames and timestamps), so a received cookie is treated as opaque.

use alloc::string::String;

/// Bytes of a cookie on the wire, NUL included.
pub const COOKIE_LEN: usize = 37;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cookie([u8; COOKIE_LEN]);

impl Cookie {
    /// Builds a cookie the way iperf3 does: each random byte picks from a base32 alphabet.
    pub fn from_random(random: &[u8; COOKIE_LEN - 1]) -> Self {
        let mut bytes = [0u8; COOKIE_LEN];
        for (out, r) in bytes.iter_mut().zip(random.iter()) {
            *out = ALPHABET[(*r % 32) as usize];
        }
        Cookie(bytes)
    }

    /// Takes 37 received bytes as they are. Returns `None` only if the length is wrong.
    /// The 37 bytes a connection opened with, if they are an iperf3 cookie (see
    /// [`check_cookie_prefix`]).
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; COOKIE_LEN] = bytes.try_into().ok()?;
        check_cookie_prefix(&arr).ok()?;
        Some(Cookie(arr))
    }

    pub fn as_bytes(&self) -> &[u8; COOKIE_LEN] {
        &self.0
    }

    /// The printable part (up to the first NUL), for `start.cookie` in JSON output.
    /// Non-UTF-8 bytes from odd peers are replaced rather than trusted.
    pub fn to_text(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COOKIE_LEN);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

/// Why the first bytes of a connection cannot be an iperf3 cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieError {
    /// A byte of the 36-character text is not printable ASCII.
    NotText { offset: usize, byte: u8 },
    /// The 37th byte is not the terminating NUL.
    NoTerminator(u8),
}

impl core::fmt::Display for CookieError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CookieError::NotText { offset, byte } => {
                write!(f, "byte {offset} of the cookie is {byte:#04x}, not printable text (not an iperf3 client?)")
            }
            CookieError::NoTerminator(b) => {
                write!(f, "the cookie ends in {b:#04x} instead of NUL (not an iperf3 client?)")
            }
        }
    }
}

/// Checks the bytes of a cookie received so far (any prefix of the 37). Every iperf3 since 3.0
/// sends 36 printable characters (base32 since 3.2, `host.secs.usecs…` before) and a NUL, so
/// anything else — an iperf 2 header, a port scanner, HTTP — is known after at most 37 bytes,
/// often after the first.
pub fn check_cookie_prefix(bytes: &[u8]) -> Result<(), CookieError> {
    for (offset, &byte) in bytes.iter().enumerate().take(COOKIE_LEN) {
        if offset == COOKIE_LEN - 1 {
            if byte != 0 {
                return Err(CookieError::NoTerminator(byte));
            }
        } else if !(0x20..0x7f).contains(&byte) {
            return Err(CookieError::NotText { offset, byte });
        }
    }
    Ok(())
}

impl core::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Cookie({})", self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_cookie_round_trips() {
        // From a real iperf3 3.12 control connection.
        let wire = b"ektrduatcpqny75w2v7n5idytacs7sr5smqk\0";
        let c = Cookie::from_wire(wire).unwrap();
        assert_eq!(c.as_bytes(), wire);
        assert_eq!(c.to_text(), "ektrduatcpqny75w2v7n5idytacs7sr5smqk");
    }

    #[test]
    fn generated_cookie_uses_base32_and_ends_in_nul() {
        let mut random = [0u8; 36];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        let c = Cookie::from_random(&random);
        assert_eq!(c.as_bytes()[36], 0);
        assert!(c.as_bytes()[..36].iter().all(|b| ALPHABET.contains(b)));
    }

    #[test]
    fn old_style_cookies_are_accepted() {
        // 3.0/3.1 clients: hostname.secs.usecs.randhex, cut to 36 characters.
        let wire = *b"SVR028.1555493204.059114.5f55c3f5abc\0";
        assert!(Cookie::from_wire(&wire).is_some());
    }

    #[test]
    fn non_cookies_are_named_early() {
        // iperf 2 starts with a binary header (flags 0x80000000 …).
        assert_eq!(check_cookie_prefix(&[0x80, 0, 0, 0]), Err(CookieError::NotText { offset: 0, byte: 0x80 }));
        // iperf 2 without a header sends its 0123456789… payload: no NUL at byte 36.
        let digits: alloc::vec::Vec<u8> = (0..37).map(|i| b'0' + (i % 10) as u8).collect();
        assert_eq!(check_cookie_prefix(&digits[..36]), Ok(()));
        assert_eq!(check_cookie_prefix(&digits), Err(CookieError::NoTerminator(b'6')));
        assert!(Cookie::from_wire(&digits).is_none());
        let http = b"GET / HTTP/1.1\r\n";
        assert!(matches!(check_cookie_prefix(http), Err(CookieError::NotText { offset: 14, .. })));
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert!(Cookie::from_wire(b"short").is_none());
        assert!(Cookie::from_wire(&[b'a'; 38]).is_none());
    }
}
