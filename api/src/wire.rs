//! What crosses the wire: the agent protocol (agents start every exchange: register, then
//! heartbeat with observed state; the reply carries the host's full desired set) and the
//! status views the HTTP API returns to the CLI and tenants.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::hadoop::{HadoopConfig, MasterHealth};
use crate::names::InstanceRef;
use crate::network::{HostNetwork, NetworkDelta, NetworkPlan, PortSpec};
use crate::quantity::{Cpu, Memory, Resources};
use crate::spec::{ClusterSpec, Replicas, Role};
use crate::validate::FieldError;

/// A host as its agent describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostInfo {
    /// Stable id of the host, a DNS label.
    pub id: String,
    /// Allocatable CPU.
    pub cpu: Cpu,
    /// Allocatable memory.
    pub memory: Memory,
    /// Rack label, used to spread replicas.
    #[serde(default)]
    pub rack: Option<String>,
    /// Host paths of the data disks DataNodes store blocks on.
    #[serde(default)]
    pub data_disks: Vec<String>,
    /// Size of each of `data_disks`, in the same order, as the agent measured it: the room
    /// the scheduler gives DataNodes' `disk` there. Empty when not measured (an older
    /// agent): `disk` is then not checked on this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_disk_capacity: Vec<Memory>,
    /// Labels an operator gave the host (`herd-agent --label k=v`), matched by pools'
    /// `nodeSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The agent's version, for operators.
    #[serde(default)]
    pub agent_version: String,
    /// The host's underlay address: other hosts route its container subnet via it, and
    /// published ports listen on it. `None` when the agent runs without herd networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Ipv4Addr>,
}

/// `POST /v1/agent/register`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    pub host: HostInfo,
    /// Where the agent serves its instances' logs; absent for agents that serve none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogEndpoint>,
}

/// An agent's log endpoint, for the orchestrator only (never shown by the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEndpoint {
    /// Base URL, e.g. `http://10.0.0.7:7481`.
    pub url: String,
    /// Bearer secret the agent accepts, random per agent start, until the orchestrator answers
    /// with a credential of its own ([`RegisterReply::log_secret`]). An orchestrator that does
    /// stores only its hash.
    pub secret: String,
}

/// Answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegisterReply {
    /// How often the agent should heartbeat.
    pub heartbeat_interval_ms: u64,
    /// The host's container subnet, when it networks its containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<HostNetwork>,
    /// The bearer the orchestrator presents to this agent's log endpoint from now on, derived
    /// for this host from a key only the orchestrator holds (nothing of it is stored); the
    /// agent keeps only its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_secret: Option<String>,
}

/// `POST /v1/agent/heartbeat`: what the agent sees on its host.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub host_id: String,
    /// Every herd container on the host, desired or not.
    pub observed: Vec<Observed>,
    /// Problems on the host that need an operator, one line each (e.g. a full log disk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    /// Instances whose data folders the agent has removed, as a reply's `purge` asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged: Vec<InstanceRef>,
    /// The `generation` of the last reply the agent adopted as its desired set: the reply is
    /// then a delta against it ([`HeartbeatReply::base`]). `None` (an old agent, or one that
    /// just started) asks for the full set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<u64>,
    /// The agent takes a changed network plan as a [`NetworkDelta`]
    /// ([`HeartbeatReply::network_delta`]); without it (an older agent) the plan is sent whole
    /// whenever it changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_deltas: bool,
}

/// `POST /v1/agent/watch`: a long poll. Answered as soon as the host's desired set differs
/// from generation `applied` (a placement, a spec, phase or purge that concerns this host),
/// else after `wait_ms` with an empty delta.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Watch {
    pub host_id: String,
    /// The `generation` of the last reply the agent adopted; `None` answers at once in full.
    #[serde(default)]
    pub applied: Option<u64>,
    /// How long to hold the request when nothing changes (capped by the orchestrator).
    #[serde(default = "default_watch_ms")]
    #[schema(minimum = 0, maximum = 60000)]
    pub wait_ms: u64,
    /// As [`Heartbeat::network_deltas`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_deltas: bool,
}

