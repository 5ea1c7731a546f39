//! The orchestrator's cluster and host operations. Each is one store transaction that
//! validates, checks the generation (`If-Match`) and the tenant's quota, plans
//! (`reconciler::plan`), places (`scheduler::place`), writes and records the change in the
//! audit trail, so a failure halfway stores nothing. Tenants and tokens are in
//! [`crate::tenancy`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_api::lifecycle::{LifecycleConditionKind, Phase};
use herd_api::names::{InstanceRef, check_host_id};
use herd_api::quantity::{Cpu, Memory};
use herd_api::validate::validate;
use herd_api::network::{HostNetwork, NetworkPlan};
use herd_api::wire::{
    ClusterStatus, Heartbeat, HeartbeatReply, HostInfo, InstanceStatus, Observed,
    Page, Quota, RegisterReply, ScaleRequest,
};
use herd_api::{ClusterSpec, Role};
use crate::store::Tx;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::desired::{self, DesiredCache};
use crate::hadoop;
use crate::hot::Hot;
use crate::lifecycle;
use crate::network;
use crate::reconciler::{self, Instance};
use crate::placement::{self, schedule_pending};
use crate::quota;
use crate::store::audit::{self, Change};
use crate::store::Store;

/// The orchestrator's shared state: the store (intent), the hot state (what agents
/// report) and the settings its operations need.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    pub hot: Arc<Hot>,
    /// Each cluster's desired containers, derived from both (see [`crate::desired`]).
    pub desired: Arc<DesiredCache>,
    /// Tokens already checked (see [`crate::tenancy::AuthCache`]).
    pub auth: Arc<crate::tenancy::AuthCache>,
    /// How often agents heartbeat at least; a host that misses three is `lost`. The interval
    /// they are told grows with the fleet (see [`State::interval_ms`]).
    pub heartbeat_interval: Duration,
    /// The most heartbeats per second the fleet is asked for, all hosts together.
    pub heartbeat_rate: u64,
    /// What each host was last told, for delta replies (see [`crate::delta`]).
    pub sents: Arc<crate::delta::Sents>,
    /// Watches open per host (see [`State::watch`]).
    watching: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Clusters' status, as last assembled (see [`State::cluster_page`]).
    statuses: Arc<std::sync::Mutex<HashMap<(String, String), CachedStatus>>>,
    /// The cluster CIDR and host subnet size.
    pub network: network::Settings,
    /// When the instances of a lost host move (see [`crate::fleet`]).
    pub fleet: crate::fleet::FleetSettings,
    /// Admission caps, the default quota and the rate per token (see [`crate::limits`]).
    pub limits: Arc<crate::limits::Limits>,
    pub rate: Arc<crate::limits::RateLimiter>,
    /// Bumped after every change that may store a leaving phase; `leaving_none_at` is the
    /// value it had when the store was last seen with no leaving instance. Heartbeats step
    /// the lifecycle only while the two differ.
    leaving_epoch: Arc<AtomicU64>,
    leaving_none_at: Arc<AtomicU64>,
}

/// A cluster's status as assembled at `at_ms`, valid while no commit touched a host or
/// tenant (`touches`) and no report about the cluster changed (`version`), for at most
/// [`STATUS_TTL_MS`] (liveness ages).
struct CachedStatus {
    touches: u64,
    version: u64,
    at_ms: u64,
    status: Arc<ClusterStatus>,
}

/// Watches one host may hold open at once: its agent needs one (two while a new one
/// replaces a timed-out one); a stolen agent token cannot pile up long polls.
pub const WATCHES_PER_HOST: usize = 2;

/// One open watch of a host, counted while it lives.
struct Watching {
    map: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    host: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.host);
            }
        }
    }
}

/// How long a cluster's assembled status answers reads when nothing changed.
pub const STATUS_TTL_MS: u64 = 250;

/// Heartbeats per second the fleet is asked for at most, all hosts together, by default.
pub const DEFAULT_HEARTBEAT_RATE: u64 = 10_000;

/// The most instances one page of a cluster list holds before it ends (the cluster that
/// crosses it included).
pub const PAGE_INSTANCES: usize = 10_000;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// A precondition on a cluster's generation, from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `*`: the cluster must exist, at any generation.
    Exists,
    /// The cluster must be at exactly this generation.
    Generation(u64),
}

/// Fails with [`Error::Stale`] unless `current` (the stored generation, `None` when the
/// cluster does not exist) meets `expect`.
fn check_expect(resource: &str, current: Option<u64>, expect: Option<Expect>) -> Result<()> {
    match (expect, current) {
        (None, _) | (Some(Expect::Exists), Some(_)) => Ok(()),
        (Some(Expect::Generation(given)), Some(current)) if given == current => Ok(()),
        (Some(Expect::Generation(given)), current) => {
            Err(Error::Stale { resource: resource.into(), current: current.unwrap_or(0), given })
        }
        (Some(Expect::Exists), None) => Err(Error::not_found("cluster", resource)),
    }
}

/// One page of a list: fetch `limit + 1`, keep `limit`, and the last kept item's cursor
/// says where the next page starts.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&cursor)
    } else {
        None
    };
    Page { items, next }
}

