//! One span per request with the HTTP semantic-convention attributes, continuing an incoming W3C `traceparent`,
//! and one JSON log line per request when it ends. Wrapped with `middleware::from_fn(request_span)`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::Error;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::current_trace_ids;
use crate::routes;

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

pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = req.method().clone();
    let route = routes::route_template(req.request()).into_owned();
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %req.path(),
        url.query = %req.query_string(),
        url.scheme = %req.connection_info().scheme(),
        server.address = %req.connection_info().host(),
        client.address = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        network.protocol.version = ?req.version(),
        user_agent.original = req.headers().get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
        http.response.status_code = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(req.headers()))
    });
    // Without the OpenTelemetry layer there is no trace to join; the span still carries the log line.
    let _ = span.set_parent(parent);
    let started = Instant::now();
    let path = req.path().to_owned();
    async move {
        let result = next.call(req).await;
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        let current = tracing::Span::current();
        current.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            current.record("otel.status_code", "ERROR");
        }
        let ids = current_trace_ids();
        tracing::info!(
            method = %method,
            route = %route,
            path = %path,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            trace_id = ids.trace_id.as_deref(),
            span_id = ids.span_id.as_deref(),
            "request"
        );
        result
    }
    .instrument(span)
    .await
}
