//! Grant table v1: up to two frames (512 entries `{flags u16, domid u16, frame u32}` each)
//! mapped over static pages with XENMEM_add_to_physmap(XENMAPSPACE_grant_table), as many as
//! Xen allows (`max_grant_frames` is 32 or more by default). Refs 0-7 are reserved
//! (the toolstack uses them for console and xenstore); ours start at 8 and are never revoked
//! (the rings and buffers live as long as the image).

use super::hypercall::{self, Page};
use alloc::format;
use alloc::string::String;
use core::ptr::write_volatile;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

static mut TABLE: [Page; FRAMES] = [const { Page([0; 4096]) }; FRAMES];
static MAPPED: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicU32 = AtomicU32::new(FIRST_REF);
/// Entries in the frames mapped.
static ENTRIES: AtomicU32 = AtomicU32::new(0);

const FIRST_REF: u32 = 8;
const FRAMES: usize = 2;
const PER_FRAME: u32 = 512;
const GTF_PERMIT_ACCESS: u16 = 1;
const GTF_READONLY: u16 = 1 << 2;

pub fn init() -> Result<(), String> {
    if MAPPED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let (_, max) = hypercall::grant_query_size().map_err(|e| format!("GNTTABOP_query_size: error {e}"))?;
    if max == 0 {
        return Err(String::from("the grant table has no frames"));
    }
    let frames = (max as usize).min(FRAMES);
    for idx in 0..frames {
        let page = (&raw mut TABLE as *mut Page).wrapping_add(idx) as u64;
        let rc = hypercall::add_to_physmap(hypercall::XENMAPSPACE_GRANT_TABLE, idx as u64, page);
        if rc != 0 {
            return Err(format!("XENMEM_add_to_physmap(grant_table, {idx}): error {rc}"));
        }
    }
    ENTRIES.store(frames as u32 * PER_FRAME, Ordering::Relaxed);
    MAPPED.store(true, Ordering::Release);
    Ok(())
}

/// Grants `domid` access to the page at `paddr`; returns the ref.
pub fn grant(domid: u16, paddr: u64, readonly: bool) -> Result<u32, String> {
    let r = NEXT.fetch_add(1, Ordering::Relaxed);
    let entries = ENTRIES.load(Ordering::Relaxed);
    if r >= entries {
        return Err(format!("out of grant references ({} usable)", entries.saturating_sub(FIRST_REF)));
    }
    // The frames are consecutive statics of one array.
    let e = (&raw mut TABLE as *mut u8).wrapping_add(r as usize * 8);
    // SAFETY: entry r of the mapped table, ours alone; flags are written last, after a
    // barrier, so Xen never sees a permitted entry with a stale frame.
    unsafe {
        write_volatile(e.add(2) as *mut u16, domid);
        write_volatile(e.add(4) as *mut u32, (paddr >> 12) as u32);
        fence(Ordering::Release);
        write_volatile(e as *mut u16, GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 });
    }
    Ok(r)
}
