//! The HTTP series: request count, latency and in-progress gauge per method and route template, and what the request
//! middleware records in them.
//!
//! Every request passes here, so the hot path takes no lock and allocates nothing: each worker thread keeps its own
//! cache of resolved series (actix workers are single-threaded), filled once per route and method.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, StatusCode};
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

    /// A worker's own cache of this registry's series.
    pub fn for_worker(&self) -> WorkerSeries {
        WorkerSeries { http: self.clone(), cache: RefCell::new(Vec::new()) }
    }

    fn series(&self, method: &'static str, handler: &str) -> RouteSeries {
        RouteSeries {
            method,
            handler: handler.into(),
            in_progress: self.in_progress.with_label_values(&[method, handler]),
            duration: self.duration.with_label_values(&[method, handler]),
            by_class: STATUS_CLASSES.map(|class| self.requests.with_label_values(&[method, handler, class])),
        }
    }
}

/// The resolved series of one method and route, with their label values.
pub struct RouteSeries {
    method: &'static str,
    handler: Box<str>,
    in_progress: IntGauge,
    duration: Histogram,
    by_class: [IntCounter; 5],
}

impl RouteSeries {
    /// The `method` label: the request's method, or `OTHER`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The `handler` label: the route template the request matched, or `none`.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    fn record(&self, status: StatusCode, started: Instant) {
        self.duration.observe(started.elapsed().as_secs_f64());
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }
}

/// A route's series by method index (`METHODS`, then `OTHER`).
type ByMethod = [Option<Rc<RouteSeries>>; METHODS.len() + 1];

/// One worker's resolved series. A short list scanned by route template: a worker sees a dozen routes at most, and
/// comparing a path with a few templates costs less than hashing it.
pub struct WorkerSeries {
    http: HttpMetrics,
    cache: RefCell<Vec<(Box<str>, ByMethod)>>,
}

impl WorkerSeries {
    /// The series `req` is counted in.
    pub fn of(&self, req: &ServiceRequest) -> Rc<RouteSeries> {
        let method_index = METHODS.iter().position(|m| m == req.method()).unwrap_or(METHODS.len());
        // Keys are route templates, and a path equal to a template matched it: the common case skips route matching.
        if let Some(series) = self.cached(req.path(), method_index) {
            return series;
        }
        let route = route_label::route_template(req.request());
        if let Some(series) = self.cached(&route, method_index) {
            return series;
        }
        let method = METHODS.get(method_index).map_or(OTHER_METHOD, Method::as_str);
        let series = Rc::new(self.http.series(method, &route));
        let mut cache = self.cache.borrow_mut();
        match cache.iter_mut().find(|(template, _)| **template == *route) {
            Some((_, methods)) => methods[method_index] = Some(Rc::clone(&series)),
            None => {
                let mut methods = ByMethod::default();
                methods[method_index] = Some(Rc::clone(&series));
                cache.push((route.into(), methods));
            }
        }
        series
    }

    fn cached(&self, template: &str, method_index: usize) -> Option<Rc<RouteSeries>> {
        let cache = self.cache.borrow();
        let (_, methods) = cache.iter().find(|(cached, _)| **cached == *template)?;
        methods[method_index].clone()
    }
}

/// A request in progress in its series: the gauge is up from `start` until this is dropped, and the request is
/// counted once, when answered, or as nginx's 499 if it is dropped unanswered (its client reset the connection).
pub struct InProgress {
    series: Rc<RouteSeries>,
    started: Instant,
    answered: bool,
}

impl InProgress {
    pub fn start(series: Rc<RouteSeries>, started: Instant) -> Self {
        series.in_progress.inc();
        Self { series, started, answered: false }
    }

    pub fn series(&self) -> &RouteSeries {
        &self.series
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn is_answered(&self) -> bool {
        self.answered
    }

    pub fn answered(&mut self, status: StatusCode) {
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
