//! Desired state: what each host should run (image, resources, environment, rendered Hadoop
//! config, whether to hold its config), derived per cluster from its spec, placements and
//! leaving phases (the store) and its hosts' reports (the hot state).
//!
//! Deriving a cluster renders every member's config and decides its rollout: O(cluster).
//! A heartbeat needs only its host's part, so each cluster's result is cached
//! ([`DesiredCache`]) and derived again only when
//! - a commit named the cluster (its spec, a placement or a leaving phase changed:
//!   [`Store::cluster_touched`]): at once. Commits about other clusters leave it cached, so
//!   applying one cluster does not make every heartbeat render every other;
//! - a report about one of its instances changed ([`Hot::cluster_version`]): at most every
//!   [`REDERIVE_MS`], so a fleet of agents converging does not make every heartbeat render
//!   the whole cluster; and for a heartbeat or a watch, only the members whose reports
//!   changed are looked at when no rollout is under way: when none moved what the hosts run,
//!   the last result's containers and status are kept ([`settled_since`]);
//! - it is older than one heartbeat interval and a master is placed (masters' reports age
//!   with their hosts).
//!
//! The last two (reports, not commits) share one budget across all clusters
//! ([`REPORT_DERIVE_SHARE`] of a core); past it, hosts get the last result. Workers'
//! rendered configs are memoized (`crate::hadoop::RENDERED`), so a derivation renders only
//! the members that changed.
//!
//! The cached result is one consistent decision over the whole cluster, so a rollout still
//! releases at most one instance at a time.
//!
//! A cluster's status is assembled from the same result ([`Parts`]): a status read asks for
//! one derived from its reports as they are now ([`Want::Status`]) and, when it derives, the
//! heartbeats that follow find it fresh. (Each `PUT` answers with its cluster's status, and
//! status and heartbeats each evaluated a just-applied 10,000-member cluster: a sixth of the
//! orchestrator's CPU while 300,000 instances were applied.)

use crate::Map as HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::wire::{Condition, DesiredContainer, HdfsSummary, InstanceHadoop, YarnSummary};
use herd_api::Role;
use crate::reconciler::Instance;
use crate::store::{ClusterRow, Store, Tx};

use crate::delta::Entry;
use crate::error::Result;
use crate::hot::Hot;
use crate::state::HadoopContext;

/// Where [`Derived::stamp`]s come from (0 is never one: a result of no cluster).
static STAMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A cluster is derived again for changed reports at most this often.
pub const REDERIVE_MS: u64 = 200;

/// Derivations for changed or ageing reports (not for commits) take at most this share of
/// one core, all clusters together: past it, hosts are answered from the last result until
/// the budget allows again. One cluster alone was bounded (4× its cost apart), but ten
/// 10,000-member clusters converging took every core, and heartbeats waited seconds.
pub const REPORT_DERIVE_SHARE: f64 = 0.5;

/// How much report-driven derivation time may be owed at once, in ms (a burst).
const BUDGET_BURST_MS: f64 = 1000.0;

/// The shared budget of report-driven derivations (see [`REPORT_DERIVE_SHARE`]): a debt in
/// ms of derivation, paid back at `REPORT_DERIVE_SHARE` ms per ms.
#[derive(Default)]
struct Budget(Mutex<(f64, u64)>);

impl Budget {
    fn allows(&self, now: u64) -> bool {
        let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (debt, at) = *b;
        let debt = (debt - now.saturating_sub(at) as f64 * REPORT_DERIVE_SHARE).max(0.0);
        *b = (debt, now.max(at));
        debt < BUDGET_BURST_MS
    }

    fn charge(&self, cost_ms: u64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 += cost_ms as f64;
    }
}

/// One cluster's desired containers, and what they were derived from.
pub(crate) struct Derived {
    /// [`Store::touches`] read before the snapshot it was derived from.
    touches: u64,
    /// The last write batch its snapshot holds, where the store numbers them ([`Tx::batch`]).
    batch: Option<u64>,
    version: u64,
    pub(crate) at_ms: u64,
    /// A master is placed: its report ages with its host, so the result does too.
    masters: bool,
    desired: Arc<HashMap<InstanceRef, Arc<Entry>>>,
    /// No rollout was under way: no container was held on the config it ran, and every
    /// running one reported the rollout hash it was given (see [`settled_since`]).
    settled: bool,
    /// The report version `parts` were evaluated at: older than `version` when a derivation
    /// for reports found nothing the hosts run moved and kept them ([`settled_since`]).
    parts_version: u64,
    /// [`Hot::hosts_epoch`] when `parts` were evaluated.
    hosts_epoch: u64,
    /// Names what `desired` holds: kept from the result before when a derivation found every
    /// container as it was, new otherwise. A host told this cluster's part at one stamp is
    /// told the same while the stamp stands ([`DesiredCache::stamp`]).
    pub(crate) stamp: u64,
    /// What the cluster's status is assembled from; `None`: the cluster does not exist.
    pub(crate) parts: Option<Arc<Parts>>,
}

