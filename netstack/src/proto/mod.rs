//! The iperf3 control protocol: cookie, state bytes, length-framed JSON, the parameter and
//! results messages, and the error codes a server may send. Parsing never panics on hostile
//! bytes; it returns a [`ProtoError`] that names what was wrong.

mod cookie;
mod error;
mod frame;
pub mod iperf2;
mod json;
pub mod limits;
mod params;
mod results;
mod state;
pub mod udp;

pub use cookie::{COOKIE_LEN, Cookie, CookieError, check_cookie_prefix};
pub use error::{ErrorCode, ProtoError, ServerError};
pub use frame::{FrameReader, MAX_PARAMS_LEN, MAX_RESULTS_LEN, encode_frame};
pub use params::{Protocol, TestParams};
pub use results::{StreamResult, TestResults};
pub use state::ControlState;

/// The default iperf3 port.
pub const DEFAULT_PORT: u16 = 5201;
/// The version we announce in `client_version` and `-J` output.
pub const IPERF_VERSION: &str = "3.22";
/// Default TCP block size (iperf3's `DEFAULT_TCP_BLKSIZE`).
pub const DEFAULT_TCP_BLKSIZE: u32 = 128 * 1024;
/// Largest TCP block size iperf3 accepts (`MAX_BLOCKSIZE`).
pub const MAX_TCP_BLKSIZE: u32 = 1024 * 1024;
/// iperf3's UDP datagram length when the path MSS is unknown (`DEFAULT_UDP_BLKSIZE`).
pub const DEFAULT_UDP_BLKSIZE: u32 = 1460;
/// iperf3's default UDP rate (`UDP_RATE`), bit/s per stream.
pub const DEFAULT_UDP_RATE: u64 = 1024 * 1024;
/// Largest number of parallel streams (`MAX_STREAMS`).
pub const MAX_STREAMS: u32 = 128;
