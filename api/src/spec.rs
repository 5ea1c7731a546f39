//! The cluster spec: what a tenant asks for. The same type is read from `herd apply -f`,
//! the REST API (JSON or YAML) and, later, the `HadoopCluster` custom resource.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::hadoop::ConfigOverrides;
use crate::lifecycle::PoolLifecycle;
use crate::network::PortSpec;
use crate::quantity::{Cpu, Memory, Resources};

/// A Hadoop role herd runs as a pool of containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Namenode,
    Resourcemanager,
    Datanode,
    Nodemanager,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Namenode, Role::Resourcemanager, Role::Datanode, Role::Nodemanager];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Namenode => "namenode",
            Role::Resourcemanager => "resourcemanager",
            Role::Datanode => "datanode",
            Role::Nodemanager => "nodemanager",
        }
    }

    /// The least memory a container of this role may be given. Below it the JVM of the
    /// daemon cannot start with a useful heap, so such a spec is refused up front.
    pub fn min_memory(self) -> Memory {
        match self {
            Role::Datanode => Memory(256 << 20),
            Role::Namenode | Role::Resourcemanager | Role::Nodemanager => Memory(512 << 20),
        }
    }

    /// Whether the role keeps data on the host's data disks (and so must stay where its data is).
    pub fn has_data(self) -> bool {
        matches!(self, Role::Datanode | Role::Namenode)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown pool `{s}` (expected one of namenode, resourcemanager, datanode, nodemanager)"))
    }
}

// NB: read through a string (not serde's enum support) so that error paths name the map
// key, e.g. `pools.datanode.cpu` rather than `pools.?.cpu`.
impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// One tenant's Hadoop cluster.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The owning tenant; must exist before the cluster is applied.
    pub tenant: String,
    /// The cluster's name, unique within its tenant.
    pub name: String,
    /// The image per role, used by every pool of that role unless the pool names its own.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::images"))]
    pub images: BTreeMap<Role, String>,
    /// The node pools, by role. DataNodes and NodeManagers are sized independently.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, PoolSpec>)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::pools"))]
    pub pools: BTreeMap<Role, PoolSpec>,
    /// The Hadoop version the images run, e.g. `3.4.1`; informational unless an image is not
    /// given, in which case a role runs `herd/<role>:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// HDFS settings.
    #[serde(default, skip_serializing_if = "HdfsSpec::is_default")]
    pub hdfs: HdfsSpec,
    /// Masters the tenant runs itself, outside herd: workers join them instead of a
    /// `namenode` or `resourcemanager` pool.
    #[serde(default, skip_serializing_if = "ExternalMasters::is_empty")]
    pub external: ExternalMasters,
    /// Hadoop configuration overrides for every role, per file; a pool's own win over these.
    /// Keys herd must own (e.g. `fs.defaultFS`) are refused.
    #[serde(default, rename = "configOverrides", skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, String>>)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::config_overrides"))]
    pub config_overrides: ConfigOverrides,
}

/// HDFS settings of a cluster.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HdfsSpec {
    /// `dfs.replication`: copies of each block, 1 to 512 (default 3).
    #[serde(default = "default_replication")]
    pub replication: u16,
}

fn default_replication() -> u16 {
    3
}

impl Default for HdfsSpec {
    fn default() -> Self {
        HdfsSpec { replication: default_replication() }
    }
}

impl HdfsSpec {
    pub fn is_default(&self) -> bool {
        *self == HdfsSpec::default()
    }
}

/// Masters outside herd that workers join.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalMasters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namenode: Option<ExternalMaster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resourcemanager: Option<ExternalMaster>,
}

impl ExternalMasters {
    pub fn is_empty(&self) -> bool {
        self.namenode.is_none() && self.resourcemanager.is_none()
    }
}

/// One external master: its DNS name (or address) and, where not Hadoop's defaults, ports.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalMaster {
    /// DNS name or IPv4 address every worker can reach.
    pub host: String,
    /// NameNode RPC port (default 8020) or ResourceManager client port (default 8032).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_port: Option<u16>,
    /// Web port: NameNode 9870, ResourceManager 8088 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
}

