//! What the closed-loop harness reads from the rendered manifests: the ScaledObject (triggers, bounds, behavior,
//! fallback), the consumer pod (labels, annotations, CPU and memory limits) and the monitoring component's scrape job,
//! so the loop on one machine runs the same configuration a cluster would.

use serde_json::Value;

use crate::hpa::{
    Behavior, FallbackBehavior, MetricType, Policy, PolicyKind, Rules, Scaling, SelectPolicy, Tolerances,
};
use crate::redis_streams::RedisStreams;
use crate::resource::{Resource, Target};

/// Where a trigger's value comes from: the scalers the manifests use.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// KEDA's `prometheus` scaler: a query, and `ignoreNullValues` (KEDA's default true: an empty result or NaN reads
    /// 0; false makes them errors).
    Prometheus { query: String, ignore_null_values: bool },
    /// KEDA's `redis-streams` scaler: a count read from Redis.
    RedisStreams(RedisStreams),
    /// KEDA's `cpu` or `memory` trigger: a Resource metric the HPA computes itself from metrics-server
    /// (`crate::resource`); KEDA neither reads it nor applies its fallback to it, and it is always active.
    Resource { resource: Resource, target: Target },
}

/// One trigger of the ScaledObject.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: String,
    pub kind: MetricType,
    pub source: Source,
    pub threshold: f64,
    /// `activationThreshold` (`activationLagCount` for redis-streams; default 0): the trigger is active while its
    /// value is above it (the scalers' `GetMetricsAndActivity`), which is what takes a Deployment from 0 and keeps it
    /// from going back.
    pub activation_threshold: f64,
}

impl Trigger {
    /// The external metric KEDA names for the trigger at `index` (`GenerateMetricNameWithIndex` over the scaler's
    /// `NormalizeString`d name): `s0-prometheus`, `s0-redis-streams-surge-tasks`.
    pub fn metric_name(&self, index: usize) -> String {
        let name = match &self.source {
            Source::Prometheus { .. } => "prometheus".to_owned(),
            Source::RedisStreams(scaler) => format!("redis-streams-{}", scaler.stream),
            // No external metric: the HPA reads the resource itself; named for what it reads.
            Source::Resource { resource: Resource::Cpu, .. } => "cpu".to_owned(),
            Source::Resource { resource: Resource::Memory, .. } => "memory".to_owned(),
        };
        let normalised: String = name.chars().map(|c| if "/.:%()".contains(c) { '-' } else { c }).collect();
        format!("s{index}-{normalised}")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub failure_threshold: u32,
    pub replicas: u32,
    pub behavior: FallbackBehavior,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScaledObject {
    /// `pollingInterval`, seconds (KEDA's default 30): how often KEDA's own loop reads every trigger.
    pub polling_interval: f64,
    /// `minReplicaCount` as KEDA reads it (default 0: scale to zero); the HPA's own minimum is `scaling.min`.
    pub min_replica_count: u32,
    /// `cooldownPeriod`, seconds (default 300): how long after the last active poll KEDA takes a Deployment whose
    /// minimum is 0 down to 0.
    pub cooldown_period: f64,
    pub scaling: Scaling,
    pub fallback: Option<Fallback>,
    pub triggers: Vec<Trigger>,
}

/// Every document of a rendered multi-document YAML stream.
pub fn documents(yaml: &str) -> Result<Vec<Value>, String> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).map_err(|e| format!("rendered manifests: {e}")))
        .filter(|doc: &Result<Value, String>| !matches!(doc, Ok(Value::Null)))
        .collect()
}

/// The object of this kind and name; a generated ConfigMap is found by the name it was generated from.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, String> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|actual| is_named(actual, name)))
        .ok_or_else(|| format!("no {kind} named {name} in the rendered manifests"))
}