impl State {
    /// The state over `store`, with the hot state rebuilt from it (see [`crate::hot`]).
    pub fn new(store: Store, heartbeat_interval: Duration, network: network::Settings) -> Result<Self> {
        let hot = store.read_now(|c| {
            let rows = c.hosts()?;
            let cordoned: Vec<String> = rows.iter().filter(|h| h.cordoned).map(|h| h.info.id.clone()).collect();
            let hosts = rows.into_iter().map(|h| h.info).collect();
            let hot = Hot::load(hosts, c.subnets()?, c.observed()?, c.conditions()?, now_ms());
            for id in cordoned {
                hot.set_cordoned(&id, true);
            }
            Ok(hot)
        })?;
        Ok(State {
            store,
            hot: Arc::new(hot),
            desired: Arc::default(),
            auth: Arc::default(),
            heartbeat_interval,
            heartbeat_rate: DEFAULT_HEARTBEAT_RATE,
            sents: Arc::default(),
            watching: Arc::default(),
            statuses: Arc::default(),
            network,
            fleet: crate::fleet::FleetSettings::default(),
            limits: Arc::default(),
            rate: Arc::new(crate::limits::RateLimiter::new(&crate::limits::Limits::default())),
            leaving_epoch: Arc::new(AtomicU64::new(1)),
            leaving_none_at: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same state, moving lost hosts' instances per `fleet`.
    pub fn with_fleet(mut self, fleet: crate::fleet::FleetSettings) -> Self {
        self.fleet = fleet;
        self
    }

    /// The state with these limits instead of the defaults.
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.rate = Arc::new(crate::limits::RateLimiter::new(&limits));
        self.limits = Arc::new(limits);
        self
    }

    /// The heartbeat interval agents are told: the configured one, longer once the fleet is
    /// big enough that all hosts together would send more than `heartbeat_rate` heartbeats
    /// per second (as Nomad stretches its heartbeat TTL with the node count), so the load on
    /// the orchestrator stays flat as the fleet grows. A host is `lost` after three of them.
    pub(crate) fn interval_ms(&self) -> u64 {
        let base = self.heartbeat_interval.as_millis() as u64;
        let hosts = self.hot.count() as u64;
        base.max((hosts * 1000).div_ceil(self.heartbeat_rate.max(1)))
    }

    /// The same state, asking the fleet for at most `rate` heartbeats per second.
    pub fn with_heartbeat_rate(mut self, rate: u64) -> Self {
        self.heartbeat_rate = rate.max(1);
        self
    }

    /// Something may have stored a leaving phase: heartbeats step the lifecycle again.
    pub(crate) fn leaving_may_exist(&self) {
        self.leaving_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Writes the reports that changed since the last call to the store, in one
    /// transaction (write-behind; see [`crate::hot`]).
    pub async fn flush_reports(&self) -> Result<usize> {
        let dirty = self.hot.take_dirty();
        if dirty.is_empty() {
            return Ok(0);
        }
        let hosts: Vec<String> = dirty.iter().map(|d| d.host.clone()).collect();
        let n = dirty.len();
        let written = self
            .store
            .write(move |tx| {
                for d in &dirty {
                    tx.replace_observed(&d.host, &d.observed)?;
                    tx.set_conditions(&d.host, &d.conditions)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            self.hot.mark_dirty(hosts);
            return Err(e);
        }
        Ok(n)
    }

    /// Flushes reports every second until `stop` is cancelled, then once more.
    pub async fn flush_reports_until(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let cancelled = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            if let Err(e) = self.flush_reports().await {
                warn!(error = %e, "cannot write agents' reports to the store; retrying");
            }
            if cancelled {
                return;
            }
        }
    }

    /// Registers a host or updates its capacity; then places pending instances.
    pub async fn register(&self, actor: String, info: HostInfo) -> Result<RegisterReply> {
        if let Err(m) = check_host_id(&info.id) {
            return Err(Error::invalid("host.id", m));
        }
        let settings = self.network;
        if let Some(address) = info.address {
            settings.check_address(address).map_err(|m| Error::refused("host.address", m))?;
        }
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, host_id) = (self.hot.clone(), info.id.clone());
        let (new, network) = self
            .store
            .write(move |tx| {
                let new = tx.upsert_host(&info, now)?;
                if new {
                    let resource = format!("hosts/{}", info.id);
                    let change = Change { actor: &actor, action: "host.register", resource: &resource, before: None, after: None };
                    audit::record(tx, now, &change)?;
                }
                let network = match info.address {
                    Some(_) => Some(lease_subnet(tx, &hot, &settings, &info.id)?),
                    None => None,
                };
                hot.register(info.clone(), network.map(|n| n.subnet), now);
                schedule_pending(tx, &hot, now, lost_after)?;
                Ok((new, network))
            })
            .await?;
        // Placement may have taken borrowed NodeManagers back for a guarantee (a drain).
        self.leaving_may_exist();
        // A new lease or description: the next reply is computed, not taken as idle.
        self.sents.forget(&host_id);
        info!(new, subnet = ?network.map(|n| n.subnet), "host registered");
        Ok(RegisterReply { heartbeat_interval_ms: self.interval_ms(), network, log_secret: None })
    }

    /// Records what a host observed (in memory) and answers with its full desired set. The
    /// store is written only when something durable moves: a purge acknowledged, a leaving
    /// instance's phase, or placements when a host comes back from `lost`.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let Heartbeat { host_id: host, observed, conditions, purged, applied } = hb;
        let Some(was_ready) = self.hot.heartbeat(&host, observed, conditions, now, lost_after) else {
            return Err(Error::not_found("host", host));
        };
        let acked = !purged.is_empty();
        if acked {
            let host = host.clone();
            self.store
                .write(move |tx| {
                    for done in &purged {
                        tx.delete_purge(&host, done)?;
                    }
                    Ok(())
                })
                .await?;
        }
        // Masters' health and removed containers arrive here: move leaving instances on.
        let epoch = self.leaving_epoch.load(Ordering::SeqCst);
        if epoch != self.leaving_none_at.load(Ordering::SeqCst) {
            let h = host.clone();
            let (any, mine) = self
                .store
                .read(move |c| {
                    let leaving = c.leaving(None)?;
                    let clusters: BTreeSet<(String, String)> =
                        leaving.keys().map(|i| (i.tenant.clone(), i.cluster.clone())).collect();
                    let mine: BTreeSet<(String, String)> = c.instances_on_host(&h)?
                        .into_iter()
                        .map(|i| (i.instance.tenant, i.instance.cluster))
                        .filter(|k| clusters.contains(k))
                        .collect();
                    Ok((!leaving.is_empty(), mine))
                })
                .await?;
            if !any {
                self.leaving_none_at.fetch_max(epoch, Ordering::SeqCst);
            } else if !mine.is_empty() {
                let hot = self.hot.clone();
                self.store.write(move |tx| drive_lifecycle(tx, &hot, now, lost_after, Some(&mine))).await?;
                self.leaving_may_exist();
            }
        }
        // A host coming back may make room for what is pending.
        if !was_ready {
            let hot = self.hot.clone();
            self.store.write(move |tx| schedule_pending(tx, &hot, now, lost_after)).await?;
            self.leaving_may_exist();
        }
        self.reply_for(&host, applied, now, lost_after, !acked).await
    }

    /// The reply for `host`, which applied generation `applied`: a delta against it when the
    /// orchestrator knows it (see [`crate::delta`]). With `may_skip`, a host whose set was
    /// empty at the current store revision is answered without reading the store.
    async fn reply_for(&self, host: &str, applied: Option<u64>, now: u64, lost_after: u64, may_skip: bool) -> Result<HeartbeatReply> {
        let (interval, settings) = (self.interval_ms(), self.network);
        loop {
            let revision = self.store.current_revision();
            if may_skip && let Some(generation) = self.sents.idle_at(host, revision) {
                return Ok(crate::delta::unchanged(generation, applied, interval));
            }
            let (hot, cache, h) = (self.hot.clone(), self.desired.clone(), host.to_string());
            let full = self
                .store
                .read(move |c| {
                    // One snapshot for the whole reply (as every read is).
                    let desired = desired::desired_for(c, &hot, &cache, &h, now, lost_after)?;
                    let network = network_plan(c, &hot, &settings, &h)?;
                    let purge = c.purges(&h)?;
                    let revision = c.revision()?;
                    Ok(crate::delta::Full { desired, network, purge, revision })
                })
                .await?;
            // `None`: a racing request told the host a newer set; read again.
            if let Some(reply) = self.sents.reply(host, applied, full, interval) {
                return Ok(reply);
            }
        }
    }

    /// A long poll: answers as soon as `host`'s desired set differs from generation `applied`
    /// (a commit touched the host or a tenant it runs: see [`store::Touched`]), else after
    /// `wait` with an empty delta. What agents report (rollout steps, other hosts' container
    /// addresses) reaches a host with its next heartbeat instead.
    pub async fn watch(&self, host: &str, applied: Option<u64>, wait: Duration) -> Result<HeartbeatReply> {
        let lost_after = 3 * self.interval_ms();
        if self.hot.host(host).is_none() {
            return Err(Error::not_found("host", host));
        }
        let _watching = {
            let mut map = self.watching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = map.entry(host.to_string()).or_default();
            if *n >= WATCHES_PER_HOST {
                return Err(Error::Conflict(format!(
                    "host {host} already holds {WATCHES_PER_HOST} watches open (its agent needs one); wait for one to be answered"
                )));
            }
            *n += 1;
            Watching { map: self.watching.clone(), host: host.to_string() }
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before reading: no commit falls between the read and the wait.
        let mut changes = self.store.changes();
        loop {
            let reply = self.reply_for(host, applied, now_ms(), lost_after, true).await?;
            if reply.base != Some(reply.generation) || applied.is_none() {
                return Ok(reply);
            }
            let tenants = self.sents.tenants(host);
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(t) if t.concerns(host, &tenants) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(reply),
                    },
                    _ = tokio::time::sleep_until(deadline) => return Ok(reply),
                }
            }
        }
    }

