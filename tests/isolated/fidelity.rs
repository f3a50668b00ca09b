//! The work asked for is the work done: CPU seconds match intensity/10 × duration, and memory is resident, then gone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::consumer::ConsumerProcess;

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test]
async fn cpu_and_memory_match_the_request() {
    let _alone = crate::ALONE.lock().await;
    // The release binary, as a pod runs it: a debug build spends a varying extra half second filling the memory.
    let consumer = ConsumerProcess::start_release(&["--workers", "1"], &[]);
    let client = reqwest::Client::new();
    // Warm up so lazily created threads and buffers are in the baseline.
    let warm = client
        .post(format!("{}/process?cpu_intensity=1&memory_size=1&duration=1", consumer.address))
        .send()
        .await
        .expect("warm-up");
    assert_eq!(warm.status(), StatusCode::OK);
    let rss_before = consumer.rss_bytes() as f64;
    let cpu_before = consumer.cpu_seconds();

    let (intensity, memory_mib, duration) = (5.0, 200.0, 3.0);
    let request = client
        .post(format!(
            "{}/process?cpu_intensity={intensity}&memory_size={memory_mib}&duration={duration}",
            consumer.address
        ))
        .send();
    // Resident memory sampled every 20 ms while the task runs: its peak, not one reading after a fixed sleep.
    tokio::pin!(request);
    let mut rss_during = 0.0_f64;
    let response = loop {
        tokio::select! {
            response = &mut request => break response,
            () = tokio::time::sleep(Duration::from_millis(20)) => rss_during = rss_during.max(consumer.rss_bytes() as f64),
        }
    };
    let response = response.expect("process request");
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("report");

    let expected_cpu = intensity / 10.0 * duration;
    let reported_cpu = report["cpu_seconds"].as_f64().expect("cpu_seconds");
    let measured_cpu = consumer.cpu_seconds() - cpu_before;
    assert!(
        (reported_cpu - expected_cpu).abs() <= 0.1 * expected_cpu,
        "reported {reported_cpu} s, expected {expected_cpu} s"
    );
    // The process also touched 200 MiB and served HTTP: allow that on top, but not less than asked.
    assert!(
        measured_cpu >= 0.9 * expected_cpu && measured_cpu <= 1.1 * expected_cpu + 0.25,
        "measured {measured_cpu} s of process CPU, expected {expected_cpu} s"
    );

    let grown = (rss_during - rss_before) / MIB;
    assert!(grown >= 0.95 * memory_mib, "resident memory grew by {grown:.1} MiB during a {memory_mib} MiB task");
    let rss_after = consumer.rss_bytes() as f64;
    assert!(
        (rss_after - rss_before).abs() <= 0.1 * rss_before,
        "resident memory {:.1} MiB after the task, {:.1} MiB before",
        rss_after / MIB,
        rss_before / MIB
    );
    assert_eq!(report["allocated_bytes"].as_f64(), Some(memory_mib * MIB));
}
