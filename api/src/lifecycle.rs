//! The persisted and shown side of a worker's way out of a cluster: the [`Phase`] of a
//! DataNode being decommissioned or a NodeManager being drained, the per-pool
//! [`PoolLifecycle`] settings, what `herd status` shows of a leaving instance
//! ([`LeavingStatus`]) and the conditions the lifecycle raises ([`LifecycleCondition`]).
//! The state machine that moves phases lives in `herd_hadoop::lifecycle`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::InstanceRef;
use crate::wire::Condition;

/// Where a leaving instance is on its way out. Stored by the orchestrator after every step,
/// so a restart resumes from here. Every phase keeps the instance in its pool's exclude file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    /// DataNode: excluded; the NameNode is copying its blocks elsewhere.
    Decommissioning {
        /// When the instance was chosen to leave (Unix ms); the deadline counts from here.
        since_ms: u64,
        /// When the NameNode was first seen to have applied an exclude file naming it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refreshed_ms: Option<u64>,
        /// `herd scale --force`: may go before its decommission completes (see the lifecycle
        /// module for the one-at-a-time gate that still applies).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        forced: bool,
    },
    /// DataNode: the NameNode reported it `Decommissioned` at `at_ms`; it waits for HDFS as a
    /// whole to be safe (no missing blocks, no other DataNode still decommissioning).
    Decommissioned {
        since_ms: u64,
        at_ms: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        forced: bool,
    },
    /// NodeManager: excluded; the ResourceManager lets its containers finish.
    Draining {
        since_ms: u64,
        /// The graceful timeout it was given (`yarn rmadmin -refreshNodes -g`); 0 = none.
        timeout_s: u64,
        /// When the ResourceManager was first seen to have applied an exclude file naming it;
        /// the timeout counts from here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refreshed_ms: Option<u64>,
    },
    /// NodeManager: the ResourceManager reports it decommissioned, or its timeout passed.
    Drained,
    /// Container stop and removal ordered; it leaves the exclude file once the container is
    /// confirmed gone.
    Removing,
}

impl Phase {
    /// A short stable name for status, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Decommissioning { .. } => "decommissioning",
            Phase::Decommissioned { .. } => "decommissioned",
            Phase::Draining { .. } => "draining",
            Phase::Drained => "drained",
            Phase::Removing => "removing",
        }
    }

    /// Whether the instance can still be taken back into service (scale up while leaving):
    /// every phase before [`Phase::Removing`].
    pub fn recommissionable(&self) -> bool {
        !matches!(self, Phase::Removing)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a worker pool leaves: per-pool settings, defaults as documented on each field.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolLifecycle {
    /// DataNodes: a decommission running longer than this raises `DecommissionStalled`
    /// (it keeps running; nothing is removed early). 0 = never. Default 6 h.
    #[serde(default = "default_decommission_deadline_s", rename = "decommissionDeadlineSeconds")]
    pub decommission_deadline_s: u64,
    /// NodeManagers: how long running containers may take to finish before the NodeManager
    /// is removed anyway. 0 = at once. Default 1 h (YARN's own default).
    #[serde(default = "default_drain_timeout_s", rename = "drainTimeoutSeconds")]
    pub drain_timeout_s: u64,
}

fn default_decommission_deadline_s() -> u64 {
    6 * 3600
}

fn default_drain_timeout_s() -> u64 {
    3600
}

impl PoolLifecycle {
    /// Whether every setting is at its default (then a spec leaves it out).
    pub fn is_default(&self) -> bool {
        *self == PoolLifecycle::default()
    }
}

impl Default for PoolLifecycle {
    fn default() -> Self {
        PoolLifecycle {
            decommission_deadline_s: default_decommission_deadline_s(),
            drain_timeout_s: default_drain_timeout_s(),
        }
    }
}

/// What `herd status` shows of a leaving instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeavingStatus {
    pub phase: Phase,
    /// DataNode: blocks the NameNode still has to copy before it may leave, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_to_move: Option<u64>,
    /// NodeManager: containers still running on it, when the ResourceManager says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_containers: Option<u64>,
    /// What it waits for, in words; `None` when it is not waiting (e.g. removal ordered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// The kinds of condition the lifecycle raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum LifecycleConditionKind {
    /// A decommission has run past its pool's deadline.
    DecommissionStalled,
    /// A decommission cannot finish as things are (its DataNode is dead, or unknown to the
    /// NameNode): it needs an admin.
    DecommissionBlocked,
    /// A forced DataNode was removed before its decommission completed.
    DecommissionForced,
    /// A NodeManager was removed at its drain timeout with containers still running.
    DrainTimedOut,
    /// A stored phase does not fit the instance's role (e.g. a DataNode `draining`): left
    /// as it is.
    PhaseMismatch,
}

