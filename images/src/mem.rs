//! Memory: what the loader's `hvm_start_info` says (command line, e820-style map), and the
//! global heap built from the RAM above the image. The start info and what it points to may
//! lie in that RAM (Xen puts them just after the image), so [`BootInfo::read`] copies them
//! out before [`init_heap`] hands the RAM to the allocator.
//!
//! Every address is identity-mapped: a heap pointer is its own physical address, which is
//! what DMA needs (page-aligned `alloc_zeroed` gives ring and buffer memory; see net/hal.rs).

use crate::boot;
use crate::paging;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use pvh::start_info::reader::StartInfoReader;
use pvh::start_info::{MemmapTableEntry, MemmapType, START_MAGIC_VALUE};
use spinning_top::RawSpinlock;
use talc::TalcLock;
use talc::source::Manual;

static HEAP: TalcLock<RawSpinlock, Manual> = TalcLock::new(Manual);

/// The global allocator: talc, plus the bytes in use and their high-water mark (what a soak
/// reports: start vs end shows a leak, the high-water mark what the worst moment took).
struct TrackedHeap;

#[global_allocator]
static TRACKED: TrackedHeap = TrackedHeap;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
/// Allocations refused (the heap had no block that fits).
static FAILED: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(size: usize) {
    let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
    HIGH_WATER.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to talc unchanged; the counters are bookkeeping only.
unsafe impl GlobalAlloc for TrackedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { HEAP.alloc(layout) };
        if p.is_null() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        } else {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { HEAP.alloc_zeroed(layout) };
        if p.is_null() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        } else {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { HEAP.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { HEAP.realloc(ptr, layout, new_size) };
        if p.is_null() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        } else {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

/// Heap bytes in use now, the most ever in use since boot, and allocations refused.
pub fn heap_marks() -> (usize, usize, usize) {
    (IN_USE.load(Ordering::Relaxed), HIGH_WATER.load(Ordering::Relaxed), FAILED.load(Ordering::Relaxed))
}

/// Longest command line kept (Xen allows 1024 bytes; QEMU more, but nobody needs it).
pub const CMDLINE_MAX: usize = 4096;
/// Memory-map entries kept (QEMU gives 6-9, Xen a handful).
pub const MEMMAP_MAX: usize = 64;
/// RAM pieces smaller than this are not worth a heap.
const MIN_REGION: u64 = 64 * 1024;
const FOUR_GIB: u64 = 1 << 32;

#[derive(Clone, Copy, Debug, Default)]
pub struct Region {
    pub addr: u64,
    pub size: u64,
    pub ram: bool,
}

/// What the loader told us, copied into the boot stack frame.
pub struct BootInfo {
    pub version: u32,
    /// `hvm_start_info.flags` (`SIF_PRIVILEGED`, `SIF_INITDOMAIN`).
    pub flags: u32,
    /// The memory map came from XENMEM_memory_map, not the start info.
    pub memmap_from_xen: bool,
    cmdline: heapless::Vec<u8, CMDLINE_MAX>,
    pub cmdline_truncated: bool,
    memmap: heapless::Vec<Region, MEMMAP_MAX>,
}

impl BootInfo {
    /// Reads and copies `hvm_start_info` at `paddr`. Errors when the magic is wrong.
    ///
    /// # Safety
    /// `paddr` must be what the PVH loader passed in `ebx`, and the loader's structures must
    /// still be intact (nothing has been allocated yet).
    pub unsafe fn read(paddr: u32) -> Result<BootInfo, &'static str> {
        // SAFETY: the caller passes the loader's pointer; memory is identity-mapped.
        let si = unsafe { StartInfoReader::from_paddr_identity(paddr) }
            .ok_or("no hvm_start_info (bad magic): not booted through the PVH entry")?;
        debug_assert_eq!(si.raw().magic, START_MAGIC_VALUE);
        let mut info = BootInfo {
            version: si.raw().version,
            flags: si.raw().flags.bits(),
            memmap_from_xen: false,
            cmdline: heapless::Vec::new(),
            cmdline_truncated: false,
            memmap: heapless::Vec::new(),
        };
        if let Some(c) = si.cmdline() {
            let bytes = c.to_bytes();
            let n = bytes.len().min(CMDLINE_MAX);
            // Cannot fail: at most CMDLINE_MAX bytes.
            let _ = info.cmdline.extend_from_slice(&bytes[..n]);
            info.cmdline_truncated = n < bytes.len();
        }
        let map: &[MemmapTableEntry] = si.memmap();
        for e in map.iter().take(MEMMAP_MAX) {
            let _ = info.memmap.push(Region { addr: e.addr, size: e.size, ram: e.ty() == MemmapType::Ram });
        }
        Ok(info)
    }

    /// The kernel command line as text (non-UTF-8 bytes make it an error for the parser).
    pub fn cmdline(&self) -> Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(&self.cmdline)
    }

    /// `SIF_INITDOMAIN`: Xen started this image as its dom0.
    pub fn xen_dom0(&self) -> bool {
        self.flags & 2 != 0
    }

    pub fn memmap(&self) -> &[Region] {
        &self.memmap
    }

    /// Fills an empty map from e820 entries `(addr, size, type)` (type 1 is RAM): Xen's PVH
    /// dom0 builder passes start info v0 without a map, and the image asks Xen instead.
    pub fn fill_memmap(&mut self, e820: impl Iterator<Item = (u64, u64, u32)>) {
        self.memmap_from_xen = true;
        for (addr, size, ty) in e820.take(MEMMAP_MAX) {
            let _ = self.memmap.push(Region { addr, size, ram: ty == 1 });
        }
    }
}

/// Heap bytes in use and still free (free space may be fragmented).
pub fn heap_usage() -> (usize, usize) {
    let heap = HEAP.lock();
    let c = heap.counters();
    (c.allocated_bytes, c.available_bytes)
}

/// What [`init_heap`] found and claimed.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapReport {
    pub ram_bytes: u64,
    pub heap_bytes: u64,
    pub regions: u32,
    pub first_addr: u64,
}

/// Hands every RAM range above the image to the heap: those below 4 GiB first (already
/// mapped), then those above, which need page tables from the heap.
pub fn init_heap(info: &BootInfo) -> Result<HeapReport, &'static str> {
    let (_, image_end) = boot::image_range();
    let floor = image_end.next_multiple_of(4096);
    let mut report = HeapReport::default();
    for high in [false, true] {
        for r in info.memmap().iter().filter(|r| r.ram) {
            if !high {
                report.ram_bytes += r.size;
            }
            let start = r.addr.max(floor).next_multiple_of(4096);
            let end = r.addr.saturating_add(r.size) & !4095;
            let (start, end) = if high { (start.max(FOUR_GIB), end) } else { (start, end.min(FOUR_GIB)) };
            if end <= start || end - start < MIN_REGION {
                continue;
            }
            if high && paging::map_ram(start, end - start).is_err() {
                continue;
            }
            // SAFETY: the range is RAM by the loader's map, above our image, identity-mapped,
            // and claimed once (memory-map entries do not overlap).
            let claimed = unsafe { HEAP.lock().claim(start as *mut u8, (end - start) as usize) };
            if claimed.is_some() {
                report.heap_bytes += end - start;
                report.regions += 1;
                if report.first_addr == 0 {
                    report.first_addr = start;
                }
            }
        }
    }
    if report.heap_bytes == 0 {
        return Err("no RAM above the image for a heap");
    }
    Ok(report)
}
