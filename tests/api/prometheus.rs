//! A real Prometheus (Debian's package) scrapes the consumer under load: the request rate and work in flight KEDA will
//! query are there and sane (the allocation rate, process-wide, in tests/process/allocation.rs).

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{json, spawn_app};
use crate::prometheus_server::Prometheus;

/// A Prometheus scraping `target` every 250 ms, labelled as the monitoring component's relabeling would.
async fn scraping(client: &reqwest::Client, target: &str) -> Prometheus {
    let config = format!(
        "global: {{scrape_interval: 250ms, scrape_timeout: 250ms, evaluation_interval: 250ms}}\n\
         scrape_configs:\n\
         - job_name: consumer\n  static_configs:\n  - targets: ['{target}']\n    labels: {{namespace: surge, pod: consumer-0}}\n"
    );
    Prometheus::start(client, &config).await
}

#[tokio::test]
async fn prometheus_sees_the_request_rate_and_memory_work_under_load() {
    let app = spawn_app(&[]).await;
    let target = app.address.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let prometheus = scraping(&client, &target).await;
    // Wait for the first scrape so the rate window covers only the load below.
    prometheus.value_once_present(&client, "up{job=\"consumer\"} == 1").await;

    let started = Instant::now();
    let mut requests = 0u32;
    while started.elapsed() < Duration::from_secs(4) {
        for _ in 0..10 {
            assert_eq!(app.get("/health").await.status(), StatusCode::OK);
        }
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=8&duration=1").await, StatusCode::OK).await;
        requests += 11;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent_rate = f64::from(requests) / seconds;

    let request_rate = prometheus
        .value_once_present(&client, "sum(rate(http_requests_total{namespace=\"surge\",handler!=\"/metrics\"}[3s]))")
        .await;
    assert!(
        request_rate > 0.5 * sent_rate && request_rate < 1.5 * sent_rate,
        "Prometheus sees {request_rate:.1} req/s; {sent_rate:.1} req/s were sent"
    );
    // The allocation rate is process-wide, and this binary runs other apps beside this one: it is asserted on the real
    // binary alone (tests/process/allocation.rs).
    let in_flight =
        prometheus.value_once_present(&client, "max_over_time(consumer_tasks_in_flight{kind=\"memory\"}[10s])").await;
    assert!(in_flight >= 1.0, "memory work in flight was seen: {in_flight}");
}

/// How many times Prometheus has scraped the consumer in the last minute.
async fn scrapes(prometheus: &Prometheus, client: &reqwest::Client) -> u32 {
    let samples = prometheus.query(client, "count_over_time(up{job=\"consumer\"}[1m])").await;
    samples.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A fresh pod's first burst is visible to `rate()`: its `/process` series exist at zero before the burst, so the
/// jump between two scrapes is an increase, not a series born at 30.
#[tokio::test]
async fn a_burst_between_two_scrapes_on_a_fresh_pod_shows_in_rate() {
    let app = spawn_app(&[]).await;
    let target = app.address.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let config = format!(
        "global: {{scrape_interval: 2s, scrape_timeout: 1s}}\n\
         scrape_configs:\n\
         - job_name: consumer\n  static_configs:\n  - targets: ['{target}']\n    labels: {{namespace: surge, pod: consumer-0}}\n"
    );
    let prometheus = Prometheus::start(&client, &config).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrapes(&prometheus, &client).await == 0 {
        assert!(Instant::now() < deadline, "never scraped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = scrapes(&prometheus, &client).await;
    for _ in 0..30 {
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1").await, StatusCode::OK).await;
    }
    assert_eq!(scrapes(&prometheus, &client).await, before, "the burst landed between two scrapes");
    while scrapes(&prometheus, &client).await < before + 1 {
        assert!(Instant::now() < deadline, "no second scrape");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let increase = prometheus
        .value_once_present(&client, "sum(increase(http_requests_total{handler=\"/process\", status=\"2xx\"}[1m]))")
        .await;
    let rate = prometheus.value_once_present(&client, "sum(rate(http_requests_total{handler=\"/process\"}[1m]))").await;
    println!("burst of 30: increase {increase:.1}, rate {rate:.3} req/s");
    assert!(increase >= 30.0, "the whole burst is seen (increase extrapolates upward): {increase}");
    assert!(rate > 0.0, "rate() sees the burst: {rate}");
}
