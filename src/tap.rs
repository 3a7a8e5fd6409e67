//! A Linux TAP device as a smoltcp `phy::Device`: one read(2) or write(2) per frame into
//! buffers reused for the life of the device (smoltcp's own TunTapInterface allocates per
//! packet and silently drops frames when the kernel queue is full; we wait instead).

use anyhow::{Context, Result, bail};
use netstack::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use netstack::smoltcp::time::{Duration, Instant};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
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
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// Frames the kernel refused even after waiting (counted, reported at exit).
    pub tx_dropped: u64,
}

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
    pub fn open(name: &str, mtu: Option<u32>) -> Result<(Self, bool)> {
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
        ifr.set_short(IFF_TAP | IFF_NO_PI);
        // SAFETY: TUNSETIFF takes a pointer to an ifreq, which `ifr` is.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut IfReq) } < 0 {
            let e = std::io::Error::last_os_error();
            bail!(
                "cannot attach to TAP device '{name}': {e} (an existing interface of that name must be a TAP, \
                 e.g. created with `ip tuntap add dev {name} mode tap`, and we need root or CAP_NET_ADMIN)"
            );
        }
        // Bring the link up, and give a new device a queue long enough for a 4 MiB window
        // (the default 1000 frames overflows; research notes §4).
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
        Ok((TapDevice { fd, mtu: frame, rx_buf: vec![0; frame], tx_buf: vec![0; frame], tx_dropped: 0 }, !existed))
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
}

impl phy::RxToken for TapRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.buf)
    }
}

impl phy::TxToken for TapTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let r = f(&mut self.buf[..len]);
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
        if n <= 0 {
            return None;
        }
        Some((
            TapRx { buf: &self.rx_buf[..n as usize] },
            TapTx { fd: &self.fd, buf: &mut self.tx_buf, dropped: &mut self.tx_dropped },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Self::TxToken<'_>> {
        Some(TapTx { fd: &self.fd, buf: &mut self.tx_buf, dropped: &mut self.tx_dropped })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu;
        // The kernel delivers checksummed frames and wants valid ones; keep both on.
        caps
    }
}
