//! Prometheus as the harness and the tests run it: Debian's binary on a free loopback port with the configuration it
//! is given, killed on drop; and the monitoring component's scrape job with Kubernetes discovery swapped for a file.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use surge_generator::prometheus::Prom;
use surge_keda::scaled_object::find;

/// Debian's Prometheus on a free loopback port with the configuration it is given; killed on drop. The harness and
/// the generator's tests start it the same way.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    data: tempfile::TempDir,
}

impl Server {
    /// Starts Prometheus with `config_yaml` and returns once it reports ready.
    pub fn start(config_yaml: &str) -> Result<Self, String> {
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(data.path().join("prometheus.yml"), config_yaml).map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let mut server = Self { child: None, port, data };
        server.resume()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.client().ready() {
            if Instant::now() > deadline {
                return Err("prometheus never became ready".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Kills the process: an unreachable Prometheus (connections refused) until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.child.is_none()
    }

    /// Starts the process again on the same port, configuration and data, without waiting for it to be ready.
    pub fn resume(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", self.data.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("prometheus (scripts/install-tools.sh installs it): {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Prom {
        Prom::new("127.0.0.1", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The monitoring component's consumer scrape job, its Kubernetes discovery swapped for a file this harness writes.
pub(crate) fn start_prometheus(objects: &[Value], targets: &Path, factor: f64) -> Result<Server, String> {
    let text = find(objects, "ConfigMap", "prometheus-config")?["data"]["prometheus.yml"]
        .as_str()
        .ok_or("prometheus.yml")?
        .to_owned();
    let mut config: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let scrape = format!("{}ms", (5000.0 / factor).round().max(100.0));
    config["global"]["scrape_interval"] = scrape.clone().into();
    config["global"]["scrape_timeout"] = scrape.into();
    let jobs = config["scrape_configs"].as_array_mut().ok_or("scrape_configs")?;
    // Jobs with fixed cluster addresses (KEDA's operator) have nothing to reach here.
    jobs.retain(|job| job.get("kubernetes_sd_configs").is_some());
    for job in jobs.iter_mut() {
        if let Some(job) = job.as_object_mut() {
            job.remove("kubernetes_sd_configs");
            job.insert("file_sd_configs".into(), json!([{"files": [targets.display().to_string()]}]));
        }
    }
    std::fs::write(targets, "[]").map_err(|e| e.to_string())?;
    Server::start(&serde_yaml_ng::to_string(&config).map_err(|e| e.to_string())?)
}

impl crate::restartable::Restartable for Server {
    fn is_stopped(&self) -> bool {
        Server::is_stopped(self)
    }

    fn stop(&mut self) {
        Server::stop(self);
    }

    fn resume(&mut self) -> Result<(), String> {
        Server::resume(self)
    }
}