/// A pool of identical containers of one role.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// How many instances to run.
    #[schema(value_type = u32, maximum = 10000)]
    pub replicas: Replicas,
    /// CPU per container; enforced as a CFS quota.
    pub cpu: Cpu,
    /// Memory per container; enforced as a hard limit.
    pub memory: Memory,
    /// Disk per container on the host's data disks (DataNode block storage); counts against
    /// the tenant's disk quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Memory>,
    /// Overrides the cluster's image for this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Arguments passed to the image's entrypoint, replacing its default command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Extra environment for the daemon.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Container ports reachable on the host's address (e.g. the NameNode web UI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortSpec>,
    /// Hadoop configuration overrides for this role, per file; they win over the cluster's.
    #[serde(default, rename = "configOverrides", skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, BTreeMap<String, String>>)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::schema::config_overrides"))]
    pub config_overrides: ConfigOverrides,
    /// How instances leave on a scale-down (DataNode decommission deadline, NodeManager
    /// drain timeout); only `datanode` and `nodemanager` pools read it.
    #[serde(default, skip_serializing_if = "PoolLifecycle::is_default")]
    pub lifecycle: PoolLifecycle,
    /// Host labels an instance's host must carry (`herd-agent --label k=v`), all of them;
    /// a pool with none may go on any host.
    #[serde(default, rename = "nodeSelector", skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The most instances of this pool on one host. DataNodes default to 1, so that one
    /// host failure never takes two replicas of a block (they also spread over racks);
    /// other pools are unlimited by default.
    #[serde(default, rename = "maxPerHost", skip_serializing_if = "Option::is_none")]
    pub max_per_host: Option<u32>,
    /// Linux capabilities beyond herd's reduced default set (which lacks e.g. `NET_RAW`,
    /// `NET_ADMIN`, `SYS_ADMIN`); only an admin token may set or change them.
    #[serde(default, skip_serializing_if = "Capabilities::is_empty")]
    pub capabilities: Capabilities,
}

/// Extra Linux capabilities of a pool's containers.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Capability names as Docker takes them, without `CAP_`, e.g. `NET_RAW`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

impl Capabilities {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
    }
}

impl ClusterSpec {
    /// What the whole cluster asks for: every pool's replicas times its per-container resources.
    pub fn requests(&self) -> Resources {
        self.pools.values().fold(Resources::default(), |acc, p| {
            let one = Resources { cpu: p.cpu, memory: p.memory, disk: p.disk.unwrap_or_default() };
            acc.plus(one.times(p.replicas.0))
        })
    }

    /// The most instances of pool `role` one host may hold: its `maxPerHost`, else 1 for
    /// DataNodes and no limit for the others.
    pub fn max_per_host(&self, role: Role) -> Option<u32> {
        let pool = self.pools.get(&role)?;
        pool.max_per_host.or((role == Role::Datanode).then_some(1))
    }

    /// The image a pool runs: its own, else the cluster's for its role.
    pub fn image_for(&self, role: Role) -> Option<&str> {
        let pool = self.pools.get(&role)?;
        pool.image.as_deref().or_else(|| self.images.get(&role).map(String::as_str))
    }
}

/// A replica count. Its own type so that a negative or fractional count is refused while
/// parsing, with the field and line attached, rather than wrapping or truncating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Replicas(pub u32);

/// The most replicas one pool may ask for; far above any real pool, low enough to catch typos.
pub const MAX_REPLICAS: u32 = 10_000;

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Replicas;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number of replicas from 0 to {MAX_REPLICAS}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Replicas, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v <= MAX_REPLICAS)
                    .map(Replicas)
                    .ok_or_else(|| E::custom(format!("must be at most {MAX_REPLICAS}, got {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Replicas, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("must be 0 or more, got {v}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}