    /// Creates or replaces a cluster from its spec, within the tenant's quota.
    pub async fn apply(&self, actor: String, spec: ClusterSpec, expect: Option<Expect>) -> Result<(ClusterStatus, Applied)> {
        validate(&spec)?;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, limits) = (self.hot.clone(), self.limits.clone());
        let out = self
            .store
            .write(move |tx| {
                let Some(tenant) = tx.tenant(&spec.tenant)? else {
                    return Err(Error::refused(
                        "tenant",
                        format!("tenant `{0}` does not exist; create it first with `herd tenants create {0}`", spec.tenant),
                    ));
                };
                let resource = format!("{}/{}", spec.tenant, spec.name);
                let current = tx.cluster(&spec.tenant, &spec.name)?;
                check_expect(&resource, current.as_ref().map(|r| r.generation), expect)?;
                let (tenant_name, name) = (spec.tenant.clone(), spec.name.clone());
                let (outcome, before, after) = apply_in(tx, &hot, &limits, &tenant.quota, spec.clone(), now, lost_after, false)?;
                let applied = outcome.applied;
                if applied != Applied::Unchanged {
                    let action = if applied == Applied::Created { "cluster.create" } else { "cluster.update" };
                    audit::record(tx, now, &Change { actor: &actor, action, resource: &resource, before, after: Some(after) })?;
                }
                Ok((cluster_status(tx, &hot, &tenant_name, &name, now, lost_after)?, applied))
            })
            .await;
        self.leaving_may_exist();
        out
    }

    /// Sets one pool's replica count, leaving the rest of the spec as it is.
    pub async fn scale(
        &self,
        actor: String,
        tenant: String,
        cluster: String,
        pool: Role,
        req: ScaleRequest,
        expect: Option<Expect>,
    ) -> Result<ClusterStatus> {
        let ScaleRequest { replicas, force } = req;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, limits) = (self.hot.clone(), self.limits.clone());
        let out = self
            .store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let row = tx.cluster(&tenant, &cluster)?.ok_or_else(|| Error::not_found("cluster", &resource))?;
                check_expect(&resource, Some(row.generation), expect)?;
                let mut spec = row.spec;
                let Some(p) = spec.pools.get_mut(&pool) else {
                    let have: Vec<_> = spec.pools.keys().map(|r| r.as_str()).collect();
                    return Err(Error::refused(
                        "pool",
                        format!("cluster {tenant}/{cluster} has no {pool} pool (it has: {}); add it with `herd apply`", have.join(", ")),
                    ));
                };
                p.replicas = replicas;
                // NB: the request is valid; the stored cluster with it would not be (e.g. two
                // NameNodes): refused by the state, each field named.
                validate(&spec).map_err(|e| match e.field_errors().into_iter().next() {
                    Some(f) => Error::refused(f.field, f.message),
                    None => Error::from(e),
                })?;
                let quota = tx.tenant(&tenant)?.map(|t| t.quota).unwrap_or_default();
                let (outcome, before, after) = apply_in(tx, &hot, &limits, &quota, spec, now, lost_after, force)?;
                if outcome.applied != Applied::Unchanged {
                    let change = Change { actor: &actor, action: "cluster.scale", resource: &resource, before, after: Some(after) };
                    audit::record(tx, now, &change)?;
                }
                if let Some(risk) = outcome.forced.as_deref() {
                    let change =
                        Change { actor: &actor, action: "cluster.scale.force", resource: &resource, before, after: Some(after) };
                    audit::record_detail(tx, now, &change, Some(risk))?;
                    warn!(cluster = %resource, %pool, risk, "forced scale-down");
                }
                cluster_status(tx, &hot, &tenant, &cluster, now, lost_after)
            })
            .await;
        self.leaving_may_exist();
        out
    }

    /// Deletes a cluster: its instances go from every host's desired set. Their data folders
    /// stay on their hosts unless `purge_data`, which asks each host's agent to remove them
    /// once the container is gone.
    pub async fn delete(
        &self,
        actor: String,
        tenant: String,
        cluster: String,
        purge_data: bool,
        expect: Option<Expect>,
    ) -> Result<()> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let hot = self.hot.clone();
        self.store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let Some(row) = tx.cluster(&tenant, &cluster)? else {
                    return Err(Error::not_found("cluster", resource));
                };
                check_expect(&resource, Some(row.generation), expect)?;
                let existing = tx.instances(Some((&tenant, &cluster)))?;
                let plan = reconciler::plan(&tenant, &cluster, None, &existing, &BTreeSet::new(), &BTreeSet::new());
                for gone in &plan.remove {
                    tx.delete_instance(gone)?;
                }
                if purge_data {
                    for i in existing.iter().filter(|i| i.role.has_data()) {
                        if let Some(host) = &i.host {
                            tx.put_purge(host, &i.instance)?;
                        }
                    }
                }
                tx.delete_cluster(&tenant, &cluster)?;
                tx.bump_revision()?;
                let change =
                    Change { actor: &actor, action: "cluster.delete", resource: &resource, before: Some(row.generation), after: None };
                let detail = purge_data.then_some("data folders purged (--purge-data)");
                audit::record_detail(tx, now, &change, detail)?;
                // Freed capacity may let another cluster's pending instances in.
                schedule_pending(tx, &hot, now, lost_after)?;
                Ok((tenant.clone(), cluster.clone()))
            })
            .await
            .map(|(tenant, cluster)| {
                self.leaving_may_exist();
                self.desired.forget(&tenant, &cluster)
            })
    }

    pub async fn cluster(&self, tenant: String, cluster: String) -> Result<ClusterStatus> {
        self.cluster_page(tenant, cluster, None, usize::MAX).await
    }

    /// A cluster's status with one page of its instances: at most `limit`, starting after
    /// the instance named `after` (the order is by pool, then ordinal). Its pool summaries
    /// count every instance.
    pub async fn cluster_page(&self, tenant: String, cluster: String, after: Option<String>, limit: usize) -> Result<ClusterStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let key = (tenant, cluster);
        // NB: read before the store, so a commit racing the read makes the entry stale, never
        // an old status fresh.
        let (touches, version) = (self.store.touches(), self.hot.cluster_version(&key.0, &key.1));
        let cached = {
            let statuses = self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            statuses
                .get(&key)
                .filter(|c| c.touches == touches && c.version == version && now.saturating_sub(c.at_ms) < STATUS_TTL_MS)
                .map(|c| c.status.clone())
        };
        let status = match cached {
            Some(s) => s,
            None => {
                let (hot, (t, c)) = (self.hot.clone(), key.clone());
                let fresh = self.store.read(move |conn| cluster_status(conn, &hot, &t, &c, now, lost_after)).await;
                let mut statuses = self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match fresh {
                    Ok(s) => {
                        let s = Arc::new(s);
                        statuses.insert(key, CachedStatus { touches, version, at_ms: now, status: s.clone() });
                        s
                    }
                    Err(e) => {
                        statuses.remove(&key);
                        return Err(e);
                    }
                }
            }
        };
        let mut status = Arc::unwrap_or_clone(status);
        let start = match after {
            None => 0,
            Some(a) => match status.instances.iter().position(|i| i.instance.name == a) {
                Some(n) => n + 1,
                None => return Err(Error::invalid("after", format!("no instance `{}` in this cluster: pass the `instances_next` cursor of the previous page", a.escape_default()))),
            },
        };
        let end = start.saturating_add(limit).min(status.instances.len());
        if start > 0 || end < status.instances.len() {
            status.instances_next = (end < status.instances.len()).then(|| status.instances[end - 1].instance.name.clone()).filter(|_| end > start);
            status.instances = status.instances.drain(start..end).collect();
        }
        Ok(status)
    }

    /// A page of every cluster, or of one tenant's; `after` is `TENANT/CLUSTER`.
    pub async fn clusters(&self, tenant: Option<String>, after: Option<String>, limit: usize) -> Result<Page<ClusterStatus>> {
        let after = match after {
            None => None,
            Some(a) => match a.split_once('/') {
                Some((t, c)) => Some((t.to_string(), c.to_string())),
                None => return Err(Error::invalid("after", format!("`{}` is not a cluster cursor (TENANT/CLUSTER)", a.escape_default()))),
            },
        };
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let hot = self.hot.clone();
        self.store
            .read(move |c| {
                let after = after.as_ref().map(|(t, n)| (t.as_str(), n.as_str()));
                let rows = c.clusters_page(tenant.as_deref(), after, limit + 1)?;
                // A page ends at `limit` clusters, or sooner once it holds PAGE_INSTANCES
                // instances, so no answer grows with the size of the clusters in it.
                let mut items = Vec::new();
                let mut instances = 0;
                for r in &rows {
                    if items.len() == limit || instances >= PAGE_INSTANCES {
                        break;
                    }
                    let s = cluster_status(c, &hot, &r.spec.tenant, &r.spec.name, now, lost_after)?;
                    instances += s.instances.len();
                    items.push(s);
                }
                let next = (items.len() < rows.len()).then(|| items.last().map(|s| format!("{}/{}", s.tenant, s.name))).flatten();
                Ok(Page { items, next })
            })
            .await
    }
}

