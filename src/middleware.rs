//! The one middleware every request passes: its HTTP series (`metrics::http`), its span and access line
//! (`telemetry`), `X-Served-By: <pod>` on every response (what the generator's per-pod distribution counts), and while
//! the pod drains `Connection: close`, so a keep-alive client pinned to this pod reconnects through the Service to a
//! ready pod instead of meeting a closed socket when the drain ends.
//!
//! One layer and one clock read at the start, because every request pays for each (`make bench` measures it against a
//! bare handler). Hand-written rather than `from_fn`: this one boxes nothing.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::ConnectionType;
use actix_web::Error;

use crate::metrics::http::{HttpMetrics, InProgress, WorkerSeries};
use crate::peer::client_closed_request;
use crate::telemetry::{access_line, record_status, request_span, AccessLogger};

const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// The middleware factory: `App::new().wrap(instruments.clone())`, built once per server.
#[derive(Clone)]
pub struct RequestInstruments {
    http: HttpMetrics,
    access_log: AccessLogger,
    served_by: HeaderValue,
    draining: Arc<AtomicBool>,
}

impl RequestInstruments {
    pub fn new(http: HttpMetrics, access_log: AccessLogger, pod_name: &str, draining: Arc<AtomicBool>) -> Self {
        Self { http, access_log, served_by: served_by(pod_name), draining }
    }
}

/// `X-Served-By`'s value. A static one (the name leaked once per server) is cloned into each response without
/// touching a reference count; a name a static header value cannot hold is copied, or replaced if it is no value.
fn served_by(pod_name: &str) -> HeaderValue {
    match HeaderValue::from_str(pod_name) {
        Ok(_) if pod_name.is_ascii() => HeaderValue::from_static(Box::leak(pod_name.into())),
        Ok(value) => value,
        Err(_) => HeaderValue::from_static("unnamed"),
    }
}

/// What one worker's requests share, behind one `Rc`: a request clones it without an atomic.
struct Worker {
    series: WorkerSeries,
    access_log: AccessLogger,
    served_by: HeaderValue,
    draining: Arc<AtomicBool>,
}

impl<S, B> Transform<S, ServiceRequest> for RequestInstruments
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestInstrumentsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let worker = Rc::new(Worker {
            series: self.http.for_worker(),
            access_log: self.access_log.clone(),
            served_by: self.served_by.clone(),
            draining: Arc::clone(&self.draining),
        });
        ready(Ok(RequestInstrumentsService { service, worker }))
    }
}

pub struct RequestInstrumentsService<S> {
    service: S,
    worker: Rc<Worker>,
}

impl<S, B> Service<ServiceRequest> for RequestInstrumentsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = InstrumentedFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let in_progress = InProgress::start(self.worker.series.of(&req), Instant::now());
        let span = request_span(&req);
        let inner = {
            let _entered = span.enter();
            self.service.call(req)
        };
        InstrumentedFuture { inner, span, request: Pending { in_progress, worker: Rc::clone(&self.worker) } }
    }
}

/// A request until it answers: if actix drops it first (its client reset the connection), its access line is written
/// as nginx's 499 (and `InProgress` counts it so), with its series' labels standing for the method and the path.
struct Pending {
    in_progress: InProgress,
    worker: Rc<Worker>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.in_progress.is_answered() {
            let series = self.in_progress.series();
            let (method, route) = (series.method(), series.handler());
            let started = self.in_progress.started();
            access_line(&self.worker.access_log, client_closed_request(), || route.to_owned(), method, route, started);
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, polled inside the request's span; records the outcome when it completes.
    pub struct InstrumentedFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        request: Pending,
    }
}

impl<F, B> Future for InstrumentedFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut result = std::task::ready!(this.inner.poll(cx));
        let Pending { in_progress, worker } = this.request;
        if let Ok(response) = &mut result {
            response.headers_mut().insert(X_SERVED_BY, worker.served_by.clone());
            if worker.draining.load(Ordering::Relaxed) {
                response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
            }
        }
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        record_status(this.span, status);
        in_progress.answered(status);
        let series = in_progress.series();
        // The common case (a success that is not logged) never copies the route.
        let (method, path) = result
            .as_ref()
            .map_or((series.method(), series.handler()), |r| (r.request().method().as_str(), r.request().path()));
        access_line(&worker.access_log, status, || series.handler().to_owned(), method, path, in_progress.started());
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_by_holds_the_pod_name_or_says_unnamed() {
        for (pod_name, header) in [
            ("consumer-7d9f-x2k4q", b"consumer-7d9f-x2k4q".as_slice()),
            ("büro-1", "büro-1".as_bytes()),
            ("line\nbreak", b"unnamed".as_slice()),
        ] {
            assert_eq!(served_by(pod_name).as_bytes(), header, "{pod_name:?}");
        }
    }
}
