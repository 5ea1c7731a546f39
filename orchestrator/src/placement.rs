//! Placement inside the orchestrator's transactions: builds the scheduler's snapshot
//! ([`HostView`]s and [`Request`]s) from the store and the hot state, runs the pure
//! [`scheduler::place`], and applies tenants' guarantees ([`scheduler::guarantee`]):
//! requests within a guarantee go first, and when one still finds no room, borrowed
//! NodeManagers of tenants above their guarantee are drained for it (most over first).
//! The views of hosts are kept between passes with the writer's sums ([`Memo`]) and only
//! the hosts that changed are looked at again.
//!
//! ```text
//!  store (instances, specs, tenants, leaving) ─┐
//!  hot (hosts: capacity, rack, labels, disks) ─┴─> views + requests ─> scheduler::place
//!        │                                                                  │ refused, within a guarantee
//!        └─ guarantee::usage (used, borrowed NodeManagers) ──> guarantee::choose ──> Draining phase
//!                                                                      (lifecycle drains, removes;
//!                                                                       refill re-adds it pending)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use crate::Map as HashMap;
use crate::Set as HashSet;

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::network::Protocol;
use herd_api::quantity::{Cpu, Memory, Resources};
use herd_api::wire::{HostInfo, Quota};
use herd_api::{ClusterSpec, Role};
use crate::store::Tx;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::hot::{Hot, HostLive};
use crate::lifecycle;
use crate::quota;
use crate::reconciler::{self, Instance};
use crate::scheduler::guarantee::{self, Choice, Held, Victim};
use crate::scheduler::{self, HostView, Request, disk_share};
use crate::store::audit::{self, Change};
use crate::store::usage::{self, HostUsage, Usage};

/// How long a NodeManager drained for another tenant's guarantee may keep running YARN
/// containers before it is removed anyway (its pool's own `drainTimeoutSeconds` is for
/// scale-downs, which nobody is waiting for).
pub const PREEMPT_DRAIN_TIMEOUT_S: u64 = 30;

/// Whether a host may receive new placements: THE one place that says so. (Host
/// operations: a cordoned or draining host gets nothing new.)
pub fn ready(h: &HostLive, now: u64, lost_after: u64) -> bool {
    !h.cordoned && h.age_ms(now) <= lost_after
}

pub(crate) fn pool_key(i: &Instance) -> String {
    usage::pool_key(&i.instance.tenant, &i.instance.cluster, i.role)
}

/// What placement needs of one pool, from its cluster's spec.
#[derive(Debug, Clone, Default)]
struct Rules {
    ports: Vec<(Protocol, u16)>,
    disk: Memory,
    selector: BTreeMap<String, String>,
    max_per_host: Option<u32>,
    /// NodeManagers that leave through the ResourceManager (a drain), not at once.
    drained: bool,
}

fn rules(tx: &dyn Tx) -> Result<HashMap<String, Rules>> {
    let mut out = HashMap::default();
    for row in tx.clusters(None)? {
        let graceful = lifecycle::graceful(&row.spec);
        for (role, pool) in &row.spec.pools {
            let key = format!("{}/{}/{}", row.spec.tenant, row.spec.name, role);
            out.insert(
                key,
                Rules {
                    ports: pool.publish.iter().map(|p| (p.protocol, p.host_port())).collect(),
                    disk: if role.has_data() { pool.disk.unwrap_or_default() } else { Memory(0) },
                    selector: pool.node_selector.clone(),
                    max_per_host: row.spec.max_per_host(*role),
                    drained: graceful.contains(role),
                },
            );
        }
    }
    Ok(out)
}

/// The pools whose rules change a host's view beyond CPU and memory (they take data disk or
/// host ports).
fn effects(rules: &HashMap<String, Rules>) -> HashMap<&str, &Rules> {
    rules.iter().filter(|(_, r)| r.disk.0 > 0 || !r.ports.is_empty()).map(|(k, r)| (k.as_str(), r)).collect()
}

/// Host `h` as the scheduler sees it, with what is placed there (`used`) taken off; its
/// `per_pool` is left empty ([`count_pools`]).
fn view_of(h: &HostLive, used: Option<&HostUsage>, effects: &HashMap<&str, &Rules>, now: u64, lost_after: u64) -> HostView {
    let mut v = HostView {
        ready: ready(h, now, lost_after),
        rack: h.info.rack.clone(),
        labels: h.info.labels.clone(),
        id: h.info.id.clone(),
        ..HostView::default()
    };
    take_off(&mut v, &h.info, used, effects);
    v
}

