//! The agent's loop: register, then heartbeat what is on the host and converge to the
//! desired set in the reply. Containers outlive the agent: stopping or killing it stops
//! nothing, and a restarted agent adopts what it finds (see [`crate::converge::plan`]).
//!
//! One pass, each heartbeat (or at once when Docker reports a herd container starting):
//!
//! ```text
//! list ─► heartbeat (observed) ─► network: prepare (leases, /etc/hosts) ─► converge
//!      ─► network: attach (plumb new containers) ─► release ─► sync (routes, firewall, names)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use herd_api::names::InstanceRef;
use herd_api::network::NetworkPlan;
use herd_api::quantity::Memory;
use herd_api::Role;
use herd_api::wire::{ContainerState, DesiredContainer, DesiredSet, Heartbeat, HostInfo, LogEndpoint, Watch};
use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{Client, ClientError};
use crate::config::{Config, NetworkMode};
use crate::converge::{self, Layout};
use crate::hadoop;
use crate::error_chain;
use crate::logs::Logs;
use crate::net::host::{self, HostNet, Local};
use crate::runtime::{Container, Runtime, RuntimeError};

/// Right after acting, heartbeat again this soon so the orchestrator sees the result.
const AFTER_ACTION: Duration = Duration::from_millis(250);
/// How long a watch is held open when nothing changes.
const WATCH_WAIT: Duration = Duration::from_secs(25);
/// The longest pause between two tries of a failing exchange (jitter included).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many containers are plumbed at once.
const PARALLEL_PLUMB: usize = 8;

pub struct Agent<R> {
    pub config: Config,
    pub runtime: R,
    pub client: Client,
    /// The per-instance log captures, kept in step with the containers found.
    pub logs: Logs,
    /// Sent at registration so the orchestrator can proxy `herd logs` here.
    pub log_endpoint: Option<LogEndpoint>,
    /// Where the log endpoint listens when that is every address (and `--address` is not
    /// set), with its scheme: its URL is then made at each registration, on the address
    /// this host reaches the orchestrator it registers with from.
    pub log_bound: Option<(SocketAddr, &'static str)>,
    /// What the log endpoint accepts; replaced by the credential a registration answers with.
    pub log_auth: Option<crate::logs::serve::Auth>,
    /// Images being pulled or backing off after a failed pull.
    pub pulls: crate::pull::Pulls,
}

/// The host's networking as the loop sees it.
enum Net {
    /// `--network none`.
    Off,
    /// Set up and working.
    Ready(Box<HostNet>),
    /// Wanted but not set up (yet); the reason goes on every instance's status.
    Failed(String),
}

impl<R: Runtime> Agent<R> {
    fn layout(&self) -> Layout {
        Layout {
            host_id: self.config.host_id.clone(),
            logs: self.config.data_dir.join("logs"),
            data_disks: self.config.data_disks.clone(),
            hosts_files: (self.config.network == NetworkMode::Herd).then(|| host::hosts_root(&self.net_dir())),
            conf: self.config.data_dir.join("conf"),
        }
    }

    /// The networking state directory: leases, the applied firewall, /etc/hosts files.
    fn net_dir(&self) -> PathBuf {
        self.config.data_dir.join("net")
    }

    fn net_options(&self, address: Ipv4Addr) -> host::Options {
        host::Options {
            bridge: self.config.bridge.clone(),
            state_dir: self.net_dir(),
            address,
            mtu: self.config.mtu,
            allow_egress: self.config.allow_egress.clone(),
        }
    }

    /// The underlay address: configured, or the one that reaches the orchestrator at `url`.
    fn address(&self, url: &url::Url) -> Result<Option<Ipv4Addr>, String> {
        if self.config.network == NetworkMode::None {
            return Ok(None);
        }
        if let Some(a) = self.config.address {
            return Ok(Some(a));
        }
        let peer = url
            .socket_addrs(|| None)
            .map_err(|e| format!("resolving {url}: {e}"))?
            .into_iter()
            .find(|a| a.is_ipv4())
            .ok_or_else(|| format!("{url} has no IPv4 address; set --address"))?;
        host::address_towards(peer).map(Some).map_err(|e| format!("finding the address towards {peer}: {e}; set --address"))
    }

