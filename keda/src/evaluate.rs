//! One poll of a ScaledObject's triggers turned into the replicas the HPA is asked for: each trigger's value against its
//! target (or KEDA's fallback once it has failed long enough), then the combination. The generator's watch table and
//! the closed-loop harness both call `evaluate`, so what a Job's log says KEDA will do is what the harness proves.

use crate::hpa::{combine, metric_replicas};
use crate::scaled_object::{ScaledObject, Source};

/// The HPA controller's default sync period (`--horizontal-pod-autoscaler-sync-period`), seconds.
pub const HPA_SYNC_SECONDS: f64 = 15.0;

/// Each trigger's failure streak as KEDA counts it (`pkg/fallback` `IncrementFailure`). KEDA counts a failed read both
/// in its own polling loop (every `pollingInterval`, `scale_handler.go` `getScalerState`) and on each request of the
/// HPA (every sync, `GetScaledObjectMetrics`); a success resets it. Kept as the expected count over the time between
/// evaluations, since an evaluation here stands for both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failures(Vec<f64>);

impl Failures {
    /// Whole failures counted so far for a trigger.
    pub fn count(&self, trigger: usize) -> u32 {
        self.0.get(trigger).copied().unwrap_or(0.0).floor() as u32
    }
}

/// What one trigger asks for at this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Its value asks for this many replicas.
    Replicas(u32),
    /// It failed `failureThreshold` times in a row: KEDA answers the HPA with the fallback's count.
    Fallback(u32),
    /// It failed, with no fallback (yet): it asks nothing, and blocks a scale-down.
    Failed,
}

impl Ask {
    pub fn replicas(self) -> Option<u32> {
        match self {
            Self::Replicas(n) | Self::Fallback(n) => Some(n),
            Self::Failed => None,
        }
    }
}

/// The decision before `behavior`: each trigger's ask, and the replicas they ask for together; `proposal` is `None`
/// when the HPA would return before stabilising (every metric failed, or some did and the rest would scale down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub asks: Vec<Ask>,
    pub proposal: Option<u32>,
}

