//! Placement: a pure function over a snapshot of hosts, so it is table-tested and
//! benchmarked without I/O.
//!
//! # Layout
//! - this file: what a host and a request look like to the scheduler, the hard rules every
//!   placement keeps ([`fits`]), the scoring scheduler [`place`] and why a request is
//!   refused ([`unplaceable`]);
//! - [`first_fit`]: the previous policy (first host by pool count and id), kept as the
//!   baseline the packing benchmark (`packbench`) compares against;
//! - [`guarantee`]: tenants' guaranteed shares: who borrows, and which borrowed
//!   NodeManagers to drain so that a guarantee is placeable.
//!
//! # Rules (never broken) and preferences (scored)
//! - Rules: a ready host; CPU and memory never overcommitted; the pool's `nodeSelector`
//!   labels on the host; at most `maxPerHost` instances of the pool there (DataNodes: 1 by
//!   default, so one host failure never takes two replicas of a block); a DataNode's (or NameNode's) `disk`
//!   split evenly over the host's data disks (a DataNode gets one folder on each, and HDFS's
//!   default volume choice fills them round-robin), each disk with room for its share;
//!   none of the pool's host ports taken.
//! - Preferences: DataNodes go to a host without one of their pool (when `maxPerHost` lets
//!   them share, to the host holding the fewest only once every host holds one), in the rack
//!   holding the fewest of their pool that has such a host (racks as even as capacity
//!   allows); then best fit on what is left: the host
//!   with the least room left that still fits, room being the sum over CPU, memory and data
//!   disk of what is free relative to the fleet's average host. That packs hosts full, leaves
//!   whole hosts free for large requests, and keeps disk-rich hosts for DataNodes (a host's
//!   spare disk makes it "roomy" to a NodeManager); ties go to the lower host id.

pub mod first_fit;
pub mod guarantee;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use crate::Map as HashMap;

use herd_api::network::Protocol;
use herd_api::quantity::{Cpu, Memory};

/// A host as the scheduler sees it: what is still free and what already runs there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostView {
    pub id: String,
    /// The single "may receive new placements" flag: false for hosts that stopped
    /// heartbeating (and, with host operations, cordoned ones).
    pub ready: bool,
    /// The host's rack label; hosts without one share one unnamed rack.
    pub rack: Option<String>,
    /// Labels for pools' `nodeSelector`.
    pub labels: BTreeMap<String, String>,
    pub free_cpu: u64,
    pub free_memory: u64,
    /// Free bytes on each data disk; `None` when the host did not measure its disks (an
    /// older agent), in which case `disk` is not checked there.
    pub free_disks: Option<Vec<u64>>,
    /// Instances already on the host, per pool (`tenant/cluster/role`): at least the pools
    /// of the requests placed (no other is asked about). NB: a list, looked through: it holds
    /// the few pools of one batch the host runs (none for a cluster just applied), and a map
    /// per host was a tenth of making the views of 30,000 hosts for each apply.
    pub per_pool: Vec<(String, u32)>,
    /// Host ports already published there.
    pub ports: BTreeSet<(Protocol, u16)>,
}

/// One instance waiting for a host.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `tenant/cluster/role`.
    pub pool: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Room on the data disks (DataNodes, NameNodes), split evenly over the host's disks.
    pub disk: Memory,
    /// Host ports the instance publishes; a host where one is taken does not fit.
    pub ports: Vec<(Protocol, u16)>,
    /// Labels the host must carry.
    pub selector: BTreeMap<String, String>,
    /// At most this many instances of the pool on one host.
    pub max_per_host: Option<u32>,
    /// Spread the pool's instances over racks (DataNodes).
    pub spread_racks: bool,
}

impl Request {
    /// The pool's role, the last segment of `pool`, for messages.
    fn role(&self) -> &str {
        self.pool.rsplit('/').next().unwrap_or(&self.pool)
    }
}

/// Each data disk's share of `disk` over `n` disks (rounded up).
pub fn disk_share(disk: u64, n: usize) -> u64 {
    if n == 0 { disk } else { disk.div_ceil(n as u64) }
}

/// Whether the host's labels include every one of `selector`.
fn selected(h: &HostView, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| h.labels.get(k) == Some(v))
}

/// How many instances of `pool` the host holds.
fn held(h: &HostView, pool: &str) -> u32 {
    h.per_pool.iter().find(|(p, _)| p == pool).map_or(0, |(_, n)| *n)
}

fn under_max(h: &HostView, r: &Request) -> bool {
    r.max_per_host.is_none_or(|m| held(h, &r.pool) < m)
}

