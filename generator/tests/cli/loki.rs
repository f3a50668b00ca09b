//! `--loki-url`: the summary a run prints is pushed to Loki's JSON push API as it ends, so it outlives a Job's pod;
//! a Loki that cannot be reached costs a warning, never the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{free_port, Consumer};

/// A Loki stand-in for one push: hands over the request line, headers and body, answers 204 as Loki does.
fn loki_receiving_one_push() -> (u16, mpsc::Receiver<(String, Vec<String>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let (socket, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(socket.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line.trim().is_empty() {
                break;
            }
            headers.push(line.trim().to_ascii_lowercase());
        }
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("Content-Length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        (&socket).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").expect("answer");
        let _ = sender.send((request_line.trim().to_owned(), headers, String::from_utf8(body).expect("utf-8")));
    });
    (port, receiver)
}

fn run_generator(consumer: &Consumer, loki_url: &str) -> (Option<i32>, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--url", &consumer.url, "--path", "/health", "--rate", "20", "--duration", "1s", "--probes", "1"])
        .args(["--output", "json", "--loki-url", loki_url])
        .env("HOSTNAME", "load-heavy-x7k2p")
        .output()
        .expect("run the generator");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("stdout not JSON ({e}): {stderr}"));
    (output.status.code(), summary, stderr)
}

#[test]
fn the_printed_summary_is_pushed_to_loki_as_the_run_ends() {
    let consumer = Consumer::start("consumer-loki");
    let (port, pushes) = loki_receiving_one_push();
    let (code, printed, stderr) = run_generator(&consumer, &format!("http://127.0.0.1:{port}"));
    assert_eq!(code, Some(0), "{stderr}");
    let (request_line, headers, body) = pushes.recv_timeout(Duration::from_secs(5)).expect("one push");
    assert_eq!(request_line, "POST /loki/api/v1/push HTTP/1.1");
    assert!(headers.contains(&"content-type: application/json".to_owned()), "{headers:?}");
    let push: Value = serde_json::from_str(&body).expect("JSON body");
    let streams = push["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "one stream per profile: {body}");
    let labels = &streams[0]["stream"];
    assert_eq!(
        labels,
        &serde_json::json!({"service": "load-generator", "pod": "load-heavy-x7k2p", "profile": "custom"})
    );
    let [timestamp, line] = [0, 1].map(|i| streams[0]["values"][0][i].as_str().expect("string").to_owned());
    let nanos: u128 = timestamp.parse().expect("nanoseconds");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    assert!(now - nanos < 60_000_000_000, "stamped at the run's end: {timestamp}");
    let pushed: Value = serde_json::from_str(&line).expect("the line is the summary as JSON");
    assert_eq!(pushed, printed, "the pushed line is the summary printed on stdout");
    assert!(printed["sent"].as_u64().is_some_and(|sent| sent >= 15), "{printed}");
    assert!(
        stderr.contains(r#"summary pushed to Loki: {service="load-generator", pod="load-heavy-x7k2p"}"#),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_loki_is_a_warning_and_the_run_stands() {
    let consumer = Consumer::start("consumer-no-loki");
    let closed = free_port();
    let (code, printed, stderr) = run_generator(&consumer, &format!("http://127.0.0.1:{closed}"));
    assert_eq!(code, Some(0), "the run's own outcome decides the exit code: {stderr}");
    assert!(printed["succeeded"].as_u64().is_some_and(|n| n >= 15), "{printed}");
    assert!(stderr.contains("warning: summary not pushed to Loki at http://127.0.0.1:"), "{stderr}");
}

#[test]
fn a_malformed_loki_url_is_refused_before_anything_is_sent() {
    // Refused while parsing the flags: a typo must not cost a ten-minute run whose summary then goes nowhere.
    let target = format!("http://127.0.0.1:{}", free_port());
    for (url, says) in [
        ("loki:3100", "needs a scheme"),
        ("https://loki:3100", "only http"),
        ("http://loki:3100/push", "without a path"),
    ] {
        let output = crate::support::generator(&["--url", &target, "--duration", "30s", "--loki-url", url]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("for '--loki-url") && stderr.contains(says), "{url}: {stderr}");
        assert!(output.stdout.is_empty(), "{url}: nothing ran: {}", String::from_utf8_lossy(&output.stdout));
    }
}