/// The last commit naming a cluster: its count and its write batch ([`Store::cluster_mark`]).
type Mark = (u64, Option<u64>);

/// Whether a snapshot taken after [`Store::touches`] read `touches`, holding write batch
/// `batch`, holds the commit `mark`: counted before it was read, or in a batch it holds.
/// (Readers see a commit before it is counted: a heartbeat in between derived a freshly
/// applied 10,000-member cluster, and by the count alone the next took that for older than
/// the commit and derived all of it again.)
fn holds(touches: u64, batch: Option<u64>, mark: Mark) -> bool {
    touches >= mark.0 || matches!((batch, mark.1), (Some(held), Some(b)) if held >= b)
}

impl Derived {
    /// Whether its snapshot held the commit `mark` ([`holds`]).
    fn holds(&self, mark: Mark) -> bool {
        holds(self.touches, self.batch, mark)
    }
}

/// The snapshot and the Hadoop evaluation a derivation made, kept for the cluster's status
/// (`crate::clusters::assemble`).
pub(crate) struct Parts {
    // NB: shared with the next derivation when no commit named the cluster since (see `derive`).
    pub(crate) row: Arc<ClusterRow>,
    pub(crate) members: Arc<Vec<Instance>>,
    pub(crate) leaving: Arc<std::collections::BTreeMap<InstanceRef, Phase>>,
    pub(crate) ctx: HadoopContext,
    /// How HDFS/YARN see each instance, with its rollout phase.
    pub(crate) hadoop: HashMap<InstanceRef, InstanceHadoop>,
    pub(crate) hdfs: Option<HdfsSummary>,
    pub(crate) yarn: Option<YarnSummary>,
    pub(crate) conditions: Vec<Condition>,
}

/// Who asks for a cluster's derived result, and so how fresh it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A heartbeat: see the module for when the last result answers. While another request
    /// derives the cluster after a commit, the last result answers too: the host is told
    /// the rest at its next heartbeat (or through its watch). Waiting, every heartbeat of the
    /// 10,000 hosts a just-applied cluster touched waited for its derivation; with a hundred
    /// applied one after the other, the fleet's heartbeats waited a minute and most hosts
    /// went `lost`.
    Heartbeat,
    /// A watch: as a heartbeat, except that it waits for a derivation after a commit (a
    /// watch is there to carry a commit to its host at once).
    Watch,
    /// A status read: derived from the reports as they are now (the same report version),
    /// at most `max_age_ms` ago (liveness ages); never held back by the budget.
    Status { max_age_ms: u64 },
    /// A write's answer (the status of the cluster it changed): any result derived after the
    /// cluster's last commit, from reports of any age. (Asking for one from the reports as
    /// they are now, each `PUT` of a storm derived its 10,000-member cluster again behind
    /// the heartbeats' derivation of it, which had taken longer than the status's 250 ms.)
    Written,
}

impl Want {
    /// Whether `d` is fresh enough for this asker on its reports, once it is as new as the
    /// cluster's last commit: a heartbeat takes any (the module's rules and the budget decide
    /// when it is derived again), a status read one from the reports at `version` derived less
    /// than `max_age_ms` before `now`.
    fn accepts(self, d: &Derived, version: u64, now: u64) -> bool {
        match self {
            Want::Heartbeat | Want::Watch | Want::Written => true,
            Want::Status { max_age_ms } => d.parts_version == version && now.saturating_sub(d.at_ms) < max_age_ms,
        }
    }
}

/// One cluster's cache entry: the last derived result, and a lock held while deriving.
struct Slot {
    current: Mutex<Option<Arc<Derived>>>,
    deriving: Mutex<()>,
    /// How many derivations finished: who found the cluster being derived waits for it to move
    /// ([`Busy`]).
    done: tokio::sync::watch::Sender<u64>,
    /// How long the last full derivation took: a cluster is not derived again for changed
    /// reports more often than every 4× that (bounds the CPU a big cluster takes).
    cost_ms: std::sync::atomic::AtomicU64,
}

impl Default for Slot {
    fn default() -> Self {
        Slot { current: Mutex::default(), deriving: Mutex::default(), done: tokio::sync::watch::Sender::new(0), cost_ms: Default::default() }
    }
}

/// A waiter on a cluster some other request is deriving.
pub struct Busy(tokio::sync::watch::Receiver<u64>);

/// How long a [`Busy`] waits at most before asking again anyway (a safety net: every
/// derivation wakes its waiters however it ends).
const BUSY_RECHECK_MS: u64 = 1000;

/// Wakes a slot's waiters when dropped.
struct Wake<'a>(&'a tokio::sync::watch::Sender<u64>);

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

