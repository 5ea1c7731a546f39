//! Which workers leave when a pool shrinks, and which leaving ones come back when it grows.
//! See [`select_leaving`].

use std::collections::{BTreeMap, BTreeSet};

use herd_api::Role;
use herd_api::hadoop::NameNodeHealth;
use herd_api::lifecycle::{Phase, PoolLifecycle};
use herd_api::names::InstanceRef;

use super::{datanode_report, in_service};

/// One instance of the pool as the caller has it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance: InstanceRef,
    pub ordinal: u32,
    /// Its stored phase when it is leaving; `None` when in service.
    pub phase: Option<Phase>,
    /// The machine it runs on. herd's topology keeps at most one replica of a block per
    /// machine, so the DataNodes that stay must span `replication` machines; `None` when not
    /// placed (counts as a machine of its own).
    pub machine: Option<String>,
}

/// A pool asked to run `replicas` instances.
#[derive(Debug, Clone)]
pub struct ScaleRequest<'a> {
    /// `Datanode` or `Nodemanager`; the other roles have no lifecycle here.
    pub role: Role,
    /// Every current instance of the pool, leaving or not.
    pub members: &'a [Member],
    /// The pool's new size.
    pub replicas: u32,
    /// The cluster's `hdfs.replication`.
    pub replication: u16,
    /// The NameNode's latest report when it is fresh; `None` (or one carrying an `error`)
    /// when there is none: DataNodes then leave by highest ordinal, and the minimum is
    /// checked against the pool's size alone.
    pub namenode: Option<&'a NameNodeHealth>,
    /// The pool's settings (a new NodeManager drain takes its timeout from here).
    pub lifecycle: &'a PoolLifecycle,
    /// `herd scale --force`: see [`Selection::forced_below_minimum`] and the module docs.
    pub force: bool,
    /// Now (Unix ms): the `since_ms` of new phases.
    pub now_ms: u64,
}

/// What a scale changes in the pool's lifecycle; the caller stores `phases`, drops the stored
/// phase of `recommission`, creates `create` new instances, then renders the exclude files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Phases to store: the first phase of each newly leaving instance, and, with `force`,
    /// DataNodes already decommissioning now marked forced.
    pub phases: BTreeMap<InstanceRef, Phase>,
    /// Leaving instances taken back into service (lowest ordinals first, so the pool stays
    /// compact): forget their phase, which drops them from the exclude files; the masters'
    /// refresh puts them back in service. No container is recreated.
    pub recommission: BTreeSet<InstanceRef>,
    /// New instances still needed to reach `replicas` after recommissioning.
    pub create: u32,
    /// With `force`, the refusal that was overridden: for the audit log and the CLI.
    pub forced_below_minimum: Option<SelectError>,
}

/// Why a scale is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "scaling the datanode pool to {replicas} would leave {remaining} live in-service DataNodes; \
         the replication factor (hdfs.replication) is {replication}, so at least {replication} must remain. \
         `herd scale --force` removes them anyway: blocks will be under-replicated and, if a remaining DataNode fails, lost"
    )]
    BelowReplication { replicas: u32, remaining: usize, replication: u16 },
    #[error(
        "scaling the datanode pool to {replicas} would leave DataNodes on {machines} machine(s); HDFS keeps at most one \
         replica of a block per machine and the replication factor (hdfs.replication) is {replication}, so DataNodes on at \
         least {replication} machines must remain. `herd scale --force` removes them anyway: blocks will be \
         under-replicated and, if a remaining machine fails, lost"
    )]
    BelowMachines { replicas: u32, machines: usize, replication: u16 },
    #[error("the {0} pool has no scale-down lifecycle: only datanode and nodemanager pools leave gracefully")]
    NoLifecycle(Role),
}

