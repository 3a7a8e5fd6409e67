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
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; COOKIE_LEN] = bytes.try_into().ok()?;
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
        // From a real iperf3 3.12 control connection (research notes §1.1).
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
    fn wrong_length_is_rejected() {
        assert!(Cookie::from_wire(b"short").is_none());
        assert!(Cookie::from_wire(&[b'a'; 38]).is_none());
    }
}
