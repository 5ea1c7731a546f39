//! Scale-down that never loses HDFS data, end to end: an orchestrator and six agents on six
//! simulated hosts (two racks) run a NameNode and six DataNodes (the Hadoop test doubles), 300 blocks at
//! replication 3. Checked through herd's API, Docker's events and the NameNode's own `/jmx`
//! (sampled continuously inside its container):
//! - 6 → 3: `MissingBlocks` is 0 at every sample; each removed container died only after the
//!   NameNode had shown its DataNode `Decommissioned`; the 300 blocks end fully replicated
//!   on the 3 left, and the pool has 3 instances with nothing leaving;
//! - 3 → 2 with replication 3: refused (422 naming `hdfs.replication`), nothing changed.
//!
//! Needs root, Docker and `nft`; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use anyhow::{Result, ensure};
use herd_tests::decom::{DieEvents, Sampler, died_after_decommissioned, exec, instances, six_hosts};
use herd_tests::netbed::{Plan, Testbed, require_root_docker_nft};
use herd_tests::{TenantContainers, unique, wait_for};
use serde_json::json;

/// One DataNode per machine: with herd's node groups HDFS keeps at most one replica of a block
/// per machine, so the three DataNodes left must be on three machines. Addresses disjoint from
/// the other multi-host tests'.
fn plan() -> Plan {
    six_hosts("10.217.0", "10.218.0.0/16")
}

async fn status(api: &herd_tests::Api, tenant: &str) -> Result<serde_json::Value> {
    herd_tests::decom::status(api, tenant, "dc").await
}

fn container(tenant: &str, instance: &str) -> String {
    herd_tests::decom::container(tenant, "dc", instance)
}

fn spec(tenant: &str, datanodes: u32) -> String {
    // Hadoop's defaults for how fast re-replication runs (2 per DataNode an iteration, 2 streams).
    herd_tests::decom::hdfs_spec(tenant, "dc", datanodes, 2, 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_decommissions_without_losing_a_block() -> Result<()> {
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    let tenant = unique("dc");
    let _cleanup = TenantContainers(tenant.clone());
    api.create_tenant_and_cluster(&tenant, "dc", &spec(&tenant, 6)).await?;

    let result = async {
        wait_for("six DataNodes live and In Service", Duration::from_secs(180), || async {
            let s = status(&api, &tenant).await?;
            let dns = instances(&s, "datanode");
            let ok = dns.len() == 6
                && dns.iter().all(|i| i["hadoop"]["hdfs_state"] == "In Service" && i["hadoop"]["live"] == true);
            Ok(ok.then_some(()))
        })
        .await?;
        let nn = container(&tenant, "namenode-0");
        let (code, out) = exec(
            &nn,
            "head -c 1228800 /dev/urandom > /tmp/data && hdfs dfs -D dfs.blocksize=4096 -D dfs.replication=3 -put /tmp/data /data",
        );
        ensure!(code == 0, "hdfs dfs -put: {code} {out}");
        wait_for("300 blocks fully replicated", Duration::from_secs(90), || async {
            let h = status(&api, &tenant).await?["hdfs"].clone();
            Ok((h["blocks_total"] == 300 && h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0).then_some(()))
        })
        .await?;

        // 6 -> 3, watched from the NameNode and from Docker.
        let sampler = Sampler::start(&nn);
        let events = DieEvents::start();
        let started = std::time::Instant::now();
        let (code, body) = api.patch(&format!("/v1/tenants/{tenant}/clusters/dc/pools/datanode"), json!({"replicas": 3})).await?;
        ensure!(code == 200, "scale: {code} {body}");
        let leaving: Vec<String> = instances(&body, "datanode")
            .iter()
            .filter(|i| !i["leaving"].is_null())
            .map(|i| i["instance"]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        ensure!(leaving.len() == 3, "three leaving right after the scale: {body}");
        let s = wait_for("the pool down to 3 with nothing leaving", Duration::from_secs(240), || async {
            let s = status(&api, &tenant).await?;
            let dns = instances(&s, "datanode");
            Ok((dns.len() == 3 && dns.iter().all(|i| i["leaving"].is_null())).then_some(s))
        })
        .await;
        let took = started.elapsed();
        let samples = sampler.finish();
        let deaths = events.snapshot();
        drop(events);
        let s = s?;
        eprintln!("6 -> 3 DataNodes decommissioned and removed in {took:?}");

        let missing = &samples.missing;
        ensure!(missing.len() > 10, "too few samples: {}", missing.len());
        ensure!(missing.iter().all(|m| *m == 0), "missing blocks seen: {missing:?}");
        eprintln!("MissingBlocks sampled {} times during the decommission, always 0", missing.len());
        died_after_decommissioned(&tenant, "dc", &leaving, &samples, &deaths)?;
        let h = &s["hdfs"];
        ensure!(h["blocks_total"] == 300 && h["missing_blocks"] == 0, "after: {h}");
        wait_for("300 blocks fully replicated on the 3 left", Duration::from_secs(60), || async {
            let s = status(&api, &tenant).await?;
            let blocks: u64 = instances(&s, "datanode").iter().filter_map(|i| i["hadoop"]["blocks"].as_u64()).sum();
            let h = &s["hdfs"];
            Ok((h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0 && blocks == 900).then_some(()))
        })
        .await?;
        // Decommissioned DataNodes leave no data folder behind; the others keep theirs.
        let folder = |name: &str| bed.hosts.iter().map(|h| h.data_dir.join("disk0/herd").join(&tenant).join("dc").join(name)).find(|d| d.exists());
        for name in &leaving {
            ensure!(folder(name).is_none(), "{name}'s data folder is still there: {:?}", folder(name));
        }
        for i in instances(&s, "datanode") {
            let name = i["instance"]["name"].as_str().unwrap_or_default();
            ensure!(folder(name).is_some(), "{name} (kept) has no data folder");
        }

        // 3 -> 2 at replication 3: refused, nothing changed.
        let before = status(&api, &tenant).await?;
        let (code, body) = api.patch(&format!("/v1/tenants/{tenant}/clusters/dc/pools/datanode"), json!({"replicas": 2})).await?;
        ensure!(code == 422, "3 -> 2 not refused: {code} {body}");
        ensure!(body.to_string().contains("hdfs.replication"), "refusal does not name hdfs.replication: {body}");
        let after = status(&api, &tenant).await?;
        ensure!(before["generation"] == after["generation"], "the refused scale changed the cluster");
        ensure!(instances(&after, "datanode").iter().all(|i| i["leaving"].is_null()), "the refused scale left instances leaving");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("{}", bed.logs());
        eprintln!("{e:?}");
    }
    result
}
