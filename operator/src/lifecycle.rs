//! Scale-downs that never lose a block: the decommission/drain state machine of bare-metal
//! mode (`herd_hadoop::lifecycle`) over StatefulSets. Pure: the reconciler gives the stored
//! phases (the resource's `status.leaving`), the StatefulSets' sizes, the pods that exist and
//! the masters' health; it gets the phases to store, the StatefulSet sizes to apply and the
//! exclude set to render.
//!
//! ```text
//!  spec: datanode 6 -> 3
//!    select_leaving (no NameNode ranking: a StatefulSet can only lose its highest ordinals)
//!      -> c-datanode-3,4,5 Decommissioning      (stored in status, then the exclude file written;
//!                                                the NameNode pod's refresh container runs
//!                                                `hdfs dfsadmin -refreshNodes`)
//!    step (NameNode /jmx): Decommissioned -> Removing   (only with MissingBlocks 0, none In Progress)
//!    StatefulSet replicas 6 -> 3 only once ordinals 3..5 are all Removing
//!    pods gone -> done: out of status and of the exclude file
//! ```

use std::collections::{BTreeMap, BTreeSet};

use herd_api::hadoop::{NameNodeHealth, ResourceManagerHealth};
use herd_api::lifecycle::{LifecycleCondition, Phase};
use herd_api::names::InstanceRef;
use herd_api::{ClusterSpec, Role};
use herd_hadoop::lifecycle::{self as hl, Leaving, MasterReport, ScaleRequest, StepInput};

use crate::crd::LeavingStatus;
use crate::objects::names;

/// Health older than this moves nothing (the reconciler reads it just before deciding).
pub const MAX_HEALTH_AGE_MS: u64 = 60_000;

/// One worker pool as observed.
#[derive(Debug, Clone)]
pub struct PoolObserved {
    pub role: Role,
    /// The StatefulSet's `spec.replicas`; `None` before it exists.
    pub current: Option<u32>,
}

/// Everything [`decide`] reads.
#[derive(Debug, Clone, Copy)]
pub struct DecideInput<'a> {
    pub spec: &'a ClusterSpec,
    /// `status.leaving` as stored.
    pub stored: &'a BTreeMap<String, LeavingStatus>,
    pub pools: &'a [PoolObserved],
    /// Names of the pods that exist.
    pub pods: &'a BTreeSet<String>,
    /// The NameNode's health; `None` when the cluster has no NameNode (its own or external).
    pub namenode: Option<&'a NameNodeHealth>,
    /// The ResourceManager's, likewise.
    pub resourcemanager: Option<&'a ResourceManagerHealth>,
    pub now_ms: u64,
}

/// What [`decide`] decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// StatefulSet replicas per worker role.
    pub replicas: BTreeMap<Role, u32>,
    /// `status.leaving` to store before acting.
    pub leaving: BTreeMap<String, LeavingStatus>,
    /// Conditions of the state machine (a stalled or blocked decommission, ...).
    pub conditions: Vec<LifecycleCondition>,
    /// Scale-downs refused, in words: fewer DataNodes than the replication factor would
    /// remain, or the pool's master is outside the cluster (it never reads herd's exclude list).
    pub refused: Vec<String>,
    /// Notable steps, for events: (reason, message).
    pub notes: Vec<(String, String)>,
}

impl Decision {
    /// The pod names to render the exclude files with.
    pub fn exclude(&self) -> BTreeSet<String> {
        self.leaving.keys().cloned().collect()
    }
}

