//! The NameNode double's state, without I/O: the namespace (files → blocks, persisted by the
//! server), DataNodes and their replicas (from block reports only), placement over the
//! topology, the redundancy monitor, decommission, liveness and safe mode.
//!
//! Every method takes `now` (a tokio-clock [`Instant`]) so tests drive time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::proto::{
    AddBlock, Block, BlockReport, Command, Complete, Create, FileStatus, Heartbeat, Listing, LocatedBlock, Register, Registered,
    RemoteError, Target, exc,
};
use super::topology::{Location, Table};

/// The persisted namespace (the double's fsimage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Namespace {
    pub cluster_id: String,
    pub pool_id: String,
    pub next_block_id: u64,
    pub gen_stamp: u64,
    pub files: BTreeMap<String, INode>,
    pub dirs: BTreeSet<String>,
}

impl Namespace {
    /// A freshly formatted namespace (`hdfs namenode -format`).
    pub fn format(ip: &str, now_ms: u64) -> Namespace {
        let r: u32 = rand::random();
        let uuid = format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rand::random::<u32>(), r >> 16, r & 0xfff, r >> 20, rand::random::<u64>() & 0xffff_ffff_ffff);
        Namespace {
            cluster_id: format!("CID-{uuid}"),
            pool_id: format!("BP-{}-{ip}-{now_ms}", rand::random::<u32>() >> 1),
            next_block_id: 1_073_741_825,
            gen_stamp: 1001,
            files: BTreeMap::new(),
            dirs: ["/".to_string()].into(),
        }
    }
}

/// A file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct INode {
    pub blocks: Vec<Block>,
    pub replication: u16,
    pub block_size: u64,
    pub mtime: u64,
    /// False while being written.
    pub complete: bool,
}

/// A DataNode's admin state (`DatanodeInfo.AdminStates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Normal,
    DecommissionInProgress,
    Decommissioned,
}

impl Admin {
    /// As `/jmx` shows it.
    pub fn jmx(self) -> &'static str {
        match self {
            Admin::Normal => "In Service",
            Admin::DecommissionInProgress => "Decommission In Progress",
            Admin::Decommissioned => "Decommissioned",
        }
    }

    /// As `dfsadmin -report` shows it.
    pub fn report(self) -> &'static str {
        match self {
            Admin::Normal => "Normal",
            Admin::DecommissionInProgress => "Decommission in progress",
            Admin::Decommissioned => "Decommissioned",
        }
    }
}

/// What the NameNode knows of one DataNode (`DatanodeDescriptor`).
#[derive(Debug, Clone)]
pub struct Node {
    pub hostname: String,
    pub ip: String,
    pub xfer_port: u16,
    pub info_port: u16,
    pub ipc_port: u16,
    pub uuid: String,
    pub loc: Location,
    pub admin: Admin,
    /// False for a node only named in the include file (never registered).
    pub registered: bool,
    pub alive: bool,
    pub last_contact: Instant,
    pub last_contact_ms: u64,
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub xmits: u32,
    pub blocks: BTreeSet<u64>,
    pub last_report: Option<Instant>,
    pub transfers: Vec<Command>,
    pub invalidate: BTreeSet<u64>,
    pub disallowed: bool,
    /// Decommission progress (`LeavingServiceStatus`).
    pub decom_under_replicated: u64,
    pub decom_only_replicas: u64,
}

impl Node {
    /// `ip:xferPort` (`DatanodeID.getXferAddr`).
    pub fn xfer_addr(&self) -> String {
        format!("{}:{}", self.ip, self.xfer_port)
    }

    /// `hostname:xferPort`, the key of LiveNodes/DeadNodes (`getXferAddrWithHostname`).
    pub fn key(&self) -> String {
        format!("{}:{}", self.hostname, self.xfer_port)
    }

    fn target(&self) -> Target {
        Target { hostname: self.hostname.clone(), xfer_addr: self.xfer_addr() }
    }

    /// Counts toward redundancy: alive and in service.
    fn counts(&self) -> bool {
        self.alive && self.admin == Admin::Normal
    }
}

/// Settings the namesystem uses (from [`super::proto::HdfsConf`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_replication: u16,
    pub min_block_size: u64,
    pub expire_ms: u64,
    pub work_multiplier: u64,
    pub max_streams: u32,
    pub pending_timeout_ms: u64,
    pub invalidate_limit: usize,
    pub safemode_threshold: f64,
    pub safemode_extension_ms: u64,
    pub safemode_min_datanodes: usize,
    pub node_group: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SafeMode {
    Off,
    /// Automatic; `reached` once thresholds are met (the extension runs from there).
    On { reached: Option<Instant> },
    /// `dfsadmin -safemode enter`: only `leave` ends it.
    Manual,
}

/// Redundancy of one block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replicas {
    /// On alive, in-service nodes.
    pub live: usize,
    /// On alive nodes leaving or out of service.
    pub out_of_service: usize,
    pub expected: usize,
}

/// Cluster-wide numbers for `/jmx`, `-report` and fsck.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub capacity: u64,
    pub dfs_used: u64,
    pub remaining: u64,
    pub files_total: u64,
    pub blocks_total: u64,
    pub under_replicated: u64,
    pub missing: u64,
    pub missing_repl_one: u64,
    pub highest_priority: u64,
    pub pending_replication: u64,
    pub scheduled_replication: u64,
    pub pending_deletion: u64,
    pub live: u64,
    pub dead: u64,
    pub decom_live: u64,
    pub decom_dead: u64,
    pub decommissioning: u64,
    pub total_load: u64,
    pub safemode: Option<String>,
}

/// The fsck summary of a path.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fsck {
    pub total_size: u64,
    pub total_dirs: u64,
    pub total_files: u64,
    pub total_blocks: u64,
    pub min_replicated: u64,
    pub over_replicated: u64,
    pub under_replicated: u64,
    pub mis_replicated: u64,
    pub default_replication: u16,
    pub total_replicas: u64,
    pub missing_blocks: u64,
    pub missing_size: u64,
    pub missing_replicas: u64,
    pub expected_replicas: u64,
    pub decommissioned_replicas: u64,
    pub decommissioning_replicas: u64,
    pub datanodes: u64,
    pub racks: u64,
    /// Per-block problems, as fsck prints them before the summary.
    pub problems: Vec<String>,
}

/// The NameNode double's state.
pub struct Namesystem {
    pub settings: Settings,
    pub ns: Namespace,
    pub nodes: BTreeMap<String, Node>,
    locations: HashMap<u64, BTreeSet<String>>,
    block_file: HashMap<u64, String>,
    /// Blocks being re-replicated: targets and when scheduled (`PendingReconstructionBlocks`).
    pending: HashMap<u64, (Vec<String>, Instant)>,
    include: Vec<String>,
    exclude: Vec<String>,
    safemode: SafeMode,
    /// The namespace changed and must be saved.
    pub dirty: bool,
}

