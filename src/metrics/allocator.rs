//! A counting global allocator over the system allocator: the Rust counterpart of a Python GC rate.
//!
//! Why counting rather than jemalloc statistics: jemalloc reports bytes live and resident, but not bytes ever
//! allocated, and `rate()` of that cumulative counter is the allocation-pressure signal. Wrapping the system allocator
//! also keeps glibc's immediate unmapping of large blocks, which the memory workload relies on to give memory back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter per cache line, so threads updating different counters do not contend.
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

static ALLOCATED_BYTES: PaddedCounter = PaddedCounter(AtomicU64::new(0));
static ALLOCATIONS: PaddedCounter = PaddedCounter(AtomicU64::new(0));
static FREED_BYTES: PaddedCounter = PaddedCounter(AtomicU64::new(0));

/// A thread's tally reaches the shared counters every this many calls...
const FLUSH_CALLS: u32 = 64;
/// ...and at once with any allocation or free this large: so a scrape lags each thread by fewer than `FLUSH_CALLS`
/// smaller calls (under 4 MiB), while a request's dozens of small allocations cost a few thread-local adds each
/// instead of three locked instructions.
const DIRECT_BYTES: usize = 64 * 1024;

/// What this thread allocated and freed since its last flush. `const`-initialised with no destructor, so using it
/// inside the allocator never allocates and never meets a destroyed slot.
struct Tally {
    allocated: Cell<u64>,
    allocations: Cell<u64>,
    freed: Cell<u64>,
    /// Calls left before the next flush: 0 on a new thread, so that its first call registers `FlushOnExit`.
    until_flush: Cell<u32>,
    exit_flush_registered: Cell<bool>,
}

thread_local! {
    static TALLY: Tally = const {
        Tally {
            allocated: Cell::new(0),
            allocations: Cell::new(0),
            freed: Cell::new(0),
            until_flush: Cell::new(0),
            exit_flush_registered: Cell::new(false),
        }
    };
    static FLUSH_ON_EXIT: FlushOnExit = const { FlushOnExit };
}

/// Flushes the thread's tally when the thread exits (Tokio's blocking threads come and go): without it, what was
/// pending there would be lost, and live bytes would drift with every exit.
struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        let _ = TALLY.try_with(Tally::flush);
    }
}

impl Tally {
    /// The hot path: three thread-local adds and a countdown.
    #[inline]
    fn record(&self, allocated: usize, allocations: u64, freed: usize) {
        self.allocated.set(self.allocated.get() + allocated as u64);
        self.allocations.set(self.allocations.get() + allocations);
        self.freed.set(self.freed.get() + freed as u64);
        match self.until_flush.get() {
            0 | 1 => self.flush_and_rearm(),
            left => self.until_flush.set(left - 1),
        }
    }

    #[cold]
    fn flush_and_rearm(&self) {
        // Rearmed first: registering the exit flush may allocate, which lands here again.
        self.until_flush.set(FLUSH_CALLS);
        if !self.exit_flush_registered.replace(true) {
            let _ = FLUSH_ON_EXIT.try_with(|_| ());
        }
        self.flush();
    }

    fn flush(&self) {
        add_shared(self.allocated.replace(0), self.allocations.replace(0), self.freed.replace(0));
    }
}

fn add_shared(allocated: u64, allocations: u64, freed: u64) {
    ALLOCATED_BYTES.0.fetch_add(allocated, Ordering::Relaxed);
    ALLOCATIONS.0.fetch_add(allocations, Ordering::Relaxed);
    FREED_BYTES.0.fetch_add(freed, Ordering::Relaxed);
}

#[inline]
fn count(allocated: usize, allocations: u64, freed: usize) {
    let counted = TALLY.try_with(|tally| {
        tally.record(allocated, allocations, freed);
        if allocated >= DIRECT_BYTES || freed >= DIRECT_BYTES {
            tally.flush_and_rearm();
        }
    });
    // Only a thread past its TLS teardown lands here; it counts straight into the shared counters.
    if counted.is_err() {
        add_shared(allocated as u64, allocations, freed as u64);
    }
}

/// The system allocator, counting bytes and calls in a thread-local tally flushed to shared counters (see `Tally`).
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the same arguments; the counters only observe.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1, 0);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size(), 1, 0);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        count(0, 0, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // A move to a new block: the old one freed, the new one allocated.
            count(new_size, 1, layout.size());
        }
        new
    }
}

/// The allocator's counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct AllocatorStats {
    pub allocated_bytes_total: u64,
    pub allocations_total: u64,
    pub live_bytes: u64,
    /// Bytes the allocator holds from the OS (heap arenas plus mmapped blocks), where glibc can tell.
    pub resident_bytes: u64,
}

pub fn stats() -> AllocatorStats {
    let allocated = ALLOCATED_BYTES.0.load(Ordering::Relaxed);
    let freed = FREED_BYTES.0.load(Ordering::Relaxed);
    let live_bytes = allocated.saturating_sub(freed);
    AllocatorStats {
        allocated_bytes_total: allocated,
        allocations_total: ALLOCATIONS.0.load(Ordering::Relaxed),
        live_bytes,
        resident_bytes: held_from_os().unwrap_or(live_bytes),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn held_from_os() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and only reads allocator state.
    let info = unsafe { libc::mallinfo2() };
    Some((info.arena + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn held_from_os() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_known_allocation() {
        let before = stats();
        let block = std::hint::black_box(vec![1u8; 3 << 20]);
        let during = stats();
        assert!(during.allocated_bytes_total - before.allocated_bytes_total >= 3 << 20);
        assert!(during.allocations_total > before.allocations_total);
        assert!(during.resident_bytes >= 3 << 20);
        drop(block);
    }
}