pub const WATCH_MAX_MS: u64 = 60_000;

fn default_watch_ms() -> u64 {
    30_000
}

/// Observed state of one instance's container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Observed {
    pub instance: InstanceRef,
    /// Docker's container id; empty when no container could be created.
    #[serde(default)]
    pub container_id: String,
    pub state: ContainerState,
    /// When the container last started (Docker's RFC 3339 `StartedAt`).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why the agent could not converge it, with what to do next.
    #[serde(default)]
    pub error: Option<String>,
    /// The container's address, once the agent has plumbed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    /// [`HadoopConfig::files_hash`] of the config the container runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// [`HadoopConfig::live_hash`] of the live files last written and refreshed without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_hash: Option<String>,
    /// For a master: what it last said about HDFS or YARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hadoop: Option<MasterHealth>,
}

/// A container's state as Docker reports it, plus `failed` when the agent could not create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Failed,
    /// Set by the orchestrator, never by an agent: the instance's host is `lost`, so nobody
    /// knows whether its container still runs.
    Unknown,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Restarting => "restarting",
            ContainerState::Paused => "paused",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Failed => "failed",
            ContainerState::Unknown => "unknown",
        }
    }
}

/// Reply to a heartbeat or a watch: the host's desired set, in full or as a delta.
///
/// Full (`base` absent): `desired` is every container the host should run and `network` its
/// plan. Delta (`base` = the generation the agent said it applied): `desired` holds only the
/// containers that are new or changed, `removed` the ones to drop, `network` the plan only
/// when it changed (`network_cleared` when the host no longer has one) or, to agents that ask
/// for it, `network_delta` (the same lease; only the routes and members that changed); a reply
/// with `generation == base` changes nothing.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatReply {
    /// Identifies the host's desired set; a new one whenever it changes. Increases.
    pub generation: u64,
    pub desired: Vec<DesiredContainer>,
    pub heartbeat_interval_ms: u64,
    /// Routes and cluster addresses, when the host networks its containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPlan>,
    /// Set when this reply is a delta against that generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
    /// In a delta: instances no longer desired on this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<InstanceRef>,
    /// In a delta: the host's network plan is gone (its last tenant left).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_cleared: bool,
    /// In a delta, to an agent that asked for network deltas: what changed in the network plan
    /// it holds (instead of `network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_delta: Option<NetworkDelta>,
    /// Instances of deleted clusters (`herd delete --purge-data`) whose data folders
    /// (`<disk>/herd/TENANT/CLUSTER/INSTANCE`) the agent removes once their container is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purge: Vec<InstanceRef>,
}

