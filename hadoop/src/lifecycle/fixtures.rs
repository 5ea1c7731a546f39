//! Builders for the lifecycle's table tests: instances of `acme/prod`, and master reports
//! about them.

use herd_api::Role;
use herd_api::hadoop::{DataNodeReport, NameNodeHealth, NodeManagerReport, ResourceManagerHealth};
use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;

use super::Member;

pub use super::admin_state::{DECOMMISSION_IN_PROGRESS as IN_PROGRESS, IN_SERVICE};

pub fn dn(ordinal: u32) -> InstanceRef {
    InstanceRef::new("acme", "prod", Role::Datanode, ordinal)
}

pub fn nm(ordinal: u32) -> InstanceRef {
    InstanceRef::new("acme", "prod", Role::Nodemanager, ordinal)
}

/// A live DataNode `datanode-N` in `state` holding `blocks`.
pub fn dn_report(ordinal: u32, state: &str, blocks: u64) -> DataNodeReport {
    let host = dn(ordinal).hostname();
    DataNodeReport {
        name: format!("{host}:9866"),
        hostname: host,
        admin_state: Some(state.to_string()),
        live: true,
        num_blocks: Some(blocks),
        decommission_under_replicated: (state == IN_PROGRESS).then_some(blocks / 2),
        ..DataNodeReport::default()
    }
}

pub fn dead(mut d: DataNodeReport) -> DataNodeReport {
    d.live = false;
    d
}

/// A NameNode report over `datanodes`, its counters derived from them.
pub fn namenode(datanodes: Vec<DataNodeReport>, missing_blocks: u64) -> NameNodeHealth {
    NameNodeHealth {
        live_datanodes: datanodes.iter().filter(|d| d.live).count() as u64,
        dead_datanodes: datanodes.iter().filter(|d| !d.live).count() as u64,
        decommissioning_datanodes: datanodes.iter().filter(|d| d.admin_state.as_deref() == Some(IN_PROGRESS)).count()
            as u64,
        blocks_total: 300,
        missing_blocks,
        datanodes,
        ..NameNodeHealth::default()
    }
}

pub fn errored_namenode() -> NameNodeHealth {
    NameNodeHealth { error: Some("connection refused".into()), ..NameNodeHealth::default() }
}

pub fn nm_report(ordinal: u32, state: &str, containers: u64) -> NodeManagerReport {
    let host = nm(ordinal).hostname();
    NodeManagerReport {
        id: format!("{host}:8041"),
        hostname: host,
        state: state.to_string(),
        num_containers: Some(containers),
        ..NodeManagerReport::default()
    }
}

pub fn resourcemanager(nodes: Vec<NodeManagerReport>) -> ResourceManagerHealth {
    ResourceManagerHealth { state: "STARTED".into(), nodes, ..ResourceManagerHealth::default() }
}

/// Pool members `role-N` for each `(N, phase)`.
pub fn members(role: Role, list: &[(u32, Option<Phase>)]) -> Vec<Member> {
    list.iter()
        .map(|&(ordinal, phase)| Member {
            instance: InstanceRef::new("acme", "prod", role, ordinal),
            ordinal,
            phase,
            machine: Some(format!("host-{ordinal}")),
        })
        .collect()
}
