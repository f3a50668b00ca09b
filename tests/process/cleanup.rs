//! `DELETE /process/cleanup` gives retained memory back: resident memory (from /proc) and the allocator's live bytes
//! (from /metrics) rise with a retained task and fall after the cleanup; the allocation counter grows by the task's
//! block, once. A process of its own, so no neighbour's allocations are counted.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::consumer::ConsumerProcess;

const MIB: f64 = 1024.0 * 1024.0;
const RETAINED_MIB: f64 = 100.0;

/// An unlabelled sample of the consumer's `/metrics`. Its own process: no other app's allocations are counted.
async fn sample(client: &reqwest::Client, address: &str, name: &str) -> f64 {
    let text = client.get(format!("{address}/metrics")).send().await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}"))
}

async fn live_bytes(client: &reqwest::Client, address: &str) -> f64 {
    sample(client, address, "allocator_live_bytes").await
}

#[tokio::test]
async fn cleanup_returns_retained_memory_to_the_os() {
    let consumer = ConsumerProcess::start(&["--memory-budget-mb", "512"]);
    let client = reqwest::Client::new();
    let address = consumer.address.clone();
    let (rss_before, live_before) = (consumer.rss_bytes() as f64, live_bytes(&client, &address).await);
    let allocated_before = sample(&client, &address, "allocator_allocated_bytes_total").await;

    let task = client
        .post(format!("{address}/process?cpu_intensity=1&memory_size={RETAINED_MIB}&duration=1&retain=true"))
        .send()
        .await
        .expect("retained task");
    assert_eq!(task.status(), StatusCode::OK);
    let (rss_held, live_held) = (consumer.rss_bytes() as f64, live_bytes(&client, &address).await);
    assert!(rss_held - rss_before >= 0.9 * RETAINED_MIB * MIB, "resident grew by the retained block");
    assert!(live_held - live_before >= 0.9 * RETAINED_MIB * MIB, "live bytes grew by the retained block");
    let allocated = sample(&client, &address, "allocator_allocated_bytes_total").await - allocated_before;
    println!("allocated {:.3} MiB for the {RETAINED_MIB} MiB task", allocated / MIB);
    // Counted once, and nothing else of its size: 100.455 MiB measured; a request's own allocations are KiB.
    assert!(allocated >= RETAINED_MIB * MIB, "the task's block counted: {allocated}");
    assert!(allocated <= (RETAINED_MIB + 4.0) * MIB, "the task's block counted once: {allocated}");

    let cleanup = client.delete(format!("{address}/process/cleanup")).send().await.expect("cleanup");
    assert_eq!(cleanup.status(), StatusCode::OK);
    let report: Value = cleanup.json().await.expect("cleanup JSON");
    assert_eq!(report["objects_removed"], 1, "{report}");
    assert!(report["estimated_mb_freed"].as_f64().is_some_and(|mb| mb >= RETAINED_MIB), "{report}");

    // Freed memory leaves the process when the allocator unmaps it: wait on that, not on a fixed sleep.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rss_after = loop {
        let rss = consumer.rss_bytes() as f64;
        if rss - rss_before < 0.1 * RETAINED_MIB * MIB || Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let live_after = live_bytes(&client, &address).await;
    println!(
        "resident {:.0} -> {:.0} -> {:.0} MiB, live {:.0} -> {:.0} -> {:.0} MiB",
        rss_before / MIB,
        rss_held / MIB,
        rss_after / MIB,
        live_before / MIB,
        live_held / MIB,
        live_after / MIB
    );
    assert!(rss_after - rss_before < 0.1 * RETAINED_MIB * MIB, "resident memory returned to the OS");
    assert!(live_after - live_before < 0.1 * RETAINED_MIB * MIB, "live bytes fell back");
}
