//! Checksum offload (VIRTIO_NET_F_CSUM and VIRTIO_NET_F_GUEST_CSUM) and segmentation offload
//! (VIRTIO_NET_F_HOST_TSO4): what the driver adds to the shared virtio-net header code in
//! `netstack::virtio_net_hdr`.
//!
//! Transmit: smoltcp is told not to compute TCP checksums (it leaves zero);
//! `virtio_net_hdr::offload_tcpv4` writes the pseudo-header sum into the checksum field and
//! marks the frame NEEDS_CSUM with `csum_start`/`csum_offset`, as Linux does. (UDP stays in
//! software until the UDP roles exist to exercise it.) The device completes the sum; with a TAP
//! backend the host kernel takes the packet as CHECKSUM_PARTIAL, so a local receiver never
//! sums the payload at all.
//! Receive: smoltcp is told not to verify TCP/UDP checksums. Frames the device marks
//! DATA_VALID (the host checked them) or NEEDS_CSUM (built by a stack on the host, never on a
//! wire) are taken as they are; every other IPv4 TCP/UDP frame is verified here.

use netstack::smoltcp::wire::{IpAddress, IpProtocol, TcpPacket, UdpPacket};
use netstack::virtio_net_hdr::{self, Header, Repr};

/// The payload size for a frame longer than one MTU that came without a segment size (a
/// `TxToken` wrapper that dropped smoltcp's `set_meta`): the largest segment that fits
/// `max_frame`. `None` if the frame is not an IPv4 TCP segment that could be cut that way.
pub fn fallback_gso_size(frame: &[u8], max_frame: usize) -> Option<u16> {
    let l4 = virtio_net_hdr::locate_ipv4_transport(frame).filter(|l4| l4.protocol == IpProtocol::Tcp)?;
    let tcp = TcpPacket::new_checked(frame.get(l4.start..l4.end)?).ok()?;
    let room = max_frame.checked_sub(l4.start + usize::from(tcp.header_len()))?;
    u16::try_from(room).ok().filter(|&m| m >= 64)
}

/// Whether a received frame may go to smoltcp, which checks no TCP/UDP checksums when the
/// device offers GUEST_CSUM: `header` is the virtio-net header the device wrote in front of it.
pub fn rx_checksum_acceptable(header: &[u8], frame: &[u8]) -> bool {
    let trusted = Header::new_checked(header).and_then(|h| Repr::parse(&h)).is_ok_and(|h| h.checksum_trusted());
    trusted || rx_checksum_ok(frame)
}

/// Whether an incoming frame the device did not vouch for has a correct TCP/UDP checksum
/// (true for frames that are not IPv4 TCP/UDP: smoltcp checks those itself). Xen's netfront
/// uses it the same way for frames netback did not mark.
pub fn rx_checksum_ok(frame: &[u8]) -> bool {
    let Some(l4) = virtio_net_hdr::locate_ipv4_transport(frame) else { return true };
    let Some(segment) = frame.get(l4.start..l4.end) else { return true };
    let (src, dst) = (IpAddress::Ipv4(l4.src), IpAddress::Ipv4(l4.dst));
    match l4.protocol {
        IpProtocol::Tcp => TcpPacket::new_checked(segment).is_ok_and(|p| p.verify_checksum(&src, &dst)),
        _ => UdpPacket::new_checked(segment).is_ok_and(|p| p.verify_checksum(&src, &dst)),
    }
}
