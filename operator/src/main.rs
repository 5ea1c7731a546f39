//! `herd-operator`: herd's Kubernetes operator mode. Wires the library to a cluster: parse
//! options, wait for the leader Lease, run the controller until SIGTERM/SIGINT or a lost
//! lease.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use herd_operator::crd::{HadoopPool, Watched};
use herd_operator::lease::{Elector, Outcome};
use herd_operator::reconcile::{self, Context, Options};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// herd's Kubernetes operator: reconciles `HadoopCluster` resources (group herd.dev) into
/// StatefulSets, Services, ConfigMaps, a PodDisruptionBudget and a `HadoopPool` per worker
/// pool (`kubectl scale hadooppool`), and scales DataNodes down by decommissioning them first
/// (NodeManagers by draining them).
///
/// Install: `kubectl apply -f manifests/operator/` (CRDs, RBAC, Deployment), then
/// `kubectl apply -f manifests/operator/examples/hadoopcluster.yaml`.
#[derive(Parser)]
#[command(name = "herd-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the CustomResourceDefinitions (HadoopCluster, HadoopPool) generated from
    /// herd's spec types (what manifests/operator/crd.yaml holds).
    Crd,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Watch and reconcile only this namespace (default: every namespace).
    #[arg(long, env = "HERD_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// The node label naming a node's rack (anti-affinity and HDFS rack topology).
    #[arg(long, env = "HERD_OPERATOR_RACK_LABEL", default_value = "topology.kubernetes.io/zone")]
    rack_label: String,
    /// The Lease replicas elect a leader through, in `--lease-namespace`.
    #[arg(long, env = "HERD_OPERATOR_LEASE", default_value = "herd-operator")]
    lease: String,
    /// Where the Lease lives (default: the operator's own namespace, from its service account).
    #[arg(long, env = "HERD_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: $POD_NAME, else the hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long a Lease holds without renewal, e.g. `15s`.
    #[arg(long, default_value = "15s", value_parser = humantime_duration)]
    lease_duration: Duration,
    /// How soon to look again while workers leave or pods start, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    busy_every: Duration,
    /// Reach a master's host at this address instead of resolving it (`HOST=IP`, repeatable),
    /// e.g. when the operator runs outside the cluster: `prod-namenode-0.prod.acme=10.0.0.5`.
    #[arg(long = "resolve", value_name = "HOST=IP", value_parser = resolve_entry)]
    resolve: Vec<(String, std::net::IpAddr)>,
}

fn resolve_entry(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (host, ip) = s.split_once('=').ok_or_else(|| format!("`{s}`: write HOST=IP, e.g. prod-namenode-0.prod.acme=10.0.0.5"))?;
    let ip = ip.parse().map_err(|_| format!("`{ip}` is not an IP address"))?;
    Ok((host.to_string(), ip))
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (write e.g. 500ms, 5s, 2m)"))
}

/// `500ms`, `5s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", herd_operator::crd::crd_yaml().context("rendering the CRD")?);
            Ok(())
        }
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let client = Client::try_default().await.context("connecting to the Kubernetes API (in-cluster config or $KUBECONFIG)")?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "herd-operator".into());
    let lease_ns = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            shutdown.cancel();
        });
    }

    // Leader election: wait for the Lease, then keep renewing it; losing it stops the controller.
    let elector = Arc::new(Elector::new(Api::<Lease>::namespaced(client.clone(), &lease_ns), &args.lease, &identity, args.lease_duration));
    loop {
        match elector.try_acquire().await {
            Ok(Outcome::Leader) => break,
            Ok(Outcome::Follower { holder }) => info!(holder = %holder, "waiting for the leader lease"),
            Err(e) => warn!(error = %e, "reading the leader lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(elector.renew_every()) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    info!(identity = %identity, lease = %args.lease, "leading");
    let lost = shutdown.child_token();
    {
        let (elector, lost, duration) = (elector.clone(), lost.clone(), args.lease_duration);
        tokio::spawn(async move {
            let mut last_renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(elector.renew_every()) => {}
                    _ = lost.cancelled() => return,
                }
                match elector.try_acquire().await {
                    Ok(Outcome::Leader) => last_renewed = tokio::time::Instant::now(),
                    Ok(Outcome::Follower { holder }) => {
                        warn!(holder = %holder, "lost the leader lease; stopping");
                        lost.cancel();
                        return;
                    }
                    Err(e) if last_renewed.elapsed() >= duration => {
                        warn!(error = %e, "could not renew the leader lease in time; stopping");
                        lost.cancel();
                        return;
                    }
                    Err(e) => warn!(error = %e, "renewing the leader lease"),
                }
            }
        });
    }

    let options = Options { rack_label: args.rack_label.clone(), busy_every: args.busy_every, ..Options::default() };
    let recorder = Recorder::new(client.clone(), Reporter { controller: "herd-operator".into(), instance: Some(identity.clone()) });
    let mut http = reqwest::Client::builder();
    for (host, ip) in &args.resolve {
        http = http.resolve(host, std::net::SocketAddr::new(*ip, 0));
    }
    let http = http.build().context("building the HTTP client for the masters' web ports")?;
    let ctx = Arc::new(Context::new(client.clone(), http, recorder, options));
    let (clusters, owned_api) = match &args.namespace {
        Some(ns) => (Api::<Watched>::namespaced(client.clone(), ns), Some(ns.clone())),
        None => (Api::<Watched>::all(client.clone()), None),
    };
    let api = |c: &Client| -> (Api<StatefulSet>, Api<ConfigMap>, Api<Service>, Api<PodDisruptionBudget>) {
        match &owned_api {
            Some(ns) => (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns)),
            None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
        }
    };
    let (sts, cms, svcs, pdbs) = api(&client);
    let pools: Api<HadoopPool> = match &owned_api {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let labels = watcher::Config::default().labels(&format!("{}={}", herd_operator::objects::LABEL_MANAGED_BY, herd_operator::objects::MANAGER));
    let stop = lost.clone();
    Controller::new(clusters, watcher::Config::default())
        .owns(sts, labels.clone())
        .owns(cms, labels.clone())
        .owns(svcs, labels.clone())
        .owns(pdbs, labels.clone())
        .owns(pools, labels)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile");
            }
        })
        .await;
    if !shutdown.is_cancelled() {
        anyhow::bail!("lost the leader lease; exiting so another replica leads");
    }
    info!("stopped");
    Ok(())
}