/// Sets what is free on `v` (host `info`): its capacity less what is placed there (`used`).
fn take_off(v: &mut HostView, info: &HostInfo, used: Option<&HostUsage>, effects: &HashMap<&str, &Rules>) {
    let empty = HostUsage::default();
    let used = used.unwrap_or(&empty);
    // The host's pools that take disk or ports, with their counts.
    let special: Vec<(&Rules, u32)> = if effects.is_empty() {
        Vec::new()
    } else {
        used.pools.iter().filter_map(|(pool, &n)| Some((*effects.get(pool.as_str())?, n))).collect()
    };
    let capacity = &info.data_disk_capacity;
    v.free_disks = (!capacity.is_empty()).then(|| {
        let used: u64 = special.iter().map(|(r, n)| u64::from(*n) * disk_share(r.disk.0, capacity.len())).sum();
        capacity.iter().map(|c| c.0.saturating_sub(used)).collect()
    });
    v.free_cpu = info.cpu.0.saturating_sub(used.cpu);
    v.free_memory = info.memory.0.saturating_sub(used.memory);
    v.per_pool.clear();
    v.ports = special.iter().flat_map(|(r, n)| r.ports.iter().flat_map(move |p| std::iter::repeat_n(*p, *n as usize))).collect();
}

/// Sets `v`'s `per_pool` to its counts of the pools in `wanted` (those of the requests: the
/// only ones the scheduler asks about). NB: a full fleet holds 30 or more pools per host;
/// copying every count was most of the cost of building 30,000 views, once per apply.
fn count_pools(v: &mut HostView, used: &HostUsage, wanted: &HashSet<&str>) {
    v.per_pool = wanted.iter().filter_map(|&p| Some((p.to_string(), *used.pools.get(p)?))).collect();
}

/// Every host as the scheduler sees it, made anew (a store that keeps no sums).
fn views(hot: &Hot, usage: &Usage, rules: &HashMap<String, Rules>, wanted: &HashSet<&str>, now: u64, lost_after: u64) -> Vec<HostView> {
    let effects = effects(rules);
    hot.with_hosts(|hosts| {
        hosts
            .values()
            .map(|h| {
                let used = usage.host(&h.info.id);
                let mut v = view_of(h, used, &effects, now, lost_after);
                if let Some(used) = used {
                    count_pools(&mut v, used, wanted);
                }
                v
            })
            .collect()
    })
}

/// The scheduler's views of every host, kept between placement passes with the writer's sums
/// ([`Usage::memo`]) and brought up to date from what changed since: each pass looks at every
/// host's readiness, and makes again only the views of hosts whose sums moved or that
/// registered again. Making 30,000 views anew for each apply (and dropping them after) was a
/// sixth of the writer's time in a million-instance storm.
struct Memo {
    /// The sums it was made over ([`Usage::epoch`]).
    epoch: u64,
    /// In host id order: the scheduler's rank order, so it sorts nothing.
    views: Vec<HostView>,
    /// Each host's place in `views`.
    at: HashMap<String, usize>,
    /// Each view's host description when it was made (a host that registers again gets a new one).
    infos: Vec<Arc<HostInfo>>,
    /// For the hosts in the order the hot state's map walks them, the place of each one's
    /// view when last walked: a guess checked by its description (the map only reorders when
    /// a host comes or goes), so that a pass need not look 30,000 ids up.
    walk: Vec<usize>,
    /// The pools' effects the views were made with ([`effects`]).
    effects: HashMap<String, (u64, Vec<(Protocol, u16)>)>,
    /// Views whose `per_pool` may hold counts (of the last pass's pools, or of its placements).
    pooled: Vec<usize>,
    /// Passes it served after the one that made it.
    passes: u64,
}

impl Memo {
    fn build(hosts: &HashMap<String, HostLive>, usage: &Usage, effects: &HashMap<&str, &Rules>, now: u64, lost_after: u64) -> Memo {
        crate::metrics::get().views_made();
        let mut live: Vec<&HostLive> = hosts.values().collect();
        live.sort_unstable_by(|a, b| a.info.id.cmp(&b.info.id));
        let at: HashMap<String, usize> = live.iter().enumerate().map(|(k, h)| (h.info.id.clone(), k)).collect();
        Memo {
            epoch: usage.epoch(),
            views: live.iter().map(|h| view_of(h, usage.host(&h.info.id), effects, now, lost_after)).collect(),
            walk: hosts.keys().map(|id| at.get(id).copied().unwrap_or_default()).collect(),
            at,
            infos: live.iter().map(|h| h.info.clone()).collect(),
            effects: HashMap::default(),
            pooled: Vec::new(),
            passes: 0,
        }
    }

