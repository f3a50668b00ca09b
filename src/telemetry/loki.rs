//! Log events pushed to Loki in its native push format (snappy-compressed protobuf `PushRequest`), one stream per level.
//!
//! Why not tracing-loki's own background task: it keeps an unbounded queue and sends without a timeout, so a Loki that
//! accepts connections and never answers grows memory without limit. This keeps its wire types (`loki-api`) and adds
//! a bounded queue, a push timeout and a drop counter.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use prost::Message;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::rate_limit::LogRateLimit;
use crate::identity::PodIdentity;

/// Events waiting to be pushed; past this they are dropped and counted.
const QUEUE_CAPACITY: usize = 1024;
/// Most events in one push.
const MAX_BATCH: usize = 512;
/// How long a push waits for more events to fill its batch.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// A push that takes longer has failed; its batch is counted as dropped.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

struct Entry {
    level: Level,
    timestamp: SystemTime,
    line: String,
}

/// The layer that queues events; `layer` spawns the task that pushes them.
pub struct LokiLayer {
    sender: mpsc::Sender<Entry>,
    dropped: IntCounter,
    warning: std::sync::Arc<LogRateLimit>,
}

/// Builds the layer and spawns its pusher on the current runtime. `url` is Loki's base URL.
pub fn layer(url: &str, identity: &PodIdentity, dropped: IntCounter) -> Result<LokiLayer, String> {
    let base = url::Url::parse(url).map_err(|e| format!("LOKI_URL {url:?}: {e}"))?;
    let push_url = base.join("loki/api/v1/push").map_err(|e| format!("LOKI_URL {url:?}: {e}"))?;
    let client = reqwest::Client::builder().timeout(PUSH_TIMEOUT).build().map_err(|e| e.to_string())?;
    let labels = StreamLabels {
        service: std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| super::otlp::SERVICE_NAME.to_owned()),
        namespace: identity.pod_namespace.clone(),
        pod: identity.pod_name.clone(),
    };
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    let warning = std::sync::Arc::new(LogRateLimit::new(1, 60));
    let pusher =
        Pusher { client, push_url, labels, dropped: dropped.clone(), warning: std::sync::Arc::clone(&warning) };
    tokio::spawn(pusher.run(receiver));
    Ok(LokiLayer { sender, dropped, warning })
}

impl<S: Subscriber> Layer<S> for LokiLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Our own warnings about Loki go to stdout only, or a Loki outage would feed itself.
        if event.metadata().target() == module_path!() {
            return;
        }
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        fields.0.insert("level".into(), event.metadata().level().as_str().into());
        fields.0.insert("target".into(), event.metadata().target().into());
        let entry = Entry {
            level: *event.metadata().level(),
            timestamp: SystemTime::now(),
            line: serde_json::Value::Object(fields.0).to_string(),
        };
        if self.sender.try_send(entry).is_err() {
            self.dropped.inc();
            if self.warning.admit().is_some() {
                tracing::warn!(
                    sink = "loki",
                    "Loki is behind; dropping log lines (counted in telemetry_dropped_total)"
                );
            }
        }
    }
}

#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

struct StreamLabels {
    service: String,
    namespace: String,
    pod: String,
}

impl StreamLabels {
    /// The label set in Loki's selector syntax, values escaped as PromQL strings.
    fn selector(&self, level: Level) -> String {
        let quote = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            "{{service=\"{}\",namespace=\"{}\",pod=\"{}\",level=\"{}\"}}",
            quote(&self.service),
            quote(&self.namespace),
            quote(&self.pod),
            level.as_str().to_ascii_lowercase()
        )
    }
}

struct Pusher {
    client: reqwest::Client,
    push_url: url::Url,
    labels: StreamLabels,
    dropped: IntCounter,
    warning: std::sync::Arc<LogRateLimit>,
}

impl Pusher {
    async fn run(self, mut receiver: mpsc::Receiver<Entry>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = receiver.recv().await {
            batch.push(first);
            let deadline = tokio::time::sleep(BATCH_WAIT);
            tokio::pin!(deadline);
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    entry = receiver.recv() => match entry {
                        Some(entry) => batch.push(entry),
                        None => break,
                    },
                    () = &mut deadline => break,
                }
            }
            let count = batch.len();
            if let Err(error) = self.push(&mut batch).await {
                self.dropped.inc_by(count as u64);
                if self.warning.admit().is_some() {
                    tracing::warn!(sink = "loki", %error, dropped = count, "pushing logs to Loki failed");
                }
            }
            batch.clear();
        }
    }

    async fn push(&self, batch: &mut [Entry]) -> Result<(), String> {
        let mut streams: BTreeMap<Level, Vec<loki_api::logproto::EntryAdapter>> = BTreeMap::new();
        for entry in batch.iter_mut() {
            streams.entry(entry.level).or_default().push(loki_api::logproto::EntryAdapter {
                timestamp: Some(prost_types::Timestamp::from(entry.timestamp)),
                line: std::mem::take(&mut entry.line),
            });
        }
        let request = loki_api::logproto::PushRequest {
            streams: streams
                .into_iter()
                .map(|(level, entries)| loki_api::logproto::StreamAdapter {
                    labels: self.labels.selector(level),
                    entries,
                    hash: 0,
                })
                .collect(),
        };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).map_err(|e| e.to_string())?;
        self.client
            .post(self.push_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_quotes_values() {
        let labels = StreamLabels { service: "surge".into(), namespace: "ns".into(), pod: "a\"b".into() };
        assert_eq!(labels.selector(Level::WARN), r#"{service="surge",namespace="ns",pod="a\"b",level="warn"}"#);
    }
}
