//! Telemetry: JSON lines on stdout, OTLP traces over gRPC, and Loki log pushes, each optional but stdout.
//!
//! Sinks that are down must not hurt: both remote sinks have bounded queues, count what they drop in
//! `telemetry_dropped_total{sink}`, and warn at most once a minute.

mod loki;
mod otlp;
mod request_span;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt;
use prometheus::IntCounterVec;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use request_span::request_span;

use crate::identity::PodIdentity;

/// `service.name` and the Loki `service` label when `OTEL_SERVICE_NAME` is unset.
pub const SERVICE_NAME: &str = "surge-consumer";

/// Keeps the remote sinks alive; dropping it flushes what the OTLP exporter holds.
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "flushing traces at exit");
            }
        }
    }
}

/// Installs the global subscriber: stdout JSON always; OTLP when `OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT` is set; Loki
/// when `LOKI_URL` is set. Must run inside the Tokio runtime (the Loki pusher is a task on it).
pub fn init(identity: &PodIdentity, dropped: &IntCounterVec) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = tracing_subscriber::fmt::layer().json().with_current_span(false).flatten_event(true);
    let mut problems = Vec::new();

    let tracer_provider = match otlp::tracer_provider(dropped.with_label_values(&["otlp"])) {
        Ok(provider) => provider,
        Err(error) => {
            problems.push(format!("OTLP traces disabled: {error}"));
            None
        }
    };
    let otel_layer = tracer_provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME))
    });
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());

    let loki_layer = match std::env::var("LOKI_URL").ok().filter(|url| !url.trim().is_empty()) {
        None => None,
        Some(url) => match loki::layer(&url, identity, dropped.with_label_values(&["loki"])) {
            Ok(layer) => Some(layer),
            Err(error) => {
                problems.push(format!("Loki logs disabled: {error}"));
                None
            }
        },
    };

    tracing_subscriber::registry().with(stdout.and_then(loki_layer).with_filter(filter)).with(otel_layer).init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    TelemetryGuard { tracer_provider }
}

/// The trace and span id of the current span, when a trace is active (hex, as W3C traceparent spells them).
pub struct TraceIds {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

pub fn current_trace_ids() -> TraceIds {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        TraceIds {
            trace_id: Some(span_context.trace_id().to_string()),
            span_id: Some(span_context.span_id().to_string()),
        }
    } else {
        TraceIds { trace_id: None, span_id: None }
    }
}

/// A warning that fires at most once a minute, however often its cause recurs.
pub struct RateLimitedWarning {
    last_secs: AtomicU64,
}

impl RateLimitedWarning {
    const INTERVAL_SECS: u64 = 60;

    pub const fn new() -> Self {
        Self { last_secs: AtomicU64::new(0) }
    }

    /// True when the caller should log now (and for the next minute, false).
    pub fn should_warn(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_secs.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= Self::INTERVAL_SECS)
            && self.last_secs.compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

impl Default for RateLimitedWarning {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_minute() {
        let warning = RateLimitedWarning::new();
        assert!(warning.should_warn());
        assert!(!warning.should_warn());
        assert!(!warning.should_warn());
    }

    #[test]
    fn no_trace_outside_a_span() {
        let ids = current_trace_ids();
        assert!(ids.trace_id.is_none() && ids.span_id.is_none());
    }
}