impl Busy {
    /// Waits (on the async side: no store thread is held) until the derivation it found
    /// running finishes, or [`BUSY_RECHECK_MS`]; `true` when it finished.
    pub async fn wait(mut self) -> bool {
        let wait = std::time::Duration::from_millis(BUSY_RECHECK_MS);
        matches!(tokio::time::timeout(wait, self.0.changed()).await, Ok(Ok(())))
    }
}

impl Slot {
    fn current(&self) -> Option<Arc<Derived>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether `d` may answer when the last commit naming the cluster was `mark`, its
    /// reports are at `version` and it is `now`; `budget` is asked only when reports alone
    /// would have it derived again.
    #[allow(clippy::too_many_arguments)]
    fn fresh(&self, d: &Derived, want: Want, mark: Mark, version: u64, now: u64, interval: u64, budget: &Budget) -> bool {
        if let Want::Status { .. } | Want::Written = want {
            return d.holds(mark) && want.accepts(d, version, now);
        }
        let age = now.saturating_sub(d.at_ms);
        let floor = 4 * self.cost_ms.load(std::sync::atomic::Ordering::Relaxed);
        let reports = (d.version == version || age < REDERIVE_MS.max(floor)) && (!d.masters || age < interval.max(floor));
        d.holds(mark) && (reports || !budget.allows(now))
    }
}

/// Per cluster, its last derived desired containers.
#[derive(Default)]
pub struct DesiredCache {
    clusters: Mutex<HashMap<(String, String), Arc<Slot>>>,
    budget: Budget,
}

impl DesiredCache {
    fn slot(&self, key: &(String, String)) -> Arc<Slot> {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    }

