//! Identity mappings beyond the boot tables. The trampoline maps 0..4 GiB with 2 MiB pages;
//! device memory above that (64-bit PCI BARs) and RAM above 4 GiB are mapped here, also with
//! 2 MiB pages, taking page tables from the heap. Virtual address = physical address always.

use alloc::alloc::{Layout, alloc_zeroed};
use alloc::format;
use alloc::string::String;
use spinning_top::Spinlock;
use x86_64::registers::control::Cr3;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
/// Page-level write-through and cache-disable: uncached, for device registers.
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const PAGE_2M: u64 = 2 * 1024 * 1024;
/// Four-level paging reaches 256 TiB.
const VA_LIMIT: u64 = 1 << 48;

type Table = [u64; 512];

static LOCK: Spinlock<()> = Spinlock::new(());

#[derive(Clone, Copy, PartialEq, Eq)]
enum Caching {
    WriteBack,
    Uncached,
}

/// Makes the physical range `paddr..paddr+len` (device memory, e.g. a PCI BAR above 4 GiB)
/// addressable at the same virtual address, uncached. Ranges are widened to 2 MiB pages;
/// mapping again is harmless. Errors when the range wraps or lies beyond 256 TiB, or when
/// the heap cannot supply a page table.
pub fn map_identity(paddr: u64, len: u64) -> Result<(), String> {
    map(paddr, len, Caching::Uncached)
}

/// Maps RAM above 4 GiB (write-back) before the heap claims it.
pub(crate) fn map_ram(paddr: u64, len: u64) -> Result<(), String> {
    map(paddr, len, Caching::WriteBack)
}

fn map(paddr: u64, len: u64, caching: Caching) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    let end = paddr
        .checked_add(len)
        .and_then(|e| e.checked_next_multiple_of(PAGE_2M))
        .filter(|&e| e <= VA_LIMIT)
        .ok_or_else(|| format!("cannot map {paddr:#x}+{len:#x}: beyond the 256 TiB that 4-level paging reaches"))?;
    let start = paddr & !(PAGE_2M - 1);
    let bits = PRESENT
        | WRITABLE
        | HUGE
        | match caching {
            Caching::WriteBack => 0,
            Caching::Uncached => PCD | PWT,
        };
    let _guard = LOCK.lock();
    let pml4 = (Cr3::read_raw().0.start_address().as_u64()) as *mut Table;
    let mut flush = false;
    let mut page = start;
    while page < end {
        // SAFETY: every table reached from CR3 is identity-mapped memory that only this
        // module (under LOCK) or the boot code before it writes; indices are < 512.
        unsafe {
            let pdpt = next_level(pml4, (page >> 39) & 511)?;
            let pd = next_level(pdpt, (page >> 30) & 511)?;
            let slot = &mut (*pd)[((page >> 21) & 511) as usize];
            let old = *slot;
            let split = old & PRESENT != 0 && old & HUGE == 0;
            // A region split into 4 KiB pages (the boot stack's guard) stays as it is.
            if !split && old != page | bits {
                *slot = page | bits;
                flush |= old & PRESENT != 0;
            }
        }
        page += PAGE_2M;
    }
    if flush {
        // A present entry changed: reload CR3 to drop stale translations.
        let (frame, flags) = Cr3::read();
        // SAFETY: the same tables, reloaded.
        unsafe { Cr3::write(frame, flags) };
    }
    Ok(())
}

/// The table `table[index]` points to, allocating an empty one if absent.
///
/// # Safety
/// `table` must be a live, identity-mapped page table of the non-leaf level.
unsafe fn next_level(table: *mut Table, index: u64) -> Result<*mut Table, String> {
    // SAFETY: the caller guarantees `table` is a valid table; index < 512.
    let slot = unsafe { &mut (*table)[index as usize] };
    if *slot & PRESENT != 0 {
        if *slot & HUGE != 0 {
            return Err("a 1 GiB page is in the way".into());
        }
        return Ok((*slot & ADDR_MASK) as *mut Table);
    }
    let layout = Layout::new::<Table>().align_to(4096).expect("4 KiB alignment is valid");
    // SAFETY: non-zero size.
    let new = unsafe { alloc_zeroed(layout) } as *mut Table;
    if new.is_null() {
        return Err("out of memory for a page table".into());
    }
    *slot = new as u64 | PRESENT | WRITABLE;
    Ok(new)
}
