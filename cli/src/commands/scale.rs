//! `herd scale`: set pools' replica counts, one request per pool, each with `If-Match` of the
//! generation read before it (the cluster read first, then each answer's), so a cluster
//! changed meanwhile is refused (412) rather than scaled blind.

use std::time::Duration;

use anyhow::{Result, bail};
use herd_api::wire::ClusterStatus;

use super::{status, wait};
use crate::args::{ClusterRef, PoolReplicas};
use crate::client::{Client, Unconfirmed, Unreachable};
use crate::output::{self, Format};

pub async fn run(
    client: &Client,
    out: Format,
    cluster: &ClusterRef,
    pools: &[PoolReplicas],
    force: bool,
    wait_limit: Option<Duration>,
) -> Result<()> {
    // NB: a cluster that cannot be read now is scaled without a precondition; the write has
    // its own retries and says plainly whether it was applied.
    let mut generation = match client.cluster(cluster).await {
        Ok(Some(c)) => Some(c.generation),
        Ok(None) => bail!("cluster {cluster} not found; `herd status` lists every cluster"),
        Err(e) if e.is::<Unreachable>() => None,
        Err(e) => return Err(e.context(format!("reading {cluster}"))),
    };
    let mut last = None;
    for p in pools {
        let after = match client.scale(cluster, p.pool, p.replicas, force, generation).await {
            Ok(after) => after,
            Err(e) if e.is::<Unconfirmed>() => confirm(client, cluster, p, &e).await?,
            Err(e) => return Err(e.context(format!("scaling {cluster} {} to {}", p.pool, p.replicas))),
        };
        generation = Some(after.generation);
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

/// Every answer to the scale was lost: reads the cluster to tell whether it was applied, and
/// says so plainly, with what to do next.
async fn confirm(client: &Client, cluster: &ClusterRef, p: &PoolReplicas, lost: &anyhow::Error) -> Result<ClusterStatus> {
    let what = format!("scaling {cluster} {} to {}", p.pool, p.replicas);
    match client.cluster_all(cluster).await {
        Ok(Some(c)) => match c.spec.pools.get(&p.pool).map(|pool| pool.replicas.0) {
            Some(n) if n == p.replicas => {
                eprintln!("{what}: APPLIED (the answer was lost: {lost}; reading the cluster shows {n} replicas)");
                Ok(c)
            }
            n => bail!(
                "{what}: NOT APPLIED ({lost}); the cluster has {} {} replicas: run the same command again",
                n.unwrap_or(0),
                p.pool
            ),
        },
        Ok(None) => bail!("{what}: NOT APPLIED ({lost}); {cluster} does not exist (`herd apply` it first)"),
        Err(e) => bail!(
            "{what}: UNKNOWN whether it was applied ({lost}), and reading the cluster failed too ({e:#}); once the \
             orchestrator answers, check with `herd status {cluster}` and run the command again if the pool does not have \
             {} replicas",
            p.replicas
        ),
    }
}
