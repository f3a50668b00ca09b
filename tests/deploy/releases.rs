//! What each pinned release's migration notes require of our configuration, checked on the render. None of these
//! images can run here, so every rule below is one a release note states (named at the rule). An image moved past
//! the release line its rules were reviewed for fails here until someone reads the new notes and extends the table.

use serde_json::Value;

use crate::manifests::{self, find, pod_spec};

/// (image repository, newest (major, minor) whose migration notes the rules below were reviewed against).
const REVIEWED: &[(&str, (u32, u32))] = &[
    ("prom/prometheus", (3, 14)),
    ("grafana/grafana", (13, 2)),
    ("grafana/loki", (3, 7)),
    ("grafana/tempo", (3, 0)),
    ("registry.k8s.io/kube-state-metrics/kube-state-metrics", (2, 20)),
];

/// `v3.14.0` or `13.2.0` as (3, 14) / (13, 2).
fn major_minor(tag: &str) -> (u32, u32) {
    let mut parts =
        tag.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or_else(|_| panic!("{tag}")));
    (parts.next().expect("major"), parts.next().expect("minor"))
}

/// The first container of the Deployment `name` in the development render, and its image's (major, minor).
fn container(objects: &[Value], name: &str) -> (Value, (u32, u32)) {
    let deployment = find(objects, "Deployment", name).unwrap_or_else(|| panic!("Deployment {name}"));
    let container = pod_spec(deployment).expect("pod")["containers"][0].clone();
    let image = container["image"].as_str().expect("image");
    let tag = image.split('@').next().and_then(|i| i.rsplit_once(':')).expect("a tagged image").1;
    (container.clone(), major_minor(tag))
}

