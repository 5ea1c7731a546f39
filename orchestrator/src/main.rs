//! `herd-orchestrator`: parse config, open the store, make the first admin token, serve, shut
//! down on SIGTERM/SIGINT. `herd-orchestrator openapi` prints the API's OpenAPI document.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use herd_orchestrator::config::{Args, Command, Config};
use herd_orchestrator::state::State;
use herd_orchestrator::store::Store;
use herd_orchestrator::http;
use tokio_util::sync::CancellationToken;
use tracing::info;

fn main() -> anyhow::Result<()> {
    // NB: blocking threads serve store reads (four reader connections) and little else;
    // tokio's default of 512 only lets a burst of requests park hundreds of threads, each
    // with its own malloc arena, on four connections.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(32)
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if let Some(Command::Openapi) = args.command {
        print!("{}", herd_orchestrator::openapi::pretty());
        return Ok(());
    }
    let config = Config::resolve(args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let store = Store::open(&config.store).with_context(|| format!("cannot open store {}", config.store.display()))?;
    let state = State::new(store, config.heartbeat_interval, config.network).context("cannot load the store")?;
    let token_file = config.data_dir.join("admin.token");
    state.bootstrap_admin(&token_file).await.context("cannot create the first admin token")?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // NB: the one line on stdout; scripts and tests read the bound address from it.
    println!("herd-orchestrator listening on http://{addr}");
    info!(%addr, store = %config.store.display(), "serving");

    let shutdown = CancellationToken::new();
    tokio::spawn(signal(shutdown.clone()));
    let stop_flush = CancellationToken::new();
    let flusher = tokio::spawn({
        let (state, stop) = (state.clone(), stop_flush.clone());
        async move { state.flush_reports_until(stop).await }
    });
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")?;
    // Agents' last reports, written behind: flush them before going.
    stop_flush.cancel();
    let _ = flusher.await;
    info!("stopped");
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
