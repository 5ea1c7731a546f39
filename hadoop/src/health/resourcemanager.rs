//! The ResourceManager's `/ws/v1/cluster/{info,metrics,nodes}` answers into a
//! [`ResourceManagerHealth`].
//!
//! Counters missing in older versions (`decommissioningNodes`, `shutdownNodes` and the vcores
//! before 2.6; all of `haState` before 2.4) read as 0 or `None`. `nodes` is `null` when the
//! ResourceManager knows no NodeManager.

use herd_api::hadoop::{NodeManagerReport, ResourceManagerHealth};

use super::Result;
use super::json::{Obj, parse_answer};

const INFO: &str = "/ws/v1/cluster/info";
const METRICS: &str = "/ws/v1/cluster/metrics";
const NODES: &str = "/ws/v1/cluster/nodes";

/// Reads the three answers (`info` is optional: an older poller may not ask for it);
/// anything unreadable gives a report with only `error` set, naming what was wrong.
pub fn parse(info: Option<&str>, metrics: &str, nodes: &str) -> ResourceManagerHealth {
    try_parse(info, metrics, nodes)
        .unwrap_or_else(|e| ResourceManagerHealth { error: Some(e.to_string()), ..ResourceManagerHealth::default() })
}

/// [`parse`], with the failure as a typed error.
pub fn try_parse(info: Option<&str>, metrics: &str, nodes: &str) -> Result<ResourceManagerHealth> {
    let mut h = ResourceManagerHealth::default();

    if let Some(text) = info {
        let doc = parse_answer(INFO, text)?;
        let top = Obj::new(INFO, "", &doc)?;
        let ci = top.obj("clusterInfo", "clusterInfo")?.ok_or_else(|| top.missing("clusterInfo", "an object"))?;
        h.state = ci.str("state")?.unwrap_or_default().to_string();
        h.ha_state = ci.str("haState")?.map(str::to_string);
        h.version = match ci.str("hadoopVersion")? {
            Some(v) => Some(v.to_string()),
            None => ci.str("resourceManagerVersion")?.map(str::to_string),
        };
    }

    let doc = parse_answer(METRICS, metrics)?;
    let top = Obj::new(METRICS, "", &doc)?;
    let m = top.obj("clusterMetrics", "clusterMetrics")?.ok_or_else(|| top.missing("clusterMetrics", "an object"))?;
    // NB: every version has `activeNodes`; its absence means this is not a metrics answer.
    h.active_nodes = m.u64("activeNodes")?.ok_or_else(|| m.missing("activeNodes", "a non-negative integer"))?;
    h.lost_nodes = m.u64("lostNodes")?.unwrap_or(0);
    h.unhealthy_nodes = m.u64("unhealthyNodes")?.unwrap_or(0);
    h.decommissioning_nodes = m.u64("decommissioningNodes")?.unwrap_or(0);
    h.decommissioned_nodes = m.u64("decommissionedNodes")?.unwrap_or(0);
    h.shutdown_nodes = m.u64("shutdownNodes")?.unwrap_or(0);
    h.total_mb = m.u64("totalMB")?.unwrap_or(0);
    h.allocated_mb = m.u64("allocatedMB")?.unwrap_or(0);
    h.total_vcores = m.u64("totalVirtualCores")?.unwrap_or(0);
    h.allocated_vcores = m.u64("allocatedVirtualCores")?.unwrap_or(0);
    h.apps_running = m.u64("appsRunning")?.unwrap_or(0);

    let doc = parse_answer(NODES, nodes)?;
    let top = Obj::new(NODES, "", &doc)?;
    if !top.map.contains_key("nodes") {
        return Err(top.missing("nodes", "an object, or null when there are none"));
    }
    if let Some(list) = top.obj("nodes", "nodes")? {
        for (i, node) in list.array("node")?.map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            let path = format!("nodes.node[{i}]");
            h.nodes.push(node_report(&Obj::new(NODES, &path, node)?)?);
        }
    }
    Ok(h)
}

fn node_report(n: &Obj<'_>) -> Result<NodeManagerReport> {
    Ok(NodeManagerReport {
        id: n.req_str("id")?.to_string(),
        hostname: n.req_str("nodeHostName")?.to_string(),
        state: n.req_str("state")?.to_string(),
        last_health_update_ms: n.u64("lastHealthUpdate")?,
        num_containers: n.u64("numContainers")?,
        used_memory_mb: n.u64("usedMemoryMB")?,
        avail_memory_mb: n.u64("availMemoryMB")?,
        health_report: n.str("healthReport")?.filter(|r| !r.trim().is_empty()).map(str::to_string),
    })
}

/// A node's state as the ResourceManager names it.
pub mod state {
    pub const RUNNING: &str = "RUNNING";
    pub const NEW: &str = "NEW";
    pub const UNHEALTHY: &str = "UNHEALTHY";
    pub const DECOMMISSIONING: &str = "DECOMMISSIONING";
    pub const DECOMMISSIONED: &str = "DECOMMISSIONED";
    pub const LOST: &str = "LOST";
    pub const REBOOTED: &str = "REBOOTED";
    pub const SHUTDOWN: &str = "SHUTDOWN";
}

#[cfg(test)]
mod tests;
