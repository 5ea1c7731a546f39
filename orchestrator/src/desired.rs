//! Desired state: what each host should run (image, resources, environment, rendered Hadoop
//! config, whether to hold its config), derived per cluster from its spec, placements and
//! leaving phases (the store) and its hosts' reports (the hot state).
//!
//! Deriving a cluster renders every member's config and decides its rollout: O(cluster).
//! A heartbeat needs only its host's part, so each cluster's result is cached
//! ([`DesiredCache`]) and derived again only when
//! - the store's revision moved (a spec, placement or leaving phase changed): at once;
//! - a report about one of its instances changed ([`Hot::cluster_version`]): at most every
//!   [`REDERIVE_MS`], so a fleet of agents converging does not make every heartbeat render
//!   the whole cluster;
//! - it is older than one heartbeat interval (masters' reports age with their hosts).
//!
//! The cached result is one consistent decision over the whole cluster, so a rollout still
//! releases at most one instance at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::wire::DesiredContainer;
use herd_api::Role;
use crate::store::Tx;

use crate::error::Result;
use crate::hot::Hot;
use crate::state::HadoopContext;

/// A cluster is derived again for changed reports at most this often.
pub const REDERIVE_MS: u64 = 200;

/// One cluster's desired containers, and what they were derived from.
struct Derived {
    revision: u64,
    version: u64,
    at_ms: u64,
    desired: HashMap<InstanceRef, DesiredContainer>,
}

/// One cluster's cache entry: the last derived result, and a lock held while deriving.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Derived>>>,
    deriving: Mutex<()>,
    /// How long the last derivation took: a cluster is not derived again for changed
    /// reports more often than every 4× that (bounds the CPU a big cluster takes).
    cost_ms: std::sync::atomic::AtomicU64,
}

impl Slot {
    fn current(&self) -> Option<Arc<Derived>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether `d` may answer for store `revision` and report `version` at `now`.
    fn fresh(&self, d: &Derived, revision: u64, version: u64, now: u64, interval: u64) -> bool {
        let floor = 4 * self.cost_ms.load(std::sync::atomic::Ordering::Relaxed);
        let age = now.saturating_sub(d.at_ms);
        d.revision >= revision && (d.version == version || age < REDERIVE_MS.max(floor)) && age < interval.max(floor)
    }
}

/// Per cluster, its last derived desired containers.
#[derive(Default)]
pub struct DesiredCache {
    clusters: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

impl DesiredCache {
    fn slot(&self, key: &(String, String)) -> Arc<Slot> {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone()).or_default().clone()
    }

