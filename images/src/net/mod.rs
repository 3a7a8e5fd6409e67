//! The network device: finds a virtio-net NIC (virtio-mmio named on the command line or probed
//! on `microvm`, virtio-pci on `pc`/`q35`) and drives it as a smoltcp `phy::Device`.

mod csum;
mod hal;
mod mmio;
mod pci;
mod queues;
mod virtio;

use alloc::format;
use alloc::string::String;

use virtio_drivers::transport::SomeTransport;

pub use csum::{fallback_gso_size, rx_checksum_ok};
pub use hal::ensure_mapped;
pub use queues::SharedQueues;
pub use virtio::Offloads;

use crate::xen::netfront::{Netfront, NetfrontRx, NetfrontTx};
use netstack::smoltcp::phy::{Device, DeviceCapabilities, PacketMeta, RxToken, TxToken};
use netstack::smoltcp::time::Instant;

/// How a virtio NIC's queue interrupts can reach the CPU (see `platform::setup_interrupts`).
pub enum InterruptRoute {
    /// virtio-mmio: an I/O APIC input (GSI), named on the command line.
    Gsi(u32),
    /// virtio-pci: MSI-X messages straight to the local APIC.
    Msix(pci::Msix),
    /// None the image can set up, and why.
    Unknown(String),
}

impl InterruptRoute {
    fn from_mmio(irq: Option<u32>) -> Self {
        match irq {
            Some(gsi) => InterruptRoute::Gsi(gsi),
            None => InterruptRoute::Unknown(String::from(
                "the NIC's interrupt line is unknown: a probed virtio-mmio slot names none (QEMU names it on the \
                 command line with acpi=off)",
            )),
        }
    }
}

/// The NIC the image drives: virtio-net (QEMU) or Xen netfront.
// There is one NIC for the image's lifetime: the size difference costs nothing, a box would
// cost an indirection per frame.
#[allow(clippy::large_enum_variant)]
pub enum Nic {
    Virtio(virtio::Nic),
    Xen(Netfront),
}

impl Nic {
    pub fn mac(&self) -> [u8; 6] {
        match self {
            Nic::Virtio(n) => n.mac(),
            Nic::Xen(n) => n.mac(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Nic::Virtio(n) => n.describe(),
            Nic::Xen(n) => n.describe(),
        }
    }

    pub fn stats(&self) -> String {
        match self {
            Nic::Virtio(n) => format!("{}", n.stats()),
            Nic::Xen(n) => n.stats(),
        }
    }

    pub fn fault(&self) -> Option<&str> {
        match self {
            Nic::Virtio(n) => n.fault(),
            Nic::Xen(n) => n.fault(),
        }
    }
}

pub enum NicRx<'a> {
    Virtio(virtio::NicRxToken<'a>),
    Xen(NetfrontRx<'a>),
}

pub enum NicTx<'a> {
    Virtio(virtio::NicTxToken<'a>),
    Xen(NetfrontTx<'a>),
}

impl RxToken for NicRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            NicRx::Virtio(t) => t.consume(f),
            NicRx::Xen(t) => t.consume(f),
        }
    }
}

impl TxToken for NicTx<'_> {
    fn set_meta(&mut self, meta: PacketMeta) {
        match self {
            NicTx::Virtio(t) => t.set_meta(meta),
            NicTx::Xen(t) => t.set_meta(meta),
        }
    }

    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self {
            NicTx::Virtio(t) => t.consume(len, f),
            NicTx::Xen(t) => t.consume(len, f),
        }
    }
}

impl Device for Nic {
    type RxToken<'a> = NicRx<'a>;
    type TxToken<'a> = NicTx<'a>;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        match self {
            Nic::Virtio(n) => n.receive(timestamp).map(|(r, t)| (NicRx::Virtio(r), NicTx::Virtio(t))),
            Nic::Xen(n) => n.receive(timestamp).map(|(r, t)| (NicRx::Xen(r), NicTx::Xen(t))),
        }
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        match self {
            Nic::Virtio(n) => n.transmit(timestamp).map(NicTx::Virtio),
            Nic::Xen(n) => n.transmit(timestamp).map(NicTx::Xen),
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        match self {
            Nic::Virtio(n) => n.capabilities(),
            Nic::Xen(n) => n.capabilities(),
        }
    }
}

/// Prefixes of the kernel-command-line words that belong to this driver; the option parser
/// must skip them. QEMU's microvm appends `virtio_mmio.device=512@0xfeb00e00:12` when ACPI is
/// off; `virtio_net.` words set the driver's offloads (see [`offloads_from_cmdline`]).
pub const CMDLINE_PARAMS: &[&str] = &["virtio_mmio.device=", "virtio_net."];

