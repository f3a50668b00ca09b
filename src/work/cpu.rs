//! CPU work: a fixed amount of core-seconds, done at the rate the pod's fair share allows.
//!
//! Burning mode spins a blocking-pool thread in a duty cycle (so the async workers serving probes and `/metrics` never
//! starve) and counts the thread's own CPU time as work done, so a CPU-starved pod takes longer instead of finishing on
//! time having done less. Simulated mode runs the same accounting on the clock and sleeps instead of burning.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use prometheus::Counter;
use tokio_util::sync::CancellationToken;

use super::capacity;

/// One duty-cycle period; short enough that the load looks steady to a 5 s scrape, long enough to be cheap.
const PERIOD: Duration = Duration::from_millis(100);

/// How CPU work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CpuWork {
    /// Really burn the CPU: what a pod does, and what CPU-based autoscaling needs.
    Burn,
    /// Wait instead of burning, with the same scheduling and accounting: for capacity experiments that model many pods
    /// with a core each on a small machine.
    Simulate,
}

impl CpuWork {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Burn => "burn",
            Self::Simulate => "simulate",
        }
    }
}

/// The pod's current max-min share level (see `capacity::share_level`), read by every running task each period.
#[derive(Debug)]
pub struct ShareLevel(AtomicU64);

impl Default for ShareLevel {
    fn default() -> Self {
        Self(AtomicU64::new(f64::INFINITY.to_bits()))
    }
}

impl ShareLevel {
    pub fn set(&self, level: f64) {
        self.0.store(level.to_bits(), Ordering::Release);
    }

    fn rate(&self, demand_cores: f64) -> f64 {
        capacity::rate(demand_cores, f64::from_bits(self.0.load(Ordering::Acquire)))
    }
}

/// Work done so far, in micro-core-seconds: what forecasts read to know how much a running task has left.
#[derive(Debug, Default)]
pub struct Progress(AtomicU64);

impl Progress {
    pub fn core_seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn record(&self, core_seconds: f64) {
        self.0.store((core_seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// What a CPU run did.
#[derive(Debug, Clone, Copy)]
pub struct CpuOutcome {
    /// Core-seconds delivered: the thread's CPU time when burning, the clock's account when simulating.
    pub cpu_seconds: f64,
    pub cancelled: bool,
}

/// One task's CPU work: `demand` cores at most, `work` core-seconds in all; what it uses is added to `used` as it goes.
pub struct CpuJob<'a> {
    pub demand: f64,
    pub work: f64,
    pub share: &'a ShareLevel,
    pub progress: &'a Progress,
    pub used: &'a Counter,
    pub cancel: &'a CancellationToken,
}

impl CpuJob<'_> {
    /// Burns the CPU until the work is done or cancelled. Blocks the calling thread.
    pub fn burn(&self) -> CpuOutcome {
        let start_cpu = thread_cpu_time();
        let done = || thread_cpu_time().saturating_sub(start_cpu).as_secs_f64();
        // What `used` has been given so far: the rest is added at the end, so it gets exactly `cpu_seconds`.
        let mut counted = 0.0;
        let cancelled = 'work: loop {
            let period_cpu = done();
            if period_cpu >= self.work {
                break false;
            }
            let period_start = Instant::now();
            let target = (PERIOD.as_secs_f64() * self.share.rate(self.demand)).min(self.work - period_cpu);
            while done() - period_cpu < target && period_start.elapsed() < PERIOD {
                if self.cancel.is_cancelled() {
                    break 'work true;
                }
                spin();
            }
            let now = done();
            self.used.inc_by(now - counted);
            counted = now;
            self.progress.record(now);
            if let Some(rest) = PERIOD.checked_sub(period_start.elapsed()) {
                std::thread::sleep(rest);
            }
            if self.cancel.is_cancelled() {
                break true;
            }
        };
        let cpu_seconds = done();
        self.used.inc_by(cpu_seconds - counted);
        CpuOutcome { cpu_seconds, cancelled }
    }

    /// Accounts the work on the clock at the same rate as `burn`, sleeping instead of spinning.
    pub async fn simulate(&self) -> CpuOutcome {
        let mut done = 0.0;
        let mut last = tokio::time::Instant::now();
        while done < self.work {
            let rate = self.share.rate(self.demand);
            // At least the timer's 1 ms, so a remainder of float dust still moves the clock.
            let left = ((self.work - done) / rate.max(1e-9)).clamp(0.001, PERIOD.as_secs_f64());
            let left = Duration::from_secs_f64(left);
            tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = self.cancel.cancelled() => return CpuOutcome { cpu_seconds: done, cancelled: true },
            }
            let now = tokio::time::Instant::now();
            let before = done;
            done = (done + rate * (now - last).as_secs_f64()).min(self.work);
            last = now;
            self.used.inc_by(done - before);
            self.progress.record(done);
        }
        CpuOutcome { cpu_seconds: done, cancelled: false }
    }
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

    /// What a job is run with: its share, its progress, the pod's counter of CPU used, its cancellation.
    type Parts = (ShareLevel, Progress, Counter, CancellationToken);

    fn parts() -> Parts {
        let used = Counter::new("used", "CPU used").expect("a counter");
        (ShareLevel::default(), Progress::default(), used, CancellationToken::new())
    }

    fn job(demand: f64, seconds: f64, (share, progress, used, cancel): &Parts) -> CpuJob<'_> {
        CpuJob { demand, work: demand * seconds, share, progress, used, cancel }
    }

    #[test]
    fn burning_delivers_the_work_asked_for() {
        let parts = parts();
        let outcome = job(0.5, 1.0, &parts).burn();
        assert!(!outcome.cancelled);
        // The work is counted in the thread's own CPU time, so it is delivered in full however the machine is shared.
        assert!((0.5..0.52).contains(&outcome.cpu_seconds), "cpu_seconds = {}", outcome.cpu_seconds);
        assert!((parts.1.core_seconds() - outcome.cpu_seconds).abs() < 0.01);
        assert!((parts.2.get() - outcome.cpu_seconds).abs() < 1e-9, "the pod's counter: {}", parts.2.get());
    }

    #[test]
    fn cancellation_stops_the_work() {
        let parts = parts();
        parts.3.cancel();
        let outcome = job(1.0, 30.0, &parts).burn();
        assert!(outcome.cancelled);
        assert!(outcome.cpu_seconds < 1.0);
        assert!((parts.2.get() - outcome.cpu_seconds).abs() < 1e-9, "what ran is counted: {}", parts.2.get());
    }

    #[tokio::test(start_paused = true)]
    async fn simulation_runs_at_the_share_it_is_given() {
        let parts = parts();
        parts.0.set(0.25);
        let started = tokio::time::Instant::now();
        let outcome = job(1.0, 2.0, &parts).simulate().await;
        assert!(!outcome.cancelled);
        assert!((outcome.cpu_seconds - 2.0).abs() < 1e-9);
        assert!((parts.2.get() - 2.0).abs() < 1e-9, "the pod's counter: {}", parts.2.get());
        // Two core-seconds at a quarter of a core: eight seconds of (paused, auto-advanced) clock.
        let elapsed = started.elapsed().as_secs_f64();
        assert!((7.9..8.2).contains(&elapsed), "elapsed {elapsed}");
    }
}
