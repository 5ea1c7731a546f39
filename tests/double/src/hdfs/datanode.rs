//! The DataNode double: registers with the NameNode it finds through the rendered config,
//! heartbeats, reports its replicas (full at start and every `dfs.blockreport.intervalMsec`,
//! incremental on every change), stores each replica as a file, and serves block writes and
//! reads on its transfer port, which is also how it copies replicas to other DataNodes when
//! the NameNode orders it.
//!
//! # Storage
//! `<data dir>/current/VERSION` (the node's uuid), and per replica
//! `<data dir>/current/<pool>/current/finalized/blk_<id>` plus `blk_<id>_<stamp>.meta`, spread
//! round-robin over the data dirs. A start scans them: a DataNode recreated on an empty disk
//! has no replicas.
//!
//! # Transfer port (`dfs.datanode.address`, 9866)
//! `PUT /block/<id>?pool=&stamp=&downstream=ip:port,...` stores a replica and forwards it down the
//! pipeline (answering only when every downstream node has it); `GET /block/<id>` reads one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::Notify;

use super::namenode::bind_addr;
use super::proto::{Block, BlockReport, Command, HdfsConf, Heartbeat, Register, Registered, RemoteError};
use crate::common::{disk_space, log, now_millis};
use crate::conf;

const CLASS: &str = "org.apache.hadoop.hdfs.server.datanode.DataNode";

/// One stored replica.
#[derive(Debug, Clone, Copy)]
struct Replica {
    dir: usize,
    stamp: u64,
    len: u64,
}

/// Replica changes not yet reported.
#[derive(Debug, Default)]
struct Changes {
    received: Vec<Block>,
    deleted: Vec<u64>,
}

struct Node {
    hc: HdfsConf,
    hostname: String,
    uuid: String,
    pool: Mutex<Option<String>>,
    replicas: Mutex<HashMap<u64, Replica>>,
    changes: Mutex<Changes>,
    changed: Notify,
    next_dir: AtomicUsize,
    xmits: AtomicU32,
    http: reqwest::Client,
}

