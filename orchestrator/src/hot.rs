//! Hot state: what agents report, held in memory. Host liveness (last heartbeat), each
//! host's description and subnet lease, what it last observed and the conditions it last
//! reported. A heartbeat changes only this (no store transaction, no fsync); the store keeps
//! intent (tenants, tokens, specs, placements, decommission phases, audit).
//!
//! Rebuilt at start from the store (hosts, leases, the last flushed reports) plus the first
//! heartbeats: every stored host starts with a fresh grace period of three intervals, as a
//! Nomad leader gives its nodes after an election. Reports are written behind, in one
//! transaction per second for the hosts whose report changed ([`Hot::take_dirty`]), so an
//! orchestrator restart resumes from a report at most a second older than it would have
//! been with a write per heartbeat — reports are re-sent every interval anyway.
//!
//! One `RwLock` over a map of hosts, held only to copy in or out (never across I/O or an
//! await).

use std::collections::BTreeMap;
use crate::Map as HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use herd_api::names::InstanceRef;
use herd_api::wire::{HostInfo, Observed};
use ipnet::Ipv4Net;

/// One host as the orchestrator knows it between heartbeats.
#[derive(Debug, Clone)]
pub struct HostLive {
    /// Shared: a view of hosts copies the pointer (it changes only when the host registers).
    pub info: Arc<HostInfo>,
    pub last_seen_ms: u64,
    pub subnet: Option<Ipv4Net>,
    /// Sorted by instance; replaced whole when the report changes.
    pub observed: Arc<Vec<Observed>>,
    pub conditions: Vec<String>,
    /// Cordoned or draining: nothing new is placed here (kept in the store too).
    pub cordoned: bool,
    /// The report changed since it was last written to the store.
    dirty: bool,
    /// The report as last written to the store (the same allocation as `observed` when
    /// nothing changed since): the write-behind writes only the rows that differ from it.
    flushed: Arc<Vec<Observed>>,
    /// A digest of the JSON `observed` was parsed from ([`report_digest`]), when it came as
    /// JSON; cleared when the host registers again or gets a new lease (which addresses its
    /// report may hold may change).
    report: Option<u64>,
    /// Heartbeats of this host being answered now, and when the last one was answered (see
    /// [`HostLive::age_ms`]); shared by the copies of this entry.
    answering: Arc<Answers>,
}

/// A host's heartbeats being answered ([`Heard::answering`]).
#[derive(Debug, Default)]
struct Answers {
    now: std::sync::atomic::AtomicU32,
    /// When the last one was answered (ms since the epoch).
    last_ms: std::sync::atomic::AtomicU64,
}

impl HostLive {
    /// What it reports of `instance` (the first such report). NB: found by halving, the
    /// reports being sorted by instance: a linear scan compared some thirty names per member
    /// of a cluster on a full fleet.
    pub fn report_of(&self, instance: &InstanceRef) -> Option<&Observed> {
        self.report_index(instance).map(|n| &self.observed[n])
    }

    /// Where [`HostLive::report_of`] finds `instance`'s report in `observed`.
    fn report_index(&self, instance: &InstanceRef) -> Option<usize> {
        let first = self.observed.partition_point(|o| &o.instance < instance);
        self.observed.get(first).is_some_and(|o| &o.instance == instance).then_some(first)
    }

    /// Heard from at `now_ms`: whether it was ready before (heard within `lost_after_ms`),
    /// and the guard that counts it heard from until its heartbeat is answered.
    fn seen(&mut self, now_ms: u64, lost_after_ms: u64) -> Heard {
        let was_ready = self.age_ms(now_ms) <= lost_after_ms;
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        self.answering.now.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answering = Answering { answers: self.answering.clone(), since_ms: now_ms, started: std::time::Instant::now() };
        Heard { was_ready, answering }
    }

    /// Milliseconds since the host was last heard from: 0 while one of its heartbeats is
    /// being answered, and counted from when the last was answered, not from when it came
    /// (its agent waits for the answer, and sends its next heartbeat an interval after it).
    /// Counting from the heartbeat's arrival, a storm of applies whose replies took 10 to
    /// 25 s to compute had 15,000 to 22,000 of 30,000 hosts `lost` in the middle of the
    /// apply: no placements there, and a scheduling pass for each coming back.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        if self.answering.now.load(SeqCst) > 0 {
            return 0;
        }
        now_ms.saturating_sub(self.last_seen_ms.max(self.answering.last_ms.load(SeqCst)))
    }
}