/// One container the host should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DesiredContainer {
    pub instance: InstanceRef,
    pub role: Role,
    pub image: String,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Arguments for the image's entrypoint; `None` keeps the image's default.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports published on the host's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortSpec>,
    /// Linux capabilities an admin granted the pool beyond herd's reduced default set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// The instance's rendered Hadoop configuration, mounted at `/etc/hadoop/conf`.
    // NB: shared: the orchestrator hands out the one config it rendered, not a copy per reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<HadoopConfig>)]
    pub hadoop: Option<std::sync::Arc<HadoopConfig>>,
    /// What the container is labelled with and reported back as [`Observed::config_hash`]:
    /// a hash of everything whose change restarts it (Hadoop files, image, resources,
    /// command, environment, ports), so that a rollout sees who runs the newest. Set by the
    /// orchestrator; `None` means the hash of `hadoop.files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_hash: Option<String>,
    /// A newer container (config, image or size) exists but it is not this instance's turn
    /// in the rollout yet: keep the container exactly as it runs (live files still apply).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_config: bool,
    /// Which placement of the instance this is: bumped each time the instance is placed on a
    /// host. The agent labels the container with it, so a container left from an earlier
    /// placement (its host was lost and the instance moved away and back meanwhile) is
    /// replaced, never adopted. 0 for instances placed before placements were counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub placement: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DesiredContainer {
    /// The hash the container is labelled with and reported back as [`Observed::config_hash`]
    /// once it runs this entry: [`DesiredContainer::rollout_hash`], else the hash of its
    /// Hadoop files; `None` without a Hadoop config.
    pub fn config_hash(&self) -> Option<String> {
        self.rollout_hash.clone().or_else(|| self.hadoop.as_ref().map(|h| h.files_hash()))
    }

    /// Writes it as JSON, the bytes `serde_json` writes for it, its Hadoop files from their
    /// shapes' pieces escaped once ([`HadoopConfig::write_json`]): what a reply carrying it
    /// is made of, a million times in a storm.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // NB: every field named, so a new one cannot be left out here; each written as its
        // `serde` attributes above say (a test compares the bytes with `serde_json`'s).
        let DesiredContainer { instance, role, image, cpu, memory, command, env, publish, cap_add, hadoop, rollout_hash, hold_config, placement } = self;
        fn field(out: &mut Vec<u8>, key: &[u8], value: &impl Serialize) -> serde_json::Result<()> {
            out.extend_from_slice(key);
            serde_json::to_writer(out, value)
        }
        field(out, b"{\"instance\":", instance)?;
        field(out, b",\"role\":", role)?;
        field(out, b",\"image\":", image)?;
        field(out, b",\"cpu\":", cpu)?;
        field(out, b",\"memory\":", memory)?;
        field(out, b",\"command\":", command)?;
        field(out, b",\"env\":", env)?;
        if !publish.is_empty() {
            field(out, b",\"publish\":", publish)?;
        }
        if !cap_add.is_empty() {
            field(out, b",\"cap_add\":", cap_add)?;
        }
        if let Some(h) = hadoop {
            out.extend_from_slice(b",\"hadoop\":");
            h.write_json(out)?;
        }
        if let Some(r) = rollout_hash {
            field(out, b",\"rollout_hash\":", r)?;
        }
        if *hold_config {
            out.extend_from_slice(b",\"hold_config\":true");
        }
        if !is_zero(placement) {
            field(out, b",\"placement\":", placement)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// A container of `instance` (a `role`) running `image` with `cpu` and `memory`, and
    /// nothing else: no command, environment, ports, capabilities or Hadoop config, placement 0.
    pub fn plain(instance: InstanceRef, role: Role, image: impl Into<String>, cpu: Cpu, memory: Memory) -> Self {
        DesiredContainer {
            instance,
            role,
            image: image.into(),
            cpu,
            memory,
            command: None,
            env: BTreeMap::new(),
            publish: vec![],
            cap_add: vec![],
            hadoop: None,
            rollout_hash: None,
            hold_config: false,
            placement: 0,
        }
    }
}

/// An instance with its placement, desired next to observed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceStatus {
    pub instance: InstanceRef,
    pub pool: Role,
    /// The host it is placed on; `None` while pending.
    pub host: Option<String>,
    /// That host's rack label, when it has one (`herd status -o wide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    pub cpu: Cpu,
    pub memory: Memory,
    /// Why it is not placed, when pending.
    #[serde(default)]
    pub pending: Option<String>,
    /// What the host's agent last reported.
    #[serde(default)]
    pub observed: Option<Observed>,
    /// How HDFS or YARN sees this instance, from its master's last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hadoop: Option<InstanceHadoop>,
    /// Set while it leaves the cluster (a DataNode decommissioning, a NodeManager draining):
    /// its phase, blocks still to move and what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaving: Option<crate::lifecycle::LeavingStatus>,
    /// Set while the instance's host is `lost`: milliseconds since its last heartbeat. What
    /// it observed then is kept in `observed`, with the state `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_lost_ms_ago: Option<u64>,
}