/// Normalizes a path: absolute, no trailing slash, no empty parts.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    }
}

fn strip_port(h: &str) -> String {
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => h.to_string(),
    }
}

impl Namesystem {
    /// A namesystem over a loaded namespace, in safe mode until replicas are reported.
    pub fn new(settings: Settings, ns: Namespace, include: Vec<String>, exclude: Vec<String>, now: Instant) -> Namesystem {
        let mut block_file = HashMap::new();
        for (path, f) in &ns.files {
            for b in &f.blocks {
                block_file.insert(b.id, path.clone());
            }
        }
        let mut s = Namesystem {
            settings,
            ns,
            nodes: BTreeMap::new(),
            locations: HashMap::new(),
            block_file,
            pending: HashMap::new(),
            include: include.iter().map(|h| strip_port(h)).collect(),
            exclude: exclude.iter().map(|h| strip_port(h)).collect(),
            safemode: SafeMode::On { reached: None },
            dirty: false,
        };
        s.check_safemode(now);
        s
    }

    fn listed(list: &[String], hostname: &str, ip: &str) -> bool {
        list.iter().any(|h| h.eq_ignore_ascii_case(hostname) || h == ip)
    }

    /// `registerDatanode`: `ip` is the hostname resolved by the NameNode (`None`: it does not
    /// resolve, which a real NameNode rejects).
    pub fn register(&mut self, r: &Register, ip: Option<Ipv4Addr>, table: &Table, now: Instant, now_ms: u64) -> Result<Registered, RemoteError> {
        let hostname = r.hostname.to_ascii_lowercase();
        let Some(ip) = ip else {
            return Err(RemoteError::new(
                exc::DISALLOWED,
                format!("Datanode denied communication with namenode because hostname cannot be resolved (ip=unknown, hostname={hostname}): DatanodeRegistration({hostname}:{}, datanodeUuid={}, infoPort={}, infoSecurePort=0, ipcPort={}, storageInfo=lv=-57;cid={};nsid=0;c=0)", r.xfer_port, r.uuid, r.info_port, r.ipc_port, self.ns.cluster_id),
            ));
        };
        let ip = ip.to_string();
        if !self.include.is_empty() && !Self::listed(&self.include, &hostname, &ip) {
            return Err(RemoteError::new(
                exc::DISALLOWED,
                format!("Datanode denied communication with namenode because the host is not in the include-list: DatanodeRegistration({ip}:{}, datanodeUuid={}, infoPort={}, infoSecurePort=0, ipcPort={}, storageInfo=lv=-57;cid={};nsid=0;c=0)", r.xfer_port, r.uuid, r.info_port, r.ipc_port, self.ns.cluster_id),
            ));
        }
        let key = format!("{hostname}:{}", r.xfer_port);
        let excluded = Self::listed(&self.exclude, &hostname, &ip);
        let loc = table.locate(&hostname, &ip, self.settings.node_group);
        // A re-registering node starts over: its replicas come back with its block report.
        self.drop_replicas(&key);
        let node = self.nodes.entry(key.clone()).or_insert_with(|| Node {
            hostname: hostname.clone(),
            ip: ip.clone(),
            xfer_port: r.xfer_port,
            info_port: r.info_port,
            ipc_port: r.ipc_port,
            uuid: r.uuid.clone(),
            loc: loc.clone(),
            admin: Admin::Normal,
            registered: true,
            alive: true,
            last_contact: now,
            last_contact_ms: now_ms,
            capacity: 0,
            dfs_used: 0,
            remaining: 0,
            xmits: 0,
            blocks: BTreeSet::new(),
            last_report: None,
            transfers: Vec::new(),
            invalidate: BTreeSet::new(),
            disallowed: false,
            decom_under_replicated: 0,
            decom_only_replicas: 0,
        });
        node.ip = ip;
        node.info_port = r.info_port;
        node.ipc_port = r.ipc_port;
        node.uuid = r.uuid.clone();
        node.loc = loc;
        node.registered = true;
        node.alive = true;
        node.disallowed = false;
        node.last_contact = now;
        node.last_contact_ms = now_ms;
        node.capacity = r.capacity;
        node.dfs_used = r.dfs_used;
        node.remaining = r.remaining;
        node.last_report = None;
        // startAdminOperationIfNecessary: the exclude list decides.
        if excluded {
            if node.admin == Admin::Normal {
                node.admin = Admin::DecommissionInProgress;
            }
        } else {
            node.admin = Admin::Normal;
        }
        Ok(Registered { pool_id: self.ns.pool_id.clone(), cluster_id: self.ns.cluster_id.clone(), name: node.xfer_addr() })
    }

    /// Forgets a node's replicas (it died, or it re-registers).
    fn drop_replicas(&mut self, key: &str) {
        let Some(node) = self.nodes.get_mut(key) else { return };
        for id in std::mem::take(&mut node.blocks) {
            if let Some(locs) = self.locations.get_mut(&id) {
                locs.remove(key);
            }
        }
        node.transfers.clear();
        node.invalidate.clear();
        for (targets, _) in self.pending.values_mut() {
            targets.retain(|t| t != key);
        }
        self.pending.retain(|_, (t, _)| !t.is_empty());
    }

    /// `sendHeartbeat`: the commands for the node.
    pub fn heartbeat(&mut self, h: &Heartbeat, now: Instant, now_ms: u64) -> Result<Vec<Command>, RemoteError> {
        let key = format!("{}:{}", h.hostname.to_ascii_lowercase(), h.xfer_port);
        let Some(node) = self.nodes.get_mut(&key).filter(|n| n.registered && n.alive) else {
            return Ok(vec![Command::Register]);
        };
        if node.disallowed {
            return Err(RemoteError::new(exc::DISALLOWED, format!("Datanode denied communication with namenode because the host is not in the include-list: {}", node.xfer_addr())));
        }
        node.last_contact = now;
        node.last_contact_ms = now_ms;
        node.capacity = h.capacity;
        node.dfs_used = h.dfs_used;
        node.remaining = h.remaining;
        node.xmits = h.xmits;
        let mut cmds: Vec<Command> = std::mem::take(&mut node.transfers);
        if !node.invalidate.is_empty() {
            let blocks: Vec<u64> = node.invalidate.iter().take(self.settings.invalidate_limit).copied().collect();
            for b in &blocks {
                node.invalidate.remove(b);
            }
            cmds.push(Command::Invalidate { blocks });
        }
        Ok(cmds)
    }

