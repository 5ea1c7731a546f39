//! Benchmark of the store implementations side by side: scale-like writes (read the cluster
//! and its instances, write one instance, bump the revision, append an audit entry: one
//! transaction each), first one writer at a time (latency), then `WRITERS` at once
//! (throughput, conflicts retried on etcd), on SQLite in a temp dir and on etcd at `ETCD_URL`
//! (start one with `--max-txn-ops 10000`; the benchmark uses a fresh prefix).
//!
//!     cargo run --release -p herd-orchestrator --example storebench -- ETCD_URL [WRITES] [WRITERS]

use std::time::{Duration, Instant};

use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::Quota;
use herd_api::Role;
use herd_orchestrator::reconciler::Instance;
use herd_orchestrator::store::audit::Change;
use herd_orchestrator::store::{Store, etcd};

const SPEC: &str = "tenant: t\nname: c\nimages: {datanode: d}\npools:\n  datanode: {replicas: 1, cpu: 100m, memory: 256Mi}\n";

fn instance(n: u32) -> Instance {
    Instance {
        instance: InstanceRef::new("t", "c", Role::Datanode, n),
        role: Role::Datanode,
        ordinal: n,
        host: Some(format!("h{}", n % 10)),
        pending: None,
        cpu: Cpu(100),
        memory: Memory(256 << 20),
        placement: 0,
    }
}

async fn write(store: &Store, n: u32) -> herd_orchestrator::Result<()> {
    store
        .write(move |tx| {
            let _ = tx.cluster("t", "c")?;
            let before = tx.instances(Some(("t", "c")))?.len() as u64;
            tx.put_instance(&instance(n))?;
            tx.bump_revision()?;
            let ch = Change { actor: "bench", action: "cluster.scale", resource: "t/c", before: Some(before), after: Some(before + 1) };
            tx.record_audit(0, &ch, None)
        })
        .await
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn bench(name: &str, store: Store, writes: u32, writers: u32) -> herd_orchestrator::Result<()> {
    let spec = herd_api::yaml::parse_cluster_spec(SPEC).map_err(|e| herd_orchestrator::Error::invalid("spec", e.to_string()))?;
    store
        .write(move |tx| {
            tx.insert_tenant("t", &Quota::default(), 0)?;
            tx.put_cluster(1, &spec)
        })
        .await?;
    let mut lat = Vec::new();
    for n in 0..writes {
        let t = Instant::now();
        write(&store, n).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..writes / writers {
                write(&store, writes + w * writes + n).await?;
            }
            Ok::<_, herd_orchestrator::Error>(())
        }));
    }
    for task in tasks {
        task.await.map_err(herd_orchestrator::Error::Worker)??;
    }
    let concurrent = (writes / writers) * writers;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{name:6} one at a time: {writes} writes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | {writers} writers: {concurrent} writes in {secs:.2} s = {:.0} writes/s",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        concurrent as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> herd_orchestrator::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url: url::Url = args
        .first()
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| herd_orchestrator::Error::invalid("ETCD_URL", "give the client URL of an etcd, e.g. http://127.0.0.1:2379"))?;
    let writes = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
    let writers = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(8);
    let dir = std::env::temp_dir().join(format!("herd-storebench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| herd_orchestrator::Error::invalid("tempdir", e.to_string()))?;
    bench("sqlite", Store::open(&dir.join("herd.db"))?, writes, writers).await?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = etcd::Options::new(vec![url]);
    options.prefix = format!("/herd-storebench/{}", std::process::id());
    bench("etcd", Store::etcd(options)?, writes, writers).await
}
