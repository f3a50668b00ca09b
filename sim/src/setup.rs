//! What a simulated run is made of, read from the rendered manifests as the closed loop reads them: the ScaledObject,
//! the consumer's pod (its requests, limits, arguments and probes, whether it pulls from the shared backlog), the
//! monitoring component's scrape interval, and the node.

use serde_json::Value;
use surge_capacity::Limits;
use surge_keda::node::{others_requests, OUTSIDE_THE_MANIFESTS};
use surge_keda::promql::Rule;
use surge_keda::scaled_object::{
    container_arg, documents, find, is_named, limits, requests, shutdown_timeout_secs, Source,
};
use surge_keda::startup::StartupPath;
use surge_keda::ScaledObject;

use crate::query::{Labels, Query};

/// The consumer's defaults where the manifests say nothing (`src/configuration.rs`): `--max-tasks`,
/// `--cpu-overcommit`, `--queue-capacity`, and the budget as three quarters of the memory limit.
const MAX_TASKS: u32 = 64;
const CPU_OVERCOMMIT: f64 = 2.0;
const QUEUE_CAPACITY: usize = 100;
const BUDGET_OF_LIMIT: f64 = 0.75;

/// A node of `cores` allocatable cores whose other pods use `others`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeSpec {
    pub cores: f64,
    pub others: f64,
}

/// Everything a run reads from the manifests.
#[derive(Debug, Clone)]
pub struct Setup {
    pub scaled_object: ScaledObject,
    /// Each trigger's query, parsed (`None` for a trigger that reads no Prometheus).
    pub queries: Vec<Option<Query>>,
    pub limits: Limits,
    pub request_cores: f64,
    pub request_memory_bytes: u64,
    pub limit_cores: f64,
    pub queue_capacity: usize,
    pub shutdown_timeout: f64,
    pub startup: StartupPath,
    /// Async work waits in one shared backlog every replica pulls from (`QUEUE_URL`); otherwise in each pod's own.
    pub shared_backlog: bool,
    pub scrape_interval: f64,
    /// The labels a replica's series carry after the monitoring component's relabeling (namespace, the pod's labels).
    pub target_labels: Labels,
    /// `None`: every replica runs as if its CPU limit were its own and starts at once.
    pub node: Option<NodeSpec>,
    /// Whose rules the queries are evaluated by: the deployed Prometheus's (3.14) or the closed loop's stand-in's.
    pub prometheus: Rule,
}

impl Setup {
    /// `yaml`: the rendered overlay; `node_cores`: the node the replicas share, if any.
    pub fn from_manifests(yaml: &str, node_cores: Option<f64>) -> Result<Self, String> {
        let objects = documents(yaml)?;
        let scaled_object = ScaledObject::from_manifest(find(&objects, "ScaledObject", "consumer")?)?;
        let queries = queries(&scaled_object)?;
        let deployment = find(&objects, "Deployment", "consumer")?;
        let template = &deployment["spec"]["template"];
        let container = &template["spec"]["containers"][0];
        let env = |name: &str| {
            container["env"].as_array().into_iter().flatten().find(|e| e["name"] == name).map(|e| e["value"].clone())
        };
        let (limit_cores, memory_limit) = limits(container)?;
        let (request_cores, request_memory_bytes) = requests(container).map_err(|e| format!("the consumer's {e}"))?;
        let number = |arg: &str| container_arg(container, arg).and_then(|v| v.parse::<f64>().ok());
        let capacity_cores = env("CPU_CAPACITY").and_then(|v| v.as_str()?.parse().ok()).unwrap_or(limit_cores);
        let budget_bytes = env("MEMORY_BUDGET_MB")
            .and_then(|v| v.as_str()?.parse::<u64>().ok())
            .map_or((memory_limit as f64 * BUDGET_OF_LIMIT) as u64, |mb| mb << 20);
        let limits = Limits {
            capacity_cores,
            overcommit: number("--cpu-overcommit").unwrap_or(CPU_OVERCOMMIT),
            max_tasks: number("--max-tasks").map_or(MAX_TASKS, |n| n as u32),
            budget_bytes,
        };
        let mut target_labels = Labels::new();
        let namespace = deployment["metadata"]["namespace"].as_str().ok_or("the consumer's namespace")?;
        target_labels.insert("namespace".into(), namespace.into());
        for (name, value) in template["metadata"]["labels"].as_object().into_iter().flatten() {
            let sanitized: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            target_labels.insert(sanitized, value.as_str().unwrap_or_default().into());
        }
        let others = others_requests(&objects) + OUTSIDE_THE_MANIFESTS;
        Ok(Self {
            scaled_object,
            queries,
            limits,
            request_cores,
            request_memory_bytes,
            limit_cores,
            queue_capacity: number("--queue-capacity").map_or(QUEUE_CAPACITY, |n| n as usize),
            shutdown_timeout: shutdown_timeout_secs(container)?,
            startup: StartupPath::from_container(container),
            shared_backlog: env("QUEUE_URL").is_some(),
            scrape_interval: scrape_interval(&objects)?,
            target_labels,
            node: node_cores.map(|cores| NodeSpec { cores, others }),
            prometheus: Rule::V3_14,
        })
    }
}

impl Setup {
    /// The same run with another ScaledObject (a candidate's).
    pub fn with_scaled_object(&self, scaled_object: ScaledObject) -> Result<Self, String> {
        Ok(Self { queries: queries(&scaled_object)?, scaled_object, ..self.clone() })
    }
}

/// Each trigger's query, parsed (`None` for a trigger that reads no Prometheus).
fn queries(scaled_object: &ScaledObject) -> Result<Vec<Option<Query>>, String> {
    scaled_object
        .triggers
        .iter()
        .map(|t| match &t.source {
            Source::Prometheus { query, .. } => {
                Query::parse(query).map(Some).map_err(|e| format!("trigger {}: {e}", t.name))
            }
            Source::RedisStreams(_) | Source::Resource { .. } => Ok(None),
        })
        .collect()
}

/// The monitoring component's `global.scrape_interval`.
fn scrape_interval(objects: &[Value]) -> Result<f64, String> {
    let config = objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap" && o["metadata"]["name"].as_str().is_some_and(|n| is_named(n, "prometheus-config"))
        })
        .ok_or("no prometheus-config ConfigMap (render an overlay with the monitoring component)")?;
    let text = config["data"]["prometheus.yml"].as_str().ok_or("prometheus-config has no prometheus.yml")?;
    let parsed: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("prometheus.yml: {e}"))?;
    let interval = parsed["global"]["scrape_interval"].as_str().unwrap_or("1m");
    humantime::parse_duration(interval).map(|d| d.as_secs_f64()).map_err(|e| format!("scrape_interval {interval}: {e}"))
}
