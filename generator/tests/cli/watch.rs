//! `--prometheus` with `--scaled-object`: the autoscaling table from a real Prometheus scraping the real consumer, and
//! a Prometheus that does not answer costs one warning, not the load.

use std::path::Path;

use surge_harness::redis::RedisServer;

use crate::support::{free_port, generator, prometheus_scraping, Consumer};

fn scaled_object() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    repo.join("kubernetes-manifests/components/keda/scaledobject.yaml").display().to_string()
}

fn light_run<'a>(url: &'a str, prometheus: &'a str, file: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        url,
        "--test",
        "light",
        "--scale",
        "0.1",
        "--time-scale",
        "5",
        "--probes",
        "1",
        "--prometheus",
        prometheus,
        "--scaled-object",
        file,
        "--monitor-interval",
        "500ms",
    ]
}

#[test]
fn the_table_shows_every_trigger_of_the_scaled_object_as_keda_reads_it() {
    let consumer = Consumer::start("consumer-watched");
    let prometheus = prometheus_scraping(consumer.url.trim_start_matches("http://"));
    let prometheus_url = prometheus.url();
    let file = scaled_object();
    let output = generator(&light_run(&consumer.url, &prometheus_url, &file));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let header = stderr.lines().find(|l| l.starts_with("autoscaling  t(s)")).expect("a header");
    for trigger in
        ["backlog (2)", "cpu-demand (0.8)", "task-stretch-p95 (1.5)", "request-rate (1)", "allocator-pressure (32)"]
    {
        assert!(header.contains(trigger), "{header}");
    }
    let rows: Vec<&str> = stderr.lines().filter(|l| l.starts_with("autoscaling ") && !l.contains("t(s)")).collect();
    assert!(rows.len() >= 3, "a row per interval: {stderr}");
    // Once scrapes exist every trigger answers with one series; the allocator always has a rate.
    let last = rows.last().expect("rows");
    assert!(!last.contains("error"), "{last}");
    assert_eq!(last.matches(" -> ").count(), 5, "{last}");
}

/// components/queue-trigger's backlog trigger (KEDA's redis-streams scaler on the shared stream) in place of the
/// Prometheus one: the table reads XLEN from the real Redis the consumer queues on, and watches it move.
#[test]
fn the_table_reads_a_redis_streams_trigger_from_redis_as_keda_does() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let component = repo.join("kubernetes-manifests/components/queue-trigger/kustomization.yaml");
    let component: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(component).expect("queue-trigger")).expect("YAML");
    let patch = component["patches"][0]["patch"].as_str().expect("the trigger's patch");
    let patch: serde_yaml_ng::Value = serde_yaml_ng::from_str(patch).expect("a JSON patch");
    assert_eq!(patch[0]["path"], "/spec/triggers/0", "it replaces the backlog trigger");
    let mut so: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(scaled_object()).expect("scaledobject")).expect("YAML");
    so["spec"]["triggers"][0] = patch[0]["value"].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scaledobject.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&so).expect("YAML")).expect("write");

    let redis = RedisServer::start().expect("redis starts");
    let consumer = Consumer::start_with("consumer-redis-watched", &["--queue", &redis.url()]);
    let prometheus = prometheus_scraping(consumer.url.trim_start_matches("http://"));
    let (prometheus_url, file) = (prometheus.url(), file.display().to_string());
    let mut args = light_run(&consumer.url, &prometheus_url, &file);
    let redis_url = redis.url();
    args.extend(["--redis", &redis_url]);
    let output = generator(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let header = stderr.lines().find(|l| l.starts_with("autoscaling  t(s)")).expect("a header");
    assert!(header.contains("| backlog (4) |"), "the redis-streams trigger's streamLength: {header}");
    let backlog: Vec<f64> = stderr
        .lines()
        .filter(|l| l.starts_with("autoscaling ") && !l.contains("t(s)"))
        .map(|row| {
            let cell = row.split(" | ").nth(1).expect("the backlog cell");
            cell.split(" -> ").next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a count: {row}"))
        })
        .collect();
    // XLEN counts what waits and what runs (the consumer deletes an entry once acknowledged): up during the load.
    assert!(backlog.iter().any(|n| *n > 0.0), "the stream held tasks at some row: {backlog:?}\n{stderr}");

    let without = generator(&light_run(&consumer.url, &prometheus_url, &file));
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains("a redis-streams trigger: pass --redis URL"), "named, not a silent zero: {stderr}");
}

#[test]
fn a_prometheus_that_does_not_answer_is_one_warning_and_the_load_goes_on() {
    let consumer = Consumer::start("consumer-unwatched");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let file = scaled_object();
    let output = generator(&light_run(&consumer.url, &nowhere, &file));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "the load ran: {stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("does not answer")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert_eq!(consumer.status()["totals"]["started"].as_u64().map(|n| n > 0), Some(true));
}
