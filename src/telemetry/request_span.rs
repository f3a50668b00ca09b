//! One span per request with the HTTP semantic-convention attributes, continuing an incoming W3C `traceparent`
//! (created only while traces are exported), and the access-log line its `AccessLogger` asks for when it ends.
//! It also stamps `X-Served-By` and, while the pod drains, closes each connection after its response.
//! A hand-written middleware rather than `from_fn`: every request passes here, and this one boxes nothing.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::Error;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::access_log::{AccessLogger, Verdict};
use super::trace_ids::current_trace_ids;
use crate::peer::client_closed_request;
use crate::route_label;

const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

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

/// The middleware factory: `App::new().wrap(RequestTelemetry::new(access_log, pod_name, draining))`. It also stamps
/// every response with `X-Served-By: <pod>` (what the generator's per-pod distribution counts), and while `draining`
/// answers with `Connection: close`: a keep-alive client pinned to this pod reconnects through the Service to a ready
/// pod instead of meeting a closed socket when the drain ends. One middleware, not three.
pub struct RequestTelemetry {
    access_log: AccessLogger,
    served_by: HeaderValue,
    draining: Arc<AtomicBool>,
}

impl RequestTelemetry {
    pub fn new(access_log: AccessLogger, pod_name: &str, draining: Arc<AtomicBool>) -> Self {
        let served_by = HeaderValue::from_str(pod_name).unwrap_or_else(|_| HeaderValue::from_static("unnamed"));
        Self { access_log, served_by, draining }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let (access_log, served_by) = (Rc::new(self.access_log.clone()), self.served_by.clone());
        let draining = Arc::clone(&self.draining);
        ready(Ok(RequestTelemetryService { service, access_log, served_by, draining }))
    }
}

pub struct RequestTelemetryService<S> {
    service: S,
    /// One per worker: a request clones the `Rc` without an atomic.
    access_log: Rc<AccessLogger>,
    served_by: HeaderValue,
    draining: Arc<AtomicBool>,
}

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = TelemetryFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let span = request_span(&req);
        let unanswered = Unanswered {
            pending: Some((req.method().clone(), route_label::template_of(req.path()))),
            access_log: Rc::clone(&self.access_log),
            started: Instant::now(),
        };
        let inner = {
            let _entered = span.enter();
            self.service.call(req)
        };
        let served_by = self.served_by.clone();
        let draining = Arc::clone(&self.draining);
        TelemetryFuture { inner, span, unanswered, served_by, draining }
    }
}

/// The request's span, disabled (and its fields never evaluated) unless the OpenTelemetry layer is installed.
fn request_span(req: &ServiceRequest) -> tracing::Span {
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

/// A request until it answers: if actix drops it first (its client reset the connection), its access line is written
/// as nginx's 499 from what was kept of it. Kept without allocating: the method, and the route template its path
/// fits, which also stands for the path (a copy of the URI would allocate on every request).
struct Unanswered {
    pending: Option<(Method, &'static str)>,
    access_log: Rc<AccessLogger>,
    started: Instant,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((method, route)) = self.pending.take() {
            access_line(
                &self.access_log,
                client_closed_request(),
                || route.to_owned(),
                method.as_str(),
                route,
                self.started,
            );
        }
    }
}

/// The request's access line, if the policy asks for one; `route` is computed only then.
fn access_line(
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

pin_project_lite::pin_project! {
    /// The inner service's future, polled inside the request's span; records the outcome when it completes.
    pub struct TelemetryFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        unanswered: Unanswered,
        served_by: HeaderValue,
        draining: Arc<AtomicBool>,
    }
}

impl<F, B> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &mut result {
            response.headers_mut().insert(X_SERVED_BY, this.served_by.clone());
            if this.draining.load(Ordering::Relaxed) {
                response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
            }
        }
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        if !this.span.is_disabled() {
            this.span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                this.span.record("otel.status_code", "ERROR");
            }
        }
        this.unanswered.pending = None;
        // The common case (a success that is not logged) never looks at the route.
        let route = || result.as_ref().map_or(String::new(), |r| route_label::route_template(r.request()).into_owned());
        let (method, path) = result.as_ref().map_or(("", ""), |r| (r.request().method().as_str(), r.request().path()));
        access_line(this.unanswered.access_log.as_ref(), status, route, method, path, this.unanswered.started);
        Poll::Ready(result)
    }
}