    fn reporting_node(&mut self, hostname: &str, port: u16) -> Result<String, RemoteError> {
        let key = format!("{}:{port}", hostname.to_ascii_lowercase());
        match self.nodes.get(&key) {
            Some(n) if n.registered && n.alive => Ok(key),
            _ => Err(RemoteError::new("org.apache.hadoop.hdfs.protocol.UnregisteredNodeException", format!("Data node {key} is attempting to report storage ID but is not registered"))),
        }
    }

    fn add_replica(&mut self, key: &str, b: &Block) {
        let known = self.block_file.get(&b.id).and_then(|p| self.ns.files.get(p)).and_then(|f| f.blocks.iter().find(|x| x.id == b.id));
        match known {
            Some(k) if k.stamp == b.stamp => {
                self.locations.entry(b.id).or_default().insert(key.to_string());
                if let Some(n) = self.nodes.get_mut(key) {
                    n.blocks.insert(b.id);
                }
                if let Some((targets, _)) = self.pending.get_mut(&b.id) {
                    targets.retain(|t| t != key);
                    if targets.is_empty() {
                        self.pending.remove(&b.id);
                    }
                }
            }
            // Not in the namespace (deleted while the node was away): delete it.
            _ => {
                if let Some(n) = self.nodes.get_mut(key) {
                    n.invalidate.insert(b.id);
                }
            }
        }
    }

    fn remove_replica(&mut self, key: &str, id: u64) {
        if let Some(l) = self.locations.get_mut(&id) {
            l.remove(key);
        }
        if let Some(n) = self.nodes.get_mut(key) {
            n.blocks.remove(&id);
        }
    }

    /// A full block report: the node's replicas are exactly these.
    pub fn block_report(&mut self, r: &BlockReport, now: Instant) -> Result<(), RemoteError> {
        let key = self.reporting_node(&r.hostname, r.xfer_port)?;
        let reported: BTreeSet<u64> = r.blocks.iter().map(|b| b.id).collect();
        let old: Vec<u64> = self.nodes.get(&key).map(|n| n.blocks.iter().copied().collect()).unwrap_or_default();
        for id in old.into_iter().filter(|id| !reported.contains(id)) {
            self.remove_replica(&key, id);
        }
        for b in &r.blocks {
            self.add_replica(&key, b);
        }
        if let Some(n) = self.nodes.get_mut(&key) {
            n.last_report = Some(now);
        }
        self.check_safemode(now);
        Ok(())
    }

    /// An incremental block report (received and deleted replicas).
    pub fn incremental(&mut self, r: &BlockReport, now: Instant) -> Result<(), RemoteError> {
        let key = self.reporting_node(&r.hostname, r.xfer_port)?;
        for b in &r.blocks {
            self.add_replica(&key, b);
        }
        for id in &r.deleted {
            self.remove_replica(&key, *id);
        }
        self.check_safemode(now);
        Ok(())
    }

    /// Declares nodes dead that were silent longer than the expiry interval.
    pub fn check_heartbeats(&mut self, now: Instant) -> Vec<String> {
        let expire = std::time::Duration::from_millis(self.settings.expire_ms);
        let dead: Vec<String> =
            self.nodes.iter().filter(|(_, n)| n.alive && n.registered && now.saturating_duration_since(n.last_contact) > expire).map(|(k, _)| k.clone()).collect();
        for key in &dead {
            self.drop_replicas(key);
            if let Some(n) = self.nodes.get_mut(key) {
                n.alive = false;
            }
        }
        dead
    }

    /// Redundancy of one block.
    pub fn replicas(&self, id: u64, expected: u16) -> Replicas {
        let mut r = Replicas { expected: expected as usize, ..Replicas::default() };
        for key in self.locations.get(&id).into_iter().flatten() {
            if let Some(n) = self.nodes.get(key).filter(|n| n.alive) {
                if n.admin == Admin::Normal {
                    r.live += 1;
                } else {
                    r.out_of_service += 1;
                }
            }
        }
        r
    }

    /// Complete files' blocks with their expected replication.
    fn all_blocks(&self) -> impl Iterator<Item = (&String, &Block, u16)> {
        self.ns.files.iter().filter(|(_, f)| f.complete).flat_map(|(p, f)| f.blocks.iter().map(move |b| (p, b, f.replication)))
    }

    /// Replication queues exist only once safe mode's block threshold was met.
    fn repl_queues(&self) -> bool {
        !matches!(self.safemode, SafeMode::On { reached: None })
    }

    /// Picks up to `n` targets for a block whose replicas are on `existing`, honouring the
    /// node-group layer (never two replicas in one group) and spreading over racks.
    pub fn choose_targets(&self, n: usize, existing: &BTreeSet<String>, exclude: &BTreeSet<String>, writer: Option<&str>) -> Vec<String> {
        let mut groups: BTreeSet<String> = BTreeSet::new();
        let mut racks: BTreeMap<String, usize> = BTreeMap::new();
        for k in existing {
            if let Some(node) = self.nodes.get(k) {
                groups.insert(node.loc.group.clone());
                *racks.entry(node.loc.rack.clone()).or_default() += 1;
            }
        }
        let mut chosen: Vec<String> = Vec::new();
        let mut rng = rand::rng();
        for _ in 0..n {
            let candidates: Vec<&Node> = self
                .nodes
                .iter()
                .filter(|(k, node)| {
                    node.counts() && node.registered && !node.disallowed && !existing.contains(*k) && !exclude.contains(*k) && !chosen.contains(k) && !groups.contains(&node.loc.group)
                })
                .map(|(_, node)| node)
                .collect();
            if candidates.is_empty() {
                break;
            }
            let local = (existing.is_empty() && chosen.is_empty()).then_some(writer).flatten().and_then(|w| candidates.iter().find(|c| c.hostname.eq_ignore_ascii_case(w)));
            let pick = match local {
                Some(l) => *l,
                None => {
                    let least = candidates.iter().map(|c| racks.get(&c.loc.rack).copied().unwrap_or(0)).min().unwrap_or(0);
                    let spread: Vec<&Node> = candidates.iter().copied().filter(|c| racks.get(&c.loc.rack).copied().unwrap_or(0) == least).collect();
                    // Among those, the least loaded ones (fewest replicas), at random.
                    let fewest = spread.iter().map(|c| c.blocks.len()).min().unwrap_or(0);
                    let light: Vec<&Node> = spread.into_iter().filter(|c| c.blocks.len() <= fewest + 2).collect();
                    match light.choose(&mut rng) {
                        Some(c) => *c,
                        None => break,
                    }
                }
            };
            groups.insert(pick.loc.group.clone());
            *racks.entry(pick.loc.rack.clone()).or_default() += 1;
            chosen.push(pick.key());
        }
        chosen
    }

