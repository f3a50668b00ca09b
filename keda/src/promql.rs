//! Prometheus's range functions over one series' samples, as the release a query runs on computes them: which
//! samples a `[range]` window holds and `rate()`'s extrapolation to the window's edges (prometheus/prometheus
//! `promql/engine.go` and `promql/functions.go` `extrapolatedRate`, read at v2.42.0 and v3.14.0). The closed loop runs
//! Debian's 2.42 where the manifests deploy 3.14; `tests/deploy/window_edge.rs` checks the 2.42 rules against the real
//! promtool.

/// (time in seconds, value).
pub type Sample = (f64, f64);

/// The release whose rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A sample exactly at the window's start is in it; `rate()` moves its start to the counter's zero point before
    /// checking it against 1.1 sample intervals.
    V2_42,
    /// Windows are left-open; `rate()` caps a far start at half a sample interval before taking the zero point.
    V3_14,
}

impl Rule {
    /// The rules of a Prometheus release by its version (`2.42.0`, `3.14.0`): its major's, as read at those releases
    /// (window edges and `rate()`'s extrapolation changed in 3.0); `None` for another major.
    pub fn of_version(version: &str) -> Option<Self> {
        match version.split('.').next()? {
            "2" => Some(Self::V2_42),
            "3" => Some(Self::V3_14),
            _ => None,
        }
    }
}

/// The samples of a `[range]` window ending at `at` (samples in time order).
pub fn window(samples: &[Sample], at: f64, range: f64, rule: Rule) -> Vec<Sample> {
    let start = at - range;
    let after_start = |t: f64| match rule {
        Rule::V2_42 => t >= start,
        Rule::V3_14 => t > start,
    };
    samples.iter().copied().filter(|&(t, _)| after_start(t) && t <= at).collect()
}

/// `rate(x[range])` at `at` for a counter: the increase (resets added back) extrapolated to the window's edges, per
/// second; `None` with fewer than two samples in the window.
pub fn rate(samples: &[Sample], at: f64, range: f64, rule: Rule) -> Option<f64> {
    let kept = window(samples, at, range, rule);
    if kept.len() < 2 {
        return None;
    }
    let ((first_t, first_v), (last_t, last_v)) = (kept[0], kept[kept.len() - 1]);
    let resets: f64 = kept.windows(2).filter(|p| p[1].1 < p[0].1).map(|p| p[0].1).sum();
    let increase = last_v - first_v + resets;
    let sampled = last_t - first_t;
    let average = sampled / (kept.len() - 1) as f64;
    let threshold = average * 1.1;
    let zero_point = (increase > 0.0 && first_v >= 0.0).then(|| sampled * first_v / increase);
    let mut to_start = first_t - (at - range);
    let mut to_end = at - last_t;
    match rule {
        Rule::V2_42 => {
            to_start = zero_point.map_or(to_start, |z| z.min(to_start));
            if to_start >= threshold {
                to_start = average / 2.0;
            }
        }
        Rule::V3_14 => {
            if to_start >= threshold {
                to_start = average / 2.0;
            }
            to_start = zero_point.map_or(to_start, |z| z.min(to_start));
        }
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    Some(increase * (sampled + to_start + to_end) / sampled / range)
}

/// `avg_over_time(x[range])` at `at`; `None` for an empty window.
pub fn avg_over_time(samples: &[Sample], at: f64, range: f64, rule: Rule) -> Option<f64> {
    let kept = window(samples, at, range, rule);
    (!kept.is_empty()).then(|| kept.iter().map(|(_, v)| v).sum::<f64>() / kept.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_played_by_its_majors_rules() {
        for (version, rule) in [
            ("2.42.0", Some(Rule::V2_42)),
            ("2.53.4", Some(Rule::V2_42)),
            ("3.14.0", Some(Rule::V3_14)),
            ("1.8.2", None),
            ("unknown", None),
        ] {
            assert_eq!(Rule::of_version(version), rule, "{version}");
        }
    }
}
