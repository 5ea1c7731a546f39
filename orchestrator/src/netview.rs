//! Network plans at scale: each tenant's view (routes to the hosts holding its instances, the
//! owner of each of their container addresses) is built once and shared by every host that
//! runs the tenant, and a host that holds an older version of it is told only what changed.
//!
//! ```text
//!  heartbeat of host h ──> tenants on h: {A, B}
//!                          TenantNet A (version a, built from one snapshot, cached)  ─┐
//!                          TenantNet B (version b)                                    ─┤ HostNet h
//!                          h's lease                                                  ─┘
//!  h was told (lease, {A: a0, B: b}) ──> A's log holds every key changed from a0 to a:
//!      each such key is looked up in the union now ──> upsert or remove  (NetworkDelta)
//!  h was told another lease or other tenants, or a0 left A's log ──> the plan whole
//! ```
//!
//! Building a plan per heartbeat was O(tenant): with one tenant on 10,000 networked hosts
//! every heartbeat read its 10,000 instances and sent a 700 KB plan, and heartbeats fell to
//! 200 a second. A view is built again:
//! - at once when a commit touched one of the tenant's clusters ([`Store::tenant_touched`]:
//!   placements move routes and members);
//! - at most every [`REFRESH_MS`] when what hosts report about its instances changed
//!   ([`Hot::tenant_version`]: a container started and got its address) or a host's subnet or
//!   address did ([`Hot::addresses_version`]). That is 200 ms on top of the heartbeat that
//!   carries the plan anyway, and a built view that finds the same routes and members keeps its
//!   version, so hosts are told nothing.
//!
//! Versions come from one counter, so a version names one content of one tenant's view in
//! this process; a restart starts the hosts from full plans (their generations are unknown).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use crate::Map as HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use herd_api::names::InstanceRef;
use herd_api::network::{HostNetwork, Member, NetworkDelta, NetworkPlan, Route, SharedList};
use ipnet::Ipv4Net;

use crate::error::Result;
use crate::hot::Hot;
use crate::network::Settings;
use crate::store::{Store, Tx};

/// Report- and address-driven changes build a tenant's view again at most this often.
pub const REFRESH_MS: u64 = crate::desired::REDERIVE_MS;

/// Steps a view keeps for deltas (at most one per [`REFRESH_MS`] for reports: minutes); a host
/// further behind is told the plan whole.
const LOG_STEPS: usize = 1024;

/// A view's log holds at most this many keys beyond the view's size: a host further behind
/// than that many changes is told the plan whole, which is no bigger.
const LOG_SLACK: usize = 1024;

/// Where view versions come from (0 is none).
static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// Deltas a view keeps for the versions hosts were told (a host heartbeats every few seconds,
/// the view moves at most every [`REFRESH_MS`] for reports).
const DELTAS_CACHED: usize = 256;

/// A commit label that matches no mark: the view is built again when next asked.
const UNKNOWN: u64 = u64::MAX;

/// What a plan entry is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Route(Ipv4Net),
    Member(Ipv4Addr),
}

/// One step of a view: the keys whose entry changed from version `from` to `to`.
#[derive(Debug)]
struct Step {
    from: u64,
    keys: Vec<Key>,
}

/// One placed instance as a view needs it: its host's subnet and underlay address, and the
/// address that host reports for it.
#[derive(Debug, Clone)]
pub struct PlacedNet {
    pub instance: InstanceRef,
    pub host: String,
    pub subnet: Option<Ipv4Net>,
    pub address: Option<Ipv4Addr>,
    pub ip: Option<Ipv4Addr>,
}

/// Routes by subnet and members by address.
type Contents = (BTreeMap<Ipv4Net, Route>, BTreeMap<Ipv4Addr, Member>);