    fn host_info(&self, address: Option<Ipv4Addr>) -> HostInfo {
        HostInfo {
            id: self.config.host_id.clone(),
            cpu: self.config.cpu,
            memory: self.config.memory,
            rack: self.config.rack.clone(),
            data_disks: self.config.data_disks.iter().map(|d| d.display().to_string()).collect(),
            data_disk_capacity: disk_capacity(&self.config.data_disks),
            labels: self.config.labels.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            address,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("agent", host = %self.config.host_id);
        self.run_inner(shutdown).instrument(span).await
    }

    /// The log endpoint to register, its URL on the address towards the orchestrator at `url`
    /// when the endpoint listens on every address.
    fn log_endpoint(&self, url: &url::Url) -> Option<LogEndpoint> {
        let mut endpoint = self.log_endpoint.clone()?;
        if let Some((bound, scheme)) = self.log_bound {
            endpoint.url = crate::logs::serve::advertised_url(bound, url, scheme);
        }
        Some(endpoint)
    }

    async fn run_inner(self, shutdown: CancellationToken) {
        let layout = self.layout();
        let mut backoff = Backoff::new();
        while !shutdown.is_cancelled() {
            // NB: the addresses this host registers are those towards the orchestrator it
            // reaches: the one that answered last, else the first of the list.
            let towards = self.client.current();
            let address = match self.address(&towards) {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "no underlay address, retrying");
                    sleep_or_cancel(backoff.next(), &shutdown).await;
                    continue;
                }
            };
            let endpoint = self.log_endpoint(&towards);
            let reply = match self.client.register(self.host_info(address), endpoint.clone()).await {
                Ok(reply) => {
                    let reached = self.client.current();
                    if reached != towards
                        && (self.address(&reached).ok() != Some(address) || self.log_endpoint(&reached) != endpoint)
                    {
                        info!(orchestrator = %reached, "registered through another orchestrator than the addresses were found towards; registering again");
                        continue;
                    }
                    if let (Some(auth), Some(secret)) = (&self.log_auth, &reply.log_secret) {
                        auth.set(secret);
                    }
                    info!(cpu = %self.config.cpu, memory = %self.config.memory, address = ?address, heartbeat_ms = reply.heartbeat_interval_ms, "registered");
                    backoff.reset();
                    reply
                }
                Err(e) => {
                    warn!(error = %e, source = ?std::error::Error::source(&e), "registration failed, retrying");
                    // Capture does not wait for the orchestrator.
                    if let Ok(found) = self.runtime.list(&self.config.host_id).await {
                        self.logs.sync(&found);
                    }
                    sleep_or_cancel(backoff.next(), &shutdown).await;
                    continue;
                }
            };
            let net = match (address, reply.network) {
                (None, _) => Net::Off,
                (Some(address), Some(lease)) => match HostNet::setup(self.net_options(address), lease).await {
                    Ok(net) => Net::Ready(Box::new(net)),
                    Err(e) => {
                        let e = error_chain(&e);
                        warn!(error = %e, "host network setup failed; instances here report it until it is fixed");
                        Net::Failed(format!("host network: {e}"))
                    }
                },
                (Some(_), None) => Net::Failed("the orchestrator leased this host no subnet; upgrade it".into()),
            };
            self.heartbeat_loop(&layout, net, address, &shutdown).await;
        }
        info!("stopped; containers keep running");
    }

    /// Heartbeats until shutdown or until the orchestrator forgets this host, with a watch
    /// (a long poll) beside it so a change reaches the host at once, not at its next beat.
    async fn heartbeat_loop(&self, layout: &Layout, net: Net, address: Option<Ipv4Addr>, shutdown: &CancellationToken) {
        let shared = Shared {
            held: std::sync::Mutex::new(DesiredSet::default()),
            changed: tokio::sync::Notify::new(),
            holding: tokio::sync::Notify::new(),
        };
        tokio::select! {
            _ = self.beat_loop(layout, net, address, shutdown, &shared) => {}
            _ = self.watch_loop(&shared).instrument(info_span!("watch")) => {}
        }
    }

