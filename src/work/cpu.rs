//! CPU work as a duty cycle: intensity N keeps N/10 of one core busy, measured in thread CPU time, not wall time.
//!
//! Runs on a blocking-pool thread so the async workers serving probes and `/metrics` never starve.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// One duty-cycle period; short enough that the load looks steady to a 5 s scrape, long enough to be cheap.
const PERIOD: Duration = Duration::from_millis(100);

/// What a CPU run did.
#[derive(Debug, Clone, Copy)]
pub struct CpuOutcome {
    pub cpu_seconds: f64,
    pub cancelled: bool,
}

/// Keeps `intensity`/10 of one core busy for `duration`, or until `cancel` fires. Blocks the calling thread.
///
/// The target is cumulative CPU time, so a period cut short by preemption is made up in the next one.
pub fn run_duty_cycle(intensity: u8, duration: Duration, cancel: &CancellationToken) -> CpuOutcome {
    let fraction = f64::from(intensity.min(10)) / 10.0;
    let start_wall = Instant::now();
    let start_cpu = thread_cpu_time();
    let mut period_end = Duration::ZERO;
    while period_end < duration {
        period_end = (period_end + PERIOD).min(duration);
        let target_cpu = period_end.mul_f64(fraction);
        while thread_cpu_time().saturating_sub(start_cpu) < target_cpu && start_wall.elapsed() < period_end {
            if cancel.is_cancelled() {
                return outcome(start_cpu, true);
            }
            spin();
        }
        if let Some(rest) = period_end.checked_sub(start_wall.elapsed()) {
            std::thread::sleep(rest);
        }
        if cancel.is_cancelled() {
            return outcome(start_cpu, true);
        }
    }
    outcome(start_cpu, false)
}

fn outcome(start_cpu: Duration, cancelled: bool) -> CpuOutcome {
    CpuOutcome { cpu_seconds: thread_cpu_time().saturating_sub(start_cpu).as_secs_f64(), cancelled }
}

/// About 20 µs of arithmetic between clock reads, kept alive by `black_box`.
fn spin() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..4_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x);
}

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_intensity_uses_half_a_core() {
        let outcome = run_duty_cycle(5, Duration::from_secs(1), &CancellationToken::new());
        assert!(!outcome.cancelled);
        assert!((0.45..=0.55).contains(&outcome.cpu_seconds), "cpu_seconds = {}", outcome.cpu_seconds);
    }

    #[test]
    fn cancellation_stops_the_work() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let outcome = run_duty_cycle(10, Duration::from_secs(30), &cancel);
        assert!(outcome.cancelled);
        assert!(outcome.cpu_seconds < 1.0);
    }
}
