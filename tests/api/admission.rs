//! Admission control: the task cap and the memory budget refuse with 503 + Retry-After and lose nothing accepted.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{json, spawn_app, TestApp, MIB};

async fn expect_overload(app: &TestApp, query: &str, reason: &str) -> Value {
    let response = app.post(query).await;
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().expect("ascii").to_owned());
    let body = json(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let seconds: u64 = retry_after.expect("Retry-After header").parse().expect("Retry-After in seconds");
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["retry_after_seconds"], seconds);
    body
}

#[tokio::test]
async fn task_cap_refuses_the_extra_task_and_keeps_the_accepted_ones() {
    let app = spawn_app(&["--max-tasks", "2"]).await;
    let task = "/process?async_mode=true&cpu_intensity=1&memory_size=1&duration=2";
    let mut accepted = Vec::new();
    for _ in 0..2 {
        let body = json(app.post(task).await, StatusCode::ACCEPTED).await;
        accepted.push(body["task_id"].as_str().expect("task_id").to_owned());
    }
    expect_overload(&app, task, "task_cap").await;
    // A sync request is refused the same way.
    expect_overload(&app, "/process?cpu_intensity=1&memory_size=0&duration=1", "task_cap").await;

    let status = app.wait_for_status("both accepted tasks to complete", |s| s["totals"]["completed"] == 2).await;
    assert_eq!(status["totals"]["started"], 2);
    assert_eq!(status["totals"]["rejected"], 2);
    assert_eq!(status["totals"]["cancelled"], 0);
    let finished: Vec<&str> =
        status["recent"].as_array().expect("recent").iter().filter_map(|t| t["task_id"].as_str()).collect();
    for id in &accepted {
        assert!(finished.contains(&id.as_str()), "accepted task {id} must complete: {status}");
    }
    // Slots are free again.
    assert_eq!(app.post(task).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn memory_budget_refuses_what_would_not_fit() {
    let app = spawn_app(&["--memory-budget-mb", "100"]).await;
    let status = app.status().await;
    assert_eq!(status["budget_bytes"], 100 * MIB);

    let first = json(
        app.post("/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=2").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let refused =
        expect_overload(&app, "/process?async_mode=true&cpu_intensity=1&memory_size=60&duration=1", "memory_budget")
            .await;
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("budget")), "{refused}");
    // What still fits is accepted.
    let small = json(app.post("/process?cpu_intensity=1&memory_size=30&duration=1").await, StatusCode::OK).await;
    assert_eq!(small["allocated_bytes"], 30 * MIB);

    let status = app.wait_for_status("the first task to complete", |s| s["totals"]["completed"] == 2).await;
    let ids: Vec<&Value> = status["recent"].as_array().expect("recent").iter().map(|t| &t["task_id"]).collect();
    assert!(ids.contains(&&first["task_id"]), "{status}");
    assert_eq!(status["totals"]["rejected"], 1);
    assert_eq!(status["reserved_bytes"], 0, "every reservation is returned: {status}");
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

    expect_overload(&app, "/process?cpu_intensity=1&memory_size=20&duration=1", "memory_budget").await;

    let freed = json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    assert_eq!(freed["objects_freed"], 1);
    assert_eq!(freed["bytes_freed"], 40 * MIB);
    assert_eq!(app.status().await["retained_bytes"], 0);
    let after = json(app.post("/process?cpu_intensity=1&memory_size=20&duration=1").await, StatusCode::OK).await;
    assert_eq!(after["status"], "completed");

    let again = json(app.delete("/process/cleanup").await, StatusCode::OK).await;
    assert_eq!((again["objects_freed"].as_u64(), again["bytes_freed"].as_u64()), (Some(0), Some(0)));
}
