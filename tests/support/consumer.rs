//! Runs the real `consumer` binary on a free port and reads its CPU and memory from /proc, from the outside.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct ConsumerProcess {
    child: Child,
    pub address: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ConsumerProcess {
    /// Starts the binary with `--port 0` and these flags; returns once it logs the port it bound.
    pub fn start(flags: &[&str]) -> Self {
        Self::start_with_env(flags, &[])
    }

    /// Starts the binary with these flags and environment variables.
    pub fn start_with_env(flags: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_consumer")), flags, env)
    }

    /// The release binary, as a pod runs it: for tests that measure latency (built once, here, if it is stale).
    pub fn start_release(flags: &[&str], env: &[(&str, String)]) -> Self {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        let binary = BUILT.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--release", "--bin", "consumer"])
                .current_dir(root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --release --bin consumer failed");
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
            target.join("release/consumer")
        });
        Self::start_binary(binary, flags, env)
    }

    fn start_binary(binary: &Path, flags: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_command(Command::new(binary), flags, env)
    }

    /// Starts `command` (the consumer binary, or a wrapper that becomes it) with these flags and variables.
    pub fn start_command(mut command: Command, flags: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["--bind", "127.0.0.1", "--port", "0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the consumer binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = lines.next().expect("the consumer exited before listening").expect("read stdout");
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if event["message"] == "consumer listening" {
                break event["port"].as_u64().expect("port in the listening event");
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe; keep the lines for assertions.
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&kept);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().expect("log lines").push(line);
            }
        });
        Self { child, address: format!("http://127.0.0.1:{port}"), lines: kept }
    }

    /// Every stdout line after the listening line, as written.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lines").clone()
    }

    /// The log events (JSON lines on stdout) with this message, so far.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        let lines = self.lines.lock().expect("log lines");
        lines
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["message"] == message)
            .collect()
    }

    /// Waits until the consumer logs this message (the signal handler runs asynchronously to `kill`).
    pub fn wait_for_event(&self, message: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(event) = self.events(message).pop() {
                return event;
            }
            assert!(Instant::now() < deadline, "the consumer never logged {message:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Resident set size, from /proc/PID/status.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line");
        kb * 1024
    }

    /// User plus system CPU time of the whole process, from /proc/PID/stat.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ticks as f64 / hz as f64
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("send signal");
    }

    /// Waits for exit; `None` if it is still running after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
