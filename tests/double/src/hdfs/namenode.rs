//! The NameNode double's server: the RPC port (JSON over HTTP between the doubles) and the
//! HTTP port (`/jmx`, `/fsck`), the periodic monitors, and the namespace on disk.
//!
//! # RPC routes (port of `dfs.namenode.rpc-address` / `fs.defaultFS`, 8020)
//! | route | body → answer |
//! |---|---|
//! | `POST /dn/register` | [`Register`] → [`Registered`]; 403 `DisallowedDatanodeException` when the hostname does not resolve through the hosts file or is missing from a non-empty `dfs.hosts` |
//! | `POST /dn/heartbeat` | [`Heartbeat`] → `[Command]` (register, transfer, invalidate) |
//! | `POST /dn/blockreport` | full [`BlockReport`] |
//! | `POST /dn/received` | incremental [`BlockReport`] (received and deleted replicas) |
//! | `POST /client/create` | [`Create`] |
//! | `POST /client/addblock` | [`AddBlock`] → [`LocatedBlock`] (pipeline targets) |
//! | `POST /client/complete` | [`Complete`] |
//! | `POST /client/delete`, `/client/mkdirs` | [`PathOp`] → `bool` |
//! | `GET /client/list?path=` | [`Listing`] |
//! | `GET /client/locations?path=` | `[LocatedBlock]` |
//! | `POST /admin/refreshNodes` | re-reads `dfs.hosts` and `dfs.hosts.exclude` |
//! | `GET /admin/report` | [`Report`] |
//! | `POST /admin/safemode?action=get|enter|leave` | [`SafeMode`] |
//!
//! Errors: HTTP 4xx/5xx with a [`RemoteError`] body.
//!
//! # HTTP routes (port of `dfs.namenode.http-address`, 9870)
//! `GET /jmx[?qry=NAME]` in real Hadoop's shape; `GET /fsck?path=` as the fsck servlet prints.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::time::Instant;

use super::jmx;
use super::namesystem::{Admin, Fsck, Namespace, Namesystem, Settings};
use super::proto::{
    AddBlock, BlockReport, Complete, Create, HdfsConf, Heartbeat, NodeReport, PathOp, Register, RemoteError, Report, SafeMode, exc, read_host_list,
};
use super::topology::Table;
use crate::common::{log, now_millis};
use crate::conf;

const CLASS: &str = "org.apache.hadoop.hdfs.server.namenode.NameNode";
const BM: &str = "org.apache.hadoop.hdfs.StateChange";

struct Shared {
    sys: Mutex<Namesystem>,
    hc: HdfsConf,
    hostname: String,
    started_ms: u64,
}

