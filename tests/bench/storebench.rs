//! Store benchmark through the real HTTP API: an orchestrator on SQLite (its store file on the
//! local disk, the default) and one on a three-member etcd cluster on loopback, side by side in
//! one run. Both get the same tenant and clusters (DataNode pools and no agents, so instances
//! stay pending); the operation measured is `herd scale`'s request, `PATCH
//! /v1/tenants/T/clusters/C/pools/datanode` with a new `replicas` (alternately 1 and 2, so each
//! one changes the cluster and stays far below the cap on pending instances):
//!
//! - sequential latency: one client, one request at a time (p50, p99, mean), in rounds that
//!   alternate between the stores so a shared machine's load falls on both alike;
//! - throughput: `CLIENTS` clients at once, each scaling its own cluster as fast as answers
//!   come, for ~10 s per store (also in alternating rounds), with the latency they saw.
//!
//!     cargo run --release -p herd-tests --bin storebench -- [--quick] [--prebuilt] [--ops N] [--seconds S] [--members M]
//!
//! `--quick`: 60 sequential operations and 2 s of throughput per store. `--members 1`: a
//! single etcd member instead of three (what replication costs). `--prebuilt` runs the
//! release orchestrator already in the target directory (`cargo build --release --bin
//! herd-orchestrator`); otherwise that one binary is built first (not the whole workspace).
//! Needs Debian's etcd-server (deploy/lib/etcd.sh); no Docker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::etcd::EtcdCluster;
use herd_tests::{Api, Orchestrator, free_port, wait_for};
use serde_json::json;

/// Concurrent clients in the throughput phase; each has a cluster of its own.
const CLIENTS: usize = 8;
/// Rounds each phase is split into, alternating between the stores.
const ROUNDS: u32 = 3;

fn spec(tenant: &str, cluster: &str) -> String {
    format!(
        "tenant: {tenant}
name: {cluster}
images:
  datanode: herd/testbed-base:latest
pools:
  datanode: {{replicas: 0, cpu: 100m, memory: 256Mi}}
"
    )
}

/// The release orchestrator: built (that binary only) unless `prebuilt`.
fn orchestrator_bin(prebuilt: bool) -> Result<PathBuf> {
    let dir = herd_tests::target_dir().join("release");
    if !prebuilt {
        let status = herd_tests::cargo()
            .args(["build", "--release", "-p", "herd-orchestrator", "--bin", "herd-orchestrator"])
            .status()
            .context("cannot run cargo")?;
        ensure!(status.success(), "building the release orchestrator failed: {status}");
    }
    ensure!(
        dir.join("herd-orchestrator").exists(),
        "no {} (cargo build --release --bin herd-orchestrator)",
        dir.join("herd-orchestrator").display()
    );
    Ok(dir)
}

/// One orchestrator under test, with its clusters.
struct Subject {
    name: &'static str,
    api: Api,
    /// Cluster paths, one per client (the first one also serves the sequential phase).
    clusters: Vec<String>,
    /// Replicas each cluster has now.
    replicas: Vec<u32>,
    seq: Vec<Duration>,
    conc: Vec<Duration>,
    conc_ops: usize,
    conc_time: Duration,
}

impl Subject {
    async fn new(name: &'static str, orch: &Orchestrator) -> Result<Self> {
        let api = orch.api();
        // On etcd, nothing is served until this orchestrator won the election.
        wait_for(&format!("{name}'s orchestrator to lead"), Duration::from_secs(30), || async {
            let (code, body) = api.get("/v1/leader").await?;
            Ok((code == 200 && body["role"] == "leader").then_some(()))
        })
        .await?;
        let tenant = "bench";
        let (code, body) = api.post("/v1/tenants", json!({"name": tenant, "quota": "unlimited"})).await?;
        ensure!(code == 201, "{name}: tenant: {code} {body}");
        let mut clusters = Vec::new();
        for c in 0..CLIENTS {
            let cluster = format!("c{c}");
            let path = format!("/v1/tenants/{tenant}/clusters/{cluster}");
            let (code, body) = api.put_yaml(&path, &spec(tenant, &cluster)).await?;
            ensure!(code == 201, "{name}: apply {cluster}: {code} {body}");
            clusters.push(format!("{path}/pools/datanode"));
        }
        Ok(Self { name, api, replicas: vec![0; clusters.len()], clusters, seq: Vec::new(), conc: Vec::new(), conc_ops: 0, conc_time: Duration::ZERO })
    }

    /// `ops` scale operations on the first cluster, one at a time.
    async fn sequential(&mut self, ops: u32) -> Result<()> {
        for _ in 0..ops {
            let replicas = next(&mut self.replicas[0]);
            let start = Instant::now();
            scale(&self.api, &self.clusters[0], replicas).await.with_context(|| self.name)?;
            self.seq.push(start.elapsed());
        }
        Ok(())
    }

