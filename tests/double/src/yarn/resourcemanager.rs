//! The ResourceManager double: the [`Cluster`] model behind four servers on the configured
//! addresses (resource tracker 8031, client 8032, admin 8033, web services 8088; routes in
//! [`super::wire`] and [`super::rest`]), a liveness monitor (every expiry/3, as
//! NMLivelinessMonitor) and the decommissioning watcher's poll.

use super::cluster::{Cluster, HostLists, Settings};
use super::config::RmConf;
use crate::common::{log, now_millis as now_ms, shutdown_banner, startup_banner};
use super::rest;
use super::wire::{
    DecommissionType, DecommissioningNodes, HeartbeatRequest, NodeReport, RefreshNodesRequest, RegisterRequest, SleepAppRequest,
    SleepAppResponse,
};
use crate::conf::{self, Conf};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const CLASS: &str = "resourcemanager.ResourceManager";

/// Shared by the handlers and the timers.
#[derive(Clone)]
struct Rm {
    /// A std mutex: every operation on the model is short and synchronous.
    cluster: Arc<Mutex<Cluster>>,
    conf: Arc<RmConf>,
}

impl Rm {
    /// Runs `f` on the model, then writes what it logged.
    fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let (out, lines) = match self.cluster.lock() {
            Ok(mut c) => {
                let out = f(&mut c);
                (out, std::mem::take(&mut c.log))
            }
            Err(poisoned) => {
                let mut c = poisoned.into_inner();
                let out = f(&mut c);
                (out, std::mem::take(&mut c.log))
            }
        };
        for l in lines {
            log(l.level, l.class, &l.message);
        }
        out
    }
}

/// Reads the include and exclude files; a configured file that cannot be read is an error, as
/// Hadoop's HostsFileReader fails on it.
fn read_lists(conf: &RmConf) -> Result<HostLists, String> {
    let read = |p: &Option<std::path::PathBuf>| -> Result<_, String> {
        match p {
            None => Ok(Default::default()),
            Some(path) => std::fs::read_to_string(path)
                .map(|t| HostLists::parse_hosts(&t))
                .map_err(|e| format!("java.io.FileNotFoundException: {} ({e})", path.display())),
        }
    };
    Ok(HostLists { include: read(&conf.include_path)?, exclude: read(&conf.exclude_path)? })
}

/// Where a server for `addr` (`host:port`) listens: the address the name resolves to when
/// doubles share loopback in tests, else every interface (a container's only one).
fn bind_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = super::config::split_host_port(addr);
    if conf::bind_to_own_address() {
        let ip = conf::resolve(&host).ok_or_else(|| anyhow::anyhow!("java.net.UnknownHostException: {host}"))?;
        Ok(SocketAddr::new(ip.into(), port))
    } else {
        Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))
    }
}

