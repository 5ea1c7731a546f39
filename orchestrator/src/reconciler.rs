//! Desired instances from a spec: a pure `plan(spec, existing)` that says which instances to
//! add, resize and remove. The store executes the plan in one transaction with placement.

use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use std::collections::BTreeSet;

use herd_api::spec::PoolSpec;
use herd_api::{ClusterSpec, Role};

/// An instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub instance: InstanceRef,
    pub role: Role,
    pub ordinal: u32,
    pub host: Option<String>,
    pub pending: Option<String>,
    pub cpu: Cpu,
    pub memory: Memory,
    /// How many times it was placed on a host (see [`crate::store::Tx::put_instance`]); read
    /// from the store, never written from here.
    pub placement: u64,
}

/// What to change to make a cluster's instances match its spec.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// New instances, unplaced.
    pub add: Vec<Instance>,
    /// Existing instances whose pool's per-container resources changed, with the new values.
    pub resize: Vec<Instance>,
    /// Instances whose pool shrank or went away, highest ordinal first.
    pub remove: Vec<InstanceRef>,
}

/// Plans the change from `existing` to `spec` (`None`: the cluster is being deleted).
///
/// Pools in `graceful` (DataNodes of a cluster with a NameNode herd runs, NodeManagers of one
/// with a ResourceManager) are neither grown nor shrunk here: their instances leave through
/// the decommission/drain lifecycle ([`crate::lifecycle`]), which also picks who leaves.
/// Instances in `leaving` are never resized (they keep running as they are until they go).
pub fn plan(
    tenant: &str,
    cluster: &str,
    spec: Option<&ClusterSpec>,
    existing: &[Instance],
    graceful: &BTreeSet<Role>,
    leaving: &BTreeSet<InstanceRef>,
) -> Plan {
    let mut out = Plan::default();
    for inst in existing {
        let pool = spec.and_then(|s| s.pools.get(&inst.role));
        match pool {
            Some(p) if graceful.contains(&inst.role) || inst.ordinal < p.replicas.0 => {
                let changed = inst.cpu != p.cpu || inst.memory != p.memory;
                if changed && !leaving.contains(&inst.instance) {
                    out.resize.push(Instance { cpu: p.cpu, memory: p.memory, ..inst.clone() });
                }
            }
            _ => out.remove.push(inst.instance.clone()),
        }
    }
    out.remove.sort_by(|a, b| b.cmp(a));
    if let Some(spec) = spec {
        for (role, pool) in spec.pools.iter().filter(|(r, _)| !graceful.contains(r)) {
            for ordinal in 0..pool.replicas.0 {
                let exists = existing.iter().any(|i| i.role == *role && i.ordinal == ordinal);
                if !exists {
                    out.add.push(new_instance(tenant, cluster, *role, ordinal, pool));
                }
            }
        }
    }
    out
}

/// A new, unplaced instance of `pool`.
pub fn new_instance(tenant: &str, cluster: &str, role: Role, ordinal: u32, pool: &PoolSpec) -> Instance {
    Instance {
        instance: InstanceRef::new(tenant, cluster, role, ordinal),
        role,
        ordinal,
        host: None,
        pending: None,
        cpu: pool.cpu,
        memory: pool.memory,
        placement: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::yaml::parse_cluster_spec;

    fn spec(dn: u32, nm: u32, dn_mem: &str) -> ClusterSpec {
        let text = format!(
            "tenant: t\nname: c\nimages: {{datanode: d, nodemanager: n}}\npools:\n  datanode: {{replicas: {dn}, cpu: 1, memory: {dn_mem}}}\n  nodemanager: {{replicas: {nm}, cpu: 1, memory: 1Gi}}\n"
        );
        match parse_cluster_spec(&text) {
            Ok(s) => s,
            Err(e) => panic!("fixture spec is invalid: {e}"),
        }
    }

    fn existing(role: Role, n: u32, mem: &str) -> Vec<Instance> {
        (0..n)
            .map(|ordinal| Instance {
                instance: InstanceRef::new("t", "c", role, ordinal),
                role,
                ordinal,
                host: Some("h".into()),
                pending: None,
                cpu: Cpu(1000),
                memory: Memory::parse(mem).unwrap_or_default(),
                placement: 0,
            })
            .collect()
    }

    fn none() -> BTreeSet<Role> {
        BTreeSet::new()
    }

    fn names(v: &[Instance]) -> Vec<String> {
        v.iter().map(|i| i.instance.name.clone()).collect()
    }

    #[test]
    fn scale_up_adds_missing_ordinals() {
        let p = plan("t", "c", Some(&spec(3, 1, "1Gi")), &existing(Role::Datanode, 1, "1Gi"), &none(), &BTreeSet::new());
        assert_eq!(names(&p.add), ["datanode-1", "datanode-2", "nodemanager-0"]);
        assert!(p.remove.is_empty() && p.resize.is_empty());
    }

    #[test]
    fn scale_down_removes_highest_ordinals_first() {
        let p = plan("t", "c", Some(&spec(1, 0, "1Gi")), &existing(Role::Datanode, 3, "1Gi"), &none(), &BTreeSet::new());
        let removed: Vec<_> = p.remove.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(removed, ["datanode-2", "datanode-1"]);
        assert!(p.add.is_empty());
    }

    #[test]
    fn resize_and_delete() {
        let p = plan("t", "c", Some(&spec(2, 0, "2Gi")), &existing(Role::Datanode, 2, "1Gi"), &none(), &BTreeSet::new());
        assert_eq!(names(&p.resize), ["datanode-0", "datanode-1"]);
        assert_eq!(p.resize[0].memory, Memory(2 << 30));
        let p = plan("t", "c", None, &existing(Role::Datanode, 2, "1Gi"), &none(), &BTreeSet::new());
        assert_eq!(p.remove.len(), 2);
    }

    #[test]
    fn graceful_pools_are_left_to_the_lifecycle_and_leaving_ones_keep_their_size() {
        let graceful = BTreeSet::from([Role::Datanode]);
        let dns = existing(Role::Datanode, 3, "1Gi");
        // Shrinking or growing a graceful pool: nothing here; the NodeManager pool as ever.
        let p = plan("t", "c", Some(&spec(1, 1, "1Gi")), &dns, &graceful, &BTreeSet::new());
        assert!(p.remove.is_empty());
        assert_eq!(names(&p.add), ["nodemanager-0"]);
        let p = plan("t", "c", Some(&spec(5, 0, "1Gi")), &dns, &graceful, &BTreeSet::new());
        assert!(p.add.is_empty() && p.remove.is_empty());
        // Resizing: every DataNode but the leaving one.
        let leaving = BTreeSet::from([dns[2].instance.clone()]);
        let p = plan("t", "c", Some(&spec(2, 0, "2Gi")), &dns, &graceful, &leaving);
        assert_eq!(names(&p.resize), ["datanode-0", "datanode-1"]);
        // Deleting the cluster removes everything, graceful or not.
        let p = plan("t", "c", None, &dns, &graceful, &BTreeSet::new());
        assert_eq!(p.remove.len(), 3);
    }
}
