//! Admission: work that cannot start waits in a bounded FIFO backlog; a full backlog answers 503 with a Retry-After
//! forecast from the backlog; a task over the whole budget is a 422; nothing accepted is lost.
//!
//! These apps simulate CPU work (same scheduler and accounting, no burning), so timings do not depend on what else the
//! machine runs; `tests/capacity` checks the burning mode against the same figures.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use surge_consumer::metrics::names;

use crate::helpers::{json, sample, spawn_app, TestApp, MIB};

async fn expect_overload(app: &TestApp, query: &str, reason: &str) -> (Value, u64) {
    let response = app.post(query).await;
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("ascii").to_owned());
    let body = json(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let seconds: u64 = retry_after.expect("Retry-After header").parse().expect("Retry-After in seconds");
    assert!(seconds >= 1, "Retry-After {seconds}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["retry_after_seconds"], seconds);
    (body, seconds)
}

fn seconds_from_now(body: &Value, field: &str) -> f64 {
    let at: DateTime<Utc> =
        body[field].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{field}: {body}"));
    (at - Utc::now()).num_milliseconds() as f64 / 1000.0
}

#[tokio::test]
async fn a_task_beyond_the_slot_cap_queues_and_starts_when_one_finishes() {
    let app = spawn_app(&["--max-tasks", "2", "--cpu-capacity", "4"]).await;
    let task = "/process?async_mode=true&cpu_intensity=1&memory_size=1&duration=2";
    for _ in 0..2 {
        let body = json(app.post(task).await, StatusCode::OK).await;
        assert_eq!(body["status"], "started", "{body}");
        assert!(body.get("queue_position").is_none(), "{body}");
    }
    let queued = json(app.post(task).await, StatusCode::OK).await;
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(queued["queue_position"], 1);
    let start_in = seconds_from_now(&queued, "estimated_start");
    let finish_in = seconds_from_now(&queued, "estimated_completion");
    assert!((1.5..=2.1).contains(&start_in), "starts when a 2 s task ends: {start_in}");
    assert!((3.5..=4.1).contains(&finish_in), "then runs its 2 s: {finish_in}");

    let status = app.status().await;
    assert_eq!(status["queue"]["length"], 1, "{status}");
    assert_eq!(status["totals"]["started"], 2);
    let exposition = app.metrics().await;
    assert_eq!(sample(&exposition, names::TASKS_QUEUED, &[]), Some(1.0));

    let done = app.wait_for_status("all three to complete", |s| s["totals"]["completed"] == 3).await;
    let third = done["recent"].as_array().expect("recent").iter().find(|t| t["task_id"] == queued["task_id"]).cloned();
    let third = third.expect("the queued task completed");
    let wait = third["queue_wait_seconds"].as_f64().expect("queue wait");
    assert!((1.8..=2.6).contains(&wait), "it waited for a 2 s task: {wait}");
    assert_eq!(done["queue"]["length"], 0);
    assert_eq!(done["totals"]["rejected"], 0);
    let exposition = app.metrics().await;
    assert_eq!(sample(&exposition, "consumer_task_queue_wait_seconds_count", &[]), Some(3.0));
    assert_eq!(sample(&exposition, "consumer_task_queue_wait_seconds_bucket", &[("le", "0.5")]), Some(2.0));
    assert_eq!(sample(&exposition, names::TASKS_QUEUED, &[]), Some(0.0));
}

#[tokio::test]
async fn a_full_backlog_answers_503_with_the_forecast_wait() {
    let app = spawn_app(&["--max-tasks", "1", "--queue-capacity", "1", "--cpu-capacity", "1"]).await;
    let running =
        json(app.post("/process?async_mode=true&cpu_intensity=10&memory_size=0&duration=4").await, StatusCode::OK)
            .await;
    assert_eq!(running["status"], "started");
    let queued =
        json(app.post("/process?async_mode=true&cpu_intensity=10&memory_size=0&duration=1").await, StatusCode::OK)
            .await;
    assert_eq!(queued["status"], "queued");
    let (body, retry_after) =
        expect_overload(&app, "/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1", "queue_full").await;
    assert!(body["error"].as_str().is_some_and(|e| e.contains("backlog")), "{body}");
    // The queue has room again when its head starts: when the running 4 s task ends.
    let head_starts_in = seconds_from_now(&queued, "estimated_start");
    assert!((3.5..=4.1).contains(&head_starts_in), "{queued}");
    assert_eq!(retry_after, head_starts_in.ceil() as u64, "Retry-After is the head's forecast start");
    // A sync request is refused the same way, and the refusals are counted.
    expect_overload(&app, "/process?cpu_intensity=1&memory_size=0&duration=1", "queue_full").await;
    let status = app.status().await;
    assert_eq!(status["totals"]["rejected"], 2, "{status}");
    let exposition = app.metrics().await;
    let rejected =
        |mode| sample(&exposition, names::TASKS_TOTAL, &[("kind", "cpu"), ("mode", mode), ("outcome", "rejected")]);
    assert_eq!((rejected("async"), rejected("sync")), (Some(1.0), Some(1.0)));

    let done = app.wait_for_status("both accepted tasks to complete", |s| s["totals"]["completed"] == 2).await;
    assert_eq!(done["totals"]["cancelled"], 0, "nothing accepted is lost: {done}");
}

#[tokio::test]
async fn memory_waits_for_the_budget_and_more_than_the_budget_is_a_422() {
    let app = spawn_app(&["--memory-budget-mb", "100"]).await;
    assert_eq!(app.status().await["budget_bytes"], 100 * MIB);
    let first =
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=2").await, StatusCode::OK)
            .await;
    assert_eq!(first["status"], "started");
    let second =
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=1").await, StatusCode::OK)
            .await;
    assert_eq!(second["status"], "queued", "60 + 60 MiB does not fit 100: {second}");
    // A queued task holds no memory.
    assert_eq!(app.status().await["reserved_bytes"], 60 * MIB);

    let refused =
        json(app.post("/process?cpu_intensity=1&memory_size=101&duration=1").await, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    assert_eq!(refused["field"], "memory_size", "{refused}");
    assert_eq!(refused["received"], "101");
    assert!(refused["allowed"].as_str().is_some_and(|a| a.contains("0 to 100")), "names the budget: {refused}");

    let done = app.wait_for_status("both tasks to complete", |s| s["totals"]["completed"] == 2).await;
    let second_report =
        done["recent"].as_array().expect("recent").iter().find(|t| t["task_id"] == second["task_id"]).cloned();
    let wait = second_report.expect("second completed")["queue_wait_seconds"].as_f64().expect("wait");
    assert!(wait >= 1.8, "the second waited for the first's memory: {wait}");
    assert_eq!(done["reserved_bytes"], 0, "every reservation is returned: {done}");
}

#[tokio::test]
async fn retained_memory_counts_against_the_budget_until_cleanup() {
    let app = spawn_app(&["--memory-budget-mb", "50"]).await;
    let kept =
        json(app.post("/process?cpu_intensity=1&memory_size=40&duration=1&retain=true").await, StatusCode::OK).await;
    assert_eq!(kept["retained"], true);
    let status = app.status().await;
    assert_eq!(status["retained_bytes"], 40 * MIB);
    assert_eq!(status["tasks_running"]["memory"], 0, "retained memory is not a running task");
    assert_eq!(status["current_status"]["memory_store_objects"], 1, "{status}");

    // Nothing running will free the memory, so queueing would wait forever: refused, pointing at cleanup.
    let (refused, retry_after) =
        expect_overload(&app, "/process?cpu_intensity=1&memory_size=20&duration=1", "memory_budget").await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("cleanup")), "{refused}");
    assert_eq!(retry_after, 30);

    let freed = json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    assert_eq!(freed["objects_freed"], 1);
    assert_eq!(freed["bytes_freed"], 40 * MIB);
    assert_eq!(app.status().await["retained_bytes"], 0);
    let after = json(app.post("/process?cpu_intensity=1&memory_size=20&duration=1").await, StatusCode::OK).await;
    assert_eq!(after["status"], "completed");

    let again = json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    assert_eq!((again["objects_freed"].as_u64(), again["bytes_freed"].as_u64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn a_sync_request_waits_in_the_backlog_and_its_latency_includes_the_wait() {
    let app = spawn_app(&["--max-tasks", "1", "--cpu-capacity", "1"]).await;
    json(app.post("/process?async_mode=true&cpu_intensity=5&memory_size=0&duration=2").await, StatusCode::OK).await;
    let sent = tokio::time::Instant::now();
    let report = json(app.post("/process?cpu_intensity=5&memory_size=0&duration=1").await, StatusCode::OK).await;
    let latency = sent.elapsed().as_secs_f64();
    let wait = report["queue_wait_seconds"].as_f64().expect("wait");
    assert!((1.8..=2.5).contains(&wait), "{report}");
    assert!(latency >= wait + 0.95, "latency {latency} covers the wait and the run: {report}");
    assert_eq!(report["status"], "completed");
}

/// Admission forecasts that a task with `retain=true` keeps its memory after it finishes: a task that could then never
/// fit is refused at once (schemathesis found one admitted on the memory coming back, queued for ever with nothing
/// running, holding back every task behind it until a cleanup).
#[tokio::test]
async fn a_task_that_what_runs_ahead_will_retain_leaves_no_room_for_is_refused_at_admission() {
    let app = spawn_app(&["--memory-budget-mb", "100", "--max-tasks", "1"]).await;
    let keeper = "/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=2&retain=true";
    json(app.post(keeper).await, StatusCode::OK).await;
    // 60 MiB more never fits beside the keeper's 60 once it is kept: refused now, not accepted and let go later.
    let (refused, retry_after) =
        expect_overload(&app, "/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=1", "memory_budget")
            .await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("cleanup")), "{refused}");
    assert_eq!(retry_after, 30);
    expect_overload(&app, "/process?cpu_intensity=1&memory_size=60&duration=1", "memory_budget").await;
    // What fits beside the kept memory still queues behind the keeper and completes.
    let behind = json(app.post("/process?cpu_intensity=1&memory_size=30&duration=1").await, StatusCode::OK).await;
    assert_eq!(behind["status"], "completed", "{behind}");
    // After a cleanup the same request is accepted.
    json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    let after = json(app.post("/process?cpu_intensity=1&memory_size=60&duration=1").await, StatusCode::OK).await;
    assert_eq!(after["status"], "completed", "{after}");
}
