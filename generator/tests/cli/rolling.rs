//! A rolling restart behind a real HAProxy playing the Service as Kubernetes does: servers checked on `/ready` (an
//! endpoints controller drops a pod whose readiness fails), replacements added once they listen. The generator
//! sends a steady open-model rate of short sync tasks; each old pod gets SIGTERM and its replacement starts, one
//! after the other. Zero requests may fail and each drained pod exits 0 within its shutdown timeout. Run twice: a
//! new connection per request, and keep-alive connections (pinned to one pod by `mode tcp`: the drain answers
//! `Connection: close`, so they reconnect through the Service instead of meeting a closed socket).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{free_port, Consumer};

/// `inter 250ms fall 1`: the Service stops sending new connections within ~250 ms of readiness failing, well inside
/// the 2 s drain delay (a pod's own default is 5 s against a 5 s readiness period).
const CHECK: &str = "inter 250ms fall 1 rise 1";
/// Simulated CPU: two pods and their replacements share this machine's two cores with the generator and HAProxy.
const POD_FLAGS: [&str; 6] = ["--drain-delay-secs", "2", "--shutdown-timeout-secs", "10", "--cpu-work", "simulate"];
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

struct Service {
    child: Child,
    url: String,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Slots for every pod the run will have: the running pods' ports, then disabled slots (as an endpoint list omits
    /// pods not started yet) that get their address when their pod starts.
    fn start(running: &[u16], slots: usize) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        let mut config = format!(
            "global\n  maxconn 4096\n  stats socket {} mode 600 level admin\n\
             defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
             frontend service\n  bind 127.0.0.1:{port}\n  default_backend pods\n\
             backend pods\n  balance roundrobin\n  option httpchk GET /ready\n  http-check expect status 200\n\
             default-server {CHECK}\n",
            socket.display()
        );
        for index in 0..slots {
            match running.get(index) {
                Some(port) => config.push_str(&format!("  server pod{index} 127.0.0.1:{port} check\n")),
                None => config.push_str(&format!("  server pod{index} 127.0.0.1:1 check disabled\n")),
            }
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("haproxy is installed (scripts/install-tools.sh installs it)");
        let child = Command::new(binary)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, url: format!("http://127.0.0.1:{port}"), socket, _dir: dir }
    }

    fn admin(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("admin socket");
        stream.write_all(format!("{command}\n").as_bytes()).expect("admin write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("admin read");
        answer
    }

    /// The server's operational state as HAProxy's checks see it (2 = up).
    fn is_up(&self, index: usize) -> bool {
        let state = self.admin("show servers state pods");
        let line = state.lines().find(|l| l.split_whitespace().nth(3) == Some(&format!("pod{index}")));
        line.and_then(|l| l.split_whitespace().nth(5)).is_some_and(|op_state| op_state == "2")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `old` by a new pod in slot `new_index`: SIGTERM, start the replacement (on a port of its own choosing:
/// one reserved in advance can be taken meanwhile as another connection's source port), give the slot its address
/// and add it to the Service once its readiness passes, then wait for the old one to exit. Returns the old pod's
/// exit time.
fn replace(service: &Service, old: &mut Consumer, new_index: usize, name: &str) -> (Consumer, Duration) {
    old.terminate();
    let new = Consumer::start_with(name, &POD_FLAGS);
    let answer = service.admin(&format!("set server pods/pod{new_index} addr 127.0.0.1 port {}", new.port));
    assert!(answer.contains("changed"), "set server addr: {answer}");
    let answer = service.admin(&format!("enable server pods/pod{new_index}"));
    assert!(answer.trim().is_empty(), "enable: {answer}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !service.is_up(new_index) {
        assert!(Instant::now() < deadline, "the replacement never passed its readiness check");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, took) = old.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5)).expect("the old pod exited");
    assert!(status.success(), "a drained pod exits 0: {status}");
    assert!(took <= SHUTDOWN_TIMEOUT, "drained within its shutdown timeout: {took:?}");
    (new, took)
}

fn rolling_restart(reuse_connections: bool) -> Value {
    let (mut a, mut b) = (Consumer::start_with("pod-a", &POD_FLAGS), Consumer::start_with("pod-b", &POD_FLAGS));
    let service = Service::start(&[a.port, b.port], 4);

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
    assert!(sent >= 400, "the run sent its steady rate: {summary}");
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