/// A heartbeat recorded ([`Hot::heartbeat_as`], [`Hot::heartbeat_same`]).
pub struct Heard {
    /// Whether the host was ready before (`false`: it is back from `lost`).
    pub was_ready: bool,
    /// Hold until the heartbeat is answered.
    pub answering: Answering,
}

/// Held while one of a host's heartbeats is answered; dropped once the answer is made, which
/// is when the host is heard from last: the heartbeat's time (on the clock it was recorded
/// by) plus the time answering it took.
pub struct Answering {
    answers: Arc<Answers>,
    since_ms: u64,
    started: std::time::Instant,
}

impl Drop for Answering {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        let answered = self.since_ms.saturating_add(self.started.elapsed().as_millis() as u64);
        self.answers.last_ms.fetch_max(answered, SeqCst);
        self.answers.now.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
impl Answering {
    /// The same guard, as if answering had begun `by` earlier.
    fn begun_earlier(mut self, by: std::time::Duration) -> Self {
        self.started = self.started.checked_sub(by).unwrap_or(self.started);
        self
    }
}

/// A digest of a report's JSON as it came, keyed with a secret chosen at start (so no agent
/// can make two reports collide): a host reports the same containers heartbeat after
/// heartbeat, and bytes already parsed need no parsing again ([`Hot::heartbeat_same`]).
pub fn report_digest(json: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static KEY: std::sync::LazyLock<std::collections::hash_map::RandomState> = std::sync::LazyLock::new(Default::default);
    let mut h = KEY.build_hasher();
    h.write(json.as_bytes());
    h.finish()
}

/// A host's report to write behind.
pub struct DirtyReport {
    pub host: String,
    pub observed: Arc<Vec<Observed>>,
    /// What the store holds for the host (see [`Hot::flushed`]).
    pub before: Arc<Vec<Observed>>,
    pub conditions: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Hot {
    hosts: RwLock<HashMap<String, HostLive>>,
    /// Per cluster (tenant, name): its version, bumped whenever a report about one of its
    /// instances changes, so what is derived from reports can be cached until then; and which
    /// instances' reports changed at the last versions ([`Hot::changed_since`]).
    /// By tenant, then cluster: looked up by `&str` (every heartbeat answered from memory asks
    /// for each cluster it runs).
    versions: std::sync::Mutex<HashMap<String, HashMap<String, Reports>>>,
    /// Bumped whenever a host's rack or data disks change, or a host is removed: what members'
    /// configs are rendered from besides their reports (see [`Hot::hosts_epoch`]).
    hosts_epoch: std::sync::atomic::AtomicU64,
    /// Per tenant: bumped with the versions of its clusters (see [`Hot::tenant_version`]).
    tenant_versions: std::sync::Mutex<HashMap<String, u64>>,
    /// Bumped whenever a host's subnet or underlay address changes, or a host is removed.
    addresses: std::sync::atomic::AtomicU64,
    /// Every host's subnet lease, for leasing the next one without a scan.
    leases: std::sync::Mutex<std::collections::BTreeSet<Ipv4Net>>,
}

/// Changes kept per cluster for [`Hot::changed_since`]: past them, a derivation compares
/// every member.
const CHANGES_KEPT: usize = 4096;

/// One cluster's reports: see [`Hot::cluster_version`] and [`Hot::changed_since`].
#[derive(Debug, Default)]
struct Reports {
    version: u64,
    /// (version, instance, host), oldest first.
    log: std::collections::VecDeque<(u64, InstanceRef, String)>,
    /// The newest version with a change no longer kept.
    dropped: u64,
}

/// The instances whose report differs between `before` and `after` (both sorted by
/// instance): gone, new, or changed. (All of a host's instances were taken as changed when
/// one was: with a hundred clusters on a fleet, one instance starting made every cluster on
/// its host be derived again.)
fn changed<'a>(before: &'a [Observed], after: &'a [Observed]) -> impl Iterator<Item = &'a InstanceRef> {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || loop {
        match (before.get(i), after.get(j)) {
            (None, None) => return None,
            (Some(x), None) => {
                i += 1;
                return Some(&x.instance);
            }
            (None, Some(y)) => {
                j += 1;
                return Some(&y.instance);
            }
            (Some(x), Some(y)) => match x.instance.cmp(&y.instance) {
                std::cmp::Ordering::Less => {
                    i += 1;
                    return Some(&x.instance);
                }
                std::cmp::Ordering::Greater => {
                    j += 1;
                    return Some(&y.instance);
                }
                std::cmp::Ordering::Equal => {
                    (i, j) = (i + 1, j + 1);
                    if x != y {
                        return Some(&x.instance);
                    }
                }
            },
        }
    })
}

impl Hot {
    /// From what the store holds: hosts (given `now_ms` as their last heartbeat: a fresh
    /// grace period), leases, and the reports last written.
    pub fn load(
        hosts: Vec<HostInfo>,
        subnets: BTreeMap<String, Ipv4Net>,
        mut observed: std::collections::HashMap<(InstanceRef, String), Observed>,
        mut conditions: std::collections::HashMap<String, Vec<String>>,
        now_ms: u64,
    ) -> Self {
        let mut by_host: HashMap<String, Vec<Observed>> = HashMap::default();
        for ((_, host), o) in observed.drain() {
            by_host.entry(host).or_default().push(o);
        }
        let map = hosts
            .into_iter()
            .map(|info| {
                let id = info.id.clone();
                let mut observed = by_host.remove(&id).unwrap_or_default();
                observed.sort_by(|a, b| a.instance.cmp(&b.instance));
                let observed = Arc::new(observed);
                let live = HostLive {
                    subnet: subnets.get(&id).copied(),
                    flushed: observed.clone(),
                    observed,
                    conditions: conditions.remove(&id).unwrap_or_default(),
                    cordoned: false,
                    last_seen_ms: now_ms,
                    dirty: false,
                    report: None,
                    answering: Arc::default(),
                    info: Arc::new(info),
                };
                (id, live)
            })
            .collect();
        let leases = subnets.values().copied().collect();
        Hot {
            hosts: RwLock::new(map),
            versions: Default::default(),
            hosts_epoch: Default::default(),
            tenant_versions: Default::default(),
            addresses: Default::default(),
            leases: std::sync::Mutex::new(leases),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HostLive>> {
        self.hosts.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HostLive>> {
        self.hosts.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many hosts are known (registered and not deleted).
    pub fn count(&self) -> usize {
        self.read().len()
    }

    /// A host registered (again): its description, lease and a heartbeat now.
    pub fn register(&self, info: HostInfo, subnet: Option<Ipv4Net>, now_ms: u64) {
        let mut hosts = self.write();
        match hosts.get_mut(&info.id) {
            Some(h) => {
                if h.info.address != info.address || subnet.is_some_and(|s| h.subnet != Some(s)) {
                    self.addresses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if h.info.rack != info.rack || h.info.data_disks.len() != info.data_disks.len() {
                    self.hosts_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                h.info = Arc::new(info);
                if subnet.is_some() {
                    h.subnet = subnet;
                }
                h.last_seen_ms = now_ms;
                h.report = None;
            }
            None => {
                let live = HostLive {
                    subnet,
                    observed: Arc::default(),
                    flushed: Arc::default(),
                    conditions: vec![],
                    cordoned: false,
                    last_seen_ms: now_ms,
                    dirty: false,
                    report: None,
                    answering: Arc::default(),
                    info: Arc::new(info.clone()),
                };
                hosts.insert(info.id, live);
            }
        }
    }

    /// Records a heartbeat. `None` for an unknown host (it must register); else whether the
    /// host was ready before (`false`: it is back from `lost`, room may have come back).
    pub fn heartbeat(
        &self,
        host: &str,
        observed: Vec<Observed>,
        conditions: Vec<String>,
        now_ms: u64,
        lost_after_ms: u64,
    ) -> Option<bool> {
        self.heartbeat_as(host, observed, None, conditions, now_ms, lost_after_ms).map(|heard| heard.was_ready)
    }

    /// A heartbeat whose report is, byte for byte, the JSON last parsed for `host`
    /// (`report`, its [`report_digest`]): the host is seen, its conditions taken, its report
    /// kept as it is. `None` when it is not that report (parse it: [`Hot::heartbeat_as`]) or
    /// the host is unknown.
    pub fn heartbeat_same(&self, host: &str, report: u64, conditions: &[String], now_ms: u64, lost_after_ms: u64) -> Option<Heard> {
        let mut hosts = self.write();
        let h = hosts.get_mut(host).filter(|h| h.report == Some(report))?;
        let heard = h.seen(now_ms, lost_after_ms);
        if h.conditions != conditions {
            h.conditions = conditions.to_vec();
            h.dirty = true;
        }
        Some(heard)
    }

    /// [`Hot::heartbeat`] for a report parsed from JSON with digest `report` (`None`: it
    /// came otherwise), recorded with it; the host is counted heard from until the returned
    /// guard is dropped.
    pub fn heartbeat_as(
        &self,
        host: &str,
        observed: Vec<Observed>,
        report: Option<u64>,
        conditions: Vec<String>,
        now_ms: u64,
        lost_after_ms: u64,
    ) -> Option<Heard> {
        let mut observed = observed;
        observed.sort_by(|a, b| a.instance.cmp(&b.instance));
        let mut touched: Vec<InstanceRef> = Vec::new();
        let heard = {
            let mut hosts = self.write();
            let h = hosts.get_mut(host)?;
            let heard = h.seen(now_ms, lost_after_ms);
            h.report = report;
            if *h.observed != observed {
                touched.extend(changed(&h.observed, &observed).cloned());
                h.observed = Arc::new(observed);
                h.dirty = true;
            }
            if h.conditions != conditions {
                h.conditions = conditions;
                h.dirty = true;
            }
            heard
        };
        if !touched.is_empty() {
            touched.sort();
            touched.dedup();
            let mut tenants: Vec<&String> = touched.iter().map(|i| &i.tenant).collect();
            tenants.dedup();
            {
                let mut per = self.tenant_versions.lock().unwrap_or_else(PoisonError::into_inner);
                for t in tenants {
                    *per.entry(t.clone()).or_default() += 1;
                }
            }
            let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            for one in touched.chunk_by(|a, b| a.tenant == b.tenant && a.cluster == b.cluster) {
                let r = versions.entry(one[0].tenant.clone()).or_default().entry(one[0].cluster.clone()).or_default();
                r.version += 1;
                for i in one {
                    r.log.push_back((r.version, i.clone(), host.to_string()));
                }
                while r.log.len() > CHANGES_KEPT {
                    if let Some((v, _, _)) = r.log.pop_front() {
                        r.dropped = v;
                    }
                }
            }
        }
        Some(heard)
    }

    /// The version of what hosts report about cluster `tenant/name` (see [`Hot::heartbeat`]):
    /// moves when a report about one of its instances changes, not when another cluster's on
    /// the same host does.
    pub fn cluster_version(&self, tenant: &str, name: &str) -> u64 {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions.get(tenant).and_then(|per| per.get(name)).map(|r| r.version).unwrap_or(0)
    }

    /// The instances of cluster `tenant/name` whose report changed after its version
    /// `since`, with the host that reported each (once per change); `None` when that is
    /// further back than what is kept ([`CHANGES_KEPT`]).
    pub fn changed_since(&self, tenant: &str, name: &str, since: u64) -> Option<Vec<(InstanceRef, String)>> {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(r) = versions.get(tenant).and_then(|per| per.get(name)) else {
            return (since == 0).then(Vec::new);
        };
        if r.dropped > since {
            return None;
        }
        Some(r.log.iter().filter(|(v, _, _)| *v > since).map(|(_, i, h)| (i.clone(), h.clone())).collect())
    }

    /// Drops the change logs ([`Hot::changed_since`]) of the clusters `keep` does not name
    /// (deleted: nothing is derived from them any more). Their versions stay, so nothing
    /// derived before passes for fresh; a dropped log only makes `changed_since` answer
    /// `None` (compare every member). (A deleted cluster's last 4,096 changes were kept for
    /// ever, refilled by its containers' reports until they were gone.)
    pub fn prune_changes(&self, keep: impl Fn(&str, &str) -> bool) {
        // NB: asked outside the lock: `keep` may take locks of its own.
        let logged: Vec<(String, String)> = {
            let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            let clusters = versions.iter().flat_map(|(t, per)| per.iter().map(move |(n, r)| (t, n, r)));
            clusters.filter(|(_, _, r)| !r.log.is_empty()).map(|(t, n, _)| (t.clone(), n.clone())).collect()
        };
        let gone: Vec<(String, String)> = logged.into_iter().filter(|(t, n)| !keep(t, n)).collect();
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        for key in gone {
            if let Some(r) = versions.get_mut(&key.0).and_then(|per| per.get_mut(&key.1)) {
                r.dropped = r.version;
                r.log = std::collections::VecDeque::new();
            }
        }
    }

    /// Moves whenever a host's rack or data disks change or a host is removed.
    pub fn hosts_epoch(&self) -> u64 {
        self.hosts_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The version of what hosts report about tenant `tenant`'s instances: moves whenever one
    /// of its clusters' does.
    pub fn tenant_version(&self, tenant: &str) -> u64 {
        let per = self.tenant_versions.lock().unwrap_or_else(PoisonError::into_inner);
        per.get(tenant).copied().unwrap_or(0)
    }

    /// Moves whenever any host's subnet lease or underlay address changes or a host is
    /// removed: what routes are built from.
    pub fn addresses_version(&self) -> u64 {
        self.addresses.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `host`'s lease if `keep` accepts it, else a new one from `lease` (given every lease
    /// held), recorded at once; `Ok((subnet, previous))`.
    pub fn lease<E>(
        &self,
        host: &str,
        keep: impl Fn(Ipv4Net) -> bool,
        lease: impl FnOnce(&std::collections::BTreeSet<Ipv4Net>) -> Result<Ipv4Net, E>,
    ) -> Result<(Ipv4Net, Option<Ipv4Net>), E> {
        let current = self.read().get(host).and_then(|h| h.subnet);
        if let Some(s) = current.filter(|s| keep(*s)) {
            return Ok((s, None));
        }
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let subnet = lease(&leases)?;
        leases.insert(subnet);
        if let Some(old) = current {
            leases.remove(&old);
        }
        if let Some(h) = self.write().get_mut(host) {
            h.subnet = Some(subnet);
            // Which addresses its report may hold changed: check the next one.
            h.report = None;
        }
        self.addresses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok((subnet, current))
    }

    /// Cordons or uncordons `host` (the store has it already).
    pub fn set_cordoned(&self, host: &str, cordoned: bool) {
        if let Some(h) = self.write().get_mut(host) {
            h.cordoned = cordoned;
        }
    }

    /// Forgets a deleted host and frees its subnet lease.
    pub fn remove(&self, host: &str) {
        let gone = self.write().remove(host);
        self.addresses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.hosts_epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(subnet) = gone.and_then(|h| h.subnet) {
            self.leases.lock().unwrap_or_else(PoisonError::into_inner).remove(&subnet);
        }
    }

    /// Moves `host`'s last heartbeat `ms` into the past (tests of lost hosts).
    #[cfg(test)]
    pub fn age(&self, host: &str, ms: u64) {
        if let Some(h) = self.write().get_mut(host) {
            h.last_seen_ms = h.last_seen_ms.saturating_sub(ms);
            let answered = &h.answering.last_ms;
            answered.store(answered.load(std::sync::atomic::Ordering::SeqCst).saturating_sub(ms), std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Every subnet leased.
    pub fn leased(&self) -> std::collections::BTreeSet<Ipv4Net> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether `host` is known.
    pub fn knows(&self, host: &str) -> bool {
        self.read().contains_key(host)
    }

    /// `host`'s subnet lease, if it is known and has one.
    pub fn subnet(&self, host: &str) -> Option<Ipv4Net> {
        self.read().get(host).and_then(|h| h.subnet)
    }

    /// One host, copied.
    pub fn host(&self, host: &str) -> Option<HostLive> {
        self.read().get(host).cloned()
    }

    /// Runs `f` over every host (under the read lock: copy out, do not block).
    pub fn with_hosts<R>(&self, f: impl FnOnce(&HashMap<String, HostLive>) -> R) -> R {
        f(&self.read())
    }

    /// What each member's own host last reported about it, keyed by (instance, host), with
    /// each of those hosts' description and milliseconds since its last heartbeat. Only the
    /// members' own reports are copied: a host also reports other clusters' instances (30 or
    /// more of them on a full fleet), and copying them all made one 10,000-member cluster's
    /// view copy 300,000 reports.
    pub fn view<'a>(&self, members: impl IntoIterator<Item = (&'a InstanceRef, &'a str)>, now_ms: u64) -> HostsView {
        let map = self.read();
        let mut out = HostsView::default();
        for (instance, id) in members {
            let Some(h) = map.get(id) else { continue };
            if !out.hosts.contains_key(id) {
                out.hosts.insert(id.to_string(), (h.info.clone(), h.age_ms(now_ms)));
            }
            if let Some(n) = h.report_index(instance) {
                out.observed.insert(instance.clone(), (h.info.clone(), h.observed.clone(), n));
            }
        }
        out
    }

    /// The reports that changed since the last call, marked clean.
    pub fn take_dirty(&self) -> Vec<DirtyReport> {
        let mut hosts = self.write();
        hosts
            .iter_mut()
            .filter(|(_, h)| h.dirty)
            .map(|(id, h)| {
                h.dirty = false;
                DirtyReport { host: id.clone(), observed: h.observed.clone(), before: h.flushed.clone(), conditions: h.conditions.clone() }
            })
            .collect()
    }

    /// Records that `written` reports are what the store now holds.
    pub fn flushed(&self, written: &[DirtyReport]) {
        let mut hosts = self.write();
        for d in written {
            // NB: only over what was diffed against: a host deleted and registered again
            // meanwhile holds nothing in the store.
            if let Some(h) = hosts.get_mut(&d.host)
                && Arc::ptr_eq(&h.flushed, &d.before)
            {
                h.flushed = d.observed.clone();
            }
        }
    }

    /// Marks reports dirty again after a failed write.
    pub fn mark_dirty(&self, hosts: impl IntoIterator<Item = String>) {
        let mut map = self.write();
        for id in hosts {
            if let Some(h) = map.get_mut(&id) {
                h.dirty = true;
            }
        }
    }
}

/// Some hosts as the Hadoop side needs them: description, age and reports.
#[derive(Debug, Default)]
pub struct HostsView {
    /// id → (description, ms since its last heartbeat).
    pub hosts: HashMap<String, (Arc<HostInfo>, u64)>,
    /// Each member's report by its own host: instance → (that host, its whole report as the
    /// view was taken, where the member's is in it). NB: keyed by instance alone, so a look-up
    /// makes no key (one per member, three names and a host each, was most of a derivation's
    /// allocations); the host's report is shared, not copied per member (a copy of each
    /// member's report and its host's name, kept with each cluster's status, was some
    /// ten allocations per instance of the fleet).
    observed: HashMap<InstanceRef, Shared>,
}

/// A member's report in a [`HostsView`]: its host, the host's whole report, and where the
/// member's is in it.
type Shared = (Arc<HostInfo>, Arc<Vec<Observed>>, usize);

impl HostsView {
    /// What `host` reports of `instance`, when `host` is the one it was taken from.
    pub fn report(&self, instance: &InstanceRef, host: &str) -> Option<&Observed> {
        self.observed.get(instance).filter(|(info, _, _)| info.id == host).map(|(_, report, n)| &report[*n])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use herd_api::Role;
    use herd_api::wire::ContainerState;

    /// A report of `instance` in `state` and nothing else (for tests here and elsewhere).
    pub(crate) fn observed(instance: InstanceRef, state: ContainerState) -> Observed {
        Observed {
            container_id: format!("id-{}", instance.name),
            instance,
            state,
            started_at: None,
            exit_code: None,
            error: None,
            ip: None,
            config_hash: None,
            live_hash: None,
            hadoop: None,
        }
    }

    fn report(cluster: &str, n: u32, state: ContainerState) -> Observed {
        observed(InstanceRef::new("t", cluster, Role::Datanode, n), state)
    }

    #[test]
    fn a_hosts_report_of_an_instance_is_found_in_its_sorted_reports_and_a_view_keeps_its_host() {
        let hot = Hot::default();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"})).expect("host");
        hot.register(info, None, 0);
        // Reported out of order, one instance twice (two containers): the first one counts.
        let mut twice = report("b", 1, ContainerState::Exited);
        twice.container_id = "second".into();
        let reports = vec![report("c", 0, ContainerState::Running), report("b", 1, ContainerState::Running), twice, report("a", 5, ContainerState::Created)];
        hot.heartbeat("h1", reports, vec![], 1, 9_000);
        let live = hot.host("h1").expect("host");
        let b1 = InstanceRef::new("t", "b", Role::Datanode, 1);
        assert_eq!(live.report_of(&b1).map(|o| o.state), Some(ContainerState::Running));
        for (cluster, n) in [("a", 5), ("c", 0)] {
            let i = InstanceRef::new("t", cluster, Role::Datanode, n);
            assert_eq!(live.report_of(&i).map(|o| &o.instance), Some(&i));
        }
        for (cluster, n) in [("a", 4), ("b", 2), ("d", 0), ("0", 0)] {
            assert!(live.report_of(&InstanceRef::new("t", cluster, Role::Datanode, n)).is_none(), "{cluster}/{n}");
        }
        // A view takes each member's report from its own host only.
        let view = hot.view([(&b1, "h1")], 2);
        assert_eq!(view.report(&b1, "h1").map(|o| o.state), Some(ContainerState::Running));
        assert!(view.report(&b1, "h2").is_none(), "a report from another host than the member's");
        assert!(view.hosts.contains_key("h1"));
    }

    #[test]
    fn a_report_moves_the_version_of_the_clusters_whose_instances_changed_only() {
        let hot = Hot::default();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"})).expect("host");
        hot.register(info, None, 0);
        let created = |c: &str, n| report(c, n, ContainerState::Created);
        hot.heartbeat("h1", vec![created("a", 0), created("b", 0), created("c", 0)], vec![], 1, 9_000);
        let versions = |hot: &Hot| ["a", "b", "c"].map(|c| hot.cluster_version("t", c));
        let before = versions(&hot);
        assert_eq!(before, [1, 1, 1]);
        // b's instance starts, c's goes, a's stays as it was, and a new one of a's appears.
        hot.heartbeat("h1", vec![created("a", 0), created("a", 1), report("b", 0, ContainerState::Running)], vec![], 2, 9_000);
        assert_eq!(versions(&hot), [2, 2, 2]);
        // Only b's changes.
        hot.heartbeat("h1", vec![created("a", 0), created("a", 1), report("b", 0, ContainerState::Exited)], vec![], 3, 9_000);
        assert_eq!(versions(&hot), [2, 3, 2]);
        let seen: Vec<String> = changed(&[created("a", 0), created("b", 1)], &[created("a", 0), report("b", 1, ContainerState::Running), created("c", 2)])
            .map(|i| format!("{}/{}", i.cluster, i.name))
            .collect();
        assert_eq!(seen, ["b/datanode-1", "c/datanode-2"]);
    }

    /// A host whose heartbeat is being answered is not `lost` however long the answer takes
    /// (its agent waits for it), and ages from when it was answered.
    #[test]
    fn a_host_counts_as_heard_from_while_its_heartbeat_is_answered() {
        let hot = Hot::default();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"})).expect("host");
        hot.register(info, None, 0);
        assert!(hot.heartbeat_as("nobody", vec![], None, vec![], 1_000, 9_000).is_none());
        let age = |at| hot.host("h1").expect("host").age_ms(at);
        let ready = |at| crate::placement::ready(&hot.host("h1").expect("host"), at, 9_000);
        let one = hot.heartbeat_as("h1", vec![], None, vec![], 1_000, 9_000).expect("known").answering;
        let two = hot.heartbeat_as("h1", vec![], None, vec![], 1_000, 9_000).expect("known").answering;
        assert_eq!(age(100_000), 0, "two heartbeats being answered");
        assert!(ready(100_000));
        drop(one);
        assert_eq!(age(100_000), 0, "one still being answered");
        // Answering the second took (at least) 5 s: the host is heard from when it was answered.
        drop(two.begun_earlier(std::time::Duration::from_secs(5)));
        assert!((1..=94_000).contains(&age(100_000)), "aged from the answer, not from the heartbeat at 1 s: {}", age(100_000));
        assert!(!ready(100_000));
        assert!(ready(11_000));
        assert!(!ready(20_000));
    }

    #[test]
    fn a_report_is_taken_again_unparsed_only_while_it_is_the_one_last_parsed_for_its_host() {
        let hot = Hot::default();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"})).expect("host");
        hot.register(info.clone(), None, 0);
        let (created, running) = (vec![report("a", 0, ContainerState::Created)], vec![report("a", 0, ContainerState::Running)]);
        let (one, two) = (report_digest("[1]"), report_digest("[2]"));
        assert_ne!(one, two);
        assert_eq!(hot.heartbeat_same("h1", one, &[], 1, 9_000).map(|h| h.was_ready), None, "nothing parsed yet");
        assert_eq!(hot.heartbeat_as("h1", created.clone(), Some(one), vec![], 1, 9_000).map(|h| h.was_ready), Some(true));
        assert_eq!(hot.heartbeat_same("h1", one, &["disk full".to_string()], 20_000, 9_000).map(|h| h.was_ready), Some(false), "seen again, after being lost");
        let h = hot.host("h1").expect("host");
        assert_eq!((h.last_seen_ms, &h.conditions, &*h.observed), (20_000, &vec!["disk full".to_string()], &created));
        assert_eq!(hot.heartbeat_same("h1", two, &[], 20_001, 9_000).map(|h| h.was_ready), None, "another report is parsed");
        assert_eq!(hot.heartbeat_same("other", one, &[], 20_001, 9_000).map(|h| h.was_ready), None, "an unknown host registers");
        // A report that came otherwise, or a registration (a new lease), forgets the digest.
        hot.heartbeat("h1", running.clone(), vec![], 20_002, 9_000);
        assert_eq!(hot.heartbeat_same("h1", one, &[], 20_003, 9_000).map(|h| h.was_ready), None);
        assert_eq!(*hot.host("h1").expect("host").observed, running);
        hot.heartbeat_as("h1", running.clone(), Some(two), vec![], 20_004, 9_000);
        hot.register(info, None, 20_005);
        assert_eq!(hot.heartbeat_same("h1", two, &[], 20_006, 9_000).map(|h| h.was_ready), None);
        // So does a new lease.
        hot.heartbeat_as("h1", running, Some(two), vec![], 20_007, 9_000);
        assert_eq!(hot.heartbeat_same("h1", two, &[], 20_008, 9_000).map(|h| h.was_ready), Some(true));
        let net: Ipv4Net = "10.88.7.0/24".parse().expect("net");
        assert_eq!(hot.lease("h1", |_| false, |_| Ok::<_, String>(net)), Ok((net, None)));
        assert_eq!(hot.heartbeat_same("h1", two, &[], 20_009, 9_000).map(|h| h.was_ready), None);
    }

    #[test]
    fn a_pruned_clusters_changes_are_forgotten_and_its_version_kept() {
        let hot = Hot::default();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi"})).expect("host");
        hot.register(info, None, 0);
        hot.heartbeat("h1", vec![report("a", 0, ContainerState::Created), report("b", 0, ContainerState::Created)], vec![], 1, 9_000);
        hot.heartbeat("h1", vec![report("a", 0, ContainerState::Running), report("b", 0, ContainerState::Running)], vec![], 2, 9_000);
        let one = |c: &str| Some(vec![(InstanceRef::new("t", c, Role::Datanode, 0), "h1".to_string())]);
        assert_eq!((hot.changed_since("t", "a", 1), hot.changed_since("t", "b", 1)), (one("a"), one("b")));
        hot.prune_changes(|_, name| name == "a");
        assert_eq!(hot.changed_since("t", "a", 1), one("a"), "kept");
        assert_eq!(hot.changed_since("t", "b", 1), None, "forgotten: every member is compared");
        assert_eq!((hot.cluster_version("t", "a"), hot.cluster_version("t", "b")), (2, 2));
        // Changes after the prune are logged again.
        hot.heartbeat("h1", vec![report("a", 0, ContainerState::Running), report("b", 0, ContainerState::Exited)], vec![], 3, 9_000);
        assert_eq!(hot.changed_since("t", "b", 2), one("b"));
    }
}
