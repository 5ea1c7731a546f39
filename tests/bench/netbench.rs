//! Network benchmark: time from "create this container" to "its listener accepts a TCP connection", for
//! N containers started together, on herd's path and on Docker's default bridge, side by side
//! in one run.
//!
//! - herd: the agent's own calls: create and start with network mode `none` (the agent's
//!   bollard runtime), find the PID, lease an address (IPAM), plumb a veth into the container's
//!   namespace over netlink, on a bridge of the benchmark's own.
//! - Docker: create and start on Docker's default `bridge` network, read the address Docker
//!   gave it.
//!
//! Both paths run the same image (the testbed base with a busybox `nc` listener), the same
//! parallelism, and the same reachability probe: a TCP connect from the host to the
//! container's listener, retried every 5 ms.
//!
//!     cargo run --release -p herd-tests --bin netbench -- [N] [PARALLEL]
//!
//! `NETBENCH_PHASES=1` also prints each container's phases (started, leased, plumbed, reachable)
//! and the failed probes before success.
//!
//! Needs root, Docker and the testbed images (`images/testbed/build.sh`). Connections go only to the
//! containers the benchmark made.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions};
use futures::StreamExt;
use herd_agent::docker::DockerRuntime;
use herd_agent::net::ipam::Ipam;
use herd_agent::net::link::{self, Plumbing};
use herd_agent::net::netns::Netns;
use herd_agent::runtime::{ContainerConfig, Runtime};
use ipnet::Ipv4Net;

const IMAGE: &str = "herd/netbench:local";
/// The port the benchmark's containers listen on.
const PORT: u16 = 7000;

/// Connects to `ip:PORT` until the listener answers; the time it took from `since`.
async fn reachable(ip: Ipv4Addr, since: Instant) -> Result<Duration> {
    let deadline = since + Duration::from_secs(60);
    let mut failures: Vec<String> = Vec::new();
    loop {
        let attempt = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect((ip, PORT))).await;
        match attempt {
            Ok(Ok(_)) => {
                if std::env::var_os("NETBENCH_PHASES").is_some() && !failures.is_empty() {
                    eprintln!("probe {ip}: {} failures before success: {:?}", failures.len(), &failures[..failures.len().min(4)]);
                }
                return Ok(since.elapsed());
            }
            Ok(Err(e)) => failures.push(format!("{} {}", since.elapsed().as_millis(), e.kind())),
            Err(_) => failures.push(format!("{} timeout", since.elapsed().as_millis())),
        }
        if Instant::now() > deadline {
            bail!("{ip}:{PORT} never answered");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Builds the benchmark's image: the testbed base with a TCP listener as its process.
fn build_image() -> Result<()> {
    let dockerfile = format!("FROM herd/testbed-base:latest\nENTRYPOINT [\"/bin/nc\", \"-ll\", \"-p\", \"{PORT}\", \"-e\", \"/bin/hostname\"]\n");
    let mut child = Command::new("docker").args(["build", "-q", "-t", IMAGE, "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    use std::io::Write;
    child.stdin.take().context("stdin")?.write_all(dockerfile.as_bytes())?;
    if !child.wait()?.success() {
        bail!("building {IMAGE} failed; run images/testbed/build.sh first");
    }
    Ok(())
}

/// herd's path for one container.
async fn herd_one(rt: &DockerRuntime, ipam: &Ipam, bridge: &str, name: String) -> Result<(String, Duration)> {
    let start = Instant::now();
    let config = ContainerConfig {
        name: name.clone(),
        hostname: name.clone(),
        image: IMAGE.into(),
        cmd: None,
        env: Default::default(),
        labels: [("herd.bench".to_string(), "true".to_string())].into(),
        nano_cpus: 100_000_000,
        memory_bytes: 64 << 20,
        binds: vec![],
        cap_add: vec![],
    };
    let id = rt.create_and_start(&config).await?;
    let t_started = start.elapsed();
    let pid = rt.pid(&id).await?.context("container not running")?;
    let ip = tokio::task::block_in_place(|| ipam.allocate(&name))?;
    let t_leased = start.elapsed();
    let plumbing = Plumbing {
        bridge: bridge.into(),
        host_veth: link::host_veth_name(&name),
        address: ipam.cidr(ip),
        gateway: ipam.gateway(),
        mtu: None,
    };
    link::plumb(&Netns::of_pid(pid)?, &plumbing).await?;
    let t_plumbed = start.elapsed();
    let reached = reachable(ip, start).await?;
    if std::env::var_os("NETBENCH_PHASES").is_some() {
        eprintln!("herd phases ms: started {} leased {} plumbed {} reachable {}", t_started.as_millis(), t_leased.as_millis(), t_plumbed.as_millis(), reached.as_millis());
    }
    Ok((id, reached))
}

/// Docker's path for one container.
async fn docker_one(docker: &Docker, name: String) -> Result<(String, Duration)> {
    let start = Instant::now();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        labels: Some(HashMap::from([("herd.bench".to_string(), "true".to_string())])),
        host_config: Some(HostConfig { nano_cpus: Some(100_000_000), memory: Some(64 << 20), init: Some(true), ..Default::default() }),
        ..Default::default()
    };
    let created = docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
    docker.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await?;
    let t_started = start.elapsed();
    let inspect = docker.inspect_container(&created.id, None::<InspectContainerOptions>).await?;
    let ip: Ipv4Addr = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get("bridge").and_then(|b| b.ip_address.clone()))
        .context("Docker gave no bridge address")?
        .parse()?;
    let reached = reachable(ip, start).await?;
    if std::env::var_os("NETBENCH_PHASES").is_some() {
        eprintln!("docker phases ms: started {} reachable {}", t_started.as_millis(), reached.as_millis());
    }
    Ok((created.id, reached))
}

struct Stats {
    total: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }

    fn mean(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len() as u32
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<8} total {:>7.2}s   mean {:>6.0}ms   p50 {:>6.0}ms   p95 {:>6.0}ms   max {:>6.0}ms",
            self.total.as_secs_f64(),
            self.mean().as_secs_f64() * 1e3,
            self.pct(0.5).as_secs_f64() * 1e3,
            self.pct(0.95).as_secs_f64() * 1e3,
            self.pct(1.0).as_secs_f64() * 1e3
        )
    }
}

