//! Builders for the API's status objects, shared by the commands' tests.

use std::time::SystemTime;

use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{ClusterStatus, ContainerState, InstanceStatus, Observed};
use herd_api::{ClusterSpec, Role};

/// A point in time written in RFC 3339.
pub fn at(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `acme/prod/datanode-N` (500m, 512Mi) on `host`; observed in `state` since 2026-01-01 00:00:00.
pub fn instance(n: u32, host: Option<&str>, state: Option<ContainerState>) -> InstanceStatus {
    let name = InstanceRef::new("acme", "prod", Role::Datanode, n);
    InstanceStatus {
        instance: name.clone(),
        pool: Role::Datanode,
        host: host.map(Into::into),
        rack: None,
        cpu: Cpu(500),
        memory: Memory(512 << 20),
        pending: None,
        host_lost_ms_ago: None,
        observed: state.map(|state| Observed {
            instance: name,
            container_id: "c0ffee".into(),
            state,
            started_at: Some("2026-01-01T00:00:00.123456789Z".into()),
            exit_code: None,
            error: None,
            ip: Some(std::net::Ipv4Addr::new(10, 88, 0, n as u8 + 2)),
            config_hash: None,
            live_hash: None,
            hadoop: None,
        }),
        hadoop: None,
        leaving: None,
    }
}

/// Cluster `acme/prod` at generation 1 with these instances.
pub fn cluster(instances: Vec<InstanceStatus>) -> ClusterStatus {
    // NB: decoded rather than built, so fields the spec gains later keep their defaults here.
    let spec: ClusterSpec =
        serde_json::from_value(serde_json::json!({ "tenant": "acme", "name": "prod" }))
            .unwrap_or_else(|e| panic!("fixture spec: {e}"));
    ClusterStatus {
        tenant: "acme".into(),
        name: "prod".into(),
        generation: 1,
        spec,
        instances,
        hdfs: None,
        yarn: None,
        conditions: vec![],
        pools: vec![],
        instances_next: None,
    }
}
