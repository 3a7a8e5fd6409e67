//! `struct virtio_net_hdr`, the 10 bytes in front of every frame when checksum or segmentation
//! offload is on, and the offload request for a frame smoltcp built. One definition for both
//! users: the Linux TAP device (IFF_VNET_HDR) and the unikernel's virtio-net driver.
//!
//! Byte order: a virtio 1.0+ device (VIRTIO_F_VERSION_1) reads the 16-bit fields little-endian
//! (virtio 1.2 §5.1.6); a TAP's header, like a legacy device's, is in the host's byte order
//! unless TUNSETVNETLE/TUNSETVNETBE changed it. Both users run on little-endian x86_64, where
//! the two agree, so the fields are read and written little-endian here; a big-endian host must
//! not hand this header to a legacy device or a TAP.
//!
//! Layout follows smoltcp's wire modules: [`Header`] is a checked view over the bytes, [`Repr`]
//! the plain fields with `parse`/`emit`.

use core::ops::Range;

use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Address, Ipv4Packet, TcpPacket, checksum,
};

pub use smoltcp::wire::Error;

/// Bytes of the header without `num_buffers`. The 12-byte form (virtio 1.0, or MRG_RXBUF)
/// appends `num_buffers`, which a driver leaves zero on transmit and these types never touch.
pub const HEADER_LEN: usize = 10;

/// Values of the `flags` field.
pub mod flags {
    /// The checksum from `csum_start` to the end is still to be computed and stored at
    /// `csum_start + csum_offset`; the field holds the pseudo-header sum.
    pub const NEEDS_CSUM: u8 = 1;
    /// Receive only: the device checked the checksums.
    pub const DATA_VALID: u8 = 2;
}

/// Values of the `gso_type` field.
pub mod gso {
    /// A plain frame.
    pub const NONE: u8 = 0;
    /// TCP over IPv4, to be cut into `gso_size`-byte segments.
    pub const TCPV4: u8 = 1;
}

mod field {
    use super::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
}

/// Where the checksum sits in a TCP header.
const TCP_CHECKSUM_OFFSET: usize = 16;

/// A view over a virtio-net header's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking its length; accessors panic if it is shorter than
    /// [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps `buffer`, which must hold at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN { Err(Error) } else { Ok(()) }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[at];
        u16::from_le_bytes([b[0], b[1]])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Bytes in front of the payload (Ethernet, IP and transport headers).
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    /// Payload bytes per segment when `gso_type` is not [`gso::NONE`].
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// Where in the frame the checksum to be completed starts.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    /// Where the checksum goes, counted from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_u16_at(&mut self, at: Range<usize>, value: u16) {
        self.buffer.as_mut()[at].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_u16_at(field::HDR_LEN, value);
    }

    pub fn set_gso_size(&mut self, value: u16) {
        self.set_u16_at(field::GSO_SIZE, value);
    }

    pub fn set_csum_start(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_START, value);
    }

    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_u16_at(field::CSUM_OFFSET, value);
    }
}

/// The header's fields; the default (all zero) is a plain frame with nothing to offload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &Header<&T>) -> Result<Repr, Error> {
        header.check_len()?;
        Ok(Repr {
            flags: header.flags(),
            gso_type: header.gso_type(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every field, so nothing of a reused buffer's previous header lingers; panics if
    /// `header` is shorter than [`HEADER_LEN`] (use [`Header::new_checked`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_flags(self.flags);
        header.set_gso_type(self.gso_type);
        header.set_hdr_len(self.hdr_len);
        header.set_gso_size(self.gso_size);
        header.set_csum_start(self.csum_start);
        header.set_csum_offset(self.csum_offset);
    }

    /// A received frame whose transport checksum needs no check: the device checked it
    /// (DATA_VALID), or it was built on the host and never crossed a wire (NEEDS_CSUM, the
    /// checksum not even computed yet).
    pub fn checksum_trusted(&self) -> bool {
        self.flags & (flags::DATA_VALID | flags::NEEDS_CSUM) != 0
    }
}

/// The TCP or UDP segment of an unfragmented IPv4 Ethernet frame: `frame[start..end]`, where
/// `end` comes from the IP total length (so Ethernet padding is left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Transport {
    pub start: usize,
    pub end: usize,
    pub protocol: IpProtocol,
    pub src: Ipv4Address,
    pub dst: Ipv4Address,
}