/// A tenant's routes and members from its placed instances (in instance order): a route to
/// each host that holds one and has an underlay address and a subnet in the plan, and each
/// address the instance's own host reports inside the cluster CIDR (a report from a host the
/// instance left is not its placement and is not in `placed`). An address reported twice
/// keeps its first owner.
pub fn contents(settings: &Settings, placed: &[PlacedNet]) -> Contents {
    let mut routes = BTreeMap::new();
    let mut members = BTreeMap::new();
    for p in placed {
        if let (Some(subnet), Some(via)) = (p.subnet, p.address)
            && settings.fits(subnet)
        {
            routes.entry(subnet).or_insert_with(|| Route { subnet, via, host: p.host.clone() });
        }
        if let Some(ip) = p.ip.filter(|ip| settings.cluster_cidr.contains(ip)) {
            members.entry(ip).or_insert_with(|| Member { ip, instance: p.instance.clone() });
        }
    }
    (routes, members)
}

/// The keys whose entries differ between two contents.
fn changed(old: (&BTreeMap<Ipv4Net, Route>, &BTreeMap<Ipv4Addr, Member>), new: &Contents) -> Vec<Key> {
    fn diff<K: Ord + Copy, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>, key: fn(K) -> Key, out: &mut Vec<Key>) {
        let keys: BTreeSet<K> = a.keys().chain(b.keys()).copied().collect();
        out.extend(keys.into_iter().filter(|k| a.get(k) != b.get(k)).map(key));
    }
    let mut out = Vec::new();
    diff(old.0, &new.0, Key::Route, &mut out);
    diff(old.1, &new.1, Key::Member, &mut out);
    out
}

/// One tenant's view, built from one snapshot of the store and the hot state.
#[derive(Debug)]
pub struct TenantNet {
    pub tenant: String,
    /// Names `routes` and `members`: kept when a build finds them as they were.
    pub version: u64,
    routes: BTreeMap<Ipv4Net, Route>,
    members: BTreeMap<Ipv4Addr, Member>,
    /// The steps that led here, oldest first, contiguous (each starts where the one before ended).
    log: VecDeque<Arc<Step>>,
    /// [`Store::tenant_touched`] as of the snapshot ([`UNKNOWN`] when a later commit may be
    /// missing from it).
    commit: u64,
    /// ([`Hot::tenant_version`], [`Hot::addresses_version`]) read before the hot state was.
    reports: (u64, u64),
    /// [`Store::touches`] read before the snapshot.
    touches: u64,
    at_ms: u64,
    /// `routes` and `members` as lists every host's plan shares, made when a plan is first
    /// sent whole (and serialized once: see [`SharedList`]).
    lists: std::sync::OnceLock<(SharedList<Route>, SharedList<Member>)>,
    /// Deltas to this version from the versions hosts were told (`None`: the plan whole), for
    /// hosts running this tenant alone.
    deltas: Mutex<HashMap<u64, Option<NetworkDelta>>>,
}

impl TenantNet {
    /// The keys changed since version `from`, if this view's log reaches back to it.
    fn changes_since(&self, from: u64, out: &mut BTreeSet<Key>) -> bool {
        if from == self.version {
            return true;
        }
        let Some(start) = self.log.iter().position(|s| s.from == from) else { return false };
        for s in self.log.iter().skip(start) {
            out.extend(s.keys.iter().copied());
        }
        true
    }

    fn fresh(&self, store: &Store, hot: &Hot, now_ms: u64) -> bool {
        self.commit == store.tenant_touched(&self.tenant)
            && (now_ms.saturating_sub(self.at_ms) < REFRESH_MS || self.reports == reports(hot, &self.tenant))
    }

    fn size(&self) -> usize {
        self.routes.len() + self.members.len()
    }

    fn lists(&self) -> &(SharedList<Route>, SharedList<Member>) {
        self.lists.get_or_init(|| {
            (SharedList::cached(self.routes.values().cloned().collect()), SharedList::cached(self.members.values().cloned().collect()))
        })
    }
}

fn reports(hot: &Hot, tenant: &str) -> (u64, u64) {
    (hot.tenant_version(tenant), hot.addresses_version())
}

/// One tenant's cache entry: the last view, and a lock held while building.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<TenantNet>>>,
    building: Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Arc<TenantNet>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Every tenant's view (see the module).
