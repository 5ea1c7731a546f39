//! The ResourceManager double's model, pure: nodes and their states, host lists, graceful
//! decommission, and the simulated applications' containers. Every call takes the time
//! (epoch milliseconds) as an argument and records what the real RM would log in
//! [`Cluster::log`], which the server drains; no I/O here, so the transitions are table-tested.
//!
//! Node lifecycle (YARN's RMNodeImpl, the slice modelled):
//!
//! ```text
//!            register                 health report bad
//!   (none) ──────────▶ NEW ─▶ RUNNING ◀───────────────▶ UNHEALTHY
//!                               │  ▲ un-excluded + refresh  │
//!       refresh -g, excluded    ▼  │                       │ excluded + refresh (no -g)
//!                         DECOMMISSIONING ──────────────▶ DECOMMISSIONED ─▶ NM told SHUTDOWN
//!                               drained / timed out
//!   any active state ── no heartbeat for the expiry interval ──▶ LOST ── register ──▶ RUNNING
//! ```

use super::wire::{
    ContainerLaunch, DecommissionType, HeartbeatRequest, HeartbeatResponse, NodeAction, NodeReport, RegisterRequest,
    RegisterResponse, SleepAppRequest,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// YARN's NodeState.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    New,
    Running,
    Unhealthy,
    Decommissioned,
    Lost,
    Rebooted,
    Decommissioning,
    Shutdown,
}

impl NodeState {
    pub const ALL: [NodeState; 8] = [
        NodeState::New,
        NodeState::Running,
        NodeState::Unhealthy,
        NodeState::Decommissioned,
        NodeState::Lost,
        NodeState::Rebooted,
        NodeState::Decommissioning,
        NodeState::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::New => "NEW",
            NodeState::Running => "RUNNING",
            NodeState::Unhealthy => "UNHEALTHY",
            NodeState::Decommissioned => "DECOMMISSIONED",
            NodeState::Lost => "LOST",
            NodeState::Rebooted => "REBOOTED",
            NodeState::Decommissioning => "DECOMMISSIONING",
            NodeState::Shutdown => "SHUTDOWN",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Inactive states: the node has left the scheduler (YARN's `NodeState.isInactiveState`).
    pub fn is_inactive(self) -> bool {
        matches!(self, NodeState::Decommissioned | NodeState::Lost | NodeState::Rebooted | NodeState::Shutdown)
    }
}

/// The include and exclude lists as last read (`yarn.resourcemanager.nodes.*-path`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLists {
    pub include: BTreeSet<String>,
    pub exclude: BTreeSet<String>,
}

impl HostLists {
    /// Parses a hosts file as Hadoop's HostsFileReader does: names separated by whitespace,
    /// `#` starts a comment.
    pub fn parse_hosts(text: &str) -> BTreeSet<String> {
        text.lines()
            .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
            .map(str::to_ascii_lowercase)
            .collect()
    }

    /// Whether a node (host, `host:port` NodeId, IP) may join: listed in a non-empty include
    /// list and not excluded.
    pub fn is_valid(&self, names: &[&str]) -> bool {
        let listed = |set: &BTreeSet<String>| names.iter().any(|n| set.contains(&n.to_ascii_lowercase()));
        (self.include.is_empty() || listed(&self.include)) && !listed(&self.exclude)
    }
}

/// Tunables the model needs (from [`super::config::RmConf`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_allocation_mb: u64,
    pub min_allocation_vcores: u64,
    pub heartbeat_interval_ms: u64,
    pub nm_expiry_ms: u64,
    pub graceful_timeout_secs: i64,
}

/// One log record the real RM would write: level, logger (short class), message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: &'static str,
    pub class: &'static str,
    pub message: String,
}

/// A node the RM knows, active or not.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub host: String,
    pub http_address: String,
    pub memory_mb: u64,
    pub vcores: u64,
    pub state: NodeState,
    pub health_report: String,
    pub last_health_update: u64,
    pub last_heartbeat: u64,
    /// Allocated containers (handed out or running) and their memory.
    pub containers: BTreeMap<String, Allocation>,
    to_launch: Vec<ContainerLaunch>,
    to_kill: Vec<String>,
    /// Applications that ran containers here (a draining node waits for them: WAIT_APP).
    apps: BTreeSet<String>,
    /// DECOMMISSIONING since (epoch ms).
    decommission_started: u64,
    /// DECOMMISSIONING for at most this long (ms), `None` for no limit. A later graceful
    /// refresh changes the timeout, still counted from the start (DecommissioningNodesWatcher).
    decommission_timeout: Option<u64>,
}

