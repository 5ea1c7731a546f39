//! `herd hosts`: capacity, allocation and liveness of every registered host.

use std::time::Duration;

use anyhow::Result;
use herd_api::wire::{HostState, HostStatus};

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

fn host_table(hosts: &[HostStatus]) -> String {
    // The table shows each condition's name; its full text follows the table.
    let details: String = hosts
        .iter()
        .flat_map(|h| h.conditions.iter().map(move |c| format!("{}: {c}\n", h.info.id)))
        .collect();
    let rows = hosts.iter().map(|h| {
        vec![
            h.info.id.clone(),
            match h.state {
                HostState::Ready => "ready".into(),
                HostState::Lost => "lost".into(),
            },
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
}