type St = Arc<Shared>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Namesystem> {
        // A panic while holding the lock would be a bug; keep serving with the state as is.
        self.sys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn image_path(name_dir: &Path) -> PathBuf {
    name_dir.join("current").join("fsimage.json")
}

/// Loads the namespace, formatting an empty name dir first (as herd's images do on first start).
fn load_or_format(name_dir: &Path, ip: &str) -> anyhow::Result<Namespace> {
    let path = image_path(name_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let ns: Namespace = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            log("INFO", "org.apache.hadoop.hdfs.server.namenode.FSImage", &format!("Loaded image for txid 0 from {} ({} files)", path.display(), ns.files.len()));
            Ok(ns)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ns = Namespace::format(ip, now_millis());
            log("INFO", CLASS, &format!("Formatting using clusterid: {}", ns.cluster_id));
            save(name_dir, &ns)?;
            log("INFO", "org.apache.hadoop.hdfs.server.common.Storage", &format!("Storage directory {} has been successfully formatted.", name_dir.display()));
            Ok(ns)
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Writes the namespace atomically (temp file, fsync, rename) plus a `VERSION` file.
fn save(name_dir: &Path, ns: &Namespace) -> anyhow::Result<()> {
    use std::io::Write;
    let current = name_dir.join("current");
    std::fs::create_dir_all(&current)?;
    let tmp = current.join("fsimage.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string(ns)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, image_path(name_dir))?;
    let version = format!("#herd test double\nnamespaceID=1\nclusterID={}\nblockpoolID={}\nstorageType=NAME_NODE\nlayoutVersion=-66\n", ns.cluster_id, ns.pool_id);
    std::fs::write(current.join("VERSION"), version)?;
    Ok(())
}

fn persist(st: &Shared, sys: &mut Namesystem) {
    if !sys.dirty {
        return;
    }
    match save(&st.hc.name_dir, &sys.ns) {
        Ok(()) => sys.dirty = false,
        Err(e) => log("ERROR", "org.apache.hadoop.hdfs.server.namenode.FSEditLog", &format!("Error: saving the namespace to {} failed: {e}", st.hc.name_dir.display())),
    }
}

/// A [`RemoteError`] as an HTTP answer.
struct Failure(RemoteError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match self.0.short() {
            "DisallowedDatanodeException" => StatusCode::FORBIDDEN,
            "FileNotFoundException" => StatusCode::NOT_FOUND,
            "FileAlreadyExistsException" => StatusCode::CONFLICT,
            "SafeModeException" => StatusCode::SERVICE_UNAVAILABLE,
            "UnregisteredNodeException" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(self.0)).into_response()
    }
}

type Answer<T> = Result<Json<T>, Failure>;

fn settings(hc: &HdfsConf) -> Settings {
    Settings {
        default_replication: hc.replication,
        min_block_size: hc.min_block_size,
        expire_ms: hc.expire_ms(),
        work_multiplier: hc.work_multiplier,
        max_streams: hc.max_streams,
        pending_timeout_ms: hc.pending_timeout_ms,
        invalidate_limit: hc.invalidate_limit,
        safemode_threshold: hc.safemode_threshold,
        safemode_extension_ms: hc.safemode_extension_ms,
        safemode_min_datanodes: hc.safemode_min_datanodes,
        node_group: hc.node_group,
    }
}

/// Reads `dfs.hosts` and `dfs.hosts.exclude` (an unset key is an empty list; a missing file an error).
fn host_lists(hc: &HdfsConf) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let read = |p: &Option<PathBuf>| match p {
        Some(p) => read_host_list(p).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        None => Ok(Vec::new()),
    };
    Ok((read(&hc.hosts)?, read(&hc.exclude)?))
}

/// The address a daemon listens on for `port`: see [`conf::bind_to_own_address`].
pub fn bind_addr(hostname: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if conf::bind_to_own_address() {
        let ip = conf::resolve(hostname).ok_or_else(|| anyhow::anyhow!("java.net.UnknownHostException: {hostname}: Name or service not known"))?;
        Ok(SocketAddr::new(IpAddr::V4(ip), port))
    } else {
        Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
    }
}

/// Runs the NameNode until `shutdown` resolves.
pub async fn run(hc: HdfsConf, hostname: String, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let ip = conf::resolve(&hostname).map(|i| i.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    let ns = load_or_format(&hc.name_dir, &ip)?;
    let (include, exclude) = host_lists(&hc)?;
    let now = Instant::now();
    let sys = Namesystem::new(settings(&hc), ns, include, exclude, now);
    let st: St = Arc::new(Shared { sys: Mutex::new(sys), hc: hc.clone(), hostname: hostname.clone(), started_ms: now_millis() });

    let rpc_addr = bind_addr(&hostname, hc.nn_rpc.1)?;
    let http_addr = bind_addr(&hostname, hc.nn_http.1)?;
    let rpc = tokio::net::TcpListener::bind(rpc_addr).await.map_err(|e| anyhow::anyhow!("java.net.BindException: Problem binding to [{rpc_addr}] {e}"))?;
    let http = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| anyhow::anyhow!("java.net.BindException: Port in use: {http_addr}: {e}"))?;
    log("INFO", CLASS, &format!("NameNode RPC up at: {hostname}/{ip}:{}", hc.nn_rpc.1));
    log("INFO", "org.apache.hadoop.http.HttpServer2", &format!("Jetty bound to port {}", hc.nn_http.1));
    log("INFO", CLASS, &format!("Web-server for hdfs at: http://{}:{}", http_addr.ip(), hc.nn_http.1));
    {
        let sys = st.lock();
        if sys.in_safemode() {
            log("INFO", "org.apache.hadoop.hdfs.StateChange", "STATE* Safe mode ON.");
        } else {
            log("INFO", "org.apache.hadoop.hdfs.StateChange", "STATE* Safe mode is OFF");
        }
    }

    let rpc_app = Router::new()
        .route("/dn/register", post(register))
        .route("/dn/heartbeat", post(heartbeat))
        .route("/dn/blockreport", post(block_report))
        .route("/dn/received", post(received))
        .route("/client/create", post(create))
        .route("/client/addblock", post(add_block))
        .route("/client/complete", post(complete))
        .route("/client/delete", post(delete))
        .route("/client/mkdirs", post(mkdirs))
        .route("/client/list", get(list))
        .route("/client/locations", get(locations))
        .route("/admin/refreshNodes", post(refresh_nodes))
        .route("/admin/report", get(report))
        .route("/admin/safemode", post(safemode).get(safemode))
        .with_state(st.clone());
    let http_app = Router::new().route("/jmx", get(jmx_handler)).route("/fsck", get(fsck_handler)).route("/", get(|| async { "NameNode (herd test double, NOT Hadoop)\n" })).with_state(st.clone());

    let monitors = tokio::spawn(monitors(st.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let a = tokio::spawn(axum::serve(rpc, rpc_app).with_graceful_shutdown(stopped(stop_rx.clone())).into_future());
    let b = tokio::spawn(axum::serve(http, http_app).with_graceful_shutdown(stopped(stop_rx)).into_future());
    shutdown.await;
    let _ = stop_tx.send(true);
    monitors.abort();
    // Open connections get a moment to finish, no more.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = a.await;
        let _ = b.await;
    })
    .await;
    let mut sys = st.lock();
    persist(&st, &mut sys);
    Ok(())
}

/// The heartbeat, redundancy, decommission and safe-mode monitors.
async fn monitors(st: St) {
    let hc = &st.hc;
    let tick = |ms: u64| {
        let mut i = tokio::time::interval(Duration::from_millis(ms.max(100)));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    };
    let mut heartbeat = tick(hc.recheck_ms.min(1000));
    let mut redundancy = tick(hc.redundancy_ms);
    let mut decommission = tick(hc.decommission_ms);
    let mut safemode = tick(1000);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let mut sys = st.lock();
                for key in sys.check_heartbeats(Instant::now()) {
                    let addr = sys.nodes.get(&key).map(|n| n.xfer_addr()).unwrap_or_default();
                    log("INFO", "org.apache.hadoop.net.NetworkTopology", &format!("Removing a node: {addr}"));
                    log("INFO", BM, &format!("BLOCK* removeDeadDatanode: lost heartbeat from {addr}, removeBlocksFromBlockMap true"));
                }
            }
            _ = redundancy.tick() => {
                st.lock().redundancy_tick(Instant::now());
            }
            _ = decommission.tick() => {
                let mut sys = st.lock();
                for key in sys.decommission_tick() {
                    let addr = sys.nodes.get(&key).map(|n| n.xfer_addr()).unwrap_or_default();
                    log("INFO", "org.apache.hadoop.hdfs.server.blockmanagement.DatanodeAdminManager", &format!("Decommissioning complete for node {addr}"));
                }
            }
            _ = safemode.tick() => {
                let mut sys = st.lock();
                let was = sys.in_safemode();
                sys.check_safemode(Instant::now());
                if was && !sys.in_safemode() {
                    log("INFO", "org.apache.hadoop.hdfs.StateChange", "STATE* Safe mode is OFF");
                    log("INFO", "org.apache.hadoop.hdfs.StateChange", &format!("STATE* Network topology has {} racks and {} datanodes", 1, sys.nodes.len()));
                }
            }
        }
    }
}

