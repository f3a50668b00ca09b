//! KEDA's own scaling beside the HPA's (`pkg/scaling/executor/scale_scaledobjects.go`, `RequestScale`): the HPA never
//! goes below 1 and stops while the target has 0 replicas, so KEDA takes a Deployment whose `minReplicaCount` is 0
//! down to 0 once no trigger has been active for `cooldownPeriod`, and back up when one is; with a minimum of 1 or
//! more it only restores a count below it.

use crate::scaled_object::ScaledObject;

/// When a trigger was last seen active (the ScaledObject's `status.lastActiveTime`), in the autoscaler's seconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Activity {
    last_active: Option<f64>,
}

impl Activity {
    /// The replicas KEDA itself sets at this poll, if any (the HPA decides the rest). `readings[i]` is trigger `i`'s
    /// value or error, as `evaluate` takes them.
    pub fn request_scale(
        &mut self,
        so: &ScaledObject,
        readings: &[Result<f64, String>],
        current: u32,
        now: f64,
    ) -> Option<u32> {
        // A trigger is active while its value is above its activationThreshold (prometheus_scaler.go).
        let active =
            so.triggers.iter().zip(readings).any(|(t, r)| r.as_ref().is_ok_and(|v| *v > t.activation_threshold));
        let failing = readings.iter().any(Result::is_err);
        let min = so.min_replica_count;
        if active {
            if current == 0 {
                // scaleFromZeroOrIdle: to the minimum, at least 1.
                self.last_active = Some(now);
                return Some(min.max(1));
            }
            // With a failing trigger beside the active one, lastActiveTime is left as it was.
            if !failing {
                self.last_active = Some(now);
            }
            return None;
        }
        // Nothing active, a trigger failing: with a non-zero fallback (the HPA's business) or none, nothing.
        let fallback_replicas = so.fallback.as_ref().map(|f| f.replicas);
        if failing && fallback_replicas != Some(0) {
            return None;
        }
        if current > 0 && min == 0 {
            // scaleToZeroOrIdle: once the cooldown has passed; never active counts as passed (initialCooldownPeriod 0).
            let cooled = self.last_active.is_none_or(|t| t + so.cooldown_period < now);
            return cooled.then_some(0);
        }
        (current < min).then_some(min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::FallbackBehavior;
    use crate::scaled_object::Fallback;

    fn scaled_object(min: u32, fallback: Option<u32>) -> ScaledObject {
        let so = serde_json::json!({"spec": {"minReplicaCount": min, "cooldownPeriod": 300,
            "triggers": [
                {"type": "prometheus", "name": "backlog", "metadata": {"query": "q", "threshold": "2"}},
                {"type": "prometheus", "name": "allocator-pressure",
                 "metadata": {"query": "q", "threshold": "32", "activationThreshold": "1"}}]}});
        let mut so = ScaledObject::from_manifest(&so).expect("parses");
        so.fallback = fallback.map(|replicas| Fallback {
            failure_threshold: 3,
            replicas,
            behavior: FallbackBehavior::CurrentReplicasIfHigher,
        });
        so
    }

    /// scale_scaledobjects.go `RequestScale`, branch by branch: (case, min, fallback replicas, readings, current,
    /// last active, now, expected).
    #[test]
    fn keda_request_scale_activates_from_zero_and_deactivates_after_the_cooldown() {
        let idle = || vec![Ok(0.0), Ok(0.5)];
        let busy = || vec![Ok(3.0), Ok(0.5)];
        let failing = || vec![Err("down".to_owned()), Ok(0.5)];
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, u32, Option<u32>, Vec<Result<f64, String>>, u32, Option<f64>, f64, Option<u32>)> = vec![
            ("active at 0: scaleFromZeroOrIdle to 1", 0, None, busy(), 0, None, 0.0, Some(1)),
            ("active at 0 with a minimum: to the minimum", 3, None, busy(), 0, None, 0.0, Some(3)),
            ("active with replicas: the HPA's", 0, None, busy(), 2, None, 0.0, None),
            ("below activation (0.5 of 1) is idle; cooling down", 0, None, idle(), 2, Some(100.0), 400.0, None),
            ("idle past the cooldown: to 0", 0, None, idle(), 2, Some(100.0), 401.0, Some(0)),
            ("never active: the initial cooldown (0) has passed", 0, None, idle(), 1, None, 10.0, Some(0)),
            ("failing with a fallback: the HPA's", 0, Some(2), failing(), 3, None, 1000.0, None),
            ("failing with no fallback: nothing", 0, None, failing(), 3, None, 1000.0, None),
            ("failing with a fallback of 0: cooled down to 0", 0, Some(0), failing(), 3, None, 1000.0, Some(0)),
            ("below a minimum of 2: restored", 2, None, idle(), 1, None, 0.0, Some(2)),
            ("a minimum of 1: never to 0", 1, None, idle(), 3, Some(0.0), 1000.0, None),
        ];
        for (case, min, fallback, readings, current, last_active, now, expected) in cases {
            let mut activity = Activity { last_active };
            let got = activity.request_scale(&scaled_object(min, fallback), &readings, current, now);
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn an_active_poll_restarts_the_cooldown() {
        let so = scaled_object(0, None);
        let mut activity = Activity::default();
        assert_eq!(activity.request_scale(&so, &[Ok(3.0), Ok(0.0)], 2, 0.0), None);
        assert_eq!(activity.request_scale(&so, &[Ok(0.0), Ok(0.0)], 2, 300.0), None, "300 s is not past 300");
        assert_eq!(activity.request_scale(&so, &[Ok(0.0), Ok(2.0)], 2, 301.0), None, "allocation above 1 MiB/s");
        assert_eq!(activity.request_scale(&so, &[Ok(0.0), Ok(0.0)], 2, 601.0), None);
        assert_eq!(activity.request_scale(&so, &[Ok(0.0), Ok(0.0)], 2, 602.0), Some(0));
    }

    /// Why the consumer's ScaledObject keeps `minReplicaCount: 1`: an idle consumer allocates about 60 KiB/s (probes,
    /// scrapes), so an allocator trigger with the default activationThreshold of 0 is active forever and a minimum
    /// of 0 would never be reached.
    #[test]
    fn idle_allocation_keeps_a_trigger_without_an_activation_threshold_active() {
        let mut so = scaled_object(0, None);
        so.triggers[1].activation_threshold = 0.0;
        let mut activity = Activity::default();
        let idle_allocation = 60.0 / 1024.0;
        for t in (0..10_000).step_by(15) {
            let at = f64::from(t);
            assert_eq!(activity.request_scale(&so, &[Ok(0.0), Ok(idle_allocation)], 1, at), None, "at {t} s");
        }
    }
}
