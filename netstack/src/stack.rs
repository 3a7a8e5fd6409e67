//! smoltcp set-up shared by every platform: the interface, TCP sockets sized for throughput,
//! and the congestion-control choice behind `-C`.

use alloc::vec::Vec;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// Buffer for a data socket's busy direction. Beyond 1 MiB smoltcp on a 1500-MTU TAP gains
/// little (7.0 vs 7.4–7.8 Gbit/s measured with 1 and 4 MiB before TSO); 4 MiB covers larger
/// bandwidth-delay products and gives window scale 7.
pub const DATA_BUF: usize = 4 * 1024 * 1024;
/// Buffer for a data socket's idle direction (the ACK-only or receive-nothing side).
pub const IDLE_BUF: usize = 16 * 1024;
/// Control connections carry a few hundred bytes each way, results at most a few hundred KiB
/// (we queue outgoing bytes ourselves, so this bounds nothing important).
pub const CONTROL_BUF: usize = 64 * 1024;
/// All data-socket buffers of one test together stay under this, however large `-P` is.
pub const DATA_BUF_BUDGET: usize = 256 * 1024 * 1024;

/// Address plan of one smoltcp interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub mac: EthernetAddress,
    pub ip: Ipv4Cidr,
    pub gateway: Option<Ipv4Address>,
}

/// Builds an Ethernet interface with one IPv4 address and an optional default route.
pub fn build_interface<D: Device + ?Sized>(device: &mut D, net: &NetConfig, now: Instant, seed: u64) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(net.mac));
    config.random_seed = seed;
    let mut iface = Interface::new(config, device, now);
    iface.update_ip_addrs(|addrs| {
        // A fresh interface has room for IFACE_MAX_ADDR_COUNT (2) addresses.
        let _ = addrs.push(IpCidr::Ipv4(net.ip));
    });
    if let Some(gw) = net.gateway {
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
    }
    iface
}

/// One poll of the interface, like [`Interface::poll`] but reading the device again after every
/// egress pass instead of only before the first. smoltcp's `poll` writes a whole window (one
/// segment per socket per pass, dozens of 64 KiB super-segments) before it looks at the ACKs
/// that arrived meanwhile; on TAP the kernel ACKs inside our write(2), so those ACKs waited a
/// whole batch (~250 µs at 40 Gbit/s) to be read, the flow probe timed that wait as RTT, and
/// the window opened late. `now` is read before each step so timers and stamps stay fresh.
///
/// It returns after the egress pass that follows a connection request (`syn_seen`, asked
/// after each frame a socket took), so the role runs before more frames are read and can put
/// a new listener where one was taken (smoltcp has no backlog: reading on would answer a
/// burst of connects with RSTs).
pub fn poll_interleaved<D: Device + ?Sized>(
    iface: &mut Interface,
    device: &mut D,
    sockets: &mut SocketSet<'_>,
    mut now: impl FnMut() -> Instant,
    mut syn_seen: impl FnMut(&D) -> bool,
) -> PollResult {
    let mut result = PollResult::None;
    iface.poll_maintenance(now());
    loop {
        let mut ingress = false;
        let mut syn = false;
        loop {
            match iface.poll_ingress_single(now(), device, sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => ingress = true,
                PollIngressSingleResult::SocketStateChanged => {
                    ingress = true;
                    result = PollResult::SocketStateChanged;
                    if syn_seen(device) {
                        syn = true;
                        break;
                    }
                }
            }
        }
        match iface.poll_egress(now(), device, sockets) {
            PollResult::SocketStateChanged => result = PollResult::SocketStateChanged,
            PollResult::None if !ingress => return result,
            PollResult::None => {}
        }
        if syn {
            return result;
        }
    }
}

/// A locally administered MAC derived from the IP, so two stacks never collide by accident.
pub fn mac_for(ip: Ipv4Address, salt: u8) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([0x02, salt, o[0], o[1], o[2], o[3]])
}