/// Evaluates one poll: `readings[i]` is trigger `i`'s query value (already read as KEDA reads it) or its error, or
/// for a `cpu` or `memory` trigger the replicas the HPA's Resource calculation asked for (`resource::replicas`);
/// `current` and `ready` are the Deployment's replicas; `failures` carries each trigger's failure streak across polls,
/// and `seconds` is the time since the previous evaluation (in the autoscaler's clock).
pub fn evaluate(
    so: &ScaledObject,
    readings: &[Result<f64, String>],
    current: u32,
    ready: u32,
    failures: &mut Failures,
    seconds: f64,
) -> Decision {
    failures.0.resize(so.triggers.len(), 0.0);
    let counted = seconds / so.polling_interval + seconds / HPA_SYNC_SECONDS;
    let asks: Vec<Ask> = so
        .triggers
        .iter()
        .zip(readings)
        .zip(failures.0.iter_mut())
        .map(|((trigger, reading), failed)| match (reading, &trigger.source) {
            // The caller ran the HPA's own calculation for a Resource metric (`resource::replicas`).
            (Ok(replicas), Source::Resource { .. }) => Ask::Replicas(*replicas as u32),
            // KEDA's fallback does not cover a metric KEDA does not serve.
            (Err(_), Source::Resource { .. }) => Ask::Failed,
            (Ok(value), _) => {
                *failed = 0.0;
                let tolerances = so.scaling.tolerances();
                Ask::Replicas(metric_replicas(trigger.kind, *value, trigger.threshold, current, ready, tolerances))
            }
            (Err(_), _) => {
                *failed += counted;
                // `NumberOfFailures > FailureThreshold` (fallback.go `GetMetricsWithFallback`): strictly more.
                match &so.fallback {
                    Some(f) if failed.floor() > f64::from(f.failure_threshold) => {
                        Ask::Fallback(f.behavior.replicas(f.replicas, current))
                    }
                    _ => Ask::Failed,
                }
            }
        })
        .collect();
    let proposals: Vec<Option<u32>> = asks.iter().map(|a| a.replicas()).collect();
    Decision { proposal: combine(&proposals, current), asks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::{Behavior, FallbackBehavior, MetricType, Rules, Scaling, Tolerances};
    use crate::scaled_object::{Fallback, Source, Trigger};

    fn scaled_object(fallback: Option<Fallback>) -> ScaledObject {
        let trigger = |name: &str, kind, threshold| Trigger {
            name: name.into(),
            kind,
            source: Source::Prometheus { query: "q".into(), ignore_null_values: false },
            threshold,
            activation_threshold: 0.0,
        };
        ScaledObject {
            polling_interval: 5.0,
            scaling: Scaling {
                min: 1,
                max: 10,
                behavior: Some(Behavior {
                    up: Rules::default_up(),
                    down: Rules::default_down(),
                    tolerances: Tolerances::DEFAULT,
                }),
            },
            min_replica_count: 1,
            cooldown_period: 300.0,
            fallback,
            triggers: vec![
                trigger("backlog", MetricType::AverageValue, 2.0),
                trigger("stretch", MetricType::Value, 1.5),
            ],
        }
    }

    const FALLBACK: Fallback =
        Fallback { failure_threshold: 3, replicas: 2, behavior: FallbackBehavior::CurrentReplicasIfHigher };

    #[test]
    fn each_trigger_asks_and_the_most_wins() {
        let so = scaled_object(None);
        let mut failures = Failures::default();
        // backlog 12 over target 2 asks 6; stretch 1.5 at target 1.5 is within tolerance: keeps 3.
        let decision = evaluate(&so, &[Ok(12.0), Ok(1.5)], 3, 3, &mut failures, HPA_SYNC_SECONDS);
        assert_eq!(decision.asks, vec![Ask::Replicas(6), Ask::Replicas(3)]);
        assert_eq!(decision.proposal, Some(6));
    }

    /// fallback.go `GetMetricsWithFallback` (`NumberOfFailures > FailureThreshold`), counted by scale_handler.go both
    /// per polling interval and per HPA request: with `pollingInterval` 5 s, one 15 s sync counts 3 + 1 = 4 failures,
    /// past a threshold of 3 at the first sync of an outage (the harness waited three syncs, 45 s, before).
    #[test]
    fn keda_fallback_counts_polls_and_hpa_requests_and_needs_more_than_the_threshold() {
        let so = scaled_object(Some(FALLBACK));
        let mut failures = Failures::default();
        let failing = [Err("prometheus: 503".to_owned()), Ok(0.0)];
        let decision = evaluate(&so, &failing, 5, 5, &mut failures, HPA_SYNC_SECONDS);
        assert_eq!(failures.count(0), 4);
        // currentReplicasIfHigher of 2 at 5 replicas asks 5.
        assert_eq!(decision.asks[0], Ask::Fallback(5));
        assert_eq!(decision.proposal, Some(5));
        // Read every 5 s (the watch table's pace): 1 + 1/3 a read; 3 is not more than 3, 4 is.
        let mut failures = Failures::default();
        let asks: Vec<Ask> = (0..3).map(|_| evaluate(&so, &failing, 5, 5, &mut failures, 5.0).asks[0]).collect();
        assert_eq!(asks, vec![Ask::Failed, Ask::Failed, Ask::Fallback(5)], "counts 1.33, 2.67, 4.0");
        // A success resets the streak.
        let decision = evaluate(&so, &[Ok(2.0), Ok(0.0)], 5, 5, &mut failures, HPA_SYNC_SECONDS);
        assert_eq!((decision.asks[0], failures.count(0)), (Ask::Replicas(1), 0));
    }

    /// horizontal.go `computeReplicasForMetrics`: a failed metric with the rest asking fewer, or every metric failed,
    /// makes the HPA return before stabilising.
    #[test]
    fn a_failing_trigger_without_fallback_holds_the_replicas_and_records_nothing() {
        let so = scaled_object(None);
        let mut failures = Failures::default();
        for _ in 0..10 {
            let decision = evaluate(&so, &[Err("down".into()), Ok(0.0)], 4, 4, &mut failures, HPA_SYNC_SECONDS);
            assert_eq!(decision.asks, vec![Ask::Failed, Ask::Replicas(0)]);
            assert_eq!(decision.proposal, None, "some failed and the rest scale down");
            let both = [Err("down".into()), Err("down".into())];
            assert_eq!(evaluate(&so, &both, 4, 4, &mut failures, 15.0).proposal, None, "every metric failed");
        }
        let up = evaluate(&so, &[Err("down".into()), Ok(3.0)], 4, 4, &mut failures, HPA_SYNC_SECONDS);
        assert_eq!(up.proposal, Some(8), "the valid metric's scale-up goes ahead");
    }

    /// A cpu trigger's reading is what the HPA's own calculation asked for; KEDA's fallback never stands in for it.
    #[test]
    fn a_resource_trigger_asks_what_the_hpa_computed_and_has_no_fallback() {
        use crate::resource::{Resource, Target};
        let mut so = scaled_object(Some(FALLBACK));
        so.triggers[0].source = Source::Resource { resource: Resource::Cpu, target: Target::Utilization(70) };
        let mut failures = Failures::default();
        let decision = evaluate(&so, &[Ok(6.0), Ok(0.0)], 3, 3, &mut failures, HPA_SYNC_SECONDS);
        assert_eq!(decision.asks[0], Ask::Replicas(6));
        for _ in 0..5 {
            let failing = evaluate(&so, &[Err("no metrics".into()), Ok(0.0)], 3, 3, &mut failures, HPA_SYNC_SECONDS);
            assert_eq!(failing.asks[0], Ask::Failed, "past the threshold, still no fallback");
        }
    }
}
