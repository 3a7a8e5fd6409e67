//! One-byte control states. The server drives the state machine; the client sends only
//! TEST_END, IPERF_DONE and CLIENT_TERMINATE.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlState {
    TestStart,
    TestRunning,
    ResultRequest,
    TestEnd,
    StreamBegin,
    StreamRunning,
    StreamEnd,
    AllStreamsEnd,
    ParamExchange,
    CreateStreams,
    ServerTerminate,
    ClientTerminate,
    ExchangeResults,
    DisplayResults,
    IperfStart,
    IperfDone,
    AccessDenied,
    ServerError,
}

impl ControlState {
    /// Decodes a state byte (a signed char on the wire); unknown values give `None`.
    pub fn from_byte(b: u8) -> Option<Self> {
        use ControlState::*;
        Some(match b as i8 {
            1 => TestStart,
            2 => TestRunning,
            3 => ResultRequest,
            4 => TestEnd,
            5 => StreamBegin,
            6 => StreamRunning,
            7 => StreamEnd,
            8 => AllStreamsEnd,
            9 => ParamExchange,
            10 => CreateStreams,
            11 => ServerTerminate,
            12 => ClientTerminate,
            13 => ExchangeResults,
            14 => DisplayResults,
            15 => IperfStart,
            16 => IperfDone,
            -1 => AccessDenied,
            -2 => ServerError,
            _ => return None,
        })
    }

    pub fn to_byte(self) -> u8 {
        use ControlState::*;
        let v: i8 = match self {
            TestStart => 1,
            TestRunning => 2,
            ResultRequest => 3,
            TestEnd => 4,
            StreamBegin => 5,
            StreamRunning => 6,
            StreamEnd => 7,
            AllStreamsEnd => 8,
            ParamExchange => 9,
            CreateStreams => 10,
            ServerTerminate => 11,
            ClientTerminate => 12,
            ExchangeResults => 13,
            DisplayResults => 14,
            IperfStart => 15,
            IperfDone => 16,
            AccessDenied => -1,
            ServerError => -2,
        };
        v as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_bytes_decode() {
        // The control bytes of a captured 3.12 TCP test, in order.
        let seq = [0x09, 0x0a, 0x01, 0x02, 0x04, 0x0d, 0x0e, 0x10];
        let want = [
            ControlState::ParamExchange,
            ControlState::CreateStreams,
            ControlState::TestStart,
            ControlState::TestRunning,
            ControlState::TestEnd,
            ControlState::ExchangeResults,
            ControlState::DisplayResults,
            ControlState::IperfDone,
        ];
        for (b, w) in seq.iter().zip(want.iter()) {
            assert_eq!(ControlState::from_byte(*b), Some(*w));
            assert_eq!(w.to_byte(), *b);
        }
        assert_eq!(ControlState::from_byte(0xff), Some(ControlState::AccessDenied));
        assert_eq!(ControlState::from_byte(0xfe), Some(ControlState::ServerError));
    }

    #[test]
    fn unknown_bytes_are_rejected() {
        for b in [0u8, 17, 0x7f, 0x80, 0xfd] {
            assert_eq!(ControlState::from_byte(b), None, "byte {b:#x}");
        }
    }
}