/// Runs the ResourceManager until `shutdown` resolves.
pub async fn run(conf: &Conf, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let rm_conf = RmConf::from_conf(conf);
    let host = conf::hostname();
    let ip = conf::resolve(&host).map(|ip| ip.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    startup_banner(CLASS, "ResourceManager", &host, &ip);
    let lists = read_lists(&rm_conf).map_err(|e| anyhow::anyhow!(e))?;
    let settings = Settings {
        min_allocation_mb: rm_conf.min_allocation_mb,
        min_allocation_vcores: rm_conf.min_allocation_vcores,
        heartbeat_interval_ms: u64::try_from(rm_conf.heartbeat_interval.as_millis()).unwrap_or(1000),
        nm_expiry_ms: u64::try_from(rm_conf.nm_expiry.as_millis()).unwrap_or(600_000),
        graceful_timeout_secs: rm_conf.graceful_timeout_secs,
    };
    let rm = Rm { cluster: Arc::new(Mutex::new(Cluster::new(settings, lists, now_ms()))), conf: Arc::new(rm_conf.clone()) };

    let tracker = Router::new()
        .route("/registerNodeManager", post(register))
        .route("/nodeHeartbeat", post(heartbeat))
        .with_state(rm.clone());
    let client = Router::new()
        .route("/getClusterNodes", get(cluster_nodes))
        .route("/herd-double/submitSleepApp", post(submit_sleep))
        .with_state(rm.clone());
    let admin = Router::new()
        .route("/refreshNodes", post(refresh_nodes))
        .route("/checkForDecommissioningNodes", get(check_decommissioning))
        .with_state(rm.clone());
    let web = Router::new()
        .route("/ws/v1/cluster", get(ws_info))
        .route("/ws/v1/cluster/info", get(ws_info))
        .route("/ws/v1/cluster/metrics", get(ws_metrics))
        .route("/ws/v1/cluster/nodes", get(ws_nodes))
        .route("/ws/v1/cluster/nodes/{id}", get(ws_node))
        .with_state(rm.clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let a = &rm_conf.addrs;
    for (name, addr, router, class) in [
        ("resource-tracker", &a.resource_tracker, tracker, "resourcemanager.ResourceTrackerService"),
        ("client", &a.client, client, "resourcemanager.ClientRMService"),
        ("admin", &a.admin, admin, "resourcemanager.AdminService"),
        ("webapp", &a.webapp, web, "webapp.WebApps"),
    ] {
        let bind = bind_addr(addr)?;
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| anyhow::anyhow!("java.net.BindException: {bind} ({name}): {e}"))?;
        if name == "webapp" {
            log("INFO", class, &format!("Web app cluster started at {}", bind.port()));
        } else {
            log("INFO", "ipc.Server", &format!("IPC Server listener on {}: starting", bind.port()));
            log("INFO", class, &format!("{name} service listening on {bind} ({addr})"));
        }
        let mut stop = stop_rx.clone();
        servers.spawn(async move {
            let svc = router.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, svc)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    log("INFO", CLASS, "Transitioned to active state");

    let liveness = rm.clone();
    let check_every = (rm_conf.nm_expiry / 3).max(Duration::from_millis(50));
    let mut stop = stop_rx.clone();
    servers.spawn(async move {
        let mut tick = tokio::time::interval(check_every);
        loop {
            tokio::select! {
                _ = tick.tick() => liveness.with(|c| c.expire(now_ms())),
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });
    let watcher = rm.clone();
    let poll = rm_conf.decommission_poll.max(Duration::from_millis(50));
    let mut stop = stop_rx.clone();
    servers.spawn(async move {
        let mut tick = tokio::time::interval(poll);
        loop {
            tokio::select! {
                _ = tick.tick() => watcher.with(|c| c.poll_decommissioning(now_ms())),
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });

    tokio::select! {
        _ = shutdown => {}
        Some(res) = servers.join_next() => {
            if let Ok(Err(e)) = res {
                log("ERROR", CLASS, &format!("a server stopped: {e}"));
            }
        }
    }
    let _ = stop_tx.send(true);
    let drain = async { while servers.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    shutdown_banner(CLASS, "ResourceManager", &host, &ip);
    Ok(())
}

fn peer_ip(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

async fn register(State(rm): State<Rm>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Json(req): Json<RegisterRequest>) -> Response {
    let ip = peer_ip(&peer);
    Json(rm.with(|c| c.register(&req, Some(&ip), now_ms()))).into_response()
}

async fn heartbeat(State(rm): State<Rm>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Json(req): Json<HeartbeatRequest>) -> Response {
    let ip = peer_ip(&peer);
    Json(rm.with(|c| c.heartbeat(&req, Some(&ip), now_ms()))).into_response()
}

#[derive(Deserialize)]
struct StatesQuery {
    states: Option<String>,
}

async fn cluster_nodes(State(rm): State<Rm>, Query(q): Query<StatesQuery>) -> Response {
    match rest::parse_states(q.states.as_deref().unwrap_or("")) {
        Ok(states) => Json::<Vec<NodeReport>>(rm.with(|c| c.reports(&states))).into_response(),
        Err(bad) => (StatusCode::BAD_REQUEST, format!("The node state {bad} is invalid.")).into_response(),
    }
}

async fn submit_sleep(State(rm): State<Rm>, Json(req): Json<SleepAppRequest>) -> Response {
    match rm.with(|c| c.submit_sleep(&req)) {
        Ok(app_id) => Json(SleepAppResponse { app_id }).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn refresh_nodes(State(rm): State<Rm>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Json(req): Json<RefreshNodesRequest>) -> Response {
    let lists = match req.kind {
        DecommissionType::Forceful => Ok(rm.with(|c| c.lists.clone())),
        _ => read_lists(&rm.conf),
    };
    match lists {
        Ok(lists) => {
            rm.with(|c| c.refresh_nodes(lists, req.kind, req.timeout_secs, now_ms()));
            let ip = peer_ip(&peer);
            log("INFO", "resourcemanager.RMAuditLogger", &format!("USER=root\tIP={ip}\tOPERATION=refreshNodes\tTARGET=AdminService\tRESULT=SUCCESS"));
            Json(serde_json::json!({})).into_response()
        }
        Err(e) => {
            log("WARN", "resourcemanager.AdminService", &format!("Exception refreshing nodes: {e}"));
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}

async fn check_decommissioning(State(rm): State<Rm>) -> Json<DecommissioningNodes> {
    Json(DecommissioningNodes { nodes: rm.with(|c| c.decommissioning()) })
}

async fn ws_info(State(rm): State<Rm>) -> Json<serde_json::Value> {
    Json(rm.with(|c| rest::info(c)))
}

async fn ws_metrics(State(rm): State<Rm>) -> Json<serde_json::Value> {
    Json(rm.with(|c| rest::metrics(c)))
}

async fn ws_nodes(State(rm): State<Rm>, Query(q): Query<HashMap<String, String>>) -> Response {
    match rest::parse_states(q.get("states").map(String::as_str).unwrap_or("")) {
        Ok(states) => Json(rm.with(|c| rest::nodes(c, &states))).into_response(),
        Err(bad) => (StatusCode::BAD_REQUEST, Json(rest::bad_request(&format!("Invalid node state: {bad}")))).into_response(),
    }
}

async fn ws_node(State(rm): State<Rm>, Path(id): Path<String>) -> Response {
    match rm.with(|c| c.nodes.get(&id).map(rest::node)) {
        Some(node) => Json(serde_json::json!({ "node": node })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(rest::node_not_found(&id))).into_response(),
    }
}
