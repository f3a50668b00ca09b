//! Sync and async work: reports, status while running, completion and history.

use reqwest::StatusCode;

use crate::helpers::{json, spawn_app, MIB};

#[tokio::test]
async fn sync_work_reports_what_it_did() {
    let app = spawn_app(&[]).await;
    let report = json(app.post("/process?cpu_intensity=2&memory_size=8&duration=1").await, StatusCode::OK).await;
    assert_eq!(report["status"], "completed");
    assert_eq!(report["mode"], "sync");
    assert_eq!(report["allocated_bytes"], 8 * MIB);
    assert!(report["task_id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(report["wall_seconds"].as_f64().is_some_and(|s| s >= 1.0), "{report}");
    assert!(report["cpu_seconds"].as_f64().is_some_and(|s| s > 0.0), "{report}");
    let status = app.status().await;
    assert_eq!(status["totals"]["completed"], 1);
    assert_eq!(status["recent"][0]["task_id"], report["task_id"]);
    // The id a sync report names can be looked up (schemathesis' stateful check found it could not).
    let id = report["task_id"].as_str().expect("id");
    let record = json(app.get(&format!("/process/{id}")).await, StatusCode::OK).await;
    assert_eq!((record["status"].as_str(), record["mode"].as_str()), (Some("completed"), Some("sync")), "{record}");
    assert_eq!(record["queue"], "memory");
    assert!(record["pod"].as_str().is_some(), "{record}");
}

#[tokio::test]
async fn an_async_task_is_followed_from_acceptance_to_its_end() {
    let app = spawn_app(&[]).await;
    let accepted =
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1").await, StatusCode::OK).await;
    let id = accepted["task_id"].as_str().expect("id").to_owned();
    let running = json(app.get(&format!("/process/{id}")).await, StatusCode::OK).await;
    assert_eq!(running["status"], "running", "{running}");
    assert!(running["started_at"].is_string() && running["finished_at"].is_null(), "{running}");
    app.wait_for_status("the task to complete", |s| s["totals"]["completed"] == 1).await;
    let done = json(app.get(&format!("/process/{id}")).await, StatusCode::OK).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (sojourn, wall) =
        (done["sojourn_seconds"].as_f64().expect("sojourn"), done["wall_seconds"].as_f64().expect("wall"));
    assert!(sojourn >= wall && wall >= 1.0, "{done}");
    let unknown = app.get("/process/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // In batches: what this pod holds in the order asked, the rest listed apart (another pod may hold it).
    let stranger = "00000000-0000-4000-8000-000000000000";
    let both = json(app.get(&format!("/process/results?task_ids={stranger},{id}")).await, StatusCode::OK).await;
    assert_eq!(both["records"].as_array().map(Vec::len), Some(1), "{both}");
    assert_eq!(
        (both["records"][0]["task_id"].as_str(), both["records"][0]["status"].as_str()),
        (Some(&*id), Some("completed"))
    );
    assert!(both["records"][0]["pod"].is_string(), "{both}");
    assert_eq!(both["unknown"], serde_json::json!([stranger]));
    let simple = stranger.replace('-', "");
    for bad in [
        "",
        "?task_ids=",
        "?task_ids=nope",
        &format!("?task_ids={simple}"),
        &format!("?task_ids={stranger},%20{id}"),
        &format!("?task_ids={}", vec![stranger; 101].join(",")),
    ] {
        let refused = json(app.get(&format!("/process/results{bad}")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(refused["field"], "task_ids", "{bad}: {refused}");
        assert!(refused["allowed"].as_str().is_some_and(|a| a.contains("1 to 100")), "{refused}");
    }
}

#[tokio::test]
async fn async_work_is_visible_while_running_and_after() {
    let app = spawn_app(&[]).await;
    let started =
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=4&duration=2").await, StatusCode::OK).await;
    assert_eq!(started["status"], "started");
    assert!(started["estimated_completion"].as_str().is_some(), "{started}");
    let id = started["task_id"].clone();

    let running = app.status().await;
    assert_eq!(running["totals"]["started"], 1);
    assert_eq!(running["totals"]["completed"], 0, "a 2 s task cannot be done yet: {running}");

    let done = app.wait_for_status("the async task to complete", |s| s["totals"]["completed"] == 1).await;
    let entry =
        done["recent"].as_array().expect("recent").iter().find(|t| t["task_id"] == id).expect("task in recent").clone();
    assert_eq!(entry["status"], "completed");
    assert_eq!(entry["mode"], "async");
    assert_eq!(entry["allocated_bytes"], 4 * MIB);
    assert_eq!(done["tasks_running"]["cpu"], 0);
    assert_eq!(done["tasks_running"]["memory"], 0);
}

#[tokio::test]
async fn running_tasks_are_counted_by_kind() {
    let app = spawn_app(&[]).await;
    json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=3").await, StatusCode::OK).await;
    json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=2&duration=3").await, StatusCode::OK).await;
    let status = app.wait_for_status("both tasks to be running", |s| s["tasks_running"]["cpu"] == 2).await;
    assert_eq!(status["tasks_running"]["memory"], 1, "only one task holds memory: {status}");
}

#[tokio::test]
async fn recent_keeps_the_last_five() {
    let app = spawn_app(&[]).await;
    let submit = || async {
        json(app.post("/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1").await, StatusCode::OK).await
            ["task_id"]
            .clone()
    };
    // The first finishes before the other five start, so it is the one that must fall out.
    let first = submit().await;
    app.wait_for_status("the first task to complete", |s| s["totals"]["completed"] == 1).await;
    let mut last_five = Vec::new();
    for _ in 0..5 {
        last_five.push(submit().await);
    }
    let status = app.wait_for_status("six tasks to complete", |s| s["totals"]["completed"] == 6).await;
    let recent: Vec<serde_json::Value> =
        status["recent"].as_array().expect("recent").iter().map(|t| t["task_id"].clone()).collect();
    assert_eq!(recent.len(), 5);
    assert!(!recent.contains(&first), "the oldest task fell out: {recent:?}");
    assert!(last_five.iter().all(|id| recent.contains(id)), "the five newest are kept: {recent:?} vs {last_five:?}");
}
