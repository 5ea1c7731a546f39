//! Quota checks: pure, over amounts the caller reads in the same transaction as its write,
//! so two concurrent changes cannot both slip under a limit.

use herd_api::quantity::{Cpu, Memory, Resources};
use herd_api::{ClusterSpec, FieldError, Role};
use herd_api::wire::Quota;

/// What one cluster asks for before and after a change, and what the tenant's other
/// clusters ask for.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub others: Resources,
    pub before: Resources,
    pub after: Resources,
}

/// Refuses a change that takes the tenant over a maximum, one error per resource over,
/// each with the numbers. A change that does not grow a resource is never refused for it,
/// so a tenant whose quota was lowered below its usage can still scale down.
pub fn check(quota: &Quota, ch: Change) -> Result<(), Vec<FieldError>> {
    let limits = (quota.cpu.map(|c| c.0), quota.memory.map(|m| m.0), quota.disk.map(|m| m.0));
    over(limits, ch, |what, limit| format!("{what}, over the tenant's limit of {limit} (ask an admin to raise it with `herd tenants quota`)"))
}

/// Refuses a change that takes the DataNodes and masters of a tenant with a guarantee over
/// it (`ch` counts those only, see [`pinned`]): above its guarantee a tenant borrows idle
/// capacity with NodeManagers only, which can be drained when another tenant needs its
/// guarantee; DataNodes and masters never are. No guarantee: nothing to check.
pub fn check_borrowing(quota: &Quota, ch: Change) -> Result<(), Vec<FieldError>> {
    let Some(g) = quota.guaranteed else { return Ok(()) };
    over((Some(g.cpu.0), Some(g.memory.0), Some(g.disk.0)), ch, |what, limit| {
        format!(
            "DataNodes and masters: {what}, over the tenant's guaranteed {limit}; above its guarantee a tenant borrows with \
             NodeManagers only (ask an admin to raise the guarantee with `herd tenants quota --guaranteed`, or use NodeManagers)"
        )
    })
}

/// What a cluster asks for that is never taken back: every pool but NodeManagers.
pub fn pinned(spec: &ClusterSpec) -> Resources {
    spec.pools.iter().filter(|(r, _)| **r != Role::Nodemanager).fold(Resources::default(), |acc, (_, p)| {
        let one = Resources { cpu: p.cpu, memory: p.memory, disk: p.disk.unwrap_or_default() };
        acc.plus(one.times(p.replicas.0))
    })
}

/// One error per resource that `ch` grows past its limit (cpu, memory, disk), worded by
/// `say(what the cluster and the others ask, the limit)`.
fn over(limits: (Option<u64>, Option<u64>, Option<u64>), ch: Change, say: impl Fn(String, String) -> String) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut one = |field: &str, limit: Option<u64>, others: u64, before: u64, after: u64, show: &dyn Fn(u64) -> String| {
        let Some(limit) = limit else { return };
        let total = others.saturating_add(after);
        if after > before && total > limit {
            let what = format!(
                "the cluster would ask for {} and the tenant's other clusters ask for {}, together {}",
                show(after),
                show(others),
                show(total)
            );
            errors.push(FieldError::new(field, say(what, show(limit))));
        }
    };
    let cpu = |v: u64| Cpu(v).to_string();
    let mem = |v: u64| Memory(v).to_string();
    one("cpu", limits.0, ch.others.cpu.0, ch.before.cpu.0, ch.after.cpu.0, &cpu);
    one("memory", limits.1, ch.others.memory.0, ch.before.memory.0, ch.after.memory.0, &mem);
    one("disk", limits.2, ch.others.disk.0, ch.before.disk.0, ch.after.disk.0, &mem);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Checks a quota on its own: the guaranteed share must fit inside the maximum.