    /// One pass of the redundancy monitor (`RedundancyMonitor`): schedules copies of
    /// under-replicated blocks at a bounded rate and deletes excess replicas.
    pub fn redundancy_tick(&mut self, now: Instant) {
        if self.safemode != SafeMode::Off {
            return;
        }
        let timeout = std::time::Duration::from_millis(self.settings.pending_timeout_ms);
        self.pending.retain(|_, (_, at)| now.saturating_duration_since(*at) < timeout);
        let live = self.nodes.values().filter(|n| n.alive && n.registered).count() as u64;
        let mut budget = live * self.settings.work_multiplier;
        let mut under: Vec<(usize, u64, u16)> = Vec::new();
        let mut over: Vec<(u64, u16)> = Vec::new();
        for (_, b, repl) in self.all_blocks() {
            let r = self.replicas(b.id, repl);
            if r.live < r.expected {
                under.push((r.live, b.id, repl));
            } else if r.live > r.expected && !self.pending.contains_key(&b.id) {
                over.push((b.id, repl));
            }
        }
        under.sort();
        let mut rng = rand::rng();
        for (live_n, id, repl) in under {
            if budget == 0 {
                break;
            }
            let pending_n = self.pending.get(&id).map(|(t, _)| t.len()).unwrap_or(0);
            let need = (repl as usize).saturating_sub(live_n + pending_n);
            if need == 0 {
                continue;
            }
            let holders: BTreeSet<String> = self.locations.get(&id).cloned().unwrap_or_default();
            let sources: Vec<&String> = holders
                .iter()
                .filter(|k| self.nodes.get(*k).is_some_and(|n| n.alive && n.transfers.len() as u32 + n.xmits < self.settings.max_streams))
                .collect();
            // Leaving nodes are preferred sources (they serve no new writes).
            let leaving: Vec<&String> = sources.iter().copied().filter(|k| self.nodes.get(*k).is_some_and(|n| n.admin != Admin::Normal)).collect();
            let Some(source) = leaving.choose(&mut rng).or_else(|| sources.choose(&mut rng)).map(|s| (*s).clone()) else { continue };
            let pending_targets: BTreeSet<String> = self.pending.get(&id).map(|(t, _)| t.iter().cloned().collect()).unwrap_or_default();
            let targets = self.choose_targets(need, &holders, &pending_targets, None);
            if targets.is_empty() {
                continue;
            }
            let Some(block) = self.block_file.get(&id).and_then(|p| self.ns.files.get(p)).and_then(|f| f.blocks.iter().find(|b| b.id == id)).copied() else { continue };
            let t: Vec<Target> = targets.iter().filter_map(|k| self.nodes.get(k)).map(Node::target).collect();
            if let Some(src) = self.nodes.get_mut(&source) {
                src.transfers.push(Command::Transfer { block, targets: t });
            }
            let entry = self.pending.entry(id).or_insert_with(|| (Vec::new(), now));
            entry.0.extend(targets);
            entry.1 = now;
            budget -= 1;
        }
        for (id, repl) in over {
            self.remove_excess(id, repl);
        }
    }

    /// Deletes replicas beyond the expected count from in-service nodes: first where a node
    /// group or rack holds more than one, then the node with the least space left.
    fn remove_excess(&mut self, id: u64, repl: u16) {
        loop {
            let holders: Vec<&Node> = self.locations.get(&id).into_iter().flatten().filter_map(|k| self.nodes.get(k)).filter(|n| n.counts()).collect();
            if holders.len() <= repl as usize {
                return;
            }
            let count = |f: &dyn Fn(&Node) -> &str, n: &Node| holders.iter().filter(|h| f(h) == f(n)).count();
            let Some(victim) = holders
                .iter()
                .max_by_key(|n| (count(&|x: &Node| x.loc.group.as_str(), n), count(&|x: &Node| x.loc.rack.as_str(), n), u64::MAX - n.remaining))
                .map(|n| n.key())
            else {
                return;
            };
            self.remove_replica(&victim, id);
            if let Some(n) = self.nodes.get_mut(&victim) {
                n.invalidate.insert(id);
            }
        }
    }

