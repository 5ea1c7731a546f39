//! The NameNode double's wire (JSON over HTTP on the NameNode's RPC port) and the HDFS keys
//! the doubles read, typed and validated once.
//!
//! Errors travel as HTTP 4xx/5xx with a [`RemoteError`] body naming the Java exception a real
//! NameNode would throw, so callers print what Hadoop prints.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::conf::Conf;

/// One block: id, generation stamp, length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Block {
    pub id: u64,
    pub stamp: u64,
    pub len: u64,
}

impl Block {
    /// `blk_<id>_<stamp>` as Hadoop prints it.
    pub fn name(&self) -> String {
        format!("blk_{}_{}", self.id, self.stamp)
    }
}

/// A DataNode as a peer reaches it: its registered hostname and `ip:xferPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub hostname: String,
    pub xfer_addr: String,
}

/// `POST /dn/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    pub hostname: String,
    pub xfer_port: u16,
    pub info_port: u16,
    pub ipc_port: u16,
    pub uuid: String,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    pub pool_id: String,
    pub cluster_id: String,
    /// `ip:xferPort`, as the NameNode names the node.
    pub name: String,
}

/// `POST /dn/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub hostname: String,
    pub xfer_port: u16,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    /// Transfers in progress.
    pub xmits: u32,
}

/// A command the NameNode gives a DataNode in a heartbeat answer (`DatanodeCommand`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// DNA_REGISTER: the NameNode does not know the node (restarted, or declared it dead).
    Register,
    /// DNA_TRANSFER: copy a replica to other DataNodes.
    Transfer { block: Block, targets: Vec<Target> },
    /// DNA_INVALIDATE: delete replicas.
    Invalidate { blocks: Vec<u64> },
}

/// `POST /dn/blockreport` (full) and `POST /dn/received` (incremental).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockReport {
    pub hostname: String,
    pub xfer_port: u16,
    pub blocks: Vec<Block>,
    #[serde(default)]
    pub deleted: Vec<u64>,
}

/// `POST /client/create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Create {
    pub path: String,
    pub replication: u16,
    pub block_size: u64,
    pub overwrite: bool,
}

/// `POST /client/addblock`: the next block of a file under construction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddBlock {
    pub path: String,
    /// The client's hostname, so a writer on a DataNode gets its local node first.
    pub client_host: String,
}

/// A block and the DataNodes that hold it (or should receive it), in pipeline order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocatedBlock {
    pub pool_id: String,
    pub block: Block,
    pub targets: Vec<Target>,
}

/// `POST /client/complete`: the final lengths of the file's blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Complete {
    pub path: String,
    pub blocks: Vec<Block>,
}

/// `POST /client/delete` and `/client/mkdirs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathOp {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

/// One entry of a listing (`FileStatus`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    pub is_dir: bool,
    pub len: u64,
    pub replication: u16,
    pub block_size: u64,
    pub mtime: u64,
}

/// `GET /client/list?path=`: the path's status and, for a folder, its children.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listing {
    pub status: FileStatus,
    pub children: Vec<FileStatus>,
}

/// One node of `GET /admin/report` (`DatanodeInfo`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub hostname: String,
    pub name: String,
    pub location: String,
    pub admin_state: String,
    pub alive: bool,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub xceivers: u32,
    pub last_contact_ms: u64,
    pub last_block_report_ms: u64,
    pub num_blocks: u64,
}

/// `GET /admin/report` (`dfsadmin -report`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub under_replicated: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub missing_repl_one: u64,
    pub highest_priority: u64,
    pub pending_deletion: u64,
    pub nodes: Vec<NodeReport>,
}

/// `GET|POST /admin/safemode?action=get|enter|leave`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SafeMode {
    pub on: bool,
}

/// The error body of every failed call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteError {
    /// The Java class a real NameNode throws, e.g.
    /// `org.apache.hadoop.hdfs.server.protocol.DisallowedDatanodeException`.
    pub exception: String,
    pub message: String,
}

impl RemoteError {
    pub fn new(exception: &str, message: impl Into<String>) -> RemoteError {
        RemoteError { exception: exception.into(), message: message.into() }
    }

    /// The simple class name (`DisallowedDatanodeException`).
    pub fn short(&self) -> &str {
        self.exception.rsplit('.').next().unwrap_or(&self.exception)
    }
}

/// Exception classes the doubles send.
pub mod exc {
    pub const DISALLOWED: &str = "org.apache.hadoop.hdfs.server.protocol.DisallowedDatanodeException";
    pub const FILE_NOT_FOUND: &str = "java.io.FileNotFoundException";
    pub const FILE_EXISTS: &str = "org.apache.hadoop.fs.FileAlreadyExistsException";
    pub const SAFE_MODE: &str = "org.apache.hadoop.hdfs.server.namenode.SafeModeException";
    pub const IO: &str = "java.io.IOException";
    pub const NOT_EMPTY: &str = "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException";
}