/// Decides the worker pools' sizes and the leaving workers' phases. See the module diagram.
pub fn decide(input: &DecideInput<'_>) -> Decision {
    let spec = input.spec;
    let cluster = spec.name.as_str();
    let instance = |pod: &str| InstanceRef { tenant: spec.tenant.clone(), cluster: spec.name.clone(), name: pod.to_string() };
    let mut out = Decision::default();
    let mut stored: BTreeMap<String, LeavingStatus> = input.stored.clone();
    let mut current: BTreeMap<Role, u32> = BTreeMap::new();

    for pool in input.pools {
        let role = pool.role;
        let Some(spec_pool) = spec.pools.get(&role) else { continue };
        let desired = spec_pool.replicas.0;
        // Without the master that protects the pool (no NameNode for DataNodes, no
        // ResourceManager for NodeManagers) there is nothing to decommission through: the
        // StatefulSet takes the spec's size at once, as bare-metal mode removes them at once.
        let protected = match role {
            Role::Datanode => input.namenode.is_some(),
            _ => input.resourcemanager.is_some(),
        };
        // An external master never reads the exclude list herd writes: its workers cannot be
        // taken out through it, so a shrink is refused (as bare-metal mode refuses it without
        // `--force`) and the StatefulSet keeps its size.
        let master = match role {
            Role::Datanode => (Role::Namenode, "NameNode", "hdfs dfsadmin -refreshNodes"),
            _ => (Role::Resourcemanager, "ResourceManager", "yarn rmadmin -refreshNodes"),
        };
        if protected && !spec.pools.contains_key(&master.0) {
            let now = pool.current.unwrap_or(desired);
            if desired < now {
                out.refused.push(format!(
                    "the {role} pool cannot shrink from {now} to {desired}: its {} is external and never reads herd's exclude \
                     list; take {} out on it (exclude them, `{}`), then set spec.pools.{role}.replicas once they are gone \
                     from it, or remove spec.external.{} to let them go at once",
                    master.1,
                    (desired..now).map(|o| names::pod_host(cluster, &spec.tenant, &names::pod(cluster, role, o))).collect::<Vec<_>>().join(", "),
                    master.2,
                    master.0,
                ));
                current.insert(role, now);
            } else {
                current.insert(role, desired);
            }
            stored.retain(|_, l| l.role != role.as_str());
            continue;
        }
        let Some(now) = pool.current.filter(|_| protected) else {
            current.insert(role, desired);
            stored.retain(|_, l| l.role != role.as_str());
            continue;
        };
        let mut members: BTreeMap<u32, hl::Member> = (0..now)
            .map(|o| {
                let pod = names::pod(cluster, role, o);
                let phase = stored.get(&pod).map(to_phase);
                (o, hl::Member { instance: instance(&pod), ordinal: o, phase, machine: None })
            })
            .collect();
        for (pod, l) in stored.iter().filter(|(_, l)| l.role == role.as_str()) {
            members.entry(l.ordinal).or_insert_with(|| hl::Member {
                instance: instance(pod),
                ordinal: l.ordinal,
                phase: Some(to_phase(l)),
                machine: None,
            });
        }
        let members: Vec<hl::Member> = members.into_values().collect();
        let staying = members.iter().filter(|m| m.phase.is_none()).count();
        let mut size = now;
        if usize::try_from(desired).unwrap_or(usize::MAX) != staying {
            let request = ScaleRequest {
                role,
                members: &members,
                replicas: desired,
                replication: spec.hdfs.replication,
                namenode: None,
                lifecycle: &spec_pool.lifecycle,
                force: false,
                now_ms: input.now_ms,
            };
            match hl::select_leaving(&request) {
                Ok(selection) => {
                    for (i, phase) in &selection.phases {
                        let ordinal = members.iter().find(|m| &m.instance == i).map_or(0, |m| m.ordinal);
                        stored.insert(i.name.clone(), from_phase(role, ordinal, phase, None));
                        out.notes.push((started(role).into(), format!("{} leaves the {role} pool: {}", i.name, phase)));
                    }
                    for i in &selection.recommission {
                        stored.remove(&i.name);
                        out.notes.push(("Recommissioned".into(), format!("{} is back in service in the {role} pool", i.name)));
                    }
                    size = size.saturating_add(selection.create);
                }
                Err(e) => out.refused.push(e.to_string()),
            }
        }
        current.insert(role, size);
    }

    // One step of the state machine over every leaving worker, both roles.
    let leaving: Vec<Leaving> = stored
        .iter()
        .filter_map(|(pod, l)| {
            let role = l.role.parse::<Role>().ok()?;
            let phase = to_phase(l);
            let size = current.get(&role).copied().unwrap_or(0);
            let container_gone = phase == Phase::Removing && l.ordinal >= size && !input.pods.contains(pod);
            Some(Leaving { instance: instance(pod), role, phase, container_gone })
        })
        .collect();
    let datanode_lifecycle = spec.pools.get(&Role::Datanode).map(|p| p.lifecycle).unwrap_or_default();
    // NB: read just now (age 0); `refreshed` stays false: the NameNode listing a DataNode
    // `Decommission In Progress` or `Decommissioned` is what proves it read the exclude list.
    let step = hl::step(&StepInput {
        now_ms: input.now_ms,
        leaving: &leaving,
        namenode: MasterReport { health: input.namenode, age_ms: 0, refreshed: false },
        resourcemanager: MasterReport { health: input.resourcemanager, age_ms: 0, refreshed: false },
        max_health_age_ms: MAX_HEALTH_AGE_MS,
        datanode: &datanode_lifecycle,
    });

    for (i, phase) in &step.phases {
        let Some(before) = stored.get(&i.name) else { continue };
        let role = before.role.parse::<Role>().unwrap_or(Role::Datanode);
        let mut next = from_phase(role, before.ordinal, phase, step.status.get(i));
        if next.phase != before.phase {
            out.notes.push((reason(phase).into(), format!("{} is {phase}", i.name)));
        }
        // Keep what the state machine does not carry in its later phases (`drained` and
        // `removing` hold no times): when it was chosen, refreshed, decommissioned.
        next.refreshed_ms = next.refreshed_ms.or(before.refreshed_ms);
        if matches!(phase, Phase::Drained | Phase::Removing) {
            next.since_ms = before.since_ms;
            next.at_ms = next.at_ms.or(before.at_ms);
            next.timeout_s = next.timeout_s.or(before.timeout_s);
        }
        out.leaving.insert(i.name.clone(), next);
    }
    for i in &step.done {
        out.notes.push(("Removed".into(), format!("{} has left; it is out of the exclude file", i.name)));
    }
    // A StatefulSet drops its highest ordinals only: shrink while the top one may go.
    for (role, size) in current.iter_mut() {
        while *size > 0 {
            let top = names::pod(cluster, *role, *size - 1);
            if out.leaving.get(&top).is_some_and(|l| l.phase == Phase::Removing.as_str()) {
                *size -= 1;
            } else {
                break;
            }
        }
    }
    out.replicas = current;
    out.conditions = step.conditions;
    out
}

