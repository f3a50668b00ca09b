//! The HTTP metrics middleware: request count, latency and in-progress gauge per method and route template.
//!
//! Every request passes here, so the hot path takes no lock and allocates nothing: each worker thread keeps its own
//! cache of resolved series (actix workers are single-threaded), filled once per route and method.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use actix_web::Error;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use crate::peer::client_closed_request;
use crate::route_label;

/// Methods with their own label value; anything else is `OTHER`.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];
const OTHER_METHOD: &str = "OTHER";
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric vectors; cloned into every worker.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_progress: IntGaugeVec,
}

impl HttpMetrics {
    pub(super) fn new(requests: IntCounterVec, duration: HistogramVec, in_progress: IntGaugeVec) -> Self {
        Self { requests, duration, in_progress }
    }

    /// Creates every status class of these (method, route template) pairs at zero, so the first burst on a fresh pod
    /// is an increase `rate()` can see rather than a series born at its first value.
    pub fn initialise(&self, routes: &[(&'static str, &str)]) {
        for &(method, handler) in routes {
            self.series(method, handler);
        }
    }

    fn series(&self, method: &'static str, handler: &str) -> RouteSeries {
        RouteSeries {
            in_progress: self.in_progress.with_label_values(&[method, handler]),
            duration: self.duration.with_label_values(&[method, handler]),
            by_class: STATUS_CLASSES.map(|class| self.requests.with_label_values(&[method, handler, class])),
        }
    }
}

/// The resolved series of one method and route.
struct RouteSeries {
    in_progress: IntGauge,
    duration: Histogram,
    by_class: [IntCounter; 5],
}

impl RouteSeries {
    fn record(&self, status: StatusCode, started: Instant) {
        self.duration.observe(started.elapsed().as_secs_f64());
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }
}

/// One worker's series, by route template then method index.
type SeriesCache = HashMap<Box<str>, [Option<Rc<RouteSeries>>; METHODS.len() + 1]>;

/// The middleware factory: `App::new().wrap(RequestMetrics::new(metrics.http.clone()))`.
pub struct RequestMetrics {
    http: HttpMetrics,
}

impl RequestMetrics {
    pub fn new(http: HttpMetrics) -> Self {
        Self { http }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestMetricsService { service, http: self.http.clone(), cache: RefCell::new(HashMap::new()) }))
    }
}

pub struct RequestMetricsService<S> {
    service: S,
    http: HttpMetrics,
    cache: RefCell<SeriesCache>,
}

impl<S> RequestMetricsService<S> {
    fn series_for(&self, req: &ServiceRequest) -> Rc<RouteSeries> {
        let method_index = METHODS.iter().position(|m| m == req.method()).unwrap_or(METHODS.len());
        // Keys are route templates, and a path equal to a template matched it: the common case skips route matching.
        if let Some(series) = self.cache.borrow().get(req.path()).and_then(|methods| methods[method_index].as_ref()) {
            return Rc::clone(series);
        }
        let route = route_label::route_template(req.request());
        let handler: &str = &route;
        let mut cache = self.cache.borrow_mut();
        if let Some(series) = cache.get(handler).and_then(|methods| methods[method_index].as_ref()) {
            return Rc::clone(series);
        }
        let method = METHODS.get(method_index).map_or(OTHER_METHOD, Method::as_str);
        let series = Rc::new(self.http.series(method, handler));
        cache.entry(handler.into()).or_default()[method_index] = Some(Rc::clone(&series));
        series
    }
}

impl<S, B> Service<ServiceRequest> for RequestMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = MetricsFuture<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let series = self.series_for(&req);
        series.in_progress.inc();
        let in_progress = InProgress { series, started: Instant::now(), answered: false };
        MetricsFuture { inner: self.service.call(req), in_progress }
    }
}

/// Decrements the in-progress gauge when the request ends, whether it completes or is dropped; one dropped before its
/// answer (a client that reset the connection) is counted as nginx's 499.
struct InProgress {
    series: Rc<RouteSeries>,
    started: Instant,
    answered: bool,
}

impl InProgress {
    fn answered(&mut self, status: StatusCode) {
        self.answered = true;
        self.series.record(status, self.started);
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if !self.answered {
            self.series.record(client_closed_request(), self.started);
        }
        self.series.in_progress.dec();
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, recording count and latency when it completes.
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        in_progress: InProgress,
    }
}

impl<F, B> Future for MetricsFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        this.in_progress.answered(status);
        Poll::Ready(result)
    }
}
