//! What a simulated run yields: a row per HPA sync, and the figures a run is judged by, read as the closed loop reads
//! them (the sojourn's p95 through the consumer's own histogram buckets, times from the load's first and last
//! request).

use surge_capacity::signals::QUEUE_WAIT_BUCKETS;

use surge_keda::trajectory::{back_after, figures, Figures, Sync};

use crate::query::bucket_quantile;

/// One HPA sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Seconds from the load's first request.
    pub t: f64,
    pub current: u32,
    pub desired: u32,
    pub ready: u32,
    pub pending: u32,
    /// Each trigger's value (`None`: it failed).
    pub values: Vec<Option<f64>>,
    /// The replicas each trigger asked for.
    pub asks: Vec<Option<u32>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub rows: Vec<Row>,
    /// When the load's last request was answered (an async one at its acceptance, a sync one at its task's end), as
    /// the closed loop reads the generator's end; "back at the minimum" counts from here.
    pub load_end: f64,
    /// Async tasks, accepted to finished.
    pub sojourns: Vec<f64>,
    /// Sync requests, first sent to answered.
    pub latencies: Vec<f64>,
    /// Requests refused after every retry.
    pub refused: u64,
    /// Shared-backlog tasks a drained replica handed back, and tasks lost with a replica's own backlog.
    pub handed_back: u64,
    pub lost: u64,
    pub ready_replica_seconds: f64,
    /// Replicas the Deployment wanted that no node had room for: what a cluster autoscaler would buy nodes for.
    pub pending_replica_seconds: f64,
    /// Changes of the Deployment's replicas.
    pub scale_events: u32,
    /// The run stopped at its settle limit, not back at the minimum.
    pub unsettled: bool,
}

impl Outcome {
    /// The rows' figures, by the rule the closed loop's outline uses.
    pub fn figures(&self, minimum: u32) -> Figures {
        let syncs: Vec<Sync> =
            self.rows.iter().map(|r| Sync { t: r.t, current: r.current, desired: r.desired }).collect();
        figures(&syncs, minimum)
    }

    /// The most replicas asked for (the closed loop's `peak_replicas`).
    pub fn peak(&self) -> u32 {
        self.figures(0).peak
    }

    /// The first sync that asked for at least `replicas`.
    pub fn reached(&self, replicas: u32) -> Option<f64> {
        self.rows.iter().find(|r| r.desired >= replicas).map(|r| r.t)
    }

    /// The first stretch at the peak: how long it lasted and when it ended (the first sync asking for fewer).
    pub fn peak_held(&self) -> Option<(f64, f64)> {
        let figures = self.figures(0);
        figures.peak_held().zip(figures.left_peak_at)
    }

    /// Seconds from the load's last request to the first sync of the final stretch at `minimum`, current and
    /// desired both (`back_after`).
    pub fn back_at_minimum(&self, minimum: u32) -> Option<f64> {
        self.figures(minimum).back_at_min_at.map(|back| back_after(back, self.load_end))
    }

    /// The trigger asking for the most replicas (a failed one excluded) at the first sync that reached the peak,
    /// when it asks for more than `minimum`: the first of equals in the ScaledObject's order, as the closed loop
    /// breaks the tie.
    pub fn driving_at_peak(&self, minimum: u32) -> Option<usize> {
        let peak = self.peak();
        let row = self.rows.iter().find(|r| r.desired == peak)?;
        let asking = row.values.iter().zip(&row.asks).enumerate().filter(|(_, (v, _))| v.is_some());
        let (index, (_, asks)) = asking.max_by_key(|(i, (_, a))| (a.unwrap_or(0), std::cmp::Reverse(*i)))?;
        (asks.unwrap_or(0) > minimum).then_some(index)
    }

    /// The sojourn's 95th percentile as the closed loop reads it: `histogram_quantile` over the consumer's buckets,
    /// which a run compressed `time_scale` times sees at that scale (a 1,010 s sojourn at x20 falls in the 60 s
    /// bucket's neighbours, not past the 600 s one).
    pub fn sojourn_p95(&self, time_scale: f64) -> Option<f64> {
        if self.sojourns.is_empty() {
            return None;
        }
        let mut buckets: Vec<(f64, f64)> = QUEUE_WAIT_BUCKETS
            .iter()
            .map(|le| le * time_scale)
            .map(|le| (le, self.sojourns.iter().filter(|s| **s <= le).count() as f64))
            .collect();
        buckets.push((f64::INFINITY, self.sojourns.len() as f64));
        Some(bucket_quantile(0.95, buckets))
    }

    /// A percentile of the sojourns themselves (0 to 1).
    pub fn sojourn_percentile(&self, q: f64) -> Option<f64> {
        percentile(&self.sojourns, q)
    }
}

/// The nearest-rank percentile.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: f64, current: u32) -> Row {
        Row { t, current, desired: current, ready: current, pending: 0, values: vec![], asks: vec![] }
    }

    #[test]
    fn the_trajectory_figures_come_from_the_rows() {
        let outcome = Outcome {
            rows: vec![row(0.0, 1), row(15.0, 3), row(30.0, 6), row(45.0, 6), row(60.0, 2), row(75.0, 1), row(90.0, 1)],
            load_end: 50.0,
            ..Outcome::default()
        };
        assert_eq!(outcome.peak(), 6);
        assert_eq!(outcome.reached(5), Some(30.0));
        assert_eq!(outcome.peak_held(), Some((30.0, 60.0)));
        assert_eq!(outcome.back_at_minimum(1), Some(25.0));
        let never_left =
            Outcome { rows: vec![row(0.0, 1), row(15.0, 1), row(30.0, 1)], load_end: 20.0, ..Outcome::default() };
        assert_eq!(never_left.back_at_minimum(1), Some(0.0), "at the minimum all along: back at once, not -20 s");
    }

    #[test]
    fn the_p95_reads_through_the_buckets_as_histogram_quantile_does() {
        // 100 sojourns of 1..=100 s: 95 fall at or below 95 s, inside (60, 120]: 60 of them by 60 s, 100 by 120 s;
        // rank 95 → 60 + 60 × (95 − 60) / 40 = 112.5 s, where the exact p95 is 95 s.
        let outcome = Outcome { sojourns: (1..=100).map(f64::from).collect(), ..Outcome::default() };
        assert_eq!(outcome.sojourn_p95(1.0), Some(112.5));
        // Read as a run at x20 reads it: 95 s falls in (20 × 2, 20 × 5] = (40, 100]: 40 by 40 s, 100 by 100 s.
        assert_eq!(outcome.sojourn_p95(20.0), Some(40.0 + 60.0 * 55.0 / 60.0));
        assert_eq!(outcome.sojourn_percentile(0.95), Some(95.0));
    }
}
