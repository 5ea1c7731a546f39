//! `herd scale`: set pools' replica counts, one request per pool.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{status, wait};
use crate::args::{ClusterRef, PoolReplicas};
use crate::client::Client;
use crate::output::{self, Format};

pub async fn run(
    client: &Client,
    out: Format,
    cluster: &ClusterRef,
    pools: &[PoolReplicas],
    force: bool,
    wait_limit: Option<Duration>,
) -> Result<()> {
    let mut last = None;
    for p in pools {
        let after = client
            .scale(cluster, p.pool, p.replicas, force)
            .await
            .with_context(|| format!("scaling {cluster} {} to {}", p.pool, p.replicas))?;
        output::note(
            out,
            &format!("scaled {cluster} {} to {}", p.pool, p.replicas),
        )?;
        let leaving: Vec<String> = after
            .instances
            .iter()
            .filter(|i| i.pool == p.pool)
            .filter_map(|i| i.leaving.as_ref().map(|l| format!("{} ({})", i.instance.name, l.phase)))
            .collect();
        if !leaving.is_empty() && out == Format::Table {
            eprintln!("leaving {cluster}: {}; `herd status {cluster}` shows their progress", leaving.join(", "));
        }
        last = Some(after);
    }
    // NB: clap requires at least one POOL=N, so there is always an answer.
    let Some(after) = last else { return Ok(()) };
    match wait_limit {
        Some(limit) => status::print(
            out,
            &wait::until_running(client, cluster, after, limit).await?,
        ),
        None if out != Format::Table => status::print(out, &after),
        None => Ok(()),
    }
}
