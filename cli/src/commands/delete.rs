//! `herd delete`: remove a cluster from the desired state, after confirmation. Data folders
//! stay on their hosts (and are listed) unless `--purge-data`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_api::wire::{ClusterStatus, HostStatus};

use super::wait;
use crate::args::ClusterRef;
use crate::client::Client;
use crate::output::{self, Format};

/// `herd delete`'s flags.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Skip the confirmation.
    pub yes: bool,
    /// Remove the data folders too.
    pub purge_data: bool,
    /// `--wait` with its limit.
    pub wait: Option<Duration>,
}

pub async fn run(client: &Client, out: Format, cluster: &ClusterRef, opts: Options) -> Result<()> {
    let status = client
        .cluster_all(cluster)
        .await
        .with_context(|| format!("reading {cluster}"))?
        .with_context(|| format!("cluster {cluster} not found; `herd status` lists every cluster"))?;
    let hosts = client.hosts().await.unwrap_or_default();
    let folders = data_folders(&status, &hosts);
    if !opts.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("refusing to delete {cluster} without confirmation: stdin is not a terminal; pass --yes to delete it");
        }
        let what = if opts.purge_data {
            format!("and remove its data folders ({} on {} hosts) for good", folders.len(), host_count(&folders))
        } else {
            "(its data folders are kept)".to_string()
        };
        eprint!("delete cluster {cluster} with {} instances {what}? type the cluster name to confirm: ", status.instances.len());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer).context("reading the confirmation")?;
        if answer.trim() != status.name && answer.trim() != cluster.to_string() {
            bail!("not confirmed; {cluster} is left as it is");
        }
    }
    client
        // NB: what was shown (and confirmed) is what is deleted: a cluster changed since is refused.
        .delete(cluster, opts.purge_data, Some(status.generation))
        .await
        .with_context(|| format!("deleting {cluster}"))?;
    if let Some(limit) = opts.wait {
        wait::until_gone(client, cluster, limit).await?;
    }
    output::note(out, &format!("cluster {cluster} deleted"))?;
    if out == Format::Table && !folders.is_empty() {
        if opts.purge_data {
            eprintln!("each host's agent removes the data folders once the containers are gone");
        } else {
            eprintln!("data folders kept (remove them by hand, or delete with --purge-data next time):");
            for (host, dir) in &folders {
                eprintln!("  {host}: {dir}");
            }
        }
    }
    Ok(())
}

/// Where each data-keeping instance's folders are: (host, folder), one per data disk.
fn data_folders(status: &ClusterStatus, hosts: &[HostStatus]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in status.instances.iter().filter(|i| i.pool.has_data()) {
        let Some(host) = &i.host else { continue };
        let disks = hosts.iter().find(|h| &h.info.id == host).map(|h| h.info.data_disks.clone()).unwrap_or_default();
        for disk in disks {
            let dir = format!("{}/herd/{}/{}/{}", disk.trim_end_matches('/'), status.tenant, status.name, i.instance.name);
            out.push((host.clone(), dir));
        }
    }
    out
}

fn host_count(folders: &[(String, String)]) -> usize {
    folders.iter().map(|(h, _)| h.as_str()).collect::<std::collections::BTreeSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::fixtures::{cluster, instance};

    #[test]
    fn kept_folders_are_listed_per_disk() {
        let status = cluster(vec![instance(0, Some("h1"), None), instance(1, None, None)]);
        let host: HostStatus = serde_json::from_value(serde_json::json!({
            "info": {"id": "h1", "cpu": "4", "memory": "8Gi", "data_disks": ["/data/1", "/data/2/"]},
            "state": "ready", "allocated_cpu": "0", "allocated_memory": "0", "instances": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            data_folders(&status, &[host]),
            [
                ("h1".to_string(), "/data/1/herd/acme/prod/datanode-0".to_string()),
                ("h1".to_string(), "/data/2/herd/acme/prod/datanode-0".to_string())
            ]
        );
    }
}