    /// Whether the views were made with the effects of every pool a host holds now.
    fn same_effects(&self, effects: &HashMap<&str, &Rules>, usage: &Usage) -> bool {
        let same = |pool: &str, r: Option<&&Rules>| match (self.effects.get(pool), r) {
            (Some((disk, ports)), Some(r)) => *disk == r.disk.0 && *ports == r.ports,
            (None, None) => true,
            _ => false,
        };
        self.effects.keys().all(|p| same(p, effects.get(p.as_str())) || !usage.holds(p))
            && effects.iter().all(|(p, r)| same(p, Some(r)) || !usage.holds(p))
    }

    /// Brings the views up to date (see [`Memo`]); false when a host came or went (make them
    /// anew).
    fn refresh(&mut self, hosts: &HashMap<String, HostLive>, usage: &Usage, effects: &HashMap<&str, &Rules>, changed: &HashSet<String>, now: u64, lost_after: u64) -> bool {
        if hosts.len() != self.views.len() {
            return false;
        }
        self.walk.resize(hosts.len(), 0);
        for ((id, h), guess) in hosts.iter().zip(self.walk.iter_mut()) {
            if !Arc::ptr_eq(&self.infos[*guess], &h.info) {
                let Some(&k) = self.at.get(id) else { return false };
                *guess = k;
            }
            let k = *guess;
            if Arc::ptr_eq(&self.infos[k], &h.info) {
                self.views[k].ready = ready(h, now, lost_after);
            } else {
                self.views[k] = view_of(h, usage.host(id), effects, now, lost_after);
                self.infos[k] = h.info.clone();
            }
        }
        // (Each one's description is its host's now: the walk above saw to it.)
        for id in changed {
            if let Some(&k) = self.at.get(id) {
                take_off(&mut self.views[k], &self.infos[k], usage.host(id), effects);
            }
        }
        true
    }

    /// The memo left with `usage`, brought up to date, or one made anew; its views count the
    /// pools in `wanted`.
    fn take(hot: &Hot, usage: &mut Usage, rules: &HashMap<String, Rules>, wanted: &HashSet<&str>, now: u64, lost_after: u64) -> Box<Memo> {
        let effects = effects(rules);
        let changed = usage.take_changed();
        let kept = usage.memo::<Memo>().filter(|m| m.epoch == usage.epoch() && m.same_effects(&effects, usage));
        let mut memo = hot.with_hosts(|hosts| match kept {
            Some(mut m) => {
                if m.refresh(hosts, usage, &effects, &changed, now, lost_after) {
                    m.passes += 1;
                    m
                } else {
                    debug!(passes = m.passes, "placement's views made anew: a host came or went");
                    Box::new(Memo::build(hosts, usage, &effects, now, lost_after))
                }
            }
            None => Box::new(Memo::build(hosts, usage, &effects, now, lost_after)),
        });
        memo.effects = effects.iter().map(|(p, r)| (p.to_string(), (r.disk.0, r.ports.clone()))).collect();
        for k in std::mem::take(&mut memo.pooled) {
            memo.views[k].per_pool.clear();
        }
        if wanted.iter().any(|p| usage.holds(p)) {
            for (id, used) in usage.hosts() {
                if let Some(&k) = memo.at.get(id) {
                    count_pools(&mut memo.views[k], used, wanted);
                    if !memo.views[k].per_pool.is_empty() {
                        memo.pooled.push(k);
                    }
                }
            }
        }
        memo
    }
}

fn request(i: &Instance, rules: &HashMap<String, Rules>) -> Request {
    let r = rules.get(&pool_key(i)).cloned().unwrap_or_default();
    Request {
        pool: pool_key(i),
        cpu: i.cpu,
        memory: i.memory,
        disk: r.disk,
        ports: r.ports,
        selector: r.selector,
        max_per_host: r.max_per_host,
        spread_racks: i.role == Role::Datanode,
    }
}

/// Every tenant's guarantee, for tenants that have one.
fn guarantees(tx: &dyn Tx) -> Result<BTreeMap<String, Resources>> {
    Ok(tx.quotas()?.into_iter().filter_map(|(name, q)| Some((name, q.guaranteed?))).collect())
}

fn held(all: &[Instance], rules: &HashMap<String, Rules>, leaving: &BTreeSet<InstanceRef>) -> Vec<Held> {
    all.iter()
        .filter_map(|i| {
            Some(Held {
                host: i.host.clone()?,
                instance: i.instance.clone(),
                role: i.role,
                ordinal: i.ordinal,
                cpu: i.cpu.0,
                memory: i.memory.0,
                disk: rules.get(&pool_key(i)).map_or(0, |r| r.disk.0),
                leaving: leaving.contains(&i.instance),
            })
        })
        .collect()
}

