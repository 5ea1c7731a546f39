//! One step of the decommission/drain state machine. See [`step`] and the module diagram.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::Role;
use herd_api::hadoop::{DataNodeReport, NameNodeHealth, NodeManagerReport, ResourceManagerHealth};
use herd_api::lifecycle::{LeavingStatus, LifecycleCondition, LifecycleConditionKind as Kind, Phase, PoolLifecycle};
use herd_api::names::InstanceRef;

use super::admin_state::{DECOMMISSION_IN_PROGRESS, DECOMMISSIONED};
use super::{datanode_report, nm_gone, nodemanager_report};

/// One leaving instance as the caller has it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    pub instance: InstanceRef,
    /// `Datanode` or `Nodemanager`.
    pub role: Role,
    pub phase: Phase,
    /// The caller has confirmed its container is stopped and removed. Read only in
    /// [`Phase::Removing`]: a container that vanished earlier is not a way out.
    pub container_gone: bool,
}

/// A master's latest report, as the caller has it.
#[derive(Debug)]
pub struct MasterReport<'a, H> {
    /// `None` when there is no report yet (or no such master).
    pub health: Option<&'a H>,
    /// How old `health` is, by the caller's clock.
    pub age_ms: u64,
    /// The master runs the exclude files of *this* input: the `live_hash` its agent reports
    /// equals that of its config rendered with `leaving` = [`exclude_set`] of this input
    /// (written and refreshed). Pass `false` while a newer exclude set is on its way.
    pub refreshed: bool,
}

// NB: by hand, as derive would require `H: Copy`; only a reference is copied.
impl<H> Clone for MasterReport<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for MasterReport<'_, H> {}

impl<'a, H> MasterReport<'a, H> {
    /// No report and nothing acknowledged.
    pub fn none() -> Self {
        MasterReport { health: None, age_ms: 0, refreshed: false }
    }
}

/// Everything one step reads. Time is an argument; nothing else is consulted.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub now_ms: u64,
    /// Every stored leaving instance of the cluster, both roles.
    pub leaving: &'a [Leaving],
    pub namenode: MasterReport<'a, NameNodeHealth>,
    pub resourcemanager: MasterReport<'a, ResourceManagerHealth>,
    /// A report older than this is stale: nothing moves on it.
    pub max_health_age_ms: u64,
    /// The DataNode pool's settings (its decommission deadline). NodeManagers carry their
    /// drain timeout in their phase, fixed when they started to leave.
    pub datanode: &'a PoolLifecycle,
}

/// What one step decided. Persist `phases` (and forget `done`) before acting on the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The phase of every instance still leaving.
    pub phases: BTreeMap<InstanceRef, Phase>,
    /// Instances whose container the caller may stop and remove now: every one in
    /// [`Phase::Removing`], again on every step until it is confirmed gone (so a restart
    /// re-issues the removal).
    pub remove: BTreeSet<InstanceRef>,
    /// Confirmed gone: forget them; they are out of `exclude` already.
    pub done: BTreeSet<InstanceRef>,
    /// The `leaving` set to render the exclude files with (`ClusterView::leaving`): every
    /// instance of `phases`.
    pub exclude: BTreeSet<InstanceRef>,
    /// What `herd status` shows per leaving instance.
    pub status: BTreeMap<InstanceRef, LeavingStatus>,
    /// Conditions for the cluster's status. `DecommissionForced` and `DrainTimedOut` are
    /// raised in the step that removes, once: the caller also records them (audit, events).
    pub conditions: Vec<LifecycleCondition>,
    /// Something moved: stepping again at once (after persisting) may move it further.
    pub changed: bool,
}

/// The exclude set matching a stored `leaving` list: what the caller renders with between
/// steps, and what `MasterReport::refreshed` is checked against.
pub fn exclude_set(leaving: &[Leaving]) -> BTreeSet<InstanceRef> {
    leaving.iter().map(|l| l.instance.clone()).collect()
}

