//! Packing benchmark: the scoring scheduler (`scheduler::place`, best fit by room left
//! under the spread rules) side by side with the first-fit it replaced
//! (`scheduler::first_fit::place`) on one synthetic but realistic trace, then the scoring
//! scheduler's placement throughput on 10,000 hosts.
//!
//!     cargo run --release -p herd-orchestrator --bin packbench -- [--hosts 400] [--seed 12] [-o json]
//!
//! The fleet: `--hosts` hosts of three shapes (general 32 CPU/128Gi/4x2Ti, compute
//! 48 CPU/192Gi/2x1Ti, storage 16 CPU/64Gi/12x4Ti; 50/30/20 %) in racks of 20. The trace:
//! tenants' clusters arrive (a NameNode, a ResourceManager, a DataNode pool of 3 to 24 and a
//! NodeManager pool of 2 to 40, each pool of one of a few sizes, 1 to 16 CPU) and grow (NodeManager and
//! DataNode pools scaled up), each event placed as one batch as an apply hands it over,
//! until the trace ends. Reported per policy:
//! - instances placed before the first refusal, and placed/refused over the whole trace;
//! - hosts needed for the whole trace on a fleet large enough for it (4x the hosts);
//! - fragmentation: the fleet's CPU and memory still idle when the first request was
//!   refused (room left in pieces too small for it), in % of the fleet; and, on a second
//!   trace, how many large NodeManagers (16 CPU, 64Gi) still find a host after small
//!   instances of many pools filled half the fleet's memory.

use std::collections::BTreeMap;
use std::time::Instant;

use herd_api::quantity::{Cpu, Memory};
use herd_orchestrator::scheduler::{self, HostView, Request, first_fit};

const GI: u64 = 1 << 30;
const TI: u64 = 1 << 40;

/// splitmix64: a small deterministic generator, so a seed names one trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn fleet(n: usize, racks_of: usize, seed: u64) -> Vec<HostView> {
    let mut rng = Rng(seed ^ 0xf1ee7);
    (0..n)
        .map(|i| {
            let (cpu, mem, disks) = match rng.range(0, 9) {
                0..=4 => (32, 128, vec![2 * TI; 4]),
                5..=7 => (48, 192, vec![TI; 2]),
                _ => (16, 64, vec![4 * TI; 12]),
            };
            HostView {
                id: format!("h{i:05}"),
                ready: true,
                rack: Some(format!("r{:03}", i / racks_of)),
                free_cpu: cpu * 1000,
                free_memory: mem * GI,
                free_disks: Some(disks),
                ..HostView::default()
            }
        })
        .collect()
}

/// One apply's worth of new instances.
type Event = Vec<Request>;

fn pool(tenant: usize, cluster: usize, role: &str, cpu: u64, mem_gi: u64, disk: u64, n: u64) -> Vec<Request> {
    let dn = role == "datanode";
    let r = Request {
        pool: format!("t{tenant}/c{cluster}/{role}"),
        cpu: Cpu(cpu),
        memory: Memory(mem_gi * GI),
        disk: Memory(disk),
        max_per_host: dn.then_some(1),
        spread_racks: dn,
        ..Request::default()
    };
    vec![r; n as usize]
}

/// A cluster of the trace: tenant, number, DataNode size (CPU, GiB, disk), NodeManager size.
type TraceCluster = (usize, usize, (u64, u64, u64), (u64, u64));