/// The HDFS settings the doubles use, with hdfs-default.xml's defaults.
#[derive(Debug, Clone)]
pub struct HdfsConf {
    /// The NameNode's RPC endpoint as configured (host, port).
    pub nn_rpc: (String, u16),
    /// The NameNode's HTTP endpoint (host, port); a 0.0.0.0 host means the RPC host.
    pub nn_http: (String, u16),
    pub name_dir: PathBuf,
    pub data_dirs: Vec<PathBuf>,
    pub dn_xfer_port: u16,
    pub dn_http_port: u16,
    pub dn_ipc_port: u16,
    pub dn_hostname: Option<String>,
    pub replication: u16,
    pub min_block_size: u64,
    pub heartbeat_ms: u64,
    pub recheck_ms: u64,
    pub block_report_ms: u64,
    pub redundancy_ms: u64,
    pub work_multiplier: u64,
    pub max_streams: u32,
    pub decommission_ms: u64,
    pub pending_timeout_ms: u64,
    pub invalidate_limit: usize,
    pub safemode_threshold: f64,
    pub safemode_extension_ms: u64,
    pub safemode_min_datanodes: usize,
    pub hosts: Option<PathBuf>,
    pub exclude: Option<PathBuf>,
    pub topology_table: Option<PathBuf>,
    /// `net.topology.impl` is `NetworkTopologyWithNodeGroup`: locations are `/rack/nodegroup`.
    pub node_group: bool,
}

/// `host:port` (port optional) → parts.
fn host_port(v: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let v = v.trim();
    match v.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| anyhow::anyhow!("`{v}`: bad port"))?)),
        None => Ok((v.to_string(), default_port)),
    }
}

fn dir_list(v: &str) -> Vec<PathBuf> {
    v.split(',')
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .map(|d| {
            // `[DISK]file:///data` storage-type prefixes.
            let d = if d.starts_with('[') { d.split_once(']').map(|(_, r)| r).unwrap_or(d) } else { d };
            PathBuf::from(d.strip_prefix("file://").unwrap_or(d))
        })
        .collect()
}

impl HdfsConf {
    /// Reads and validates every key; all errors are reported together.
    pub fn from(conf: &Conf) -> anyhow::Result<HdfsConf> {
        let mut errors = Vec::new();
        macro_rules! take {
            ($e:expr, $d:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e.to_string());
                        $d
                    }
                }
            };
        }
        let default_fs = conf.get_or("fs.defaultFS", "file:///");
        let nn_rpc = match conf.get("dfs.namenode.rpc-address") {
            Some(v) => take!(host_port(v, 8020), (String::new(), 8020)),
            None => match default_fs.strip_prefix("hdfs://") {
                Some(rest) => take!(host_port(rest.trim_end_matches('/'), 8020), (String::new(), 8020)),
                None => {
                    errors.push(format!("Invalid URI for NameNode address (check fs.defaultFS): {default_fs} is not of scheme 'hdfs'."));
                    (String::new(), 8020)
                }
            },
        };
        let nn_http = take!(host_port(conf.get_or("dfs.namenode.http-address", "0.0.0.0:9870"), 9870), ("0.0.0.0".into(), 9870));
        let tmp = conf.get_or("hadoop.tmp.dir", "/tmp/hadoop-root").to_string();
        let name_dir = dir_list(&conf.get_or("dfs.namenode.name.dir", &format!("file://{tmp}/dfs/name")).replace("${hadoop.tmp.dir}", &tmp))
            .into_iter()
            .next()
            .unwrap_or_else(|| PathBuf::from(format!("{tmp}/dfs/name")));
        let data_dirs = dir_list(&conf.get_or("dfs.datanode.data.dir", &format!("file://{tmp}/dfs/data")).replace("${hadoop.tmp.dir}", &tmp));
        let port = |key: &str, default: &str, errors: &mut Vec<String>| match host_port(conf.get_or(key, default), 0) {
            Ok((_, p)) => p,
            Err(e) => {
                errors.push(format!("{key}: {e}"));
                0
            }
        };
        let dn_xfer_port = port("dfs.datanode.address", "0.0.0.0:9866", &mut errors);
        let dn_http_port = port("dfs.datanode.http.address", "0.0.0.0:9864", &mut errors);
        let dn_ipc_port = port("dfs.datanode.ipc.address", "0.0.0.0:9867", &mut errors);
        let c = HdfsConf {
            nn_rpc,
            nn_http,
            name_dir,
            data_dirs,
            dn_xfer_port,
            dn_http_port,
            dn_ipc_port,
            dn_hostname: conf.get("dfs.datanode.hostname").map(str::trim).filter(|h| !h.is_empty()).map(String::from),
            replication: take!(conf.num("dfs.replication", 3u16), 3),
            min_block_size: take!(conf.bytes("dfs.namenode.fs-limits.min-block-size", 1_048_576), 1_048_576),
            heartbeat_ms: take!(conf.duration_ms("dfs.heartbeat.interval", 3000, 1000.0), 3000),
            recheck_ms: take!(conf.duration_ms("dfs.namenode.heartbeat.recheck-interval", 300_000, 1.0), 300_000),
            block_report_ms: take!(conf.duration_ms("dfs.blockreport.intervalMsec", 21_600_000, 1.0), 21_600_000),
            redundancy_ms: take!(conf.duration_ms("dfs.namenode.redundancy.interval.seconds", 3000, 1000.0), 3000),
            work_multiplier: take!(conf.num("dfs.namenode.replication.work.multiplier.per.iteration", 2u64), 2),
            max_streams: take!(conf.num("dfs.namenode.replication.max-streams", 2u32), 2),
            decommission_ms: take!(conf.duration_ms("dfs.namenode.decommission.interval", 30_000, 1000.0), 30_000),
            pending_timeout_ms: take!(conf.duration_ms("dfs.namenode.reconstruction.pending.timeout-sec", 300_000, 1000.0), 300_000),
            invalidate_limit: take!(conf.num("dfs.block.invalidate.limit", 1000usize), 1000),
            safemode_threshold: take!(conf.num("dfs.namenode.safemode.threshold-pct", 0.999f64), 0.999),
            safemode_extension_ms: take!(conf.duration_ms("dfs.namenode.safemode.extension", 30_000, 1.0), 30_000),
            safemode_min_datanodes: take!(conf.num("dfs.namenode.safemode.min.datanodes", 0usize), 0),
            hosts: conf.path("dfs.hosts"),
            exclude: conf.path("dfs.hosts.exclude"),
            topology_table: conf.path("net.topology.table.file.name"),
            node_group: conf.get("net.topology.impl").is_some_and(|v| v.contains("WithNodeGroup")),
        };
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        Ok(c)
    }

    /// Milliseconds of silence after which a DataNode is dead (`DatanodeManager`:
    /// 2 × recheck interval + 10 × heartbeat interval).
    pub fn expire_ms(&self) -> u64 {
        2 * self.recheck_ms + 10 * self.heartbeat_ms
    }

    /// The NameNode's HTTP `host:port` as a client dials it.
    pub fn nn_http_host(&self) -> (String, u16) {
        let (h, p) = &self.nn_http;
        if h == "0.0.0.0" || h.is_empty() { (self.nn_rpc.0.clone(), *p) } else { (h.clone(), *p) }
    }
}

