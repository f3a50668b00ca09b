//! The HPA's Resource metrics: CPU and memory as metrics-server reports them, and the replicas a utilization or an
//! average-value target asks for (Kubernetes `pkg/controller/podautoscaler`: replica_calculator.go
//! `GetResourceReplicas`, `GetRawResourceReplicas`, `groupPods`; metrics/utilization.go; metrics-server
//! `pkg/storage` `resourceUsage`). A ScaledObject's `cpu` and `memory` triggers become exactly these metrics (KEDA
//! hands the HPA a `Resource` metric spec and computes nothing itself), and so does a plain HPA.
//!
//! Every quantity is a milli-value as the HPA reads it (`Quantity.MilliValue`, rounded up): millicores for CPU, and
//! for memory a thousand times the bytes. Times are seconds on one clock.

use crate::hpa::Tolerances;

/// Which resource a metric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Self::Cpu),
            "memory" => Some(Self::Memory),
            _ => None,
        }
    }
}

/// The target of a Resource metric (`autoscaling/v2` `MetricTarget`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `averageUtilization`: percent of the pods' requests.
    Utilization(i32),
    /// `averageValue`: a milli-value per pod.
    AverageValue(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// A pod's Ready condition: its status and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    pub since: f64,
}

/// What metrics-server reports for a pod: its usage over the window ending at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub milli: i64,
    pub at: f64,
    pub window: f64,
}

/// One metrics-server reading of a pod (the kubelet's summary): when, its cumulative CPU time and its working set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub at: f64,
    pub cpu_nanos: u64,
    pub working_set_bytes: u64,
}

/// What metrics-server reports of a pod from its last readings (the earlier first): nothing until it has two, then CPU
/// as the rate between them and memory as the later.
pub fn reported(readings: &[Reading], resource: Resource) -> Option<Usage> {
    let [.., earlier, later] = readings else { return None };
    let milli = match resource {
        Resource::Cpu => cpu_usage_milli((earlier.at, earlier.cpu_nanos), (later.at, later.cpu_nanos))?,
        Resource::Memory => memory_milli(later.working_set_bytes),
    };
    Some(Usage { milli, at: later.at, window: later.at - earlier.at })
}

/// One pod of the target, as the replica calculator lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pod {
    pub phase: Phase,
    /// `deletionTimestamp` set: the pod is terminating.
    pub deleting: bool,
    /// `status.startTime` (`None`: not started).
    pub started_at: Option<f64>,
    /// The Ready condition (`None`: the pod has none yet).
    pub readiness: Option<Readiness>,
    /// The resource's request summed over the pod's containers, milli-units.
    pub request_milli: i64,
    /// metrics-server's report (`None`: it has none for this pod).
    pub usage: Option<Usage>,
}

/// kube-controller-manager's `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min) and
/// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub cpu_initialization_period: f64,
    pub initial_readiness_delay: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Self { cpu_initialization_period: 300.0, initial_readiness_delay: 30.0 }
    }
}

/// How `groupPods` sorts the pods: counted, unready (left out, 0 on a scale-up), missing a metric (filled in
/// against the direction), ignored (terminating or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Ready,
    Unready,
    Missing,
    Ignored,
}

/// `groupPods`: which group a pod falls in at `now`. Only CPU looks at readiness: a pod starting up burns CPU that
/// says nothing about load, so a CPU sample counts only once a whole metric window followed the pod's last change of
/// readiness within its initialisation period, and a pod that has never been ready is left out after it.
pub fn group(pod: &Pod, resource: Resource, timing: &Timing, now: f64) -> Group {
    if pod.deleting || pod.phase == Phase::Failed {
        return Group::Ignored;
    }
    if pod.phase == Phase::Pending {
        return Group::Unready;
    }
    let Some(usage) = pod.usage else { return Group::Missing };
    if resource == Resource::Memory {
        return Group::Ready;
    }
    let (Some(readiness), Some(started)) = (pod.readiness, pod.started_at) else { return Group::Unready };
    let unready = if started + timing.cpu_initialization_period > now {
        !readiness.ready || usage.at < readiness.since + usage.window
    } else {
        !readiness.ready && started + timing.initial_readiness_delay > readiness.since
    };
    if unready {
        Group::Unready
    } else {
        Group::Ready
    }
}

