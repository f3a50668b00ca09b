//! The generator against a consumer on the shared backlog (a real Redis): an outage of Redis mid-run is carried by
//! the retries, and every task accepted is followed to its completed record.

use std::time::Duration;

use surge_harness::redis::RedisServer;

use crate::support::{generator_json, Consumer};

#[test]
fn a_redis_restart_mid_run_is_carried_by_retries_and_every_accepted_task_completes() {
    let mut redis = RedisServer::start().expect("redis starts");
    let flags = ["--queue", &redis.url(), "--cpu-work", "simulate", "--cpu-capacity", "2"];
    let consumer = Consumer::start_with("consumer-queue", &flags);
    let path = "/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1";
    let args: Vec<String> = ["--url", &consumer.url, "--method", "POST", "--path", path, "--probes", "1"]
        .into_iter()
        .chain(["--rate", "10", "--duration", "8s", "--threshold", "success>=95%"])
        .map(str::to_owned)
        .collect();
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        generator_json(&args)
    });
    // Two seconds in, Redis goes away for two: async answers 503 queue_unavailable with Retry-After meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    redis.stop();
    std::thread::sleep(Duration::from_secs(2));
    redis.resume().expect("redis starts again on its data");
    let (code, summary, stderr) = run.join().expect("the generator's thread");
    assert_eq!(code, Some(0), "{summary}\n{stderr}");
    assert!(summary["retried"].as_u64().is_some_and(|n| n > 0), "the outage was seen and retried: {summary}");
    assert!(summary["success_rate"].as_f64().is_some_and(|r| r >= 0.95), "{summary}");
    let tasks = &summary["tasks"];
    assert_eq!(tasks["accepted"], summary["succeeded"], "each 200 is one accepted task: {summary}");
    assert_eq!(tasks["completed"], tasks["accepted"], "none lost to the restart: {tasks}");
    assert_eq!(tasks["unresolved"], 0, "{tasks}");
}
