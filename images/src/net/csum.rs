//! Checksum offload (VIRTIO_NET_F_CSUM and VIRTIO_NET_F_GUEST_CSUM), segmentation offload
//! (VIRTIO_NET_F_HOST_TSO4) and the virtio-net header that carries them.
//!
//! Transmit: smoltcp is told not to compute TCP checksums (it leaves zero); the driver writes
//! the pseudo-header sum into the checksum field and marks the frame NEEDS_CSUM with
//! `csum_start`/`csum_offset`, as Linux does. (UDP stays in software until the UDP roles
//! exist to exercise it.) The device completes the sum; with a TAP
//! backend the host kernel takes the packet as CHECKSUM_PARTIAL, so a local receiver never
//! sums the payload at all.
//! Receive: smoltcp is told not to verify TCP/UDP checksums. Frames the device marks
//! DATA_VALID (the host checked them) or NEEDS_CSUM (built by a stack on the host, never on a
//! wire) are taken as they are; every other IPv4 TCP/UDP frame is verified here.

use netstack::smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, TcpPacket, UdpPacket, checksum};

const ETH_HDR: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
/// Offset of the checksum field in the TCP header.
const TCP_CHECKSUM: usize = 16;

/// `struct virtio_net_hdr` without `num_buffers` (virtio 1.2 §5.1.6); all fields little-endian
/// (legacy devices use the guest's byte order, which on x86 is the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl NetHdr {
    /// Bytes of the fields above; the 12-byte form adds `num_buffers`, which we leave zero.
    pub const LEN: usize = 10;
    pub const NEEDS_CSUM: u8 = 1;
    pub const DATA_VALID: u8 = 2;
    /// `gso_type` TCP over IPv4: the device cuts the frame into `gso_size` segments (0, as in
    /// the default header, is a plain frame).
    pub const GSO_TCPV4: u8 = 1;

    /// Reads the header at the start of a receive buffer; `None` if too short.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..Self::LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first `LEN` bytes of `bytes` (which must be that long).
    pub fn emit(&self, bytes: &mut [u8]) {
        let b = &mut bytes[..Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// Where the L4 header of an unfragmented IPv4 TCP or UDP frame starts and ends, its protocol
/// and addresses; `None` for anything else (or anything malformed, which smoltcp will reject).
struct L4 {
    start: usize,
    end: usize,
    protocol: IpProtocol,
    src: Ipv4Address,
    dst: Ipv4Address,
}

fn locate_l4(frame: &[u8]) -> Option<L4> {
    if frame.get(12..14)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETH_HDR..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff; // MF flag and offset
    if total < ihl || total > ip.len() || fragment != 0 {
        return None;
    }
    let protocol = match ip[9] {
        6 => IpProtocol::Tcp,
        17 => IpProtocol::Udp,
        _ => return None,
    };
    let src = Ipv4Address::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Address::new(ip[16], ip[17], ip[18], ip[19]);
    Some(L4 { start: ETH_HDR + ihl, end: ETH_HDR + total, protocol, src, dst })
}

/// Sets up checksum offload (and, with `gso_size`, segmentation offload) for an outgoing frame
/// whose TCP checksum smoltcp left out; returns the header to send with it (all zero for frames
/// that need none).
///
/// `gso_size` is the payload size of each segment the device is to cut the frame into
/// (smoltcp's `PacketMeta::segmentation_offload_size`, the connection's MSS). A frame whose
/// payload fits one segment goes out as a plain frame (smoltcp only sets the size on longer
/// ones anyway).
pub fn offload_tx(frame: &mut [u8], gso_size: Option<u16>) -> NetHdr {
    let Some(l4) = locate_l4(frame).filter(|l4| l4.protocol == IpProtocol::Tcp) else {
        return NetHdr::default();
    };
    let field = TCP_CHECKSUM;
    let len = l4.end - l4.start;
    if len < field + 2 {
        return NetHdr::default();
    }
    let pseudo = checksum::pseudo_header_v4(&l4.src, &l4.dst, l4.protocol, len as u32);
    let at = l4.start + field;
    frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    let mut hdr = NetHdr {
        flags: NetHdr::NEEDS_CSUM,
        hdr_len: (at + 2) as u16,
        csum_start: l4.start as u16,
        csum_offset: field as u16,
        ..NetHdr::default()
    };
    // The TCP data offset (header length with options), sanity-checked against the segment.
    let doff = usize::from(frame[l4.start + 12] >> 4) * 4;
    if let Some(mss) = gso_size.filter(|&m| m > 0 && doff >= 20 && len > doff + usize::from(m)) {
        hdr.gso_type = NetHdr::GSO_TCPV4;
        // Everything in front of the payload: Ethernet, IP and TCP headers with options.
        hdr.hdr_len = (l4.start + doff) as u16;
        hdr.gso_size = mss;
    }
    hdr
}

/// The payload size for a frame longer than one MTU that came without a segment size (a
/// `TxToken` wrapper that dropped smoltcp's `set_meta`): the largest segment that fits
/// `max_frame`. `None` if the frame is not an IPv4 TCP segment that could be cut that way.
pub fn fallback_gso_size(frame: &[u8], max_frame: usize) -> Option<u16> {
    let l4 = locate_l4(frame).filter(|l4| l4.protocol == IpProtocol::Tcp)?;
    let doff = usize::from(*frame.get(l4.start + 12)? >> 4) * 4;
    let room = max_frame.checked_sub(l4.start + doff)?;
    u16::try_from(room).ok().filter(|&m| m >= 64)
}

/// Whether an incoming frame the device did not vouch for has a correct TCP/UDP checksum
/// (true for frames that are not IPv4 TCP/UDP: smoltcp checks those itself).
pub fn rx_checksum_ok(frame: &[u8]) -> bool {
    let Some(l4) = locate_l4(frame) else { return true };
    let segment = &frame[l4.start..l4.end];
    let (src, dst) = (IpAddress::Ipv4(l4.src), IpAddress::Ipv4(l4.dst));
    match l4.protocol {
        IpProtocol::Tcp => TcpPacket::new_checked(segment).is_ok_and(|p| p.verify_checksum(&src, &dst)),
        _ => UdpPacket::new_checked(segment).is_ok_and(|p| p.verify_checksum(&src, &dst)),
    }
}