impl LifecycleConditionKind {
    /// The stable CamelCase name used as [`Condition::kind`].
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleConditionKind::DecommissionStalled => "DecommissionStalled",
            LifecycleConditionKind::DecommissionBlocked => "DecommissionBlocked",
            LifecycleConditionKind::DecommissionForced => "DecommissionForced",
            LifecycleConditionKind::DrainTimedOut => "DrainTimedOut",
            LifecycleConditionKind::PhaseMismatch => "LifecyclePhaseMismatch",
        }
    }
}

impl fmt::Display for LifecycleConditionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition about one leaving instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LifecycleCondition {
    pub kind: LifecycleConditionKind,
    pub instance: InstanceRef,
    /// What is wrong and what to do; names the instance.
    pub message: String,
}

impl From<LifecycleCondition> for Condition {
    fn from(c: LifecycleCondition) -> Condition {
        Condition { kind: c.kind.as_str().to_string(), message: c.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_serialize_tagged_and_round_trip() {
        let cases = [
            (
                Phase::Decommissioning { since_ms: 5, refreshed_ms: None, forced: false },
                r#"{"phase":"decommissioning","since_ms":5}"#,
            ),
            (
                Phase::Decommissioning { since_ms: 5, refreshed_ms: Some(7), forced: true },
                r#"{"phase":"decommissioning","since_ms":5,"refreshed_ms":7,"forced":true}"#,
            ),
            (
                Phase::Decommissioned { since_ms: 5, at_ms: 9, forced: false },
                r#"{"phase":"decommissioned","since_ms":5,"at_ms":9}"#,
            ),
            (
                Phase::Draining { since_ms: 1, timeout_s: 3600, refreshed_ms: None },
                r#"{"phase":"draining","since_ms":1,"timeout_s":3600}"#,
            ),
            (Phase::Drained, r#"{"phase":"drained"}"#),
            (Phase::Removing, r#"{"phase":"removing"}"#),
        ];
        for (phase, json) in cases {
            assert_eq!(serde_json::to_string(&phase).unwrap(), json);
            assert_eq!(serde_json::from_str::<Phase>(json).unwrap(), phase);
            assert!(json.contains(phase.as_str()), "{json}");
        }
    }

    #[test]
    fn pool_lifecycle_defaults() {
        let p: PoolLifecycle = serde_json::from_str("{}").unwrap();
        assert_eq!(p, PoolLifecycle { decommission_deadline_s: 21600, drain_timeout_s: 3600 });
        let p: PoolLifecycle = serde_json::from_str(r#"{"drainTimeoutSeconds":0}"#).unwrap();
        assert_eq!(p.drain_timeout_s, 0);
        assert!(serde_json::from_str::<PoolLifecycle>(r#"{"drainTimeout":0}"#).is_err());
    }

    #[test]
    fn condition_maps_onto_wire() {
        let c = LifecycleCondition {
            kind: LifecycleConditionKind::DrainTimedOut,
            instance: InstanceRef { tenant: "acme".into(), cluster: "prod".into(), name: "nodemanager-1".into() },
            message: "m".into(),
        };
        assert_eq!(Condition::from(c), Condition { kind: "DrainTimedOut".into(), message: "m".into() });
    }
}
