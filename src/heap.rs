//! The Linux binary's global allocator: the system allocator, plus the bytes in use and their
//! high-water mark, as the image keeps them (images/src/mem.rs). With `UNIPERF_HEAPSTATS=1` in
//! the environment, the server prints a `uniperf: heap: …` line to stderr at start and after
//! every test. A soak compares those lines: resident memory (VmRSS) also moves with glibc's
//! caching of freed blocks, so it cannot tell a leak from an allocator keeping pages.
//! (The image's wrapper is the same dozen lines around talc; netstack, the crate both share,
//! forbids `unsafe`, which a `GlobalAlloc` impl needs, so each binary keeps its own.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counted;

#[global_allocator]
static COUNTED: Counted = Counted;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(size: usize) {
    let now = IN_USE.fetch_add(size, Ordering::Relaxed) + size;
    HIGH_WATER.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; the counters are bookkeeping only.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

/// Bytes in use and the high-water mark since start.
pub fn usage() -> (usize, usize) {
    (IN_USE.load(Ordering::Relaxed), HIGH_WATER.load(Ordering::Relaxed))
}

/// True when `UNIPERF_HEAPSTATS` asks for heap lines (any value but `0`).
pub fn stats_wanted() -> bool {
    std::env::var_os("UNIPERF_HEAPSTATS").is_some_and(|v| v != "0")
}

/// The heap line, in the image's format: `uniperf: heap: WHEN: N B in use, high-water M B`.
pub fn line(when: &str) -> String {
    let (used, high) = usage();
    format!("uniperf: heap: {when}: {used} B in use, high-water {high} B")
}
