//! herd's Hadoop knowledge, as pure functions (no I/O, no async) shared by the orchestrator,
//! the agent and, later, the Kubernetes operator mode.
//!
//! # Layout
//! - [`render`]: a cluster, its placements and hosts in; each instance's `core-site.xml`,
//!   `hdfs-site.xml`, `yarn-site.xml`, topology table and include/exclude files out.
//! - [`health`]: parsers for the NameNode's `/jmx` and the ResourceManager's `/ws/v1/cluster/*`
//!   answers, and the join of those reports with a cluster's instances for `herd status`.
//! - [`lifecycle`]: which workers leave on a scale-down, and the decommission/drain state
//!   machine that takes them out without losing HDFS data or killing YARN containers.

pub mod health;
pub mod lifecycle;
pub mod render;
