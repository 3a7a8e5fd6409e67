//! The ranges of iperf3's numeric test parameters, in one place: the command line refuses
//! values outside them (as a stock client does), and the server refuses parameters outside
//! them with the `i_errno` a 3.22 server sends, so a client and a server always agree.

use super::ErrorCode;
use alloc::format;
use alloc::string::String;

/// An accepted range (inclusive) and the error a server answers outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The key in the parameter JSON.
    pub key: &'static str,
    pub min: i64,
    pub max: i64,
    pub code: ErrorCode,
}

impl Limit {
    pub const fn contains(&self, v: i64) -> bool {
        v >= self.min && v <= self.max
    }

    /// `v` if it is in range, else the server's error code and a sentence naming the key.
    pub fn check(&self, v: i64) -> Result<i64, (ErrorCode, String)> {
        if self.contains(v) {
            Ok(v)
        } else {
            Err((self.code, format!("\"{}\" = {v} is outside {}..={}", self.key, self.min, self.max)))
        }
    }
}

/// `-P`: 3.22 refuses 0 as well as more than 128 (`MAX_STREAMS`).
pub const PARALLEL: Limit = Limit { key: "parallel", min: 1, max: 128, code: ErrorCode::NUM_STREAMS };
/// Data streams of one test: `-P` in both directions of `--bidir`.
pub const TOTAL_STREAMS: Limit = Limit { key: "streams", min: 1, max: 256, code: ErrorCode::NUM_STREAMS };
/// `-t`, seconds (`MAX_TIME`).
pub const TIME: Limit = Limit { key: "time", min: 0, max: 86_400, code: ErrorCode::DURATION };
/// `-O`, seconds (`MAX_OMIT_TIME`).
pub const OMIT: Limit = Limit { key: "omit", min: 0, max: 600, code: ErrorCode::OMIT };
/// `-M` (`MAX_MSS`, 32767 since 3.21).
pub const MSS: Limit = Limit { key: "MSS", min: 0, max: 32_767, code: ErrorCode::MSS };
/// `-w`, bytes (`MAX_TCP_BUFFER`).
pub const WINDOW: Limit = Limit { key: "window", min: 0, max: 512 * 1024 * 1024, code: ErrorCode::BUF_SIZE };
/// `-l` for TCP (`MAX_BLOCKSIZE`).
pub const TCP_LEN: Limit = Limit { key: "len", min: 1, max: 1024 * 1024, code: ErrorCode::BLOCK_SIZE };
/// `-l` for UDP: room for the 16-byte header, at most one IPv4 datagram.
pub const UDP_LEN: Limit = Limit { key: "len", min: 16, max: 65_507, code: ErrorCode::UDP_BLOCK_SIZE };
/// The burst in `-b RATE/BURST` (`MAX_BURST`).
pub const BURST: Limit = Limit { key: "burst", min: 1, max: 1000, code: ErrorCode::BURST };
/// `-S`.
pub const TOS: Limit = Limit { key: "TOS", min: 0, max: 255, code: ErrorCode::BAD_TOS };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_name_the_key() {
        assert_eq!(PARALLEL.check(128), Ok(128));
        let (code, why) = PARALLEL.check(0).unwrap_err();
        assert_eq!(code, ErrorCode::NUM_STREAMS);
        assert!(why.contains("\"parallel\" = 0"), "{why}");
        assert!(TIME.check(-1).is_err());
        assert_eq!(UDP_LEN.check(15).unwrap_err().0, ErrorCode::UDP_BLOCK_SIZE);
    }
}