async fn register(State(st): State<St>, Json(r): Json<Register>) -> Answer<super::proto::Registered> {
    let ip = conf::resolve(&r.hostname);
    let table = Table::read(st.hc.topology_table.as_deref());
    let mut sys = st.lock();
    match sys.register(&r, ip, &table, Instant::now(), now_millis()) {
        Ok(reg) => {
            let loc = sys.nodes.get(&format!("{}:{}", r.hostname.to_ascii_lowercase(), r.xfer_port)).map(|n| (n.loc.path.clone(), n.admin));
            log("INFO", BM, &format!("BLOCK* registerDatanode: from DatanodeRegistration({}, datanodeUuid={}, infoPort={}, infoSecurePort=0, ipcPort={}, storageInfo=lv=-57;cid={};nsid=0;c=0) storage {}", reg.name, r.uuid, r.info_port, r.ipc_port, reg.cluster_id, r.uuid));
            if let Some((path, admin)) = loc {
                log("INFO", "org.apache.hadoop.net.NetworkTopology", &format!("Adding a new node: {path}/{}", reg.name));
                if admin == Admin::DecommissionInProgress {
                    log("INFO", "org.apache.hadoop.hdfs.server.blockmanagement.DatanodeAdminManager", &format!("Starting decommission of {} with 0 blocks", reg.name));
                }
            }
            Ok(Json(reg))
        }
        Err(e) => {
            log("WARN", "org.apache.hadoop.ipc.Server", &format!("IPC Server handler on {}, call Call#1 Retry#0 org.apache.hadoop.hdfs.server.protocol.DatanodeProtocol.registerDatanode: {}: {}", st.hc.nn_rpc.1, e.exception, e.message));
            Err(Failure(e))
        }
    }
}