/// Places every unplaced instance that fits, in a stable order (masters first; within a
/// role, requests inside their tenant's guarantee before borrowing ones); the rest stay
/// pending with the reason. A request within its tenant's guarantee that finds no room has
/// borrowed NodeManagers of other tenants drained for it.
/// Whether it took borrowed NodeManagers back (they leave through their drain: a leaving
/// phase was stored).
pub(crate) fn schedule_pending(tx: &dyn Tx, hot: &Hot, now: u64, lost_after: u64) -> Result<bool> {
    schedule(tx, hot, now, lost_after, true, Vec::new())
}

/// [`schedule_pending`] with `fresh`: new instances not stored yet, placed with the stored
/// unplaced ones and then stored once, placed or pending. (Storing them unplaced first and
/// again once placed wrote every new instance twice: half of the store's work in a
/// 300,000-instance apply.)
pub(crate) fn schedule_new(tx: &dyn Tx, hot: &Hot, now: u64, lost_after: u64, fresh: Vec<Instance>) -> Result<bool> {
    schedule(tx, hot, now, lost_after, true, fresh)
}

fn schedule(tx: &dyn Tx, hot: &Hot, now: u64, lost_after: u64, may_take_back: bool, fresh: Vec<Instance>) -> Result<bool> {
    let mut unplaced = if tx.any_unplaced()? { tx.unplaced()? } else { Vec::new() };
    // Instances at `stored..` are the fresh ones: stored whatever becomes of them.
    let stored = unplaced.len();
    unplaced.extend(fresh);
    if unplaced.is_empty() {
        return Ok(false);
    }
    let mut pending: Vec<(usize, &Instance)> = unplaced.iter().enumerate().collect();
    if stored < unplaced.len() {
        // The order the store lists unplaced instances in, as if the fresh ones were stored.
        fn key(i: &Instance) -> (&str, &str, &str, u32) {
            (&i.instance.tenant, &i.instance.cluster, i.role.as_str(), i.ordinal)
        }
        pending.sort_by(|(_, a), (_, b)| key(a).cmp(&key(b)));
    }
    let rules = rules(tx)?;
    let guaranteed = guarantees(tx)?;
    // Every instance only when a guarantee may take borrowed ones back; else the store's sums.
    let all = if guaranteed.is_empty() { Vec::new() } else { tx.instances(None)? };
    let leaving = if guaranteed.is_empty() { BTreeMap::new() } else { tx.leaving(None)? };
    let leaving_set: BTreeSet<InstanceRef> = leaving.keys().cloned().collect();
    let held = if guaranteed.is_empty() { Vec::new() } else { held(&all, &rules, &leaving_set) };
    let usage = guarantee::usage(&guaranteed, &held);
    // Masters first: workers are useless without them, so they must never take their room.
    pending.sort_by_key(|(_, i)| i.role);
    let (origin, pending): (Vec<usize>, Vec<&Instance>) = pending.into_iter().unzip();
    let within = within_guarantee(&pending, &guaranteed, &usage);
    let mut order: Vec<usize> = (0..pending.len()).collect();
    order.sort_by_key(|&k| (pending[k].role, !within[k]));
    let fresh: Vec<bool> = order.iter().map(|&k| origin[k] >= stored).collect();
    let pending: Vec<&Instance> = order.iter().map(|&k| pending[k]).collect();
    let within: Vec<bool> = order.iter().map(|&k| within[k]).collect();

    let requests: Vec<Request> = pending.iter().map(|i| request(i, &rules)).collect();
    let wanted: HashSet<&str> = requests.iter().map(|r| r.pool.as_str()).collect();
    let mut memo: Option<Box<Memo>> = None;
    let mut made = Vec::new();
    if !tx.with_usage(&mut |sums| memo = Some(Memo::take(hot, sums, &rules, &wanted, now, lost_after)))? {
        // A store that keeps no sums: sum what it holds (read above when a guarantee needed it).
        let sums = if guaranteed.is_empty() { Usage::of(&tx.instances(None)?) } else { Usage::of(&all) };
        made = self::views(hot, &sums, &rules, &wanted, now, lost_after);
    }
    let views: &mut Vec<HostView> = match memo.as_mut() {
        Some(m) => &mut m.views,
        None => &mut made,
    };
    let mut placed = scheduler::place(views, &requests);

    let mut taken_back = 0;
    if !guaranteed.is_empty() && may_take_back {
        let refused: Vec<usize> = (0..pending.len()).filter(|&k| within[k] && placed[k].is_err()).collect();
        if !refused.is_empty() {
            let fleet = views.iter().filter(|v| v.ready).fold(Resources::default(), |a, v| {
                a.plus(Resources { cpu: Cpu(v.free_cpu), memory: Memory(v.free_memory), disk: Memory(0) })
            });
            let fleet = held.iter().fold(fleet, |a, h| a.plus(Resources { cpu: Cpu(h.cpu), memory: Memory(h.memory), disk: Memory(0) }));
            let mut candidates = victims(views, &all, &usage, &leaving, fleet);
            for k in refused {
                let tenant = &pending[k].instance.tenant;
                let allowed: Vec<usize> = (0..candidates.len()).filter(|&v| &candidates[v].instance.tenant != tenant).collect();
                let mine: Vec<Victim> = allowed.iter().map(|&v| candidates[v].clone()).collect();
                let Some(choice) = guarantee::choose(views, &requests[k], &mine) else { continue };
                let (host, chosen, wait) = match choice {
                    Choice::Drain { host, victims } => (host, victims, false),
                    Choice::Wait { host, victims } => (host, victims, true),
                };
                let chosen: Vec<usize> = chosen.iter().map(|&v| allowed[v]).collect();
                let (cpu, memory) = chosen.iter().fold((0, 0), |(c, m), &v| (c + candidates[v].cpu, m + candidates[v].memory));
                let view = &mut views[host];
                view.free_cpu = (view.free_cpu + cpu).saturating_sub(requests[k].cpu.0);
                view.free_memory = (view.free_memory + memory).saturating_sub(requests[k].memory.0);
                let names: Vec<String> = chosen.iter().map(|&v| candidates[v].instance.to_string()).collect();
                let host_id = view.id.clone();
                placed[k] = Err(format!(
                    "within tenant {tenant}'s guaranteed share: {} borrowed NodeManagers on host {host_id} for it ({}); placed once they are gone",
                    if wait { "waiting for" } else { "draining" },
                    names.join(", ")
                ));
                if !wait {
                    for &v in &chosen {
                        let i = all.iter().find(|i| i.instance == candidates[v].instance);
                        if let Some(i) = i {
                            take_back(tx, i, &rules, tenant, now)?;
                            taken_back += usize::from(!rules.get(&pool_key(i)).is_some_and(|r| r.drained));
                        }
                    }
                }
                let mut chosen = chosen;
                chosen.sort_unstable();
                for v in chosen.into_iter().rev() {
                    candidates.remove(v);
                }
            }
        }
    }

    let mut changed = false;
    for ((inst, result), fresh) in pending.into_iter().zip(placed).zip(fresh) {
        let updated = match result {
            Ok(host) => {
                changed = true;
                // Counted in its view's `per_pool` by the scheduler: cleared at the next pass.
                if let Some(m) = memo.as_mut()
                    && let Some(&k) = m.at.get(&host)
                {
                    m.pooled.push(k);
                }
                crate::metrics::get().placed(1);
                Instance { host: Some(host), pending: None, ..inst.clone() }
            }
            Err(reason) => Instance { host: None, pending: Some(reason), ..inst.clone() },
        };
        if fresh {
            tx.put_new_instance(&updated)?;
        } else if &updated != inst {
            tx.put_instance(&updated)?;
        }
    }
    if changed || taken_back > 0 {
        tx.bump_revision()?;
    }
    // Kept for the next pass, unless a guarantee changed views beyond what was placed (room
    // counted as freed by drains that have not happened).
    if let Some(m) = memo.filter(|_| guaranteed.is_empty()) {
        let mut m = Some(m);
        tx.with_usage(&mut |sums| {
            if let Some(m) = m.take().filter(|m| m.epoch == sums.epoch()) {
                sums.keep_memo(m);
            }
        })?;
    }
    if taken_back > 0 {
        // NodeManagers without a ResourceManager to drain through left at once: place again
        // (the guarantee's requests go first), without taking back more.
        schedule(tx, hot, now, lost_after, false, Vec::new())?;
    }
    Ok(taken_back > 0)
}

