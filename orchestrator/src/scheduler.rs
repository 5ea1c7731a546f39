//! Placement: a pure function over a snapshot of hosts, so it is table-tested and
//! benchmarked without I/O. For now a first-fit that never overcommits a host's CPU or
//! memory; hosts are tried in an order that spreads each pool across hosts.

use std::collections::{BTreeSet, HashMap};

use herd_api::network::Protocol;
use herd_api::quantity::{Cpu, Memory};

/// A host as the scheduler sees it: what is still free and what already runs there.
#[derive(Debug, Clone)]
pub struct HostView {
    pub id: String,
    /// Hosts that stopped heartbeating get nothing new.
    pub ready: bool,
    pub free_cpu: u64,
    pub free_memory: u64,
    /// Instances already on the host, per pool (`tenant/cluster/role`).
    pub per_pool: HashMap<String, u32>,
    /// Host ports already published there.
    pub ports: BTreeSet<(Protocol, u16)>,
}

/// One instance waiting for a host.
#[derive(Debug, Clone)]
pub struct Request {
    /// `tenant/cluster/role`: instances of one pool are spread across hosts.
    pub pool: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Host ports the instance publishes; a host where one is taken does not fit.
    pub ports: Vec<(Protocol, u16)>,
}

/// Places each request in order, updating `hosts` as it goes; `Err` carries why a request
/// cannot be placed, in words an operator can act on.
///
/// The policy: the first ready host, ordered by how many instances of the request's pool it
/// holds and then by id (a stable, spreading first-fit), with room for its CPU and memory
/// and none of its host ports taken. Indexed so a batch costs O((requests + hosts) log
/// hosts) for pools of equal-sized instances, not a sort of every host per request:
/// - per pool (and its ports), the ready hosts ordered by (instances of the pool, id), kept
///   up to date as instances are placed;
/// - a host that cannot take a request of a pool is dropped from that pool's order for the
///   rest of the batch (free room only shrinks during a batch), unless a smaller request of
///   the pool comes along, which puts them all back;
/// - a request like one already found unplaceable gets the same reason without a scan.
pub fn place(hosts: &mut [HostView], requests: &[Request]) -> Vec<Result<String, String>> {
    let mut by_id: Vec<usize> = (0..hosts.len()).collect();
    by_id.sort_by(|&a, &b| hosts[a].id.cmp(&hosts[b].id));
    let mut rank = vec![0usize; hosts.len()];
    for (r, &i) in by_id.iter().enumerate() {
        rank[i] = r;
    }
    let mut pools: HashMap<PoolKey, PoolOrder> = HashMap::new();
    let mut unplaceable_memo: HashMap<(PoolKey, u64, u64), String> = HashMap::new();
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let key = (r.pool.clone(), r.ports.clone());
        let memo_key = (key.clone(), r.cpu.0, r.memory.0);
        if let Some(why) = unplaceable_memo.get(&memo_key) {
            out.push(Err(why.clone()));
            continue;
        }
        let order = pools.entry(key).or_insert_with(|| PoolOrder::new(hosts, &by_id, &rank, &r.pool));
        match order.place(hosts, &by_id, r) {
            Some(i) => out.push(Ok(hosts[i].id.clone())),
            None => {
                let why = unplaceable(hosts, r);
                unplaceable_memo.insert(memo_key, why.clone());
                out.push(Err(why));
            }
        }
    }
    out
}

/// A pool and the host ports its instances publish.
type PoolKey = (String, Vec<(Protocol, u16)>);

/// One pool's ready hosts in placement order: (instances of the pool, rank by id).
struct PoolOrder {
    order: BTreeSet<(u32, usize)>,
    /// Dropped for not fitting, and the largest request (CPU, memory) one was dropped for.
    dropped: Vec<(u32, usize)>,
    dropped_for: (u64, u64),
}

impl PoolOrder {
    fn new(hosts: &[HostView], by_id: &[usize], rank: &[usize], pool: &str) -> Self {
        let order = by_id
            .iter()
            .filter(|&&i| hosts[i].ready)
            .map(|&i| (hosts[i].per_pool.get(pool).copied().unwrap_or(0), rank[i]))
            .collect();
        PoolOrder { order, dropped: Vec::new(), dropped_for: (0, 0) }
    }

    /// Places `r` on the first host that fits; returns its index.
    fn place(&mut self, hosts: &mut [HostView], by_id: &[usize], r: &Request) -> Option<usize> {
        if r.cpu.0 < self.dropped_for.0 || r.memory.0 < self.dropped_for.1 {
            // A smaller request than some host was dropped for: it may fit there.
            self.order.extend(self.dropped.drain(..));
            self.dropped_for = (0, 0);
        }
        let mut found = None;
        let mut drop = Vec::new();
        for &(count, rank) in &self.order {
            let h = &hosts[by_id[rank]];
            if h.free_cpu >= r.cpu.0 && h.free_memory >= r.memory.0 && r.ports.iter().all(|p| !h.ports.contains(p)) {
                found = Some((count, rank));
                break;
            }
            drop.push((count, rank));
        }
        for d in drop {
            self.order.remove(&d);
            self.dropped.push(d);
            self.dropped_for = (self.dropped_for.0.max(r.cpu.0), self.dropped_for.1.max(r.memory.0));
        }
        let (count, rank) = found?;
        let i = by_id[rank];
        self.order.remove(&(count, rank));
        self.order.insert((count + 1, rank));
        let host = &mut hosts[i];
        host.free_cpu -= r.cpu.0;
        host.free_memory -= r.memory.0;
        *host.per_pool.entry(r.pool.clone()).or_default() += 1;
        host.ports.extend(r.ports.iter().copied());
        Some(i)
    }
}

