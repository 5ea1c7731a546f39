//! `herd status`: instances, desired next to observed state.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use herd_api::wire::{ClusterStatus, ContainerState, InstanceStatus};

use crate::args::ClusterRef;
use crate::client::Client;
use crate::output::{self, Format, short_duration};

pub async fn run(client: &Client, out: Format, cluster: Option<&ClusterRef>) -> Result<()> {
    match cluster {
        Some(c) => {
            let status = client.cluster(c).await?.ok_or_else(|| {
                anyhow!("cluster {c} not found; `herd status` lists every cluster")
            })?;
            print(out, &status)
        }
        None => {
            let clusters = client.clusters().await?;
            if clusters.is_empty() && out == Format::Table {
                eprintln!("no clusters yet; create one with `herd apply -f FILE`");
                return Ok(());
            }
            output::emit(out, &clusters, || {
                instance_table(&clusters, SystemTime::now())
            })
        }
    }
}

/// Prints one cluster: its instances as a table, or the whole status as JSON or YAML.
pub fn print(out: Format, cluster: &ClusterStatus) -> Result<()> {
    output::emit(out, cluster, || {
        instance_table(std::slice::from_ref(cluster), SystemTime::now())
    })
}

fn instance_table(clusters: &[ClusterStatus], now: SystemTime) -> String {
    let rows = clusters.iter().flat_map(|c| {
        c.instances.iter().map(move |i| {
            vec![
                format!("{}/{}", c.tenant, c.name),
                i.instance.name.clone(),
                i.pool.to_string(),
                i.host.clone().unwrap_or_else(|| "-".into()),
                i.observed.as_ref().and_then(|o| o.ip).map_or_else(|| "-".into(), |ip| ip.to_string()),
                i.cpu.to_string(),
                output::memory(i.memory),
                "running".into(),
                observed(i).into(),
                detail(i, now),
            ]
        })
    });
    output::table(
        &[
            "CLUSTER", "INSTANCE", "POOL", "HOST", "IP", "CPU", "MEMORY", "DESIRED", "OBSERVED", "DETAIL",
        ],
        rows,
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{at, cluster, instance};

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
CLUSTER    INSTANCE    POOL      HOST  IP         CPU   MEMORY  DESIRED  OBSERVED  DETAIL
acme/prod  datanode-0  datanode  h1    10.88.0.2  500m  512Mi   running  running   up 5m
acme/prod  datanode-1  datanode  h2    -          500m  512Mi   running  -         waiting for the host's agent to report it
acme/prod  datanode-2  datanode  -     -          500m  512Mi   running  pending   no ready host
";
        assert_eq!(instance_table(&[c], at("2026-01-01T00:05:10Z")), want);
    }
}
