//! CPU exceptions: a GDT with a TSS (so a double fault, e.g. from a stack overflow into the
//! guard page, runs on its own stack) and an IDT whose 32 exception vectors print what
//! happened and end the VM with the crash status, plus the few device interrupts the idle
//! wait enables (see apic.rs): they are taken only inside its `sti; hlt` and just acknowledged.

use crate::{apic, boot, console, exit};
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::fmt::Write;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

const DOUBLE_FAULT_IST: u16 = 1;
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// A table the CPU reads, written once by [`init`] before it is loaded.
struct CpuTable<T>(UnsafeCell<T>);

// SAFETY: written only by `init`, once, on the only CPU, before any other use.
unsafe impl<T> Sync for CpuTable<T> {}

static DOUBLE_FAULT_STACK: CpuTable<IstStack> = CpuTable(UnsafeCell::new(IstStack([0; IST_STACK_SIZE])));
static TSS: CpuTable<TaskStateSegment> = CpuTable(UnsafeCell::new(TaskStateSegment::new()));
static GDT: CpuTable<GlobalDescriptorTable> = CpuTable(UnsafeCell::new(GlobalDescriptorTable::new()));
static IDT: CpuTable<[IdtEntry; 256]> = CpuTable(UnsafeCell::new([IdtEntry::MISSING; 256]));

/// A 64-bit interrupt gate (SDM vol. 3, 6.14.1).
#[derive(Clone, Copy)]
#[repr(C)]
struct IdtEntry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl IdtEntry {
    const MISSING: IdtEntry =
        IdtEntry { offset_low: 0, selector: 0, ist: 0, type_attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    fn gate(handler: u64, selector: u16, ist: u16) -> IdtEntry {
        IdtEntry {
            offset_low: handler as u16,
            selector,
            ist: ist as u8,
            type_attr: 0x8E, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

// One stub per exception vector: push a zero where the CPU pushes no error code, push the
// vector, and call `exception_entry` with a pointer to the frame.
global_asm!(
    r#"
    .section .text.exception_stubs, "ax"
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
exception_stub_\n:
    push $0
    push $\n
    jmp exception_common
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
exception_stub_\n:
    push $\n
    jmp exception_common
    .endr
exception_common:
    mov %rsp, %rdi
    and $-16, %rsp
    call {entry}
    ud2


    // Device interrupts: save the registers a C call may clobber, call `irq_entry(vector)`
    // on a 16-byte aligned stack, restore, return.
    .irp n, 48,49,50,255
irq_stub_\n:
    push $\n
    jmp irq_common
    .endr
irq_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbp
    mov 80(%rsp), %rdi
    mov %rsp, %rbp
    and $-16, %rsp
    cld
    call {irq}
    mov %rbp, %rsp
    pop %rbp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq

    .section .rodata.exception_stubs, "a"
    .balign 8
    .global exception_stub_table
exception_stub_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\n
    .endr
    .global irq_stub_table
irq_stub_table:
    .quad irq_stub_48
    .quad irq_stub_49
    .quad irq_stub_50
    .quad irq_stub_255
    .text
    "#,
    entry = sym exception_entry,
    irq = sym irq_entry,
    options(att_syntax)
);

unsafe extern "C" {
    static exception_stub_table: [u64; 32];
    static irq_stub_table: [u64; 4];
}

/// The device vectors `irq_stub_table` serves, in its order.
const IRQ_VECTORS: [u8; 4] = [apic::NIC_VECTOR, apic::TIMER_VECTOR, apic::XEN_VECTOR, apic::SPURIOUS_VECTOR];

extern "C" fn irq_entry(vector: u64) {
    apic::handle(vector as u8);
}

/// Loads our GDT (code, data, TSS), the TSS and the IDT. Call once, first thing.
pub fn init() {
    // SAFETY: runs once on the only CPU before anything else touches these statics; after
    // this they are only read by the CPU itself.
    unsafe {
        let ist_top = DOUBLE_FAULT_STACK.0.get() as u64 + IST_STACK_SIZE as u64;
        let tss = &mut *TSS.0.get();
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(ist_top);
        let gdt = &mut *GDT.0.get();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_sel = gdt.append(Descriptor::tss_segment(&*TSS.0.get()));
        gdt.load_unsafe();
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);

        let idt = &mut *IDT.0.get();
        for (vector, (entry, &stub)) in idt.iter_mut().zip(exception_stub_table.iter()).enumerate() {
            let ist = if vector == 8 { DOUBLE_FAULT_IST } else { 0 };
            *entry = IdtEntry::gate(stub, code.0, ist);
        }
        for (&vector, &stub) in IRQ_VECTORS.iter().zip(irq_stub_table.iter()) {
            idt[usize::from(vector)] = IdtEntry::gate(stub, code.0, 0);
        }
        lidt(&DescriptorTablePointer {
            limit: (core::mem::size_of::<[IdtEntry; 256]>() - 1) as u16,
            base: VirtAddr::new(IDT.0.get() as u64),
        });
    }
}

/// What the stubs and the CPU pushed.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "BOUND range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved (15)",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved (31)",
];

extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let name = NAMES.get(frame.vector as usize).copied().unwrap_or("unknown");
    let mut out = console::Console;
    let _ = write!(
        out,
        "\nuniperf: CPU exception: {name} (vector {}) at rip {:#x}, error code {:#x}, rsp {:#x}",
        frame.vector, frame.rip, frame.error_code, frame.rsp
    );
    if frame.vector == 14 {
        let cr2 = Cr2::read_raw();
        let _ = write!(out, ", address {cr2:#x}");
        let guard = boot::stack_guard();
        if (guard..guard + 4096).contains(&cr2) {
            let _ = write!(out, " (boot stack overflow)");
        }
    }
    if frame.vector == 8 {
        let (bottom, _) = boot::stack_range();
        if (boot::stack_guard()..bottom + 4096).contains(&frame.rsp) {
            let _ = write!(out, " (probably a boot stack overflow)");
        }
    }
    let _ = writeln!(out);
    exit::exit(exit::CRASH)
}