/// Clusters arriving and growing, about `target` instances in all.
fn trace(seed: u64, target: usize) -> Vec<Event> {
    let mut rng = Rng(seed);
    let dn_sizes = [(1000, 4, TI), (2000, 8, 2 * TI), (1000, 2, TI / 2)];
    let nm_sizes = [(2000, 8), (4000, 16), (8000, 32), (8000, 64), (16_000, 64), (1000, 4)];
    let mut events = Vec::new();
    let mut clusters: Vec<TraceCluster> = Vec::new();
    let mut total = 0;
    while total < target {
        let grow = !clusters.is_empty() && rng.range(0, 9) < 4;
        let event: Event = if grow {
            let (t, c, dn, nm) = clusters[(rng.next() % clusters.len() as u64) as usize];
            if rng.range(0, 3) == 0 {
                pool(t, c, "datanode", dn.0, dn.1, dn.2, rng.range(1, 4))
            } else {
                pool(t, c, "nodemanager", nm.0, nm.1, 0, rng.range(2, 12))
            }
        } else {
            let (t, c) = (rng.range(0, 59) as usize, clusters.len());
            let (dn, nm) = (rng.pick(&dn_sizes), rng.pick(&nm_sizes));
            clusters.push((t, c, dn, nm));
            let mut e = pool(t, c, "namenode", 2000, 8, 100 * GI, 1);
            e.extend(pool(t, c, "resourcemanager", 2000, 4, 0, 1));
            e.extend(pool(t, c, "datanode", dn.0, dn.1, dn.2, rng.range(3, 24)));
            e.extend(pool(t, c, "nodemanager", nm.0, nm.1, 0, rng.range(2, 40)));
            e
        };
        total += event.len();
        events.push(event);
    }
    events
}

type Place = fn(&mut [HostView], &[Request]) -> Vec<Result<String, String>>;

#[derive(Debug, Default, serde::Serialize)]
struct Packing {
    placed_before_first_refusal: usize,
    placed: usize,
    refused: usize,
    hosts_needed: usize,
    idle_cpu_pct: f64,
    idle_memory_pct: f64,
}

/// Replays `events`; returns (placed before the first refusal, placed, refused, the fleet's
/// free CPU and memory in % of its capacity when the first refusal came).
fn replay(place: Place, hosts: &mut [HostView], events: &[Event]) -> (usize, usize, usize, (f64, f64)) {
    let capacity = free(hosts);
    let (mut before, mut placed, mut refused, mut idle) = (None, 0, 0, None);
    for e in events {
        let results = place(hosts, e);
        if idle.is_none() && results.iter().any(|r| r.is_err()) {
            let now = free(hosts);
            idle = Some((pct(now.0, capacity.0), pct(now.1, capacity.1)));
        }
        for r in results {
            match r {
                Ok(_) => placed += 1,
                Err(why) => {
                    refused += 1;
                    if before.is_none() && std::env::var_os("PACKBENCH_WHY").is_some() {
                        eprintln!("first refusal: {why}");
                    }
                    before.get_or_insert(placed);
                }
            }
        }
    }
    (before.unwrap_or(placed), placed, refused, idle.unwrap_or_default())
}

fn free(hosts: &[HostView]) -> (u64, u64) {
    hosts.iter().fold((0, 0), |(c, m), h| (c + h.free_cpu, m + h.free_memory))
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { (1000.0 * a as f64 / b as f64).round() / 10.0 }
}

fn measure(place: Place, hosts_n: usize, seed: u64, events: &[Event]) -> Packing {
    let mut hosts = fleet(hosts_n, 20, seed);
    let (before, placed, refused, idle) = replay(place, &mut hosts, events);
    let mut big = fleet(4 * hosts_n, 20, seed);
    let (_, _, big_refused, _) = replay(place, &mut big, events);
    let hosts_needed = big.iter().filter(|h| h.per_pool.iter().any(|(_, n)| *n > 0)).count();
    if big_refused > 0 {
        eprintln!("note: {big_refused} instances refused even on {} hosts (their DataNode pool outgrew its rules)", 4 * hosts_n);
    }
    Packing {
        placed_before_first_refusal: before,
        placed,
        refused,
        hosts_needed,
        idle_cpu_pct: idle.0,
        idle_memory_pct: idle.1,
    }
}

/// Fragmentation as it bites: small instances of many pools fill half the fleet's memory,
/// then large NodeManagers (16 CPU, 64Gi) arrive one at a time. Returns how many large ones
/// were placed before the first refusal.
fn large_after_small(place: Place, hosts_n: usize, seed: u64) -> usize {
    let mut hosts = fleet(hosts_n, 20, seed);
    let memory: u64 = hosts.iter().map(|h| h.free_memory).sum();
    let mut rng = Rng(seed ^ 0x5a11);
    let mut used = 0;
    let mut c = 0;
    while used < memory / 2 {
        let n = rng.range(2, 12);
        let (cpu, mem) = rng.pick(&[(1000, 4), (2000, 8), (1000, 2)]);
        let _ = place(&mut hosts, &pool(c % 60, c, "nodemanager", cpu, mem, 0, n));
        used += n * mem * GI;
        c += 1;
    }
    let large = pool(999, 999, "nodemanager", 16_000, 64, 0, 1);
    let mut placed = 0;
    while place(&mut hosts, &large)[0].is_ok() {
        placed += 1;
    }
    placed
}

