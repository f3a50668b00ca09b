//! Client spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set: one span per
//! request, starting at its intended send time, whose context goes out as `traceparent` so the consumer's request
//! span becomes its child. Sampling and the service name follow the standard `OTEL_*` variables.

use std::time::SystemTime;

use http::header::HeaderValue;
use http::{Method, StatusCode};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

const SERVICE_NAME: &str = "surge-generator";

pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    server: String,
}

/// An open client span and the `traceparent` that carries it.
pub struct ClientSpan {
    span: opentelemetry_sdk::trace::Span,
    pub traceparent: HeaderValue,
}

impl Traces {
    /// `None` when no endpoint is configured: no exporter, no cost. Call inside the Tokio runtime.
    pub fn from_env(server: &str) -> Result<Option<Self>, String> {
        let endpoint = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .iter()
            .find_map(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()));
        let Some(endpoint) = endpoint else { return Ok(None) };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        let tracer = provider.tracer(SERVICE_NAME);
        Ok(Some(Self { provider, tracer, server: server.to_owned() }))
    }

    pub fn start(&self, method: &Method, path: &str, started: SystemTime) -> ClientSpan {
        let span = self
            .tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.full", format!("{}{path}", self.server)),
            ])
            .start(&self.tracer);
        let context = span.span_context();
        let value = format!("00-{}-{}-{:02x}", context.trace_id(), context.span_id(), context.trace_flags().to_u8());
        let traceparent = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""));
        ClientSpan { span, traceparent }
    }

    /// Flushes what is queued; blocking, so run it off the async workers.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: flushing traces failed: {e}");
        }
    }
}

impl ClientSpan {
    pub fn end(mut self, status: Result<StatusCode, &'static str>) {
        match status {
            Ok(code) => {
                self.span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code.as_u16())));
                if code.is_server_error() {
                    self.span.set_status(Status::error(code.to_string()));
                }
            }
            Err(cause) => self.span.set_status(Status::error(cause)),
        }
        self.span.end();
    }
}

/// A fresh sampled W3C trace context without an exported span (`--trace` with no endpoint): the consumer's spans
/// for one request still share one trace id.
pub fn random_traceparent() -> HeaderValue {
    let value = format!("00-{:032x}-{:016x}-01", fastrand::u128(1..), fastrand::u64(1..));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_traceparents_are_well_formed_and_fresh() {
        let (a, b) = (random_traceparent(), random_traceparent());
        assert_ne!(a, b);
        let text = a.to_str().expect("ascii");
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [2, 32, 16, 2]);
        assert!(parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
