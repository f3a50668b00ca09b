//! The capacity model on the real binary: tasks that ask for more CPU than the pod has share it and take longer; the
//! simulated mode keeps the burning mode's timings without using the CPU.
//!
//! Its own test binary, one test at a time (cargo runs test binaries one after another): the burning runs measure
//! wall time and need the machine's cores to themselves.

// Shared with tests/process, which uses all of it; this binary needs only part.
#[allow(dead_code)]
#[path = "../support/consumer.rs"]
mod consumer;

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::Value;

use consumer::ConsumerProcess;

/// Runs `count` sync tasks of intensity 10 for `duration` s at once; returns each one's wall seconds as reported.
async fn run_together(consumer: &ConsumerProcess, count: usize, duration: u32) -> Vec<f64> {
    let client = reqwest::Client::new();
    let requests = (0..count).map(|_| {
        let url = format!("{}/process?cpu_intensity=10&memory_size=0&duration={duration}", consumer.address);
        let client = client.clone();
        async move {
            let response = client.post(url).send().await.expect("process");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.expect("report")
        }
    });
    let reports = futures_util::future::join_all(requests).await;
    reports.iter().map(|r| r["wall_seconds"].as_f64().unwrap_or_else(|| panic!("wall_seconds: {r}"))).collect()
}

/// One full-core task alone takes its duration; two on a one-core pod share it and each takes twice as long.
async fn sharing_stretches_tasks(mode: &str) -> (f64, Vec<f64>, f64) {
    let consumer = ConsumerProcess::start(&["--cpu-capacity", "1", "--cpu-work", mode]);
    let cpu_before = consumer.cpu_seconds();
    let wall = Instant::now();
    let alone = run_together(&consumer, 1, 2).await[0];
    let together = run_together(&consumer, 2, 2).await;
    let cores_used = (consumer.cpu_seconds() - cpu_before) / wall.elapsed().as_secs_f64();
    println!("{mode}: alone {alone:.3} s, together {together:.3?} s, {cores_used:.3} cores used");
    assert!((1.7..=2.3).contains(&alone), "{mode}: one task alone takes its 2 s (±15%): {alone}");
    for seconds in &together {
        assert!((3.4..=4.6).contains(seconds), "{mode}: two on one core take 4 s each (±15%): {together:?}");
    }
    (alone, together, cores_used)
}

#[tokio::test]
async fn simulated_and_burning_cpu_share_one_core_alike() {
    let (burn_alone, burn_together, burn_cores) = sharing_stretches_tasks("burn").await;
    let (sim_alone, sim_together, sim_cores) = sharing_stretches_tasks("simulate").await;
    assert!((sim_alone - burn_alone).abs() <= 0.1 * burn_alone, "alone: simulated {sim_alone}, burning {burn_alone}");
    for (sim, burn) in sim_together.iter().zip(&burn_together) {
        assert!((sim - burn).abs() <= 0.1 * burn, "together: simulated {sim}, burning {burn}");
    }
    assert!(burn_cores > 0.8, "burning really uses the core: {burn_cores}");
    assert!(sim_cores < 0.05, "simulating uses under 5% of a core: {sim_cores}");
}
