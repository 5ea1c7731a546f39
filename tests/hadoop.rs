//! Hadoop dialtone end to end: an orchestrator and three agents on three simulated hosts
//! (network namespaces on two racks, one data disk each) run a NameNode, a ResourceManager, four
//! DataNodes and two NodeManagers (the Hadoop test doubles of `tests/double`, which join their
//! masters only through the config herd renders). Checked through herd's own status API and
//! through Hadoop's own commands run in the containers:
//! - every DataNode `In Service` and live, every NodeManager `RUNNING`;
//! - the topology table maps each DataNode to its host's rack and host (`/rack/host`);
//! - 100 blocks written with replication 3 end fully replicated (`hdfs fsck /` HEALTHY). NB:
//!   three machines, not two: herd's topology has a node-group layer per machine, so HDFS keeps
//!   at most one replica of a block per machine, and two machines can never hold three
//!   (herd says so with a `ReplicationAboveMachines` condition);
//! - a paused DataNode (a hung daemon) turns dead within the recheck interval plus a poll,
//!   and live again when unpaused;
//! - a hung NameNode daemon makes a condition with the reason, and status still answers;
//! - a config change rolls through the cluster one restart at a time.
//!
//! Needs root, Docker and `nft`; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use herd_tests::netbed::{HostPlan, Plan, Testbed, require_root_docker_nft};
use herd_tests::decom::{exec, instances};
use herd_tests::{Api, TenantContainers, unique, wait_for};
use serde_json::Value;

/// Disjoint from the network test's addresses, so the two may run side by side.
fn plan() -> Plan {
    Plan {
        underlay: "10.215.0",
        cluster_cidr: "10.216.0.0/16",
        hosts: vec![
            HostPlan { rack: Some("rack-a"), data_disks: 1, ..HostPlan::ns("a") },
            HostPlan { rack: Some("rack-b"), data_disks: 1, ..HostPlan::ns("b") },
            HostPlan { rack: Some("rack-b"), data_disks: 1, ..HostPlan::ns("c") },
        ],
    }
}

/// DataNodes heartbeat every second and are dead after 2 × 2 s + 10 × 1 s = 14 s of silence
/// (Hadoop's formula); small blocks are allowed so that 100 blocks are quick to write.
const RECHECK_MS: u64 = 2000;
const HEARTBEAT_S: u64 = 1;

fn spec(tenant: &str) -> String {
    spec_with(tenant, 10000)
}

fn spec_with(tenant: &str, block_report_ms: u64) -> String {
    format!(
        "tenant: {tenant}
name: hd
images:
  namenode: herd/namenode:testbed
  resourcemanager: herd/resourcemanager:testbed
  datanode: herd/datanode:testbed
  nodemanager: herd/nodemanager:testbed
hdfs:
  replication: 3
configOverrides:
  hdfs-site.xml:
    dfs.heartbeat.interval: '{HEARTBEAT_S}'
    dfs.namenode.heartbeat.recheck-interval: '{RECHECK_MS}'
    dfs.namenode.fs-limits.min-block-size: '4096'
    dfs.blockreport.intervalMsec: '{block_report_ms}'
    dfs.namenode.redundancy.interval.seconds: '1'
  yarn-site.xml:
    yarn.nm.liveness-monitor.expiry-interval-ms: '20000'
pools:
  namenode: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  resourcemanager: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  datanode: {{replicas: 4, cpu: 100m, memory: 256Mi, maxPerHost: 2}}
  nodemanager: {{replicas: 2, cpu: '1', memory: 1Gi}}
"
    )
}

fn container(tenant: &str, instance: &str) -> String {
    herd_tests::decom::container(tenant, "hd", instance)
}

async fn status(api: &Api, tenant: &str) -> Result<Value> {
    herd_tests::decom::status(api, tenant, "hd").await
}

fn hdfs_state(i: &Value) -> (String, Option<bool>) {
    (i["hadoop"]["hdfs_state"].as_str().unwrap_or("-").to_string(), i["hadoop"]["live"].as_bool())
}

