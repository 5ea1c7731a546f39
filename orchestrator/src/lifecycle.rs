//! Worker pools that shrink without losing data: which pools leave through the
//! decommission/drain lifecycle, and what a new replica count of one such pool changes
//! ([`plan_pool`], pure). The state machine itself is `herd_hadoop::lifecycle`; the
//! orchestrator stores each leaving instance's phase and steps it on every heartbeat
//! (`state::drive_lifecycle`).
//!
//! A pool leaves gracefully when the cluster runs the master that protects it: DataNodes
//! with a `namenode` pool (decommission), NodeManagers with a `resourcemanager` pool
//! (drain). Without one there is nothing to decommission through (no HDFS herd runs, or an
//! external master herd cannot refresh), and instances are removed at once, highest ordinal
//! first, as [`crate::reconciler::plan`] does for every other pool.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::hadoop::NameNodeHealth;
use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::{ClusterSpec, Role};
use herd_hadoop::lifecycle::{Member, ScaleRequest, SelectError, Selection, select_leaving};

use crate::error::Error;
use crate::reconciler::{self, Instance};

/// The pools of `spec` whose instances leave through the lifecycle.
pub fn graceful(spec: &ClusterSpec) -> BTreeSet<Role> {
    let runs = |role: Role| spec.pools.get(&role).is_some_and(|p| p.replicas.0 > 0);
    let mut out = BTreeSet::new();
    if runs(Role::Namenode) {
        out.insert(Role::Datanode);
    }
    if runs(Role::Resourcemanager) {
        out.insert(Role::Nodemanager);
    }
    out
}

/// What a new replica count changes in one graceful pool.
#[derive(Debug, Default, PartialEq)]
pub struct PoolPlan {
    /// From `select_leaving`: phases to store, instances to recommission, and (with `force`)
    /// the refusal that was overridden.
    pub selection: Selection,
    /// New instances (lowest free ordinals), unplaced.
    pub add: Vec<Instance>,
}

/// What it takes to bring graceful pool `role` to its replica count in `spec`, from the
/// stored instances and phases. `namenode` is the NameNode's fresh report, if any (DataNodes
/// holding the fewest blocks leave first). Refused (422, naming the field) below
/// `hdfs.replication` live DataNodes unless `force`, and when the pool is gone from the spec
/// while instances remain.
pub fn plan_pool(
    spec: &ClusterSpec,
    role: Role,
    existing: &[Instance],
    leaving: &BTreeMap<InstanceRef, Phase>,
    namenode: Option<&NameNodeHealth>,
    force: bool,
    now_ms: u64,
) -> Result<PoolPlan, Error> {
    let mine: Vec<&Instance> = existing.iter().filter(|i| i.role == role).collect();
    let Some(pool) = spec.pools.get(&role) else {
        if mine.is_empty() {
            return Ok(PoolPlan::default());
        }
        return Err(Error::refused(
            format!("pools.{role}"),
            format!(
                "the {role} pool still has {} instances, which leave one by one through the {}: keep the pool and \
                 scale it down (`herd scale {}/{} {role}=N`)",
                mine.len(),
                if role == Role::Datanode { "NameNode (decommission)" } else { "ResourceManager (drain)" },
                spec.tenant,
                spec.name
            ),
        ));
    };
    let members: Vec<Member> = mine
        .iter()
        .map(|i| Member {
            instance: i.instance.clone(),
            ordinal: i.ordinal,
            phase: leaving.get(&i.instance).copied(),
            machine: i.host.clone(),
        })
        .collect();
    let staying = members.iter().filter(|m| m.phase.is_none()).count();
    let forcing = force && role == Role::Datanode && members.iter().any(|m| m.phase.is_some());
    if staying == pool.replicas.0 as usize && !forcing {
        return Ok(PoolPlan::default());
    }
    let req = ScaleRequest {
        role,
        members: &members,
        replicas: pool.replicas.0,
        replication: spec.hdfs.replication,
        namenode,
        lifecycle: &pool.lifecycle,
        force,
        now_ms,
    };
    let selection = select_leaving(&req).map_err(|e| refusal(role, &e))?;
    let mut taken: BTreeSet<u32> = mine.iter().map(|i| i.ordinal).collect();
    let mut add = Vec::new();
    let mut ordinal = 0;
    while add.len() < selection.create as usize {
        if taken.insert(ordinal) {
            add.push(reconciler::new_instance(&spec.tenant, &spec.name, role, ordinal, pool));
        }
        ordinal += 1;
    }
    Ok(PoolPlan { selection, add })
}

