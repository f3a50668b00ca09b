//! The layouts of the histograms a pod exports about its work, which the ScaledObject's task-stretch trigger and the
//! sojourn figures read: the consumer exports them, the simulator's pods export them alike.

/// Queue-wait buckets from 10 ms to 10 min: a backlog's wait grows far past a task's own length.
pub const QUEUE_WAIT_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0];

/// Slowdown buckets (actual ÷ requested run time): 1 is a pod with room, 2 a pod asked for twice its capacity; each
/// sits just inside a bucket (1.05, 2.05), so interpolation does not push a p95 of 2.0 toward the next edge.
pub const SLOWDOWN_BUCKETS: &[f64] = &[1.05, 1.1, 1.25, 1.5, 1.75, 2.05, 2.5, 3.0, 4.0, 6.0, 8.0, 16.0];
