//! The orchestrator's shared state ([`State`]: the store, the hot state, caches and
//! settings) and what its operations share: generations and `If-Match` ([`Expect`]),
//! pages, and stepping leaving instances through the decommission/drain lifecycle inside a
//! transaction ([`drive_lifecycle`], with the Hadoop view of a cluster, [`HadoopContext`]).
//! The operations themselves are split by noun: clusters ([`crate::clusters`]: apply, scale,
//! delete, status), hosts ([`crate::hosts`]: register, heartbeat, watch), placement
//! ([`crate::placement`]), desired state ([`crate::desired`], [`crate::delta`]), the fleet
//! ([`crate::fleet`]), tenants and tokens ([`crate::tenancy`]).
use std::collections::{BTreeMap, BTreeSet};
use crate::Map as HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_api::lifecycle::{LifecycleConditionKind, Phase};
use herd_api::names::InstanceRef;
use herd_api::wire::{Observed, Page};
use herd_api::ClusterSpec;
use crate::store::Tx;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::desired::DesiredCache;
use crate::hadoop;
use crate::hot::Hot;
use crate::network;
use crate::reconciler::Instance;
use crate::placement::{self, schedule_pending};
use crate::store::audit::{self, Change};
use crate::store::Store;

/// The orchestrator's shared state: the store (intent), the hot state (what agents
/// report) and the settings its operations need. Cloned per request by every layer that
/// extracts it, so a clone is one reference count (the fields live in [`StateData`]).
#[derive(Clone)]
pub struct State(Arc<StateData>);

impl std::ops::Deref for State {
    type Target = StateData;

    fn deref(&self) -> &StateData {
        &self.0
    }
}

/// What a [`State`] holds.
#[derive(Clone)]
pub struct StateData {
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
    /// Each tenant's network view, shared by its hosts' plans (see [`crate::netview`]).
    pub netviews: Arc<crate::netview::NetViews>,
    /// Cancelled when the orchestrator shuts down: open watches are answered at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Watches open per host (see [`State::watch`]).
    pub(crate) watching: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Clusters' status, as last assembled (see [`State::cluster_page`]).
    pub(crate) statuses: Arc<std::sync::Mutex<HashMap<(String, String), crate::clusters::CachedStatus>>>,
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
    pub(crate) leaving_epoch: Arc<AtomicU64>,
    pub(crate) leaving_none_at: Arc<AtomicU64>,
    /// Whether the last sweep held moves off lost hosts ([`crate::fleet::holds_moves`]).
    pub(crate) lost_held: Arc<std::sync::atomic::AtomicBool>,
    /// A scheduling pass is queued for hosts back from `lost` ([`State::schedule_soon`]).
    pub(crate) schedule_queued: Arc<std::sync::atomic::AtomicBool>,
}

/// Heartbeats per second the fleet is asked for at most, all hosts together, by default.
pub const DEFAULT_HEARTBEAT_RATE: u64 = 10_000;

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
pub(crate) fn check_expect(resource: &str, current: Option<u64>, expect: Option<Expect>) -> Result<()> {
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
        Ok(State(Arc::new(StateData {
            store,
            hot: Arc::new(hot),
            desired: Arc::default(),
            auth: Arc::default(),
            heartbeat_interval,
            heartbeat_rate: DEFAULT_HEARTBEAT_RATE,
            sents: Arc::default(),
            netviews: Arc::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            watching: Arc::default(),
            statuses: Arc::default(),
            network,
            fleet: crate::fleet::FleetSettings::default(),
            limits: Arc::default(),
            rate: Arc::new(crate::limits::RateLimiter::new(&crate::limits::Limits::default())),
            leaving_epoch: Arc::new(AtomicU64::new(1)),
            leaving_none_at: Arc::new(AtomicU64::new(0)),
            lost_held: Arc::default(),
            schedule_queued: Arc::default(),
        })))
    }

    /// The fields, for the builders below: copied first if this state is shared already.
    fn data_mut(&mut self) -> &mut StateData {
        Arc::make_mut(&mut self.0)
    }

    /// The same state, moving lost hosts' instances per `fleet`.
    pub fn with_fleet(mut self, fleet: crate::fleet::FleetSettings) -> Self {
        self.data_mut().fleet = fleet;
        self
    }

    /// The state with these limits instead of the defaults.
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        let data = self.data_mut();
        data.rate = Arc::new(crate::limits::RateLimiter::new(&limits));
        data.limits = Arc::new(limits);
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

    /// The same state, answering open watches as soon as `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: tokio_util::sync::CancellationToken) -> Self {
        self.data_mut().shutdown = shutdown;
        self
    }

    /// The same state, asking the fleet for at most `rate` heartbeats per second.
    pub fn with_heartbeat_rate(mut self, rate: u64) -> Self {
        self.data_mut().heartbeat_rate = rate.max(1);
        self
    }

    /// Something may have stored a leaving phase: heartbeats step the lifecycle again.
    pub(crate) fn leaving_may_exist(&self) {
        self.leaving_epoch.fetch_add(1, Ordering::SeqCst);
    }

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
    /// Its hosts by id (NB: a map: `lost_ms` is asked per member, and a scan of a list made a
    /// 10,000-member status quadratic, a third of the orchestrator's CPU while 300,000
    /// instances were applied), and its members' reports.
    pub(crate) view: crate::hot::HostsView,
    poll_interval_ms: u64,
}

