//! Helpers for the scale-down (decommission and drain) tests and benchmark: status and
//! instance lookups, `docker exec`, the NameNode's `/jmx` sampled from inside its container,
//! and Docker's `die` events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::Api;
use crate::netbed::{HostPlan, Plan};

/// Six hosts on two racks, one data disk each.
pub fn six_hosts(underlay: &'static str, cluster_cidr: &'static str) -> Plan {
    Plan {
        underlay,
        cluster_cidr,
        hosts: ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(n, name)| HostPlan { rack: Some(if n % 2 == 0 { "rack-a" } else { "rack-b" }), data_disks: 1, ..HostPlan::ns(name) })
            .collect(),
    }
}

/// An HDFS-only cluster (a NameNode and `datanodes` DataNodes, replication 3) with Hadoop's
/// timings shortened for tests: DataNodes dead after 14 s of silence, small blocks allowed,
/// re-replication and decommission checked every second. `multiplier`: re-replications the
/// NameNode schedules per live DataNode a second (`dfs.namenode.replication.work.multiplier.
/// per.iteration`; 1 makes a decommission slow enough to interrupt); `max_streams`: how many
/// a DataNode may run at once. A re-replication whose source or target died is retried after
/// 10 s instead of Hadoop's 5 minutes (`dfs.namenode.reconstruction.pending.timeout-sec`).
pub fn hdfs_spec(tenant: &str, cluster: &str, datanodes: u32, multiplier: u32, max_streams: u32) -> String {
    format!(
        "tenant: {tenant}
name: {cluster}
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
    dfs.namenode.replication.work.multiplier.per.iteration: '{multiplier}'
    dfs.namenode.replication.max-streams: '{max_streams}'
    dfs.namenode.decommission.interval: '1'
    dfs.namenode.reconstruction.pending.timeout-sec: '10'
pools:
  namenode: {{replicas: 1, cpu: 250m, memory: 512Mi}}
  datanode: {{replicas: {datanodes}, cpu: 100m, memory: 256Mi}}
"
    )
}

/// The container name of an instance.
pub fn container(tenant: &str, cluster: &str, instance: &str) -> String {
    format!("herd.{tenant}.{cluster}.{instance}")
}

/// `sh -c SCRIPT` inside a container: (exit code, stdout + stderr).
pub fn exec(container: &str, script: &str) -> (i32, String) {
    let out = Command::new("docker").args(["exec", container, "sh", "-c", script]).output().expect("docker exec");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A cluster's status.
pub async fn status(api: &Api, tenant: &str, cluster: &str) -> Result<Value> {
    let (code, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/{cluster}")).await?;
    ensure!(code == 200, "status: {code} {body}");
    Ok(body)
}

/// A status's instances of one pool.
pub fn instances<'a>(s: &'a Value, pool: &str) -> Vec<&'a Value> {
    s["instances"].as_array().map(|a| a.iter().filter(|i| i["pool"] == pool).collect()).unwrap_or_default()
}

/// The names of a status's leaving instances of one pool.
pub fn leaving(s: &Value, pool: &str) -> Vec<String> {
    instances(s, pool)
        .iter()
        .filter(|i| !i["leaving"].is_null())
        .map(|i| i["instance"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Whether a status has a condition of this type.
pub fn has_condition(s: &Value, kind: &str) -> bool {
    s["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == kind))
}

/// What the NameNode's `/jmx` said, sampled from inside its container.
#[derive(Default, Clone)]
pub struct Samples {
    /// Every `MissingBlocks` read, in order.
    pub missing: Vec<u64>,
    /// Reads that failed (the NameNode's container unreachable).
    pub failed: u64,
    /// When each DataNode (by hostname) was first seen `Decommissioned` (Unix ns).
    pub decommissioned_at: BTreeMap<String, u128>,
}

/// Samples the NameNode double's `/jmx` every 100 ms until `stop`.
pub fn sample(nn: String, stop: Arc<AtomicBool>, into: Arc<Mutex<Samples>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let (code, out) = exec(&nn, "wget -qO- 'http://127.0.0.1:9870/jmx?qry=Hadoop:service=NameNode,name=FSNamesystem' && echo && wget -qO- 'http://127.0.0.1:9870/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo'");
            let at = now_ns();
            let mut s = into.lock().unwrap();
            if code != 0 {
                s.failed += 1;
            } else {
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
            drop(s);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// A background `docker events` for `die`: container name → first death (Unix ns). Killed
/// and reaped when dropped.
pub struct DieEvents {
    child: std::process::Child,
    pub deaths: Arc<Mutex<BTreeMap<String, u128>>>,
}

impl DieEvents {
    pub fn start() -> Self {
        let deaths = Arc::new(Mutex::new(BTreeMap::new()));
        let mut child = Command::new("docker")
            .args(["events", "--filter", "event=die", "--format", "{{.Actor.Attributes.name}} {{.TimeNano}}"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker events");
        let stdout = child.stdout.take().expect("stdout");
        let into = deaths.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((name, t)) = line.split_once(' ')
                    && let Ok(t) = t.trim().parse::<u128>()
                {
                    into.lock().unwrap().entry(name.to_string()).or_insert(t);
                }
            }
        });
        DieEvents { child, deaths }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u128> {
        self.deaths.lock().unwrap().clone()
    }
}

impl Drop for DieEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The NameNode sampler, running until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(nn: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples::default()));
        let thread = Some(sample(nn.to_string(), stop.clone(), samples.clone()));
        Sampler { stop, samples, thread }
    }

    pub fn snapshot(&self) -> Samples {
        self.samples.lock().unwrap().clone()
    }

    pub fn finish(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks that every leaving DataNode's container died only after the NameNode had shown it
/// `Decommissioned`.
pub fn died_after_decommissioned(tenant: &str, cluster: &str, leaving: &[String], samples: &Samples, deaths: &BTreeMap<String, u128>) -> Result<()> {
    for name in leaving {
        let hostname = format!("{name}.{cluster}.{tenant}");
        let decom = samples.decommissioned_at.get(&hostname).copied();
        let died = deaths.get(&container(tenant, cluster, name)).copied();
        match (decom, died) {
            (Some(d), Some(x)) => ensure!(x > d, "{name} died at {x}, before the NameNode showed it Decommissioned at {d}"),
            _ => anyhow::bail!("{name}: decommissioned at {decom:?}, died at {died:?}"),
        }
    }
    Ok(())
}
