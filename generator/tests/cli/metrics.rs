//! `--metrics-port`: the generator's own /metrics while it runs, linted by Prometheus' own `promtool check metrics`,
//! moving with the run, and after it equal to the summary it prints.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, Consumer};

fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: generator\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "a type Prometheus 3 accepts: {head}");
    Some(body.to_owned())
}

fn value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{exposition}"))
}

#[test]
fn the_generator_serves_its_own_metrics_while_it_runs() {
    let consumer = Consumer::start("consumer-metrics");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(["--url", &consumer.url, "--path", "/health", "--rate", "20", "--duration", "3s", "--probes", "1"])
        .args(["--metrics-port", &port.to_string(), "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the generator");

    // While it runs: requests counted, the intended rate shown, the run active.
    let deadline = Instant::now() + Duration::from_secs(10);
    let during = loop {
        if let Some(body) = scrape(port) {
            if body.contains("generator_requests_sent_total{profile=\"custom\"}")
                && value(&body, r#"generator_requests_sent_total{profile="custom"}"#) >= 10.0
            {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no requests counted on /metrics");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&during, r#"generator_target_rate{profile="custom"}"#), 20.0);
    assert_eq!(value(&during, r#"generator_run_active{profile="custom"}"#), 1.0);
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut promtool| {
            promtool.stdin.take().expect("stdin").write_all(during.as_bytes())?;
            promtool.wait_with_output()
        })
        .expect("promtool is installed (scripts/install-tools.sh)");
    assert!(lint.status.success(), "promtool check metrics: {}", String::from_utf8_lossy(&lint.stderr));

    // After the run: the process serves on for one more scrape, and the final counts equal the summary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let body = scrape(port).expect("served after the run, until the linger ends");
        if value(&body, r#"generator_run_active{profile="custom"}"#) == 0.0 {
            break body;
        }
        assert!(Instant::now() < deadline, "the run never ended on /metrics");
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("the generator exits");
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["sent"], 60, "{summary}");
    for (series, key) in [
        (r#"generator_requests_sent_total{profile="custom"}"#, "sent"),
        (r#"generator_requests_succeeded_total{profile="custom"}"#, "succeeded"),
        (r#"generator_requests_retried_total{profile="custom"}"#, "retried"),
    ] {
        assert_eq!(value(&after, series), summary[key].as_f64().expect(key), "{series}");
    }
    assert_eq!(value(&after, r#"generator_request_duration_seconds_count{profile="custom"}"#), 60.0);
    assert_eq!(value(&after, r#"generator_send_lag_seconds_count{profile="custom"}"#), 60.0, "each send's lag");
    assert_eq!(value(&after, r#"generator_requests_failed_total{profile="custom",cause="timeout"}"#), 0.0);
    assert_eq!(value(&after, r#"generator_target_rate{profile="custom"}"#), 0.0, "nothing intended once it ended");
    // GET /health accepts no task: the task series are there, at 0.
    assert_eq!(value(&after, r#"generator_tasks_accepted_total{profile="custom"}"#), 0.0);
    assert_eq!(value(&after, r#"generator_tasks_ended_total{profile="custom",status="completed"}"#), 0.0);
    assert_eq!(value(&after, r#"generator_task_end_to_end_seconds_count{profile="custom"}"#), 0.0);
    assert!(scrape(port).is_none(), "the generator has exited and stopped serving");
}