/// `-C`: the congestion controllers smoltcp offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    None,
    Reno,
    /// Needs smoltcp's `std` (it uses f64 maths): host builds only.
    Cubic,
}

impl Congestion {
    /// The default: Cubic where it builds, else Reno. Without a controller a smoltcp sender
    /// blasts full windows into queues (smoltcp 0.14 sends a whole window at once).
    pub fn default_for_build() -> Self {
        if cfg!(feature = "std") { Congestion::Cubic } else { Congestion::Reno }
    }

    pub fn parse(name: &str) -> Result<Self, alloc::string::String> {
        match name {
            "none" => Ok(Congestion::None),
            "reno" => Ok(Congestion::Reno),
            "cubic" if cfg!(feature = "std") => Ok(Congestion::Cubic),
            "cubic" => Err("cubic is not available in this build (smoltcp's Cubic needs std); use reno or none".into()),
            other => {
                Err(alloc::format!("unsupported congestion control algorithm '{other}' (supported: reno, cubic, none)"))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Congestion::None => "none",
            Congestion::Reno => "reno",
            Congestion::Cubic => "cubic",
        }
    }

    fn to_smoltcp(self) -> tcp::CongestionControl {
        match self {
            Congestion::None => tcp::CongestionControl::None,
            Congestion::Reno => tcp::CongestionControl::Reno,
            #[cfg(feature = "std")]
            Congestion::Cubic => tcp::CongestionControl::Cubic,
            #[cfg(not(feature = "std"))]
            Congestion::Cubic => tcp::CongestionControl::Reno,
        }
    }
}

/// Socket options for one TCP socket.
#[derive(Clone, Copy, Debug)]
pub struct SocketSpec {
    pub rx: usize,
    pub tx: usize,
    pub congestion: Congestion,
    pub nodelay: bool,
}

impl SocketSpec {
    pub fn control() -> Self {
        SocketSpec { rx: CONTROL_BUF, tx: CONTROL_BUF, congestion: Congestion::Reno, nodelay: true }
    }
}

pub fn tcp_socket(spec: &SocketSpec) -> tcp::Socket<'static> {
    match try_tcp_socket(spec) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// `n` zero bytes, or an error naming `what` when the heap cannot give them: per-test
/// buffers come from here, so a test that does not fit is refused instead of ending the
/// process (or the unikernel) with an allocation failure.
pub fn try_zeroed<T: Clone>(n: usize, zero: T, what: &str) -> Result<Vec<T>, alloc::string::String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        alloc::format!(
            "out of memory: cannot allocate {} KiB for {what}",
            (n * core::mem::size_of::<T>()).div_ceil(1024)
        )
    })?;
    v.resize(n, zero);
    Ok(v)
}

/// Takes out of `listeners` every socket that has left the LISTEN state (a SYN arrived: it is a
/// connection now) and hands each to `accepted`; true if there was any. smoltcp has no accept
/// queue: a listening socket becomes the connection, so a server keeps several listening.
pub fn take_accepted(
    listeners: &mut Vec<SocketHandle>,
    sockets: &SocketSet<'_>,
    mut accepted: impl FnMut(SocketHandle),
) -> bool {
    let mut any = false;
    let mut i = 0;
    while i < listeners.len() {
        if sockets.get::<tcp::Socket>(listeners[i]).state() == tcp::State::Listen {
            i += 1;
            continue;
        }
        accepted(listeners.swap_remove(i));
        any = true;
    }
    any
}

/// [`tcp_socket`] that reports an allocation failure instead of aborting.
pub fn try_tcp_socket(spec: &SocketSpec) -> Result<tcp::Socket<'static>, alloc::string::String> {
    // smoltcp panics on rx buffers of 1 GiB or more; -w is capped at 512 MiB before this.
    let rx = spec.rx.clamp(1024, (1 << 30) - 1);
    let tx = spec.tx.max(1024);
    let rx_buf = try_zeroed(rx, 0u8, "a TCP receive buffer")?;
    let tx_buf = try_zeroed(tx, 0u8, "a TCP send buffer")?;
    let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx_buf), tcp::SocketBuffer::new(tx_buf));
    s.set_congestion_control(spec.congestion.to_smoltcp());
    s.set_nagle_enabled(!spec.nodelay);
    // Linux's default keeps an ACK within a few packets; smoltcp's 10 ms delayed ACK with
    // one ACK per poll batch is fine for bulk data.
    s.set_ack_delay(Some(Duration::from_millis(10)));
    Ok(s)
}

