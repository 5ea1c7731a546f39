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
pub fn place(hosts: &mut [HostView], requests: &[Request]) -> Vec<Result<String, String>> {
    requests.iter().map(|r| place_one(hosts, r)).collect()
}

fn place_one(hosts: &mut [HostView], r: &Request) -> Result<String, String> {
    let mut order: Vec<usize> = (0..hosts.len()).filter(|&i| hosts[i].ready).collect();
    // Fewest instances of this pool first, then host id: a stable, spreading first-fit.
    order.sort_by(|&a, &b| {
        let count = |i: usize| hosts[i].per_pool.get(&r.pool).copied().unwrap_or(0);
        count(a).cmp(&count(b)).then_with(|| hosts[a].id.cmp(&hosts[b].id))
    });
    let fits = order.iter().copied().find(|&i| {
        let h = &hosts[i];
        h.free_cpu >= r.cpu.0 && h.free_memory >= r.memory.0 && r.ports.iter().all(|p| !h.ports.contains(p))
    });
    match fits {
        Some(i) => {
            let host = &mut hosts[i];
            host.free_cpu -= r.cpu.0;
            host.free_memory -= r.memory.0;
            *host.per_pool.entry(r.pool.clone()).or_default() += 1;
            host.ports.extend(r.ports.iter().copied());
            Ok(host.id.clone())
        }
        None => Err(unplaceable(hosts, r)),
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
