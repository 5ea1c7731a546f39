//! Fleet operations: what happens to the instances of a host that is lost for good, and the
//! host operations an operator runs (`herd hosts cordon|uncordon|drain|delete`).
//!
//! ```text
//!  lost host (no heartbeat for 3 intervals)
//!    ├─ status: its instances `unknown (host lost Ns ago)`, never `running`
//!    ├─ after --reschedule-after: NodeManagers and masters without data unplaced → scheduler
//!    └─ after --datanode-replace-after: each DataNode (of a cluster whose NameNode herd runs)
//!         starts leaving (excluded: the NameNode decommissions a dead node at once) and a new
//!         DataNode (next free ordinal: a new identity) is placed elsewhere; HDFS re-replicates
//!  drain H: cordon, then per instance on H
//!    ├─ DataNodes / NodeManagers of graceful pools: leave through the lifecycle
//!    │     (decommission / drain), a replacement placed elsewhere at once
//!    ├─ other instances without data: unplaced → scheduler (masters last, once no worker is left)
//!    └─ instances with data herd cannot move (a NameNode's metadata): stay, and say so
//! ```
//!
//! Fencing: every placement of an instance is numbered (`instances.placement`, see
//! [`crate::store::Tx::put_instance`]) and the agent labels the container with it, so a lost
//! host that returns replaces (never adopts) a container from an earlier placement, and its
//! agent removes what is no longer its own before it creates anything.
//!
//! The sweep ([`State::sweep`]) runs every second; it reads the hot state first and writes
//! only when something moves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use herd_api::Role;
use herd_api::lifecycle::Phase;
use herd_api::names::{InstanceRef, check_host_id};
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{Condition, DrainStatus, HostState, HostStatus};
use crate::store::Tx;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::hot::HostLive;
use crate::lifecycle;
use crate::reconciler::{self, Instance};
use crate::placement::schedule_pending;
use crate::state::{State, drive_lifecycle, now_ms};
use crate::store::audit::{self, Change};
use crate::store::HostRow;

/// When the instances of a lost host move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSettings {
    /// NodeManagers and masters without data are placed elsewhere after this.
    pub reschedule_after: Duration,
    /// DataNodes are replaced by new ones after this.
    pub datanode_replace_after: Duration,
    /// Nothing moves off lost hosts while more than this percentage of the fleet is lost at
    /// once (100: no hold); see [`holds_moves`].
    pub max_lost_percent: u8,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            reschedule_after: Duration::from_secs(60),
            datanode_replace_after: Duration::from_secs(600),
            max_lost_percent: 50,
        }
    }
}

/// Whether moves off lost hosts are held: `lost` of `total` hosts are lost at once, more than
/// `percent` % of the fleet (two hosts at least), or all of it. So many hosts rarely fail
/// together; the orchestrator losing its network, or falling so far behind that heartbeats
/// wait unanswered, is likelier. Moving then would unplace every NodeManager and, past
/// `--datanode-replace-after`, start decommissioning every DataNode of the fleet, whose blocks
/// have nowhere to go. Kubernetes' node lifecycle controller stops evicting on the same
/// grounds (`--unhealthy-zone-threshold`). Hosts that are really gone are moved once the rest
/// of the fleet is heard again: their age counts from their own last heartbeat.
pub(crate) fn holds_moves(total: usize, lost: usize, percent: u8) -> bool {
    percent < 100 && lost > 0 && (lost == total || (lost >= 2 && lost * 100 > total * usize::from(percent)))
}

impl FleetSettings {
    /// Refuses graces a host could not honour: shorter than `lost` itself, or a DataNode
    /// grace shorter than the NodeManager one.
    pub fn check(&self, heartbeat_interval: Duration) -> Result<(), String> {
        let lost = heartbeat_interval * 3;
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if self.reschedule_after < lost {
            return Err(format!(
                "reschedule_after ({}) must be at least three heartbeat intervals ({}): a host is only lost after those",
                show(self.reschedule_after),
                show(lost)
            ));
        }
        if self.datanode_replace_after < self.reschedule_after {
            return Err(format!(
                "datanode_replace_after ({}) must not be shorter than reschedule_after ({})",
                show(self.datanode_replace_after),
                show(self.reschedule_after)
            ));
        }
        if self.max_lost_percent == 0 || self.max_lost_percent > 100 {
            return Err(format!(
                "max_lost_percent ({}) must be from 1 to 100 (100: moves off lost hosts are never held)",
                self.max_lost_percent
            ));
        }
        Ok(())
    }
}

/// What the sweep or a drain does with one instance of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Move {
    /// Unplace it; the scheduler places it elsewhere.
    Reschedule,
    /// Start it leaving through the lifecycle and place a new instance of its pool.
    Replace,
    /// Leave it where it is, for this reason.
    Stay(String),
    /// Not yet (a master waits for the workers; a DataNode for its longer grace).
    Wait(String),
}

