//! `--mtu` on the image: the NIC driver reports its own frame size; this wrapper lowers what
//! smoltcp sees to the IP MTU the user asked for (the TAP program does the same in its device).

use netstack::smoltcp::phy::{Device, DeviceCapabilities, Medium};
use netstack::smoltcp::time::Instant;

/// Ethernet header bytes on top of the IP MTU.
pub const ETH_HDR: usize = 14;

pub struct MtuLimit<D> {
    inner: D,
    /// Largest frame (Ethernet header included) smoltcp may send.
    max_frame: usize,
}

impl<D: Device> MtuLimit<D> {
    /// Wraps `inner`; `ip_mtu` None keeps the device's own. Errors if it exceeds the device's.
    pub fn new(inner: D, ip_mtu: Option<u32>) -> Result<Self, alloc::string::String> {
        let caps = inner.capabilities();
        let device_frame = caps.max_transmission_unit;
        let hdr = if caps.medium == Medium::Ethernet { ETH_HDR } else { 0 };
        let max_frame = match ip_mtu {
            None => device_frame,
            Some(m) if m as usize + hdr <= device_frame => m as usize + hdr,
            Some(m) => {
                return Err(alloc::format!(
                    "--mtu {m} is larger than the network device's MTU of {}",
                    device_frame.saturating_sub(hdr)
                ));
            }
        };
        Ok(MtuLimit { inner, max_frame })
    }

    /// The IP MTU in force.
    pub fn ip_mtu(&self) -> usize {
        let hdr = if self.inner.capabilities().medium == Medium::Ethernet { ETH_HDR } else { 0 };
        self.max_frame - hdr
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Device> Device for MtuLimit<D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.inner.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        caps.max_transmission_unit = self.max_frame;
        caps
    }
}
