//! The arithmetic KEDA's Prometheus scaler and the HPA apply to a ScaledObject, ported from their rules (Kubernetes
//! `pkg/controller/podautoscaler`: replica_calculator.go, horizontal.go; KEDA `pkg/fallback`) as small pure functions.
//!
//! One sync: each trigger's query value → replicas it asks for (AverageValue or Value, 0.1 tolerance) → the maximum
//! (no scale-down while a trigger fails) → fallback after consecutive failures → `behavior` (stabilisation windows,
//! rate policies) → clamp to min and max.

use std::collections::VecDeque;

/// The HPA's default tolerance: a ratio within 10% of 1 changes nothing.
pub const TOLERANCE: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// The value is divided among the current replicas: desired = ceil(value / target).
    AverageValue,
    /// The value is compared as-is: desired = ceil(value / target × ready pods).
    Value,
}

/// A value as it reaches the HPA: KEDA formats every metric and target as a milli-quantity (`quantityFromFloat64` in
/// KEDA's `pkg/scalers/scaler.go`: `%.3f`, NaN, infinite and negative values as 0), and the HPA reads `MilliValue()`.
pub fn milli(value: f64) -> i64 {
    if value.is_finite() && value > 0.0 {
        (value * 1000.0).round().min(i64::MAX as f64) as i64
    } else {
        0
    }
}

/// The HPA's tolerances each way (replica_calculator.go `Tolerances`; `behavior.scaleUp.tolerance` and
/// `scaleDown.tolerance` where the cluster allows them, the controller's 0.1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub down: f64,
    pub up: f64,
}

impl Tolerances {
    pub const DEFAULT: Self = Self { down: TOLERANCE, up: TOLERANCE };

    /// `Tolerances.isWithin` (Kubernetes 1.34): `1 - down <= ratio <= 1 + up`, both ends included, compared as
    /// written, not as `|1 - ratio| <= tolerance` (whose float difference moves the edge).
    pub fn is_within(self, ratio: f64) -> bool {
        ((1.0 - self.down)..=(1.0 + self.up)).contains(&ratio)
    }
}

/// Replicas one External metric asks for (replica_calculator.go: GetExternalPerPodMetricReplicas and
/// GetExternalMetricReplicas via getUsageRatioReplicaCount), on the milli-quantities KEDA hands the HPA.
pub fn metric_replicas(
    kind: MetricType,
    value: f64,
    target: f64,
    current: u32,
    ready: u32,
    tolerances: Tolerances,
) -> u32 {
    let (usage, target) = (milli(value) as f64, milli(target) as f64);
    if current == 0 {
        return ceil(usage / target);
    }
    let ratio = match kind {
        MetricType::AverageValue => usage / (target * f64::from(current)),
        MetricType::Value => usage / target,
    };
    if tolerances.is_within(ratio) {
        return current;
    }
    match kind {
        MetricType::AverageValue => ceil(usage / target),
        MetricType::Value => ceil(ratio * f64::from(ready)),
    }
}

fn ceil(x: f64) -> u32 {
    if x.is_finite() && x > 0.0 {
        x.ceil().min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// What the valid metrics ask for together: the maximum (horizontal.go `computeReplicasForMetrics`). `None` when every
/// metric failed, or some failed and the rest would scale down: the HPA then returns before stabilising, keeps the
/// replicas and records no recommendation.
pub fn combine(proposals: &[Option<u32>], current: u32) -> Option<u32> {
    let failed = proposals.iter().filter(|p| p.is_none()).count();
    let valid = proposals.iter().flatten().copied().max();
    match valid {
        None => None,
        Some(_) if failed == proposals.len() => None,
        Some(most) if failed > 0 && most < current => None,
        Some(most) => Some(most),
    }
}

/// KEDA's fallback behaviours (ScaledObject `spec.fallback.behavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackBehavior {
    Static,
    CurrentReplicas,
    CurrentReplicasIfHigher,
    CurrentReplicasIfLower,
}

impl FallbackBehavior {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "static" => Some(Self::Static),
            "currentReplicas" => Some(Self::CurrentReplicas),
            "currentReplicasIfHigher" => Some(Self::CurrentReplicasIfHigher),
            "currentReplicasIfLower" => Some(Self::CurrentReplicasIfLower),
            _ => None,
        }
    }

    /// The replica count KEDA makes the HPA compute once a trigger has failed `failureThreshold` times in a row.
    pub fn replicas(self, fallback: u32, current: u32) -> u32 {
        match self {
            Self::Static => fallback,
            Self::CurrentReplicas => current,
            Self::CurrentReplicasIfHigher => current.max(fallback),
            Self::CurrentReplicasIfLower => current.min(fallback),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period_seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// One direction of `spec.behavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub stabilization_window_seconds: u32,
    pub select: SelectPolicy,
    pub policies: Vec<Policy>,
}

impl Rules {
    /// The HPA's default scale-up: no window, the larger of 100% or 4 pods per 15 s.
    pub fn default_up() -> Self {
        Self {
            stabilization_window_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![
                Policy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 },
                Policy { kind: PolicyKind::Pods, value: 4, period_seconds: 15 },
            ],
        }
    }

    /// The HPA's default scale-down: a 300 s window, 100% per 15 s.
    pub fn default_down() -> Self {
        Self {
            stabilization_window_seconds: 300,
            select: SelectPolicy::Max,
            policies: vec![Policy { kind: PolicyKind::Percent, value: 100, period_seconds: 15 }],
        }
    }
}

