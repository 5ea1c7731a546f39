//! Failover benchmark: two orchestrators on a three-member etcd cluster on loopback (Debian's
//! etcd-server); the leader is SIGKILLed N times (10 by default) and started again as a
//! follower. Per kill it reports how long until the other one says it leads, and until a
//! write (creating a tenant) through it is acknowledged; then the median and the maximum.
//!
//!     cargo run -p herd-tests --bin failbench -- [KILLS] [--ttl 5s] [--release]
//!
//! At the default lease (5 s) a new leader is expected within the TTL plus a second: the
//! lease ends at most a TTL after the killed leader's last renewal, and followers look every
//! 500 ms.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use herd_tests::etcd::EtcdCluster;
use herd_tests::{Api, Orchestrator, bins, free_port, release_bins, unique};
use serde_json::json;

fn start(bin: &Path, etcd: &EtcdCluster, dir: &Path, port: u16, ttl: &str, first: Option<&Path>) -> Result<Orchestrator> {
    std::fs::create_dir_all(dir)?;
    if let Some(first) = first {
        for f in ["admin.token", "agent-logs.key"] {
            std::fs::copy(first.join(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
        }
    }
    Orchestrator::start_with(bin, dir, port, &["--store", "etcd", "--etcd-endpoints", &etcd.endpoints(), "--lease-ttl", ttl, "--rate-limit", "100000"])
}

async fn leads(o: &Orchestrator) -> bool {
    matches!(Api::new(&o.url).get("/v1/leader").await, Ok((200, body)) if body["role"] == "leader")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kills: usize = args.first().filter(|a| !a.starts_with("--")).map(|a| a.parse()).transpose().context("KILLS must be a number")?.unwrap_or(10);
    let ttl = args.iter().position(|a| a == "--ttl").and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| "5s".into());
    // NB: what is measured is bound by the lease, not by code speed: debug binaries unless asked.
    let bin = if args.iter().any(|a| a == "--release") { release_bins() } else { bins() };
    let tmp = tempfile::tempdir()?;
    let etcd = EtcdCluster::start(&tmp.path().join("etcd"), 3)?;
    let dirs = [tmp.path().join("a"), tmp.path().join("b")];
    let ports = [free_port(), free_port()];
    let mut orchs: [Option<Orchestrator>; 2] = [Some(start(bin, &etcd, &dirs[0], ports[0], &ttl, None)?), None];
    let t = Instant::now();
    while !leads(orchs[0].as_ref().unwrap()).await {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the first orchestrator does not lead");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    orchs[1] = Some(start(bin, &etcd, &dirs[1], ports[1], &ttl, Some(&dirs[0]))?);
    let (mut elected, mut written) = (Vec::new(), Vec::new());
    println!("{kills} leader kills, lease {ttl}, three etcd members on loopback");
    println!("{:>4}  {:>12}  {:>14}", "kill", "new leader", "write acked");
    let mut leader = 0;
    for k in 0..kills {
        let other = 1 - leader;
        // Let the follower see the leader before the kill, as in steady state.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(mut o) = orchs[leader].take() {
            o.proc.kill();
        }
        let killed = Instant::now();
        let o = orchs[other].as_ref().unwrap();
        while !leads(o).await {
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no new leader a minute after kill {k}: {}", o.proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = killed.elapsed();
        let api = o.api();
        let name = unique("fb");
        loop {
            if matches!(api.post("/v1/tenants", json!({ "name": name })).await, Ok((201, _))) {
                break;
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no write acknowledged a minute after kill {k}: {}", o.proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let w = killed.elapsed();
        println!("{:>4}  {:>10.2} s  {:>12.2} s", k + 1, e.as_secs_f64(), w.as_secs_f64());
        elected.push(e);
        written.push(w);
        orchs[leader] = Some(start(bin, &etcd, &dirs[leader], ports[leader], &ttl, None)?);
        leader = other;
    }
    let (me, mw) = (median(&mut elected), median(&mut written));
    let (xe, xw) = (elected.iter().max().copied().unwrap_or_default(), written.iter().max().copied().unwrap_or_default());
    println!("median {:>8.2} s  {:>12.2} s", me.as_secs_f64(), mw.as_secs_f64());
    println!("max    {:>8.2} s  {:>12.2} s", xe.as_secs_f64(), xw.as_secs_f64());
    Ok(())
}