/// What to do with `i` on a host being emptied. `graceful`: the pools of its cluster that leave
/// through the lifecycle; `workers_left`: whether other non-master instances remain on the
/// host (masters move last); `replace_data`: DataNodes may be replaced now.
fn decide(i: &Instance, graceful: &BTreeSet<Role>, workers_left: bool, replace_data: bool) -> Move {
    let master = matches!(i.role, Role::Namenode | Role::Resourcemanager);
    match i.role {
        Role::Namenode => Move::Stay(
            "a NameNode's metadata lives on this host; herd does not move it (that would start an empty namespace): \
             bring the host back, or restore the metadata onto a new NameNode"
                .into(),
        ),
        Role::Datanode if !graceful.contains(&Role::Datanode) => Move::Stay(
            "its cluster has no NameNode herd runs, so herd cannot decommission it: decommission it on your NameNode, \
             then `herd scale --force`"
                .into(),
        ),
        Role::Datanode if !replace_data => Move::Wait("replaced after --datanode-replace-after".into()),
        Role::Datanode => Move::Replace,
        Role::Nodemanager if graceful.contains(&Role::Nodemanager) => Move::Replace,
        _ if master && workers_left => Move::Wait("masters move last, once no worker is left on the host".into()),
        _ => Move::Reschedule,
    }
}

/// Applies `decide` to every instance on `host` that is not leaving already; returns the
/// actions taken, as `(instance, what)`, for the audit trail. `lost`: the host is lost (its
/// NodeManagers are moved, not drained: nobody can drain them).
fn empty_host(tx: &dyn Tx, host: &str, now: u64, replace_data: bool, lost: bool, why: &str) -> Result<Vec<(InstanceRef, String)>> {
    let on_host = tx.instances_on_host(host)?;
    if on_host.is_empty() {
        return Ok(vec![]);
    }
    let leaving = tx.leaving(None)?;
    // Draining, masters go last (a draining NodeManager needs its ResourceManager); a lost
    // host's are moved with the rest.
    let workers_left = !lost && on_host.iter().any(|i| !matches!(i.role, Role::Namenode | Role::Resourcemanager));
    let specs = cluster_specs(tx, &on_host)?;
    let mut done = Vec::new();
    for i in on_host.iter().filter(|i| !leaving.contains_key(&i.instance)) {
        let key = (i.instance.tenant.clone(), i.instance.cluster.clone());
        let Some(spec) = specs.get(&key) else { continue };
        let mut graceful = lifecycle::graceful(spec);
        if lost {
            // A lost host's NodeManager cannot be drained: move it.
            graceful.remove(&Role::Nodemanager);
        }
        match decide(i, &graceful, workers_left, replace_data) {
            Move::Reschedule => {
                let pending = format!("{why}; placing it elsewhere");
                tx.put_instance(&Instance { host: None, pending: Some(pending), ..i.clone() })?;
                done.push((i.instance.clone(), "instance.reschedule".to_string()));
            }
            Move::Replace => {
                let Some(pool) = spec.pools.get(&i.role) else { continue };
                let phase = herd_hadoop::lifecycle::leaving_phase(i.role, &pool.lifecycle, now, false);
                tx.put_phase(&i.instance, &phase)?;
                let taken: BTreeSet<u32> = tx.instances(Some((&key.0, &key.1)))?
                    .iter()
                    .filter(|o| o.role == i.role)
                    .map(|o| o.ordinal)
                    .collect();
                let ordinal = (0..).find(|n| !taken.contains(n)).unwrap_or(u32::MAX);
                let new = reconciler::new_instance(&key.0, &key.1, i.role, ordinal, pool);
                tx.put_instance(&new)?;
                done.push((i.instance.clone(), format!("instance.replace by {}", new.instance.name)));
            }
            Move::Stay(_) | Move::Wait(_) => {}
        }
    }
    Ok(done)
}

/// The specs of the clusters `instances` belong to, each read once, by (tenant, cluster).
fn cluster_specs(c: &dyn Tx, instances: &[Instance]) -> Result<HashMap<(String, String), herd_api::ClusterSpec>> {
    let mut out = HashMap::new();
    for i in instances {
        let key = (i.instance.tenant.clone(), i.instance.cluster.clone());
        if !out.contains_key(&key)
            && let Some(row) = c.cluster(&key.0, &key.1)?
        {
            out.insert(key, row.spec);
        }
    }
    Ok(out)
}

/// The conditions a cluster shows for its instances on lost hosts: `HostLost` while they wait
/// for their grace, `DataNodeReplaced` once a lost DataNode was replaced (HDFS re-replicates).
pub(crate) fn lost_conditions(
    members: &[Instance],
    leaving: &BTreeMap<InstanceRef, Phase>,
    lost_ms: impl Fn(&str) -> Option<u64>,
) -> Vec<Condition> {
    let (mut waiting, mut replaced) = (Vec::new(), Vec::new());
    for i in members {
        let Some(host) = i.host.as_deref() else { continue };
        let Some(ms) = lost_ms(host) else { continue };
        let ago = humantime::format_duration(Duration::from_secs(ms / 1000));
        let line = format!("{} (host {host}, lost {ago} ago)", i.instance.name);
        if leaving.contains_key(&i.instance) && i.role == Role::Datanode {
            replaced.push(line);
        } else if !leaving.contains_key(&i.instance) {
            waiting.push(line);
        }
    }
    let mut out = Vec::new();
    if !waiting.is_empty() {
        out.push(Condition {
            kind: "HostLost".into(),
            message: format!(
                "state unknown: {}. NodeManagers and masters without data are placed elsewhere after the orchestrator's \
                 --reschedule-after, DataNodes are replaced after --datanode-replace-after; see `herd hosts`",
                waiting.join(", ")
            ),
        });
    }
    if !replaced.is_empty() {
        out.push(Condition {
            kind: "DataNodeReplaced".into(),
            message: format!(
                "replaced by new DataNodes: {}. HDFS re-replicates their blocks from the other replicas (see the \
                 under-replicated count); they are removed when their host returns, or with `herd hosts delete`",
                replaced.join(", ")
            ),
        });
    }
    out
}

