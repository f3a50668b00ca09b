//! What the generator's tests run against: the real consumer binary, a real HAProxy, and a server that stalls.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the real generator binary to completion.
pub fn generator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_generator")).args(args).output().expect("run the generator binary")
}

/// The generator's exit code, its stdout parsed as JSON, and its stderr.
pub fn generator_json(args: &[&str]) -> (Option<i32>, Value, String) {
    let output = generator(&[args, &["--output", "json"]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    // Sends are counted where they happen: each must end as exactly one success or one failure.
    if let (Some(sent), Some(failed)) = (summary["sent"].as_u64(), summary["failed"].as_object()) {
        let ended = summary["succeeded"].as_u64().unwrap_or(0) + failed.values().filter_map(Value::as_u64).sum::<u64>();
        assert_eq!(sent, ended, "sent counts every request once, each ending once: {summary}");
    }
    (output.status.code(), summary, stderr)
}

/// A free loopback port (bound and released: the caller's server takes it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The consumer binary from the same build (`cargo test --workspace` builds it beside the generator).
fn consumer_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_generator")).with_file_name("consumer");
    assert!(path.exists(), "{} is missing: run `cargo build --bin consumer` first (make test does)", path.display());
    path
}

pub struct Consumer {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl Consumer {
    /// Starts the real consumer on a free port with this pod name.
    pub fn start(pod_name: &str) -> Self {
        Self::start_with(pod_name, &[])
    }

    /// Starts the real consumer with this pod name and extra flags.
    pub fn start_with(pod_name: &str, flags: &[&str]) -> Self {
        let mut child = Command::new(consumer_binary())
            .args(["--bind", "127.0.0.1", "--port", "0", "--drain-delay-secs", "0"])
            .args(flags)
            .env("POD_NAME", pod_name)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the consumer");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = loop {
            let line = lines.next().expect("the consumer exited before listening").expect("read stdout");
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if event["message"] == "consumer listening" {
                break u16::try_from(event["port"].as_u64().expect("port")).expect("port fits u16");
            }
        };
        // Drain stdout so the consumer never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self { child, port, url: format!("http://127.0.0.1:{port}") }
    }

    /// Sends SIGTERM, as the kubelet does to a pod being replaced.
    pub fn terminate(&self) {
        // SAFETY: kill only sends a signal to our own child's pid.
        unsafe { libc::kill(i32::try_from(self.child.id()).expect("pid fits i32"), libc::SIGTERM) };
    }

    /// Waits for exit: its status and how long it took, or `None` if still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET /process/status`, read with a plain socket.
    pub fn status(&self) -> Value {
        let body = http_get(self.port, "/process/status");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).expect("a response with a body")
}

/// An HTTP server that answers every request after `stall`, one request at a time per connection.
pub fn stalling_server(stall: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve_stalled(stream, stall));
        }
    });
    port
}

fn serve_stalled(stream: std::net::TcpStream, stall: Duration) {
    use std::io::Write;
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        // Read one request head (no bodies: the generator sends none here).
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        std::thread::sleep(stall);
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Served-By: stall\r\n\r\nok";
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Debian's Prometheus scraping `target` every 250 ms with the labels the monitoring component's relabeling gives a
/// consumer pod.
pub fn prometheus_scraping(target: &str) -> surge_harness::prometheus::Server {
    let config = format!(
        "global: {{scrape_interval: 250ms, scrape_timeout: 250ms}}\nscrape_configs:\n- job_name: consumer\n  \
         static_configs:\n  - targets: ['{target}']\n    labels: {{namespace: surge, app_kubernetes_io_name: consumer, pod: consumer-0}}\n"
    );
    surge_harness::prometheus::Server::start(&config).expect("prometheus starts")
}
