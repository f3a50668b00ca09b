//! HTTP routes, one file per group. `configure` is the single place paths are bound to handlers.

pub mod docs;
pub mod health;
pub mod info;
pub mod metrics;
pub mod process;

use std::borrow::Cow;

use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::errors::ApiError;

/// Every (method, route template) `configure` binds: the series the metrics initialise at zero.
pub const NAMED_ROUTES: [(&str, &str); 9] = [
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/info"),
    ("GET", "/load"),
    ("POST", "/process"),
    ("GET", "/process/status"),
    ("DELETE", "/process/cleanup"),
    ("GET", "/metrics"),
];

/// Registers every route, with a JSON 405 (and `Allow`) on each path and a JSON 404 elsewhere.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/", "GET").route(web::get().to(info::welcome)))
        .service(resource("/health", "GET").route(web::get().to(health::health)))
        .service(resource("/ready", "GET").route(web::get().to(health::ready)))
        .service(resource("/info", "GET").route(web::get().to(info::info)))
        .service(resource("/load", "GET").route(web::get().to(info::load)))
        .service(resource("/process", "POST").route(web::post().to(process::process)))
        .service(resource("/process/status", "GET").route(web::get().to(process::status)))
        .service(resource("/process/cleanup", "DELETE").route(web::delete().to(process::cleanup)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics::metrics)))
        .service(web::redirect("/docs", "/docs/"))
        .service(docs::swagger_ui());
}

/// A path named by its template (the metrics `handler` label) whose unmatched methods answer 405 with `Allow`.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path)
        .name(path)
        .default_service(web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }))
}

/// The route label of requests that matched no route, so label cardinality stays bounded.
pub const UNMATCHED: &str = "none";

/// The route template a request matched (`/process`, not `/process?x=1`), or `none`: the metrics `handler` label and
/// the span's `http.route`. Routes are named by their template (see `resource`), so the common case borrows.
pub fn route_template(req: &HttpRequest) -> Cow<'_, str> {
    let resources = req.resource_map();
    match resources.match_name(req.path()) {
        Some(name) => Cow::Borrowed(name),
        None => resources.match_pattern(req.path()).map_or(Cow::Borrowed(UNMATCHED), Cow::Owned),
    }
}

/// The app-wide fallback: unknown paths get a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_owned()))
}