    /// The desired containers of cluster `key`, derived again if stale (see the module).
    /// `c` is a snapshot taken after [`Store::touches`] read `touches`.
    /// One caller derives. Watches and status reads wait for it only when what they have is
    /// older than the last commit naming the cluster (a placement or phase they must see;
    /// heartbeats take the last result, see [`Want::Heartbeat`]), and not here:
    /// they get [`Busy`] to wait on without holding a store thread (the store's 32 threads
    /// all waiting for derivations of freshly applied 10,000-instance clusters left every
    /// other heartbeat queued for 30 s). For newer reports alone they take the last result.
    /// Results only ever move forward, so no host is ever told less than it was told before.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cluster(
        &self,
        c: &dyn Tx,
        store: &Store,
        hot: &Hot,
        key: &(String, String),
        want: Want,
        touches: u64,
        now: u64,
        lost_after: u64,
    ) -> Result<std::result::Result<Arc<Derived>, Busy>> {
        let interval = lost_after / 3;
        // NB: the clock now, not when the request arrived: a result derived after a wait in a
        // queue must not be born old (it was derived again at once, and under load every
        // derivation came out stale).
        let now = now.max(crate::state::now_ms());
        let slot = self.slot(key);
        let version = hot.cluster_version(&key.0, &key.1);
        let mark = store.cluster_mark(&key.0, &key.1);
        let current = slot.current();
        if let Some(d) = &current
            && slot.fresh(d, want, mark, version, now, interval, &self.budget)
        {
            return Ok(Ok(d.clone()));
        }
        // A snapshot older than the cluster's last commit cannot derive a fresh result; one
        // at least as new as it is answers (requests that waited in a queue while clusters
        // were applied otherwise derived, one after the other, results stale at birth).
        // NB: the batch read only then (the snapshot may hold the commit though `touches` did
        // not count it yet: see `holds`).
        let behind = touches < mark.0 && !holds(touches, if mark.1.is_some() { c.batch()? } else { None }, mark);
        if behind
            && let Some(d) = current.as_ref().filter(|d| d.touches >= touches && want.accepts(d, version, now))
        {
            return Ok(Ok(d.clone()));
        }
        let _deriving = match slot.deriving.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // NB: only a result there is: a host must never be told a set without what it
                // runs of a cluster not derived yet since this process started.
                let commits_may_wait = want == Want::Heartbeat;
                if let Some(d) = current.clone().filter(|d| (d.holds(mark) || commits_may_wait) && want.accepts(d, version, now)) {
                    return Ok(Ok(d));
                }
                // NB: subscribed before looking again, so a derivation finishing in between
                // is not missed.
                let waiter = Busy(slot.done.subscribe());
                match slot.deriving.try_lock() {
                    Ok(g) => g,
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return Ok(Err(waiter)),
                }
            }
        };
        // Whoever waits is woken however this ends (a failed derivation too), after the
        // result is stored.
        let _wake = Wake(&slot.done);
        // NB: the result stays as it is while this holds `deriving` (only a derivation stores one).
        let latest = slot.current();
        // Someone may have derived it meanwhile.
        if let Some(d) = &latest
            && slot.fresh(d, want, mark, hot.cluster_version(&key.0, &key.1), now, interval, &self.budget)
        {
            return Ok(Ok(d.clone()));
        }
        let started = std::time::Instant::now();
        // What a derivation since the cluster's last commit read of it is what a read now
        // would give.
        let unmoved = latest.as_deref().filter(|d| d.holds(mark));
        // Reports alone moved, and a heartbeat or a watch asks: the containers as they were
        // when no report moved anything the hosts run (a status read evaluates them all).
        let kept = match unmoved {
            Some(was) if matches!(want, Want::Heartbeat | Want::Watch) => settled_since(hot, key, was, touches, version, now),
            _ => None,
        };
        let quiet = kept.is_some();
        let mut derived = match kept {
            Some(d) => d,
            None => derive(c, hot, key, touches, version, now, lost_after, unmoved)?,
        };
        // NB: cheap beside the derivation: unchanged workers share their config's allocation,
        // and an `Arc` of an `Eq` value compares its pointer first.
        derived.stamp = match latest {
            Some(d) if d.desired == derived.desired => d.stamp,
            _ => STAMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let derived = Arc::new(derived);
        let took = started.elapsed();
        let cost = took.as_millis() as u64;
        // NB: what a full derivation costs sets how often reports may have one again; one
        // that kept the containers does not make them come sooner.
        if !quiet {
            slot.cost_ms.store(cost, std::sync::atomic::Ordering::Relaxed);
        }
        let for_reports = current.as_ref().is_some_and(|d| d.holds(mark));
        if for_reports {
            self.budget.charge(cost);
        }
        let reason = match want {
            _ if quiet => "unchanged",
            Want::Status { .. } => "status",
            Want::Written => "write",
            Want::Heartbeat | Want::Watch if for_reports => "reports",
            Want::Heartbeat | Want::Watch => "commit",
        };
        crate::metrics::get().derivation(reason, took);
        let answer = {
            let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.as_ref().is_none_or(|d| d.touches <= derived.touches || d.batch < derived.batch) {
                *current = Some(derived.clone());
            }
            current.clone().unwrap_or(derived)
        };
        if answer.parts.is_none() {
            self.release(key, &slot);
        }
        Ok(Ok(answer))
    }

    /// Drops `key`'s slot, when it is still `slot`: its cluster was not in the snapshot just
    /// derived (never applied, or deleted). Else every read of a name that is no cluster kept a
    /// slot for good: a tenant asking for names at random grew the orchestrator's memory
    /// without bound. (A request holding the slot still finishes on it; the next one makes a
    /// new slot, as after a restart.)
    fn release(&self, key: &(String, String), slot: &Arc<Slot>) {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(key).is_some_and(|held| Arc::ptr_eq(held, slot)) {
            map.remove(key);
        }
    }

    /// How many clusters hold a slot (derived since start, or being derived).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.clusters.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The stamp of the result a heartbeat asking for cluster `key` now would get, when that
    /// is the last result (it would not be derived again): so a host whose part of it was
    /// computed at that stamp is told the same. `None` when it would be derived, or never was.
    /// `now`: the clock when the host's sources are checked (one reading for all of them).
    pub(crate) fn stamp(&self, store: &Store, hot: &Hot, key: &(String, String), lost_after: u64, now: u64) -> Option<u64> {
        let slot = self.clusters.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()?;
        let d = slot.current()?;
        let (mark, version) = (store.cluster_mark(&key.0, &key.1), hot.cluster_version(&key.0, &key.1));
        slot.fresh(&d, Want::Heartbeat, mark, version, now, lost_after / 3, &self.budget).then_some(d.stamp)
    }

    /// Whether cluster (`tenant`, `name`) was derived since this process started and not
    /// forgotten since.
    pub fn knows(&self, tenant: &str, name: &str) -> bool {
        let map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.contains_key(&(tenant.to_string(), name.to_string()))
    }

    /// Forgets cluster `key` (deleted).
    pub fn forget(&self, tenant: &str, name: &str) {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&(tenant.to_string(), name.to_string()));
        crate::hadoop::forget_rendered(tenant, name);
    }
}