impl Node {
    /// A node as the RM first lists it: nothing allocated, nothing to launch or kill.
    fn new(id: String, host: String, http_address: String, memory_mb: u64, vcores: u64, state: NodeState, now: u64) -> Node {
        Node {
            id,
            host,
            http_address,
            memory_mb,
            vcores,
            state,
            health_report: String::new(),
            last_health_update: now,
            last_heartbeat: now,
            containers: BTreeMap::new(),
            to_launch: Vec::new(),
            to_kill: Vec::new(),
            apps: BTreeSet::new(),
            decommission_started: 0,
            decommission_timeout: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub app_id: String,
    pub memory_mb: u64,
    pub vcores: u64,
}

impl Node {
    pub fn used_memory_mb(&self) -> u64 {
        self.containers.values().map(|a| a.memory_mb).sum()
    }

    pub fn used_vcores(&self) -> u64 {
        self.containers.values().map(|a| a.vcores).sum()
    }

    /// What the web services and `yarn node` show as its HTTP address: empty once inactive.
    pub fn shown_http_address(&self) -> &str {
        if self.state.is_inactive() { "" } else { &self.http_address }
    }
}

/// A simulated application (the double's sleep job).
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub state: &'static str,
    pub nodes: BTreeSet<String>,
    pub pending: u64,
    pub memory_mb: u64,
    pub duration_ms: u64,
    pub running: BTreeSet<String>,
    pub finished: Option<u64>,
}

/// The ResourceManager's state.
#[derive(Debug)]
pub struct Cluster {
    pub settings: Settings,
    /// Cluster timestamp: the RM's start, in application and container ids.
    pub started_on: u64,
    pub lists: HostLists,
    pub nodes: BTreeMap<String, Node>,
    pub apps: BTreeMap<String, App>,
    app_order: VecDeque<String>,
    next_app: u64,
    next_container: u64,
    pub containers_allocated_total: u64,
    pub log: Vec<Log>,
}

const TRACKER: &str = "resourcemanager.ResourceTrackerService";
const RMNODE: &str = "rmnode.RMNodeImpl";
const LIVENESS: &str = "resourcemanager.NMLivelinessMonitor";
const WATCHER: &str = "resourcemanager.DecommissioningNodesWatcher";
const NODES_LIST: &str = "resourcemanager.NodesListManager";
const RMAPP: &str = "rmapp.RMAppImpl";

impl Cluster {
    /// A freshly started RM. Like NodesListManager.setDecomissionedNMs, every excluded host is
    /// listed at once as an inactive DECOMMISSIONED node `host:-1`; nothing of a graceful
    /// decommission survives a restart (YARN-5464), so a draining NM is refused when it
    /// registers again.
    pub fn new(settings: Settings, lists: HostLists, now: u64) -> Cluster {
        let nodes = lists
            .exclude
            .iter()
            .map(|host| {
                let id = format!("{host}:-1");
                let node = Node::new(id.clone(), host.clone(), String::new(), 0, 0, NodeState::Decommissioned, now);
                (id, node)
            })
            .collect();
        Cluster {
            settings,
            started_on: now,
            lists,
            nodes,
            apps: BTreeMap::new(),
            app_order: VecDeque::new(),
            next_app: 1,
            next_container: 1,
            containers_allocated_total: 0,
            log: Vec::new(),
        }
    }

    fn info(&mut self, class: &'static str, message: String) {
        self.log.push(Log { level: "INFO", class, message });
    }

    fn transition(&mut self, id: &str, to: NodeState) {
        let Some(node) = self.nodes.get_mut(id) else { return };
        let from = node.state;
        if from == to {
            return;
        }
        node.state = to;
        if to.is_inactive() {
            node.decommission_timeout = None;
            node.to_launch.clear();
            let killed: Vec<(String, Allocation)> = std::mem::take(&mut node.containers).into_iter().collect();
            for (cid, alloc) in killed {
                if let Some(app) = self.apps.get_mut(&alloc.app_id) {
                    app.running.remove(&cid);
                }
            }
            self.info(RMNODE, format!("Deactivating Node {id} as it is now {}", to.as_str()));
        }
        self.info(RMNODE, format!("{id} Node Transitioned from {} to {}", from.as_str(), to.as_str()));
        self.finish_done_apps();
    }

