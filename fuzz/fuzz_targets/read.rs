//! Fuzzes the bounded DICOM reader and what curation does right after reading: no input may
//! panic, and memory stays bounded by the input. libFuzzer's -malloc_limit_mb and
//! -rss_limit_mb catch gross blow-ups; the counting allocator below checks the documented bound
//! itself on every input: the peak of live heap bytes while reading and extracting metadata is
//! at most `PER_BYTE` times the input plus `BASE`. The single-walk metadata extraction
//! (`metadata::extract_bytes`) is checked against the full reader's on every input.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;

/// The bound asserted: 16 bytes of heap per input byte, plus 4 MiB.
const PER_BYTE: usize = 16;
const BASE: usize = 4 << 20;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    // The single-walk metadata extraction reads the bytes itself: bounded like the rest, and
    // whenever the full reader accepts a file it must accept it too and give the same record.
    let fast = bedside_dicom::metadata::extract_bytes(data);
    if let Ok(obj) = bedside_dicom::read::read_bytes(data) {
        let full = bedside_dicom::metadata::extract(&obj);
        match &fast {
            // Debug text, so that NaN deltas compare equal to themselves.
            Ok(record) => assert_eq!(format!("{record:?}"), format!("{full:?}")),
            Err(e) => panic!("extract_bytes refused what read_bytes accepts: {e}"),
        }
    }
    drop(fast);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let bound = PER_BYTE * data.len() + BASE;
    assert!(
        peak <= bound,
        "peak heap {peak} bytes for a {}-byte input exceeds {bound}",
        data.len()
    );
});
