//! The NodeManager double: finds the ResourceManager only through the rendered config,
//! registers (NodeId = `yarn.nodemanager.address`, resources from config), heartbeats at the
//! interval the RM gives, runs the simulated containers the RM hands it and reports them
//! finished, and stops when the RM says SHUTDOWN — as the real NM's NodeStatusUpdaterImpl.
//!
//! ```text
//!  connect ──(refused / unresolvable: log, retry every second, forever)──▶ register
//!  register ── SHUTDOWN ──▶ "Error starting NodeManager", exit 255 (the real NM's System.exit(-1))
//!     │ NORMAL
//!     ▼
//!  heartbeat loop ── RESYNC ──▶ register again (running containers kept)
//!     └──────────── SHUTDOWN ─▶ "hence shutting down", exit 0
//! ```

use super::config::NmConf;
use crate::common::{log, shutdown_banner, startup_banner};
use super::wire::{
    ContainerLaunch, ContainerStatus, HeartbeatRequest, HeartbeatResponse, NodeAction, NodeHealth, RegisterRequest, RegisterResponse,
};
use crate::conf::{self, Conf};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const NM: &str = "nodemanager.NodeManager";
const UPDATER: &str = "nodemanager.NodeStatusUpdaterImpl";
const CONTAINER: &str = "container.ContainerImpl";

/// How the NodeManager ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT, or SHUTDOWN in a heartbeat (decommissioned): exit 0.
    Stopped,
    /// The RM refused the registration: the real NM fails to start and exits -1 (255).
    RegistrationRefused,
}

struct Running {
    launch: ContainerLaunch,
    ends: Instant,
}

/// The containers this NM runs, shared with its web server.
#[derive(Default)]
struct Containers {
    running: BTreeMap<String, Running>,
    /// Finished since the last heartbeat that reported them.
    completed: Vec<String>,
}

struct Nm {
    conf: NmConf,
    node_id: String,
    http: reqwest::Client,
    containers: Arc<Mutex<Containers>>,
    health: NodeHealth,
    next_health_check: Instant,
}