async fn remove_all(docker: &Docker, ids: &[String]) {
    for id in ids {
        let _ = docker.remove_container(id, Some(RemoveContainerOptions { force: true, ..Default::default() })).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let parallel: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let tag = std::process::id() % 100_000;
    let bridge = format!("nb{tag}");
    let subnet: Ipv4Net = "10.215.0.0/24".parse()?;
    let (_, addrs) = run("ip", &["-4", "-o", "addr"]);
    if addrs.contains(" 10.215.") {
        bail!("10.215.0.0/24 is in use on this host; the benchmark needs it for its bridge");
    }
    let state = tempfile::tempdir()?;
    let ipam = Ipam::open(state.path(), subnet)?;
    link::ensure_bridge(&bridge, ipam.gateway_cidr()).await?;
    let rt = DockerRuntime::connect().await.context("Docker")?;
    let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;

    build_image()?;
    println!("netbench: {n} containers, {parallel} at a time, create -> reachable (TCP connect)");
    let result = async {
        let start = Instant::now();
        let herd: Vec<Result<(String, Duration)>> = futures::stream::iter(0..n)
            .map(|i| herd_one(&rt, &ipam, &bridge, format!("netbench-{tag}-herd-{i}")))
            .buffer_unordered(parallel)
            .collect()
            .await;
        let herd_total = start.elapsed();
        let herd: Vec<(String, Duration)> = herd.into_iter().collect::<Result<_>>()?;
        let ids: Vec<String> = herd.iter().map(|(id, _)| id.clone()).collect();
        remove_all(&docker, &ids).await;

        let start = Instant::now();
        let dock: Vec<Result<(String, Duration)>> = futures::stream::iter(0..n)
            .map(|i| docker_one(&docker, format!("netbench-{tag}-docker-{i}")))
            .buffer_unordered(parallel)
            .collect()
            .await;
        let dock_total = start.elapsed();
        let dock: Vec<(String, Duration)> = dock.into_iter().collect::<Result<_>>()?;
        let ids: Vec<String> = dock.iter().map(|(id, _)| id.clone()).collect();
        remove_all(&docker, &ids).await;

        let herd = Stats { total: herd_total, latencies: herd.into_iter().map(|(_, d)| d).collect() };
        let dock = Stats { total: dock_total, latencies: dock.into_iter().map(|(_, d)| d).collect() };
        println!("{}", herd.line("herd"));
        println!("{}", dock.line("docker"));
        println!(
            "ratio docker/herd: total {:.2}x   mean {:.2}x   p95 {:.2}x   (above 1: herd is faster)",
            dock.total.as_secs_f64() / herd.total.as_secs_f64(),
            dock.mean().as_secs_f64() / herd.mean().as_secs_f64(),
            dock.pct(0.95).as_secs_f64() / herd.pct(0.95).as_secs_f64()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Leftovers of a failed run: every container labelled for the benchmark, then the bridge.
    let (_, left) = run("docker", &["ps", "-aq", "--filter", "label=herd.bench=true"]);
    let left: Vec<String> = left.split_whitespace().map(String::from).collect();
    remove_all(&docker, &left).await;
    link::remove_bridge(&bridge).await?;
    result
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    match Command::new(cmd).args(args).output() {
        Ok(o) => (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()),
        Err(_) => (false, String::new()),
    }
}
