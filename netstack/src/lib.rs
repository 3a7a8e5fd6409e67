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
pub mod driver;
pub mod flowlog;
pub mod machine;
pub mod options;
pub mod proto;
pub mod report;
pub mod sim;
pub mod stack;
pub mod stream;
pub mod tcpinfo;
pub mod testrun;
pub mod udp;
pub mod units;
pub mod virtio_net_hdr;
pub mod xen;

pub use smoltcp;

/// The first line of `-v` and `start.version`: the iperf3 release whose protocol and output
/// uniperf follows (tools such as perfSONAR pScheduler take the second word of
/// `iperf3 --version` as the version to decide which options to pass), then uniperf's own.
pub const VERSION: &str = concat!("iperf 3.22 (uniperf ", env!("CARGO_PKG_VERSION"), ", smoltcp 0.14)");

/// `-v`: [`VERSION`], the system, and the optional features, in iperf3's three lines.
pub fn version_text(system_info: &str) -> alloc::string::String {
    alloc::format!(
        "{VERSION}\n{system_info}\nOptional features available: TCP congestion algorithm setting, \
         per-flow TCP logs (smoltcp copies every byte: -Z and --skip-rx-copy change nothing here)\n"
    )
}
