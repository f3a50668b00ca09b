//! Surge consumer: an actix-web service doing configurable CPU and memory work, exposing the signals KEDA scales on.

pub mod configuration;
pub mod errors;
pub mod identity;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod work;