/// A refused selection as a 422 naming the field that asked for it (refused by the state:
/// what HDFS holds now).
fn refusal(role: Role, e: &SelectError) -> Error {
    Error::refused(format!("pools.{role}.replicas"), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::hadoop::DataNodeReport;
    use herd_api::quantity::{Cpu, Memory};
    use herd_api::yaml::parse_cluster_spec;

    fn spec(dn: u32, nn: u32) -> ClusterSpec {
        let text = format!(
            "tenant: t\nname: c\nimages: {{datanode: d, namenode: n}}\npools:\n  namenode: {{replicas: {nn}, cpu: 1, memory: 1Gi}}\n  datanode: {{replicas: {dn}, cpu: 1, memory: 1Gi}}\n"
        );
        match parse_cluster_spec(&text) {
            Ok(s) => s,
            Err(e) => panic!("fixture spec is invalid: {e}"),
        }
    }

    fn dns(ordinals: &[u32]) -> Vec<Instance> {
        ordinals
            .iter()
            .map(|&n| Instance {
                instance: InstanceRef::new("t", "c", Role::Datanode, n),
                role: Role::Datanode,
                ordinal: n,
                host: Some("h".into()),
                pending: None,
                cpu: Cpu(1000),
                memory: Memory(1 << 30),
                placement: 0,
            })
            .collect()
    }

    fn dn(n: u32) -> InstanceRef {
        InstanceRef::new("t", "c", Role::Datanode, n)
    }

    fn decommissioning() -> Phase {
        Phase::Decommissioning { since_ms: 1, refreshed_ms: None, forced: false }
    }

    #[test]
    fn graceful_only_with_the_master_that_protects_the_pool() {
        assert_eq!(graceful(&spec(3, 1)), BTreeSet::from([Role::Datanode]));
        assert!(graceful(&spec(3, 0)).is_empty());
    }

    #[test]
    fn shrinking_picks_the_emptiest_and_refuses_below_replication() {
        let existing = dns(&[0, 1, 2, 3, 4, 5]);
        let nn = NameNodeHealth {
            datanodes: (0..6)
                .map(|n| DataNodeReport {
                    name: format!("{}:9866", dn(n).hostname()),
                    hostname: dn(n).hostname(),
                    admin_state: Some("In Service".into()),
                    live: true,
                    num_blocks: Some(if n == 1 { 5 } else { 100 }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let p = plan_pool(&spec(4, 1), Role::Datanode, &existing, &BTreeMap::new(), Some(&nn), false, 9)
            .unwrap_or_else(|e| panic!("{e}"));
        let leaving: Vec<&str> = p.selection.phases.keys().map(|i| i.name.as_str()).collect();
        assert_eq!(leaving, ["datanode-1", "datanode-5"]);
        assert!(p.add.is_empty());

        let err = plan_pool(&spec(2, 1), Role::Datanode, &existing, &BTreeMap::new(), Some(&nn), false, 9)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("pools.datanode.replicas: "), "{err}");
        assert!(err.contains("hdfs.replication") && err.contains("at least 3"), "{err}");

        let forced = plan_pool(&spec(2, 1), Role::Datanode, &existing, &BTreeMap::new(), Some(&nn), true, 9)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(forced.selection.phases.len(), 4);
        assert!(forced.selection.forced_below_minimum.is_some());
    }

    #[test]
    fn growing_recommissions_first_then_fills_the_lowest_free_ordinals() {
        // 0, 2 and 4 stay, 1 and 5 are leaving, 3 is gone already.
        let existing = dns(&[0, 1, 2, 4, 5]);
        let leaving = BTreeMap::from([(dn(1), decommissioning()), (dn(5), Phase::Removing)]);
        let p = plan_pool(&spec(6, 1), Role::Datanode, &existing, &leaving, None, false, 9)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.selection.recommission, BTreeSet::from([dn(1)]));
        let added: Vec<u32> = p.add.iter().map(|i| i.ordinal).collect();
        assert_eq!(added, [3, 6], "datanode-5 is still being removed, so its name is taken");
        assert!(p.add.iter().all(|i| i.host.is_none()));
    }

    #[test]
    fn unchanged_count_is_a_no_op_and_a_dropped_pool_is_refused() {
        let existing = dns(&[0, 1, 2]);
        let p = plan_pool(&spec(3, 1), Role::Datanode, &existing, &BTreeMap::new(), None, false, 9)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, PoolPlan::default());
        let mut no_pool = spec(3, 1);
        no_pool.pools.remove(&Role::Datanode);
        let err = plan_pool(&no_pool, Role::Datanode, &existing, &BTreeMap::new(), None, false, 9)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("pools.datanode: "), "{err}");
    }
}
