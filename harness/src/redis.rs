//! A real `redis-server` (Debian's, installed by scripts/install-tools.sh) on a free loopback port in its own
//! directory: the shared backlog of the closed loop, and the one the queue tests stop, kill and start again on the same
//! port and data. The one way anything here starts Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use surge_keda::redis_streams::RedisStreams;

/// How the queue component's Redis writes its append-only file (tests/deploy checks the manifest says the same):
/// every write synced before it is answered, so an answered enqueue survives a crash of Redis's node.
pub const APPEND_FSYNC: &str = "always";

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    append_only: bool,
    /// How the append-only file is synced: `APPEND_FSYNC` as deployed, or `everysec` for the closed loop's stop fault.
    fsync: &'static str,
    /// Configuration lines besides the command line's (TLS, ACL users), written to a file Redis reads first.
    config: String,
    /// The TLS port, when `config` opens one.
    pub tls_port: Option<u16>,
}

impl RedisServer {
    /// With its append-only file on (every write synced), as the queue component runs it: what it accepted survives
    /// a restart.
    pub fn start() -> Result<Self, String> {
        let mut server = Self::unstarted()?;
        server.resume()?;
        Ok(server)
    }

    /// With its append-only file synced every second, for the closed loop's Redis that is stopped (SIGTERM writes
    /// everything out) and started again: a sync per write, beside ten replicas and two other runs, cost the loop's
    /// syncs their time on this machine.
    pub fn restartable() -> Result<Self, String> {
        let mut server = Self::unstarted()?;
        server.fsync = "everysec";
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
        Ok(Self {
            child: None,
            port,
            dir,
            append_only: true,
            fsync: APPEND_FSYNC,
            config: String::new(),
            tls_port: None,
        })
    }

    /// A managed Redis's shape: TLS on a port of its own (`cert`, `key` and the `ca` that signed them, PEM files;
    /// clients need no certificate) beside the plain port this type's `cli` uses, and `users` as ACL lines (`user
    /// NAME on >PASSWORD ~KEYS +COMMANDS`). Append-only, as `start`.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        users: &[&str],
    ) -> Result<Self, String> {
        let mut server = Self::unstarted()?;
        let tls_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("a free port: {e}"))?;
        let mut config = format!(
            "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n",
            cert.display(),
            key.display(),
            ca.display()
        );
        for user in users {
            config.push_str(user);
            config.push('\n');
        }
        server.config = config;
        server.tls_port = Some(tls_port);
        server.resume()?;
        Ok(server)
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
        let config = self.dir.path().join("redis.conf");
        std::fs::write(&config, &self.config).map_err(|e| format!("write {}: {e}", config.display()))?;
        let child = Command::new("redis-server")
            .arg(&config)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if self.append_only { "yes" } else { "no" }, "--appendfsync", self.fsync])
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

    /// Whether it was stopped (or never started) and not started again.
    pub fn is_stopped(&self) -> bool {
        self.child.is_none()
    }

    /// SIGTERM, as a restart sends; waits for the exit.
    pub fn stop(&mut self) {
        self.signal_and_wait(libc::SIGTERM);
    }

    /// SIGKILL, as an OOM kill or a lost node: no shutdown, only what the append-only file already holds survives.
    pub fn kill(&mut self) {
        self.signal_and_wait(libc::SIGKILL);
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) with a pid this process spawned and has not yet waited for.
                unsafe { libc::kill(pid, signal) };
            }
            let _ = child.wait();
        }
    }

    /// `redis-cli` against this server; the reply as text (empty when it cannot connect or is not installed).
    pub fn cli(&self, args: &[&str]) -> String {
        self.output(args).map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default()
    }

    /// `redis-cli` against this server, as it ran.
    fn output(&self, args: &[&str]) -> Result<std::process::Output, String> {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map_err(|e| format!("redis-cli: {e}"))
    }

    /// The count KEDA's redis-streams scaler reads for `scaler`, asked over RESP as the watch table asks it (one
    /// reader, `RedisStreams::count`); an error when Redis does not answer, as the scaler's is.
    pub fn stream_count(&self, scaler: &RedisStreams) -> Result<f64, String> {
        surge_generator::redis::Redis::parse(&self.url())?.stream_count(scaler)
    }

    /// Tasks in the consumer's stream not yet handed to any replica (XLEN less the group's pending count, in one
    /// script so no delivery falls between the two); an error when Redis does not answer or the group is missing.
    pub fn undelivered(&self) -> Result<f64, String> {
        // The consumer's defaults: `<QUEUE_KEY>:tasks` with QUEUE_KEY "surge", read through the group "consumers".
        let script = "return redis.call('XLEN', KEYS[1]) - redis.call('XPENDING', KEYS[1], ARGV[1])[1]";
        let output = self.output(&["EVAL", script, "1", "surge:tasks", "consumers"])?;
        let reply = String::from_utf8_lossy(&output.stdout);
        reply
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("undelivered: {reply}{}", String::from_utf8_lossy(&output.stderr)))
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