async fn heartbeat(State(st): State<St>, Json(h): Json<Heartbeat>) -> Answer<Vec<super::proto::Command>> {
    st.lock().heartbeat(&h, Instant::now(), now_millis()).map(Json).map_err(Failure)
}

async fn block_report(State(st): State<St>, Json(r): Json<BlockReport>) -> Answer<()> {
    let mut sys = st.lock();
    let res = sys.block_report(&r, Instant::now());
    if res.is_ok() {
        log("INFO", "BlockStateChange", &format!("BLOCK* processReport: from storage DS-{} node {}:{}, blocks: {}, hasStaleStorage: false", r.hostname, r.hostname, r.xfer_port, r.blocks.len()));
    }
    res.map(Json).map_err(Failure)
}

async fn received(State(st): State<St>, Json(r): Json<BlockReport>) -> Answer<()> {
    st.lock().incremental(&r, Instant::now()).map(Json).map_err(Failure)
}

async fn create(State(st): State<St>, Json(c): Json<Create>) -> Answer<()> {
    let mut sys = st.lock();
    let res = sys.create(&c, now_millis());
    persist(&st, &mut sys);
    res.map(Json).map_err(Failure)
}

async fn add_block(State(st): State<St>, Json(a): Json<AddBlock>) -> Answer<super::proto::LocatedBlock> {
    let mut sys = st.lock();
    let res = sys.add_block(&a);
    if let Ok(lb) = &res {
        let targets: Vec<&str> = lb.targets.iter().map(|t| t.xfer_addr.as_str()).collect();
        log("INFO", BM, &format!("BLOCK* allocate {}, replicas={} for {}", lb.block.name(), targets.join(", "), a.path));
    }
    res.map(Json).map_err(Failure)
}

async fn complete(State(st): State<St>, Json(c): Json<Complete>) -> Answer<()> {
    let mut sys = st.lock();
    let res = sys.complete(&c, now_millis());
    persist(&st, &mut sys);
    if res.is_ok() {
        log("INFO", BM, &format!("DIR* completeFile: {} is closed by DFSClient_NONMAPREDUCE", c.path));
    }
    res.map(Json).map_err(Failure)
}

async fn delete(State(st): State<St>, Json(p): Json<PathOp>) -> Answer<bool> {
    let mut sys = st.lock();
    let res = sys.delete(&p.path, p.recursive);
    persist(&st, &mut sys);
    res.map(Json).map_err(Failure)
}

async fn mkdirs(State(st): State<St>, Json(p): Json<PathOp>) -> Answer<bool> {
    let mut sys = st.lock();
    let res = sys.mkdirs(&p.path);
    persist(&st, &mut sys);
    res.map(|()| Json(true)).map_err(Failure)
}

async fn list(State(st): State<St>, Query(q): Query<HashMap<String, String>>) -> Answer<super::proto::Listing> {
    st.lock().list(q.get("path").map(String::as_str).unwrap_or("/")).map(Json).map_err(Failure)
}

async fn locations(State(st): State<St>, Query(q): Query<HashMap<String, String>>) -> Answer<Vec<super::proto::LocatedBlock>> {
    st.lock().block_locations(q.get("path").map(String::as_str).unwrap_or("/")).map(Json).map_err(Failure)
}

async fn refresh_nodes(State(st): State<St>) -> Answer<()> {
    let (include, exclude) = host_lists(&st.hc).map_err(|e| Failure(RemoteError::new(exc::IO, e.to_string())))?;
    let mut sys = st.lock();
    for (key, admin) in sys.refresh_nodes(include, exclude) {
        let Some(n) = sys.nodes.get(&key) else { continue };
        let msg = match admin {
            Admin::DecommissionInProgress => format!("Starting decommission of {} [DISK]DS-{}:NORMAL:{} with {} blocks", n.xfer_addr(), n.uuid, n.xfer_addr(), n.blocks.len()),
            Admin::Decommissioned => format!("Dead node {} is decommissioned immediately.", n.xfer_addr()),
            _ => format!("Stopping decommissioning of {} node {}", if n.alive { "live" } else { "dead" }, n.xfer_addr()),
        };
        log("INFO", "org.apache.hadoop.hdfs.server.blockmanagement.DatanodeAdminManager", &msg);
    }
    log("INFO", CLASS, "Refreshed nodes: dfs.hosts and dfs.hosts.exclude re-read");
    Ok(Json(()))
}

