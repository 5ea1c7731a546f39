//! Guaranteed shares and elasticity, YARN's Capacity Scheduler for containers. Pure: the
//! orchestrator hands in tenants' guarantees, what is placed and the hosts after a
//! placement pass, and stores what comes out.
//!
//! - A tenant's `quota.guaranteed` is always placeable: admission ([`admit`]) refuses
//!   guarantees that add up to more than the fleet (plus what tenants without a guarantee
//!   hold that can never be taken back: their DataNodes and masters).
//! - Above its guarantee a tenant borrows idle capacity, up to its maximum, with
//!   NodeManagers only (`quota::check_borrowing` refuses the rest); a tenant without a
//!   guarantee borrows all its NodeManagers.
//! - When a request within a tenant's guarantee finds the fleet full, borrowed
//!   NodeManagers of other tenants are drained (the scale-down drain, with a short
//!   timeout) and given back, from the tenant most over its guarantee first ([`choose`]).
//!   DataNodes and masters are never taken.

use std::collections::BTreeMap;

use herd_api::FieldError;
use herd_api::Role;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory, Resources};

use super::{HostView, Request, disk_fits, ports_free, selected, under_max};

/// One placed instance, as guarantees count it.
#[derive(Debug, Clone)]
pub struct Held {
    pub instance: InstanceRef,
    pub role: Role,
    pub ordinal: u32,
    pub host: String,
    pub cpu: u64,
    pub memory: u64,
    pub disk: u64,
    /// Already on its way out (scale-down or an earlier preemption).
    pub leaving: bool,
}

/// What a tenant holds against its guarantee.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantUse {
    /// Every placed instance's resources.
    pub used: Resources,
    /// `used` above the guarantee, per resource.
    pub borrowed: Resources,
    /// The NodeManagers that are borrowed (highest ordinals first), not already leaving:
    /// what may be drained for another tenant's guarantee.
    pub borrowed_nodemanagers: Vec<InstanceRef>,
}

fn minus(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu: Cpu(a.cpu.0.saturating_sub(b.cpu.0)),
        memory: Memory(a.memory.0.saturating_sub(b.memory.0)),
        disk: Memory(a.disk.0.saturating_sub(b.disk.0)),
    }
}

fn of(h: &Held) -> Resources {
    Resources { cpu: Cpu(h.cpu), memory: Memory(h.memory), disk: Memory(h.disk) }
}

/// Each tenant's use (tenants with nothing placed are left out). `guaranteed`: per tenant,
/// its guarantee (absent: none).
pub fn usage(guaranteed: &BTreeMap<String, Resources>, held: &[Held]) -> BTreeMap<String, TenantUse> {
    let mut out: BTreeMap<String, TenantUse> = BTreeMap::new();
    let mut nms: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in held {
        let u = out.entry(h.instance.tenant.clone()).or_default();
        u.used = u.used.plus(of(h));
        if h.role == Role::Nodemanager && !h.leaving {
            nms.entry(&h.instance.tenant).or_default().push(h);
        }
    }
    for (tenant, u) in &mut out {
        let g = guaranteed.get(tenant).copied().unwrap_or_default();
        u.borrowed = minus(u.used, g);
        let mut mine = nms.remove(tenant.as_str()).unwrap_or_default();
        mine.sort_by(|a, b| (b.ordinal, &b.instance).cmp(&(a.ordinal, &a.instance)));
        // What is already leaving is on its way out: only the rest can be over.
        let leaving = held.iter().filter(|h| h.instance.tenant == *tenant && h.leaving).fold(Resources::default(), |a, h| a.plus(of(h)));
        let mut rest = minus(u.used, leaving);
        for nm in mine {
            if rest.cpu.0 <= g.cpu.0 && rest.memory.0 <= g.memory.0 {
                break;
            }
            rest = minus(rest, of(nm));
            u.borrowed_nodemanagers.push(nm.instance.clone());
        }
    }
    out
}

/// How far over its guarantee a tenant is: the larger share of the fleet's CPU or memory it
/// borrows. Ranks whose NodeManagers go first.
pub fn over_share(u: &TenantUse, fleet: Resources) -> f64 {
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    share(u.borrowed.cpu.0, fleet.cpu.0).max(share(u.borrowed.memory.0, fleet.memory.0))
}

