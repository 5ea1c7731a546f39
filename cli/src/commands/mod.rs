//! One module per command; [`run`] dispatches to them. Commands print through
//! [`crate::output`] and reach the orchestrator through [`crate::client`] only.

mod apply;
mod delete;
mod hosts;
mod logs;
mod scale;
mod status;
mod tenants;
mod wait;

#[cfg(test)]
mod fixtures;

use anyhow::Result;

use crate::args::{Cli, Command, TenantCommand};
use crate::client::Client;

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.server)?;
    let out = cli.output;
    match cli.command {
        Command::Apply { file, wait } => apply::run(&client, out, &file, wait.limit()).await,
        Command::Status { cluster } => status::run(&client, out, cluster.as_ref()).await,
        Command::Scale {
            cluster,
            pools,
            wait,
        } => scale::run(&client, out, &cluster, &pools, wait.limit()).await,
        Command::Hosts => hosts::run(&client, out).await,
        Command::Logs { instance, follow, since, tail, stream, timestamps } => {
            let query = logs::Query { follow, since, tail, stream, timestamps };
            logs::run(&client, out, &instance, &query).await
        }
        Command::Delete {
            cluster,
            wait,
            timeout,
        } => delete::run(&client, out, &cluster, wait.then_some(timeout)).await,
        Command::Tenants(TenantCommand::List) => tenants::list(&client, out).await,
        Command::Tenants(TenantCommand::Create { name }) => {
            tenants::create(&client, out, &name).await
        }
    }
}