    /// Every client scales its own cluster, one request at a time, for `time`.
    async fn concurrent(&mut self, time: Duration) -> Result<()> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + time;
        let mut tasks = Vec::new();
        for (path, replicas) in self.clusters.iter().zip(&self.replicas) {
            let (api, path, mut replicas) = (self.api.clone(), path.clone(), *replicas);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while tokio::time::Instant::now() < deadline {
                    let n = next(&mut replicas);
                    let t = Instant::now();
                    scale(&api, &path, n).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>((lat, replicas))
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let (lat, replicas) = task.await.context("a client panicked")?.with_context(|| self.name)?;
            self.conc_ops += lat.len();
            self.conc.extend(lat);
            self.replicas[i] = replicas;
        }
        self.conc_time += start.elapsed();
        Ok(())
    }
}

/// 1, 2, 1, 2, ...: every operation changes the cluster.
fn next(replicas: &mut u32) -> u32 {
    *replicas = if *replicas == 1 { 2 } else { 1 };
    *replicas
}

async fn scale(api: &Api, path: &str, replicas: u32) -> Result<()> {
    let (code, body) = api.patch(path, json!({ "replicas": replicas })).await?;
    if code != 200 {
        bail!("scale {path} to {replicas}: {code} {body}");
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    ms(sorted[i])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99, mean in ms, and ops/s of the throughput phase.
fn figures(s: &mut Subject) -> [f64; 6] {
    s.seq.sort();
    s.conc.sort();
    let mean = ms(s.seq.iter().sum::<Duration>()) / s.seq.len() as f64;
    [pct(&s.seq, 0.5), pct(&s.seq, 0.99), mean, s.conc_ops as f64 / s.conc_time.as_secs_f64(), pct(&s.conc, 0.5), pct(&s.conc, 0.99)]
}

fn arg<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => {
            let v = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
            Ok(Some(v.parse().map_err(|_| anyhow::anyhow!("{name}: cannot read `{v}`"))?))
        }
    }
}

fn start(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Orchestrator> {
    let mut flags = vec!["--rate-limit", "1000000"];
    flags.extend_from_slice(extra);
    Orchestrator::start_with(bin, dir, free_port(), &flags)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let prebuilt = std::env::args().any(|a| a == "--prebuilt");
    let ops: u32 = arg("--ops")?.unwrap_or(if quick { 60 } else { 300 });
    let seconds: f64 = arg("--seconds")?.unwrap_or(if quick { 2.0 } else { 10.0 });
    let members: usize = arg("--members")?.unwrap_or(3);
    ensure!(ops > 0 && seconds > 0.0 && members > 0, "--ops, --seconds and --members must be above 0");
    let bin = orchestrator_bin(prebuilt)?;
    let tmp = tempfile::Builder::new().prefix("storebench").tempdir()?;
    let etcd = EtcdCluster::start(&tmp.path().join("etcd"), members)?;
    let sqlite = start(&bin, &tmp.path().join("sqlite"), &[])?;
    let on_etcd = start(&bin, &tmp.path().join("etcd-orch"), &["--store", "etcd", "--etcd-endpoints", &etcd.endpoints()])?;
    let mut subjects = [Subject::new("sqlite", &sqlite).await?, Subject::new("etcd", &on_etcd).await?];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "storebench: herd scale (PATCH .../pools/datanode) through the HTTP API; {ops} sequential, then {CLIENTS} clients for {seconds} s, per store"
    );
    println!(
        "  release orchestrator; SQLite file and etcd data ({members} member{}, loopback) under {}; {} CPUs, load average {}",
        if members == 1 { "" } else { "s" },
        tmp.path().display(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    // Warm both up (connections, caches) before measuring.
    for s in &mut subjects {
        s.sequential(10).await?;
        s.seq.clear();
    }
    let per_round = ops.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        for s in &mut subjects {
            s.sequential(per_round.min(ops.saturating_sub(round * per_round))).await?;
        }
    }
    for _ in 0..ROUNDS {
        for s in &mut subjects {
            s.concurrent(Duration::from_secs_f64(seconds / f64::from(ROUNDS))).await?;
        }
    }
    let [a, b] = &mut subjects;
    let (fa, fb) = (figures(a), figures(b));
    println!();
    println!("{:<11} {:>9} {:>9} {:>9} | {:>10} {:>9} {:>9}", "", "seq p50", "seq p99", "seq mean", "8 clients", "p50", "p99");
    println!("{:<11} {:>9} {:>9} {:>9} | {:>10} {:>9} {:>9}", "store", "(ms)", "(ms)", "(ms)", "(ops/s)", "(ms)", "(ms)");
    for (s, f) in [(&a, fa), (&b, fb)] {
        println!("{:<11} {:>9.2} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2}", s.name, f[0], f[1], f[2], f[3], f[4], f[5]);
    }
    let r: Vec<f64> = fa.iter().zip(fb).map(|(x, y)| y / x).collect();
    println!("{:<11} {:>8.2}x {:>8.2}x {:>8.2}x | {:>9.2}x {:>8.2}x {:>8.2}x", "etcd/sqlite", r[0], r[1], r[2], r[3], r[4], r[5]);
    println!("({} and {} operations in the throughput phase)", a.conc_ops, b.conc_ops);
    drop((sqlite, on_etcd, etcd));
    Ok(())
}
