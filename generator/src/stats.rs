//! Results: per-worker tallies (HDR histograms of latency and send lag, failures by cause, responses by pod) merged
//! into a summary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete response within --timeout.
    Timeout,
    /// 503: the consumer's admission control turned the work away.
    Overload,
    ClientError,
    ServerError,
    /// The connection broke mid-request (reset, or closed before a whole response).
    Io,
    /// The answer was not HTTP: the target is not the service the run meant.
    Protocol,
    /// Still in flight when the run was interrupted.
    Cancelled,
}

impl Failure {
    pub const ALL: [Self; 8] = [
        Self::Connect,
        Self::Timeout,
        Self::Overload,
        Self::ClientError,
        Self::ServerError,
        Self::Io,
        Self::Protocol,
        Self::Cancelled,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Overload => "overload",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::Io => "io",
            Self::Protocol => "protocol",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Connect => "connect error",
            Self::Timeout => "timeout",
            Self::Overload => "503 overload",
            Self::ClientError => "other 4xx",
            Self::ServerError => "other 5xx",
            Self::Io => "connection broken",
            Self::Protocol => "not an HTTP answer",
            Self::Cancelled => "cancelled by interrupt",
        }
    }

    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            503 => Some(Self::Overload),
            400..=499 => Some(Self::ClientError),
            500..=599 => Some(Self::ServerError),
            _ => None,
        }
    }
}

/// What one request came to.
pub struct Outcome<'a> {
    /// From the intended send time to the end of the response (or the failure).
    pub latency: Duration,
    /// From the intended send time to the moment the request went out: the load this run failed to offer on time.
    pub send_lag: Duration,
    pub failure: Option<Failure>,
    pub served_by: Option<&'a str>,
}

struct Tally {
    latency_us: Histogram<u64>,
    send_lag_us: Histogram<u64>,
    succeeded: u64,
    failed: [u64; Failure::ALL.len()],
    served: HashMap<Box<str>, u64>,
    /// Every request's end, kept only for `--report`.
    events: Vec<Event>,
}

/// One request for the report's timeline: when it ended, its latency, and 0 for success or 1 + its `Failure`.
#[derive(Clone, Copy)]
struct Event {
    at_ms: u32,
    latency_us: u32,
    outcome: u8,
}

/// One window of the timeline.
#[derive(Debug, Clone)]
pub struct Window {
    /// Seconds from the start of the run to the start of the window.
    pub start: f64,
    pub succeeded: u64,
    /// Indexed by `Failure as usize`.
    pub failed: [u64; Failure::ALL.len()],
    pub retried: u64,
    /// Latency percentiles of the requests that ended in the window, milliseconds: p50, p95, p99.
    pub latency_ms: Option<[f64; 3]>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 µs to one hour at three significant figures: about 200 KiB per tally.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid"),
            // Two significant figures are plenty for lateness, and keep the tally small.
            send_lag_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid"),
            succeeded: 0,
            failed: [0; Failure::ALL.len()],
            served: HashMap::new(),
            events: Vec::new(),
        }
    }
}

/// Shared by every worker; each worker writes to its own tally, so the locks are uncontended.
pub struct Recorder {
    tallies: Vec<Mutex<Tally>>,
    sent: AtomicU64,
    /// 503s retried after their Retry-After; not failures unless the last attempt fails too.
    retried: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    started: Instant,
    /// Whether each request is kept for the report's timeline.
    timeline: bool,
    retried_at_ms: Mutex<Vec<u32>>,
}

/// A run's counters and latency buckets at one instant (see `Recorder::snapshot`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub sent: u64,
    pub retried: u64,
    pub succeeded: u64,
    /// Indexed by `Failure as usize`.
    pub failed: [u64; Failure::ALL.len()],
    pub latency: Buckets,
    pub send_lag: Buckets,
}

