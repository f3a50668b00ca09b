//! Tests that run the real `consumer` binary: workload fidelity measured from /proc, and the SIGTERM drain.

mod cleanup;
#[path = "../support/consumer.rs"]
mod consumer;
mod disconnect;
mod drain;
mod fidelity;
mod logs;
mod receivers;
mod telemetry;
