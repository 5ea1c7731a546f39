//! The audit trail: one entry per change, written in the change's own transaction
//! ([`super::Tx::record_audit`]).

use super::Tx;
use crate::error::Result;

/// What one change did, for [`record`].
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// Appends a change to the trail.
pub fn record(tx: &dyn Tx, at_ms: u64, ch: &Change<'_>) -> Result<()> {
    tx.record_audit(at_ms, ch, None)
}

/// Appends a change with a detail in words (what a forced change risks).
pub fn record_detail(tx: &dyn Tx, at_ms: u64, ch: &Change<'_>, detail: Option<&str>) -> Result<()> {
    tx.record_audit(at_ms, ch, detail)
}
