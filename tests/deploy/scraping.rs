//! The monitoring component's own scrape config, relabeling included, run by a real Prometheus against the real
//! consumer; then the ScaledObject's own queries must find it. Debian's Prometheus is built without Kubernetes
//! discovery, so the discovered pod is given as a static target carrying the same `__meta_kubernetes_*` labels.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::consumer::ConsumerProcess;
use crate::manifests::{self, find};
use crate::prometheus_server::Prometheus;

const POD: &str = "consumer-7d9f8b6c5-x2x4q";

/// `overlay`'s rendered prometheus.yml with kubernetes_sd_configs swapped for one static "discovered" pod on `port`.
fn config_with_discovered_pod(overlay: &str, port: u16) -> String {
    let objects = manifests::overlay(overlay).objects;
    let text = find(&objects, "ConfigMap", "prometheus-config").expect("prometheus-config")["data"]["prometheus.yml"]
        .as_str()
        .expect("prometheus.yml")
        .to_owned();
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("prometheus.yml is YAML");
    assert_eq!(config["global"]["scrape_interval"], "5s", "KEDA polls every 5 s; scrapes keep up");
    // Faster scrapes only so the test need not wait for two 5 s samples.
    config["global"]["scrape_interval"] = "500ms".into();
    let jobs = config["scrape_configs"].as_array_mut().expect("scrape_configs");
    // The consumer is scraped by the pods job; kube-state-metrics' own job is checked on its own below.
    jobs.retain(|job| job["job_name"] == "pods");
    assert_eq!(jobs.len(), 1, "a pods job");
    let job = jobs[0].as_object_mut().expect("job");
    assert!(job.remove("kubernetes_sd_configs").is_some(), "pods are discovered through the Kubernetes API");
    let (deployment, container) = manifests::consumer_pod(&objects);
    let annotation = |key: &str| deployment["metadata"]["annotations"][key].clone();
    let mut labels = json!({
        "__meta_kubernetes_namespace": "surge",
        "__meta_kubernetes_pod_name": POD,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "node-1",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": annotation("prometheus.io/scrape"),
        "__meta_kubernetes_pod_annotation_prometheus_io_path": annotation("prometheus.io/path"),
        // The pod's annotation names the container port; here the consumer listens on a free port instead.
        "__meta_kubernetes_pod_annotation_prometheus_io_port": port.to_string(),
    });
    assert_eq!(annotation("prometheus.io/port"), container["ports"][0]["containerPort"].to_string());
    for (key, value) in deployment["metadata"]["labels"].as_object().expect("pod labels") {
        let sanitised: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        labels[format!("__meta_kubernetes_pod_label_{sanitised}")] = value.clone();
    }
    // Discovery reports the pod IP with the container port; relabeling must swap in the annotated port.
    job.insert("static_configs".into(), json!([{"targets": ["127.0.0.1:8000"], "labels": labels}]));
    serde_yaml_ng::to_string(&config).expect("YAML")
}

