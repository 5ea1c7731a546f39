//! `herd`: the ops CLI. It talks to the orchestrator's HTTP API only.
//!
//! # Layout
//! - `commands`: one function per subcommand.
//! - `client`: HTTP and problem+json errors.
//! - `output`: tables, JSON and YAML.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// herd: run multi-tenant Hadoop on your own hosts, in Docker.
///
/// The ops CLI: apply cluster specs, watch instances, scale DataNode and NodeManager pools
/// independently, inspect hosts. It talks to herd-orchestrator's HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "herd",
    version,
    after_help = "Examples:\n  herd tenants create acme\n  herd apply -f manifests/examples/quickstart.yaml --wait\n  herd status acme/quickstart\n  herd scale acme/quickstart datanode=5 nodemanager=3 --wait\n  herd hosts -o yaml"
)]
struct Cli {
    /// The orchestrator's URL.
    #[arg(long, global = true, env = "HERD_SERVER", default_value = "http://127.0.0.1:7480")]
    server: String,
    /// Output format of reads and of the result of changes.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update a cluster from a spec file.
    ///
    /// The spec is parsed and validated here first, so mistakes are reported with their
    /// field and line before anything is sent. Applying the same spec twice changes nothing.
    #[command(after_help = "Examples:\n  herd apply -f cluster.yaml\n  herd apply -f cluster.yaml --wait --timeout 10m\n  cat cluster.yaml | herd apply -f -")]
    Apply {
        /// The spec file (YAML or JSON); `-` reads standard input.
        #[arg(short, long)]
        file: PathBuf,
        /// Wait until every instance runs, showing progress.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show instances: pool, host, desired and observed state.
    ///
    /// Without an argument, every cluster's instances.
    #[command(after_help = "Examples:\n  herd status\n  herd status acme/prod\n  herd status acme/prod -o json")]
    Status {
        /// TENANT/CLUSTER
        cluster: Option<String>,
    },
    /// Set the number of instances of one or more pools.
    ///
    /// DataNodes and NodeManagers scale independently; the rest of the spec is kept.
    #[command(after_help = "Examples:\n  herd scale acme/prod datanode=5\n  herd scale acme/prod nodemanager=0 datanode=3 --wait")]
    Scale {
        /// TENANT/CLUSTER
        cluster: String,
        /// POOL=REPLICAS, e.g. datanode=5
        #[arg(required = true)]
        pools: Vec<String>,
        /// Wait until every instance runs, showing progress.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List hosts with their capacity, allocation and liveness.
    #[command(after_help = "Examples:\n  herd hosts\n  herd hosts -o yaml")]
    Hosts,
    /// Delete a cluster; its containers are stopped and removed on every host.
    ///
    /// Data directories on the hosts' disks are kept.
    #[command(after_help = "Examples:\n  herd delete acme/prod")]
    Delete {
        /// TENANT/CLUSTER
        cluster: String,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantCommand),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// List tenants.
    List,
    /// Create a tenant (a DNS label: lower-case letters, digits, `-`).
    #[command(after_help = "Examples:\n  herd tenants create acme")]
    Create {
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = client::Client::new(&cli.server)?;
    let out = cli.output;
    match cli.command {
        Command::Apply { file, wait, timeout } => commands::apply(&client, out, &file, wait.then_some(timeout)).await,
        Command::Status { cluster } => commands::status(&client, out, cluster.as_deref()).await,
        Command::Scale { cluster, pools, wait, timeout } => {
            commands::scale(&client, out, &cluster, &pools, wait.then_some(timeout)).await
        }
        Command::Hosts => commands::hosts(&client, out).await,
        Command::Delete { cluster } => commands::delete(&client, &cluster).await,
        Command::Tenants(TenantCommand::List) => commands::tenants(&client, out).await,
        Command::Tenants(TenantCommand::Create { name }) => commands::create_tenant(&client, out, &name).await,
    }
}