/// metrics-server's CPU usage between two readings of a container's cumulative CPU time (nanoseconds at seconds
/// `t`): whole nanocores over the window, as the HPA reads them, in millicores rounded up.
pub fn cpu_usage_milli(earlier: (f64, u64), later: (f64, u64)) -> Option<i64> {
    let window = later.0 - earlier.0;
    if later.1 < earlier.1 || window <= 0.0 {
        return None;
    }
    let nanocores = ((later.1 - earlier.1) as f64 / window) as u64;
    Some(nanocores.div_ceil(1_000_000) as i64)
}

/// A memory reading (the working set, bytes) as a milli-value.
pub fn memory_milli(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}

/// The replicas one Resource metric asks for, and what it read (utilization in percent, or the average milli-value).
pub fn replicas(
    pods: &[Pod],
    resource: Resource,
    target: Target,
    tolerances: Tolerances,
    current: u32,
    timing: &Timing,
    now: f64,
) -> Result<(u32, i64), String> {
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let groups: Vec<Group> = pods.iter().map(|p| group(p, resource, timing, now)).collect();
    let ready = members(pods, &groups, Group::Ready);
    if ready.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let usage = |p: &Pod| p.usage.map_or(0, |u| u.milli);
    // (the pods' usage, their requests, how many) → the usage ratio and what it read.
    let ratio_of = |samples: &[(i64, i64)]| -> Result<(f64, i64), String> {
        let total: i64 = samples.iter().map(|s| s.0).sum();
        match target {
            Target::Utilization(percent) => {
                let requests: i64 = samples.iter().map(|s| s.1).sum();
                if requests == 0 {
                    return Err("no metrics returned matched known pods".into());
                }
                let utilization = total * 100 / requests;
                Ok((utilization as f64 / f64::from(percent), utilization))
            }
            Target::AverageValue(per_pod) => {
                let average = total / samples.len() as i64;
                Ok((average as f64 / per_pod as f64, average))
            }
        }
    };
    let mut samples: Vec<(i64, i64)> = ready.iter().map(|p| (usage(p), p.request_milli)).collect();
    let (ratio, read) = ratio_of(&samples)?;
    let (unready, missing) = (members(pods, &groups, Group::Unready), members(pods, &groups, Group::Missing));
    let up_with_unready = !unready.is_empty() && ratio > 1.0;
    if !up_with_unready && missing.is_empty() {
        if tolerances.is_within(ratio) {
            return Ok((current, read));
        }
        return Ok((ceil(ratio * ready.len() as f64), read));
    }
    // Fill the gaps against the direction: a missing pod uses its whole request (or the target, above 100%) on a
    // scale-down and nothing on a scale-up; an unready one nothing on a scale-up.
    for pod in &missing {
        let assumed = if ratio < 1.0 {
            match target {
                Target::Utilization(percent) => Some(pod.request_milli * i64::from(percent.max(100)) / 100),
                Target::AverageValue(per_pod) => Some(per_pod),
            }
        } else if ratio > 1.0 {
            Some(0)
        } else {
            None
        };
        samples.extend(assumed.map(|milli| (milli, pod.request_milli)));
    }
    if up_with_unready {
        samples.extend(unready.iter().map(|p| (0, p.request_milli)));
    }
    let (new_ratio, _) = ratio_of(&samples)?;
    if tolerances.is_within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok((current, read));
    }
    let proposed = ceil(new_ratio * samples.len() as f64);
    if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
        return Ok((current, read));
    }
    Ok((proposed, read))
}

fn members<'a>(pods: &'a [Pod], groups: &[Group], wanted: Group) -> Vec<&'a Pod> {
    pods.iter().zip(groups).filter(|(_, g)| **g == wanted).map(|(p, _)| p).collect()
}

