//! The simulator's Prometheus: every replica's series appended at its scrapes, marked stale when the replica goes, and
//! the triggers' queries evaluated over them (`query`) by the rules of the release chosen (`surge_keda::promql`).

use std::collections::HashMap;

use surge_keda::promql::Rule;

use crate::query::{Labels, Query, Series};

/// Samples older than this are dropped: the longest window a trigger reads plus the instant lookback, with room.
const KEEP_SECONDS: f64 = 900.0;

#[derive(Debug, Default)]
pub struct Prometheus {
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
}

impl Prometheus {
    /// One scrape of a target at `t`.
    pub fn append(&mut self, t: f64, samples: Vec<(Labels, f64)>) {
        for (labels, value) in samples {
            let at = match self.index.get(&labels) {
                Some(&at) => at,
                None => {
                    self.series.push(Series { labels: labels.clone(), samples: Vec::new(), stale_at: None });
                    self.index.insert(labels, self.series.len() - 1);
                    self.series.len() - 1
                }
            };
            let series = &mut self.series[at];
            series.samples.push((t, value));
            series.stale_at = None;
            if series.samples.first().is_some_and(|(first, _)| *first < t - 2.0 * KEEP_SECONDS) {
                series.samples.retain(|(s, _)| *s >= t - KEEP_SECONDS);
            }
        }
    }

    /// The target whose `pod` label is `pod` went away at `t`: its series end (Prometheus's stale markers).
    pub fn stale(&mut self, pod: &str, t: f64) {
        for series in self.series.iter_mut().filter(|s| s.labels.get("pod").is_some_and(|p| p == pod)) {
            series.stale_at = Some(t);
        }
    }

    pub fn query(&self, query: &Query, at: f64, rule: Rule) -> Result<Vec<f64>, String> {
        query.evaluate(&self.series, at, rule)
    }
}
