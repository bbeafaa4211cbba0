//! A global allocator that keeps freed large blocks for reuse, as TensorFlow's BFC allocator
//! and ONNX Runtime's arena do.
//!
//! A network's activations are large, short-lived buffers of the same few sizes, made again
//! on every call. From the system allocator each one is a fresh `mmap` whose pages fault in
//! one by one (glibc maps every block above 32 MiB, and smaller ones above its adaptive
//! threshold, and unmaps them on free): on the 2-vCPU VMs here that costs about 2 ms per
//! 10 MB, 15 % of MobileNetV2's time at batch 16. [`CachingAllocator`] keeps up to
//! [`CachingAllocator::DEFAULT_CAP`] bytes of freed blocks of at least 1 MiB and hands one
//! back for a request of the same (page-rounded) size and alignment; smaller requests go
//! straight to the system allocator. Install it in a binary with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();
//! ```
//!
//! The programs of this workspace do (through the `program` crate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks smaller than this are never cached.
const MIN_CACHED: usize = 1 << 20;
/// Cached sizes are rounded up to whole pages.
const LINE: usize = 64;
const PAGE: usize = 4096;
/// How many freed blocks the cache holds at most (a training step frees a few hundred
/// activations and gradients of a few dozen sizes; a lookup scans the slots under the lock,
/// which costs far less than faulting in one fresh megabyte).
const SLOTS: usize = 512;

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    /// When it was cached (the oldest goes first when the cache is full).
    age: u64,
}

struct Cache {
    blocks: [Option<Block>; SLOTS],
    bytes: usize,
    clock: u64,
    /// Blocks handed out for a smaller request: `(address, the block's own size)`, so that
    /// its `dealloc` (which names the request's layout) caches it at its real size.
    loans: [Option<(usize, usize)>; LOANS],
}

/// How many blocks may be out on loan for smaller requests at once.
const LOANS: usize = 256;

// The pointers are owned by the cache while they sit in it.
unsafe impl Send for Cache {}

/// The caching global allocator (see the module documentation).
pub struct CachingAllocator {
    cache: Mutex<Cache>,
    cap: usize,
}

impl Default for CachingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl CachingAllocator {
    /// Bytes of freed blocks kept at most by [`CachingAllocator::new`].
    pub const DEFAULT_CAP: usize = 1 << 30;

    /// A cap for training loops, whose every step frees and makes again all of the forward
    /// pass's activations and their gradients (Inception-v3 fine-tuning at 299 px peaked at
    /// 2.5 GB resident at batch 12, 4.9 GB at batch 32). Use with [`retain_heap`].
    pub const TRAINING_CAP: usize = 8 << 30;

    pub const fn new() -> Self {
        Self::with_cap(Self::DEFAULT_CAP)
    }

    /// Keeps at most `cap` bytes of freed blocks.
    pub const fn with_cap(cap: usize) -> Self {
        CachingAllocator {
            cache: Mutex::new(Cache {
                blocks: [None; SLOTS],
                bytes: 0,
                clock: 0,
                loans: [None; LOANS],
            }),
            cap,
        }
    }

    /// Bytes held in the cache now.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while the lock is held cannot leave the cache inconsistent (every update
        // is a single assignment), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layout a cached request is served with: the size rounded up to whole pages,
    /// aligned to at least a cache line (so that kernels can store whole lines).
    fn cached_layout(layout: Layout) -> Option<Layout> {
        if layout.size() < MIN_CACHED {
            return None;
        }
        let size = layout.size().checked_next_multiple_of(PAGE)?;
        Layout::from_size_align(size, layout.align().max(LINE)).ok()
    }

