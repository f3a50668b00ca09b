//! The autoscaler's clock: the k-th sync is at k sync periods of the HPA's time, whatever the machine did meanwhile,
//! and is due at k compressed periods of wall time from the start. How late each sync began and each one whose work
//! outlasted its period are recorded, so a run that the machine slowed says so instead of skewing its windows.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The syncs of one run, due on a fixed schedule from its start (a late sync does not move the ones after it).
pub(crate) struct Syncs {
    started: Instant,
    /// One sync period of wall time (the HPA's period divided by the compression).
    due_every: Duration,
    /// One sync period of the HPA's time.
    period_seconds: f64,
    factor: f64,
    begun: u32,
    latest_start: Duration,
    overruns: Vec<Value>,
}

impl Syncs {
    pub(crate) fn new(started: Instant, period_seconds: f64, factor: f64) -> Self {
        Self {
            started,
            due_every: Duration::from_secs_f64(period_seconds / factor),
            period_seconds,
            factor,
            begun: 0,
            latest_start: Duration::ZERO,
            overruns: Vec::new(),
        }
    }

    fn due(&self, sync: u32) -> Instant {
        self.started + self.due_every * sync
    }

    /// A sync begins at `now`: its time on the HPA's clock.
    pub(crate) fn begin(&mut self, now: Instant) -> f64 {
        let late = now.saturating_duration_since(self.due(self.begun));
        self.latest_start = self.latest_start.max(late);
        self.begun += 1;
        self.now()
    }

    /// An instant on the HPA's clock (negative before the first sync).
    pub(crate) fn seconds(&self, at: Instant) -> f64 {
        let wall = match at.checked_duration_since(self.started) {
            Some(after) => after.as_secs_f64(),
            None => -self.started.duration_since(at).as_secs_f64(),
        };
        wall * self.factor
    }

    /// The HPA's time of the sync begun last.
    pub(crate) fn now(&self) -> f64 {
        f64::from(self.begun.saturating_sub(1)) * self.period_seconds
    }

    /// The sync begun last ended at `now`: when the next is due; an overrun is recorded when that is already past.
    pub(crate) fn end(&mut self, now: Instant) -> Instant {
        let next = self.due(self.begun);
        let late = now.saturating_duration_since(next);
        if !late.is_zero() {
            let at = self.now();
            eprintln!("cluster: the sync at {at:.0} s overran its period by {} ms", late.as_millis());
            self.overruns.push(json!({"at_s": at, "late_ms": late.as_millis()}));
        }
        next
    }

    /// The syncs run, the latest start (wall milliseconds and the HPA's seconds) and every overrun.
    pub(crate) fn outline(&self) -> Value {
        json!({
            "syncs": self.begun,
            "latest_start_ms": self.latest_start.as_millis(),
            "latest_start_s": (self.latest_start.as_secs_f64() * self.factor * 100.0).round() / 100.0,
            "overruns": self.overruns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_hpa_time_counts_syncs_and_lateness_is_recorded_not_absorbed() {
        let start = Instant::now();
        // 15 s syncs at x10: due every 1.5 s of wall time.
        let mut syncs = Syncs::new(start, 15.0, 10.0);
        // (began after the start, ended after the start) -> (HPA time, next due after the start)
        let cases = [
            ((0, 200), (0.0, 1500)),
            // Began 100 ms late: still the HPA's 15 s, and the next is still due at 3 s.
            ((1600, 1700), (15.0, 3000)),
            // Outlasted its period by 500 ms: the next is due at 4.5 s, not 3.5 + 1.5.
            ((3000, 5000), (30.0, 4500)),
            ((5000, 5100), (45.0, 6000)),
        ];
        for ((began, ended), (hpa, next)) in cases {
            assert_eq!(syncs.begin(start + ms(began)), hpa);
            assert_eq!(syncs.now(), hpa);
            assert_eq!(syncs.end(start + ms(ended)), start + ms(next), "the sync at {hpa} s");
        }
        let outline = syncs.outline();
        assert_eq!(outline["syncs"], 4);
        // The sync due at 4.5 s began at 5 s: 500 ms, five of the HPA's seconds at x10.
        assert_eq!(outline["latest_start_ms"], 500);
        assert_eq!(outline["latest_start_s"], 5.0);
        assert_eq!(outline["overruns"], json!([{"at_s": 30.0, "late_ms": 500}]));
    }
}