/// An instance as its master sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceHadoop {
    /// DataNode: its HDFS admin state (`In Service`, `Decommission In Progress`,
    /// `Decommissioned`, ...), `not registered` when the NameNode does not list it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs_state: Option<String>,
    /// DataNode: listed live (true) or dead (false) by the NameNode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// DataNode: seconds since its last heartbeat to the NameNode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_s: Option<i64>,
    /// DataNode: block replicas it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
    /// NodeManager: its YARN state (RUNNING, LOST, DECOMMISSIONING, ...), `not registered`
    /// when the ResourceManager does not list it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yarn_state: Option<String>,
    /// NodeManager: YARN containers running on it, as the ResourceManager counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<u64>,
    /// Master: `up`, or why its health could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Config rollout: `waiting` (new config not yet released to it), `restarting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

impl InstanceHadoop {
    /// A DataNode the NameNode lists live and `In Service`.
    pub fn in_hdfs(&self) -> bool {
        self.live == Some(true) && self.hdfs_state.as_deref() == Some("In Service")
    }

    /// A NodeManager the ResourceManager lists `RUNNING`.
    pub fn in_yarn(&self) -> bool {
        self.yarn_state.as_deref() == Some("RUNNING")
    }
}

/// HDFS as a whole, from the NameNode's last report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HdfsSummary {
    pub live_datanodes: u64,
    pub dead_datanodes: u64,
    pub decommissioning_datanodes: u64,
    pub capacity_used: u64,
    pub capacity_total: u64,
    pub blocks_total: u64,
    pub under_replicated_blocks: u64,
    pub missing_blocks: u64,
    pub safe_mode: bool,
}

/// YARN as a whole, from the ResourceManager's last report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct YarnSummary {
    pub active_nodemanagers: u64,
    pub lost_nodemanagers: u64,
    pub unhealthy_nodemanagers: u64,
    pub decommissioning_nodemanagers: u64,
    pub total_mb: u64,
    pub total_vcores: u64,
    pub apps_running: u64,
}

/// Something about a cluster an operator or tenant should know, e.g. `HdfsDegraded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Condition {
    /// A stable CamelCase name: `HdfsDegraded`, `SafeMode`, `UnderReplicated`,
    /// `MissingBlocks`, `NameNodeUnreadable`, `ResourceManagerUnreadable`, `YarnDegraded`,
    /// `ReplicationAboveDataNodes`, `ConfigRollout`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A cluster: its spec, its generation and its instances.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub tenant: String,
    pub name: String,
    /// Increases with every change to the spec.
    pub generation: u64,
    pub spec: ClusterSpec,
    pub instances: Vec<InstanceStatus>,
    /// HDFS, when the cluster has a NameNode herd runs and it has reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs: Option<HdfsSummary>,
    /// YARN, when the cluster has a ResourceManager herd runs and it has reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yarn: Option<YarnSummary>,
    /// What needs attention; empty when all is well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per pool, counts over every instance (also those on other pages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSummary>,
    /// `instances` is one page: ask again with `?after=` this cursor for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_next: Option<String>,
}

/// One pool's instances, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PoolSummary {
    pub pool: Role,
    /// Replicas the spec asks for.
    pub desired: u32,
    /// Instances that exist (leaving ones included).
    pub instances: u32,
    /// Placed and observed running.
    pub running: u32,
    /// Waiting for a host.
    pub pending: u32,
    /// Decommissioning or draining.
    pub leaving: u32,
    /// On a lost host: nobody knows.
    pub unknown: u32,
}

impl PoolSummary {
    fn empty(pool: Role, desired: u32) -> Self {
        PoolSummary { pool, desired, instances: 0, running: 0, pending: 0, leaving: 0, unknown: 0 }
    }

