//! SIGTERM: readiness turns 503 at once and work is still taken for the drain delay; when it ends, queued async tasks
//! are cancelled and counted, queued sync requests answered 503, new connections refused; the in-flight sync request
//! completes, background work is cancelled, exit 0.

use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::StatusCode;
use serde_json::Value;

use crate::consumer::ConsumerProcess;

async fn status(client: &reqwest::Client, address: &str) -> Value {
    client.get(format!("{address}/process/status")).send().await.expect("status").json().await.expect("status JSON")
}

#[tokio::test]
async fn sigterm_drains_in_flight_work_and_exits_zero() {
    let mut consumer =
        ConsumerProcess::start(&["--drain-delay-secs", "2", "--shutdown-timeout-secs", "15", "--max-tasks", "2"]);
    // A fresh connection per request: a keep-alive socket would outlive the listener.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let address = consumer.address.clone();

    let background = client
        .post(format!("{address}/process?async_mode=true&cpu_intensity=1&memory_size=1&duration=60"))
        .send()
        .await
        .expect("async");
    assert_eq!(background.status(), StatusCode::OK);
    let background_id = background.json::<Value>().await.expect("async body")["task_id"].clone();
    let in_flight = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { client.post(format!("{address}/process?cpu_intensity=2&memory_size=1&duration=4")).send().await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&client, &address).await["tasks_running"]["cpu"] != 2 {
        assert!(tokio::time::Instant::now() < deadline, "both tasks should be running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Both slots are taken: two async tasks and one sync request wait in the backlog.
    let mut queued_ids = Vec::new();
    for _ in 0..2 {
        let queued = client
            .post(format!("{address}/process?async_mode=true&cpu_intensity=1&memory_size=1&duration=1"))
            .send()
            .await
            .expect("queued async");
        let body: Value = queued.json().await.expect("queued body");
        assert_eq!(body["status"], "queued", "{body}");
        queued_ids.push(body["task_id"].clone());
    }
    let queued_sync = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { client.post(format!("{address}/process?cpu_intensity=1&memory_size=1&duration=1")).send().await }
    });
    while status(&client, &address).await["queue"]["length"] != 3 {
        assert!(tokio::time::Instant::now() < deadline, "three tasks should be queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before = client.get(format!("{address}/health")).send().await.expect("health");
    assert!(before.headers().get("connection").is_none_or(|v| v != "close"), "keep-alive until the drain");
    consumer.signal(Signal::SIGTERM);
    consumer.wait_for_event("shutdown signal: readiness is now 503, draining", Duration::from_secs(5));
    let ready =
        client.get(format!("{address}/ready")).send().await.expect("the listener still serves during the drain delay");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.expect("JSON")["status"], "draining");
    let health = client.get(format!("{address}/health")).send().await.expect("health during drain");
    assert_eq!(health.status(), StatusCode::OK, "liveness stays up while draining");
    let connection = health.headers().get("connection").map(|v| v.to_str().expect("ASCII").to_owned());
    assert_eq!(connection.as_deref(), Some("close"), "a keep-alive client is told to reconnect elsewhere");

    // Requests keep arriving until the endpoints update: the drain delay still takes work (it queues here).
    let new_work = client
        .post(format!("{address}/process?async_mode=true&cpu_intensity=1&memory_size=1&duration=1"))
        .send()
        .await
        .expect("new work during the drain delay");
    assert_eq!(new_work.status(), StatusCode::OK, "work is taken during the drain delay");
    let new_work: Value = new_work.json().await.expect("JSON");
    assert_eq!(new_work["status"], "queued", "{new_work}");
    queued_ids.push(new_work["task_id"].clone());

    // When the delay ends the queue is let go: the queued sync request is answered 503, the listener closes.
    let refused = queued_sync.await.expect("join").expect("the queued sync request is answered before the close");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().expect("ASCII").parse().expect("seconds");
    let refused: Value = refused.json().await.expect("JSON");
    assert_eq!(refused["reason"], "draining");
    assert_eq!(refused["retry_after_seconds"].as_u64(), Some(retry_after), "header and body agree");
    let closed_by = tokio::time::Instant::now() + Duration::from_secs(2);
    while client.get(format!("{address}/health")).send().await.is_ok() {
        assert!(tokio::time::Instant::now() < closed_by, "new connections are refused once the drain delay is over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let response = in_flight.await.expect("join").expect("the in-flight request completes");
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.expect("report");
    assert_eq!(report["status"], "completed");

    let exit = consumer.wait_exit(Duration::from_secs(20)).expect("the consumer exits within the shutdown timeout");
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");

    let finished = consumer.events("task finished");
    let cancelled =
        finished.iter().find(|e| e["task_id"] == background_id).expect("the background task reports its end");
    assert_eq!(cancelled["status"], "cancelled", "background work is cancelled on shutdown: {cancelled}");
    for id in &queued_ids {
        let ended = finished.iter().find(|e| &e["task_id"] == id).expect("each queued task logs its end");
        assert_eq!(ended["status"], "cancelled", "{ended}");
    }
    let cancelled = finished.iter().filter(|e| e["status"] == "cancelled").count();
    assert_eq!(cancelled, 5, "three queued async, one queued sync and the background task, each counted once");
    assert!(
        consumer.events("shutdown timeout reached; exiting with work unfinished").is_empty(),
        "drained before the timeout"
    );
    assert_eq!(consumer.events("drained; exiting").len(), 1);
}

#[tokio::test]
async fn sigint_drains_the_same_way() {
    let mut consumer = ConsumerProcess::start(&["--drain-delay-secs", "1", "--shutdown-timeout-secs", "15"]);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let address = consumer.address.clone();
    let in_flight = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { client.post(format!("{address}/process?cpu_intensity=1&memory_size=1&duration=2")).send().await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&client, &address).await["tasks_running"]["cpu"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the sync task should be running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    consumer.signal(Signal::SIGINT);
    consumer.wait_for_event("SIGINT received", Duration::from_secs(5));
    let ready = client.get(format!("{address}/ready")).send().await.expect("ready during the drain delay");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "readiness turns 503 at once, as on SIGTERM");
    let response = in_flight.await.expect("join").expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK, "the in-flight sync work completes");
    let exit = consumer.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(exit.code(), Some(0));
    let finished = consumer.events("task finished");
    assert!(finished.iter().any(|e| e["status"] == "completed"), "the task finished, not cancelled: {finished:?}");
    assert_eq!(consumer.events("drained; exiting").len(), 1);
}

#[tokio::test]
async fn work_outlasting_the_shutdown_timeout_is_cut_off_on_time() {
    let mut consumer = ConsumerProcess::start(&["--drain-delay-secs", "1", "--shutdown-timeout-secs", "4"]);
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let address = consumer.address.clone();
    let in_flight = tokio::spawn({
        let (client, address) = (client.clone(), address.clone());
        async move { client.post(format!("{address}/process?cpu_intensity=1&memory_size=1&duration=30")).send().await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&client, &address).await["tasks_running"]["cpu"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the sync task should be running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let signalled = std::time::Instant::now();
    consumer.signal(Signal::SIGTERM);
    consumer.wait_for_event(
        "drain delay over: closing the listener; running work may finish until the shutdown deadline",
        Duration::from_secs(5),
    );
    let port = address.rsplit(':').next().expect("port").to_owned();
    // The line is written just before the listener closes: refusals follow within a moment, and then stay.
    let closing = std::time::Instant::now();
    while tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.is_ok() {
        assert!(closing.elapsed() < Duration::from_secs(1), "the listener still accepts 1 s after the drain delay");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await;
    assert!(refused.is_err(), "after the drain delay the listener is closed: new connections are refused");

    let exit = consumer.wait_exit(Duration::from_secs(10)).expect("exits");
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0));
    // Found by this test: the sync task was not cancelled, and the runtime waited 30 s for its CPU thread.
    assert!(took < Duration::from_millis(5500), "exited within the 4 s shutdown timeout (plus scheduling): {took:?}");
    let answered = in_flight.await.expect("join").expect("the cut-off request is answered, not dropped");
    let report: Value = answered.json().await.expect("a task report");
    assert_eq!(report["status"], "cancelled", "{report}");
    let finished = consumer.events("task finished");
    assert!(finished.iter().any(|e| e["status"] == "cancelled"), "logged as cancelled: {finished:?}");
    // actix's own graceful stop may still be closing connections at the deadline, which logs the timeout line.
    let timeout_lines = consumer.events("shutdown timeout reached; exiting with work unfinished").len();
    println!(
        "30 s of sync work at SIGTERM: answered `cancelled`, exit 0 after {took:?} (timeout 4 s; timeout lines: {timeout_lines})"
    );
}
