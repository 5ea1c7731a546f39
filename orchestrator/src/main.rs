//! `herd-orchestrator`: parse config, open the store, make the first admin token, serve, shut
//! down on SIGTERM/SIGINT (open requests get `--shutdown-timeout`, 30 s by default). Its own log lines go to stderr and a
//! failed write never stops it (`herd_api::daemon_log`). `herd-orchestrator openapi` prints the API's OpenAPI document;
//! `backup --to FILE` and `restore --from FILE` copy the store out and back (see `herd_orchestrator::backup`).

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use herd_orchestrator::config::{Args, Command, Config};
use herd_orchestrator::http::front::Front;
use herd_orchestrator::leader::Election;
use herd_orchestrator::state::State;
use herd_orchestrator::store::sqlite::Sqlite;
use herd_orchestrator::store::{Options as StoreOptions, Store};
use herd_orchestrator::{backup, http};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};


/// See the workspace's Cargo.toml for why not glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        .with_writer(|| herd_api::daemon_log::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut args = Args::parse();
    match &args.command {
        Some(Command::Openapi) => {
            print!("{}", herd_orchestrator::openapi::pretty());
            return Ok(());
        }
        Some(Command::TlsInit { dir, names }) => {
            herd_orchestrator::tls::init(dir, names)?;
            println!(
                "wrote {0}/ca.pem, {0}/server.pem and {0}/server.key: serve with --tls-cert {0}/server.pem --tls-key {0}/server.key; \
                 clients trust it with --ca-file {0}/ca.pem (or HERD_CA_FILE)",
                dir.display()
            );
            return Ok(());
        }
        _ => {}
    }
    let command = args.command.take();
    let etcd_client = (args.etcd_ca_file.clone(), args.etcd_cert_file.clone(), args.etcd_key_file.clone(), args.etcd_prefix.clone());
    let config = Config::resolve(args)?;
    if let Some(Command::Migrate { from, to }) = &command {
        return migrate(&config, from, to, etcd_client);
    }
    if matches!(command, Some(Command::Backup { .. } | Command::Restore { .. }))
        && matches!(config.store, herd_orchestrator::store::Options::Etcd(_))
    {
        anyhow::bail!("backup and restore copy the SQLite store; back etcd up with `etcdctl snapshot save` and restore with `etcdctl snapshot restore`");
    }
    match command {
        Some(Command::Backup { to }) => {
            let w = backup::backup(&config.sqlite_path, &to).with_context(|| format!("cannot back up {}", config.sqlite_path.display()))?;
            herd_api::daemon_log::stdout_line(&format!(
                "backed up {} to {} ({} bytes in {:?}; integrity checked)",
                config.sqlite_path.display(),
                w.path.display(),
                w.bytes,
                w.took
            ));
            return Ok(());
        }
        Some(Command::Restore { from }) => {
            let aside = backup::restore(&from, &config.sqlite_path, &config.data_dir)
                .with_context(|| format!("cannot restore {} from {}", config.sqlite_path.display(), from.display()))?;
            let kept = aside.map(|p| format!("; the replaced store is kept as {}", p.display())).unwrap_or_default();
            herd_api::daemon_log::stdout_line(&format!("restored {} from {}{kept}", config.sqlite_path.display(), from.display()));
            return Ok(());
        }
        Some(Command::Openapi | Command::TlsInit { .. } | Command::Migrate { .. }) | None => {}
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Held while serving: a second orchestrator, or a restore, on this data directory is refused.
    let _lock = backup::lock(&config.data_dir)?;
    let store = match &config.store {
        StoreOptions::Sqlite(path) => {
            Sqlite::check_before_open(path, &config.data_dir).map_err(anyhow::Error::msg)?;
            Store::open(path).with_context(|| format!("cannot open store {}", path.display()))?
        }
        StoreOptions::Etcd(o) => {
            let urls: Vec<String> = o.endpoints.iter().map(ToString::to_string).collect();
            Store::etcd(o.clone()).with_context(|| format!("cannot open the etcd store at {}", urls.join(",")))?
        }
    };
    let store_kind = store.kind();
    if let Some(etcd) = store.as_etcd() {
        let token = config.data_dir.join("admin.token");
        if token.exists() && etcd.is_empty().context("cannot read the etcd store")? {
            anyhow::bail!(
                "the etcd store under {} is empty, but {} shows this data directory served a control plane before: \
                 is --etcd-endpoints or --etcd-prefix wrong? Restore etcd from its snapshot (`etcdctl snapshot restore`), \
                 or move {} away to start a new, empty control plane",
                etcd.prefix(),
                token.display(),
                token.display()
            );
        }
    }
    // SIGTERM/SIGINT: stops serving, answers open watches at once (see `State::watch`).
    let shutdown = CancellationToken::new();
    let token_file = config.data_dir.join("admin.token");
    // NB: the first state also checks the store can be loaded before anything is served; on
    // etcd each term as leader loads its own (another orchestrator may have led meanwhile).
    let first = new_state(&config, &store, shutdown.clone())?;
    first.bootstrap_admin(&token_file).await.context("cannot create the first admin token")?;

    if let Some(path) = &config.agent_ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read --agent-ca-file {}", path.display()))?;
        herd_orchestrator::logs::trust_agent_cas(&pem).map_err(|e| anyhow::anyhow!("--agent-ca-file {}: {e}", path.display()))?;
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(herd_orchestrator::tls::server_config(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let me = config.advertise(addr);

    tokio::spawn(signal(shutdown.clone()));
    let mut ports = config.publish_ports.clone();
    ports.reserved.insert(addr.port());
    let key_file = config.data_dir.join("agent-logs.key");
    let log_key = herd_orchestrator::logs::LogKey::load_or_create(&key_file)
        .with_context(|| format!("cannot read or create the agents' log key {}", key_file.display()))?;
    let ctx = Ctx { config: config.clone(), store: store.clone(), ports, log_key };
    let front = Front::following(me.clone());
    // Cancelled once serving ended: the leader's background work stops (after flushing).
    let served = CancellationToken::new();
    let leading = match store.as_etcd() {
        None => {
            let term = ctx.lead(first, &shutdown);
            front.lead(term.router.clone());
            let served = served.clone();
            tokio::spawn(async move {
                served.cancelled().await;
                term.stop().await;
            })
        }
        Some(etcd) => {
            drop(first);
            let election = Election::new(etcd.clone(), me.clone(), config.lease_ttl);
            let (settled, mut known) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(elected(election, ctx, front.clone(), shutdown.clone(), served.clone(), settled));
            // Say it listens once it leads or knows who does (a term of its own from before a
            // restart holds the key for up to a TTL), so a client's first request is served.
            let wait = config.lease_ttl * 2 + std::time::Duration::from_secs(5);
            if tokio::time::timeout(wait, known.wait_for(|k| *k)).await.is_err() {
                warn!(waited = ?wait, "no leader yet; serving anyway (503 until one is elected)");
            }
            task
        }
    };
    // NB: the one line on stdout; scripts and tests read the bound address from it.
    herd_api::daemon_log::stdout_line(&format!("herd-orchestrator listening on {scheme}://{addr}"));
    if tls.is_none() && herd_orchestrator::tls::plain_needs_consent(&addr) {
        warn!(%addr, "serving plain HTTP off loopback (--insecure-http): tokens and specs cross the network in clear");
    }
    info!(%addr, store = store_kind, advertise = %me, leader = front.is_leader(), "serving");
    let app = front.router();
    let serve: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            use axum::serve::ListenerExt;
            // NB: tap_io gives the TLS listener's connections `ConnectInfo<SocketAddr>`.
            let listener = herd_orchestrator::tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
            Box::pin(std::future::IntoFuture::into_future(
                axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                    .with_graceful_shutdown(shutdown.clone().cancelled_owned()),
            ))
        }
        None => Box::pin(std::future::IntoFuture::into_future(
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(shutdown.clone().cancelled_owned()),
        )),
    };
    // Open requests get --shutdown-timeout to finish; followed logs (`herd logs -f`) never
    // finish by themselves, so they are cut then.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        served = serve => served.context("HTTP server failed")?,
        () = deadline => warn!(deadline = ?config.shutdown_timeout, "open requests and log streams cut at the shutdown deadline"),
    }
    // Agents' last reports, written behind: flushed before going; then the lease is revoked.
    served.cancel();
    let _ = leading.await;
    info!("stopped");
    Ok(())
}

