//! herd's shared vocabulary: the cluster spec users write, the wire types the orchestrator,
//! agents and CLI exchange, and their validation. Pure: no I/O (but [`daemon_log`]'s
//! stderr writer), no async.
//!
//! # Layout
//! - [`spec`]: `ClusterSpec` and its pools, as written in YAML or JSON.
//! - [`quantity`]: CPU (`500m`) and memory (`512Mi`) quantities.
//! - [`validate`]: semantic checks that need the whole spec; every error names its field.
//! - [`yaml`]: the one place YAML is parsed, so errors carry the field path and line.
//! - [`wire`]: agent protocol (register, heartbeat) and the status views of the HTTP API.
//! - [`network`]: subnet leases, routes, cluster addresses and published ports.
//! - [`logs`]: the checked parameters of a log read (follow, since, tail, stream).
//! - [`record`]: the one-line format of captured log records and its reversible escaping.
//! - [`hadoop`]: Hadoop-level types: config files and overrides, rendered config on the wire,
//!   HDFS and YARN health as read from the masters.
//! - [`lifecycle`]: phases of DataNodes and NodeManagers leaving a pool (decommission,
//!   drain), their per-pool settings, status and conditions.
//! - [`hash`]: the one stable hash of herd's values (container specs, rendered config).
//! - [`daemon_log`]: the daemons' own log writer, which never fails the process.
//! - [`names`]: DNS-label names and the names derived from them (instances, containers).
//! - [`orchestrators`]: the `URL[,URL...]` list of a control plane's orchestrators, and where
//!   a follower's redirect may send a client (the leader's origin, never https to http).
//! - `schema` (feature `schema`): JSON schemas of the spec types, for operator mode's
//!   `HadoopCluster` custom resource.

pub mod daemon_log;
pub mod hadoop;
pub mod hash;
pub mod lifecycle;
pub mod logs;
pub mod names;
pub mod network;
pub mod orchestrators;
pub mod quantity;
pub mod record;
#[cfg(feature = "schema")]
pub mod schema;
pub mod spec;
pub mod validate;
pub mod wire;
pub mod yaml;

pub use spec::{ClusterSpec, PoolSpec, Role};
pub use validate::{FieldError, SpecError};