/// `name` itself, or `name` with the `-<10-character hash>` kustomize's generators append.
pub fn is_named(actual: &str, name: &str) -> bool {
    actual == name
        || actual
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hash| hash.len() == 10 && hash.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// A behavior's `tolerance` (a quantity: `0.05`, `50m`), the controller's default where unset.
fn tolerance(value: &Value) -> Result<f64, String> {
    if value.is_null() {
        return Ok(Tolerances::DEFAULT.up);
    }
    cpu_cores(value).and_then(|t| if t >= 0.0 { Ok(t) } else { Err(format!("{t} is below 0")) })
}

fn rules(value: &Value, default: Rules) -> Result<Rules, String> {
    if value.is_null() {
        return Ok(default);
    }
    let select = match value["selectPolicy"].as_str().unwrap_or("Max") {
        "Max" => SelectPolicy::Max,
        "Min" => SelectPolicy::Min,
        "Disabled" => SelectPolicy::Disabled,
        other => return Err(format!("selectPolicy {other}")),
    };
    let policies = match value["policies"].as_array() {
        None => default.policies,
        Some(list) => list
            .iter()
            .map(|p| {
                let kind = match p["type"].as_str() {
                    Some("Pods") => PolicyKind::Pods,
                    Some("Percent") => PolicyKind::Percent,
                    other => return Err(format!("policy type {other:?}")),
                };
                let value = p["value"].as_u64().ok_or("policy value")? as u32;
                let period_seconds = p["periodSeconds"].as_u64().ok_or("policy periodSeconds")? as u32;
                Ok(Policy { kind, value, period_seconds })
            })
            .collect::<Result<_, String>>()?,
    };
    let window =
        value["stabilizationWindowSeconds"].as_u64().map_or(default.stabilization_window_seconds, |w| w as u32);
    Ok(Rules { stabilization_window_seconds: window, select, policies })
}

impl ScaledObject {
    pub fn from_manifest(so: &Value) -> Result<Self, String> {
        let spec = &so["spec"];
        let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        let min_replica_count = spec["minReplicaCount"].as_u64().unwrap_or(0) as u32;
        let scaling = Scaling {
            // `GetHPAMinReplicas`: the HPA's minimum is never below 1; KEDA itself takes replicas to 0 and back.
            min: min_replica_count.max(1),
            max: spec["maxReplicaCount"].as_u64().unwrap_or(100) as u32,
            behavior: match behavior {
                Value::Null => None,
                b => Some(Behavior {
                    up: rules(&b["scaleUp"], Rules::default_up())?,
                    down: rules(&b["scaleDown"], Rules::default_down())?,
                    tolerances: Tolerances {
                        up: tolerance(&b["scaleUp"]["tolerance"]).map_err(|e| format!("scaleUp.tolerance: {e}"))?,
                        down: tolerance(&b["scaleDown"]["tolerance"])
                            .map_err(|e| format!("scaleDown.tolerance: {e}"))?,
                    },
                }),
            },
        };
        let fallback = match &spec["fallback"] {
            Value::Null => None,
            f => Some(Fallback {
                failure_threshold: f["failureThreshold"].as_u64().ok_or("fallback.failureThreshold")? as u32,
                replicas: f["replicas"].as_u64().ok_or("fallback.replicas")? as u32,
                behavior: FallbackBehavior::parse(f["behavior"].as_str().unwrap_or("static"))
                    .ok_or("fallback.behavior")?,
            }),
        };
        let triggers = spec["triggers"]
            .as_array()
            .ok_or("spec.triggers")?
            .iter()
            .map(|t| {
                let name = t["name"].as_str().ok_or("trigger name")?.to_owned();
                let kind = match t["metricType"].as_str().unwrap_or("AverageValue") {
                    "AverageValue" => MetricType::AverageValue,
                    "Value" => MetricType::Value,
                    // A cpu or memory trigger's utilization target: read below.
                    "Utilization" => MetricType::AverageValue,
                    other => return Err(format!("trigger {name}: metricType {other}")),
                };
                if t["type"] == "redis-streams" {
                    let scaler =
                        RedisStreams::from_metadata(&t["metadata"]).map_err(|e| format!("trigger {name}: {e}"))?;
                    let (threshold, activation_threshold) = (scaler.target, scaler.activation);
                    return Ok(Trigger {
                        name,
                        kind,
                        source: Source::RedisStreams(scaler),
                        threshold,
                        activation_threshold,
                    });
                }
                if let Some(resource) = t["type"].as_str().and_then(Resource::parse) {
                    let value = number(&t["metadata"]["value"]).ok_or(format!("trigger {name}: metadata.value"))?;
                    let target = match t["metricType"].as_str().unwrap_or("Utilization") {
                        "Utilization" => Target::Utilization(value as i32),
                        "AverageValue" => Target::AverageValue((value * 1000.0).round() as i64),
                        other => return Err(format!("trigger {name}: metricType {other} for {}", t["type"])),
                    };
                    let source = Source::Resource { resource, target };
                    return Ok(Trigger { name, kind, source, threshold: value, activation_threshold: 0.0 });
                }
                if t["type"] != "prometheus" {
                    return Err(format!("trigger {name}: type {} is not modelled", t["type"]));
                }
                let query = t["metadata"]["query"].as_str().ok_or(format!("trigger {name}: query"))?.to_owned();
                let threshold = number(&t["metadata"]["threshold"]).ok_or(format!("trigger {name}: threshold"))?;
                let ignore_null_values = match t["metadata"]["ignoreNullValues"].as_str() {
                    None => t["metadata"]["ignoreNullValues"].as_bool().unwrap_or(true),
                    Some(text) => text.parse().map_err(|_| format!("trigger {name}: ignoreNullValues {text}"))?,
                };
                let activation_threshold = match &t["metadata"]["activationThreshold"] {
                    Value::Null => 0.0,
                    text => number(text).ok_or(format!("trigger {name}: activationThreshold"))?,
                };
                let source = Source::Prometheus { query, ignore_null_values };
                Ok(Trigger { name, kind, source, threshold, activation_threshold })
            })
            .collect::<Result<Vec<Trigger>, String>>()?;
        // KEDA's admission (`CheckFallbackValid`): a fallback needs a trigger that is not cpu or memory, which KEDA
        // neither reads nor can replace.
        if fallback.is_some() && triggers.iter().all(|t| matches!(t.source, Source::Resource { .. })) {
            return Err(
                "at least one trigger (that is not cpu or memory) has to have the `AverageValue` type for the \
                        fallback to be enabled"
                    .into(),
            );
        }
        let polling_interval = spec["pollingInterval"].as_f64().unwrap_or(30.0);
        let cooldown_period = spec["cooldownPeriod"].as_f64().unwrap_or(300.0);
        Ok(Self { polling_interval, min_replica_count, cooldown_period, scaling, fallback, triggers })
    }
}

/// Divides every range selector (`[1m]`, `[90s]`) by `factor`, so a compressed run's windows hold as many scrapes as
/// the real ones do.
pub fn compress_ranges(query: &str, factor: f64) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let range = &rest[..close];
        match humantime::parse_duration(range) {
            Ok(d) => out.push_str(&format!("{}ms", (d.as_secs_f64() * 1000.0 / factor).round().max(1.0))),
            Err(_) => out.push_str(range),
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// A trigger whose value is a per-second rate: compressing time multiplies it by the factor, so the harness divides.
/// Opening parentheses are looked through: a guarded query is `(sum(rate(...)) or vector(0)) and on() ...`.
pub fn is_rate(query: &str) -> bool {
    query.trim_start_matches(|c: char| c == '(' || c.is_whitespace()).starts_with("sum(rate(")
}

/// The value KEDA's Prometheus scaler takes from a query's result (`pkg/scalers/prometheus_scaler.go`,
/// `ExecutePromQuery`): one series, its value; no series, or NaN or an infinity, read 0 when `ignoreNullValues` is true
/// and are errors (which count toward the fallback) when it is false; more than one series is always an error.
pub fn keda_value(series: &[f64], ignore_null_values: bool) -> Result<f64, String> {
    match series {
        [] if ignore_null_values => Ok(0.0),
        [] => Err("the result is empty (the targets may be lost)".into()),
        [value] if value.is_finite() => Ok(*value),
        [_] if ignore_null_values => Ok(0.0),
        [value] => Err(format!("the query returns {value}")),
        many => Err(format!("the query returned {} series", many.len())),
    }
}

/// How the harness (and the watch table beside it) reads a query under `factor` times compression: its range windows
/// shrink by the factor, and a rate is divided by it (the same requests arrive `factor` times faster). The query to
/// ask, and what to divide its value by.
pub fn read_compressed(query: &str, factor: f64) -> (String, f64) {
    if factor > 1.0 {
        (compress_ranges(query, factor), if is_rate(query) { factor } else { 1.0 })
    } else {
        (query.to_owned(), 1.0)
    }
}

/// Cores from a CPU quantity (`1`, `500m`, or a number).
pub fn cpu_cores(quantity: &Value) -> Result<f64, String> {
    let cpu = quantity.as_str().map(str::to_owned).or_else(|| quantity.as_f64().map(|c| c.to_string()));
    let cpu = cpu.ok_or("no CPU quantity")?;
    match cpu.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0).map_err(|e| format!("{cpu}: {e}")),
        None => cpu.parse::<f64>().map_err(|e| format!("{cpu}: {e}")),
    }
}

