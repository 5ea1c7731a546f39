//! One function per subcommand.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use herd_api::names::check_dns_label;
use herd_api::spec::Replicas;
use herd_api::wire::{ClusterStatus, ContainerState, HostStatus, InstanceStatus, Tenant};
use herd_api::{Role, yaml};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::client::Client;
use crate::output::{Format, Table, print, short_duration};

/// Parses `TENANT/CLUSTER`.
pub fn parse_cluster_ref(s: &str) -> Result<(String, String)> {
    let (tenant, cluster) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("`{s}` is not TENANT/CLUSTER (e.g. acme/prod)"))?;
    check_dns_label(tenant).map_err(|m| anyhow!("tenant in `{s}`: {m}"))?;
    check_dns_label(cluster).map_err(|m| anyhow!("cluster in `{s}`: {m}"))?;
    Ok((tenant.to_string(), cluster.to_string()))
}

/// Parses `POOL=N`.
pub fn parse_pool_arg(s: &str) -> Result<(Role, Replicas)> {
    let (pool, n) = s.split_once('=').ok_or_else(|| anyhow!("`{s}` is not POOL=REPLICAS (e.g. datanode=5)"))?;
    let role: Role = pool.parse().map_err(|m: String| anyhow!("{m}"))?;
    let n: u32 = n.trim().parse().map_err(|_| anyhow!("`{n}` in `{s}` is not a whole number of replicas (0 or more)"))?;
    Ok((role, Replicas(n)))
}

fn cluster_path(tenant: &str, cluster: &str) -> String {
    format!("/v1/tenants/{tenant}/clusters/{cluster}")
}

pub async fn apply(client: &Client, out: Format, file: &Path, wait: Option<Duration>) -> Result<()> {
    let (text, shown) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the spec from standard input")?;
        (text, "<stdin>".to_string())
    } else {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        (text, file.display().to_string())
    };
    let spec = yaml::parse_cluster_spec(&text).map_err(|e| {
        let lines: Vec<String> = e.field_errors().iter().map(|f| format!("{shown}: {f}")).collect();
        anyhow!("{}\nnothing was applied; fix the spec and run `herd apply -f {shown}` again", lines.join("\n"))
    })?;
    let path = cluster_path(&spec.tenant, &spec.name);
    let before: Option<ClusterStatus> = client.get_opt(&path).await?;
    let answer = client.call::<ClusterStatus>(Method::PUT, &path, Some(("application/yaml", text))).await?;
    let after = answer.body;
    let verb = match (answer.status, before) {
        (StatusCode::CREATED, _) => "created",
        (_, Some(b)) if b.generation == after.generation => "unchanged",
        _ => "configured",
    };
    eprintln!("cluster {}/{} {verb} (generation {})", after.tenant, after.name, after.generation);
    let after = match wait {
        Some(timeout) => wait_running(client, &after.tenant, &after.name, timeout).await?,
        None => after,
    };
    if out != Format::Table || wait.is_some() {
        print(out, &after, || instance_table(std::slice::from_ref(&after)))?;
    }
    Ok(())
}

pub async fn status(client: &Client, out: Format, cluster: Option<&str>) -> Result<()> {
    let clusters: Vec<ClusterStatus> = match cluster {
        Some(c) => {
            let (tenant, name) = parse_cluster_ref(c)?;
            let one: Option<ClusterStatus> = client.get_opt(&cluster_path(&tenant, &name)).await?;
            vec![one.ok_or_else(|| anyhow!("cluster {c} not found; `herd status` lists all clusters"))?]
        }
        None => client.get("/v1/clusters").await?,
    };
    match (cluster, out) {
        (Some(_), Format::Json | Format::Yaml) => print(out, &clusters[0], || Table::new(&[])),
        _ => print(out, &clusters, || instance_table(&clusters)),
    }
}

