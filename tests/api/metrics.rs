//! `/metrics`: exact counts after a known sequence of requests, allocator pressure, and a clean exposition.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use surge_consumer::metrics::names;

use crate::helpers::{json, sample, spawn_app, MIB};

#[tokio::test]
async fn request_counters_equal_what_was_sent() {
    let app = spawn_app(&[]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    }
    for path in ["/no/such/path", "/process/status/extra", "/favicon.ico"] {
        assert_eq!(app.get(path).await.status(), StatusCode::NOT_FOUND);
    }
    for _ in 0..2 {
        assert_eq!(app.get("/process").await.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    assert_eq!(app.post("/process?duration=0").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    json(app.post("/process?cpu_intensity=1&memory_size=1&duration=1").await, StatusCode::OK).await;

    let exposition = app.metrics().await;
    let count = |method: &str, handler: &str, status: &str| {
        sample(&exposition, names::HTTP_REQUESTS_TOTAL, &[("method", method), ("handler", handler), ("status", status)])
    };
    assert_eq!(count("GET", "/health", "2xx"), Some(3.0));
    assert_eq!(count("GET", "none", "4xx"), Some(3.0), "unmatched paths share handler=\"none\"");
    assert_eq!(count("GET", "/process", "4xx"), Some(2.0), "a 405 is counted under its route");
    assert_eq!(count("POST", "/process", "4xx"), Some(1.0));
    assert_eq!(count("POST", "/process", "2xx"), Some(1.0), "the route template, not the query string");
    assert_eq!(count("POST", "/process", "5xx"), Some(0.0));
    assert!(!exposition.contains("favicon") && !exposition.contains("no/such"), "raw paths never become labels");

    let observed = |method: &str, handler: &str| {
        sample(&exposition, "http_request_duration_seconds_count", &[("method", method), ("handler", handler)])
    };
    assert_eq!(observed("GET", "/health"), Some(3.0));
    assert_eq!(observed("POST", "/process"), Some(2.0));
    let slow = sample(
        &exposition,
        "http_request_duration_seconds_bucket",
        &[("handler", "/process"), ("method", "POST"), ("le", "0.5")],
    );
    assert_eq!(slow, Some(1.0), "the 1 s task lands above 0.5 s, the 422 below");
    let in_progress = |handler: &str| {
        sample(&exposition, names::HTTP_REQUESTS_IN_PROGRESS, &[("method", "GET"), ("handler", handler)])
    };
    assert_eq!(in_progress("/metrics"), Some(1.0), "the scrape itself is in progress");
    assert_eq!(in_progress("/health"), Some(0.0));

    let task = |kind: &str, outcome: &str| {
        sample(&exposition, names::TASKS_TOTAL, &[("kind", kind), ("mode", "sync"), ("outcome", outcome)])
    };
    assert_eq!(task("cpu", "completed"), Some(1.0));
    assert_eq!(task("memory", "completed"), Some(1.0));
    assert_eq!(task("cpu", "rejected"), Some(0.0), "a 422 is not an admission rejection");
}

#[tokio::test]
async fn rejections_and_work_in_flight_are_counted() {
    let app = spawn_app(&["--max-tasks", "1", "--queue-capacity", "0", "--memory-budget-mb", "64"]).await;
    json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=16&duration=3").await, StatusCode::OK).await;
    json(
        app.post("/process?async_mode=true&cpu_intensity=1&memory_size=16&duration=1").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    app.wait_for_status("the task to be running", |s| s["tasks_running"]["memory"] == 1).await;
    let exposition = app.metrics().await;
    assert_eq!(sample(&exposition, names::TASKS_IN_FLIGHT, &[("kind", "cpu")]), Some(1.0));
    assert_eq!(sample(&exposition, names::TASKS_IN_FLIGHT, &[("kind", "memory")]), Some(1.0));
    let rejected =
        |kind| sample(&exposition, names::TASKS_TOTAL, &[("kind", kind), ("mode", "async"), ("outcome", "rejected")]);
    assert_eq!((rejected("cpu"), rejected("memory")), (Some(1.0), Some(1.0)));
    assert_eq!(sample(&exposition, names::MEMORY_BUDGET_BYTES, &[]), Some((64 * MIB) as f64));
}

/// The allocator's counters are process-wide and this process runs other apps beside this one: their growth is
/// asserted in tests/process/cleanup.rs, on a consumer process of its own. Here: the series exist, and the app's own
/// account of what it retains.
#[tokio::test]
async fn a_retained_task_is_counted_until_the_cleanup() {
    let app = spawn_app(&[]).await;
    let read = |exposition: &str, name| sample(exposition, name, &[]).expect("allocator metric present");
    json(app.post("/process?cpu_intensity=1&memory_size=64&duration=1&retain=true").await, StatusCode::OK).await;
    let after = app.metrics().await;
    for name in [
        names::ALLOCATOR_ALLOCATED_BYTES_TOTAL,
        names::ALLOCATOR_LIVE_BYTES,
        names::ALLOCATOR_RESIDENT_BYTES,
        names::ALLOCATOR_ALLOCATIONS_TOTAL,
    ] {
        read(&after, name);
    }
    assert_eq!(read(&after, names::RETAINED_MEMORY_BYTES), (64 * MIB) as f64);
    json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    assert_eq!(read(&app.metrics().await, names::RETAINED_MEMORY_BYTES), 0.0);
}

#[tokio::test]
async fn process_and_build_metrics_are_exported() {
    let app = spawn_app(&[]).await;
    let exposition = app.metrics().await;
    for name in [
        names::PROCESS_CPU_SECONDS_TOTAL,
        names::PROCESS_RESIDENT_MEMORY_BYTES,
        names::PROCESS_THREADS,
        names::PROCESS_OPEN_FDS,
        names::PROCESS_MAX_FDS,
        names::PROCESS_START_TIME_SECONDS,
    ] {
        assert!(sample(&exposition, name, &[]).is_some_and(|v| v > 0.0), "{name} missing or zero");
    }
    let cpu = sample(&exposition, names::PROCESS_CPU_SECONDS_TOTAL, &[]).expect("cpu");
    assert!(cpu.fract() != 0.0, "process_cpu_seconds_total has sub-second resolution: {cpu}");
    assert_eq!(sample(&exposition, names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
}

/// `promtool check metrics` (Prometheus's own linter) reports nothing on the exposition.
#[tokio::test]
async fn promtool_finds_nothing_to_report() {
    let app = spawn_app(&[]).await;
    json(app.post("/process?cpu_intensity=1&memory_size=1&duration=1").await, StatusCode::OK).await;
    app.get("/nowhere").await;
    let exposition = app.metrics().await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/run installs Debian's prometheus package)");
    promtool.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write exposition");
    let output = promtool.wait_with_output().expect("promtool runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}