    /// The pools of `instances`, in role order, with the replicas `spec` asks for.
    pub fn of(spec: &ClusterSpec, instances: &[InstanceStatus]) -> Vec<PoolSummary> {
        PoolSummary::count(
            spec,
            instances.iter().map(|i| Counted {
                pool: i.pool,
                state: i.observed.as_ref().map(|o| o.state),
                placed: i.host.is_some(),
                leaving: i.leaving.is_some(),
            }),
        )
    }

    /// [`PoolSummary::of`] from what it counts of each instance (an answer holding one page
    /// of a cluster's instances counts them all without making each one's status).
    pub fn count(spec: &ClusterSpec, instances: impl IntoIterator<Item = Counted>) -> Vec<PoolSummary> {
        let mut pools: BTreeMap<Role, PoolSummary> = spec
            .pools
            .iter()
            .map(|(role, p)| (*role, PoolSummary::empty(*role, p.replicas.0)))
            .collect();
        for i in instances {
            let p = pools.entry(i.pool).or_insert_with(|| PoolSummary::empty(i.pool, 0));
            p.instances += 1;
            match i.state {
                Some(ContainerState::Running) => p.running += 1,
                Some(ContainerState::Unknown) => p.unknown += 1,
                _ => {}
            }
            p.pending += u32::from(!i.placed);
            p.leaving += u32::from(i.leaving);
        }
        pools.into_values().collect()
    }
}

/// What [`PoolSummary::count`] takes of an instance.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    pub pool: Role,
    /// Its observed state, as its status shows it.
    pub state: Option<ContainerState>,
    pub placed: bool,
    pub leaving: bool,
}

impl ClusterStatus {
    /// Instances that run on their placed host.
    pub fn running(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.observed.as_ref().is_some_and(|o| o.state == ContainerState::Running))
            .count()
    }
}

/// A host with what is placed on it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostStatus {
    pub info: HostInfo,
    /// `ready` while heartbeats arrive, `lost` after three missed ones.
    pub state: HostState,
    /// Milliseconds since the last heartbeat.
    pub last_heartbeat_ms_ago: Option<u64>,
    pub allocated_cpu: Cpu,
    pub allocated_memory: Memory,
    pub instances: u32,
    /// Problems the agent last reported (e.g. a full log disk); empty when all is well.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// Cordoned (`herd hosts cordon`, or draining): nothing new is placed here.
    #[serde(default)]
    pub cordoned: bool,
    /// Set while `herd hosts drain` empties the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Ready,
    Lost,
}

/// How far a host's drain is: instances still on it, and what each waits for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrainStatus {
    /// When the drain was asked for (ms since the epoch).
    pub since_ms: u64,
    /// Instances still placed on the host, with what each waits for
    /// (e.g. `t/c/datanode-2: decommissioning`).
    pub remaining: Vec<String>,
    /// Instances the drain will not move, with why (a NameNode's metadata lives on the host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stays: Vec<String>,
    /// Nothing left to move: the host can be maintained or deleted (`herd hosts delete`).
    pub done: bool,
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub name: String,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub quota: Quota,
    /// What the tenant's clusters ask for now.
    #[serde(default)]
    pub usage: Resources,
    /// What the tenant's placed instances hold now.
    #[serde(default)]
    pub used: Resources,
    /// The part of `used` above `quota.guaranteed` (all of it without a guarantee): idle
    /// capacity lent to the tenant, which its NodeManagers give back when a tenant asks
    /// for its guarantee.
    #[serde(default)]
    pub borrowed: Resources,
}

/// `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    pub name: String,
    /// The tenant's limits, or `"unlimited"`. Without it the tenant gets the orchestrator's
    /// default quota (`--default-tenant-quota`), never none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<TenantQuota>,
}

/// A new tenant's quota: limits, or explicitly none.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TenantQuota {
    /// `"unlimited"`: no limit at all (an admin's explicit choice).
    Unlimited(Unlimited),
    Limits(Quota),
}

/// The word `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    Unlimited,
}

