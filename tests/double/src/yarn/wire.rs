//! JSON bodies between the YARN doubles (real YARN speaks Hadoop RPC on these ports). Routes:
//!
//! | port (key)                        | route                               | body → answer |
//! |-----------------------------------|-------------------------------------|---------------|
//! | 8031 resource-tracker.address     | `POST /registerNodeManager`         | [`RegisterRequest`] → [`RegisterResponse`] |
//! | 8031                              | `POST /nodeHeartbeat`               | [`HeartbeatRequest`] → [`HeartbeatResponse`] |
//! | 8032 resourcemanager.address      | `GET /getClusterNodes?states=A,B`   | → [`NodeReport`]s (all states when none given) |
//! | 8032                              | `POST /herd-double/submitSleepApp`  | [`SleepAppRequest`] → [`SleepAppResponse`] (400: text) |
//! | 8033 admin.address                | `POST /refreshNodes`                | [`RefreshNodesRequest`] → `{}` (500: text) |
//! | 8033                              | `GET /checkForDecommissioningNodes` | → [`DecommissioningNodes`] |

use serde::{Deserialize, Serialize};

/// What an NM sends when it registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// `host:port`, the NodeId.
    pub node_id: String,
    /// `host:port` of the NM's web server.
    pub http_address: String,
    pub memory_mb: u64,
    pub vcores: u64,
    /// Containers the NM still runs (after an RM restart or a resync).
    #[serde(default)]
    pub running: Vec<ContainerStatus>,
}

/// `NORMAL` (go on), `SHUTDOWN` (stop the NM), `RESYNC` (register again), as YARN's NodeAction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeAction {
    Normal,
    Shutdown,
    Resync,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub action: NodeAction,
    /// Why, when the action is not NORMAL (YARN's diagnostics message).
    #[serde(default)]
    pub diagnostics: String,
    pub heartbeat_interval_ms: u64,
}

/// A simulated container as an NM reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    /// `RUNNING` or `COMPLETE`.
    pub state: String,
}

/// The node's health as its health checker sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeHealth {
    pub healthy: bool,
    /// Empty when healthy, else the checker's report.
    #[serde(default)]
    pub report: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub node_id: String,
    pub health: NodeHealth,
    /// Containers running now, and those that finished since the last heartbeat (`COMPLETE`).
    pub containers: Vec<ContainerStatus>,
}

/// A simulated container to run: it "works" for `duration_ms`, then completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLaunch {
    pub id: String,
    pub app_id: String,
    pub memory_mb: u64,
    pub vcores: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub action: NodeAction,
    #[serde(default)]
    pub diagnostics: String,
    pub heartbeat_interval_ms: u64,
    #[serde(default)]
    pub launch: Vec<ContainerLaunch>,
    /// Container ids to kill (a decommission timed out, or the node was forcefully removed).
    #[serde(default)]
    pub kill: Vec<String>,
}

/// One node as the client protocol reports it (YARN's NodeReport, the fields `yarn node` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub state: String,
    pub http_address: String,
    pub num_containers: u64,
}

/// The double-only sleep application: `containers` containers of `memory_mb` each for
/// `duration_ms`, on `nodes` (NodeIds) or any RUNNING node when empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepAppRequest {
    #[serde(default)]
    pub nodes: Vec<String>,
    pub containers: u64,
    pub duration_ms: u64,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepAppResponse {
    pub app_id: String,
}

/// YARN's DecommissionType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecommissionType {
    /// Excluded nodes are decommissioned at once.
    Normal,
    /// Excluded nodes drain first (DECOMMISSIONING).
    Graceful,
    /// DECOMMISSIONING nodes are decommissioned at once (the `-client` tracker's timeout).
    Forceful,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshNodesRequest {
    pub kind: DecommissionType,
    /// Seconds, `-1` infinite; `None`: the RM's configured default.
    #[serde(default)]
    pub timeout_secs: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecommissioningNodes {
    pub nodes: Vec<String>,
}
