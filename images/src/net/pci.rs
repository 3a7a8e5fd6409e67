//! PCI discovery on QEMU `pc` and `q35`: configuration mechanism #1 (ports 0xCF8/0xCFC, which
//! both machines decode) as virtio-drivers' `ConfigurationAccess`, and a walk of bus 0 and the
//! buses behind PCI-PCI bridges for a virtio-net function; and its MSI-X routing ([`Msix`]),
//! which virtio-drivers' `PciTransport` leaves alone.

use alloc::format;
use alloc::string::String;
use core::arch::asm;

use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, HeaderType, PCI_CAP_ID_VNDR, PciRoot,
};

use super::hal::{DmaHal, ensure_mapped};

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;
const VIRTIO_VENDOR: u16 = 0x1AF4;
/// Transitional (legacy-capable) and modern-only virtio-net device IDs.
const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;
const VIRTIO_NET_MODERN: u16 = 0x1041;
/// Type 1 header: bits 8..16 of the dword at 0x18 hold the secondary bus number.
const BRIDGE_BUS_NUMBERS: u8 = 0x18;

/// MSI-X capability (PCI 3.0 §6.8.2): message control in the upper half of its first dword
/// (table size - 1 in bits 0..11, function mask bit 14, enable bit 15), then the table's BAR
/// indicator (bits 0..3) and offset.
const PCI_CAP_ID_MSIX: u8 = 0x11;
const MSIX_TABLE_SIZE_MASK: u32 = 0x7FF;
const MSIX_FUNCTION_MASK: u32 = 1 << 14;
const MSIX_ENABLE: u32 = 1 << 15;
const MSIX_TABLE_OFFSET: u8 = 4;
/// A table entry: message address low, high, data, vector control (bit 0 masks it).
const MSIX_ENTRY_SIZE: u64 = 16;
const MSIX_ENTRY_DATA: u64 = 8;
const MSIX_ENTRY_VECTOR_CONTROL: u64 = 12;

/// virtio-pci vendor capability (virtio 1.2 §4.1.4): cfg_type byte, BAR, offset in the BAR.
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const VIRTIO_CAP_BAR: u8 = 4;
const VIRTIO_CAP_OFFSET: u8 = 8;
/// `virtio_pci_common_cfg` fields (virtio 1.2 §4.1.4.3).
const COMMON_MSIX_CONFIG: u64 = 0x10;
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1A;
/// "No vector": the event raises no interrupt.
const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;
/// The table entry both queues signal through.
const QUEUE_ENTRY: u16 = 0;

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
    /// Its MSI-X routing, or why it has none.
    pub msix: Result<Msix, String>,
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
    let msix = Msix::find(root, function, &bars);
    Ok(Found { transport, location: format!("PCI {function}"), msix })
}

/// The memory address of BAR `index`, if it is an assigned memory BAR.
fn bar_address(bars: &[Option<BarInfo>; 6], index: u8) -> Option<u64> {
    match bars.get(usize::from(index))? {
        Some(BarInfo::Memory { address, .. }) if *address != 0 => Some(*address),
        _ => None,
    }
}

/// A virtio-pci function's queue interrupts as MSI-X messages: its MSI-X capability and table,
/// and the common configuration where each queue names its table entry.
///
/// MSI-X rather than INTx: a message goes straight to the local APIC, the same way on `pc`
/// and `q35`, whatever bridge the device sits behind; INTx would need the chipset's routing
/// (PIIX PIRQ links to ISA IRQs on `pc`, ICH9 PIRQs to GSIs 16..23 on `q35`, swizzled per
/// slot and bridge, which only ACPI's _PRT describes) and, being level-triggered, a device
/// acknowledgement in the interrupt handler. QEMU's virtio-net-pci has MSI-X vectors unless
/// `vectors=0`.
pub struct Msix {
    function: DeviceFunction,
    /// Config-space offset of the MSI-X capability.
    capability: u8,
    /// The table's (identity-mapped) address and its number of entries.
    table: u64,
    entries: u32,
    /// The common configuration's (identity-mapped) address.
    common_cfg: u64,
}

