//! The shared backlog with the real binaries and a real Redis: work taken by whichever replica has room, and no
//! accepted task lost to a crash, a drain or a Redis restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::consumer::ConsumerProcess;
use surge_harness::redis::RedisServer;

/// Tasks of 0.9 core: two run at once on a one-core replica (overcommit 2), the rest wait.
const TASK: &str = "async_mode=true&cpu_intensity=9&memory_size=10";

fn replica(redis: &RedisServer, name: &str, env: &[(&str, &str)]) -> ConsumerProcess {
    replica_on(&redis.url(), name, env)
}

/// A one-core replica with simulated work on the shared backlog at `url`, named `name` (its pod).
fn replica_on(url: &str, name: &str, env: &[(&str, &str)]) -> ConsumerProcess {
    let mut vars = vec![
        ("QUEUE_URL", url.to_owned()),
        ("POD_NAME", name.to_owned()),
        ("CPU_WORK", "simulate".to_owned()),
        ("CPU_CAPACITY", "1".to_owned()),
        ("MEMORY_BUDGET_MB", "384".to_owned()),
    ];
    vars.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    ConsumerProcess::start_with_env(&[], &vars)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client")
}

async fn accept(client: &reqwest::Client, address: &str, query: &str) -> String {
    let response = client.post(format!("{address}/process?{query}")).send().await.expect("POST /process");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "queued", "{body}");
    body["task_id"].as_str().expect("task_id").to_owned()
}

/// `count` tasks of `query` accepted by the replica at `address`, their ids in order.
async fn accept_all(client: &reqwest::Client, address: &str, count: usize, query: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(accept(client, address, query).await);
    }
    ids
}

async fn record(client: &reqwest::Client, address: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client.get(format!("{address}/process/{id}")).send().await.expect("GET /process/{id}");
        // 503 while the replica reconnects to a Redis that just came back; anything else is final.
        if response.status() != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            assert_eq!(response.status(), StatusCode::OK, "{id}");
            return response.json().await.expect("json");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every task's record (read from `address` in batches through `GET /process/results`) says completed;
/// returns the records in the order of `ids`.
async fn all_completed(client: &reqwest::Client, address: &str, ids: &[String], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let mut records = Vec::new();
        for batch in ids.chunks(100) {
            let url = format!("{address}/process/results?task_ids={}", batch.join(","));
            let response = client.get(url).send().await.expect("GET /process/results");
            // 503 while the replica reconnects to a Redis that just came back.
            if response.status() == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
                records.clear();
                break;
            }
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["unknown"], serde_json::json!([]), "any replica knows every shared task: {body}");
            records.extend(body["records"].as_array().expect("records").iter().cloned());
        }
        let order: Vec<&str> = records.iter().filter_map(|r| r["task_id"].as_str()).collect();
        if order.len() == ids.len() {
            assert_eq!(order, ids, "records come in the order asked");
            if records.iter().all(|r| r["status"] == "completed") {
                return records;
            }
        }
        let states: Vec<String> =
            records.iter().map(|r| format!("{}@{}", r["status"], r["pod"].as_str().unwrap_or("-"))).collect();
        assert!(Instant::now() < deadline, "not every task completed within {limit:?}: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(client: &reqwest::Client, address: &str, series: &str) -> f64 {
    let text = client.get(format!("{address}/metrics")).send().await.expect("scrape").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series}"))
}

async fn status(client: &reqwest::Client, address: &str) -> Value {
    client.get(format!("{address}/process/status")).send().await.expect("status").json().await.expect("json")
}

