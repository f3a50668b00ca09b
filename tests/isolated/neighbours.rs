//! Broken neighbours: OTLP and Loki endpoints that refuse, that accept and never answer, and that answer after 2 s.
//! The release binary, as a pod runs it. With every request access-logged (a Loki line each) and traced (a span
//! each), a consumer whose sinks are broken must answer as fast as one whose sinks work (p99 within 10%, plus 0.25 ms
//! for timer and scheduling noise on a shared 2-core machine), keep its memory bounded, and count what it drops.
//! Against no telemetry at all the figures are printed, not asserted: exporting every request's span and log line
//! has a CPU cost of its own (measured here: p99 about 2.5 times), whether or not the sink answers. The receivers
//! run on threads of their own (as a collector is a process of its own), so the baseline is not slowed by decoding on
//! the threads that time it.

use std::time::{Duration, Instant};

use crate::consumer::ConsumerProcess;
use crate::receivers::{black_hole, refusing_port, LokiReceiver, OtlpReceiver};

const ROUNDS: usize = 5;
const REQUESTS: usize = 2000;
const CONCURRENCY: usize = 4;

/// p99 of `REQUESTS` GETs of `/info`, `CONCURRENCY` at a time, in milliseconds.
async fn p99(client: &reqwest::Client, address: &str) -> f64 {
    let url = format!("{address}/info");
    let per_worker = REQUESTS / CONCURRENCY;
    let workers = (0..CONCURRENCY).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let start = Instant::now();
                let response = client.get(&url).send().await.expect("GET /info");
                assert!(response.status().is_success());
                response.bytes().await.expect("body");
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }
    });
    let mut all: Vec<f64> = futures_util::future::join_all(workers).await.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    all[all.len() * 99 / 100]
}

fn dropped(exposition: &str, sink: &str) -> f64 {
    let series = format!("telemetry_dropped_total{{sink=\"{sink}\"}} ");
    exposition.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_sinks_cost_no_latency_bounded_memory_and_counted_drops() {
    let _alone = crate::ALONE.lock().await;
    let (_slow_otlp, slow_otlp) = OtlpReceiver::start_answering_after(Duration::from_secs(2));
    let (_slow_loki, slow_loki) = LokiReceiver::start_answering_after(Duration::from_secs(2));
    let (refused, hole) = (refusing_port(), black_hole());
    let sinks = |otlp: std::net::SocketAddr, loki: std::net::SocketAddr| {
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")), ("LOKI_URL", format!("http://{loki}"))]
    };
    let flags = ["--workers", "1", "--access-log", "all"];
    let (_healthy_otlp, healthy_otlp) = OtlpReceiver::start();
    let (_healthy_loki, healthy_loki) = LokiReceiver::start();
    let consumers = [
        ("no telemetry", ConsumerProcess::start_release(&flags, &[])),
        ("healthy", ConsumerProcess::start_release(&flags, &sinks(healthy_otlp, healthy_loki))),
        ("refusing", ConsumerProcess::start_release(&flags, &sinks(refused, refused))),
        ("never answering", ConsumerProcess::start_release(&flags, &sinks(hole, hole))),
        ("answering after 2 s", ConsumerProcess::start_release(&flags, &sinks(slow_otlp, slow_loki))),
    ];
    let client = reqwest::Client::new();
    for (_, consumer) in &consumers {
        p99(&client, &consumer.address).await;
    }
    let warm_rss: Vec<u64> = consumers.iter().map(|(_, c)| c.rss_bytes()).collect();

    // Rounds alternate the consumers, each round in a rotated order, so drift on the machine meets all of them.
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); consumers.len()];
    for round in 0..ROUNDS {
        for offset in 0..consumers.len() {
            let index = (round + offset) % consumers.len();
            rounds[index].push(p99(&client, &consumers[index].1.address).await);
        }
    }
    let (untraced, baseline) = (median(rounds[0].clone()), median(rounds[1].clone()));
    for (index, (name, consumer)) in consumers.iter().enumerate() {
        let p99 = median(rounds[index].clone());
        let grown = consumer.rss_bytes().saturating_sub(warm_rss[index]);
        let exposition = client
            .get(format!("{}/metrics", consumer.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let (otlp, loki) = (dropped(&exposition, "otlp"), dropped(&exposition, "loki"));
        println!(
            "sinks {name}: p99 {p99:.3} ms ({:.2}x working sinks, {:.2}x no telemetry; rounds {:?}), resident +{} KiB \
             after {} requests, dropped spans {otlp}, log lines {loki}",
            p99 / baseline,
            p99 / untraced,
            rounds[index].iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>(),
            grown >> 10,
            ROUNDS * REQUESTS
        );
        if index > 1 {
            assert!(
                p99 <= baseline * 1.10 + 0.25,
                "{name}: p99 {p99:.3} ms against {baseline:.3} ms with working sinks"
            );
        }
        assert!(grown < 16 << 20, "{name}: resident memory grew by {} KiB", grown >> 10);
        if ["refusing", "never answering"].contains(name) {
            // Nothing is ever delivered, so all but what the queues can hold is dropped and counted: at most 2,048
            // spans (the OTLP gate's default limit, queued and exporting) and 1,536 log lines (Loki's queue of 1,024
            // and the batch of 512 being pushed) of the one span and access-log line each request makes. An unbounded
            // queue drops nothing; one that held twice its size would fail here too.
            let requests = ((ROUNDS + 1) * REQUESTS) as f64;
            let held = serde_json::json!({"otlp": requests - otlp, "loki": requests - loki});
            assert!(
                requests - otlp <= 2048.0 && requests - loki <= 1536.0,
                "{name}: of {requests} requests' spans and lines, not counted as dropped: {held}"
            );
        }
    }
}
