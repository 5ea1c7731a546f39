//! How workers leave a cluster without losing HDFS data or killing YARN containers: a
//! DataNode scale-down is a decommission through the NameNode, a NodeManager scale-down a
//! graceful drain through the ResourceManager.
//!
//! ```text
//!  DataNode
//!    in service --select_leaving--> Decommissioning --NN: Decommissioned--> Decommissioned --+
//!        ^                          excluded, refreshed;                     waits for HDFS   |
//!        |                          dead: DecommissionBlocked                      |          | NN still says
//!        |                          slow: DecommissionStalled                      |          | Decommissioned,
//!        |                                 |                                       |          | MissingBlocks 0,
//!        +---------- recommission ---------+---------------------------------------+          | none In Progress
//!                    (scale up)                                                               |
//!  NodeManager                                                                                v
//!    in service --select_leaving--> Draining --RM: DECOMMISSIONED, or T passed--> Drained --> Removing
//!        ^                          excluded, refresh -g T                           |        stop and remove
//!        |                                 |                                         |        the container;
//!        +---------- recommission ---------+-----------------------------------------+        still excluded
//!                                                                                             |
//!                                                                                             | container gone
//!                                                                                             v
//!                                                                           done: forgotten, out of the exclude
//! ```
//!
//! One [`step`] moves each instance at most one phase, from the health it is given; the
//! caller persists the returned phases *before* acting on them (rendering the exclude files,
//! removing containers), and calls [`step`] again on the next report (at once if
//! [`Step::changed`]). Nothing here reads a clock, Docker or a store, so the orchestrator and
//! the operator mode drive the same code.
//!
//! Invariants, each tested:
//! - A DataNode enters [`Phase::Removing`](herd_api::lifecycle::Phase::Removing) (not forced) only in a step whose NameNode report
//!   is fresh, error-free and lists it `Decommissioned`, with `MissingBlocks == 0` and no
//!   DataNode `Decommission In Progress`.
//! - Stale or errored health moves nothing towards removal.
//! - `step` is a pure function of its input: the same input gives the same output, and a
//!   restart that reloads the stored phases resumes where it was.
//!
//! `--force` (a forced [`Phase::Decommissioning`](herd_api::lifecycle::Phase::Decommissioning)) lets DataNodes go before their
//! decommission completes, which HDFS cannot finish with fewer DataNodes than
//! `dfs.replication` or with a dead DataNode: still one at a time, each only once the
//! NameNode has applied the exclude file, reports no missing blocks and no replication in
//! flight, and either no longer counts the DataNode (dead or unknown) or has started its
//! decommission.

mod select;
mod step;

#[cfg(test)]
mod fixtures;

pub use select::{Member, ScaleRequest, SelectError, Selection, leaving_phase, select_leaving};
pub use step::{Leaving, MasterReport, Step, StepInput, exclude_set, step};

use herd_api::hadoop::{DataNodeReport, NameNodeHealth, NodeManagerReport, ResourceManagerHealth};
use herd_api::names::InstanceRef;

/// NameNode admin states (`DatanodeInfo.AdminStates` as JMX spells them).
mod admin_state {
    pub const IN_SERVICE: &str = "In Service";
    pub const DECOMMISSION_IN_PROGRESS: &str = "Decommission In Progress";
    pub const DECOMMISSIONED: &str = "Decommissioned";
}

/// The NameNode's entry for `instance`, matched by the hostname it registers under. With
/// several (an old dead registration and a live one), the live one.
fn datanode_report<'h>(nn: &'h NameNodeHealth, instance: &InstanceRef) -> Option<&'h DataNodeReport> {
    let host = instance.hostname();
    let mut found = nn.datanodes.iter().filter(|d| d.hostname == host);
    let first = found.next()?;
    Some(if first.live { first } else { found.find(|d| d.live).unwrap_or(first) })
}

/// The ResourceManager's entry for `instance`, matched by hostname; a non-terminal entry wins
/// over an old terminal one (the same host re-registered).
fn nodemanager_report<'h>(rm: &'h ResourceManagerHealth, instance: &InstanceRef) -> Option<&'h NodeManagerReport> {
    let host = instance.hostname();
    let mut found = rm.nodes.iter().filter(|n| n.hostname == host);
    let first = found.next()?;
    Some(if !nm_gone(first) { first } else { found.find(|n| !nm_gone(n)).unwrap_or(first) })
}

/// Whether the ResourceManager no longer runs anything on this NodeManager.
fn nm_gone(n: &NodeManagerReport) -> bool {
    matches!(n.state.as_str(), "DECOMMISSIONED" | "LOST" | "SHUTDOWN")
}

/// Whether a DataNode counts as a live, in-service replica holder.
fn in_service(d: &DataNodeReport) -> bool {
    d.live && d.admin_state.as_deref().is_none_or(|s| s == admin_state::IN_SERVICE)
}