/// The metric names a query selects (`name{...}`), so their series can be checked on their own.
fn series_names(query: &str) -> Vec<&str> {
    let mut names: Vec<&str> = surge_harness::selectors(query).into_iter().map(surge_harness::series_name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The development overlay: its consumer on the shared backlog (a real Redis), its backlog trigger on the stream.
#[tokio::test]
async fn the_scaled_objects_queries_find_the_consumer_through_the_real_relabeling() {
    let redis = surge_harness::redis::RedisServer::start().expect("redis starts");
    let consumer = ConsumerProcess::start_with_env(SIMULATED, &[("QUEUE_URL", redis.url())]);
    queries_find_the_consumer("development", consumer).await;
}

/// development-memory: each pod's own backlog.
#[tokio::test]
async fn the_memory_queue_scaled_objects_queries_find_the_consumer_through_the_real_relabeling() {
    queries_find_the_consumer("development-memory", ConsumerProcess::start(SIMULATED)).await;
}

/// Its tasks' CPU modelled, not burnt: the test asserts an unstretched pod reads 0, and in `make test`'s busy lane (nice
/// 19 beside the release build) a burnt 1 s task once ran 1.1-1.25 s and the stretch trigger read 0.24 (ci19).
const SIMULATED: &[&str] = &["--cpu-work", "simulate"];

async fn queries_find_the_consumer(overlay: &str, mut consumer: ConsumerProcess) {
    let port: u16 = consumer.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let config = config_with_discovered_pod(overlay, port);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("prometheus.yml"), &config).expect("write");
    let check = Command::new("promtool").args(["check", "config"]).arg(dir.path().join("prometheus.yml")).output();
    let check = check.expect("promtool is installed");
    assert!(check.status.success(), "promtool: {}", String::from_utf8_lossy(&check.stdout));

    let client = reqwest::Client::new();
    let prometheus = Prometheus::start(&client, &config).await;
    let objects = manifests::overlay(overlay).objects;
    let so = find(&objects, "ScaledObject", "consumer").expect("ScaledObject").clone();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    loop {
        // Load the triggers watch: requests, and work that allocates.
        for _ in 0..5 {
            client.get(format!("{}/", consumer.address)).send().await.expect("GET /");
        }
        let process = format!("{}/process?cpu_intensity=1&memory_size=4&duration=1", consumer.address);
        client.post(process).send().await.expect("POST /process");
        sent += 1;

        let up = prometheus
            .query(&client, &format!(r#"up{{namespace="surge", app_kubernetes_io_name="consumer", pod="{POD}"}}"#))
            .await;
        // Until the first scrape no consumer target is live, and every trigger is empty by design (checked below).
        if up.len() != 1 {
            assert!(Instant::now() < deadline, "the consumer was never scraped");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let mut values = Vec::new();
        for trigger in manifests::triggers(&so) {
            let result = prometheus.query(&client, trigger["metadata"]["query"].as_str().expect("query")).await;
            assert_eq!(result.len(), 1, "trigger {} aggregates to one series: {result:?}", trigger["name"]);
            let value: f64 = result[0]["value"][1].as_str().expect("value").parse().expect("number");
            values.push((trigger["name"].as_str().expect("name").to_owned(), value));
        }
        let positive = |name: &str| values.iter().any(|(n, v)| n == name && *v > 0.0);
        if positive("request-rate") && positive("allocator-pressure") {
            assert_eq!(up[0]["value"][1], "1", "relabeling reached the consumer on its annotated port");
            // Every query ends in `or vector(0)`, so a selector matching nothing would read 0 too: each series a
            // trigger reads must exist for the pod.
            for trigger in manifests::triggers(&so) {
                let query = trigger["metadata"]["query"].as_str().expect("query");
                for series in series_names(query) {
                    let selector = format!(r#"{series}{{namespace="surge", app_kubernetes_io_name="consumer"}}"#);
                    let found = prometheus.query(&client, &format!("count({selector})")).await;
                    assert_eq!(found.len(), 1, "trigger {} reads {selector}, which the pod exports", trigger["name"]);
                }
            }
            // One 1 s task at a time on a pod with room: nothing queues and nothing stretches.
            let reading = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            assert_eq!(reading("backlog"), Some(0.0), "{values:?}");
            assert_eq!(reading("task-stretch-p95"), Some(0.0), "{values:?}");
            break;
        }
        assert!(Instant::now() < deadline, "after {sent} rounds the triggers still read {values:?}, up {up:?}");
    }

    // The only consumer gone (its target fails to scrape): no trigger may read 0, which would scale to the minimum.
    consumer.signal(nix::sys::signal::Signal::SIGKILL);
    consumer.wait_exit(Duration::from_secs(5)).expect("the consumer exits on SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut answered = Vec::new();
        for trigger in manifests::triggers(&so) {
            let result = prometheus.query(&client, trigger["metadata"]["query"].as_str().expect("query")).await;
            if !result.is_empty() {
                answered.push((trigger["name"].clone(), result));
            }
        }
        if answered.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "with no live consumer target these triggers still read: {answered:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
fn kube_state_metrics_has_its_own_job_that_keeps_the_labels_it_reports() {
    let objects = manifests::overlay("development").objects;
    let text = find(&objects, "ConfigMap", "prometheus-config").expect("prometheus-config")["data"]["prometheus.yml"]
        .as_str()
        .expect("prometheus.yml")
        .to_owned();
    let config: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let jobs = config["scrape_configs"].as_array().expect("scrape_configs");
    let job = |name: &str| jobs.iter().find(|j| j["job_name"] == name).unwrap_or_else(|| panic!("job {name}"));
    let ksm = job("kube-state-metrics");
    assert_eq!(ksm["honor_labels"], true, "its namespace and pod labels describe other objects: honour them");
    let keeps = |job: &Value, action: &str| {
        job["relabel_configs"].as_array().expect("relabel_configs").iter().any(|r| {
            r["action"] == action
                && r["regex"] == "kube-state-metrics"
                && r["source_labels"] == json!(["__meta_kubernetes_pod_label_app_kubernetes_io_name"])
        })
    };
    assert!(keeps(ksm, "keep"), "the kube-state-metrics job scrapes only kube-state-metrics");
    assert!(keeps(job("pods"), "drop"), "the pods job leaves kube-state-metrics to its own job");
    assert!(job("pods").get("honor_labels").is_none_or(|h| h == false), "the pods job labels its targets itself");
}