    /// One pass of the decommission monitor: a decommissioning node whose every block has
    /// enough live replicas elsewhere becomes Decommissioned. Dead ones stay in progress.
    pub fn decommission_tick(&mut self) -> Vec<String> {
        let mut done = Vec::new();
        let keys: Vec<String> = self.nodes.iter().filter(|(_, n)| n.admin == Admin::DecommissionInProgress && n.alive && n.last_report.is_some()).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let (mut under, mut only) = (0, 0);
            for id in self.nodes.get(&key).map(|n| n.blocks.clone()).unwrap_or_default() {
                let Some(repl) = self.block_file.get(&id).and_then(|p| self.ns.files.get(p)).filter(|f| f.complete).map(|f| f.replication) else { continue };
                let r = self.replicas(id, repl);
                if r.live < r.expected {
                    under += 1;
                    if r.live == 0 {
                        only += 1;
                    }
                }
            }
            if let Some(n) = self.nodes.get_mut(&key) {
                n.decom_under_replicated = under;
                n.decom_only_replicas = only;
                if under == 0 {
                    n.admin = Admin::Decommissioned;
                    done.push(key);
                }
            }
        }
        done
    }

    /// `refreshNodes`: applies new include and exclude lists.
    pub fn refresh_nodes(&mut self, include: Vec<String>, exclude: Vec<String>) -> Vec<(String, Admin)> {
        self.include = include.iter().map(|h| strip_port(h)).collect();
        self.exclude = exclude.iter().map(|h| strip_port(h)).collect();
        let mut changes = Vec::new();
        for (key, n) in self.nodes.iter_mut() {
            n.disallowed = n.registered && !self.include.is_empty() && !Self::listed(&self.include, &n.hostname, &n.ip);
            let excluded = Self::listed(&self.exclude, &n.hostname, &n.ip);
            let next = match (excluded, n.admin) {
                // HeartbeatManager.startDecommission: "Dead node {} is decommissioned
                // immediately." (its blocks are re-replicated as any dead node's are).
                (true, Admin::Normal) if !n.alive => Admin::Decommissioned,
                (true, Admin::Normal) => Admin::DecommissionInProgress,
                (false, Admin::DecommissionInProgress | Admin::Decommissioned) => Admin::Normal,
                (_, a) => a,
            };
            if next != n.admin {
                n.admin = next;
                n.decom_under_replicated = 0;
                n.decom_only_replicas = 0;
                changes.push((key.clone(), next));
            }
        }
        changes
    }

    /// Include-file hosts that never registered (shown as dead, like Hadoop does).
    pub fn unregistered_included(&self, xfer_port: u16) -> Vec<String> {
        self.include
            .iter()
            .filter(|h| !self.nodes.values().any(|n| n.hostname.eq_ignore_ascii_case(h) || n.ip == **h))
            .map(|h| format!("{h}:{xfer_port}"))
            .collect()
    }

    /// Re-evaluates safe mode.
    pub fn check_safemode(&mut self, now: Instant) {
        let SafeMode::On { reached } = self.safemode else { return };
        let total = self.all_blocks().count() as u64;
        let safe = self.all_blocks().filter(|(_, b, _)| self.locations.get(&b.id).is_some_and(|l| l.iter().any(|k| self.nodes.get(k).is_some_and(|n| n.alive)))).count() as u64;
        let live = self.nodes.values().filter(|n| n.alive && n.registered).count();
        let threshold = (total as f64 * self.settings.safemode_threshold) as u64;
        let met = self.settings.safemode_threshold <= 1.0 && safe >= threshold && live >= self.settings.safemode_min_datanodes;
        if !met {
            self.safemode = SafeMode::On { reached: None };
            return;
        }
        let needs_extension = self.settings.safemode_extension_ms > 0 && (threshold > 0 || self.settings.safemode_min_datanodes > 0);
        match reached {
            _ if !needs_extension => self.safemode = SafeMode::Off,
            None => self.safemode = SafeMode::On { reached: Some(now) },
            Some(at) if now.saturating_duration_since(at).as_millis() as u64 >= self.settings.safemode_extension_ms => self.safemode = SafeMode::Off,
            Some(_) => {}
        }
    }

    pub fn in_safemode(&self) -> bool {
        self.safemode != SafeMode::Off
    }

    /// `dfsadmin -safemode enter|leave`.
    pub fn set_safemode(&mut self, on: bool) {
        self.safemode = if on { SafeMode::Manual } else { SafeMode::Off };
    }

    /// The `Safemode` string of NameNodeInfo (empty when off).
    pub fn safemode_tip(&self) -> Option<String> {
        match self.safemode {
            SafeMode::Off => None,
            SafeMode::Manual => Some("Safe mode is ON. It was turned on manually. Use \"hdfs dfsadmin -safemode leave\" to turn safe mode off.".into()),
            SafeMode::On { reached } => {
                let total = self.all_blocks().count() as u64;
                let safe = self.all_blocks().filter(|(_, b, _)| self.locations.get(&b.id).is_some_and(|l| !l.is_empty())).count() as u64;
                let threshold = (total as f64 * self.settings.safemode_threshold) as u64;
                Some(match reached {
                    None => format!(
                        "Safe mode is ON. The reported blocks {safe} needs additional {} blocks to reach the threshold {:.4} of total blocks {total}.\nThe minimum number of live datanodes is not required. Safe mode will be turned off automatically once the thresholds have been reached.",
                        threshold.saturating_sub(safe),
                        self.settings.safemode_threshold
                    ),
                    Some(_) => format!("Safe mode is ON. The reported blocks {safe} has reached the threshold {:.4} of total blocks {total}. The minimum number of live datanodes is not required. In safe mode extension. Safe mode will be turned off automatically soon.", self.settings.safemode_threshold),
                })
            }
        }
    }

    fn safemode_error(&self, what: &str) -> RemoteError {
        RemoteError::new(exc::SAFE_MODE, format!("Cannot {what}. Name node is in safe mode.\n{}", self.safemode_tip().unwrap_or_default()))
    }

    fn is_dir(&self, path: &str) -> bool {
        self.ns.dirs.contains(path)
    }

    /// `create`.
    pub fn create(&mut self, c: &Create, now_ms: u64) -> Result<(), RemoteError> {
        let path = normalize(&c.path);
        if self.in_safemode() {
            return Err(self.safemode_error(&format!("create file{path}")));
        }
        if c.block_size < self.settings.min_block_size {
            return Err(RemoteError::new(
                exc::IO,
                format!("Specified block size is less than configured minimum value (dfs.namenode.fs-limits.min-block-size): {} < {}", c.block_size, self.settings.min_block_size),
            ));
        }
        if self.is_dir(&path) {
            return Err(RemoteError::new(exc::FILE_EXISTS, format!("{path} already exists as a directory")));
        }
        if !self.is_dir(&parent(&path)) {
            return Err(RemoteError::new(exc::FILE_NOT_FOUND, format!("Parent directory doesn't exist: {}", parent(&path))));
        }
        if self.ns.files.contains_key(&path) {
            if !c.overwrite {
                return Err(RemoteError::new(exc::FILE_EXISTS, format!("{path} for client 127.0.0.1 already exists")));
            }
            self.delete_file(&path);
        }
        self.ns.files.insert(path, INode { blocks: Vec::new(), replication: c.replication, block_size: c.block_size, mtime: now_ms, complete: false });
        self.dirty = true;
        Ok(())
    }

    /// `addBlock`: allocates the file's next block and its pipeline.
    pub fn add_block(&mut self, a: &AddBlock) -> Result<LocatedBlock, RemoteError> {
        let path = normalize(&a.path);
        let Some(file) = self.ns.files.get(&path).filter(|f| !f.complete) else {
            return Err(RemoteError::new("org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException", format!("No lease on {path}: File does not exist.")));
        };
        let repl = file.replication as usize;
        let targets = self.choose_targets(repl, &BTreeSet::new(), &BTreeSet::new(), Some(&a.client_host));
        if targets.is_empty() {
            let running = self.nodes.values().filter(|n| n.alive && n.registered).count();
            return Err(RemoteError::new(
                exc::IO,
                format!("File {path} could only be written to 0 of the 1 minReplication nodes. There are {running} datanode(s) running and 0 node(s) are excluded in this operation."),
            ));
        }
        let block = Block { id: self.ns.next_block_id, stamp: self.ns.gen_stamp, len: 0 };
        self.ns.next_block_id += 1;
        self.ns.gen_stamp += 1;
        if let Some(f) = self.ns.files.get_mut(&path) {
            f.blocks.push(block);
        }
        self.block_file.insert(block.id, path);
        let t = targets.iter().filter_map(|k| self.nodes.get(k)).map(Node::target).collect();
        Ok(LocatedBlock { pool_id: self.ns.pool_id.clone(), block, targets: t })
    }

    /// `complete`: the file's final block lengths.
    pub fn complete(&mut self, c: &Complete, now_ms: u64) -> Result<(), RemoteError> {
        let path = normalize(&c.path);
        let Some(file) = self.ns.files.get_mut(&path) else {
            return Err(RemoteError::new(exc::FILE_NOT_FOUND, format!("File does not exist: {path}")));
        };
        for b in file.blocks.iter_mut() {
            if let Some(r) = c.blocks.iter().find(|x| x.id == b.id) {
                b.len = r.len;
            }
        }
        file.complete = true;
        file.mtime = now_ms;
        self.dirty = true;
        Ok(())
    }

    fn status(&self, path: &str) -> Option<FileStatus> {
        if self.is_dir(path) {
            return Some(FileStatus { path: path.into(), is_dir: true, len: 0, replication: 0, block_size: 0, mtime: 0 });
        }
        self.ns.files.get(path).map(|f| FileStatus {
            path: path.into(),
            is_dir: false,
            len: f.blocks.iter().map(|b| b.len).sum(),
            replication: f.replication,
            block_size: f.block_size,
            mtime: f.mtime,
        })
    }

    /// `getListing` (and `getFileInfo` for a file).
    pub fn list(&self, path: &str) -> Result<Listing, RemoteError> {
        let path = normalize(path);
        let Some(status) = self.status(&path) else {
            return Err(RemoteError::new(exc::FILE_NOT_FOUND, format!("File {path} does not exist.")));
        };
        let mut children = Vec::new();
        if status.is_dir {
            let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
            let direct = |p: &str| p.strip_prefix(&prefix).is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            children.extend(self.ns.dirs.iter().filter(|d| direct(d)).filter_map(|d| self.status(d)));
            children.extend(self.ns.files.keys().filter(|f| direct(f)).filter_map(|f| self.status(f)));
            children.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(Listing { status, children })
    }

    /// `mkdirs` (with parents).
    pub fn mkdirs(&mut self, path: &str) -> Result<(), RemoteError> {
        let path = normalize(path);
        if self.in_safemode() {
            return Err(self.safemode_error(&format!("create directory {path}")));
        }
        let mut p = String::new();
        for part in path.split('/').filter(|s| !s.is_empty()) {
            p = format!("{p}/{part}");
            if self.ns.files.contains_key(&p) {
                return Err(RemoteError::new("org.apache.hadoop.fs.ParentNotDirectoryException", format!("{p} (is not a directory)")));
            }
            self.ns.dirs.insert(p.clone());
        }
        self.dirty = true;
        Ok(())
    }

    fn delete_file(&mut self, path: &str) {
        let Some(f) = self.ns.files.remove(path) else { return };
        for b in f.blocks {
            self.block_file.remove(&b.id);
            self.pending.remove(&b.id);
            for key in self.locations.remove(&b.id).unwrap_or_default() {
                if let Some(n) = self.nodes.get_mut(&key) {
                    n.blocks.remove(&b.id);
                    n.invalidate.insert(b.id);
                }
            }
        }
        self.dirty = true;
    }

    /// `delete`: false when the path does not exist.
    pub fn delete(&mut self, path: &str, recursive: bool) -> Result<bool, RemoteError> {
        let path = normalize(path);
        if self.in_safemode() {
            return Err(self.safemode_error(&format!("delete {path}")));
        }
        if self.ns.files.contains_key(&path) {
            self.delete_file(&path);
            return Ok(true);
        }
        if !self.is_dir(&path) {
            return Ok(false);
        }
        if path == "/" {
            return Err(RemoteError::new(exc::IO, "Cannot delete /"));
        }
        let prefix = format!("{path}/");
        let files: Vec<String> = self.ns.files.keys().filter(|f| f.starts_with(&prefix)).cloned().collect();
        let dirs: Vec<String> = self.ns.dirs.iter().filter(|d| d.starts_with(&prefix)).cloned().collect();
        if !(recursive || files.is_empty() && dirs.is_empty()) {
            return Err(RemoteError::new(exc::NOT_EMPTY, format!("`{path} is non empty': Directory is not empty")));
        }
        for f in files {
            self.delete_file(&f);
        }
        for d in dirs {
            self.ns.dirs.remove(&d);
        }
        self.ns.dirs.remove(&path);
        self.dirty = true;
        Ok(true)
    }

    /// `getBlockLocations`: live holders first, in-service before leaving ones.
    pub fn block_locations(&self, path: &str) -> Result<Vec<LocatedBlock>, RemoteError> {
        let path = normalize(path);
        let Some(f) = self.ns.files.get(&path) else {
            return Err(RemoteError::new(exc::FILE_NOT_FOUND, format!("File does not exist: {path}")));
        };
        Ok(f.blocks
            .iter()
            .map(|b| {
                let mut holders: Vec<&Node> = self.locations.get(&b.id).into_iter().flatten().filter_map(|k| self.nodes.get(k)).filter(|n| n.alive).collect();
                holders.sort_by_key(|n| n.admin != Admin::Normal);
                LocatedBlock { pool_id: self.ns.pool_id.clone(), block: *b, targets: holders.into_iter().map(Node::target).collect() }
            })
            .collect())
    }

    /// Cluster-wide numbers.
    pub fn summary(&self) -> Summary {
        let mut s = Summary { files_total: (self.ns.files.len() + self.ns.dirs.len()) as u64, safemode: self.safemode_tip(), ..Summary::default() };
        for (_, b, repl) in self.all_blocks() {
            s.blocks_total += 1;
            if !self.repl_queues() {
                continue;
            }
            let r = self.replicas(b.id, repl);
            if r.live < r.expected {
                s.under_replicated += 1;
                if r.live == 0 && r.out_of_service == 0 {
                    s.missing += 1;
                    if repl == 1 {
                        s.missing_repl_one += 1;
                    }
                } else if r.live <= 1 {
                    s.highest_priority += 1;
                }
            }
        }
        s.blocks_total += self.ns.files.values().filter(|f| !f.complete).map(|f| f.blocks.len() as u64).sum::<u64>();
        s.pending_replication = self.pending.len() as u64;
        for n in self.nodes.values() {
            s.scheduled_replication += n.transfers.len() as u64;
            s.pending_deletion += n.invalidate.len() as u64;
            if n.admin == Admin::DecommissionInProgress {
                s.decommissioning += 1;
            }
            if n.alive && n.registered {
                s.live += 1;
                s.total_load += u64::from(n.xmits);
                if n.admin == Admin::Decommissioned {
                    s.decom_live += 1;
                } else {
                    s.capacity += n.capacity;
                    s.dfs_used += n.dfs_used;
                    s.remaining += n.remaining;
                }
            } else {
                s.dead += 1;
                if n.admin == Admin::Decommissioned {
                    s.decom_dead += 1;
                }
            }
        }
        s
    }

    /// fsck over the files under `path`.
    pub fn fsck(&self, path: &str) -> Result<Fsck, RemoteError> {
        let path = normalize(path);
        if !self.is_dir(&path) && !self.ns.files.contains_key(&path) {
            return Err(RemoteError::new(exc::FILE_NOT_FOUND, format!("Path {path} does not exist")));
        }
        let under = |p: &str| p == path || path == "/" || p.starts_with(&format!("{path}/"));
        let mut f = Fsck { default_replication: self.settings.default_replication, ..Fsck::default() };
        f.total_dirs = self.ns.dirs.iter().filter(|d| under(d)).count() as u64;
        for (p, file) in self.ns.files.iter().filter(|(p, file)| under(p) && file.complete) {
            f.total_files += 1;
            for b in &file.blocks {
                f.total_blocks += 1;
                f.total_size += b.len;
                let mut r = self.replicas(b.id, file.replication);
                let (mut decommissioned, mut decommissioning) = (0, 0);
                let mut racks = BTreeSet::new();
                for k in self.locations.get(&b.id).into_iter().flatten() {
                    if let Some(n) = self.nodes.get(k).filter(|n| n.alive) {
                        match n.admin {
                            Admin::Decommissioned => decommissioned += 1,
                            Admin::DecommissionInProgress => decommissioning += 1,
                            Admin::Normal => {
                                racks.insert(n.loc.rack.clone());
                            }
                        }
                    }
                }
                f.decommissioned_replicas += decommissioned;
                f.decommissioning_replicas += decommissioning;
                f.total_replicas += r.live as u64;
                f.expected_replicas += r.expected as u64;
                if r.live == 0 && r.out_of_service == 0 {
                    f.missing_blocks += 1;
                    f.missing_size += b.len;
                    f.problems.push(format!("{p}: MISSING 1 blocks of total size {} B.", b.len));
                    r.live = 0;
                }
                if r.live + r.out_of_service >= 1 {
                    f.min_replicated += 1;
                }
                if r.live > r.expected {
                    f.over_replicated += 1;
                } else if r.live < r.expected {
                    f.under_replicated += 1;
                    f.missing_replicas += (r.expected - r.live) as u64;
                    if r.live + r.out_of_service > 0 {
                        f.problems.push(format!(
                            "{p}:  Under replicated {}:{}. Target Replicas is {} but found {} live replica(s), {} decommissioned replica(s), {} decommissioning replica(s).",
                            self.ns.pool_id,
                            b.name(),
                            r.expected,
                            r.live,
                            decommissioned,
                            decommissioning
                        ));
                    }
                }
                let clusters_racks = self.nodes.values().filter(|n| n.counts()).map(|n| n.loc.rack.clone()).collect::<BTreeSet<_>>().len();
                if r.live >= 2 && clusters_racks >= 2 && racks.len() < 2 {
                    f.mis_replicated += 1;
                }
            }
        }
        f.datanodes = self.nodes.values().filter(|n| n.alive && n.registered).count() as u64;
        f.racks = self.nodes.values().filter(|n| n.alive && n.registered).map(|n| n.loc.rack.clone()).collect::<BTreeSet<_>>().len() as u64;
        Ok(f)
    }

    /// Where a block's replicas are.
    #[cfg(test)]
    pub fn holders(&self, id: u64) -> Vec<String> {
        self.locations.get(&id).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            default_replication: 3,
            min_block_size: 0,
            expire_ms: 10_000,
            work_multiplier: 100,
            max_streams: 100,
            pending_timeout_ms: 300_000,
            invalidate_limit: 1000,
            safemode_threshold: 0.999,
            safemode_extension_ms: 0,
            safemode_min_datanodes: 0,
            node_group: true,
        }
    }

    fn reg(host: &str) -> Register {
        Register { hostname: host.into(), xfer_port: 9866, info_port: 9864, ipc_port: 9867, uuid: host.into(), capacity: 100, dfs_used: 0, remaining: 100 }
    }

    fn table() -> Table {
        Table::parse("dn0 /r1/g0\ndn1 /r1/g1\ndn2 /r2/g2\ndn3 /r2/g3\ndn4 /r2/g3\n")
    }

    /// A namesystem with `hosts` registered and one file of `blocks` blocks written with
    /// replication 3 (replicas reported).
    fn cluster(hosts: &[&str], blocks: usize) -> (Namesystem, Instant) {
        let now = Instant::now();
        let mut s = Namesystem::new(settings(), Namespace::format("127.0.0.1", 0), vec![], vec![], now);
        for (i, h) in hosts.iter().enumerate() {
            s.register(&reg(h), Some(Ipv4Addr::new(127, 0, 0, i as u8 + 2)), &table(), now, 0).unwrap();
            s.block_report(&BlockReport { hostname: h.to_string(), xfer_port: 9866, blocks: vec![], deleted: vec![] }, now).unwrap();
        }
        s.create(&Create { path: "/f".into(), replication: 3, block_size: 10, overwrite: false }, 0).unwrap();
        let mut written = Vec::new();
        for _ in 0..blocks {
            let lb = s.add_block(&AddBlock { path: "/f".into(), client_host: "client".into() }).unwrap();
            let b = Block { len: 10, ..lb.block };
            for t in &lb.targets {
                s.incremental(&BlockReport { hostname: t.hostname.clone(), xfer_port: 9866, blocks: vec![b], deleted: vec![] }, now).unwrap();
            }
            written.push(b);
        }
        s.complete(&Complete { path: "/f".into(), blocks: written }, 0).unwrap();
        (s, now)
    }

    #[test]
    fn placement_never_shares_a_node_group_and_spans_racks() {
        let (s, _) = cluster(&["dn0", "dn1", "dn2", "dn3", "dn4"], 50);
        for b in &s.ns.files["/f"].blocks {
            let holders = s.holders(b.id);
            assert_eq!(holders.len(), 3);
            let groups: BTreeSet<_> = holders.iter().map(|k| s.nodes[k].loc.group.clone()).collect();
            assert_eq!(groups.len(), 3, "{holders:?}");
            let racks: BTreeSet<_> = holders.iter().map(|k| s.nodes[k].loc.rack.clone()).collect();
            assert_eq!(racks.len(), 2);
        }
        assert_eq!(s.summary().under_replicated, 0);
    }

    #[test]
    fn dead_node_blocks_are_rereplicated() {
        let (mut s, now) = cluster(&["dn0", "dn1", "dn2", "dn3"], 20);
        let later = now + Duration::from_secs(11);
        for h in ["dn0", "dn1", "dn2"] {
            s.heartbeat(&Heartbeat { hostname: h.into(), xfer_port: 9866, capacity: 1, dfs_used: 0, remaining: 1, xmits: 0 }, later, 0).unwrap();
        }
        assert_eq!(s.check_heartbeats(later), vec!["dn3:9866".to_string()]);
        let sum = s.summary();
        assert!(sum.under_replicated > 0);
        assert_eq!(sum.missing, 0);
        s.redundancy_tick(later);
        // Execute the transfers as DataNodes would.
        let mut transfers = Vec::new();
        for h in ["dn0", "dn1", "dn2"] {
            for c in s.heartbeat(&Heartbeat { hostname: h.into(), xfer_port: 9866, capacity: 1, dfs_used: 0, remaining: 1, xmits: 0 }, later, 0).unwrap() {
                if let Command::Transfer { block, targets } = c {
                    transfers.extend(targets.into_iter().map(|t| (t.hostname, block)));
                }
            }
        }
        // Only 3 node groups remain in 2 racks: dn0, dn1 (r1) and dn2 (r2).
        for (h, b) in transfers {
            s.incremental(&BlockReport { hostname: h, xfer_port: 9866, blocks: vec![b], deleted: vec![] }, later).unwrap();
        }
        assert_eq!(s.summary().under_replicated, 0);
    }

    #[test]
    fn decommission_waits_for_replicas_then_completes_and_recommission_restores() {
        let (mut s, now) = cluster(&["dn0", "dn1", "dn2", "dn3"], 10);
        let changes = s.refresh_nodes(vec![], vec!["dn3".into()]);
        assert_eq!(changes, vec![("dn3:9866".to_string(), Admin::DecommissionInProgress)]);
        let on_dn3 = s.nodes["dn3:9866"].blocks.len();
        assert!(on_dn3 > 0);
        assert!(s.decommission_tick().is_empty());
        assert_eq!(s.nodes["dn3:9866"].decom_under_replicated, on_dn3 as u64);
        let sum = s.summary();
        assert_eq!((sum.missing, sum.decommissioning), (0, 1));
        s.redundancy_tick(now);
        let mut moved = 0;
        let cmds = s.nodes["dn3:9866"].transfers.clone();
        for c in cmds {
            if let Command::Transfer { block, targets } = c {
                for t in targets {
                    s.incremental(&BlockReport { hostname: t.hostname, xfer_port: 9866, blocks: vec![block], deleted: vec![] }, now).unwrap();
                    moved += 1;
                }
            }
        }
        assert_eq!(moved, on_dn3, "the leaving node is the preferred source");
        assert_eq!(s.decommission_tick(), vec!["dn3:9866".to_string()]);
        assert_eq!(s.nodes["dn3:9866"].admin, Admin::Decommissioned);
        s.refresh_nodes(vec![], vec![]);
        assert_eq!(s.nodes["dn3:9866"].admin, Admin::Normal);
        // Back in service its replicas are excess: deleted down to 3.
        s.redundancy_tick(now);
        for b in &s.ns.files["/f"].blocks {
            assert_eq!(s.replicas(b.id, 3).live, 3);
        }
    }

    #[test]
    fn dead_while_decommissioning_stays_in_progress() {
        let (mut s, now) = cluster(&["dn0", "dn1", "dn2", "dn3"], 5);
        s.refresh_nodes(vec![], vec!["dn3".into()]);
        let later = now + Duration::from_secs(11);
        s.check_heartbeats(later);
        assert!(s.decommission_tick().is_empty());
        assert_eq!(s.nodes["dn3:9866"].admin, Admin::DecommissionInProgress);
        assert!(!s.nodes["dn3:9866"].alive);
    }

    #[test]
    fn dead_when_excluded_is_decommissioned_at_once() {
        let (mut s, now) = cluster(&["dn0", "dn1", "dn2", "dn3"], 5);
        s.check_heartbeats(now + Duration::from_secs(11));
        assert!(!s.nodes["dn3:9866"].alive);
        let changes = s.refresh_nodes(vec![], vec!["dn3".into()]);
        assert_eq!(changes, [("dn3:9866".to_string(), Admin::Decommissioned)]);
    }

    #[test]
    fn registration_checks_resolution_and_include_list() {
        let now = Instant::now();
        let mut s = Namesystem::new(settings(), Namespace::format("127.0.0.1", 0), vec!["dn0".into()], vec![], now);
        let e = s.register(&reg("dn9"), None, &table(), now, 0).unwrap_err();
        assert_eq!(e.short(), "DisallowedDatanodeException");
        assert!(e.message.contains("hostname cannot be resolved"));
        let e = s.register(&reg("dn1"), Some(Ipv4Addr::new(127, 0, 0, 3)), &table(), now, 0).unwrap_err();
        assert!(e.message.contains("include-list"));
        s.register(&reg("dn0"), Some(Ipv4Addr::new(127, 0, 0, 2)), &table(), now, 0).unwrap();
    }

    #[test]
    fn safe_mode_until_blocks_are_reported() {
        let (s, now) = cluster(&["dn0", "dn1", "dn2"], 4);
        let ns = s.ns.clone();
        let mut s = Namesystem::new(settings(), ns, vec![], vec![], now);
        assert!(s.in_safemode());
        assert_eq!(s.summary().missing, 0, "no replication queues in safe mode");
        let e = s.create(&Create { path: "/g".into(), replication: 1, block_size: 10, overwrite: false }, 0).unwrap_err();
        assert_eq!(e.short(), "SafeModeException");
        s.register(&reg("dn0"), Some(Ipv4Addr::new(127, 0, 0, 2)), &table(), now, 0).unwrap();
        let blocks = s.ns.files["/f"].blocks.clone();
        s.block_report(&BlockReport { hostname: "dn0".into(), xfer_port: 9866, blocks, deleted: vec![] }, now).unwrap();
        assert!(!s.in_safemode());
        let empty = Namesystem::new(settings(), Namespace::format("127.0.0.1", 0), vec![], vec![], now);
        assert!(!empty.in_safemode(), "no blocks: leaves at once");
    }

    #[test]
    fn min_block_size_is_enforced() {
        let now = Instant::now();
        let mut st = settings();
        st.min_block_size = 1_048_576;
        let mut s = Namesystem::new(st, Namespace::format("127.0.0.1", 0), vec![], vec![], now);
        let e = s.create(&Create { path: "/g".into(), replication: 1, block_size: 4096, overwrite: false }, 0).unwrap_err();
        assert_eq!(e.message, "Specified block size is less than configured minimum value (dfs.namenode.fs-limits.min-block-size): 4096 < 1048576");
    }
}
