//! ResourceManager and NodeManager doubles and the `yarn` command.
//!
//! # Layout
//! - [`config`]: the yarn-site keys read, typed, with yarn-default's defaults.
//! - [`cluster`]: the RM's model, pure (node states, host lists, graceful decommission,
//!   simulated containers); table-tested.
//! - [`resourcemanager`]: the model behind the RM's ports, and its timers.
//! - [`rest`]: `/ws/v1/cluster/*` in the shapes of real captures.
//! - [`nodemanager`]: registration, heartbeats, simulated containers, SHUTDOWN.
//! - [`wire`]: the JSON the doubles exchange, with the route table.
//! - [`cli`]: `yarn node`, `yarn rmadmin`, `yarn herd-double-sleep` (double only).
//! - [`log`]: log4j-like lines, banners, the shutdown signal.

mod cli;
mod cluster;
mod config;
mod nodemanager;
mod resourcemanager;
mod rest;
mod wire;

use std::process::ExitCode;

use crate::common;

/// Runs the ResourceManager or NodeManager double until SIGTERM/SIGINT (exit 0), or for an
/// NM until the RM tells it to shut down.
pub fn daemon(role: &str) -> ExitCode {
    common::init_log(role);
    let conf = match crate::conf::Conf::load() {
        Ok(c) => c,
        Err(e) => {
            common::log("ERROR", "conf.Configuration", &format!("error parsing conf: {e}"));
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            common::log("ERROR", "hadoop-double", &format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match role {
            "resourcemanager" => resourcemanager::run(&conf, common::shutdown_signal()).await.map(|()| ExitCode::SUCCESS),
            _ => nodemanager::run(&conf, common::shutdown_signal()).await.map(|exit| match exit {
                nodemanager::Exit::Stopped => ExitCode::SUCCESS,
                nodemanager::Exit::RegistrationRefused => ExitCode::from(255),
            }),
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            let class = if role == "resourcemanager" { "resourcemanager.ResourceManager" } else { "nodemanager.NodeManager" };
            common::log("ERROR", class, &format!("Error starting {role}: {e}"));
            ExitCode::from(255)
        }
    }
}

/// `yarn ARGS...`.
pub fn command(args: &[String]) -> ExitCode {
    cli::run(args)
}