/// Moves every leaving instance at most one phase on, from the health in `input`.
///
/// DataNode, not forced: `Decommissioning` → `Decommissioned` when the NameNode lists it
/// so; → `Removing` when, in a fresh report, it is still listed `Decommissioned`, HDFS has
/// no missing blocks and no DataNode is `Decommission In Progress`. NodeManager: `Draining`
/// → `Drained` when the ResourceManager no longer runs it (DECOMMISSIONED, LOST, SHUTDOWN or
/// not listed) or its timeout has passed since the refresh; → `Removing` at once. Then
/// `Removing` → done when the container is confirmed gone.
///
/// NB: a NodeManager's drain timeout needs no fresh ResourceManager report: it is the
/// admin's bound on the drain, and the ResourceManager enforces the same one server-side.
pub fn step(input: &StepInput<'_>) -> Step {
    let ctx = Ctx::new(input);
    let mut out = Step::default();
    let mut order: Vec<&Leaving> = input.leaving.iter().collect();
    order.sort_by(|a, b| a.instance.cmp(&b.instance));
    // Forced DataNodes leave one at a time: count the removals already under way.
    let mut dn_removing = order.iter().filter(|l| l.role == Role::Datanode && l.phase == Phase::Removing && !l.container_gone).count();

    for l in order {
        let (next, status) = match (l.role, l.phase) {
            (_, Phase::Removing) if l.container_gone => {
                out.done.insert(l.instance.clone());
                continue;
            }
            (_, Phase::Removing) => (Phase::Removing, waiting(Phase::Removing, Some("its container to be removed"))),
            (Role::Datanode, Phase::Decommissioning { .. } | Phase::Decommissioned { .. }) => {
                let (next, status) = ctx.datanode(l, dn_removing, &mut out.conditions);
                if next == Phase::Removing {
                    dn_removing += 1;
                }
                (next, status)
            }
            (Role::Nodemanager, Phase::Draining { .. } | Phase::Drained) => ctx.nodemanager(l, &mut out.conditions),
            (role, phase) => {
                out.conditions.push(LifecycleCondition {
                    kind: Kind::PhaseMismatch,
                    instance: l.instance.clone(),
                    message: format!(
                        "{} is a {role} but its stored phase is `{phase}`; left as it is: forget its phase to put it back in service",
                        l.instance.name
                    ),
                });
                (phase, waiting(phase, Some("an admin")))
            }
        };
        if next == Phase::Removing {
            out.remove.insert(l.instance.clone());
        }
        out.changed |= next != l.phase;
        out.exclude.insert(l.instance.clone());
        out.phases.insert(l.instance.clone(), next);
        out.status.insert(l.instance.clone(), status);
    }
    out.changed |= !out.done.is_empty();
    out
}

/// The input, with health already judged usable or not.
struct Ctx<'a> {
    now_ms: u64,
    /// The NameNode's report when fresh and error-free.
    nn: Option<&'a NameNodeHealth>,
    nn_refreshed: bool,
    rm: Option<&'a ResourceManagerHealth>,
    rm_refreshed: bool,
    deadline_ms: u64,
}

impl<'a> Ctx<'a> {
    fn new(input: &StepInput<'a>) -> Self {
        let fresh_nn = input.namenode.health.filter(|h| h.error.is_none() && input.namenode.age_ms <= input.max_health_age_ms);
        let fresh_rm = input
            .resourcemanager
            .health
            .filter(|h| h.error.is_none() && input.resourcemanager.age_ms <= input.max_health_age_ms);
        Ctx {
            now_ms: input.now_ms,
            nn: fresh_nn,
            nn_refreshed: input.namenode.refreshed,
            rm: fresh_rm,
            rm_refreshed: input.resourcemanager.refreshed,
            deadline_ms: input.datanode.decommission_deadline_s.saturating_mul(1000),
        }
    }

