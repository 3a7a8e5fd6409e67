//! Protocol errors: what our parsers reject, and iperf3's `i_errno` codes, which travel in
//! SERVER_ERROR and decide what a stock client prints.

use alloc::string::String;
use core::fmt;

/// Malformed or unacceptable protocol input. Each variant names what was wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtoError {
    /// A JSON frame announced zero bytes.
    EmptyFrame,
    /// A JSON frame announced more bytes than we accept for this message.
    FrameTooLarge { len: u32, max: u32 },
    /// The frame body is not valid JSON (serde_json's message).
    BadJson(String),
    /// The JSON is valid but not an object.
    NotAnObject,
    /// A mandatory key is missing.
    MissingKey(&'static str),
    /// A key has the wrong JSON type.
    BadType { key: &'static str, expected: &'static str },
    /// A key has a value outside what we accept.
    BadValue { key: &'static str, why: String },
    /// A state byte no iperf3 version sends.
    UnknownState(u8),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::EmptyFrame => write!(f, "JSON message of length 0"),
            ProtoError::FrameTooLarge { len, max } => {
                write!(f, "JSON message of {len} bytes exceeds the limit of {max} bytes")
            }
            ProtoError::BadJson(e) => write!(f, "malformed JSON: {e}"),
            ProtoError::NotAnObject => write!(f, "JSON message is not an object"),
            ProtoError::MissingKey(k) => write!(f, "JSON message lacks the mandatory key \"{k}\""),
            ProtoError::BadType { key, expected } => {
                write!(f, "JSON key \"{key}\" should be {expected}")
            }
            ProtoError::BadValue { key, why } => write!(f, "JSON key \"{key}\": {why}"),
            ProtoError::UnknownState(b) => write!(f, "unknown control state byte {b:#04x}"),
        }
    }
}

/// iperf3's `i_errno` values (same numbering in 3.12 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub i32);

impl ErrorCode {
    pub const SERVER_ONLY: ErrorCode = ErrorCode(3);
    pub const CLIENT_ONLY: ErrorCode = ErrorCode(4);
    pub const DURATION: ErrorCode = ErrorCode(5);
    pub const NUM_STREAMS: ErrorCode = ErrorCode(6);
    pub const BLOCK_SIZE: ErrorCode = ErrorCode(7);
    pub const BUF_SIZE: ErrorCode = ErrorCode(8);
    pub const MSS: ErrorCode = ErrorCode(10);
    pub const OMIT: ErrorCode = ErrorCode(12);
    pub const UNIMPLEMENTED: ErrorCode = ErrorCode(13);
    pub const BURST: ErrorCode = ErrorCode(15);
    pub const UDP_BLOCK_SIZE: ErrorCode = ErrorCode(20);
    pub const BAD_TOS: ErrorCode = ErrorCode(21);
    pub const REVERSE_BIDIR: ErrorCode = ErrorCode(25);
    pub const TOTAL_RATE: ErrorCode = ErrorCode(27);
    pub const MAX_SERVER_DURATION: ErrorCode = ErrorCode(37);
    pub const CONNECT: ErrorCode = ErrorCode(103);
    pub const RECV_COOKIE: ErrorCode = ErrorCode(106);
    pub const CTRL_WRITE: ErrorCode = ErrorCode(107);
    pub const CTRL_READ: ErrorCode = ErrorCode(108);
    pub const CTRL_CLOSE: ErrorCode = ErrorCode(109);
    pub const MESSAGE: ErrorCode = ErrorCode(110);
    pub const SEND_PARAMS: ErrorCode = ErrorCode(113);
    pub const RECV_PARAMS: ErrorCode = ErrorCode(114);
    pub const SEND_RESULTS: ErrorCode = ErrorCode(116);
    pub const RECV_RESULTS: ErrorCode = ErrorCode(117);
    pub const CLIENT_TERM: ErrorCode = ErrorCode(119);
    pub const SERVER_TERM: ErrorCode = ErrorCode(120);
    pub const ACCESS_DENIED: ErrorCode = ErrorCode(121);
    pub const PROTOCOL: ErrorCode = ErrorCode(131);
    pub const SET_CONGESTION: ErrorCode = ErrorCode(134);
    pub const SET_BUF2: ErrorCode = ErrorCode(141);
    pub const NO_MSG: ErrorCode = ErrorCode(144);
    /// iperf3's IECREATESTREAM; sent with errno ENOMEM when a stream's buffers do not fit.
    pub const CREATE_STREAM: ErrorCode = ErrorCode(200);
    pub const STREAM_CONNECT: ErrorCode = ErrorCode(203);
    pub const STREAM_ACCEPT: ErrorCode = ErrorCode(204);
    pub const STREAM_WRITE: ErrorCode = ErrorCode(205);
    pub const STREAM_READ: ErrorCode = ErrorCode(206);
    pub const SERVER_DURATION_EXPIRED: ErrorCode = ErrorCode(160);
    pub const STREAM_ID: ErrorCode = ErrorCode(208);

