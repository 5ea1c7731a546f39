//! Container networking on the wire: the subnet the orchestrator leases a host, the table of
//! routes and addresses each agent needs to plumb and firewall its containers, and the ports a
//! pool publishes.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::names::InstanceRef;

/// A host's share of the cluster CIDR, leased by the orchestrator at registration and stable
/// for the host's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostNetwork {
    /// Every container address of every host is inside it.
    #[schema(value_type = String, example = "10.88.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// This host's containers' subnet; its first address is the bridge's (the gateway).
    #[schema(value_type = String, example = "10.88.3.0/24")]
    pub subnet: Ipv4Net,
}

/// Everything an agent needs, beyond its own containers, to network them: how to reach the
/// other hosts' subnets, and who owns each cluster address (for tenant isolation and names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkPlan {
    #[serde(flatten)]
    pub lease: HostNetwork,
    /// Other hosts' subnets and their underlay addresses; routed directly, without NAT.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Every container address in the cluster CIDR whose owner is known, on any host.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A route to another host's container subnet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Route {
    #[schema(value_type = String, example = "10.88.4.0/24")]
    pub subnet: Ipv4Net,
    /// The other host's underlay address.
    #[schema(value_type = String, example = "192.0.2.14")]
    pub via: Ipv4Addr,
    /// The other host's id, for people reading it.
    pub host: String,
}

/// One container address and the instance that holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    #[schema(value_type = String, example = "10.88.3.7")]
    pub ip: Ipv4Addr,
    pub instance: InstanceRef,
}

/// Transport protocol of a published port.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A container port made reachable on its host's address (DNAT), e.g. the NameNode web UI.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The port the daemon listens on inside the container.
    pub port: u16,
    /// The port on the host's address; defaults to `port`. Two instances publishing one host
    /// port are never placed on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
}

impl PortSpec {
    /// The port on the host's address.
    pub fn host_port(&self) -> u16 {
        self.host_port.unwrap_or(self.port)
    }
}
