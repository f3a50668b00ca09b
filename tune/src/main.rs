//! `surge`: `surge tune` recommends the cheapest ScaledObject that meets a latency goal, from the simulator.
//!
//! Exit codes: 0 a candidate meets the goal, 1 none does, 2 bad flags or manifests.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    surge_tune::run(surge_tune::Cli::parse())
}
