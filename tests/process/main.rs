//! Tests that run the real `consumer` binary: drain, disconnects, cleanup, logs, telemetry and the shared backlog. Those that measure
//! time, latency or memory are in tests/isolated, alone on the machine.

mod allocation;
mod cleanup;
#[path = "../support/consumer.rs"]
#[allow(dead_code)] // Shared with tests/isolated, which starts the release binary.
mod consumer;
mod defaults;
mod disconnect;
mod drain;
mod logs;
mod node;
#[path = "../support/prometheus.rs"]
mod prometheus_server;
mod queue;
#[path = "../support/receivers.rs"]
#[allow(dead_code)] // Shared with tests/isolated, which uses the slow and refusing sinks.
mod receivers;
#[path = "../support/stdin.rs"]
mod stdin;
mod telemetry;
