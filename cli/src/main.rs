//! `pergola`: manage Pergola Stages from a shell, over the REST API.
//!
//! Exit codes: 0 success, 1 the request failed (the reason is one line on stderr), 2 usage.

mod args;
mod client;
mod commands;
mod output;
mod pack;
mod stored;
mod table;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match commands::run(args::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(1)
        }
    }
}