    /// `registerNodeManager`.
    pub fn register(&mut self, req: &RegisterRequest, ip: Option<&str>, now: u64) -> RegisterResponse {
        let (host, port) = super::config::split_host_port(&req.node_id);
        let interval = self.settings.heartbeat_interval_ms;
        let shutdown = |diagnostics: String| RegisterResponse { action: NodeAction::Shutdown, diagnostics, heartbeat_interval_ms: interval };
        let decommissioning = self.nodes.get(&req.node_id).is_some_and(|n| n.state == NodeState::Decommissioning);
        let names: Vec<&str> = [Some(host.as_str()), Some(req.node_id.as_str()), ip].into_iter().flatten().collect();
        if !self.lists.is_valid(&names) && !decommissioning {
            let message = format!("Disallowed NodeManager from  {host}, Sending SHUTDOWN signal to the NodeManager.");
            self.info(TRACKER, message.clone());
            return shutdown(message);
        }
        if req.memory_mb < self.settings.min_allocation_mb || req.vcores < self.settings.min_allocation_vcores {
            let message = format!(
                "NodeManager from  {host} doesn't satisfy minimum allocations, Sending SHUTDOWN signal to the NodeManager. \
                 Node capabilities are <memory:{}, vCores:{}>; minimums are {}mb and {} vcores",
                req.memory_mb, req.vcores, self.settings.min_allocation_mb, self.settings.min_allocation_vcores
            );
            self.info(TRACKER, message.clone());
            return shutdown(message);
        }
        let http_port = super::config::split_host_port(&req.http_address).1;
        let reconnect = self.nodes.get(&req.node_id).is_some_and(|n| !n.state.is_inactive());
        if reconnect {
            self.info(TRACKER, format!("Reconnect from the node at: {host}"));
            // The NM restarted: what it does not report running any more is gone.
            let still: BTreeSet<&str> = req.running.iter().map(|c| c.id.as_str()).collect();
            let gone: Vec<String> = self.nodes[&req.node_id].containers.keys().filter(|c| !still.contains(c.as_str())).cloned().collect();
            for cid in gone {
                self.complete_container(&req.node_id, &cid);
            }
            if let Some(node) = self.nodes.get_mut(&req.node_id) {
                node.memory_mb = req.memory_mb;
                node.vcores = req.vcores;
                node.http_address = req.http_address.clone();
                node.last_heartbeat = now;
            }
        } else {
            let node = Node::new(req.node_id.clone(), host.clone(), req.http_address.clone(), req.memory_mb, req.vcores, NodeState::New, now);
            let previous = self.nodes.insert(req.node_id.clone(), node).map(|n| n.state);
            self.info(
                TRACKER,
                format!(
                    "NodeManager from node {host}(cmPort: {port} httpPort: {http_port}) registered with capability: <memory:{}, vCores:{}>, assigned nodeId {}",
                    req.memory_mb, req.vcores, req.node_id
                ),
            );
            if let Some(prev) = previous {
                self.info(RMNODE, format!("{} Node Transitioned from {} to NEW", req.node_id, prev.as_str()));
            }
            self.transition(&req.node_id, NodeState::Running);
        }
        RegisterResponse { action: NodeAction::Normal, diagnostics: String::new(), heartbeat_interval_ms: interval }
    }

