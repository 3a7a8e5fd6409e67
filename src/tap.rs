//! A Linux TAP device as a smoltcp `phy::Device`: one read(2) or write(2) per frame into
//! buffers reused for the life of the device (smoltcp's own TunTapInterface allocates per
//! packet and silently drops frames when the kernel queue is full; we wait instead).
//!
//! With a virtio-net header on the TAP (IFF_VNET_HDR) the kernel and smoltcp exchange TCP
//! super-segments of up to 64 KiB: smoltcp's segmentation offload hands us one large segment
//! and we ask the kernel to cut it (GSO) and to fill in the TCP checksum; the kernel hands us
//! GRO-merged segments. Each system call then moves up to 44 MSS instead of one, and the
//! kernel's own TCP receive path (which runs inside our write(2)) runs once per super-segment.

use anyhow::{Context, Result, bail};
use netstack::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use netstack::smoltcp::time::{Duration, Instant};
use netstack::virtio_net_hdr::{self, Header};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
/// `struct virtio_net_hdr` without `num_buffers`: the TAP's default header size. It is in host
/// byte order; `netstack::virtio_net_hdr` writes little-endian, which is the same on the
/// little-endian hosts offloads are used on (see `open`).
const VNET_HDR: usize = virtio_net_hdr::HEADER_LEN;
/// Largest frame we exchange with offloads on: a 64 KiB IPv4 packet plus Ethernet.
const OFFLOAD_FRAME: usize = 65535 + ETH_HDR;
/// Ethernet header bytes on top of the IP MTU.
const ETH_HDR: usize = 14;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    /// A union in C; we use the short flags, the int MTU / queue length and pad to 24 bytes.
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Self {
        let mut r = IfReq { name: [0; libc::IFNAMSIZ], data: [0; 24] };
        for (d, s) in r.name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
            *d = s as libc::c_char;
        }
        r
    }
    fn set_short(&mut self, v: libc::c_short) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }
    fn short(&self) -> libc::c_short {
        libc::c_short::from_ne_bytes([self.data[0], self.data[1]])
    }
    fn set_int(&mut self, v: libc::c_int) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
    fn int(&self) -> libc::c_int {
        libc::c_int::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
}

pub struct TapDevice {
    fd: OwnedFd,
    mtu: usize,
    /// A virtio-net header precedes every frame (TSO and checksum offload are on).
    offload: bool,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// Frames the kernel refused even after waiting (counted, reported at exit).
    pub tx_dropped: u64,
    /// Loss on purpose, for tests that need retransmissions on a real TAP (this kernel has
    /// no netem): every Nth frame carrying data is not written. From `UNIPERF_TAP_DROP_EVERY`.
    drop: Option<DropEvery>,
}

/// Drops every `every`-th outgoing frame longer than `MIN_DATA_FRAME` (data, not bare ACKs).
#[derive(Clone, Copy, Debug)]
struct DropEvery {
    every: u64,
    seen: u64,
}

/// Frames shorter than this are handshakes and ACKs; only data frames are dropped on purpose.
const MIN_DATA_FRAME: usize = 200;

fn ioctl_sock(req: libc::c_ulong, ifr: &mut IfReq) -> std::io::Result<()> {
    // SAFETY: a plain datagram socket used only for interface ioctls, closed below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `ifr` is a valid, writable ifreq-sized struct for the duration of the call.
    let r = unsafe { libc::ioctl(s, req as _, ifr as *mut IfReq) };
    let err = std::io::Error::last_os_error();
    // SAFETY: `s` is our own descriptor.
    unsafe { libc::close(s) };
    if r < 0 { Err(err) } else { Ok(()) }
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

impl TapDevice {
    /// Attaches to TAP `name`, creating it (non-persistent, gone at exit) if missing, and
    /// brings it up. `mtu` overrides the interface's IP MTU for our stack.
    pub fn open(name: &str, mtu: Option<u32>, offload: bool) -> Result<(Self, bool)> {
        // The header is written little-endian; a big-endian host would need TUNSETVNETLE.
        let offload = offload && cfg!(target_endian = "little");
        let existed = interface_exists(name);
        let path = CString::new("/dev/net/tun").expect("static path");
        // SAFETY: opening a device node with a valid NUL-terminated path.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot open /dev/net/tun (is the tun module loaded, and are you root or CAP_NET_ADMIN?)");
        }
        // SAFETY: `raw` is a descriptor we just opened and own exclusively.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = IfReq::new(name);
        ifr.set_short(IFF_TAP | IFF_NO_PI | if offload { IFF_VNET_HDR } else { 0 });
        // SAFETY: TUNSETIFF takes a pointer to an ifreq, which `ifr` is.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut IfReq) } < 0 {
            let e = std::io::Error::last_os_error();
            bail!(
                "cannot attach to TAP device '{name}': {e} (an existing interface of that name must be a TAP, \
                 e.g. created with `ip tuntap add dev {name} mode tap`, and we need root or CAP_NET_ADMIN)"
            );
        }
        // Let the kernel hand us GRO-merged segments with partial checksums; without this it
        // segments and checksums everything before we see it.
        let flags = (TUN_F_CSUM | TUN_F_TSO4) as libc::c_ulong;
        // SAFETY: TUNSETOFFLOAD takes its flags by value.
        let offload = offload && unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, flags) } == 0;
        // Bring the link up, and give a new device a queue long enough for a 4 MiB window:
        // that is about 2900 full-size frames, and the kernel drops beyond its default 1000.
        let mut flags = IfReq::new(name);
        ioctl_sock(libc::SIOCGIFFLAGS, &mut flags).context("cannot read TAP flags")?;
        if flags.short() & libc::IFF_UP as libc::c_short == 0 {
            flags.set_short(flags.short() | libc::IFF_UP as libc::c_short);
            ioctl_sock(libc::SIOCSIFFLAGS, &mut flags).context("cannot bring the TAP device up")?;
        }
        if !existed {
            let mut q = IfReq::new(name);
            q.set_int(10_000);
            let _ = ioctl_sock(libc::SIOCSIFTXQLEN, &mut q);
        }
        let ip_mtu = match mtu {
            Some(m) => m as usize,
            None => {
                let mut m = IfReq::new(name);
                ioctl_sock(libc::SIOCGIFMTU, &mut m).context("cannot read the TAP MTU")?;
                m.int().max(576) as usize
            }
        };
        let frame = ip_mtu + ETH_HDR;
        let buf = if offload { VNET_HDR + OFFLOAD_FRAME } else { frame };
        let drop = match std::env::var("UNIPERF_TAP_DROP_EVERY") {
            Ok(v) => {
                let every: u64 =
                    v.parse().ok().filter(|&n| n >= 2).with_context(|| {
                        format!("UNIPERF_TAP_DROP_EVERY={v}: expected a whole number of at least 2")
                    })?;
                Some(DropEvery { every, seen: 0 })
            }
            Err(_) => None,
        };
        let dev =
            TapDevice { fd, mtu: frame, offload, rx_buf: vec![0; buf], tx_buf: vec![0; buf], tx_dropped: 0, drop };
        Ok((dev, !existed))
    }

    /// True when frames carry a virtio-net header (TSO and checksum offload).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The IP MTU our stack uses.
    pub fn ip_mtu(&self) -> usize {
        self.mtu - ETH_HDR
    }

    /// The descriptor, for waiting on it with [`wait_readable`].
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sleeps until `fd` is readable or `timeout` passes (at most 100 ms).
pub fn wait_readable(fd: RawFd, timeout: Option<Duration>) {
    let ms = timeout.map(|d| d.total_millis().min(100) as i32).unwrap_or(100);
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

pub struct TapRx<'a> {
    buf: &'a [u8],
}