/// The value of the container's `--name=value` argument.
pub fn container_arg<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|arg| arg.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The consumer container's `--shutdown-timeout-secs`: how long a drained replica lets its running tasks go on.
pub fn shutdown_timeout_secs(container: &Value) -> Result<f64, String> {
    container_arg(container, "--shutdown-timeout-secs")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "the consumer container has no --shutdown-timeout-secs".into())
}

/// Bytes from a memory quantity (`512Mi`, `1Gi`, `65536Ki`, or a number of bytes).
pub fn memory_bytes(quantity: &Value) -> Result<u64, String> {
    let memory = quantity.as_str().ok_or("no memory quantity")?;
    let (digits, unit) = memory.split_at(memory.find(|c: char| !c.is_ascii_digit()).unwrap_or(memory.len()));
    let scale = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => return Err(format!("{memory}: memory unit {other}")),
    };
    Ok(digits.parse::<u64>().map_err(|e| format!("{memory}: {e}"))? * scale)
}

/// Cores and memory from a container's `resources.limits` (`1`, `500m`; `512Mi`, `1Gi`).
pub fn limits(container: &Value) -> Result<(f64, u64), String> {
    resources(container, "limits")
}

/// Cores and memory from a container's `resources.requests`: what the scheduler places and utilization is of.
pub fn requests(container: &Value) -> Result<(f64, u64), String> {
    resources(container, "requests")
}