impl crate::restartable::Restartable for RedisServer {
    fn is_stopped(&self) -> bool {
        RedisServer::is_stopped(self)
    }

    fn stop(&mut self) {
        RedisServer::stop(self);
    }

    fn resume(&mut self) -> Result<(), String> {
        RedisServer::resume(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each count KEDA's redis-streams scaler can read, from a real Redis: 3 entries, 2 delivered to the group and 1
    /// of those acknowledged, so XLEN 3, pending 1, lag 1; a missing group's lag is XLEN; a stopped Redis an error.
    #[test]
    fn the_scalers_counts_read_from_a_real_redis() {
        let mut redis = RedisServer::ephemeral().expect("redis-server starts");
        for _ in 0..3 {
            redis.cli(&["XADD", "s", "*", "f", "v"]);
        }
        redis.cli(&["XGROUP", "CREATE", "s", "g", "0"]);
        let delivered = redis.cli(&["XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">"]);
        let first = delivered.lines().nth(1).expect("an entry id").to_owned();
        redis.cli(&["XACK", "s", "g", &first]);
        let scaler = |metadata| RedisStreams::from_metadata(&metadata).expect("valid");
        let count = |metadata| redis.stream_count(&scaler(metadata)).expect("a count");
        assert_eq!(count(serde_json::json!({"stream": "s"})), 3.0);
        assert_eq!(count(serde_json::json!({"stream": "s", "consumerGroup": "g"})), 1.0);
        assert_eq!(count(serde_json::json!({"stream": "s", "consumerGroup": "g", "lagCount": "5"})), 1.0);
        assert_eq!(count(serde_json::json!({"stream": "s", "consumerGroup": "none", "lagCount": "5"})), 3.0);
        // No stream at all: a lag of 0 (XINFO GROUPS answers "no such key"), a length of 0; pending entries an error.
        assert_eq!(count(serde_json::json!({"stream": "none", "consumerGroup": "g", "lagCount": "5"})), 0.0);
        assert_eq!(count(serde_json::json!({"stream": "none"})), 0.0);
        let pending = redis.stream_count(&scaler(serde_json::json!({"stream": "none", "consumerGroup": "g"})));
        assert!(pending.as_ref().is_err_and(|e| e.contains("NOGROUP")), "{pending:?}");
        redis.stop();
        assert!(redis.stream_count(&scaler(serde_json::json!({"stream": "s"}))).is_err(), "Redis down: an error");
    }

    /// Undelivered is what no replica holds yet: 3 added, 2 delivered, then one of those finished as the consumer
    /// finishes (XACK and XDEL): 1 undelivered throughout; no group (no replica has started), an error.
    #[test]
    fn undelivered_counts_what_no_replica_holds() {
        let redis = RedisServer::ephemeral().expect("redis-server starts");
        for _ in 0..3 {
            redis.cli(&["XADD", "surge:tasks", "*", "f", "v"]);
        }
        assert!(redis.undelivered().is_err(), "no group yet");
        redis.cli(&["XGROUP", "CREATE", "surge:tasks", "consumers", "0"]);
        assert_eq!(redis.undelivered(), Ok(3.0));
        let delivered =
            redis.cli(&["XREADGROUP", "GROUP", "consumers", "c", "COUNT", "2", "STREAMS", "surge:tasks", ">"]);
        assert_eq!(redis.undelivered(), Ok(1.0));
        let first = delivered.lines().nth(1).expect("an entry id").to_owned();
        redis.cli(&["XACK", "surge:tasks", "consumers", &first]);
        redis.cli(&["XDEL", "surge:tasks", &first]);
        assert_eq!(redis.undelivered(), Ok(1.0));
    }
}