impl HadoopContext {
    pub(crate) fn load(hot: &Hot, members: &[Instance], now: u64, lost_after: u64) -> Self {
        let view = hot.view(members.iter().filter_map(|i| Some((&i.instance, i.host.as_deref()?))), now);
        HadoopContext { view, poll_interval_ms: lost_after / 3 }
    }

    /// What `host` reported of `instance`, when `host` is where it was placed when loaded.
    pub(crate) fn report(&self, instance: &InstanceRef, host: &str) -> Option<&Observed> {
        self.view.report(instance, host)
    }

    /// Runs `f` over one cluster's [`hadoop::ClusterData`], rendered with `leaving` excluded.
    pub(crate) fn with_data<R>(
        &self,
        spec: &ClusterSpec,
        members: &[Instance],
        leaving: &BTreeMap<InstanceRef, Phase>,
        f: impl FnOnce(&hadoop::ClusterData<'_>) -> R,
    ) -> R {
        let hosts: HashMap<&str, hadoop::HostRef<'_>> =
            self.view.hosts.iter().map(|(id, (info, age_ms))| (id.as_str(), hadoop::HostRef { info: info.as_ref(), age_ms: *age_ms })).collect();
        let observed = members
            .iter()
            .filter_map(|i| {
                let host = i.host.as_ref()?;
                let o = self.report(&i.instance, host)?;
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
        self.view.hosts.get(host).map(|(_, age)| *age).filter(|age| *age > lost_after)
    }

    pub(crate) fn evaluate(&self, spec: &ClusterSpec, members: &[Instance], leaving: &BTreeMap<InstanceRef, Phase>) -> hadoop::Outcome {
        self.with_data(spec, members, leaving, hadoop::evaluate)
    }
}

#[cfg(test)]
mod tests {
    //! The decommission flow through the real operations and store, with the NameNode's
    //! reports scripted: scale-down stores phases and keeps the containers, nothing is
    //! removed before the NameNode says `Decommissioned`, removal then waits for the
    //! container to be gone, and scaling back up recommissions.

    use super::*;
    use herd_api::Role;
    use herd_api::wire::{Heartbeat, HeartbeatReply, HostInfo, Quota, ScaleRequest};
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
        let first = state.watch("h2", None, Duration::from_secs(30), true).await.map(crate::delta::Answer::into_reply)?;
        assert_eq!((first.base, first.desired.len()), (None, 0), "no generation held: the full (empty) set at once");
        let g3 = state.watch("h3", None, Duration::from_secs(30), true).await.map(crate::delta::Answer::into_reply)?.generation;
        let (s2, s3) = (state.clone(), state.clone());
        let h2 = tokio::spawn(async move { s2.watch("h2", Some(first.generation), Duration::from_secs(30), true).await.map(crate::delta::Answer::into_reply) });
        let h3 = tokio::spawn(async move { s3.watch("h3", Some(g3), Duration::from_millis(500), true).await.map(crate::delta::Answer::into_reply) });
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
                tokio::spawn(async move { s.watch("h3", Some(g3), Duration::from_secs(30), true).await.map(crate::delta::Answer::into_reply) })
            })
            .collect();
        let open = || state.watching.lock().map(|m| m.get("h3").copied().unwrap_or(0)).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while open() < 2 {
            assert!(std::time::Instant::now() < deadline, "the two watches never opened");
            tokio::task::yield_now().await;
        }
        let third = state.watch("h3", Some(g3), Duration::from_millis(10), true).await.map(crate::delta::Answer::into_reply);
        assert!(matches!(&third, Err(Error::Conflict(m)) if m.contains("2 watches")), "{third:?}");
        // A watch whose client went away (its request dropped) frees its place.
        for h in held {
            h.abort();
            let _ = h.await;
        }
        assert_eq!(open(), 0);
        state.watch("h3", Some(g3), Duration::from_millis(10), true).await.map(crate::delta::Answer::into_reply)?;
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
        assert!(matches!(&bad, Err(Error::Refused(fields)) if fields[0].field == "after"), "{bad:?}");
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
        state.heartbeat(Heartbeat { host_id: "h1".into(), observed, conditions: vec![], purged, applied: None, network_deltas: true }).await
    }

