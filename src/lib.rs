//! Surge consumer: an actix-web service doing configurable CPU and memory work, exposing the signals KEDA scales on.

pub mod configuration;
pub mod errors;
pub mod identity;
pub mod metrics;
pub mod peer;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod work;

/// Counts every allocation, for the allocator-pressure metrics (see `metrics::allocator`).
#[global_allocator]
static ALLOCATOR: metrics::allocator::CountingAllocator = metrics::allocator::CountingAllocator;