type St = Arc<Node>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    fn pool(&self) -> Option<String> {
        lock(&self.pool).clone()
    }

    fn finalized(&self, dir: usize, pool: &str) -> PathBuf {
        self.hc.data_dirs[dir].join("current").join(pool).join("current").join("finalized")
    }

    fn block_file(&self, dir: usize, pool: &str, id: u64) -> PathBuf {
        self.finalized(dir, pool).join(format!("blk_{id}"))
    }

    fn meta_file(&self, dir: usize, pool: &str, id: u64, stamp: u64) -> PathBuf {
        self.finalized(dir, pool).join(format!("blk_{id}_{stamp}.meta"))
    }

    /// Stores a replica (temp file, then rename into `finalized`).
    fn store(&self, pool: &str, b: Block, data: &[u8]) -> std::io::Result<()> {
        let dir = self.next_dir.fetch_add(1, Ordering::Relaxed) % self.hc.data_dirs.len();
        let fin = self.finalized(dir, pool);
        let tmp = self.hc.data_dirs[dir].join("current").join(pool).join("tmp");
        std::fs::create_dir_all(&fin)?;
        std::fs::create_dir_all(&tmp)?;
        let tmp_file = tmp.join(format!("blk_{}", b.id));
        std::fs::write(&tmp_file, data)?;
        // BlockMetadataHeader: version 1, CRC32C, 512 bytes per checksum (no checksums follow).
        std::fs::write(self.meta_file(dir, pool, b.id, b.stamp), [0u8, 1, 2, 0, 0, 2, 0])?;
        std::fs::rename(&tmp_file, self.block_file(dir, pool, b.id))?;
        lock(&self.replicas).insert(b.id, Replica { dir, stamp: b.stamp, len: data.len() as u64 });
        lock(&self.changes).received.push(Block { len: data.len() as u64, ..b });
        self.changed.notify_one();
        Ok(())
    }

    fn read(&self, id: u64) -> Option<(Block, Vec<u8>)> {
        let pool = self.pool()?;
        let r = *lock(&self.replicas).get(&id)?;
        let data = std::fs::read(self.block_file(r.dir, &pool, id)).ok()?;
        Some((Block { id, stamp: r.stamp, len: r.len }, data))
    }

    fn delete(&self, ids: &[u64]) {
        let Some(pool) = self.pool() else { return };
        let mut deleted = Vec::new();
        for id in ids {
            let Some(r) = lock(&self.replicas).remove(id) else { continue };
            let _ = std::fs::remove_file(self.block_file(r.dir, &pool, *id));
            let _ = std::fs::remove_file(self.meta_file(r.dir, &pool, *id, r.stamp));
            deleted.push(*id);
        }
        if !deleted.is_empty() {
            log("INFO", "org.apache.hadoop.hdfs.server.datanode.fsdataset.impl.FsDatasetAsyncDiskService", &format!("Deleted {pool} blocks {deleted:?}"));
            lock(&self.changes).deleted.extend(deleted);
            self.changed.notify_one();
        }
    }

    /// Scans the data dirs for the pool's replicas.
    fn scan(&self, pool: &str) {
        let mut map = HashMap::new();
        for dir in 0..self.hc.data_dirs.len() {
            let Ok(entries) = std::fs::read_dir(self.finalized(dir, pool)) else { continue };
            let names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            for name in &names {
                let Some(id) = name.strip_prefix("blk_").filter(|r| !r.contains('_')).and_then(|r| r.parse::<u64>().ok()) else { continue };
                let prefix = format!("blk_{id}_");
                let Some(stamp) = names.iter().find_map(|m| m.strip_prefix(&prefix)?.strip_suffix(".meta")?.parse().ok()) else { continue };
                let len = std::fs::metadata(self.block_file(dir, pool, id)).map(|m| m.len()).unwrap_or(0);
                map.insert(id, Replica { dir, stamp, len });
            }
        }
        log("INFO", "org.apache.hadoop.hdfs.server.datanode.fsdataset.impl.FsDatasetImpl", &format!("Total time to add all replicas to map for block pool {pool}: found {} replicas", map.len()));
        *lock(&self.replicas) = map;
    }

    fn space(&self) -> (u64, u64, u64) {
        let used: u64 = lock(&self.replicas).values().map(|r| r.len).sum();
        let (mut cap, mut avail) = (0, 0);
        for d in &self.hc.data_dirs {
            if let Some((c, a)) = disk_space(d) {
                cap += c;
                avail += a;
            }
        }
        (cap, used, avail)
    }

    fn all_blocks(&self) -> Vec<Block> {
        lock(&self.replicas).iter().map(|(id, r)| Block { id: *id, stamp: r.stamp, len: r.len }).collect()
    }
}

/// Reads or creates the node's uuid in the first data dir.
fn load_uuid(dirs: &[PathBuf]) -> anyhow::Result<String> {
    let mut usable = Vec::new();
    for d in dirs {
        match std::fs::create_dir_all(d.join("current")) {
            Ok(()) => usable.push(d.clone()),
            Err(e) => log("WARN", "org.apache.hadoop.hdfs.server.datanode.checker.StorageLocationChecker", &format!("Exception checking StorageLocation [DISK]file:{}: {e}", d.display())),
        }
    }
    let first = usable.first().ok_or_else(|| anyhow::anyhow!("org.apache.hadoop.util.DiskChecker$DiskErrorException: Too many failed volumes - current valid volumes: 0, volumes configured: {}, volumes failed: {}, volume failures tolerated: 0", dirs.len(), dirs.len()))?;
    let version = first.join("current").join("VERSION");
    if let Ok(text) = std::fs::read_to_string(&version)
        && let Some(u) = text.lines().find_map(|l| l.strip_prefix("datanodeUuid=")) {
            return Ok(u.trim().to_string());
        }
    let uuid = format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", rand::random::<u32>(), rand::random::<u16>(), rand::random::<u16>() & 0xfff, rand::random::<u16>() & 0xfff, rand::random::<u64>() & 0xffff_ffff_ffff);
    std::fs::write(&version, format!("#herd test double\ndatanodeUuid={uuid}\nstorageType=DATA_NODE\nlayoutVersion=-57\n"))?;
    Ok(uuid)
}