/// One host as `herd hosts` shows it: liveness, allocation, cordon and drain progress.
fn host_status(c: &dyn Tx, h: HostLive, row: Option<&HostRow>, now: u64, lost_after: u64) -> Result<HostStatus> {
    let mine = c.instances_on_host(&h.info.id)?;
    let age = h.age_ms(now);
    let drain = match row.and_then(|r| r.drain_since_ms) {
        Some(since_ms) => Some(drain_status(c, &mine, since_ms)?),
        None => None,
    };
    Ok(HostStatus {
        state: if age <= lost_after { HostState::Ready } else { HostState::Lost },
        last_heartbeat_ms_ago: Some(age),
        allocated_cpu: Cpu(mine.iter().map(|i| i.cpu.0).sum()),
        allocated_memory: Memory(mine.iter().map(|i| i.memory.0).sum()),
        instances: mine.len() as u32,
        conditions: h.conditions,
        cordoned: h.cordoned,
        drain,
        info: std::sync::Arc::unwrap_or_clone(h.info),
    })
}

fn drain_status(c: &dyn Tx, mine: &[Instance], since_ms: u64) -> Result<DrainStatus> {
    let leaving = c.leaving(None)?;
    let specs = cluster_specs(c, mine)?;
    let workers_left = mine.iter().any(|i| !matches!(i.role, Role::Namenode | Role::Resourcemanager));
    let (mut remaining, mut stays) = (Vec::new(), Vec::new());
    for i in mine {
        let name = format!("{}/{}/{}", i.instance.tenant, i.instance.cluster, i.instance.name);
        if let Some(p) = leaving.get(&i.instance) {
            remaining.push(format!("{name}: {}", p.as_str()));
            continue;
        }
        let key = (i.instance.tenant.clone(), i.instance.cluster.clone());
        let graceful = specs.get(&key).map(lifecycle::graceful).unwrap_or_default();
        match decide(i, &graceful, workers_left, true) {
            Move::Stay(why) => stays.push(format!("{name}: {why}")),
            Move::Wait(why) => remaining.push(format!("{name}: {why}")),
            Move::Reschedule | Move::Replace => remaining.push(format!("{name}: moving")),
        }
    }
    Ok(DrainStatus { since_ms, done: remaining.is_empty(), remaining, stays })
}

impl State {
    /// Moves the instances of hosts lost past their grace and steps host drains. Reads the
    /// hot state first; writes only when some host needs it. Returns how many instances moved.
    pub async fn sweep(&self) -> Result<usize> {
        self.hot.prune_changes(|tenant, name| self.desired.knows(tenant, name));
        let now = now_ms();
        let lost_after = 3 * self.interval_ms();
        let reschedule_ms = (self.fleet.reschedule_after.as_millis() as u64).max(lost_after + 1);
        let replace_ms = (self.fleet.datanode_replace_after.as_millis() as u64).max(reschedule_ms);
        let (mut lost, total, lost_now): (Vec<(String, u64)>, usize, usize) = self.hot.with_hosts(|hosts| {
            let lost = hosts
                .values()
                .filter_map(|h| {
                    let age = h.age_ms(now);
                    (age >= reschedule_ms).then(|| (h.info.id.clone(), age))
                })
                .collect();
            let lost_now = hosts.values().filter(|h| h.age_ms(now) > lost_after).count();
            (lost, hosts.len(), lost_now)
        });
        let held = holds_moves(total, lost_now, self.fleet.max_lost_percent);
        crate::metrics::get().lost_hosts(lost_now as u64, held);
        if self.lost_held.swap(held, std::sync::atomic::Ordering::Relaxed) != held {
            if held {
                warn!(lost = lost_now, hosts = total, max_lost_percent = self.fleet.max_lost_percent,
                    "so many hosts are lost at once that herd more likely cannot hear them than they all failed: \
                     nothing moves off lost hosts until most of the fleet is heard again (check the orchestrator's \
                     network and load)");
            } else {
                info!(lost = lost_now, hosts = total, "most of the fleet is heard again: instances of lost hosts move as before");
            }
        }
        if held {
            lost.clear();
        }
        let draining: Vec<String> = self.hot.with_hosts(|hosts| hosts.values().filter(|h| h.cordoned).map(|h| h.info.id.clone()).collect());
        if lost.is_empty() && draining.is_empty() {
            return Ok(0);
        }
        let hot = self.hot.clone();
        let moved = self
            .store
            .write(move |tx| {
                let mut moved = Vec::new();
                let lost_ids: BTreeSet<&str> = lost.iter().map(|(h, _)| h.as_str()).collect();
                for (host, age) in &lost {
                    let why = format!("host {host} lost {} ago", humantime::format_duration(Duration::from_secs(age / 1000)));
                    for (i, action) in empty_host(tx, host, now, *age >= replace_ms, true, &why)? {
                        moved.push((host.clone(), i, action, why.clone()));
                    }
                }
                for host in draining.iter().filter(|h| !lost_ids.contains(h.as_str())) {
                    let Some(row) = tx.host(host)? else { continue };
                    if row.drain_since_ms.is_none() {
                        continue;
                    }
                    let why = format!("host {host} is drained (`herd hosts drain`)");
                    for (i, action) in empty_host(tx, host, now, true, false, &why)? {
                        moved.push((host.clone(), i, action, why.clone()));
                    }
                }
                if moved.is_empty() {
                    return Ok(0);
                }
                for (host, i, action, why) in &moved {
                    let (action, detail) = match action.split_once(' ') {
                        Some((a, rest)) => (a, format!("{why}; {rest}")),
                        None => (action.as_str(), why.clone()),
                    };
                    let resource = format!("{}/{}/{}", i.tenant, i.cluster, i.name);
                    let change = Change { actor: "herd", action, resource: &resource, before: None, after: None };
                    audit::record_detail(tx, now, &change, Some(&detail))?;
                    warn!(instance = %i, host = %host, action, detail = %detail, "moving off a host");
                }
                schedule_pending(tx, &hot, now, lost_after)?;
                drive_lifecycle(tx, &hot, now, lost_after, None)?;
                tx.bump_revision()?;
                Ok(moved.len())
            })
            .await?;
        if moved > 0 {
            self.leaving_may_exist();
        }
        Ok(moved)
    }

