//! `herd status`: instances, desired next to observed state.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use herd_api::lifecycle::LeavingStatus;
use herd_api::wire::{ClusterStatus, ContainerState, InstanceStatus};

use crate::args::ClusterRef;
use crate::client::Client;
use crate::output::{self, Format, short_duration};

/// Clusters with more instances than this are summarised unless `--all` or `-o wide`.
pub const SUMMARY_OVER: usize = 100;

/// How many instances that do not run a summary lists.
const SUMMARY_ROWS: usize = 20;

pub async fn run(client: &Client, out: Format, cluster: Option<&ClusterRef>, all: bool) -> Result<()> {
    match cluster {
        Some(c) => {
            let not_found = || anyhow!("cluster {c} not found; `herd status` lists every cluster");
            let full = all || out == Format::Wide;
            let status = if full { client.cluster_all(c).await? } else { client.cluster(c).await? }.ok_or_else(not_found)?;
            let total: usize = status.pools.iter().map(|p| p.instances as usize).sum();
            if !full && out == Format::Table && total.max(status.instances.len()) > SUMMARY_OVER {
                return output::emit(out, &status, || summarised(&status, SystemTime::now()));
            }
            print(out, &status)
        }
        None => {
            let clusters = client.clusters().await?;
            if clusters.is_empty() && matches!(out, Format::Table | Format::Wide) {
                eprintln!("no clusters yet; create one with `herd apply -f FILE`");
                return Ok(());
            }
            output::emit(out, &clusters, || {
                let mut text = instance_table(&clusters, SystemTime::now(), out == Format::Wide);
                if out == Format::Wide {
                    for c in &clusters {
                        text.push_str(&racks(c));
                    }
                }
                text
            })
        }
    }
}

/// Prints one cluster: its instances as a table followed by its HDFS and YARN summary and
/// conditions, or the whole status as JSON or YAML.
pub fn print(out: Format, cluster: &ClusterStatus) -> Result<()> {
    output::emit(out, cluster, || {
        let mut text = instance_table(std::slice::from_ref(cluster), SystemTime::now(), out == Format::Wide);
        if out == Format::Wide {
            text.push_str(&racks(cluster));
        }
        text.push_str(&summary(cluster));
        text
    })
}