fn resources(container: &Value, which: &str) -> Result<(f64, u64), String> {
    let quantities = &container["resources"][which];
    let cores = cpu_cores(&quantities["cpu"]).map_err(|e| format!("resources.{which}.cpu: {e}"))?;
    let memory = memory_bytes(&quantities["memory"]).map_err(|e| format!("resources.{which}.memory: {e}"))?;
    Ok((cores, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_match_their_base_name_only() {
        assert!(is_named("prometheus-config", "prometheus-config"));
        assert!(is_named("prometheus-config-t6c7fd4cck", "prometheus-config"));
        assert!(!is_named("prometheus-config-extra", "prometheus-config"));
        assert!(!is_named("prometheus-configt6c7fd4cck1", "prometheus-config"));
        assert!(!is_named("prometheus", "prometheus-config"));
    }

    #[test]
    fn ranges_are_compressed_and_the_rest_is_kept() {
        assert_eq!(
            compress_ranges("sum(rate(x{a=\"[b]\"}[1m])) + max_over_time(y[90s])", 20.0),
            "sum(rate(x{a=\"[b]\"}[3000ms])) + max_over_time(y[4500ms])"
        );
        assert_eq!(compress_ranges("sum(q) or vector(0)", 20.0), "sum(q) or vector(0)");
    }

    #[test]
    fn rates_are_found_inside_the_live_target_guard() {
        let cases = [
            ("sum(rate(x[1m])) or vector(0)", true),
            ("(sum(rate(x[1m])) / 1048576 or vector(0)) and on() count(up == 1)", true),
            (" ( (sum(rate(x[1m]))) or vector(0))", true),
            ("(sum(q) or vector(0)) and on() count(up == 1)", false),
            ("((histogram_quantile(0.95, sum by (le) (rate(b[1m]))) - 1 > 0) or vector(0))", false),
            ("(sum(avg_over_time(c[1m])) or vector(0)) and on() count(up == 1)", false),
        ];
        for (query, rate) in cases {
            assert_eq!(is_rate(query), rate, "{query}");
        }
    }

    /// prometheus_scaler.go `ExecutePromQuery`, case by case.
    #[test]
    fn keda_prometheus_scaler_execute_prom_query_reads_empty_and_nan_by_ignore_null_values() {
        assert_eq!(keda_value(&[2.5], false), Ok(2.5));
        assert_eq!(keda_value(&[], true), Ok(0.0));
        assert!(keda_value(&[], false).is_err(), "no series is an error KEDA counts");
        assert_eq!(keda_value(&[f64::NAN], true), Ok(0.0));
        assert!(keda_value(&[f64::NAN], false).is_err(), "NaN with ignoreNullValues false is an error, not 0");
        assert!(keda_value(&[f64::INFINITY], false).is_err());
        assert!(keda_value(&[1.0, 2.0], true).is_err(), "more than one series is always an error");
    }

    /// apis/keda/v1alpha1/scaledobject_types.go `CheckFallbackValid`: a fallback with only cpu and memory triggers is
    /// refused; one other trigger makes it valid (with scalingModifiers, not modelled, KEDA checks otherwise).
    #[test]
    fn a_fallback_needs_a_trigger_that_is_not_cpu_or_memory() {
        let memory = serde_json::json!({"type": "memory", "name": "memory", "metricType": "Utilization",
            "metadata": {"value": "40"}});
        let backlog = serde_json::json!({"type": "prometheus", "name": "backlog",
            "metadata": {"query": "sum(q)", "threshold": "2"}});
        let fallback = serde_json::json!({"failureThreshold": 3, "replicas": 2});
        // (triggers, fallback, accepted)
        let cases = [
            (vec![memory.clone()], Some(&fallback), false),
            (vec![memory.clone()], None, true),
            (vec![memory, backlog.clone()], Some(&fallback), true),
            (vec![backlog], Some(&fallback), true),
        ];
        for (triggers, fallback, accepted) in cases {
            let mut so = serde_json::json!({"spec": {"triggers": triggers}});
            if let Some(fallback) = fallback {
                so["spec"]["fallback"] = fallback.clone();
            }
            let parsed = ScaledObject::from_manifest(&so);
            assert_eq!(parsed.is_ok(), accepted, "{so}: {parsed:?}");
            if let Err(error) = parsed {
                assert!(error.contains("not cpu or memory"), "{error}");
            }
        }
    }

    #[test]
    fn limits_are_read_in_kubernetes_units() {
        let container = serde_json::json!({"resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}});
        assert_eq!(limits(&container), Ok((0.5, 512 << 20)));
        let container = serde_json::json!({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}});
        assert_eq!(limits(&container), Ok((2.0, 1 << 30)));
    }

    /// KEDA's defaults where the ScaledObject is silent (apis/keda/v1alpha1/scaledobject_types.go
    /// `GetHPAMinReplicas`, executor/scale_executor.go `defaultCooldownPeriod`, prometheus_scaler.go
    /// `activationThreshold`): minReplicaCount 0 (the HPA's minimum 1), cooldown 300 s, activation above 0, no
    /// behavior (the HPA's legacy path).
    #[test]
    fn keda_defaults_a_silent_scaled_object_to_zero_replicas_and_no_behavior() {
        let so = serde_json::json!({"spec": {"triggers": [{"type": "prometheus", "name": "backlog",
            "metadata": {"query": "sum(q)", "threshold": "2"}}]}});
        let parsed = ScaledObject::from_manifest(&so).expect("parses");
        assert_eq!((parsed.min_replica_count, parsed.scaling.min, parsed.scaling.max), (0, 1, 100));
        assert_eq!((parsed.cooldown_period, parsed.triggers[0].activation_threshold), (300.0, 0.0));
        assert_eq!(parsed.scaling.behavior, None);
        let so = serde_json::json!({"spec": {"minReplicaCount": 2, "cooldownPeriod": 60,
            "triggers": [{"type": "prometheus", "name": "backlog",
            "metadata": {"query": "sum(q)", "threshold": "2", "activationThreshold": "0.5"}}]}});
        let parsed = ScaledObject::from_manifest(&so).expect("parses");
        assert_eq!((parsed.min_replica_count, parsed.scaling.min, parsed.cooldown_period), (2, 2, 60.0));
        assert_eq!(parsed.triggers[0].activation_threshold, 0.5);
    }

    /// redis_streams_scaler.go: the target is `streamLength`, the activation `activationLagCount`; the metric names
    /// are `GenerateMetricNameWithIndex` over `NormalizeString` (scaler.go, pkg/util/normalize_string.go).
    #[test]
    fn a_redis_streams_trigger_reads_its_count_target_and_keda_metric_name() {
        let so = serde_json::json!({"spec": {"triggers": [
            {"type": "prometheus", "name": "cpu", "metadata": {"query": "sum(q)", "threshold": "1"}},
            {"type": "redis-streams", "name": "backlog", "metricType": "AverageValue",
             "metadata": {"stream": "surge:tasks", "streamLength": "4", "activationLagCount": "1"}}]}});
        let parsed = ScaledObject::from_manifest(&so).expect("parses");
        let backlog = &parsed.triggers[1];
        assert!(matches!(&backlog.source, Source::RedisStreams(s) if s.stream == "surge:tasks"));
        assert_eq!((backlog.threshold, backlog.activation_threshold), (4.0, 1.0));
        assert_eq!(parsed.triggers[0].metric_name(0), "s0-prometheus");
        assert_eq!(backlog.metric_name(1), "s1-redis-streams-surge-tasks");
        let kafka = serde_json::json!({"spec": {"triggers": [{"type": "kafka", "name": "k", "metadata": {"lagThreshold": "5"}}]}});
        assert!(ScaledObject::from_manifest(&kafka).is_err(), "a scaler nothing here models is refused");
    }

    /// KEDA's cpu and memory triggers: a Resource metric of the HPA's own, `Utilization` by default.
    #[test]
    fn cpu_and_memory_triggers_are_the_hpas_resource_metrics() {
        let so = serde_json::json!({"spec": {"triggers": [
            {"type": "cpu", "name": "c", "metadata": {"value": "70"}},
            {"type": "memory", "name": "m", "metricType": "AverageValue", "metadata": {"value": "0.5"}},
            {"type": "cpu", "name": "v", "metricType": "Value", "metadata": {"value": "1"}}]}});
        let error = ScaledObject::from_manifest(&so).expect_err("Value is not a resource target");
        assert!(error.contains("trigger v: metricType Value"), "{error}");
        let so = serde_json::json!({"spec": {"triggers": [so["spec"]["triggers"][0], so["spec"]["triggers"][1]]}});
        let parsed = ScaledObject::from_manifest(&so).expect("parses");
        let cpu = Source::Resource { resource: Resource::Cpu, target: Target::Utilization(70) };
        let memory = Source::Resource { resource: Resource::Memory, target: Target::AverageValue(500) };
        assert_eq!((&parsed.triggers[0].source, &parsed.triggers[1].source), (&cpu, &memory));
        assert_eq!(parsed.triggers[0].metric_name(0), "s0-cpu");
    }

    #[test]
    fn a_scaled_object_is_read_with_the_hpa_defaults_filled_in() {
        let so = serde_json::json!({"spec": {
            "minReplicaCount": 1, "maxReplicaCount": 10,
            "fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "currentReplicasIfHigher"},
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 120, "selectPolicy": "Min", "tolerance": "50m",
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}}},
            "triggers": [{"type": "prometheus", "name": "backlog", "metricType": "AverageValue",
                "metadata": {"query": "sum(q)", "threshold": "2"}}]}});
        let parsed = ScaledObject::from_manifest(&so).expect("parses");
        assert_eq!(parsed.polling_interval, 30.0, "KEDA's default pollingInterval");
        let Source::Prometheus { ignore_null_values, .. } = &parsed.triggers[0].source else { panic!("prometheus") };
        assert!(ignore_null_values, "KEDA's default ignoreNullValues");
        let behavior = parsed.scaling.behavior.expect("a behavior");
        assert_eq!(behavior.up, Rules::default_up());
        assert_eq!(behavior.down.stabilization_window_seconds, 120);
        assert_eq!(behavior.down.select, SelectPolicy::Min);
        assert_eq!(parsed.triggers[0].threshold, 2.0);
        assert_eq!(parsed.fallback.map(|f| f.behavior), Some(FallbackBehavior::CurrentReplicasIfHigher));
        // A quantity, each way; the controller's 0.1 where unset.
        assert_eq!(behavior.tolerances, Tolerances { up: 0.1, down: 0.05 });
        let mut negative = so.clone();
        negative["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["tolerance"] =
            "-1".into();
        let error = ScaledObject::from_manifest(&negative).expect_err("a negative tolerance");
        assert!(error.contains("scaleDown.tolerance: -1 is below 0"), "{error}");
    }
}