/// Smallest buffer we give a busy direction; below this a test is refused rather than run
/// crippled.
pub const MIN_DATA_BUF: usize = 16 * 1024;

/// Buffer sizes for a data socket given the test's direction, `-w`, the stream count and the
/// memory the platform can spend on all data sockets of a test (`budget`). Every socket of
/// a test gets the same sizes. Errors say why the test cannot fit.
pub fn data_socket_spec(
    sends: bool,
    receives: bool,
    window: Option<u32>,
    total_streams: u32,
    congestion: Congestion,
    nodelay: bool,
    budget: usize,
) -> Result<SocketSpec, alloc::string::String> {
    let streams = total_streams.max(1) as usize;
    let busy_dirs = (sends as usize + receives as usize).max(1);
    // What one busy direction may have if every socket of the test is sized alike.
    let idle_dirs = 2 - busy_dirs;
    let share = (budget / streams).saturating_sub(idle_dirs * IDLE_BUF) / busy_dirs;
    let busy = match window {
        Some(w) if (w as usize) * 2 * streams > budget => {
            return Err(alloc::format!(
                "-w {w} for {streams} streams needs {} MiB of socket buffers; this host can spend {} MiB",
                (w as usize * 2 * streams) >> 20,
                budget >> 20
            ));
        }
        Some(w) => w as usize,
        None => DATA_BUF.min(share),
    };
    if busy < MIN_DATA_BUF {
        return Err(alloc::format!(
            "{streams} streams do not fit in the {} KiB this host can spend on socket buffers",
            budget >> 10
        ));
    }
    let size = |used: bool| if used || window.is_some() { busy } else { IDLE_BUF };
    Ok(SocketSpec { rx: size(receives), tx: size(sends), congestion, nodelay })
}

/// Buffer sizes of a UDP data socket: receive room for about 200 ms of the streams it
/// serves at their rate, send room for 20 ms (the pacer never queues more than a burst), at
/// least 256 KiB each (4 MiB per stream without a rate), shrunk to fit what the platform can
/// spend — and the datagram slots that go with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSpec {
    pub rx: usize,
    pub tx: usize,
    /// Datagram length, for the number of metadata slots.
    pub datagram: usize,
}

/// The least a UDP socket gets each way, per stream it serves, before a test is refused.
pub const MIN_UDP_BUF: usize = 64 * 1024;

impl UdpSpec {
    /// For `streams` streams of `rate_bps` each (0: unlimited) sharing one socket. Errors
    /// say why the test cannot fit in `budget` bytes.
    pub fn for_streams(
        rate_bps: u64,
        datagram: usize,
        streams: u32,
        budget: usize,
    ) -> Result<Self, alloc::string::String> {
        let streams = streams.max(1) as usize;
        let per_stream = |ms: u64, floor: usize| {
            if rate_bps == 0 { 4 << 20 } else { ((rate_bps / 8 * ms / 1000) as usize).clamp(floor, 16 << 20) }
        };
        let mut rx = (per_stream(200, 256 << 10) * streams).min(64 << 20);
        let mut tx = (per_stream(20, 256 << 10) * streams).min(16 << 20);
        if rx + tx > budget {
            // Shrink both alike to fit; a fast stream then loses datagrams the host could not
            // take in time, and the report shows it.
            rx = (rx as u128 * budget as u128 / (rx + tx) as u128) as usize;
            tx = budget - rx;
        }
        let floor = MIN_UDP_BUF * streams;
        if rx < floor || tx < floor {
            return Err(alloc::format!(
                "{streams} UDP streams need at least {} KiB of socket buffers; this host can spend {} KiB",
                (2 * floor) >> 10,
                budget >> 10
            ));
        }
        // Datagram size 0 leaves it to the client, which sends full-size ones; none is shorter
        // than iperf3's minimum. (Taken as 1 byte, a hostile `"len":0` with `-P 8` asked for a
        // metadata slot per byte of 32 MiB of buffer: 2 GB.)
        let datagram = match datagram {
            0 => 1500,
            n => n.max(crate::proto::limits::UDP_LEN.min as usize),
        };
        Ok(UdpSpec { rx, tx, datagram })
    }
}

