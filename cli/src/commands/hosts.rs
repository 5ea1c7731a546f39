//! `herd hosts`: capacity, allocation and liveness of every registered host, and the
//! operations on one host (cordon, uncordon, drain, delete).

use std::time::Duration;

use anyhow::{Result, bail};
use herd_api::wire::{HostState, HostStatus};
use tokio::time::{Instant, sleep};

use crate::client::Client;
use crate::output::{self, Format, short_duration};

pub async fn run(client: &Client, out: Format) -> Result<()> {
    let hosts = client.hosts().await?;
    if hosts.is_empty() && out == Format::Table {
        eprintln!("no hosts yet; start herd-agent on a host with --orchestrator pointing here");
        return Ok(());
    }
    output::emit(out, &hosts, || host_table(&hosts))
}

/// `herd hosts get H`.
pub async fn get(client: &Client, out: Format, id: &str) -> Result<()> {
    let host = client.host(id).await?;
    output::emit(out, &host, || host_table(std::slice::from_ref(&host)))
}

/// `herd hosts cordon|uncordon H`.
pub async fn cordon(client: &Client, out: Format, id: &str, cordoned: bool) -> Result<()> {
    let host = client.host_action(id, if cordoned { "cordon" } else { "uncordon" }).await?;
    if out == Format::Table {
        eprintln!(
            "{id} {}",
            if cordoned { "cordoned: nothing new is placed there; `herd hosts drain` moves what runs there" } else { "uncordoned" }
        );
    }
    output::emit(out, &host, || host_table(std::slice::from_ref(&host)))
}

/// `herd hosts drain H [--wait]`: progress on stderr until nothing is left to move.
pub async fn drain(client: &Client, out: Format, id: &str, wait: Option<Duration>) -> Result<()> {
    let mut host = client.host_action(id, "drain").await?;
    if let Some(limit) = wait {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while !host.drain.as_ref().is_some_and(|d| d.done) {
            let line = drain_line(&host);
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{id} is not drained after {}: {}\nnext: `herd hosts get {id}` shows what each waits for; `herd status` the clusters",
                    humantime::format_duration(limit),
                    drain_line(&host)
                );
            }
            sleep(Duration::from_secs(1)).await;
            host = client.host(id).await?;
        }
        if out == Format::Table {
            eprintln!("{id} drained{}", stays_note(&host));
        }
    } else if out == Format::Table {
        eprintln!("{id} draining: `herd hosts get {id}` shows progress, `herd hosts drain {id} --wait` waits for it");
    }
    output::emit(out, &host, || host_table(std::slice::from_ref(&host)))
}

/// `herd hosts delete H`.
pub async fn delete(client: &Client, out: Format, id: &str) -> Result<()> {
    client.delete_host(id).await?;
    if out == Format::Table {
        eprintln!("{id} deleted: its subnet lease is free and its agent tokens are revoked");
    }
    output::emit(out, &serde_json::json!({"deleted": id}), String::new)
}

/// E.g. `draining h3: 2 left (t/c/datanode-1: decommissioning, ...)`.
fn drain_line(h: &HostStatus) -> String {
    let Some(d) = &h.drain else { return format!("{}: not draining", h.info.id) };
    let mut line = format!("draining {}: {} left", h.info.id, d.remaining.len());
    if !d.remaining.is_empty() {
        line.push_str(&format!(" ({})", d.remaining.join(", ")));
    }
    line.push_str(&stays_note(h));
    line
}

fn stays_note(h: &HostStatus) -> String {
    match &h.drain {
        Some(d) if !d.stays.is_empty() => format!("; staying: {}", d.stays.join("; ")),
        _ => String::new(),
    }
}

