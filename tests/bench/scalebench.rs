//! Scale-out benchmark: 20 DataNodes (or N) from 0 to running on one real agent, side by side
//! with `docker-compose up --scale` of the same image, command and limits on the same engine,
//! alternating, in one run. herd's time is from the `PATCH` of the pool's replicas until Docker
//! reports all N containers running; compose's from its command's start until the same.
//!
//!     cargo run --release -p herd-tests --bin scalebench -- [N] [RUNS] [--debug | --prebuilt]
//!
//! `--prebuilt` runs the release binaries already in the target directory (build just those
//! with `cargo build --release --bin herd-orchestrator --bin herd-agent`) instead of building
//! the whole workspace in release.
//!
//! The orchestrator runs at its default heartbeat interval (2 s): a change reaches the agent
//! through its watch, not its next heartbeat. Needs Docker and `docker-compose`.
//!
//! A third column is the engine's own floor: the same N containers (compose's config) created
//! and started by this process straight through the Docker API, all at once, nothing else in
//! the way. No orchestrator can start containers on this engine faster than that.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions};
use herd_tests::{Agent, IDLE, Orchestrator, TenantContainers, docker, free_port, release_bins, bins, unique, wait_for};
use serde_json::json;

/// How many containers with `label` run now.
async fn running(d: &Docker, label: &str) -> Result<usize> {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()]), ("status".to_string(), vec!["running".to_string()])]);
    Ok(d.list_containers(Some(ListContainersOptions { all: false, filters: Some(filters), ..Default::default() })).await?.len())
}

