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

pub use virtio::Nic;

/// Finds and initialises the NIC. `cmdline` is the kernel command line, for QEMU's
/// `virtio_mmio.device=` tokens; everything else on it is ignored.
pub fn open(cmdline: &str) -> Result<Nic, String> {
    let declared = !mmio::windows_from_cmdline(cmdline)?.is_empty();
    if declared {
        return match mmio::find(cmdline)? {
            Some(found) => Nic::new(SomeTransport::from(found.transport), &found.location),
            None => Err(String::from("no virtio-net device among the command line's virtio_mmio.device= windows")),
        };
    }
    if hypervisor_is_xen() {
        // Probing unassigned MMIO on Xen can crash the domain, and PVH guests have no PCI.
        return Err(String::from("running on Xen: no virtio-net here (the Xen netfront driver is needed)"));
    }
    if let Some(found) = pci::find()? {
        return Nic::new(SomeTransport::from(found.transport), &format!("virtio-pci (modern) at {}", found.location));
    }
    if pci::host_bridge_present() {
        return Err(String::from("no virtio-net device on the PCI bus (QEMU: -device virtio-net-pci,netdev=...)"));
    }
    match mmio::find(cmdline)? {
        Some(found) => Nic::new(SomeTransport::from(found.transport), &found.location),
        None => Err(String::from(
            "no virtio-net device: no PCI bus, no virtio_mmio.device= on the command line, and no \
             virtio-mmio slot at 0xfeb00000 answers (QEMU: -device virtio-net-device,netdev=...)",
        )),
    }
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