// NB: by hand rather than `untagged`, so an error inside the limits names its field and
// anything else says what is expected.
impl<'de> Deserialize<'de> for TenantQuota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = TenantQuota;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quota (cpu, memory, disk, guaranteed) or \"unlimited\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TenantQuota, E> {
                match s {
                    "unlimited" => Ok(TenantQuota::Unlimited(Unlimited::Unlimited)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<TenantQuota, A::Error> {
                Quota::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(TenantQuota::Limits)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `PATCH /v1/tenants/{t}/clusters/{c}/pools/{pool}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    #[schema(value_type = u32, maximum = 10000)]
    pub replicas: Replicas,
    /// Remove DataNodes even below `hdfs.replication` live ones, or before their
    /// decommission completes (`herd scale --force`): audited as `cluster.scale.force`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// The problem type of a request that is valid (as the OpenAPI document describes it) but
/// refused by the current state (a tenant not created yet, a pool the cluster lacks, a
/// scale-down HDFS cannot absorb), the tenant's quota, or the orchestrator's limits and
/// configuration. Every other problem is `about:blank`, its `code` saying which.
pub const REFUSED_BY_STATE: &str = "urn:herd:problem:refused-by-state";

/// The problem type of a request whose fields are each valid but contradict one another,
/// by rules a JSON schema cannot state (listed in the OpenAPI document's description).
pub const INCONSISTENT: &str = "urn:herd:problem:inconsistent";

/// `GET /v1/leader`: which orchestrator of a control plane leads (several share an etcd
/// store; one leads, the others redirect to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaderInfo {
    /// `leader` or `follower`.
    pub role: String,
    /// The URL of the orchestrator that answered.
    #[serde(rename = "self")]
    pub me: String,
    /// The leader's URL; null while none is known (an election under way, etcd without a quorum).
    pub leader: Option<String>,
}

/// RFC 9457 problem details, the one error body of the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: [`REFUSED_BY_STATE`] for a valid request the current
    /// state, a quota or a limit refuses (the same request may succeed later),
    /// [`INCONSISTENT`] for fields that contradict one another, else `about:blank`; `code`
    /// says more.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// A stable, machine-readable error code, e.g. `invalid_spec`.
    pub code: String,
    /// Every offending field, when the request had any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// A tenant's limits. `None` means unlimited for that resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// The most CPU all the tenant's containers may ask for together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// The most memory all the tenant's containers may ask for together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// The most data-disk space all the tenant's containers may ask for together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Memory>,
    /// The share the scheduler guarantees the tenant: always placeable (the sum over tenants
    /// must fit the fleet), taken back from tenants borrowing above theirs when needed.
    /// Above it the tenant borrows idle capacity up to the maximum, with NodeManagers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guaranteed: Option<Resources>,
}

/// `PUT /v1/tenants/{tenant}/quota`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQuota {
    pub quota: Quota,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything.
    Admin,
    /// The agent protocol only (register, heartbeat).
    Agent,
    /// One tenant's clusters and its own tenant record.
    Tenant,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub scope: Scope,
    /// The tenant, for `scope: tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// For `scope: agent`: the one host the token may speak for; any host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Who or what holds the token, for people reading the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub scope: Scope,
    #[serde(default)]
    pub tenant: Option<String>,
    /// The one host an agent token may speak for; any host when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// Answer to `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub token: TokenInfo,
    /// The bearer secret; herd stores only its hash.
    pub secret: String,
}

/// One page of a list, oldest key first; pass `next` as `?after=` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One change, as the audit trail records it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// The token that made the change: `admin:ID`, `tenant:NAME:ID`.
    pub actor: String,
    /// E.g. `cluster.apply`, `cluster.scale`, `tenant.quota`, `token.revoke`.
    pub action: String,
    /// E.g. `acme/prod`.
    pub resource: String,
    #[serde(default)]
    pub before_generation: Option<u64>,
    #[serde(default)]
    pub after_generation: Option<u64>,
    /// What the change risks or why, when it says (e.g. a forced scale-down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an agent holds as its host's desired set, built from heartbeat and watch replies
/// (full or delta; see [`HeartbeatReply`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredSet {
    /// The generation held; `None` before the first reply.
    pub generation: Option<u64>,
    pub containers: BTreeMap<InstanceRef, DesiredContainer>,
    pub network: Option<NetworkPlan>,
}

/// A delta against a generation the agent does not hold: ask again with what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a delta against generation {base}, but generation {held:?} is held")]
pub struct StaleDelta {
    pub base: u64,
    pub held: Option<u64>,
}

/// What [`DesiredSet::take`] changed in the set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// The reply was the full set: every container may have changed.
    pub whole: bool,
    /// In a delta: the containers it put (new or changed), in the reply's order.
    pub put: Vec<InstanceRef>,
    /// In a delta: the instances it removed.
    pub removed: Vec<InstanceRef>,
}

