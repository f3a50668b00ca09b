//! The allocation rate KEDA's allocator trigger reads, scraped by a real Prometheus from the real binary: the counting
//! allocator is process-wide, so only a process of its own shows what this consumer's own work allocates (in the API
//! tests' shared binary, neighbouring apps would meet any bound).

use std::time::{Duration, Instant};

use crate::consumer::ConsumerProcess;
use crate::prometheus_server::Prometheus;

const MIB: f64 = 1024.0 * 1024.0;

/// Idle, the rate stays near zero; with 8 MiB memory tasks ten times a second (and health checks between), it follows
/// the tasks' own allocation: at least half of it and at most twice (requests and bookkeeping add little).
#[tokio::test]
async fn the_allocation_rate_follows_the_tasks_memory_and_stays_still_at_idle() {
    let consumer = ConsumerProcess::start(&[]);
    let target = consumer.address.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let config = format!(
        "global: {{scrape_interval: 250ms, scrape_timeout: 250ms, evaluation_interval: 250ms}}\n\
         scrape_configs:\n\
         - job_name: consumer\n  static_configs:\n  - targets: ['{target}']\n    labels: {{namespace: surge, pod: consumer-0}}\n"
    );
    let prometheus = Prometheus::start(&client, &config).await;
    prometheus.value_once_present(&client, "count_over_time(up{job=\"consumer\"}[5s]) >= 12").await;
    let idle = prometheus.value_once_present(&client, "sum(rate(allocator_allocated_bytes_total[3s]))").await;

    let started = Instant::now();
    let mut memory_bytes = 0.0;
    while started.elapsed() < Duration::from_secs(4) {
        for _ in 0..10 {
            let health = client.get(format!("{}/health", consumer.address)).send().await.expect("health");
            assert!(health.status().is_success());
        }
        let url = format!("{}/process?async_mode=true&cpu_intensity=1&memory_size=8&duration=1", consumer.address);
        let accepted = client.post(url).send().await.expect("process");
        assert!(accepted.status().is_success(), "{}", accepted.status());
        memory_bytes += 8.0 * MIB;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task_rate = memory_bytes / started.elapsed().as_secs_f64();
    let loaded = prometheus.value_once_present(&client, "sum(rate(allocator_allocated_bytes_total[3s]))").await;
    println!(
        "allocation rate idle {:.2} MiB/s, loaded {:.1} MiB/s; the tasks allocated {:.1} MiB/s",
        idle / MIB,
        loaded / MIB,
        task_rate / MIB
    );
    assert!(idle < 0.05 * task_rate, "idle allocation {:.2} MiB/s", idle / MIB);
    assert!(
        (0.5 * task_rate..2.0 * task_rate).contains(&loaded),
        "allocation rate {:.1} MiB/s, the tasks allocated {:.1} MiB/s",
        loaded / MIB,
        task_rate / MIB
    );
}