fn roomy(h: &HostView, r: &Request) -> bool {
    h.free_cpu >= r.cpu.0 && h.free_memory >= r.memory.0
}

fn disk_fits(h: &HostView, r: &Request) -> bool {
    match &h.free_disks {
        _ if r.disk.0 == 0 => true,
        None => true,
        Some(disks) if disks.is_empty() => false,
        Some(disks) => {
            let share = disk_share(r.disk.0, disks.len());
            disks.iter().all(|f| *f >= share)
        }
    }
}

fn ports_free(h: &HostView, r: &Request) -> bool {
    r.ports.iter().all(|p| !h.ports.contains(p))
}

/// Whether `r` may go on `h`: every rule of the module docs.
pub fn fits(h: &HostView, r: &Request) -> bool {
    h.ready && roomy(h, r) && under_max(h, r) && ports_free(h, r) && disk_fits(h, r) && selected(h, &r.selector)
}

/// Takes `r`'s room on `h`.
pub fn commit(h: &mut HostView, r: &Request) {
    h.free_cpu -= r.cpu.0;
    h.free_memory -= r.memory.0;
    if let Some(disks) = h.free_disks.as_mut().filter(|_| r.disk.0 > 0) {
        let share = disk_share(r.disk.0, disks.len());
        for d in disks.iter_mut() {
            *d = d.saturating_sub(share);
        }
    }
    match h.per_pool.iter_mut().find(|(p, _)| *p == r.pool) {
        Some((_, n)) => *n += 1,
        None => h.per_pool.push((r.pool.clone(), 1)),
    }
    h.ports.extend(r.ports.iter().copied());
}

/// How much room a host has left, as one number: the sum over CPU, memory and data disk of
/// what is free divided by the fleet's average per ready host. Best fit is the least room
/// left that still fits; because disk counts too, requests without disk leave disk-rich
/// hosts to DataNodes, and small hosts fill before large ones are broken into.
#[derive(Debug, Clone, Copy)]
struct Weights {
    cpu: f64,
    memory: f64,
    disk: f64,
}

impl Weights {
    fn of(hosts: &[HostView]) -> Self {
        let ready = hosts.iter().filter(|h| h.ready);
        let (mut n, mut cpu, mut memory, mut disk) = (0.0, 0.0, 0.0, 0.0);
        for h in ready {
            n += 1.0;
            cpu += h.free_cpu as f64;
            memory += h.free_memory as f64;
            disk += h.free_disks.as_ref().map_or(0, |d| d.iter().sum::<u64>()) as f64;
        }
        let per = |total: f64| if total > 0.0 { n * ROOM_SCALE / total } else { 0.0 };
        Weights { cpu: per(cpu), memory: per(memory), disk: per(disk) }
    }

    /// Room left counting data disks (the order requests without disk use), and counting
    /// CPU and memory only (the order DataNodes use).
    fn room(&self, h: &HostView) -> (u64, u64) {
        let disk = h.free_disks.as_ref().map_or(0, |d| d.iter().sum::<u64>());
        let compute = h.free_cpu as f64 * self.cpu + h.free_memory as f64 * self.memory;
        ((compute + DISK_SPARING * disk as f64 * self.disk) as u64, compute as u64)
    }

    /// The least room a host that fits `r` can have in the order `r` uses (rounded down).
    fn need(&self, r: &Request) -> u64 {
        (r.cpu.0 as f64 * self.cpu + r.memory.0 as f64 * self.memory) as u64
    }
}

/// How much more a free byte of data disk counts than CPU or memory in the room of requests
/// without disk: enough that they fill disk-poor hosts first.
const DISK_SPARING: f64 = 16.0;

/// An average host's room.
const ROOM_SCALE: f64 = 1e6;

/// Hosts ordered by room left, then rank (id order): counting disk, and not.
#[derive(Default)]
struct Order {
    room: BTreeSet<(u64, usize)>,
    compute: BTreeSet<(u64, usize)>,
}

impl Order {
    /// The order of hosts with these keys (room counting disk, and not) and ranks.
    fn of(keys: &[((u64, u64), usize)]) -> Self {
        Order {
            room: keys.iter().map(|&((room, _), rank)| (room, rank)).collect(),
            compute: keys.iter().map(|&((_, compute), rank)| (compute, rank)).collect(),
        }
    }

    /// The host with the least room left that fits `r`: a request with disk goes where the
    /// least CPU and memory is left (disk-rich, CPU-poor hosts first), one without where the
    /// least of everything is left (sparing disk-rich hosts).
    fn best(&self, need: u64, hosts: &[HostView], by_rank: &[usize], r: &Request) -> Option<usize> {
        self.fitting(need, hosts, by_rank, r).next()
    }

