//! The counting allocator's thread-local tallies reach the shared counters when a thread exits. In a process of its
//! own: the counters are process-wide, so in a binary shared with other tests their work could meet any lower bound.

use surge_consumer::metrics::allocator::stats;

#[test]
fn a_thread_that_exits_leaves_nothing_pending() {
    // A block past the flush threshold flushes this thread's tally now, so its own next few calls stay pending.
    drop(std::hint::black_box(vec![1u8; 1 << 20]));
    let before = stats();
    std::thread::spawn(|| {
        // Three blocks below both thresholds (64 calls, 64 KiB each): past the thread's first call, which flushes, only
        // the exit flush can report them.
        for _ in 0..3 {
            drop(std::hint::black_box(vec![7u8; 1000]));
        }
    })
    .join()
    .expect("thread");
    let after = stats();
    let allocations = after.allocations_total - before.allocations_total;
    let bytes = after.allocated_bytes_total - before.allocated_bytes_total;
    // Without the exit flush both are 0: nothing else in this process allocates between the two readings and
    // flushes (this thread's own calls since the 1 MiB block are below the thresholds).
    assert!(allocations >= 3, "{allocations} allocations reached the shared counters");
    assert!(bytes >= 3000, "{bytes} bytes reached the shared counters");
    println!("the exited thread reported {allocations} allocations, {bytes} bytes");
}
