//! Spawns the real application in-process on port 0 and talks HTTP to it.

use std::net::TcpListener;
use std::time::Duration;

use clap::Parser;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use surge_consumer::configuration::Settings;
use surge_consumer::startup::Application;

pub const MIB: u64 = 1024 * 1024;

pub struct TestApp {
    pub address: String,
    pub client: Client,
}

/// Starts a consumer with these extra flags (one worker, a 1 GiB budget, simulated CPU work so timings do not depend
/// on the other tests sharing the machine).
pub async fn spawn_app(flags: &[&str]) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let defaults = ["consumer", "--workers", "1", "--memory-budget-mb", "1024", "--cpu-work", "simulate"];
    let args = defaults.into_iter().chain(flags.iter().copied());
    let settings = Settings::parse_from(args);
    let app = Application::build(settings, listener).expect("build the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp { address, client: Client::new() }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(format!("{}{path}", self.address)).send().await.expect("GET")
    }

    pub async fn post(&self, path_and_query: &str) -> Response {
        self.client.post(format!("{}{path_and_query}", self.address)).send().await.expect("POST")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(format!("{}{path}", self.address)).send().await.expect("DELETE")
    }

    pub async fn status(&self) -> Value {
        json(self.get("/process/status").await, StatusCode::OK).await
    }

    /// Polls `/process/status` until `done` holds; panics with the last status after 30 s.
    pub async fn wait_for_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last status: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts the status and returns the JSON body.
pub async fn json(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, expected, "body: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// One sample of a Prometheus text exposition whose labels include all of `labels`; `None` if absent.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let present: Vec<(&str, &str)> = label_text
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k, v.trim_matches('"'))))
            .collect();
        labels.iter().all(|wanted| present.contains(wanted)).then(|| value.parse().ok()).flatten()
    })
}

impl TestApp {
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("exposition")
    }
}
