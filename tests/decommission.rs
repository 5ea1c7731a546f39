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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use herd_tests::netbed::{HostPlan, Plan, Testbed, require_root_docker_nft};
use herd_tests::{Api, TenantContainers, unique, wait_for};
use serde_json::{Value, json};

/// Disjoint from the other multi-host tests' addresses.
fn plan() -> Plan {
    Plan {
        underlay: "10.217.0",
        cluster_cidr: "10.218.0.0/16",
        // One DataNode per machine: with herd's node groups HDFS keeps at most one replica of
        // a block per machine, so the three DataNodes left must be on three machines.
        hosts: ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(n, name)| HostPlan { rack: Some(if n % 2 == 0 { "rack-a" } else { "rack-b" }), data_disks: 1, ..HostPlan::ns(name) })
            .collect(),
    }
}

fn spec(tenant: &str, datanodes: u32) -> String {
    format!(
        "tenant: {tenant}
name: dc
images:
  namenode: herd/namenode:testbed
  datanode: herd/datanode:testbed
hdfs:
  replication: 3
configOverrides:
  hdfs-site.xml:
    dfs.heartbeat.interval: '1'
    dfs.namenode.heartbeat.recheck-interval: '2000'
    dfs.namenode.fs-limits.min-block-size: '4096'
    dfs.blockreport.intervalMsec: '10000'
    dfs.namenode.redundancy.interval.seconds: '1'
    dfs.namenode.decommission.interval: '1'
pools:
  namenode: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  datanode: {{replicas: {datanodes}, cpu: 100m, memory: 256Mi}}
"
    )
}

fn container(tenant: &str, instance: &str) -> String {
    format!("herd.{tenant}.dc.{instance}")
}

fn exec(container: &str, script: &str) -> (i32, String) {
    let out = Command::new("docker").args(["exec", container, "sh", "-c", script]).output().expect("docker exec");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

async fn status(api: &Api, tenant: &str) -> Result<Value> {
    let (code, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/dc")).await?;
    ensure!(code == 200, "status: {code} {body}");
    Ok(body)
}

fn instances<'a>(s: &'a Value, pool: &str) -> Vec<&'a Value> {
    s["instances"].as_array().map(|a| a.iter().filter(|i| i["pool"] == pool).collect()).unwrap_or_default()
}

/// What the NameNode's `/jmx` said, sampled from inside its container.
#[derive(Default)]
struct Samples {
    /// Every `MissingBlocks` read, in order.
    missing: Vec<u64>,
    /// When each DataNode (by hostname) was first seen `Decommissioned` (Unix ns).
    decommissioned_at: BTreeMap<String, u128>,
}

/// Samples the NameNode double's `/jmx` every 100 ms until `stop`.
fn sample(nn: String, stop: Arc<AtomicBool>, into: Arc<Mutex<Samples>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let (code, out) = exec(&nn, "wget -qO- 'http://127.0.0.1:9870/jmx?qry=Hadoop:service=NameNode,name=FSNamesystem' && echo && wget -qO- 'http://127.0.0.1:9870/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo'");
            let at = now_ns();
            if code == 0 {
                let mut s = into.lock().unwrap();
                // The answers are pretty-printed JSON documents, one after the other.
                for doc in serde_json::Deserializer::from_str(&out).into_iter::<Value>().map_while(Result::ok) {
                    for bean in doc["beans"].as_array().cloned().unwrap_or_default() {
                        if let Some(m) = bean["MissingBlocks"].as_u64() {
                            s.missing.push(m);
                        }
                        for key in ["LiveNodes", "DeadNodes"] {
                            let nodes: Value = bean[key].as_str().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
                            for (name, node) in nodes.as_object().cloned().unwrap_or_default() {
                                if node["adminState"] == "Decommissioned" {
                                    let host = name.split(':').next().unwrap_or_default().to_string();
                                    s.decommissioned_at.entry(host).or_insert(at);
                                }
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// `docker events` for `die`: container name → Unix ns, until the returned child is killed.
fn die_events(into: Arc<Mutex<BTreeMap<String, u128>>>) -> std::process::Child {
    let mut child = Command::new("docker")
        .args(["events", "--filter", "event=die", "--format", "{{.Actor.Attributes.name}} {{.TimeNano}}"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((name, t)) = line.split_once(' ')
                && let Ok(t) = t.trim().parse::<u128>()
            {
                into.lock().unwrap().entry(name.to_string()).or_insert(t);
            }
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_decommissions_without_losing_a_block() -> Result<()> {
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    let tenant = unique("dc");
    let _cleanup = TenantContainers(tenant.clone());
    let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
    ensure!(code == 201, "tenant: {code} {body}");
    let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/dc"), &spec(&tenant, 6)).await?;
    ensure!(code == 201, "apply: {code} {body}");

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
        let samples = Arc::new(Mutex::new(Samples::default()));
        let deaths = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample(nn.clone(), stop.clone(), samples.clone());
        let mut events = die_events(deaths.clone());
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
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let _ = events.kill();
        let _ = events.wait();
        let s = s?;
        eprintln!("6 -> 3 DataNodes decommissioned and removed in {took:?}");

        let (missing, decommissioned_at) = {
            let s = samples.lock().unwrap();
            (s.missing.clone(), s.decommissioned_at.clone())
        };
        ensure!(missing.len() > 10, "too few samples: {}", missing.len());
        ensure!(missing.iter().all(|m| *m == 0), "missing blocks seen: {missing:?}");
        eprintln!("MissingBlocks sampled {} times during the decommission, always 0", missing.len());
        let deaths = deaths.lock().unwrap().clone();
        for name in &leaving {
            let hostname = format!("{name}.dc.{tenant}");
            let decom = decommissioned_at.get(&hostname).copied();
            let died = deaths.get(&container(&tenant, name)).copied();
            match (decom, died) {
                (Some(d), Some(x)) => ensure!(x > d, "{name} died at {x}, before the NameNode showed it Decommissioned at {d}"),
                _ => anyhow::bail!("{name}: decommissioned at {decom:?}, died at {died:?}"),
            }
        }
        let h = &s["hdfs"];
        ensure!(h["blocks_total"] == 300 && h["missing_blocks"] == 0, "after: {h}");
        wait_for("300 blocks fully replicated on the 3 left", Duration::from_secs(60), || async {
            let s = status(&api, &tenant).await?;
            let blocks: u64 = instances(&s, "datanode").iter().filter_map(|i| i["hadoop"]["blocks"].as_u64()).sum();
            let h = &s["hdfs"];
            Ok((h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0 && blocks == 900).then_some(()))
        })
        .await?;

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
