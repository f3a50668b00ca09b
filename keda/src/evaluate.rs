//! One poll of a ScaledObject's triggers turned into the replicas the HPA is asked for: each trigger's value against its
//! target (or KEDA's fallback once it has failed long enough), then the combination. The generator's watch table and
//! the closed-loop harness both call `evaluate`, so what a Job's log says KEDA will do is what the harness proves.

use crate::hpa::{combine, metric_replicas};
use crate::scaled_object::ScaledObject;

/// Consecutive failures of each trigger, kept between polls as KEDA keeps them (`pkg/fallback`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures(Vec<u32>);

impl Failures {
    pub fn count(&self, trigger: usize) -> u32 {
        self.0.get(trigger).copied().unwrap_or(0)
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

/// The decision before `behavior`: each trigger's ask, and the replicas they ask for together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub asks: Vec<Ask>,
    pub proposal: u32,
}

/// Evaluates one poll: `readings[i]` is trigger `i`'s query value (already read as KEDA reads it) or its error;
/// `current` and `ready` are the Deployment's replicas; `failures` carries each trigger's failure streak across polls.
pub fn evaluate(
    so: &ScaledObject,
    readings: &[Result<f64, String>],
    current: u32,
    ready: u32,
    failures: &mut Failures,
) -> Decision {
    failures.0.resize(so.triggers.len(), 0);
    let asks: Vec<Ask> = so
        .triggers
        .iter()
        .zip(readings)
        .zip(failures.0.iter_mut())
        .map(|((trigger, reading), failed)| match reading {
            Ok(value) => {
                *failed = 0;
                Ask::Replicas(metric_replicas(trigger.kind, *value, trigger.threshold, current, ready))
            }
            Err(_) => {
                *failed += 1;
                match &so.fallback {
                    Some(f) if *failed >= f.failure_threshold => {
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
    use crate::hpa::{FallbackBehavior, MetricType, Rules, Scaling};
    use crate::scaled_object::{Fallback, Trigger};

    fn scaled_object(fallback: Option<Fallback>) -> ScaledObject {
        let trigger = |name: &str, kind, threshold| Trigger { name: name.into(), kind, query: "q".into(), threshold };
        ScaledObject {
            scaling: Scaling { min: 1, max: 10, up: Rules::default_up(), down: Rules::default_down() },
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
        let decision = evaluate(&so, &[Ok(12.0), Ok(1.5)], 3, 3, &mut failures);
        assert_eq!(decision.asks, vec![Ask::Replicas(6), Ask::Replicas(3)]);
        assert_eq!(decision.proposal, 6);
    }

    #[test]
    fn a_failing_trigger_blocks_scale_down_until_the_fallback_takes_over() {
        let so = scaled_object(Some(FALLBACK));
        let mut failures = Failures::default();
        let failing = [Err("prometheus: 503".to_owned()), Ok(0.0)];
        // Polls 1 and 2: failed, no fallback; the other trigger's 1 is not allowed below the current 5.
        for poll in 1..=2 {
            let decision = evaluate(&so, &failing, 5, 5, &mut failures);
            assert_eq!(decision.asks[0], Ask::Failed, "poll {poll}");
            assert_eq!(decision.proposal, 5, "poll {poll}");
        }
        // Poll 3 reaches failureThreshold: currentReplicasIfHigher of 2 at 5 replicas asks 5.
        let decision = evaluate(&so, &failing, 5, 5, &mut failures);
        assert_eq!(decision.asks[0], Ask::Fallback(5));
        assert_eq!(failures.count(0), 3);
        // A success resets the streak.
        let decision = evaluate(&so, &[Ok(2.0), Ok(0.0)], 5, 5, &mut failures);
        assert_eq!((decision.asks[0], failures.count(0)), (Ask::Replicas(1), 0));
    }

    #[test]
    fn without_a_fallback_a_failure_never_asks() {
        let so = scaled_object(None);
        let mut failures = Failures::default();
        for _ in 0..10 {
            let decision = evaluate(&so, &[Err("down".into()), Err("down".into())], 4, 4, &mut failures);
            assert_eq!(decision.asks, vec![Ask::Failed, Ask::Failed]);
            assert_eq!(decision.proposal, 4);
        }
    }
}