/// Stores `spec` and makes the cluster's instances match it, placing new ones; refuses it
/// when it would take the tenant over `quota`. Returns how it ended and the generations
/// before (`None` for a new cluster) and after.
///
/// Graceful pools ([`lifecycle::graceful`]) change through the decommission/drain
/// lifecycle: shrinking stores the first phase of each leaving instance (they keep running
/// until the lifecycle removes them), growing recommissions leaving ones before creating
/// any. A resized DataNode keeps its host (its blocks are there), or the change is refused.
#[allow(clippy::too_many_arguments)]
fn apply_in(
    tx: &dyn Tx,
    hot: &Hot,
    limits: &crate::limits::Limits,
    quota: &Quota,
    spec: ClusterSpec,
    now: u64,
    lost_after: u64,
    force: bool,
) -> Result<(Outcome, Option<u64>, u64)> {
    let (tenant, name) = (spec.tenant.clone(), spec.name.clone());
    let current = tx.cluster(&tenant, &name)?;
    let before = current.as_ref().map(|r| r.generation);
    let applied = match &current {
        None => Applied::Created,
        Some(row) if row.spec == spec && !force => return Ok((Outcome::of(Applied::Unchanged), before, row.generation)),
        Some(_) => Applied::Updated,
    };
    if current.is_none() && tx.cluster_count(&tenant)? >= u64::from(limits.max_clusters_per_tenant) {
        return Err(Error::Limit {
            field: "name".into(),
            reason: "clusters_per_tenant",
            message: format!(
                "tenant `{tenant}` already has {} clusters, the most one tenant may have (herd-orchestrator --max-clusters-per-tenant); delete one first",
                limits.max_clusters_per_tenant
            ),
        });
    }
    let pending_before = tx.pending_count(Some((&tenant, &name)))?;
    let change = quota::Change {
        others: tx.usage(&tenant, Some(&name))?,
        before: current.as_ref().map(|r| r.spec.requests()).unwrap_or_default(),
        after: spec.requests(),
    };
    quota::check(quota, change).map_err(Error::Quota)?;
    placement::check_borrowing(tx, quota, &spec, current.as_ref().map(|r| &r.spec))?;
    let existing = tx.instances(Some((&tenant, &name)))?;
    // Admission, at once when the fleet cannot possibly take what would wait (an upper bound:
    // every ready host's whole CPU, filled with the smallest request), so that an absurd
    // request does not hold the writer while it is planned and placed; exactly below.
    let wanted: u64 = spec.pools.values().map(|p| u64::from(p.replicas.0)).sum();
    let new = wanted.saturating_sub(existing.len() as u64);
    let smallest = spec.pools.values().map(|p| p.cpu.0).min().unwrap_or(0).max(1);
    let placeable: u64 = hot.with_hosts(|hosts| {
        hosts.values().filter(|h| now.saturating_sub(h.last_seen_ms) <= lost_after).map(|h| h.info.cpu.0 / smallest).sum()
    });
    let at_least = (pending_before + new).saturating_sub(placeable);
    if at_least > u64::from(limits.max_pending_per_cluster) && new > 0 {
        return Err(too_many_pending(limits, &tenant, &name, at_least));
    }
    let leaving = tx.leaving(Some((&tenant, &name)))?;
    let graceful = lifecycle::graceful(&spec);

    // The NameNode's report chooses which DataNodes leave; read it before anything changes.
    let namenode = match &current {
        Some(row) if graceful.contains(&Role::Datanode) => {
            let ctx = HadoopContext::load(hot, &existing, now, lost_after);
            ctx.with_data(&row.spec, &existing, &leaving, |d| d.fresh_namenode())
        }
        _ => None,
    };
    let mut forced = Vec::new();
    // DataNodes that joined a NameNode herd does not run: herd cannot decommission them through
    // it, so removing them could lose the last replicas of blocks. Only `--force`, audited.
    let datanodes_now = existing.iter().filter(|i| i.role == Role::Datanode).count();
    let datanodes_next = spec.pools.get(&Role::Datanode).map_or(0, |p| p.replicas.0 as usize);
    if spec.external.namenode.is_some() && !graceful.contains(&Role::Datanode) && datanodes_next < datanodes_now {
        let why = format!(
            "the DataNodes of {tenant}/{name} joined an external NameNode ({}), which herd cannot decommission them through: \
             removing {} of them could lose the only replicas of blocks. Decommission them on your NameNode first \
             (exclude file, `hdfs dfsadmin -refreshNodes`, wait for Decommissioned), then scale with --force",
            spec.external.namenode.as_ref().map(|m| m.host.as_str()).unwrap_or_default(),
            datanodes_now - datanodes_next
        );
        if !force {
            return Err(Error::refused("pools.datanode.replicas", why));
        }
        forced.push(why);
    }
    let mut pools = Vec::new();
    for role in &graceful {
        let plan = lifecycle::plan_pool(&spec, *role, &existing, &leaving, namenode.as_ref(), force, now)?;
        if let Some(refusal) = &plan.selection.forced_below_minimum {
            forced.push(refusal.to_string());
        }
        pools.push(plan);
    }
    let generation = match (&current, before) {
        (Some(row), Some(g)) if row.spec == spec => g,
        _ => before.map(|g| g + 1).unwrap_or(1),
    };
    tx.put_cluster(generation, &spec)?;
    let plan = reconciler::plan(&tenant, &name, Some(&spec), &existing, &graceful, &leaving.keys().cloned().collect());
    for gone in &plan.remove {
        tx.delete_instance(gone)?;
    }
    resize(tx, &plan.resize)?;
    for new in &plan.add {
        tx.put_instance(new)?;
    }
    let (mut leave, mut back, mut add) = (0, 0, 0);
    for p in &pools {
        for (instance, phase) in &p.selection.phases {
            tx.put_phase(instance, phase)?;
            leave += 1;
        }
        for instance in &p.selection.recommission {
            tx.delete_phase(instance)?;
            back += 1;
        }
        for new in &p.add {
            tx.put_instance(new)?;
            add += 1;
        }
    }
    schedule_pending(tx, hot, now, lost_after)?;
    // Admission: instances no host can take now wait in the store, and every heartbeat and
    // scheduling pass carries them; a cluster may not leave more than its share waiting.
    let pending = tx.pending_count(Some((&tenant, &name)))?;
    if pending > u64::from(limits.max_pending_per_cluster) && pending > pending_before {
        return Err(too_many_pending(limits, &tenant, &name, pending));
    }
    tx.bump_revision()?;
    info!(tenant = %tenant, cluster = %name, generation, add = plan.add.len() + add, remove = plan.remove.len(),
        resize = plan.resize.len(), leave, recommission = back, "cluster applied");
    let forced = (!forced.is_empty()).then(|| {
        format!("forced below the replication minimum ({}); refused otherwise: {}", spec.hdfs.replication, forced.join("; "))
    });
    let forced = forced.or_else(|| {
        (force && leave > 0).then(|| {
            format!(
                "{leave} DataNodes may be removed before their decommission completes: blocks they alone hold are \
                 under-replicated until HDFS copies them, and lost if a remaining DataNode fails meanwhile"
            )
        })
    });
    Ok((Outcome { applied, forced }, before, generation))
}

