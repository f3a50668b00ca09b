//! A rolling restart behind a real HAProxy playing the Service as Kubernetes does: servers checked on `/ready` (an
//! endpoints controller drops a pod whose readiness fails), replacements added once they listen. The generator
//! sends a steady open-model rate of short sync tasks; each old pod gets SIGTERM and its replacement starts, one
//! after the other. Zero requests may fail and each drained pod exits 0 within its shutdown timeout. Run twice: a
//! new connection per request, and keep-alive connections (pinned to one pod by `mode tcp`: the drain answers
//! `Connection: close`, so they reconnect through the Service instead of meeting a closed socket).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use surge_harness::service::Service;

use crate::support::Consumer;

/// Readiness checked every 250 ms, out at one failure: the Service stops sending new connections within ~250 ms of
/// readiness failing, well inside the 2 s drain delay (a pod's own default is 5 s against a 5 s readiness period).
const CHECK: Duration = Duration::from_millis(250);
/// Simulated CPU: two pods and their replacements share this machine's two cores with the generator and HAProxy.
const POD_FLAGS: [&str; 6] = ["--drain-delay-secs", "2", "--shutdown-timeout-secs", "10", "--cpu-work", "simulate"];
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Replaces `old` by a new pod in slot `new_index`: SIGTERM, start the replacement (on a port of its own choosing:
/// one reserved in advance can be taken meanwhile as another connection's source port), give the slot its address
/// and add it to the Service once its readiness passes, then wait for the old one to exit. Returns the old pod's
/// time from SIGTERM to its exit.
fn replace(service: &Service, old: &mut Consumer, new_index: usize, name: &str) -> (Consumer, Duration) {
    let signalled = Instant::now();
    old.terminate();
    let new = Consumer::start_with(name, &POD_FLAGS);
    service.set_port(new_index, new.port).expect("the slot takes the replacement's address");
    service.enable(new_index).expect("the replacement's endpoint is listed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !service.is_up(new_index) {
        assert!(Instant::now() < deadline, "the replacement never passed its readiness check");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = old.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5)).expect("the old pod exited");
    let took = signalled.elapsed();
    assert!(status.success(), "a drained pod exits 0: {status}");
    assert!(took <= SHUTDOWN_TIMEOUT, "drained within its shutdown timeout, counted from SIGTERM: {took:?}");
    (new, took)
}

fn rolling_restart(reuse_connections: bool) -> Value {
    let (mut a, mut b) = (Consumer::start_with("pod-a", &POD_FLAGS), Consumer::start_with("pod-b", &POD_FLAGS));
    // Two slots serving, two for the replacements (no address until they start).
    let service = Service::start(&[Some(a.port), Some(b.port), None, None], Some(CHECK)).expect("haproxy starts");

    // 40 sync tasks a second of 1 s each: about 40 in flight, spread over the pods, for 12 s.
    let mut args = vec![
        "--url",
        &service.url,
        "--method",
        "POST",
        "--path",
        "/process?cpu_intensity=1&memory_size=1&duration=1",
        "--rate",
        "40",
        "--duration",
        "12s",
        "--max-retries",
        "0",
        "--probes",
        "1",
        "--output",
        "json",
    ];
    if !reuse_connections {
        args.push("--no-connection-reuse");
    }
    let generator = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the generator");

    std::thread::sleep(Duration::from_secs(2));
    let (c, a_took) = replace(&service, &mut a, 2, "pod-c");
    let (d, b_took) = replace(&service, &mut b, 3, "pod-d");
    let output = generator.wait_with_output().expect("the generator ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    println!(
        "rolling restart ({}): sent {}, succeeded {}, failed {}, by pod {}; old pods exited 0 after {a_took:.1?} \
         and {b_took:.1?}",
        if reuse_connections { "keep-alive" } else { "a connection per request" },
        summary["sent"],
        summary["succeeded"],
        summary["failed"],
        summary["distribution"]
    );
    drop((c, d));
    summary
}

fn assert_nothing_lost(summary: &Value) {
    let sent = summary["sent"].as_u64().expect("sent");
    assert_eq!(sent, 40 * 12, "every arrival of the schedule was sent: {summary}");
    assert_eq!(summary["succeeded"].as_u64(), Some(sent), "zero failed requests: {summary}");
    let pods = summary["distribution"].as_object().expect("distribution");
    for pod in ["pod-a", "pod-b", "pod-c", "pod-d"] {
        assert!(pods.contains_key(pod), "{pod} served part of the run: {pods:?}");
    }
}

#[test]
fn a_rolling_restart_loses_no_request_with_a_connection_per_request() {
    assert_nothing_lost(&rolling_restart(false));
}

#[test]
fn a_rolling_restart_loses_no_request_on_keep_alive_connections() {
    assert_nothing_lost(&rolling_restart(true));
}
