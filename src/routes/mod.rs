//! HTTP routes, one file per group. `configure` is the single place paths are bound to handlers.

pub mod docs;
pub mod health;
pub mod info;
pub mod metrics;
pub mod process;

use actix_web::{web, HttpRequest, HttpResponse, Resource};

use crate::errors::ApiError;

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
        .service(resource("/process/results", "GET").route(web::get().to(process::results)))
        .service(resource("/process/{task_id}", "GET").route(web::get().to(process::task)))
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

/// The app-wide fallback: unknown paths get a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(req.path().to_owned()))
}
