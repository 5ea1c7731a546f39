//! Scale-down corner cases, end to end on six simulated hosts (network namespaces, herd
//! networking, the Hadoop test doubles), checked through herd's API, Docker and the masters:
//! - `force`: 3 → 2 DataNodes at replication 3 goes through, is audited as
//!   `cluster.scale.force`, and status reports the under-replicated blocks;
//! - the orchestrator and the NameNode's agent SIGKILLed mid-decommission (6 → 3): it
//!   completes after their restart, no DataNode died before it was `Decommissioned`, no
//!   block ever missing;
//! - 6 → 3 → 6 before the decommission finishes: the leaving DataNodes are recommissioned
//!   (same containers, none died, no new instances); then 6 → 3 again and a leaving
//!   DataNode's host dies (its agent killed, its container stopped): `DecommissionBlocked` names it,
//!   and once the host is back the decommission completes;
//! - NodeManager drain: removed only once its containers finished; at once with
//!   `drainTimeoutSeconds: 0`.
//!
//! Needs root, Docker and `nft`; fails, never skips, without them. The tests share addresses:
//! nextest runs them one at a time (test group `netns`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use herd_tests::decom::{DieEvents, Sampler, container, died_after_decommissioned, exec, has_condition, instances, leaving, six_hosts, status};
use herd_tests::netbed::{Plan, Testbed, require_root_docker_nft};
use herd_tests::{Api, TenantContainers, unique, wait_for};
use serde_json::{Value, json};

const CLUSTER: &str = "lv";