/// The HPA's memory between syncs: recent recommendations and scale events (horizontal.go keeps the same).
#[derive(Debug, Default)]
pub struct History {
    /// (time in seconds, recommendation)
    recommendations: VecDeque<(f64, u32)>,
    /// (time in seconds, replicas added (> 0) or removed (< 0))
    events: VecDeque<(f64, i64)>,
}

impl History {
    /// A new HPA's memory: horizontal.go seeds an HPA's recommendations with the current count on its first sync, so
    /// a scale-down right after it starts still waits out the window.
    pub fn seeded(now: f64, current: u32) -> Self {
        Self { recommendations: VecDeque::from([(now, current)]), events: VecDeque::new() }
    }
}

/// `spec.behavior` of an HPA: both directions, each filled in with the API server's defaults where unset.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
    /// `scaleUp.tolerance` and `scaleDown.tolerance` (the HPAConfigurableTolerance feature, beta since Kubernetes
    /// 1.34), the controller's 0.1 each way where unset.
    pub tolerances: Tolerances,
}

/// The HPA controller's downscale stabilisation when an HPA has no `behavior`
/// (`--horizontal-pod-autoscaler-downscale-stabilization`, default 5 min), seconds.
pub const LEGACY_DOWNSCALE_WINDOW_SECONDS: f64 = 300.0;

/// Bounds and behaviour of one HPA.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub min: u32,
    pub max: u32,
    /// `None` when the ScaledObject sets no `behavior`: KEDA then creates the HPA without one (`controllers/keda/
    /// hpa.go`), the API server leaves it nil (`SetDefaults_HorizontalPodAutoscalerBehavior` fills only a behavior
    /// that is there), and horizontal.go takes its legacy path.
    pub behavior: Option<Behavior>,
}

impl Scaling {
    /// The tolerances each way: the behavior's, or the controller's default without one.
    pub fn tolerances(&self) -> Tolerances {
        self.behavior.as_ref().map_or(Tolerances::DEFAULT, |b| b.tolerances)
    }

    /// The replicas after one sync at time `now` (seconds), from the metrics' combined proposal
    /// (horizontal.go: normalizeDesiredReplicasWithBehaviors, or normalizeDesiredReplicas without a behavior).
    /// Records what it decided in `history`.
    pub fn decide(&self, history: &mut History, now: f64, current: u32, proposal: u32) -> u32 {
        if current > self.max {
            return self.record(history, now, current, proposal, self.max);
        }
        if current < self.min {
            return self.record(history, now, current, proposal, self.min);
        }
        let Some(behavior) = &self.behavior else {
            let decided = self.legacy(history, now, current, proposal);
            return self.record(history, now, current, proposal, decided);
        };
        let stabilized = behavior.stabilize(history, now, current, proposal);
        let limited = if stabilized > current {
            let limit = behavior.up_limit(history, now, current).max(current);
            stabilized.min(limit).min(self.max)
        } else if stabilized < current {
            let limit = behavior.down_limit(history, now, current).min(current);
            stabilized.max(limit).max(self.min)
        } else {
            stabilized
        };
        self.record(history, now, current, proposal, limited)
    }