pub async fn scale(client: &Client, out: Format, cluster: &str, pools: &[String], wait: Option<Duration>) -> Result<()> {
    let (tenant, name) = parse_cluster_ref(cluster)?;
    // Check every argument before changing anything.
    let pools: Vec<(Role, Replicas)> = pools.iter().map(|p| parse_pool_arg(p)).collect::<Result<_>>()?;
    let mut last = None;
    for (role, replicas) in pools {
        let path = format!("{}/pools/{role}", cluster_path(&tenant, &name));
        let body = json!({ "replicas": replicas.0 }).to_string();
        let status = client.call::<ClusterStatus>(Method::PATCH, &path, Some(("application/json", body))).await?;
        eprintln!("scaled {tenant}/{name} {role} to {}", replicas.0);
        last = Some(status.body);
    }
    let Some(mut after) = last else { return Ok(()) };
    if let Some(timeout) = wait {
        after = wait_running(client, &tenant, &name, timeout).await?;
    }
    if out != Format::Table || wait.is_some() {
        print(out, &after, || instance_table(std::slice::from_ref(&after)))?;
    }
    Ok(())
}

pub async fn delete(client: &Client, cluster: &str) -> Result<()> {
    let (tenant, name) = parse_cluster_ref(cluster)?;
    client.call::<serde_json::Value>(Method::DELETE, &cluster_path(&tenant, &name), None).await?;
    eprintln!("cluster {tenant}/{name} deleted; its containers are being removed (data directories are kept)");
    Ok(())
}

pub async fn hosts(client: &Client, out: Format) -> Result<()> {
    let hosts: Vec<HostStatus> = client.get("/v1/hosts").await?;
    print(out, &hosts, || {
        let mut t = Table::new(&["HOST", "STATE", "RACK", "CPU", "MEMORY", "INSTANCES", "LAST SEEN"]);
        for h in &hosts {
            t.row(vec![
                h.info.id.clone(),
                format!("{:?}", h.state).to_lowercase(),
                h.info.rack.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", h.allocated_cpu, h.info.cpu),
                format!("{}/{}", h.allocated_memory.approx(), h.info.memory.approx()),
                h.instances.to_string(),
                h.last_heartbeat_ms_ago.map(|ms| format!("{} ago", short_duration(Duration::from_millis(ms)))).unwrap_or_else(|| "-".into()),
            ]);
        }
        t
    })
}

pub async fn tenants(client: &Client, out: Format) -> Result<()> {
    let tenants: Vec<Tenant> = client.get("/v1/tenants").await?;
    print(out, &tenants, || tenant_table(&tenants))
}

pub async fn create_tenant(client: &Client, out: Format, name: &str) -> Result<()> {
    check_dns_label(name).map_err(|m| anyhow!("tenant name: {m}"))?;
    let body = json!({ "name": name }).to_string();
    let answer = client.call::<Tenant>(Method::POST, "/v1/tenants", Some(("application/json", body))).await?;
    let verb = if answer.status == StatusCode::CREATED { "created" } else { "already exists" };
    eprintln!("tenant {name} {verb}");
    if out != Format::Table {
        print(out, &answer.body, || Table::new(&[]))?;
    }
    Ok(())
}

fn tenant_table(tenants: &[Tenant]) -> Table {
    let mut t = Table::new(&["TENANT", "CREATED"]);
    for tenant in tenants {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(tenant.created_at);
        t.row(vec![tenant.name.clone(), humantime::format_rfc3339_seconds(created).to_string()]);
    }
    t
}

fn is_running(i: &InstanceStatus) -> bool {
    i.observed.as_ref().is_some_and(|o| o.state == ContainerState::Running)
}

/// What an instance's row says about it beyond its state.
pub fn detail(i: &InstanceStatus, now: SystemTime) -> String {
    if let Some(reason) = &i.pending {
        return reason.clone();
    }
    let Some(o) = &i.observed else {
        return if i.host.is_some() { "waiting for the host's agent".into() } else { String::new() };
    };
    if let Some(e) = &o.error {
        return e.clone();
    }
    let started = o.started_at.as_deref().and_then(|s| humantime::parse_rfc3339_weak(s.split('.').next().unwrap_or(s)).ok());
    match (o.state, started) {
        (ContainerState::Running, Some(t)) => now.duration_since(t).map(|d| format!("up {}", short_duration(d))).unwrap_or_default(),
        (ContainerState::Exited, _) => o.exit_code.map(|c| format!("exit code {c}")).unwrap_or_default(),
        _ => String::new(),
    }
}

