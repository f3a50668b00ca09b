//! `cluster`: flags, the closed loop, an exit code (2 when the run could not be made).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match surge_harness::run(&surge_harness::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
