//! The store: what the control plane intends, durably (hosts and their subnet leases,
//! tenants with quotas, clusters with spec and generation, instances with their placements,
//! leaving phases, purges, the state agents last reported, API tokens (hashed), the audit
//! trail and stored answers to idempotent requests).
//!
//! Every operation is a method of [`Tx`], a typed transaction: callers never see SQL or a
//! key. [`Store::write`] runs a closure over a `&dyn Tx` as one atomic transaction (all of
//! it is stored, or nothing when it returns `Err`), [`Store::read`] over a consistent
//! snapshot. Two implementations:
//! - [`sqlite`] (the default, `--store sqlite`): embedded; one writer thread with group
//!   commit and `synchronous=FULL`, read-only connections that never wait for it.
//! - [`etcd`] (`--store etcd`): JSON values under a key prefix, each write one etcd `Txn`
//!   that compares the revision of everything the closure read (etcd's own STM, serializable
//!   isolation) and retries the closure on conflict; see that module.
//!
//! Both pass one contract suite (`store/contract.rs`). Write closures are `Fn`: etcd may run one
//! several times, so they must not consume what they capture, and side effects outside the
//! store (the hot state) must be safe to repeat.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::quantity::Resources;
use herd_api::wire::{AuditEntry, HostInfo, LogEndpoint, Observed, Quota, TokenInfo};
use herd_api::ClusterSpec;
use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::reconciler::Instance;

pub mod audit;
#[cfg(test)]
pub mod contract;
pub mod etcd;
pub mod idempotency;
pub mod kv;
pub mod migrate;
pub mod sqlite;
pub mod tokens;
pub mod usage;

/// A stored host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub info: HostInfo,
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    /// No new placements (`herd hosts cordon`, or a drain).
    pub cordoned: bool,
    /// Set while `herd hosts drain` empties the host: when it was asked for.
    pub drain_since_ms: Option<u64>,
}

/// A stored cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub generation: u64,
    pub spec: ClusterSpec,
}

/// A stored tenant (its usage is computed by [`crate::tenancy`], not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
    pub quota: Quota,
}

/// One cluster, by tenant and name.
pub type ClusterKey<'a> = (&'a str, &'a str);

/// The store's operations inside one transaction (a write) or snapshot (a read). Lists are
/// ordered as documented on each method, so both implementations answer alike; provided
/// methods are derived from the others and an implementation may answer them faster.
pub trait Tx {
    // Revision.