    /// horizontal.go without a behavior: `stabilizeRecommendation` takes the highest recommendation of the downscale
    /// window (this one included; samples at its very edge still count), then `convertDesiredReplicasWithRules`
    /// clamps to the minimum and to `calculateScaleUpLimit`, max(2 × current, 4), below the maximum: no rate over
    /// time in either direction.
    fn legacy(&self, history: &History, now: f64, current: u32, proposal: u32) -> u32 {
        let stabilized = history
            .recommendations
            .iter()
            .filter(|&&(t, _)| t >= now - LEGACY_DOWNSCALE_WINDOW_SECONDS)
            .fold(proposal, |most, &(_, r)| most.max(r));
        let allowed = self.max.min(current.saturating_mul(2).max(4));
        if stabilized < self.min {
            self.min
        } else {
            stabilized.min(allowed)
        }
    }

    fn record(&self, history: &mut History, now: f64, current: u32, proposal: u32, decided: u32) -> u32 {
        history.recommendations.push_back((now, proposal));
        let (keep, longest) = match &self.behavior {
            Some(b) => (
                f64::from(b.up.stabilization_window_seconds.max(b.down.stabilization_window_seconds)),
                b.up.policies.iter().chain(&b.down.policies).map(|p| p.period_seconds).max().unwrap_or(0),
            ),
            // The legacy path keeps its window's recommendations and no scale events (`storeScaleEvent`).
            None => (LEGACY_DOWNSCALE_WINDOW_SECONDS, 0),
        };
        while history.recommendations.front().is_some_and(|&(t, _)| t < now - keep) {
            history.recommendations.pop_front();
        }
        if decided != current && self.behavior.is_some() {
            history.events.push_back((now, i64::from(decided) - i64::from(current)));
        }
        while history.events.front().is_some_and(|&(t, _)| t < now - f64::from(longest)) {
            history.events.pop_front();
        }
        decided
    }
}

impl Behavior {
    /// Scale-up takes the lowest recommendation of its window, scale-down the highest of its own.
    fn stabilize(&self, history: &History, now: f64, current: u32, proposal: u32) -> u32 {
        let (mut up, mut down) = (proposal, proposal);
        for &(t, recommendation) in &history.recommendations {
            if t > now - f64::from(self.up.stabilization_window_seconds) {
                up = up.min(recommendation);
            }
            if t > now - f64::from(self.down.stabilization_window_seconds) {
                down = down.max(recommendation);
            }
        }
        current.max(up).min(down)
    }

    /// Replicas added and removed within the last `period` seconds.
    fn changes_within(history: &History, now: f64, period: u32) -> (i64, i64) {
        history.events.iter().filter(|&&(t, _)| t > now - f64::from(period)).fold(
            (0, 0),
            |(added, removed), &(_, n)| {
                if n > 0 {
                    (added + n, removed)
                } else {
                    (added, removed - n)
                }
            },
        )
    }

    fn up_limit(&self, history: &History, now: f64, current: u32) -> u32 {
        let proposals = self.up.policies.iter().map(|policy| {
            let (added, removed) = Self::changes_within(history, now, policy.period_seconds);
            let start = (i64::from(current) - added + removed).max(0) as f64;
            match policy.kind {
                PolicyKind::Pods => start + f64::from(policy.value),
                PolicyKind::Percent => (start * (1.0 + f64::from(policy.value) / 100.0)).ceil(),
            }
        });
        let chosen = match self.up.select {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Max => proposals.fold(f64::MIN, f64::max),
            SelectPolicy::Min => proposals.fold(f64::MAX, f64::min),
        };
        chosen.clamp(0.0, f64::from(u32::MAX)) as u32
    }