/// A generated ConfigMap's file, parsed.
fn config_file(objects: &[Value], config_map: &str, file: &str) -> Value {
    let text = find(objects, "ConfigMap", config_map).unwrap_or_else(|| panic!("{config_map}"))["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("{config_map} has {file}"))
        .to_owned();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn development() -> Vec<Value> {
    manifests::overlay("development").objects
}

#[test]
fn no_image_is_past_the_release_its_migration_rules_were_reviewed_for() {
    let monitoring = manifests::component_alone("monitoring");
    let mut seen = 0;
    for object in &monitoring.objects {
        let Some(pod) = pod_spec(object) else { continue };
        for container in pod["containers"].as_array().into_iter().flatten() {
            let image = container["image"].as_str().expect("image");
            let (repository, tag) = image.split('@').next().and_then(|i| i.rsplit_once(':')).expect("tagged");
            let reviewed = REVIEWED.iter().find(|(r, _)| *r == repository).map(|(_, v)| *v);
            let reviewed = reviewed.unwrap_or_else(|| panic!("{repository}: add it to REVIEWED with its rules"));
            assert!(
                major_minor(tag) <= reviewed,
                "{image} is newer than {reviewed:?}, the release whose migration notes tests/deploy/releases.rs \
                 encodes: read the notes in between and extend the rules"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, REVIEWED.len(), "every reviewed image runs in the monitoring component");
}

/// Prometheus 3: `le` and `quantile` values are normalised to floats (`le="1"` matches nothing, `le="1.0"` does),
/// `holt_winters` is gone, and a scrape whose Content-Type is missing or unknown fails instead of guessing.
#[test]
fn queries_and_scrapes_follow_the_prometheus_3_rules() {
    let objects = development();
    let (container, version) = container(&objects, "prometheus");
    assert!(version >= (3, 0), "these rules are Prometheus 3's");
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    for removed in ["--storage.tsdb.retention=", "--enable-feature=", "--storage.tsdb.allow-overlapping-blocks"] {
        assert!(!args.iter().any(|a| a.starts_with(removed)), "{removed} was removed or folded into the defaults");
    }
    let config = config_file(&objects, "prometheus-config", "prometheus.yml");
    for job in config["scrape_configs"].as_array().expect("scrape_configs") {
        assert!(job.get("scrape_classic_histograms").is_none(), "renamed always_scrape_classic_histograms");
    }
    let scaled_object = find(&objects, "ScaledObject", "consumer").expect("ScaledObject");
    let mut queries: Vec<String> = manifests::triggers(scaled_object)
        .iter()
        .filter_map(|t| t["metadata"]["query"].as_str().map(str::to_owned))
        .collect();
    queries.extend(manifests::dashboard_panels().iter().flat_map(|p| {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    }));
    assert!(queries.len() > 5, "the triggers' and the dashboards' queries were found");
    for query in &queries {
        assert!(!query.contains("holt_winters"), "renamed double_exponential_smoothing: {query}");
        for label in ["le", "quantile"] {
            for quote in ["=\"", "=~\""] {
                let needle = format!("{label}{quote}");
                for (at, _) in query.match_indices(&needle) {
                    let value: String = query[at + needle.len()..].chars().take_while(|c| *c != '"').collect();
                    assert!(
                        value.parse::<i64>().is_err(),
                        "{label}=\"{value}\" matches nothing in Prometheus 3 (written {value}.0): {query}"
                    );
                }
            }
        }
    }
}

/// The Content-Type the real consumer serves its metrics with is one Prometheus 3 accepts without a fallback.
#[tokio::test]
async fn the_consumer_serves_metrics_with_a_content_type_prometheus_3_accepts() {
    let consumer = crate::consumer::ConsumerProcess::start(&[]);
    let response = reqwest::get(format!("{}/metrics", consumer.address)).await.expect("GET /metrics");
    let content_type = response.headers()["content-type"].to_str().expect("ASCII").to_owned();
    let essence: String = content_type.split(';').next().expect("media type").trim().to_owned();
    let version = content_type.split(';').map(str::trim).find_map(|p| p.strip_prefix("version=")).unwrap_or("");
    let accepted = [("text/plain", "0.0.4"), ("text/plain", "1.0.0"), ("application/openmetrics-text", "1.0.0")];
    assert!(accepted.contains(&(essence.as_str(), version)), "Prometheus 3 would fail this scrape: {content_type}");
}

/// Grafana 13 provisions only classic dashboard JSON from files (v2 JSON is refused: "dashboard appears to be in v2
/// format"), and Angular panels (graph, singlestat, table-old) have not rendered since Grafana 12.
#[test]
fn dashboards_are_classic_json_with_panels_grafana_13_renders() {
    let (container, version) = container(&development(), "grafana");
    assert!(version >= (13, 0), "these rules are Grafana 13's");
    assert_eq!(container["image"].as_str().map(|i| i.starts_with("grafana/grafana:")), Some(true));
    let dir = manifests::repo().join("grafana/dashboards");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(dir).expect("dashboards") {
        let path = entry.expect("entry").path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let name = path.display();
        for key in ["uid", "schemaVersion", "panels"] {
            assert!(dashboard.get(key).is_some(), "{name}: classic JSON has `{key}`");
        }
        for key in ["elements", "layout", "apiVersion", "spec"] {
            assert!(dashboard.get(key).is_none(), "{name}: `{key}` is the v2 format file provisioning refuses");
        }
        let angular = ["graph", "singlestat", "table-old", "grafana-piechart-panel", "grafana-worldmap-panel"];
        for panel in dashboard["panels"].as_array().expect("panels") {
            let kind = panel["type"].as_str().unwrap_or("");
            assert!(!angular.contains(&kind), "{name}: panel {} is the Angular `{kind}`", panel["title"]);
        }
        dashboards += 1;
    }
    assert!(dashboards > 0);
}

/// Tempo 3 removed the ingester, the compactor and legacy (flat) overrides; a monolithic Tempo refuses to start
/// with them. Retention moved to `overrides.defaults.compaction.block_retention` (default 336 h).
#[test]
fn tempo_config_is_a_tempo_3_monolith_with_retention() {
    let objects = development();
    let (_, version) = container(&objects, "tempo");
    assert!(version >= (3, 0), "these rules are Tempo 3's");
    let config = config_file(&objects, "tempo-config", "tempo.yaml");
    for removed in ["ingester", "ingester_client", "compactor", "metrics_generator_client", "target"] {
        assert!(config.get(removed).is_none(), "`{removed}` is gone in Tempo 3 (or not a monolith)");
    }
    assert!(config["querier"].get("query_live_store").is_none());
    let overrides = config["overrides"].as_object().expect("overrides");
    assert!(overrides.keys().all(|k| k == "defaults" || k == "per_tenant_override_config"), "scoped overrides only");
    assert_eq!(config["overrides"]["defaults"]["compaction"]["block_retention"], "48h");
    let receivers = &config["distributor"]["receivers"];
    assert!(receivers.get("opencensus").is_none(), "the OpenCensus receiver was removed");
    assert!(receivers["otlp"]["protocols"].get("grpc").is_some(), "the consumer exports OTLP over gRPC");
}

/// Loki 3: the TSDB index with schema v13 (what structured metadata needs), no `shared_store` (removed in 3.0),
/// and retention needs the compactor's `delete_request_store` or Loki refuses to start.
#[test]
fn loki_config_meets_loki_3() {
    let objects = development();
    let (_, version) = container(&objects, "loki");
    assert!(version >= (3, 0), "these rules are Loki 3's");
    let config = config_file(&objects, "loki-config", "loki.yaml");
    let periods = config["schema_config"]["configs"].as_array().expect("schema periods");
    let current = periods.last().expect("a schema period");
    assert_eq!((current["store"].as_str(), current["schema"].as_str()), (Some("tsdb"), Some("v13")));
    let text = serde_yaml_ng::to_string(&config).expect("YAML");
    assert!(!text.contains("shared_store") && !text.contains("boltdb"), "removed in Loki 3");
    if config["compactor"]["retention_enabled"] == true {
        assert!(config["compactor"]["delete_request_store"].is_string(), "retention needs a delete request store");
    }
}

/// kube-state-metrics 2.15 replaced `endpoints` by `endpointslices` in its defaults; `endpoints` now needs opting in.
#[test]
fn kube_state_metrics_lists_only_resources_it_still_serves() {
    let (container, version) = container(&development(), "kube-state-metrics");
    assert!(version >= (2, 15));
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let resources = args.iter().find_map(|a| a.strip_prefix("--resources=")).expect("--resources");
    for needed in ["deployments", "horizontalpodautoscalers", "jobs", "pods"] {
        assert!(resources.split(',').any(|r| r == needed), "the dashboards read {needed}");
    }
    assert!(!resources.split(',').any(|r| r == "endpoints"), "deprecated: use endpointslices");
}

/// metrics-server's compatibility matrix: 0.8 supports Kubernetes 1.31+, 0.9 1.34+; the kind node must meet it.
#[test]
fn metrics_server_supports_the_kind_nodes_kubernetes() {
    let script = std::fs::read_to_string(manifests::repo().join("scripts/dev.sh")).expect("dev.sh");
    let version = script.lines().find_map(|l| l.strip_prefix("readonly METRICS_SERVER_VERSION=")).expect("version");
    let kind = std::fs::read_to_string(manifests::repo().join("kubernetes-manifests/kind/cluster.yaml")).expect("kind");
    let node = kind.lines().find_map(|l| l.trim().strip_prefix("image: kindest/node:")).expect("node image");
    let (node, digest) = node.split_once("@sha256:").expect("the node image pinned by digest, as kind asks");
    assert_eq!(digest.len(), 64, "a whole sha256 digest");
    let minimum = match major_minor(version) {
        (0, 9) => (1, 34),
        (0, 8) => (1, 31),
        other => panic!("metrics-server {other:?}: add its row of the compatibility matrix"),
    };
    assert!(major_minor(node) >= minimum, "metrics-server {version} needs Kubernetes {minimum:?}+, kind runs {node}");
}

/// The queue component's Redis, reviewed for 7.0 to 8.10: the consumer's scripts need Redis 6.2 or newer (`XPENDING …
/// IDLE`, `XCLAIM … JUSTID` inside Lua). Redis 8's notes (8.0: licence RSALv2, SSPLv1 or AGPLv3, the user's choice;
/// the modules' commands join the ACL categories) change nothing here: the deployed Redis runs unmodified with
/// `requirepass` (its default user), and the README's ACL for a managed Redis names commands, not categories. The
/// tests run Debian's 7.0 (no Redis 8 source or binary is readable here). Accepted work survives a restart only with
/// the append-only file on a volume; `noeviction` so a full Redis refuses new work (503) instead of evicting queued
/// tasks; the password from the Secret, never in the file.
#[test]
fn the_queue_runs_redis_8_with_its_append_only_file_on_a_volume_and_no_eviction() {
    let objects = manifests::overlay("development").objects;
    let (container, version) = container(&objects, "redis");
    assert!(container["image"].as_str().is_some_and(|i| i.starts_with("redis:")), "{container}");
    assert!(
        ((7, 0)..=(8, 10)).contains(&version),
        "redis {version:?}: reviewed for 7.0 to 8.10; read the notes past it"
    );
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let flag = |name: &str| args.iter().position(|a| *a == name).map(|i| args[i + 1]);
    assert_eq!(flag("--appendonly"), Some("yes"));
    assert_eq!(flag("--maxmemory-policy"), Some("noeviction"));
    assert_eq!(flag("--requirepass"), Some("$(REDIS_PASSWORD)"));
    assert_eq!(container["env"][0]["valueFrom"]["secretKeyRef"]["name"], "redis-auth");
    let deployment = find(&objects, "Deployment", "redis").expect("redis");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate", "two pods on one RWO volume would corrupt it");
    let volume = &pod_spec(deployment).expect("pod")["volumes"][0]["persistentVolumeClaim"]["claimName"];
    let data = container["volumeMounts"].as_array().expect("mounts").iter().find(|m| m["mountPath"] == "/data");
    assert!(data.is_some() && find(&objects, "PersistentVolumeClaim", volume.as_str().expect("claim")).is_some());
    // The consumer is pointed at it, the password expanded from a variable defined before the URL.
    let consumer = find(&objects, "Deployment", "consumer").expect("consumer");
    let env: Vec<&Value> =
        pod_spec(consumer).expect("pod")["containers"][0]["env"].as_array().expect("env").iter().collect();
    let at = |name: &str| env.iter().position(|e| e["name"] == name).unwrap_or_else(|| panic!("{name}"));
    assert!(at("REDIS_PASSWORD") < at("QUEUE_URL"));
    assert_eq!(env[at("QUEUE_URL")]["value"], "redis://:$(REDIS_PASSWORD)@redis:6379");
    // The shared backlog's cap holds what every replica's own backlog held at the most replicas (the default 100 each).
    let args = pod_spec(consumer).expect("pod")["containers"][0]["args"].clone();
    let capacity = args
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--queue-capacity=").and_then(|n| n.parse::<u64>().ok()));
    let so = find(&objects, "ScaledObject", "consumer").expect("scaled object");
    let max_replicas = so["spec"]["maxReplicaCount"].as_u64().expect("maxReplicaCount");
    assert!(
        capacity.is_some_and(|c| c >= 100 * max_replicas),
        "--queue-capacity {capacity:?}, {max_replicas} replicas"
    );
}