    /// The store's revision, bumped whenever any placement changes; agents see it as the
    /// generation of their desired set.
    fn revision(&self) -> Result<u64>;
    /// Adds one to the revision and returns it.
    fn bump_revision(&self) -> Result<u64>;
    /// The number of the last write batch this snapshot holds, where the implementation
    /// numbers them (SQLite: see [`Store::cluster_mark`]); `None` where it does not.
    fn batch(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    // Hosts.

    /// Inserts a host or updates its description and last-seen time (keeping its cordon and
    /// drain); returns whether it was new.
    fn upsert_host(&self, info: &HostInfo, now_ms: u64) -> Result<bool>;
    fn host(&self, id: &str) -> Result<Option<HostRow>>;
    /// Up to `limit` hosts after `after`, by id.
    fn hosts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<HostRow>>;
    /// Every host, by id.
    fn hosts(&self) -> Result<Vec<HostRow>> {
        self.hosts_page(None, usize::MAX)
    }
    /// Cordons or uncordons a host, and starts (`Some`) or ends (`None`) its drain; returns
    /// whether the host exists.
    fn set_host_schedule(&self, host: &str, cordoned: bool, drain_since_ms: Option<u64>) -> Result<bool>;
    /// Forgets a host: its row, subnet lease, log endpoint, reported conditions and state, and
    /// the purges still owed on it (its disks are gone with it). Its agent tokens are revoked;
    /// returns their ids, sorted.
    fn delete_host(&self, host: &str) -> Result<Vec<String>>;
    /// Records where a host's agent serves logs (replacing what it sent before).
    fn put_log_endpoint(&self, host: &str, ep: &LogEndpoint) -> Result<()>;
    /// Where a host's agent serves logs, if it said.
    fn log_endpoint(&self, host: &str) -> Result<Option<LogEndpoint>>;
    /// Every host's log endpoint, by host id.
    fn log_endpoints(&self) -> Result<HashMap<String, LogEndpoint>>;
    /// Replaces the conditions a host's agent reports (none: forgets them).
    fn set_conditions(&self, host: &str, conditions: &[String]) -> Result<()>;
    /// Every host's reported conditions, by host id.
    fn conditions(&self) -> Result<HashMap<String, Vec<String>>>;
    /// Replaces everything `host` last reported.
    fn replace_observed(&self, host: &str, observed: &[Observed]) -> Result<()>;
    /// Moves `host`'s stored report from `before` (what the store holds for it) to `now`,
    /// both sorted by instance, writing only the rows that differ. (A host starting a hundred
    /// containers had its whole report written again at each of their reports.)
    fn update_observed(&self, host: &str, before: &[Observed], now: &[Observed]) -> Result<()> {
        let _ = before;
        self.replace_observed(host, now)
    }
    /// What each host last reported, keyed by instance and host.
    fn observed(&self) -> Result<HashMap<(InstanceRef, String), Observed>>;

    // Subnet leases.

    /// Every host's container subnet lease.
    fn subnets(&self) -> Result<BTreeMap<String, Ipv4Net>>;
    /// `host`'s subnet lease, if it has one.
    fn subnets_of(&self, host: &str) -> Result<Option<Ipv4Net>>;
    /// Leases `subnet` to `host`, replacing its earlier lease. A subnet leased to another
    /// host, or a host not stored, is a [`Error::Conflict`].
    fn put_subnet(&self, host: &str, subnet: Ipv4Net) -> Result<()>;

    // Tenants.

    /// Stores a new tenant; `false` (and nothing changed) when it exists.
    fn insert_tenant(&self, name: &str, quota: &Quota, now_s: u64) -> Result<bool>;
    fn tenant(&self, name: &str) -> Result<Option<TenantRow>>;
    /// Up to `limit` tenants after `after`, by name.
    fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<TenantRow>>;
    fn tenant_exists(&self, name: &str) -> Result<bool> {
        Ok(self.tenant(name)?.is_some())
    }
    /// Every tenant's quota, by name.
    fn quotas(&self) -> Result<BTreeMap<String, Quota>> {
        Ok(self.tenants(None, usize::MAX)?.into_iter().map(|t| (t.name, t.quota)).collect())
    }
    /// Sets a tenant's quota; `false` when there is no such tenant.
    fn set_quota(&self, name: &str, quota: &Quota) -> Result<bool>;
    /// Deletes a tenant and revokes its tokens. A tenant that still owns a cluster is a
    /// [`Error::Conflict`] (and nothing changes).
    fn delete_tenant(&self, name: &str) -> Result<()>;
    /// What a tenant's clusters ask for together, leaving out cluster `except`.
    fn usage(&self, tenant: &str, except: Option<&str>) -> Result<Resources> {
        Ok(self
            .clusters(Some(tenant))?
            .iter()
            .filter(|c| Some(c.spec.name.as_str()) != except)
            .fold(Resources::default(), |total, c| total.plus(c.spec.requests())))
    }

    // Clusters.

    fn cluster(&self, tenant: &str, name: &str) -> Result<Option<ClusterRow>>;
    /// Up to `limit` clusters after the cursor `(tenant, name)`, of every tenant or one,
    /// ordered by tenant and name.
    fn clusters_page(&self, tenant: Option<&str>, after: Option<ClusterKey<'_>>, limit: usize) -> Result<Vec<ClusterRow>>;
    /// Every cluster, or one tenant's, ordered by tenant and name.
    fn clusters(&self, tenant: Option<&str>) -> Result<Vec<ClusterRow>> {
        self.clusters_page(tenant, None, usize::MAX)
    }
    /// How many clusters a tenant has.
    fn cluster_count(&self, tenant: &str) -> Result<u64> {
        Ok(self.clusters(Some(tenant))?.len() as u64)
    }
    /// Stores a cluster's spec at `generation`. Its tenant must exist ([`Error::Conflict`]).
    fn put_cluster(&self, generation: u64, spec: &ClusterSpec) -> Result<()>;
    /// Deletes a cluster with its leaving phases and reported state. Its instances must be
    /// gone first ([`Error::Conflict`]).
    fn delete_cluster(&self, tenant: &str, name: &str) -> Result<()>;

    // Instances.

    /// One cluster's instances, or every instance when `cluster` is `None`, ordered by
    /// tenant, cluster, role (its name) and ordinal.
    fn instances(&self, cluster: Option<ClusterKey<'_>>) -> Result<Vec<Instance>>;
    /// Every instance of one tenant, in the order of [`Tx::instances`].
    fn instances_of_tenant(&self, tenant: &str) -> Result<Vec<Instance>>;
    /// The instances placed on `host`, in the order of [`Tx::instances`].
    fn instances_on_host(&self, host: &str) -> Result<Vec<Instance>>;
    /// Inserts or updates an instance (placement, pending reason, resources). Its `placement`
    /// is counted here, not taken from `i`: it goes up by one each time the instance lands on a
    /// host it was not on (from another host or from pending), so a container left from an
    /// earlier placement is told apart from the current one (fencing). Its cluster must
    /// exist ([`Error::Conflict`]).
    fn put_instance(&self, i: &Instance) -> Result<()>;
    /// [`Tx::put_instance`] of an instance the caller knows the store does not hold (one an
    /// apply or a scale just planned), so an implementation may skip reading what its row
    /// held: SQLite does (a tenth of an apply of 10,000 instances), and refuses one it holds
    /// ([`Error::Conflict`]); the default writes it as `put_instance` does.
    fn put_new_instance(&self, i: &Instance) -> Result<()> {
        self.put_instance(i)
    }
    /// Deletes an instance and its leaving phase, if any.
    fn delete_instance(&self, i: &InstanceRef) -> Result<()>;
    /// How many instances wait for a host: one cluster's, or every cluster's.
    fn pending_count(&self, cluster: Option<ClusterKey<'_>>) -> Result<u64> {
        Ok(self.instances(cluster)?.iter().filter(|i| i.host.is_none()).count() as u64)
    }
    /// Every instance waiting for a host, in the order of [`Tx::instances`].
    fn unplaced(&self) -> Result<Vec<Instance>> {
        Ok(self.instances(None)?.into_iter().filter(|i| i.host.is_none()).collect())
    }
    /// Runs `f` over what every host's placed instances take, when this store keeps that sum
    /// as it writes ([`usage`]), and returns `true`; `false` (and `f` not run) when it does not
    /// (sum [`Tx::instances`] instead). `f` must not write to the store; it may take and leave
    /// placement's memo ([`usage::Usage::memo`]) and what changed.
    fn with_usage(&self, f: &mut dyn FnMut(&mut usage::Usage)) -> Result<bool> {
        let _ = f;
        Ok(false)
    }
    /// Whether some instance waits for a host.
    fn any_unplaced(&self) -> Result<bool> {
        Ok(self.pending_count(None)? > 0)
    }

    // Leaving phases.

    /// The stored [`Phase`] of every leaving instance of one cluster (or of all clusters): a
    /// DataNode decommissioning or a NodeManager draining. Written before any action is taken
    /// on it, so a restart resumes from here.
    fn leaving(&self, cluster: Option<ClusterKey<'_>>) -> Result<BTreeMap<InstanceRef, Phase>>;
    /// Whether any instance is leaving.
    fn any_leaving(&self) -> Result<bool> {
        Ok(!self.leaving(None)?.is_empty())
    }
    /// Stores (or replaces) the phase of a leaving instance.
    fn put_phase(&self, i: &InstanceRef, phase: &Phase) -> Result<()>;
    /// Forgets the phase of an instance: back in service (recommissioned) or gone.
    fn delete_phase(&self, i: &InstanceRef) -> Result<()>;

    // Purges.

    /// Asks `host`'s agent to remove the data folders of `i` once its container is gone (a
    /// deleted cluster's instance, or a DataNode HDFS declared `Decommissioned`).
    fn put_purge(&self, host: &str, i: &InstanceRef) -> Result<()>;
    /// The instances whose data folders `host`'s agent is to remove, ordered.
    fn purges(&self, host: &str) -> Result<Vec<InstanceRef>>;
    /// Whether some agent is still to remove the data folders of `i`.
    fn purge_pending(&self, i: &InstanceRef) -> Result<bool>;
    /// `host`'s agent removed the data folders of `i`.
    fn delete_purge(&self, host: &str, i: &InstanceRef) -> Result<()>;
    /// Every purge still owed, by host and instance, ordered.
    fn all_purges(&self) -> Result<Vec<(String, InstanceRef)>>;

    // Tokens (see [`tokens`]).

    /// Stores a new token by the hash of its secret; an id or hash already stored is a
    /// [`Error::Conflict`].
    fn insert_token(&self, token: &TokenInfo, hash: &str) -> Result<()>;
    /// The live (not revoked) token whose secret hashes to `hash`.
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    fn token(&self, id: &str) -> Result<Option<TokenInfo>>;
    /// Up to `limit` tokens after id `after`, by id.
    fn tokens(&self, after: Option<&str>, limit: usize) -> Result<Vec<TokenInfo>>;
    /// Marks a token revoked; `false` when there is no such token.
    fn revoke_token(&self, id: &str) -> Result<bool>;
    /// Whether any live admin token exists (else the orchestrator bootstraps one).
    fn has_live_admin(&self) -> Result<bool>;
    /// Every token's secret hash, by token id (for [`migrate`]).
    fn token_hashes(&self) -> Result<BTreeMap<String, String>>;

    // Audit trail (see [`audit`]).

    /// Appends a change to the trail, numbered after every earlier one.
    fn record_audit(&self, at_ms: u64, change: &audit::Change<'_>, detail: Option<&str>) -> Result<()>;
    /// Up to `limit` entries after entry `after`, oldest first.
    fn audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>>;

    // Idempotent answers (see [`idempotency`]).

    /// The answer stored for `(actor, key)`, unless older than [`idempotency::KEEP_MS`].
    fn idempotent(&self, actor: &str, key: &str, now_ms: u64) -> Result<Option<idempotency::Stored>>;
    /// Stores an answer, dropping answers past [`idempotency::KEEP_MS`].
    fn put_idempotent(&self, actor: &str, key: &str, stored: &idempotency::Stored, now_ms: u64) -> Result<()>;
    /// Every stored answer (expired ones too), ordered by actor and key (for [`migrate`]).
    fn idempotent_answers(&self) -> Result<Vec<idempotency::Row>>;
}

/// Which store to open (`--store`), with what it needs.
#[derive(Debug, Clone)]
pub enum Options {
    /// The embedded SQLite store at this path.
    Sqlite(std::path::PathBuf),
    /// An etcd cluster.
    Etcd(etcd::Options),
}

/// What one commit changed that agents may have to learn: the hosts whose placements or
/// purges moved and the tenants whose specs, instances or leaving phases did. Published after
/// the commit ([`Store::changes`]) so agents' watches ([`crate::state::State::watch`]) wake
/// for what concerns their host only. Recorded by both implementations' writes through
/// [`touch`], whichever thread runs the write closure.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub hosts: std::collections::BTreeSet<String>,
    /// Per tenant, its clusters whose spec, instances or leaving phases moved: every host of
    /// the tenant may see another desired set, and what is derived from one cluster is
    /// cached until a commit names it.
    pub clusters: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Touched {
    /// Whether a host running instances of `tenants` may see another desired set.
    pub fn concerns(&self, host: &str, tenants: &std::collections::BTreeSet<String>) -> bool {
        self.hosts.contains(host) || self.clusters.keys().any(|t| tenants.contains(t))
    }

    fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.clusters.is_empty()
    }
}

thread_local! {
    /// What the write closure running on this thread touched so far.
    static TOUCHED: std::cell::RefCell<Touched> = std::cell::RefCell::default();
}

/// Records that the running write changes what `host` (or every host of the cluster's
/// tenant) runs, and what is derived from `cluster` (tenant, name).
pub(crate) fn touch(host: Option<&str>, cluster: Option<(&str, &str)>) {
    TOUCHED.with_borrow_mut(|t| {
        // NB: a big apply names one cluster thousands of times: allocate once per name.
        if let Some(h) = host.filter(|h| !t.hosts.contains(*h)) {
            t.hosts.insert(h.to_string());
        }
        if let Some((tenant, name)) = cluster
            && !t.clusters.get(tenant).is_some_and(|names| names.contains(name))
        {
            t.clusters.entry(tenant.to_string()).or_default().insert(name.to_string());
        }
    });
}

/// Who learns of commits that touched something (see [`Touched`]).
struct Changes {
    sender: tokio::sync::broadcast::Sender<std::sync::Arc<Touched>>,
    /// How many commits touched a host or tenant: bumped before their writers are answered,
    /// so what is cached against it is never older than a write that returned.
    count: std::sync::atomic::AtomicU64,
    /// Per host and per cluster, the `count` of the last commit that touched it by name.
    marks: std::sync::Mutex<Marks>,
}

/// See [`Changes::marks`].
#[derive(Default)]
struct Marks {
    /// Touched by name (not through a tenant): a host with nothing placed is answered from
    /// memory until it moves.
    hosts: std::collections::HashMap<String, u64>,
    /// A cluster's derived desired containers and status are cached until it moves. With
    /// the count, the write batch the commit was in, where the store numbers them.
    clusters: HashMap<String, HashMap<String, (u64, Option<u64>)>>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes { sender: tokio::sync::broadcast::channel(1024).0, count: Default::default(), marks: Default::default() }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store(Backend, std::sync::Arc<Changes>);

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Etcd(etcd::Etcd),
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path`; see [`sqlite::Sqlite::open`].
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Store(Backend::Sqlite(sqlite::Sqlite::open(path)?), Default::default()))
    }

    /// A SQLite store in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        Ok(Store(Backend::Sqlite(sqlite::Sqlite::in_memory()?), Default::default()))
    }

    /// Connects to etcd (checking that it answers); see [`etcd`].
    pub fn etcd(options: etcd::Options) -> Result<Self> {
        Ok(Store(Backend::Etcd(etcd::Etcd::connect(options)?), Default::default()))
    }

    /// Opens the store `options` names.
    pub fn open_with(options: &Options) -> Result<Self> {
        match options {
            Options::Sqlite(path) => Self::open(path),
            Options::Etcd(o) => Self::etcd(o.clone()),
        }
    }

    /// The etcd store behind this handle, if it is one (for leader election).
    pub fn as_etcd(&self) -> Option<&etcd::Etcd> {
        match &self.0 {
            Backend::Etcd(e) => Some(e),
            Backend::Sqlite(_) => None,
        }
    }

    /// Which implementation this is: `sqlite` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match &self.0 {
            Backend::Sqlite(_) => "sqlite",
            Backend::Etcd(_) => "etcd",
        }
    }

    /// Runs `f` as one atomic operation: all it changes is stored, or (when it returns `Err`
    /// or panics) nothing. Returns once that is durable. `f` may run more than once (etcd
    /// runs it again when what it read changed before it could commit).
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&dyn Tx) -> Result<R> + Send + 'static,
    {
        let started = std::time::Instant::now();
        // What this run of `f` touched, taken on the thread that ran it (a run etcd repeats
        // starts afresh).
        let f = move |tx: &dyn Tx| {
            TOUCHED.take();
            let out = f(tx);
            (out, TOUCHED.take())
        };
        let f = move |tx: &dyn Tx| match f(tx) {
            (Ok(r), touched) => Ok((r, touched)),
            (Err(e), _) => Err(e),
        };
        // NB: in a task of its own: a caller dropped once its write is queued (a client that
        // gave up on its request) must not leave a commit uncounted. Uncounted, every host it
        // placed instances on was answered as unchanged, and never told (seen: the clusters
        // of a million-instance apply whose PUTs timed out).
        // SQLite counts the commit on its writer thread as soon as it is committed: counted
        // only once this task was woken, a reader in between saw the commit under the count
        // before it, and what it derived was taken as older than it was (under a storm of
        // applies, every freshly applied cluster was derived a second time).
        let store = self.clone();
        let task = tokio::spawn(async move {
            let out = match &store.0 {
                Backend::Sqlite(s) => {
                    let counter = store.clone();
                    s.write_then(f, move |(_, touched): &mut (R, Touched), batch| counter.count(std::mem::take(touched), Some(batch))).await
                }
                Backend::Etcd(e) => e.write(f).await,
            };
            crate::metrics::get().store("write", started.elapsed());
            let (out, touched) = out?;
            // NB: empty when counted already.
            store.count(touched, None);
            Ok(out)
        });
        task.await.map_err(Error::Worker)?
    }

    /// Counts a commit that touched what `touched` names (see [`Changes`]), committed in
    /// write batch `batch` where the store numbers them.
    fn count(&self, touched: Touched, batch: Option<u64>) {
        if !touched.is_empty() {
            // The count and the hosts' marks move together (under the marks' lock): a mark
            // is the count of its own commit, and whoever read a count below it read the
            // store before that commit was counted.
            {
                let mut marks = self.1.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mark = self.1.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                for h in &touched.hosts {
                    marks.hosts.insert(h.clone(), mark);
                }
                for (tenant, names) in &touched.clusters {
                    let per = marks.clusters.entry(tenant.clone()).or_default();
                    for n in names {
                        per.insert(n.clone(), (mark, batch));
                    }
                }
            }
            // No receiver is no error: nobody is watching.
            let _ = self.1.sender.send(std::sync::Arc::new(touched));
        }
    }

    /// Commits from now on that touched what agents run (see [`Touched`]). A receiver that
    /// lags behind gets `Lagged`: it must assume it was touched.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Touched>> {
        self.1.sender.subscribe()
    }

    /// How many commits so far touched a host or tenant (see [`Touched`]): what is derived
    /// from the store may be cached until it moves. A read's snapshot holds every commit this
    /// counted when it is read inside the read's closure before its first read (both backends
    /// begin the snapshot there): read earlier, a request that then waited for a store
    /// thread took what it derived for older than it was. (Under a storm of applies the wait
    /// was seconds, and each freshly applied 10,000-member cluster was derived twice.)
    pub fn touches(&self) -> u64 {
        self.1.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The [`Store::touches`] count of the last commit that touched `host` by name (0: none
    /// since this handle was opened).
    pub fn host_touched(&self, host: &str) -> u64 {
        let marks = self.1.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.hosts.get(host).copied().unwrap_or(0)
    }

    /// The [`Store::touches`] count of the last commit that touched any cluster of `tenant`
    /// (0: none since this handle was opened).
    pub fn tenant_touched(&self, tenant: &str) -> u64 {
        let marks = self.1.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.clusters.get(tenant).and_then(|per| per.values().map(|m| m.0).max()).unwrap_or(0)
    }

    /// The [`Store::touches`] count of the last commit that touched cluster `tenant/name`
    /// (its spec, instances or leaving phases; 0: none since this handle was opened).
    pub fn cluster_touched(&self, tenant: &str, name: &str) -> u64 {
        self.cluster_mark(tenant, name).0
    }

    /// [`Store::cluster_touched`], with the write batch its commit was in where the store
    /// numbers them ([`Tx::batch`]): a snapshot holding that batch holds the commit, though a
    /// count read before it did not count it yet. (Readers see a commit before it is
    /// counted: a heartbeat in between derived a freshly applied cluster, took the result as
    /// older than the commit, and the next derived all of it again.)
    pub fn cluster_mark(&self, tenant: &str, name: &str) -> (u64, Option<u64>) {
        let marks = self.1.marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.clusters.get(tenant).and_then(|per| per.get(name)).copied().unwrap_or((0, None))
    }

    /// Runs a read-only `f` over one consistent snapshot of the store, off the async
    /// threads; it waits for no writer.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Tx) -> Result<R> + Send + 'static,
    {
        let store = self.clone();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || store.read_now(f)).await.map_err(Error::Worker)?;
        crate::metrics::get().store("read", started.elapsed());
        out
    }

    /// [`Store::read`] on the calling thread (which may block).
    pub fn read_now<R: Send>(&self, f: impl FnOnce(&dyn Tx) -> Result<R> + Send) -> Result<R> {
        match &self.0 {
            Backend::Sqlite(s) => s.read_now(f),
            Backend::Etcd(e) => e.read_now(f),
        }
    }

    /// The store's revision as of the last commit through this handle.
    pub fn current_revision(&self) -> u64 {
        match &self.0 {
            Backend::Sqlite(s) => s.current_revision(),
            Backend::Etcd(e) => e.current_revision(),
        }
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // NB: plain data types with string keys only; serde_json cannot fail on them.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| Error::Corrupt { what, source })
}
