//! One span per request with the HTTP semantic-convention attributes, continuing an incoming W3C `traceparent`
//! (created only while traces are exported), and the access-log line its `AccessLogger` asks for when it ends. The
//! request middleware calls these.

use std::time::Instant;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::access_log::{AccessLogger, Verdict};
use super::trace_ids::current_trace_ids;
use crate::route_label;

/// Reads W3C trace context from actix's headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The request's span, disabled (and its fields never evaluated) unless the OpenTelemetry layer is installed.
pub fn request_span(req: &ServiceRequest) -> tracing::Span {
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %format!("{} {}", req.method(), route_label::route_template(req.request())),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = %route_label::route_template(req.request()),
        url.path = %req.path(),
        url.query = %req.query_string(),
        url.scheme = %req.connection_info().scheme(),
        server.address = %req.connection_info().host(),
        client.address = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        network.protocol.version = ?req.version(),
        user_agent.original = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
        http.response.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(req.headers()))
        });
        // Fails only without the OpenTelemetry layer, which a live span implies is there.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the answer's status on a live span.
pub fn record_status(span: &tracing::Span, status: StatusCode) {
    if !span.is_disabled() {
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The request's access line, if the policy asks for one; `route` is computed only then.
pub fn access_line(
    access_log: &AccessLogger,
    status: StatusCode,
    route: impl FnOnce() -> String,
    method: &str,
    path: &str,
    started: Instant,
) {
    if let Verdict::Log { suppressed, route } = access_log.verdict(status, route) {
        let ids = current_trace_ids();
        tracing::info!(
            method,
            route,
            path,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            trace_id = ids.trace_id.as_deref(),
            span_id = ids.span_id.as_deref(),
            suppressed_before = (suppressed > 0).then_some(suppressed),
            "request"
        );
    }
}
