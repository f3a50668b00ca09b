//! The floor for any actix-web service: `GET /` and `/health` answered with the consumer's bodies, built the same way
//! (the welcome page serialises the pod's identity and uptime on every request), with no middleware, no logging, no
//! metrics and no state beyond the identity. `make bench` measures the consumer against it in the same run, so the
//! ratio is what the consumer's instrumentation costs.

use std::time::Instant;

use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Clone)]
struct Identity {
    name: String,
    started_at: DateTime<Utc>,
    started: Instant,
}

#[derive(Serialize)]
struct Pod {
    pod_name: String,
    pod_namespace: String,
    pod_ip: String,
    node_name: String,
    replica_id: String,
    version: &'static str,
    started_at: DateTime<Utc>,
    uptime_seconds: f64,
}

#[derive(Serialize)]
struct Welcome {
    service: &'static str,
    message: &'static str,
    docs: &'static str,
    pod: Pod,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn welcome(identity: web::Data<Identity>) -> HttpResponse {
    HttpResponse::Ok().json(Welcome {
        service: "surge-consumer",
        message: "POST /process to make work; /metrics carries the signals KEDA scales on",
        docs: "/docs/",
        pod: Pod {
            pod_name: identity.name.clone(),
            pod_namespace: "local".to_owned(),
            pod_ip: "127.0.0.1".to_owned(),
            node_name: identity.name.clone(),
            replica_id: identity.name.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: identity.started_at,
            uptime_seconds: identity.started.elapsed().as_secs_f64(),
        },
    })
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "healthy" })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8000);
    let identity =
        web::Data::new(Identity { name: "bare".to_owned(), started_at: Utc::now(), started: Instant::now() });
    // Workers default to one per core it may use, as the consumer's do.
    HttpServer::new(move || {
        App::new().app_data(identity.clone()).route("/", web::get().to(welcome)).route("/health", web::get().to(health))
    })
    .bind(("0.0.0.0", port))?
    .run()
    .await
}
