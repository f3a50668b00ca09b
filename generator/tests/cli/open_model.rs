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
    // The cap is the generator's own: arrival i goes out at i × 100 ms, not i × 20 ms, so the last is ≥ 3.92 s late.
    let lag = summary["send_lag_ms"]["max"].as_f64().expect("send lag max");
    assert!(lag >= 3900.0, "--concurrency 1 held the last arrival back ~3.9 s, but the send lag max is {lag} ms");
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

/// `--stages` ramps: arrivals follow the rate up, hold and down, counted where they land (a server recording each
/// request's arrival), with the schedule's total sent exactly.
#[test]
fn stages_ramp_the_arrival_rate_up_and_down() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let recorded = Arc::clone(&arrivals);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let recorded = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut writer = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.starts_with("GET /load ") {
                        recorded.lock().expect("arrivals").push(Instant::now());
                    }
                    if line == "\r\n" {
                        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    line.clear();
                }
            });
        }
    });
    // Up from 0 to 20/s over 2 s, 20/s for 2 s, down to 0 over 2 s: 20 + 40 + 20 = 80 arrivals.
    let (code, summary, stderr) =
        generator_json(&["--url", &url, "--path", "/load", "--stages", "2s:20,2s:20,2s:0", "--probes", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["sent"], 80, "{summary}");
    // Nothing held the arrivals back (a fast server, no cap reached): they went out on time.
    let lag = &summary["send_lag_ms"];
    println!("stages 2s:20,2s:20,2s:0: send lag ms {lag}");
    assert!(lag["p50"].as_f64().expect("send lag p50") < 50.0, "arrivals went out late: {lag}");
    let arrivals = arrivals.lock().expect("arrivals").clone();
    assert_eq!(arrivals.len(), 80);
    let first = arrivals[0];
    let mut per_second = [0u32; 6];
    for at in &arrivals {
        let second = (at.duration_since(first).as_secs_f64() as usize).min(5);
        per_second[second] += 1;
    }
    println!("stages 2s:20,2s:20,2s:0: arrivals per second {per_second:?}");
    // The areas under the ramp, second by second: 5, 15, 20, 20, 15, 5 (a few either side for timer jitter).
    for (second, (got, expected)) in per_second.iter().zip([5, 15, 20, 20, 15, 5]).enumerate() {
        assert!(got.abs_diff(expected) <= 4, "second {second}: {got} arrivals, the ramp puts {expected} there");
    }
}
