//! Reading a leaf page's memory in at once when a range scan enters it.
//!
//! A table filled in random key order keeps its entries in a leaf page in the order
//! they were inserted, not in key order, so a scan reads each page's cache lines in a
//! random order and waits for every one of them in turn: the hardware prefetcher sees no
//! stream to follow. When a scan reaches an entry in another 4 KiB of the map than the
//! entry before, `PagePrefetch` asks the CPU for all 64 cache lines of those 4 KiB at
//! once, so that their reads overlap. (LMDB's pages are the OS page, 4 KiB on the
//! machines this is built for; on larger pages this reads the part an entry is in.) On
//! other CPUs than x86-64 it does nothing.

/// The bytes `PagePrefetch` reads in at a time, and their alignment.
const PREFETCH_BYTES: usize = 4096;
/// A cache line.
const LINE_BYTES: usize = 64;

/// Remembers which 4 KiB of the map a scan last read from.
#[derive(Default)]
pub(crate) struct PagePrefetch {
    last: usize,
}

impl PagePrefetch {
    /// Called with each entry's bytes (borrowed from the map) as a scan reaches them.
    #[inline]
    pub(crate) fn entering(&mut self, bytes: &[u8]) {
        let page = bytes.as_ptr() as usize & !(PREFETCH_BYTES - 1);
        if page != self.last {
            self.last = page;
            prefetch(page);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch(page: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for line in (page..page + PREFETCH_BYTES).step_by(LINE_BYTES) {
        // SAFETY: SSE, which the instruction needs, is part of every x86-64 CPU; a
        // prefetch is only a hint, which never faults and reads nothing into Rust's
        // hands, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_page: usize) {}