    /// Keeps a watch open; each change it brings is taken into `held` and wakes the beat loop.
    async fn watch_loop(&self, shared: &Shared) {
        let Shared { held, changed, holding } = shared;
        let mut backoff = Backoff::new();
        loop {
            let applied = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).generation;
            // Nothing to watch from before the first heartbeat's answer.
            if applied.is_none() {
                holding.notified().await;
                continue;
            }
            let w = Watch { host_id: self.config.host_id.clone(), applied, wait_ms: WATCH_WAIT.as_millis() as u64, network_deltas: true };
            match self.client.watch(&w).await {
                Ok(reply) => {
                    backoff.reset();
                    let mut set = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match set.apply(&reply) {
                        Ok(false) => {}
                        Ok(true) => {
                            debug!(generation = reply.generation, delta = reply.base.is_some(), "watch: desired set changed");
                            changed.notify_one();
                        }
                        Err(stale) => {
                            // The heartbeat asks for the full set.
                            debug!(%stale, "watch: delta against another generation");
                            set.generation = None;
                        }
                    }
                }
                Err(ClientError::Refused { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
                    // An orchestrator without watches: heartbeats alone carry changes.
                    info!("the orchestrator has no watch route; changes arrive with heartbeats");
                    return std::future::pending().await;
                }
                Err(e) => {
                    // The heartbeat loop reports and handles failures (and an unknown host).
                    debug!(error = %e, "watch failed");
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Heartbeats: reports what runs, takes in the answer, converges.
    async fn beat_loop(&self, layout: &Layout, mut net: Net, address: Option<Ipv4Addr>, shutdown: &CancellationToken, shared: &Shared) {
        let Shared { held, changed, holding } = shared;
        let mut errors: HashMap<InstanceRef, String> = HashMap::new();
        let mut backoff = Backoff::new();
        let mut starts: Option<BoxStream<'static, Result<String, RuntimeError>>> = None;
        let live = hadoop::Live::new(layout.conf.clone());
        let probe = hadoop::Probe::new();
        let probing = shutdown.child_token();
        let _stop_probing = probing.clone().drop_guard();
        tokio::spawn(probe.clone().run(probing).instrument(info_span!("probe")));
        let mut roles: HashMap<InstanceRef, Role> = HashMap::new();
        // Data folders removed since the last heartbeat, reported with the next one.
        let mut purged: Vec<InstanceRef> = Vec::new();
        while !shutdown.is_cancelled() {
            let found = match self.runtime.list(&self.config.host_id).await {
                Ok(found) => found,
                Err(e) => {
                    warn!(error = %e, "cannot list containers");
                    sleep_or_cancel(backoff.next(), shutdown).await;
                    continue;
                }
            };
            let ips = match &net {
                Net::Ready(n) => n.leases().await.map(|l| by_instance(&found, &l)).unwrap_or_default(),
                _ => HashMap::new(),
            };
            probe.set_targets(&found, &ips, &roles);
            let mut observed = converge::observed(&found, &errors, &ips);
            for o in &mut observed {
                o.live_hash = live.applied(&o.instance);
                o.hadoop = probe.health(&o.instance);
            }
            let mut conditions = self.logs.conditions();
            if let Net::Ready(n) = &net {
                conditions.extend(n.conditions());
            }
            let hb = Heartbeat {
                host_id: self.config.host_id.clone(),
                observed,
                conditions,
                purged: purged.clone(),
                applied: held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).generation,
                network_deltas: true,
            };
            let sent = std::time::Instant::now();
            let answered = self.client.heartbeat(&hb).await;
            crate::metrics::get().heartbeat(answered.is_ok(), sent.elapsed());
            let reply = match answered {
                Ok(reply) => reply,
                Err(ClientError::UnknownHost) => {
                    warn!("orchestrator does not know this host; registering again");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "heartbeat failed");
                    // Capture does not wait for the orchestrator.
                    self.logs.sync(&found);
                    sleep_or_cancel(backoff.next(), shutdown).await;
                    continue;
                }
            };
            backoff.reset();
            let (desired, plan, generation) = {
                let mut set = held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let first = set.generation.is_none();
                if let Err(stale) = set.apply(&reply) {
                    // Asks for the full set next time; converges to what it holds meanwhile.
                    debug!(%stale, "heartbeat: delta against another generation");
                    set.generation = None;
                } else if first {
                    // The watch starts once something is held.
                    holding.notify_one();
                }
                (set.desired(), set.network.clone(), set.generation.unwrap_or(reply.generation))
            };
            purged = purge(layout, &reply.purge, &found).await;
            roles = desired.iter().map(|d| (d.instance.clone(), d.role)).collect();
            live.sync(&self.runtime, &desired, &found).await;
            self.logs.remember_pools(&desired);
            self.logs.sync(&found);
            let interval = Duration::from_millis(reply.heartbeat_interval_ms.max(100));
            crate::metrics::get().set_interval(interval);
            if let (Net::Failed(_), Some(address), Some(plan)) = (&net, address, &plan) {
                // Try again: the operator may have fixed what failed.
                if let Ok(ready) = HostNet::setup(self.net_options(address), plan.lease).await {
                    info!("host network recovered");
                    net = Net::Ready(Box::new(ready));
                }
            }
            let acted;
            (errors, acted) = match &net {
                Net::Failed(why) => (desired.iter().map(|d| (d.instance.clone(), why.clone())).collect(), false),
                Net::Off => self.converge(layout, &desired, &found, generation).await,
                Net::Ready(n) => self.converge_networked(layout, n, &desired, plan.as_ref(), found, generation).await,
            };
            let pause = if acted && errors.is_empty() { AFTER_ACTION } else { interval };
            if let Net::Ready(_) = net
                && starts.is_none()
            {
                starts = Some(self.runtime.starts(&self.config.host_id));
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {}
                // The watch brought a change: converge to it now.
                _ = changed.notified() => {}
                event = next_start(&mut starts) => match event {
                    Some(Ok(id)) => debug!(container = %id, "container started; networking it now"),
                    Some(Err(e)) => {
                        warn!(error = %e, "Docker event stream failed; reconnecting");
                        starts = None;
                    }
                    None => starts = None,
                },
            }
        }
    }

    /// Converges containers only; returns the errors and whether it acted.
    async fn converge(&self, layout: &Layout, desired: &[DesiredContainer], found: &[Container], generation: u64) -> (HashMap<InstanceRef, String>, bool) {
        let configs = converge::configs(layout, desired, found);
        let actions = converge::plan(&configs, found);
        debug!(generation, desired = desired.len(), found = found.len(), actions = actions.len(), "heartbeat");
        let acted = !actions.is_empty();
        (converge::execute(&self.runtime, &self.pulls, layout, desired, actions).await, acted)
    }

    /// Converges containers and their networking: addresses and names before containers are
    /// created, plumbing after they start, then routes, firewall and names for the host.
    async fn converge_networked(
        &self,
        layout: &Layout,
        net: &HostNet,
        desired: &[DesiredContainer],
        plan: Option<&NetworkPlan>,
        found: Vec<Container>,
        generation: u64,
    ) -> (HashMap<InstanceRef, String>, bool) {
        let instances: Vec<InstanceRef> = desired.iter().map(|d| d.instance.clone()).collect();
        if let Err(e) = net.prepare(&instances, plan).await {
            let why = format!("network: {}", error_chain(&e));
            warn!(error = %why, "preparing addresses failed");
            return (instances.into_iter().map(|i| (i, why.clone())).collect(), false);
        }
        let configs = converge::configs(layout, desired, &found);
        let actions = converge::plan(&configs, &found);
        debug!(generation, desired = desired.len(), found = found.len(), actions = actions.len(), "heartbeat");
        let acted = !actions.is_empty();
        let mut errors = converge::execute(&self.runtime, &self.pulls, layout, desired, actions).await;
        let found = if acted {
            match self.runtime.list(&self.config.host_id).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, "cannot list containers after converging");
                    return (errors, acted);
                }
            }
        } else {
            found
        };
        errors.extend(self.attach_all(net, &found).await);
        let keep: BTreeSet<InstanceRef> = instances.iter().cloned().chain(found.iter().map(|c| c.instance.clone())).collect();
        if let Err(e) = net.release(&keep).await {
            warn!(error = %error_chain(&e), "releasing addresses failed");
        }
        let local: Vec<Local> = desired.iter().map(|d| Local { instance: d.instance.clone(), publish: d.publish.clone() }).collect();
        if let Err(e) = net.sync(plan, &local).await {
            let why = format!("network: {}", error_chain(&e));
            warn!(error = %why, "syncing routes and firewall failed");
            for i in instances {
                errors.entry(i).or_insert_with(|| why.clone());
            }
        }
        (errors, acted)
    }

    /// Plumbs every running container whose veth is missing, a few at a time.
    async fn attach_all(&self, net: &HostNet, found: &[Container]) -> HashMap<InstanceRef, String> {
        let links = match net.links().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %error_chain(&e), "cannot list links");
                return HashMap::new();
            }
        };
        let running = found.iter().filter(|c| c.state == ContainerState::Running);
        let results: Vec<(InstanceRef, Result<(), String>)> = futures::stream::iter(running)
            .map(|c| {
                let links = &links;
                async move {
                    let r = async {
                        let Some(pid) = self.runtime.pid(&c.id).await.map_err(|e| e.to_string())? else {
                            return Ok(());
                        };
                        net.attach(&c.instance, pid, links).await.map(|_| ()).map_err(|e| error_chain(&e))
                    }
                    .await;
                    (c.instance.clone(), r)
                }
            })
            .buffer_unordered(PARALLEL_PLUMB)
            .collect()
            .await;
        results
            .into_iter()
            .filter_map(|(i, r)| {
                let e = r.err()?;
                warn!(instance = %i, error = %e, "plumbing failed; retrying next pass");
                Some((i, format!("network: {e}")))
            })
            .collect()
    }
}

