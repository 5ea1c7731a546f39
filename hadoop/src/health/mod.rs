//! Health from Hadoop itself: parsers for the masters' answers, and their join with a
//! cluster's instances.
//!
//! # Layout
//! - [`namenode`]: the NameNode's `/jmx` answers (`NameNodeInfo`, `FSNamesystemState`,
//!   `FSNamesystem`) into a [`NameNodeHealth`](herd_api::hadoop::NameNodeHealth).
//! - [`resourcemanager`]: `/ws/v1/cluster/{info,metrics,nodes}` into a
//!   [`ResourceManagerHealth`](herd_api::hadoop::ResourceManagerHealth).
//! - [`shape`]: an answer's structure as dotted paths and JSON types, to hold a test double
//!   to the real captures under `tests/fixtures/hadoop/`.
//! - [`join`]: those reports against a cluster's instances: per-instance HDFS/YARN state,
//!   summaries and conditions for `herd status`.
//!
//! The parsers are proven on real captured answers (`tests/fixtures/hadoop/SOURCES`). They
//! never panic: an answer that cannot be read becomes a report whose `error` names what was
//! wrong, so a broken master shows as a condition, not as a crashed poller.

pub mod join;
pub mod namenode;
pub mod resourcemanager;
pub mod shape;

mod json;

#[cfg(test)]
mod fixtures;

pub use json::HealthError;

/// `Result` with this module's error.
pub type Result<T, E = HealthError> = std::result::Result<T, E>;
