//! The masters' latest reports joined with a cluster's instances: how HDFS and YARN see each
//! instance, the cluster's HDFS and YARN summaries, and the conditions `herd status` shows.
//!
//! Pure: the caller gathers the reports (with their age) and the instances; nothing here
//! reads a clock. A DataNode is matched to the NameNode's entries by hostname
//! ([`InstanceRef::hostname`], e.g. `datanode-3.prod.acme`, case-insensitively) and a
//! NodeManager to the ResourceManager's by `nodeHostName`.

use std::collections::BTreeMap;

use herd_api::hadoop::{DataNodeReport, NameNodeHealth, NodeManagerReport, ResourceManagerHealth};
use herd_api::names::InstanceRef;
use herd_api::spec::Role;
use herd_api::wire::{Condition, HdfsSummary, InstanceHadoop, YarnSummary};

use super::resourcemanager::state;

/// A report older than this many poll intervals is stale.
pub const STALE_AFTER_POLLS: u64 = 3;

/// `hdfs_state` of a DataNode the NameNode lists dead.
pub const DEAD: &str = "dead";
/// `hdfs_state`/`yarn_state` of a worker its master does not list.
pub const NOT_REGISTERED: &str = "not registered";
/// `master` of a master whose report is fresh and readable.
pub const UP: &str = "up";

/// Stable condition kinds (see [`Condition::kind`]).
pub mod kind {
    pub const NAMENODE_UNREADABLE: &str = "NameNodeUnreadable";
    pub const SAFE_MODE: &str = "SafeMode";
    pub const HDFS_DEGRADED: &str = "HdfsDegraded";
    pub const UNDER_REPLICATED: &str = "UnderReplicated";
    pub const MISSING_BLOCKS: &str = "MissingBlocks";
    pub const REPLICATION_ABOVE_DATANODES: &str = "ReplicationAboveDataNodes";
    pub const RESOURCEMANAGER_UNREADABLE: &str = "ResourceManagerUnreadable";
    pub const YARN_DEGRADED: &str = "YarnDegraded";
    pub const MASTERS_MISSING: &str = "MastersMissing";
}

/// Where a cluster's NameNode (or ResourceManager) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterSource {
    /// A `namenode` (`resourcemanager`) pool herd runs.
    Herd,
    /// `external.namenode` (`external.resourcemanager`) in the spec.
    External,
    /// Neither.
    Missing,
}

/// One instance of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance: InstanceRef,
    pub role: Role,
    /// Its container runs on its host, as the agent last reported.
    pub running: bool,
}

/// A master's latest report and how old it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Aged<T> {
    pub report: T,
    pub age_ms: u64,
}

/// What [`assess`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Assess {
    pub instances: Vec<Member>,
    /// The spec's `hdfs.replication`.
    pub replication: u16,
    pub namenode: MasterSource,
    pub resourcemanager: MasterSource,
    pub namenode_report: Option<Aged<NameNodeHealth>>,
    pub resourcemanager_report: Option<Aged<ResourceManagerHealth>>,
    /// How often the masters are polled: a report older than [`STALE_AFTER_POLLS`] of these
    /// is stale.
    pub poll_interval_ms: u64,
}

/// What [`assess`] concludes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// Every instance of the input, as its master sees it.
    pub instances: BTreeMap<InstanceRef, InstanceHadoop>,
    /// From a readable NameNode report (possibly stale: see the conditions).
    pub hdfs: Option<HdfsSummary>,
    /// From a readable ResourceManager report (possibly stale).
    pub yarn: Option<YarnSummary>,
    /// What needs attention, in a stable order; empty when all is well.
    pub conditions: Vec<Condition>,
}

/// How a master's report reads.
enum Reading<'a, T> {
    /// No report (yet).
    None,
    Error(&'a str),
    /// Readable, and whether it is stale (then its age in ms).
    Ok(&'a T, Option<u64>),
}

fn reading<'a, T>(r: Option<&'a Aged<T>>, error: impl Fn(&T) -> Option<&str>, poll_ms: u64) -> Reading<'a, T> {
    match r {
        None => Reading::None,
        Some(a) => match error(&a.report) {
            Some(e) => Reading::Error(e),
            None => {
                let stale = a.age_ms > poll_ms.saturating_mul(STALE_AFTER_POLLS);
                Reading::Ok(&a.report, stale.then_some(a.age_ms))
            }
        },
    }
}

