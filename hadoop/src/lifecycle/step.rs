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
    let mut dn_removing =
        order.iter().filter(|l| l.role == Role::Datanode && l.phase == Phase::Removing && !l.container_gone).count();

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
        let fresh_nn =
            input.namenode.health.filter(|h| h.error.is_none() && input.namenode.age_ms <= input.max_health_age_ms);
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

    fn datanode(
        &self,
        l: &Leaving,
        dn_removing: usize,
        conditions: &mut Vec<LifecycleCondition>,
    ) -> (Phase, LeavingStatus) {
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
                Some(DECOMMISSIONED) => (
                    Phase::Decommissioned { since_ms, at_ms: self.now_ms, forced },
                    "HDFS to be safe to remove it".to_string(),
                ),
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
                     other decommission: restart it so it can finish (copies that were under way through it are \
                     retried after dfs.namenode.reconstruction.pending.timeout-sec, 5 min by default), or {force_hint} \
                     to remove it and let HDFS re-replicate from the others"
                )),
                None => Some(format!(
                    "the NameNode does not list {name} although it has applied the exclude file, so HDFS cannot \
                     decommission it: start it so it registers, or {force_hint} to remove it"
                )),
                Some(_) => None,
            };
            if let Some(message) = blocked {
                conditions.push(LifecycleCondition {
                    kind: Kind::DecommissionBlocked,
                    instance: l.instance.clone(),
                    message,
                });
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
        let mut status = waiting(
            next,
            wait.or(match next {
                Phase::Drained => Some("its removal to be ordered"),
                _ => None,
            }),
        );
        status.running_containers = containers;
        (next, status)
    }
}

