//! `generator`: load profiles against the Surge consumer, with reports that show where the load went.
//!
//! Exit codes: 0 success, 1 a threshold failed, 2 bad flags or the consumer is unreachable or unhealthy,
//! 130 interrupted (Ctrl-C or SIGTERM; the partial summary is still printed).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    surge_generator::run(surge_generator::cli::Cli::parse())
}
