//! The candidates: the ScaledObject in force, each Prometheus trigger's threshold at half, three quarters, one and a
//! half and twice its value, the polling interval at 15 and 30 s, the scale-down stabilization at 1, 2 and 10 min and
//! a scale-up stabilization of 30 and 60 s, the HPA's tolerance at 0.05, 0.2 and 0.3 each way, a plain HPA on CPU at
//! 70% (the usual alternative), and a fixed count of every size up to the maximum. Each is the
//! simulator's ScaledObject changed, and the same change as a patch of the manifest's.

use serde_json::{json, Value};
use surge_keda::hpa::{MetricType, Tolerances};
use surge_keda::resource::{Resource, Target};
use surge_keda::scaled_object::{documents, find, Source, Trigger};
use surge_keda::ScaledObject;

/// One change to the ScaledObject.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Threshold {
        trigger: usize,
        value: f64,
    },
    PollingInterval(f64),
    ScaleDownWindow(u32),
    ScaleUpWindow(u32),
    /// The HPA's tolerance, the same each way (`behavior.scaleUp.tolerance`, `scaleDown.tolerance`).
    Tolerance(f64),
    /// A plain HPA on CPU at this utilization of the request, instead of the ScaledObject's triggers.
    CpuUtilization(i32),
    Fixed(u32),
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub scaled_object: ScaledObject,
    /// A fixed count: the floor of what the goal costs, not a ScaledObject to apply.
    pub fixed: bool,
    change: Option<Change>,
}

/// The manifest's ScaledObject `consumer`, as rendered.
pub fn raw_scaled_object(yaml: &str) -> Result<Value, String> {
    Ok(find(&documents(yaml)?, "ScaledObject", "consumer")?.clone())
}

pub fn candidates(current: &ScaledObject, raw: &Value) -> Vec<Candidate> {
    let mut changes = Vec::new();
    for (index, trigger) in current.triggers.iter().enumerate() {
        if matches!(trigger.source, Source::Prometheus { .. }) {
            for factor in [0.5, 0.75, 1.5, 2.0] {
                // Played as the patch writes it (0.8 × 0.75 is 0.6000000000000001, written 0.6).
                let exact = trigger.threshold * factor;
                let value = number(exact).parse().unwrap_or(exact);
                changes.push(Change::Threshold { trigger: index, value });
            }
        }
    }
    changes.extend([15.0, 30.0].into_iter().filter(|p| *p != current.polling_interval).map(Change::PollingInterval));
    if current.scaling.behavior.is_some() {
        changes.extend([60, 120, 600].map(Change::ScaleDownWindow));
        changes.extend([30, 60].map(Change::ScaleUpWindow));
        changes.extend([0.05, 0.2, 0.3].map(Change::Tolerance));
    }
    changes.push(Change::CpuUtilization(70));
    changes.extend((current.scaling.min.max(1)..=current.scaling.max).map(Change::Fixed));
    let mut all =
        vec![Candidate { name: "current".into(), scaled_object: current.clone(), fixed: false, change: None }];
    all.extend(changes.into_iter().map(|change| Candidate {
        name: describe(change, current, raw),
        scaled_object: apply(change, current),
        fixed: matches!(change, Change::Fixed(_)),
        change: Some(change),
    }));
    all
}

fn describe(change: Change, current: &ScaledObject, raw: &Value) -> String {
    match change {
        Change::Threshold { trigger, value } => {
            let name = raw["spec"]["triggers"][trigger]["name"].as_str().unwrap_or("trigger");
            format!("{name} threshold {} (was {})", number(value), number(current.triggers[trigger].threshold))
        }
        Change::PollingInterval(seconds) => format!("pollingInterval {seconds} s"),
        Change::ScaleDownWindow(seconds) => format!("scale-down window {seconds} s"),
        Change::ScaleUpWindow(seconds) => format!("scale-up window {seconds} s"),
        Change::Tolerance(tolerance) => {
            let was = current.scaling.tolerances();
            format!("HPA tolerance {} (was {}/{} up/down)", number(tolerance), number(was.up), number(was.down))
        }
        Change::CpuUtilization(percent) => format!("HPA on CPU at {percent}% (no other trigger)"),
        Change::Fixed(replicas) => format!("fixed {replicas} replicas"),
    }
}