/// Why HDFS is not yet safe to lose a decommissioned DataNode; `None` when it is.
fn gate(nn: &NameNodeHealth) -> Option<String> {
    let in_progress =
        nn.datanodes.iter().filter(|d| d.admin_state.as_deref() == Some(DECOMMISSION_IN_PROGRESS)).count() as u64;
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    const MAX_AGE: u64 = 60_000;
    const H: u64 = 3_600_000;

    fn leaving(instance: InstanceRef, phase: Phase) -> Leaving {
        let role = if instance.name.starts_with("datanode") { Role::Datanode } else { Role::Nodemanager };
        Leaving { instance, role, phase, container_gone: false }
    }

    fn decommissioning(since_ms: u64, refreshed_ms: Option<u64>) -> Phase {
        Phase::Decommissioning { since_ms, refreshed_ms, forced: false }
    }

    /// A fresh NameNode report, acknowledged or not.
    fn fresh(nn: &NameNodeHealth, refreshed: bool) -> MasterReport<'_, NameNodeHealth> {
        MasterReport { health: Some(nn), age_ms: 1_000, refreshed }
    }

    fn step_dn(now_ms: u64, list: &[Leaving], nn: MasterReport<'_, NameNodeHealth>, lc: &PoolLifecycle) -> Step {
        let input = StepInput {
            now_ms,
            leaving: list,
            namenode: nn,
            resourcemanager: MasterReport::none(),
            max_health_age_ms: MAX_AGE,
            datanode: lc,
        };
        let out = step(&input);
        assert_eq!(step(&input), out, "the same input gives the same output");
        out
    }

    fn step_nm(now_ms: u64, list: &[Leaving], rm: MasterReport<'_, ResourceManagerHealth>) -> Step {
        let lc = PoolLifecycle::default();
        let input = StepInput {
            now_ms,
            leaving: list,
            namenode: MasterReport::none(),
            resourcemanager: rm,
            max_health_age_ms: MAX_AGE,
            datanode: &lc,
        };
        let out = step(&input);
        assert_eq!(step(&input), out, "the same input gives the same output");
        out
    }

    /// The stored list after `out`, as the caller would reload it.
    fn carry(out: &Step, gone: &[InstanceRef]) -> Vec<Leaving> {
        out.phases.iter().map(|(i, p)| Leaving { container_gone: gone.contains(i), ..leaving(i.clone(), *p) }).collect()
    }

    fn kinds(out: &Step) -> Vec<Kind> {
        out.conditions.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn datanode_full_path() {
        let lc = PoolLifecycle::default();
        let others =
            || vec![dn_report(0, IN_SERVICE, 100), dn_report(1, IN_SERVICE, 100), dn_report(2, IN_SERVICE, 100)];
        let with = |extra: Vec<DataNodeReport>, missing| namenode(others().into_iter().chain(extra).collect(), missing);
        // (what, NameNode report, exclude acknowledged, expected phase, waiting for, removable)
        let d = |p| Some(p);
        let table: Vec<(&str, NameNodeHealth, bool, Option<Phase>, &str)> = vec![
            (
                "refresh pending",
                with(vec![dn_report(4, IN_SERVICE, 80)], 0),
                false,
                d(decommissioning(0, None)),
                "apply the exclude",
            ),
            (
                "refreshed, not started yet",
                with(vec![dn_report(4, IN_SERVICE, 80)], 0),
                true,
                d(decommissioning(0, Some(10))),
                "copy its blocks",
            ),
            (
                "in progress",
                with(vec![dn_report(4, IN_PROGRESS, 80)], 0),
                true,
                d(decommissioning(0, Some(10))),
                "copy its blocks",
            ),
            (
                "decommissioned, blocks missing",
                with(vec![dn_report(4, DECOMMISSIONED, 80)], 2),
                true,
                d(Phase::Decommissioned { since_ms: 0, at_ms: 30, forced: false }),
                "safe to remove",
            ),
            (
                "still missing: wait",
                with(vec![dn_report(4, DECOMMISSIONED, 80)], 2),
                true,
                d(Phase::Decommissioned { since_ms: 0, at_ms: 30, forced: false }),
                "no missing blocks (2 now)",
            ),
            (
                "another still decommissioning: wait",
                with(vec![dn_report(3, IN_PROGRESS, 50), dn_report(4, DECOMMISSIONED, 80)], 0),
                true,
                d(Phase::Decommissioned { since_ms: 0, at_ms: 30, forced: false }),
                "1 DataNodes still decommissioning",
            ),
            (
                "safe: removable",
                with(vec![dn_report(4, DECOMMISSIONED, 80)], 0),
                true,
                d(Phase::Removing),
                "container to be removed",
            ),
            (
                "removal ordered again until gone",
                with(vec![dead(dn_report(4, DECOMMISSIONED, 80))], 0),
                true,
                d(Phase::Removing),
                "container",
            ),
            ("gone: forgotten", with(vec![dead(dn_report(4, DECOMMISSIONED, 80))], 0), true, None, ""),
        ];
        let mut list = vec![leaving(dn(4), decommissioning(0, None))];
        for (n, (what, nn, refreshed, want, wait)) in table.into_iter().enumerate() {
            let now = 10 * (n as u64);
            if what.starts_with("gone") {
                list[0].container_gone = true;
            }
            let out = step_dn(now, &list, fresh(&nn, refreshed), &lc);
            assert_eq!(out.phases.get(&dn(4)).copied(), want, "{what}");
            assert_eq!(out.remove.contains(&dn(4)), want == Some(Phase::Removing), "{what}");
            assert_eq!(out.exclude.contains(&dn(4)), want.is_some(), "{what}: excluded until gone");
            assert_eq!(out.done.contains(&dn(4)), want.is_none(), "{what}");
            if let Some(status) = out.status.get(&dn(4)) {
                let w = status.waiting_for.as_deref().unwrap_or_default();
                assert!(w.contains(wait), "{what}: waiting for {w:?}");
            }
            assert!(out.conditions.is_empty(), "{what}: {:?}", out.conditions);
            list = carry(&out, &[]);
        }
        assert!(list.is_empty());
    }

    #[test]
    fn status_shows_blocks_still_to_move() {
        let lc = PoolLifecycle::default();
        let nn = namenode(vec![dn_report(4, IN_PROGRESS, 80)], 0);
        let out = step_dn(5, &[leaving(dn(4), decommissioning(0, Some(1)))], fresh(&nn, true), &lc);
        assert_eq!(out.status[&dn(4)].blocks_to_move, Some(40));
        assert_eq!(out.status[&dn(4)].phase.as_str(), "decommissioning");
    }

    #[test]
    fn stale_errored_or_missing_namenode_health_moves_nothing() {
        let lc = PoolLifecycle::default();
        let safe = namenode(vec![dn_report(4, DECOMMISSIONED, 0)], 0);
        let errored = errored_namenode();
        let reports: [(&str, MasterReport<'_, NameNodeHealth>); 3] = [
            ("stale", MasterReport { health: Some(&safe), age_ms: MAX_AGE + 1, refreshed: true }),
            ("errored", MasterReport { health: Some(&errored), age_ms: 0, refreshed: true }),
            ("none", MasterReport { health: None, age_ms: 0, refreshed: true }),
        ];
        for phase in [decommissioning(0, Some(1)), Phase::Decommissioned { since_ms: 0, at_ms: 2, forced: false }] {
            for (what, report) in reports {
                let list = [leaving(dn(4), phase)];
                let out = step_dn(100, &list, report, &lc);
                assert_eq!(out.phases[&dn(4)], phase, "{what}");
                assert!(out.remove.is_empty() && !out.changed, "{what}");
                assert!(
                    out.status[&dn(4)].waiting_for.as_deref().unwrap_or_default().contains("fresh NameNode report")
                );
            }
        }
    }

    #[test]
    fn datanode_dead_during_decommission_raises_a_condition() {
        let lc = PoolLifecycle::default();
        let nn = namenode(vec![dn_report(3, IN_PROGRESS, 10), dead(dn_report(4, IN_PROGRESS, 80))], 0);
        let list = [leaving(dn(3), decommissioning(0, Some(1))), leaving(dn(4), decommissioning(0, Some(1)))];
        let out = step_dn(100, &list, fresh(&nn, true), &lc);
        assert_eq!(kinds(&out), [Kind::DecommissionBlocked]);
        let c = &out.conditions[0];
        assert_eq!(c.instance, dn(4));
        for part in [
            "datanode-4 died during its decommission",
            "restart it",
            "herd scale acme/prod datanode=<replicas> --force",
        ] {
            assert!(c.message.contains(part), "{} lacks {part}", c.message);
        }
        assert!(out.remove.is_empty() && !out.changed);

        // Not listed at all once the exclude file is applied: blocked too; before: just waiting.
        let nn = namenode(vec![dn_report(0, IN_SERVICE, 10)], 0);
        let out = step_dn(100, &[leaving(dn(4), decommissioning(0, Some(1)))], fresh(&nn, true), &lc);
        assert_eq!(kinds(&out), [Kind::DecommissionBlocked]);
        assert!(out.conditions[0].message.contains("does not list datanode-4"));
        let out = step_dn(100, &[leaving(dn(4), decommissioning(0, None))], fresh(&nn, false), &lc);
        assert!(out.conditions.is_empty());
    }

    #[test]
    fn decommission_past_its_deadline_raises_a_condition() {
        let nn = namenode(vec![dn_report(4, IN_PROGRESS, 800)], 0);
        let list = [leaving(dn(4), decommissioning(0, Some(1)))];
        let cases = [(6 * 3600, 6 * H - 1, false), (6 * 3600, 6 * H, true), (3600, 7 * H, true), (0, 100 * H, false)];
        for (deadline_s, now, stalled) in cases {
            let lc = PoolLifecycle { decommission_deadline_s: deadline_s, ..PoolLifecycle::default() };
            let out = step_dn(now, &list, fresh(&nn, true), &lc);
            assert_eq!(kinds(&out) == [Kind::DecommissionStalled], stalled, "deadline {deadline_s}s at {now}ms");
            if stalled {
                let msg = &out.conditions[0].message;
                assert!(msg.contains("400 blocks still to move") && msg.contains("nothing is removed early"), "{msg}");
            }
            assert_eq!(out.phases[&dn(4)], list[0].phase, "a deadline never removes");
        }
        let lc = PoolLifecycle { decommission_deadline_s: 3600, ..PoolLifecycle::default() };
        let out = step_dn(7 * H, &list, fresh(&nn, true), &lc);
        assert!(out.conditions[0].message.contains("for 7h (deadline 1h)"), "{}", out.conditions[0].message);
    }

    #[test]
    fn forced_datanodes_leave_one_at_a_time() {
        let lc = PoolLifecycle::default();
        let forced = Phase::Decommissioning { since_ms: 0, refreshed_ms: Some(1), forced: true };
        let nn = namenode(
            vec![dn_report(0, IN_SERVICE, 9), dead(dn_report(3, IN_PROGRESS, 9)), dn_report(4, IN_PROGRESS, 9)],
            0,
        );
        let mut list = vec![leaving(dn(3), forced), leaving(dn(4), forced)];
        let out = step_dn(10, &list, fresh(&nn, true), &lc);
        assert_eq!(out.remove, [dn(3)].into(), "one at a time");
        assert_eq!(kinds(&out), [Kind::DecommissionForced]);
        list = carry(&out, &[]);
        let out = step_dn(20, &list, fresh(&nn, true), &lc);
        assert_eq!(out.remove, [dn(3)].into(), "waits for the first to be gone");
        list = carry(&out, &[dn(3)]);
        let out = step_dn(30, &list, fresh(&nn, true), &lc);
        assert_eq!((out.remove, out.done), ([dn(4)].into(), [dn(3)].into()));

        // Never with missing blocks, replication in flight, or before the exclude applied.
        let mut busy = nn.clone();
        busy.datanodes.remove(1);
        busy.pending_replication_blocks = 5;
        let missing = namenode(nn.datanodes.clone(), 1);
        let unapplied = Phase::Decommissioning { since_ms: 0, refreshed_ms: None, forced: true };
        let unapplied_nn = namenode(vec![dead(dn_report(4, IN_SERVICE, 9))], 0);
        for (what, report, phase) in
            [("pending", &busy, forced), ("missing", &missing, forced), ("unapplied", &unapplied_nn, unapplied)]
        {
            let out = step_dn(10, &[leaving(dn(4), phase)], fresh(report, false), &lc);
            assert!(out.remove.is_empty(), "{what}");
        }
    }

    #[test]
    fn restart_resumes_from_stored_phases() {
        let lc = PoolLifecycle::default();
        let nn_progress = namenode(vec![dn_report(4, IN_PROGRESS, 80), dn_report(5, IN_PROGRESS, 80)], 0);
        let nn_done = namenode(vec![dn_report(4, DECOMMISSIONED, 80), dn_report(5, DECOMMISSIONED, 80)], 0);
        let start = vec![leaving(dn(4), decommissioning(0, None)), leaving(dn(5), decommissioning(0, None))];

        let run = |restart_after: Option<usize>| {
            let mut list = start.clone();
            let mut removed_at = Vec::new();
            let reports =
                [(&nn_progress, false), (&nn_progress, true), (&nn_done, true), (&nn_done, true), (&nn_done, true)];
            for (n, (nn, refreshed)) in reports.into_iter().enumerate() {
                let out = step_dn(100 * n as u64, &list, fresh(nn, refreshed), &lc);
                removed_at.push(out.remove.clone());
                list = carry(&out, &[]);
                if restart_after == Some(n) {
                    // What the orchestrator stores and reloads: the phases, as JSON.
                    let stored = serde_json::to_string(&out.phases.iter().collect::<Vec<_>>()).unwrap();
                    let reloaded: Vec<(InstanceRef, Phase)> = serde_json::from_str(&stored).unwrap();
                    list = reloaded.into_iter().map(|(i, p)| leaving(i, p)).collect();
                }
            }
            (list, removed_at)
        };
        let straight = run(None);
        assert_eq!(straight.1[3], [dn(4), dn(5)].into());
        for n in 0..5 {
            assert_eq!(run(Some(n)), straight, "restart after step {n}");
        }

        // A restart that comes back to an unreadable NameNode removes nothing.
        let list = [leaving(dn(4), Phase::Decommissioned { since_ms: 0, at_ms: 200, forced: false })];
        let err = errored_namenode();
        let out = step_dn(1_000, &list, MasterReport { health: Some(&err), age_ms: 0, refreshed: true }, &lc);
        assert!(out.remove.is_empty());
    }

    #[test]
    fn nodemanager_drain() {
        let draining = |timeout_s, refreshed_ms| Phase::Draining { since_ms: 0, timeout_s, refreshed_ms };
        let rm = |state: &str, containers| {
            resourcemanager(vec![nm_report(0, "RUNNING", 1), nm_report(3, state, containers)])
        };
        fn fresh_rm(r: &ResourceManagerHealth, refreshed: bool) -> MasterReport<'_, ResourceManagerHealth> {
            MasterReport { health: Some(r), age_ms: 0, refreshed }
        }
        /// (what, phase, RM report, fresh, refreshed, now, expected phase, condition)
        type Row = (&'static str, Phase, ResourceManagerHealth, bool, bool, u64, Phase, Option<Kind>);
        let table: Vec<Row> = vec![
            ("refresh pending", draining(3600, None), rm("RUNNING", 2), true, false, 10, draining(3600, None), None),
            (
                "refreshed: containers running",
                draining(3600, None),
                rm("DECOMMISSIONING", 2),
                true,
                true,
                10,
                draining(3600, Some(10)),
                None,
            ),
            (
                "still running",
                draining(3600, Some(10)),
                rm("DECOMMISSIONING", 2),
                true,
                false,
                H,
                draining(3600, Some(10)),
                None,
            ),
            (
                "decommissioned by the RM",
                draining(3600, Some(10)),
                rm("DECOMMISSIONED", 0),
                true,
                true,
                20,
                Phase::Drained,
                None,
            ),
            ("lost", draining(3600, Some(10)), rm("LOST", 0), true, true, 20, Phase::Drained, None),
            (
                "timeout passed",
                draining(3600, Some(10)),
                rm("DECOMMISSIONING", 2),
                true,
                true,
                H + 10,
                Phase::Drained,
                Some(Kind::DrainTimedOut),
            ),
            (
                "timeout passed, RM stale",
                draining(3600, Some(10)),
                rm("DECOMMISSIONING", 2),
                false,
                false,
                H + 10,
                Phase::Drained,
                Some(Kind::DrainTimedOut),
            ),
            (
                "RM stale before timeout",
                draining(3600, Some(10)),
                rm("DECOMMISSIONED", 0),
                false,
                true,
                20,
                draining(3600, Some(10)),
                None,
            ),
            ("timeout 0, not refreshed", draining(0, None), rm("RUNNING", 2), true, false, 10, draining(0, None), None),
            ("timeout 0, refreshed", draining(0, None), rm("RUNNING", 2), true, true, 10, Phase::Drained, None),
            ("drained: removal", Phase::Drained, rm("DECOMMISSIONED", 0), true, true, 10, Phase::Removing, None),
        ];
        for (what, phase, report, is_fresh, refreshed, now, want, condition) in table {
            let mut input = fresh_rm(&report, refreshed);
            if !is_fresh {
                input.age_ms = MAX_AGE + 1;
            }
            let out = step_nm(now, &[leaving(nm(3), phase)], input);
            assert_eq!(out.phases[&nm(3)], want, "{what}");
            assert_eq!(out.remove.contains(&nm(3)), want == Phase::Removing, "{what}");
            assert_eq!(out.conditions.first().map(|c| c.kind), condition, "{what}");
            if let Some(c) = out.conditions.first() {
                assert!(c.message.contains("drain timeout (1h)"), "{}", c.message);
            }
            if matches!(want, Phase::Draining { .. }) && is_fresh {
                assert_eq!(out.status[&nm(3)].running_containers, Some(2), "{what}");
            }
        }
    }

    #[test]
    fn mismatched_phase_is_left_alone_with_a_condition() {
        let list = [Leaving { instance: dn(2), role: Role::Datanode, phase: Phase::Drained, container_gone: false }];
        let out = step_nm(10, &list, MasterReport::none());
        assert_eq!(out.phases[&dn(2)], Phase::Drained);
        assert_eq!(kinds(&out), [Kind::PhaseMismatch]);
        assert!(out.remove.is_empty() && out.exclude.contains(&dn(2)));
    }

    #[test]
    fn durations_read_short() {
        for (s, want) in [(0, "0s"), (59, "59s"), (90, "1m30s"), (3600, "1h"), (7322, "2h2m2s")] {
            assert_eq!(duration(s), want);
        }
    }

    /// Over random sequences of health reports, a DataNode that is not forced enters
    /// `Removing` only in a step whose fresh, error-free report lists it `Decommissioned`
    /// with no missing blocks and no DataNode decommissioning.
    #[test]
    fn property_datanode_removed_only_after_decommissioned() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                // xorshift64
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn pick(&mut self, n: u64) -> u64 {
                self.next() % n
            }
        }
        let lc = PoolLifecycle { decommission_deadline_s: 60, ..PoolLifecycle::default() };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut removals = 0;
        for _sequence in 0..500 {
            let mut list: Vec<Leaving> = (3..6).map(|o| leaving(dn(o), decommissioning(0, None))).collect();
            for n in 0..40u64 {
                let reports: Vec<DataNodeReport> = (0..6)
                    .filter_map(|o| {
                        let state =
                            [IN_SERVICE, IN_PROGRESS, DECOMMISSIONED, DECOMMISSIONED, "absent"][rng.pick(5) as usize];
                        let d = dn_report(o, state, rng.pick(100));
                        match (state, rng.pick(6)) {
                            ("absent", _) => None,
                            (_, 0) => Some(dead(d)),
                            _ => Some(d),
                        }
                    })
                    .collect();
                let mut nn = namenode(reports, [0, 0, 1][rng.pick(3) as usize]);
                if rng.pick(8) == 0 {
                    nn.error = Some("timeout".into());
                }
                let age_ms = [0, 1_000, MAX_AGE + 1][rng.pick(3) as usize];
                let report = MasterReport { health: Some(&nn), age_ms, refreshed: rng.pick(2) == 0 };
                for l in &mut list {
                    l.container_gone = l.phase == Phase::Removing && rng.pick(2) == 0;
                }
                let out = step_dn(n * 30_000, &list, report, &lc);
                for l in list.iter().filter(|l| l.phase != Phase::Removing) {
                    if out.remove.contains(&l.instance) {
                        removals += 1;
                        let d = datanode_report(&nn, &l.instance);
                        assert!(nn.error.is_none() && age_ms <= MAX_AGE, "removed on unusable health");
                        assert_eq!(
                            d.and_then(|d| d.admin_state.as_deref()),
                            Some(DECOMMISSIONED),
                            "{} removed",
                            l.instance
                        );
                        assert_eq!((nn.missing_blocks, nn.decommissioning_datanodes), (0, 0), "{} removed", l.instance);
                    }
                }
                list = carry(&out, &[]);
            }
        }
        assert!(removals > 100, "the sequences reach removal often enough to mean something: {removals}");
    }
}