fn too_many_pending(limits: &crate::limits::Limits, tenant: &str, name: &str, pending: u64) -> Error {
    Error::Limit {
        field: "pools".into(),
        reason: "pending_instances",
        message: format!(
            "{tenant}/{name} would have {pending} instances waiting for a host, more than the {} one cluster may have waiting \
             (herd-orchestrator --max-pending-per-cluster); ask for fewer replicas, or add hosts first",
            limits.max_pending_per_cluster
        ),
    }
}

/// How an apply ended, with what a forced scale-down risks (for the audit trail).
struct Outcome {
    applied: Applied,
    forced: Option<String>,
}

impl Outcome {
    fn of(applied: Applied) -> Self {
        Outcome { applied, forced: None }
    }
}

/// Stores new sizes. Roles that keep data (DataNodes, NameNodes) restart in place on the
/// host that holds their data; when that host cannot fit the new size the whole change is
/// refused. Other roles are placed again by the scheduler.
fn resize(tx: &dyn Tx, resized: &[Instance]) -> Result<()> {
    let mut kept_on: BTreeSet<String> = BTreeSet::new();
    for i in resized {
        match (&i.host, i.role.has_data()) {
            (Some(host), true) => {
                tx.put_instance(i)?;
                kept_on.insert(host.clone());
            }
            _ => tx.put_instance(&Instance { host: None, pending: Some("resized".into()), ..i.clone() })?,
        }
    }
    if kept_on.is_empty() {
        return Ok(());
    }
    let all = tx.instances(None)?;
    for h in tx.hosts()?.into_iter().filter(|h| kept_on.contains(&h.info.id)) {
        let mine: Vec<&Instance> = all.iter().filter(|i| i.host.as_deref() == Some(h.info.id.as_str())).collect();
        let (cpu, memory): (u64, u64) = (mine.iter().map(|i| i.cpu.0).sum(), mine.iter().map(|i| i.memory.0).sum());
        if cpu > h.info.cpu.0 || memory > h.info.memory.0 {
            let names: Vec<&str> = resized
                .iter()
                .filter(|i| i.host.as_deref() == Some(h.info.id.as_str()) && i.role.has_data())
                .map(|i| i.instance.name.as_str())
                .collect();
            let role = resized.iter().find(|i| i.role.has_data()).map_or(Role::Datanode, |i| i.role);
            return Err(Error::refused(
                format!("pools.{role}"),
                format!(
                    "{} must stay on host {} with its data, which cannot fit the new size ({} CPU and {} memory asked, \
                     {} and {} there): ask for less, or free room on that host",
                    names.join(", "),
                    h.info.id,
                    Cpu(cpu),
                    Memory(memory),
                    h.info.cpu,
                    h.info.memory
                ),
            ));
        }
    }
    Ok(())
}

/// Moves every cluster's leaving instances on (`herd_hadoop::lifecycle::step`) from the
/// masters' latest health and the hosts' latest reports: persists the new phases first,
/// then forgets instances whose container is confirmed gone (which drops them from the
/// exclude files). An instance reaching `removing` leaves its host's desired set, so its
/// agent stops and removes the container at its next heartbeat. Steps again at once while
/// something moves (bounded). `only`: step just these clusters (those of the reporting host).
pub(crate) fn drive_lifecycle(tx: &dyn Tx, hot: &Hot, now: u64, lost_after: u64, only: Option<&BTreeSet<(String, String)>>) -> Result<()> {
    let all = tx.leaving(None)?;
    if all.is_empty() {
        return Ok(());
    }
    let clusters: BTreeSet<(String, String)> = all
        .keys()
        .map(|i| (i.tenant.clone(), i.cluster.clone()))
        .filter(|k| only.is_none_or(|o| o.contains(k)))
        .collect();
    let mut moved = false;
    let mut left: BTreeSet<(String, String)> = BTreeSet::new();
    for (tenant, name) in clusters {
        let mut members = tx.instances(Some((&tenant, &name)))?;
        let ctx = HadoopContext::load(hot, &members, now, lost_after);
        let mut leaving: BTreeMap<InstanceRef, Phase> =
            all.iter().filter(|(i, _)| i.tenant == tenant && i.cluster == name).map(|(i, p)| (i.clone(), *p)).collect();
        let Some(row) = tx.cluster(&tenant, &name)? else {
            for i in leaving.keys() {
                tx.delete_phase(i)?;
            }
            continue;
        };
        // A phase without its instance (removed another way) means nothing any more.
        for orphan in leaving.keys().filter(|i| !members.iter().any(|m| &m.instance == *i)).cloned().collect::<Vec<_>>() {
            tx.delete_phase(&orphan)?;
            leaving.remove(&orphan);
        }
        for _ in 0..4 {
            let step = ctx.with_data(&row.spec, &members, &leaving, |d| d.lifecycle_step(&leaving, now));
            for (instance, phase) in &step.phases {
                let before = leaving.get(instance);
                if before != Some(phase) {
                    // HDFS declared it Decommissioned (not forced) and holds every block
                    // elsewhere: its data folders go with its container, so that nothing
                    // stale waits for a later DataNode of the same name.
                    let decommissioned = matches!(before, Some(Phase::Decommissioned { forced: false, .. }));
                    let host = members.iter().find(|m| &m.instance == instance).and_then(|m| m.host.as_deref());
                    if let (Phase::Removing, true, Some(host)) = (phase, decommissioned, host) {
                        tx.put_purge(host, instance)?;
                    }
                    info!(instance = %instance, phase = %phase, "lifecycle phase");
                    tx.put_phase(instance, phase)?;
                    moved = true;
                }
            }
            let mut leaving_next = step.phases.clone();
            let mut done = Vec::new();
            for instance in &step.done {
                // Its name stays taken until its data folders are gone.
                if tx.purge_pending(instance)? {
                    leaving_next.insert(instance.clone(), Phase::Removing);
                    continue;
                }
                info!(instance = %instance, "left the cluster");
                tx.delete_instance(instance)?;
                done.push(instance.clone());
                left.insert((tenant.clone(), name.clone()));
                moved = true;
            }
            for c in step.conditions.iter().filter(|c| {
                matches!(c.kind, LifecycleConditionKind::DecommissionForced | LifecycleConditionKind::DrainTimedOut)
            }) {
                let resource = format!("{tenant}/{name}/{}", c.instance.name);
                let action = match c.kind {
                    LifecycleConditionKind::DecommissionForced => "instance.decommission.forced",
                    _ => "instance.drain.timeout",
                };
                let change = Change { actor: "herd", action, resource: &resource, before: None, after: None };
                audit::record_detail(tx, now, &change, Some(&c.message))?;
                warn!(instance = %c.instance, kind = %c.kind, message = %c.message, "lifecycle");
            }
            members.retain(|m| !done.contains(&m.instance));
            // NB: a done instance held back for its purge is no progress: stepping again at
            // once would only find it done again.
            let progressed = !done.is_empty() || step.phases.iter().any(|(i, p)| leaving.get(i) != Some(p));
            let changed = step.changed && progressed;
            leaving = leaving_next;
            if !changed {
                break;
            }
        }
    }
    // Room came free; an instance taken back for a guarantee comes back pending.
    for (tenant, name) in &left {
        placement::refill(tx, tenant, name)?;
    }
    if !left.is_empty() {
        schedule_pending(tx, hot, now, lost_after)?;
    }
    if moved {
        tx.bump_revision()?;
    }
    Ok(())
}

/// The hosts of one cluster's members and what they observed, copied from the hot state.
pub(crate) struct HadoopContext {
    hosts: Vec<(String, HostInfo, u64)>,
    poll_interval_ms: u64,
    observed: HashMap<(InstanceRef, String), Observed>,
}

impl HadoopContext {
    pub(crate) fn load(hot: &Hot, members: &[Instance], now: u64, lost_after: u64) -> Self {
        let view = hot.view(members.iter().filter_map(|i| i.host.as_deref()), now);
        let hosts = view.hosts.into_iter().map(|(id, (info, age))| (id, info, age)).collect();
        HadoopContext { hosts, observed: view.observed, poll_interval_ms: lost_after / 3 }
    }