/// Waits until the replica runs `tasks` tasks (so it holds work when the test kills or drains it).
async fn running(client: &reqwest::Client, address: &str, tasks: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(client, address).await["tasks_running"]["cpu"] != tasks {
        assert!(Instant::now() < deadline, "{address} never ran {tasks} tasks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn work_accepted_by_one_replica_is_run_by_whichever_has_room_and_read_back_from_any() {
    let redis = RedisServer::start().expect("redis starts");
    let (a, b) = (replica(&redis, "a", &[]), replica(&redis, "b", &[]));
    let client = client();
    let ids = accept_all(&client, &a.address, 8, &format!("{TASK}&duration=1")).await;
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(30)).await;
    let on_b = records.iter().filter(|r| r["pod"] == "b").count();
    assert!((2..=6).contains(&on_b), "b, never asked, ran {on_b} of 8 accepted by a");
    for r in &records {
        assert_eq!(r["queue"], "redis");
        assert_eq!(r["deliveries"], 1, "{r}");
        let sojourn = r["sojourn_seconds"].as_f64().expect("sojourn");
        // The record's times are Redis milliseconds; the wall time is the replica's own clock.
        assert!(sojourn + 0.002 >= r["wall_seconds"].as_f64().expect("wall"), "{r}");
    }
    let delivered = metric(&client, &a.address, "consumer_queue_deliveries_total").await
        + metric(&client, &b.address, "consumer_queue_deliveries_total").await;
    assert_eq!(delivered, 8.0);
    let sojourns = metric(&client, &a.address, "consumer_task_sojourn_seconds_count{queue=\"redis\"}").await
        + metric(&client, &b.address, "consumer_task_sojourn_seconds_count{queue=\"redis\"}").await;
    assert_eq!(sojourns, 8.0);
    let shared = status(&client, &b.address).await;
    assert_eq!(shared["queue_mode"], "redis");
    assert_eq!(shared["shared"]["backlog"], 0, "{shared}");
    // Unknown and malformed ids.
    let missing = client.get(format!("{}/process/{}", b.address, uuid_like())).send().await.expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let malformed = client.get(format!("{}/process/not-a-uuid", b.address)).send().await.expect("get");
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = malformed.json().await.expect("json");
    assert_eq!(body["field"], "task_id");
    // A batch with an unknown id lists it apart; one over 100 ids is refused naming the field.
    let url = format!("{}/process/results?task_ids={},{}", b.address, ids[0], uuid_like());
    let mixed: Value = client.get(url).send().await.expect("get").json().await.expect("json");
    assert_eq!(mixed["records"][0]["task_id"], ids[0].as_str(), "{mixed}");
    assert_eq!(mixed["unknown"], serde_json::json!([uuid_like()]), "{mixed}");
    let many = vec![uuid_like(); 101].join(",");
    let refused = client.get(format!("{}/process/results?task_ids={many}", b.address)).send().await.expect("get");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json::<Value>().await.expect("json")["field"], "task_ids");
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test]
async fn kill_9_of_a_replica_running_tasks_loses_none_they_finish_on_the_other() {
    let redis = RedisServer::start().expect("redis starts");
    // Claimed once nobody renewed them for 2 s.
    let env = [("LEASE_SECS", "2")];
    let mut a = replica(&redis, "a", &env);
    let client = client();
    let ids = accept_all(&client, &a.address, 8, &format!("{TASK}&duration=2")).await;
    // a runs two; start b only once a holds them, so a dies holding work.
    running(&client, &a.address, 2).await;
    let b = replica(&redis, "b", &env);
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("a is dead");
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(60)).await;
    assert!(records.iter().all(|r| r["pod"] == "b"), "every task finished on b: a died before finishing any");
    let claimed = metric(&client, &b.address, "consumer_queue_claims_total{reason=\"lease_lapsed\"}").await;
    assert_eq!(claimed, 2.0, "b claimed the two a was running");
    let redelivered: Vec<&Value> = records.iter().filter(|r| r["deliveries"] == 2).collect();
    assert_eq!(redelivered.len(), 2, "the two a ran were delivered twice, the rest once: {records:?}");
    assert!(redelivered.iter().all(|r| r["reruns"] == 1), "each started again once: {redelivered:?}");
    // a's runs started and never ended: b's are duplicate runs, counted and logged with both holders.
    assert_eq!(metric(&client, &b.address, "consumer_queue_duplicates_total{when=\"ran_twice\"}").await, 2.0);
    let again = b.events("running a task again: an earlier run started and never ended");
    assert_eq!(again.len(), 2, "{:?}", b.lines());
    assert!(again.iter().all(|e| e["earlier_holder"].as_str().is_some_and(|h| h.starts_with("a/"))), "{again:?}");
}