/// Finds the transport segment of an IPv4 TCP or UDP frame; `None` for anything else,
/// including fragments (their checksum spans several frames) and malformed headers, which
/// smoltcp rejects on its own.
pub fn locate_ipv4_transport(frame: &[u8]) -> Option<Ipv4Transport> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    // new_checked: IHL of at least 20 bytes, within the total length, within the buffer.
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.version() != 4 || ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let protocol = ip.next_header();
    if !matches!(protocol, IpProtocol::Tcp | IpProtocol::Udp) {
        return None;
    }
    Some(Ipv4Transport {
        start: ETHERNET_HEADER_LEN + usize::from(ip.header_len()),
        end: ETHERNET_HEADER_LEN + usize::from(ip.total_len()),
        protocol,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    })
}

/// Prepares an outgoing IPv4 TCP frame whose checksum smoltcp left out (the device's
/// `checksum.tcp` says the device computes it) and returns the header to send it with: the
/// pseudo-header sum goes into the TCP checksum field, folded but not inverted, and the header
/// says NEEDS_CSUM from the TCP header on, which is how Linux hands a CHECKSUM_PARTIAL packet
/// to a device. With `gso_size` (smoltcp's `PacketMeta::segmentation_offload_size`, the MSS)
/// and more payload than one segment, the header also asks for TCPv4 segmentation.
///
/// Anything else (not IPv4 TCP, a fragment, a malformed or truncated frame) is left untouched
/// and gets the all-zero header of a plain frame; nothing here panics on hostile bytes.
pub fn offload_tcpv4(frame: &mut [u8], gso_size: Option<u16>) -> Repr {
    let Some(l4) = locate_ipv4_transport(frame).filter(|l4| l4.protocol == IpProtocol::Tcp) else {
        return Repr::default();
    };
    // locate_ipv4_transport checked start <= end <= frame.len().
    let Ok(mut tcp) = TcpPacket::new_checked(&mut frame[l4.start..l4.end]) else {
        return Repr::default();
    };
    let segment_len = l4.end - l4.start;
    tcp.set_checksum(checksum::pseudo_header_v4(&l4.src, &l4.dst, IpProtocol::Tcp, segment_len as u32));
    let headers = l4.start + usize::from(tcp.header_len());
    // At most 14 + 60 + 60 bytes, so the casts below cannot truncate. hdr_len covers every
    // header even without GSO: GSO needs exactly that (virtio 1.2 §5.1.6.2), and for a plain
    // frame it is more than the csum_start + csum_offset + 2 Linux's tun raises it to anyway.
    let mut repr = Repr {
        flags: flags::NEEDS_CSUM,
        gso_type: gso::NONE,
        hdr_len: headers as u16,
        gso_size: 0,
        csum_start: l4.start as u16,
        csum_offset: TCP_CHECKSUM_OFFSET as u16,
    };
    // A frame whose payload fits one segment goes out plain (smoltcp only sets the size on
    // longer ones anyway); gso_size 0 would make the device refuse the frame.
    if let Some(mss) = gso_size.filter(|&m| m > 0 && l4.end > headers + usize::from(m)) {
        repr.gso_type = gso::TCPV4;
        repr.gso_size = mss;
    }
    repr
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::IpAddress;

    const SRC: [u8; 4] = [198, 18, 0, 2];
    const DST: [u8; 4] = [198, 18, 0, 1];

    /// An Ethernet/IPv4/TCP frame with `ip_options` and `tcp_options` bytes of options (multiples
    /// of 4) and `payload` bytes of data; the TCP checksum is zero, as smoltcp leaves it.
    fn tcp_frame(ip_options: usize, tcp_options: usize, payload: usize) -> Vec<u8> {
        let ihl = 20 + ip_options;
        let doff = 20 + tcp_options;
        let total = ihl + doff + payload;
        let mut f = vec![0u8; ETHERNET_HEADER_LEN + total];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[ETHERNET_HEADER_LEN..];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&SRC);
        ip[16..20].copy_from_slice(&DST);
        ip[20..ihl].fill(1); // NOP options
        let tcp = &mut ip[ihl..];
        tcp[0..2].copy_from_slice(&5201u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&40000u16.to_be_bytes());
        tcp[12] = ((doff / 4) as u8) << 4;
        tcp[13] = 0x18; // PSH, ACK
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        tcp[20..doff].fill(1);
        for (i, b) in tcp[doff..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    /// What the device does with NEEDS_CSUM: sums from csum_start to the end (the pseudo-header
    /// sum already in the field) and stores the complement at csum_start + csum_offset.
    fn complete_checksum(frame: &mut [u8], repr: &Repr) {
        let start = usize::from(repr.csum_start);
        let at = start + usize::from(repr.csum_offset);
        let sum = !checksum::data(&frame[start..]);
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }

    fn tcp_checksum_valid(frame: &[u8], start: usize) -> bool {
        let (src, dst) = (IpAddress::from(Ipv4Address::from(SRC)), IpAddress::from(Ipv4Address::from(DST)));
        TcpPacket::new_checked(&frame[start..]).unwrap().verify_checksum(&src, &dst)
    }

    #[test]
    fn header_bytes_are_little_endian_and_round_trip() {
        let repr =
            Repr { flags: 1, gso_type: 1, hdr_len: 0x0036, gso_size: 0x05b4, csum_start: 0x0022, csum_offset: 0x0010 };
        let mut bytes = [0xffu8; 12];
        repr.emit(&mut Header::new_checked(&mut bytes[..]).unwrap());
        assert_eq!(bytes, [1, 1, 0x36, 0, 0xb4, 0x05, 0x22, 0, 0x10, 0, 0xff, 0xff], "num_buffers untouched");
        assert_eq!(Repr::parse(&Header::new_checked(&bytes[..]).unwrap()), Ok(repr));
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn short_headers_are_refused() {
        for len in 0..HEADER_LEN {
            let bytes = vec![0u8; len];
            assert_eq!(Header::new_checked(&bytes[..]), Err(Error));
            assert_eq!(Repr::parse(&Header::new_unchecked(&bytes[..])), Err(Error));
        }
    }

    #[test]
    fn received_flags_say_whether_to_check() {
        let with = |flags| Repr { flags, ..Repr::default() };
        assert!(with(flags::DATA_VALID).checksum_trusted());
        assert!(with(flags::NEEDS_CSUM).checksum_trusted());
        assert!(!with(0).checksum_trusted());
        assert!(!with(4).checksum_trusted(), "RSC_INFO alone vouches for nothing");
    }

    #[test]
    fn plain_segment_gets_partial_checksum_only() {
        let mut f = tcp_frame(0, 0, 100);
        let repr = offload_tcpv4(&mut f, Some(1460));
        assert_eq!(
            repr,
            Repr {
                flags: flags::NEEDS_CSUM,
                gso_type: gso::NONE,
                hdr_len: 54,
                gso_size: 0,
                csum_start: 34,
                csum_offset: 16
            }
        );
        let pseudo = checksum::pseudo_header_v4(&SRC.into(), &DST.into(), IpProtocol::Tcp, 120);
        assert_eq!(f[50..52], pseudo.to_be_bytes());
        complete_checksum(&mut f, &repr);
        assert!(tcp_checksum_valid(&f, 34));
    }

    #[test]
    fn super_segment_asks_for_tcpv4_segmentation() {
        let mut f = tcp_frame(0, 12, 3 * 1448 + 1);
        let repr = offload_tcpv4(&mut f, Some(1448));
        assert_eq!(repr.gso_type, gso::TCPV4);
        assert_eq!(repr.gso_size, 1448);
        assert_eq!(repr.hdr_len, 14 + 20 + 32, "headers with TCP options");
        assert_eq!((repr.csum_start, repr.csum_offset), (34, 16));
        complete_checksum(&mut f, &repr);
        assert!(tcp_checksum_valid(&f, 34));
    }

    #[test]
    fn one_segment_of_payload_is_not_segmented() {
        let mut f = tcp_frame(0, 0, 1448);
        assert_eq!(offload_tcpv4(&mut f, Some(1448)).gso_type, gso::NONE);
        let mut f = tcp_frame(0, 0, 1449);
        assert_eq!(offload_tcpv4(&mut f, Some(0)).gso_type, gso::NONE, "size 0 is no segmentation");
        assert_eq!(offload_tcpv4(&mut f, None).gso_type, gso::NONE);
    }

    #[test]
    fn ip_options_move_the_checksum_start() {
        let mut f = tcp_frame(8, 0, 3000);
        let repr = offload_tcpv4(&mut f, Some(1000));
        assert_eq!(repr.csum_start, 14 + 28);
        assert_eq!(repr.hdr_len, 14 + 28 + 20);
        assert_eq!(repr.gso_type, gso::TCPV4);
        complete_checksum(&mut f, &repr);
        assert!(tcp_checksum_valid(&f, 42));
    }

    #[test]
    fn ethernet_padding_is_not_summed() {
        let mut f = tcp_frame(0, 0, 2);
        f.resize(60, 0xee);
        let repr = offload_tcpv4(&mut f, None);
        let l4 = locate_ipv4_transport(&f).unwrap();
        assert_eq!((l4.start, l4.end), (34, 56));
        let expected = checksum::pseudo_header_v4(&SRC.into(), &DST.into(), IpProtocol::Tcp, 22);
        assert_eq!(f[50..52], expected.to_be_bytes());
        assert_eq!(repr.flags, flags::NEEDS_CSUM);
    }

    #[test]
    fn other_frames_are_left_alone() {
        let untouched = |mut f: Vec<u8>| {
            let before = f.clone();
            assert_eq!(offload_tcpv4(&mut f, Some(1448)), Repr::default());
            assert_eq!(f, before);
        };
        let mut udp = tcp_frame(0, 0, 40);
        udp[14 + 9] = 17;
        untouched(udp);
        let mut arp = tcp_frame(0, 0, 40);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        untouched(arp);
        let mut fragment = tcp_frame(0, 0, 40);
        fragment[14 + 6] = 0x20; // more fragments
        untouched(fragment);
        let mut later_fragment = tcp_frame(0, 0, 40);
        later_fragment[14 + 7] = 1;
        untouched(later_fragment);
        let mut ipv6_version = tcp_frame(0, 0, 40);
        ipv6_version[14] = 0x65;
        untouched(ipv6_version);
        let mut short_ihl = tcp_frame(0, 0, 40);
        short_ihl[14] = 0x44;
        untouched(short_ihl);
        let mut long_total = tcp_frame(0, 0, 40);
        long_total[16..18].copy_from_slice(&2000u16.to_be_bytes());
        untouched(long_total);
        let mut long_doff = tcp_frame(0, 0, 8);
        long_doff[34 + 12] = 0xf0; // 60-byte TCP header in a 28-byte segment
        untouched(long_doff);
        let mut short_doff = tcp_frame(0, 0, 40);
        short_doff[34 + 12] = 0x40;
        untouched(short_doff);
        untouched(Vec::new());
    }

    #[test]
    fn truncated_frames_never_panic() {
        let full = tcp_frame(4, 12, 200);
        for len in 0..full.len() {
            let mut f = full[..len].to_vec();
            let _ = offload_tcpv4(&mut f, Some(64));
            let _ = locate_ipv4_transport(&f);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A fixed xorshift stream: random headers behind a valid IPv4 EtherType, so the parse
        // gets past the first check.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut offloaded = 0;
        for _ in 0..20_000 {
            let len = (next() % 160) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 14 {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            if len >= 34 && next() % 2 == 0 {
                // A plausible IPv4 TCP header, so the TCP parse sees random bytes too.
                f[14] = 0x45;
                f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
                f[20..22].fill(0);
                f[23] = 6;
            }
            let gso = u16::try_from(next() % 3000).ok();
            offloaded += usize::from(offload_tcpv4(&mut f, gso).flags == flags::NEEDS_CSUM);
        }
        assert!(offloaded > 1000, "only {offloaded} frames reached the TCP path");
    }
}
