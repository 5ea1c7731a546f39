//! Scale-down corner cases, end to end on six simulated hosts (network namespaces, herd
//! networking, the Hadoop test doubles), checked through herd's API, Docker and the masters:
//! - `force`: 3 → 2 DataNodes at replication 3 goes through, is audited as
//!   `cluster.scale.force`, and status reports the under-replicated blocks;
//! - the orchestrator and the NameNode's agent SIGKILLed mid-decommission (6 → 3): it
//!   completes after their restart, no DataNode died before it was `Decommissioned`, no
//!   block ever missing;
//!
//! (Recommission on scale-up, the NodeManager drain with running containers and a DataNode
//! killed mid-decommission are covered by the orchestrator's and the state machine's tests;
//! their end-to-end versions are still to come.)
//!
//! Needs root, Docker and `nft`; fails, never skips, without them. The tests share addresses:
//! nextest runs them one at a time (test group `netns`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use herd_tests::decom::{DieEvents, Sampler, container, died_after_decommissioned, exec, has_condition, instances, leaving, six_hosts, status};
use herd_tests::netbed::{Plan, Testbed, require_root_docker_nft};
use herd_tests::{Api, TenantContainers, unique, wait_for};
use serde_json::{Value, json};

const CLUSTER: &str = "lv";

/// Disjoint from the other multi-host tests' addresses.
fn plan() -> Plan {
    six_hosts("10.221.0", "10.222.0.0/16")
}

/// HDFS only. `slow`: the NameNode schedules one re-replication per live DataNode a second,
/// so that a 6 → 3 decommission of 300 blocks takes a minute or so (time to interrupt it).
fn hdfs_spec(tenant: &str, datanodes: u32, slow: bool) -> String {
    herd_tests::decom::hdfs_spec(tenant, CLUSTER, datanodes, if slow { 1 } else { 4 }, 2)
}

struct Env {
    bed: Testbed,
    api: Api,
    tenant: String,
    _cleanup: TenantContainers,
}

impl Env {
    async fn start() -> Result<Env> {
        require_root_docker_nft(&plan());
        let mut bed = Testbed::new(&plan());
        let api = bed.start_orchestrator_with_token(&[]).await?;
        bed.start_agents(&api).await?;
        let tenant = unique("lv");
        let _cleanup = TenantContainers(tenant.clone());
        let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(code == 201, "tenant: {code} {body}");
        Ok(Env { bed, api, tenant, _cleanup })
    }

    fn path(&self) -> String {
        format!("/v1/tenants/{}/clusters/{CLUSTER}", self.tenant)
    }

    async fn status(&self) -> Result<Value> {
        status(&self.api, &self.tenant, CLUSTER).await
    }

    fn container(&self, instance: &str) -> String {
        container(&self.tenant, CLUSTER, instance)
    }

    async fn scale(&self, pool: &str, body: Value) -> Result<Value> {
        let (code, body) = self.api.patch(&format!("{}/pools/{pool}", self.path()), body).await?;
        ensure!(code == 200, "scale {pool}: {code} {body}");
        Ok(body)
    }

    /// Applies an HDFS cluster, waits for its DataNodes, writes `blocks` blocks of 4 KiB and
    /// waits until they are fully replicated.
    async fn hdfs(&self, datanodes: u32, blocks: u64, slow: bool) -> Result<()> {
        let (code, body) = self.api.put_yaml(&self.path(), &hdfs_spec(&self.tenant, datanodes, slow)).await?;
        ensure!(code == 201, "apply: {code} {body}");
        wait_for("the DataNodes live and In Service", Duration::from_secs(180), || async {
            let s = self.status().await?;
            let dns = instances(&s, "datanode");
            let ok = dns.len() == datanodes as usize
                && dns.iter().all(|i| i["hadoop"]["hdfs_state"] == "In Service" && i["hadoop"]["live"] == true);
            Ok(ok.then_some(()))
        })
        .await?;
        let (code, out) = exec(
            &self.container("namenode-0"),
            &format!("head -c {} /dev/urandom > /tmp/data && hdfs dfs -D dfs.blocksize=4096 -D dfs.replication=3 -put /tmp/data /data", blocks * 4096),
        );
        ensure!(code == 0, "hdfs dfs -put: {code} {out}");
        wait_for("the blocks fully replicated", Duration::from_secs(120), || async {
            let h = self.status().await?["hdfs"].clone();
            Ok((h["blocks_total"] == blocks && h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0).then_some(()))
        })
        .await
    }

    /// Waits until `pool` has `n` instances with none leaving.
    async fn settled(&self, pool: &str, n: usize, timeout: Duration) -> Result<Value> {
        wait_for(&format!("{pool} down to {n} with nothing leaving"), timeout, || async {
            let s = self.status().await?;
            let is = instances(&s, pool);
            Ok((is.len() == n && is.iter().all(|i| i["leaving"].is_null())).then_some(s))
        })
        .await
    }

