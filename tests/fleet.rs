//! Fleet operations end to end on six simulated hosts (network namespaces, herd networking,
//! the Hadoop test doubles), checked through herd's API, the CLI, Docker and the masters:
//! - a host lost for good (its agent killed, its containers stopped): its instances show
//!   `unknown` within the grace period, then its NodeManager runs elsewhere, then its
//!   DataNode is replaced by a new DataNode identity and HDFS re-replicates; when the host
//!   comes back, its agent removes what moved away and nothing ever ran twice;
//! - `herd hosts drain H --wait` on a host with a DataNode and a NodeManager: replacements run
//!   elsewhere, the DataNode leaves only once decommissioned, no block is ever missing, the
//!   host ends empty; `herd hosts delete H` is refused before and done after, and revokes
//!   its agent's token.
//!
//! One Docker engine plays every host here, so container names are shared: a "dead" host's
//! stopped containers are renamed (a real dead host keeps them on its own engine, where they
//! block no other host); the agent finds its containers by label, not by name.
//!
//! Needs root, Docker and `nft`; fails, never skips, without them. The tests share addresses:
//! nextest runs them one at a time (test group `netns`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use herd_tests::decom::{container, exec, has_condition, instances, six_hosts, status};
use herd_tests::netbed::{Plan, Testbed, require_root_docker_nft, sh};
use herd_tests::{Api, TenantContainers, bins, unique, wait_for};
use serde_json::{Value, json};

const CLUSTER: &str = "fl";

/// Disjoint from the other multi-host tests' addresses.
fn plan() -> Plan {
    six_hosts("10.235.0", "10.236.0.0/16")
}

/// HDFS (NameNode, 4 DataNodes, replication 3, Hadoop's timings shortened: a silent DataNode is
/// dead after 14 s) and YARN (ResourceManager, 2 NodeManagers draining for at most 5 s). At most
/// one NodeManager per host (`maxPerHost: 1`), so the packing scheduler cannot put both beside
/// the masters: one lands with a DataNode on a host without masters.
fn spec(tenant: &str) -> String {
    let hdfs = herd_tests::decom::hdfs_spec(tenant, CLUSTER, 4, 4, 2);
    let hdfs = hdfs.replace(
        "  datanode: herd/datanode:testbed\n",
        "  datanode: herd/datanode:testbed\n  resourcemanager: herd/resourcemanager:testbed\n  nodemanager: herd/nodemanager:testbed\n",
    );
    hdfs + "  resourcemanager: {replicas: 1, cpu: 250m, memory: 512Mi}\n  \
             nodemanager: {replicas: 2, cpu: 500m, memory: 1Gi, maxPerHost: 1, lifecycle: {drainTimeoutSeconds: 5}}\n"
}

struct Env {
    bed: Testbed,
    api: Api,
    tenant: String,
    _cleanup: TenantContainers,
}

impl Env {
    async fn start(orchestrator_args: &[&str]) -> Result<Env> {
        let t = Instant::now();
        require_root_docker_nft(&plan());
        let mut bed = Testbed::new(&plan());
        let api = bed.start_orchestrator_with_token(orchestrator_args).await?;
        bed.start_agents(&api).await?;
        let tenant = unique("fl");
        let _cleanup = TenantContainers(tenant.clone());
        let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(code == 201, "tenant: {code} {body}");
        let env = Env { bed, api, tenant, _cleanup };
        let path = format!("/v1/tenants/{}/clusters/{CLUSTER}", env.tenant);
        let (code, body) = env.api.put_yaml(&path, &spec(&env.tenant)).await?;
        ensure!(code == 201, "apply: {code} {body}");
        env.healthy(4, 2, Duration::from_secs(180)).await?;
        let (code, out) = exec(
            &env.container("namenode-0"),
            "head -c 204800 /dev/urandom > /tmp/data && hdfs dfs -D dfs.blocksize=4096 -D dfs.replication=3 -put /tmp/data /data",
        );
        ensure!(code == 0, "hdfs dfs -put: {code} {out}");
        wait_for("50 blocks fully replicated", Duration::from_secs(120), || async {
            let h = env.status().await?["hdfs"].clone();
            Ok((h["blocks_total"] == 50 && h["under_replicated_blocks"] == 0 && h["missing_blocks"] == 0).then_some(()))
        })
        .await?;
        eprintln!("testbed and cluster up in {:.1?}", t.elapsed());
        Ok(env)
    }

