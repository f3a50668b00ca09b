//! Every ScaledObject query and dashboard expression is PromQL a real Prometheus parses.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::manifests::{self, kinds};

pub struct Prometheus {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// Debian's Prometheus on a loopback port with this configuration, once it reports ready.
    pub async fn start(client: &reqwest::Client, config_yaml: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let config = data.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("config");
        let port = TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed");
        let server = Self { child, address: format!("http://127.0.0.1:{port}"), _data: data };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.get(format!("{}/-/ready", server.address)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "prometheus never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn parse(&self, client: &reqwest::Client, query: &str) -> Value {
        client
            .post(format!("{}/api/v1/format_query", self.address))
            .form(&[("query", query)])
            .send()
            .await
            .expect("format_query")
            .json()
            .await
            .expect("JSON")
    }
}

impl Prometheus {
    /// The instant-query result vector.
    pub async fn query(&self, client: &reqwest::Client, query: &str) -> Vec<Value> {
        let answer: Value = client
            .get(format!("{}/api/v1/query", self.address))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"].as_array().expect("result").clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn scaled_object_queries_and_dashboard_expressions_parse() {
    let client = reqwest::Client::new();
    // Nothing to scrape: only the parser is used.
    let prometheus = Prometheus::start(&client, "global: {scrape_interval: 15s}\n").await;
    let mut queries = Vec::new();
    for overlay in manifests::overlay_names() {
        for so in kinds(&manifests::overlay(&overlay).objects, "ScaledObject") {
            for trigger in
                so["spec"]["triggers"].as_array().expect("triggers").iter().filter(|t| t["type"] == "prometheus")
            {
                queries.push(trigger["metadata"]["query"].as_str().expect("query").to_owned());
            }
        }
    }
    assert!(queries.len() >= 8, "both overlays' triggers: {queries:?}");
    for entry in std::fs::read_dir(manifests::repo().join("grafana/dashboards")).expect("dashboards") {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("read")).expect("JSON");
        for panel in
            dashboard["panels"].as_array().expect("panels").iter().filter(|p| p["datasource"]["type"] == "prometheus")
        {
            queries.extend(
                panel["targets"]
                    .as_array()
                    .expect("targets")
                    .iter()
                    .map(|t| t["expr"].as_str().expect("expr").to_owned()),
            );
        }
    }
    for query in &queries {
        let answer = prometheus.parse(&client, query).await;
        assert_eq!(answer["status"], "success", "{query}: {answer}");
    }
    let broken = prometheus.parse(&client, "sum(rate(http_requests_total[1m])").await;
    assert_eq!(broken["status"], "error", "the parser rejects what is not PromQL");
}