fn started(role: Role) -> &'static str {
    match role {
        Role::Nodemanager => "DrainStarted",
        _ => "DecommissionStarted",
    }
}

fn reason(phase: &Phase) -> &'static str {
    match phase {
        Phase::Decommissioning { .. } => "Decommissioning",
        Phase::Decommissioned { .. } => "Decommissioned",
        Phase::Draining { .. } => "Draining",
        Phase::Drained => "Drained",
        Phase::Removing => "Removing",
    }
}

/// The stored phase as the state machine's. An unknown phase (a hand-edited status) starts
/// the way out again from its beginning: never towards removal.
pub fn to_phase(l: &LeavingStatus) -> Phase {
    match l.phase.as_str() {
        "decommissioned" => Phase::Decommissioned { since_ms: l.since_ms, at_ms: l.at_ms.unwrap_or(l.since_ms), forced: false },
        "draining" => Phase::Draining { since_ms: l.since_ms, timeout_s: l.timeout_s.unwrap_or(3600), refreshed_ms: l.refreshed_ms },
        "drained" => Phase::Drained,
        "removing" => Phase::Removing,
        _ if l.role == Role::Nodemanager.as_str() => {
            Phase::Draining { since_ms: l.since_ms, timeout_s: l.timeout_s.unwrap_or(3600), refreshed_ms: l.refreshed_ms }
        }
        _ => Phase::Decommissioning { since_ms: l.since_ms, refreshed_ms: l.refreshed_ms, forced: false },
    }
}