fn cond(kind: &str, message: String) -> Condition {
    Condition { kind: kind.to_string(), message }
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

fn names(members: &[&Member]) -> String {
    members.iter().map(|m| m.instance.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Joins the masters' reports with the instances; see the module doc.
pub fn assess(input: &Assess) -> Assessment {
    let mut out = Assessment::default();
    let nn = reading(input.namenode_report.as_ref(), |h: &NameNodeHealth| h.error.as_deref(), input.poll_interval_ms);
    let rm = reading(
        input.resourcemanager_report.as_ref(),
        |h: &ResourceManagerHealth| h.error.as_deref(),
        input.poll_interval_ms,
    );
    let of_role = |r: Role| input.instances.iter().filter(move |m| m.role == r).collect::<Vec<_>>();
    let datanodes = of_role(Role::Datanode);
    let nodemanagers = of_role(Role::Nodemanager);
    let cluster = input.instances.first().map(|m| format!("{}/{}", m.instance.tenant, m.instance.cluster));
    let cluster = cluster.as_deref().unwrap_or("CLUSTER");

    for m in &input.instances {
        let h = match m.role {
            Role::Datanode => datanode(m, &nn),
            Role::Nodemanager => nodemanager(m, &rm),
            Role::Namenode => InstanceHadoop { master: Some(master_text(&nn, m)), ..InstanceHadoop::default() },
            Role::Resourcemanager => InstanceHadoop { master: Some(master_text(&rm, m)), ..InstanceHadoop::default() },
        };
        out.instances.insert(m.instance.clone(), h);
    }

    // HDFS.
    let hdfs_wanted = input.namenode != MasterSource::Missing || !datanodes.is_empty();
    if input.namenode == MasterSource::Missing && !datanodes.is_empty() {
        out.conditions.push(cond(
            kind::MASTERS_MISSING,
            format!(
                "{} DataNode(s) but no NameNode to join: add a `namenode` pool (replicas: 1) to the spec, \
                 or name the NameNode you run under `external.namenode.host`",
                datanodes.len()
            ),
        ));
    }
    if let Some(c) = unreadable(kind::NAMENODE_UNREADABLE, "NameNode", Role::Namenode, input.namenode, &nn, input, cluster) {
        out.conditions.push(c);
    }
    if let Reading::Ok(h, _) = nn {
        out.hdfs = Some(HdfsSummary {
            live_datanodes: h.live_datanodes,
            dead_datanodes: h.dead_datanodes,
            decommissioning_datanodes: h.decommissioning_datanodes,
            capacity_used: h.capacity_used,
            capacity_total: h.capacity_total,
            blocks_total: h.blocks_total,
            under_replicated_blocks: h.under_replicated_blocks,
            missing_blocks: h.missing_blocks,
            safe_mode: h.safe_mode,
        });
        hdfs_conditions(h, &datanodes, &out.instances, input, cluster, &mut out.conditions);
    }
    if hdfs_wanted && u64::from(input.replication) > datanodes.len() as u64 {
        out.conditions.push(cond(
            kind::REPLICATION_ABOVE_DATANODES,
            format!(
                "hdfs.replication is {} but the cluster has {} DataNode(s): HDFS will report every block \
                 under-replicated; add DataNodes (`herd scale {cluster} datanode={}`) or lower hdfs.replication",
                input.replication,
                datanodes.len(),
                input.replication
            ),
        ));
    }

    // YARN.
    if input.resourcemanager == MasterSource::Missing && !nodemanagers.is_empty() {
        out.conditions.push(cond(
            kind::MASTERS_MISSING,
            format!(
                "{} NodeManager(s) but no ResourceManager to join: add a `resourcemanager` pool (replicas: 1) \
                 to the spec, or name the ResourceManager you run under `external.resourcemanager.host`",
                nodemanagers.len()
            ),
        ));
    }
    if let Some(c) = unreadable(
        kind::RESOURCEMANAGER_UNREADABLE,
        "ResourceManager",
        Role::Resourcemanager,
        input.resourcemanager,
        &rm,
        input,
        cluster,
    ) {
        out.conditions.push(c);
    }
    if let Reading::Ok(h, _) = rm {
        out.yarn = Some(YarnSummary {
            active_nodemanagers: h.active_nodes,
            lost_nodemanagers: h.lost_nodes,
            unhealthy_nodemanagers: h.unhealthy_nodes,
            decommissioning_nodemanagers: h.decommissioning_nodes,
            total_mb: h.total_mb,
            total_vcores: h.total_vcores,
            apps_running: h.apps_running,
        });
        if let Some(c) = yarn_degraded(h, &nodemanagers, &out.instances) {
            out.conditions.push(c);
        }
    }
    out
}

fn master_text<T>(r: &Reading<'_, T>, m: &Member) -> String {
    match r {
        Reading::Ok(_, None) => UP.to_string(),
        Reading::Ok(_, Some(age)) => format!("no report for {}s", secs(*age)),
        Reading::Error(e) => (*e).to_string(),
        Reading::None if !m.running => "not running".to_string(),
        Reading::None => "no report yet".to_string(),
    }
}

/// `NameNodeUnreadable`/`ResourceManagerUnreadable`: an error, a stale report, or none from
/// a master herd runs.
fn unreadable<T>(
    kind: &str,
    what: &str,
    role: Role,
    source: MasterSource,
    r: &Reading<'_, T>,
    input: &Assess,
    cluster: &str,
) -> Option<Condition> {
    let master = input.instances.iter().find(|m| m.role == role);
    let logs = match master {
        Some(m) => format!("check `herd logs {}`", m.instance),
        None => format!("check that the {what} answers on its web port"),
    };
    let message = match r {
        Reading::Error(e) => format!("the {what}'s health could not be read: {e}; {logs}"),
        Reading::Ok(_, Some(age)) => format!(
            "the {what}'s last health report is {}s old (polled every {}s), so what herd shows of it may be out \
             of date; {logs}",
            secs(*age),
            secs(input.poll_interval_ms).max(1)
        ),
        Reading::None if source == MasterSource::Herd => match master {
            Some(m) if !m.running => format!(
                "the {what} ({}) is not running, so its health is unknown and workers cannot join it; {logs}",
                m.instance.name
            ),
            Some(_) => format!("no health report from the {what} yet: it may still be starting; if this lasts, {logs}"),
            None => format!("the spec of {cluster} has a {} pool but no instance of it yet", role.as_str()),
        },
        Reading::None | Reading::Ok(_, None) => return None,
    };
    Some(cond(kind, message))
}

fn datanode(m: &Member, nn: &Reading<'_, NameNodeHealth>) -> InstanceHadoop {
    let Reading::Ok(h, _) = nn else { return InstanceHadoop::default() };
    let host = m.instance.hostname();
    let mut found: Vec<&DataNodeReport> = h.datanodes.iter().filter(|d| d.hostname.eq_ignore_ascii_case(&host)).collect();
    // NB: a live entry wins over a dead one left from an earlier registration.
    found.sort_by_key(|d| !d.live);
    match found.first() {
        None => InstanceHadoop { hdfs_state: Some(NOT_REGISTERED.to_string()), ..InstanceHadoop::default() },
        Some(d) => InstanceHadoop {
            hdfs_state: Some(match (&d.admin_state, d.live) {
                (_, false) => DEAD.to_string(),
                (Some(s), true) => s.clone(),
                // Hadoop 1 lists live nodes without an admin state.
                (None, true) => "live".to_string(),
            }),
            live: Some(d.live),
            last_contact_s: d.last_contact_s,
            blocks: d.num_blocks,
            ..InstanceHadoop::default()
        },
    }
}

fn nodemanager(m: &Member, rm: &Reading<'_, ResourceManagerHealth>) -> InstanceHadoop {
    let Reading::Ok(h, _) = rm else { return InstanceHadoop::default() };
    let host = m.instance.hostname();
    // NB: a NodeManager that restarted with a new port has an old entry (LOST, SHUTDOWN) and
    // a new one: prefer RUNNING, then the latest health update.
    let best: Option<&NodeManagerReport> = h
        .nodes
        .iter()
        .filter(|n| n.hostname.eq_ignore_ascii_case(&host))
        .max_by_key(|n| (n.state == state::RUNNING, n.last_health_update_ms.unwrap_or(0)));
    InstanceHadoop {
        yarn_state: Some(best.map_or_else(|| NOT_REGISTERED.to_string(), |n| n.state.clone())),
        containers: best.and_then(|n| n.num_containers),
        ..InstanceHadoop::default()
    }
}

fn hdfs_conditions(
    h: &NameNodeHealth,
    datanodes: &[&Member],
    seen: &BTreeMap<InstanceRef, InstanceHadoop>,
    input: &Assess,
    cluster: &str,
    out: &mut Vec<Condition>,
) {
    if h.safe_mode {
        let why = h.safe_mode_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        out.push(cond(
            kind::SAFE_MODE,
            format!(
                "HDFS is in safe mode{why}: it is read-only until enough DataNodes report their blocks; it leaves \
                 by itself once they do. If it stays, bring the DataNodes back, or leave it by hand with \
                 `hdfs dfsadmin -safemode leave` in the NameNode's container"
            ),
        ));
    }

    let not_live: Vec<&Member> = datanodes
        .iter()
        .copied()
        .filter(|m| seen.get(&m.instance).and_then(|s| s.live) != Some(true))
        .collect();
    if h.dead_datanodes > 0 || (h.live_datanodes as usize) < datanodes.len() || !not_live.is_empty() {
        let stopped: Vec<&Member> = not_live.iter().copied().filter(|m| !m.running).collect();
        let unregistered: Vec<&Member> = not_live.iter().copied().filter(|m| m.running).collect();
        let mut parts = vec![format!(
            "the NameNode counts {} live and {} dead DataNode(s) for {} DataNode instance(s)",
            h.live_datanodes,
            h.dead_datanodes,
            datanodes.len()
        )];
        if !stopped.is_empty() {
            parts.push(format!("not running: {} (see `herd status {cluster}` for why)", names(&stopped)));
        }
        if !unregistered.is_empty() {
            parts.push(format!(
                "running but not live in HDFS: {} (check `herd logs {cluster}/<instance>` for the DataNode's \
                 registration errors)",
                names(&unregistered)
            ));
        }
        let foreign = h.datanodes.iter().filter(|d| !d.live).filter(|d| {
            !datanodes.iter().any(|m| d.hostname.eq_ignore_ascii_case(&m.instance.hostname()))
        });
        let foreign: Vec<&str> = foreign.map(|d| d.name.as_str()).collect();
        if !foreign.is_empty() {
            parts.push(format!(
                "dead and not an instance of this cluster: {} (a removed DataNode the NameNode still remembers; it \
                 forgets it on restart)",
                foreign.join(", ")
            ));
        }
        out.push(cond(kind::HDFS_DEGRADED, format!("{}; blocks on missing DataNodes are re-replicated from the others while enough are live", parts.join("; "))));
    }

    if h.under_replicated_blocks > 0 {
        let cause = if u64::from(input.replication) > datanodes.len() as u64 {
            format!(
                "hdfs.replication ({}) is above the number of DataNodes ({}), so they cannot be fully replicated: \
                 add DataNodes or lower hdfs.replication",
                input.replication,
                datanodes.len()
            )
        } else {
            "HDFS re-replicates them by itself while enough DataNodes are live; if the number does not fall, \
             look for dead DataNodes (HdfsDegraded) or full disks"
                .to_string()
        };
        out.push(cond(
            kind::UNDER_REPLICATED,
            format!(
                "{} of {} block(s) have fewer replicas than their replication factor: {cause}",
                h.under_replicated_blocks, h.blocks_total
            ),
        ));
    }

    if h.missing_blocks > 0 {
        out.push(cond(
            kind::MISSING_BLOCKS,
            format!(
                "{} block(s) have no live replica: reading their files fails. Bring back the DataNodes that held \
                 them (dead: {}); if none can return, `hdfs fsck / -list-corruptfileblocks` in the NameNode's \
                 container names the files to restore or delete",
                h.missing_blocks,
                dead_names(h)
            ),
        ));
    }
}

fn dead_names(h: &NameNodeHealth) -> String {
    let dead: Vec<&str> = h.datanodes.iter().filter(|d| !d.live).map(|d| d.name.as_str()).collect();
    if dead.is_empty() { "none listed".to_string() } else { dead.join(", ") }
}

fn yarn_degraded(
    h: &ResourceManagerHealth,
    nodemanagers: &[&Member],
    seen: &BTreeMap<InstanceRef, InstanceHadoop>,
) -> Option<Condition> {
    let not_running: Vec<&Member> = nodemanagers
        .iter()
        .copied()
        .filter(|m| seen.get(&m.instance).and_then(|s| s.yarn_state.as_deref()) != Some(state::RUNNING))
        .collect();
    if h.lost_nodes == 0 && h.unhealthy_nodes == 0 && not_running.is_empty() {
        return None;
    }
    let mut parts = vec![format!(
        "{} of {} NodeManager instance(s) RUNNING in YARN; the ResourceManager counts {} lost and {} unhealthy",
        nodemanagers.len() - not_running.len(),
        nodemanagers.len(),
        h.lost_nodes,
        h.unhealthy_nodes
    )];
    for m in &not_running {
        let st = seen.get(&m.instance).and_then(|s| s.yarn_state.as_deref()).unwrap_or(NOT_REGISTERED);
        let what = if !m.running {
            "its container is not running".to_string()
        } else if st == state::UNHEALTHY {
            let report = h
                .nodes
                .iter()
                .find(|n| n.hostname.eq_ignore_ascii_case(&m.instance.hostname()) && n.state == st)
                .and_then(|n| n.health_report.as_deref())
                .unwrap_or("no health report");
            format!("its health check fails ({report}); free its local dirs or fix what the report names")
        } else if st == NOT_REGISTERED || st == state::LOST || st == state::SHUTDOWN {
            format!("check `herd logs {}` for why it does not heartbeat to the ResourceManager", m.instance)
        } else {
            "it is not accepting containers".to_string()
        };
        parts.push(format!("{} is {st}: {what}", m.instance.name));
    }
    Some(cond(kind::YARN_DEGRADED, parts.join("; ")))
}

#[cfg(test)]
mod tests;