#[tokio::test]
async fn sigterm_hands_back_tasks_longer_than_the_shutdown_timeout_and_they_finish_elsewhere() {
    let redis = RedisServer::start().expect("redis starts");
    let mut a = replica(&redis, "a", &[("SHUTDOWN_TIMEOUT_SECS", "3"), ("DRAIN_DELAY_SECS", "1")]);
    let client = client();
    let ids = accept_all(&client, &a.address, 2, &format!("{TASK}&duration=4")).await;
    running(&client, &a.address, 2).await;
    let b = replica(&redis, "b", &[]);
    a.signal(nix::sys::signal::Signal::SIGTERM);
    a.wait_exit(Duration::from_secs(10)).expect("a exits within its shutdown timeout");
    assert_eq!(a.events("handed an unfinished task back to the shared backlog").len(), 2, "{:?}", a.lines());
    assert!(a.events("task finished").iter().all(|e| e["status"] == "handed_back"), "{:?}", a.lines());
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(30)).await;
    assert!(records.iter().all(|r| r["pod"] == "b" && r["deliveries"] == 1), "a hand-back is not a crash: {records:?}");
    let b_status = status(&client, &b.address).await;
    assert_eq!(b_status["totals"]["cancelled"], 0, "{b_status}");
}

#[tokio::test]
async fn a_redis_restart_loses_no_accepted_task_and_async_is_503_with_retry_after_meanwhile() {
    let mut redis = RedisServer::start().expect("redis starts");
    let a = replica(&redis, "a", &[]);
    let client = client();
    let ids = accept_all(&client, &a.address, 6, &format!("{TASK}&duration=2")).await;
    redis.stop();
    // The backlog cannot be read: NaN, so the ScaledObject's max() fails and KEDA's fallback holds the replicas.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metric(&client, &a.address, "consumer_queue_backlog").await.is_nan() {
        assert!(Instant::now() < deadline, "the backlog gauge kept a value while Redis was away");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = client.post(format!("{}/process?{TASK}&duration=1", a.address)).send().await.expect("post");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["reason"], "queue_unavailable", "{body}");
    // Sync work does not need Redis, and the pod stays ready (every replica would otherwise leave the Service).
    let sync = client.post(format!("{}/process?cpu_intensity=1&memory_size=0&duration=1", a.address)).send();
    assert_eq!(sync.await.expect("sync").status(), StatusCode::OK);
    let ready = client.get(format!("{}/ready", a.address)).send().await.expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);
    redis.resume().expect("redis starts again");
    all_completed(&client, &a.address, &ids, Duration::from_secs(60)).await;
    assert!(metric(&client, &a.address, "consumer_queue_errors_total").await >= 1.0);
    let backlog = metric(&client, &a.address, "consumer_queue_backlog").await;
    assert!(backlog.is_finite(), "a value again once Redis is back: {backlog}");
}

