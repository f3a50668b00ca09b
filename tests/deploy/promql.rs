//! Every ScaledObject query and dashboard expression (template variables filled in) is PromQL a real Prometheus
//! parses.

use serde_json::Value;

use crate::manifests::{self, kinds};
use crate::prometheus_server::Prometheus;

/// Prometheus's own parser: `/api/v1/format_query` parses without evaluating.
async fn parse(prometheus: &Prometheus, client: &reqwest::Client, query: &str) -> Value {
    client
        .post(format!("{}/api/v1/format_query", prometheus.address))
        .form(&[("query", query)])
        .send()
        .await
        .expect("format_query")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn scaled_object_queries_and_dashboard_expressions_parse() {
    let client = reqwest::Client::new();
    // Nothing to scrape: only the parser is used.
    let prometheus = Prometheus::start(&client, "global: {scrape_interval: 15s}\n").await;
    let mut queries = Vec::new();
    for overlay in manifests::overlay_names() {
        for so in kinds(&manifests::overlay(&overlay).objects, "ScaledObject") {
            let prometheus_triggers = manifests::triggers(&so).into_iter().filter(|t| t["type"] == "prometheus");
            queries.extend(prometheus_triggers.map(|t| t["metadata"]["query"].as_str().expect("query").to_owned()));
        }
    }
    assert!(queries.len() >= 8, "both overlays' triggers: {queries:?}");
    let dashboards = queries.len();
    for panel in manifests::dashboard_panels().iter().filter(|p| p["datasource"]["type"] == "prometheus") {
        queries.extend(manifests::expressions(panel).iter().map(|e| manifests::substituted(e)));
    }
    assert!(queries.len() > dashboards + 20, "the dashboards' queries were found");
    assert!(queries.iter().all(|q| !q.contains('$')), "every template variable is substituted");
    for query in &queries {
        let answer = parse(&prometheus, &client, query).await;
        assert_eq!(answer["status"], "success", "{query}: {answer}");
    }
    let broken = parse(&prometheus, &client, "sum(rate(http_requests_total[1m])").await;
    assert_eq!(broken["status"], "error", "the parser rejects what is not PromQL");
}
