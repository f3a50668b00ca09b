//! Traces and logs leave the real binary in their real wire formats, join the caller's trace, and a sink that
//! hangs costs neither requests nor memory.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use reqwest::StatusCode;
use serde_json::Value;

use crate::consumer::ConsumerProcess;
use crate::receivers::{black_hole, LokiLine, LokiReceiver, OtlpReceiver};
use crate::stdin::run_with_stdin;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spans_and_logs_reach_their_receivers_and_join_the_callers_trace() {
    let (otlp, otlp_addr) = OtlpReceiver::start();
    let (loki, loki_addr) = LokiReceiver::start();
    let consumer = ConsumerProcess::start_with_env(
        &["--access-log", "all"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_SERVICE_NAME", "surge-test".into()),
            ("LOKI_URL", format!("http://{loki_addr}")),
            ("POD_NAME", "consumer-6d4cf-x1z2q".into()),
            ("POD_NAMESPACE", "surge-test".into()),
        ],
    );
    let response = reqwest::Client::new()
        .post(format!("{}/process?cpu_intensity=1&memory_size=2&duration=1", consumer.address))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .send()
        .await
        .expect("process");
    assert_eq!(response.status(), StatusCode::OK);

    // Traces: the request span is a child of the caller's span; CPU and memory spans descend from it.
    let spans = eventually("request, cpu and memory spans", || {
        let spans: Vec<(String, Span)> =
            otlp.spans().into_iter().filter(|(_, s)| hex(&s.trace_id) == TRACE_ID).collect();
        let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
        ["POST /process", "cpu_work", "memory_work"].iter().all(|n| names.contains(n)).then_some(spans)
    })
    .await;
    let by_name = |name: &str| spans.iter().map(|(_, s)| s).find(|s| s.name == name).expect("span");
    let request = by_name("POST /process");
    assert_eq!(hex(&request.parent_span_id), PARENT_SPAN_ID, "the request span continues the incoming traceparent");
    assert!(spans.iter().all(|(service, _)| service == "surge-test"), "OTEL_SERVICE_NAME names the resource");
    let text = |span: &Span, key: &str| match attribute(span, key) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        other => panic!("{key} on {}: {other:?}", span.name),
    };
    assert_eq!(text(request, "http.request.method"), "POST");
    assert_eq!(text(request, "http.route"), "/process");
    assert_eq!(text(request, "http.response.status_code"), "200");
    assert_eq!(text(request, "url.path"), "/process");
    let cpu = by_name("cpu_work");
    assert_eq!(text(cpu, "cpu.intensity"), "1");
    assert_eq!(text(by_name("memory_work"), "memory.bytes"), (2 << 20).to_string());
    let task = by_name("task");
    assert_eq!(task.parent_span_id, request.span_id, "work runs under the request span");
    assert_eq!(cpu.parent_span_id, task.span_id);

    // Stdout: one JSON line per request, carrying the trace it belongs to.
    let stdout_line = eventually("the request log line on stdout", || {
        consumer.events("request").into_iter().find(|e| e["route"] == "/process")
    })
    .await;
    assert_eq!(stdout_line["trace_id"], TRACE_ID);
    assert_eq!(stdout_line["span_id"], hex(&request.span_id));
    assert_eq!(stdout_line["status"], 200);

    // Loki: the same events, with the service, namespace, pod and level labels.
    let pushed = eventually("the request log line in Loki", || {
        loki.lines().into_iter().find(|l| {
            serde_json::from_str::<Value>(&l.line).is_ok_and(|v| v["message"] == "request" && v["route"] == "/process")
        })
    })
    .await;
    for label in
        [r#"service="surge-test""#, r#"namespace="surge-test""#, r#"pod="consumer-6d4cf-x1z2q""#, r#"level="info""#]
    {
        assert!(pushed.labels.contains(label), "{label} missing from {}", pushed.labels);
    }
    let line: Value = serde_json::from_str(&pushed.line).expect("JSON line");
    assert_eq!(line["trace_id"], TRACE_ID);
    let task_events = eventually("task events in Loki", || {
        let found: Vec<Value> = loki
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(&l.line).ok())
            .filter(|v| v["message"] == "task finished" || v["message"] == "task accepted")
            .collect();
        (found.len() >= 2).then_some(found)
    })
    .await;
    assert!(task_events.iter().all(|e| e["trace_id"] == TRACE_ID), "task events carry the trace: {task_events:?}");
}