/// Runs the DataNode until `shutdown` resolves.
pub async fn run(hc: HdfsConf, hostname: String, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Registered under `dfs.datanode.hostname` when set; listening as the container.
    let name = hc.dn_hostname.clone().unwrap_or_else(|| hostname.clone());
    let uuid = load_uuid(&hc.data_dirs)?;
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(60)).build()?;
    let node: St = Arc::new(Node {
        hc: hc.clone(),
        hostname: name.clone(),
        uuid,
        pool: Mutex::new(None),
        replicas: Mutex::new(HashMap::new()),
        changes: Mutex::new(Changes::default()),
        changed: Notify::new(),
        next_dir: AtomicUsize::new(0),
        xmits: AtomicU32::new(0),
        http,
    });
    let xfer_addr = bind_addr(&hostname, hc.dn_xfer_port)?;
    let http_addr = bind_addr(&hostname, hc.dn_http_port)?;
    let xfer = tokio::net::TcpListener::bind(xfer_addr).await.map_err(|e| anyhow::anyhow!("java.net.BindException: Problem binding to [{xfer_addr}] {e}"))?;
    let info = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| anyhow::anyhow!("java.net.BindException: Port in use: {http_addr}: {e}"))?;
    log("INFO", CLASS, &format!("Opened streaming server at {xfer_addr}"));
    log("INFO", CLASS, &format!("Listening HTTP traffic on {http_addr}"));
    let xfer_app = Router::new().route("/block/{id}", get(read_block).put(write_block)).layer(DefaultBodyLimit::disable()).with_state(node.clone());
    let info_app = Router::new().route("/jmx", get(jmx)).with_state(node.clone());
    let a = tokio::spawn(axum::serve(xfer, xfer_app).into_future());
    let b = tokio::spawn(axum::serve(info, info_app).into_future());
    let actor = tokio::spawn(actor(node.clone()));
    shutdown.await;
    actor.abort();
    a.abort();
    b.abort();
    Ok(())
}

