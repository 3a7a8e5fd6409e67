//! The `no_std` core of uniperf: the iperf3 wire protocol, smoltcp set-up, data-stream
//! accounting, the report model and its writers, and a simulated link. Everything here is
//! driven by the caller's clock and owns no thread or OS resource, so the same code runs in
//! the unikernel, on a Linux TAP device and inside a simulation.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod conn;
pub mod flowlog;
pub mod flowlog_ship;
pub mod host;
pub mod options;
pub mod platform;
pub mod proto;
pub mod report;
pub mod sim;
pub mod stack;
pub mod stream;
pub mod tcpinfo;
pub mod units;

pub use smoltcp;
