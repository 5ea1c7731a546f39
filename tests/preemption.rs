//! Guaranteed shares end to end with real agents, Docker and the YARN test doubles: tenant b
//! (guaranteed 4 CPU) fills three hosts (8 CPU each) with NodeManagers it borrows; tenant a
//! (guaranteed 6 CPU) asks for a ResourceManager and two NodeManagers within its guarantee.
//! Two of b's NodeManagers are drained through b's ResourceManager (YARN graceful
//! decommission) and removed, a's NodeManagers run in their place and join a's YARN, b's come
//! back pending; b's DataNodes and masters keep their containers.
//!
//! Needs root, Docker and `nft`; fails, never skips, without them. Test group `netns`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use herd_tests::decom::{container, instances, status};
use herd_tests::netbed::{HostPlan, Plan, Testbed, require_root_docker_nft};
use herd_tests::{TenantContainers, unique, wait_for};
use serde_json::{Value, json};

fn plan() -> Plan {
    Plan { underlay: "10.233.0", cluster_cidr: "10.234.0.0/16", hosts: ["a", "b", "c"].iter().map(|n| HostPlan { data_disks: 1, ..HostPlan::ns(n) }).collect() }
}

fn spec(tenant: &str, masters: &str, datanodes: u32, nodemanagers: u32) -> String {
    format!(
        "tenant: {tenant}
name: y
images:
  namenode: herd/namenode:testbed
  resourcemanager: herd/resourcemanager:testbed
  datanode: herd/datanode:testbed
  nodemanager: herd/nodemanager:testbed
hdfs:
  replication: 2
configOverrides:
  yarn-site.xml:
    yarn.nm.liveness-monitor.expiry-interval-ms: '20000'
pools:
{masters}  datanode: {{replicas: {datanodes}, cpu: '1', memory: 256Mi}}
  nodemanager: {{replicas: {nodemanagers}, cpu: '2', memory: 1Gi}}
"
    )
}

/// Each instance's docker container id, by instance name.
fn container_ids(tenant: &str, names: &[String]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| {
            let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.Id}}", &container(tenant, "y", n)]).output();
            (n.clone(), out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default())
        })
        .collect()
}

/// Every instance of a cluster's status.
fn all(s: &Value) -> Vec<&Value> {
    s["instances"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn name(i: &Value) -> String {
    i["instance"]["name"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_nodemanagers_drain_for_a_guarantee_on_real_hosts() -> Result<()> {
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    let (a, b) = (unique("ga"), unique("gb"));
    let _cleanup = (TenantContainers(a.clone()), TenantContainers(b.clone()));
    let result = async {
        let (code, body) = api.post("/v1/tenants", json!({"name": b, "quota": {"guaranteed": {"cpu": "4", "memory": "4Gi"}}})).await?;
        ensure!(code == 201, "tenant b: {code} {body}");
        let (code, body) = api.post("/v1/tenants", json!({"name": a, "quota": {"guaranteed": {"cpu": "6", "memory": "4Gi"}}})).await?;
        ensure!(code == 201, "tenant a: {code} {body}");

        // b: 4 CPU of masters and DataNodes, 9 NodeManagers of 2 CPU: 22 of the 24 CPU, with
        // 1 CPU left on two hosts.
        let masters = "  namenode: {replicas: 1, cpu: '1', memory: 512Mi}\n  resourcemanager: {replicas: 1, cpu: '1', memory: 512Mi}\n";
        let (code, body) = api.put_yaml(&format!("/v1/tenants/{b}/clusters/y"), &spec(&b, masters, 2, 9)).await?;
        ensure!(code == 201, "apply b: {code} {body}");
        let before = wait_for("b's NodeManagers RUNNING in YARN and DataNodes In Service", Duration::from_secs(180), || async {
            let s = status(&api, &b, "y").await?;
            let nms = instances(&s, "nodemanager");
            let dns = instances(&s, "datanode");
            let ok = nms.len() == 9
                && nms.iter().all(|i| i["hadoop"]["yarn_state"] == "RUNNING")
                && dns.iter().all(|i| i["hadoop"]["hdfs_state"] == "In Service");
            Ok(ok.then_some(s))
        })
        .await?;
        let kept: Vec<String> = ["namenode-0", "resourcemanager-0", "datanode-0", "datanode-1"].map(String::from).to_vec();
        let ids_before = container_ids(&b, &kept);
        let hosts_before: BTreeMap<String, Value> = all(&before).iter().map(|i| (name(i), i["host"].clone())).collect();

        // a: a ResourceManager (1 CPU, fits) and two NodeManagers (2 CPU each, do not).
        let a_masters = "  resourcemanager: {replicas: 1, cpu: '1', memory: 512Mi}\n";
        let (code, body) = api.put_yaml(&format!("/v1/tenants/{a}/clusters/y"), &spec(&a, a_masters, 0, 2).replace("hdfs:\n  replication: 2\n", "")).await?;
        ensure!(code == 201, "apply a: {code} {body}");
        // Watch b's leaving NodeManagers on the way (a poll with a deadline, recording what it sees).
        let (mut phases, mut yarn_states) = (BTreeSet::new(), BTreeSet::new());
        let deadline = Instant::now() + Duration::from_secs(180);
        let a_running = loop {
            let sb = status(&api, &b, "y").await?;
            for i in instances(&sb, "nodemanager") {
                if let Some(p) = i["leaving"]["phase"]["phase"].as_str() {
                    phases.insert(p.to_string());
                    yarn_states.insert(i["hadoop"]["yarn_state"].as_str().unwrap_or("-").to_string());
                }
            }
            let sa = status(&api, &a, "y").await?;
            let nms = instances(&sa, "nodemanager");
            if nms.len() == 2 && nms.iter().all(|i| i["hadoop"]["yarn_state"] == "RUNNING") {
                break sa;
            }
            ensure!(Instant::now() < deadline, "a's NodeManagers not RUNNING in 180 s: {sa}\nb: {sb}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!("b's leaving NodeManagers went through phases {phases:?}, YARN states {yarn_states:?}");
        ensure!(phases.contains("draining"), "b's NodeManagers were not drained: phases {phases:?}");
        ensure!(instances(&a_running, "nodemanager").iter().all(|i| i["host"].is_string()));

        // b: 7 NodeManagers where they were, 2 back pending; masters and DataNodes untouched.
        let after = wait_for("b's taken-back NodeManagers back, pending", Duration::from_secs(60), || async {
            let s = status(&api, &b, "y").await?;
            let nms = instances(&s, "nodemanager");
            let pending = nms.iter().filter(|i| i["host"].is_null()).count();
            Ok((nms.len() == 9 && pending == 2 && nms.iter().all(|i| i["leaving"].is_null())).then_some(s))
        })
        .await?;
        for i in all(&after) {
            if i["host"].is_string() {
                ensure!(i["host"] == hosts_before[&name(i)], "{} moved", name(i));
            } else {
                let why = i["pending"].as_str().unwrap_or_default();
                ensure!(why.contains("2 CPU"), "{}: {why}", name(i));
            }
        }
        ensure!(container_ids(&b, &kept) == ids_before, "a DataNode or master of b was restarted");
        let (_, audit) = api.get("/v1/audit?limit=1000").await?;
        let preempted = audit["items"].as_array().into_iter().flatten().filter(|e| e["action"] == "instance.preempt").count();
        ensure!(preempted == 2, "{preempted} take-backs audited: {audit}");
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("{}", bed.logs());
        eprintln!("{e:?}");
    }
    result
}
