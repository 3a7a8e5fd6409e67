//! virtio-mmio discovery on QEMU `microvm`. With `acpi=off` QEMU appends Linux-style
//! `virtio_mmio.device=<size>@<base>:<irq>` tokens to the command line; with ACPI on it does
//! not, so then the transport slots (512 bytes each from 0xFEB0_0000) are probed for the
//! "virt" magic and a network device ID.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, MmioVersion, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

use super::hal::ensure_mapped;

const MICROVM_MMIO_BASE: u64 = 0xFEB0_0000;
const MICROVM_SLOT_SIZE: u64 = 512;
/// 8 slots with one IOAPIC, 24 with `ioapic2=on`.
const MICROVM_SLOTS: u64 = 24;
/// Header (0x100) plus the largest config space worth reading; anything larger is clamped.
const MAX_REGION: u64 = 0x1000;

/// A virtio-mmio register window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub size: u64,
    /// The interrupt line (GSI) the token names, if any.
    pub irq: Option<u32>,
}

/// A virtio-net MMIO device ready to drive, and where it was found.
pub struct Found {
    pub transport: MmioTransport<'static>,
    pub location: String,
    /// The interrupt line from the command line (probed slots have none).
    pub irq: Option<u32>,
}

/// The windows named by `virtio_mmio.device=` tokens, in order.
pub fn windows_from_cmdline(cmdline: &str) -> Result<Vec<Window>, String> {
    let mut windows = Vec::new();
    for token in cmdline.split_ascii_whitespace() {
        let Some(spec) = token.strip_prefix("virtio_mmio.device=") else { continue };
        let window = parse_window(spec)
            .ok_or_else(|| format!("cannot parse `{token}` (expected virtio_mmio.device=<size>@<base>:<irq>)"))?;
        windows.push(window);
    }
    Ok(windows)
}

/// `<size>@<base>[:<irq>[:<id>]]`; size takes Linux's K/M/G suffixes, numbers may be hex (0x).
fn parse_window(spec: &str) -> Option<Window> {
    let (size, rest) = spec.split_once('@')?;
    let mut fields = rest.split(':');
    let base = fields.next()?;
    let irq = match fields.next() {
        Some(irq) => Some(u32::try_from(parse_number(irq)?).ok()?),
        None => None,
    };
    let (digits, scale) = match size.as_bytes().last()? {
        b'k' | b'K' => (&size[..size.len() - 1], 1 << 10),
        b'm' | b'M' => (&size[..size.len() - 1], 1 << 20),
        b'g' | b'G' => (&size[..size.len() - 1], 1 << 30),
        _ => (size, 1),
    };
    let size = parse_number(digits)?.checked_mul(scale)?;
    let base = parse_number(base)?;
    (size > 0 && base > 0).then_some(Window { base, size, irq })
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The first virtio-net device among the command-line windows, or, when there are none, among
/// the microvm transport slots. `Ok(None)` when nothing answers.
pub fn find(cmdline: &str) -> Result<Option<Found>, String> {
    let declared = windows_from_cmdline(cmdline)?;
    let probing = declared.is_empty();
    let slots = (0..MICROVM_SLOTS).map(|i| Window {
        base: MICROVM_MMIO_BASE + i * MICROVM_SLOT_SIZE,
        size: MICROVM_SLOT_SIZE,
        irq: None,
    });
    let candidates: Vec<Window> = if probing { slots.collect() } else { declared };
    for window in candidates {
        let size = window.size.min(MAX_REGION);
        if window.base % 4 != 0 {
            return Err(format!("virtio-mmio window at {:#x} is not 4-byte aligned", window.base));
        }
        ensure_mapped(window.base, size)?;
        let header = NonNull::new(window.base as *mut VirtIOHeader)
            .ok_or_else(|| String::from("virtio-mmio window at address 0"))?;
        // SAFETY: the window is identity-mapped device memory (named by the VMM on the command
        // line, or one of microvm's fixed transport slots), aligned, `size` bytes long, and no
        // Rust object lives there. Reading the header of an empty slot is harmless.
        let transport = match unsafe { MmioTransport::new(header, size as usize) } {
            Ok(t) => t,
            Err(_) if probing => continue,
            Err(e) => return Err(format!("virtio-mmio window {:#x}+{:#x}: {e}", window.base, window.size)),
        };
        if transport.device_type() == DeviceType::Network {
            let version = match transport.version() {
                MmioVersion::Legacy => "v1 (legacy)",
                MmioVersion::Modern => "v2 (modern)",
            };
            let how = if probing { "probed" } else { "from cmdline" };
            return Ok(Some(Found {
                transport,
                location: format!("virtio-mmio {version} at {:#x} ({how})", window.base),
                irq: window.irq,
            }));
        }
    }
    Ok(None)
}
