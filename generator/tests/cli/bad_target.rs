//! The generator against targets that misbehave: each failure counted under its cause, none hanging past
//! `--timeout`, and a partial summary on SIGINT as on SIGTERM. The target is a small server of this test's own
//! that answers `/health` like a consumer (the generator checks it first) and the load path as told.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::generator_json;

#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Answers with this status (503 with `Retry-After: 1`).
    Status(u16),
    /// Resets the connection (RST) once the request has arrived.
    Reset,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Sends the head and 3 of 100 body bytes, then nothing.
    StallMidBody,
    /// Never answers.
    Silence,
}

/// Serves `/health` with 200 (or `health` when given) and every other request with `plan[n % plan.len()]`, n
/// counting load requests; a fresh thread per connection. Returns the URL.
fn hostile_server(plan: Vec<Option<Misbehaviour>>, health: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (plan, counter) = (Arc::new(plan), Arc::new(AtomicU64::new(0)));
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (plan, counter) = (Arc::clone(&plan), Arc::clone(&counter));
            std::thread::spawn(move || serve(stream, &plan, &counter, health));
        }
    });
    url
}

fn serve(stream: TcpStream, plan: &[Option<Misbehaviour>], counter: &AtomicU64, health: u16) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let behaviour = if request_line.contains(" /health ") {
            Some(Misbehaviour::Status(health))
        } else {
            plan[usize::try_from(counter.fetch_add(1, Ordering::SeqCst)).expect("fits") % plan.len()]
        };
        let answer = match behaviour {
            None => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Served-By: hostile\r\n\r\nok".to_owned(),
            Some(Misbehaviour::Status(503)) => {
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            Some(Misbehaviour::Status(code)) => format!("HTTP/1.1 {code} Status\r\nContent-Length: 0\r\n\r\n"),
            Some(Misbehaviour::Reset) => {
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: a valid socket and a correctly sized linger struct; a zero linger makes close send RST.
                unsafe {
                    libc::setsockopt(
                        writer.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
                return;
            }
            Some(Misbehaviour::Garbage) => "SSH-2.0-OpenSSH_9.2\r\n\r\n".to_owned(),
            Some(Misbehaviour::StallMidBody) => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Some(Misbehaviour::Silence) => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn failed(summary: &serde_json::Value, cause: &str) -> u64 {
    summary["failed"][cause].as_u64().unwrap_or_else(|| panic!("no {cause} in {summary}"))
}

#[test]
fn every_failure_is_counted_under_its_cause_and_none_outlasts_the_timeout() {
    use Misbehaviour::*;
    let plan = vec![
        None,
        Some(Status(404)),
        Some(Status(500)),
        Some(Status(503)),
        Some(Reset),
        Some(Garbage),
        Some(StallMidBody),
        Some(Silence),
    ];
    let url = hostile_server(plan, 200);
    let started = Instant::now();
    // One at a time on fresh connections, so request n meets plan[n]; no retries, so each 503 is a failure.
    let (code, summary, stderr) = generator_json(&[
        "--url",
        &url,
        "--path",
        "/work",
        "--requests",
        "40",
        "--concurrency",
        "1",
        "--no-connection-reuse",
        "--max-retries",
        "0",
        "--timeout",
        "300ms",
        "--probes",
        "1",
    ]);
    let took = started.elapsed();
    println!("bad target: {} in {took:.1?}, exit {code:?}", summary["failed"]);
    assert_eq!(code, Some(1), "below the success floor: {stderr}");
    assert_eq!(summary["sent"], 40);
    assert_eq!(summary["succeeded"], 5);
    for (cause, count) in [("client_error", 5), ("server_error", 5), ("overload", 5), ("io", 5), ("protocol", 5)] {
        assert_eq!(failed(&summary, cause), count, "{cause}: {summary}");
    }
    assert_eq!(failed(&summary, "timeout"), 10, "a body that stalls and a silence both time out: {summary}");
    assert_eq!(failed(&summary, "connect") + failed(&summary, "cancelled"), 0, "{summary}");
    // 10 timeouts of 300 ms and 30 quick exchanges: nothing waited past its timeout.
    assert!(took < Duration::from_secs(8), "the run took {took:?}");
}

#[test]
fn an_unhealthy_target_is_refused_before_any_load_with_exit_2() {
    let url = hostile_server(vec![None], 503);
    let output = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--url", &url, "--requests", "5", "--probes", "1"])
        .output()
        .expect("run the generator");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.trim(), format!("error: {url} is unhealthy: GET /health answered 503 Service Unavailable"));
    assert!(output.stdout.is_empty());
}

#[test]
fn sigint_stops_the_run_and_prints_the_partial_summary() {
    // Every load request meets silence: all are in flight when SIGINT arrives.
    let url = hostile_server(vec![Some(Misbehaviour::Silence)], 200);
    let mut child = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--url", &url, "--rate", "20", "--duration", "60s", "--timeout", "60s", "--probes", "1"])
        .args(["--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the generator");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    assert!(stderr.by_ref().map_while(Result::ok).any(|l| l.starts_with("running ")), "the run started");
    std::thread::spawn(move || stderr.for_each(drop));
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    // SAFETY: kill only sends a signal to our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGINT) };
    let output = child.wait_with_output().expect("the generator exits");
    let took = signalled.elapsed();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a partial summary on stdout");
    println!("SIGINT: exited {:?} after {took:.1?} with {}", output.status.code(), summary["failed"]);
    assert!(took < Duration::from_secs(5), "stops at once, not after the 60 s timeout: {took:?}");
    assert_eq!(summary["interrupted"], true, "{summary}");
    let sent = summary["sent"].as_u64().expect("sent");
    assert!(sent >= 5, "arrivals were sent before the interrupt: {summary}");
    assert_eq!(failed(&summary, "cancelled"), sent, "every request in flight counted as cancelled: {summary}");
    assert_ne!(output.status.code(), Some(0), "an interrupted run is not a success");
}