    /// The hosts that fit `r`, least room left first.
    fn fitting<'a>(&'a self, need: u64, hosts: &'a [HostView], by_rank: &'a [usize], r: &'a Request) -> impl Iterator<Item = usize> + 'a {
        let set = if r.disk.0 > 0 { &self.compute } else { &self.room };
        set.range((need, 0)..).map(|&(_, rank)| rank).filter(move |&rank| fits(&hosts[by_rank[rank]], r))
    }

    fn insert(&mut self, key: (u64, u64), rank: usize) {
        self.room.insert((key.0, rank));
        self.compute.insert((key.1, rank));
    }

    fn remove(&mut self, key: (u64, u64), rank: usize) {
        self.room.remove(&(key.0, rank));
        self.compute.remove(&(key.1, rank));
    }
}

/// What a batch keeps up to date as it places.
struct Index {
    /// Host index by rank (hosts sorted by id).
    by_rank: Vec<usize>,
    /// Each host's key in the orders, `None` when it is in none (not ready, or too full for
    /// any request of the batch: room only shrinks, so it stays out).
    key: Vec<Option<(u64, u64)>>,
    all: Order,
    /// Per rack (sorted by name), and each host's rack.
    racks: Vec<Order>,
    rack_of: Vec<usize>,
    /// Per pool, its instances in each rack.
    pool_racks: HashMap<String, Vec<u32>>,
    /// Each host's rank (inverse of `by_rank`).
    rank_of: Vec<usize>,
    /// For pools whose spread skipped many hosts already holding one of them (a big pool:
    /// without it, its n-th DataNode skipped the n-1 hosts holding one, O(n²) a batch): per
    /// rack, the hosts in the orders that hold none of the pool, kept up to date as `all`.
    empty: HashMap<String, Vec<Order>>,
    weights: Weights,
    /// The least CPU and memory any request of the batch asks for.
    least: (u64, u64),
}

impl Index {
    fn new(hosts: &[HostView], requests: &[Request]) -> Self {
        let mut by_rank: Vec<usize> = (0..hosts.len()).collect();
        // Views kept between passes come in id order already.
        if !hosts.is_sorted_by(|a, b| a.id <= b.id) {
            by_rank.sort_by(|&a, &b| hosts[a].id.cmp(&hosts[b].id));
        }
        let names: BTreeSet<&str> = hosts.iter().map(|h| h.rack.as_deref().unwrap_or("")).collect();
        let names: Vec<&str> = names.into_iter().collect();
        let least = requests.iter().fold((u64::MAX, u64::MAX), |(c, m), r| (c.min(r.cpu.0), m.min(r.memory.0)));
        let mut index = Index {
            key: vec![None; hosts.len()],
            all: Order::default(),
            racks: Vec::new(),
            rack_of: vec![0; hosts.len()],
            pool_racks: HashMap::default(),
            weights: Weights::of(hosts),
            least,
            by_rank: Vec::new(),
            rank_of: vec![0; hosts.len()],
            empty: HashMap::default(),
        };
        // The orders are built from their keys at once (a B-tree built from sorted keys):
        // inserting 30,000 hosts one by one into four of them was most of making the index.
        let mut all = Vec::with_capacity(hosts.len());
        let mut racks: Vec<Vec<((u64, u64), usize)>> = names.iter().map(|_| Vec::new()).collect();
        for (rank, &i) in by_rank.iter().enumerate() {
            let h = &hosts[i];
            index.rank_of[i] = rank;
            let rack = names.binary_search(&h.rack.as_deref().unwrap_or("")).unwrap_or(0);
            index.rack_of[i] = rack;
            for (pool, n) in &h.per_pool {
                index.pool_racks.entry(pool.clone()).or_insert_with(|| vec![0; names.len()])[rack] += n;
            }
            if index.eligible(h) {
                let key = index.weights.room(h);
                index.key[i] = Some(key);
                all.push((key, rank));
                racks[rack].push((key, rank));
            }
        }
        index.all = Order::of(&all);
        index.racks = racks.iter().map(|keys| Order::of(keys)).collect();
        index.by_rank = by_rank;
        index
    }

    /// Whether `h` belongs in the orders: ready, with room for the least request of the batch.
    fn eligible(&self, h: &HostView) -> bool {
        h.ready && h.free_cpu >= self.least.0 && h.free_memory >= self.least.1
    }

