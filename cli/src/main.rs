//! `herd`: the ops CLI. It talks to herd-orchestrator's HTTP API only.
//!
//! # Layout
//! - `args`: the command line (clap) with its help, and the `TENANT/CLUSTER` and `POOL=N` parsers.
//! - `commands`: one module per command, and `--wait`'s polling.
//! - `client`: the HTTP API, and problem+json answers turned into readable errors.
//! - `output`: the one table renderer, JSON and YAML, errors.
//!
//! Exit codes: 0 done, 1 failed (the error is on stderr), 2 usage error.

mod args;
mod client;
mod commands;
mod output;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = args::Cli::parse_checked();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e);
            ExitCode::FAILURE
        }
    }
}