/// `BPServiceActor`: register, then heartbeat and report until told to register again.
async fn actor(node: St) {
    let (nn_host, nn_port) = node.hc.nn_rpc.clone();
    let mut tries = 0u64;
    loop {
        let Some(ip) = conf::resolve(&nn_host) else {
            log("WARN", CLASS, &format!("Problem connecting to server: {nn_host}:{nn_port} (java.net.UnknownHostException: {nn_host})"));
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let base = format!("http://{ip}:{nn_port}");
        let reg = match register(&node, &base).await {
            Ok(r) => r,
            Err(Some(e)) => {
                log(
                    "ERROR",
                    CLASS,
                    &format!("Initialization failed for Block pool <registering> (Datanode Uuid {}) service to {nn_host}/{ip}:{nn_port} {}", node.uuid, e.message),
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(None) => {
                tries += 1;
                log("INFO", "org.apache.hadoop.ipc.Client", &format!("Retrying connect to server: {nn_host}/{ip}:{nn_port}. Already tried {} time(s); retry policy is RetryUpToMaximumCountWithFixedSleep(maxRetries=10, sleepTime=1000 MILLISECONDS)", (tries - 1) % 10));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tries = 0;
        log("INFO", CLASS, &format!("Block pool {} (Datanode Uuid {}) service to {nn_host}/{ip}:{nn_port} successfully registered with NN", reg.pool_id, node.uuid));
        let new_pool = node.pool() != Some(reg.pool_id.clone());
        if new_pool {
            *lock(&node.pool) = Some(reg.pool_id.clone());
            node.scan(&reg.pool_id);
        }
        serve_nn(&node, &base).await;
    }
}

/// Registration: `Err(Some)` when the NameNode refused, `Err(None)` when it did not answer.
async fn register(node: &Node, base: &str) -> Result<Registered, Option<RemoteError>> {
    let (capacity, dfs_used, remaining) = node.space();
    let r = Register {
        hostname: node.hostname.clone(),
        xfer_port: node.hc.dn_xfer_port,
        info_port: node.hc.dn_http_port,
        ipc_port: node.hc.dn_ipc_port,
        uuid: node.uuid.clone(),
        capacity,
        dfs_used,
        remaining,
    };
    let resp = node.http.post(format!("{base}/dn/register")).json(&r).send().await.map_err(|_| None)?;
    if resp.status().is_success() {
        resp.json().await.map_err(|_| None)
    } else {
        Err(Some(resp.json().await.unwrap_or_else(|_| RemoteError::new("java.io.IOException", "bad answer"))))
    }
}

async fn post<T: serde::Serialize>(node: &Node, url: String, body: &T) -> Result<reqwest::Response, String> {
    node.http.post(url).json(body).send().await.map_err(|e| e.to_string())
}

/// Heartbeats and block reports until the NameNode asks for a new registration.
async fn serve_nn(node: &St, base: &str) {
    let hc = &node.hc;
    let report = |blocks: Vec<Block>, deleted: Vec<u64>| BlockReport { hostname: node.hostname.clone(), xfer_port: hc.dn_xfer_port, blocks, deleted };
    let mut next_full = tokio::time::Instant::now();
    let mut beat = tokio::time::interval(Duration::from_millis(hc.heartbeat_ms.max(100)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A pending incremental report that failed is retried with the next change or heartbeat.
    loop {
        if tokio::time::Instant::now() >= next_full {
            let blocks = node.all_blocks();
            let n = blocks.len();
            // Changes so far are covered by the full report.
            *lock(&node.changes) = Changes::default();
            match post(node, format!("{base}/dn/blockreport"), &report(blocks, vec![])).await {
                Ok(r) if r.status().is_success() => {
                    log("INFO", CLASS, &format!("Successfully sent block report to namenode: {base}, containing 1 storage report(s), of which we sent 1. The reports had {n} total blocks"));
                    next_full = tokio::time::Instant::now() + Duration::from_millis(hc.block_report_ms);
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => return,
                _ => {}
            }
        }
        tokio::select! {
            _ = beat.tick() => {
                let (capacity, dfs_used, remaining) = node.space();
                let h = Heartbeat { hostname: node.hostname.clone(), xfer_port: hc.dn_xfer_port, capacity, dfs_used, remaining, xmits: node.xmits.load(Ordering::Relaxed) };
                match post(node, format!("{base}/dn/heartbeat"), &h).await {
                    Ok(r) if r.status().is_success() => {
                        let cmds: Vec<Command> = r.json().await.unwrap_or_default();
                        for c in cmds {
                            match c {
                                Command::Register => {
                                    log("INFO", CLASS, "DatanodeCommand action : DNA_REGISTER from namenode");
                                    return;
                                }
                                Command::Invalidate { blocks } => node.delete(&blocks),
                                Command::Transfer { block, targets } => {
                                    let node = node.clone();
                                    node.xmits.fetch_add(1, Ordering::Relaxed);
                                    tokio::spawn(async move {
                                        transfer(&node, block, &targets).await;
                                        node.xmits.fetch_sub(1, Ordering::Relaxed);
                                    });
                                }
                            }
                        }
                    }
                    Ok(r) => {
                        let e: RemoteError = r.json().await.unwrap_or_else(|_| RemoteError::new("java.io.IOException", "bad answer"));
                        log("WARN", CLASS, &format!("Block pool {} (Datanode Uuid {}) service to {base} is shutting down: {}: {}", node.pool().unwrap_or_default(), node.uuid, e.exception, e.message));
                        return;
                    }
                    Err(e) => log("WARN", CLASS, &format!("IOException in offerService: java.io.EOFException: End of File Exception between local host is: \"{}\"; destination host is: \"{base}\"; {e}", node.hostname)),
                }
            }
            _ = node.changed.notified() => {}
        }
        let changes = std::mem::take(&mut *lock(&node.changes));
        if !changes.received.is_empty() || !changes.deleted.is_empty() {
            let ok = matches!(post(node, format!("{base}/dn/received"), &report(changes.received.clone(), changes.deleted.clone())).await, Ok(r) if r.status().is_success());
            if !ok {
                let mut c = lock(&node.changes);
                c.received.extend(changes.received);
                c.deleted.extend(changes.deleted);
            }
        }
    }
}

/// DNA_TRANSFER: sends a local replica down a pipeline of targets.
async fn transfer(node: &Node, block: Block, targets: &[super::proto::Target]) {
    let Some(pool) = node.pool() else { return };
    let Some((b, data)) = node.read(block.id) else {
        log("WARN", CLASS, &format!("{}:{} Can't send invalid block {pool}:{}", node.hostname, node.hc.dn_xfer_port, block.name()));
        return;
    };
    let addrs: Vec<String> = targets.iter().map(|t| t.xfer_addr.clone()).collect();
    match send(&node.http, &pool, b, data.into(), &addrs).await {
        Ok(()) => log("INFO", CLASS, &format!("DataTransfer, at {}:{}: Transmitted {pool}:{} (numBytes={}) to {}", node.hostname, node.hc.dn_xfer_port, b.name(), b.len, addrs.join(", "))),
        Err(e) => log("WARN", CLASS, &format!("DatanodeRegistration({}): Failed to transfer {pool}:{} to {}: {e}", node.hostname, b.name(), addrs.join(", "))),
    }
}

/// Writes a block to the first of `pipeline`, which forwards it to the rest.
pub async fn send(http: &reqwest::Client, pool: &str, b: Block, data: Bytes, pipeline: &[String]) -> Result<(), String> {
    let Some((first, rest)) = pipeline.split_first() else { return Ok(()) };
    let url = format!("http://{first}/block/{}?pool={pool}&gen={}&downstream={}", b.id, b.stamp, rest.join(","));
    let resp = http.put(url).body(data).send().await.map_err(|e| format!("java.io.IOException: Bad connect ack with firstBadLink as {first}: {e}"))?;
    if resp.status().is_success() { Ok(()) } else { Err(resp.text().await.unwrap_or_else(|_| format!("Bad connect ack with firstBadLink as {first}"))) }
}

async fn write_block(State(node): State<St>, UrlPath(id): UrlPath<u64>, Query(q): Query<HashMap<String, String>>, body: Bytes) -> Response {
    let Some(pool) = q.get("pool").cloned().filter(|p| node.pool().as_ref() == Some(p)) else {
        return (StatusCode::BAD_REQUEST, "java.io.IOException: block pool not registered on this DataNode").into_response();
    };
    let stamp = q.get("gen").and_then(|g| g.parse().ok()).unwrap_or(0);
    let b = Block { id, stamp, len: body.len() as u64 };
    if let Err(e) = node.store(&pool, b, &body) {
        log("ERROR", CLASS, &format!("{}:{}:DataXceiver error processing WRITE_BLOCK operation: {e}", node.hostname, node.hc.dn_xfer_port));
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("java.io.IOException: {e}")).into_response();
    }
    log("INFO", "org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace", &format!("src: client, dest: {}:{}, bytes: {}, op: HDFS_WRITE, blockid: {pool}:{}", node.hostname, node.hc.dn_xfer_port, b.len, b.name()));
    let downstream: Vec<String> = q.get("downstream").map(|d| d.split(',').filter(|s| !s.is_empty()).map(String::from).collect()).unwrap_or_default();
    if let Err(e) = send(&node.http, &pool, b, body, &downstream).await {
        return (StatusCode::BAD_GATEWAY, e).into_response();
    }
    StatusCode::OK.into_response()
}

async fn read_block(State(node): State<St>, UrlPath(id): UrlPath<u64>) -> Response {
    match node.read(id) {
        Some((_, data)) => data.into_response(),
        None => (StatusCode::NOT_FOUND, format!("org.apache.hadoop.hdfs.server.datanode.ReplicaNotFoundException: Replica not found for blk_{id}")).into_response(),
    }
}

async fn jmx(State(node): State<St>) -> Json<serde_json::Value> {
    let (cap, used, avail) = node.space();
    let volumes: serde_json::Map<String, serde_json::Value> =
        node.hc.data_dirs.iter().map(|d| (d.join("current").display().to_string(), serde_json::json!({"freeSpace": avail, "usedSpace": used, "reservedSpace": 0, "numBlocks": 0}))).collect();
    Json(serde_json::json!({"beans": [{
        "name": "Hadoop:service=DataNode,name=DataNodeInfo",
        "modelerType": "org.apache.hadoop.hdfs.server.datanode.DataNode",
        "Version": "3.3.6",
        "DatanodeHostname": node.hostname,
        "XceiverCount": node.xmits.load(Ordering::Relaxed) + 1,
        "NamenodeAddresses": serde_json::json!({node.hc.nn_rpc.0.clone(): node.pool()}).to_string(),
        "VolumeInfo": serde_json::Value::Object(volumes).to_string(),
        "Capacity": cap,
        "DfsUsed": used,
        "Remaining": avail,
        "NumBlocks": lock(&node.replicas).len(),
        "StartedAt": now_millis(),
    }]}))
}