#[derive(Default)]
pub struct NetViews {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl NetViews {
    /// `tenant`'s view, as of snapshot `tx` (`touches`: [`Store::touches`] read before it) or
    /// newer: the cached one while it is fresh, else built from `tx` and the hot state. Callers
    /// racing for a stale view wait for one build.
    #[allow(clippy::too_many_arguments)]
    pub fn get(&self, tx: &dyn Tx, store: &Store, hot: &Hot, settings: &Settings, tenant: &str, touches: u64, now_ms: u64) -> Result<Arc<TenantNet>> {
        let slot = self.slots.lock().unwrap_or_else(PoisonError::into_inner).entry(tenant.to_string()).or_default().clone();
        if let Some(v) = slot.current().filter(|v| v.fresh(store, hot, now_ms)) {
            return Ok(v);
        }
        let _building = slot.building.lock().unwrap_or_else(PoisonError::into_inner);
        let before = slot.current();
        if let Some(v) = before.as_ref().filter(|v| v.fresh(store, hot, now_ms) || v.touches > touches) {
            // Built meanwhile, or from a newer snapshot than this one: never go back.
            return Ok(v.clone());
        }
        let commit = store.tenant_touched(tenant);
        let commit = if commit <= touches { commit } else { UNKNOWN };
        let placed: Vec<(InstanceRef, String)> =
            tx.instances_of_tenant(tenant)?.into_iter().filter_map(|i| Some((i.instance, i.host?))).collect();
        let reports = reports(hot, tenant);
        let placed: Vec<PlacedNet> = hot.with_hosts(|hosts| {
            placed
                .into_iter()
                .map(|(instance, host)| {
                    let h = hosts.get(&host);
                    let ip = h.and_then(|h| h.report_of(&instance)).and_then(|o| o.ip);
                    PlacedNet { subnet: h.and_then(|h| h.subnet), address: h.and_then(|h| h.info.address), ip, instance, host }
                })
                .collect()
        });
        let new = contents(settings, &placed);
        let view = Arc::new(next(tenant, before.as_deref(), new, (commit, reports, touches, now_ms)));
        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(view.clone());
        Ok(view)
    }

    /// The version `tenant`'s view would be told at now, if that is known without building it
    /// (it is fresh).
    pub fn fresh(&self, store: &Store, hot: &Hot, tenant: &str, now_ms: u64) -> Option<u64> {
        let slot = self.slots.lock().unwrap_or_else(PoisonError::into_inner).get(tenant).cloned()?;
        slot.current().filter(|v| v.fresh(store, hot, now_ms)).map(|v| v.version)
    }
}

/// The view after `before` with contents `new`, built as of `(commit, reports, touches, at_ms)`.
fn next(tenant: &str, before: Option<&TenantNet>, new: Contents, (commit, reports, touches, at_ms): (u64, (u64, u64), u64, u64)) -> TenantNet {
    let (version, log) = match before {
        Some(b) => {
            let keys = changed((&b.routes, &b.members), &new);
            let mut log = b.log.clone();
            if keys.is_empty() {
                (b.version, log)
            } else {
                log.push_back(Arc::new(Step { from: b.version, keys }));
                let cap = new.0.len() + new.1.len() + LOG_SLACK;
                while log.len() > LOG_STEPS || (log.len() > 1 && log.iter().map(|s| s.keys.len()).sum::<usize>() > cap) {
                    log.pop_front();
                }
                (VERSIONS.fetch_add(1, Ordering::Relaxed), log)
            }
        }
        None => (VERSIONS.fetch_add(1, Ordering::Relaxed), VecDeque::new()),
    };
    let (routes, members) = new;
    TenantNet { tenant: tenant.to_string(), version, routes, members, log, commit, reports, touches, at_ms, lists: Default::default(), deltas: Default::default() }
}

/// What a host was told of its network: its lease and the version of each tenant's view.
pub type Told = (HostNetwork, Vec<(String, u64)>);

/// One host's network: its lease and the views of the tenants with instances on it (by
/// tenant). Its plan is their union; the route to its own subnet is in it when the host holds
/// one of the tenants' instances (the agent skips it), so one tenant's hosts share one list.
#[derive(Debug, Clone)]
pub struct HostNet {
    pub lease: HostNetwork,
    pub views: Vec<Arc<TenantNet>>,
}

impl HostNet {
    pub fn told(&self) -> Told {
        (self.lease, self.views.iter().map(|v| (v.tenant.clone(), v.version)).collect())
    }

