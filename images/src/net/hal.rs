//! virtio-drivers' `Hal` over the global allocator. Memory is identity-mapped (physical =
//! virtual) and there is no IOMMU, so DMA addresses are plain pointers and sharing a buffer
//! with the device is free.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The boot trampoline identity-maps the first 4 GiB; MMIO above that needs a mapping.
const IDENTITY_MAPPED_END: u64 = 1 << 32;

/// The DMA and MMIO hooks virtio-drivers calls.
pub struct DmaHal;

/// Makes `paddr..paddr+len` addressable at the same virtual address.
pub fn ensure_mapped(paddr: u64, len: u64) -> Result<(), alloc::string::String> {
    let end = paddr.checked_add(len).ok_or_else(|| alloc::format!("MMIO range {paddr:#x}+{len:#x} wraps"))?;
    if end <= IDENTITY_MAPPED_END {
        return Ok(());
    }
    crate::paging::map_identity(paddr, len)
}

/// Zeroed, page-aligned memory from the heap for rings and packet buffers, freed on drop.
pub struct DmaRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl DmaRegion {
    /// `len` bytes, rounded up to whole pages; `None` when the heap is exhausted.
    pub fn new(len: usize) -> Option<Self> {
        let layout = Layout::from_size_align(len.max(1).next_multiple_of(PAGE_SIZE), PAGE_SIZE).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Self { ptr, layout })
    }

    /// The start of the region; also its bus address, memory being identity-mapped.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this very layout and is freed only here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: `dma_alloc` hands out zeroed, page-aligned, exclusively owned heap memory whose
// physical address equals its virtual address (identity map), so the device and the driver
// see the same bytes; `mmio_phys_to_virt` returns identity-mapped device memory, which no Rust
// allocation overlaps.
unsafe impl Hal for DmaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) =
            pages.checked_mul(PAGE_SIZE).and_then(|size| Layout::from_size_align(size.max(PAGE_SIZE), PAGE_SIZE).ok())
        else {
            return (0, NonNull::dangling());
        };
        // SAFETY: `layout` has a non-zero size.
        match NonNull::new(unsafe { alloc_zeroed(layout) }) {
            Some(ptr) => (ptr.as_ptr() as PhysAddr, ptr),
            // virtio-drivers treats physical address 0 as allocation failure (`Error::DmaError`).
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Ok(layout) = Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE) else {
            return -1;
        };
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages`, so `vaddr` was
        // allocated with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // The trait has no error path; an unmappable BAR is a broken machine description.
        if let Err(e) = ensure_mapped(paddr, size as u64) {
            panic!("virtio: cannot map MMIO at {paddr:#x}: {e}");
        }
        NonNull::new(paddr as *mut u8).expect("virtio: MMIO at physical address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