#[tokio::test]
async fn sinks_that_hang_cost_no_requests_and_bounded_memory() {
    let hole = black_hole();
    let consumer = ConsumerProcess::start_with_env(
        &["--workers", "1", "--access-log", "all"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{hole}")),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("LOKI_URL", format!("http://{hole}")),
        ],
    );
    let client = reqwest::Client::new();
    // Not a probe route: those are never access-logged, and every logged request is a line for the Loki queue.
    let health = format!("{}/info", consumer.address);
    let send = |n: usize| {
        let (client, health) = (client.clone(), health.clone());
        async move {
            for _ in 0..n {
                let response = client.get(&health).send().await.expect("request succeeds with both sinks hanging");
                assert_eq!(response.status(), StatusCode::OK);
            }
        }
    };
    send(1000).await;
    let warm_rss = consumer.rss_bytes();
    for _ in 0..4 {
        futures_util::future::join_all((0..4).map(|_| send(1000))).await;
    }
    let grown = consumer.rss_bytes().saturating_sub(warm_rss);
    assert!(grown < 16 << 20, "16,000 requests with hanging sinks grew resident memory by {} KiB", grown >> 10);

    let exposition =
        client.get(format!("{}/metrics", consumer.address)).send().await.expect("metrics").text().await.expect("text");
    for sink in ["otlp", "loki"] {
        let series = format!("telemetry_dropped_total{{sink=\"{sink}\"}} ");
        let dropped: f64 = exposition
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing"));
        assert!(dropped > 0.0, "the {sink} queue is bounded, so a hanging {sink} sink means counted drops");
    }
    // Once each, however long the drops last (the writer thread may still hold the line, so wait for it first).
    for warning in [
        "trace exporter is behind; dropping spans (counted in telemetry_dropped_total)",
        "Loki is behind; dropping log lines (counted in telemetry_dropped_total)",
    ] {
        consumer.wait_for_event(warning, Duration::from_secs(5));
        let logged = consumer.events(warning);
        assert_eq!(logged.len(), 1, "warned more than once a minute: {logged:?}");
    }
}

#[tokio::test]
async fn the_generators_client_spans_parent_the_consumers_request_spans() {
    let (otlp, otlp_addr) = OtlpReceiver::start();
    let otlp_env =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp_addr}")), ("OTEL_BSP_SCHEDULE_DELAY", "100".into())];
    let consumer = ConsumerProcess::start_with_env(&[], &otlp_env);
    let generator = std::path::PathBuf::from(env!("CARGO_BIN_EXE_consumer")).with_file_name("generator");
    assert!(generator.exists(), "{} missing: `cargo test --workspace` builds it", generator.display());
    let output = tokio::process::Command::new(generator)
        .args(["--url", &consumer.address, "--path", "/info", "--requests", "3", "--concurrency", "1", "--probes", "1"])
        .envs(otlp_env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .expect("run the generator");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let (client, server) = eventually("3 generator spans and 3 consumer /info spans", || {
        let spans = otlp.spans();
        let client: Vec<Span> =
            spans.iter().filter(|(svc, _)| svc == "surge-generator").map(|(_, s)| s.clone()).collect();
        let server: Vec<Span> = spans
            .iter()
            .filter(|(svc, s)| svc != "surge-generator" && s.name == "GET /info")
            .map(|(_, s)| s.clone())
            .collect();
        (client.len() == 3 && server.len() == 3).then_some((client, server))
    })
    .await;
    for span in &server {
        let parent =
            client.iter().find(|c| c.span_id == span.parent_span_id).expect("a generator span parents each request");
        assert_eq!(parent.trace_id, span.trace_id, "one trace from generator to consumer");
        assert_eq!(parent.name, "GET");
        assert!(parent.start_time_unix_nano <= span.start_time_unix_nano, "the client span encloses the request");
        assert!(parent.end_time_unix_nano >= span.end_time_unix_nano);
    }
}