/// A big cluster: a table of its pools (desired, instances, running, pending, leaving,
/// unknown), then the instances of the page that do not run (at most [`SUMMARY_ROWS`]), its
/// HDFS and YARN summary, and how to see every instance.
pub fn summarised(c: &ClusterStatus, now: SystemTime) -> String {
    let rows: Vec<Vec<String>> = c
        .pools
        .iter()
        .map(|p| {
            vec![
                format!("{}/{}", c.tenant, c.name),
                p.pool.to_string(),
                p.desired.to_string(),
                p.instances.to_string(),
                p.running.to_string(),
                p.pending.to_string(),
                p.leaving.to_string(),
                p.unknown.to_string(),
            ]
        })
        .collect();
    let mut text = output::table(&["CLUSTER", "POOL", "DESIRED", "INSTANCES", "RUNNING", "PENDING", "LEAVING", "UNKNOWN"], rows);
    let total: u32 = c.pools.iter().map(|p| p.instances).sum();
    let not_running: Vec<InstanceStatus> =
        c.instances.iter().filter(|i| i.observed.as_ref().is_none_or(|o| o.state != ContainerState::Running)).cloned().collect();
    if !not_running.is_empty() {
        let shown = ClusterStatus { instances: not_running.iter().take(SUMMARY_ROWS).cloned().collect(), ..c.clone() };
        text.push_str("
NOT RUNNING");
        if c.instances_next.is_some() {
            text.push_str(&format!(" (among the first {} instances)", c.instances.len()));
        }
        text.push('\n');
        text.push_str(&instance_table(std::slice::from_ref(&shown), now, false));
        if not_running.len() > SUMMARY_ROWS {
            text.push_str(&format!("... and {} more\n", not_running.len() - SUMMARY_ROWS));
        }
    }
    text.push_str(&summary(c));
    text.push_str(&format!("\n{total} instances; `herd status {}/{} --all` lists every one\n", c.tenant, c.name));
    text
}

/// The cluster's HDFS and YARN summary lines and its conditions, as its masters report them.
pub fn summary(c: &ClusterStatus) -> String {
    let mut out = String::new();
    if let Some(h) = &c.hdfs {
        out.push_str(&format!(
            "\nHDFS: {} live, {} dead, {} decommissioning DataNodes; {} of {} used; {} blocks, {} under-replicated, {} missing{}\n",
            h.live_datanodes,
            h.dead_datanodes,
            h.decommissioning_datanodes,
            bytes(h.capacity_used),
            bytes(h.capacity_total),
            h.blocks_total,
            h.under_replicated_blocks,
            h.missing_blocks,
            if h.safe_mode { "; SAFE MODE" } else { "" },
        ));
    }
    if let Some(y) = &c.yarn {
        out.push_str(&format!(
            "{}YARN: {} active NodeManagers ({} lost, {} unhealthy, {} decommissioning); {} MB, {} vcores; {} apps running\n",
            if c.hdfs.is_some() { "" } else { "\n" },
            y.active_nodemanagers,
            y.lost_nodemanagers,
            y.unhealthy_nodemanagers,
            y.decommissioning_nodemanagers,
            y.total_mb,
            y.total_vcores,
            y.apps_running,
        ));
    }
    if !c.conditions.is_empty() {
        out.push_str("\nCONDITIONS\n");
        for cond in &c.conditions {
            out.push_str(&format!("  {}: {}\n", cond.kind, cond.message));
        }
    }
    out
}

fn bytes(n: u64) -> String {
    output::memory(herd_api::quantity::Memory(n))
}

/// How the instance's master sees it: a DataNode's HDFS admin state (or `dead`), a
/// NodeManager's YARN state, a master's `up` or why it cannot be read; then its config
/// rollout phase.
pub fn hadoop(i: &InstanceStatus) -> String {
    let Some(h) = &i.hadoop else { return "-".into() };
    let mut parts = Vec::new();
    if let Some(state) = &h.hdfs_state {
        match (h.live, h.last_contact_s) {
            (Some(false), _) => parts.push(format!("{state} (dead)")),
            _ => parts.push(state.clone()),
        }
    }
    if let Some(state) = &h.yarn_state {
        match h.containers {
            Some(n) if n > 0 => parts.push(format!("{state} ({n} containers)")),
            _ => parts.push(state.clone()),
        }
    }
    if let Some(m) = &h.master {
        parts.push(if m == "up" { m.clone() } else { "unreadable".into() });
    }
    if let Some(r) = &h.rollout {
        parts.push(format!("config {r}"));
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

/// Where a cluster's DataNodes and NodeManagers are, per rack: one line each, e.g.
/// `acme/prod racks: r1: 2 datanode, 1 nodemanager; r2: 2 datanode` (HDFS keeps a block's
/// replicas on two racks or more when DataNodes span them).
pub fn racks(c: &ClusterStatus) -> String {
    let mut per: std::collections::BTreeMap<&str, std::collections::BTreeMap<String, usize>> = Default::default();
    for i in c.instances.iter().filter(|i| i.host.is_some()) {
        *per.entry(i.rack.as_deref().unwrap_or("(no rack)")).or_default().entry(i.pool.to_string()).or_default() += 1;
    }
    if per.is_empty() {
        return String::new();
    }
    let racks: Vec<String> = per
        .iter()
        .map(|(rack, pools)| format!("{rack}: {}", pools.iter().map(|(p, n)| format!("{n} {p}")).collect::<Vec<_>>().join(", ")))
        .collect();
    format!("\n{}/{} racks: {}\n", c.tenant, c.name, racks.join("; "))
}

fn instance_table(clusters: &[ClusterStatus], now: SystemTime, wide: bool) -> String {
    let rows = clusters.iter().flat_map(|c| {
        c.instances.iter().map(move |i| {
            let mut row = vec![
                format!("{}/{}", c.tenant, c.name),
                i.instance.name.clone(),
                i.pool.to_string(),
                i.host.clone().unwrap_or_else(|| "-".into()),
                i.observed.as_ref().and_then(|o| o.ip).map_or_else(|| "-".into(), |ip| ip.to_string()),
                i.cpu.to_string(),
                output::memory(i.memory),
                "running".into(),
                observed(i).into(),
                hadoop(i),
                detail(i, now),
            ];
            if wide {
                row.insert(4, i.rack.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
    });
    let mut headers = vec!["CLUSTER", "INSTANCE", "POOL", "HOST", "IP", "CPU", "MEMORY", "DESIRED", "OBSERVED", "HADOOP", "DETAIL"];
    if wide {
        headers.insert(4, "RACK");
    }
    output::table(&headers, rows)
}

/// The state the instance's host last reported: `pending` while not placed, `-` while its
/// agent has not reported it yet.
fn observed(i: &InstanceStatus) -> &'static str {
    match (&i.observed, &i.host) {
        (Some(o), _) => o.state.as_str(),
        (None, None) => "pending",
        (None, Some(_)) => "-",
    }
}

/// What a row says beyond the state: why it is pending, the agent's error, or how long it
/// has been up.
pub fn detail(i: &InstanceStatus, now: SystemTime) -> String {
    if let Some(ms) = i.host_lost_ms_ago {
        let lost = format!("host lost {} ago", short_duration(std::time::Duration::from_millis(ms)));
        return match &i.leaving {
            Some(l) => format!("{lost}; {}", leaving(l)),
            None => lost,
        };
    }
    if let Some(l) = &i.leaving {
        return leaving(l);
    }
    if let Some(reason) = &i.pending {
        return reason.clone();
    }
    let Some(o) = &i.observed else {
        return if i.host.is_some() {
            "waiting for the host's agent to report it".into()
        } else {
            String::new()
        };
    };
    if let Some(e) = &o.error {
        return e.clone();
    }
    match o.state {
        ContainerState::Running => o
            .started_at
            .as_deref()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .and_then(|started| now.duration_since(started).ok())
            .map(|up| format!("up {}", short_duration(up)))
            .unwrap_or_default(),
        ContainerState::Exited | ContainerState::Dead => o
            .exit_code
            .map(|c| format!("exit code {c}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A leaving instance's detail: its phase, blocks still to move or containers still
/// running, and what it waits for, e.g.
/// `decommissioning, 120 blocks to move: waiting for the NameNode to copy its blocks elsewhere`.
pub fn leaving(l: &LeavingStatus) -> String {
    let mut text = l.phase.to_string();
    if let Some(b) = l.blocks_to_move {
        text.push_str(&format!(", {b} blocks to move"));
    }
    if let Some(c) = l.running_containers {
        text.push_str(&format!(", {c} containers running"));
    }
    if let Some(w) = &l.waiting_for {
        text.push_str(&format!(": waiting for {w}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{at, cluster, instance};

    #[test]
    fn a_big_cluster_is_summarised_by_pool_with_what_does_not_run() {
        let mut instances: Vec<InstanceStatus> = (0..150).map(|n| instance(n, Some("h1"), Some(ContainerState::Running))).collect();
        instances[7] = instance(7, None, None);
        instances[9] = instance(9, Some("h2"), Some(ContainerState::Exited));
        let mut c = cluster(instances);
        c.pools = vec![herd_api::wire::PoolSummary {
            pool: herd_api::Role::Datanode,
            desired: 150,
            instances: 150,
            running: 148,
            pending: 1,
            leaving: 0,
            unknown: 0,
        }];
        let text = summarised(&c, at("2026-11-23T10:00:00Z"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CLUSTER") && lines[0].contains("RUNNING"), "{text}");
        let pool: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(pool, ["acme/prod", "datanode", "150", "150", "148", "1", "0", "0"], "{text}");
        // Only the two that do not run are listed, then how to see every one.
        let listed: Vec<&str> = lines.iter().filter(|l| l.starts_with("acme/prod") && l.contains("datanode-")).copied().collect();
        assert_eq!(listed.len(), 2, "{text}");
        assert!(listed[0].contains("datanode-7") && listed[1].contains("datanode-9"), "{text}");
        assert!(text.trim_end().ends_with("150 instances; `herd status acme/prod --all` lists every one"), "{text}");
    }

    #[test]
    fn detail_shows_a_leaving_instance_phase_and_progress() {
        let mut i = instance(4, Some("h1"), Some(ContainerState::Running));
        i.leaving = Some(LeavingStatus {
            phase: herd_api::lifecycle::Phase::Decommissioning { since_ms: 1, refreshed_ms: Some(2), forced: false },
            blocks_to_move: Some(120),
            running_containers: None,
            waiting_for: Some("the NameNode to copy its blocks elsewhere".into()),
        });
        assert_eq!(
            detail(&i, at("2026-01-01T00:05:10Z")),
            "decommissioning, 120 blocks to move: waiting for the NameNode to copy its blocks elsewhere"
        );
    }

    #[test]
    fn detail_shows_uptime() {
        let i = instance(0, Some("h1"), Some(ContainerState::Running));
        assert_eq!(detail(&i, at("2026-01-01T00:05:10Z")), "up 5m");
        assert_eq!(detail(&i, at("2026-01-01T00:00:07Z")), "up 6s");
        assert_eq!(detail(&i, at("2026-01-03T01:00:00Z")), "up 2d");
    }

    #[test]
    fn detail_shows_nothing_for_odd_start_times() {
        let mut i = instance(0, Some("h1"), Some(ContainerState::Running));
        let now = at("2026-01-01T00:05:10Z");
        for odd in [
            None,
            Some("0001-01-01T00:00:00Z"),
            Some("yesterday"),
            Some("2027-01-01T00:00:00Z"),
        ] {
            if let Some(o) = &mut i.observed {
                o.started_at = odd.map(Into::into);
            }
            assert_eq!(detail(&i, now), "", "{odd:?}");
        }
    }

    #[test]
    fn detail_prefers_pending_reason_then_error() {
        let now = at("2026-01-01T00:05:10Z");
        let mut i = instance(0, None, None);
        assert_eq!(detail(&i, now), "");
        i.pending = Some("no ready host has 500m CPU free".into());
        assert_eq!(detail(&i, now), "no ready host has 500m CPU free");

        let mut i = instance(0, Some("h1"), None);
        assert_eq!(detail(&i, now), "waiting for the host's agent to report it");
        i = instance(0, Some("h1"), Some(ContainerState::Exited));
        if let Some(o) = &mut i.observed {
            o.exit_code = Some(137);
        }
        assert_eq!(detail(&i, now), "exit code 137");
        if let Some(o) = &mut i.observed {
            o.error = Some("image herd/datanode:testbed not found; build it".into());
        }
        assert_eq!(
            detail(&i, now),
            "image herd/datanode:testbed not found; build it"
        );
    }

    #[test]
    fn table_shows_desired_next_to_observed() {
        let mut pending = instance(2, None, None);
        pending.pending = Some("no ready host".into());
        let c = cluster(vec![
            instance(0, Some("h1"), Some(ContainerState::Running)),
            instance(1, Some("h2"), None),
            pending,
        ]);
        let want = "\
CLUSTER    INSTANCE    POOL      HOST  IP         CPU   MEMORY  DESIRED  OBSERVED  HADOOP      DETAIL
acme/prod  datanode-0  datanode  h1    10.88.0.2  500m  512Mi   running  running   In Service  up 5m
acme/prod  datanode-1  datanode  h2    -          500m  512Mi   running  -         -           waiting for the host's agent to report it
acme/prod  datanode-2  datanode  -     -          500m  512Mi   running  pending   -           no ready host
";
        let mut c = c;
        c.instances[0].hadoop = Some(herd_api::wire::InstanceHadoop { hdfs_state: Some("In Service".into()), live: Some(true), ..Default::default() });
        assert_eq!(instance_table(std::slice::from_ref(&c), at("2026-01-01T00:05:10Z"), false), want);
        // Wide: each instance's rack, and the cluster's pools per rack.
        c.instances[0].rack = Some("r1".into());
        c.instances[1].rack = Some("r2".into());
        let wide = instance_table(std::slice::from_ref(&c), at("2026-01-01T00:05:10Z"), true);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(lines[0].starts_with("CLUSTER    INSTANCE    POOL      HOST  RACK  IP"), "{wide}");
        assert!(lines[1].starts_with("acme/prod  datanode-0  datanode  h1    r1    10.88.0.2"), "{wide}");
        assert!(lines[3].starts_with("acme/prod  datanode-2  datanode  -     -     -"), "{wide}");
        assert_eq!(racks(&c), "\nacme/prod racks: r1: 1 datanode; r2: 1 datanode\n");
    }

    #[test]
    fn summary_shows_hdfs_yarn_and_conditions() {
        let mut c = cluster(vec![]);
        assert_eq!(summary(&c), "");
        c.hdfs = Some(herd_api::wire::HdfsSummary {
            live_datanodes: 3,
            dead_datanodes: 1,
            capacity_used: 1 << 30,
            capacity_total: 10 << 30,
            blocks_total: 100,
            under_replicated_blocks: 7,
            ..Default::default()
        });
        c.yarn = Some(herd_api::wire::YarnSummary { active_nodemanagers: 2, total_mb: 1536, total_vcores: 2, ..Default::default() });
        c.conditions.push(herd_api::wire::Condition { kind: "HdfsDegraded".into(), message: "1 DataNode is dead".into() });
        let want = "
HDFS: 3 live, 1 dead, 0 decommissioning DataNodes; 1Gi of 10Gi used; 100 blocks, 7 under-replicated, 0 missing
YARN: 2 active NodeManagers (0 lost, 0 unhealthy, 0 decommissioning); 1536 MB, 2 vcores; 0 apps running

CONDITIONS
  HdfsDegraded: 1 DataNode is dead
";
        assert_eq!(summary(&c), want);
    }
}