#[derive(Debug, serde::Serialize)]
struct Throughput {
    hosts: usize,
    placements: usize,
    seconds: f64,
    placements_per_s: f64,
    hosts_over_capacity: usize,
}

/// 1,000 clusters of 10 DataNodes (spread) and 90 NodeManagers on 10,000 hosts, one batch.
fn throughput(seed: u64) -> Throughput {
    let mut hosts = fleet(10_000, 40, seed);
    let capacity: BTreeMap<String, (u64, u64)> = hosts.iter().map(|h| (h.id.clone(), (h.free_cpu, h.free_memory))).collect();
    let mut requests = Vec::with_capacity(100_000);
    for c in 0..1000 {
        requests.extend(pool(c % 97, c, "datanode", 1000, 4, TI, 10));
        requests.extend(pool(c % 97, c, "nodemanager", 2000, 8, 0, 90));
    }
    let t = Instant::now();
    let placed = scheduler::place(&mut hosts, &requests);
    let seconds = t.elapsed().as_secs_f64();
    let ok = placed.iter().filter(|r| r.is_ok()).count();
    let over = hosts.iter().filter(|h| capacity.get(&h.id).is_none_or(|c| h.free_cpu > c.0 || h.free_memory > c.1)).count();
    Throughput { hosts: 10_000, placements: ok, seconds, placements_per_s: (ok as f64 / seconds).round(), hosts_over_capacity: over }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok());
    let hosts_n = flag("--hosts").unwrap_or(400) as usize;
    let seed = flag("--seed").unwrap_or(12);
    let json = args.windows(2).any(|w| w[0] == "-o" && w[1] == "json");
    // Enough work to overflow the fleet (about 3.5 CPU per instance, 34 per host).
    let events = trace(seed, hosts_n * 10);
    let instances: usize = events.iter().map(Vec::len).sum();
    let best = measure(scheduler::place, hosts_n, seed, &events);
    let first = measure(first_fit::place, hosts_n, seed, &events);
    let large = (large_after_small(first_fit::place, hosts_n, seed), large_after_small(scheduler::place, hosts_n, seed));
    let speed = throughput(seed);
    if json {
        let out = serde_json::json!({"hosts": hosts_n, "seed": seed, "events": events.len(), "instances": instances,
            "scoring": best, "first_fit": first, "large_after_small": {"first_fit": large.0, "scoring": large.1}, "throughput": speed});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let ratio = |a: f64, b: f64| if b == 0.0 { "-".to_string() } else { format!("{:.2}x", a / b) };
    println!("trace: seed {seed}, {} events, {instances} instances, on {hosts_n} hosts (racks of 20)", events.len());
    println!("{:<38} {:>12} {:>12} {:>10}", "", "first-fit", "scoring", "ratio");
    let row = |name: &str, f: f64, b: f64| println!("{name:<38} {f:>12} {b:>12} {:>10}", ratio(b, f));
    row("placed before the first refusal", first.placed_before_first_refusal as f64, best.placed_before_first_refusal as f64);
    row("placed over the whole trace", first.placed as f64, best.placed as f64);
    row("refused over the whole trace", first.refused as f64, best.refused as f64);
    row("hosts needed for the whole trace", first.hosts_needed as f64, best.hosts_needed as f64);
    row("idle CPU at the first refusal, %", first.idle_cpu_pct, best.idle_cpu_pct);
    row("idle memory at the first refusal, %", first.idle_memory_pct, best.idle_memory_pct);
    row("16 CPU/64Gi placed after small ones", large.0 as f64, large.1 as f64);
    println!(
        "throughput (scoring): {} placements on {} hosts in {:.3} s = {} placements/s; hosts over capacity: {}",
        speed.placements, speed.hosts, speed.seconds, speed.placements_per_s, speed.hosts_over_capacity
    );
}