    fn route(&self, subnet: &Ipv4Net) -> Option<&Route> {
        self.views.iter().find_map(|v| v.routes.get(subnet))
    }

    fn member(&self, ip: &Ipv4Addr) -> Option<&Member> {
        self.views.iter().find_map(|v| v.members.get(ip))
    }

    /// The plan in full, sorted.
    pub fn plan(&self) -> NetworkPlan {
        // One tenant (most hosts): its view's lists are the plan, shared.
        if let [v] = self.views.as_slice() {
            let (routes, members) = v.lists().clone();
            return NetworkPlan { lease: self.lease, routes, members };
        }
        let subnets: BTreeSet<&Ipv4Net> = self.views.iter().flat_map(|v| v.routes.keys()).collect();
        let ips: BTreeSet<&Ipv4Addr> = self.views.iter().flat_map(|v| v.members.keys()).collect();
        NetworkPlan {
            lease: self.lease,
            routes: subnets.into_iter().filter_map(|s| self.route(s).cloned()).collect::<Vec<_>>().into(),
            members: ips.into_iter().filter_map(|ip| self.member(ip).cloned()).collect::<Vec<_>>().into(),
        }
    }

    /// What changed since the host was told `before`, if a delta can say it: the same lease and
    /// tenants, each view's log reaching back to what was told, and fewer changes than the plan
    /// has entries (else the plan whole is smaller).
    pub fn delta(&self, before: &Told) -> Option<NetworkDelta> {
        let (lease, versions) = before;
        if *lease != self.lease || versions.len() != self.views.len() {
            return None;
        }
        // One tenant (most hosts): the delta depends on the view and the version told only, so
        // the hosts told one version share one delta (and its JSON).
        if let ([view], [(tenant, from)]) = (self.views.as_slice(), versions.as_slice()) {
            if *tenant != view.tenant {
                return None;
            }
            let mut cache = view.deltas.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(d) = cache.get(from) {
                return d.clone();
            }
            let d = self.compute_delta(versions);
            if cache.len() >= DELTAS_CACHED {
                cache.clear();
            }
            cache.insert(*from, d.clone());
            return d;
        }
        self.compute_delta(versions)
    }

    fn compute_delta(&self, versions: &[(String, u64)]) -> Option<NetworkDelta> {
        let mut keys = BTreeSet::new();
        for ((tenant, from), view) in versions.iter().zip(&self.views) {
            if *tenant != view.tenant || !view.changes_since(*from, &mut keys) {
                return None;
            }
        }
        if keys.len() > self.views.iter().map(|v| v.size()).sum::<usize>() + LOG_SLACK {
            return None;
        }
        let (mut routes, mut routes_removed, mut members, mut members_removed) = (vec![], vec![], vec![], vec![]);
        for k in keys {
            match k {
                Key::Route(s) => match self.route(&s) {
                    Some(r) => routes.push(r.clone()),
                    None => routes_removed.push(s),
                },
                Key::Member(ip) => match self.member(&ip) {
                    Some(m) => members.push(m.clone()),
                    None => members_removed.push(ip),
                },
            }
        }
        Some(NetworkDelta {
            routes: SharedList::cached(routes),
            routes_removed: SharedList::cached(routes_removed),
            members: SharedList::cached(members),
            members_removed: SharedList::cached(members_removed),
        })
    }
}

/// A host network of one tenant `t` holding exactly `plan`'s routes and members at `version`
/// (tests of what builds on views).
#[cfg(test)]
pub fn from_plan(plan: &NetworkPlan, version: u64) -> HostNet {
    let view = TenantNet {
        tenant: "t".into(),
        version,
        routes: plan.routes.iter().map(|r| (r.subnet, r.clone())).collect(),
        members: plan.members.iter().map(|m| (m.ip, m.clone())).collect(),
        log: VecDeque::new(),
        commit: 0,
        reports: (0, 0),
        touches: 0,
        at_ms: 0,
        lists: Default::default(),
        deltas: Default::default(),
    };
    HostNet { lease: plan.lease, views: vec![Arc::new(view)] }
}

#[cfg(test)]
mod tests {
    use herd_api::Role;

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn settings() -> Settings {
        Settings { cluster_cidr: net("10.88.0.0/16"), host_prefix: 24 }
    }