fn host_table(hosts: &[HostStatus]) -> String {
    // The table shows each condition's name; its full text follows the table.
    let details: String = hosts
        .iter()
        .flat_map(|h| h.conditions.iter().map(move |c| format!("{}: {c}\n", h.info.id)))
        .chain(hosts.iter().filter(|h| h.drain.is_some()).map(|h| format!("{}\n", drain_line(h))))
        .collect();
    let rows = hosts.iter().map(|h| {
        vec![
            h.info.id.clone(),
            format!(
                "{}{}",
                match h.state {
                    HostState::Ready => "ready",
                    HostState::Lost => "lost",
                },
                match (&h.drain, h.cordoned) {
                    (Some(d), _) if d.done => ",drained",
                    (Some(_), _) => ",draining",
                    (None, true) => ",cordoned",
                    (None, false) => "",
                }
            ),
            h.info.rack.clone().unwrap_or_else(|| "-".into()),
            format!("{}/{}", h.allocated_cpu, h.info.cpu),
            format!(
                "{}/{}",
                output::memory(h.allocated_memory),
                output::memory(h.info.memory)
            ),
            h.instances.to_string(),
            h.last_heartbeat_ms_ago
                .map(|ms| format!("{} ago", short_duration(Duration::from_millis(ms))))
                .unwrap_or_else(|| "-".into()),
            if h.conditions.is_empty() {
                "-".into()
            } else {
                let names: Vec<&str> = h.conditions.iter().map(|c| c.split(':').next().unwrap_or(c)).collect();
                names.join(",")
            },
        ]
    });
    output::table(
        &[
            "ID",
            "STATE",
            "RACK",
            "CPU",
            "MEMORY",
            "INSTANCES",
            "LAST SEEN",
            "CONDITIONS",
        ],
        rows,
    ) + &details
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::quantity::{Cpu, Memory};
    use herd_api::wire::HostInfo;

    #[test]
    fn host_rows_show_allocated_out_of_total() {
        let host = |id: &str, rack: Option<&str>, state, ago| HostStatus {
            info: HostInfo {
                id: id.into(),
                cpu: Cpu(4000),
                memory: Memory(8 << 30),
                rack: rack.map(Into::into),
                data_disks: vec![],
                data_disk_capacity: vec![],
                labels: Default::default(),
                agent_version: "0.1.0".into(),
                address: None,
            },
            state,
            last_heartbeat_ms_ago: ago,
            allocated_cpu: Cpu(1500),
            allocated_memory: Memory(1 << 30),
            instances: 3,
            conditions: if id == "host-b" { vec!["log-disk-full: no space for logs of 1 instance(s)".into()] } else { vec![] },
            cordoned: false,
            drain: None,
        };
        let got = host_table(&[
            host("host-a", Some("r1"), HostState::Ready, Some(1200)),
            host("host-b", None, HostState::Lost, None),
        ]);
        let want = "\
ID      STATE  RACK  CPU      MEMORY   INSTANCES  LAST SEEN  CONDITIONS
host-a  ready  r1    1500m/4  1Gi/8Gi  3          1s ago     -
host-b  lost   -     1500m/4  1Gi/8Gi  3          -          log-disk-full
host-b: log-disk-full: no space for logs of 1 instance(s)
";
        assert_eq!(got, want);
    }

    #[test]
    fn cordoned_and_draining_hosts_say_so_with_the_drain_progress() {
        let mut h = serde_json::from_value::<HostStatus>(serde_json::json!({
            "info": {"id": "h3", "cpu": "4", "memory": "8Gi"}, "state": "ready", "last_heartbeat_ms_ago": 500,
            "allocated_cpu": "250m", "allocated_memory": "512Mi", "instances": 2, "cordoned": true,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(host_table(std::slice::from_ref(&h)).contains("ready,cordoned"));
        h.drain = Some(herd_api::wire::DrainStatus {
            since_ms: 1,
            remaining: vec!["acme/prod/datanode-1: decommissioning".into()],
            stays: vec!["acme/prod/namenode-0: a NameNode's metadata lives on this host".into()],
            done: false,
        });
        let table = host_table(std::slice::from_ref(&h));
        assert!(table.contains("ready,draining"), "{table}");
        assert!(
            table.ends_with("draining h3: 1 left (acme/prod/datanode-1: decommissioning); staying: acme/prod/namenode-0: a NameNode's metadata lives on this host\n"),
            "{table}"
        );
    }
}