/// Finds and initialises the NIC. `cmdline` is the kernel command line, for QEMU's
/// `virtio_mmio.device=` tokens and our `virtio_net.` words; everything else on it is ignored.
pub fn open(cmdline: &str) -> Result<Nic, String> {
    let offloads = offloads_from_cmdline(cmdline)?;
    let declared = !mmio::windows_from_cmdline(cmdline)?.is_empty();
    if declared {
        return match mmio::find(cmdline)? {
            Some(found) => {
                let interrupt = InterruptRoute::from_mmio(found.irq);
                virtio::Nic::new(SomeTransport::from(found.transport), &found.location, interrupt, offloads)
                    .map(Nic::Virtio)
            }
            None => Err(String::from("no virtio-net device among the command line's virtio_mmio.device= windows")),
        };
    }
    if hypervisor_is_xen() {
        // Probing unassigned MMIO on Xen can crash the domain, and PVH guests have no PCI.
        if !crate::xen::active() {
            return Err(String::from("running on Xen, but the Xen set-up failed: no netfront"));
        }
        if crate::xen::dom0() {
            return Err(String::from(
                "running as Xen's dom0: there is no netback here for netfront to connect to, and the image has no \
                 driver for the host's own NICs; run it as a domU (type = \"pvh\")",
            ));
        }
        return crate::xen::netfront::open(offloads.tso, offloads.lro)
            .map(Nic::Xen)
            .map_err(|e| format!("Xen netfront: {e}"));
    }
    if let Some(found) = pci::find()? {
        let location = format!("virtio-pci (modern) at {}", found.location);
        let interrupt = match found.msix {
            Ok(msix) => InterruptRoute::Msix(msix),
            Err(e) => InterruptRoute::Unknown(format!("{e}; INTx is not routed")),
        };
        return virtio::Nic::new(SomeTransport::from(found.transport), &location, interrupt, offloads).map(Nic::Virtio);
    }
    if pci::host_bridge_present() {
        return Err(String::from("no virtio-net device on the PCI bus (QEMU: -device virtio-net-pci,netdev=...)"));
    }
    match mmio::find(cmdline)? {
        Some(found) => {
            let interrupt = InterruptRoute::from_mmio(found.irq);
            virtio::Nic::new(SomeTransport::from(found.transport), &found.location, interrupt, offloads)
                .map(Nic::Virtio)
        }
        None => Err(String::from(
            "no virtio-net device: no PCI bus, no virtio_mmio.device= on the command line, and no \
             virtio-mmio slot at 0xfeb00000 answers (QEMU: -device virtio-net-device,netdev=...)",
        )),
    }
}

/// The offloads the command line asks for: `virtio_net.tso=on|off` (transmit segmentation,
/// HOST_TSO4; on Xen, netfront's TSO), `virtio_net.lro=on|off` (large receive, GUEST_TSO4; `gro=` says the same) and
/// `virtio_net.offloads=on|off` (both); later words win. Both are on unless turned off.
/// Checksum offload stays on either way. Any other `virtio_net.` word is an error, so a typo
/// does not silently measure the wrong configuration.
pub fn offloads_from_cmdline(cmdline: &str) -> Result<Offloads, String> {
    let mut offloads = Offloads::default();
    for word in cmdline.split_ascii_whitespace() {
        let Some(setting) = word.strip_prefix("virtio_net.") else { continue };
        let (name, value) = setting.split_once('=').unwrap_or((setting, ""));
        let on = match value {
            "on" | "1" | "yes" | "true" => true,
            "off" | "0" | "no" | "false" => false,
            _ => return Err(format!("`{word}`: expected virtio_net.{name}=on or =off")),
        };
        match name {
            "tso" => offloads.tso = on,
            // Linux's name for the receive side is LRO for virtio-net, GRO elsewhere.
            "lro" | "gro" => offloads.lro = on,
            "offloads" => offloads = Offloads { tso: on, lro: on },
            _ => {
                return Err(format!(
                    "`{word}`: unknown virtio-net setting (known: virtio_net.tso=, virtio_net.lro= or \
                     gro=, virtio_net.offloads=)"
                ));
            }
        }
    }
    Ok(offloads)
}

/// CPUID hypervisor signature "XenVMMXenVMM" at leaf 0x40000000 (or 0x40000100 when Xen
/// also presents Viridian).
fn hypervisor_is_xen() -> bool {
    use core::arch::x86_64::__cpuid;
    const HYPERVISOR_PRESENT: u32 = 1 << 31;
    if __cpuid(1).ecx & HYPERVISOR_PRESENT == 0 {
        return false;
    }
    [0x4000_0000u32, 0x4000_0100].iter().any(|&leaf| {
        let r = __cpuid(leaf);
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&r.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        signature[8..].copy_from_slice(&r.edx.to_le_bytes());
        &signature == b"XenVMMXenVMM"
    })
}
