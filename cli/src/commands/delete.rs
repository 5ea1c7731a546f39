//! `herd delete`: remove a cluster from the desired state.

use std::time::Duration;

use anyhow::{Context, Result};

use super::wait;
use crate::args::ClusterRef;
use crate::client::Client;
use crate::output::{self, Format};

pub async fn run(
    client: &Client,
    out: Format,
    cluster: &ClusterRef,
    wait_limit: Option<Duration>,
) -> Result<()> {
    client
        .delete(cluster)
        .await
        .with_context(|| format!("deleting {cluster}"))?;
    if let Some(limit) = wait_limit {
        wait::until_gone(client, cluster, limit).await?;
    }
    output::note(out, &format!("cluster {cluster} deleted"))
}
