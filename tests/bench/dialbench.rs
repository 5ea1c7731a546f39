//! Hadoop dialtone benchmark: time from `apply` to "every DataNode live and In Service in HDFS
//! and every NodeManager RUNNING in YARN", side by side with the time the same containers take
//! merely to be running, for 1 NameNode + 1 ResourceManager + 20 DataNodes + 10 NodeManagers
//! on two simulated hosts (network namespaces, herd networking, the Hadoop test doubles).
//!
//!     cargo run --release -p herd-tests --bin dialbench -- [DATANODES] [NODEMANAGERS] [RUNS]
//!
//! Needs root, Docker and `nft`. Traffic goes only to the namespaces it makes.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use herd_tests::netbed::{HostPlan, Plan, Testbed, require_root_docker_nft};
use herd_tests::{TenantContainers, unique};
use serde_json::{Value, json};

fn plan() -> Plan {
    Plan {
        underlay: "10.219.0",
        cluster_cidr: "10.220.0.0/16",
        hosts: vec![
            HostPlan { rack: Some("rack-a"), data_disks: 1, ..HostPlan::ns("a") },
            HostPlan { rack: Some("rack-b"), data_disks: 1, ..HostPlan::ns("b") },
        ],
    }
}

fn spec(tenant: &str, datanodes: u32, nodemanagers: u32) -> String {
    format!(
        "tenant: {tenant}
name: bench
images:
  namenode: herd/namenode:testbed
  resourcemanager: herd/resourcemanager:testbed
  datanode: herd/datanode:testbed
  nodemanager: herd/nodemanager:testbed
pools:
  namenode: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  resourcemanager: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  datanode: {{replicas: {datanodes}, cpu: 100m, memory: 256Mi}}
  nodemanager: {{replicas: {nodemanagers}, cpu: 500m, memory: 1Gi}}
"
    )
}

/// (all containers running, every worker joined its master).
fn phases(s: &Value) -> (bool, bool) {
    let instances = s["instances"].as_array().cloned().unwrap_or_default();
    let running = !instances.is_empty() && instances.iter().all(|i| i["observed"]["state"] == "running");
    let joined = instances.iter().all(|i| match i["pool"].as_str() {
        Some("datanode") => i["hadoop"]["hdfs_state"] == "In Service" && i["hadoop"]["live"] == true,
        Some("nodemanager") => i["hadoop"]["yarn_state"] == "RUNNING",
        _ => true,
    });
    (running, running && joined)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<u32> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let (datanodes, nodemanagers, runs) = (args.first().copied().unwrap_or(20), args.get(1).copied().unwrap_or(10), args.get(2).copied().unwrap_or(1));
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agent(0)?;
    bed.start_agent(1)?;
    println!("dialbench: 1 NameNode + 1 ResourceManager + {datanodes} DataNodes + {nodemanagers} NodeManagers on 2 hosts");
    println!("{:>4}  {:>22}  {:>34}  {:>6}", "run", "containers running (s)", "HDFS live + YARN RUNNING (s)", "ratio");
    for run in 1..=runs {
        let tenant = unique("dial");
        let _cleanup = TenantContainers(tenant.clone());
        let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(code == 201, "tenant: {code} {body}");
        let path = format!("/v1/tenants/{tenant}/clusters/bench");
        let start = Instant::now();
        let (code, body) = api.put_yaml(&path, &spec(&tenant, datanodes, nodemanagers)).await?;
        ensure!(code == 201, "apply: {code} {body}");
        let (mut running_at, mut joined_at) = (None, None);
        while joined_at.is_none() {
            if start.elapsed() > Duration::from_secs(600) {
                eprintln!("{}", bed.logs());
                bail!("not dialtone after 10 minutes");
            }
            let (code, s) = api.get(&path).await?;
            ensure!(code == 200, "status: {code} {s}");
            let (running, joined) = phases(&s);
            if running && running_at.is_none() {
                running_at = Some(start.elapsed());
            }
            if joined {
                joined_at = Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (r, j) = (running_at.unwrap_or_default().as_secs_f64(), joined_at.unwrap_or_default().as_secs_f64());
        println!("{run:>4}  {r:>22.1}  {j:>34.1}  {:>6.2}", j / r.max(0.001));
        let (code, body) = api.delete(&path).await?;
        ensure!(code == 204 || code == 202 || code == 200, "delete: {code} {body}");
    }
    Ok(())
}
