//! Liveness and readiness probes.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `healthy`, `ready` or `draining`.
    pub status: &'static str,
}

/// Liveness: the process can serve.
#[utoipa::path(get, path = "/health", tag = "probes", responses((status = 200, body = ProbeStatus)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(ProbeStatus { status: "healthy" })
}

/// Readiness: 503 from the moment SIGTERM arrives, so endpoints controllers stop routing here before the listener closes.
#[utoipa::path(get, path = "/ready", tag = "probes", responses(
    (status = 200, body = ProbeStatus, description = "Ready"),
    (status = 503, body = ProbeStatus, description = "Draining after SIGTERM"),
))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(Ordering::Acquire) {
        HttpResponse::ServiceUnavailable().json(ProbeStatus { status: "draining" })
    } else {
        HttpResponse::Ok().json(ProbeStatus { status: "ready" })
    }
}