    /// Runs `f` over one cluster's [`hadoop::ClusterData`], rendered with `leaving` excluded.
    pub(crate) fn with_data<R>(
        &self,
        spec: &ClusterSpec,
        members: &[Instance],
        leaving: &BTreeMap<InstanceRef, Phase>,
        f: impl FnOnce(&hadoop::ClusterData<'_>) -> R,
    ) -> R {
        let hosts: HashMap<String, hadoop::HostRef<'_>> =
            self.hosts.iter().map(|(id, info, age_ms)| (id.clone(), hadoop::HostRef { info, age_ms: *age_ms })).collect();
        let observed = members
            .iter()
            .filter_map(|i| {
                let host = i.host.as_ref()?;
                let o = self.observed.get(&(i.instance.clone(), host.clone()))?;
                Some((&i.instance, o))
            })
            .collect();
        let data = hadoop::ClusterData {
            spec,
            instances: members.iter().collect(),
            hosts: &hosts,
            observed,
            leaving: leaving.keys().cloned().collect(),
            poll_interval_ms: self.poll_interval_ms,
        };
        f(&data)
    }

    /// Milliseconds since `host`'s last heartbeat, when that makes it `lost`.
    pub(crate) fn lost_ms(&self, host: &str) -> Option<u64> {
        let lost_after = self.poll_interval_ms * 3;
        self.hosts.iter().find(|(id, _, _)| id == host).map(|(_, _, age)| *age).filter(|age| *age > lost_after)
    }

    pub(crate) fn evaluate(&self, spec: &ClusterSpec, members: &[Instance], leaving: &BTreeMap<InstanceRef, Phase>) -> hadoop::Outcome {
        self.with_data(spec, members, leaving, hadoop::evaluate)
    }
}

pub(crate) fn cluster_status(c: &dyn Tx, hot: &Hot, tenant: &str, name: &str, now: u64, lost_after: u64) -> Result<ClusterStatus> {
    let row = c.cluster(tenant, name)?.ok_or_else(|| Error::not_found("cluster", format!("{tenant}/{name}")))?;
    let members = c.instances(Some((tenant, name)))?;
    let leaving = c.leaving(Some((tenant, name)))?;
    let ctx = HadoopContext::load(hot, &members, now, lost_after);
    let mut outcome = ctx.evaluate(&row.spec, &members, &leaving);
    // What the lifecycle would do now, for status only (the heartbeat persists it).
    let mut step = if leaving.is_empty() {
        herd_hadoop::lifecycle::Step::default()
    } else {
        ctx.with_data(&row.spec, &members, &leaving, |d| d.lifecycle_step(&leaving, now))
    };
    outcome.conditions.extend(step.conditions.drain(..).map(Into::into));
    outcome.conditions.extend(crate::fleet::lost_conditions(&members, &leaving, |h| ctx.lost_ms(h)));
    let lost: HashMap<String, u64> =
        members.iter().filter_map(|i| i.host.as_ref()).filter_map(|h| Some((h.clone(), ctx.lost_ms(h)?))).collect();
    let mut observed = ctx.observed;
    let racks: HashMap<&str, &str> = ctx.hosts.iter().filter_map(|(id, info, _)| Some((id.as_str(), info.rack.as_deref()?))).collect();
    let instances = members
        .into_iter()
        .map(|i| InstanceStatus {
            host_lost_ms_ago: i.host.as_ref().and_then(|h| lost.get(h).copied()),
            // Nobody knows what runs on a lost host: never shown `running`.
            observed: i.host.as_ref().and_then(|h| observed.remove(&(i.instance.clone(), h.clone()))).map(|mut o| {
                if i.host.as_ref().is_some_and(|h| lost.contains_key(h)) {
                    o.state = herd_api::wire::ContainerState::Unknown;
                }
                o
            }),
            hadoop: outcome.instances.remove(&i.instance),
            leaving: step.status.remove(&i.instance),
            instance: i.instance,
            pool: i.role,
            rack: i.host.as_deref().and_then(|h| racks.get(h)).map(|r| r.to_string()),
            host: i.host,
            cpu: i.cpu,
            memory: i.memory,
            pending: i.pending,
        })
        .collect();
    let instances: Vec<InstanceStatus> = instances;
    Ok(ClusterStatus {
        tenant: tenant.into(),
        name: name.into(),
        generation: row.generation,
        pools: herd_api::wire::PoolSummary::of(&row.spec, &instances),
        spec: row.spec,
        instances,
        hdfs: outcome.hdfs,
        yarn: outcome.yarn,
        conditions: outcome.conditions,
        instances_next: None,
    })
}

/// The host's subnet: its stored lease if that still fits the cluster CIDR, else a new one.
/// Leases come from the hot state's set of leases (no scan of the store per registration);
/// a new one is stored in the registration's transaction.
fn lease_subnet(tx: &dyn Tx, hot: &Hot, settings: &network::Settings, host: &str) -> Result<HostNetwork> {
    let (subnet, stale) = hot
        .lease(host, |s| settings.fits(s), |taken| settings.lease(taken))
        .map_err(|m| Error::Conflict(format!("host {host}: {m}")))?;
    if stale.is_some() || tx.subnets_of(host)? != Some(subnet) {
        if let Some(old) = stale {
            warn!(host, old = %old, new = %subnet, "host subnet outside the cluster CIDR now; leased a new one");
        }
        tx.put_subnet(host, subnet)?;
    }
    Ok(HostNetwork { cluster_cidr: settings.cluster_cidr, subnet })
}

/// Routes and address owners for `host`, if it has a subnet lease: only what its own
/// containers can reach, i.e. the tenants with instances on it: routes to the hosts holding
/// their instances and the addresses of those instances. (Every other address is dropped by
/// tenant isolation anyway.) O(those tenants' instances), never O(fleet).
fn network_plan(tx: &dyn Tx, hot: &Hot, settings: &network::Settings, host: &str) -> Result<Option<NetworkPlan>> {
    if hot.host(host).is_none_or(|h| h.subnet.is_none()) {
        return Ok(None);
    }
    let tenants: BTreeSet<String> = tx.instances_on_host(host)?.into_iter().map(|i| i.instance.tenant).collect();
    let mut placed: BTreeMap<InstanceRef, String> = BTreeMap::new();
    for t in &tenants {
        placed.extend(tx.instances_of_tenant(t)?.into_iter().filter_map(|i| Some((i.instance, i.host?))));
    }
    let mut relevant: BTreeSet<&str> = placed.values().map(String::as_str).collect();
    relevant.insert(host);
    let (leases, observed): (Vec<network::HostLease>, Vec<_>) = hot.with_hosts(|hosts| {
        let mine = relevant.iter().filter_map(|id| hosts.get(*id));
        let leases = mine
            .clone()
            .filter_map(|h| Some(network::HostLease { host: h.info.id.clone(), subnet: h.subnet?, address: h.info.address }))
            .collect();
        let observed = mine
            .flat_map(|h| {
                h.observed
                    .iter()
                    .filter(|o| tenants.contains(&o.instance.tenant))
                    .filter_map(|o| Some((o.instance.clone(), h.info.id.clone(), o.ip?)))
            })
            .collect();
        (leases, observed)
    });
    Ok(network::plan(settings, host, &leases, &placed, &observed))
}

#[cfg(test)]
mod tests {
    //! The decommission flow through the real operations and store, with the NameNode's
    //! reports scripted: scale-down stores phases and keeps the containers, nothing is
    //! removed before the NameNode says `Decommissioned`, removal then waits for the
    //! container to be gone, and scaling back up recommissions.

    use super::*;
    use herd_api::hadoop::{DataNodeReport, MasterHealth, NameNodeHealth};
    use herd_api::spec::Replicas;
    use herd_api::wire::{ContainerState, Observed};
    use herd_api::yaml::parse_cluster_spec;

