//! PCI discovery on QEMU `pc` and `q35`: configuration mechanism #1 (ports 0xCF8/0xCFC, which
//! both machines decode) as virtio-drivers' `ConfigurationAccess`, and a walk of bus 0 and the
//! buses behind PCI-PCI bridges for a virtio-net function.

use alloc::format;
use alloc::string::String;
use core::arch::asm;

use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{BarInfo, Command, ConfigurationAccess, DeviceFunction, HeaderType, PciRoot};

use super::hal::{DmaHal, ensure_mapped};

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;
const VIRTIO_VENDOR: u16 = 0x1AF4;
/// Transitional (legacy-capable) and modern-only virtio-net device IDs.
const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;
const VIRTIO_NET_MODERN: u16 = 0x1041;
/// Type 1 header: bits 8..16 of the dword at 0x18 hold the secondary bus number.
const BRIDGE_BUS_NUMBERS: u8 = 0x18;

/// Configuration mechanism #1: write the address of a config dword to 0xCF8, move it through 0xCFC.
pub struct PortIoCam;

impl PortIoCam {
    fn select(device_function: DeviceFunction, register_offset: u8) {
        let address = 0x8000_0000
            | u32::from(device_function.bus) << 16
            | u32::from(device_function.device & 0x1F) << 11
            | u32::from(device_function.function & 0x7) << 8
            | u32::from(register_offset & 0xFC);
        // SAFETY: 0xCF8 is the PCI configuration address port; writing it only selects a register.
        unsafe {
            asm!("out dx, eax", in("dx") CONFIG_ADDRESS, in("eax") address, options(nomem, nostack, preserves_flags))
        };
    }
}

impl ConfigurationAccess for PortIoCam {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        Self::select(device_function, register_offset);
        let value: u32;
        // SAFETY: reading 0xCFC returns the selected config dword (all ones when absent).
        unsafe { asm!("in eax, dx", in("dx") CONFIG_DATA, out("eax") value, options(nomem, nostack, preserves_flags)) };
        value
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        Self::select(device_function, register_offset);
        // SAFETY: writes the selected config dword; callers (virtio-drivers, `find`) only write
        // the command register and BAR sizing patterns they restore.
        unsafe { asm!("out dx, eax", in("dx") CONFIG_DATA, in("eax") data, options(nomem, nostack, preserves_flags)) };
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortIoCam
    }
}

/// A virtio-net PCI function ready to drive, and where it was found.
pub struct Found {
    pub transport: PciTransport,
    pub location: String,
}

/// Finds the first virtio-net function, maps its memory BARs, enables memory decoding and bus
/// mastering, and builds the transport. `Ok(None)` when there is no such device (or no PCI).
pub fn find() -> Result<Option<Found>, String> {
    let mut root = PciRoot::new(PortIoCam);
    let mut pending = [0u8; 32];
    let mut pending_len = 1; // bus 0
    let mut seen = [false; 256];
    while pending_len > 0 {
        pending_len -= 1;
        let bus = pending[pending_len];
        if core::mem::replace(&mut seen[usize::from(bus)], true) {
            continue;
        }
        for (function, info) in root.enumerate_bus(bus) {
            if info.header_type == HeaderType::PciPciBridge {
                let numbers = PortIoCam.read_word(function, BRIDGE_BUS_NUMBERS);
                let secondary = (numbers >> 8) as u8;
                if secondary != 0 && pending_len < pending.len() {
                    pending[pending_len] = secondary;
                    pending_len += 1;
                }
                continue;
            }
            if info.vendor_id != VIRTIO_VENDOR || !matches!(info.device_id, VIRTIO_NET_TRANSITIONAL | VIRTIO_NET_MODERN)
            {
                continue;
            }
            return open(&mut root, function, info.device_id).map(Some);
        }
    }
    Ok(None)
}

fn open(root: &mut PciRoot<PortIoCam>, function: DeviceFunction, device_id: u16) -> Result<Found, String> {
    let bars = root.bars(function).map_err(|e| format!("virtio-net at PCI {function}: reading BARs: {e}"))?;
    for bar in bars.iter().flatten() {
        if let BarInfo::Memory { address, size, .. } = bar
            && *address != 0
        {
            ensure_mapped(*address, *size)
                .map_err(|e| format!("virtio-net at PCI {function}: mapping BAR {address:#x}: {e}"))?;
        }
    }
    let (_, command) = root.get_status_command(function);
    root.set_command(function, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
    let transport = PciTransport::new::<DmaHal, _>(root, function).map_err(|e| {
        format!("virtio-net at PCI {function} (device id {device_id:#06x}): {e} (the driver needs the modern virtio-pci capabilities)")
    })?;
    Ok(Found { transport, location: format!("PCI {function}") })
}

/// Whether anything answers at 00:00.0 (the host bridge on `pc` and `q35`; nothing on `microvm`).
pub fn host_bridge_present() -> bool {
    let host_bridge = DeviceFunction { bus: 0, device: 0, function: 0 };
    PortIoCam.read_word(host_bridge, 0) as u16 != 0xFFFF
}