/// The state a leader serves, loaded from the store now.
fn new_state(config: &Config, store: &Store, watches: CancellationToken) -> anyhow::Result<State> {
    Ok(State::new(store.clone(), config.heartbeat_interval, config.network)
        .context("cannot load the store")?
        .with_limits(config.limits.clone())
        .with_heartbeat_rate(config.max_heartbeat_rate.into())
        .with_shutdown(watches)
        .with_fleet(config.fleet))
}

/// What every term as leader is built from.
struct Ctx {
    config: Config,
    store: Store,
    ports: herd_api::validate::PortPolicy,
    log_key: herd_orchestrator::logs::LogKey,
}

/// A term as leader: the API over its state, and the background work it runs.
struct Leading {
    router: axum::Router,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Leading {
    /// Stops the background work (the report flusher writes what it holds first).
    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl Ctx {
    /// Starts leading with `state`: its background work and its API.
    fn lead(&self, state: State, shutdown: &CancellationToken) -> Leading {
        let stop = shutdown.child_token();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            async move { state.flush_reports_until(stop).await }
        }));
        // Lost hosts' instances move after their grace; drains move on.
        tasks.push(tokio::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = stop.cancelled() => return,
                    }
                    if let Err(e) = state.sweep().await {
                        warn!(error = %e, "moving instances off lost or draining hosts failed; retrying in a second");
                    }
                }
            }
        }));
        if let Some(schedule) = self.config.backups.clone() {
            info!(dir = %schedule.dir.display(), every = ?schedule.every, keep = schedule.keep, "scheduled backups");
            tasks.push(tokio::spawn(backup::run_schedule(self.config.sqlite_path.clone(), schedule, stop.clone())));
        }
        let router = http::router(state).layer(axum::Extension(self.ports.clone())).layer(axum::Extension(self.log_key.clone()));
        Leading { router, stop, tasks }
    }
}

