//! The open model measures from the intended send time: a stalling server's queue shows in the latencies.

use std::time::Duration;

use crate::support::{generator_json, stalling_server};

#[test]
fn latency_includes_the_queueing_behind_a_stalled_endpoint() {
    let stall = Duration::from_millis(100);
    let port = stalling_server(stall);
    let url = format!("http://127.0.0.1:{port}");
    // 50 arrivals over one second, at most one in flight: each waits for all before it, 100 ms apiece.
    let (code, summary, stderr) =
        generator_json(&["--url", &url, "--rate", "50", "--duration", "1s", "--concurrency", "1", "--probes", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["sent"], 50, "the schedule sends every arrival, however slow the server");
    assert_eq!(summary["succeeded"], 50);
    // Arrival i (sent at i × 20 ms) cannot finish before (i + 1) × 100 ms: the last waits at least 4.02 s.
    let max = summary["latency_ms"]["max"].as_f64().expect("max");
    assert!(max >= 4000.0, "the last arrival queued ~4 s behind the stall, but max latency is {max} ms");
    let p50 = summary["latency_ms"]["p50"].as_f64().expect("p50");
    assert!(p50 >= 10.0 * stall.as_millis() as f64, "the median waited ~2 s, far beyond one 100 ms stall: {p50} ms");
}

#[test]
fn sigterm_stops_sending_and_prints_the_partial_summary() {
    let port = stalling_server(Duration::from_millis(10));
    let url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--url", &url, "--rate", "20", "--duration", "60s", "--probes", "1", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the generator");
    // Waits for the line the generator prints when it starts sending, then keeps draining stderr.
    let mut stderr = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().expect("stderr")));
    let started = stderr.by_ref().map_while(Result::ok).any(|line| line.starts_with("running "));
    assert!(started, "the generator announced its run");
    std::thread::spawn(move || stderr.for_each(drop));
    // A few arrivals at 20/s, so the partial summary has something in it.
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130), "interrupted runs exit non-zero");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the partial summary is JSON");
    assert_eq!(summary["interrupted"], true);
    let sent = summary["sent"].as_u64().expect("sent");
    assert!(sent > 0 && sent < 1200, "sending stopped at the signal, well short of 60 s × 20/s: {sent}");
    assert_eq!(
        summary["succeeded"].as_u64().expect("succeeded") + summary["failed"]["cancelled"].as_u64().expect("cancelled"),
        sent
    );
}
