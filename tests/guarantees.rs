//! Guaranteed shares end to end at the orchestrator level: the real `herd-orchestrator`
//! over HTTP, with simulated agents (tasks that register, heartbeat, report every desired
//! container running, and play tenant b's ResourceManager: excluded NodeManagers report
//! `DECOMMISSIONING` until the test lets them finish, then `DECOMMISSIONED`). No Docker:
//! what is tested is placement, the drain through the lifecycle and the API.
//!
//! Tenant b (guaranteed 4 CPU) fills the fleet with NodeManagers it borrows; tenant a
//! (guaranteed 6 CPU) asks for two NodeManagers within its guarantee: two of b's borrowed
//! NodeManagers are drained (never a DataNode or a master), a's run where they were, b's
//! come back pending until capacity is idle again. Admission refuses a guarantee the fleet
//! cannot hold, and a spec that would have b borrow with DataNodes.
//!
//! Also the placement rules through the API: racks, labels and data disks as agents report
//! them, DataNodes one per host and even over racks, `nodeSelector`, disk, and the pending
//! reason naming the rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use herd_api::Role;
use herd_api::hadoop::{MasterHealth, NodeManagerReport, ResourceManagerHealth};
use herd_api::names::InstanceRef;
use herd_api::wire::{ContainerState, Heartbeat, HeartbeatReply, Observed};
use herd_tests::{Api, Orchestrator, unique, wait_for};
use serde_json::{Value, json};

const B: &str = "tenant: b\nname: c\nimages: {namenode: n, resourcemanager: r, datanode: d, nodemanager: m}\npools:\n  namenode: {replicas: 1, cpu: 1, memory: 1Gi}\n  resourcemanager: {replicas: 1, cpu: 1, memory: 1Gi}\n  datanode: {replicas: 2, cpu: 1, memory: 1Gi}\n  nodemanager: {replicas: 5, cpu: 2, memory: 4Gi}\n";
const A: &str = "tenant: a\nname: c\nimages: {nodemanager: m}\npools:\n  nodemanager: {replicas: 2, cpu: 2, memory: 4Gi}\n";