/// A threshold as a manifest writes it: `2`, `0.8`, `1.125`.
fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn apply(change: Change, current: &ScaledObject) -> ScaledObject {
    let mut so = current.clone();
    match change {
        Change::Threshold { trigger, value } => so.triggers[trigger].threshold = value,
        Change::PollingInterval(seconds) => so.polling_interval = seconds,
        Change::ScaleDownWindow(seconds) => {
            if let Some(behavior) = so.scaling.behavior.as_mut() {
                behavior.down.stabilization_window_seconds = seconds;
            }
        }
        Change::Tolerance(tolerance) => {
            if let Some(behavior) = so.scaling.behavior.as_mut() {
                behavior.tolerances = Tolerances { up: tolerance, down: tolerance };
            }
        }
        Change::ScaleUpWindow(seconds) => {
            if let Some(behavior) = so.scaling.behavior.as_mut() {
                behavior.up.stabilization_window_seconds = seconds;
            }
        }
        Change::CpuUtilization(percent) => {
            so.triggers = vec![Trigger {
                name: "cpu".into(),
                kind: MetricType::AverageValue,
                source: Source::Resource { resource: Resource::Cpu, target: Target::Utilization(percent) },
                threshold: f64::from(percent),
                activation_threshold: 0.0,
            }];
            // A plain HPA: no behavior (the controller's defaults), no KEDA fallback.
            so.scaling.behavior = None;
            so.fallback = None;
        }
        Change::Fixed(replicas) => {
            so.scaling.min = replicas;
            so.scaling.max = replicas;
            so.min_replica_count = replicas;
        }
    }
    so
}

impl Candidate {
    /// The change as a kustomize patch of the ScaledObject `consumer` (a CRD's lists are replaced whole, so a
    /// threshold's patch carries every trigger).
    pub fn patch(&self, raw: &Value) -> Value {
        let mut spec = json!({});
        match self.change {
            None | Some(Change::Fixed(_)) => {}
            Some(Change::Threshold { trigger, value }) => {
                let mut triggers = raw["spec"]["triggers"].clone();
                triggers[trigger]["metadata"]["threshold"] = number(value).into();
                spec["triggers"] = triggers;
            }
            Some(Change::PollingInterval(seconds)) => spec["pollingInterval"] = json!(seconds as u64),
            Some(Change::ScaleDownWindow(seconds)) => {
                spec["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior":
                    {"scaleDown": {"stabilizationWindowSeconds": seconds}}}});
            }
            Some(Change::CpuUtilization(percent)) => {
                spec["triggers"] = json!([{"type": "cpu", "name": "cpu", "metricType": "Utilization",
                    "metadata": {"value": percent.to_string()}}]);
                // Null removes a field in a strategic merge: the HPA's own behavior, no fallback for a cpu trigger.
                spec["advanced"] = Value::Null;
                spec["fallback"] = Value::Null;
            }
            Some(Change::Tolerance(tolerance)) => {
                let each_way = json!({"tolerance": number(tolerance)});
                spec["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior":
                    {"scaleUp": each_way, "scaleDown": each_way}}});
            }
            Some(Change::ScaleUpWindow(seconds)) => {
                spec["advanced"] = json!({"horizontalPodAutoscalerConfig": {"behavior":
                    {"scaleUp": {"stabilizationWindowSeconds": seconds}}}});
            }
        }
        json!({
            "apiVersion": raw["apiVersion"],
            "kind": "ScaledObject",
            "metadata": {"name": raw["metadata"]["name"], "namespace": raw["metadata"]["namespace"]},
            "spec": spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7386 merge, as kustomize patches a custom resource: objects merge, null removes, anything else replaces.
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(target), Some(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(key);
                    } else {
                        merge(target.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    /// Each autoscaled candidate's patch, applied to the manifest, reads back as the ScaledObject it was played as.
    #[test]
    fn every_patch_reads_back_as_its_candidate() {
        let raw = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "consumer", "namespace": "surge"},
            "spec": {"minReplicaCount": 1, "maxReplicaCount": 4, "pollingInterval": 5,
                "fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "currentReplicasIfHigher"},
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300}}}},
                "triggers": [
                    {"type": "prometheus", "name": "backlog", "metricType": "AverageValue",
                        "metadata": {"serverAddress": "http://prometheus:9090", "query": "max(b)", "threshold": "4"}},
                    {"type": "prometheus", "name": "cpu-demand", "metricType": "AverageValue",
                        "metadata": {"serverAddress": "http://prometheus:9090", "query": "sum(d)", "threshold": "0.8"}}]}});
        let current = ScaledObject::from_manifest(&raw).expect("the manifest parses");
        let all = candidates(&current, &raw);
        assert!(all.iter().any(|c| c.name.starts_with("HPA tolerance 0.2 ")), "{:?}", all.iter().map(|c| &c.name));
        for candidate in all.iter().filter(|c| !c.fixed) {
            let mut patched = raw.clone();
            merge(&mut patched, &candidate.patch(&raw));
            let read = ScaledObject::from_manifest(&patched).expect("the patched manifest parses");
            assert_eq!(read, candidate.scaled_object, "{}: {}", candidate.name, candidate.patch(&raw));
        }
    }

    #[test]
    fn thresholds_are_written_as_a_manifest_writes_them() {
        assert_eq!(
            (number(2.0), number(0.8), number(1.125), number(0.6)),
            ("2".into(), "0.8".into(), "1.125".into(), "0.6".into())
        );
    }
}
