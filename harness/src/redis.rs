//! A real `redis-server` (Debian's, installed by scripts/install-tools.sh) on a free loopback port in its own
//! directory: the shared backlog of the closed loop, and the one the queue tests stop, kill and start again on the same
//! port and data. The one way anything here starts Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    append_only: bool,
}

impl RedisServer {
    /// With its append-only file on (every write synced), as the queue component runs it: what it accepted survives
    /// a restart.
    pub fn start() -> Result<Self, String> {
        let mut server = Self::unstarted()?;
        server.resume()?;
        Ok(server)
    }

    /// Without the append-only file, for a run that never restarts it (the closed loop).
    pub fn ephemeral() -> Result<Self, String> {
        let mut server = Self::unstarted()?;
        server.append_only = false;
        server.resume()?;
        Ok(server)
    }

    /// A port nothing listens on yet, for a server started later (append-only file on).
    pub fn unstarted() -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| format!("a directory for redis: {e}"))?;
        Ok(Self { child: None, port, dir, append_only: true })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and directory, with the append-only file on the same data; returns once it
    /// answers PING.
    pub fn resume(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("redis is already running".into());
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.append_only { "yes" } else { "no" }, "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("redis-server (scripts/install-tools.sh installs it): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            if Instant::now() > deadline {
                return Err(format!("redis-server did not answer PING on {} within 10 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM, as a restart sends; waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a pid this process spawned and has not yet waited for.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = child.wait();
        }
    }

    /// `redis-cli` against this server; the reply as text (empty when it cannot connect or is not installed).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Calls of each command since the last `CONFIG RESETSTAT` (inner calls of scripts included), from
    /// `INFO commandstats`.
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|field| field.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
