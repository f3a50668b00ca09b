//! The load generator behind the `generator` binary (and the image it ships in). `main.rs` parses the flags and calls
//! `run::run`; the rest, one concern a module:
//!
//! - `cli`: the flags (each also `GENERATOR_<FLAG>`); `target`: where requests go.
//! - `profiles`: the named profiles, the one table `--list`, the Jobs and the README come from; `phases`: loads that
//!   change shape (the named phase profiles, `--phases` files), each phase with its own rate and task.
//! - `plan`: flags and profile into runs (model, stages, this shard's share); `threshold`: `--threshold` checks.
//! - `schedule`: a load's arrival times from its stages; `engine`: sends on them (open model) or as answers return
//!   (closed); `client`: HTTP/1.1 by hand.
//! - `stats`: the recorder and the summary; `printer`, `report` (HTML), `exposition` (`/metrics`): how it is shown.
//! - `follow`: accepted async tasks read back to their end, for the end-to-end times.
//! - `monitor`: progress while it runs; `watch`: what KEDA will decide, asked of Prometheus (`surge_keda::evaluate`).
//! - `prometheus`: the Prometheus client `watch` asks, `redis` the Redis one (a redis-streams trigger); `loki`: the
//!   summary pushed to Loki; `traces`: OTLP spans.
//! - `run`: one invocation from parsed flags to exit code.
//!
//! The closed-loop harness (`harness/`) uses `profiles`, `prometheus` and `redis`, the simulator `profiles` and `phases` (their
//! arrival times, from `schedule`), `surge tune`'s report the charts of `report`; nothing else is used outside.

pub mod cli;
mod client;
mod engine;
mod exposition;
mod follow;
mod loki;
mod monitor;
pub mod phases;
mod plan;
mod printer;
pub mod profiles;
pub mod prometheus;
pub mod redis;
pub mod report;
mod run;
pub mod schedule;
mod stats;
mod target;
mod threshold;
mod traces;
mod watch;

pub use run::run;