/// Runs the NodeManager until SHUTDOWN from the RM or `shutdown` resolves.
pub async fn run(conf: &Conf, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<Exit> {
    let hostname = conf::hostname();
    let nm_conf = NmConf::from_conf(conf, &hostname);
    let ip = conf::resolve(&hostname).map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    startup_banner(NM, "NodeManager", &hostname, &ip);

    // The ContainerManager's port: pinned, or an ephemeral one (what makes unpinned NodeIds
    // like `yarn-nm-2:11138`).
    let bind_ip = if conf::bind_to_own_address() {
        conf::resolve(&nm_conf.host).ok_or_else(|| anyhow::anyhow!("java.net.UnknownHostException: {}", nm_conf.host))?
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let cm_listener = tokio::net::TcpListener::bind(SocketAddr::new(bind_ip.into(), nm_conf.port))
        .await
        .map_err(|e| anyhow::anyhow!("java.net.BindException: {bind_ip}:{}: {e}", nm_conf.port))?;
    let port = cm_listener.local_addr()?.port();
    let node_id = format!("{}:{port}", nm_conf.host);
    log("INFO", "containermanager.ContainerManagerImpl", &format!("ContainerManager started at {node_id}"));

    let containers = Arc::new(Mutex::new(Containers::default()));
    let web_port = super::config::split_host_port(&nm_conf.http_address).1;
    let web_listener = tokio::net::TcpListener::bind(SocketAddr::new(bind_ip.into(), web_port))
        .await
        .map_err(|e| anyhow::anyhow!("java.net.BindException: {bind_ip}:{web_port}: {e}"))?;
    log("INFO", "webapp.WebApps", &format!("Web app node started at {web_port}"));
    let info = serde_json::json!({"nodeInfo": {
        "id": node_id,
        "nodeHostName": nm_conf.host,
        "totalVmemAllocatedContainersMB": nm_conf.memory_mb * 21 / 10,
        "totalPmemAllocatedContainersMB": nm_conf.memory_mb,
        "totalVCoresAllocatedContainers": nm_conf.vcores,
        "nodeManagerVersion": super::rest::VERSION,
        "hadoopVersion": super::rest::VERSION,
        "nodeHealthy": true,
        "healthReport": "",
    }});
    let web = Router::new().route("/ws/v1/node/info", get(move || std::future::ready(Json(info.clone()))));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, router) in [(web_listener, web), (cm_listener, Router::new())] {
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
    }

    let mut nm = Nm {
        conf: nm_conf,
        node_id,
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
        containers,
        health: NodeHealth { healthy: true, report: String::new() },
        next_health_check: Instant::now(),
    };
    let exit = tokio::select! {
        exit = nm.lifecycle() => exit,
        _ = shutdown => Exit::Stopped,
    };
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
    shutdown_banner(NM, "NodeManager", &hostname, &ip);
    Ok(exit)
}

impl Nm {
    /// The resource tracker's URL, resolved now (names may start resolving later).
    fn tracker(&self) -> Result<(String, String), String> {
        let addr = &self.conf.rm.resource_tracker;
        let host = super::config::split_host_port(addr).0;
        let sock = conf::resolve_addr(addr).ok_or_else(|| format!("java.net.UnknownHostException: {host}"))?;
        Ok((format!("http://{sock}"), format!("{host}/{sock}")))
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(&self, route: &str, body: &Req) -> Result<Resp, String> {
        let (url, shown) = self.tracker()?;
        let resp = self.http.post(format!("{url}{route}")).json(body).send().await.map_err(|e| format!("{shown}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{shown}: HTTP {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("{shown}: {e}"))
    }

    /// Registers, retrying until the RM answers.
    async fn register(&mut self) -> RegisterResponse {
        let shown = self.tracker().map(|t| t.1).unwrap_or_else(|e| e);
        log("INFO", "client.RMProxy", &format!("Connecting to ResourceManager at {shown}"));
        let mut tries: u64 = 0;
        loop {
            let running: Vec<ContainerStatus> = self.statuses(false);
            let req = RegisterRequest {
                node_id: self.node_id.clone(),
                http_address: self.conf.http_address.clone(),
                memory_mb: self.conf.memory_mb,
                vcores: self.conf.vcores,
                running,
            };
            match self.call::<_, RegisterResponse>("/registerNodeManager", &req).await {
                Ok(resp) => return resp,
                Err(e) => {
                    log("INFO", 
                        "ipc.Client",
                        &format!(
                            "Retrying connect to server: {e}. Already tried {} time(s); retry policy is RetryUpToMaximumCountWithFixedSleep(maxRetries=10, sleepTime=1000 MILLISECONDS)",
                            tries % 10
                        ),
                    );
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn lifecycle(&mut self) -> Exit {
        let mut registered = false;
        loop {
            let resp = self.register().await;
            if resp.action == NodeAction::Shutdown {
                let msg = format!(
                    "Recieved SHUTDOWN signal from Resourcemanager, Registration of NodeManager failed, Message from ResourceManager: {}",
                    resp.diagnostics
                );
                if registered {
                    // A resync refused: the node was removed meanwhile.
                    log("WARN", UPDATER, &msg);
                    return Exit::Stopped;
                }
                log("ERROR", NM, &format!("Error starting NodeManager\norg.apache.hadoop.yarn.exceptions.YarnRuntimeException: {msg}"));
                return Exit::RegistrationRefused;
            }
            registered = true;
            log("INFO", 
                UPDATER,
                &format!("Registered with ResourceManager as {} with total resource of <memory:{}, vCores:{}>", self.node_id, self.conf.memory_mb, self.conf.vcores),
            );
            let mut interval = Duration::from_millis(resp.heartbeat_interval_ms.max(10));
            loop {
                tokio::time::sleep(interval).await;
                self.finish_due();
                self.check_health().await;
                let req = HeartbeatRequest { node_id: self.node_id.clone(), health: self.health.clone(), containers: self.statuses(true) };
                let resp = match self.call::<_, HeartbeatResponse>("/nodeHeartbeat", &req).await {
                    Ok(r) => r,
                    Err(e) => {
                        log("WARN", UPDATER, &format!("Unexpected error heartbeating to the ResourceManager: java.net.ConnectException: {e}"));
                        self.requeue_completed(&req.containers);
                        continue;
                    }
                };
                interval = Duration::from_millis(resp.heartbeat_interval_ms.max(10));
                match resp.action {
                    NodeAction::Shutdown => {
                        log("WARN", UPDATER, "Received SHUTDOWN signal from Resourcemanager as part of heartbeat, hence shutting down.");
                        log("WARN", UPDATER, &format!("Message from ResourceManager: {}", resp.diagnostics));
                        return Exit::Stopped;
                    }
                    NodeAction::Resync => {
                        log("WARN", UPDATER, "Node is out of sync with ResourceManager, hence resyncing.");
                        log("WARN", UPDATER, &format!("Message from ResourceManager: {}", resp.diagnostics));
                        break;
                    }
                    NodeAction::Normal => self.apply(resp),
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Containers> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Running containers, plus (and then forgetting) the completed ones when `drain`.
    fn statuses(&self, drain: bool) -> Vec<ContainerStatus> {
        let mut c = self.lock();
        let mut out: Vec<ContainerStatus> = c.running.keys().map(|id| ContainerStatus { id: id.clone(), state: "RUNNING".into() }).collect();
        if drain {
            out.extend(std::mem::take(&mut c.completed).into_iter().map(|id| ContainerStatus { id, state: "COMPLETE".into() }));
        }
        out
    }

    /// A heartbeat that did not arrive must report its completions again.
    fn requeue_completed(&self, sent: &[ContainerStatus]) {
        let mut c = self.lock();
        c.completed.extend(sent.iter().filter(|s| s.state == "COMPLETE").map(|s| s.id.clone()));
    }

    fn finish_due(&self) {
        let now = Instant::now();
        let done: Vec<String> = {
            let mut c = self.lock();
            let done: Vec<String> = c.running.iter().filter(|(_, r)| r.ends <= now).map(|(id, _)| id.clone()).collect();
            for id in &done {
                c.running.remove(id);
                c.completed.push(id.clone());
            }
            done
        };
        for id in done {
            log("INFO", CONTAINER, &format!("Container {id} transitioned from RUNNING to EXITED_WITH_SUCCESS"));
        }
    }

    fn apply(&self, resp: HeartbeatResponse) {
        let now = Instant::now();
        for l in resp.launch {
            log("INFO", 
                CONTAINER,
                &format!("Container {} transitioned from SCHEDULED to RUNNING ({} of {}, {} MB, simulated for {} ms)", l.id, l.app_id, self.node_id, l.memory_mb, l.duration_ms),
            );
            let ends = now + Duration::from_millis(l.duration_ms);
            self.lock().running.insert(l.id.clone(), Running { launch: l, ends });
        }
        for id in resp.kill {
            let killed = self.lock().running.remove(&id);
            if let Some(r) = killed {
                log("INFO", CONTAINER, &format!("Container {} transitioned from RUNNING to KILLING ({})", id, r.launch.app_id));
                self.lock().completed.push(id);
            }
        }
    }

    /// Runs the health script when due: a line starting with `ERROR` makes the node unhealthy
    /// (Hadoop's NodeHealthScriptRunner); a script that cannot run leaves the health as it was.
    async fn check_health(&mut self) {
        let Some(script) = self.conf.health_script.clone() else { return };
        if Instant::now() < self.next_health_check {
            return;
        }
        self.next_health_check = Instant::now() + self.conf.health_interval;
        let out = tokio::process::Command::new(&script).output().await;
        let Ok(out) = out else { return };
        let text = String::from_utf8_lossy(&out.stdout);
        let error = text.lines().find(|l| l.starts_with("ERROR"));
        self.health = match error {
            Some(line) => NodeHealth { healthy: false, report: line.to_string() },
            None => NodeHealth { healthy: true, report: String::new() },
        };
    }
}