    fn insert(&mut self, h: &HostView, i: usize, rank: usize) {
        if !self.eligible(h) {
            return;
        }
        let key = self.weights.room(h);
        self.key[i] = Some(key);
        self.all.insert(key, rank);
        self.racks[self.rack_of[i]].insert(key, rank);
        for (pool, orders) in &mut self.empty {
            if held(h, pool) == 0 {
                orders[self.rack_of[i]].insert(key, rank);
            }
        }
    }

    fn remove(&mut self, i: usize, rank: usize) {
        if let Some(key) = self.key[i].take() {
            self.all.remove(key, rank);
            self.racks[self.rack_of[i]].remove(key, rank);
            for orders in self.empty.values_mut() {
                orders[self.rack_of[i]].remove(key, rank);
            }
        }
    }

    /// Builds `empty` for `pool` from the hosts in the orders.
    fn build_empty(&mut self, hosts: &[HostView], pool: &str) {
        let mut orders: Vec<Order> = self.racks.iter().map(|_| Order::default()).collect();
        for (i, key) in self.key.iter().enumerate() {
            if let Some(key) = key
                && held(&hosts[i], pool) == 0
            {
                orders[self.rack_of[i]].insert(*key, self.rank_of[i]);
            }
        }
        self.empty.insert(pool.to_string(), orders);
    }

    fn find(&mut self, hosts: &[HostView], r: &Request, skip_limit: usize) -> Option<usize> {
        let need = self.weights.need(r);
        if !r.spread_racks {
            return self.all.best(need, hosts, &self.by_rank, r);
        }
        // Spread: a host without one of the pool, in the rack holding the fewest of it; only
        // where `maxPerHost` allows more than one and every such host is taken, the host
        // holding the fewest, racks in the same order.
        let counts = self.pool_racks.get(&r.pool);
        let mut order: Vec<(u32, usize)> = (0..self.racks.len()).map(|k| (counts.map_or(0, |c| c[k]), k)).collect();
        order.sort_unstable();
        let empty = match self.empty.get(&r.pool) {
            Some(orders) => order.iter().find_map(|&(_, k)| orders[k].fitting(need, hosts, &self.by_rank, r).next()),
            None => {
                let mut skipped = 0;
                let found = order.iter().find_map(|&(_, k)| {
                    self.racks[k].fitting(need, hosts, &self.by_rank, r).find(|&rank| {
                        let none = held(&hosts[self.by_rank[rank]], &r.pool) == 0;
                        skipped += usize::from(!none);
                        none
                    })
                });
                if skipped > skip_limit {
                    self.build_empty(hosts, &r.pool);
                }
                found
            }
        };
        if empty.is_some() || r.max_per_host == Some(1) {
            return empty;
        }
        let held = |rank: usize| held(&hosts[self.by_rank[rank]], &r.pool);
        let mut least: Option<(u32, usize)> = None;
        for &(_, k) in &order {
            for rank in self.racks[k].fitting(need, hosts, &self.by_rank, r) {
                if least.is_none_or(|(n, _)| held(rank) < n) {
                    least = Some((held(rank), rank));
                }
            }
        }
        least.map(|(_, rank)| rank)
    }

    fn commit(&mut self, hosts: &mut [HostView], rank: usize, r: &Request) {
        let i = self.by_rank[rank];
        self.remove(i, rank);
        commit(&mut hosts[i], r);
        self.insert(&hosts[i], i, rank);
        let n = self.racks.len();
        self.pool_racks.entry(r.pool.clone()).or_insert_with(|| vec![0; n])[self.rack_of[i]] += 1;
    }
}

/// A request's shape: two requests alike fail alike within one batch (room only shrinks).
#[derive(PartialEq, Eq, Hash)]
struct Shape {
    pool: String,
    cpu: u64,
    memory: u64,
    disk: u64,
    ports: Vec<(Protocol, u16)>,
    selector: Vec<(String, String)>,
}