/// One simulated agent: heartbeats `host` every 200 ms until dropped.
struct SimAgent(tokio::task::JoinHandle<()>);

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn sim_agent(api: Api, host: String, release: Arc<AtomicBool>) -> SimAgent {
    SimAgent(tokio::spawn(async move {
        let mut desired: Vec<herd_api::wire::DesiredContainer> = Vec::new();
        loop {
            let observed = desired.iter().map(|d| observe(d, &release)).collect();
            let hb = Heartbeat { host_id: host.clone(), observed, conditions: vec![], purged: vec![], applied: None, network_deltas: true };
            if let Ok((200, reply)) = api.post("/v1/agent/heartbeat", serde_json::to_value(&hb).unwrap()).await
                && let Ok(reply) = serde_json::from_value::<HeartbeatReply>(reply)
            {
                desired = reply.desired;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// A desired container reported running; a ResourceManager also reports its NodeManagers:
/// running, or, once its exclude file names them, decommissioning (decommissioned after
/// `release`).
fn observe(d: &herd_api::wire::DesiredContainer, release: &AtomicBool) -> Observed {
    let hadoop = (d.role == Role::Resourcemanager).then(|| {
        let exclude = d.hadoop.as_ref().and_then(|h| h.live_files.get("yarn.exclude")).cloned().unwrap_or_default();
        let nodes = (0..8)
            .map(|n| {
                let name = InstanceRef::new(&d.instance.tenant, &d.instance.cluster, Role::Nodemanager, n).hostname();
                let state = match (exclude.lines().any(|l| l.trim() == name), release.load(Ordering::SeqCst)) {
                    (false, _) => "RUNNING",
                    (true, false) => "DECOMMISSIONING",
                    (true, true) => "DECOMMISSIONED",
                };
                NodeManagerReport { id: format!("{name}:8041"), hostname: name, state: state.into(), num_containers: Some(1), ..Default::default() }
            })
            .collect();
        MasterHealth::Resourcemanager(ResourceManagerHealth { state: "STARTED".into(), nodes, ..Default::default() })
    });
    Observed {
        instance: d.instance.clone(),
        container_id: format!("id-{}-{}", d.instance.tenant, d.instance.name),
        state: ContainerState::Running,
        started_at: None,
        exit_code: None,
        error: None,
        ip: None,
        config_hash: d.rollout_hash.clone().or_else(|| d.hadoop.as_ref().map(|h| h.files_hash())),
        live_hash: d.hadoop.as_ref().map(|h| h.live_hash()),
        hadoop,
    }
}

fn instances(status: &Value) -> Vec<Value> {
    status["instances"].as_array().cloned().unwrap_or_default()
}

/// An instance's host, pending reason and leaving phase.
type Where = (Option<String>, Option<String>, Option<String>);

/// Each instance's [`Where`], by name.
fn placement(status: &Value) -> BTreeMap<String, Where> {
    instances(status)
        .iter()
        .map(|i| {
            let s = |v: &Value| v.as_str().map(String::from);
            (s(&i["instance"]["name"]).unwrap_or_default(), (s(&i["host"]), s(&i["pending"]), s(&i["leaving"]["phase"]["phase"])))
        })
        .collect()
}

#[tokio::test]
async fn a_guarantee_takes_back_borrowed_nodemanagers_and_never_datanodes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let admin = orch.api();
    let release = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    let hosts = [unique("g1"), unique("g2")];
    for host in &hosts {
        let api = Api::new(&orch.url).with_token(&orch.agent_token(host).await?);
        let (status, body) = api.post("/v1/agent/register", json!({"host": {"id": host, "cpu": "8", "memory": "32Gi"}})).await?;
        ensure!(status == 200, "register: {status} {body}");
        agents.push(sim_agent(api, host.clone(), release.clone()));
    }

    // Admission: 4 + 6 of the fleet's 16 CPU may be guaranteed, 4 + 6 + 8 may not.
    let (status, body) = admin.post("/v1/tenants", json!({"name": "b", "quota": {"guaranteed": {"cpu": "4", "memory": "16Gi"}}})).await?;
    ensure!(status == 201, "{status} {body}");
    let (status, body) = admin.post("/v1/tenants", json!({"name": "a", "quota": {"guaranteed": {"cpu": "6", "memory": "12Gi"}}})).await?;
    ensure!(status == 201, "{status} {body}");
    let (status, body) = admin.post("/v1/tenants", json!({"name": "c", "quota": {"guaranteed": {"cpu": "8", "memory": "1Gi"}}})).await?;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["quota.guaranteed.cpu"], "{body}");
    assert!(body.to_string().contains("2 ready hosts"), "{body}");

    // Above its guarantee b borrows with NodeManagers only: five DataNodes more are refused.
    let (status, body) = admin.put_yaml("/v1/tenants/b/clusters/c", &B.replace("datanode: {replicas: 2", "datanode: {replicas: 7")).await?;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("NodeManagers only"), "{body}");

    // b fills the fleet: 4 CPU of masters and DataNodes, 10 CPU of NodeManagers (10 borrowed).
    let (status, body) = admin.put_yaml("/v1/tenants/b/clusters/c", B).await?;
    ensure!(status == 201, "{status} {body}");
    let before = wait_for("b's cluster running on the simulated agents", Duration::from_secs(30), || async {
        let (_, s) = admin.get("/v1/tenants/b/clusters/c").await?;
        let all = instances(&s);
        let running = all.iter().filter(|i| i["observed"]["state"] == json!("running")).count();
        Ok((all.len() == 9 && running == 9).then_some(s))
    })
    .await?;
    let b_before = placement(&before);
    let dn_hosts: Vec<_> = ["datanode-0", "datanode-1"].iter().map(|n| b_before[*n].0.clone()).collect();
    assert_ne!(dn_hosts[0], dn_hosts[1], "DataNodes of one cluster never share a host");
    let (_, t) = admin.get("/v1/tenants/b").await?;
    assert_eq!((t["used"]["cpu"].clone(), t["borrowed"]["cpu"].clone()), (json!("14"), json!("10")), "{t}");

    // a asks for 4 CPU within its guarantee; the fleet has 1 CPU free per host.
    let (status, body) = admin.put_yaml("/v1/tenants/a/clusters/c", A).await?;
    ensure!(status == 201, "{status} {body}");
    let draining = wait_for("two of b's NodeManagers draining for a", Duration::from_secs(30), || async {
        let (_, s) = admin.get("/v1/tenants/b/clusters/c").await?;
        let p = placement(&s);
        let draining: Vec<String> = p.iter().filter(|(_, v)| v.2.as_deref() == Some("draining")).map(|(k, _)| k.clone()).collect();
        Ok((draining.len() == 2).then_some(draining))
    })
    .await?;
    assert!(draining.iter().all(|n| n.starts_with("nodemanager-")), "{draining:?}");
    let (_, a) = admin.get("/v1/tenants/a/clusters/c").await?;
    for (name, (host, pending, _)) in placement(&a) {
        assert!(host.is_none(), "{name} placed before the drain finished");
        let pending = pending.unwrap_or_default();
        assert!(pending.contains("within tenant a's guaranteed share") && pending.contains("borrowed NodeManagers"), "{name}: {pending}");
    }

    // The ResourceManager reports them decommissioned: they leave, a's run, b's come back pending.
    release.store(true, Ordering::SeqCst);
    let a_status = wait_for("a's NodeManagers running", Duration::from_secs(30), || async {
        let (_, s) = admin.get("/v1/tenants/a/clusters/c").await?;
        let all = instances(&s);
        Ok((all.len() == 2 && all.iter().all(|i| i["observed"]["state"] == json!("running"))).then_some(s))
    })
    .await?;
    let a_hosts: Vec<Option<String>> = placement(&a_status).values().map(|v| v.0.clone()).collect();
    let b_after = wait_for("b's drained NodeManagers back, pending", Duration::from_secs(30), || async {
        let (_, s) = admin.get("/v1/tenants/b/clusters/c").await?;
        let p = placement(&s);
        let pending = p.values().filter(|v| v.0.is_none()).count();
        Ok((p.len() == 9 && pending == 2 && p.values().all(|v| v.2.is_none())).then_some(p))
    })
    .await?;
    for (name, (host, pending, _)) in &b_after {
        if name.starts_with("nodemanager-") && host.is_none() {
            let pending = pending.clone().unwrap_or_default();
            assert!(pending.contains("2 CPU"), "{name}: {pending}");
        } else {
            assert_eq!(host, &b_before[name].0, "{name} moved: only drained NodeManagers leave their host");
        }
    }
    for dn in ["datanode-0", "datanode-1", "namenode-0", "resourcemanager-0"] {
        assert_eq!(b_after[dn].0, b_before[dn].0, "{dn} was touched");
    }
    assert!(a_hosts.iter().all(Option::is_some));

    // The audit trail says what was taken back and why; b borrows less now.
    let (_, audit) = admin.get("/v1/audit").await?;
    let preempted: Vec<&Value> = audit["items"].as_array().into_iter().flatten().filter(|e| e["action"] == json!("instance.preempt")).collect();
    assert_eq!(preempted.len(), 2, "{audit}");
    assert!(preempted.iter().all(|e| e["resource"].as_str().unwrap_or("").starts_with("b/c/nodemanager-")
        && e["detail"].as_str().unwrap_or("").contains("tenant a's guaranteed share")), "{audit}");
    let (_, t) = admin.get("/v1/tenants/b").await?;
    assert_eq!(t["borrowed"]["cpu"], json!("6"), "{t}");
    let (_, t) = admin.get("/v1/tenants/a").await?;
    assert_eq!((t["used"]["cpu"].clone(), t["borrowed"]["cpu"].clone()), (json!("4"), json!("0")), "{t}");
    drop(agents);
    Ok(())
}

#[tokio::test]
async fn placement_rules_follow_what_agents_report() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let admin = orch.api();
    let release = Arc::new(AtomicBool::new(false));
    let mut agents = Vec::new();
    // Four hosts on two racks; the last has SSDs; each has two 100Gi data disks.
    let hosts: Vec<String> = (0..4).map(|n| unique(&format!("p{n}"))).collect();
    for (n, host) in hosts.iter().enumerate() {
        let api = Api::new(&orch.url).with_token(&orch.agent_token(host).await?);
        let labels = if n == 3 { json!({"disk": "ssd"}) } else { json!({}) };
        let info = json!({"host": {"id": host, "cpu": "8", "memory": "32Gi", "rack": format!("r{}", n / 2),
            "data_disks": ["/d0", "/d1"], "data_disk_capacity": ["100Gi", "100Gi"], "labels": labels}});
        let (status, body) = api.post("/v1/agent/register", info).await?;
        ensure!(status == 200, "register: {status} {body}");
        agents.push(sim_agent(api, host.clone(), release.clone()));
    }
    let (status, body) = admin.post("/v1/tenants", json!({"name": "t"})).await?;
    ensure!(status == 201, "{status} {body}");

    // Four DataNodes: one per host, two per rack; each takes 60Gi, 30Gi of each disk.
    let spec = "tenant: t\nname: c\nimages: {datanode: d, nodemanager: m}\npools:\n  datanode: {replicas: 4, cpu: 1, memory: 1Gi, disk: 60Gi}\n  nodemanager: {replicas: 1, cpu: 1, memory: 1Gi, nodeSelector: {disk: ssd}}\n";
    let (status, body) = admin.put_yaml("/v1/tenants/t/clusters/c", spec).await?;
    ensure!(status == 201, "{status} {body}");
    let (_, s) = admin.get("/v1/tenants/t/clusters/c").await?;
    let mut per_rack: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in instances(&s).iter().filter(|i| i["pool"] == json!("datanode")) {
        per_rack.entry(i["rack"].as_str().unwrap_or("none").into()).or_default().push(i["host"].as_str().unwrap_or("none").into());
    }
    assert_eq!(per_rack.values().map(Vec::len).collect::<Vec<_>>(), [2, 2], "{per_rack:?}");
    let mut used: Vec<&String> = per_rack.values().flatten().collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 4, "one DataNode per host: {per_rack:?}");
    let nm = instances(&s).into_iter().find(|i| i["pool"] == json!("nodemanager")).unwrap();
    assert_eq!(nm["host"], json!(hosts[3]), "the selector picks the labelled host: {nm}");

    // A fifth DataNode: no host is free of one (the reason names the rule).
    let (status, body) = admin.patch("/v1/tenants/t/clusters/c/pools/datanode", json!({"replicas": 5})).await?;
    ensure!(status == 200, "{status} {body}");
    let (_, s) = admin.get("/v1/tenants/t/clusters/c").await?;
    let p = placement(&s);
    let why = p["datanode-4"].1.clone().unwrap_or_default();
    assert!(p["datanode-4"].0.is_none() && why.contains("never share a host") && why.contains("maxPerHost"), "{why}");

    // Another cluster's DataNodes of 150Gi need 75Gi on each disk; 70Gi is left on each.
    let other = "tenant: t\nname: d\nimages: {datanode: d}\npools:\n  datanode: {replicas: 2, cpu: 1, memory: 1Gi, disk: 150Gi}\n";
    let (status, body) = admin.put_yaml("/v1/tenants/t/clusters/d", other).await?;
    ensure!(status == 201, "{status} {body}");
    let (_, s) = admin.get("/v1/tenants/t/clusters/d").await?;
    for (name, (host, pending, _)) in placement(&s) {
        let pending = pending.unwrap_or_default();
        assert!(host.is_none() && pending.contains("pools.datanode.disk") && pending.contains("140.0Gi usable"), "{name}: {pending}");
    }
    drop(agents);
    Ok(())
}
