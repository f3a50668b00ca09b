//! Simulated work on a shared node: the binary follows the share a node model writes to `NODE_SHARE_FILE`, and refuses
//! the file with burning work (there the kernel shares the node's cores itself).

use std::process::Command;

use serde_json::Value;

use crate::consumer::ConsumerProcess;

/// One sync task of one core for 1 s; its slowdown (wall time over the time asked).
async fn slowdown(client: &reqwest::Client, address: &str) -> f64 {
    let url = format!("{address}/process?cpu_intensity=10&memory_size=0&duration=1");
    let report: Value = client.post(url).send().await.expect("process").json().await.expect("a task report");
    assert_eq!(report["status"], "completed", "{report}");
    report["slowdown"].as_f64().expect("slowdown")
}

/// A quarter of a core from the node stretches a one-core task four times; the whole core again, not at all.
#[tokio::test]
async fn simulated_tasks_run_at_the_share_the_node_gives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("share");
    std::fs::write(&file, "0.25").expect("write the share");
    let env = [("NODE_SHARE_FILE", file.display().to_string())];
    let consumer = ConsumerProcess::start_with_env(&["--cpu-work", "simulate", "--cpu-capacity", "1"], &env);
    let client = reqwest::Client::new();
    // The file is read every 100 ms from the start; the first task's first period may run before it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let starved = slowdown(&client, &consumer.address).await;
    std::fs::write(&file, "1").expect("write the share");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let whole = slowdown(&client, &consumer.address).await;
    println!("one-core task: slowdown {starved:.2} on a quarter core, {whole:.2} on a whole one");
    assert!((3.6..4.6).contains(&starved), "a quarter of a core: slowdown {starved}");
    assert!((0.95..1.3).contains(&whole), "the whole core: slowdown {whole}");
}

#[test]
fn the_share_file_is_refused_with_burning_work() {
    let output = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--port", "0", "--cpu-work", "burn"])
        .env("NODE_SHARE_FILE", "/nonexistent")
        .output()
        .expect("run the consumer");
    assert!(!output.status.success(), "started with a node share file and burning work");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(format!("{stdout}{stderr}").contains("NODE_SHARE_FILE needs CPU_WORK=simulate"), "{stdout}{stderr}");
}
