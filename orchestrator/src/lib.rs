//! herd's control plane.
//!
//! # Layout
//! - [`store`]: the embedded SQLite store (hosts, tenants, clusters, instances, observed state).
//! - [`reconciler`]: pure `plan(spec, existing)`: which instances to add, resize, remove.
//! - [`scheduler`]: pure placement over a snapshot of hosts.
//! - [`state`]: the operations (apply, scale, delete, register, heartbeat), one transaction each.
//! - [`http`]: the axum routes and the one problem+json error mapping.
//! - [`logs`]: proxying an instance's logs from the agent that holds it.
//! - [`config`]: typed configuration from flags, environment and file.

pub mod config;
pub mod error;
pub mod http;
pub mod logs;
pub mod reconciler;
pub mod scheduler;
pub mod state;
pub mod store;

pub use error::{Error, Result};
