//! Decommission against naive removal: 6 DataNodes on 6 simulated hosts (network namespaces,
//! herd networking, the Hadoop test doubles), replication 3, 3,000 blocks of 4 KiB.
//! (a) herd's scale 6 → 3: time until the pool has 3 DataNodes with nothing leaving, and the
//!     largest `MissingBlocks` the NameNode reported meanwhile (sampled every 100 ms from
//!     inside its container);
//! (b) on a fresh cluster of the same shape, three DataNodes removed the naive way: their
//!     hosts' agents stopped (so nothing recreates them, as when machines are pulled) and
//!     their containers `docker rm -f`ed at once; `MissingBlocks` sampled for 60 s.
//!
//!     cargo run --release -p herd-tests --bin decombench
//!
//! Needs root, Docker and `nft`. Traffic goes only to the namespaces it makes.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use herd_tests::decom::{DieEvents, Sampler, container, exec, instances, leaving, six_hosts, status};
use herd_tests::netbed::{Testbed, require_root_docker_nft, sh};
use herd_tests::{Api, TenantContainers, unique, wait_for};
use serde_json::json;

const CLUSTER: &str = "bench";
const BLOCKS: u64 = 3000;

fn spec(tenant: &str) -> String {
    herd_tests::decom::hdfs_spec(tenant, CLUSTER, 6, 10, 10)
}

/// Applies a fresh cluster and writes the blocks; returns the tenant and its cleanup.
async fn cluster(api: &Api) -> Result<(String, TenantContainers)> {
    let tenant = unique("decb");
    let cleanup = TenantContainers(tenant.clone());
    let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
    ensure!(code == 201, "tenant: {code} {body}");
    let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/{CLUSTER}"), &spec(&tenant)).await?;
    ensure!(code == 201, "apply: {code} {body}");
    wait_for("six DataNodes live and In Service", Duration::from_secs(240), || async {
        let s = status(api, &tenant, CLUSTER).await?;
        let dns = instances(&s, "datanode");
        Ok((dns.len() == 6 && dns.iter().all(|i| i["hadoop"]["hdfs_state"] == "In Service" && i["hadoop"]["live"] == true)).then_some(()))
    })
    .await?;
    let (code, out) = exec(
        &container(&tenant, CLUSTER, "namenode-0"),
        &format!("head -c {} /dev/urandom > /tmp/data && hdfs dfs -D dfs.blocksize=4096 -D dfs.replication=3 -put /tmp/data /data", BLOCKS * 4096),
    );
    ensure!(code == 0, "hdfs dfs -put: {code} {out}");
    wait_for("the blocks fully replicated", Duration::from_secs(300), || async {
        let h = status(api, &tenant, CLUSTER).await?["hdfs"].clone();
        Ok((h["blocks_total"] == BLOCKS && h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0).then_some(()))
    })
    .await?;
    Ok((tenant, cleanup))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let plan = six_hosts("10.223.0", "10.224.0.0/16");
    require_root_docker_nft(&plan);
    let mut bed = Testbed::new(&plan);
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    println!("decombench: 1 NameNode + 6 DataNodes on 6 hosts, replication 3, {BLOCKS} blocks; removing 3 DataNodes");

    // (a) herd's scale-down.
    let (tenant, cleanup) = cluster(&api).await?;
    let nn = container(&tenant, CLUSTER, "namenode-0");
    let sampler = Sampler::start(&nn);
    let events = DieEvents::start();
    let started = Instant::now();
    let (code, body) = api.patch(&format!("/v1/tenants/{tenant}/clusters/{CLUSTER}/pools/datanode"), json!({"replicas": 3})).await?;
    ensure!(code == 200, "scale: {code} {body}");
    let gone = leaving(&body, "datanode");
    let done = wait_for("the pool down to 3 with nothing leaving", Duration::from_secs(900), || async {
        let s = status(&api, &tenant, CLUSTER).await?;
        let dns = instances(&s, "datanode");
        Ok((dns.len() == 3 && dns.iter().all(|i| i["leaving"].is_null())).then_some(s))
    })
    .await;
    let herd_took = started.elapsed();
    let herd_samples = sampler.finish();
    drop(events);
    if let Err(e) = done {
        eprintln!("{}", bed.logs());
        bail!("herd's scale-down: {e:?}");
    }
    let herd_max = herd_samples.missing.iter().copied().max().unwrap_or(0);
    eprintln!("(a) {gone:?} decommissioned and removed in {herd_took:?}; {} samples", herd_samples.missing.len());
    let (code, body) = api.delete(&format!("/v1/tenants/{tenant}/clusters/{CLUSTER}")).await?;
    ensure!((200..300).contains(&code), "delete: {code} {body}");
    drop(cleanup);

    // (b) naive: three DataNodes (not on the NameNode's host) gone at once.
    let (tenant, _cleanup) = cluster(&api).await?;
    let s = status(&api, &tenant, CLUSTER).await?;
    let nn_host = instances(&s, "namenode").first().and_then(|i| i["host"].as_str()).unwrap_or_default().to_string();
    let victims: Vec<(String, String)> = instances(&s, "datanode")
        .iter()
        .filter(|i| i["host"] != nn_host.as_str())
        .take(3)
        .map(|i| (i["instance"]["name"].as_str().unwrap_or_default().to_string(), i["host"].as_str().unwrap_or_default().to_string()))
        .collect();
    ensure!(victims.len() == 3, "three DataNodes off the NameNode's host: {s}");
    let nn = container(&tenant, CLUSTER, "namenode-0");
    let sampler = Sampler::start(&nn);
    for (_, host) in &victims {
        if let Some(n) = bed.host_index(host) {
            bed.kill_agent(n);
        }
    }
    let names: Vec<String> = victims.iter().map(|(name, _)| container(&tenant, CLUSTER, name)).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    let (ok, out) = sh("docker", &args);
    ensure!(ok, "docker rm -f: {out}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let naive_samples = sampler.finish();
    let naive_max = naive_samples.missing.iter().copied().max().unwrap_or(0);
    let naive_last = naive_samples.missing.last().copied().unwrap_or(0);
    eprintln!("(b) removed {:?}; {} samples", victims.iter().map(|v| &v.0).collect::<Vec<_>>(), naive_samples.missing.len());

    println!("{:<34}  {:>18}  {:>18}", "", "herd scale 6 -> 3", "docker rm -f x3");
    println!("{:<34}  {:>18}  {:>18}", "time (s)", format!("{:.1}", herd_took.as_secs_f64()), "60.0 (watched)");
    println!("{:<34}  {:>18}  {:>18}", "max MissingBlocks", herd_max, naive_max);
    println!("{:<34}  {:>18}  {:>18}", "MissingBlocks at the end", herd_samples.missing.last().copied().unwrap_or(0), naive_last);
    println!("{:<34}  {:>18}  {:>18}", "NameNode samples", herd_samples.missing.len(), naive_samples.missing.len());
    Ok(())
}
