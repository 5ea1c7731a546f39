//! `--wait`: poll the orchestrator until every instance of a cluster runs on its host (or
//! until a deleted cluster is gone), with progress on stderr. The change itself is already
//! stored: giving up only stops watching it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_api::Role;
use herd_api::wire::{ClusterStatus, ContainerState, InstanceHadoop, InstanceStatus};
use tokio::time::{Instant, sleep};

use crate::args::ClusterRef;
use crate::client::{Client, Unreachable};

/// How often the orchestrator is asked.
const POLL: Duration = Duration::from_secs(1);
/// An unchanged progress line is repeated this often, to show herd is still watching.
const REPEAT: Duration = Duration::from_secs(10);
/// The most instances a timeout report lists one by one.
const REPORT_MAX: usize = 20;

/// Waits until every instance of `cluster` runs, starting from `status` (what the change
/// returned). Fails after `limit` with what is not running and why.
pub async fn until_running(
    client: &Client,
    cluster: &ClusterRef,
    mut status: ClusterStatus,
    limit: Duration,
) -> Result<ClusterStatus> {
    let start = Instant::now();
    let deadline = start + limit;
    let mut progress = Progress::default();
    // Set while the orchestrator cannot be reached; `status` is then the last one read.
    let mut unreachable: Option<anyhow::Error> = None;
    loop {
        let total = status.instances.len();
        let hadoop = hadoop_waiting(&status);
        let leaving = status.instances.iter().filter(|i| i.leaving.is_some()).count();
        if status.running() == total && hadoop.is_none() && leaving == 0 {
            let took = humantime::format_duration(Duration::from_secs(start.elapsed().as_secs()));
            let joined = if has_masters(&status) { ", every worker joined HDFS/YARN" } else { "" };
            eprintln!("{cluster}: {total}/{total} running{joined} after {took}");
            return Ok(status);
        }
        if unreachable.is_none() {
            match hadoop {
                Some(line) if status.running() == total && leaving == 0 => progress.say(format!("waiting for {cluster}: {line}")),
                _ => progress.say(progress_line(cluster, &status)),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return match unreachable {
                Some(e) => Err(e).with_context(|| format!("waiting for {cluster}")),
                None => bail!(not_running(cluster, &status, limit)),
            };
        }
        sleep(POLL.min(deadline - now)).await;
        match client.cluster_all(cluster).await {
            Ok(Some(s)) => (status, unreachable) = (s, None),
            Ok(None) => bail!("cluster {cluster} was deleted while waiting for it to run"),
            // The orchestrator may be restarting; keep trying until the deadline.
            Err(e) if e.is::<Unreachable>() => {
                progress.say(format!("waiting for {cluster}: {e}; retrying"));
                unreachable = Some(e);
            }
            Err(e) => return Err(e).with_context(|| format!("waiting for {cluster}")),
        }
    }
}

/// Whether the cluster has a NameNode or ResourceManager herd runs (then `--wait` also waits
/// for the workers to join them).
fn has_masters(c: &ClusterStatus) -> bool {
    c.instances.iter().any(|i| matches!(i.pool, Role::Namenode | Role::Resourcemanager))
}

/// Why the cluster is not yet Hadoop dialtone, as HDFS and YARN report it: DataNodes not yet
/// live and `In Service`, NodeManagers not yet `RUNNING`; `None` once every worker joined
/// (or when the cluster has no herd-run masters to join).
fn hadoop_waiting(c: &ClusterStatus) -> Option<String> {
    let count = |role: Role, ready: &dyn Fn(&InstanceStatus) -> bool| {
        // NB: leaving instances are on their way out, not joining.
        let of_role: Vec<&InstanceStatus> = c.instances.iter().filter(|i| i.pool == role && i.leaving.is_none()).collect();
        (of_role.iter().filter(|i| ready(i)).count(), of_role.len())
    };
    let with_pool = |role: Role| c.instances.iter().any(|i| i.pool == role);
    let mut parts = Vec::new();
    if with_pool(Role::Namenode) {
        let (ok, n) = count(Role::Datanode, &|i| {
            i.hadoop.as_ref().is_some_and(InstanceHadoop::in_hdfs)
        });
        if ok < n {
            parts.push(format!("{ok}/{n} DataNodes live in HDFS"));
        }
    }
    if with_pool(Role::Resourcemanager) {
        let (ok, n) = count(Role::Nodemanager, &|i| i.hadoop.as_ref().is_some_and(InstanceHadoop::in_yarn));
        if ok < n {
            parts.push(format!("{ok}/{n} NodeManagers RUNNING in YARN"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Waits until the orchestrator no longer lists `cluster`.
pub async fn until_gone(client: &Client, cluster: &ClusterRef, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut progress = Progress::default();
    while client.cluster(cluster).await?.is_some() {
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "cluster {cluster} is still listed after {}\n  see `herd status {cluster}`",
                humantime::format_duration(limit)
            );
        }
        progress.say(format!("waiting for {cluster} to be deleted"));
        sleep(POLL.min(deadline - now)).await;
    }
    Ok(())
}

/// Prints progress lines on stderr: a line when it differs from the last, or every [`REPEAT`].
#[derive(Default)]
struct Progress {
    last: Option<(String, Instant)>,
}

impl Progress {
    fn say(&mut self, line: String) {
        let fresh = match &self.last {
            Some((last, at)) => *last != line || at.elapsed() >= REPEAT,
            None => true,
        };
        if fresh {
            eprintln!("{line}");
            self.last = Some((line, Instant::now()));
        }
    }
}

/// Where an instance is on its way to running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Placed; its container is being created or started, or not reported yet.
    Starting,
    /// Not placed on any host.
    Pending,
    /// Its agent reports an error, or the container stopped or keeps restarting.
    Failing,
    /// Its host is lost: nobody knows whether it runs.
    Unknown,
}

fn phase(i: &InstanceStatus) -> Phase {
    let Some(o) = &i.observed else {
        return if i.host.is_some() {
            Phase::Starting
        } else {
            Phase::Pending
        };
    };
    match o.state {
        ContainerState::Unknown => Phase::Unknown,
        _ if o.error.is_some() => Phase::Failing,
        ContainerState::Running => Phase::Running,
        ContainerState::Created => Phase::Starting,
        ContainerState::Restarting
        | ContainerState::Paused
        | ContainerState::Exited
        | ContainerState::Dead
        | ContainerState::Failed => Phase::Failing,
    }
}

/// E.g. `waiting for acme/prod: 3/5 running, 1 pending (no ready host has 2 CPU free)`.
fn progress_line(cluster: &ClusterRef, c: &ClusterStatus) -> String {
    let in_phase = |p: Phase| c.instances.iter().filter(move |i| phase(i) == p);
    let mut line = format!(
        "waiting for {cluster}: {}/{} running",
        c.running(),
        c.instances.len()
    );
    let leaving: Vec<&InstanceStatus> = c.instances.iter().filter(|i| i.leaving.is_some()).collect();
    if let Some(first) = leaving.first() {
        line.push_str(&format!(
            ", {} leaving ({}: {})",
            leaving.len(),
            first.instance.name,
            first.leaving.as_ref().map(super::status::leaving).unwrap_or_default()
        ));
    }
    let starting = in_phase(Phase::Starting).count();
    if starting > 0 {
        line.push_str(&format!(", {starting} starting"));
    }
    let pending: Vec<_> = in_phase(Phase::Pending).collect();
    if let Some(first) = pending.first() {
        line.push_str(&format!(", {} pending", pending.len()));
        if let Some(reason) = &first.pending {
            line.push_str(&format!(" ({reason})"));
        }
    }
    let unknown: Vec<_> = in_phase(Phase::Unknown).collect();
    if let Some(first) = unknown.first() {
        line.push_str(&format!(", {} unknown ({}: {})", unknown.len(), first.instance.name, why(first)));
    }
    let failing: Vec<_> = in_phase(Phase::Failing).collect();
    if let Some(first) = failing.first() {
        line.push_str(&format!(
            ", {} failing ({}: {})",
            failing.len(),
            first.instance.name,
            why(first)
        ));
    }
    line
}

/// Why one instance is not running, e.g. `pending: no ready host ...` or
/// `exited on host-a, exit code 1: <the agent's error>`.
fn why(i: &InstanceStatus) -> String {
    let (Some(host), Some(o)) = (&i.host, &i.observed) else {
        return match &i.host {
            None => format!(
                "pending: {}",
                i.pending.as_deref().unwrap_or("not placed on a host yet")
            ),
            Some(host) => format!("placed on {host}; its agent has not reported it yet"),
        };
    };
    let mut text = format!("{} on {host}", o.state.as_str());
    if let Some(ms) = i.host_lost_ms_ago {
        text.push_str(&format!(" (host lost {} ago)", crate::output::short_duration(Duration::from_millis(ms))));
    }
    if let (Some(code), ContainerState::Exited | ContainerState::Dead) = (o.exit_code, o.state) {
        text.push_str(&format!(", exit code {code}"));
    }
    if let Some(error) = &o.error {
        text.push_str(&format!(": {error}"));
    }
    text
}

/// The timeout report: which instances are not running and why, and what to do next.
fn not_running(cluster: &ClusterRef, c: &ClusterStatus, limit: Duration) -> String {
    let stuck: Vec<&InstanceStatus> = c
        .instances
        .iter()
        .filter(|i| phase(i) != Phase::Running)
        .collect();
    let mut text = format!(
        "{cluster} is not running after {}: {} of {} instances are not running",
        humantime::format_duration(limit),
        stuck.len(),
        c.instances.len()
    );
    for i in stuck.iter().take(REPORT_MAX) {
        text.push_str(&format!("\n  {}: {}", i.instance.name, why(i)));
    }
    if stuck.len() > REPORT_MAX {
        text.push_str(&format!("\n  ... and {} more", stuck.len() - REPORT_MAX));
    }
    text.push_str(&format!("\n  the change stays applied and herd keeps converging; see `herd status {cluster}` for every instance \
         and `herd hosts` for free capacity and lost hosts"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{cluster, instance};

    fn acme_prod() -> ClusterRef {
        ClusterRef {
            tenant: "acme".into(),
            name: "prod".into(),
        }
    }

    #[test]
    fn hadoop_waits_for_workers_to_join_their_masters() {
        let mut c = cluster(vec![instance(0, Some("h1"), Some(ContainerState::Running)), instance(1, Some("h1"), Some(ContainerState::Running))]);
        // No herd-run masters: nothing to join.
        assert_eq!(hadoop_waiting(&c), None);
        let mut nn = instance(0, Some("h1"), Some(ContainerState::Running));
        nn.pool = Role::Namenode;
        c.instances.push(nn);
        assert_eq!(hadoop_waiting(&c).as_deref(), Some("0/2 DataNodes live in HDFS"));
        c.instances[0].hadoop = Some(herd_api::wire::InstanceHadoop {
            hdfs_state: Some("In Service".into()),
            live: Some(true),
            ..Default::default()
        });
        c.instances[1].hadoop = Some(herd_api::wire::InstanceHadoop {
            hdfs_state: Some("In Service".into()),
            live: Some(false),
            ..Default::default()
        });
        assert_eq!(hadoop_waiting(&c).as_deref(), Some("1/2 DataNodes live in HDFS"));
        if let Some(h) = &mut c.instances[1].hadoop {
            h.live = Some(true);
        }
        assert_eq!(hadoop_waiting(&c), None);
    }

    fn failing(n: u32) -> InstanceStatus {
        let mut i = instance(n, Some("h1"), Some(ContainerState::Exited));
        if let Some(o) = &mut i.observed {
            o.exit_code = Some(1);
            o.error = Some("image herd/datanode:testbed not found".into());
        }
        i
    }

    fn pending(n: u32) -> InstanceStatus {
        let mut i = instance(n, None, None);
        i.pending = Some("no ready host has 500m CPU and 512Mi free".into());
        i
    }

    #[test]
    fn progress_counts_each_phase_with_the_first_reason() {
        let running = |n| instance(n, Some("h1"), Some(ContainerState::Running));
        let c = cluster(vec![
            running(0),
            running(1),
            running(2),
            pending(3),
            instance(4, Some("h2"), None),
        ]);
        assert_eq!(
            progress_line(&acme_prod(), &c),
            "waiting for acme/prod: 3/5 running, 1 starting, 1 pending (no ready host has 500m CPU and 512Mi free)"
        );
        let c = cluster(vec![running(0), failing(1)]);
        assert_eq!(
            progress_line(&acme_prod(), &c),
            "waiting for acme/prod: 1/2 running, 1 failing (datanode-1: exited on h1, exit code 1: image herd/datanode:testbed not found)"
        );
    }

    #[test]
    fn instances_on_a_lost_host_are_unknown_never_running() {
        let mut lost = instance(1, Some("h2"), Some(ContainerState::Unknown));
        lost.host_lost_ms_ago = Some(12_000);
        let c = cluster(vec![instance(0, Some("h1"), Some(ContainerState::Running)), lost]);
        assert_eq!(c.running(), 1);
        assert_eq!(progress_line(&acme_prod(), &c), "waiting for acme/prod: 1/2 running, 1 unknown (datanode-1: unknown on h2 (host lost 12s ago))");
    }

    #[test]
    fn timeout_report_says_why_and_what_next() {
        let c = cluster(vec![
            instance(0, Some("h1"), Some(ContainerState::Running)),
            pending(1),
            failing(2),
            instance(3, Some("h2"), None),
        ]);
        let text = not_running(&acme_prod(), &c, Duration::from_secs(300));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "acme/prod is not running after 5m: 3 of 4 instances are not running"
        );
        assert_eq!(
            lines[1],
            "  datanode-1: pending: no ready host has 500m CPU and 512Mi free"
        );
        assert_eq!(
            lines[2],
            "  datanode-2: exited on h1, exit code 1: image herd/datanode:testbed not found"
        );
        assert_eq!(
            lines[3],
            "  datanode-3: placed on h2; its agent has not reported it yet"
        );
        assert!(
            lines[4].contains("`herd status acme/prod`") && lines[4].contains("`herd hosts`"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn timeout_report_is_bounded() {
        let c = cluster((0..25).map(pending).collect());
        let text = not_running(&acme_prod(), &c, Duration::from_secs(60));
        assert_eq!(text.lines().count(), 1 + REPORT_MAX + 2, "{text}");
        assert!(text.contains("... and 5 more"), "{text}");
    }
}