/// The state machine's phase as stored.
pub fn from_phase(role: Role, ordinal: u32, phase: &Phase, status: Option<&herd_api::lifecycle::LeavingStatus>) -> LeavingStatus {
    let mut l = LeavingStatus {
        role: role.as_str().into(),
        ordinal,
        phase: phase.as_str().into(),
        blocks_to_move: status.and_then(|s| s.blocks_to_move),
        waiting_for: status.and_then(|s| s.waiting_for.clone()),
        ..LeavingStatus::default()
    };
    match *phase {
        Phase::Decommissioning { since_ms, refreshed_ms, .. } => {
            l.since_ms = since_ms;
            l.refreshed_ms = refreshed_ms;
        }
        Phase::Decommissioned { since_ms, at_ms, .. } => {
            l.since_ms = since_ms;
            l.at_ms = Some(at_ms);
        }
        Phase::Draining { since_ms, timeout_s, refreshed_ms } => {
            l.since_ms = since_ms;
            l.timeout_s = Some(timeout_s);
            l.refreshed_ms = refreshed_ms;
        }
        Phase::Drained | Phase::Removing => {}
    }
    l
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use herd_api::hadoop::DataNodeReport;

    use super::*;

    const SPEC: &str = "\
tenant: acme
name: prod
images: {namenode: r/nn, datanode: r/dn}
pools:
  namenode: {replicas: 1, cpu: 1, memory: 1Gi}
  datanode: {replicas: 3, cpu: 1, memory: 1Gi, disk: 10Gi}
";

    fn nn(states: &[(u32, &str)]) -> NameNodeHealth {
        NameNodeHealth {
            datanodes: states
                .iter()
                .map(|(o, s)| DataNodeReport {
                    name: format!("prod-datanode-{o}.prod.acme:9866"),
                    hostname: format!("prod-datanode-{o}.prod.acme"),
                    admin_state: Some(s.to_string()),
                    live: true,
                    ..DataNodeReport::default()
                })
                .collect(),
            ..NameNodeHealth::default()
        }
    }

    fn pods(n: u32) -> BTreeSet<String> {
        (0..n).map(|o| format!("prod-datanode-{o}")).collect()
    }

    fn run(stored: &BTreeMap<String, LeavingStatus>, current: u32, present: &BTreeSet<String>, nn: &NameNodeHealth, now: u64) -> Decision {
        let spec = herd_api::yaml::parse_cluster_spec(SPEC).unwrap();
        let pools = [PoolObserved { role: Role::Datanode, current: Some(current) }];
        let input = DecideInput { spec: &spec, stored, pools: &pools, pods: present, namenode: Some(nn), resourcemanager: None, now_ms: now };
        let out = decide(&input);
        assert_eq!(decide(&input), out, "pure");
        out
    }

    #[test]
    fn six_to_three_excludes_highest_ordinals_and_shrinks_only_when_decommissioned() {
        let in_service: Vec<(u32, &str)> = (0..6).map(|o| (o, "In Service")).collect();
        // 1. The scale-down: 3, 4, 5 start decommissioning; the StatefulSet keeps 6.
        let d = run(&BTreeMap::new(), 6, &pods(6), &nn(&in_service), 1_000);
        assert_eq!(d.replicas[&Role::Datanode], 6);
        assert_eq!(d.exclude(), BTreeSet::from(["prod-datanode-3".into(), "prod-datanode-4".into(), "prod-datanode-5".into()]));
        assert!(d.leaving.values().all(|l| l.phase == "decommissioning"), "{d:?}");

        // 2. The NameNode copies blocks: nothing shrinks.
        let copying = nn(&[(0, "In Service"), (1, "In Service"), (2, "In Service"), (3, "Decommission In Progress"), (4, "Decommissioned"), (5, "Decommissioned")]);
        let d = run(&d.leaving, 6, &pods(6), &copying, 2_000);
        assert_eq!(d.replicas[&Role::Datanode], 6);
        assert_eq!(d.leaving["prod-datanode-4"].phase, "decommissioned");
        assert_eq!(d.leaving["prod-datanode-3"].phase, "decommissioning");
        let d = run(&d.leaving, 6, &pods(6), &copying, 3_000);
        assert_eq!(d.replicas[&Role::Datanode], 6, "4 and 5 wait while 3 is still in progress: {d:?}");

        // 3. All three Decommissioned: decommissioned, then removing, then the StatefulSet shrinks.
        let done = nn(&[(0, "In Service"), (1, "In Service"), (2, "In Service"), (3, "Decommissioned"), (4, "Decommissioned"), (5, "Decommissioned")]);
        let d = run(&d.leaving, 6, &pods(6), &done, 4_000);
        let d = run(&d.leaving, 6, &pods(6), &done, 5_000);
        assert!(d.leaving.values().all(|l| l.phase == "removing"), "{d:?}");
        assert!(d.leaving.values().all(|l| l.since_ms == 1_000 && l.at_ms.is_some()), "the times survive `removing`: {d:?}");
        assert_eq!(d.replicas[&Role::Datanode], 3);

        // 4. Pods gone: forgotten.
        let d = run(&d.leaving, 3, &pods(3), &done, 6_000);
        assert!(d.leaving.is_empty(), "{d:?}");
        assert_eq!(d.replicas[&Role::Datanode], 3);
    }

    #[test]
    fn below_replication_is_refused_and_nothing_moves() {
        let d = run(&BTreeMap::new(), 3, &pods(3), &nn(&[]), 1_000);
        assert!(d.refused.is_empty());
        let spec = herd_api::yaml::parse_cluster_spec(&SPEC.replace("replicas: 3", "replicas: 2")).unwrap();
        let pools = [PoolObserved { role: Role::Datanode, current: Some(3) }];
        let health = nn(&[]);
        let d = decide(&DecideInput {
            spec: &spec,
            stored: &BTreeMap::new(),
            pools: &pools,
            pods: &pods(3),
            namenode: Some(&health),
            resourcemanager: None,
            now_ms: 1,
        });
        assert_eq!(d.refused.len(), 1, "{d:?}");
        assert_eq!(d.replicas[&Role::Datanode], 3);
        assert!(d.leaving.is_empty());
    }

    #[test]
    fn an_external_namenode_refuses_a_shrink_and_keeps_the_statefulset() {
        let spec = herd_api::yaml::parse_cluster_spec(
            "tenant: acme\nname: prod\nimages: {datanode: r/dn}\nexternal: {namenode: {host: nn.example}}\npools:\n  datanode: {replicas: 4, cpu: 1, memory: 1Gi}\n",
        )
        .unwrap();
        let pools = [PoolObserved { role: Role::Datanode, current: Some(6) }];
        let health = nn(&[]);
        let d = decide(&DecideInput { spec: &spec, stored: &BTreeMap::new(), pools: &pools, pods: &pods(6), namenode: Some(&health), resourcemanager: None, now_ms: 1 });
        assert_eq!(d.replicas[&Role::Datanode], 6);
        assert!(d.leaving.is_empty());
        assert_eq!(d.refused.len(), 1);
        assert!(d.refused[0].contains("prod-datanode-4.prod.acme, prod-datanode-5.prod.acme"), "{}", d.refused[0]);
        // Growing is fine.
        let pools = [PoolObserved { role: Role::Datanode, current: Some(3) }];
        let d = decide(&DecideInput { spec: &spec, stored: &BTreeMap::new(), pools: &pools, pods: &pods(3), namenode: Some(&health), resourcemanager: None, now_ms: 1 });
        assert_eq!(d.replicas[&Role::Datanode], 4);
        assert!(d.refused.is_empty());
    }

    #[test]
    fn scale_up_while_leaving_recommissions_lowest_first() {
        let in_service: Vec<(u32, &str)> = (0..6).map(|o| (o, "In Service")).collect();
        let d = run(&BTreeMap::new(), 6, &pods(6), &nn(&in_service), 1_000);
        let spec = herd_api::yaml::parse_cluster_spec(&SPEC.replace("replicas: 3", "replicas: 5")).unwrap();
        let pools = [PoolObserved { role: Role::Datanode, current: Some(6) }];
        let health = nn(&in_service);
        let d = decide(&DecideInput { spec: &spec, stored: &d.leaving, pools: &pools, pods: &pods(6), namenode: Some(&health), resourcemanager: None, now_ms: 2_000 });
        assert_eq!(d.exclude(), BTreeSet::from(["prod-datanode-5".to_string()]));
        assert_eq!(d.replicas[&Role::Datanode], 6);
    }

    #[test]
    fn nodemanagers_drain_through_the_resourcemanager_before_the_statefulset_shrinks() {
        use herd_api::hadoop::NodeManagerReport;
        let spec = herd_api::yaml::parse_cluster_spec(
            "tenant: acme\nname: prod\nimages: {resourcemanager: r/rm, nodemanager: r/nm}\npools:\n  resourcemanager: {replicas: 1, cpu: 1, memory: 1Gi}\n  nodemanager: {replicas: 2, cpu: 1, memory: 1Gi}\n",
        )
        .unwrap();
        let rm = |states: &[(u32, &str)]| ResourceManagerHealth {
            nodes: states
                .iter()
                .map(|(o, s)| NodeManagerReport { id: format!("prod-nodemanager-{o}.prod.acme:8041"), hostname: format!("prod-nodemanager-{o}.prod.acme"), state: s.to_string(), num_containers: Some(1), ..NodeManagerReport::default() })
                .collect(),
            ..ResourceManagerHealth::default()
        };
        let pods: BTreeSet<String> = (0..4).map(|o| format!("prod-nodemanager-{o}")).collect();
        let run = |stored: &BTreeMap<String, LeavingStatus>, health: &ResourceManagerHealth, pods: &BTreeSet<String>, current: u32| {
            let pools = [PoolObserved { role: Role::Nodemanager, current: Some(current) }];
            decide(&DecideInput { spec: &spec, stored, pools: &pools, pods, namenode: None, resourcemanager: Some(health), now_ms: 1_000 })
        };
        let running = rm(&[(0, "RUNNING"), (1, "RUNNING"), (2, "RUNNING"), (3, "RUNNING")]);
        let d = run(&BTreeMap::new(), &running, &pods, 4);
        assert_eq!(d.exclude(), BTreeSet::from(["prod-nodemanager-2".to_string(), "prod-nodemanager-3".to_string()]));
        assert!(d.leaving.values().all(|l| l.phase == "draining" && l.timeout_s == Some(3600)), "{d:?}");
        assert_eq!(d.replicas[&Role::Nodemanager], 4);
        let draining = rm(&[(0, "RUNNING"), (1, "RUNNING"), (2, "DECOMMISSIONING"), (3, "DECOMMISSIONING")]);
        let d = run(&d.leaving, &draining, &pods, 4);
        assert_eq!(d.replicas[&Role::Nodemanager], 4, "containers still running: {d:?}");
        let gone = rm(&[(0, "RUNNING"), (1, "RUNNING"), (2, "DECOMMISSIONED"), (3, "DECOMMISSIONED")]);
        let d = run(&d.leaving, &gone, &pods, 4);
        let d = run(&d.leaving, &gone, &pods, 4);
        assert_eq!(d.replicas[&Role::Nodemanager], 2, "{d:?}");
        let left: BTreeSet<String> = (0..2).map(|o| format!("prod-nodemanager-{o}")).collect();
        let d = run(&d.leaving, &gone, &left, 2);
        assert!(d.leaving.is_empty(), "{d:?}");
    }

    #[test]
    fn phases_round_trip_through_status() {
        for phase in [
            Phase::Decommissioning { since_ms: 5, refreshed_ms: Some(7), forced: false },
            Phase::Decommissioned { since_ms: 5, at_ms: 9, forced: false },
            Phase::Draining { since_ms: 1, timeout_s: 60, refreshed_ms: None },
            Phase::Drained,
            Phase::Removing,
        ] {
            let role = if matches!(phase, Phase::Draining { .. } | Phase::Drained) { Role::Nodemanager } else { Role::Datanode };
            assert_eq!(to_phase(&from_phase(role, 3, &phase, None)), phase);
        }
    }
}