/// Derives cluster `key` from snapshot `c` and the reports. `unmoved`: a result derived since
/// the last commit naming the cluster, whose spec, members and leaving phases it takes
/// instead of reading them again (derivations for reports alone read the same rows every
/// time: reading a 10,000-member cluster's was a tenth of the CPU of a million-instance storm).
#[allow(clippy::too_many_arguments)]
fn derive(
    c: &dyn Tx,
    hot: &Hot,
    key: &(String, String),
    touches: u64,
    version: u64,
    now: u64,
    lost_after: u64,
    unmoved: Option<&Derived>,
) -> Result<Derived> {
    let (tenant, name) = key;
    let mut desired = HashMap::default();
    let batch = c.batch()?;
    // NB: read before the view of the hosts is taken.
    let hosts_epoch = hot.hosts_epoch();
    let none = |desired| Derived {
        touches,
        batch,
        version,
        at_ms: now,
        masters: false,
        desired,
        settled: false,
        parts_version: version,
        hosts_epoch,
        parts: None,
        stamp: 0,
    };
    let read = match unmoved {
        Some(d) => d.parts.as_deref().map(|p| (p.row.clone(), p.members.clone(), p.leaving.clone())),
        None => match c.cluster(tenant, name)? {
            Some(row) => Some((Arc::new(row), Arc::new(c.instances(Some((tenant, name)))?), Arc::new(c.leaving(Some((tenant, name)))?))),
            None => None,
        },
    };
    let Some((row, members, leaving)) = read else {
        return Ok(none(Arc::new(desired)));
    };
    let ctx = HadoopContext::load(hot, &members, now, lost_after);
    let mut outcome = ctx.evaluate(&row.spec, &members, &leaving);
    let settled = outcome.releases.values().all(|r| !r.hold)
        && members.iter().all(|i| match (&i.host, outcome.releases.get(&i.instance)) {
            (Some(host), Some(r)) => ctx.report(&i.instance, host).is_none_or(|o| o.config_hash.as_ref().is_none_or(|h| *h == r.rollout)),
            _ => true,
        });
    let spec = &row.spec;
    desired.reserve(members.len());
    for i in members.iter().filter(|i| i.host.is_some()) {
        // Removal ordered by the lifecycle: its agent stops and removes the container.
        if leaving.get(&i.instance) == Some(&Phase::Removing) {
            continue;
        }
        let Some(image) = spec.image_for(i.role) else { continue };
        let pool = spec.pools.get(&i.role);
        let mut env = pool.map(|p| p.env.clone()).unwrap_or_default();
        env.extend(herd_env(&i.instance, i.role));
        if let Some(daemon) = outcome.env.remove(&i.instance) {
            env.extend(daemon);
        }
        let release = outcome.releases.remove(&i.instance);
        desired.insert(
            i.instance.clone(),
            Entry::new(DesiredContainer {
                image: image.to_string(),
                instance: i.instance.clone(),
                role: i.role,
                cpu: i.cpu,
                memory: i.memory,
                command: pool.and_then(|p| p.command.clone()),
                env,
                publish: pool.map(|p| p.publish.clone()).unwrap_or_default(),
                hold_config: release.as_ref().is_some_and(|r| r.hold),
                rollout_hash: release.as_ref().map(|r| r.rollout.clone()),
                cap_add: pool.map(|p| p.capabilities.add.clone()).unwrap_or_default(),
                hadoop: release.map(|r| r.config),
                placement: i.placement,
            }),
        );
    }
    let masters = members.iter().any(|i| i.host.is_some() && matches!(i.role, Role::Namenode | Role::Resourcemanager));
    let parts = Parts {
        row,
        members,
        leaving,
        ctx,
        hadoop: outcome.instances,
        hdfs: outcome.hdfs,
        yarn: outcome.yarn,
        conditions: outcome.conditions,
    };
    Ok(Derived { masters, settled, parts: Some(Arc::new(parts)), ..none(Arc::new(desired)) })
}

/// `was` again with the reports at `version`, when they moved nothing its hosts run: `None`
/// when they may have (then derive). A cluster with no rollout under way (`settled`) runs
/// what its members' configs render, and reports change those only through a member's
/// address (in the masters' topology table, when a master is placed), its host's rack and
/// data disks, and a leaving member's report of a config (it is then held on it): when every
/// placed member reports the address it had and a rollout hash that is its own (or none),
/// the containers are those of
/// `was`, and so is its status, kept as evaluated at its own version (a status read
/// evaluates it again). (A 10,000-member cluster converging was derived in full every
/// time a report moved, each time to the same containers: half the derivations of a
/// million-instance apply.)
fn settled_since(hot: &Hot, key: &(String, String), was: &Derived, touches: u64, version: u64, now: u64) -> Option<Derived> {
    let parts = was.parts.as_ref().filter(|_| was.settled)?;
    // Only the members whose reports changed since `was`, when that is known and no host
    // changed since `parts` were evaluated: else every member. (Comparing every member of a
    // 10,000-member cluster each time one report moved took a core's half while a million
    // instances converged.)
    let changes = (hot.hosts_epoch() == was.hosts_epoch).then(|| hot.changed_since(&key.0, &key.1, was.version)).flatten();
    let placed: Vec<(&InstanceRef, &str)> = match &changes {
        Some(changed) => changed.iter().map(|(i, host)| (i, host.as_str())).collect(),
        None => parts.members.iter().filter_map(|i| Some((&i.instance, i.host.as_deref()?))).collect(),
    };
    let same = hot.with_hosts(|hosts| {
        placed.into_iter().all(|(instance, host)| {
            let Some(live) = hosts.get(host) else { return false };
            let before = parts.ctx.view.hosts.get(host).map(|(info, _)| info);
            if before.is_none_or(|b| b.rack != live.info.rack || b.data_disks.len() != live.info.data_disks.len()) {
                return false;
            }
            let now_seen = live.observed.binary_search_by(|o| o.instance.cmp(instance)).ok().map(|n| &live.observed[n]);
            // NB: an instance not desired (not a member, or one being removed) that reports a
            // config makes it derive in full.
            let rollout = was.desired.get(instance).and_then(|d| d.container.rollout_hash.as_ref());
            if now_seen.and_then(|o| o.config_hash.as_ref()).is_some_and(|h| Some(h) != rollout) {
                return false;
            }
            // NB: an address is only in the masters' topology table (a worker's config never
            // depends on it: `render::Member::same_worker_config`); a leaving member is held
            // once it reports a config. Looked up only then (a key to build per member).
            let leaving = parts.leaving.contains_key(instance);
            if !was.masters && !leaving {
                return true;
            }
            let then_seen = parts.ctx.report(instance, host);
            (!was.masters || now_seen.and_then(|o| o.ip) == then_seen.and_then(|o| o.ip))
                && (!leaving || now_seen.map(|o| o.config_hash.is_some()) == then_seen.map(|o| o.config_hash.is_some()))
        })
    });
    same.then(|| Derived {
        touches: touches.max(was.touches),
        batch: was.batch,
        version,
        at_ms: now,
        masters: was.masters,
        desired: was.desired.clone(),
        settled: true,
        parts_version: was.parts_version,
        hosts_epoch: was.hosts_epoch,
        stamp: 0,
        parts: was.parts.clone(),
    })
}