/// Polls every 10 ms until `n` containers with `label` run; the time since `start`.
async fn until_running(d: &Docker, label: &str, n: usize, start: Instant) -> Result<Duration> {
    loop {
        if running(d, label).await? == n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("{n} containers labelled {label} not running after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spec(tenant: &str, n: u32) -> String {
    format!(
        "tenant: {tenant}
name: scale
images:
  datanode: herd/testbed-base:latest
pools:
  datanode: {{replicas: {n}, cpu: 100m, memory: 256Mi, maxPerHost: 1000, command: {IDLE}}}
"
    )
}

fn compose_file(project: &str) -> String {
    // The same image, command and limits, and no network, as herd's containers (`$$`: a `$`
    // compose does not interpolate).
    let command = IDLE.replace('$', "$$");
    format!(
        "version: '2.4'
services:
  datanode:
    image: herd/testbed-base:latest
    command: {command}
    network_mode: none
    cpus: 0.1
    mem_limit: 256m
    labels:
      bench: {project}
"
    )
}

fn compose(dir: &std::path::Path, project: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("docker-compose")
        .current_dir(dir)
        .args(["-p", project, "-f", "compose.yaml"])
        .args(args)
        .output()
        .context("cannot run docker-compose (apt-get install docker-compose)")?;
    ensure!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The engine's floor: `n` containers as compose makes them (image, command, limits, no
/// network), each created and started by its own task at once, until all run.
async fn engine(d: &Docker, n: u32, label: &str) -> Result<f64> {
    let cmd: Vec<String> = serde_json::from_str(IDLE)?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|k| {
            let (d, cmd, label) = (d.clone(), cmd.clone(), label.to_string());
            tokio::spawn(async move {
                let (key, value) = label.split_once('=').unwrap_or((&label, ""));
                let body = ContainerCreateBody {
                    image: Some("herd/testbed-base:latest".into()),
                    cmd: Some(cmd),
                    labels: Some(HashMap::from([(key.to_string(), value.to_string())])),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".into()),
                        nano_cpus: Some(100_000_000),
                        memory: Some(256 << 20),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let name = format!("{}-{k}", value);
                let created = d.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
                d.start_container(&created.id, None::<StartContainerOptions>).await?;
                anyhow::Ok(created.id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    let took = until_running(d, label, n as usize, start).await?.as_secs_f64();
    for id in ids {
        d.remove_container(&id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await?;
    }
    Ok(took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let debug = std::env::args().any(|a| a == "--debug");
    let args: Vec<u32> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (n, runs) = (args.first().copied().unwrap_or(20), args.get(1).copied().unwrap_or(3));
    docker();
    let d = Docker::connect_with_local_defaults()?.negotiate_version().await?;
    let prebuilt = std::env::args().any(|a| a == "--prebuilt");
    let release_dir = herd_tests::target_dir().join("release");
    let bin_dir = match (debug, prebuilt) {
        (true, _) => bins(),
        (false, true) => {
            for b in ["herd-orchestrator", "herd-agent"] {
                ensure!(release_dir.join(b).exists(), "--prebuilt: no {} (cargo build --release --bin {b})", release_dir.join(b).display());
            }
            release_dir.as_path()
        }
        (false, false) => release_bins(),
    };
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start_with(bin_dir, &tmp.path().join("orch"), free_port(), &["--rate-limit", "100000", "--heartbeat-interval", "2s"])?;
    let api = orch.api();
    let tenant = unique("scale");
    let _cleanup = TenantContainers(tenant.clone());
    let host = format!("{tenant}-h");
    let token = orch.agent_token(&host).await?;
    let agent = Agent::start_from(bin_dir, &orch.url, &token, &host, &tmp.path().join("agent"), "64", "64Gi", &[])?;
    wait_for("the agent to register", Duration::from_secs(60), || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        Ok(hosts["items"].as_array().is_some_and(|h| h.iter().any(|h| h["state"] == "ready")).then_some(()))
    })
    .await?;
    let (code, body) = api.post("/v1/tenants", json!({"name": tenant, "quota": "unlimited"})).await?;
    ensure!(code == 201, "tenant: {code} {body}");
    let path = format!("/v1/tenants/{tenant}/clusters/scale");
    let (code, body) = api.put_yaml(&path, &spec(&tenant, 0)).await?;
    ensure!(code == 201, "apply: {code} {body}");
    let herd_label = format!("herd.tenant={tenant}");
    let project = unique("scalebench").replace('-', "");
    let compose_label = format!("bench={project}");
    std::fs::write(tmp.path().join("compose.yaml"), compose_file(&project))?;
    println!("scalebench: {n} DataNodes from 0 to running on one agent vs docker-compose up --scale, {runs} runs{}", if debug { " (debug build)" } else { "" });
    println!("{:>4}  {:>10}  {:>13}  {:>12}  {:>12}  {:>11}", "run", "herd (s)", "compose (s)", "engine (s)", "herd/compose", "herd/engine");
    let (mut herd_s, mut compose_s, mut engine_s) = (Vec::new(), Vec::new(), Vec::new());
    let engine_label = format!("bench={project}-engine");
    for run in 1..=runs {
        let start = Instant::now();
        let (code, body) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": n})).await?;
        ensure!(code == 200, "scale out: {code} {body}");
        let h = until_running(&d, &herd_label, n as usize, start).await?.as_secs_f64();
        let (code, body) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": 0})).await?;
        ensure!(code == 200, "scale in: {code} {body}");
        wait_for("herd's containers to go", Duration::from_secs(120), || async {
            let all = HashMap::from([("label".to_string(), vec![herd_label.clone()])]);
            let left = d.list_containers(Some(ListContainersOptions { all: true, filters: Some(all), ..Default::default() })).await?;
            Ok(left.is_empty().then_some(()))
        })
        .await?;

        let start = Instant::now();
        compose(tmp.path(), &project, &["up", "-d", "--scale", &format!("datanode={n}")])?;
        let c = until_running(&d, &compose_label, n as usize, start).await?.as_secs_f64();
        compose(tmp.path(), &project, &["down", "-t", "1"])?;

        let e = engine(&d, n, &engine_label).await?;
        println!("{run:>4}  {h:>10.2}  {c:>13.2}  {e:>12.2}  {:>12.2}  {:>11.2}", h / c, h / e);
        herd_s.push(h);
        compose_s.push(c);
        engine_s.push(e);
    }
    if std::env::var_os("SCALEBENCH_LOG").is_some() {
        eprintln!("{}", agent.proc.log_text());
    }
    let (h, c, e) = (median(herd_s), median(compose_s), median(engine_s));
    println!("median  {h:>8.2}  {c:>13.2}  {e:>12.2}  {:>12.2}  {:>11.2}", h / c, h / e);
    Ok(())
}
