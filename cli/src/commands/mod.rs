//! One module per command; [`run`] dispatches to them. Commands print through
//! [`crate::output`] and reach the orchestrator through [`crate::client`] only.

mod apply;
mod audit;
mod delete;
mod hosts;
mod logs;
mod scale;
mod status;
mod tenants;
mod tokens;
mod wait;

#[cfg(test)]
mod fixtures;

use anyhow::{Context, Result};
use herd_api::wire::Scope;

use crate::args::{Cli, Command, HostCommand, TenantCommand, TokenCommand};
use crate::client::Client;

/// The token: `--token`/`HERD_TOKEN`, else the file `--token-file`/`HERD_TOKEN_FILE` names.
fn token(cli: &Cli) -> Result<Option<String>> {
    if let Some(t) = &cli.token {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(path) = &cli.token_file else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {} (--token-file or HERD_TOKEN_FILE)", path.display()))?;
    Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
}

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.server, token(&cli)?)?.with_ca_file(cli.ca_file.as_deref())?;
    let out = cli.output;
    match cli.command {
        Command::Apply { file, wait } => apply::run(&client, out, &file, wait.limit()).await,
        Command::Status { cluster, all } => status::run(&client, out, cluster.as_ref(), all).await,
        Command::Scale {
            cluster,
            pools,
            force,
            wait,
        } => scale::run(&client, out, &cluster, &pools, force, wait.limit()).await,
        Command::Hosts { action: None | Some(HostCommand::List) } => hosts::run(&client, out).await,
        Command::Hosts { action: Some(HostCommand::Get { host }) } => hosts::get(&client, out, &host).await,
        Command::Hosts { action: Some(HostCommand::Cordon { host }) } => hosts::cordon(&client, out, &host, true).await,
        Command::Hosts { action: Some(HostCommand::Uncordon { host }) } => hosts::cordon(&client, out, &host, false).await,
        Command::Hosts { action: Some(HostCommand::Drain { host, wait, timeout }) } => {
            hosts::drain(&client, out, &host, wait.then_some(timeout)).await
        }
        Command::Hosts { action: Some(HostCommand::Delete { host }) } => hosts::delete(&client, out, &host).await,
        Command::Logs { instance, follow, since, tail, stream, timestamps } => {
            let query = logs::Query { follow, since, tail, stream, timestamps };
            logs::run(&client, out, &instance, &query).await
        }
        Command::Delete {
            cluster,
            yes,
            purge_data,
            wait,
            timeout,
        } => delete::run(&client, out, &cluster, delete::Options { yes, purge_data, wait: wait.then_some(timeout) }).await,
        Command::Tenants(TenantCommand::List) => tenants::list(&client, out).await,
        Command::Tenants(TenantCommand::Create { name, quota, unlimited }) => {
            tenants::create(&client, out, &name, &quota, unlimited).await
        }
        Command::Tenants(TenantCommand::Quota { name, quota }) => {
            tenants::quota(&client, out, &name, &quota).await
        }
        Command::Tenants(TenantCommand::Delete { name }) => tenants::delete(&client, out, &name).await,
        Command::Tokens(TokenCommand::Create { admin: _, agent, tenant, host, description }) => {
            // NB: clap requires exactly one of --admin, --agent, --tenant.
            let scope = match (&tenant, agent) {
                (Some(_), _) => Scope::Tenant,
                (None, true) => Scope::Agent,
                (None, false) => Scope::Admin,
            };
            tokens::create(&client, out, scope, tenant, host, description).await
        }
        Command::Tokens(TokenCommand::List) => tokens::list(&client, out).await,
        Command::Tokens(TokenCommand::Revoke { id }) => tokens::revoke(&client, out, &id).await,
        Command::Audit { limit } => audit::run(&client, out, limit).await,
    }
}