/// The containers `host` should run, with the environment herd gives every daemon and each
/// instance's Hadoop config. `c` should be one read transaction (a consistent snapshot),
/// taken after [`Store::touches`] read `touches`; `want` is [`Want::Heartbeat`] or
/// [`Want::Watch`]. [`Busy`] when a cluster it needs is being derived by another request
/// (and `want` waits for it): wait on it, then ask again. `skip_new`: the reply will be a
/// delta against a set this process told the host, so a cluster never derived yet (whose
/// instances it cannot have been told) is left for the next reply instead of waited for:
/// named in the sources with stamp 0, which no result has, so that reply is computed.
/// (Every heartbeat of the 10,000 hosts a just-applied cluster placed instances on waited
/// for its first derivation.)
#[allow(clippy::too_many_arguments)]
pub fn desired_for(
    c: &dyn Tx,
    store: &Store,
    hot: &Hot,
    cache: &DesiredCache,
    host: &str,
    want: Want,
    skip_new: bool,
    touches: u64,
    now: u64,
    lost_after: u64,
) -> Result<std::result::Result<HostPart, Busy>> {
    let mut mine = c.instances_on_host(host)?;
    if mine.is_empty() {
        return Ok(Ok((vec![], vec![])));
    }
    // NB: grouped once (each instance was compared with every cluster's name: a hundred
    // times a hundred on a host running instances of a hundred clusters). A stable sort keeps
    // each cluster's instances in the store's order.
    mine.sort_by(|a, b| (&a.instance.tenant, &a.instance.cluster).cmp(&(&b.instance.tenant, &b.instance.cluster)));
    let (mut out, mut sources) = (Vec::new(), Vec::new());
    for on_host in mine.chunk_by(|a, b| a.instance.tenant == b.instance.tenant && a.instance.cluster == b.instance.cluster) {
        let key = (on_host[0].instance.tenant.clone(), on_host[0].instance.cluster.clone());
        let derived = match cache.cluster(c, store, hot, &key, want, touches, now, lost_after)? {
            Ok(d) => d,
            // NB: a heartbeat is busy only on a cluster with no result at all.
            Err(_) if skip_new && want == Want::Heartbeat => {
                sources.push((key, 0));
                continue;
            }
            Err(busy) => return Ok(Err(busy)),
        };
        for i in on_host {
            if let Some(d) = derived.desired.get(&i.instance) {
                out.push(d.clone());
            }
        }
        sources.push((key, derived.stamp));
    }
    Ok(Ok((out, sources)))
}

/// A cluster a host's desired set was taken from, and the [`Derived::stamp`] it was taken at.
pub type Source = ((String, String), u64);

/// A host's desired containers, and the clusters they were taken from.
pub type HostPart = (Vec<Arc<Entry>>, Vec<Source>);

