//! What the real binary writes to stdout: one JSON object per line with each key once, under a mix of every kind of
//! request; an overload that refuses thousands of requests writes a bounded number of lines; and a stdout nobody
//! reads costs dropped, counted lines, never a request.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::consumer::ConsumerProcess;

/// Deserialises any JSON, refusing an object that names a key twice (serde_json's own maps keep the last).
struct UniqueKeys;

impl<'de> de::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("key {key:?} appears twice")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(self)
    }
}

fn check_line(line: &str) -> Result<(), String> {
    if !line.trim_start().starts_with('{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_str::<UniqueKeys>(line).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn the_unique_keys_check_catches_what_it_claims_to() {
    assert!(check_line(r#"{"a":1,"b":{"c":[{"d":2}]}}"#).is_ok());
    assert!(check_line(r#"{"message":"x","message":"y"}"#).is_err());
    assert!(check_line(r#"{"a":{"b":1,"b":2}}"#).is_err());
    assert!(check_line(r#"["not","an","object"]"#).is_err());
    assert!(check_line(r#"{"a":1} trailing"#).is_err());
}

#[tokio::test]
async fn every_line_under_mixed_load_is_one_json_object_with_unique_keys() {
    let mut consumer = ConsumerProcess::start(&[
        "--access-log",
        "all",
        "--max-tasks",
        "2",
        "--queue-capacity",
        "2",
        "--cpu-capacity",
        "1",
        "--memory-budget-mb",
        "64",
        "--drain-delay-secs",
        "0",
    ]);
    let client = reqwest::Client::new();
    let base = consumer.address.clone();
    let get = |path: &'static str| client.get(format!("{base}{path}")).send();
    let post = |query: &'static str| client.post(format!("{base}/process?{query}")).send();
    // Successes, client errors of every kind, work sync and async, retained memory and its cleanup.
    let mut statuses = HashSet::new();
    for response in
        join_all([get("/"), get("/info"), get("/health"), get("/ready"), get("/metrics"), get("/nope")]).await
    {
        statuses.insert(response.expect("request").status());
    }
    for response in join_all([
        post("cpu_intensity=1&memory_size=1&duration=1"),
        post("cpu_intensity=1&memory_size=1&duration=1&async_mode=true&retain=true"),
        post("cpu_intensity=99"),
        post("memory_size=100000"),
        post("duration=abc"),
        client.put(format!("{base}/process")).send(),
    ])
    .await
    {
        statuses.insert(response.expect("request").status());
    }
    // More than two tasks and two places: the rest is refused.
    let burst = join_all((0..12).map(|_| post("cpu_intensity=5&memory_size=0&duration=1&async_mode=true"))).await;
    for response in burst {
        statuses.insert(response.expect("request").status());
    }
    statuses.insert(client.delete(format!("{base}/process/cleanup")).send().await.expect("cleanup").status());
    for expected in
        [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::UNPROCESSABLE_ENTITY, StatusCode::SERVICE_UNAVAILABLE]
    {
        assert!(statuses.contains(&expected), "the mix produced {expected}: {statuses:?}");
    }
    consumer.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(consumer.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()), "drains and exits 0");

    let lines = consumer.lines();
    let bad: Vec<String> =
        lines.iter().filter_map(|line| check_line(line).err().map(|e| format!("{e}: {line}"))).collect();
    assert!(
        bad.is_empty(),
        "{} of {} lines are not one JSON object with unique keys:\n{}",
        bad.len(),
        lines.len(),
        bad.join("\n")
    );
    for message in ["request", "task accepted", "task finished", "task rejected", "drained; exiting"] {
        assert!(!consumer.events(message).is_empty(), "a {message:?} line was written and checked");
    }
    println!("{} stdout lines, each one JSON object with unique keys", lines.len());
}

#[tokio::test]
async fn a_burst_of_rejections_writes_a_bounded_number_of_lines() {
    // One task at a time, no backlog: while the first runs, every other task is refused.
    let consumer = ConsumerProcess::start(&["--max-tasks", "1", "--queue-capacity", "0", "--cpu-work", "simulate"]);
    let client = reqwest::Client::new();
    let process = format!("{}/process", consumer.address);
    let first = client
        .post(format!("{process}?cpu_intensity=1&memory_size=0&duration=30&async_mode=true"))
        .send()
        .await
        .expect("first task");
    assert_eq!(first.status(), StatusCode::OK);

    // Long enough to span several one-second windows of the rate limits.
    let started = Instant::now();
    let until = started + Duration::from_millis(2500);
    let outcomes = join_all((0..16).map(|_| {
        let (client, url) = (client.clone(), format!("{process}?cpu_intensity=1&memory_size=0&duration=1"));
        async move {
            let (mut sent, mut refused) = (0, 0);
            while Instant::now() < until {
                let response = client.post(&url).send().await.expect("request");
                sent += 1;
                refused += usize::from(response.status() == StatusCode::SERVICE_UNAVAILABLE);
            }
            (sent, refused)
        }
    }))
    .await;
    let (sent, refused) = outcomes.iter().fold((0, 0), |(s, r), (ds, dr)| (s + ds, r + dr));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(refused, sent, "every request after the first was refused");
    // Let the writer thread flush what it holds.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let rejected = consumer.events("task rejected");
    let requests: Vec<_> = consumer.events("request").into_iter().filter(|e| e["status"] == 503).collect();
    // Ten lines a second for each, in every second the burst touched (plus one window the sleep may open).
    let windows = seconds.ceil() + 2.0;
    let bound = (10.0 * windows) as usize;
    println!(
        "{refused} refusals in {seconds:.1} s wrote {} `task rejected` and {} access lines (bound {bound} each)",
        rejected.len(),
        requests.len()
    );
    assert!(!rejected.is_empty() && rejected.len() <= bound, "{} task-rejected lines", rejected.len());
    assert!(!requests.is_empty() && requests.len() <= bound, "{} access lines for 503s", requests.len());
    assert!(rejected.iter().all(|e| e["reason"] == "queue_full" && e["detail"].is_string()));
    let told: u64 = rejected.iter().filter_map(|e| e["suppressed_before"].as_u64()).sum();
    assert!(told > 0, "a line after a suppressed stretch says how many were left out");
    assert!(told as usize + rejected.len() <= refused);
}

/// A stdout nobody reads (a stalled log collector, a full pipe) never blocks a request: the README promises dropped,
/// counted lines instead. Stdout here is a pipe read up to the listening line and then not at all, so its 64 KiB fill
/// and the writer's 8 Ki-line queue behind it too; 12,000 logged requests must all be answered (a blocking write
/// would hang them for good), and once stdout is read again every request's line was either written or counted in
/// `telemetry_dropped_total{sink="stdout"}`, exactly.
#[tokio::test]
async fn a_stalled_stdout_drops_and_counts_lines_and_never_blocks_a_request() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const REQUESTS: usize = 12_000;
    let mut child = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--bind", "127.0.0.1", "--port", "0", "--access-log", "all", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the consumer");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let port = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "exited before listening");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if event["message"] == "consumer listening" {
            break event["port"].as_u64().expect("port");
        }
    };
    // From here nothing reads stdout until every request is answered.
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let answered = join_all((0..8).map(|_| {
        let (client, url) = (client.clone(), format!("{address}/"));
        async move {
            let mut ok = 0;
            for _ in 0..REQUESTS / 8 {
                let response = tokio::time::timeout_at(deadline.into(), client.get(&url).send()).await;
                let response = response.expect("a request blocked behind the stalled stdout").expect("request");
                ok += usize::from(response.status() == StatusCode::OK);
            }
            ok
        }
    }))
    .await;
    assert_eq!(answered.iter().sum::<usize>(), REQUESTS, "every request answered 200");
    // Read again: what was queued comes out. No /metrics while stalled: its own line would be dropped and counted.
    let reader = std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter(|e| e["message"] == "request" && e["path"] == "/")
            .count()
    });
    // The writer's drop count reaches the metric every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = client.get(format!("{address}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let counted: u64 = text
        .lines()
        .find(|l| l.starts_with("telemetry_dropped_total{") && l.contains(r#"sink="stdout""#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("telemetry_dropped_total{sink=\"stdout\"}");
    assert!(counted > 0, "a stalled stdout dropped nothing: the queue is not bounded");
    let _ = child.kill();
    let _ = child.wait();
    let written = reader.join().expect("reader");
    println!("{REQUESTS} requests with stdout stalled: {written} lines written, {counted} dropped and counted");
    assert_eq!(written as u64 + counted, REQUESTS as u64, "every line written or counted");
}