    const SPEC: &str = "tenant: t\nname: c\nimages: {namenode: n, datanode: d}\npools:\n  namenode: {replicas: 1, cpu: 100m, memory: 512Mi}\n  datanode: {replicas: 6, cpu: 100m, memory: 256Mi, maxPerHost: 6}\n";

    async fn setup() -> Result<State> {
        let state = State::new(Store::in_memory()?, Duration::from_secs(1), network::Settings::default_plan())?;
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"}))
            .map_err(|e| Error::invalid("host", e.to_string()))?;
        state.register("agent".into(), info).await?;
        state.store.write(|tx| tx.insert_tenant("t", &Quota::default(), 0).map(|_| ())).await?;
        let spec = parse_cluster_spec(SPEC).map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await?;
        Ok(state)
    }

    fn dn(n: u32) -> InstanceRef {
        InstanceRef::new("t", "c", Role::Datanode, n)
    }

    async fn register(state: &State, id: &str) -> Result<()> {
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": id, "cpu": "16", "memory": "64Gi"}))
            .map_err(|e| Error::invalid("host", e.to_string()))?;
        state.register("agent".into(), info).await.map(|_| ())
    }

    #[tokio::test]
    async fn a_watch_wakes_for_a_placement_on_its_host_and_not_for_others() -> Result<()> {
        let state = setup().await?;
        register(&state, "h2").await?;
        register(&state, "h3").await?;
        let first = state.watch("h2", None, Duration::from_secs(30)).await?;
        assert_eq!((first.base, first.desired.len()), (None, 0), "no generation held: the full (empty) set at once");
        let g3 = state.watch("h3", None, Duration::from_secs(30)).await?.generation;
        let (s2, s3) = (state.clone(), state.clone());
        let h2 = tokio::spawn(async move { s2.watch("h2", Some(first.generation), Duration::from_secs(30)).await });
        let h3 = tokio::spawn(async move { s3.watch("h3", Some(g3), Duration::from_millis(500)).await });
        tokio::task::yield_now().await;
        // h1 holds its six DataNodes (maxPerHost 6): the seventh goes to h2 or h3.
        state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(7), force: false }, None).await?;
        let placed = state.store.read(|c| c.instances(Some(("t", "c")))).await?;
        let on = placed.iter().find(|i| i.instance == dn(6)).and_then(|i| i.host.clone());
        // Whichever host got it answers long before its 30 s wait; the other one after its own.
        let (woken, other) = match on.as_deref() {
            Some("h2") => (h2, h3),
            other => panic!("the seventh DataNode should be on h2 (the scheduler spreads by name order), is on {other:?}"),
        };
        let reply = tokio::time::timeout(Duration::from_secs(10), woken).await.expect("the watch woke").expect("joined")?;
        assert_eq!(reply.base, Some(first.generation), "a delta against what h2 held");
        assert_eq!(reply.desired.iter().map(|d| d.instance.clone()).collect::<Vec<_>>(), vec![dn(6)]);
        assert!(reply.generation > first.generation);
        let idle = other.await.expect("joined")?;
        assert_eq!((idle.base, idle.generation, idle.desired.len()), (Some(g3), g3, 0), "h3 was not concerned: an empty delta after its wait");
        // A host holds at most two watches open; a third is refused until one is answered.
        let held: Vec<_> = (0..2)
            .map(|_| {
                let s = state.clone();
                tokio::spawn(async move { s.watch("h3", Some(g3), Duration::from_secs(30)).await })
            })
            .collect();
        let open = || state.watching.lock().map(|m| m.get("h3").copied().unwrap_or(0)).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while open() < 2 {
            assert!(std::time::Instant::now() < deadline, "the two watches never opened");
            tokio::task::yield_now().await;
        }
        let third = state.watch("h3", Some(g3), Duration::from_millis(10)).await;
        assert!(matches!(&third, Err(Error::Conflict(m)) if m.contains("2 watches")), "{third:?}");
        // A watch whose client went away (its request dropped) frees its place.
        for h in held {
            h.abort();
            let _ = h.await;
        }
        assert_eq!(open(), 0);
        state.watch("h3", Some(g3), Duration::from_millis(10)).await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_cluster_reads_in_pages_of_instances_with_pools_counting_all() -> Result<()> {
        let state = setup().await?;
        let all = state.cluster("t".into(), "c".into()).await?;
        let names: Vec<String> = all.instances.iter().map(|i| i.instance.name.clone()).collect();
        assert_eq!(names.len(), 7);
        let (mut pages, mut after, mut seen) = (0, None, Vec::new());
        loop {
            let page = state.cluster_page("t".into(), "c".into(), after.clone(), 3).await?;
            assert!(page.instances.len() <= 3);
            assert_eq!(page.pools, all.pools, "every page counts every instance");
            seen.extend(page.instances.iter().map(|i| i.instance.name.clone()));
            pages += 1;
            match page.instances_next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!((pages, seen), (3, names));
        let dn = all.pools.iter().find(|p| p.pool == Role::Datanode).map(|p| (p.desired, p.instances, p.pending));
        assert_eq!(dn, Some((6, 6, 0)));
        let bad = state.cluster_page("t".into(), "c".into(), Some("datanode-99".into()), 3).await;
        assert!(matches!(&bad, Err(Error::Invalid { field, .. }) if field == "after"), "{bad:?}");
        Ok(())
    }

    #[tokio::test]
    async fn the_heartbeat_interval_stretches_with_the_fleet() -> Result<()> {
        let state = setup().await?.with_heartbeat_rate(2);
        // One host, 2 per second at most: the configured 1 s holds.
        assert_eq!(state.interval_ms(), 1000);
        for h in ["h2", "h3", "h4", "h5"] {
            register(&state, h).await?;
        }
        // Five hosts at 2 per second: one heartbeat each every 2.5 s.
        assert_eq!(state.interval_ms(), 2500);
        Ok(())
    }

    /// A heartbeat from h1 with a container for every instance in `running`, the NameNode
    /// reporting `states` (DataNode ordinal → admin state) and the live hash it was given.
    async fn beat(state: &State, running: &[InstanceRef], states: &[(u32, &str)], live_hash: Option<String>) -> Result<HeartbeatReply> {
        beat_purged(state, running, states, live_hash, vec![]).await
    }

    /// [`beat`], with the agent reporting the data folders of `purged` removed.
    async fn beat_purged(
        state: &State,
        running: &[InstanceRef],
        states: &[(u32, &str)],
        live_hash: Option<String>,
        purged: Vec<InstanceRef>,
    ) -> Result<HeartbeatReply> {
        let nn = InstanceRef::new("t", "c", Role::Namenode, 0);
        let health = NameNodeHealth {
            datanodes: states
                .iter()
                .map(|(n, s)| DataNodeReport {
                    name: format!("{}:9866", dn(*n).hostname()),
                    hostname: dn(*n).hostname(),
                    admin_state: Some((*s).into()),
                    live: true,
                    num_blocks: Some(100 + u64::from(*n)),
                    ..Default::default()
                })
                .collect(),
            live_datanodes: states.len() as u64,
            ..Default::default()
        };
        let observed = running
            .iter()
            .chain(std::iter::once(&nn))
            .map(|i| Observed {
                instance: i.clone(),
                container_id: format!("id-{}", i.name),
                state: ContainerState::Running,
                started_at: None,
                exit_code: None,
                error: None,
                ip: None,
                config_hash: None,
                live_hash: if *i == nn { live_hash.clone() } else { None },
                hadoop: if *i == nn { Some(MasterHealth::Namenode(health.clone())) } else { None },
            })
            .collect();
        state.heartbeat(Heartbeat { host_id: "h1".into(), observed, conditions: vec![], purged, applied: None }).await
    }

    fn nn_live_hash(reply: &HeartbeatReply) -> Option<String> {
        reply.desired.iter().find(|d| d.role == Role::Namenode).and_then(|d| d.hadoop.as_ref()).map(|h| h.live_hash())
    }

    fn desired_names(reply: &HeartbeatReply) -> Vec<String> {
        reply.desired.iter().filter(|d| d.role == Role::Datanode).map(|d| d.instance.name.clone()).collect()
    }

    #[tokio::test]
    async fn scale_down_decommissions_before_removing_and_scale_up_recommissions() -> Result<()> {
        let state = setup().await?;
        let all: Vec<InstanceRef> = (0..6).map(dn).collect();
        let in_service: Vec<(u32, &str)> = (0..6).map(|n| (n, "In Service")).collect();
        let reply = beat(&state, &all, &in_service, None).await?;
        assert_eq!(desired_names(&reply).len(), 6);

        // 6 -> 2 is below replication 3: refused, nothing changed.
        let refused = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(2), force: false }, None).await;
        let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("hdfs.replication") && text.contains("pools.datanode.replicas"), "{text}");
        assert!(state.store.read(|c| c.leaving(None)).await?.is_empty());

        // 6 -> 3: the three holding the fewest blocks (0, 1, 2) start decommissioning and keep running.
        let status = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(3), force: false }, None).await?;
        let leaving: Vec<&str> =
            status.instances.iter().filter(|i| i.leaving.is_some()).map(|i| i.instance.name.as_str()).collect();
        assert_eq!(leaving, ["datanode-0", "datanode-1", "datanode-2"]);
        let reply = beat(&state, &all, &in_service, None).await?;
        assert_eq!(desired_names(&reply).len(), 6, "nothing stops before its decommission");
        let nn_config = reply.desired.iter().find(|d| d.role == Role::Namenode).and_then(|d| d.hadoop.clone());
        let exclude = nn_config.map(|c| c.live_files["dfs.exclude"].clone()).unwrap_or_default();
        assert_eq!(exclude, "datanode-0.c.t\ndatanode-1.c.t\ndatanode-2.c.t\n");
        let hash = nn_live_hash(&reply);

        // The NameNode applied it; two are decommissioned, one still in progress: nothing goes.
        let mixed = [(0, "Decommissioned"), (1, "Decommissioned"), (2, "Decommission In Progress"), (3, "In Service"), (4, "In Service"), (5, "In Service")];
        beat(&state, &all, &mixed, hash.clone()).await?;
        let reply = beat(&state, &all, &mixed, hash.clone()).await?;
        assert_eq!(desired_names(&reply).len(), 6, "one still in progress holds every removal");
        let phases = state.store.read(|c| c.leaving(None)).await?;
        assert!(matches!(phases[&dn(0)], Phase::Decommissioned { .. }), "{phases:?}");

        // All three decommissioned, no missing blocks: removal ordered, still excluded.
        let done = [(0, "Decommissioned"), (1, "Decommissioned"), (2, "Decommissioned"), (3, "In Service"), (4, "In Service"), (5, "In Service")];
        beat(&state, &all, &done, hash.clone()).await?;
        let reply = beat(&state, &all, &done, hash.clone()).await?;
        assert_eq!(desired_names(&reply), ["datanode-3", "datanode-4", "datanode-5"]);
        let phases = state.store.read(|c| c.leaving(None)).await?;
        assert!(phases.values().all(|p| *p == Phase::Removing), "{phases:?}");

        // The containers are gone: their agent is told to purge their data folders (HDFS
        // holds every block elsewhere); until it has, they stay (removing, excluded).
        let staying: Vec<InstanceRef> = (3..6).map(dn).collect();
        let gone: Vec<InstanceRef> = (0..3).map(dn).collect();
        beat(&state, &staying, &done, hash.clone()).await?;
        let reply = beat(&state, &staying, &done, hash.clone()).await?;
        assert_eq!(reply.purge, gone, "decommissioned DataNodes' folders purged");
        assert_eq!(state.store.read(|c| c.leaving(None)).await?.len(), 3, "forgotten before their purge");
        let nn_config = reply.desired.iter().find(|d| d.role == Role::Namenode).and_then(|d| d.hadoop.clone());
        assert_eq!(nn_config.map(|c| c.live_files["dfs.exclude"].clone()).unwrap_or_default(), "datanode-0.c.t\ndatanode-1.c.t\ndatanode-2.c.t\n");

        // Purged: forgotten, out of the exclude file.
        beat_purged(&state, &staying, &done, hash.clone(), gone).await?;
        let reply = beat(&state, &staying, &done, hash).await?;
        assert!(reply.purge.is_empty());
        assert!(state.store.read(|c| c.leaving(None)).await?.is_empty());
        let nn_config = reply.desired.iter().find(|d| d.role == Role::Namenode).and_then(|d| d.hadoop.clone());
        assert_eq!(nn_config.map(|c| c.live_files["dfs.exclude"].clone()).unwrap_or_default(), "");
        let status = state.cluster("t".into(), "c".into()).await?;
        assert_eq!(status.instances.iter().filter(|i| i.pool == Role::Datanode).count(), 3);
        Ok(())
    }

    #[tokio::test]
    async fn scaling_back_up_recommissions_and_force_is_audited() -> Result<()> {
        let state = setup().await?;
        let all: Vec<InstanceRef> = (0..6).map(dn).collect();
        let in_service: Vec<(u32, &str)> = (0..6).map(|n| (n, "In Service")).collect();
        beat(&state, &all, &in_service, None).await?;
        state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(3), force: false }, None).await?;
        let status = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(6), force: false }, None).await?;
        assert!(status.instances.iter().all(|i| i.leaving.is_none()));
        let dns: Vec<String> =
            status.instances.iter().filter(|i| i.pool == Role::Datanode).map(|i| i.instance.name.clone()).collect();
        assert_eq!(dns, ["datanode-0", "datanode-1", "datanode-2", "datanode-3", "datanode-4", "datanode-5"]);
        assert!(state.store.read(|c| c.leaving(None)).await?.is_empty());

        // --force below replication: done, and audited with what it risks.
        state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(2), force: true }, None).await?;
        assert_eq!(state.store.read(|c| c.leaving(None)).await?.len(), 4);
        let audit = state.store.read(|c| c.audit(None, 100)).await?;
        let forced = audit.iter().find(|e| e.action == "cluster.scale.force");
        let detail = forced.and_then(|e| e.detail.clone()).unwrap_or_default();
        assert!(detail.contains("replication"), "{detail}");
        Ok(())
    }

    #[tokio::test]
    async fn without_a_namenode_datanodes_go_at_once() -> Result<()> {
        let state = setup().await?;
        let spec = parse_cluster_spec(&SPEC.replace("namenode: {replicas: 1", "namenode: {replicas: 0"))
            .map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await?;
        let status = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(1), force: false }, None).await?;
        assert_eq!(status.instances.iter().filter(|i| i.pool == Role::Datanode).count(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn datanodes_of_an_external_namenode_need_force_to_shrink() -> Result<()> {
        let state = setup().await?;
        let external = SPEC.replace("namenode: {replicas: 1", "namenode: {replicas: 0").replace(
            "pools:\n",
            "external: {namenode: {host: nn.corp.example}}\npools:\n",
        );
        let spec = parse_cluster_spec(&external.replace("  namenode: {replicas: 0, cpu: 100m, memory: 512Mi}\n", ""))
            .map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await?;
        let refused = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(5), force: false }, None).await;
        let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("external NameNode") && text.contains("--force"), "{text}");
        let status = state.cluster("t".into(), "c".into()).await?;
        assert_eq!(status.instances.iter().filter(|i| i.pool == Role::Datanode).count(), 6, "the refused scale changed something");
        let status = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(5), force: true }, None).await?;
        assert_eq!(status.instances.iter().filter(|i| i.pool == Role::Datanode).count(), 5);
        let audit = state.store.read(|c| c.audit(None, 100)).await?;
        assert!(audit.iter().any(|e| e.action == "cluster.scale.force"), "forced scale not audited");
        Ok(())
    }
}
