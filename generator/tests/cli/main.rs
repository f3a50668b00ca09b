//! The real generator binary against the real consumer, a real HAProxy, a real Redis and a stalling server.

mod bad_target;
mod distribution;
mod loki;
mod metrics;
mod open_model;
mod queue;
mod report;
mod rolling;
mod runs;
mod support;
mod watch;
