//! Telemetry: log lines on stdout (JSON, or text on a terminal), OTLP traces over gRPC, and Loki log pushes, each
//! optional but stdout.
//!
//! Sinks that are down must not hurt: both remote sinks have bounded queues, count what they drop in
//! `telemetry_dropped_total{sink}`, and warn at most once a minute.

mod access_log;
mod json_lines;
mod loki;
mod otlp;
mod rate_limit;
mod request_span;
mod trace_ids;

use std::io::IsTerminal;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use access_log::{AccessLog, AccessLogger};
pub use rate_limit::LogRateLimit;
pub use request_span::{access_line, record_status, request_span};
pub use trace_ids::{current_trace_ids, TraceIds};

use crate::identity::PodIdentity;

/// Lines waiting for the stdout writer thread; past this they are dropped and counted rather than stall a request.
/// The queue is allocated whole (32 bytes a line): 8 Ki lines is 256 KiB resident where 64 Ki cost 2 MiB of an idle
/// pod, and still holds seconds of the busiest logging short of `--access-log all` at full speed.
const STDOUT_QUEUE_LINES: usize = 8 * 1024;
/// Lines reach stdout in writes of up to this many bytes, not one write per line.
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;
/// How often the stdout writer's drop count is copied into `telemetry_dropped_total{sink="stdout"}`.
const STDOUT_DROPS_EVERY: Duration = Duration::from_secs(5);

/// `--log-format`: how stdout lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (what log pipelines parse).
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// The format asked for, else text on a terminal and JSON anywhere else (a pod's stdout is a pipe).
    pub fn resolve(asked: Option<Self>) -> Self {
        asked.unwrap_or(if std::io::stdout().is_terminal() { Self::Text } else { Self::Json })
    }
}

/// Keeps the sinks alive; dropping it flushes the stdout writer and what the OTLP exporter holds.
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    _stdout: WorkerGuard,
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

/// Installs the global subscriber: stdout always (a writer thread, buffered); OTLP when
/// `OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT` is set; Loki when `LOKI_URL` is set. Must run inside the Tokio runtime (the
/// Loki pusher and the stdout drop counter are tasks on it).
pub fn init(identity: &PodIdentity, dropped: &IntCounterVec, format: LogFormat) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, stdout_guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(STDOUT_QUEUE_LINES)
        .thread_name("stdout-log")
        .finish(std::io::BufWriter::with_capacity(STDOUT_BUFFER_BYTES, std::io::stdout()));
    tokio::spawn(count_stdout_drops(writer.error_counter(), dropped.with_label_values(&["stdout"])));
    let stdout = match format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().event_format(json_lines::JsonLines).with_writer(writer).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
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
        tracing_opentelemetry::layer().with_tracer(provider.tracer(otlp::SERVICE_NAME))
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

    // The log sinks see events only: no layer but OpenTelemetry's needs spans, so without it spans cost nothing.
    let events = filter.and(filter_fn(|metadata| metadata.is_event()));
    // Filtered even when absent: an empty `Option` layer would otherwise enable every span callsite.
    let tracing_on = otel_layer.is_some();
    let traces = otel_layer.with_filter(filter_fn(move |_| tracing_on));
    tracing_subscriber::registry().with(stdout.and_then(loki_layer).with_filter(events)).with(traces).init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    TelemetryGuard { tracer_provider, _stdout: stdout_guard }
}

/// Copies the stdout writer's drop count into the metric, for as long as the process runs.
async fn count_stdout_drops(errors: ErrorCounter, counter: IntCounter) {
    let mut interval = tokio::time::interval(STDOUT_DROPS_EVERY);
    loop {
        interval.tick().await;
        let total = errors.dropped_lines() as u64;
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_trace_outside_a_span() {
        let ids = current_trace_ids();
        assert!(ids.trace_id.is_none() && ids.span_id.is_none());
    }
}
