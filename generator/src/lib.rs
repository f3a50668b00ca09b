//! The generator's parts, shared by its binaries: `generator` (the load generator) and `cluster` (the closed-loop
//! harness that plays a cluster's part on one machine).

pub mod autoscale;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod engine;
pub mod exposition;
pub mod loki;
pub mod monitor;
pub mod plan;
pub mod printer;
pub mod profiles;
pub mod prometheus;
pub mod report;
pub mod stats;
pub mod threshold;
pub mod traces;
pub mod watch;