/// A histogram in Prometheus' shape: cumulative counts at or below each bound (seconds), the count and the sum.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Buckets {
    /// One pass over what was recorded (a `count_between` per bound walked the whole counts array for each bound of
    /// each slot on every scrape: 80% of a core at the harness's 250 ms scrapes).
    pub(crate) fn add(&mut self, histogram: &Histogram<u64>, bounds: &[f64]) {
        self.cumulative.resize(bounds.len(), 0);
        if histogram.is_empty() {
            return;
        }
        let bounds_us: Vec<u64> = bounds.iter().map(|bound| (bound * 1e6) as u64).collect();
        let mut in_bucket = vec![0; bounds.len()];
        for recorded in histogram.iter_recorded() {
            // At or below a bound when its HDR bucket starts there or lower, as `count_between(0, bound)` counts it.
            let lowest = histogram.lowest_equivalent(recorded.value_iterated_to());
            if let Some(first) = bounds_us.iter().position(|&bound| lowest <= bound) {
                in_bucket[first] += recorded.count_at_value();
            }
        }
        let mut below = 0;
        for (bucket, count) in self.cumulative.iter_mut().zip(in_bucket) {
            below += count;
            *bucket += below;
        }
        self.count += histogram.len();
        self.sum_seconds += histogram.mean() * histogram.len() as f64 / 1e6;
    }
}

/// Counters for progress lines, read without locks.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub sent: u64,
    pub done: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

impl Recorder {
    pub fn new(slots: usize) -> Self {
        Self {
            tallies: (0..slots.max(1)).map(|_| Mutex::new(Tally::new())).collect(),
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            timeline: false,
            retried_at_ms: Mutex::default(),
        }
    }

    /// The same, also keeping every request's end for `timeline` (12 bytes a request).
    pub fn keeping_timeline(slots: usize) -> Self {
        Self { timeline: true, ..Self::new(slots) }
    }

    fn now_ms(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    /// The run in windows of `width` seconds: outcomes, retries and latency percentiles per window.
    pub fn timeline(&self, width: f64) -> Vec<Window> {
        let mut events = Vec::new();
        for tally in &self.tallies {
            events.extend_from_slice(&tally.lock().unwrap_or_else(|p| p.into_inner()).events);
        }
        let retried = self.retried_at_ms.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let end = events.iter().map(|e| e.at_ms).chain(retried.iter().copied()).max().unwrap_or(0);
        let count = (f64::from(end) / 1000.0 / width).floor() as usize + 1;
        let index = |at_ms: u32| ((f64::from(at_ms) / 1000.0 / width) as usize).min(count - 1);
        let mut windows: Vec<Window> = (0..count)
            .map(|i| Window {
                start: i as f64 * width,
                succeeded: 0,
                failed: [0; Failure::ALL.len()],
                retried: 0,
                latency_ms: None,
            })
            .collect();
        let mut latencies: Vec<Vec<u32>> = vec![Vec::new(); count];
        for event in &events {
            let window = &mut windows[index(event.at_ms)];
            match event.outcome {
                0 => window.succeeded += 1,
                n => window.failed[usize::from(n - 1)] += 1,
            }
            if event.outcome == 0 {
                latencies[index(event.at_ms)].push(event.latency_us);
            }
        }
        for at in retried {
            windows[index(at)].retried += 1;
        }
        for (window, mut values) in windows.iter_mut().zip(latencies) {
            if values.is_empty() {
                continue;
            }
            values.sort_unstable();
            let at = |q: f64| f64::from(values[((values.len() - 1) as f64 * q).round() as usize]) / 1000.0;
            window.latency_ms = Some([at(0.50), at(0.95), at(0.99)]);
        }
        windows
    }

    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        if self.timeline {
            let at = self.now_ms();
            self.retried_at_ms.lock().unwrap_or_else(|p| p.into_inner()).push(at);
        }
    }