    fn datanode(&self, l: &Leaving, dn_removing: usize, conditions: &mut Vec<LifecycleCondition>) -> (Phase, LeavingStatus) {
        let report = self.nn.and_then(|nn| datanode_report(nn, &l.instance));
        let state = report.and_then(|d| d.admin_state.as_deref());
        let started = matches!(state, Some(DECOMMISSION_IN_PROGRESS | DECOMMISSIONED));
        let blocks_to_move = report.and_then(|d| d.decommission_under_replicated);
        let name = &l.instance.name;

        let (since_ms, refreshed_ms, forced) = match l.phase {
            Phase::Decommissioning { since_ms, refreshed_ms, forced } => {
                (since_ms, refreshed_ms.or((self.nn_refreshed || started).then_some(self.now_ms)), forced)
            }
            Phase::Decommissioned { since_ms, at_ms, forced } => (since_ms, Some(at_ms), forced),
            _ => return (l.phase, waiting(l.phase, None)),
        };

        if forced && self.forced_gate(report, refreshed_ms, dn_removing) {
            let under = self.nn.map_or(0, |nn| nn.under_replicated_blocks);
            conditions.push(LifecycleCondition {
                kind: Kind::DecommissionForced,
                instance: l.instance.clone(),
                message: format!(
                    "{name} is being removed before its decommission completed (--force); HDFS reports {under} \
                     under-replicated blocks: if a remaining DataNode fails before they are re-replicated, they are lost"
                ),
            });
            return (Phase::Removing, waiting(Phase::Removing, Some("its container to be removed")));
        }

        let (next, wait) = match l.phase {
            Phase::Decommissioned { at_ms, .. } => match (self.nn, state) {
                (None, _) => (l.phase, "a fresh NameNode report".to_string()),
                (Some(nn), Some(DECOMMISSIONED)) => match gate(nn) {
                    None => (Phase::Removing, "its container to be removed".to_string()),
                    Some(why) => (l.phase, why),
                },
                // Listed otherwise again (e.g. a NameNode restart): back to decommissioning.
                (Some(_), _) => (
                    Phase::Decommissioning { since_ms, refreshed_ms: Some(at_ms), forced },
                    "the NameNode to report it Decommissioned again".to_string(),
                ),
            },
            _ => match state {
                Some(DECOMMISSIONED) => {
                    (Phase::Decommissioned { since_ms, at_ms: self.now_ms, forced }, "HDFS to be safe to remove it".to_string())
                }
                _ => {
                    let wait = match (self.nn, refreshed_ms, report) {
                        (None, _, _) => "a fresh NameNode report".to_string(),
                        (Some(_), None, _) => "the NameNode to apply the exclude file".to_string(),
                        (Some(_), Some(_), None) => "the NameNode to list it".to_string(),
                        (Some(_), Some(_), Some(d)) if !d.live => "it to come back (it is dead)".to_string(),
                        (Some(_), Some(_), Some(_)) => "the NameNode to copy its blocks elsewhere".to_string(),
                    };
                    (Phase::Decommissioning { since_ms, refreshed_ms, forced }, wait)
                }
            },
        };

        if next != Phase::Removing {
            self.datanode_conditions(l, report, refreshed_ms, since_ms, blocks_to_move, conditions);
        }
        let mut status = waiting(next, Some(&wait));
        status.blocks_to_move = blocks_to_move;
        (next, status)
    }

    /// `DecommissionBlocked` and `DecommissionStalled` for a DataNode still on its way.
    fn datanode_conditions(
        &self,
        l: &Leaving,
        report: Option<&DataNodeReport>,
        refreshed_ms: Option<u64>,
        since_ms: u64,
        blocks_to_move: Option<u64>,
        conditions: &mut Vec<LifecycleCondition>,
    ) {
        let name = &l.instance.name;
        let force_hint =
            format!("`herd scale {}/{} datanode=<replicas> --force`", l.instance.tenant, l.instance.cluster);
        if self.nn.is_some() && refreshed_ms.is_some() {
            let blocked = match report {
                Some(d) if !d.live && d.admin_state.as_deref() != Some(DECOMMISSIONED) => Some(format!(
                    "{name} died during its decommission; HDFS cannot finish it (HDFS-16303) and it holds up every \
                     other decommission: restart it so it can finish, or {force_hint} to remove it and let HDFS \
                     re-replicate from the others"
                )),
                None => Some(format!(
                    "the NameNode does not list {name} although it has applied the exclude file, so HDFS cannot \
                     decommission it: start it so it registers, or {force_hint} to remove it"
                )),
                Some(_) => None,
            };
            if let Some(message) = blocked {
                conditions.push(LifecycleCondition { kind: Kind::DecommissionBlocked, instance: l.instance.clone(), message });
            }
        }
        let elapsed = self.now_ms.saturating_sub(since_ms);
        if self.deadline_ms > 0 && elapsed >= self.deadline_ms {
            let blocks = match (blocks_to_move, report.and_then(|d| d.num_blocks)) {
                (Some(b), _) => format!("{b} blocks still to move"),
                (None, Some(b)) => format!("it still holds {b} blocks"),
                (None, None) => "blocks still to move unknown".to_string(),
            };
            conditions.push(LifecycleCondition {
                kind: Kind::DecommissionStalled,
                instance: l.instance.clone(),
                message: format!(
                    "{name} has been decommissioning for {} (deadline {}), {blocks}; nothing is removed early. \
                     Check `hdfs dfsadmin -report -decommissioning` and `hdfs dfsadmin -listOpenFiles \
                     -blockingDecommission` (open files hold a decommission), or {force_hint} to remove it anyway",
                    duration(elapsed / 1000),
                    duration(self.deadline_ms / 1000),
                ),
            });
        }
    }

