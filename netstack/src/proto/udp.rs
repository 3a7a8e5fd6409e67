//! iperf3's UDP data plane on the wire: the datagrams that set up a stream, and the header
//! every data datagram starts with (send time, then a sequence number counted from 1).
//!
//! Set-up: the client sends [`CONNECT_MSG`] from the stream's port to the server's; the server
//! answers [`CONNECT_REPLY`] (servers before 3.1 answered [`LEGACY_CONNECT_REPLY`]). iperf3
//! writes these as host-order 32-bit integers, so the bytes below are what x86 peers send.
//!
//! A data datagram: `sec` and `usec` (u32, big-endian) of the sender's monotonic clock, then
//! the sequence number, u32 or — with `--udp-counters-64bit` — u64, big-endian; payload after.
//! [`Datagram`] is a checked view over received bytes; [`DatagramRepr`] parses and emits it.

/// "9876" as iperf3 sends it: the first datagram of a UDP stream, client to server.
pub const CONNECT_MSG: [u8; 4] = *b"9876";
/// "6789": the server's answer.
pub const CONNECT_REPLY: [u8; 4] = *b"6789";
/// 987654321 in little-endian, the answer of servers before iperf3 3.1.
pub const LEGACY_CONNECT_REPLY: [u8; 4] = 987_654_321u32.to_le_bytes();

/// Header length with 32-bit sequence numbers.
pub const HEADER_LEN_32: usize = 12;
/// Header length with 64-bit sequence numbers (`--udp-counters-64bit`).
pub const HEADER_LEN_64: usize = 16;

/// Header length for the counter width.
pub const fn header_len(counters_64bit: bool) -> usize {
    if counters_64bit { HEADER_LEN_64 } else { HEADER_LEN_32 }
}

/// Why a datagram is not an iperf3 data datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramError {
    /// Shorter than the header.
    Truncated { len: usize, need: usize },
    /// `usec` is a million or more.
    BadMicros(u32),
}

impl core::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DatagramError::Truncated { len, need } => {
                write!(f, "a {len}-byte datagram is shorter than the {need}-byte iperf3 header")
            }
            DatagramError::BadMicros(u) => write!(f, "usec field {u} is not below 1000000"),
        }
    }
}

/// A read-only view of a received data datagram whose length has been checked.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<T: AsRef<[u8]>> {
    buffer: T,
    counters_64bit: bool,
}

impl<T: AsRef<[u8]>> Datagram<T> {
    /// Checks that `buffer` holds at least the header for the counter width.
    pub fn new_checked(buffer: T, counters_64bit: bool) -> Result<Self, DatagramError> {
        let need = header_len(counters_64bit);
        let len = buffer.as_ref().len();
        if len < need {
            return Err(DatagramError::Truncated { len, need });
        }
        Ok(Datagram { buffer, counters_64bit })
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    pub fn sec(&self) -> u32 {
        self.u32_at(0)
    }

    pub fn usec(&self) -> u32 {
        self.u32_at(4)
    }

    pub fn seq(&self) -> u64 {
        if self.counters_64bit {
            (u64::from(self.u32_at(8)) << 32) | u64::from(self.u32_at(12))
        } else {
            u64::from(self.u32_at(8))
        }
    }
}

/// A data datagram's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramRepr {
    pub sec: u32,
    pub usec: u32,
    /// 1 for the first datagram of a stream.
    pub seq: u64,
}

impl DatagramRepr {
    pub fn parse<T: AsRef<[u8]>>(d: &Datagram<T>) -> Result<Self, DatagramError> {
        let usec = d.usec();
        if usec >= 1_000_000 {
            return Err(DatagramError::BadMicros(usec));
        }
        Ok(DatagramRepr { sec: d.sec(), usec, seq: d.seq() })
    }

    /// Writes the header at the start of `buf`, which must be at least [`header_len`] long.
    /// A 32-bit counter wraps, as iperf3's does.
    pub fn emit(&self, buf: &mut [u8], counters_64bit: bool) {
        buf[0..4].copy_from_slice(&self.sec.to_be_bytes());
        buf[4..8].copy_from_slice(&self.usec.to_be_bytes());
        if counters_64bit {
            buf[8..16].copy_from_slice(&self.seq.to_be_bytes());
        } else {
            buf[8..12].copy_from_slice(&(self.seq as u32).to_be_bytes());
        }
    }

    /// The send time in microseconds.
    pub fn micros(&self) -> i64 {
        i64::from(self.sec) * 1_000_000 + i64::from(self.usec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_bytes_are_what_x86_iperf3_sends() {
        assert_eq!(CONNECT_MSG, [0x39, 0x38, 0x37, 0x36]);
        assert_eq!(CONNECT_REPLY, [0x36, 0x37, 0x38, 0x39]);
        assert_eq!(LEGACY_CONNECT_REPLY, [0xb1, 0x68, 0xde, 0x3a]);
    }

    #[test]
    fn headers_round_trip_in_both_widths() {
        let r = DatagramRepr { sec: 0x0102_0304, usec: 999_999, seq: 0x1_0000_0002 };
        let mut buf = [0u8; 20];
        r.emit(&mut buf, true);
        assert_eq!(&buf[..4], &[1, 2, 3, 4]);
        assert_eq!(DatagramRepr::parse(&Datagram::new_checked(&buf[..], true).unwrap()), Ok(r));
        r.emit(&mut buf, false);
        let narrow = DatagramRepr::parse(&Datagram::new_checked(&buf[..12], false).unwrap()).unwrap();
        assert_eq!(narrow.seq, 2, "the 32-bit counter wraps");
    }

    #[test]
    fn short_or_odd_datagrams_are_refused() {
        assert_eq!(
            Datagram::new_checked(&[0u8; 11][..], false).unwrap_err(),
            DatagramError::Truncated { len: 11, need: 12 }
        );
        assert!(Datagram::new_checked(&[0u8; 12][..], true).is_err());
        let mut buf = [0u8; 12];
        buf[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
        let d = Datagram::new_checked(&buf[..], false).unwrap();
        assert_eq!(DatagramRepr::parse(&d), Err(DatagramError::BadMicros(1_000_000)));
        for n in 0..40 {
            let junk = [0xffu8; 40];
            if let Ok(d) = Datagram::new_checked(&junk[..n], n >= 16) {
                let _ = DatagramRepr::parse(&d);
            }
        }
    }
}