/// For each pending instance (in order), whether it lies within its tenant's guarantee:
/// what the tenant holds plus the tenant's pending instances before it still fit.
fn within_guarantee(pending: &[&Instance], guaranteed: &BTreeMap<String, Resources>, usage: &BTreeMap<String, guarantee::TenantUse>) -> Vec<bool> {
    let mut claimed: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    pending
        .iter()
        .map(|i| {
            let t = i.instance.tenant.as_str();
            let Some(g) = guaranteed.get(t) else { return false };
            let c = claimed.entry(t).or_insert_with(|| usage.get(t).map_or((0, 0), |u| (u.used.cpu.0, u.used.memory.0)));
            let next = (c.0 + i.cpu.0, c.1 + i.memory.0);
            if next.0 <= g.cpu.0 && next.1 <= g.memory.0 {
                *c = next;
                true
            } else {
                false
            }
        })
        .collect()
}

/// Borrowed NodeManagers that may be drained, most-over-guarantee tenant first, then those
/// already leaving (their room is on its way).
fn victims(
    views: &[HostView],
    all: &[Instance],
    usage: &BTreeMap<String, guarantee::TenantUse>,
    leaving: &BTreeMap<InstanceRef, Phase>,
    fleet: Resources,
) -> Vec<Victim> {
    let host_index: HashMap<&str, usize> = views.iter().enumerate().map(|(k, v)| (v.id.as_str(), k)).collect();
    let by_ref: HashMap<&InstanceRef, &Instance> = all.iter().map(|i| (&i.instance, i)).collect();
    let mut tenants: Vec<(&String, &guarantee::TenantUse)> = usage.iter().filter(|(_, u)| !u.borrowed_nodemanagers.is_empty()).collect();
    tenants.sort_by(|a, b| guarantee::over_share(b.1, fleet).total_cmp(&guarantee::over_share(a.1, fleet)).then(a.0.cmp(b.0)));
    let mut out = Vec::new();
    let mut push = |i: &Instance, rank: usize, draining: bool| {
        if let Some(&host) = i.host.as_deref().and_then(|h| host_index.get(h)) {
            out.push(Victim { instance: i.instance.clone(), host, cpu: i.cpu.0, memory: i.memory.0, rank, draining });
        }
    };
    for (rank, (_, u)) in tenants.iter().enumerate() {
        for nm in &u.borrowed_nodemanagers {
            if let Some(i) = by_ref.get(nm) {
                push(i, rank, false);
            }
        }
    }
    for (nm, _) in leaving.iter().filter(|(i, _)| i.name.starts_with("nodemanager-")) {
        if let Some(i) = by_ref.get(nm).filter(|i| i.role == Role::Nodemanager) {
            push(i, 0, true);
        }
    }
    out
}