    /// A cached block for `layout`: one of its size, else the smallest of at most a quarter
    /// more (lent: a training set's last, smaller batch then reuses the full batches'
    /// buffers, and they come back whole for the next full batch).
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut c = self.lock();
        let want = layout.size();
        let mut best: Option<(usize, Block)> = None;
        for (i, b) in c.blocks.iter().enumerate() {
            let Some(b) = *b else { continue };
            if b.align != layout.align() || b.size < want || b.size > want + want / 4 {
                continue;
            }
            if best.is_none_or(|(_, o)| b.size < o.size) {
                best = Some((i, b));
            }
            if b.size == want {
                break;
            }
        }
        let (i, b) = best?;
        if b.size != want {
            let free = c.loans.iter().position(|l| l.is_none())?;
            c.loans[free] = Some((b.ptr as usize, b.size));
        }
        c.blocks[i] = None;
        c.bytes -= b.size;
        Some(b.ptr)
    }

    /// The layout `ptr` really has: its loan's size when it was lent for a smaller request
    /// (the loan ends), else `layout`.
    fn returned_layout(&self, ptr: *mut u8, layout: Layout) -> Layout {
        let mut c = self.lock();
        let Some(loan) = c
            .loans
            .iter_mut()
            .find(|l| l.is_some_and(|(p, _)| p == ptr as usize))
        else {
            return layout;
        };
        let (_, size) = loan.take().unwrap_or_default();
        Layout::from_size_align(size, layout.align()).unwrap_or(layout)
    }

    /// Keeps `ptr` (of `layout`) if there is room, evicting the oldest blocks for it;
    /// otherwise gives it back to the system.
    unsafe fn put(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() > self.cap {
            return unsafe { System.dealloc(ptr, layout) };
        }
        // Freed after the lock is released (no allocation in here: this is the allocator).
        let mut evicted = [None::<Block>; SLOTS];
        let mut c = self.lock();
        loop {
            let full = c.bytes + layout.size() > self.cap || c.blocks.iter().all(|b| b.is_some());
            if !full {
                break;
            }
            let oldest = c
                .blocks
                .iter_mut()
                .filter(|b| b.is_some())
                .min_by_key(|b| b.map_or(u64::MAX, |b| b.age))
                .and_then(|b| b.take());
            match oldest {
                Some(b) => {
                    c.bytes -= b.size;
                    if let Some(e) = evicted.iter_mut().find(|e| e.is_none()) {
                        *e = Some(b);
                    }
                }
                None => break,
            }
        }
        c.clock += 1;
        let age = c.clock;
        let kept = match c.blocks.iter_mut().find(|b| b.is_none()) {
            Some(slot) => {
                *slot = Some(Block {
                    ptr,
                    size: layout.size(),
                    align: layout.align(),
                    age,
                });
                true
            }
            None => false,
        };
        if kept {
            c.bytes += layout.size();
        }
        drop(c);
        if !kept {
            unsafe { System.dealloc(ptr, layout) };
        }
        for b in evicted.into_iter().flatten() {
            unsafe { System.dealloc(b.ptr, Layout::from_size_align_unchecked(b.size, b.align)) };
        }
    }
}

/// Asks the C library's allocator to keep freed memory for reuse instead of handing it back
/// to the system, which the next step would fault in again page by page. Blocks below 1 MiB
/// bypass [`CachingAllocator`]: glibc maps blocks above its adaptive threshold afresh and
/// trims the top of its heaps (`madvise(MADV_DONTNEED)` on the worker threads' arenas) once
/// more than twice that threshold is free. Here: blocks below 32 MiB (glibc's largest
/// threshold) come from the heap, and a heap is trimmed only beyond 1 GiB free. Inception-v3
/// fine-tuning (with [`CachingAllocator::TRAINING_CAP`]), 3 epochs of 60 images at batch 12:
/// page faults 2.27M -> 0.68M. Call it first thing in `main`; a no-op outside glibc.
pub fn retain_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // <malloc.h>
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // Setting either fixes both (glibc stops adapting them).
        // (glibc 2.36 answers 1 to every call, known parameter or not.)
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