impl DesiredSet {
    /// Takes in a reply; returns whether the set changed. A reply older than the held set
    /// (a heartbeat answered before a watch that was answered first) is ignored.
    pub fn apply(&mut self, r: &HeartbeatReply) -> Result<bool, StaleDelta> {
        if self.is_old(r) {
            return Ok(false);
        }
        self.take(r.clone()).map(|t| t.is_some())
    }

    /// Whether `r` is no newer than the set held (it changes nothing).
    fn is_old(&self, r: &HeartbeatReply) -> bool {
        self.generation.is_some_and(|g| r.generation <= g)
    }

    /// [`DesiredSet::apply`], moving the reply's containers in instead of copying them, and
    /// saying what changed (`None`: nothing, the reply was old): an agent of a busy host then
    /// looks at the containers a delta carried, not at its whole set again.
    pub fn take(&mut self, r: HeartbeatReply) -> Result<Option<Taken>, StaleDelta> {
        if self.is_old(&r) {
            return Ok(None);
        }
        let HeartbeatReply { generation, desired, network, base, removed, network_cleared, network_delta, .. } = r;
        let taken = match base {
            None => {
                self.containers = desired.into_iter().map(|d| (d.instance.clone(), d)).collect();
                self.network = network;
                Taken { whole: true, ..Taken::default() }
            }
            Some(base) if Some(base) == self.generation => {
                // A plan delta needs the plan it was made against: checked before anything moves.
                if network_delta.is_some() && network.is_none() && !network_cleared && self.network.is_none() {
                    return Err(StaleDelta { base, held: self.generation });
                }
                for i in &removed {
                    self.containers.remove(i);
                }
                let mut put = Vec::with_capacity(desired.len());
                for d in desired {
                    put.push(d.instance.clone());
                    self.containers.insert(d.instance.clone(), d);
                }
                if network_cleared {
                    self.network = None;
                } else if let Some(n) = network {
                    self.network = Some(n);
                } else if let (Some(d), Some(n)) = (&network_delta, &mut self.network) {
                    n.apply(d);
                }
                Taken { whole: false, put, removed }
            }
            Some(base) => return Err(StaleDelta { base, held: self.generation }),
        };
        self.generation = Some(generation);
        Ok(Some(taken))
    }

    /// The containers, in instance order.
    pub fn desired(&self) -> Vec<DesiredContainer> {
        self.containers.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, image: &str) -> DesiredContainer {
        let instance = InstanceRef { tenant: "t".into(), cluster: "c".into(), name: name.into() };
        DesiredContainer { placement: 1, ..DesiredContainer::plain(instance, Role::Datanode, image, Cpu(100), Memory(1 << 28)) }
    }

    fn reply(generation: u64, base: Option<u64>, desired: Vec<DesiredContainer>, removed: Vec<&str>) -> HeartbeatReply {
        HeartbeatReply {
            generation,
            desired,
            heartbeat_interval_ms: 3000,
            network: None,
            base,
            removed: removed.into_iter().map(|n| InstanceRef { tenant: "t".into(), cluster: "c".into(), name: n.into() }).collect(),
            network_cleared: false,
            network_delta: None,
            purge: vec![],
        }
    }