async fn report(State(st): State<St>) -> Answer<Report> {
    let sys = st.lock();
    let now = Instant::now();
    let s = sys.summary();
    let mut nodes: Vec<NodeReport> = sys
        .nodes
        .values()
        .map(|n| NodeReport {
            hostname: n.hostname.clone(),
            name: n.xfer_addr(),
            location: n.loc.path.clone(),
            admin_state: n.admin.report().into(),
            alive: n.alive && n.registered,
            capacity: n.capacity,
            dfs_used: n.dfs_used,
            remaining: n.remaining,
            xceivers: n.xmits + 1,
            last_contact_ms: n.last_contact_ms,
            last_block_report_ms: n.last_report.map(|r| now_millis().saturating_sub(now.saturating_duration_since(r).as_millis() as u64)).unwrap_or(0),
            num_blocks: n.blocks.len() as u64,
        })
        .collect();
    for key in sys.unregistered_included(st.hc.dn_xfer_port) {
        let host = key.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        nodes.push(NodeReport {
            hostname: host,
            name: key,
            location: "/default-rack".into(),
            admin_state: "Normal".into(),
            alive: false,
            capacity: 0,
            dfs_used: 0,
            remaining: 0,
            xceivers: 0,
            last_contact_ms: 0,
            last_block_report_ms: 0,
            num_blocks: 0,
        });
    }
    Ok(Json(Report {
        capacity: s.capacity,
        dfs_used: s.dfs_used,
        remaining: s.remaining,
        under_replicated: s.under_replicated,
        corrupt: 0,
        missing: s.missing,
        missing_repl_one: s.missing_repl_one,
        highest_priority: s.highest_priority,
        pending_deletion: s.pending_deletion,
        nodes,
    }))
}

async fn safemode(State(st): State<St>, Query(q): Query<HashMap<String, String>>) -> Answer<SafeMode> {
    let mut sys = st.lock();
    match q.get("action").map(String::as_str).unwrap_or("get") {
        "enter" => sys.set_safemode(true),
        "leave" => sys.set_safemode(false),
        _ => {}
    }
    Ok(Json(SafeMode { on: sys.in_safemode() }))
}

async fn jmx_handler(State(st): State<St>, Query(q): Query<HashMap<String, String>>) -> Response {
    let sys = st.lock();
    let name_dir = st.hc.name_dir.display().to_string();
    let cx = jmx::Context {
        now: Instant::now(),
        started_ms: st.started_ms,
        hostname: &st.hostname,
        rpc_port: st.hc.nn_rpc.1,
        name_dir: &name_dir,
        xfer_port: st.hc.dn_xfer_port,
    };
    let beans: Vec<serde_json::Value> = jmx::beans(&sys, &cx)
        .into_iter()
        .filter(|b| q.get("qry").is_none_or(|qry| b.get("name").and_then(|n| n.as_str()).is_some_and(|n| jmx::matches(qry, n))))
        .collect();
    let body = serde_json::to_string_pretty(&serde_json::json!({ "beans": beans })).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json; charset=utf8")], body).into_response()
}