    /// How many busy hosts' heartbeats were answered from memory (the process's counter:
    /// nextest runs each test in its own process).
    fn unchanged_count() -> u64 {
        let text = crate::metrics::get().render(None);
        text.lines().find_map(|l| l.strip_prefix("herd_heartbeats_unchanged_total ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_busy_host_at_rest_is_answered_from_memory_until_something_it_runs_changes() -> Result<()> {
        let state = setup().await?;
        let hb = |applied| Heartbeat { host_id: "h1".into(), observed: vec![], conditions: vec![], purged: vec![], applied, network_deltas: true };
        let first = state.heartbeat(hb(None)).await?;
        assert_eq!((first.base, first.desired.len()), (None, 7), "the NameNode and six DataNodes, in full");
        let before = unchanged_count();
        let again = state.heartbeat(hb(Some(first.generation))).await?;
        assert_eq!((again.generation, again.base, again.desired.len()), (first.generation, Some(first.generation), 0));
        assert_eq!(unchanged_count(), before + 1, "answered without reading the store");
        // An agent that lost its set (restarted) gets it in full, not an empty delta.
        let lost = state.heartbeat(hb(None)).await?;
        assert_eq!((lost.base, lost.desired.len()), (None, 7));
        // A new image for the DataNodes: the cluster is derived again, and the host is told.
        let spec = parse_cluster_spec(&SPEC.replace("datanode: d}", "datanode: d2}")).map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await?;
        let counted = unchanged_count();
        let changed = state.heartbeat(hb(Some(lost.generation))).await?;
        assert_eq!(changed.base, Some(lost.generation));
        assert!(changed.generation > lost.generation && !changed.desired.is_empty(), "the change reached the host: {changed:?}");
        assert_eq!(unchanged_count(), counted);
        // At rest again.
        let rest = state.heartbeat(hb(Some(changed.generation))).await?;
        assert_eq!((rest.generation, rest.desired.len()), (changed.generation, 0));
        assert_eq!(unchanged_count(), counted + 1);
        Ok(())
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

    #[tokio::test]
    async fn a_write_answers_with_the_first_page_of_instances_and_counts_them_all() -> Result<()> {
        let state = setup().await?;
        for h in 2..=10 {
            register(&state, &format!("h{h}")).await?;
        }
        let big = "tenant: t\nname: big\nimages: {datanode: d}\npools:\n  datanode: {replicas: 1200, cpu: 100m, memory: 256Mi, maxPerHost: 200}\n";
        let spec = parse_cluster_spec(big).map_err(|e| Error::invalid("spec", e.to_string()))?;
        let (answer, _) = state.apply("admin".into(), spec, None).await?;
        let page = crate::clusters::INSTANCES_PAGE;
        assert_eq!(answer.instances.len(), page, "the answer holds one page of instances");
        let pool = &answer.pools[0];
        assert_eq!((pool.pool, pool.desired, pool.instances, pool.pending), (Role::Datanode, 1200, 1200, 0), "its summary counts them all");
        let full = state.cluster("t".into(), "big".into()).await?;
        assert_eq!(full.instances.len(), 1200);
        assert_eq!(answer.pools, full.pools, "a page's summary is the whole cluster's");
        let last = answer.instances_next.clone().expect("a cursor to the rest");
        assert_eq!(last, full.instances[page - 1].instance.name, "the cursor names the page's last instance");
        let rest = state.cluster_page("t".into(), "big".into(), Some(last), usize::MAX).await?;
        let names = |s: &herd_api::wire::ClusterStatus| s.instances.iter().map(|i| i.instance.name.clone()).collect::<Vec<_>>();
        assert_eq!([names(&answer), names(&rest)].concat(), names(&full), "the cursor reads on where the answer stopped");
        assert_eq!(rest.instances_next, None);
        // A scale answers the same way; a cluster within one page gets no cursor.
        let scaled = state.scale("admin".into(), "t".into(), "big".into(), Role::Datanode, ScaleRequest { replicas: Replicas(1300), force: false }, None).await?;
        assert_eq!((scaled.instances.len(), scaled.pools[0].instances), (page, 1300));
        assert!(scaled.instances_next.is_some());
        let small = state.scale("admin".into(), "t".into(), "c".into(), Role::Datanode, ScaleRequest { replicas: Replicas(7), force: false }, None).await?;
        assert_eq!(small.instances.len(), 8);
        assert_eq!(small.instances_next, None, "all of it fits in the page");
        Ok(())
    }
}