fn unplaceable(hosts: &[HostView], r: &Request) -> String {
    let ready: Vec<&HostView> = hosts.iter().filter(|h| h.ready).collect();
    if ready.is_empty() {
        return if hosts.is_empty() {
            "no host has registered yet: start herd-agent on a host".into()
        } else {
            format!("none of the {} hosts is ready (no recent heartbeat)", hosts.len())
        };
    }
    let roomy: Vec<&&HostView> = ready.iter().filter(|h| h.free_cpu >= r.cpu.0 && h.free_memory >= r.memory.0).collect();
    if !roomy.is_empty() {
        let ports: Vec<String> = r.ports.iter().map(|(proto, port)| format!("{proto}/{port}")).collect();
        return format!(
            "every ready host with room already publishes one of host ports {} ({} such hosts): add hosts or change `publish`",
            ports.join(", "),
            roomy.len()
        );
    }
    let best = ready.iter().max_by_key(|h| (h.free_cpu.min(r.cpu.0), h.free_memory.min(r.memory.0)));
    let best = best.map(|h| format!("; most free: {} with {} CPU, {}", h.id, Cpu(h.free_cpu), Memory(h.free_memory).approx()));
    format!(
        "no ready host has {} CPU and {} memory free ({} ready hosts{})",
        r.cpu,
        r.memory,
        ready.len(),
        best.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, cpu: u64, mem_mi: u64) -> HostView {
        HostView { id: id.into(), ready: true, free_cpu: cpu, free_memory: mem_mi << 20, per_pool: HashMap::new(), ports: BTreeSet::new() }
    }

    fn req(pool: &str, cpu: u64, mem_mi: u64) -> Request {
        Request { pool: pool.into(), cpu: Cpu(cpu), memory: Memory(mem_mi << 20), ports: vec![] }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            hosts: Vec<HostView>,
            requests: Vec<Request>,
            want: Vec<Option<&'static str>>,
        }
        let cases = vec![
            Case {
                name: "spreads a pool across hosts",
                hosts: vec![host("a", 4000, 4096), host("b", 4000, 4096)],
                requests: vec![req("t/c/datanode", 500, 256); 3],
                want: vec![Some("a"), Some("b"), Some("a")],
            },
            Case {
                name: "never overcommits cpu",
                hosts: vec![host("a", 1000, 4096)],
                requests: vec![req("p", 600, 1), req("p", 600, 1), req("p", 400, 1)],
                want: vec![Some("a"), None, Some("a")],
            },
            Case {
                name: "never overcommits memory",
                hosts: vec![host("a", 9000, 1024), host("b", 9000, 512)],
                requests: vec![req("p", 1, 1024), req("p", 1, 1024)],
                want: vec![Some("a"), None],
            },
            Case {
                name: "skips hosts that are not ready",
                hosts: vec![HostView { ready: false, ..host("a", 9000, 9000) }, host("b", 9000, 9000)],
                requests: vec![req("p", 1, 1); 2],
                want: vec![Some("b"), Some("b")],
            },
            Case {
                name: "one host port per host",
                hosts: vec![host("a", 9000, 9000), host("b", 9000, 9000)],
                requests: vec![Request { ports: vec![(Protocol::Tcp, 9870)], ..req("p", 1, 1) }; 3],
                want: vec![Some("a"), Some("b"), None],
            },
            Case { name: "no hosts", hosts: vec![], requests: vec![req("p", 1, 1)], want: vec![None] },
            Case {
                name: "a host too small for one request still takes a smaller one of the pool",
                hosts: vec![host("a", 1000, 4096), host("b", 4000, 4096)],
                requests: vec![req("p", 3000, 1), req("p", 500, 1)],
                want: vec![Some("b"), Some("a")],
            },
            Case {
                name: "other pools' placements count against the room",
                hosts: vec![host("a", 1000, 4096), host("b", 1000, 4096)],
                requests: vec![req("p", 600, 1), req("q", 600, 1), req("p", 400, 1), req("q", 400, 1), req("q", 1, 1)],
                want: vec![Some("a"), Some("b"), Some("b"), Some("a"), None],
            },
            Case {
                name: "the same unplaceable request again is unplaceable, the rest still place",
                hosts: vec![host("a", 1000, 4096)],
                requests: vec![req("p", 5000, 1), req("p", 5000, 1), req("p", 100, 1)],
                want: vec![None, None, Some("a")],
            },
        ];
        for mut case in cases {
            let got = place(&mut case.hosts, &case.requests);
            let got: Vec<Option<&str>> = got.iter().map(|r| r.as_deref().ok()).collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn pending_reason_says_what_is_missing() {
        let mut hosts = vec![host("a", 1000, 1024)];
        let got = place(&mut hosts, &[req("p", 2000, 512)]);
        let reason = got[0].clone().err().unwrap_or_default();
        assert!(reason.contains("2 CPU") && reason.contains("most free: a with 1 CPU, 1.0Gi"), "{reason}");
        let got = place(&mut [], &[req("p", 1, 1)]);
        assert!(got[0].clone().err().unwrap_or_default().contains("start herd-agent"));
    }
}