    /// `nodeHeartbeat`.
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, ip: Option<&str>, now: u64) -> HeartbeatResponse {
        let interval = self.settings.heartbeat_interval_ms;
        let reply = |action, diagnostics: String| HeartbeatResponse {
            action,
            diagnostics,
            heartbeat_interval_ms: interval,
            launch: Vec::new(),
            kill: Vec::new(),
        };
        let (host, _) = super::config::split_host_port(&req.node_id);
        let state = self.nodes.get(&req.node_id).map(|n| n.state);
        let names: Vec<&str> = [Some(host.as_str()), Some(req.node_id.as_str()), ip].into_iter().flatten().collect();
        if (!self.lists.is_valid(&names) && state != Some(NodeState::Decommissioning)) || state == Some(NodeState::Decommissioned) {
            let message = format!("Disallowed NodeManager nodeId: {} hostname: {host}", req.node_id);
            self.info(TRACKER, message.clone());
            return reply(NodeAction::Shutdown, message);
        }
        let Some(state) = state.filter(|s| !s.is_inactive()) else {
            self.info(TRACKER, format!("Node not found resyncing {}", req.node_id));
            return reply(NodeAction::Resync, String::new());
        };
        // Containers first: what finished frees its resources.
        for c in &req.containers {
            if c.state == "COMPLETE" {
                self.complete_container(&req.node_id, &c.id);
            }
        }
        if let Some(node) = self.nodes.get_mut(&req.node_id) {
            node.last_heartbeat = now;
            node.last_health_update = now;
            node.health_report = req.health.report.clone();
        }
        match (state, req.health.healthy) {
            (NodeState::Running, false) => {
                self.info(RMNODE, format!("Node {} reported UNHEALTHY with details: {}", req.node_id, req.health.report));
                self.transition(&req.node_id, NodeState::Unhealthy);
            }
            (NodeState::Unhealthy, true) => self.transition(&req.node_id, NodeState::Running),
            _ => {}
        }
        // As DecommissioningNodesWatcher.checkReadyToBeDecommissioned: READY or TIMEOUT.
        if state == NodeState::Decommissioning && (self.ready_to_decommission(&req.node_id) || self.timed_out(&req.node_id, now)) {
            let message = format!("DECOMMISSIONING {} is ready to be decommissioned", req.node_id);
            self.info(TRACKER, message.clone());
            self.transition(&req.node_id, NodeState::Decommissioned);
            return reply(NodeAction::Shutdown, message);
        }
        self.schedule(&req.node_id);
        let mut out = reply(NodeAction::Normal, String::new());
        if let Some(node) = self.nodes.get_mut(&req.node_id) {
            out.launch = std::mem::take(&mut node.to_launch);
            out.kill = std::mem::take(&mut node.to_kill);
        }
        out
    }

    /// A draining node is done when it runs no containers and no application that ran
    /// containers on it is still running (WAIT_CONTAINER, WAIT_APP, READY).
    fn ready_to_decommission(&self, id: &str) -> bool {
        let Some(node) = self.nodes.get(id) else { return false };
        node.containers.is_empty() && node.apps.iter().all(|a| self.apps.get(a).is_none_or(|app| app.state != "RUNNING"))
    }

    fn timed_out(&self, id: &str, now: u64) -> bool {
        self.nodes.get(id).and_then(|n| n.decommission_timeout.map(|t| n.decommission_started.saturating_add(t))).is_some_and(|d| now >= d)
    }

    fn complete_container(&mut self, node_id: &str, cid: &str) {
        let Some(alloc) = self.nodes.get_mut(node_id).and_then(|n| n.containers.remove(cid)) else { return };
        if let Some(app) = self.apps.get_mut(&alloc.app_id) {
            app.running.remove(cid);
        }
        self.finish_done_apps();
    }

    fn finish_done_apps(&mut self) {
        let now = self.nodes.values().map(|n| n.last_heartbeat).max().unwrap_or(self.started_on);
        let done: Vec<String> = self.apps.values().filter(|a| a.state == "RUNNING" && a.pending == 0 && a.running.is_empty()).map(|a| a.id.clone()).collect();
        for id in done {
            if let Some(app) = self.apps.get_mut(&id) {
                app.state = "FINISHED";
                app.finished = Some(now);
            }
            self.app_order.retain(|a| a != &id);
            self.info(RMAPP, format!("{id} State change from RUNNING to FINISHED on event = ATTEMPT_FINISHED"));
        }
    }