/// Disjoint from the other multi-host tests' addresses.
fn plan() -> Plan {
    six_hosts("10.229.0", "10.230.0.0/16")
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
        let t = Instant::now();
        require_root_docker_nft(&plan());
        let mut bed = Testbed::new(&plan());
        let api = bed.start_orchestrator_with_token(&[]).await?;
        bed.start_agents(&api).await?;
        let tenant = unique("lv");
        let _cleanup = TenantContainers(tenant.clone());
        let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(code == 201, "tenant: {code} {body}");
        eprintln!("testbed up in {:.1?}", t.elapsed());
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

fn yarn_spec(tenant: &str, nodemanagers: u32, drain_timeout_s: u64) -> String {
    format!(
        "tenant: {tenant}
name: {CLUSTER}
images:
  resourcemanager: herd/resourcemanager:testbed
  nodemanager: herd/nodemanager:testbed
configOverrides:
  yarn-site.xml:
    yarn.nm.liveness-monitor.expiry-interval-ms: '20000'
pools:
  resourcemanager: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  nodemanager: {{replicas: {nodemanagers}, cpu: '2', memory: 2Gi, lifecycle: {{drainTimeoutSeconds: {drain_timeout_s}}}}}
"
    )
}

impl Env {
    /// Applies the YARN cluster and waits for every NodeManager RUNNING.
    async fn yarn(&self, nodemanagers: u32, drain_timeout_s: u64) -> Result<()> {
        let (code, body) = self.api.put_yaml(&self.path(), &yarn_spec(&self.tenant, nodemanagers, drain_timeout_s)).await?;
        ensure!(code == 201 || code == 200, "apply: {code} {body}");
        wait_for("the NodeManagers RUNNING", Duration::from_secs(120), || async {
            let s = self.status().await?;
            let nms = instances(&s, "nodemanager");
            Ok((nms.len() == nodemanagers as usize && nms.iter().all(|i| i["hadoop"]["yarn_state"] == "RUNNING" && i["leaving"].is_null())).then_some(()))
        })
        .await
    }

    /// Runs simulated containers on `nodemanager-1` through the ResourceManager.
    fn sleep_app(&self, containers: u32, seconds: u32) -> Result<()> {
        let node = format!("nodemanager-1.{CLUSTER}.{}:8041", self.tenant);
        let (code, out) = exec(
            &self.container("resourcemanager-0"),
            &format!("yarn herd-double-sleep -nodes {node} -containers {containers} -duration {seconds} -memory 256"),
        );
        ensure!(code == 0, "herd-double-sleep: {code} {out}");
        Ok(())
    }

    /// Waits until status shows YARN containers running on `nodemanager-1`.
    async fn containers_on_nodemanager_1(&self, timeout: Duration) -> Result<()> {
        wait_for("YARN containers running on nodemanager-1", timeout, || async {
            let s = self.status().await?;
            let n = instances(&s, "nodemanager").iter().find(|i| i["instance"]["name"] == "nodemanager-1").and_then(|i| i["hadoop"]["containers"].as_u64());
            Ok(n.filter(|n| *n > 0).map(|_| ()))
        })
        .await
    }

    /// Waits until `nodemanager-1` is gone from status; returns the status then.
    async fn nodemanager_1_gone(&self, timeout: Duration, seen: &mut BTreeSet<String>) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let s = self.status().await?;
            match instances(&s, "nodemanager").iter().find(|i| i["instance"]["name"] == "nodemanager-1") {
                None => return Ok(()),
                Some(i) => {
                    seen.insert(i["hadoop"]["yarn_state"].as_str().unwrap_or("-").to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("nodemanager-1 still there after {timeout:?}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodemanager_drains_its_containers_before_removal() -> Result<()> {
    let env = Env::start().await?;
    let result = async {
        env.yarn(2, 120).await?;
        let nm1 = env.container("nodemanager-1");
        let events = DieEvents::start();
        env.sleep_app(2, 20)?;
        let submitted = Instant::now();
        // The ResourceManager places them on the NodeManager's next heartbeats: scale only once
        // they run there (a node that is already DECOMMISSIONING gets nothing new).
        env.containers_on_nodemanager_1(Duration::from_secs(15)).await?;
        let body = env.scale("nodemanager", json!({"replicas": 1})).await?;
        ensure!(leaving(&body, "nodemanager") == ["nodemanager-1"], "nodemanager-1 leaving: {body}");
        let mut seen = BTreeSet::new();
        let mut decommissioning_at = None;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            let s = env.status().await?;
            let Some(i) = instances(&s, "nodemanager").into_iter().find(|i| i["instance"]["name"] == "nodemanager-1") else { break };
            let state = i["hadoop"]["yarn_state"].as_str().unwrap_or("-").to_string();
            if state == "DECOMMISSIONING" && decommissioning_at.is_none() {
                decommissioning_at = Some(submitted.elapsed());
            }
            seen.insert(state);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let gone_at = submitted.elapsed();
        ensure!(instances(&env.status().await?, "nodemanager").len() == 1, "nodemanager-1 not removed in 90 s (states seen {seen:?})");
        let died = wait_for("nodemanager-1's container to die", Duration::from_secs(30), || async {
            Ok(events.snapshot().get(&nm1).copied().or_else(|| (!container_exists(&nm1)).then_some(0)))
        })
        .await?;
        let Some(decommissioning_at) = decommissioning_at else { bail!("never DECOMMISSIONING; states seen {seen:?}") };
        eprintln!("drain: DECOMMISSIONING {decommissioning_at:?} after the 20 s containers started, removed {gone_at:?} after (died at {died}); states seen {seen:?}");
        ensure!(decommissioning_at < Duration::from_secs(18), "DECOMMISSIONING only at {decommissioning_at:?}");
        ensure!(gone_at >= Duration::from_secs(19), "removed at {gone_at:?}, before its containers' 20 s were up");
        ensure!(!container_exists(&nm1), "nodemanager-1's container still exists");

        // drainTimeoutSeconds: 0 — removed at once even with containers running.
        env.yarn(2, 0).await?;
        env.sleep_app(2, 120)?;
        env.containers_on_nodemanager_1(Duration::from_secs(15)).await?;
        let started = Instant::now();
        env.scale("nodemanager", json!({"replicas": 1})).await?;
        let mut seen = BTreeSet::new();
        env.nodemanager_1_gone(Duration::from_secs(30), &mut seen).await?;
        let took = started.elapsed();
        eprintln!("drainTimeoutSeconds 0: nodemanager-1 removed {took:?} after the scale with 120 s containers running; states seen {seen:?}");
        ensure!(took < Duration::from_secs(15), "not immediate: {took:?}");
        Ok(())
    }
    .await;
    env.report(result).await
}

fn container_exists(name: &str) -> bool {
    std::process::Command::new("docker").args(["inspect", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// (instance name, container id) of every DataNode.
fn datanode_ids(s: &Value) -> BTreeSet<(String, String)> {
    instances(s, "datanode")
        .iter()
        .map(|i| {
            (
                i["instance"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                i["observed"]["container_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// One HDFS cluster for two scenarios (its 300 blocks take a minute to write and replicate):
/// 6 → 3 → 6 recommissions the leaving DataNodes, then 6 → 3 again with one leaving
/// DataNode's host dying mid-decommission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_recommissions_and_a_dead_leaving_datanode_blocks_with_advice() -> Result<()> {
    let mut env = Env::start().await?;
    let result = async {
        env.hdfs(6, 300, true).await?;
        let before = env.status().await?;
        let before_ids = datanode_ids(&before);
        ensure!(
            before_ids.iter().all(|(_, id)| !id.is_empty()),
            "no container ids: {before_ids:?}"
        );
        let events = DieEvents::start();

        // 6 -> 3 -> 6 while the decommission runs.
        let body = env.scale("datanode", json!({"replicas": 3})).await?;
        let gone = leaving(&body, "datanode");
        ensure!(gone.len() == 3, "three leaving: {body}");
        env.decommissioning(&gone).await?;
        let body = env.scale("datanode", json!({"replicas": 6})).await?;
        ensure!(
            instances(&body, "datanode").len() == 6,
            "six after scaling back: {body}"
        );
        let s = wait_for(
            "six DataNodes In Service, none leaving",
            Duration::from_secs(120),
            || async {
                let s = env.status().await?;
                let dns = instances(&s, "datanode");
                let ok = dns.len() == 6
                    && dns.iter().all(|i| {
                        i["leaving"].is_null()
                            && i["hadoop"]["hdfs_state"] == "In Service"
                            && i["hadoop"]["live"] == true
                    });
                Ok(ok.then_some(s))
            },
        )
        .await?;
        let after_ids = datanode_ids(&s);
        ensure!(
            before_ids == after_ids,
            "instances or containers changed:\nbefore {before_ids:?}\nafter  {after_ids:?}"
        );
        let prefix = format!("herd.{}.", env.tenant);
        let died: Vec<String> = events
            .snapshot()
            .keys()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect();
        ensure!(
            died.is_empty(),
            "containers died during the recommission: {died:?}"
        );
        eprintln!(
            "6 -> 3 -> 6: {gone:?} recommissioned In Service, the same {} containers",
            after_ids.len()
        );

        // 6 -> 3 again; one leaving DataNode's host dies (agent and container), so nothing
        // restarts it and HDFS cannot finish its decommission.
        let body = env.scale("datanode", json!({"replicas": 3})).await?;
        let gone = leaving(&body, "datanode");
        ensure!(gone.len() == 3, "three leaving: {body}");
        env.decommissioning(&gone).await?;
        let s = env.status().await?;
        let nn_host = instances(&s, "namenode")[0]["host"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let host_of = |name: &str| {
            instances(&s, "datanode")
                .iter()
                .find(|i| i["instance"]["name"] == name)
                .and_then(|i| i["host"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let Some(victim) = gone.iter().find(|g| host_of(g) != nn_host).cloned() else {
            bail!("every leaving DataNode shares the NameNode's host {nn_host}: {s}")
        };
        let host = host_of(&victim);
        let n = env
            .bed
            .host_index(&host)
            .ok_or_else(|| anyhow::anyhow!("{victim} on unknown host {host}"))?;
        env.bed.kill_agent(n);
        // NB: `docker stop`, not `docker kill`: Docker's own restart policy (unless-stopped)
        // restarts a container killed by a signal other than its stop signal.
        let (ok, out) = herd_tests::netbed::sh("docker", &["stop", "-t", "1", &env.container(&victim)]);
        ensure!(ok, "docker stop {victim}: {out}");
        let killed = Instant::now();
        let s = match wait_for("DecommissionBlocked", Duration::from_secs(90), || async {
            let s = env.status().await?;
            Ok(has_condition(&s, "DecommissionBlocked").then_some(s))
        })
        .await
        {
            Ok(s) => s,
            Err(e) => {
                let s = env.status().await?;
                let v = instances(&s, "datanode").into_iter().find(|i| i["instance"]["name"] == victim.as_str()).cloned();
                bail!("{e}\n{victim}: {}\nconditions: {}\nhdfs: {}", json!(v), s["conditions"], s["hdfs"]);
            }
        };
        let blocked: Vec<&Value> = s["conditions"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| c["type"] == "DecommissionBlocked")
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "DecommissionBlocked {:?} after {victim}'s host died: {}",
            killed.elapsed(),
            json!(blocked)
        );
        ensure!(
            blocked.iter().any(|c| c["message"]
                .as_str()
                .is_some_and(|m| m.contains(victim.as_str()) && m.contains("--force"))),
            "the condition does not name {victim} with advice: {blocked:?}"
        );
        ensure!(
            instances(&s, "datanode").len() == 6,
            "a DataNode was removed while one is blocked: {s}"
        );

        // The host comes back: its agent restarts the DataNode, which finishes its decommission.
        env.bed.start_agent(n)?;
        let s = match env.settled("datanode", 3, Duration::from_secs(120)).await {
            Ok(s) => s,
            Err(e) => {
                let s = env.status().await?;
                let leaving: Vec<Value> = instances(&s, "datanode").into_iter().filter(|i| !i["leaving"].is_null()).map(|i| json!([i["instance"]["name"], i["hadoop"], i["leaving"], i["observed"]["state"]])).collect();
                let (_, nn_log) = herd_tests::netbed::sh("docker", &["logs", "--tail", "60", &env.container("namenode-0")]);
                let (_, dn_log) = herd_tests::netbed::sh("docker", &["logs", "--tail", "30", &env.container(&victim)]);
                bail!("{e}\nleaving: {}\nconditions: {}\nhdfs: {}\n--- namenode log\n{nn_log}\n--- {victim} log\n{dn_log}", json!(leaving), s["conditions"], s["hdfs"]);
            }
        };
        ensure!(
            !has_condition(&s, "DecommissionBlocked"),
            "still blocked: {}",
            s["conditions"]
        );
        ensure!(
            s["hdfs"]["blocks_total"] == 300 && s["hdfs"]["missing_blocks"] == 0,
            "after: {}",
            s["hdfs"]
        );
        eprintln!(
            "host back: 6 -> 3 done {:?} after the kill",
            killed.elapsed()
        );
        Ok(())
    }
    .await;
    env.report(result).await
}