    fn lease(subnet: &str) -> HostNetwork {
        HostNetwork { cluster_cidr: net("10.88.0.0/16"), subnet: net(subnet) }
    }

    /// Instance `n` of tenant `t` on host `h<k>` (subnet 10.88.k.0/24, underlay 192.0.2.k),
    /// reported at `10.88.k.ip` when `ip` is set.
    fn on(t: &str, n: u32, k: u8, ip: Option<u8>) -> PlacedNet {
        PlacedNet {
            instance: InstanceRef::new(t, "c", Role::Datanode, n),
            host: format!("h{k}"),
            subnet: Some(net(&format!("10.88.{k}.0/24"))),
            address: Some(Ipv4Addr::new(192, 0, 2, k)),
            ip: ip.map(|i| Ipv4Addr::new(10, 88, k, i)),
        }
    }

    fn view(t: &str, before: Option<&TenantNet>, placed: &[PlacedNet]) -> TenantNet {
        next(t, before, contents(&settings(), placed), (1, (0, 0), 1, 0))
    }

    #[test]
    fn contents_route_to_every_host_of_the_tenant_and_keep_only_addresses_inside_the_plan() {
        let mut no_address = on("t", 3, 4, Some(9));
        no_address.address = None;
        let mut outside = on("t", 4, 5, None);
        outside.subnet = Some(net("10.99.5.0/24"));
        outside.ip = Some(Ipv4Addr::new(172, 16, 0, 1));
        let (routes, members) = contents(&settings(), &[on("t", 0, 1, Some(2)), on("t", 1, 1, Some(3)), on("t", 2, 2, None), no_address, outside]);
        assert_eq!(routes.keys().copied().collect::<Vec<_>>(), [net("10.88.1.0/24"), net("10.88.2.0/24")]);
        assert_eq!(routes[&net("10.88.2.0/24")], Route { subnet: net("10.88.2.0/24"), via: Ipv4Addr::new(192, 0, 2, 2), host: "h2".into() });
        // A host without an underlay address gets no route, but its containers' addresses count.
        let ips: Vec<Ipv4Addr> = members.keys().copied().collect();
        assert_eq!(ips, [Ipv4Addr::new(10, 88, 1, 2), Ipv4Addr::new(10, 88, 1, 3), Ipv4Addr::new(10, 88, 4, 9)]);
    }

    #[test]
    fn a_rebuild_to_the_same_contents_keeps_the_version_and_a_change_logs_its_keys() {
        let a = view("t", None, &[on("t", 0, 1, None)]);
        let same = view("t", Some(&a), &[on("t", 0, 1, None)]);
        assert_eq!(same.version, a.version);
        let b = view("t", Some(&same), &[on("t", 0, 1, Some(2)), on("t", 1, 2, None)]);
        assert!(b.version > a.version);
        let mut keys = BTreeSet::new();
        assert!(b.changes_since(a.version, &mut keys));
        assert_eq!(keys, BTreeSet::from([Key::Route(net("10.88.2.0/24")), Key::Member(Ipv4Addr::new(10, 88, 1, 2))]));
        // A version this view never had (another process's, or trimmed away): no delta.
        assert!(!b.changes_since(a.version - 1, &mut keys));
    }

    #[test]
    fn the_log_is_bounded_and_a_host_behind_it_gets_the_plan_whole() {
        let first = view("t", None, &[on("t", 0, 1, None)]);
        let mut v = view("t", Some(&first), &[on("t", 0, 1, Some(2))]);
        for i in 0..LOG_STEPS + 5 {
            // Each step moves the one member to another address.
            v = view("t", Some(&v), &[on("t", 0, 1, Some(3 + (i % 200) as u8))]);
        }
        // Two keys a step (the address left, the address taken): bounded by keys, then steps.
        let keys: usize = v.log.iter().map(|s| s.keys.len()).sum();
        assert!(keys <= v.size() + LOG_SLACK && v.log.len() <= LOG_STEPS, "{keys} keys in {} steps", v.log.len());
        assert_eq!(v.log.len(), (v.size() + LOG_SLACK) / 2);
        let recent = v.log.back().map(|s| s.from).unwrap_or_default();
        let host = HostNet { lease: lease("10.88.9.0/24"), views: vec![Arc::new(v)] };
        assert!(host.delta(&(lease("10.88.9.0/24"), vec![("t".into(), first.version)])).is_none());
        let d = host.delta(&(lease("10.88.9.0/24"), vec![("t".into(), recent)])).unwrap_or_else(|| panic!("a recent version gets a delta"));
        assert_eq!((d.members.len(), d.members_removed.len()), (1, 1));
    }

