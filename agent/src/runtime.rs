//! The container runtime as the agent needs it, behind a trait so the converge logic is
//! tested without Docker; [`crate::docker`] is the real backend.

use std::collections::BTreeMap;
use std::future::Future;

use futures::stream::BoxStream;

use herd_api::names::InstanceRef;
use herd_api::wire::ContainerState;

/// Labels herd puts on every container it creates; the agent finds its own by them.
pub mod labels {
    pub const MANAGED: &str = "herd.managed";
    pub const HOST: &str = "herd.host";
    pub const TENANT: &str = "herd.tenant";
    pub const CLUSTER: &str = "herd.cluster";
    pub const POOL: &str = "herd.pool";
    pub const INSTANCE: &str = "herd.instance";
    /// Hash of the full container config; a different hash means recreate.
    pub const SPEC_HASH: &str = "herd.spec-hash";
    /// Which placement of the instance the container was created for (fencing).
    pub const PLACEMENT: &str = "herd.placement";
    /// Hash of the Hadoop config files the container was created with
    /// (`HadoopConfig::files_hash`), reported so the orchestrator can roll config out.
    pub const CONFIG_HASH: &str = "herd.config-hash";
}

/// A herd container as found on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub instance: InstanceRef,
    pub spec_hash: String,
    /// The `herd.config-hash` label, for containers that run a rendered Hadoop config.
    pub config_hash: Option<String>,
    pub state: ContainerState,
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContainerConfig {
    pub name: String,
    pub hostname: String,
    pub image: String,
    /// Arguments for the image's entrypoint; `None` keeps the image's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// CPU limit in nano-CPUs (1e9 = one core).
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// `host_path:container_path[:ro]`.
    pub binds: Vec<String>,
    /// Capabilities an admin granted beyond [`DROPPED_CAPABILITIES`]'s reduced set. NB: left
    /// out of the hash when empty, so containers made before it existed keep their hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
}

/// Capabilities every container runs without (besides `no-new-privileges`), unless its pool's
/// `capabilities.add` (admin only) grants one back: raw sockets (forged packets), network and
/// system administration, kernel modules, tracing other processes, device nodes.
pub const DROPPED_CAPABILITIES: [&str; 7] = ["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "MKNOD", "AUDIT_WRITE"];

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {image} is not on this host")]
    ImageMissing { image: String },
    #[error("{op} {target} failed: {message}")]
    Call { op: &'static str, target: String, message: String },
    /// The image is being pulled, or its pull failed and waits for its retry: what to report.
    #[error("{0}")]
    Pull(String),
}

/// The container operations the agent uses. Teardown is idempotent: not found is success.
pub trait Runtime: Send + Sync + 'static {
    /// Every herd container labelled with `host`, running or not.
    fn list(&self, host: &str) -> impl Future<Output = Result<Vec<Container>, RuntimeError>> + Send;
    /// Creates and starts a container; returns its id.
    fn create_and_start(&self, config: &ContainerConfig) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Stops (with a grace period for the daemon to shut down cleanly) and removes.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The PID of a running container's init process (its network namespace is that
    /// process's); `None` when it is not running.
    fn pid(&self, id: &str) -> impl Future<Output = Result<Option<u32>, RuntimeError>> + Send;
    /// Ids of `host`'s herd containers as they start (or restart), until the stream ends.
    fn starts(&self, host: &str) -> BoxStream<'static, Result<String, RuntimeError>>;
    /// Runs `cmd` inside a running container and waits for it (e.g. `hdfs dfsadmin
    /// -refreshNodes` in a NameNode's container).
    fn exec(&self, id: &str, cmd: &[String]) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;
    /// Pulls an image (with the registry's credentials, if any): progress until it is there.
    fn pull(&self, reference: &crate::pull::Reference, auth: Option<&crate::pull::RegistryAuth>) -> BoxStream<'static, Result<crate::pull::Progress, RuntimeError>>;
}

impl<R: Runtime> crate::pull::Puller for R {
    fn pull(&self, reference: &crate::pull::Reference, auth: Option<&crate::pull::RegistryAuth>) -> BoxStream<'static, Result<crate::pull::Progress, RuntimeError>> {
        Runtime::pull(self, reference, auth)
    }
}

/// How a command run in a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// Its stdout and stderr, interleaved, at most a few KiB (the tail).
    pub output: String,
}