/// Chooses which instances leave when the pool shrinks to `replicas`, and which leaving ones
/// are recommissioned when it grows while some are still on their way out.
///
/// - Shrinking, DataNodes: the ones holding the fewest blocks by the NameNode's count (a dead
///   or never registered DataNode counts as holding none: HDFS no longer counts its
///   replicas), the highest ordinal on ties. Refused when fewer than `replication` live,
///   in-service DataNodes would remain, unless `force`.
/// - Shrinking, NodeManagers: the highest ordinals (they hold no data).
/// - Growing: recommission leaving instances not yet [`Phase::Removing`], lowest ordinal
///   first, before creating any.
/// - `force` (DataNodes): every leaving DataNode, new or already decommissioning, becomes
///   forced: it may go before its decommission completes, one at a time (see the module).
pub fn select_leaving(req: &ScaleRequest<'_>) -> Result<Selection, SelectError> {
    if !matches!(req.role, Role::Datanode | Role::Nodemanager) {
        return Err(SelectError::NoLifecycle(req.role));
    }
    let mut sel = Selection::default();
    let staying: Vec<&Member> = req.members.iter().filter(|m| m.phase.is_none()).collect();
    let target = usize::try_from(req.replicas).unwrap_or(usize::MAX);

    if target >= staying.len() {
        let mut back: Vec<&Member> =
            req.members.iter().filter(|m| m.phase.as_ref().is_some_and(Phase::recommissionable)).collect();
        back.sort_by_key(|m| m.ordinal);
        let need = target - staying.len();
        sel.recommission = back.iter().take(need).map(|m| m.instance.clone()).collect();
        sel.create = u32::try_from(need - sel.recommission.len()).unwrap_or(u32::MAX);
    } else {
        let leaving = choose(req, &staying, staying.len() - target);
        if req.role == Role::Datanode {
            let remaining = remaining_in_service(req, &staying, &leaving);
            let machines = machines(staying.iter().filter(|m| !leaving.contains(&&m.instance)).copied());
            let refusal = if remaining < usize::from(req.replication) {
                Some(SelectError::BelowReplication { replicas: req.replicas, remaining, replication: req.replication })
            } else if machines < usize::from(req.replication) && machines < self::machines(staying.iter().copied()) {
                Some(SelectError::BelowMachines { replicas: req.replicas, machines, replication: req.replication })
            } else {
                None
            };
            if let Some(refusal) = refusal {
                if !req.force {
                    return Err(refusal);
                }
                sel.forced_below_minimum = Some(refusal);
            }
        }
        for instance in leaving {
            sel.phases.insert(instance.clone(), first_phase(req));
        }
    }

    if req.force && req.role == Role::Datanode {
        for m in req.members.iter().filter(|m| !sel.recommission.contains(&m.instance)) {
            if let Some(p) = m.phase.and_then(with_force) {
                sel.phases.insert(m.instance.clone(), p);
            }
        }
    }
    Ok(sel)
}

/// How many distinct machines `members` run on (an unplaced one counts as its own).
fn machines<'m>(members: impl Iterator<Item = &'m Member>) -> usize {
    let mut placed = BTreeSet::new();
    let mut unplaced = 0;
    for m in members {
        match &m.machine {
            Some(machine) => {
                placed.insert(machine.as_str());
            }
            None => unplaced += 1,
        }
    }
    placed.len() + unplaced
}