/// On etcd: campaigns, leads while elected, follows otherwise, until serving ended.
/// `settled` turns true once this one leads or knows who does.
async fn elected(election: Election, ctx: Ctx, front: Front, shutdown: CancellationToken, served: CancellationToken, settled: tokio::sync::watch::Sender<bool>) {
    loop {
        let seen = |leader: Option<String>| {
            let known = leader.as_deref().is_some_and(|l| l != election.me());
            front.follow(leader);
            if known {
                settled.send_replace(true);
            }
        };
        let Some(term) = election.campaign(&shutdown, seen).await else { break };
        // Open watches are answered when the term ends or at shutdown.
        let watches = CancellationToken::new();
        let state = match new_state(&ctx.config, &ctx.store, watches.clone()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "elected, but cannot load the store: stepping down");
                term.resign().await;
                tokio::time::sleep(election.poll()).await;
                continue;
            }
        };
        let leading = ctx.lead(state, &shutdown);
        if let Some(etcd) = ctx.store.as_etcd() {
            etcd.set_stale_reads(false);
        }
        front.lead(leading.router.clone());
        settled.send_replace(true);
        let lost = tokio::select! {
            () = term.lost.cancelled() => true,
            () = shutdown.cancelled() => false,
        };
        // NB: stop answering as leader first, then stop the work; whatever is still under way
        // fails on the fence once the lease is gone.
        front.step_down();
        watches.cancel();
        // The last state answers GETs while nobody leads, from any etcd member that answers.
        if let Some(etcd) = ctx.store.as_etcd() {
            etcd.set_stale_reads(true);
        }
        if lost {
            leading.stop().await;
            continue;
        }
        served.cancelled().await;
        leading.stop().await;
        term.resign().await;
        break;
    }
}

/// `migrate --from sqlite:PATH --to etcd:URL,...` (see `herd_orchestrator::store::migrate`).
fn migrate(
    config: &Config,
    from: &str,
    to: &str,
    (ca_file, cert_file, key_file, prefix): (Option<std::path::PathBuf>, Option<std::path::PathBuf>, Option<std::path::PathBuf>, Option<String>),
) -> anyhow::Result<()> {
    let path = from.strip_prefix("sqlite:").filter(|p| !p.is_empty()).with_context(|| format!("--from `{from}`: name the source as sqlite:PATH"))?;
    let urls = to.strip_prefix("etcd:").filter(|u| !u.is_empty()).with_context(|| format!("--to `{to}`: name the target as etcd:URL[,URL...]"))?;
    let endpoints = urls
        .split(',')
        .map(|u| u.parse::<url::Url>().with_context(|| format!("--to: `{u}` is not a URL")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = std::path::Path::new(path);
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        anyhow::bail!("--from: {} is missing or empty: nothing to migrate", path.display());
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // The orchestrator on this data directory must not write while the copy is taken.
    let _lock = backup::lock(&config.data_dir)?;
    Sqlite::check_before_open(path, &config.data_dir).map_err(anyhow::Error::msg)?;
    let source = Sqlite::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut options = herd_orchestrator::store::etcd::Options::new(endpoints);
    (options.ca_file, options.cert_file, options.key_file) = (ca_file, cert_file, key_file);
    if let Some(p) = prefix {
        options.prefix = p;
    }
    let target = herd_orchestrator::store::etcd::Etcd::connect(options).with_context(|| format!("cannot reach etcd at {urls}"))?;
    let copied = herd_orchestrator::store::migrate::sqlite_to_etcd(&source, &target)
        .with_context(|| format!("cannot migrate {} to etcd at {urls}", path.display()))?;
    let counts: Vec<String> = copied.counts().into_iter().map(|(what, n)| format!("{n} {what}")).collect();
    herd_api::daemon_log::stdout_line(&format!(
        "migrated {} to etcd at {urls} (prefix {}): {}; every object verified equal; start the orchestrator with --store etcd --etcd-endpoints {urls}",
        path.display(),
        target.prefix(),
        counts.join(", ")
    ));
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
