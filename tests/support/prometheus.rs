//! Debian's Prometheus, started by a test on a free loopback port with the configuration it is given: the harness's
//! launcher (`surge_harness::prometheus::Server`, the one way every test and the closed loop start it), queried here
//! through reqwest.

use serde_json::Value;

pub struct Prometheus {
    // Held for its Drop: the process lives as long as this value.
    _server: surge_harness::prometheus::Server,
    pub address: String,
}

impl Prometheus {
    /// Starts Prometheus with `config_yaml` and returns once it reports ready; killed on drop.
    pub async fn start(_client: &reqwest::Client, config_yaml: &str) -> Self {
        let config = config_yaml.to_owned();
        let server = tokio::task::spawn_blocking(move || surge_harness::prometheus::Server::start(&config))
            .await
            .expect("the launcher's thread")
            .expect("prometheus starts (.ci/run installs Debian's prometheus package)");
        Self { address: server.url(), _server: server }
    }

    /// The value of a single-series instant query, once it has one (polling for up to 30 s).
    pub async fn value_once_present(&self, client: &reqwest::Client, promql: &str) -> f64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(value) = self.query(client, promql).await.first().and_then(|s| s["value"][1].as_str()) {
                return value.parse().expect("sample value");
            }
            assert!(std::time::Instant::now() < deadline, "no result for {promql}");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
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