/// The `count` in-service members that leave, in order of preference, skipping (while
/// others can go instead) any whose leaving would drop the machines the pool spans below
/// `replication`.
fn choose<'m>(req: &ScaleRequest<'_>, staying: &[&'m Member], count: usize) -> Vec<&'m InstanceRef> {
    let ranked = rank(req, staying);
    let floor = usize::from(req.replication).min(machines(staying.iter().copied()));
    let mut chosen: Vec<&'m InstanceRef> = Vec::new();
    for m in &ranked {
        if chosen.len() == count {
            break;
        }
        let after = machines(staying.iter().copied().filter(|s| s.instance != m.instance && !chosen.contains(&&s.instance)));
        if after >= floor {
            chosen.push(&m.instance);
        }
    }
    // Not enough without losing machines: take the rest in order; the caller refuses.
    for m in &ranked {
        if chosen.len() == count {
            break;
        }
        if !chosen.contains(&&m.instance) {
            chosen.push(&m.instance);
        }
    }
    chosen
}

/// In-service members, most preferred to leave first.
fn rank<'m>(req: &ScaleRequest<'_>, staying: &[&'m Member]) -> Vec<&'m Member> {
    let nn = req.namenode.filter(|nn| nn.error.is_none());
    let mut order: Vec<(u64, std::cmp::Reverse<u32>, &'m Member)> = staying
        .iter()
        .map(|m| {
            let blocks = match (req.role, nn) {
                (Role::Datanode, Some(nn)) => match datanode_report(nn, &m.instance) {
                    Some(d) if d.live => d.num_blocks.unwrap_or(u64::MAX),
                    _ => 0,
                },
                _ => 0,
            };
            (blocks, std::cmp::Reverse(m.ordinal), *m)
        })
        .collect();
    order.sort_by_key(|o| (o.0, o.1));
    order.into_iter().map(|(_, _, m)| m).collect()
}

/// Live, in-service DataNodes left after `leaving` go: by the NameNode's report when there is
/// one, else by count.
fn remaining_in_service(req: &ScaleRequest<'_>, staying: &[&Member], leaving: &[&InstanceRef]) -> usize {
    let remaining = staying.iter().filter(|m| !leaving.contains(&&m.instance));
    match req.namenode.filter(|nn| nn.error.is_none()) {
        Some(nn) => remaining.filter(|m| datanode_report(nn, &m.instance).is_some_and(in_service)).count(),
        None => remaining.count(),
    }
}

fn first_phase(req: &ScaleRequest<'_>) -> Phase {
    leaving_phase(req.role, req.lifecycle, req.now_ms, req.force)
}

/// The phase an instance of `role` starts leaving in at `now_ms`: a NodeManager drains (with
/// its pool's graceful timeout), a DataNode decommissions. Also where a host drain or the
/// replacement of a lost DataNode starts one.
pub fn leaving_phase(role: Role, lifecycle: &herd_api::lifecycle::PoolLifecycle, now_ms: u64, force: bool) -> Phase {
    match role {
        Role::Nodemanager => Phase::Draining { since_ms: now_ms, timeout_s: lifecycle.drain_timeout_s, refreshed_ms: None },
        _ => Phase::Decommissioning { since_ms: now_ms, refreshed_ms: None, forced: force },
    }
}

/// The forced version of a DataNode phase, when it is not already forced.
fn with_force(p: Phase) -> Option<Phase> {
    match p {
        Phase::Decommissioning { since_ms, refreshed_ms, forced: false } => {
            Some(Phase::Decommissioning { since_ms, refreshed_ms, forced: true })
        }
        Phase::Decommissioned { since_ms, at_ms, forced: false } => {
            Some(Phase::Decommissioned { since_ms, at_ms, forced: true })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    const NOW: u64 = 1_000_000;

    fn decommissioning(forced: bool) -> Option<Phase> {
        Some(Phase::Decommissioning { since_ms: 5, refreshed_ms: Some(6), forced })
    }

    fn request<'a>(
        role: Role,
        members: &'a [Member],
        replicas: u32,
        namenode: Option<&'a NameNodeHealth>,
        lifecycle: &'a PoolLifecycle,
        force: bool,
    ) -> ScaleRequest<'a> {
        ScaleRequest { role, members, replicas, replication: 3, namenode, lifecycle, force, now_ms: NOW }
    }

    fn leaving(sel: &Selection) -> Vec<String> {
        sel.phases.keys().map(|i| i.name.clone()).collect()
    }

    #[test]
    fn datanodes_leave_by_fewest_blocks_then_highest_ordinal() {
        let six = members(Role::Datanode, &[(0, None), (1, None), (2, None), (3, None), (4, None), (5, None)]);
        let blocks = |b: [u64; 6]| namenode((0..6).map(|i| dn_report(i, IN_SERVICE, b[i as usize])).collect(), 0);
        let lc = PoolLifecycle::default();
        let cases: Vec<(&str, Option<NameNodeHealth>, u32, Vec<&str>)> = vec![
            (
                "fewest blocks",
                Some(blocks([50, 10, 40, 20, 90, 30])),
                3,
                vec!["datanode-1", "datanode-3", "datanode-5"],
            ),
            ("ties by highest ordinal", Some(blocks([10, 10, 10, 10, 10, 10])), 4, vec!["datanode-4", "datanode-5"]),
            ("tie between two", Some(blocks([5, 9, 5, 9, 9, 9])), 5, vec!["datanode-2"]),
            ("no report: highest ordinals", None, 4, vec!["datanode-4", "datanode-5"]),
            ("errored report: highest ordinals", Some(errored_namenode()), 4, vec!["datanode-4", "datanode-5"]),
            (
                "dead and unregistered hold nothing",
                Some(namenode(
                    vec![
                        dn_report(0, IN_SERVICE, 9),
                        dead(dn_report(1, IN_SERVICE, 500)),
                        dn_report(2, IN_SERVICE, 9),
                        dn_report(3, IN_SERVICE, 9),
                        dn_report(4, IN_SERVICE, 9),
                    ],
                    0,
                )),
                4,
                vec!["datanode-1", "datanode-5"],
            ),
        ];
        for (name, nn, replicas, want) in cases {
            let sel = select_leaving(&request(Role::Datanode, &six, replicas, nn.as_ref(), &lc, false))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(leaving(&sel), want, "{name}");
            assert!(sel.recommission.is_empty() && sel.create == 0 && sel.forced_below_minimum.is_none(), "{name}");
            for p in sel.phases.values() {
                assert_eq!(*p, Phase::Decommissioning { since_ms: NOW, refreshed_ms: None, forced: false }, "{name}");
            }
        }
    }

    #[test]
    fn datanodes_that_stay_span_replication_machines() {
        let lc = PoolLifecycle::default();
        // Six DataNodes on three machines (0,1 on a; 2,3 on b; 4,5 on c); 4 and 5 hold the
        // fewest blocks, but both leaving would empty machine c.
        let mut six = members(Role::Datanode, &[(0, None), (1, None), (2, None), (3, None), (4, None), (5, None)]);
        for m in &mut six {
            m.machine = Some(["a", "b", "c"][m.ordinal as usize / 2].to_string());
        }
        let nn = namenode((0..6).map(|i| dn_report(i, IN_SERVICE, [90, 80, 70, 60, 10, 20][i as usize])).collect(), 0);
        let sel = select_leaving(&request(Role::Datanode, &six, 3, Some(&nn), &lc, false)).unwrap();
        assert_eq!(leaving(&sel), ["datanode-1", "datanode-3", "datanode-4"]);

        // Three DataNodes on two machines cannot become two on one machine.
        let mut three = members(Role::Datanode, &[(0, None), (1, None), (2, None)]);
        for m in &mut three {
            m.machine = Some(if m.ordinal == 2 { "b" } else { "a" }.to_string());
        }
        let five_of_them = [three.clone(), members(Role::Datanode, &[(3, None), (4, None)])].concat();
        let mut pool = five_of_them;
        pool[3].machine = Some("a".into());
        pool[4].machine = Some("a".into());
        // 5 DataNodes, machines a (0,1,3,4) and b (2), replication 3: dropping to 4 leaves b.
        let err = select_leaving(&ScaleRequest { replication: 2, ..request(Role::Datanode, &pool, 1, None, &lc, false) }).unwrap_err();
        assert!(matches!(err, SelectError::BelowReplication { .. }), "{err}");
        let sel = select_leaving(&ScaleRequest { replication: 2, ..request(Role::Datanode, &pool, 3, None, &lc, false) }).unwrap();
        assert!(!leaving(&sel).contains(&"datanode-2".to_string()), "the only DataNode on machine b left: {:?}", leaving(&sel));
        let err = select_leaving(&ScaleRequest { replication: 1, ..request(Role::Datanode, &pool[..3], 1, None, &lc, false) });
        assert!(err.is_ok(), "replication 1 needs one machine");
    }

    #[test]
    fn refuses_below_replication_unless_forced() {
        let lc = PoolLifecycle::default();
        let three = members(Role::Datanode, &[(0, None), (1, None), (2, None)]);
        let err = select_leaving(&request(Role::Datanode, &three, 2, None, &lc, false)).unwrap_err();
        assert_eq!(err, SelectError::BelowReplication { replicas: 2, remaining: 2, replication: 3 });
        let msg = err.to_string();
        for part in ["hdfs.replication) is 3", "at least 3 must remain", "--force", "under-replicated", "lost"] {
            assert!(msg.contains(part), "{msg} lacks {part}");
        }

        // Five DataNodes but one dead: scaling to 3 would leave 2 live in service.
        let five = members(Role::Datanode, &[(0, None), (1, None), (2, None), (3, None), (4, None)]);
        let nn = namenode(
            vec![
                dead(dn_report(0, IN_SERVICE, 1)),
                dn_report(1, IN_SERVICE, 100),
                dn_report(2, IN_SERVICE, 100),
                dn_report(3, IN_SERVICE, 100),
                dn_report(4, IN_SERVICE, 100),
            ],
            0,
        );
        let sel = select_leaving(&request(Role::Datanode, &five, 4, Some(&nn), &lc, false)).unwrap();
        assert_eq!(leaving(&sel), ["datanode-0"], "the dead one goes first, 4 live remain");
        let err = select_leaving(&request(Role::Datanode, &five, 2, Some(&nn), &lc, false)).unwrap_err();
        assert_eq!(err, SelectError::BelowReplication { replicas: 2, remaining: 2, replication: 3 });

        let sel = select_leaving(&request(Role::Datanode, &three, 2, None, &lc, true)).unwrap();
        assert_eq!(leaving(&sel), ["datanode-2"]);
        assert_eq!(sel.phases[&dn(2)], Phase::Decommissioning { since_ms: NOW, refreshed_ms: None, forced: true });
        assert_eq!(
            sel.forced_below_minimum,
            Some(SelectError::BelowReplication { replicas: 2, remaining: 2, replication: 3 })
        );
    }

    #[test]
    fn force_marks_datanodes_already_leaving() {
        let lc = PoolLifecycle::default();
        let pool = members(
            Role::Datanode,
            &[(0, None), (1, None), (2, None), (3, decommissioning(false)), (4, Some(Phase::Removing))],
        );
        let sel = select_leaving(&request(Role::Datanode, &pool, 3, None, &lc, true)).unwrap();
        assert_eq!(leaving(&sel), ["datanode-3"]);
        assert_eq!(sel.phases[&dn(3)], Phase::Decommissioning { since_ms: 5, refreshed_ms: Some(6), forced: true });
        assert_eq!(sel.forced_below_minimum, None);
        let sel = select_leaving(&request(Role::Datanode, &pool, 3, None, &lc, false)).unwrap();
        assert_eq!(sel, Selection::default(), "nothing to do without force");
    }

    #[test]
    fn scale_up_recommissions_leaving_ones_first_lowest_ordinal_first() {
        let lc = PoolLifecycle::default();
        let pool = members(
            Role::Datanode,
            &[
                (0, None),
                (1, None),
                (2, None),
                (3, Some(Phase::Removing)),
                (4, Some(Phase::Decommissioned { since_ms: 1, at_ms: 2, forced: false })),
                (5, decommissioning(false)),
            ],
        );
        let cases: [(u32, &[u32], u32); 4] = [(3, &[], 0), (4, &[4], 0), (5, &[4, 5], 0), (7, &[4, 5], 2)];
        for (replicas, back, create) in cases {
            let sel = select_leaving(&request(Role::Datanode, &pool, replicas, None, &lc, false)).unwrap();
            assert_eq!(sel.recommission, back.iter().map(|&o| dn(o)).collect(), "to {replicas}");
            assert_eq!(sel.create, create, "to {replicas}");
            assert!(sel.phases.is_empty(), "to {replicas}");
        }
    }

    #[test]
    fn nodemanagers_leave_by_highest_ordinal_and_drain_with_the_pool_timeout() {
        let lc = PoolLifecycle { drain_timeout_s: 600, ..PoolLifecycle::default() };
        let pool = members(Role::Nodemanager, &[(0, None), (1, None), (2, None), (3, None)]);
        let sel = select_leaving(&request(Role::Nodemanager, &pool, 1, None, &lc, false)).unwrap();
        assert_eq!(
            leaving(&sel),
            ["nodemanager-1", "nodemanager-2", "nodemanager-3"],
            "no replication minimum for YARN"
        );
        assert_eq!(sel.phases[&nm(3)], Phase::Draining { since_ms: NOW, timeout_s: 600, refreshed_ms: None });
        let sel = select_leaving(&request(Role::Nodemanager, &pool, 0, None, &lc, false)).unwrap();
        assert_eq!(sel.phases.len(), 4);
    }

    #[test]
    fn masters_have_no_lifecycle() {
        let lc = PoolLifecycle::default();
        let err = select_leaving(&request(Role::Namenode, &[], 0, None, &lc, false)).unwrap_err();
        assert_eq!(err, SelectError::NoLifecycle(Role::Namenode));
    }
}