pub fn validate(quota: &Quota) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(g) = &quota.guaranteed {
        let over = |field: &str, g: u64, max: Option<u64>, show: String, max_show: String| {
            max.filter(|m| g > *m).map(|_| {
                FieldError::new(format!("quota.guaranteed.{field}"), format!("{show} is more than the maximum {max_show}"))
            })
        };
        errors.extend(over("cpu", g.cpu.0, quota.cpu.map(|c| c.0), g.cpu.to_string(), quota.cpu.map(|c| c.to_string()).unwrap_or_default()));
        errors.extend(over(
            "memory",
            g.memory.0,
            quota.memory.map(|m| m.0),
            g.memory.to_string(),
            quota.memory.map(|m| m.to_string()).unwrap_or_default(),
        ));
        errors.extend(over("disk", g.disk.0, quota.disk.map(|m| m.0), g.disk.to_string(), quota.disk.map(|m| m.to_string()).unwrap_or_default()));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: u64, gib: u64) -> Resources {
        Resources { cpu: Cpu(cpu), memory: Memory(gib << 30), disk: Memory(0) }
    }

    fn quota(cpu: u64, gib: u64) -> Quota {
        Quota { cpu: Some(Cpu(cpu)), memory: Some(Memory(gib << 30)), ..Quota::default() }
    }

    #[test]
    fn table() {
        // (quota, others, before, after, fields refused)
        let cases: Vec<(Quota, Resources, Resources, Resources, Vec<&str>)> = vec![
            (Quota::default(), res(0, 0), res(0, 0), res(100_000, 1000), vec![]),
            (quota(4000, 4), res(1000, 1), res(0, 0), res(3000, 3), vec![]),
            (quota(4000, 4), res(1000, 1), res(0, 0), res(3500, 3), vec!["cpu"]),
            (quota(4000, 4), res(1000, 1), res(0, 0), res(3500, 4), vec!["cpu", "memory"]),
            // Over already (quota lowered): shrinking is allowed, growing is not.
            (quota(1000, 1), res(0, 0), res(4000, 4), res(2000, 2), vec![]),
            (quota(1000, 1), res(0, 0), res(2000, 2), res(3000, 2), vec!["cpu"]),
        ];
        for (q, others, before, after, want) in cases {
            let got = check(&q, Change { others, before, after }).err().unwrap_or_default();
            let fields: Vec<&str> = got.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, want, "{q:?} {others:?} {before:?} {after:?}");
        }
    }

    #[test]
    fn message_carries_the_numbers() {
        let errors = check(&quota(4000, 4), Change { others: res(1000, 1), before: res(0, 0), after: res(3500, 1) })
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        let m = &errors[0].message;
        assert!(m.contains("ask for 3500m") && m.contains("other clusters ask for 1") && m.contains("together 4500m") && m.contains("limit of 4"), "{m}");
    }

    #[test]
    fn above_the_guarantee_only_nodemanagers_borrow() {
        let spec = |dn: u32, nm: u32| {
            let text = format!(
                "tenant: t\nname: c\nimages: {{datanode: d, nodemanager: n}}\npools:\n  datanode: {{replicas: {dn}, cpu: 1, memory: 1Gi}}\n  nodemanager: {{replicas: {nm}, cpu: 2, memory: 4Gi}}\n"
            );
            herd_api::yaml::parse_cluster_spec(&text).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(pinned(&spec(3, 10)), res(3000, 3));
        let mut q = quota(100_000, 100);
        assert!(check_borrowing(&q, Change { others: res(0, 0), before: res(0, 0), after: pinned(&spec(9, 0)) }).is_ok(), "no guarantee");
        q.guaranteed = Some(res(4000, 16));
        // Ten NodeManagers far above the guarantee: fine; five DataNodes over it: refused.
        assert!(check_borrowing(&q, Change { others: res(1000, 1), before: res(0, 0), after: pinned(&spec(3, 10)) }).is_ok());
        let errors = check_borrowing(&q, Change { others: res(0, 0), before: res(0, 0), after: pinned(&spec(5, 0)) }).err().unwrap_or_default();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["cpu"]);
        assert!(errors[0].message.contains("NodeManagers only") && errors[0].message.contains("guaranteed 4"), "{}", errors[0].message);
    }

    #[test]
    fn guaranteed_fits_in_maximum() {
        let mut q = quota(2000, 2);
        q.guaranteed = Some(res(3000, 1));
        let errors = validate(&q).err().unwrap_or_default();
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["quota.guaranteed.cpu"]);
        q.guaranteed = Some(res(1000, 1));
        assert!(validate(&q).is_ok());
    }
}