    fn down_limit(&self, history: &History, now: f64, current: u32) -> u32 {
        let proposals = self.down.policies.iter().map(|policy| {
            let (added, removed) = Self::changes_within(history, now, policy.period_seconds);
            let start = (i64::from(current) + removed - added).max(0) as f64;
            match policy.kind {
                PolicyKind::Pods => start - f64::from(policy.value),
                // horizontal.go truncates here.
                PolicyKind::Percent => (start * (1.0 - f64::from(policy.value) / 100.0)).trunc(),
            }
        });
        let chosen = match self.down.select {
            SelectPolicy::Disabled => return current,
            // The policy allowing the larger change is the one proposing fewer replicas.
            SelectPolicy::Max => proposals.fold(f64::MAX, f64::min),
            SelectPolicy::Min => proposals.fold(f64::MIN, f64::max),
        };
        chosen.clamp(0.0, f64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_replicas_follow_the_documented_examples() {
        use MetricType::{AverageValue, Value};
        // (kind, value, target, current, ready, expected)
        let cases = [
            // SCALING-NOTES worked example: 23 req/s against 5 per pod on one replica asks for 5.
            (AverageValue, 23.0, 5.0, 1, 1, 5),
            // Value: p95 3 s against 2 s with 4 ready pods: ratio 1.5 → 6.
            (Value, 3.0, 2.0, 4, 4, 6),
            // Within the 0.1 tolerance nothing changes, either way.
            (AverageValue, 10.5, 5.0, 2, 2, 2),
            (AverageValue, 9.5, 5.0, 2, 2, 2),
            (Value, 2.1, 2.0, 3, 3, 3),
            // Just outside it.
            (AverageValue, 11.5, 5.0, 2, 2, 3),
            // Kubernetes docs: 200m current against 100m target doubles the replicas.
            (Value, 0.2, 0.1, 3, 3, 6),
            // Scale down, and a Value metric scales by ready pods, not by desired.
            (AverageValue, 4.0, 5.0, 6, 6, 1),
            (Value, 1.0, 2.0, 4, 2, 1),
            (Value, 0.0, 2.0, 4, 4, 0),
        ];
        for (kind, value, target, current, ready, expected) in cases {
            assert_eq!(
                metric_replicas(kind, value, target, current, ready, Tolerances::DEFAULT),
                expected,
                "{kind:?} value {value} target {target} current {current} ready {ready}"
            );
        }
    }

    /// replica_calculator.go `Tolerances.isWithin`: a ratio of exactly 1.1 is within. 11 queued on 5 pods against a
    /// target of 2 is that ratio; `(1.0 - 1.1).abs() <= 0.1` is false in floats (0.10000000000000009) and scaled to 6.
    #[test]
    fn replica_calculator_is_within_keeps_a_ratio_of_exactly_one_point_one() {
        let within = |ratio| Tolerances::DEFAULT.is_within(ratio);
        assert!(within(11.0 / 10.0) && within(0.9) && !within(1.1001));
        assert!((1.0_f64 - 11.0 / 10.0).abs() > TOLERANCE, "the old comparison's float edge");
        assert_eq!(metric_replicas(MetricType::AverageValue, 11.0, 2.0, 5, 5, Tolerances::DEFAULT), 5);
        assert_eq!(metric_replicas(MetricType::Value, 1.1, 1.0, 4, 4, Tolerances::DEFAULT), 4);
        assert_eq!(
            metric_replicas(MetricType::AverageValue, 9.0, 2.0, 5, 5, Tolerances::DEFAULT),
            5,
            "0.9 exactly is within too"
        );
        assert_eq!(
            metric_replicas(MetricType::AverageValue, 7.9, 2.0, 5, 5, Tolerances::DEFAULT),
            4,
            "0.79 scales down"
        );
    }

    /// KEDA `pkg/scalers/scaler.go` `quantityFromFloat64` (`%.3f`; NaN, Inf and negative as 0): the HPA sees
    /// milli-quantities, so a value's fourth decimal never moves a ratio, and a negative value asks for nothing.
    #[test]
    fn keda_scaler_quantity_from_float64_rounds_to_milli_quantities() {
        assert_eq!((milli(0.0004), milli(0.0005), milli(1.2345), milli(-3.0), milli(f64::NAN)), (0, 1, 1235, 0, 0));
        // 0.8004 cores against 0.8 per pod on one pod: both 800 milli, ratio exactly 1, nothing moves.
        assert_eq!(metric_replicas(MetricType::AverageValue, 0.8004, 0.8, 1, 1, Tolerances::DEFAULT), 1);
        assert_eq!(metric_replicas(MetricType::AverageValue, -5.0, 2.0, 3, 3, Tolerances::DEFAULT), 0);
        // A behavior's own tolerance (HPAConfigurableTolerance): 10.8 on 5 pods against 2 is a ratio of 1.08, within
        // the default 0.1, outside 0.05; each direction has its own.
        let tight = Tolerances { up: 0.05, down: 0.05 };
        assert_eq!(metric_replicas(MetricType::AverageValue, 10.8, 2.0, 5, 5, tight), 6);
        let up_only = Tolerances { up: 0.05, down: 0.1 };
        assert_eq!(metric_replicas(MetricType::AverageValue, 9.2, 2.0, 5, 5, up_only), 5, "0.92 is within 0.1 down");
        assert_eq!(metric_replicas(MetricType::AverageValue, 10.8, 2.0, 5, 5, up_only), 6);
    }

    #[test]
    fn horizontal_compute_replicas_for_metrics_keeps_replicas_when_metrics_fail() {
        assert_eq!(combine(&[Some(2), Some(5), Some(1)], 3), Some(5));
        // Some invalid and the rest would scale down: no decision this sync (and no recommendation recorded).
        assert_eq!(combine(&[Some(1), None], 3), None);
        // Some invalid, the rest scale up: that scale-up goes ahead.
        assert_eq!(combine(&[Some(4), None], 3), Some(4));
        assert_eq!(combine(&[Some(3), None], 3), Some(3));
        // Every metric invalid.
        assert_eq!(combine(&[None, None], 3), None);
    }

    #[test]
    fn fallback_behaviours() {
        use FallbackBehavior::*;
        // (behaviour, fallback replicas, current, expected)
        let cases = [
            (Static, 2, 7, 2),
            (CurrentReplicas, 2, 7, 7),
            (CurrentReplicasIfHigher, 2, 7, 7),
            (CurrentReplicasIfHigher, 2, 1, 2),
            (CurrentReplicasIfLower, 2, 7, 2),
            (CurrentReplicasIfLower, 2, 1, 1),
        ];
        for (behavior, fallback, current, expected) in cases {
            assert_eq!(behavior.replicas(fallback, current), expected, "{behavior:?} {fallback} {current}");
        }
        assert_eq!(FallbackBehavior::parse("currentReplicasIfHigher"), Some(CurrentReplicasIfHigher));
        assert_eq!(FallbackBehavior::parse("sometimes"), None);
    }

    fn scaling(up: Rules, down: Rules) -> Scaling {
        Scaling { min: 1, max: 10, behavior: Some(Behavior { up, down, tolerances: Tolerances::DEFAULT }) }
    }

    /// horizontal.go `normalizeDesiredReplicas` (no behavior): `calculateScaleUpLimit` is max(2 × current, 4) per
    /// sync, where the default behavior allows the larger of 100% and 4 pods per 15 s (1 → 10 gives 5 there, 4 here;
    /// 3 → 10 gives 7 there, 6 here).
    #[test]
    fn horizontal_normalize_desired_replicas_without_a_behavior_caps_at_double_or_four() {
        let legacy = Scaling { min: 1, max: 20, behavior: None };
        // (current, proposal, expected)
        for (current, proposal, expected) in [(1, 10, 4), (3, 10, 6), (5, 8, 8), (8, 40, 16), (12, 40, 20), (3, 0, 1)] {
            let mut history = History::default();
            assert_eq!(legacy.decide(&mut history, 0.0, current, proposal), expected, "{current} -> {proposal}");
        }
        let default = Scaling { max: 20, ..scaling(Rules::default_up(), Rules::default_down()) };
        assert_eq!(default.decide(&mut History::default(), 0.0, 1, 10), 5, "the default behavior differs");
        assert_eq!(default.decide(&mut History::default(), 0.0, 3, 10), 7);
    }

    /// horizontal.go `stabilizeRecommendation`: the highest recommendation of the controller's 5-minute downscale
    /// window, its edge included (`Before(cutoff)` is what drops a sample), then straight down: no scale-down rate.
    #[test]
    fn horizontal_stabilize_recommendation_without_a_behavior_holds_the_window_then_drops_at_once() {
        let legacy = Scaling { min: 1, max: 10, behavior: None };
        let mut history = History::seeded(0.0, 1);
        assert_eq!(legacy.decide(&mut history, 0.0, 1, 8), 4);
        assert_eq!(legacy.decide(&mut history, 15.0, 4, 8), 8);
        assert_eq!(legacy.decide(&mut history, 30.0, 8, 1), 8);
        assert_eq!(legacy.decide(&mut history, 315.0, 8, 1), 8, "the 8 of t=15 sits on the window's edge");
        assert_eq!(legacy.decide(&mut history, 316.0, 8, 1), 1, "no policy limits the scale-down");
    }

    #[test]
    fn default_scale_up_is_the_larger_of_double_or_four_pods_per_period() {
        let s = scaling(Rules::default_up(), Rules::default_down());
        // (current, proposal, expected): SCALING-NOTES worked example first.
        for (current, proposal, expected) in [(1, 5, 5), (1, 9, 5), (2, 20, 6), (5, 20, 10), (3, 3, 3)] {
            let mut history = History::default();
            assert_eq!(s.decide(&mut history, 0.0, current, proposal), expected, "{current} → {proposal}");
        }
    }

    #[test]
    fn scale_up_policies_count_what_was_added_within_the_period() {
        // 4 pods per 60 s, nothing else: two syncs 15 s apart cannot add 8.
        let up = Rules {
            stabilization_window_seconds: 0,
            select: SelectPolicy::Max,
            policies: vec![Policy { kind: PolicyKind::Pods, value: 4, period_seconds: 60 }],
        };
        let s = scaling(up, Rules::default_down());
        let mut history = History::default();
        assert_eq!(s.decide(&mut history, 0.0, 1, 10), 5);
        assert_eq!(s.decide(&mut history, 15.0, 5, 10), 5, "the period's 4 pods are spent");
        assert_eq!(s.decide(&mut history, 61.0, 5, 10), 9, "a new period");
    }

    #[test]
    fn scale_down_waits_out_the_stabilisation_window() {
        let s = scaling(Rules::default_up(), Rules::default_down());
        let mut history = History::default();
        assert_eq!(s.decide(&mut history, 0.0, 1, 6), 5);
        assert_eq!(s.decide(&mut history, 15.0, 5, 6), 6);
        // The load is gone: the highest recommendation of the last 300 s is still 6.
        assert_eq!(s.decide(&mut history, 30.0, 6, 1), 6);
        assert_eq!(s.decide(&mut history, 314.0, 6, 1), 6, "the 6 of t=15 is inside the window");
        assert_eq!(s.decide(&mut history, 316.0, 6, 1), 1, "window over; 100% per 15 s lets it drop at once");
    }

    #[test]
    fn scale_down_policies_limit_the_rate() {
        // 50% per 60 s, Min: the project's scale-down behaviour.
        let down = Rules {
            stabilization_window_seconds: 0,
            select: SelectPolicy::Min,
            policies: vec![Policy { kind: PolicyKind::Percent, value: 50, period_seconds: 60 }],
        };
        let s = scaling(Rules::default_up(), down);
        let mut history = History::default();
        assert_eq!(s.decide(&mut history, 0.0, 10, 1), 5);
        assert_eq!(s.decide(&mut history, 15.0, 5, 1), 5, "the period started at 10 and 50% are gone");
        assert_eq!(s.decide(&mut history, 61.0, 5, 1), 2, "50% of 5, truncated as horizontal.go does");
        assert_eq!(s.decide(&mut history, 122.0, 2, 1), 1);
    }

    #[test]
    fn bounds_and_disabled_directions() {
        let disabled = Rules { stabilization_window_seconds: 0, select: SelectPolicy::Disabled, policies: vec![] };
        let s = scaling(disabled.clone(), Rules::default_down());
        assert_eq!(s.decide(&mut History::default(), 0.0, 2, 8), 2, "scale-up disabled");
        let s = scaling(Rules::default_up(), disabled);
        assert_eq!(s.decide(&mut History::default(), 0.0, 8, 2), 8, "scale-down disabled");
        let s = scaling(Rules::default_up(), Rules::default_down());
        assert_eq!(s.decide(&mut History::default(), 0.0, 12, 12), 10, "above max: max");
        assert_eq!(s.decide(&mut History::default(), 0.0, 0, 0), 1, "below min: min");
        assert_eq!(s.decide(&mut History::default(), 0.0, 8, 40), 10, "never above max");
    }
}
