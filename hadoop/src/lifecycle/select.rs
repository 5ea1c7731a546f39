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
    pub replicas: u32,
    /// The cluster's `hdfs.replication`.
    pub replication: u16,
    /// The NameNode's latest report when it is fresh; `None` (or one carrying an `error`)
    /// when there is none: DataNodes then leave by highest ordinal, and the minimum is
    /// checked against the pool's size alone.
    pub namenode: Option<&'a NameNodeHealth>,
    pub lifecycle: &'a PoolLifecycle,
    /// `herd scale --force`: see [`Selection::forced_below_minimum`] and the module docs.
    pub force: bool,
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
        Phase::Decommissioned { since_ms, at_ms, forced: false } => Some(Phase::Decommissioned { since_ms, at_ms, forced: true }),
        _ => None,
    }
}