/// Takes a borrowed NodeManager back for `for_tenant`: drained through its
/// ResourceManager with a short timeout when it has one (the lifecycle removes it, and
/// [`refill`] re-adds it pending), else unplaced at once. Audited.
fn take_back(tx: &dyn Tx, i: &Instance, rules: &HashMap<String, Rules>, for_tenant: &str, now: u64) -> Result<()> {
    let drained = rules.get(&pool_key(i)).is_some_and(|r| r.drained);
    if drained {
        tx.put_phase(&i.instance, &Phase::Draining { since_ms: now, timeout_s: PREEMPT_DRAIN_TIMEOUT_S, refreshed_ms: None })?;
    } else {
        let why = format!("borrowed capacity taken back for tenant {for_tenant}'s guaranteed share; waiting for idle capacity");
        tx.put_instance(&Instance { host: None, pending: Some(why), ..i.clone() })?;
    }
    let resource = i.instance.to_string();
    let detail = format!(
        "borrowed NodeManager on {} taken back for tenant {for_tenant}'s guaranteed share ({}); it runs again when capacity is idle",
        i.host.as_deref().unwrap_or("?"),
        if drained { format!("YARN drain, {PREEMPT_DRAIN_TIMEOUT_S} s timeout") } else { "no ResourceManager: stopped at once".into() }
    );
    audit::record_detail(tx, now, &Change { actor: "herd", action: "instance.preempt", resource: &resource, before: None, after: None }, Some(&detail))?;
    info!(instance = %i.instance, host = ?i.host, for_tenant, drained, "borrowed NodeManager taken back");
    Ok(())
}

/// Brings graceful pools of cluster `tenant/name` back to their replica count with new,
/// unplaced instances (lowest free ordinals) when instances left that the spec still asks
/// for: a NodeManager drained for another tenant's guarantee. A scale-down leaves as many
/// staying as asked, so it adds nothing. Returns how many were added.
pub(crate) fn refill(tx: &dyn Tx, tenant: &str, name: &str) -> Result<usize> {
    let Some(row) = tx.cluster(tenant, name)? else { return Ok(0) };
    let existing = tx.instances(Some((tenant, name)))?;
    let leaving = tx.leaving(Some((tenant, name)))?;
    let mut added = 0;
    for role in lifecycle::graceful(&row.spec) {
        let Some(pool) = row.spec.pools.get(&role) else { continue };
        let mine: Vec<&Instance> = existing.iter().filter(|i| i.role == role).collect();
        let staying = mine.iter().filter(|i| !leaving.contains_key(&i.instance)).count() as u32;
        let mut taken: BTreeSet<u32> = mine.iter().map(|i| i.ordinal).collect();
        let mut ordinal = 0;
        for _ in staying..pool.replicas.0 {
            while !taken.insert(ordinal) {
                ordinal += 1;
            }
            tx.put_instance(&reconciler::new_instance(tenant, name, role, ordinal, pool))?;
            added += 1;
        }
    }
    Ok(added)
}