    #[test]
    fn a_container_written_as_json_is_the_bytes_serde_json_writes() {
        use crate::hadoop::{HadoopConfig, Pieces, Text};
        use std::sync::Arc;
        // Every character JSON escapes (and some it does not), at the ends and between.
        let odd: String = (0u8..0x21).map(char::from).chain("\"\\/\u{7f}é€😀 <x a=\"1\">\n".chars()).collect();
        let shape: Arc<Pieces> = Arc::new(vec![odd.clone(), format!("mid{odd}"), String::new(), odd.clone()].into());
        let plain = container("datanode-0", "herd/datanode:testbed");
        let mut rich = container("datanode-1", &format!("img{odd}"));
        rich.command = Some(vec!["sh".into(), odd.clone(), String::new()]);
        rich.env = [("HERD_X".to_string(), odd.clone()), (odd.clone(), "v".to_string())].into();
        rich.publish = vec![crate::network::PortSpec { port: 9870, host_port: Some(19870), protocol: Default::default() }];
        rich.cap_add = vec!["NET_ADMIN".into()];
        rich.hadoop = Some(Arc::new(HadoopConfig {
            files: [
                ("core-site.xml".to_string(), Text::cut(shape.clone(), format!("dn-1{odd}").into())),
                (format!("x{odd}"), Text::from(odd.clone())),
                ("empty".to_string(), Text::default()),
            ]
            .into(),
            live_files: [("dfs.hosts".to_string(), odd.clone())].into(),
            refresh: vec![vec!["hdfs".into(), odd.clone()]],
        }));
        rich.rollout_hash = Some("00ff".into());
        rich.hold_config = true;
        let mut bare_config = container("datanode-2", "i");
        bare_config.hadoop = Some(Arc::new(HadoopConfig::default()));
        bare_config.placement = 0;
        for c in [plain, rich, bare_config] {
            let mut out = Vec::new();
            c.write_json(&mut out).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), serde_json::to_string(&c).unwrap());
            // Written a second time, from the pieces escaped the first.
            let mut again = Vec::new();
            c.write_json(&mut again).unwrap();
            assert_eq!(out, again);
        }
    }

    fn names(v: &[InstanceRef]) -> Vec<&str> {
        v.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn a_taken_reply_says_what_it_changed_and_leaves_the_set_as_applying_it_does() {
        let (mut taking, mut applying) = (DesiredSet::default(), DesiredSet::default());
        let full = reply(5, None, vec![container("datanode-0", "a"), container("datanode-1", "a")], vec![]);
        assert_eq!(applying.apply(&full), Ok(true));
        assert_eq!(taking.take(full.clone()), Ok(Some(Taken { whole: true, ..Taken::default() })));
        assert_eq!(taking, applying);
        // A delta: one changed, one new, one removed.
        let delta = reply(7, Some(5), vec![container("datanode-1", "b"), container("datanode-2", "a")], vec!["datanode-0"]);
        assert_eq!(applying.apply(&delta), Ok(true));
        let taken = taking.take(delta.clone()).unwrap().unwrap();
        assert!(!taken.whole);
        assert_eq!((names(&taken.put), names(&taken.removed)), (vec!["datanode-1", "datanode-2"], vec!["datanode-0"]));
        assert_eq!(taking, applying);
        assert_eq!(taking.containers.keys().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["datanode-1", "datanode-2"]);
        assert_eq!(taking.containers.values().next().map(|d| d.image.as_str()), Some("b"));
        // Old replies change nothing; a delta against another generation is refused unapplied.
        assert_eq!(taking.take(delta), Ok(None));
        assert_eq!(taking.take(full), Ok(None));
        let stale = reply(9, Some(6), vec![container("datanode-3", "a")], vec![]);
        assert_eq!(taking.take(stale), Err(StaleDelta { base: 6, held: Some(7) }));
        assert_eq!(taking, applying);
    }
}
