//! `--prometheus` with `--scaled-object`: the autoscaling table from a real Prometheus scraping the real consumer, and
//! a Prometheus that does not answer costs one warning, not the load.

use std::path::Path;

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