/// Refuses a spec that takes a tenant with a guarantee over it with anything but
/// NodeManagers: DataNodes and masters are never taken back, so only NodeManagers borrow.
pub(crate) fn check_borrowing(tx: &dyn Tx, quota: &Quota, spec: &ClusterSpec, before: Option<&ClusterSpec>) -> Result<()> {
    if quota.guaranteed.is_none() {
        return Ok(());
    }
    let others = tx.clusters(Some(&spec.tenant))?
        .into_iter()
        .filter(|r| r.spec.name != spec.name)
        .fold(Resources::default(), |a, r| a.plus(quota::pinned(&r.spec)));
    let change = quota::Change { others, before: before.map(quota::pinned).unwrap_or_default(), after: quota::pinned(spec) };
    quota::check_borrowing(quota, change).map_err(Error::Quota)
}

/// Refuses a tenant's new guarantee when the fleet's ready hosts could not hold every
/// tenant's guarantee at once (plus what tenants without one hold that is never taken
/// back). A guarantee that does not grow is never refused.
pub(crate) fn admit(tx: &dyn Tx, hot: &Hot, tenant: &str, quota: &Quota, now: u64, lost_after: u64) -> Result<()> {
    let Some(g) = quota.guaranteed else { return Ok(()) };
    let mut all = guarantees(tx)?;
    let before = all.insert(tenant.to_string(), g);
    if before.is_some_and(|b| g.cpu <= b.cpu && g.memory <= b.memory && g.disk <= b.disk) {
        return Ok(());
    }
    let (fleet, hosts) = hot.with_hosts(|hosts| {
        let ready: Vec<&HostLive> = hosts.values().filter(|h| ready(h, now, lost_after)).collect();
        let fleet = ready.iter().fold(Resources::default(), |a, h| {
            let disk = h.info.data_disk_capacity.iter().map(|d| d.0).sum();
            a.plus(Resources { cpu: h.info.cpu, memory: h.info.memory, disk: Memory(disk) })
        });
        (fleet, ready.len())
    });
    let rules = rules(tx)?;
    let pinned = tx.instances(None)?
        .iter()
        .filter(|i| i.host.is_some() && i.role != Role::Nodemanager && !all.contains_key(&i.instance.tenant))
        .fold(Resources::default(), |a, i| {
            let disk = rules.get(&pool_key(i)).map_or(Memory(0), |r| r.disk);
            a.plus(Resources { cpu: i.cpu, memory: i.memory, disk })
        });
    guarantee::admit(fleet, hosts, &all, pinned).map_err(Error::Quota)
}

/// What tenant `name` holds now (placed instances) and how much of it is borrowed (above
/// its guarantee; everything when it has none).
pub(crate) fn tenant_use(c: &dyn Tx, name: &str, quota: &Quota) -> Result<(Resources, Resources)> {
    let mine: Vec<Instance> = c.instances_of_tenant(name)?.into_iter().filter(|i| i.host.is_some()).collect();
    if mine.is_empty() {
        return Ok((Resources::default(), Resources::default()));
    }
    let rules = rules_of_tenant(c, name)?;
    let held = held(&mine, &rules, &BTreeSet::new());
    let g: BTreeMap<String, Resources> = quota.guaranteed.map(|g| (name.to_string(), g)).into_iter().collect();
    let u = guarantee::usage(&g, &held).remove(name).unwrap_or_default();
    Ok((u.used, u.borrowed))
}

