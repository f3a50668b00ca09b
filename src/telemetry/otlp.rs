//! OTLP traces over gRPC, configured only by the standard `OTEL_*` variables.
//!
//! The SDK's batch processor drops spans silently when its queue is full; a gate in front of it counts what is queued
//! and not yet exported, drops (and counts) past the queue size, so a hanging collector costs a bounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

use super::rate_limit::LogRateLimit;

/// `service.name` and the Loki `service` label when `OTEL_SERVICE_NAME` is unset.
pub(super) const SERVICE_NAME: &str = "surge-consumer";

const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;

/// A tracer provider exporting to the configured endpoint, or `None` when no endpoint is set (no exporter, no cost).
pub fn tracer_provider(dropped: IntCounter) -> Result<Option<SdkTracerProvider>, String> {
    let endpoint = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|value| !value.trim().is_empty()));
    let Some(endpoint) = endpoint else { return Ok(None) };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let max_queue_size = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
    let queued = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        queued: Arc::clone(&queued),
        dropped: dropped.clone(),
    })
    .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(max_queue_size).build())
    .build();
    let gate = QueueGate { inner: batch, queued, limit: max_queue_size, dropped, warning: LogRateLimit::new(1, 60) };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(Some(SdkTracerProvider::builder().with_span_processor(gate).with_resource(resource.build()).build()))
}

/// Passes spans to the batch processor while fewer than `limit` wait for export; drops and counts the rest.
#[derive(Debug)]
struct QueueGate {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    limit: usize,
    dropped: IntCounter,
    warning: LogRateLimit,
}

impl SpanProcessor for QueueGate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let limit = self.limit;
        if self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_err() {
            self.dropped.inc();
            if self.warning.admit().is_some() {
                tracing::warn!(
                    sink = "otlp",
                    queued = limit,
                    "trace exporter is behind; dropping spans (counted in telemetry_dropped_total)"
                );
            }
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing gate slots as batches leave and counting failed batches as dropped.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    dropped: IntCounter,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let size = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(size, Ordering::AcqRel);
        if result.is_err() {
            self.dropped.inc_by(size as u64);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