    /// A forced DataNode may go when the NameNode has applied its exclude, reports no missing
    /// blocks, no other DataNode removal is under way, and either no longer counts it (dead
    /// or unknown) or has started its decommission with no replication still in flight.
    fn forced_gate(&self, report: Option<&DataNodeReport>, refreshed_ms: Option<u64>, dn_removing: usize) -> bool {
        let Some(nn) = self.nn else { return false };
        let counted_out = match report {
            None => true,
            Some(d) if !d.live => true,
            Some(d) => {
                matches!(d.admin_state.as_deref(), Some(DECOMMISSION_IN_PROGRESS | DECOMMISSIONED))
                    && nn.pending_replication_blocks == 0
            }
        };
        refreshed_ms.is_some() && nn.missing_blocks == 0 && dn_removing == 0 && counted_out
    }

    fn nodemanager(&self, l: &Leaving, conditions: &mut Vec<LifecycleCondition>) -> (Phase, LeavingStatus) {
        let report = self.rm.and_then(|rm| nodemanager_report(rm, &l.instance));
        let containers = report.and_then(|n| n.num_containers);
        let (next, wait) = match l.phase {
            Phase::Draining { since_ms, timeout_s, refreshed_ms } => {
                let applied = report.is_some_and(|n| n.state == "DECOMMISSIONING" || nm_gone(n));
                let refreshed_ms = refreshed_ms.or((self.rm_refreshed || applied).then_some(self.now_ms));
                let timed_out =
                    refreshed_ms.is_some_and(|t| self.now_ms >= t.saturating_add(timeout_s.saturating_mul(1000)));
                if self.rm.is_some() && report.is_none_or(nm_gone) {
                    (Phase::Drained, None)
                } else if timed_out {
                    if timeout_s > 0 && containers != Some(0) {
                        conditions.push(drain_timed_out(l, timeout_s, report));
                    }
                    (Phase::Drained, None)
                } else {
                    let wait = match (self.rm, refreshed_ms) {
                        (_, None) => "the ResourceManager to apply the exclude file",
                        (None, Some(_)) => "a fresh ResourceManager report (or its drain timeout)",
                        (Some(_), Some(_)) => "its containers to finish (or its drain timeout)",
                    };
                    (Phase::Draining { since_ms, timeout_s, refreshed_ms }, Some(wait))
                }
            }
            Phase::Drained => (Phase::Removing, Some("its container to be removed")),
            other => (other, None),
        };
        let mut status = waiting(next, wait.or(match next {
            Phase::Drained => Some("its removal to be ordered"),
            _ => None,
        }));
        status.running_containers = containers;
        (next, status)
    }
}

/// Why HDFS is not yet safe to lose a decommissioned DataNode; `None` when it is.
fn gate(nn: &NameNodeHealth) -> Option<String> {
    let in_progress = nn
        .datanodes
        .iter()
        .filter(|d| d.admin_state.as_deref() == Some(DECOMMISSION_IN_PROGRESS))
        .count() as u64;
    let decommissioning = nn.decommissioning_datanodes.max(in_progress);
    match (nn.missing_blocks, decommissioning) {
        (0, 0) => None,
        (0, n) => Some(format!("{n} DataNodes still decommissioning")),
        (m, 0) => Some(format!("HDFS to have no missing blocks ({m} now)")),
        (m, n) => Some(format!("HDFS to have no missing blocks ({m} now) and {n} DataNodes still decommissioning")),
    }
}

fn drain_timed_out(l: &Leaving, timeout_s: u64, report: Option<&NodeManagerReport>) -> LifecycleCondition {
    let running = match report.and_then(|n| n.num_containers) {
        Some(n) => format!("{n} containers still running"),
        None => "its running containers unknown".to_string(),
    };
    LifecycleCondition {
        kind: Kind::DrainTimedOut,
        instance: l.instance.clone(),
        message: format!(
            "{} reached its drain timeout ({}) with {running}: they are stopped with it and YARN reruns their \
             tasks elsewhere; raise the pool's drainTimeoutSeconds if jobs need longer",
            l.instance.name,
            duration(timeout_s)
        ),
    }
}

fn waiting(phase: Phase, wait: Option<&str>) -> LeavingStatus {
    LeavingStatus { phase, blocks_to_move: None, running_containers: None, waiting_for: wait.map(str::to_string) }
}

/// `90` → `1m30s`, `7200` → `2h`.
fn duration(s: u64) -> String {
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_string() } else { out }
}
