//! `herd-agent`: parse config, lock the data directory, connect to Docker, run the loop
//! until SIGTERM/SIGINT. Stopping the agent never stops a container.

use std::fs::File;

use std::io::IsTerminal;

use anyhow::{Context, bail};
use clap::Parser;
use herd_agent::agent::Agent;
use herd_agent::client::Client;
use herd_agent::config::{Args, Config};
use herd_agent::docker::DockerRuntime;
use herd_agent::logs::{self, Logs, docker::DockerSource, serve};
use herd_api::wire::LogEndpoint;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(|| herd_api::daemon_log::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::resolve(Args::parse())?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("agent.lock");
    let lock = File::create(&lock_path).with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!("another herd-agent is running with data directory {}", config.data_dir.display());
    }
    let runtime = DockerRuntime::connect()
        .await
        .context("cannot reach the Docker engine (is dockerd running, and may this user use /var/run/docker.sock?)")?
        .with_log_max_size(config.docker_log_max_size);
    let roots = match &config.ca_file {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("cannot read --ca-file {}", path.display()))?),
        None => None,
    };
    let client = Client::new(config.orchestrators.clone(), config.token.clone(), roots.as_deref())
        .with_context(|| format!("cannot set up the HTTP client (--ca-file {:?})", config.ca_file))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the log endpoint (set --listen)", config.listen))?;
    let bound = listener.local_addr().context("cannot read the log endpoint's address")?;
    let orchestrators: Vec<&str> = config.orchestrators.iter().map(url::Url::as_str).collect();
    info!(host = %config.host_id, orchestrators = %orchestrators.join(","), logs = %bound, "starting");

    let shutdown = CancellationToken::new();
    tokio::spawn(signal(shutdown.clone()));
    let log_root = config.data_dir.join("logs");
    let opts = logs::Options {
        root: log_root.clone(),
        rotation: config.log_rotation,
        syslog: config.syslog.clone(),
        host_id: config.host_id.clone(),
    };
    let logs = Logs::new(opts, Arc::new(DockerSource(runtime.docker())), shutdown.clone());
    let secret = serve::new_secret();
    // NB: on the configured underlay address when listening on all: the orchestrator takes a
    // log endpoint only on the host's registered address.
    let tls = match &config.tls {
        Some((cert, key)) => Some(herd_tls::server_config(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Listening on all addresses without --address: the URL is made at each registration,
    // towards the orchestrator reached (see `Agent::log_bound`).
    let (advertised, log_bound) = match (bound.ip().is_unspecified(), config.address) {
        (true, Some(a)) => (format!("{scheme}://{}", std::net::SocketAddr::new(a.into(), bound.port())), None),
        (true, None) => (serve::advertised_url(bound, &client.current(), scheme), Some((bound, scheme))),
        (false, _) => (serve::advertised_url(bound, &client.current(), scheme), None),
    };
    let endpoint = LogEndpoint { url: advertised, secret: secret.clone() };
    let log_auth = serve::Auth::new(&secret);
    let server = serve::Server::new(log_root, config.log_rotation.max_files, log_auth.clone());
    let served = tokio::spawn(server.serve(listener, tls, shutdown.clone()));
    let pulls = herd_agent::pull::Pulls::new(config.registries.clone());
    Agent { config, runtime, client, logs: logs.clone(), log_endpoint: Some(endpoint), log_bound, log_auth: Some(log_auth), pulls }.run(shutdown).await;
    // Captures make what they wrote durable on shutdown; bounded, as a stuck disk must not hang us.
    if tokio::time::timeout(Duration::from_secs(10), logs.drain()).await.is_err() {
        tracing::warn!("log captures did not stop within 10s");
    }
    served.abort();
    drop(lock);
    Ok(())
}

async fn signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("shutting down");
    token.cancel();
}
