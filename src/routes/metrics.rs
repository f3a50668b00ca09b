//! `/metrics`: the Prometheus text exposition that KEDA's triggers query.

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Prometheus text format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(state.metrics.render())
}