    /// Whatever the views do, a host holding an older plan and taking the delta holds what the
    /// plan whole is now: two tenants sharing a host (a route both need stays while one still
    /// needs it), members moving, hosts leaving, the host's own subnet never routed.
    #[test]
    fn deltas_rebuild_the_plan_whole_across_tenants() {
        let me = lease("10.88.1.0/24");
        let steps: Vec<(Vec<PlacedNet>, Vec<PlacedNet>)> = vec![
            (vec![on("a", 0, 1, None), on("a", 1, 2, None)], vec![on("b", 0, 1, None), on("b", 1, 2, None), on("b", 2, 3, None)]),
            (vec![on("a", 0, 1, Some(5)), on("a", 1, 2, Some(5))], vec![on("b", 0, 1, Some(6)), on("b", 1, 2, None), on("b", 2, 3, Some(5))]),
            // a leaves host 2; b still needs its route.
            (vec![on("a", 0, 1, Some(5)), on("a", 1, 4, None)], vec![on("b", 0, 1, Some(6)), on("b", 1, 2, Some(6)), on("b", 2, 3, Some(5))]),
            // b leaves host 2 too and host 3; an address changes owner.
            (vec![on("a", 0, 1, Some(5)), on("a", 1, 4, Some(7))], vec![on("b", 0, 1, None), on("b", 3, 1, Some(6))]),
            (vec![on("a", 0, 1, Some(5)), on("a", 1, 4, Some(7))], vec![on("b", 3, 1, Some(6))]),
        ];
        let (mut a, mut b): (Option<Arc<TenantNet>>, Option<Arc<TenantNet>>) = (None, None);
        let mut held: Option<(NetworkPlan, Told)> = None;
        for (i, (pa, pb)) in steps.iter().enumerate() {
            let va = Arc::new(view("a", a.as_deref(), pa));
            let vb = Arc::new(view("b", b.as_deref(), pb));
            (a, b) = (Some(va.clone()), Some(vb.clone()));
            let host = HostNet { lease: me, views: vec![va, vb] };
            let whole = host.plan();
            // Its own subnet is listed while it holds an instance (the agent skips it).
            assert!(whole.routes.iter().any(|r| r.subnet == me.subnet), "step {i}: own subnet not listed");
            if let Some((mut plan, told)) = held.take() {
                let d = host.delta(&told).unwrap_or_else(|| panic!("step {i}: a delta"));
                plan.apply(&d);
                assert_eq!(plan, whole, "step {i}: {d:?}");
            }
            held = Some((whole, host.told()));
        }
        // At the end: this host and a's second host (b runs on this host alone).
        let (plan, _) = held.unwrap_or_else(|| panic!("held"));
        assert_eq!(plan.routes.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(), ["h1", "h4"]);
        assert_eq!(plan.members.len(), 3);
    }

    #[test]
    fn another_lease_or_another_set_of_tenants_gets_the_plan_whole() {
        let a = Arc::new(view("a", None, &[on("a", 0, 1, None)]));
        let b = Arc::new(view("b", None, &[on("b", 0, 1, None)]));
        let host = HostNet { lease: lease("10.88.1.0/24"), views: vec![a.clone(), b.clone()] };
        assert_eq!(host.delta(&host.told()), Some(NetworkDelta::default()));
        assert!(host.delta(&(lease("10.88.7.0/24"), host.told().1)).is_none());
        assert!(host.delta(&(host.lease, vec![("a".into(), a.version)])).is_none());
        assert!(host.delta(&(host.lease, vec![("a".into(), a.version), ("c".into(), b.version)])).is_none());
    }
}
