//! Pass/fail conditions on a summary: `p99<2s`, `p50<=300ms`, `max<10s`, `success>99%`, and on the async tasks followed
//! to their end, `e2e_p95<60s`.

use std::time::Duration;

use crate::stats::{Summary, Verdict};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Subject {
    /// A latency percentile in 0–100; 100 is the maximum.
    Latency(f64),
    /// Share of requests that succeeded, in percent.
    Success,
    /// An end-to-end (accepted → finished) percentile of the async tasks followed; 100 is the maximum.
    EndToEnd(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    expr: String,
    subject: Subject,
    comparison: Comparison,
    /// Milliseconds for latency, percent for success.
    limit: f64,
}

const HELP: &str = "expected p50|p90|p95|p99|p99.9|max (the answers) or e2e_p95|e2e_max… (async tasks, accepted to finished) followed by <, <=, > or >= and a time (300ms, 2s), or success followed by a percentage (success>99%)";

impl Threshold {
    pub fn is_success(&self) -> bool {
        self.subject == Subject::Success
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let expr: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bad = || format!("--threshold {text:?}: {HELP}");
        let at = expr.find(['<', '>']).ok_or_else(bad)?;
        let (name, rest) = expr.split_at(at);
        let (comparison, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Comparison::LessOrEqual, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Comparison::GreaterOrEqual, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Comparison::Less, v)
        } else {
            (Comparison::Greater, &rest[1..])
        };
        let (subject, limit) = match name {
            "success" => {
                let percent: f64 = value.strip_suffix('%').unwrap_or(value).parse().map_err(|_| bad())?;
                // NaN, negative or above 100 would make a check that always passes or always fails.
                if !(0.0..=100.0).contains(&percent) {
                    return Err(format!("--threshold {text:?}: a success rate is a percentage from 0 to 100"));
                }
                (Subject::Success, percent)
            }
            _ => {
                let (end_to_end, name) = match name.strip_prefix("e2e_") {
                    Some(rest) => (true, rest),
                    None => (false, name),
                };
                let percentile: f64 = if name == "max" {
                    100.0
                } else {
                    let percentile: f64 = name.strip_prefix('p').and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                    if !(0.0..100.0).contains(&percentile) {
                        return Err(bad());
                    }
                    percentile
                };
                let subject = if end_to_end { Subject::EndToEnd(percentile) } else { Subject::Latency(percentile) };
                (subject, latency_ms(value).ok_or_else(bad)?)
            }
        };
        Ok(Self { expr: text.to_owned(), subject, comparison, limit })
    }

    /// The condition as the user wrote it.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn check(&self, summary: &Summary) -> Verdict {
        let (actual, known) = match self.subject {
            Subject::Success => (summary.success_rate * 100.0, true),
            Subject::Latency(percentile) => (summary.latency_ms_at(percentile), true),
            // Fails with no task followed, or any not seen to end: their times are unknown, not within the bound.
            Subject::EndToEnd(percentile) => match &summary.tasks {
                Some(tasks) => (tasks.e2e_ms_at(percentile), tasks.unresolved == 0 && tasks.completed > 0),
                None => (f64::NAN, false),
            },
        };
        let passed = known
            && match self.comparison {
                Comparison::Less => actual < self.limit,
                Comparison::LessOrEqual => actual <= self.limit,
                Comparison::Greater => actual > self.limit,
                Comparison::GreaterOrEqual => actual >= self.limit,
            };
        Verdict { expr: self.expr.clone(), passed, actual }
    }
}