/// Refuses guarantees that the fleet cannot hold all at once: their sum, plus `pinned`
/// (what tenants without a guarantee hold that is never taken back), must fit `fleet`.
/// `guarantees` is every tenant's, the one being set included.
pub fn admit(fleet: Resources, hosts: usize, guarantees: &BTreeMap<String, Resources>, pinned: Resources) -> Result<(), Vec<FieldError>> {
    let total = guarantees.values().fold(pinned, |a, g| a.plus(*g));
    let mut errors = Vec::new();
    let mut one = |field: &str, want: u64, have: u64, show: &dyn Fn(u64) -> String| {
        if want > have {
            errors.push(FieldError::new(
                format!("quota.guaranteed.{field}"),
                format!(
                    "the tenants' guaranteed shares would add up to {}{}, more than the {} the fleet's {hosts} ready hosts have: \
                     a guarantee must always be placeable. Lower a guarantee, or add hosts first",
                    show(want),
                    if pinned_of(field, pinned) > 0 { format!(" (with {} held by tenants without a guarantee)", show(pinned_of(field, pinned))) } else { String::new() },
                    show(have),
                ),
            ));
        }
    };
    let cpu = |v: u64| Cpu(v).to_string();
    let mem = |v: u64| Memory(v).to_string();
    one("cpu", total.cpu.0, fleet.cpu.0, &cpu);
    one("memory", total.memory.0, fleet.memory.0, &mem);
    one("disk", total.disk.0, fleet.disk.0, &mem);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn pinned_of(field: &str, pinned: Resources) -> u64 {
    match field {
        "cpu" => pinned.cpu.0,
        "memory" => pinned.memory.0,
        _ => pinned.disk.0,
    }
}

/// A NodeManager that may be drained for a guarantee.
#[derive(Debug, Clone)]
pub struct Victim {
    pub instance: InstanceRef,
    /// Index of its host in the `hosts` given to [`choose`].
    pub host: usize,
    pub cpu: u64,
    pub memory: u64,
    /// Its tenant's rank, most over its guarantee first (0).
    pub rank: usize,
    /// Already draining for an earlier request: its room is on its way.
    pub draining: bool,
}

/// How a request within its tenant's guarantee gets its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Drain these victims (indexes into the candidates), all on host `host`.
    Drain { host: usize, victims: Vec<usize> },
    /// Victims already draining on `host` free enough: wait for them.
    Wait { host: usize, victims: Vec<usize> },
}