    /// One host.
    pub async fn host(&self, id: String) -> Result<HostStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let Some(live) = self.hot.host(&id) else {
            return Err(Error::not_found("host", id));
        };
        self.store
            .read(move |c| {
                let row = c.host(&live.info.id)?;
                host_status(c, live, row.as_ref(), now, lost_after)
            })
            .await
    }

    /// A page of hosts, by id.
    pub async fn hosts(&self, after: Option<String>, limit: usize) -> Result<herd_api::wire::Page<HostStatus>> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let hosts: Vec<HostLive> = self.hot.with_hosts(|all| {
            let mut ids: Vec<&String> = all.keys().filter(|id| after.as_ref().is_none_or(|a| *id > a)).collect();
            ids.sort();
            ids.into_iter().take(limit.saturating_add(1)).filter_map(|id| all.get(id).cloned()).collect()
        });
        self.store
            .read(move |c| {
                let mut items = Vec::new();
                for h in hosts {
                    let row = if h.cordoned { c.host(&h.info.id)? } else { None };
                    items.push(host_status(c, h, row.as_ref(), now, lost_after)?);
                }
                Ok(crate::state::page(items, limit, |h: &HostStatus| h.info.id.clone()))
            })
            .await
    }

    /// Cordons (`true`) or uncordons a host: no new placements while cordoned. Uncordoning
    /// also ends a drain (what already left stays gone). Audited when it changes anything.
    pub async fn cordon(&self, actor: String, id: String, cordoned: bool) -> Result<HostStatus> {
        self.set_schedule(actor, id, cordoned, false).await
    }

    /// Drains a host: cordons it and moves everything on it elsewhere, DataNodes and
    /// NodeManagers through the decommission/drain lifecycle, masters last. Progress is in
    /// the host's `drain` status; the sweep does the moving.
    pub async fn drain(&self, actor: String, id: String) -> Result<HostStatus> {
        let status = self.set_schedule(actor, id, true, true).await?;
        self.sweep().await?;
        self.host(status.info.id).await
    }

    async fn set_schedule(&self, actor: String, id: String, cordoned: bool, drain: bool) -> Result<HostStatus> {
        if let Err(m) = check_host_id(&id) {
            return Err(Error::invalid("host", m));
        }
        if !self.hot.knows(&id) {
            return Err(Error::not_found("host", id));
        }
        let now = now_ms();
        let host = id.clone();
        self.store
            .write(move |tx| {
                let Some(row) = tx.host(&host)? else { return Err(Error::not_found("host", &host)) };
                let drain_since = match (drain, row.drain_since_ms) {
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(now),
                    (false, _) if cordoned => row.drain_since_ms,
                    (false, _) => None,
                };
                if row.cordoned == cordoned && row.drain_since_ms == drain_since {
                    return Ok(());
                }
                tx.set_host_schedule(&host, cordoned, drain_since)?;
                let action = match (cordoned, drain) {
                    (_, true) => "host.drain",
                    (true, false) => "host.cordon",
                    (false, false) => "host.uncordon",
                };
                let resource = format!("hosts/{host}");
                audit::record(tx, now, &Change { actor: &actor, action, resource: &resource, before: None, after: None })?;
                info!(host = %host, action, "host schedule changed");
                // Uncordoned: room for what is pending.
                if !cordoned {
                    tx.bump_revision()?;
                }
                Ok(())
            })
            .await?;
        self.hot.set_cordoned(&id, cordoned);
        if !cordoned {
            let (hot, lost_after) = (self.hot.clone(), 3 * self.interval_ms());
            self.store.write(move |tx| schedule_pending(tx, &hot, now, lost_after)).await?;
        }
        self.host(id).await
    }

    /// Deletes a host: refused while anything is placed on it, except DataNodes already
    /// replaced (leaving) on a lost host, which are forgotten with it. Releases its subnet
    /// lease and revokes its agent tokens. Audited.
    pub async fn delete_host(&self, actor: String, id: String) -> Result<Vec<String>> {
        if let Err(m) = check_host_id(&id) {
            return Err(Error::invalid("host", m));
        }
        let Some(live) = self.hot.host(&id) else {
            return Err(Error::not_found("host", id));
        };
        let now = now_ms();
        let lost = live.age_ms(now) > 3 * self.interval_ms();
        let host = id.clone();
        let revoked = self
            .store
            .write(move |tx| {
                let on_host = tx.instances_on_host(&host)?;
                let leaving = tx.leaving(None)?;
                let blocking: Vec<String> = on_host
                    .iter()
                    .filter(|i| !(lost && leaving.contains_key(&i.instance)))
                    .map(|i| format!("{}/{}/{}", i.instance.tenant, i.instance.cluster, i.instance.name))
                    .collect();
                if !blocking.is_empty() {
                    return Err(Error::Conflict(format!(
                        "host {host} still has {} instances placed on it ({}): run `herd hosts drain {host} --wait` first",
                        blocking.len(),
                        blocking.join(", ")
                    )));
                }
                for i in &on_host {
                    tx.delete_instance(&i.instance)?;
                }
                let revoked = tx.delete_host(&host)?;
                let resource = format!("hosts/{host}");
                let detail = format!(
                    "subnet lease released; agent tokens revoked: {}{}",
                    if revoked.is_empty() { "none".to_string() } else { revoked.join(", ") },
                    if on_host.is_empty() { String::new() } else { format!("; {} replaced instances forgotten", on_host.len()) }
                );
                let change = Change { actor: &actor, action: "host.delete", resource: &resource, before: None, after: None };
                audit::record_detail(tx, now, &change, Some(&detail))?;
                tx.bump_revision()?;
                Ok(revoked)
            })
            .await?;
        self.hot.remove(&id);
        self.sents.forget(&id);
        self.auth.revoked();
        self.leaving_may_exist();
        info!(host = %id, "host deleted");
        Ok(revoked)
    }

    /// A cluster's status, for the host operations' tests.
    #[cfg(test)]
    pub(crate) async fn status_now(&self, tenant: &str, name: &str) -> Result<herd_api::wire::ClusterStatus> {
        let key = (tenant.to_string(), name.to_string());
        self.assemble_status(&key, now_ms(), 3 * self.interval_ms(), crate::desired::Want::Status { max_age_ms: crate::clusters::STATUS_TTL_MS }, usize::MAX).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(role: Role) -> Instance {
        Instance {
            instance: InstanceRef::new("t", "c", role, 0),
            role,
            ordinal: 0,
            host: Some("h".into()),
            pending: None,
            cpu: Cpu(1000),
            memory: Memory(1 << 30),
            placement: 1,
        }
    }

    #[test]
    fn what_moves_and_when() {
        let both: BTreeSet<Role> = [Role::Datanode, Role::Nodemanager].into();
        let none = BTreeSet::new();
        // (case, role, graceful roles, ..., ..., what happens)
        type Case<'a> = (&'a str, Role, &'a BTreeSet<Role>, bool, bool, &'a str);
        let cases: Vec<Case<'_>> = vec![
            ("namenode never moves", Role::Namenode, &both, false, true, "stay"),
            ("datanode of an external namenode stays", Role::Datanode, &none, false, true, "stay"),
            ("datanode waits for its grace", Role::Datanode, &both, false, false, "wait"),
            ("datanode replaced after it", Role::Datanode, &both, false, true, "replace"),
            ("nodemanager with a resourcemanager drains", Role::Nodemanager, &both, true, false, "replace"),
            ("nodemanager without one moves", Role::Nodemanager, &none, true, false, "reschedule"),
            ("resourcemanager waits for workers", Role::Resourcemanager, &both, true, true, "wait"),
            ("resourcemanager moves last", Role::Resourcemanager, &both, false, true, "reschedule"),
        ];
        for (name, role, graceful, workers_left, replace_data, want) in cases {
            let got = match decide(&inst(role), graceful, workers_left, replace_data) {
                Move::Reschedule => "reschedule",
                Move::Replace => "replace",
                Move::Stay(_) => "stay",
                Move::Wait(_) => "wait",
            };
            assert_eq!(got, want, "{name}");
        }
    }

    use herd_api::spec::Replicas;
    use herd_api::wire::{ContainerState, Heartbeat, HostInfo, Observed, Quota, ScaleRequest};
    use herd_api::yaml::parse_cluster_spec;

    const SPEC: &str = "tenant: t\nname: c\nimages: {namenode: n, datanode: d, resourcemanager: r, nodemanager: m}\npools:\n  \
        namenode: {replicas: 1, cpu: 100m, memory: 512Mi}\n  datanode: {replicas: 3, cpu: 100m, memory: 256Mi}\n  \
        resourcemanager: {replicas: 1, cpu: 100m, memory: 512Mi}\n  nodemanager: {replicas: 2, cpu: 100m, memory: 1Gi}\n";

    /// Four hosts of 3 GiB with networking (so they hold subnet leases) and the cluster above:
    /// the scheduler packs the masters, a DataNode and a NodeManager on h1 and puts a
    /// DataNode and a NodeManager on h2, the victim of these tests.
    async fn fleet() -> Result<State> {
        let fleet = FleetSettings {
            reschedule_after: Duration::from_secs(5),
            datanode_replace_after: Duration::from_secs(10),
            ..FleetSettings::default()
        };
        let state = State::new(crate::store::Store::in_memory()?, Duration::from_secs(1), crate::network::Settings::default_plan())?.with_fleet(fleet);
        for (n, id) in HOSTS.iter().enumerate() {
            let info: HostInfo = serde_json::from_value(serde_json::json!({"id": id, "cpu": "16", "memory": "3Gi", "address": format!("10.0.0.{}", n + 1)}))
                .map_err(|e| Error::invalid("host", e.to_string()))?;
            state.register("agent".into(), info).await?;
        }
        state.store.write(|tx| tx.insert_tenant("t", &Quota::default(), 0).map(|_| ())).await?;
        let spec = parse_cluster_spec(SPEC).map_err(|e| Error::invalid("spec", e.to_string()))?;
        state.apply("admin".into(), spec, None).await?;
        Ok(state)
    }

    const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];

    async fn placed(state: &State) -> Result<Vec<Instance>> {
        state.store.read(|c| c.instances(None)).await
    }

    fn on<'a>(all: &'a [Instance], name: &str) -> &'a Instance {
        all.iter().find(|i| i.instance.name == name).unwrap_or_else(|| panic!("{name} is not stored"))
    }

    /// A host with a DataNode and a NodeManager but no NameNode.
    fn victim(all: &[Instance]) -> String {
        let hosts: BTreeSet<&str> = all.iter().filter_map(|i| i.host.as_deref()).collect();
        let holds = |h: &str, role: Role| all.iter().any(|i| i.host.as_deref() == Some(h) && i.role == role);
        let found = hosts.into_iter().find(|h| holds(h, Role::Datanode) && holds(h, Role::Nodemanager) && !holds(h, Role::Namenode));
        found.unwrap_or_else(|| panic!("no host holds a DataNode and a NodeManager without the NameNode: {all:?}")).to_string()
    }

    /// Every host but `skip` heartbeats, reporting what is placed on it as running.
    async fn beat_all_but(state: &State, skip: &str) -> Result<()> {
        for h in HOSTS.into_iter().filter(|h| *h != skip) {
            let observed = placed(state)
                .await?
                .into_iter()
                .filter(|i| i.host.as_deref() == Some(h))
                .map(|i| crate::hot::tests::observed(i.instance.clone(), ContainerState::Running))
                .collect();
            state.heartbeat(Heartbeat { host_id: h.into(), observed, conditions: vec![], purged: vec![], applied: None, network_deltas: true }).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_lost_hosts_instances_show_unknown_then_move_and_its_datanode_is_replaced() -> Result<()> {
        let state = fleet().await?;
        let before = placed(&state).await?;
        let lost = victim(&before);
        beat_all_but(&state, "").await?;
        let (dn, nm) = {
            let mine = |role| before.iter().find(|i| i.host.as_deref() == Some(lost.as_str()) && i.role == role).map(|i| i.instance.name.clone());
            (mine(Role::Datanode).unwrap_or_default(), mine(Role::Nodemanager).unwrap_or_default())
        };

        // Lost, within the grace: unknown, never running; nothing moves.
        state.hot.age(&lost, 4_000);
        let status = state.status_now("t", "c").await?;
        for i in status.instances.iter().filter(|i| i.host.as_deref() == Some(lost.as_str())) {
            assert_eq!(i.observed.as_ref().map(|o| o.state), Some(ContainerState::Unknown), "{}", i.instance);
            assert!(i.host_lost_ms_ago.is_some_and(|ms| ms >= 4_000), "{:?}", i.host_lost_ms_ago);
        }
        assert!(status.conditions.iter().any(|c| c.kind == "HostLost"), "{:?}", status.conditions);
        assert_eq!(state.sweep().await?, 0, "moved within the grace");

        // Past --reschedule-after: the NodeManager moves (a new placement), the DataNode waits.
        state.hot.age(&lost, 2_000);
        beat_all_but(&state, &lost).await?;
        assert_eq!(state.sweep().await?, 1);
        let now = placed(&state).await?;
        let moved = on(&now, &nm);
        assert!(moved.host.is_some() && moved.host.as_deref() != Some(lost.as_str()), "{moved:?}");
        assert_eq!(moved.placement, on(&before, &nm).placement + 1, "a new placement is numbered");
        assert_eq!(on(&now, &dn).host.as_deref(), Some(lost.as_str()));

        // Past --datanode-replace-after: the DataNode leaves (decommissioned through the
        // NameNode) and a new DataNode identity is placed elsewhere.
        state.hot.age(&lost, 5_000);
        beat_all_but(&state, &lost).await?;
        assert_eq!(state.sweep().await?, 1);
        let now = placed(&state).await?;
        let phases = state.store.read(|c| c.leaving(None)).await?;
        assert!(matches!(phases.get(&on(&now, &dn).instance), Some(Phase::Decommissioning { .. })), "{phases:?}");
        let new: Vec<&Instance> = now.iter().filter(|i| i.role == Role::Datanode && !before.iter().any(|b| b.instance == i.instance)).collect();
        assert_eq!(new.len(), 1, "{now:?}");
        assert!(new[0].host.is_some() && new[0].host.as_deref() != Some(lost.as_str()), "{:?}", new[0]);
        let status = state.status_now("t", "c").await?;
        assert!(status.conditions.iter().any(|c| c.kind == "DataNodeReplaced" && c.message.contains(&dn)), "{:?}", status.conditions);
        let audit = state.store.read(|c| c.audit(None, 100)).await?;
        assert!(audit.iter().any(|e| e.action == "instance.reschedule" && e.resource.ends_with(&nm)), "{audit:?}");
        assert!(audit.iter().any(|e| e.action == "instance.replace" && e.resource.ends_with(&dn)), "{audit:?}");
        Ok(())
    }

    #[tokio::test]
    async fn cordon_drain_and_delete() -> Result<()> {
        let state = fleet().await?;
        beat_all_but(&state, "").await?;
        let before = placed(&state).await?;
        let host = victim(&before);

        // Cordoned: new NodeManagers go elsewhere.
        let s = state.cordon("admin".into(), host.clone(), true).await?;
        assert!(s.cordoned && s.drain.is_none());
        state.scale("admin".into(), "t".into(), "c".into(), Role::Nodemanager, ScaleRequest { replicas: Replicas(4), force: false }, None).await?;
        let now = placed(&state).await?;
        let new_nms: Vec<&Instance> = now.iter().filter(|i| i.role == Role::Nodemanager && !before.iter().any(|b| b.instance == i.instance)).collect();
        assert_eq!(new_nms.len(), 2);
        assert!(new_nms.iter().all(|i| i.host.is_some() && i.host.as_deref() != Some(host.as_str())), "{new_nms:?}");

        // Drained: its DataNode and NodeManager leave through the lifecycle, replaced elsewhere.
        let s = state.drain("admin".into(), host.clone()).await?;
        let drain = s.drain.unwrap_or_default();
        assert!(!drain.done && drain.remaining.len() >= 2, "{drain:?}");
        let phases = state.store.read(|c| c.leaving(None)).await?;
        let now = placed(&state).await?;
        for i in now.iter().filter(|i| i.host.as_deref() == Some(host.as_str())) {
            assert!(phases.contains_key(&i.instance), "{} on the drained host is not leaving", i.instance);
        }
        let staying = |role| now.iter().filter(|i| i.role == role && !phases.contains_key(&i.instance) && i.host.is_some()).count();
        assert_eq!((staying(Role::Datanode), staying(Role::Nodemanager)), (3, 4), "replacements placed elsewhere");

        // Not empty yet: delete refused, naming what is there.
        let refused = state.delete_host("admin".into(), host.clone()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("drain") && refused.contains("datanode"), "{refused}");

        // Emptied (here by deleting the cluster): delete frees the lease and revokes tokens.
        let lease = state.hot.host(&host).and_then(|h| h.subnet);
        state.delete("admin".into(), "t".into(), "c".into(), false, None).await?;
        assert!(state.host(host.clone()).await?.drain.is_some_and(|d| d.done));
        state.delete_host("admin".into(), host.clone()).await?;
        assert!(lease.is_some_and(|l| !state.hot.leased().contains(&l)), "lease {lease:?} still held");
        assert!(state.host(host.clone()).await.is_err());
        assert!(state.store.read({ let h = host.clone(); move |c| c.host(&h) }).await?.is_none());
        Ok(())
    }

    #[test]
    fn graces_are_checked() {
        let s = FleetSettings {
            reschedule_after: Duration::from_secs(5),
            datanode_replace_after: Duration::from_secs(10),
            ..FleetSettings::default()
        };
        assert!(s.check(Duration::from_secs(1)).is_ok());
        assert!(s.check(Duration::from_secs(2)).is_err());
        let err = FleetSettings { max_lost_percent: 0, ..s }.check(Duration::from_secs(1)).err().unwrap_or_default();
        assert!(err.starts_with("max_lost_percent (0) must be from 1 to 100"), "{err}");
    }

    #[test]
    fn moves_are_held_while_much_of_the_fleet_is_lost_at_once() {
        // (hosts, lost, --max-lost-percent) -> held
        let table = [
            ((4, 0, 50), false),
            ((4, 1, 50), false),
            ((4, 2, 50), false),  // half: not more than half
            ((4, 3, 50), true),
            ((4, 4, 50), true),
            ((2, 1, 50), false),  // one host of two: it moves
            ((2, 2, 50), true),   // nobody heard: the orchestrator's problem more likely
            ((1, 1, 50), true),
            ((3, 1, 10), false),  // one host alone never holds, whatever the percentage
            ((30_000, 15_001, 50), true),
            ((30_000, 15_000, 50), false),
            ((30_000, 3_001, 10), true),
            ((4, 4, 100), false), // 100: the hold is off
        ];
        for ((total, lost, percent), held) in table {
            assert_eq!(holds_moves(total, lost, percent), held, "{lost} of {total} lost, --max-lost-percent {percent}");
        }
    }

    /// A host back from `lost` has what waited placed by a pass of its own, which its
    /// heartbeat does not wait for.
    #[tokio::test]
    async fn a_host_back_from_lost_gets_what_waited_placed_soon() -> Result<()> {
        let state = fleet().await?;
        for h in HOSTS {
            state.hot.age(h, 4_000);
        }
        // No host is ready: a new NodeManager waits.
        state.scale("admin".into(), "t".into(), "c".into(), Role::Nodemanager, ScaleRequest { replicas: Replicas(3), force: false }, None).await?;
        let waiting = |all: &[Instance]| all.iter().filter(|i| i.host.is_none()).count();
        assert_eq!(waiting(&placed(&state).await?), 1);
        beat_all_but(&state, "").await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while waiting(&placed(&state).await?) > 0 {
            assert!(std::time::Instant::now() < deadline, "still waiting 10 s after the hosts came back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The write-behind writes each host's report as a change from what it wrote before; the
    /// store ends holding exactly what each host last reported.
    #[tokio::test]
    async fn reports_are_written_behind_as_changes_and_the_store_ends_as_reported() -> Result<()> {
        let state = fleet().await?;
        let stored = |state: &State| {
            let state = state.clone();
            async move {
                let all = state.store.read(|c| c.observed()).await?;
                let mut rows: Vec<(String, Observed)> = all.into_iter().map(|((_, h), o)| (h, o)).collect();
                rows.sort_by(|a, b| (&a.0, &a.1.instance).cmp(&(&b.0, &b.1.instance)));
                Result::<_>::Ok(rows)
            }
        };
        let reported = |state: &State| {
            let mut rows: Vec<(String, Observed)> = state
                .hot
                .with_hosts(|hosts| hosts.values().flat_map(|h| h.observed.iter().map(|o| (h.info.id.clone(), o.clone()))).collect());
            rows.sort_by(|a, b| (&a.0, &a.1.instance).cmp(&(&b.0, &b.1.instance)));
            rows
        };
        beat_all_but(&state, "").await?;
        let busy: BTreeSet<String> = reported(&state).into_iter().map(|(h, _)| h).collect();
        assert!(!busy.is_empty());
        assert_eq!(state.flush_reports().await?, busy.len(), "hosts whose report changed");
        assert_eq!(stored(&state).await?, reported(&state));
        assert_eq!(state.flush_reports().await?, 0, "nothing changed");

        // One host: a container exited, another is gone, and one it did not run appears.
        let host = victim(&placed(&state).await?);
        let mut mine: Vec<Observed> = reported(&state).into_iter().filter(|(h, _)| *h == host).map(|(_, o)| o).collect();
        assert!(mine.len() >= 2, "{mine:?}");
        mine[0].state = ContainerState::Exited;
        mine.remove(1);
        let stray = Observed { instance: InstanceRef::new("t", "c", Role::Datanode, 99), ..mine[0].clone() };
        mine.push(stray);
        state.heartbeat(Heartbeat { host_id: host.clone(), observed: mine, conditions: vec![], purged: vec![], applied: None, network_deltas: true }).await?;
        assert_eq!(state.flush_reports().await?, 1);
        assert_eq!(stored(&state).await?, reported(&state));
        Ok(())
    }

    #[tokio::test]
    async fn nothing_moves_while_most_of_the_fleet_is_lost_then_the_really_lost_host_does() -> Result<()> {
        let state = fleet().await?;
        beat_all_but(&state, "").await?;
        let before = placed(&state).await?;
        let lost = victim(&before);
        // Three of four hosts unheard past both graces (the orchestrator cut off, say).
        let heard = HOSTS.into_iter().find(|h| *h != lost).unwrap_or_default();
        for h in HOSTS.into_iter().filter(|h| *h != heard) {
            state.hot.age(h, 11_000);
        }
        assert_eq!(state.sweep().await?, 0, "moved while three of four hosts were lost");
        assert_eq!(placed(&state).await?, before, "placements changed while held");
        assert!(state.store.read(|c| c.leaving(None)).await?.is_empty(), "a DataNode started leaving while held");
        let metrics = crate::metrics::get().render(None);
        assert!(metrics.contains("herd_lost_moves_held 1"), "{metrics}");

        // The fleet is heard again but for one host: its instances move (it was lost all along).
        beat_all_but(&state, &lost).await?;
        assert_eq!(state.sweep().await?, 2, "the NodeManager moves and the DataNode is replaced");
        let now = placed(&state).await?;
        assert!(now.iter().all(|i| i.role == Role::Datanode || i.host.as_deref() != Some(lost.as_str())), "{now:?}");
        let metrics = crate::metrics::get().render(None);
        assert!(metrics.contains("herd_lost_moves_held 0"), "{metrics}");
        Ok(())
    }
}
