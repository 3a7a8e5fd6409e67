//! The PVH entry: the Xen ELF note that tells QEMU and Xen where to jump, and the 32-bit
//! trampoline that builds identity page tables for the first 4 GiB, enters long mode and calls
//! `rust_start` with the physical address of `hvm_start_info` (PVH ABI: `ebx`, paging off,
//! flat 32-bit segments, no stack). Everything is linked at its physical address (linker.ld).

use core::arch::global_asm;

/// The boot stack. Stack frames of smoltcp and the roles are modest; this leaves ample room.
pub const BOOT_STACK_SIZE: usize = 1024 * 1024;

unsafe extern "C" {
    /// The 32-bit PVH entry point below.
    fn pvh_start32() -> !;
}

// XEN_ELFNOTE_PHYS32_ENTRY (type 18, name "Xen"), 4-byte aligned (see linker.ld).
pvh::xen_elfnote_phys32_entry!(pvh_start32);

// Page-table entry bits.
const PRESENT: u32 = 1 << 0;
const WRITABLE: u32 = 1 << 1;
const HUGE: u32 = 1 << 7;
// Control-register and MSR bits.
const CR0_PE: u32 = 1 << 0;
const CR0_PG: u32 = 1 << 31;
const CR4_PAE: u32 = 1 << 5;
const MSR_EFER: u32 = 0xC000_0080;
const EFER_LME: u32 = 1 << 8;

global_asm!(
    r#"
    .section .text.pvh_start32, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cld
    mov %ebx, %esi                      # hvm_start_info stays in esi until rust_start

    # Zero .bss: page tables and stacks live there. (Loaders zero p_memsz past p_filesz
    # already; this is cheap insurance.)
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov $boot_stack_top, %esp

    # Four page directories of 2 MiB pages: identity map of 0..4 GiB (RAM, the PCI hole,
    # virtio-mmio, IOAPIC/LAPIC and Xen's magic pages all live below 4 GiB).
    mov $boot_pd, %edi
    mov ${PAGE_BITS}, %eax
    mov $2048, %ecx
1:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b

    # The 2 MiB region holding the stack guard page gets 4 KiB pages, the guard none, so a
    # stack overflow faults (into the double-fault stack) instead of corrupting memory.
    mov $boot_stack_guard, %eax
    and $0xFFE00000, %eax
    or ${TABLE_BITS}, %eax
    mov $boot_pt, %edi
    mov $512, %ecx
2:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 2b
    mov $boot_stack_guard, %eax
    shr $12, %eax
    and $511, %eax
    movl $0, boot_pt(,%eax,8)
    mov $boot_stack_guard, %eax
    shr $21, %eax
    movl $(boot_pt + {TABLE_BITS}), boot_pd(,%eax,8)

    # PDPT[0..4] -> the four directories; PML4[0] -> PDPT.
    mov $boot_pdpt, %edi
    mov $(boot_pd + {TABLE_BITS}), %eax
    mov $4, %ecx
3:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 3b
    movl $(boot_pdpt + {TABLE_BITS}), boot_pml4

    # Long mode: PAE, CR3, EFER.LME, then paging.
    mov %cr4, %eax
    or ${CR4_PAE}, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov ${MSR_EFER}, %ecx
    rdmsr
    or ${EFER_LME}, %eax
    wrmsr
    mov %cr0, %eax
    or ${CR0_PG_PE}, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %esi, %edi                      # rust_start(start_info_paddr: u32)
    call {rust_start}
    ud2

    # The native ELF entry (e_entry): only PVH boot is supported. Some loaders check that
    # e_entry is valid even when they use the PVH note.
    .global _start
_start:
    cli
    hlt
    jmp _start

    .section .rodata.boot_gdt, "a"
    .balign 8
boot_gdt:
    .quad 0                             # null
    .quad 0x00af9a000000ffff            # 0x08: 64-bit code, DPL 0
    .quad 0x00cf92000000ffff            # 0x10: data, DPL 0
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
boot_pt:    .skip 4096

    .section .bss.boot_stack, "aw", @nobits
    .balign 4096
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip {STACK_SIZE}
    .global boot_stack_top
boot_stack_top:

    .text
    "#,
    PAGE_BITS = const PRESENT | WRITABLE | HUGE,
    TABLE_BITS = const PRESENT | WRITABLE,
    CR4_PAE = const CR4_PAE,
    MSR_EFER = const MSR_EFER,
    EFER_LME = const EFER_LME,
    CR0_PG_PE = const CR0_PG | CR0_PE,
    STACK_SIZE = const BOOT_STACK_SIZE,
    rust_start = sym crate::rust_start,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical (= virtual) address range of the loaded image, bss included.
pub fn image_range() -> (u64, u64) {
    // Linker-script symbols: only their addresses are taken.
    (&raw const __image_start as u64, &raw const __image_end as u64)
}

/// The boot stack (without its guard page), for the exception handler's overflow hint.
pub fn stack_range() -> (u64, u64) {
    // Symbols of the boot assembly: only their addresses are taken.
    (&raw const boot_stack_bottom as u64, &raw const boot_stack_top as u64)
}

/// The unmapped page below the boot stack.
pub fn stack_guard() -> u64 {
    &raw const boot_stack_guard as u64
}