#[tokio::test]
async fn a_replica_started_while_redis_is_away_serves_sync_refuses_async_then_works_when_it_returns() {
    let mut redis = RedisServer::unstarted().expect("a port for redis");
    let a = replica(&redis, "a", &[]);
    let client = client();
    let sync = client.post(format!("{}/process?cpu_intensity=1&memory_size=0&duration=1", a.address)).send();
    assert_eq!(sync.await.expect("sync").status(), StatusCode::OK);
    let refused = client.post(format!("{}/process?{TASK}&duration=1", a.address)).send().await.expect("post");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    redis.resume().expect("redis starts again");
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let response = client.post(format!("{}/process?{TASK}&duration=1", a.address)).send().await.expect("post");
        if response.status() == StatusCode::OK {
            break response.json::<Value>().await.expect("json")["task_id"].as_str().expect("id").to_owned();
        }
        assert!(Instant::now() < deadline, "async never recovered after Redis came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    all_completed(&client, &a.address, &[id], Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_task_whose_replica_keeps_dying_reaches_the_dead_letter_stream() {
    let redis = RedisServer::start().expect("redis starts");
    // A dead holder's task is claimed 2 s after its last renewal.
    let env = [("MAX_DELIVERIES", "2"), ("LEASE_SECS", "2")];
    let client = client();
    let mut holder = replica(&redis, "r0", &env);
    let id = accept(&client, &holder.address, &format!("{TASK}&duration=2")).await;
    for round in 1..=2 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while record(&client, &holder.address, &id).await["deliveries"] != round {
            assert!(Instant::now() < deadline, "delivery {round} never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let next = replica(&redis, &format!("r{round}"), &env);
        holder.signal(nix::sys::signal::Signal::SIGKILL);
        holder.wait_exit(Duration::from_secs(5)).expect("killed");
        holder = next;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let r = record(&client, &holder.address, &id).await;
        if r["status"] == "failed" {
            break r;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failed["error"].as_str().expect("error").contains("after 2 deliveries"), "{failed}");
    assert_eq!(status(&client, &holder.address).await["shared"]["dead_letters"], 1);
    assert_eq!(metric(&client, &holder.address, "consumer_queue_dead_letters_total").await, 1.0);
    assert_eq!(redis.cli(&["XLEN", "surge:dead"]).trim(), "1");
}

#[tokio::test]
async fn a_task_costs_four_round_trips_and_these_commands() {
    let redis = RedisServer::start().expect("redis starts");
    let a = replica(&redis, "a", &[]);
    let client = client();
    // Let the puller settle (group created, first reads), then count only the tasks' own life.
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.cli(&["CONFIG", "RESETSTAT"]);
    const TASKS: u64 = 20;
    let mut ids = Vec::new();
    for _ in 0..TASKS {
        ids.push(accept(&client, &a.address, "async_mode=true&cpu_intensity=1&memory_size=0&duration=1").await);
    }
    all_completed(&client, &a.address, &ids, Duration::from_secs(30)).await;
    let calls = redis.command_calls();
    let count = |name: &str| calls.get(name).copied().unwrap_or(0);
    eprintln!("redis commands for {TASKS} tasks (with idle reads, claims and GETs of records): {calls:?}");
    // Exactly once per task: enqueue's XADD, finish's XACK and XDEL; HSET at enqueue, start and finish.
    assert_eq!(count("xadd"), TASKS);
    assert_eq!(count("xack"), TASKS);
    assert_eq!(count("xdel"), TASKS);
    assert_eq!(count("hset"), 3 * TASKS);
    assert_eq!(count("hincrby"), TASKS);
    // Round trips of a task: enqueue, read, start and finish (evalsha ×3 + xreadgroup); the puller's idle reads
    // and once-a-second claim scans add a few over the run.
    let scripts = count("evalsha") + count("eval");
    assert!((3 * TASKS..=3 * TASKS + 40).contains(&scripts), "{scripts} script calls");
    // The managed-Redis ACL allows every command the consumer sent, its scripts' included.
    let allowed: Vec<&str> = CONSUMER_ACL.split_whitespace().filter_map(|rule| rule.strip_prefix('+')).collect();
    for name in calls.keys().filter(|name| *name != "config|resetstat") {
        assert!(allowed.contains(&name.as_str()), "{name} is missing from the consumer's ACL: {allowed:?}");
    }
}

/// What KEDA's redis-streams scaler reads with no consumer group (XLEN, surge_keda::redis_streams) is the backlog the
/// consumers export: entries are deleted once acknowledged, so the stream holds exactly the waiting and the handed out.
#[tokio::test]
async fn xlen_of_the_stream_is_the_exported_backlog_waiting_plus_handed_out() {
    let redis = RedisServer::start().expect("redis starts");
    let a = replica(&redis, "a", &[]);
    let client = client();
    for _ in 0..6 {
        accept(&client, &a.address, &format!("{TASK}&duration=5")).await;
    }
    // The gauge is refreshed once a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let xlen: f64 = redis.cli(&["XLEN", "surge:tasks"]).trim().parse().expect("XLEN");
    let shared = status(&client, &a.address).await["shared"].clone();
    assert_eq!(xlen, 6.0, "{shared}");
    assert_eq!(metric(&client, &a.address, "consumer_queue_backlog").await, xlen);
    assert_eq!(shared["handed_out"], 2, "two run on a one-core replica, four wait: {shared}");
}

/// Seconds between the record's start and `at` (both on this machine's clock).
fn started_after(record: &Value, at: chrono::DateTime<chrono::Utc>) -> f64 {
    let started: chrono::DateTime<chrono::Utc> =
        record["started_at"].as_str().and_then(|t| t.parse().ok()).expect("started_at");
    (started - at).num_milliseconds() as f64 / 1000.0
}

/// A container restarted in place (OOM kill, failed liveness probe) keeps its pod's name and has no other replica
/// beside it: what the killed process held runs again once its lease lapses, claimed by the new process.
#[tokio::test]
async fn a_container_restarted_under_the_same_pod_name_takes_back_what_it_held_within_30_s() {
    let redis = RedisServer::start().expect("redis starts");
    let client = client();
    let mut a = replica(&redis, "a", &[]);
    let ids = accept_all(&client, &a.address, 20, &format!("{TASK}&memory_size=50&duration=5")).await;
    running(&client, &a.address, 2).await;
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("a is dead");
    let killed = chrono::Utc::now();
    let again = replica(&redis, "a", &[]);
    let records = all_completed(&client, &again.address, &ids, Duration::from_secs(150)).await;
    let stranded: Vec<&Value> = records.iter().filter(|r| r["deliveries"] == 2).collect();
    assert_eq!(stranded.len(), 2, "the two the killed process ran started again, the rest once: {records:?}");
    for r in &stranded {
        let after = started_after(r, killed);
        assert!(after <= 30.0, "a stranded task ran again {after:.1} s after the kill: {r}");
        eprintln!("stranded task {} ran again {after:.1} s after the kill", r["task_id"]);
    }
    let restarts = metric(&client, &again.address, "consumer_queue_claims_total{reason=\"restart\"}").await;
    assert_eq!(restarts, 2.0, "claimed from this pod's earlier process");
    assert_eq!(metric(&client, &again.address, "consumer_queue_duplicates_total{when=\"ran_twice\"}").await, 2.0);
}

/// A holder slower than any task-length guess (a node giving it a tenth of its capacity) renews its lease and keeps
/// its tasks: the replica beside it, idle, claims nothing.
#[tokio::test]
async fn a_holder_far_slower_than_its_capacity_keeps_its_tasks_by_renewing_its_lease() {
    let redis = RedisServer::start().expect("redis starts");
    let share = tempfile::NamedTempFile::new().expect("share file");
    std::fs::write(share.path(), "0.1").expect("write the share");
    let share_path = share.path().display().to_string();
    let env = [("LEASE_SECS", "2")];
    let a = replica(&redis, "a", &[("LEASE_SECS", "2"), ("NODE_SHARE_FILE", &share_path)]);
    let client = client();
    // A 0.9-core task given 0.1 core: nine times its 2 s, nine leases.
    let ids = [accept(&client, &a.address, &format!("{TASK}&duration=2")).await];
    running(&client, &a.address, 1).await;
    let b = replica(&redis, "b", &env);
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(60)).await;
    let record = &records[0];
    assert_eq!(record["pod"], "a", "{record}");
    assert_eq!(record["deliveries"], 1, "{record}");
    assert!(record["slowdown"].as_f64().expect("slowdown") > 5.0, "it ran slow: {record}");
    assert!(record.get("reruns").is_none(), "{record}");
    assert_eq!(metric(&client, &b.address, "consumer_queue_claims_total{reason=\"lease_lapsed\"}").await, 0.0);
    assert_eq!(metric(&client, &a.address, "consumer_queue_leases_lost_total").await, 0.0);
    assert_eq!(metric(&client, &a.address, "consumer_queue_renewals_failed_total").await, 0.0);
}

/// A holder paused past its lease (SIGSTOP) loses its tasks to the replica beside it; resumed, it finds its lease
/// lost and stops them rather than finishing them unseen.
#[tokio::test]
async fn a_holder_paused_past_its_lease_loses_its_tasks_and_stops_them_when_it_resumes() {
    let redis = RedisServer::start().expect("redis starts");
    let env = [("LEASE_SECS", "2")];
    let a = replica(&redis, "a", &env);
    let client = client();
    let ids = accept_all(&client, &a.address, 2, &format!("{TASK}&duration=8")).await;
    running(&client, &a.address, 2).await;
    let b = replica(&redis, "b", &env);
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    // b claims both once their lease lapsed, and starts them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&client, &b.address, "consumer_queue_claims_total{reason=\"lease_lapsed\"}").await < 2.0 {
        assert!(Instant::now() < deadline, "b never claimed the paused holder's tasks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.signal(nix::sys::signal::Signal::SIGCONT);
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(40)).await;
    assert!(records.iter().all(|r| r["pod"] == "b" && r["reruns"] == 1), "{records:?}");
    let lost = a.wait_for_event(
        "lost the lease on a task (another replica claimed it): stopped it here",
        Duration::from_secs(10),
    );
    assert!(lost["task_id"].is_string(), "{lost}");
    assert_eq!(metric(&client, &a.address, "consumer_queue_leases_lost_total").await, 2.0);
    assert_eq!(metric(&client, &b.address, "consumer_queue_duplicates_total{when=\"ran_twice\"}").await, 2.0);
    // a stopped its copies: neither finished there, and neither was handed back over b's.
    let stale = metric(&client, &a.address, "consumer_queue_duplicates_total{when=\"finished_stale\"}").await;
    assert_eq!(stale, 0.0, "{:?}", a.lines());
    assert!(a.events("task finished").iter().all(|e| e["status"] == "handed_back"), "{:?}", a.lines());
    assert!(a.events("handed an unfinished task back to the shared backlog").is_empty(), "{:?}", a.lines());
}

/// A retried async request with the same `Idempotency-Key` answers the first task and adds nothing, whichever
/// replica it reaches; the same key with other parameters is a 422 naming the header.
#[tokio::test]
async fn an_idempotency_key_answers_its_first_task_on_every_replica_and_adds_nothing() {
    let redis = RedisServer::start().expect("redis starts");
    let (a, b) = (replica(&redis, "a", &[]), replica(&redis, "b", &[]));
    let client = client();
    let send = |address: &str, query: &str, key: &str| {
        client.post(format!("{address}/process?{query}")).header("Idempotency-Key", key).send()
    };
    let query = format!("{TASK}&duration=1");
    let first: Value = send(&a.address, &query, "order-17").await.expect("post").json().await.expect("json");
    assert_eq!(first["status"], "queued", "{first}");
    let retried = send(&b.address, &query, "order-17").await.expect("post");
    assert_eq!(retried.status(), StatusCode::OK);
    let retried: Value = retried.json().await.expect("json");
    assert_eq!(retried["task_id"], first["task_id"], "{retried}");
    assert_eq!(retried["idempotent_replay"], true, "{retried}");
    let other = send(&b.address, &format!("{TASK}&duration=2"), "order-17").await.expect("post");
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = other.json().await.expect("json");
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    let malformed = send(&a.address, &query, "with space").await.expect("post");
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.json::<Value>().await.expect("json")["field"], "Idempotency-Key");
    let id = first["task_id"].as_str().expect("id").to_owned();
    all_completed(&client, &a.address, std::slice::from_ref(&id), Duration::from_secs(20)).await;
    assert_eq!(redis.cli(&["XLEN", "surge:tasks"]).trim(), "0");
    let done: Value = send(&a.address, &query, "order-17").await.expect("post").json().await.expect("json");
    assert_eq!((done["task_id"].as_str(), done["status"].as_str()), (Some(id.as_str()), Some("completed")), "{done}");
    let deliveries = metric(&client, &a.address, "consumer_queue_deliveries_total").await
        + metric(&client, &b.address, "consumer_queue_deliveries_total").await;
    assert_eq!(deliveries, 1.0, "one task, run once");
}

/// The queue ScaledObject's backlog query, read from the component, against a real Prometheus scraping two real
/// replicas: a value while Redis answers; once Redis is gone every replica's gauge is NaN, so the query is NaN, which
/// KEDA (`ignoreNullValues: "false"`) turns into an error and its fallback holds the replicas: never a stale value,
/// never a 0 through `or vector(0)`.
#[tokio::test]
async fn with_redis_gone_the_scaled_objects_backlog_query_is_an_error_for_keda_not_a_value() {
    use surge_keda::scaled_object::{documents, keda_value, ScaledObject, Source};
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("kubernetes-manifests/components/queue/scaledobject.yaml"),
    )
    .expect("the queue component's ScaledObject");
    let object = documents(&manifest).expect("yaml").into_iter().next().expect("one object");
    let scaled = ScaledObject::from_manifest(&object).expect("a ScaledObject");
    let backlog = scaled.triggers.iter().find(|t| t.name == "backlog").expect("the backlog trigger");
    let Source::Prometheus { query, ignore_null_values } = &backlog.source else { panic!("a prometheus trigger") };

    let mut redis = RedisServer::start().expect("redis starts");
    let (a, b) = (replica(&redis, "a", &[]), replica(&redis, "b", &[]));
    let client = client();
    let targets: Vec<String> =
        [&a, &b].iter().map(|r| format!("'{}'", r.address.trim_start_matches("http://"))).collect();
    let config = format!(
        "global: {{scrape_interval: 250ms, scrape_timeout: 250ms, evaluation_interval: 250ms}}\n\
         scrape_configs:\n\
         - job_name: consumer\n  static_configs:\n  - targets: [{}]\n    \
         labels: {{namespace: surge, app_kubernetes_io_name: consumer}}\n",
        targets.join(", ")
    );
    let prometheus = crate::prometheus_server::Prometheus::start(&client, &config).await;
    for _ in 0..4 {
        accept(&client, &a.address, &format!("{TASK}&duration=20")).await;
    }
    let read = |series: Vec<Value>| -> Vec<f64> {
        series.iter().filter_map(|s| s["value"][1].as_str()).map(|v| v.parse().expect("a sample")).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = loop {
        let values = read(prometheus.query(&client, query).await);
        if values == [4.0] {
            break values;
        }
        assert!(Instant::now() < deadline, "the backlog query never read the 4 tasks: {values:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(keda_value(&up, *ignore_null_values), Ok(4.0));
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let down = loop {
        let values = read(prometheus.query(&client, query).await);
        if values.iter().all(|v| v.is_nan()) && !values.is_empty() {
            break values;
        }
        assert!(Instant::now() < deadline, "the backlog query kept a value with Redis gone: {values:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(!*ignore_null_values, "the trigger must not read NaN as 0");
    assert!(keda_value(&down, *ignore_null_values).is_err(), "KEDA reads {down:?} as an error, so its fallback holds");
}

/// The ACL a managed Redis's user for the consumer needs, and no more (README, "Managed Redis"): the keys under the
/// prefix; the commands it sends and those its scripts call.
const CONSUMER_ACL: &str = "on >consumer-secret resetchannels ~surge:* -@all +xgroup|create \
    +xreadgroup +evalsha +script|load +hgetall +xlen +xpending +xgroup|delconsumer +xinfo|consumers +hmget +hget \
    +hset +hincrby +expire +xadd +xrange +xack +xdel +xclaim +time";

/// A CA, and a server certificate it signed for 127.0.0.1, made with openssl in `dir`: (cert, key, ca).
fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1"]
            .into_iter()
            .chain(["-subj", "/CN=surge test CA"])
            .collect::<Vec<_>>(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=redis",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write the extension");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("server.pem"), dir.join("server.key"), dir.join("ca.pem"))
}

/// A managed Redis: TLS only for the consumer (`rediss://`, the server's certificate checked against a CA file) and an
/// ACL user with the fewest commands the consumer needs. Work is accepted, run, settled and read back through it, a
/// crash's leftovers claimed; a wrong CA is refused.
#[tokio::test]
async fn a_managed_redis_over_tls_with_an_acl_user_of_the_fewest_commands_runs_the_shared_backlog() {
    let certs = tempfile::tempdir().expect("a directory for certificates");
    let (cert, key, ca) = certificates(certs.path());
    let user = format!("user consumer {CONSUMER_ACL}");
    let redis = RedisServer::start_tls(&cert, &key, &ca, &[&user]).expect("redis with TLS starts");
    let url = format!("rediss://consumer:consumer-secret@127.0.0.1:{}", redis.tls_port.expect("a TLS port"));
    let tls = |name: &str, ca: &std::path::Path| {
        replica_on(&url, name, &[("REDIS_CA_FILE", &ca.display().to_string()), ("LEASE_SECS", "2")])
    };
    let mut a = tls("a", &ca);
    let client = client();
    let ids = accept_all(&client, &a.address, 4, &format!("{TASK}&duration=2")).await;
    running(&client, &a.address, 2).await;
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let b = tls("b", &ca);
    let records = all_completed(&client, &b.address, &ids, Duration::from_secs(40)).await;
    assert_eq!(records.iter().filter(|r| r["reruns"] == 1).count(), 2, "{records:?}");
    assert_eq!(metric(&client, &b.address, "consumer_queue_errors_total").await, 0.0, "no command was refused");
    assert_eq!(status(&client, &b.address).await["shared"]["dead_letters"], 0);

    // Another CA's roots do not trust this server: async is refused as unreachable, never sent in clear.
    let other = tempfile::tempdir().expect("another directory");
    let (_, _, other_ca) = certificates(other.path());
    let c = tls("c", &other_ca);
    let refused = client.post(format!("{}/process?{TASK}&duration=1", c.address)).send().await.expect("post");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json::<Value>().await.expect("json")["reason"], "queue_unavailable");
}
