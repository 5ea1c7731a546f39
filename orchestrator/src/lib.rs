//! herd's control plane.
//!
//! # Layout
//! - [`store`]: the control plane's intent (hosts, tenants, clusters, instances, observed state,
//!   tokens, audit trail, idempotent answers) behind one typed transaction trait, `store::Tx`,
//!   with two implementations: embedded SQLite (the default) and etcd.
//! - [`reconciler`]: pure `plan(spec, existing)`: which instances to add, resize, remove.
//! - [`lifecycle`]: which pools shrink through DataNode decommission / NodeManager drain, and
//!   what a new replica count of one changes (pure); phases are stepped on every heartbeat.
//! - [`scheduler`]: pure placement over a snapshot of hosts (rules, best-fit scoring, the
//!   first-fit baseline) and tenants' guarantees (who borrows, what to take back).
//! - [`placement`]: the scheduler inside a transaction: snapshot from store and hot state,
//!   guarantees first, borrowed NodeManagers drained for them.
//! - [`hadoop`]: each instance's rendered Hadoop config, rolled out one restart at a time,
//!   and each cluster's HDFS/YARN health as its masters report it.
//! - [`network`]: the cluster CIDR, host subnet leases and each agent's route/address table.
//! - [`state`]: the operations (apply, scale, delete, register, heartbeat), one transaction each.
//! - [`tenancy`]: tenants, quotas and tokens; the first admin token.
//! - [`auth`]: bearer tokens and who may see what; [`quota`]: the pure quota check.
//! - [`identity`]: what an agent may claim for its host (addresses, log endpoint).
//! - [`http`]: the axum routes, authentication, and the one problem+json error mapping;
//!   `http::front` answers by role (the leader serves, a follower redirects to it).
//! - [`leader`]: leader election through an etcd lease, fencing every write (`--store etcd`).
//! - [`openapi`]: the OpenAPI document, generated from the routes and wire types.
//! - [`logs`]: proxying an instance's logs from the agent that holds it.
//! - [`config`]: typed configuration from flags, environment and file.
//! - [`backup`]: online backups of the SQLite store (on demand and scheduled) and restoring one.
//! - [`limits`]: admission caps, the default tenant quota, the request rate per token.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.

pub mod auth;
pub mod backup;
pub mod clusters;
pub mod config;
pub mod delta;
pub mod desired;
pub mod error;
pub mod fleet;
pub mod hadoop;
pub mod hosts;
pub mod hot;
pub mod http;
pub mod identity;
pub mod leader;
pub mod lifecycle;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod placement;
pub mod quota;
pub mod network;
pub mod netview;
pub mod reconciler;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod tenancy;
/// TLS for the API (see the `herd-tls` crate).
pub use herd_tls as tls;

pub use error::{Error, Result};

/// The hash map of the orchestrator's in-memory state keyed by names (instances, hosts,
/// pools, clusters): foldhash instead of std's SipHash-1-3, which was a tenth of the
/// orchestrator's CPU while a million instances were applied. Seeded per process and per
/// map. `Map::default()`, not `new()`.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set alike ([`Map`]).
pub type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