    /// Waits until one of `names` is seen by the NameNode as `Decommission In Progress`.
    async fn decommissioning(&self, names: &[String]) -> Result<()> {
        wait_for("a DataNode Decommission In Progress", Duration::from_secs(60), || async {
            let s = self.status().await?;
            let any = instances(&s, "datanode").iter().any(|i| {
                names.iter().any(|n| i["instance"]["name"] == n.as_str()) && i["hadoop"]["hdfs_state"] == "Decommission In Progress"
            });
            Ok(any.then_some(()))
        })
        .await
    }

    /// Runs `f`; on failure prints the testbed's logs.
    async fn report<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            eprintln!("{}", self.bed.logs());
            eprintln!("{e:?}");
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_scale_below_replication_is_audited_and_reports_under_replication() -> Result<()> {
    let env = Env::start().await?;
    let result = async {
        env.hdfs(3, 30, false).await?;
        let body = env.scale("datanode", json!({"replicas": 2, "force": true})).await?;
        eprintln!("forced scale answered: {} leaving", leaving(&body, "datanode").len());
        env.settled("datanode", 2, Duration::from_secs(120)).await?;
        let (code, audit) = env.api.get("/v1/audit?limit=1000").await?;
        ensure!(code == 200, "audit: {code} {audit}");
        let forced: Vec<&Value> = audit["items"].as_array().map(|a| a.iter().filter(|e| e["action"] == "cluster.scale.force").collect()).unwrap_or_default();
        ensure!(forced.len() == 1, "one cluster.scale.force in the audit: {audit}");
        ensure!(forced[0]["resource"] == format!("{}/{CLUSTER}", env.tenant), "audited resource: {}", forced[0]);
        let s = wait_for("under-replicated blocks and an UnderReplicated condition", Duration::from_secs(60), || async {
            let s = env.status().await?;
            let under = s["hdfs"]["under_replicated_blocks"].as_u64().unwrap_or(0);
            Ok((under > 0 && has_condition(&s, "UnderReplicated")).then_some(s))
        })
        .await?;
        eprintln!(
            "forced 3 -> 2: audited; hdfs.under_replicated_blocks = {}, missing = {}; conditions: {}",
            s["hdfs"]["under_replicated_blocks"], s["hdfs"]["missing_blocks"], s["conditions"]
        );
        ensure!(s["hdfs"]["missing_blocks"] == 0, "blocks missing: {}", s["hdfs"]);
        Ok(())
    }
    .await;
    env.report(result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_survives_orchestrator_and_namenode_agent_crash() -> Result<()> {
    let mut env = Env::start().await?;
    let result = async {
        env.hdfs(6, 300, true).await?;
        let s = env.status().await?;
        let nn_host = instances(&s, "namenode")[0]["host"].as_str().unwrap_or_default().to_string();
        let nn_agent = env.bed.host_index(&nn_host).ok_or_else(|| anyhow::anyhow!("namenode on unknown host {nn_host}"))?;
        let nn = env.container("namenode-0");
        let sampler = Sampler::start(&nn);
        let events = DieEvents::start();
        let started = Instant::now();
        let body = env.scale("datanode", json!({"replicas": 3})).await?;
        let gone = leaving(&body, "datanode");
        ensure!(gone.len() == 3, "three leaving: {body}");
        env.decommissioning(&gone).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = env.status().await?;
        let moving: Vec<String> = instances(&s, "datanode").iter().filter(|i| !i["leaving"].is_null()).map(|i| format!("{}: {}", i["instance"]["name"], i["leaving"])).collect();
        eprintln!("killing the orchestrator and the NameNode's agent (host {nn_host}) {:?} in; leaving: {moving:?}", started.elapsed());
        ensure!(instances(&s, "datanode").len() == 6 && leaving(&s, "datanode").len() == 3, "the decommission finished before the crash: {s}");
        env.bed.kill_orchestrator();
        env.bed.kill_agent(nn_agent);
        tokio::time::sleep(Duration::from_secs(5)).await;
        env.bed.restart_orchestrator(&[]).await?;
        env.bed.start_agent(nn_agent)?;
        eprintln!("restarted both {:?} in", started.elapsed());
        let s = env.settled("datanode", 3, Duration::from_secs(300)).await;
        let took = started.elapsed();
        let samples = sampler.finish();
        let deaths = events.snapshot();
        drop(events);
        let s = s?;
        eprintln!("6 -> 3 across the crash done in {took:?}");
        ensure!(samples.missing.len() > 10, "too few samples: {}", samples.missing.len());
        ensure!(samples.missing.iter().all(|m| *m == 0), "missing blocks seen: {:?}", samples.missing);
        eprintln!("MissingBlocks sampled {} times, always 0 ({} reads failed)", samples.missing.len(), samples.failed);
        ensure!(!deaths.contains_key(&nn), "the NameNode's container died: {deaths:?}");
        died_after_decommissioned(&env.tenant, CLUSTER, &gone, &samples, &deaths)?;
        ensure!(s["hdfs"]["blocks_total"] == 300 && s["hdfs"]["missing_blocks"] == 0, "after: {}", s["hdfs"]);
        Ok(())
    }
    .await;
    env.report(result).await
}