    async fn status(&self) -> Result<Value> {
        status(&self.api, &self.tenant, CLUSTER).await
    }

    fn container(&self, instance: &str) -> String {
        container(&self.tenant, CLUSTER, instance)
    }

    /// Waits until `datanodes` DataNodes are In Service and live and `nodemanagers`
    /// NodeManagers RUNNING, none leaving.
    async fn healthy(&self, datanodes: usize, nodemanagers: usize, timeout: Duration) -> Result<Value> {
        let waited = self.healthy_within(datanodes, nodemanagers, timeout).await;
        match waited {
            Ok(s) => Ok(s),
            Err(e) => {
                let s = self.status().await.unwrap_or_default();
                let rows: Vec<String> = s["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| format!("{} on {}: {} {} {} {}", i["instance"]["name"], i["host"], i["observed"]["state"], i["observed"]["error"], i["hadoop"], i["pending"]))
                    .collect();
                bail!("{e}\n{}\nconditions: {}", rows.join("\n"), s["conditions"])
            }
        }
    }

    async fn healthy_within(&self, datanodes: usize, nodemanagers: usize, timeout: Duration) -> Result<Value> {
        wait_for("HDFS and YARN whole again", timeout, || async {
            let s = self.status().await?;
            let dns = instances(&s, "datanode");
            let nms = instances(&s, "nodemanager");
            let ok = dns.len() == datanodes
                && dns.iter().all(|i| i["hadoop"]["hdfs_state"] == "In Service" && i["hadoop"]["live"] == true && i["leaving"].is_null())
                && nms.len() == nodemanagers
                && nms.iter().all(|i| i["hadoop"]["yarn_state"] == "RUNNING" && i["leaving"].is_null());
            Ok(ok.then_some(s))
        })
        .await
    }

    /// A host holding a DataNode and a NodeManager but no master, with their names.
    fn victim(&self, s: &Value) -> Result<(String, String, String)> {
        let on = |host: &str, pool: &str| {
            instances(s, pool).into_iter().find(|i| i["host"] == host).and_then(|i| i["instance"]["name"].as_str()).map(String::from)
        };
        for h in &self.bed.hosts {
            let masters = on(&h.id, "namenode").is_some() || on(&h.id, "resourcemanager").is_some();
            if let (false, Some(dn), Some(nm)) = (masters, on(&h.id, "datanode"), on(&h.id, "nodemanager")) {
                return Ok((h.id.clone(), dn, nm));
            }
        }
        bail!("no host holds a DataNode and a NodeManager without a master: {}", s["instances"])
    }

    fn host_index(&self, id: &str) -> usize {
        self.bed.host_index(id).unwrap_or_else(|| panic!("unknown host {id}"))
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

/// Containers of `instance` (any host) that Docker reports running.
fn running_copies(tenant: &str, instance: &str) -> usize {
    let (_, out) = sh(
        "docker",
        &["ps", "-q", "--filter", &format!("label=herd.tenant={tenant}"), "--filter", &format!("label=herd.instance={instance}")],
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Containers of `instance` labelled for `host`, running or not.
fn containers_on(tenant: &str, host: &str, instance: &str) -> usize {
    let (_, out) = sh(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=herd.tenant={tenant}"),
            "--filter",
            &format!("label=herd.host={host}"),
            "--filter",
            &format!("label=herd.instance={instance}"),
        ],
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_is_replaced_and_fenced_when_it_returns() -> Result<()> {
    // Lost after 1.5 s (three 500 ms heartbeats); the DataNode grace is past the NameNode's
    // own dead-node time (14 s), as in production (10 m against 10.5 m would not be).
    let mut env = Env::start(&["--reschedule-after", "6s", "--datanode-replace-after", "20s"]).await?;
    let result = async {
        let s = env.status().await?;
        let (host, dn, nm) = env.victim(&s)?;
        let n = env.host_index(&host);
        eprintln!("host {host} dies, with {dn} and {nm}");
        env.bed.kill_agent(n);
        let mut mine: Vec<String> = Vec::new();
        for i in s["instances"].as_array().into_iter().flatten().filter(|i| i["host"] == host.as_str()) {
            let name = i["instance"]["name"].as_str().unwrap_or_default().to_string();
            // NB: `docker stop`, not `docker kill`: the unless-stopped policy restarts a
            // container killed by another signal.
            let (ok, out) = sh("docker", &["stop", "-t", "1", &env.container(&name)]);
            ensure!(ok, "docker stop {name}: {out}");
            let (ok, out) = sh("docker", &["rename", &env.container(&name), &format!("{}.dead", env.container(&name))]);
            ensure!(ok, "docker rename {name}: {out}");
            mine.push(name);
        }
        let died = Instant::now();

        // Within the grace period: unknown, never running, and not counted as running.
        let s = wait_for("the dead host's instances unknown", Duration::from_secs(10), || async {
            let s = env.status().await?;
            let all_unknown = s["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["host"] == host.as_str())
                .all(|i| i["observed"]["state"] == "unknown" && i["host_lost_ms_ago"].as_u64().is_some());
            Ok(all_unknown.then_some(s))
        })
        .await?;
        ensure!(died.elapsed() < Duration::from_secs(6), "seen unknown only after {:.1?}, past the grace", died.elapsed());
        ensure!(has_condition(&s, "HostLost"), "no HostLost: {}", s["conditions"]);
        let running = s["instances"].as_array().into_iter().flatten().filter(|i| i["observed"]["state"] == "running").count();
        ensure!(running == s["instances"].as_array().map_or(0, Vec::len) - mine.len(), "running count includes the dead host's");

        // Past --reschedule-after: the NodeManager runs elsewhere.
        let moved_at = wait_for(&format!("{nm} RUNNING elsewhere"), Duration::from_secs(60), || async {
            let s = env.status().await?;
            let i = instances(&s, "nodemanager").into_iter().find(|i| i["instance"]["name"] == nm.as_str()).cloned();
            Ok(i.filter(|i| i["host"] != host.as_str() && i["hadoop"]["yarn_state"] == "RUNNING").map(|_| died.elapsed()))
        })
        .await?;
        // NB: the grace counts from the host's last heartbeat, up to one interval (500 ms here)
        // before the death; with watches the new placement reaches its host at once.
        ensure!(moved_at >= Duration::from_millis(5500), "{nm} moved after {moved_at:.1?}, before the grace");
        eprintln!("{nm} RUNNING elsewhere {moved_at:.1?} after the death");

        // Past --datanode-replace-after: a new DataNode is In Service elsewhere; the old one
        // is leaving; HDFS re-replicates and loses nothing.
        let s = wait_for("a replacement DataNode In Service", Duration::from_secs(90), || async {
            let s = env.status().await?;
            let new = instances(&s, "datanode")
                .into_iter()
                .filter(|i| i["instance"]["name"].as_str().is_some_and(|n| n != "datanode-0" && n != "datanode-1" && n != "datanode-2" && n != "datanode-3"))
                .any(|i| i["hadoop"]["hdfs_state"] == "In Service" && i["host"] != host.as_str());
            Ok((new && has_condition(&s, "DataNodeReplaced")).then_some(s))
        })
        .await?;
        ensure!(died.elapsed() >= Duration::from_millis(19_500), "replaced after {:.1?}, before the grace", died.elapsed());
        let old = instances(&s, "datanode").into_iter().find(|i| i["instance"]["name"] == dn.as_str()).cloned().unwrap_or_default();
        ensure!(!old["leaving"].is_null(), "{dn} not leaving: {old}");
        eprintln!("{dn} replaced {:.1?} after the death", died.elapsed());
        wait_for("HDFS fully replicated again", Duration::from_secs(90), || async {
            let h = env.status().await?["hdfs"].clone();
            ensure!(h["missing_blocks"] == 0, "missing blocks: {h}");
            Ok((h["under_replicated_blocks"] == 0).then_some(()))
        })
        .await?;

        // The host returns: what moved away is removed there first, nothing runs twice, and
        // the replaced DataNode leaves for good.
        env.bed.start_agent(n)?;
        let start = Instant::now();
        let mut max_copies = 0;
        loop {
            max_copies = max_copies.max(running_copies(&env.tenant, &nm));
            let s = env.status().await?;
            let old_gone = !instances(&s, "datanode").iter().any(|i| i["instance"]["name"] == dn.as_str());
            let fenced = containers_on(&env.tenant, &host, &nm) == 0 && containers_on(&env.tenant, &host, &dn) == 0;
            if old_gone && fenced {
                break;
            }
            ensure!(start.elapsed() < Duration::from_secs(90), "after the host's return: {dn} gone {old_gone}, containers removed {fenced}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(max_copies <= 1, "{nm} ran {max_copies} times at once");
        env.healthy(4, 2, Duration::from_secs(60)).await?;
        let h = env.status().await?["hdfs"].clone();
        ensure!(h["missing_blocks"] == 0 && h["blocks_total"] == 50, "{h}");
        Ok(())
    }
    .await;
    env.report(result).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_host_moves_everything_without_losing_a_block_then_it_is_deleted() -> Result<()> {
    let env = Env::start(&[]).await?;
    let result = async {
        let s = env.status().await?;
        let (host, dn, nm) = env.victim(&s)?;
        let (token, server) = (env.api.token().unwrap_or_default().to_string(), env.api.base.clone());
        let herd = move |args: &[&str]| Command::new(bins().join("herd")).env("HERD_TOKEN", &token).args(["--server", &server]).args(args).output();

        // Refused while anything is placed there, naming what and what to do.
        let (code, body) = env.api.delete(&format!("/v1/hosts/{host}")).await?;
        ensure!(code == 409 && body["detail"].as_str().is_some_and(|d| d.contains("drain")), "delete before the drain: {code} {body}");

        // The NameNode's view is sampled throughout: never a missing block.
        let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let (api, tenant, go) = (env.api.clone(), env.tenant.clone(), sampling.clone());
            tokio::spawn(async move {
                let mut worst = 0u64;
                while go.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(s) = status(&api, &tenant, CLUSTER).await {
                        worst = worst.max(s["hdfs"]["missing_blocks"].as_u64().unwrap_or(0));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                worst
            })
        };
        let started = Instant::now();
        let out = tokio::task::spawn_blocking({
            let (host, herd) = (host.clone(), herd.clone());
            move || herd(&["hosts", "drain", &host, "--wait", "--timeout", "3m"])
        })
        .await??;
        sampling.store(false, std::sync::atomic::Ordering::SeqCst);
        let worst = sampler.await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "herd hosts drain: {}\n{stderr}", out.status);
        ensure!(stderr.contains(&format!("draining {host}")) && stderr.contains(&dn), "no progress shown: {stderr}");
        eprintln!("drained in {:.1?}", started.elapsed());
        ensure!(worst == 0, "{worst} blocks were missing during the drain");

        // Nothing left on the host; everything whole elsewhere; the old instances gone.
        let (code, h) = env.api.get(&format!("/v1/hosts/{host}")).await?;
        ensure!(code == 200 && h["instances"] == 0 && h["cordoned"] == true && h["drain"]["done"] == true, "{code} {h}");
        let s = env.healthy(4, 2, Duration::from_secs(60)).await?;
        let names: BTreeSet<&str> = s["instances"].as_array().into_iter().flatten().filter_map(|i| i["instance"]["name"].as_str()).collect();
        ensure!(!names.contains(dn.as_str()) && !names.contains(nm.as_str()), "{dn} or {nm} still there: {names:?}");
        ensure!(s["instances"].as_array().into_iter().flatten().all(|i| i["host"] != host.as_str()), "{}", s["instances"]);
        ensure!(s["hdfs"]["missing_blocks"] == 0 && s["hdfs"]["blocks_total"] == 50, "{}", s["hdfs"]);

        // Deleted: gone from the list, its agent's token revoked, audited.
        let out = herd(&["hosts", "delete", &host])?;
        ensure!(out.status.success(), "herd hosts delete: {}", String::from_utf8_lossy(&out.stderr));
        let (_, hosts) = env.api.get("/v1/hosts").await?;
        ensure!(hosts["items"].as_array().into_iter().flatten().all(|h| h["info"]["id"] != host.as_str()), "{hosts}");
        let agent = env.api.with_token(&env.bed.agent_tokens[env.host_index(&host)]);
        let (code, _) = agent.post("/v1/agent/heartbeat", json!({"host_id": host, "observed": []})).await?;
        ensure!(code == 401, "the deleted host's agent token still works: {code}");
        let (_, audit) = env.api.get("/v1/audit?limit=200").await?;
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"] == format!("hosts/{host}").as_str())
            .filter_map(|e| e["action"].as_str())
            .collect();
        ensure!(actions.contains(&"host.drain") && actions.contains(&"host.delete"), "audit: {actions:?}");
        Ok(())
    }
    .await;
    env.report(result).await
}
