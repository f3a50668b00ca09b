//! The candidates: the ScaledObject in force, each Prometheus trigger's threshold at half, three quarters, one and a
//! half and twice its value, the polling interval at 15 and 30 s, the scale-down stabilization at 1, 2 and 10 min and
//! a scale-up stabilization of 30 and 60 s, the HPA's tolerance at 0.05, 0.2 and 0.3 each way, a plain HPA on CPU at
//! 70% (the usual alternative), KEDA's redis-streams scaler reading the shared backlog in place of the Prometheus
//! `backlog` trigger (what `components/queue-trigger` composes), and a fixed count of every size up to the maximum. Each is the
//! simulator's ScaledObject changed, and the same change as a patch of the manifest's.

use serde_json::{json, Value};
use surge_keda::hpa::{MetricType, Tolerances};
use surge_keda::redis_streams::RedisStreams;
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
    /// KEDA's redis-streams scaler (the stream's length, against the same threshold) in place of this Prometheus
    /// trigger, the shared backlog's `backlog`.
    RedisStreams {
        trigger: usize,
    },
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

/// The candidates around `current`; `shared_backlog` when async work waits in the Redis stream (the redis-streams
/// trigger can read it).
pub fn candidates(current: &ScaledObject, raw: &Value, shared_backlog: bool) -> Vec<Candidate> {
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
    let backlog =
        current.triggers.iter().position(|t| t.name == "backlog" && matches!(t.source, Source::Prometheus { .. }));
    if let (true, Some(trigger)) = (shared_backlog, backlog) {
        changes.push(Change::RedisStreams { trigger });
    }
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
        Change::RedisStreams { .. } => "backlog read from Redis (redis-streams)".into(),
        Change::Fixed(replicas) => format!("fixed {replicas} replicas"),
    }
}

/// What the redis-streams trigger reads: the shared backlog's stream, whole (no consumer group: XLEN, which the
/// consumer keeps at waiting plus handed out by deleting what it acknowledges), against `threshold` per replica.
fn redis_streams_metadata(threshold: f64) -> Value {
    json!({"stream": "surge:tasks", "streamLength": number(threshold)})
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
        Change::RedisStreams { trigger } => {
            let threshold = so.triggers[trigger].threshold;
            // KEDA's own reading of the metadata the patch writes.
            if let Ok(scaler) = RedisStreams::from_metadata(&redis_streams_metadata(threshold)) {
                so.triggers[trigger].activation_threshold = scaler.activation;
                so.triggers[trigger].source = Source::RedisStreams(scaler);
            }
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
    /// The manifest's ScaledObject with this candidate's patch applied, as kustomize applies it.
    pub fn patched(&self, raw: &Value) -> Value {
        let mut patched = raw.clone();
        merge(&mut patched, &self.patch(raw));
        patched
    }

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
            Some(Change::RedisStreams { trigger }) => {
                let mut triggers = raw["spec"]["triggers"].clone();
                let threshold = self.scaled_object.triggers[trigger].threshold;
                let mut metadata = redis_streams_metadata(threshold);
                let namespace = raw["metadata"]["namespace"].as_str().unwrap_or("default");
                metadata["address"] = format!("redis.{namespace}.svc:6379").into();
                // The TriggerAuthentication `redis-auth` (Redis's password) comes with components/queue-trigger.
                triggers[trigger] = json!({"type": "redis-streams", "name": triggers[trigger]["name"],
                    "metricType": "AverageValue", "metadata": metadata, "authenticationRef": {"name": "redis-auth"}});
                spec["triggers"] = triggers;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let all = candidates(&current, &raw, true);
        assert!(all.iter().any(|c| c.name.starts_with("HPA tolerance 0.2 ")), "{:?}", all.iter().map(|c| &c.name));
        assert!(all.iter().any(|c| c.name.contains("redis-streams")), "{:?}", all.iter().map(|c| &c.name));
        for candidate in all.iter().filter(|c| !c.fixed) {
            let patched = candidate.patched(&raw);
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

    /// The redis-streams candidate's trigger is the one components/queue-trigger composes (its stream, count,
    /// address and authentication), but for the threshold it carries over.
    #[test]
    fn the_redis_streams_candidate_is_what_components_queue_trigger_composes() {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../kubernetes-manifests/components/queue-trigger/kustomization.yaml");
        let component: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("the component")).expect("YAML");
        let operations: Value =
            serde_yaml_ng::from_str(component["patches"][0]["patch"].as_str().expect("a JSON patch"))
                .expect("the patch's YAML");
        let composed = &operations[0]["value"];
        let raw = json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "consumer", "namespace": "surge"},
            "spec": {"minReplicaCount": 1, "maxReplicaCount": 4, "triggers": [
                {"type": "prometheus", "name": "backlog", "metricType": "AverageValue",
                    "metadata": {"serverAddress": "http://prometheus:9090", "query": "max(b)", "threshold": "4"}}]}});
        let current = ScaledObject::from_manifest(&raw).expect("the manifest parses");
        assert!(
            candidates(&current, &raw, false).iter().all(|c| !c.name.contains("redis-streams")),
            "no stream to read"
        );
        let all = candidates(&current, &raw, true);
        let candidate = all.iter().find(|c| c.name.contains("redis-streams")).expect("the redis-streams candidate");
        assert_eq!(&candidate.patch(&raw)["spec"]["triggers"][0], composed);
    }
}