    /// Places pending containers on a node that just heartbeated (as YARN's schedulers do).
    fn schedule(&mut self, node_id: &str) {
        let Some(node) = self.nodes.get(node_id) else { return };
        if node.state != NodeState::Running {
            return;
        }
        let mut free_mb = node.memory_mb.saturating_sub(node.used_memory_mb());
        let mut free_vcores = node.vcores.saturating_sub(node.used_vcores());
        let order: Vec<String> = self.app_order.iter().cloned().collect();
        for app_id in order {
            let Some(app) = self.apps.get_mut(&app_id) else { continue };
            if !app.nodes.is_empty() && !app.nodes.contains(node_id) {
                continue;
            }
            while app.pending > 0 && free_mb >= app.memory_mb && free_vcores >= 1 {
                let app_seq = app_id.rsplit('_').next().unwrap_or("0001").to_string();
                let cid = format!("container_{}_{app_seq}_01_{:06}", self.started_on, self.next_container);
                self.next_container += 1;
                self.containers_allocated_total += 1;
                app.pending -= 1;
                app.running.insert(cid.clone());
                free_mb -= app.memory_mb;
                free_vcores -= 1;
                let launch = ContainerLaunch { id: cid.clone(), app_id: app_id.clone(), memory_mb: app.memory_mb, vcores: 1, duration_ms: app.duration_ms };
                if let Some(node) = self.nodes.get_mut(node_id) {
                    node.containers.insert(cid, Allocation { app_id: app_id.clone(), memory_mb: launch.memory_mb, vcores: 1 });
                    node.apps.insert(app_id.clone());
                    node.to_launch.push(launch);
                }
            }
        }
    }

    /// Submits a sleep application; its containers are placed on later heartbeats.
    pub fn submit_sleep(&mut self, req: &SleepAppRequest) -> Result<String, String> {
        if req.containers == 0 {
            return Err("-containers must be at least 1".into());
        }
        // YARN normalizes a request up to the minimum allocation.
        let memory_mb = req.memory_mb.max(self.settings.min_allocation_mb);
        for n in &req.nodes {
            if self.nodes.get(n).is_none_or(|node| node.state.is_inactive()) {
                return Err(format!("node {n} is not an active node of this cluster"));
            }
        }
        let id = format!("application_{}_{:04}", self.started_on, self.next_app);
        self.next_app += 1;
        self.apps.insert(
            id.clone(),
            App {
                id: id.clone(),
                state: "RUNNING",
                nodes: req.nodes.iter().cloned().collect(),
                pending: req.containers,
                memory_mb,
                duration_ms: req.duration_ms,
                running: BTreeSet::new(),
                finished: None,
            },
        );
        self.app_order.push_back(id.clone());
        self.info(RMAPP, format!("{id} State change from NEW to RUNNING on event = START (herd double sleep application)"));
        Ok(id)
    }