    pub fn record(&self, slot: usize, outcome: Outcome<'_>) {
        let mut tally = self.tallies[slot % self.tallies.len()].lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(outcome.failure, Some(Failure::Connect | Failure::Cancelled)) {
            tally.latency_us.saturating_record(histogram_micros(outcome.latency));
        }
        tally.send_lag_us.saturating_record(histogram_micros(outcome.send_lag));
        if self.timeline {
            let latency_us = u32::try_from(outcome.latency.as_micros()).unwrap_or(u32::MAX);
            let outcome_code = outcome.failure.map_or(0, |f| f as u8 + 1);
            tally.events.push(Event { at_ms: self.now_ms(), latency_us, outcome: outcome_code });
        }
        match outcome.failure {
            None => tally.succeeded += 1,
            Some(failure) => {
                tally.failed[failure as usize] += 1;
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(pod) = outcome.served_by {
            match tally.served.get_mut(pod) {
                Some(count) => *count += 1,
                None => {
                    tally.served.insert(pod.into(), 1);
                }
            }
        }
        drop(tally);
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn progress(&self) -> Progress {
        Progress {
            sent: self.sent.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    /// The counters and histograms so far, for the generator's own `/metrics`, bucketed at `latency_bounds` and
    /// `send_lag_bounds` (seconds).
    pub fn snapshot(&self, latency_bounds: &[f64], send_lag_bounds: &[f64]) -> Snapshot {
        let mut snapshot = Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            succeeded: 0,
            failed: [0; Failure::ALL.len()],
            latency: Buckets::default(),
            send_lag: Buckets::default(),
        };
        for tally in &self.tallies {
            let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            snapshot.succeeded += tally.succeeded;
            for (total, count) in snapshot.failed.iter_mut().zip(tally.failed) {
                *total += count;
            }
            snapshot.latency.add(&tally.latency_us, latency_bounds);
            snapshot.send_lag.add(&tally.send_lag_us, send_lag_bounds);
        }
        snapshot
    }

    /// Responses per pod so far.
    pub fn distribution(&self) -> BTreeMap<String, u64> {
        let mut merged = BTreeMap::new();
        for tally in &self.tallies {
            let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            for (pod, count) in &tally.served {
                *merged.entry(pod.to_string()).or_insert(0) += count;
            }
        }
        merged
    }

    /// Merges every tally. `abandoned` requests were still in flight when the run stopped.
    pub fn summarise(&self, profile: &str, abandoned: u64, replicas_seen: &BTreeSet<String>) -> Summary {
        let elapsed = self.started.elapsed();
        let Tally { latency_us: mut histogram, send_lag_us: mut send_lag, .. } = Tally::new();
        let mut succeeded = 0;
        let mut failed = [0; Failure::ALL.len()];
        for tally in &self.tallies {
            let tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            histogram.add(&tally.latency_us).expect("tallies share bounds");
            send_lag.add(&tally.send_lag_us).expect("tallies share bounds");
            succeeded += tally.succeeded;
            for (total, count) in failed.iter_mut().zip(tally.failed) {
                *total += count;
            }
        }
        failed[Failure::Cancelled as usize] += abandoned;
        let distribution = self.distribution();
        // Counted where each request is sent; every one ends as one success or one failure (those still in flight
        // at an interrupt as cancelled), which the tests check against this count rather than assume.
        let sent = self.sent.load(Ordering::Relaxed);
        let answered = succeeded + failed.iter().sum::<u64>();
        let completed = answered - failed[Failure::Cancelled as usize] - failed[Failure::Connect as usize];
        let imbalance = imbalance(&distribution, replicas_seen);
        Summary {
            profile: profile.to_owned(),
            sent,
            succeeded,
            retried: self.retried.load(Ordering::Relaxed),
            failed: Failure::ALL.iter().map(|f| (f.key(), failed[*f as usize])).collect(),
            success_rate: if answered == 0 { 0.0 } else { succeeded as f64 / answered as f64 },
            rate_achieved: completed as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            elapsed_seconds: elapsed.as_secs_f64(),
            latency_ms: Latencies::from(&histogram),
            send_lag_ms: Latencies::from(&send_lag),
            replicas_seen: replicas_seen.len(),
            distribution,
            imbalance_warning: imbalance.is_some(),
            imbalance,
            interrupted: false,
            tasks: None,
            thresholds: Vec::new(),
            histogram,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<&Histogram<u64>> for Latencies {
    fn from(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// The run's result; serialised as-is for `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub profile: String,
    pub sent: u64,
    pub succeeded: u64,
    pub failed: BTreeMap<&'static str, u64>,
    /// 503s answered with Retry-After and sent again; a request that finally succeeded counts as a success.
    pub retried: u64,
    /// Succeeded over sent, 0–1.
    pub success_rate: f64,
    /// Completed responses per second of wall time.
    pub rate_achieved: f64,
    pub elapsed_seconds: f64,
    pub latency_ms: Latencies,
    /// How late requests went out against their intended send times: the generator (its machine, or an open
    /// model's `--concurrency` cap) falling behind, which the latencies above include and the target never saw.
    pub send_lag_ms: Latencies,
    /// Pods seen answering before and during the run.
    pub replicas_seen: usize,
    pub distribution: BTreeMap<String, u64>,
    pub imbalance_warning: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imbalance: Option<String>,
    pub interrupted: bool,
    /// Async tasks followed to their end (`None`: no async task accepted, or following off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Followed>,
    pub thresholds: Vec<Verdict>,
    #[serde(skip)]
    histogram: Histogram<u64>,
}

/// What the followed tasks came to.
#[derive(Debug, Clone, Serialize)]
pub struct Followed {
    /// Async tasks the target answered 200 for.
    pub accepted: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Not seen at an end before following stopped: still waiting or running, or (memory queue) their record was on
    /// a pod that is gone or was never reached.
    pub unresolved: u64,
    /// Accepted → finished, by the target's clock, of the tasks that ended.
    pub e2e_ms: Latencies,
    #[serde(skip)]
    pub(crate) e2e_us: Histogram<u64>,
}

impl Followed {
    /// The end-to-end time at `percentile` (0–100; 100 is the maximum), in milliseconds.
    pub fn e2e_ms_at(&self, percentile: f64) -> f64 {
        if percentile >= 100.0 {
            return self.e2e_us.max() as f64 / 1000.0;
        }
        self.e2e_us.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }
}

/// One `--threshold` checked against the summary (`threshold::Threshold::check`).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub expr: String,
    pub passed: bool,
    /// The measured value, in the threshold's unit (milliseconds or percent).
    pub actual: f64,
}

impl Summary {
    pub fn latency_ms_at(&self, percentile: f64) -> f64 {
        if percentile >= 100.0 {
            return self.histogram.max() as f64 / 1000.0;
        }
        self.histogram.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }
}

/// A duration as the histograms record it: whole microseconds, at least their lowest bound of 1.
fn histogram_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A warning when one pod served more than twice its fair share, or a pod seen before the run served nothing.
fn imbalance(distribution: &BTreeMap<String, u64>, replicas_seen: &BTreeSet<String>) -> Option<String> {
    let pods: BTreeSet<&str> =
        replicas_seen.iter().map(String::as_str).chain(distribution.keys().map(String::as_str)).collect();
    let total: u64 = distribution.values().sum();
    if pods.len() < 2 || total < 2 * pods.len() as u64 {
        return None;
    }
    let fair = total as f64 / pods.len() as f64;
    let (busiest, most) = distribution.iter().max_by_key(|(_, count)| **count)?;
    let idle: Vec<&str> = pods.iter().copied().filter(|p| !distribution.contains_key(*p)).collect();
    if (*most as f64) <= 2.0 * fair && idle.is_empty() {
        return None;
    }
    let mut message = format!(
        "{busiest} served {:.0}% of responses, against a fair share of {:.0}% across the {} pods seen",
        100.0 * *most as f64 / total as f64,
        100.0 / pods.len() as f64,
        pods.len()
    );
    if !idle.is_empty() {
        message.push_str(&format!("; {} served nothing", idle.join(", ")));
    }
    message.push_str(
        ". Usual causes: `kubectl port-forward` tunnels to a single pod; keep-alive connections stay pinned to the pod \
         they first reached behind a Service (use --no-connection-reuse); the Service has sessionAffinity: ClientIP.",
    );
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pods: &[&str]) -> BTreeSet<String> {
        pods.iter().map(|p| (*p).to_owned()).collect()
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(p, c)| ((*p).to_owned(), *c)).collect()
    }

    #[test]
    fn an_even_spread_raises_no_warning() {
        assert_eq!(imbalance(&counts(&[("a", 10), ("b", 11), ("c", 9)]), &seen(&["a", "b", "c"])), None);
    }

    #[test]
    fn one_pinned_pod_out_of_three_is_flagged_with_its_causes() {
        let warning = imbalance(&counts(&[("a", 30)]), &seen(&["a", "b", "c"])).expect("warning");
        assert!(warning.starts_with("a served 100% of responses, against a fair share of 33% across the 3 pods seen"));
        assert!(warning.contains("b, c served nothing") && warning.contains("--no-connection-reuse"));
    }

    #[test]
    fn a_single_pod_deployment_is_not_imbalanced() {
        assert_eq!(imbalance(&counts(&[("a", 30)]), &seen(&["a"])), None);
    }

    #[test]
    fn buckets_count_what_count_between_counts_at_every_bound() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
        // Values on, just under and just over the bounds (in microseconds), where HDR's bucket edges matter.
        for value in [1, 999, 1_000, 1_001, 4_999, 5_000, 5_003, 250_000, 999_999, 1_000_000, 7_000_000, 90_000_000] {
            histogram.record_n(value, value % 7 + 1).expect("in range");
        }
        let bounds = [0.001, 0.005, 0.25, 1.0, 10.0];
        let mut buckets = Buckets::default();
        buckets.add(&histogram, &bounds);
        buckets.add(&Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"), &bounds);
        let expected: Vec<u64> = bounds.iter().map(|b| histogram.count_between(0, (b * 1e6) as u64)).collect();
        assert_eq!(buckets.cumulative, expected);
        assert_eq!(buckets.count, histogram.len());
    }

    #[test]
    fn the_summary_adds_up() {
        let recorder = Recorder::new(2);
        for (slot, failure) in [(0, None), (1, None), (0, Some(Failure::Overload)), (1, Some(Failure::Connect))] {
            recorder.sent();
            let served_by = (failure != Some(Failure::Connect)).then_some("a");
            let (latency, send_lag) = (Duration::from_millis(10), Duration::from_millis(2));
            recorder.record(slot, Outcome { latency, send_lag, failure, served_by });
        }
        // A fifth request sent and still in flight when the run stops.
        recorder.sent();
        let summary = recorder.summarise("custom", 1, &seen(&["a"]));
        assert_eq!((summary.sent, summary.succeeded), (5, 2));
        assert_eq!(summary.sent, summary.succeeded + summary.failed.values().sum::<u64>());
        assert_eq!((summary.failed["overload"], summary.failed["connect"], summary.failed["cancelled"]), (1, 1, 1));
        assert_eq!(summary.distribution["a"], 3);
        assert!((summary.latency_ms.p50 - 10.0).abs() < 0.1);
        assert!((summary.send_lag_ms.max - 2.0).abs() < 0.1, "{:?}", summary.send_lag_ms);
        // A connect failure has no latency but did go out (or try to): its lag counts.
        let snapshot = recorder.snapshot(&[1.0], &[1.0]);
        assert_eq!((snapshot.latency.count, snapshot.send_lag.count), (3, 4));
    }
}