/// A UDP socket with `spec`'s buffers.
pub fn udp_socket(spec: &UdpSpec) -> udp::Socket<'static> {
    match try_udp_socket(spec) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// [`udp_socket`] that reports an allocation failure instead of aborting.
pub fn try_udp_socket(spec: &UdpSpec) -> Result<udp::Socket<'static>, alloc::string::String> {
    let slots = |bytes: usize| bytes / spec.datagram.min(1500) + 16;
    let meta = udp::PacketMetadata::EMPTY;
    let rx_meta = try_zeroed(slots(spec.rx), meta, "UDP receive slots")?;
    let rx = try_zeroed(spec.rx, 0u8, "a UDP receive buffer")?;
    let tx_meta = try_zeroed(slots(spec.tx), meta, "UDP send slots")?;
    let tx = try_zeroed(spec.tx, 0u8, "a UDP send buffer")?;
    Ok(udp::Socket::new(udp::PacketBuffer::new(rx_meta, rx), udp::PacketBuffer::new(tx_meta, tx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_slots_assume_no_datagram_below_the_minimum() {
        // fuzz/corpus/server_control/oom-2fc9f41a4970ba9ff6e92f7bc174b4fc101d0787
        let spec = |len| UdpSpec::for_streams(0, len, 8, DATA_BUF_BUDGET).unwrap().datagram;
        assert_eq!((spec(0), spec(1), spec(16), spec(1000)), (1500, 16, 16, 1000));
    }

    #[test]
    fn a_buffer_the_heap_cannot_give_is_an_error() {
        let e = try_zeroed(usize::MAX / 2, 0u8, "a TCP receive buffer").unwrap_err();
        assert!(e.starts_with("out of memory: cannot allocate") && e.ends_with("for a TCP receive buffer"), "{e}");
        let spec = SocketSpec { rx: 1 << 20, tx: usize::MAX / 2, congestion: Congestion::Reno, nodelay: false };
        assert!(try_tcp_socket(&spec).is_err());
        assert!(try_tcp_socket(&SocketSpec::control()).is_ok());
    }

    #[test]
    fn buffers_shrink_to_fit_the_budget() {
        let c = Congestion::Reno;
        let one = data_socket_spec(false, true, None, 1, c, false, DATA_BUF_BUDGET).unwrap();
        assert_eq!((one.rx, one.tx), (DATA_BUF, IDLE_BUF));
        let many = data_socket_spec(false, true, None, 16, c, false, 32 << 20).unwrap();
        assert!(many.rx * 16 + many.tx * 16 <= 32 << 20, "{many:?}");
        assert!(many.rx >= MIN_DATA_BUF);
        let both = data_socket_spec(true, true, None, 8, c, false, 16 << 20).unwrap();
        assert!((both.rx + both.tx) * 8 <= 16 << 20, "{both:?}");
    }

    #[test]
    fn tests_that_cannot_fit_are_refused_with_a_reason() {
        let c = Congestion::Reno;
        let e = data_socket_spec(false, true, None, 128, c, false, 1 << 20).unwrap_err();
        assert!(e.contains("128 streams"), "{e}");
        let e = data_socket_spec(true, false, Some(8 << 20), 4, c, false, 32 << 20).unwrap_err();
        assert!(e.contains("-w"), "{e}");
    }
}