async fn fsck_handler(State(st): State<St>, Query(q): Query<HashMap<String, String>>) -> Response {
    let path = q.get("path").cloned().unwrap_or_else(|| "/".into());
    let user = q.get("ugi").cloned().unwrap_or_else(|| "root".into());
    let started = now_millis();
    let result = st.lock().fsck(&path);
    let text = match result {
        Ok(f) => fsck_text(&f, &path, &user, started),
        Err(e) => format!(
            "FSCK started by {user} (auth:SIMPLE) from /127.0.0.1 for path {path} at {}\nFSCK ended at {} in 0 milliseconds\nPath '{path}' does not exist\n\n\nFsck on path '{path}' FAILED\n",
            crate::common::java_date(started),
            crate::common::java_date(now_millis()),
        )
        .replace("Path '", if e.short() == "FileNotFoundException" { "Path '" } else { "Error on path '" }),
    };
    ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn pct_of(part: u64, total: u64) -> String {
    crate::common::java_float((part as f32 * 100.0) / total as f32)
}

/// The fsck servlet's text (`NamenodeFsck` in Hadoop 3), ending with the HEALTHY/CORRUPT line.
pub fn fsck_text(f: &Fsck, path: &str, user: &str, started_ms: u64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "FSCK started by {user} (auth:SIMPLE) from /127.0.0.1 for path {path} at {}", crate::common::java_date(started_ms));
    for p in &f.problems {
        let _ = writeln!(o, "{p}");
    }
    let healthy = f.missing_blocks == 0;
    let _ = writeln!(o, "\nStatus: {}", if healthy { "HEALTHY" } else { "CORRUPT" });
    let _ = writeln!(o, " Number of data-nodes:\t{}", f.datanodes);
    let _ = writeln!(o, " Number of racks:\t\t{}", f.racks);
    let _ = writeln!(o, " Total dirs:\t\t\t{}", f.total_dirs);
    let _ = writeln!(o, " Total symlinks:\t\t0");
    let _ = writeln!(o, "\nReplicated Blocks:");
    let _ = writeln!(o, " Total size:\t{} B", f.total_size);
    let _ = writeln!(o, " Total files:\t{}", f.total_files);
    let tb = f.total_blocks;
    let with_pct = |n: u64| if tb > 0 { format!("{n} ({} %)", pct_of(n, tb)) } else { n.to_string() };
    let avg = f.total_size.checked_div(tb).map(|a| format!(" (avg. block size {a} B)")).unwrap_or_default();
    let _ = writeln!(o, " Total blocks (validated):\t{tb}{avg}");
    if f.missing_blocks > 0 {
        let _ = writeln!(o, "  ********************************\n  UNDER MIN REPL'D BLOCKS:\t{} ({} %)\n  MINIMUM REPLICATED BLOCKS:\t1\n  CORRUPT BLOCKS: \t{}\n  MISSING SIZE:\t\t{} B\n  ********************************", f.missing_blocks, pct_of(f.missing_blocks, tb), f.missing_blocks, f.missing_size);
    }
    let _ = writeln!(o, " Minimally replicated blocks:\t{}", with_pct(f.min_replicated));
    let _ = writeln!(o, " Over-replicated blocks:\t{}", with_pct(f.over_replicated));
    let _ = writeln!(o, " Under-replicated blocks:\t{}", with_pct(f.under_replicated));
    let _ = writeln!(o, " Mis-replicated blocks:\t\t{}", with_pct(f.mis_replicated));
    let _ = writeln!(o, " Default replication factor:\t{}", f.default_replication);
    let avg_repl = if tb > 0 { f.total_replicas as f32 / tb as f32 } else { 0.0 };
    let _ = writeln!(o, " Average block replication:\t{}", crate::common::java_float(avg_repl));
    let _ = writeln!(o, " Missing blocks:\t\t{}", f.missing_blocks);
    let _ = writeln!(o, " Corrupt blocks:\t\t0");
    let missing_repl = if f.expected_replicas > 0 { format!("{} ({} %)", f.missing_replicas, pct_of(f.missing_replicas, f.expected_replicas)) } else { f.missing_replicas.to_string() };
    let _ = writeln!(o, " Missing replicas:\t\t{missing_repl}");
    if f.decommissioned_replicas > 0 {
        let _ = writeln!(o, " DecommissionedReplicas:\t{}", f.decommissioned_replicas);
    }
    if f.decommissioning_replicas > 0 {
        let _ = writeln!(o, " DecommissioningReplicas:\t{}", f.decommissioning_replicas);
    }
    let _ = writeln!(o, " Blocks queued for replication:\t0");
    let _ = writeln!(o, "\nErasure Coded Block Groups:");
    let _ = writeln!(o, " Total size:\t0 B\n Total files:\t0\n Total block groups (validated):\t0\n Minimally erasure-coded block groups:\t0\n Over-erasure-coded block groups:\t0\n Under-erasure-coded block groups:\t0\n Unsatisfactory placement block groups:\t0\n Average block group size:\t0.0\n Missing block groups:\t\t0\n Corrupt block groups:\t\t0\n Missing internal blocks:\t0\n Blocks queued for replication:\t0");
    let _ = writeln!(o, "FSCK ended at {} in {} milliseconds", crate::common::java_date(now_millis()), now_millis().saturating_sub(started_ms));
    let _ = writeln!(o, "\n\nThe filesystem under path '{path}' is {}", if healthy { "HEALTHY" } else { "CORRUPT" });
    o
}