impl Shape {
    fn of(r: &Request) -> Self {
        Shape {
            pool: r.pool.clone(),
            cpu: r.cpu.0,
            memory: r.memory.0,
            disk: r.disk.0,
            ports: r.ports.clone(),
            selector: r.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// Places each request in order, updating `hosts` as it goes; `Err` carries why a request
/// cannot be placed, in words an operator can act on, naming the rule that refused it.
///
/// Indexed: the ready hosts ordered by room left (fleet-wide and per rack), kept up to date
/// as instances are placed, so a placement is a range query from the least room that could
/// fit plus the hosts skipped for another rule; hosts too full for every request of the
/// batch leave the order; a request like one already found unplaceable gets the same
/// reason without a scan.
pub fn place(hosts: &mut [HostView], requests: &[Request]) -> Vec<Result<String, String>> {
    place_with(hosts, requests, SPREAD_SKIP_LIMIT)
}

/// A spread that skipped more hosts holding one of its pool than this builds the pool's
/// own order of hosts holding none (see `Index::empty`).
const SPREAD_SKIP_LIMIT: usize = 64;

/// [`place`], building a pool's order of empty hosts once a spread skipped more than
/// `skip_limit` hosts (the tables test that the choices are those of a plain scan).
fn place_with(hosts: &mut [HostView], requests: &[Request], skip_limit: usize) -> Vec<Result<String, String>> {
    let mut index = Index::new(hosts, requests);
    let mut unplaceable_memo: HashMap<Shape, String> = HashMap::default();
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let shape = (!unplaceable_memo.is_empty()).then(|| Shape::of(r));
        if let Some(why) = shape.as_ref().and_then(|s| unplaceable_memo.get(s)) {
            out.push(Err(why.clone()));
            continue;
        }
        match index.find(hosts, r, skip_limit) {
            Some(rank) => {
                index.commit(hosts, rank, r);
                out.push(Ok(hosts[index.by_rank[rank]].id.clone()));
            }
            None => {
                let why = unplaceable(hosts, r);
                unplaceable_memo.insert(shape.unwrap_or_else(|| Shape::of(r)), why.clone());
                out.push(Err(why));
            }
        }
    }
    out
}

/// Why no host fits `r`: the first rule, in the order an operator would fix them, that
/// leaves no ready host.
pub fn unplaceable(hosts: &[HostView], r: &Request) -> String {
    let ready: Vec<&HostView> = hosts.iter().filter(|h| h.ready).collect();
    if ready.is_empty() {
        return if hosts.is_empty() {
            "no host has registered yet: start herd-agent on a host".into()
        } else {
            format!("none of the {} hosts is ready (no recent heartbeat, or cordoned)", hosts.len())
        };
    }
    let role = r.role();
    let labelled: Vec<&HostView> = ready.iter().copied().filter(|h| selected(h, &r.selector)).collect();
    if labelled.is_empty() {
        let want: Vec<String> = r.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return format!(
            "no ready host has the labels {} (pools.{role}.nodeSelector; {} ready hosts): label hosts with `herd-agent --label`, or change the selector",
            want.join(","),
            ready.len()
        );
    }
    let under: Vec<&HostView> = labelled.iter().copied().filter(|h| under_max(h, r)).collect();
    if under.is_empty() {
        let max = r.max_per_host.unwrap_or(0);
        let what = if role == "datanode" && max == 1 {
            "DataNodes of one cluster never share a host (one host failure must not take two replicas of a block)".to_string()
        } else {
            format!("at most {max} {role}s of one cluster per host")
        };
        return format!(
            "{what}: each of the {} ready hosts{} already holds {max} of {} (pools.{role}.maxPerHost: {max}); add hosts, or raise maxPerHost",
            labelled.len(),
            if r.selector.is_empty() { "" } else { " with the selected labels" },
            r.pool,
        );
    }
    let big: Vec<&HostView> = under.iter().copied().filter(|h| roomy(h, r)).collect();
    if big.is_empty() {
        let best = under.iter().max_by_key(|h| (h.free_cpu.min(r.cpu.0), h.free_memory.min(r.memory.0)));
        let best = best.map(|h| format!("; most free: {} with {} CPU, {}", h.id, Cpu(h.free_cpu), Memory(h.free_memory).approx()));
        return format!(
            "no ready host has {} CPU and {} memory free ({} ready hosts{})",
            r.cpu,
            r.memory,
            under.len(),
            best.unwrap_or_default()
        );
    }
    let disky: Vec<&HostView> = big.iter().copied().filter(|h| disk_fits(h, r)).collect();
    if disky.is_empty() {
        let most = big
            .iter()
            .filter_map(|h| {
                let disks = h.free_disks.as_ref()?;
                Some((disks.iter().min().copied().unwrap_or(0).saturating_mul(disks.len() as u64), h))
            })
            .max_by_key(|(free, _)| *free)
            .map(|(free, h)| format!("; most: {} with {} usable", h.id, Memory(free).approx()))
            .unwrap_or_default();
        return format!(
            "no ready host with {} CPU and {} memory free has {} free on its data disks, split evenly over them (pools.{role}.disk; {} such hosts{most}): add data disks or hosts, or ask for less",
            r.cpu,
            r.memory,
            r.disk,
            big.len()
        );
    }
    let ports: Vec<String> = r.ports.iter().map(|(proto, port)| format!("{proto}/{port}")).collect();
    format!(
        "every ready host with room already publishes one of host ports {} ({} such hosts): add hosts or change `publish`",
        ports.join(", "),
        disky.len()
    )
}