fn latency_ms(text: &str) -> Option<f64> {
    humantime::parse_duration(text).ok().map(|d: Duration| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_and_success_conditions() {
        let p99 = Threshold::parse("p99<2s").expect("p99");
        assert_eq!((p99.subject, p99.comparison, p99.limit), (Subject::Latency(99.0), Comparison::Less, 2000.0));
        let success = Threshold::parse("success >= 99.5%").expect("success");
        assert_eq!(
            (success.subject, success.comparison, success.limit),
            (Subject::Success, Comparison::GreaterOrEqual, 99.5)
        );
        assert_eq!(Threshold::parse("max<=300ms").expect("max").limit, 300.0);
        let e2e = Threshold::parse("e2e_p95<60s").expect("e2e");
        assert_eq!((e2e.subject, e2e.comparison, e2e.limit), (Subject::EndToEnd(95.0), Comparison::Less, 60_000.0));
        assert_eq!(Threshold::parse("e2e_max<=2m").expect("e2e max").subject, Subject::EndToEnd(100.0));
    }

    #[test]
    fn an_end_to_end_bound_holds_only_when_every_followed_task_was_seen_to_end() {
        let mut summary = crate::stats::Recorder::new(1).summarise("burst", 0, &std::collections::BTreeSet::new());
        let threshold = Threshold::parse("e2e_p95<60s").expect("e2e");
        assert!(!threshold.check(&summary).passed, "no task followed: no end-to-end time to hold");
        let follower = crate::follow::Follower::default();
        for id in ["a", "b"] {
            follower.answered(format!(r#"{{"task_id":"{id}","estimated_start":"x"}}"#).as_bytes());
        }
        let records = br#"{"records": [{"task_id": "a", "status": "completed", "sojourn_seconds": 20.0},
            {"task_id": "b", "status": "completed", "sojourn_seconds": 40.0}]}"#;
        follower.settle(follower.next_batch(), records);
        summary.tasks = follower.summary();
        let verdict = threshold.check(&summary);
        assert!(verdict.passed && (verdict.actual - 40_000.0).abs() < 50.0, "{verdict:?}");
        assert!(!Threshold::parse("e2e_max<30s").expect("max").check(&summary).passed);
        follower.answered(br#"{"task_id":"c","estimated_start":"x"}"#);
        summary.tasks = follower.summary();
        assert!(!threshold.check(&summary).passed, "a task not seen to end may have taken any time");
    }

    #[test]
    fn rejects_what_it_cannot_evaluate() {
        for bad in [
            "p99",
            "p101<1s",
            "latency<1s",
            "p99<fast",
            "success>most",
            "success>NaN%",
            "success>-1%",
            "success<101%",
            "e2e_p100<1s",
            "e2e_success>1%",
            "e2e_<1s",
        ] {
            assert!(Threshold::parse(bad).unwrap_err().contains(bad), "{bad} should be rejected");
        }
    }
}

/// Property tests: any text is a threshold with a finite limit in its unit's range, or a `--threshold` error; never
/// a panic. Bounded by proptest's case count, so they run in `make test`.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn check(text: &str) {
        match Threshold::parse(text) {
            Ok(threshold) => {
                assert!(threshold.limit.is_finite() && threshold.limit >= 0.0, "{text}: limit {}", threshold.limit);
                if threshold.is_success() {
                    assert!(threshold.limit <= 100.0, "{text}: a success rate above 100%");
                }
            }
            Err(message) => assert!(message.starts_with("--threshold "), "{text}: {message}"),
        }
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|n| n.to_string()),
            (0u64..100_000).prop_map(|n| n.to_string()),
            prop::sample::select(vec!["NaN", "inf", "-inf", "-1", "1e400", "99.9", "", "."]).prop_map(str::to_owned),
        ]
    }

    proptest! {
        #[test]
        fn any_text_is_a_threshold_or_an_error(text in any::<String>()) {
            check(&text);
        }

        #[test]
        fn shaped_like_a_threshold_is_a_sound_one_or_an_error(
            subject in prop::sample::select(vec!["p50", "p99.9", "p100", "p-1", "pNaN", "max", "success", "min"]),
            operator in prop::sample::select(vec!["<", "<=", ">", ">=", "=", "=>"]),
            number in number(),
            unit in prop::sample::select(vec!["ms", "s", "m", "h", "%", "", "us", "parsecs"]),
        ) {
            check(&format!("{subject}{operator}{number}{unit}"));
        }
    }
}