impl Msix {
    /// Finds the MSI-X capability and the virtio common configuration of `function`, whose
    /// memory BARs (`bars`) are mapped.
    fn find(root: &PciRoot<PortIoCam>, function: DeviceFunction, bars: &[Option<BarInfo>; 6]) -> Result<Self, String> {
        let mut msix = None;
        let mut common_cfg = None;
        for capability in root.capabilities(function) {
            match capability.id {
                PCI_CAP_ID_MSIX if msix.is_none() => msix = Some(capability.offset),
                PCI_CAP_ID_VNDR
                    if common_cfg.is_none() && (capability.private_header >> 8) as u8 == VIRTIO_PCI_CAP_COMMON_CFG =>
                {
                    let bar = PortIoCam.read_word(function, capability.offset + VIRTIO_CAP_BAR) as u8;
                    let offset = PortIoCam.read_word(function, capability.offset + VIRTIO_CAP_OFFSET);
                    common_cfg = bar_address(bars, bar).map(|base| base + u64::from(offset));
                }
                _ => {}
            }
        }
        let capability = msix.ok_or("the NIC has no MSI-X capability (QEMU: vectors=0)")?;
        let common_cfg = common_cfg.ok_or("the virtio common configuration is not in a memory BAR")?;
        let control = PortIoCam.read_word(function, capability) >> 16;
        let table = PortIoCam.read_word(function, capability + MSIX_TABLE_OFFSET);
        let entries = (control & MSIX_TABLE_SIZE_MASK) + 1;
        let table = bar_address(bars, (table & 0x7) as u8)
            .map(|base| base + u64::from(table & !0x7))
            .ok_or("the MSI-X table's BAR is not an assigned memory BAR")?;
        Ok(Msix { function, capability, table, entries, common_cfg })
    }

    /// Delivers both queues' interrupts as the message (`address`, `data`) through table entry
    /// [`QUEUE_ENTRY`], configuration changes not at all, and turns MSI-X on. The queues'
    /// own NO_INTERRUPT flags still decide when the device signals.
    pub fn route(&self, address: u64, data: u32) -> Result<(), String> {
        // Mask the whole function while its entry and vectors change (PCI 3.0 §6.8.2.3).
        self.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        let entry = self.table + u64::from(QUEUE_ENTRY) * MSIX_ENTRY_SIZE;
        // SAFETY: `find` found the table in a memory BAR that `open` mapped (identity); entry
        // 0 exists (a table has at least one), and its 32-bit registers are 4-aligned.
        unsafe {
            mmio_write32(entry, address as u32);
            mmio_write32(entry + 4, (address >> 32) as u32);
            mmio_write32(entry + MSIX_ENTRY_DATA, data);
            mmio_write32(entry + MSIX_ENTRY_VECTOR_CONTROL, 0);
        }
        let result = self.assign_vectors();
        match result {
            Ok(()) => self.set_control(MSIX_ENABLE),
            Err(_) => self.set_control(0),
        }
        result
    }

    /// Points the receive and transmit queues at [`QUEUE_ENTRY`] and checks that the device
    /// took it (it reads back NO_VECTOR when it refuses, virtio 1.2 §4.1.5.1.2).
    fn assign_vectors(&self) -> Result<(), String> {
        let cfg = self.common_cfg;
        // SAFETY: the common configuration lies in a memory BAR that `open` mapped (identity);
        // the fields are 16-bit and 2-aligned. The transport also uses `queue_select`, but never
        // at the same time: one CPU, and this runs between two of its calls.
        unsafe {
            mmio_write16(cfg + COMMON_MSIX_CONFIG, VIRTIO_MSI_NO_VECTOR);
            for queue in [0u16, 1] {
                mmio_write16(cfg + COMMON_QUEUE_SELECT, queue);
                mmio_write16(cfg + COMMON_QUEUE_MSIX_VECTOR, QUEUE_ENTRY);
                let took = mmio_read16(cfg + COMMON_QUEUE_MSIX_VECTOR);
                if took != QUEUE_ENTRY {
                    return Err(format!(
                        "the device refused MSI-X entry {QUEUE_ENTRY} for queue {queue} (read back {took:#x})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets the enable and function-mask bits of the message control register.
    fn set_control(&self, bits: u32) {
        let dword = PortIoCam.read_word(self.function, self.capability);
        let dword = dword & !((MSIX_ENABLE | MSIX_FUNCTION_MASK) << 16) | bits << 16;
        PortIoCam.write_word(self.function, self.capability, dword);
    }

    /// The table's size, for the console.
    pub fn entries(&self) -> u32 {
        self.entries
    }
}

/// # Safety
///
/// `addr` must be mapped device memory with a 32-bit register there.
unsafe fn mmio_write32(addr: u64, value: u32) {
    // SAFETY: passed on from the caller.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// # Safety
///
/// `addr` must be mapped device memory with a 16-bit register there.
unsafe fn mmio_write16(addr: u64, value: u16) {
    // SAFETY: passed on from the caller.
    unsafe { core::ptr::write_volatile(addr as *mut u16, value) }
}

/// # Safety
///
/// `addr` must be mapped device memory with a 16-bit register there.
unsafe fn mmio_read16(addr: u64) -> u16 {
    // SAFETY: passed on from the caller.
    unsafe { core::ptr::read_volatile(addr as *const u16) }
}

/// Whether anything answers at 00:00.0 (the host bridge on `pc` and `q35`; nothing on `microvm`).
pub fn host_bridge_present() -> bool {
    let host_bridge = DeviceFunction { bus: 0, device: 0, function: 0 };
    PortIoCam.read_word(host_bridge, 0) as u16 != 0xFFFF
}