    /// The desired containers of cluster `key`, derived again if stale (see the module).
    /// One caller derives. Others wait for it only when what they have is older than their
    /// store revision (a placement or phase they must see); for newer reports alone they
    /// take the last result. Results only ever move forward, so no host is ever told less
    /// than it was told before.
    fn cluster(&self, c: &dyn Tx, hot: &Hot, key: &(String, String), revision: u64, now: u64, lost_after: u64) -> Result<Arc<Derived>> {
        let interval = lost_after / 3;
        let slot = self.slot(key);
        let version = hot.cluster_version(&key.0, &key.1);
        let current = slot.current();
        if let Some(d) = &current
            && slot.fresh(d, revision, version, now, interval)
        {
            return Ok(d.clone());
        }
        let _deriving = match slot.deriving.try_lock() {
            Ok(g) => g,
            Err(_) => {
                if let Some(d) = current.filter(|d| d.revision >= revision) {
                    return Ok(d);
                }
                slot.deriving.lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        // Someone may have derived it while this waited.
        if let Some(d) = slot.current()
            && slot.fresh(&d, revision, hot.cluster_version(&key.0, &key.1), now, interval)
        {
            return Ok(d);
        }
        let started = std::time::Instant::now();
        let derived = Arc::new(derive(c, hot, key, revision, version, now, lost_after)?);
        slot.cost_ms.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_none_or(|d| d.revision <= derived.revision) {
            *current = Some(derived.clone());
        }
        Ok(current.clone().unwrap_or(derived))
    }

    /// Forgets cluster `key` (deleted).
    pub fn forget(&self, tenant: &str, name: &str) {
        let mut map = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&(tenant.to_string(), name.to_string()));
    }
}

fn derive(c: &dyn Tx, hot: &Hot, key: &(String, String), revision: u64, version: u64, now: u64, lost_after: u64) -> Result<Derived> {
    let (tenant, name) = key;
    let mut desired = HashMap::new();
    let Some(row) = c.cluster(tenant, name)? else {
        return Ok(Derived { revision, version, at_ms: now, desired });
    };
    let members = c.instances(Some((tenant, name)))?;
    let ctx = HadoopContext::load(hot, &members, now, lost_after);
    let leaving = c.leaving(Some((tenant, name)))?;
    let outcome = ctx.evaluate(&row.spec, &members, &leaving);
    let spec = &row.spec;
    for i in members.iter().filter(|i| i.host.is_some()) {
        // Removal ordered by the lifecycle: its agent stops and removes the container.
        if leaving.get(&i.instance) == Some(&Phase::Removing) {
            continue;
        }
        let Some(image) = spec.image_for(i.role) else { continue };
        let pool = spec.pools.get(&i.role);
        let mut env = pool.map(|p| p.env.clone()).unwrap_or_default();
        env.extend(herd_env(&i.instance, i.role));
        if let Some(daemon) = outcome.env.get(&i.instance) {
            env.extend(daemon.clone());
        }
        let release = outcome.releases.get(&i.instance);
        desired.insert(
            i.instance.clone(),
            DesiredContainer {
                image: image.to_string(),
                instance: i.instance.clone(),
                role: i.role,
                cpu: i.cpu,
                memory: i.memory,
                command: pool.and_then(|p| p.command.clone()),
                env,
                publish: pool.map(|p| p.publish.clone()).unwrap_or_default(),
                rollout_hash: release.map(|r| crate::hadoop::rollout_hash(spec, i, &r.config)),
                cap_add: pool.map(|p| p.capabilities.add.clone()).unwrap_or_default(),
                hadoop: release.map(|r| r.config.clone()),
                hold_config: release.is_some_and(|r| r.hold),
                placement: i.placement,
            },
        );
    }
    Ok(Derived { revision, version, at_ms: now, desired })
}

/// The containers `host` should run, with the environment herd gives every daemon and each
/// instance's Hadoop config. `c` should be one read transaction (a consistent snapshot).
pub fn desired_for(c: &dyn Tx, hot: &Hot, cache: &DesiredCache, host: &str, now: u64, lost_after: u64) -> Result<Vec<DesiredContainer>> {
    let mine = c.instances_on_host(host)?;
    if mine.is_empty() {
        return Ok(vec![]);
    }
    let revision = c.revision()?;
    let clusters: BTreeSet<(String, String)> =
        mine.iter().map(|i| (i.instance.tenant.clone(), i.instance.cluster.clone())).collect();
    let mut out = Vec::new();
    for key in clusters {
        let derived = cache.cluster(c, hot, &key, revision, now, lost_after)?;
        for i in mine.iter().filter(|i| i.instance.tenant == key.0 && i.instance.cluster == key.1) {
            if let Some(d) = derived.desired.get(&i.instance) {
                out.push(d.clone());
            }
        }
    }
    Ok(out)
}

fn herd_env(i: &InstanceRef, role: Role) -> [(String, String); 5] {
    [
        ("HERD_TENANT".into(), i.tenant.clone()),
        ("HERD_CLUSTER".into(), i.cluster.clone()),
        ("HERD_INSTANCE".into(), i.name.clone()),
        ("HERD_POOL".into(), role.as_str().into()),
        ("HERD_HOSTNAME".into(), i.hostname()),
    ]
}