    /// `refreshNodes` with the host lists just re-read.
    pub fn refresh_nodes(&mut self, lists: HostLists, kind: DecommissionType, timeout_secs: Option<i64>, now: u64) {
        self.info(NODES_LIST, format!("refreshNodes excludesFile {:?} includesFile {:?}", lists.exclude, lists.include));
        self.lists = lists;
        let timeout = timeout_secs.unwrap_or(self.settings.graceful_timeout_secs);
        let timeout_ms = u64::try_from(timeout).ok().map(|t| t.saturating_mul(1000));
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            let node = &self.nodes[&id];
            let state = node.state;
            if state.is_inactive() {
                continue;
            }
            let valid = self.lists.is_valid(&[node.host.as_str(), id.as_str()]);
            match (kind, valid, state) {
                (DecommissionType::Forceful, _, NodeState::Decommissioning) => {
                    self.info(WATCHER, format!("Forcefully decommissioning {id}"));
                    self.transition(&id, NodeState::Decommissioned);
                }
                (DecommissionType::Forceful, _, _) => {}
                (_, true, NodeState::Decommissioning) => {
                    self.info(NODES_LIST, format!("Recommission node {id}"));
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.decommission_timeout = None;
                    }
                    self.transition(&id, NodeState::Running);
                }
                (_, true, _) => {}
                (DecommissionType::Normal, false, _) => {
                    self.info(NODES_LIST, format!("Decommission node {id} with state {}", state.as_str()));
                    self.transition(&id, NodeState::Decommissioned);
                }
                (DecommissionType::Graceful, false, _) => {
                    self.info(NODES_LIST, format!("Gracefully decommission node {id} with state {} and timeout {timeout}", state.as_str()));
                    if let Some(n) = self.nodes.get_mut(&id) {
                        if n.state != NodeState::Decommissioning {
                            n.decommission_started = now;
                        }
                        n.decommission_timeout = timeout_ms;
                    }
                    self.transition(&id, NodeState::Decommissioning);
                }
            }
        }
    }

    /// NMLivelinessMonitor: active nodes silent longer than the expiry interval are LOST.
    pub fn expire(&mut self, now: u64) {
        let expiry = self.settings.nm_expiry_ms;
        let expired: Vec<String> =
            self.nodes.values().filter(|n| !n.state.is_inactive() && now.saturating_sub(n.last_heartbeat) > expiry).map(|n| n.id.clone()).collect();
        for id in expired {
            self.info(LIVENESS, format!("Expired:{id} Timed out after {} secs", expiry / 1000));
            self.transition(&id, NodeState::Lost);
        }
    }

    /// DecommissioningNodesWatcher's poll: logs each draining node's sub-state and
    /// decommissions those past their timeout (their containers are killed).
    pub fn poll_decommissioning(&mut self, now: u64) {
        let draining: Vec<(String, Option<u64>, usize)> = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Decommissioning)
            .map(|n| (n.id.clone(), n.decommission_timeout.map(|t| n.decommission_started.saturating_add(t)), n.containers.len()))
            .collect();
        for (id, deadline, containers) in draining {
            let timed_out = deadline.is_some_and(|d| now >= d);
            let sub = if timed_out {
                "TIMEOUT"
            } else if containers > 0 {
                "WAIT_CONTAINER"
            } else if self.ready_to_decommission(&id) {
                "READY"
            } else {
                "WAIT_APP"
            };
            let left = deadline.map_or(-1, |d| i64::try_from(d.saturating_sub(now) / 1000).unwrap_or(i64::MAX));
            self.info(WATCHER, format!("{id} {sub} numOfContainers {containers} timeoutSecs {left}"));
            if timed_out {
                self.transition(&id, NodeState::Decommissioned);
            }
        }
    }

    /// NodeIds still DECOMMISSIONING (`checkForDecommissioningNodes`).
    pub fn decommissioning(&self) -> Vec<String> {
        self.nodes.values().filter(|n| n.state == NodeState::Decommissioning).map(|n| n.id.clone()).collect()
    }

    /// Node reports in the given states (all when empty).
    pub fn reports(&self, states: &[NodeState]) -> Vec<NodeReport> {
        self.nodes
            .values()
            .filter(|n| states.is_empty() || states.contains(&n.state))
            .map(|n| NodeReport {
                node_id: n.id.clone(),
                state: n.state.as_str().into(),
                http_address: n.shown_http_address().into(),
                num_containers: n.containers.len() as u64,
            })
            .collect()
    }

    pub fn count(&self, state: NodeState) -> usize {
        self.nodes.values().filter(|n| n.state == state).count()
    }

    /// Nodes whose resources the scheduler counts (RUNNING and DECOMMISSIONING).
    pub fn schedulable(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| matches!(n.state, NodeState::Running | NodeState::Decommissioning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yarn::wire::{ContainerStatus, NodeHealth};

    fn settings() -> Settings {
        Settings { min_allocation_mb: 1024, min_allocation_vcores: 1, heartbeat_interval_ms: 1000, nm_expiry_ms: 10_000, graceful_timeout_secs: 3600 }
    }

    fn reg(id: &str, mb: u64) -> RegisterRequest {
        RegisterRequest { node_id: id.into(), http_address: format!("{}:8042", id.split(':').next().unwrap_or("")), memory_mb: mb, vcores: 8, running: vec![] }
    }

    fn hb(id: &str, containers: Vec<ContainerStatus>) -> HeartbeatRequest {
        HeartbeatRequest { node_id: id.into(), health: NodeHealth { healthy: true, report: String::new() }, containers }
    }

    fn lists(include: &[&str], exclude: &[&str]) -> HostLists {
        HostLists { include: include.iter().map(|s| s.to_string()).collect(), exclude: exclude.iter().map(|s| s.to_string()).collect() }
    }

    fn state(c: &Cluster, id: &str) -> NodeState {
        c.nodes[id].state
    }

    #[test]
    fn registration_is_refused_outside_the_lists_and_below_the_minimum() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str], u64, NodeAction, &'a str);
        let cases: &[Case] = &[
            (&[], &[], 8192, NodeAction::Normal, ""),
            (&["nm-1"], &[], 8192, NodeAction::Normal, ""),
            (&["nm-2"], &[], 8192, NodeAction::Shutdown, "Disallowed NodeManager from  nm-1"),
            (&[], &["nm-1"], 8192, NodeAction::Shutdown, "Disallowed NodeManager from  nm-1"),
            (&[], &[], 512, NodeAction::Shutdown, "doesn't satisfy minimum allocations"),
        ];
        for (include, exclude, mb, action, why) in cases {
            let mut c = Cluster::new(settings(), lists(include, exclude), 0);
            let r = c.register(&reg("nm-1:8041", *mb), None, 1);
            assert_eq!(r.action, *action, "{include:?} {exclude:?} {mb}");
            assert!(r.diagnostics.contains(why), "{}", r.diagnostics);
            assert_eq!(c.nodes.contains_key("nm-1:8041"), *action == NodeAction::Normal);
        }
    }

    #[test]
    fn silent_nodes_are_lost_and_come_back_when_they_register() {
        let mut c = Cluster::new(settings(), HostLists::default(), 0);
        c.register(&reg("nm-1:8041", 8192), None, 0);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Running);
        c.expire(10_000);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Running);
        c.expire(10_001);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Lost);
        assert_eq!(c.nodes["nm-1:8041"].shown_http_address(), "");
        assert_eq!(c.heartbeat(&hb("nm-1:8041", vec![]), None, 10_002).action, NodeAction::Resync);
        c.register(&reg("nm-1:8041", 8192), None, 10_003);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Running);
    }

    #[test]
    fn unhealthy_reports_move_the_node_both_ways() {
        let mut c = Cluster::new(settings(), HostLists::default(), 0);
        c.register(&reg("nm-1:8041", 8192), None, 0);
        let mut req = hb("nm-1:8041", vec![]);
        req.health = NodeHealth { healthy: false, report: "ERROR disk full".into() };
        c.heartbeat(&req, None, 1);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Unhealthy);
        assert_eq!(c.nodes["nm-1:8041"].health_report, "ERROR disk full");
        c.heartbeat(&hb("nm-1:8041", vec![]), None, 2);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Running);
    }

    #[test]
    fn graceful_decommission_waits_for_containers_then_shuts_the_node_down() {
        let mut c = Cluster::new(settings(), HostLists::default(), 0);
        c.register(&reg("nm-1:8041", 4096), None, 0);
        let app = c.submit_sleep(&SleepAppRequest { nodes: vec!["nm-1:8041".into()], containers: 5, duration_ms: 5000, memory_mb: 1024 });
        assert!(app.is_ok());
        let r = c.heartbeat(&hb("nm-1:8041", vec![]), None, 1);
        assert_eq!(r.launch.len(), 4, "4096 MB fits four 1024 MB containers");
        assert_eq!(c.nodes["nm-1:8041"].used_memory_mb(), 4096);
        let ids: Vec<&str> = r.launch.iter().map(|l| l.id.as_str()).collect();
        c.refresh_nodes(lists(&[], &["nm-1"]), DecommissionType::Graceful, Some(60), 2);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Decommissioning);
        assert_eq!(c.decommissioning(), vec!["nm-1:8041".to_string()]);
        // Still running: stays DECOMMISSIONING and gets nothing new.
        let r = c.heartbeat(&hb("nm-1:8041", ids.iter().map(|id| ContainerStatus { id: (*id).into(), state: "RUNNING".into() }).collect()), None, 3);
        assert_eq!((r.action, r.launch.len()), (NodeAction::Normal, 0));
        c.poll_decommissioning(4);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Decommissioning);
        let done: Vec<ContainerStatus> = ids.iter().map(|id| ContainerStatus { id: (*id).into(), state: "COMPLETE".into() }).collect();
        let r = c.heartbeat(&hb("nm-1:8041", done), None, 5);
        // The app still has a pending container nowhere to go: WAIT_APP.
        assert_eq!(r.action, NodeAction::Normal);
        c.apps.values_mut().for_each(|a| a.pending = 0);
        c.finish_done_apps();
        let r = c.heartbeat(&hb("nm-1:8041", vec![]), None, 6);
        assert_eq!(r.action, NodeAction::Shutdown);
        assert!(r.diagnostics.contains("is ready to be decommissioned"));
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Decommissioned);
        assert!(c.log.iter().any(|l| l.message == "nm-1:8041 Node Transitioned from DECOMMISSIONING to DECOMMISSIONED"));
    }

    #[test]
    fn graceful_timeout_and_recommission_and_immediate_refresh() {
        let mut c = Cluster::new(settings(), HostLists::default(), 0);
        for id in ["nm-1:8041", "nm-2:8041", "nm-3:8041"] {
            c.register(&reg(id, 8192), None, 0);
        }
        c.submit_sleep(&SleepAppRequest { nodes: vec![], containers: 1, duration_ms: 100_000, memory_mb: 1024 }).ok();
        c.heartbeat(&hb("nm-1:8041", vec![]), None, 1);
        c.refresh_nodes(lists(&[], &["nm-1", "nm-2"]), DecommissionType::Graceful, Some(10), 1000);
        assert_eq!(state(&c, "nm-2:8041"), NodeState::Decommissioning);
        // Un-excluding nm-2 recommissions it.
        c.refresh_nodes(lists(&[], &["nm-1"]), DecommissionType::Graceful, Some(10), 2000);
        assert_eq!(state(&c, "nm-2:8041"), NodeState::Running);
        c.poll_decommissioning(10_999);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Decommissioning);
        c.poll_decommissioning(11_000);
        assert_eq!(state(&c, "nm-1:8041"), NodeState::Decommissioned);
        assert!(c.nodes["nm-1:8041"].containers.is_empty(), "timed out: containers killed");
        assert_eq!(c.heartbeat(&hb("nm-1:8041", vec![]), None, 11_001).action, NodeAction::Shutdown);
        // Without -g: at once.
        c.refresh_nodes(lists(&[], &["nm-1", "nm-3"]), DecommissionType::Normal, None, 12_000);
        assert_eq!(state(&c, "nm-3:8041"), NodeState::Decommissioned);
        // Infinite timeout never expires.
        c.refresh_nodes(lists(&[], &["nm-1", "nm-3", "nm-2"]), DecommissionType::Graceful, Some(-1), 13_000);
        c.poll_decommissioning(u64::MAX / 2);
        assert_eq!(state(&c, "nm-2:8041"), NodeState::Decommissioning);
        c.refresh_nodes(c.lists.clone(), DecommissionType::Forceful, None, 14_000);
        assert_eq!(state(&c, "nm-2:8041"), NodeState::Decommissioned);
    }

    #[test]
    fn a_restarted_rm_lists_excluded_hosts_as_decommissioned_and_refuses_them() {
        let mut c = Cluster::new(settings(), lists(&[], &["nm-1"]), 0);
        assert_eq!(state(&c, "nm-1:-1"), NodeState::Decommissioned);
        assert_eq!(c.heartbeat(&hb("nm-1:8041", vec![]), None, 1).action, NodeAction::Shutdown);
        assert_eq!(c.register(&reg("nm-1:8041", 8192), None, 1).action, NodeAction::Shutdown);
    }

    #[test]
    fn containers_respect_free_memory_and_node_choice() {
        let mut c = Cluster::new(settings(), HostLists::default(), 0);
        c.register(&reg("nm-1:8041", 2048), None, 0);
        c.register(&reg("nm-2:8041", 8192), None, 0);
        c.submit_sleep(&SleepAppRequest { nodes: vec!["nm-2:8041".into()], containers: 3, duration_ms: 1, memory_mb: 2048 }).ok();
        assert!(c.heartbeat(&hb("nm-1:8041", vec![]), None, 1).launch.is_empty());
        assert_eq!(c.heartbeat(&hb("nm-2:8041", vec![]), None, 1).launch.len(), 3);
        assert_eq!(c.apps.values().filter(|a| a.state == "RUNNING").count(), 1);
        assert!(c.submit_sleep(&SleepAppRequest { nodes: vec!["nope:1".into()], containers: 1, duration_ms: 1, memory_mb: 1 }).is_err());
    }
}
