//! The ResourceManager's web services (`/ws/v1/cluster/*` on 8088) in the shapes of real
//! captures (tests/fixtures/hadoop/rm-*.json in the herd-health work): field names, order and
//! JSON types as Hadoop writes them. `{"nodes":null}` when there are none, as YARN's JAXB
//! writer renders an empty list (the same as the well-known `{"apps":null}`).

use super::cluster::{Cluster, Node, NodeState};
use serde_json::{Value, json};

/// The version the double reports; its build string says it is a double.
pub const VERSION: &str = "3.3.6";
const BUILD: &str = "3.3.6 from herd-hadoop-double (TEST DOUBLE, not Hadoop) source checksum 0";
const BUILT_ON: &str = "2023-06-18T08:22Z";

/// `/ws/v1/cluster/info`.
pub fn info(c: &Cluster) -> Value {
    json!({"clusterInfo": {
        "id": c.started_on,
        "startedOn": c.started_on,
        "state": "STARTED",
        "haState": "ACTIVE",
        "rmStateStoreName": "org.apache.hadoop.yarn.server.resourcemanager.recovery.NullRMStateStore",
        "resourceManagerVersion": VERSION,
        "resourceManagerBuildVersion": BUILD,
        "resourceManagerVersionBuiltOn": BUILT_ON,
        "hadoopVersion": VERSION,
        "hadoopBuildVersion": BUILD,
        "hadoopVersionBuiltOn": BUILT_ON,
        "haZooKeeperConnectionState": "ResourceManager HA is not enabled."
    }})
}

/// `/ws/v1/cluster/metrics`. Totals count the nodes the scheduler holds (RUNNING and
/// DECOMMISSIONING); `activeNodes` counts RUNNING ones only, and `totalNodes` is the sum of
/// the per-state counts, as Hadoop 3's ClusterMetricsInfo computes it.
pub fn metrics(c: &Cluster) -> Value {
    let total_mb: u64 = c.schedulable().map(|n| n.memory_mb).sum();
    let total_vcores: u64 = c.schedulable().map(|n| n.vcores).sum();
    let allocated_mb: u64 = c.schedulable().map(Node::used_memory_mb).sum();
    let allocated_vcores: u64 = c.schedulable().map(Node::used_vcores).sum();
    let containers: usize = c.schedulable().map(|n| n.containers.len()).sum();
    let apps = |state: &str| c.apps.values().filter(|a| a.state == state).count();
    let count = |s| c.count(s);
    let active = count(NodeState::Running);
    let total = active
        + count(NodeState::Lost)
        + count(NodeState::Decommissioned)
        + count(NodeState::Rebooted)
        + count(NodeState::Unhealthy)
        + count(NodeState::Decommissioning)
        + count(NodeState::Shutdown);
    json!({"clusterMetrics": {
        "appsSubmitted": c.apps.len(),
        "appsCompleted": apps("FINISHED"),
        "appsPending": 0,
        "appsRunning": apps("RUNNING"),
        "appsFailed": 0,
        "appsKilled": 0,
        "reservedMB": 0,
        "availableMB": total_mb.saturating_sub(allocated_mb),
        "allocatedMB": allocated_mb,
        "reservedVirtualCores": 0,
        "availableVirtualCores": total_vcores.saturating_sub(allocated_vcores),
        "allocatedVirtualCores": allocated_vcores,
        "containersAllocated": containers,
        "containersReserved": 0,
        "containersPending": c.apps.values().map(|a| a.pending).sum::<u64>(),
        "totalMB": total_mb,
        "totalVirtualCores": total_vcores,
        "totalNodes": total,
        "lostNodes": count(NodeState::Lost),
        "unhealthyNodes": count(NodeState::Unhealthy),
        "decommissioningNodes": count(NodeState::Decommissioning),
        "decommissionedNodes": count(NodeState::Decommissioned),
        "rebootedNodes": count(NodeState::Rebooted),
        "activeNodes": active,
        "shutdownNodes": count(NodeState::Shutdown)
    }})
}

/// One `nodes.node[]` entry (also the body of `/ws/v1/cluster/nodes/{id}` under `node`).
pub fn node(n: &Node) -> Value {
    let inactive = n.state.is_inactive();
    let used_mb = n.used_memory_mb();
    let used_vcores = n.used_vcores();
    json!({
        "rack": "/default-rack",
        "state": n.state.as_str(),
        "id": n.id,
        "nodeHostName": n.host,
        "nodeHTTPAddress": n.shown_http_address(),
        "healthStatus": if n.state == NodeState::Unhealthy { "Unhealthy" } else { "Healthy" },
        "lastHealthUpdate": n.last_health_update,
        "version": VERSION,
        "healthReport": n.health_report,
        "numContainers": n.containers.len(),
        "usedMemoryMB": used_mb,
        "availMemoryMB": if inactive { 0 } else { n.memory_mb.saturating_sub(used_mb) },
        "usedVirtualCores": used_vcores,
        "availableVirtualCores": if inactive { 0 } else { n.vcores.saturating_sub(used_vcores) }
    })
}

/// `/ws/v1/cluster/nodes[?states=A,B]`: all states when no filter is given.
pub fn nodes(c: &Cluster, states: &[NodeState]) -> Value {
    let list: Vec<Value> = c.nodes.values().filter(|n| states.is_empty() || states.contains(&n.state)).map(node).collect();
    if list.is_empty() { json!({"nodes": null}) } else { json!({"nodes": {"node": list}}) }
}

/// The 404 body YARN's web services give for an unknown node.
pub fn node_not_found(id: &str) -> Value {
    json!({"RemoteException": {
        "exception": "NotFoundException",
        "message": format!("java.lang.Exception: nodeId, {id}, is not found"),
        "javaClassName": "org.apache.hadoop.yarn.webapp.NotFoundException"
    }})
}

/// The 400 body for a bad `states` value.
pub fn bad_request(message: &str) -> Value {
    json!({"RemoteException": {
        "exception": "BadRequestException",
        "message": format!("java.lang.Exception: {message}"),
        "javaClassName": "org.apache.hadoop.yarn.webapp.BadRequestException"
    }})
}

/// Parses `?states=A,B` (case-insensitive); the bad name on error.
pub fn parse_states(s: &str) -> Result<Vec<NodeState>, String> {
    s.split(',').filter(|t| !t.trim().is_empty()).map(|t| NodeState::parse(t).ok_or_else(|| t.trim().to_string())).collect()
}
