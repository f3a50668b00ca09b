//! Surge consumer: an actix-web service doing configurable CPU and memory work, exposing the signals KEDA scales on.
//!
//! A request's way through the crate, top to bottom (a module only uses those below it):
//! - `startup`: the server from a bound listener, its middleware, and the graceful drain.
//! - `routes`: one file per route group; `configure` binds every path.
//! - `errors`: every error the API returns, as JSON (422 names the field and range, 503 says when to retry).
//! - `queue`: where async tasks wait: this pod's registry, or one Redis stream every replica pulls from.
//! - `work`: the capacity model, CPU and memory work, and the task registry that queues, starts and tracks tasks.
//! - `middleware`: the one layer every request passes: its metrics, span, access line and response headers.
//! - `state`: what every handler shares (identity, registry, metrics, drain flag).
//! - `metrics`: the one place metric names live, the registry, the HTTP series, the allocator counters.
//! - `telemetry`: logs (stdout, Loki), traces (OTLP), the access log and the request span.
//! - `route_label`: the route templates and how a request is labelled by one (shared by routes, metrics, telemetry).
//! - `identity`, `peer`, `configuration`: the pod's identity, the client's end of a connection, the settings.
//!
//! The crate's surface is what `main.rs` and the tests use: `configuration`, `startup`, `telemetry`, `metrics`.

pub mod configuration;
mod errors;
mod identity;
pub mod metrics;
mod middleware;
mod peer;
mod queue;
mod route_label;
mod routes;
pub mod startup;
mod state;
pub mod telemetry;
mod work;

/// Counts every allocation, for the allocator-pressure metrics (see `metrics::allocator`).
#[global_allocator]
static ALLOCATOR: metrics::allocator::CountingAllocator = metrics::allocator::CountingAllocator;
