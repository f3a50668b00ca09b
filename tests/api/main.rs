//! Black-box tests of the consumer's HTTP API, each against its own app on a free port.

mod admission;
mod endpoints;
mod helpers;
mod legacy;
mod metrics;
mod prometheus;
#[path = "../support/prometheus.rs"]
mod prometheus_server;
mod tasks;
mod validation;
