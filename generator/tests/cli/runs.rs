//! The command line against a real consumer: listing, a scaled profile run, dry runs, failures and thresholds.

use crate::support::{free_port, generator, generator_json, Consumer};

#[test]
fn list_prints_every_profile_with_its_figures() {
    let output = generator(&["--list"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    for name in [
        "light",
        "medium",
        "heavy",
        "sustained",
        "burst",
        "memory_stress",
        "cpu_stress",
        "baseline",
        "comparison_pattern",
        "all",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from --list:\n{text}");
    }
    let heavy: Vec<&str> = text.lines().find(|l| l.starts_with("heavy")).expect("heavy").split_whitespace().collect();
    assert_eq!(&heavy[..8], ["heavy", "0.25", "10", "135", "9", "150", "20", "yes"]);
}

#[test]
fn a_scaled_profile_sends_exactly_its_share_and_the_consumer_sees_each_one() {
    let consumer = Consumer::start("consumer-7f9c-a1b2c");
    let (code, summary, stderr) =
        generator_json(&["--url", &consumer.url, "--test", "light", "--scale", "0.05", "--cleanup", "--probes", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["profile"], "light");
    // light's 5 minutes at 0.3/s, a twentieth as long: 1.5 s ramp, 12 s at 0.3/s, 1.5 s down: 4.05 arrivals.
    assert_eq!(summary["sent"], 5, "{summary}");
    assert_eq!(summary["succeeded"], 5);
    assert_eq!(summary["success_rate"], 1.0);
    assert!(summary["failed"].as_object().expect("failed by cause").values().all(|n| n == 0));
    assert_eq!(summary["distribution"], serde_json::json!({"consumer-7f9c-a1b2c": 5}));
    assert_eq!(summary["imbalance_warning"], false);
    for key in ["p50", "p90", "p95", "p99", "max"] {
        assert!(summary["latency_ms"][key].as_f64().expect(key) > 0.0);
    }
    assert!(summary["rate_achieved"].as_f64().expect("rate") > 0.0);
    assert!(stderr.contains("cleanup: "), "--cleanup calls DELETE /process/cleanup first: {stderr}");
    assert_eq!(consumer.status()["totals"]["started"], 5, "the consumer accepted exactly what was sent");
    // Each accepted task followed to its completed record; end to end is at least the task's own second.
    let tasks = &summary["tasks"];
    assert_eq!(
        (&tasks["accepted"], &tasks["completed"], &tasks["unresolved"]),
        (&5.into(), &5.into(), &0.into()),
        "{tasks}"
    );
    assert!(tasks["e2e_ms"]["p50"].as_f64().is_some_and(|ms| ms >= 1000.0), "{tasks}");
    assert!(stderr.contains("following "), "{stderr}");
}

#[test]
fn a_phase_profile_switches_its_request_at_each_phase_edge() {
    let consumer = Consumer::start("consumer-phases");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("phases.yaml");
    // Two 6 s phases at one a second: async one-second tasks, then the same work synchronously.
    std::fs::write(
        &file,
        "phases:\n  - {minutes: 0.1, per_minute: 60, cpu_intensity: 1, memory_mib: 0, duration_secs: 1}\n  - {minutes: \
         0.1, per_minute: 60, cpu_intensity: 1, memory_mib: 0, duration_secs: 1, async: false}\n",
    )
    .expect("write phases");
    let phases = file.to_str().expect("a UTF-8 path");
    let (code, summary, stderr) = generator_json(&["--url", &consumer.url, "--phases", phases, "--probes", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!((&summary["sent"], &summary["succeeded"]), (&12.into(), &12.into()), "{summary}");
    // Only the first phase's requests were async: they alone were accepted as tasks and followed to their end.
    let tasks = &summary["tasks"];
    assert_eq!((&tasks["accepted"], &tasks["completed"]), (&6.into(), &6.into()), "{tasks}");
    assert_eq!(consumer.status()["totals"]["completed"], 12, "the consumer ran all twelve");
}

#[test]
fn an_end_to_end_threshold_is_checked_against_the_followed_tasks() {
    let consumer = Consumer::start("consumer-e2e");
    let path = "/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1";
    let args = ["--url", &consumer.url, "--method", "POST", "--path", path, "--requests", "3", "--probes", "1"];
    let (code, summary, stderr) = generator_json(&[&args[..], &["--threshold", "e2e_p95<30s"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["tasks"]["completed"], 3, "{summary}");
    let (code, summary, _) = generator_json(&[&args[..], &["--threshold", "e2e_max<500ms"]].concat());
    assert_eq!(code, Some(1), "one-second tasks cannot end within 500 ms of acceptance: {summary}");
    let verdict = &summary["thresholds"][0];
    assert_eq!((&verdict["expr"], &verdict["passed"]), (&"e2e_max<500ms".into(), &false.into()), "{summary}");
    // Sync work is its own end: nothing to follow, so an end-to-end bound cannot be met.
    let sync = ["--url", &consumer.url, "--path", "/health", "--requests", "2", "--probes", "1"];
    let (code, summary, _) = generator_json(&[&sync[..], &["--threshold", "e2e_p95<30s"]].concat());
    assert_eq!((code, summary.get("tasks")), (Some(1), None), "{summary}");
}

#[test]
fn an_unreachable_url_is_one_line_and_exit_code_2() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = generator(&["--url", &url, "--test", "light"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "one line, no stack trace: {stderr}");
    assert!(stderr.starts_with(&format!("error: cannot reach {url}: ")), "{stderr}");
    assert!(stderr.to_lowercase().contains("refused"), "names the cause: {stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_failed_threshold_makes_the_exit_code_non_zero() {
    let consumer = Consumer::start("consumer-thresholds");
    let args = ["--url", &consumer.url, "--path", "/health", "--requests", "20", "--concurrency", "2", "--probes", "1"];
    let (code, summary, _) =
        generator_json(&[&args[..], &["--threshold", "p50<1us", "--threshold", "success>99%"]].concat());
    assert_eq!(code, Some(1));
    assert_eq!(summary["sent"], 20);
    let verdicts = summary["thresholds"].as_array().expect("thresholds");
    assert_eq!(verdicts.len(), 2);
    assert_eq!((&verdicts[0]["expr"], &verdicts[0]["passed"]), (&"p50<1us".into(), &false.into()));
    assert_eq!((&verdicts[1]["expr"], &verdicts[1]["passed"]), (&"success>99%".into(), &true.into()));

    let (code, _, _) = generator_json(&[&args[..], &["--threshold", "success>99%"]].concat());
    assert_eq!(code, Some(0), "a passing threshold leaves the exit code at 0");
}

#[test]
fn a_dry_run_resolves_the_plan_and_sends_nothing() {
    // Nothing listens here: a dry run must not need the consumer.
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, plan, stderr) = generator_json(&["--url", &url, "--test", "heavy", "--shard", "1/4", "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    let run = &plan["runs"][0];
    assert_eq!(run["profile"], "heavy");
    assert_eq!(run["method"], "POST");
    assert_eq!(run["path"], "/process?cpu_intensity=9&memory_size=150&duration=20&async_mode=true");
    assert_eq!(run["model"], "open", "profiles are arrival schedules");
    assert_eq!(run["stages"][0], serde_json::json!({"duration": 60.0, "target": 0.0625}), "a quarter of 0.25/s");
    assert_eq!(plan["shard"], serde_json::json!({"index": 1, "count": 4}));

    let output = generator(&["--url", &url, "--test", "all", "--dry-run"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(text.lines().filter(|l| l.starts_with("run ")).count(), 9, "all resolves to every profile:\n{text}");
}

#[test]
fn bad_flags_name_themselves_and_exit_2() {
    let output = generator(&["--test", "enormous", "--dry-run"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.starts_with("error: --test \"enormous\": unknown profile; choose one of light,"), "{stderr}");
}

/// A pod with one slot and no backlog: all but one of a burst of async tasks get 503 + Retry-After.
fn refusing_consumer(pod: &str) -> Consumer {
    Consumer::start_with(pod, &["--max-tasks", "1", "--queue-capacity", "0", "--cpu-work", "simulate"])
}

/// `requests` async tasks of `seconds`, 4 at a time, retrying each 503 up to `retries` times.
fn burst(consumer: &Consumer, seconds: u32, requests: u32, retries: u32) -> (Option<i32>, serde_json::Value, String) {
    let path = format!("/process?cpu_intensity=1&memory_size=0&duration={seconds}&async_mode=true");
    let (requests, retries) = (requests.to_string(), retries.to_string());
    generator_json(&[
        "--url",
        &consumer.url,
        "--method",
        "POST",
        "--path",
        &path,
        "--concurrency",
        "4",
        "--requests",
        &requests,
        "--probes",
        "1",
        "--max-retries",
        &retries,
    ])
}

/// The refused requests are sent again after their Retry-After, so every request succeeds and the retries are
/// counted apart from failures.
#[test]
fn refused_requests_are_retried_after_retry_after_and_counted() {
    let consumer = refusing_consumer("consumer-retry");
    let (code, summary, stderr) = burst(&consumer, 1, 6, 20);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["succeeded"], 6, "{summary}");
    assert!(summary["retried"].as_u64().is_some_and(|n| n >= 3), "503s were retried: {summary}");
    assert!(summary["failed"].as_object().expect("failed").values().all(|n| n == 0), "{summary}");
    assert_eq!(consumer.status()["totals"]["started"], 6);
}

/// Without retries, the same burst falls below the default 95% success floor: exit 1, so a Job shows Failed.
#[test]
fn a_run_below_the_success_floor_exits_1() {
    let consumer = refusing_consumer("consumer-floor");
    let (code, summary, stderr) = burst(&consumer, 5, 4, 0);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(summary["succeeded"], 1, "{summary}");
    let floor =
        summary["thresholds"].as_array().expect("thresholds").iter().find(|v| v["expr"] == "success>=95%").cloned();
    assert_eq!(floor.expect("the default floor applies")["passed"], false);
    // An explicit success threshold replaces the floor.
    let (code, _, stderr) = generator_json(&[
        "--url",
        &consumer.url,
        "--path",
        "/health",
        "--requests",
        "2",
        "--probes",
        "1",
        "--threshold",
        "success>=10%",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
}