fn instance_table(clusters: &[ClusterStatus]) -> Table {
    let now = SystemTime::now();
    let mut t = Table::new(&["CLUSTER", "INSTANCE", "POOL", "HOST", "CPU", "MEMORY", "DESIRED", "OBSERVED", "DETAIL"]);
    for c in clusters {
        for i in &c.instances {
            let observed = match (&i.observed, &i.host) {
                (Some(o), _) => o.state.as_str().to_string(),
                (None, None) => "pending".into(),
                (None, Some(_)) => "-".into(),
            };
            t.row(vec![
                format!("{}/{}", c.tenant, c.name),
                i.instance.name.clone(),
                i.pool.to_string(),
                i.host.clone().unwrap_or_else(|| "-".into()),
                i.cpu.to_string(),
                i.memory.to_string(),
                "running".into(),
                observed,
                detail(i, now),
            ]);
        }
    }
    t
}

/// Polls until every instance runs, printing progress on stderr when it changes.
async fn wait_running(client: &Client, tenant: &str, name: &str, timeout: Duration) -> Result<ClusterStatus> {
    let start = Instant::now();
    let path = cluster_path(tenant, name);
    let mut last_line = String::new();
    loop {
        let c: ClusterStatus = client.get(&path).await?;
        let total = c.instances.len();
        let running = c.instances.iter().filter(|i| is_running(i)).count();
        if running == total {
            eprintln!("{tenant}/{name}: {running}/{total} running");
            return Ok(c);
        }
        let pending = c.instances.iter().filter(|i| i.host.is_none()).count();
        let line = format!("waiting for {tenant}/{name}: {running}/{total} running, {pending} pending");
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
        if start.elapsed() >= timeout {
            let now = SystemTime::now();
            let stuck: Vec<String> = c
                .instances
                .iter()
                .filter(|i| !is_running(i))
                .map(|i| format!("  {}: {}", i.instance.name, detail(i, now)))
                .collect();
            bail!(
                "{tenant}/{name} not running after {}:\n{}\nsee `herd status {tenant}/{name}` and `herd hosts`",
                humantime::format_duration(timeout),
                stuck.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::names::InstanceRef;
    use herd_api::quantity::{Cpu, Memory};
    use herd_api::wire::Observed;

    #[test]
    fn cluster_refs() {
        assert_eq!(parse_cluster_ref("acme/prod").ok(), Some(("acme".into(), "prod".into())));
        for bad in ["acme", "acme/", "/prod", "Acme/prod", "acme/prod/x"] {
            assert!(parse_cluster_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_args() {
        assert_eq!(parse_pool_arg("datanode=5").ok(), Some((Role::Datanode, Replicas(5))));
        for bad in ["datanode", "datanodes=5", "datanode=-1", "datanode=x"] {
            assert!(parse_pool_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn detail_shows_uptime_pending_and_errors() {
        let mut i = InstanceStatus {
            instance: InstanceRef::new("t", "c", Role::Datanode, 0),
            pool: Role::Datanode,
            host: Some("h".into()),
            cpu: Cpu(500),
            memory: Memory(1 << 30),
            pending: None,
            observed: Some(Observed {
                instance: InstanceRef::new("t", "c", Role::Datanode, 0),
                container_id: "x".into(),
                state: ContainerState::Running,
                started_at: Some("2026-01-01T00:00:00.123456789Z".into()),
                exit_code: None,
                error: None,
            }),
        };
        let now = humantime::parse_rfc3339("2026-01-01T00:05:10Z").unwrap_or(SystemTime::UNIX_EPOCH);
        assert_eq!(detail(&i, now), "up 5m");
        i.pending = Some("no ready host".into());
        assert_eq!(detail(&i, now), "no ready host");
    }
}
