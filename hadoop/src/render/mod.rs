//! The one Hadoop config renderer. See [`render`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use herd_api::hadoop::HadoopConfig;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::{ClusterSpec, Role};

/// One instance of the cluster, where it is placed and what its host gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub instance: InstanceRef,
    pub role: Role,
    /// The host it is placed on; `None` while pending.
    pub host: Option<String>,
    /// That host's rack label (`--rack`), if any.
    pub rack: Option<String>,
    /// Its container address, once observed.
    pub ip: Option<Ipv4Addr>,
    /// How many data folders the agent mounts (`/hadoop/dfs/data0` ..): one per data disk
    /// of its host, for roles that keep data.
    pub data_dirs: usize,
    pub cpu: Cpu,
    pub memory: Memory,
}

/// Everything the renderer needs about one cluster.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    pub spec: &'a ClusterSpec,
    pub members: &'a [Member],
    /// DataNodes being decommissioned and NodeManagers being drained: they go in the
    /// exclude files.
    pub leaving: BTreeSet<InstanceRef>,
}

/// Why an instance's config could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("instance {0} is not a member of the cluster")]
    NotAMember(InstanceRef),
}

/// Renders the configuration of `instance`.
pub fn render(_cluster: &ClusterView<'_>, instance: &InstanceRef) -> Result<HadoopConfig, RenderError> {
    Err(RenderError::NotAMember(instance.clone()))
}