/// Leases keyed by owner, as addresses of the containers found.
fn by_instance(found: &[Container], leases: &std::collections::BTreeMap<String, Ipv4Addr>) -> HashMap<InstanceRef, Ipv4Addr> {
    found.iter().filter_map(|c| Some((c.instance.clone(), *leases.get(&host::owner(&c.instance))?))).collect()
}

async fn next_start(starts: &mut Option<BoxStream<'static, Result<String, RuntimeError>>>) -> Option<Result<String, RuntimeError>> {
    match starts {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// What the beat loop and the watch loop share.
struct Shared {
    /// The desired set as last taken in, by either loop.
    held: std::sync::Mutex<DesiredSet>,
    /// The watch took in a change: wakes the beat loop.
    changed: tokio::sync::Notify,
    /// A heartbeat gave the first set: wakes the watch loop.
    holding: tokio::sync::Notify,
}

/// The pause before trying a failing exchange again: exponential from 250 ms with jitter,
/// capped at [`MAX_BACKOFF`], for ever (backon's policy); [`Backoff::reset`] after a success.
struct Backoff(backon::ExponentialBackoff);

impl Backoff {
    fn new() -> Self {
        let policy = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            // NB: jitter adds up to the delay itself.
            .with_max_delay(MAX_BACKOFF / 2)
            .with_jitter()
            .without_max_times();
        Self(policy.build())
    }

    fn next(&mut self) -> Duration {
        self.0.next().unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// The size of each data disk (its filesystem's total bytes), in order; empty when one
/// cannot be measured (missing, not mounted yet), so the orchestrator does not check disk
/// room here rather than trusting a wrong figure. Logged, so the operator sees why.
fn disk_capacity(disks: &[PathBuf]) -> Vec<Memory> {
    let mut out = Vec::with_capacity(disks.len());
    for d in disks {
        match rustix::fs::statvfs(d) {
            Ok(s) => out.push(Memory(s.f_blocks.saturating_mul(s.f_frsize))),
            Err(e) => {
                warn!(disk = %d.display(), error = %e, "cannot measure data disk; DataNodes' disk is not checked on this host");
                return Vec::new();
            }
        }
    }
    out
}

/// Removes the data folders (`<disk>/herd/TENANT/CLUSTER/INSTANCE` on every data disk) of
/// each instance of `purge` whose container is gone (`found` is what this pass listed; a
/// container still there is removed by this pass's converge, and purged on the next).
/// Returns the ones done; a folder already gone counts as done.
async fn purge(layout: &Layout, purge: &[InstanceRef], found: &[Container]) -> Vec<InstanceRef> {
    let mut done = Vec::new();
    for i in purge.iter().filter(|i| !found.iter().any(|c| &c.instance == *i)) {
        let mut ok = true;
        for disk in &layout.data_disks {
            let dir = disk.join("herd").join(&i.tenant).join(&i.cluster).join(&i.name);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => info!(instance = %i, dir = %dir.display(), "data folder purged"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(instance = %i, dir = %dir.display(), error = %e, "cannot purge data folder");
                    ok = false;
                }
            }
        }
        if ok {
            done.push(i.clone());
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_restarts() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!((Duration::from_millis(250)..=Duration::from_millis(500)).contains(&first), "{first:?}");
        let later: Vec<Duration> = (0..40).map(|_| b.next()).collect();
        assert!(later[3] >= Duration::from_secs(2), "{later:?}");
        assert!(later.iter().all(|d| *d <= MAX_BACKOFF), "{later:?}");
        assert!(later[39] >= MAX_BACKOFF / 2, "{later:?}");
        b.reset();
        assert!(b.next() <= Duration::from_millis(500));
    }

    #[test]
    fn data_disks_are_measured_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let sizes = disk_capacity(&[a.clone(), b]);
        assert_eq!(sizes.len(), 2);
        assert!(sizes.iter().all(|s| s.0 > 0), "{sizes:?}");
        // One disk missing (not mounted yet): nothing is reported, so nothing is checked.
        assert!(disk_capacity(&[a, dir.path().join("missing")]).is_empty());
    }
}
