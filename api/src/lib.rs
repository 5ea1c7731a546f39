//! herd's shared vocabulary: the cluster spec users write, the wire types the orchestrator,
//! agents and CLI exchange, and their validation. Pure: no I/O, no async.
//!
//! # Layout
//! - [`spec`]: `ClusterSpec` and its pools, as written in YAML or JSON.
//! - [`quantity`]: CPU (`500m`) and memory (`512Mi`) quantities.
//! - [`validate`]: semantic checks that need the whole spec; every error names its field.
//! - [`yaml`]: the one place YAML is parsed, so errors carry the field path and line.
//! - [`wire`]: agent protocol (register, heartbeat) and the status views of the HTTP API.
//! - [`network`]: subnet leases, routes, cluster addresses and published ports.
//! - [`names`]: DNS-label names and the names derived from them (instances, containers).

pub mod names;
pub mod network;
pub mod quantity;
pub mod spec;
pub mod validate;
pub mod wire;
pub mod yaml;

pub use spec::{ClusterSpec, PoolSpec, Role};
pub use validate::{FieldError, SpecError};