pub struct TapTx<'a> {
    fd: &'a OwnedFd,
    buf: &'a mut Vec<u8>,
    dropped: &'a mut u64,
    offload: bool,
    gso_size: Option<u16>,
    drop: &'a mut Option<DropEvery>,
}

impl phy::RxToken for TapRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.buf)
    }
}

impl phy::TxToken for TapTx<'_> {
    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.gso_size = meta.segmentation_offload_size.map(|m| m.get());
    }

    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let head = if self.offload { VNET_HDR } else { 0 };
        if self.buf.len() < head + len {
            self.buf.resize(head + len, 0);
        }
        let r = f(&mut self.buf[head..head + len]);
        if self.offload {
            // TCP over IPv4 gets a partial checksum for the kernel to finish, and GSO when
            // smoltcp handed over more than one MSS; everything else a zero header.
            let (hdr, frame) = self.buf.split_at_mut(VNET_HDR);
            let repr = virtio_net_hdr::offload_tcpv4(&mut frame[..len], self.gso_size);
            repr.emit(&mut Header::new_unchecked(hdr));
        }
        let len = head + len;
        if let Some(d) = self.drop.as_mut()
            && len >= MIN_DATA_FRAME
        {
            d.seen += 1;
            if d.seen % d.every == 0 {
                return r;
            }
        }
        for _ in 0..100 {
            // SAFETY: writing `len` initialised bytes from our buffer to our TAP descriptor.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), self.buf.as_ptr().cast(), len) };
            if n >= 0 {
                return r;
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                break;
            }
            // The kernel's queue is full: wait for room rather than drop (a drop is a loss
            // that costs smoltcp a 1 s RTO).
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 10) };
        }
        *self.dropped += 1;
        r
    }
}

impl Device for TapDevice {
    type RxToken<'a> = TapRx<'a>;
    type TxToken<'a> = TapTx<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // SAFETY: reading at most rx_buf.len() bytes into our own buffer.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), self.rx_buf.as_mut_ptr().cast(), self.rx_buf.len()) };
        let head = if self.offload { VNET_HDR } else { 0 };
        if n <= head as isize {
            return None;
        }
        // With offloads, the header may say the TCP checksum is partial (the kernel never
        // computed it): smoltcp does not verify TCP checksums on this device then.
        Some((
            TapRx { buf: &self.rx_buf[head..n as usize] },
            TapTx {
                fd: &self.fd,
                buf: &mut self.tx_buf,
                dropped: &mut self.tx_dropped,
                offload: self.offload,
                gso_size: None,
                drop: &mut self.drop,
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Self::TxToken<'_>> {
        Some(TapTx {
            fd: &self.fd,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped,
            offload: self.offload,
            gso_size: None,
            drop: &mut self.drop,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        if self.offload {
            // The kernel finishes our TCP checksums and vouches for the TCP and UDP ones it
            // sends us (they may be partial: it never computed them for a local receiver).
            caps.checksum.tcp = phy::Checksum::None;
            // UDP from the host stack may carry a partial checksum too; we compute ours.
            caps.checksum.udp = phy::Checksum::Tx;
            caps.segmentation.tcpv4 = core::num::NonZeroUsize::new(OFFLOAD_FRAME);
        }
        // Without offloads the kernel delivers checksummed frames and wants valid ones.
        caps
    }
}
