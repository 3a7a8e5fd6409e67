//! What CPUID says about the machine: which hypervisor runs us (the signature leaf at
//! 0x40000000, or Xen's, which may sit 0x100 higher), its TSC-frequency leaves, and RDRAND.

use alloc::string::String;
use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};

/// CPUID.1:ECX bits.
const CPUID1_ECX_RDRAND: u32 = 1 << 30;
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Hypervisor leaves live at 0x40000000 + k * 0x100 (Xen moves up when it also offers
/// Viridian); Xen scans this far for itself.
const HV_BASE: u32 = 0x4000_0000;
const HV_SCAN_END: u32 = 0x4001_0000;

pub fn cpuid(leaf: u32) -> CpuidResult {
    __cpuid(leaf)
}

pub fn cpuid_count(leaf: u32, sub: u32) -> CpuidResult {
    __cpuid_count(leaf, sub)
}

pub fn max_basic_leaf() -> u32 {
    cpuid(0).eax
}

pub fn has_rdrand() -> bool {
    cpuid(1).ecx & CPUID1_ECX_RDRAND != 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypervisorKind {
    /// QEMU's software emulator (`TCGTCGTCGTCG`).
    Tcg,
    /// `KVMKVMKVM`.
    Kvm,
    /// `XenVMMXenVMM`.
    Xen,
    /// Some other signature (shown as found).
    Other([u8; 12]),
    /// CPUID.1:ECX.hypervisor is clear: bare metal, or a hypervisor that hides.
    None,
}

/// A hypervisor's CPUID block: its kind, base leaf and highest leaf.
#[derive(Clone, Copy, Debug)]
pub struct Hypervisor {
    pub kind: HypervisorKind,
    pub base: u32,
    pub max_leaf: u32,
}

fn signature(r: &CpuidResult) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&r.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    s[8..].copy_from_slice(&r.edx.to_le_bytes());
    s
}

fn kind_of(sig: &[u8; 12]) -> HypervisorKind {
    match sig {
        b"TCGTCGTCGTCG" => HypervisorKind::Tcg,
        b"KVMKVMKVM\0\0\0" => HypervisorKind::Kvm,
        b"XenVMMXenVMM" => HypervisorKind::Xen,
        other => HypervisorKind::Other(*other),
    }
}

/// The hypervisor we run under. Xen is preferred wherever its block sits; otherwise the
/// block at 0x40000000 decides.
pub fn hypervisor() -> Hypervisor {
    if cpuid(1).ecx & CPUID1_ECX_HYPERVISOR == 0 {
        return Hypervisor { kind: HypervisorKind::None, base: 0, max_leaf: 0 };
    }
    let first = cpuid(HV_BASE);
    let first_kind = kind_of(&signature(&first));
    if first_kind != HypervisorKind::Xen {
        let mut base = HV_BASE + 0x100;
        while base < HV_SCAN_END {
            let r = cpuid(base);
            if kind_of(&signature(&r)) == HypervisorKind::Xen && r.eax >= base {
                return Hypervisor { kind: HypervisorKind::Xen, base, max_leaf: r.eax };
            }
            base += 0x100;
        }
    }
    Hypervisor { kind: first_kind, base: HV_BASE, max_leaf: first.eax }
}

impl Hypervisor {
    pub fn name(&self) -> String {
        match self.kind {
            HypervisorKind::Tcg => "TCG".into(),
            HypervisorKind::Kvm => "KVM".into(),
            HypervisorKind::Xen => "Xen".into(),
            HypervisorKind::None => "no hypervisor".into(),
            HypervisorKind::Other(sig) => {
                let printable: String =
                    sig.iter().filter(|b| b.is_ascii_graphic() || **b == b' ').map(|&b| b as char).collect();
                alloc::format!("hypervisor '{}'", printable.trim())
            }
        }
    }

    /// TSC frequency in Hz from the hypervisor: Xen's leaf base+3 (subleaf 0, ECX in kHz) or
    /// the VMware-style timing leaf 0x40000010 (EAX in kHz) that KVM and VMware offer.
    pub fn tsc_hz(&self) -> Option<(u64, &'static str)> {
        match self.kind {
            HypervisorKind::Xen if self.max_leaf >= self.base + 3 => {
                let khz = cpuid_count(self.base + 3, 0).ecx;
                (khz != 0).then_some((u64::from(khz) * 1000, "Xen CPUID leaf"))
            }
            HypervisorKind::Xen | HypervisorKind::None => None,
            _ if self.max_leaf >= HV_BASE + 0x10 => {
                let khz = cpuid(HV_BASE + 0x10).eax;
                (khz != 0).then_some((u64::from(khz) * 1000, "CPUID 0x40000010"))
            }
            _ => None,
        }
    }
}