fn herd_env(i: &InstanceRef, role: Role) -> [(String, String); 5] {
    [
        ("HERD_TENANT".into(), i.tenant.clone()),
        ("HERD_CLUSTER".into(), i.cluster.clone()),
        ("HERD_INSTANCE".into(), i.name.clone()),
        ("HERD_POOL".into(), role.as_str().into()),
        ("HERD_HOSTNAME".into(), i.hostname()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_finding_its_cluster_being_derived_gets_a_waiter_woken_when_it_is_done() -> Result<()> {
        let (store, hot, cache) = (Store::in_memory()?, Hot::default(), DesiredCache::default());
        let key = ("t".to_string(), "c".to_string());
        let now = crate::state::now_ms();
        let slot = cache.slot(&key);
        let ask = || store.read_now(|c| cache.cluster(c, &store, &hot, &key, Want::Heartbeat, store.touches(), now, 9_000));
        let busy = {
            let _deriving = slot.deriving.lock().unwrap_or_else(PoisonError::into_inner);
            match ask()? {
                Ok(_) => panic!("derived while another request held the cluster's derivation"),
                Err(busy) => busy,
            }
        };
        // Free again: this one derives (the cluster is gone: nothing desired), and says so to
        // whoever waits.
        let derived = ask()?.map_err(|_| crate::error::Error::Writer("busy with nobody deriving".into()))?;
        assert!(derived.desired.is_empty());
        assert!(busy.wait().await, "the waiter was not woken by the derivation that finished");
        Ok(())
    }

    /// A store holding cluster t/c (the contract suite's) with datanode-0 on host h1; its key.
    async fn one_datanode_on_h1() -> Result<(Store, Hot, DesiredCache, (String, String))> {
        use crate::store::contract::{host, inst, with_cluster};
        let store = Store::in_memory()?;
        with_cluster(&store).await?;
        store
            .write(|tx| {
                tx.upsert_host(&host("h1"), 1)?;
                tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))
            })
            .await?;
        Ok((store, Hot::default(), DesiredCache::default(), ("t".to_string(), "c".to_string())))
    }

    #[tokio::test]
    async fn a_derivation_takes_the_cluster_as_read_since_its_last_commit() -> Result<()> {
        let (store, hot, cache, key) = one_datanode_on_h1().await?;
        // A status read that takes no result as fresh: it derives every time.
        let derive = || -> Result<Arc<Derived>> {
            let now = crate::state::now_ms();
            let want = Want::Status { max_age_ms: 0 };
            let asked = store.read_now(|c| cache.cluster(c, &store, &hot, &key, want, store.touches(), now, 9_000))?;
            asked.map_err(|_| crate::error::Error::Writer("busy with nobody deriving".into()))
        };
        let members = |d: &Arc<Derived>| d.parts.as_ref().map(|p| p.members.clone()).unwrap_or_default();
        let (first, second) = (derive()?, derive()?);
        // No commit named the cluster between them: the same rows, not read again.
        assert!(Arc::ptr_eq(&members(&first), &members(&second)));
        store.write(|tx| tx.put_instance(&crate::store::contract::inst("t", "c", Role::Datanode, 1, Some("h1")))).await?;
        let third = derive()?;
        assert!(!Arc::ptr_eq(&members(&second), &members(&third)));
        assert_eq!(members(&third).len(), 2);
        assert_eq!(third.desired.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_name_that_is_no_cluster_keeps_no_slot_however_often_it_is_asked_for() -> Result<()> {
        let (store, hot, cache, key) = one_datanode_on_h1().await?;
        let now = crate::state::now_ms();
        let ask = |key: &(String, String)| -> Result<Arc<Derived>> {
            let asked = store.read_now(|c| cache.cluster(c, &store, &hot, key, Want::Status { max_age_ms: 0 }, store.touches(), now, 9_000))?;
            asked.map_err(|_| crate::error::Error::Writer("busy with nobody deriving".into()))
        };
        for n in 0..100 {
            let missing = ask(&("t".to_string(), format!("no-such-{n}")))?;
            assert!(missing.parts.is_none() && missing.desired.is_empty());
        }
        assert_eq!(cache.slots(), 0, "names that are no cluster each kept a slot");
        let there = ask(&key)?;
        assert_eq!(there.desired.len(), 1);
        assert_eq!(cache.slots(), 1);
        assert!(cache.knows("t", "c"), "the cluster's slot went");
        // Deleted (its rows gone): its slot goes with the derivation that finds it gone.
        store
            .write(|tx| {
                tx.delete_instance(&crate::store::contract::inst("t", "c", Role::Datanode, 0, Some("h1")).instance)?;
                tx.delete_cluster("t", "c")
            })
            .await?;
        assert!(ask(&key)?.parts.is_none());
        assert_eq!(cache.slots(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_result_from_a_snapshot_holding_a_commit_not_counted_yet_is_as_new_as_that_commit() -> Result<()> {
        let (store, hot, cache, key) = one_datanode_on_h1().await?;
        let now = crate::state::now_ms();
        let ask = |touches: u64| -> Result<Arc<Derived>> {
            let asked = store.read_now(|c| cache.cluster(c, &store, &hot, &key, Want::Heartbeat, touches, now, 9_000))?;
            asked.map_err(|_| crate::error::Error::Writer("busy with nobody deriving".into()))
        };
        // A heartbeat that read the count before the cluster's commit was counted, and whose
        // snapshot holds it (a reader in that window).
        let first = ask(0)?;
        assert_eq!(first.desired.len(), 1);
        // The next takes it: it is as new as the commit.
        let next = ask(store.touches())?;
        assert!(Arc::ptr_eq(&first, &next), "derived the cluster again");
        Ok(())
    }

    #[tokio::test]
    async fn reports_that_move_nothing_the_hosts_run_keep_the_containers_and_a_status_read_evaluates_them() -> Result<()> {
        use herd_api::wire::{ContainerState, Observed};
        let (store, hot, cache, key) = one_datanode_on_h1().await?;
        hot.register(crate::store::contract::host("h1"), None, crate::state::now_ms());
        // Each ask is a second after the one before: past the pause between derivations.
        let clock = std::sync::atomic::AtomicU64::new(crate::state::now_ms());
        let ask = |want: Want| -> Result<Arc<Derived>> {
            let now = clock.fetch_add(1_000, std::sync::atomic::Ordering::SeqCst) + 1_000;
            let asked = store.read_now(|c| cache.cluster(c, &store, &hot, &key, want, store.touches(), now, 9_000_000))?;
            asked.map_err(|_| crate::error::Error::Writer("busy with nobody deriving".into()))
        };
        let report = |hash: Option<String>, state: ContainerState| {
            let instance = crate::store::contract::inst("t", "c", Role::Datanode, 0, None).instance;
            let o = Observed { ip: Some([10, 88, 0, 2].into()), config_hash: hash, ..crate::hot::tests::observed(instance, state) };
            hot.heartbeat("h1", vec![o], vec![], crate::state::now_ms(), 9_000_000);
        };
        let full = ask(Want::Heartbeat)?;
        let given = full.desired.values().next().and_then(|d| d.container.config_hash());
        let parts = |d: &Arc<Derived>| d.parts.clone().ok_or_else(|| crate::error::Error::Writer("no parts".into()));
        // Created, then running, with the config it was given: the same containers.
        report(given.clone(), ContainerState::Created);
        let quiet = ask(Want::Heartbeat)?;
        report(given.clone(), ContainerState::Running);
        let still = ask(Want::Heartbeat)?;
        for d in [&quiet, &still] {
            assert!(Arc::ptr_eq(&full.desired, &d.desired) && Arc::ptr_eq(&parts(&full)?, &parts(d)?), "evaluated again");
            assert_eq!(d.stamp, full.stamp);
        }
        assert_eq!(still.version, hot.cluster_version("t", "c"));
        // A status read evaluates the reports as they are.
        let status = ask(Want::Status { max_age_ms: 60_000 })?;
        assert!(!Arc::ptr_eq(&parts(&full)?, &parts(&status)?));
        assert_eq!(status.parts_version, hot.cluster_version("t", "c"));
        // Another config running (an instance a rollout has to restart): evaluated in full.
        report(Some("another".into()), ContainerState::Running);
        let rolled = ask(Want::Heartbeat)?;
        assert!(!Arc::ptr_eq(&parts(&status)?, &parts(&rolled)?), "a config not given was taken as settled");
        assert!(!rolled.settled);
        Ok(())
    }

    #[tokio::test]
    async fn a_host_holding_a_set_is_answered_without_a_cluster_never_derived_and_told_it_next() -> Result<()> {
        let (store, hot, cache, key) = one_datanode_on_h1().await?;
        let now = crate::state::now_ms();
        let ask = |skip_new| store.read_now(|c| desired_for(c, &store, &hot, &cache, "h1", Want::Heartbeat, skip_new, store.touches(), now, 9_000));
        {
            // Its first derivation runs in another request.
            let slot = cache.slot(&key);
            let _deriving = slot.deriving.lock().unwrap_or_else(PoisonError::into_inner);
            // A host whose reply is its full set (restarted agent, new process) waits for it:
            // its set must hold what it runs.
            assert!(ask(false)?.is_err(), "a full set was answered without a cluster");
            // A host holding a set this process told it goes on without it, and the cluster
            // is named with no stamp, so the next reply is computed.
            let (desired, sources) = ask(true)?.map_err(|_| crate::error::Error::Writer("busy".into()))?;
            assert!(desired.is_empty());
            assert_eq!(sources, vec![(key.clone(), 0)]);
            assert_eq!(cache.stamp(&store, &hot, &key, 9_000, crate::state::now_ms()), None);
        }
        let (desired, sources) = ask(true)?.map_err(|_| crate::error::Error::Writer("busy".into()))?;
        assert_eq!(desired.iter().map(|d| d.container.instance.name.as_str()).collect::<Vec<_>>(), ["datanode-0"]);
        assert!(sources[0].1 != 0 && cache.stamp(&store, &hot, &key, 9_000, crate::state::now_ms()) == Some(sources[0].1), "{sources:?}");
        Ok(())
    }
}
