//! Debian's Prometheus, started by a test on a free loopback port with the configuration it is given.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Prometheus {
    child: Child,
    pub address: String,
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` and returns once it reports ready; killed on drop.
    pub async fn start(client: &reqwest::Client, config_yaml: &str) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let config = data.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write config");
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (.ci/run installs Debian's prometheus package)");
        let server = Self { child, address: format!("http://127.0.0.1:{port}"), _data: data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.get(format!("{}/-/ready", server.address)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// The result vector of an instant query.
    pub async fn query(&self, client: &reqwest::Client, promql: &str) -> Vec<Value> {
        let answer: Value = client
            .get(format!("{}/api/v1/query", self.address))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query JSON");
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().expect("result").clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