unsafe impl GlobalAlloc for CachingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::cached_layout(layout) {
            Some(l) => self.take(l).unwrap_or_else(|| unsafe { System.alloc(l) }),
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::cached_layout(layout) {
            Some(l) => match self.take(l) {
                Some(p) => {
                    unsafe { p.write_bytes(0, layout.size()) };
                    p
                }
                // Fresh pages from the system are zero already.
                None => unsafe { System.alloc_zeroed(l) },
            },
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Self::cached_layout(layout) {
            Some(l) => unsafe { self.put(ptr, self.returned_layout(ptr, l)) },
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if Self::cached_layout(layout).is_none() && Self::cached_layout(new).is_none() {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let p = unsafe { self.alloc(new) };
        if !p.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 64).unwrap()
    }

    #[test]
    fn a_freed_large_block_is_handed_back_for_the_same_size() {
        let a = CachingAllocator::with_cap(64 * MB);
        unsafe {
            let p = a.alloc(layout(3 * MB + 5));
            assert!(!p.is_null());
            p.write_bytes(7, 3 * MB + 5);
            a.dealloc(p, layout(3 * MB + 5));
            assert_eq!(a.cached_bytes(), 3 * MB + PAGE);
            // A different size (beyond the page rounding) does not take it.
            let q = a.alloc(layout(4 * MB));
            assert_ne!(q, p);
            // The same page-rounded size does, and zeroed requests get zeros.
            let r = a.alloc_zeroed(layout(3 * MB + 100));
            assert_eq!(r, p);
            assert_eq!(a.cached_bytes(), 0);
            let s = std::slice::from_raw_parts(r, 3 * MB + 100);
            assert!(s.iter().all(|&b| b == 0));
            a.dealloc(q, layout(4 * MB));
            a.dealloc(r, layout(3 * MB + 100));
            assert_eq!(a.cached_bytes(), 7 * MB + PAGE);
        }
    }

    #[test]
    fn a_smaller_request_borrows_a_block_that_comes_back_whole() {
        let a = CachingAllocator::with_cap(64 * MB);
        unsafe {
            let p = a.alloc(layout(8 * MB));
            a.dealloc(p, layout(8 * MB));
            // More than a quarter smaller: a fresh block.
            let small = a.alloc(layout(6 * MB));
            assert_ne!(small, p);
            assert_eq!(a.cached_bytes(), 8 * MB);
            // Within a quarter (the last, smaller batch of an epoch): the cached block.
            let q = a.alloc_zeroed(layout(7 * MB));
            assert_eq!(q, p);
            assert!(std::slice::from_raw_parts(q, 7 * MB)
                .iter()
                .all(|&b| b == 0));
            assert_eq!(a.cached_bytes(), 0);
            // Freed under the request's layout, it is cached at its own size ...
            a.dealloc(q, layout(7 * MB));
            assert_eq!(a.cached_bytes(), 8 * MB);
            // ... and serves the next full-size request.
            let r = a.alloc(layout(8 * MB));
            assert_eq!(r, p);
            r.add(8 * MB - 1).write(1);
            a.dealloc(r, layout(8 * MB));
            a.dealloc(small, layout(6 * MB));
            assert_eq!(a.cached_bytes(), 14 * MB);
        }
    }

    #[test]
    fn cached_blocks_are_aligned_to_cache_lines() {
        let a = CachingAllocator::with_cap(64 * MB);
        unsafe {
            let four = Layout::from_size_align(2 * MB + 12, 4).unwrap();
            let p = a.alloc(four);
            assert_eq!(p as usize % 64, 0, "a fresh block");
            a.dealloc(p, four);
            assert_eq!(a.cached_bytes(), 2 * MB + PAGE);
            let q = a.alloc(four);
            assert_eq!(q, p, "the same block comes back");
            a.dealloc(q, four);
        }
    }

    #[test]
    fn small_blocks_and_other_alignments_are_not_shared() {
        let a = CachingAllocator::with_cap(64 * MB);
        unsafe {
            let p = a.alloc(layout(1000));
            a.dealloc(p, layout(1000));
            assert_eq!(a.cached_bytes(), 0);
            let big = a.alloc(layout(2 * MB));
            a.dealloc(big, layout(2 * MB));
            let other = Layout::from_size_align(2 * MB, 4096).unwrap();
            let q = a.alloc(other);
            assert_eq!(q as usize % 4096, 0);
            assert_eq!(
                a.cached_bytes(),
                2 * MB,
                "the 64-byte aligned block stays cached"
            );
            a.dealloc(q, other);
        }
    }

    #[test]
    fn the_cache_stays_under_its_cap_evicting_the_oldest() {
        let a = CachingAllocator::with_cap(10 * MB);
        unsafe {
            let ps: Vec<_> = (0..4)
                .map(|i| (a.alloc(layout((3 + i) * MB)), (3 + i) * MB))
                .collect();
            for &(p, n) in &ps {
                a.dealloc(p, layout(n));
                assert!(a.cached_bytes() <= 10 * MB);
            }
            // 3 + 4 MB cached, then 5 MB evicts the 3 MB block, 6 MB evicts 4 and 5.
            assert_eq!(a.cached_bytes(), 6 * MB);
            assert_eq!(a.alloc(layout(6 * MB)), ps[3].0);
            // A block larger than the cap is never kept.
            let huge = a.alloc(layout(11 * MB));
            a.dealloc(huge, layout(11 * MB));
            assert_eq!(a.cached_bytes(), 0);
            a.dealloc(ps[3].0, layout(6 * MB));
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_the_threshold() {
        let a = CachingAllocator::with_cap(64 * MB);
        unsafe {
            let p = a.alloc(layout(1000));
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, layout(1000), 2 * MB);
            let r = a.realloc(q, layout(2 * MB), 5 * MB);
            let s = a.realloc(r, layout(5 * MB), 500);
            for i in 0..500 {
                assert_eq!(*s.add(i), i as u8);
            }
            a.dealloc(s, layout(500));
        }
    }

    #[test]
    fn many_threads_allocate_and_free_concurrently() {
        static A: CachingAllocator = CachingAllocator::with_cap(32 * MB);
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || unsafe {
                    for i in 0..200 {
                        let n = (1 + (i + t) % 3) * MB;
                        let p = A.alloc_zeroed(layout(n));
                        assert_eq!(*p.add(n - 1), 0);
                        *p.add(n - 1) = 1;
                        A.dealloc(p, layout(n));
                    }
                });
            }
        });
        assert!(A.cached_bytes() <= 32 * MB);
    }
}