    /// The text iperf3 3.22 prints for this code (`iperf_strerror`), or a generic line.
    pub fn message(self) -> &'static str {
        match self.0 {
            3 => "some option you are trying to set is server only",
            4 => "some option you are trying to set is client only",
            5 => "test duration valid values are 0 to 86400 seconds",
            6 => "invalid number of parallel streams (min = 1, max = 128)",
            7 => "block size too large (maximum = 1048576 bytes)",
            8 => "socket buffer size too large (maximum = 536870912 bytes)",
            10 => "TCP MSS too large (maximum = 32767 bytes)",
            12 => "bogus value for --omit (maximum = 600 seconds)",
            13 => "an option you are trying to set is not implemented yet",
            15 => "invalid burst count (maximum = 1000)",
            20 => "block size invalid (minimum = 16 bytes, maximum = 65507 bytes)",
            21 => "bad TOS value (must be between 0 and 255 inclusive)",
            25 => "cannot be both reverse and bidirectional",
            27 => "total required bandwidth is larger than server limit",
            37 => "client's requested duration exceeds the server's maximum permitted limit",
            103 => "unable to connect to server",
            106 => "unable to receive cookie at server",
            107 => "unable to write to the control socket",
            108 => "unable to read from the control socket",
            109 => "control socket has closed unexpectedly",
            110 => "received an unknown control message (ensure other side is iperf3 and not iperf)",
            113 => "unable to send parameters to server",
            114 => "unable to receive parameters from client",
            116 => "unable to send results",
            117 => "unable to receive results",
            119 => "the client has terminated",
            120 => "the server has terminated",
            121 => "the server is busy running a test. try again later",
            131 => "protocol does not exist",
            134 => "unable to set TCP_CONGESTION: Supplied congestion control algorithm not supported on this host",
            141 => "socket buffer size not set correctly",
            142 => "test authorization failed",
            144 => "idle timeout for receiving data",
            160 => "server test duration expired",
            200 => "unable to create a new stream",
            203 => "unable to connect stream",
            204 => "unable to accept stream connection",
            205 => "unable to write to stream socket",
            206 => "unable to read from stream socket",
            208 => "stream has an invalid id",
            _ => "unknown error",
        }
    }
}

/// What follows a SERVER_ERROR state byte (0xfe): iperf3's `i_errno` and the OS `errno`, each
/// an int32 in network byte order. 3.12-3.18 servers send only the first after an
/// authentication failure, so a reader accepts 4 bytes as well as 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerError {
    pub code: ErrorCode,
    pub errno: i32,
}

impl ServerError {
    /// Bytes after the state byte.
    pub const LEN: usize = 8;

    pub fn new(code: ErrorCode) -> Self {
        ServerError { code, errno: 0 }
    }

    /// Linux's ENOMEM, the errno iperf3 sends when it cannot allocate a stream.
    pub const ENOMEM: i32 = 12;

    /// The whole message: state byte, i_errno, errno.
    pub fn to_wire(&self) -> [u8; 1 + Self::LEN] {
        let mut out = [0u8; 1 + Self::LEN];
        out[0] = super::ControlState::ServerError.to_byte();
        out[1..5].copy_from_slice(&self.code.0.to_be_bytes());
        out[5..9].copy_from_slice(&self.errno.to_be_bytes());
        out
    }

    /// Reads the body (the bytes after the state byte): 8 bytes, or the first 4 of them when
    /// the server closed after i_errno. None if there are fewer than 4.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let int = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match body.len() {
            0..4 => None,
            4..8 => Some(ServerError { code: ErrorCode(int(body)), errno: 0 }),
            _ => Some(ServerError { code: ErrorCode(int(body)), errno: int(&body[4..]) }),
        }
    }
}

impl fmt::Display for ServerError {
    /// What a client says, e.g. `server error - protocol does not exist`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server error - {}", self.code.message())?;
        if self.errno != 0 {
            write!(f, " (errno {})", self.errno)?;
        }
        Ok(())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message())
    }
}

#[cfg(test)]
mod server_error_tests {
    use super::*;

    #[test]
    fn captured_server_error_round_trips() {
        // `-w 100M` over rmem_max on a 3.12 server: fe 0000008d 00000000.
        let wire = [0xfe, 0, 0, 0, 0x8d, 0, 0, 0, 0];
        let e = ServerError::parse(&wire[1..]).unwrap();
        assert_eq!(e, ServerError::new(ErrorCode::SET_BUF2));
        assert_eq!(e.to_wire(), wire);
        assert_eq!(alloc::format!("{e}"), "server error - socket buffer size not set correctly");
    }

    #[test]
    fn short_bodies() {
        // 3.12-3.18 after an authentication failure: only i_errno, then FIN.
        assert_eq!(ServerError::parse(&[0, 0, 0, 142]).unwrap().code, ErrorCode(142));
        assert!(ServerError::parse(&[0, 0, 0]).is_none());
    }
}