/// Waits until HDFS has all four DataNodes live and in service and YARN both NodeManagers
/// RUNNING, as `herd status` shows them.
async fn dialtone(api: &Api, tenant: &str, timeout: Duration) -> Result<Value> {
    wait_for("every DataNode In Service and live, every NodeManager RUNNING", timeout, || async {
        let s = status(api, tenant).await?;
        let dns = instances(&s, "datanode");
        let nms = instances(&s, "nodemanager");
        let dn_ok = dns.len() == 4 && dns.iter().all(|i| hdfs_state(i) == ("In Service".into(), Some(true)));
        let nm_ok = nms.len() == 2 && nms.iter().all(|i| i["hadoop"]["yarn_state"] == "RUNNING");
        let summary = s["hdfs"]["live_datanodes"] == 4 && s["yarn"]["active_nodemanagers"] == 2;
        Ok((dn_ok && nm_ok && summary).then_some(s))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hadoop_dialtone_across_racks() -> Result<()> {
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    let tenant = unique("hd");
    let _cleanup = TenantContainers(tenant.clone());
    api.create_tenant_and_cluster(&tenant, "hd", &spec(&tenant)).await?;

    let result = async {
        let s = dialtone(&api, &tenant, Duration::from_secs(180)).await?;

        // The topology table the NameNode reads maps every DataNode to its host's rack and host.
        let hosts: BTreeMap<String, (String, String)> = bed
            .hosts
            .iter()
            .map(|h| (h.id.clone(), (h.plan.rack.unwrap_or_default().to_string(), h.data_dir.display().to_string())))
            .collect();
        let nn = instances(&s, "namenode")[0];
        let nn_host = nn["host"].as_str().context("namenode host")?;
        let table_path = format!("{}/conf/{tenant}/hd/namenode-0/topology.table", hosts[nn_host].1);
        let table = std::fs::read_to_string(&table_path).with_context(|| format!("reading {table_path}"))?;
        for dn in instances(&s, "datanode") {
            let name = format!("{}.hd.{tenant}", dn["instance"]["name"].as_str().unwrap());
            let host = dn["host"].as_str().unwrap();
            let want = format!("{name} /{}/{host}", hosts[host].0);
            ensure!(table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want), "topology table lacks `{want}`:\n{table}");
        }
        // The config is mounted read-only where Hadoop looks for it.
        let (code, out) = exec(&container(&tenant, "datanode-0"), "grep -c fs.defaultFS /etc/hadoop/conf/core-site.xml && touch /etc/hadoop/conf/x");
        ensure!(code != 0 && out.starts_with('1') && out.contains("Read-only"), "config not mounted read-only: {code} {out}");

        // 100 blocks with replication 3, written through the NameNode's own client.
        let nn_container = container(&tenant, "namenode-0");
        let (code, out) = exec(
            &nn_container,
            "head -c 409600 /dev/urandom > /tmp/data && hdfs dfs -D dfs.blocksize=4096 -D dfs.replication=3 -put /tmp/data /data",
        );
        ensure!(code == 0, "hdfs dfs -put: {code} {out}");
        // NB: the agent reads the NameNode's beans in three queries at once, so the per-DataNode
        // block counts (NameNodeInfo) may trail the totals (FSNamesystemState) by one read:
        // wait for both, then require exactly 300 replicas below.
        let replicated = wait_for("100 blocks fully replicated on the DataNodes", Duration::from_secs(60), || async {
            let s = status(&api, &tenant).await?;
            let h = &s["hdfs"];
            let held: u64 = instances(&s, "datanode").iter().filter_map(|i| i["hadoop"]["blocks"].as_u64()).sum();
            Ok((h["blocks_total"] == 100 && h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0 && held >= 300).then_some(s))
        })
        .await;
        let s = match replicated {
            Ok(s) => s,
            Err(e) => {
                let s = status(&api, &tenant).await?;
                eprintln!("hdfs: {}\nconditions: {}\ntopology:\n{table}", s["hdfs"], s["conditions"]);
                eprintln!("{}", exec(&nn_container, "hdfs dfsadmin -report; hdfs fsck /").1);
                return Err(e);
            }
        };
        let (code, fsck) = exec(&nn_container, "hdfs fsck /");
        ensure!(code == 0, "fsck: {code} {fsck}");
        // Hadoop aligns with tabs; compare word by word.
        let words: Vec<String> = fsck.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        for want in ["Status: HEALTHY", "Total blocks (validated): 100 (avg. block size 4096 B)", "Under-replicated blocks: 0 (0.0 %)", "Number of data-nodes: 4", "Number of racks: 2", "The filesystem under path '/' is HEALTHY"] {
            ensure!(words.iter().any(|l| l == want), "fsck lacks {want:?}:\n{fsck}");
        }
        let blocks: u64 = instances(&s, "datanode").iter().filter_map(|i| i["hadoop"]["blocks"].as_u64()).sum();
        ensure!(blocks == 300, "DataNodes hold {blocks} replicas, want 300");

        // A hung DataNode: dead within the recheck interval plus a poll; live again after.
        let paused = container(&tenant, "datanode-3");
        let (code, out) = exec_docker(&["pause", &paused]);
        ensure!(code == 0, "docker pause: {out}");
        let start = Instant::now();
        let limit = Duration::from_millis(2 * RECHECK_MS + 10_000 * HEARTBEAT_S) + Duration::from_secs(6);
        wait_for("the paused DataNode dead in herd status", limit + Duration::from_secs(20), || async {
            let s = status(&api, &tenant).await?;
            let dn = instances(&s, "datanode").into_iter().find(|i| i["instance"]["name"] == "datanode-3").cloned();
            let dead = dn.is_some_and(|i| i["hadoop"]["live"] == false);
            let degraded = s["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "HdfsDegraded"));
            Ok((dead && degraded).then_some(()))
        })
        .await?;
        let took = start.elapsed();
        ensure!(took <= limit, "dead after {took:?}, want within {limit:?}");
        eprintln!("paused DataNode seen dead after {took:?} (limit {limit:?})");
        let (code, out) = exec_docker(&["unpause", &paused]);
        ensure!(code == 0, "docker unpause: {out}");
        dialtone(&api, &tenant, Duration::from_secs(60)).await?;

        // A NameNode daemon that hangs in a running container answers nothing: a condition
        // with the reason; status still works.
        let (code, out) = exec(&nn_container, "kill -STOP $(pidof hadoop-double)");
        ensure!(code == 0, "stopping the NameNode daemon: {out}");
        let s = wait_for("a NameNodeUnreadable condition", Duration::from_secs(30), || async {
            let s = status(&api, &tenant).await?;
            let c = s["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "NameNodeUnreadable").cloned());
            Ok(c.map(|c| (s, c)))
        })
        .await?;
        ensure!(s.1["message"].as_str().is_some_and(|m| m.contains("9870")), "no reason in {}", s.1);
        ensure!(s.0["instances"].as_array().is_some_and(|i| i.len() == 8), "status lost instances: {}", s.0);
        exec(&nn_container, "kill -CONT $(pidof hadoop-double)");
        dialtone(&api, &tenant, Duration::from_secs(60)).await?;

        // A config change rolls through one restart at a time: never two workers of a role
        // out of HDFS/YARN at once, and every instance ends on the new config.
        let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/hd"), &spec_with(&tenant, 11000)).await?;
        ensure!(code == 200, "re-apply: {code} {body}");
        // Restarting a master takes every worker out of its view until they register again
        // (as with real Hadoop): count workers out only once the masters have been up a while.
        let worst = std::sync::Mutex::new((0usize, 0usize, false));
        let masters = std::sync::Mutex::new((String::new(), Instant::now()));
        wait_for("the new config on every instance, one restart at a time", Duration::from_secs(240), || async {
            let s = status(&api, &tenant).await?;
            let ids: String = ["namenode", "resourcemanager"]
                .iter()
                .flat_map(|p| instances(&s, p))
                .map(|i| i["observed"]["container_id"].as_str().unwrap_or("-").to_string())
                .collect();
            let settled = {
                let mut m = masters.lock().unwrap();
                if m.0 != ids {
                    *m = (ids, Instant::now());
                }
                m.1.elapsed() > Duration::from_secs(10)
            };
            let out_dn = instances(&s, "datanode").iter().filter(|i| hdfs_state(i) != ("In Service".into(), Some(true))).count();
            let out_nm = instances(&s, "nodemanager").iter().filter(|i| i["hadoop"]["yarn_state"] != "RUNNING").count();
            let rolling = s["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "ConfigRollout"));
            {
                let mut w = worst.lock().unwrap();
                let (dn, nm) = if settled { (out_dn, out_nm) } else { (0, 0) };
                *w = (w.0.max(dn), w.1.max(nm), w.2 || rolling);
            }
            let all = s["instances"].as_array().cloned().unwrap_or_default();
            let done = all.iter().all(|i| {
                let name = i["instance"]["name"].as_str().unwrap_or_default();
                let (code, out) = exec(&container(&tenant, name), "grep -A1 dfs.blockreport.intervalMsec /etc/hadoop/conf/hdfs-site.xml");
                code == 0 && out.contains("11000") && i["hadoop"]["rollout"].is_null()
            });
            Ok((done && out_dn == 0 && out_nm == 0).then_some(()))
        })
        .await?;
        let (dn, nm, saw_rollout) = *worst.lock().unwrap();
        ensure!(saw_rollout, "no ConfigRollout condition was ever shown");
        ensure!(dn <= 1 && nm <= 1, "more than one worker out at once during the rollout: {dn} DataNodes, {nm} NodeManagers");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("{}", bed.logs());
        eprintln!("{e:?}");
    }
    result
}

fn exec_docker(args: &[&str]) -> (i32, String) {
    let out = Command::new("docker").args(args).output().expect("docker");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
