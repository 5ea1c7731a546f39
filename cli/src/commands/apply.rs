//! `herd apply`: validate a spec here, then store it as the cluster's desired state.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_api::wire::ClusterStatus;
use herd_api::{ClusterSpec, FieldError, yaml};

use super::{status, wait};
use crate::args::ClusterRef;
use crate::client::{Client, Unconfirmed};
use crate::output::{self, Format};

pub async fn run(
    client: &Client,
    out: Format,
    file: &Path,
    wait_limit: Option<Duration>,
) -> Result<()> {
    let (text, shown) = read(file)?;
    // Every mistake is reported with its field and line before anything is sent.
    let spec = yaml::parse_cluster_spec(&text).map_err(|e| Invalid {
        file: shown,
        errors: e.field_errors(),
    })?;
    let cluster = ClusterRef {
        tenant: spec.tenant.clone(),
        name: spec.name.clone(),
    };
    let spec_read = spec;

    let before = client
        .cluster(&cluster)
        .await
        .with_context(|| format!("reading {cluster} before applying"))?;
    // NB: based on what was read: a cluster changed in between is refused (412), not
    // overwritten unseen, and the verb below is true.
    let (after, created) = match client.apply(&cluster, text, before.as_ref().map(|b| b.generation)).await {
        Ok(applied) => applied,
        Err(e) if e.is::<Unconfirmed>() => (confirm(client, &cluster, &spec_read, &e).await?, before.is_none()),
        Err(e) => return Err(e.context(format!("applying {cluster}"))),
    };
    let verb = match before {
        _ if created => "created",
        Some(b) if b.generation == after.generation => "unchanged",
        _ => "configured",
    };
    output::note(
        out,
        &format!("cluster {cluster} {verb} (generation {})", after.generation),
    )?;
    match wait_limit {
        Some(limit) => status::print(
            out,
            &wait::until_running(client, &cluster, after, limit).await?,
        ),
        None if out != Format::Table => status::print(out, &after),
        None => Ok(()),
    }
}

/// Every answer to the apply was lost: reads the cluster to tell whether it holds the spec,
/// and says so plainly, with what to do next.
async fn confirm(client: &Client, cluster: &ClusterRef, spec: &ClusterSpec, lost: &anyhow::Error) -> Result<ClusterStatus> {
    let what = format!("applying {cluster}");
    match client.cluster(cluster).await {
        Ok(Some(c)) if c.spec == *spec => {
            eprintln!("{what}: APPLIED (the answer was lost: {lost}; reading the cluster shows the spec applied)");
            Ok(c)
        }
        Ok(Some(c)) => bail!(
            "{what}: NOT APPLIED ({lost}); the cluster is at generation {} with another spec: see it with `herd status {cluster}` and apply again",
            c.generation
        ),
        Ok(None) => bail!("{what}: NOT APPLIED ({lost}); {cluster} does not exist: apply again"),
        Err(e) => bail!(
            "{what}: UNKNOWN whether it was applied ({lost}), and reading the cluster failed too ({e:#}); once the \
             orchestrator answers, check with `herd status {cluster}` and apply again if it does not hold the spec"
        ),
    }
}

/// The spec's text, and how to name where it came from in messages.
fn read(file: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the spec from standard input")?;
        return Ok((text, "<stdin>".into()));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok((text, file.display().to_string()))
}

/// A spec refused here, before anything was sent: one line per offending field.
#[derive(Debug)]
struct Invalid {
    file: String,
    errors: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}: {e}", self.file)?;
        }
        write!(
            f,
            "  nothing was sent to the orchestrator; fix the spec and apply it again"
        )
    }
}

impl std::error::Error for Invalid {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_spec_names_file_field_and_line() {
        let text = "tenant: acme\nname: prod\nimages:\n  datanode: herd/datanode:testbed\npools:\n  datanode:\n    replicas: 1\n    cpu: 500m\n    memory: 64Mi\n";
        let errors = yaml::parse_cluster_spec(text)
            .err()
            .map(|e| e.field_errors())
            .unwrap_or_default();
        let got = Invalid {
            file: "quickstart.yaml".into(),
            errors,
        }
        .to_string();
        let first = got.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(
                "quickstart.yaml: pools.datanode.memory (line 9): a datanode needs at least 256Mi"
            ),
            "{got}"
        );
        assert!(
            got.ends_with("nothing was sent to the orchestrator; fix the spec and apply it again"),
            "{got}"
        );
    }
}
