//! The real generator binary against the real consumer, a real HAProxy and a stalling server.

mod bad_target;
mod distribution;
mod loki;
mod metrics;
mod open_model;
mod report;
mod rolling;
mod runs;
mod support;
mod watch;