/// Which borrowed NodeManagers to drain so `r` fits somewhere: the fewest, on one host,
/// taking only from the most-over tenant if that suffices, then from the two most over, and
/// so on (`candidates` come in that preference order within a tenant). `None` when no host
/// could take `r` even with every candidate gone (a rule other than room refuses it).
pub fn choose(hosts: &[HostView], r: &Request, candidates: &[Victim]) -> Option<Choice> {
    let eligible = |h: &HostView| h.ready && under_max(h, r) && ports_free(h, r) && disk_fits(h, r) && selected(h, &r.selector);
    let fits = |h: &HostView, cpu: u64, memory: u64| h.free_cpu + cpu >= r.cpu.0 && h.free_memory + memory >= r.memory.0;
    // Room already on its way.
    for (i, h) in hosts.iter().enumerate().filter(|(_, h)| eligible(h)) {
        let coming: Vec<usize> = (0..candidates.len()).filter(|&v| candidates[v].host == i && candidates[v].draining).collect();
        let (cpu, memory) = coming.iter().fold((0, 0), |(c, m), &v| (c + candidates[v].cpu, m + candidates[v].memory));
        if !coming.is_empty() && fits(h, cpu, memory) {
            return Some(Choice::Wait { host: i, victims: coming });
        }
    }
    let ranks = candidates.iter().map(|v| v.rank + 1).max().unwrap_or(0);
    for k in 1..=ranks {
        let mut best: Option<(usize, Vec<usize>)> = None;
        for (i, h) in hosts.iter().enumerate().filter(|(_, h)| eligible(h)) {
            let (mut cpu, mut memory, mut taken) = (0, 0, Vec::new());
            for (v, c) in candidates.iter().enumerate().filter(|(_, c)| c.host == i && c.rank < k) {
                if fits(h, cpu, memory) {
                    break;
                }
                cpu += c.cpu;
                memory += c.memory;
                taken.push(v);
            }
            if !taken.is_empty() && fits(h, cpu, memory) && best.as_ref().is_none_or(|(_, b)| taken.len() < b.len()) {
                best = Some((i, taken));
            }
        }
        if let Some((host, victims)) = best {
            return Some(Choice::Drain { host, victims });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: u64, gib: u64) -> Resources {
        Resources { cpu: Cpu(cpu), memory: Memory(gib << 30), disk: Memory(0) }
    }

    fn held(tenant: &str, role: Role, ordinal: u32, host: &str, cpu: u64, gib: u64) -> Held {
        Held {
            instance: InstanceRef::new(tenant, "c", role, ordinal),
            role,
            ordinal,
            host: host.into(),
            cpu,
            memory: gib << 30,
            disk: 0,
            leaving: false,
        }
    }

    #[test]
    fn borrowed_nodemanagers_are_those_above_the_guarantee() {
        let g = BTreeMap::from([("b".to_string(), res(4000, 8))]);
        let held = vec![
            held("b", Role::Datanode, 0, "h1", 1000, 2),
            held("b", Role::Nodemanager, 0, "h1", 2000, 4),
            held("b", Role::Nodemanager, 1, "h2", 2000, 4),
            held("b", Role::Nodemanager, 2, "h2", 2000, 4),
            held("a", Role::Nodemanager, 0, "h3", 2000, 4),
        ];
        let u = usage(&g, &held);
        assert_eq!(u["b"].used, res(7000, 14));
        assert_eq!(u["b"].borrowed, res(3000, 6));
        let names: Vec<&str> = u["b"].borrowed_nodemanagers.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["nodemanager-2", "nodemanager-1"], "peeled from the highest ordinal until within the guarantee");
        // No guarantee: every NodeManager is borrowed, never a DataNode.
        assert_eq!(u["a"].borrowed_nodemanagers.len(), 1);
        let mut leaving = held.clone();
        leaving[3].leaving = true;
        let u = usage(&g, &leaving);
        let names: Vec<&str> = u["b"].borrowed_nodemanagers.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["nodemanager-1"], "one already leaving is not offered again");
    }

    #[test]
    fn admission_refuses_oversubscribed_guarantees() {
        let fleet = res(16_000, 64);
        let g = BTreeMap::from([("a".to_string(), res(8000, 32)), ("b".to_string(), res(8000, 16))]);
        assert!(admit(fleet, 2, &g, Resources::default()).is_ok());
        let errors = admit(fleet, 2, &g, res(1000, 0)).err().unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["quota.guaranteed.cpu"]);
        assert!(errors[0].message.contains("17") && errors[0].message.contains("2 ready hosts") && errors[0].message.contains("without a guarantee"), "{}", errors[0].message);
        let g = BTreeMap::from([("a".to_string(), res(8000, 32)), ("b".to_string(), res(8000, 33))]);
        let errors = admit(fleet, 2, &g, Resources::default()).err().unwrap_or_default();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["quota.guaranteed.memory"]);
    }

    fn full(id: &str) -> HostView {
        HostView { id: id.into(), ready: true, ..HostView::default() }
    }

    fn victim(host: usize, rank: usize, cpu: u64, draining: bool) -> Victim {
        Victim { instance: InstanceRef::new("b", "c", Role::Nodemanager, 0), host, cpu, memory: 1 << 30, rank, draining }
    }

    #[test]
    fn choose_takes_the_fewest_from_the_most_over_tenant_first() {
        let hosts = vec![full("h0"), full("h1"), full("h2")];
        let r = Request { cpu: Cpu(2000), memory: Memory(1 << 30), ..Request::default() };
        // Rank 0 has two small NodeManagers on h0, rank 1 one big one on h1.
        let c = vec![victim(0, 0, 1000, false), victim(0, 0, 1000, false), victim(1, 1, 4000, false)];
        assert_eq!(choose(&hosts, &r, &c), Some(Choice::Drain { host: 0, victims: vec![0, 1] }));
        // Only rank 1 can make room: taken when rank 0 cannot.
        let c = vec![victim(0, 0, 1000, false), victim(1, 1, 4000, false)];
        assert_eq!(choose(&hosts, &r, &c), Some(Choice::Drain { host: 1, victims: vec![1] }));
        // Room already draining: wait, drain nothing more.
        let c = vec![victim(2, 0, 2000, true), victim(0, 0, 4000, false)];
        assert_eq!(choose(&hosts, &r, &c), Some(Choice::Wait { host: 2, victims: vec![0] }));
        // Nothing borrowed anywhere: no choice.
        assert_eq!(choose(&hosts, &r, &[]), None);
        // A selector no host matches: no choice either.
        let picky = Request { selector: [("disk".into(), "ssd".into())].into(), ..r.clone() };
        assert_eq!(choose(&hosts, &picky, &[victim(0, 0, 4000, false)]), None);
    }
}