fn rules_of_tenant(c: &dyn Tx, tenant: &str) -> Result<HashMap<String, Rules>> {
    let mut out = HashMap::default();
    for row in c.clusters(Some(tenant))? {
        for (role, pool) in &row.spec.pools {
            let disk = if role.has_data() { pool.disk.unwrap_or_default() } else { Memory(0) };
            out.insert(format!("{tenant}/{}/{role}", row.spec.name), Rules { disk, ..Rules::default() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Placement's kept views ([`Memo`]) against views made anew, through the real operations
    //! and store: whatever happened between two passes, the kept views, brought up to date,
    //! are the views made from scratch.

    use super::*;
    use crate::state::{State, now_ms};
    use crate::network;
    use crate::store::Store;
    use herd_api::wire::{HostInfo, ScaleRequest};
    use herd_api::spec::Replicas;
    use herd_api::yaml::parse_cluster_spec;
    use std::time::Duration;

    async fn register(state: &State, id: &str, cpu: &str, rack: &str) -> Result<()> {
        let info: HostInfo = serde_json::from_value(serde_json::json!({
            "id": id, "cpu": cpu, "memory": "64Gi", "rack": rack,
            "data_disks": ["/d1", "/d2"], "data_disk_capacity": ["100Gi", "100Gi"],
        }))
        .map_err(|e| Error::invalid("host", e.to_string()))?;
        state.register("agent".into(), info).await.map(|_| ())
    }

    async fn apply(state: &State, text: &str) -> Result<()> {
        let spec = parse_cluster_spec(text).map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await.map(|_| ())
    }

    fn disks(disk: &str) -> String {
        format!(
            "tenant: t\nname: disks\nimages: {{datanode: d}}\npools:\n  datanode: {{replicas: 3, cpu: 100m, memory: 256Mi, maxPerHost: 2, disk: {disk}, publish: [{{port: 9864, host_port: 31864}}]}}\n"
        )
    }

    const PLAIN: &str = "tenant: t\nname: plain\nimages: {datanode: d}\npools:\n  datanode: {replicas: 5, cpu: 1, memory: 1Gi, maxPerHost: 3}\n";

    /// One placement pass over every pool: its kept views equal views made anew (counts of
    /// pools in any order); returns how many passes the kept views served.
    async fn pass(state: &State) -> Result<u64> {
        let (hot, lost_after) = (state.hot.clone(), 3 * state.interval_ms());
        state
            .store
            .write(move |tx| {
                let now = now_ms();
                let rules = rules(tx)?;
                let wanted: HashSet<&str> = rules.keys().map(String::as_str).collect();
                let sort = |mut v: Vec<HostView>| {
                    v.sort_by(|a, b| a.id.cmp(&b.id));
                    for h in &mut v {
                        h.per_pool.sort();
                    }
                    v
                };
                let fresh = sort(views(&hot, &Usage::of(&tx.instances(None)?), &rules, &wanted, now, lost_after));
                let mut memo = None;
                assert!(tx.with_usage(&mut |u| memo = Some(Memo::take(&hot, u, &rules, &wanted, now, lost_after)))?, "SQLite keeps sums");
                let memo = memo.expect("taken");
                assert_eq!(sort(memo.views.clone()), fresh, "kept views, brought up to date, are the views made anew");
                let passes = memo.passes;
                let mut memo = Some(memo);
                tx.with_usage(&mut |u| u.keep_memo(memo.take().expect("once")))?;
                Ok(passes)
            })
            .await
    }

    #[tokio::test]
    async fn kept_views_brought_up_to_date_are_the_views_made_anew_whatever_happened_between() -> Result<()> {
        let state = State::new(Store::in_memory()?, Duration::from_secs(60), network::Settings::default_plan())?;
        for (id, rack) in [("h1", "r1"), ("h2", "r1"), ("h3", "r2"), ("h4", "r2")] {
            register(&state, id, "8", rack).await?;
        }
        state.store.write(|tx| tx.insert_tenant("t", &Quota::default(), 0).map(|_| ())).await?;
        apply(&state, &disks("10Gi")).await?;
        let mut last = pass(&state).await?;
        // Each step changes what placement sees; the kept views follow, without being made
        // anew (an operation may run passes of its own: the count only grows).
        let mut kept = async |why: &str| -> Result<()> {
            let passes = pass(&state).await?;
            assert!(passes > last, "{why}: kept, not made anew ({passes} passes, {last} before)");
            last = passes;
            Ok(())
        };
        apply(&state, PLAIN).await?;
        kept("a new cluster's placements").await?;
        state.scale("admin".into(), "t".into(), "plain".into(), Role::Datanode, ScaleRequest { replicas: Replicas(9), force: false }, None).await?;
        kept("a scale-out").await?;
        state.cordon("admin".into(), "h2".into(), true).await?;
        kept("a cordoned host, no longer ready").await?;
        register(&state, "h3", "16", "r1").await?;
        kept("a host registered again with more CPU, in another rack").await?;
        state.delete("admin".into(), "t".into(), "plain".into(), false, None).await?;
        kept("a deleted cluster's room free again").await?;
        // What makes them anew: a host that comes, and a changed disk of a pool some host holds.
        let before = pass(&state).await?;
        register(&state, "h5", "8", "r2").await?;
        let after = pass(&state).await?;
        assert!(after < before && after <= 1, "a new host: made anew ({after} passes, {before} before)");
        apply(&state, &disks("20Gi")).await?;
        assert!(pass(&state).await? <= 1, "a held pool's disk changed: made anew");
        let placed = state.store.read(|c| c.instances(Some(("t", "disks")))).await?;
        assert_eq!(placed.iter().filter(|i| i.host.is_some()).count(), 3, "{placed:?}");
        Ok(())
    }
}
