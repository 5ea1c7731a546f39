//! The walking skeleton end to end: an orchestrator and two agents (two host ids on the one
//! Docker engine) run a cluster's DataNodes and NodeManagers as real containers; scaling
//! removes exactly the extra ones; a SIGKILLed agent comes back without restarting or
//! duplicating a container; a SIGKILLed orchestrator comes back with everything it stored.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use herd_tests::{IDLE, Agent, Orchestrator, TenantContainers, docker, free_port, unique, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Every container of `tenant`, inspected, by instance name.
async fn containers(d: &Docker, tenant: &str) -> Result<BTreeMap<String, ContainerInspectResponse>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("herd.tenant={tenant}")])]);
    let list = d.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await?;
    let mut out = BTreeMap::new();
    for c in list {
        let id = c.id.context("container without id")?;
        let inspect = d.inspect_container(&id, None::<InspectContainerOptions>).await?;
        let name = label(&inspect, "herd.instance");
        ensure!(out.insert(name.clone(), inspect).is_none(), "two containers for instance {name}");
    }
    Ok(out)
}

fn label(c: &ContainerInspectResponse, key: &str) -> String {
    c.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(key)).cloned().unwrap_or_default()
}

fn running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn started_at(c: &ContainerInspectResponse) -> String {
    c.state.as_ref().and_then(|s| s.started_at.clone()).unwrap_or_default()
}

/// Waits until exactly `n` containers of `tenant` exist and all run.
async fn wait_running(d: &Docker, tenant: &str, n: usize) -> Result<BTreeMap<String, ContainerInspectResponse>> {
    wait_for(&format!("{n} running containers"), WAIT, || async {
        let cs = containers(d, tenant).await?;
        Ok((cs.len() == n && cs.values().all(running)).then_some(cs))
    })
    .await
}

