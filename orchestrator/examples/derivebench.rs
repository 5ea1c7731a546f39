//! Benchmark of one cluster's derivation (what each host of a cluster should run, see
//! `herd_orchestrator::desired`), on the orchestrator's own state over a store in a temporary folder:
//! `INSTANCES` DataNodes (100m CPU, 256Mi each, as `sim/specs/dn10k.yaml`) on `HOSTS` hosts
//! (16 CPU, 64Gi).
//!
//!     cargo run --release -p herd-orchestrator --example derivebench -- [HOSTS] [INSTANCES] [ROUNDS] [BEFORE]
//!
//! `BEFORE` clusters of the same size are applied first (a fuller store and fleet).
//!
//! Reported, in ms:
//! - the mean apply of the clusters applied before, when there are;
//! - `apply`: the apply (placement and commit, and the status it answers with);
//! - `first`: the first heartbeat of a host of the cluster (its first derivation);
//! - `fleet`: every host's first heartbeat, all together;
//! - `reports`: a status read after every host reported its instances running (a derivation
//!   for reports, from a cluster derived before);
//! - `one`: a status read after one instance's report changed, median of `ROUNDS` (a
//!   converging fleet's usual case: few reports move between two derivations; a status read
//!   evaluates the whole cluster);
//! - `quiet`: a heartbeat of another host of the cluster after one instance's report changed
//!   in a way that moves nothing the hosts run (created to running), once the cluster may be
//!   derived again for reports: median of `ROUNDS`.

use std::time::{Duration, Instant};

use herd_api::wire::{ContainerState, CreateTenant, Heartbeat, HostInfo, Observed};
use herd_api::yaml::parse_cluster_spec;
use herd_orchestrator::network::Settings;
use herd_orchestrator::state::State;
use herd_orchestrator::store::Store;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hosts = args.first().copied().unwrap_or(3_000);
    let instances = args.get(1).copied().unwrap_or(10_000);
    let rounds = args.get(2).copied().unwrap_or(9).max(1);
    let before = args.get(3).copied().unwrap_or(0);
    // NB: a store on disk, as the orchestrator runs (its readers have connections of their own).
    let dir = tempfile::tempdir()?;
    // NB: a minute's heartbeat interval: the hosts heartbeat only after the applies, and with
    // three seconds' they went `lost` (nothing placeable) once registering and the applies
    // before took longer than three intervals.
    let state = State::new(Store::open(&dir.path().join("herd.db"))?, Duration::from_secs(60), Settings::default_plan())?;
    for i in 0..hosts {
        let info: HostInfo = serde_json::from_value(serde_json::json!({
            "id": format!("h{i:05}"), "cpu": "16", "memory": "64Gi", "rack": format!("rack-{}", i % 40),
            "dataDisks": ["/data/1"], "dataDiskCapacity": ["4Ti"],
        }))?;
        state.register("agent".into(), info).await?;
    }
    state.create_tenant("admin".into(), serde_json::from_value::<CreateTenant>(serde_json::json!({"name": "sim", "quota": "unlimited"}))?, None).await?;
    let spec = |name: &str| {
        parse_cluster_spec(&format!(
            "tenant: sim\nname: {name}\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: {instances}, cpu: 100m, memory: 256Mi, maxPerHost: 100}}\n"
        ))
    };
    let t = Instant::now();
    for k in 0..before {
        state.apply("admin".into(), spec(&format!("before-{k}"))?, None).await?;
    }
    let applies = t.elapsed();
    let t = Instant::now();
    state.apply("admin".into(), spec("big")?, None).await?;
    let apply = t.elapsed();

    let heartbeat = |host: usize, observed: Vec<Observed>| Heartbeat {
        host_id: format!("h{host:05}"),
        observed,
        conditions: vec![],
        purged: vec![],
        applied: None,
        network_deltas: true,
    };
    let t = Instant::now();
    let mut sets = Vec::with_capacity(hosts);
    sets.push(state.heartbeat(heartbeat(0, vec![])).await?.desired);
    let first = t.elapsed();
    for h in 1..hosts {
        sets.push(state.heartbeat(heartbeat(h, vec![])).await?.desired);
    }
    let fleet = t.elapsed();
    // NB: the hosts' sets hold the clusters applied before too.
    for set in &mut sets {
        set.retain(|d| d.instance.cluster == "big");
    }
    let desired: usize = sets.iter().map(Vec::len).sum();
    if desired != instances {
        return Err(format!("{desired} instances desired on the hosts, {instances} applied").into());
    }

    let observed = |set: &[herd_api::wire::DesiredContainer], running: bool| -> Vec<Observed> {
        set.iter()
            .map(|d| Observed {
                instance: d.instance.clone(),
                container_id: format!("c-{}", d.instance.name),
                state: if running { ContainerState::Running } else { ContainerState::Created },
                started_at: None,
                exit_code: None,
                error: None,
                ip: None,
                config_hash: d.config_hash(),
                live_hash: None,
                hadoop: None,
            })
            .collect()
    };
    for (h, set) in sets.iter().enumerate() {
        state.heartbeat(heartbeat(h, observed(set, true))).await?;
    }
    let t = Instant::now();
    let status = state.cluster("sim".into(), "big".into()).await?;
    let reports = t.elapsed();

    // One host at a time flips its instances between created and running: a changed report.
    let busy = sets.iter().position(|s| !s.is_empty()).unwrap_or(0);
    let mut one = Vec::with_capacity(rounds);
    for r in 0..rounds {
        state.heartbeat(heartbeat(busy, observed(&sets[busy], r % 2 == 1))).await?;
        let t = Instant::now();
        state.cluster("sim".into(), "big".into()).await?;
        one.push(t.elapsed());
    }
    one.sort();
    // NB: a heartbeat derives a cluster again for reports only some time after its last
    // derivation (`desired::REDERIVE_MS`, or four times what the last one took).
    let other = sets.iter().rposition(|s| !s.is_empty()).unwrap_or(0);
    let mut quiet = Vec::with_capacity(rounds);
    for r in 0..rounds {
        state.heartbeat(heartbeat(busy, observed(&sets[busy], r % 2 == 0))).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        state.heartbeat(heartbeat(other, observed(&sets[other], true))).await?;
        quiet.push(t.elapsed());
    }
    quiet.sort();
    if before > 0 {
        println!("{before} clusters applied before: {:.1} ms each", ms(applies) / before as f64);
    }
    println!(
        "{hosts} hosts, {instances} DataNodes ({} in the status): apply {:.1} ms, first {:.1} ms, fleet {:.1} ms, reports {:.1} ms, one {:.1} ms, quiet {:.1} ms (medians of {rounds})",
        status.instances.len(),
        ms(apply),
        ms(first),
        ms(fleet),
        ms(reports),
        ms(one[rounds / 2]),
        ms(quiet[rounds / 2]),
    );
    Ok(())
}