/// The dashboards' Loki panel queries, with Grafana's template variables filled in.
fn dashboard_loki_queries() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(dir).expect("grafana/dashboards") {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("read")).expect("JSON");
        let top = dashboard["panels"].as_array().cloned().unwrap_or_default();
        let nested: Vec<Value> = top.iter().flat_map(|p| p["panels"].as_array().cloned().unwrap_or_default()).collect();
        for panel in top.iter().chain(&nested).filter(|p| p["datasource"]["type"] == "loki") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a Loki target's expr");
                queries.push(expr.replace("$namespace", "surge").replace("$deployment", "consumer"));
            }
        }
    }
    queries
}

/// Each query as Grafana's own LogQL grammar parses it (`scripts/logql/parse.mjs`, `@grafana/lezer-logql`, the Loki
/// query editor's parser): its errors and what it names.
fn logql(queries: &[String]) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/logql/parse.mjs");
    // node is there whenever the grammar is: scripts/install-tools.sh installs both.
    let output =
        run_with_stdin(std::process::Command::new("node").arg(&script), &serde_json::to_vec(queries).expect("JSON"));
    assert!(output.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The label names of a pushed stream, `{service="x",namespace="y",...}`.
fn stream_label_names(labels: &str) -> Vec<String> {
    labels.trim_matches(['{', '}']).split("\",").filter_map(|p| p.split_once('=')).map(|(k, _)| k.to_owned()).collect()
}

/// The Loki panels' queries are LogQL (Grafana's own grammar parses them, and rejects what is not), and what each
/// names is in what a real consumer pushes: its stream selector's labels, its line filters' text, and the fields its
/// json parser's label filters compare. A panel naming a label or a field the consumer does not send shows nothing.
#[tokio::test]
async fn the_dashboards_loki_queries_parse_and_name_what_the_consumer_pushes() {
    let (loki, loki_addr) = LokiReceiver::start();
    let consumer = ConsumerProcess::start_with_env(
        &[],
        &[("LOKI_URL", format!("http://{loki_addr}")), ("POD_NAMESPACE", "surge".into())],
    );
    let response = reqwest::Client::new()
        .post(format!("{}/process?cpu_intensity=1&memory_size=2&duration=1", consumer.address))
        .send()
        .await
        .expect("process");
    assert_eq!(response.status(), StatusCode::OK);
    let pushed = eventually("a finished task's line in Loki", || {
        let lines = loki.lines();
        lines.iter().any(|l| l.line.contains("task finished")).then_some(lines)
    })
    .await;

    let queries = dashboard_loki_queries();
    assert_eq!(queries.len(), 3, "the Loki panels' queries: {queries:?}");
    assert!(queries.iter().all(|q| !q.contains('$')), "every template variable filled in: {queries:?}");
    let broken: Vec<String> =
        [r#"{namespace="surge""#, r#"{namespace="surge"} | json | slowdown >"#, "{} |= x"].map(str::to_owned).to_vec();
    for not_logql in logql(&broken) {
        assert_ne!(not_logql["errors"], serde_json::json!([]), "the grammar rejects what is not LogQL: {not_logql}");
    }
    for query in logql(&queries) {
        assert_eq!(query["errors"], serde_json::json!([]), "not LogQL: {query}");
        let names = |key: &str| -> Vec<String> {
            query[key].as_array().expect(key).iter().map(|v| v.as_str().expect("a name").to_owned()).collect()
        };
        let selected: Vec<&LokiLine> = pushed
            .iter()
            .filter(|l| names("selector_labels").iter().all(|n| stream_label_names(&l.labels).contains(n)))
            .collect();
        assert!(!selected.is_empty(), "no pushed stream has the labels {:?}: {query}", names("selector_labels"));
        let kept: Vec<&&LokiLine> =
            selected.iter().filter(|l| names("line_filters").iter().all(|f| l.line.contains(f.as_str()))).collect();
        assert!(!kept.is_empty(), "no pushed line passes the line filters: {query}");
        if names("parsers").contains(&"json".to_owned()) {
            for line in &kept {
                let fields: Value = serde_json::from_str(&line.line).expect("a JSON line");
                for label in names("filter_labels") {
                    assert!(!fields[label.as_str()].is_null(), "the field {label} is not in {}: {query}", line.line);
                }
            }
        }
    }
}