fn ceil(x: f64) -> u32 {
    if x.is_finite() && x > 0.0 {
        x.ceil().min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// replica_calculator_test.go's pods: two containers, each requesting `request` cores and using `level`
    /// millicores; started long ago, their Ready condition last changed long ago, metrics a minute's window.
    fn pod(request_cores: f64, level: Option<i64>) -> Pod {
        Pod {
            phase: Phase::Running,
            deleting: false,
            started_at: Some(0.0),
            readiness: Some(Readiness { ready: true, since: 0.0 }),
            request_milli: 2 * (request_cores * 1000.0) as i64,
            usage: level.map(|l| Usage { milli: 2 * l, at: 0.0, window: 60.0 }),
        }
    }

    const NOW: f64 = 3600.0;
    /// The test file's timing: a 2 min initialisation period, 10 s readiness delay.
    const TESTING: Timing = Timing { cpu_initialization_period: 120.0, initial_readiness_delay: 10.0 };

    fn unready(mut p: Pod) -> Pod {
        p.readiness = Some(Readiness { ready: false, since: 0.0 });
        p
    }

    /// Started a minute ago: inside the initialisation period (`hotCPUCreationTime`).
    fn hot(mut p: Pod) -> Pod {
        p.started_at = Some(NOW - 60.0);
        p
    }

    fn with(phase: Phase, mut p: Pod) -> Pod {
        p.phase = phase;
        p
    }

    fn deleting(mut p: Pod) -> Pod {
        p.deleting = true;
        p
    }

    fn utilization(pods: &[Pod], percent: i32, current: u32) -> Result<(u32, i64), String> {
        replicas(pods, Resource::Cpu, Target::Utilization(percent), Tolerances::DEFAULT, current, &TESTING, NOW)
    }

    /// Kubernetes' own cases (replica_calculator_test.go), by the test's name: (current, pods, target %, expected
    /// replicas, expected utilization).
    /// (TestReplicaCalc's name, current, pods, target %, expected replicas, expected utilization).
    type Case = (&'static str, u32, Vec<Pod>, i32, u32, i64);

    #[test]
    fn replica_calculator_resource_cases() {
        let p = pod;
        let cases: Vec<Case> = vec![
            ("ScaleUp", 3, vec![p(1.0, Some(300)), p(1.0, Some(500)), p(1.0, Some(700))], 30, 5, 50),
            (
                "ScaleUpUnreadyLessScale",
                3,
                vec![unready(p(1.0, Some(300))), p(1.0, Some(500)), p(1.0, Some(700))],
                30,
                4,
                60,
            ),
            (
                "ScaleUpHotCpuLessScale",
                3,
                vec![hot(p(1.0, Some(300))), p(1.0, Some(500)), p(1.0, Some(700))],
                30,
                4,
                60,
            ),
            (
                "ScaleUpUnreadyNoScale",
                3,
                vec![p(1.0, Some(400)), unready(p(1.0, Some(500))), unready(p(1.0, Some(700)))],
                30,
                3,
                40,
            ),
            (
                "ScaleHotCpuNoScale",
                3,
                vec![p(1.0, Some(400)), unready(hot(p(1.0, Some(500)))), unready(hot(p(1.0, Some(700))))],
                30,
                3,
                40,
            ),
            (
                "ScaleUpIgnoresFailedPods",
                2,
                vec![
                    p(1.0, Some(500)),
                    p(1.0, Some(700)),
                    with(Phase::Failed, unready(p(1.0, None))),
                    with(Phase::Failed, unready(p(1.0, None))),
                ],
                30,
                4,
                60,
            ),
            (
                "ScaleUpIgnoresDeletionPods",
                2,
                vec![
                    p(1.0, Some(500)),
                    p(1.0, Some(700)),
                    deleting(unready(p(1.0, None))),
                    deleting(unready(p(1.0, None))),
                ],
                30,
                4,
                60,
            ),
            (
                "ScaleDown",
                5,
                vec![p(1.0, Some(100)), p(1.0, Some(300)), p(1.0, Some(500)), p(1.0, Some(250)), p(1.0, Some(250))],
                50,
                3,
                28,
            ),
            (
                "ScaleDownExcludeUnreadyPods",
                5,
                vec![
                    p(1.0, Some(100)),
                    p(1.0, Some(300)),
                    p(1.0, Some(500)),
                    unready(p(1.0, Some(250))),
                    unready(p(1.0, Some(250))),
                ],
                50,
                2,
                30,
            ),
            (
                "ScaleDownExcludeUnscheduledPods",
                5,
                vec![
                    p(1.0, Some(100)),
                    with(Phase::Pending, unready(p(1.0, None))),
                    with(Phase::Pending, unready(p(1.0, None))),
                    with(Phase::Pending, unready(p(1.0, None))),
                    with(Phase::Pending, unready(p(1.0, None))),
                ],
                50,
                1,
                10,
            ),
            (
                "ScaleDownIgnoreHotCpuPods",
                5,
                vec![
                    p(1.0, Some(100)),
                    p(1.0, Some(300)),
                    p(1.0, Some(500)),
                    hot(p(1.0, Some(250))),
                    hot(p(1.0, Some(250))),
                ],
                50,
                2,
                30,
            ),
            ("Tolerance", 3, vec![p(0.9, Some(1010)), p(1.0, Some(1030)), p(1.1, Some(1020))], 100, 3, 102),
            ("MissingMetrics", 4, vec![p(1.0, Some(400)), p(1.0, Some(95)), p(1.0, None), p(1.0, None)], 100, 3, 24),
            ("MissingMetricsNoChangeEq", 2, vec![p(1.0, Some(1000)), p(1.0, None)], 100, 2, 100),
            ("MissingMetricsNoChangeGt", 2, vec![p(1.0, Some(1900)), p(1.0, None)], 100, 2, 190),
            ("MissingMetricsNoChangeLt", 2, vec![p(1.0, Some(600)), p(1.0, None)], 100, 2, 60),
            (
                "MissingMetricsUnreadyChange",
                3,
                vec![unready(p(1.0, Some(100))), p(1.0, Some(450)), p(1.0, None)],
                50,
                3,
                45,
            ),
            (
                "MissingMetricsUnreadyScaleUp",
                3,
                vec![unready(p(1.0, Some(100))), p(1.0, Some(2000)), p(1.0, None)],
                50,
                4,
                200,
            ),
            (
                "MissingMetricsUnreadyScaleDown",
                4,
                vec![unready(p(1.0, Some(100))), p(1.0, Some(100)), p(1.0, Some(100)), p(1.0, None)],
                50,
                3,
                10,
            ),
            (
                "MissingMetricsScaleDownTargetOver100",
                4,
                vec![unready(p(1.0, Some(200))), p(1.0, Some(100)), p(2.0, Some(100)), p(2.0, None)],
                300,
                2,
                6,
            ),
            ("DuringRollingUpdateWithMaxSurge", 2, vec![p(1.0, Some(100)), p(1.0, Some(100)), p(1.0, None)], 50, 2, 10),
        ];
        for (name, current, pods, target, expected, read) in cases {
            assert_eq!(utilization(&pods, target, current), Ok((expected, read)), "TestReplicaCalc{name}");
        }
    }

    #[test]
    fn errors_name_what_is_missing() {
        assert!(utilization(&[], 50, 1).expect_err("no pods").contains("no pods"));
        let pending = [with(Phase::Pending, pod(1.0, None))];
        assert!(utilization(&pending, 50, 1).expect_err("none counted").contains("did not receive metrics"));
    }

    /// `GetRawResourceReplicas` (an `averageValue` target): the pods' average against it; a missing pod on a
    /// scale-down is taken to use exactly the target.
    #[test]
    fn an_average_value_target_compares_the_pods_average() {
        let average = |pods: &[Pod], per_pod: i64, current: u32| {
            replicas(pods, Resource::Cpu, Target::AverageValue(per_pod), Tolerances::DEFAULT, current, &TESTING, NOW)
        };
        // 3 pods at 2×(300, 500, 700) m: average 1000 m against 500 m → ceil(2 × 3) = 6.
        let pods = [pod(1.0, Some(300)), pod(1.0, Some(500)), pod(1.0, Some(700))];
        assert_eq!(average(&pods, 500, 3), Ok((6, 1000)));
        // Within tolerance: average 1000 m against 950 m (ratio 1.05) keeps 3.
        assert_eq!(average(&pods, 950, 3), Ok((3, 1000)));
        // One pod missing on a scale-down: (200 + 200 + 1000) / 3 against 1000 → ratio 0.47 → ceil(1.4) = 2.
        let missing = [pod(1.0, Some(100)), pod(1.0, Some(100)), pod(1.0, None)];
        assert_eq!(average(&missing, 1000, 3), Ok((2, 200)));
    }

    /// Memory never looks at readiness: a starting pod's working set counts.
    #[test]
    fn memory_counts_a_starting_pod() {
        let starting = unready(hot(pod(1.0, Some(500))));
        assert_eq!(group(&starting, Resource::Memory, &TESTING, NOW), Group::Ready);
        assert_eq!(group(&starting, Resource::Cpu, &TESTING, NOW), Group::Unready);
    }

    /// groupPods' table (TestGroupPods): a CPU sample inside the initialisation period counts only once a whole
    /// window followed the last readiness change; after it, only a pod that has never been ready is left out.
    #[test]
    fn group_pods_cases() {
        let now = 1000.0;
        let base = |started: f64, readiness: Option<Readiness>, usage: Option<Usage>| Pod {
            phase: Phase::Succeeded,
            deleting: false,
            started_at: Some(started),
            readiness,
            request_milli: 1000,
            usage,
        };
        let ready_since = |t: f64| Some(Readiness { ready: true, since: t });
        let unready_since = |t: f64| Some(Readiness { ready: false, since: t });
        let sample = |at: f64, window: f64| Some(Usage { milli: 1, at, window });
        let cases = [
            ("no ready condition", base(now, None, sample(0.0, 0.0)), Group::Unready),
            ("fresh metrics, initialising", base(now - 60.0, ready_since(now - 30.0), sample(now, 30.0)), Group::Ready),
            (
                "stale metrics, initialising",
                base(now - 60.0, ready_since(now - 30.0), sample(now, 60.0)),
                Group::Unready,
            ),
            (
                "unready within the delay of its start",
                base(now - 600.0, unready_since(now - 594.0), sample(0.0, 0.0)),
                Group::Unready,
            ),
            (
                "ready after initialising",
                base(now - 180.0, ready_since(now - 180.0), sample(now - 120.0, 60.0)),
                Group::Ready,
            ),
            ("once ready, now unready", base(now - 600.0, unready_since(now - 540.0), sample(0.0, 0.0)), Group::Ready),
            ("never ready", base(now - 600.0, unready_since(now - 590.0), sample(0.0, 0.0)), Group::Ready),
            ("missing", base(now - 180.0, None, None), Group::Missing),
        ];
        // TestGroupPods uses a 2 min initialisation period and a 10 s readiness delay.
        for (name, pod, expected) in cases {
            assert_eq!(group(&pod, Resource::Cpu, &TESTING, now), expected, "{name}");
        }
    }

    #[test]
    fn metrics_server_reports_whole_nanocores_the_hpa_rounds_up_to_millicores() {
        // 1.5 s of CPU over 15 s: 100,000,000 nanocores = 100 m.
        assert_eq!(cpu_usage_milli((0.0, 0), (15.0, 1_500_000_000)), Some(100));
        // 1.5000001 s: 100,000,006 nanocores → 101 m (rounded up).
        assert_eq!(cpu_usage_milli((0.0, 0), (15.0, 1_500_000_100)), Some(101));
        assert_eq!(cpu_usage_milli((0.0, 5), (15.0, 4)), None, "a decrease is an error");
        assert_eq!(memory_milli(384 << 20), 402_653_184_000);
    }
}
