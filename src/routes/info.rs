//! Pod identity: the welcome page, `/info`, and `/load`, the replica-demo endpoint.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::identity::IdentityReport;
use crate::state::AppState;

/// How long `/load` pretends to work.
const LOAD_SLEEP: Duration = Duration::from_secs(1);

#[derive(Serialize, ToSchema)]
pub struct Welcome {
    pub service: &'static str,
    pub message: &'static str,
    pub docs: &'static str,
    pub pod: IdentityReport,
}

#[derive(Serialize, ToSchema)]
pub struct LoadReport {
    pub message: &'static str,
    pub slept_seconds: f64,
    pub pod: IdentityReport,
}

/// Welcome message with this replica's identity.
#[utoipa::path(get, path = "/", tag = "identity", responses((status = 200, body = Welcome)))]
pub async fn welcome(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Welcome {
        service: "surge-consumer",
        message: "POST /process to make work; /metrics carries the signals KEDA scales on",
        docs: "/docs/",
        pod: state.identity.report(),
    })
}

/// This replica's identity from the downward API.
#[utoipa::path(get, path = "/info", tag = "identity", responses((status = 200, body = IdentityReport)))]
pub async fn info(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.identity.report())
}

/// Waits one second (no CPU) and says which replica answered: the replica-demo endpoint.
#[utoipa::path(get, path = "/load", tag = "identity", responses((status = 200, body = LoadReport)))]
pub async fn load(state: web::Data<AppState>) -> HttpResponse {
    tokio::time::sleep(LOAD_SLEEP).await;
    HttpResponse::Ok().json(LoadReport {
        message: "simulated one second of work",
        slept_seconds: LOAD_SLEEP.as_secs_f64(),
        pod: state.identity.report(),
    })
}