/// Reads a host list file (`dfs.hosts`/`dfs.hosts.exclude`): whitespace-separated names, `#`
/// comments. A missing file is an error (Hadoop fails the refresh).
pub fn read_host_list(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace())
        .map(|h| h.to_ascii_lowercase())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Conf {
        Conf { dir: PathBuf::from("/etc/hadoop/conf"), props: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn defaults_follow_hdfs_default_xml() {
        let c = HdfsConf::from(&conf(&[("fs.defaultFS", "hdfs://namenode-0.prod.acme:8020")])).unwrap();
        assert_eq!(c.nn_rpc, ("namenode-0.prod.acme".to_string(), 8020));
        assert_eq!(c.nn_http_host(), ("namenode-0.prod.acme".to_string(), 9870));
        assert_eq!((c.heartbeat_ms, c.recheck_ms, c.decommission_ms, c.redundancy_ms), (3000, 300_000, 30_000, 3000));
        assert_eq!(c.expire_ms(), 630_000);
        assert_eq!((c.replication, c.min_block_size, c.max_streams), (3, 1_048_576, 2));
        assert_eq!(c.dn_xfer_port, 9866);
    }

    #[test]
    fn units_and_lists() {
        let c = HdfsConf::from(&conf(&[
            ("dfs.namenode.rpc-address", "nn:9000"),
            ("dfs.heartbeat.interval", "1s"),
            ("dfs.blocksize", "128m"),
            ("dfs.namenode.decommission.interval", "2"),
            ("dfs.datanode.data.dir", "[DISK]file:///hadoop/dfs/data0, file:///hadoop/dfs/data1"),
            ("net.topology.impl", "org.apache.hadoop.net.NetworkTopologyWithNodeGroup"),
        ]))
        .unwrap();
        assert_eq!(c.nn_rpc, ("nn".to_string(), 9000));
        assert_eq!((c.heartbeat_ms, c.decommission_ms), (1000, 2000));
        assert_eq!(c.data_dirs, vec![PathBuf::from("/hadoop/dfs/data0"), PathBuf::from("/hadoop/dfs/data1")]);
        assert!(c.node_group);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let e = HdfsConf::from(&conf(&[("fs.defaultFS", "hdfs://nn:8020"), ("dfs.replication", "three"), ("dfs.heartbeat.interval", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dfs.replication") && e.contains("dfs.heartbeat.interval"), "{e}");
    }
}
