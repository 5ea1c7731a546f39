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
            if remaining < usize::from(req.replication) {
                let refusal =
                    SelectError::BelowReplication { replicas: req.replicas, remaining, replication: req.replication };
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

/// The `count` in-service members that leave, in order of preference.
fn choose<'m>(req: &ScaleRequest<'_>, staying: &[&'m Member], count: usize) -> Vec<&'m InstanceRef> {
    let nn = req.namenode.filter(|nn| nn.error.is_none());
    let mut order: Vec<(u64, std::cmp::Reverse<u32>, &InstanceRef)> = staying
        .iter()
        .map(|m| {
            let blocks = match (req.role, nn) {
                (Role::Datanode, Some(nn)) => match datanode_report(nn, &m.instance) {
                    Some(d) if d.live => d.num_blocks.unwrap_or(u64::MAX),
                    _ => 0,
                },
                _ => 0,
            };
            (blocks, std::cmp::Reverse(m.ordinal), &m.instance)
        })
        .collect();
    order.sort();
    order.into_iter().take(count).map(|(_, _, i)| i).collect()
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
    match req.role {
        Role::Nodemanager => {
            Phase::Draining { since_ms: req.now_ms, timeout_s: req.lifecycle.drain_timeout_s, refreshed_ms: None }
        }
        _ => Phase::Decommissioning { since_ms: req.now_ms, refreshed_ms: None, forced: req.force },
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