/// Worker pools without masters (this test is about containers, not Hadoop: the Hadoop
/// doubles would exit without a NameNode to join, as Hadoop does), running an idle process
/// that exits on SIGTERM.
fn spec(tenant: &str, datanodes: u32, nodemanagers: u32) -> String {
    format!(
        "tenant: {tenant}
name: prod
images:
  datanode: herd/testbed-base:latest
  nodemanager: herd/testbed-base:latest
pools:
  datanode:
    replicas: {datanodes}
    cpu: 500m
    memory: 256Mi
    maxPerHost: {datanodes}
    command: {IDLE}
  nodemanager:
    replicas: {nodemanagers}
    cpu: '1'
    memory: 512Mi
    command: {IDLE}
"
    )
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_scale_and_survive_agent_and_orchestrator_kills() -> Result<()> {
    docker();
    let d = Docker::connect_with_local_defaults()?.negotiate_version().await?;
    let tenant = unique("e2e");
    let _cleanup = TenantContainers(tenant.clone());
    let tmp = tempfile::tempdir()?;
    let port = free_port();
    let mut orch = Orchestrator::start(&tmp.path().join("orch"), port)?;
    let api = orch.api();
    let hosts = [format!("{tenant}-h1"), format!("{tenant}-h2")];
    let agent_tokens = [orch.agent_token(&hosts[0]).await?, orch.agent_token(&hosts[1]).await?];
    let token_of = |h: &str| if h == hosts[0] { agent_tokens[0].clone() } else { agent_tokens[1].clone() };
    // Each host: 2 CPUs and 1Gi; the cluster needs 3.5 CPUs and 1.75Gi, so it must spread.
    let start_agent = |h: &str| Agent::start(&orch.url, &token_of(h), h, &tmp.path().join(h), "2", "1Gi");
    let mut agents = vec![start_agent(&hosts[0])?, start_agent(&hosts[1])?];

    wait_for("both hosts to register", WAIT, || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        let ready = hosts["items"].as_array().into_iter().flatten().filter(|h| h["state"] == "ready").count();
        Ok((ready == 2).then_some(()))
    })
    .await?;
    let (status, _) = api.post("/v1/tenants", json!({"name": tenant})).await?;
    assert_eq!(status, 201);
    let path = format!("/v1/tenants/{tenant}/clusters/prod");
    let (status, body) = api.put_yaml(&path, &spec(&tenant, 3, 2)).await?;
    assert_eq!(status, 201, "{body}");

    // Exactly five containers run, with herd's labels and the pools' limits.
    let before = wait_running(&d, &tenant, 5).await?;
    let mut used: HashMap<String, (i64, i64)> = HashMap::new();
    for (name, c) in &before {
        let pool = label(c, "herd.pool");
        assert!(name.starts_with(&format!("{pool}-")), "{name} in pool {pool}");
        assert_eq!(label(c, "herd.tenant"), tenant);
        assert_eq!(label(c, "herd.cluster"), "prod");
        let host = label(c, "herd.host");
        assert!(hosts.contains(&host), "{name} on unknown host {host}");
        let hc = c.host_config.clone().unwrap_or_default();
        let (cpu, mem) = if pool == "datanode" { (500_000_000, 256 << 20) } else { (1_000_000_000, 512 << 20) };
        assert_eq!((hc.nano_cpus, hc.memory), (Some(cpu), Some(mem)), "{name} limits");
        assert_eq!(hc.network_mode.as_deref(), Some("none"), "{name}: herd owns networking");
        let u = used.entry(host).or_default();
        u.0 += cpu;
        u.1 += mem;
    }
    assert_eq!(used.len(), 2, "instances spread over both hosts: {used:?}");
    for (host, (cpu, mem)) in &used {
        assert!(*cpu <= 2_000_000_000 && *mem <= 1 << 30, "{host} overcommitted: {cpu} nano-CPUs, {mem} bytes");
    }
    let names: Vec<&str> = before.keys().map(String::as_str).collect();
    assert_eq!(names, ["datanode-0", "datanode-1", "datanode-2", "nodemanager-0", "nodemanager-1"]);

    // The API shows the same, observed next to desired, once the agents have reported.
    wait_for("the API to show 5 running", WAIT, || async {
        let (_, cluster) = api.get(&path).await?;
        let observed = cluster["instances"].as_array().into_iter().flatten();
        let running = observed.filter(|i| i["observed"]["state"] == "running").count();
        Ok((running == 5).then_some(()))
    })
    .await?;

    // Scale DataNodes to 1: exactly datanode-1 and datanode-2 go; the rest are untouched.
    let (status, body) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": 1})).await?;
    assert_eq!(status, 200, "{body}");
    let after = wait_running(&d, &tenant, 3).await?;
    let left: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(left, ["datanode-0", "nodemanager-0", "nodemanager-1"]);
    for (name, c) in &after {
        assert_eq!(c.id, before[name].id, "{name} was recreated by the scale-down");
    }

    // SIGKILL one agent and start it again: nothing restarted, nothing duplicated.
    let killed = agents.remove(0);
    let killed_host = killed.host_id.clone();
    drop(killed);
    let restarted = start_agent(&killed_host)?;
    wait_for("the restarted agent to converge twice", WAIT, || async {
        let log = restarted.proc.log_text();
        Ok((log.matches("registered").count() >= 1 && log.matches("heartbeat").count() >= 3).then_some(()))
    })
    .await?;
    let now = containers(&d, &tenant).await?;
    assert_eq!(now.len(), 3, "duplicated: {:?}", now.keys());
    for (name, c) in &now {
        assert_eq!(c.id, after[name].id, "{name} was recreated after the agent restart");
        assert_eq!(started_at(c), started_at(&after[name]), "{name} was restarted after the agent restart");
    }
    agents.push(restarted);

    // SIGKILL the orchestrator and start it on the same store: all it stored is still there.
    orch.proc.kill();
    let orch2 = Orchestrator::start(&orch.data_dir, port)?;
    assert_eq!(orch2.admin, orch.admin, "the admin token is made once, not on every start");
    let (status, again) = orch2.api().get(&path).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["generation"].as_u64(), Some(2), "apply then one scale");
    let placed = |c: &serde_json::Value| -> Vec<(String, String)> {
        c["instances"].as_array().into_iter().flatten()
            .map(|i| (i["instance"]["name"].as_str().unwrap_or("").to_string(), i["host"].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let expected: Vec<(String, String)> = after.iter().map(|(n, c)| (n.clone(), label(c, "herd.host"))).collect();
    assert_eq!(placed(&again), expected);
    // Agents carry on with the new orchestrator process, and still nothing restarts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = containers(&d, &tenant).await?;
    for (name, c) in &last {
        assert_eq!(started_at(c), started_at(&after[name]), "{name} restarted after the orchestrator restart");
    }

    // Deleting the cluster removes its containers.
    let (status, _) = orch2.api().delete(&path).await?;
    assert_eq!(status, 204);
    wait_for("all containers removed", WAIT, || async { Ok(containers(&d, &tenant).await?.is_empty().then_some(())) }).await?;
    Ok(())
}
