//! The audit trail: one row per change, written in the change's own transaction.

use herd_api::wire::AuditEntry;
use rusqlite::{Connection, params};

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
pub fn record(c: &Connection, at_ms: u64, ch: &Change<'_>) -> Result<()> {
    record_detail(c, at_ms, ch, None)
}

/// Appends a change with a detail in words (what a forced change risks).
pub fn record_detail(c: &Connection, at_ms: u64, ch: &Change<'_>, detail: Option<&str>) -> Result<()> {
    c.execute(
        "INSERT INTO audit (at_ms, actor, action, resource, before_generation, after_generation, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![at_ms as i64, ch.actor, ch.action, ch.resource, ch.before.map(|g| g as i64), ch.after.map(|g| g as i64), detail],
    )?;
    Ok(())
}

/// Up to `limit` entries after entry `after`, oldest first.
pub fn list(c: &Connection, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, at_ms, actor, action, resource, before_generation, after_generation, detail FROM audit
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after.unwrap_or(0) as i64, limit as i64], |r| {
        Ok(AuditEntry {
            id: r.get::<_, i64>(0)? as u64,
            at: r.get::<_, i64>(1)? as u64,
            actor: r.get(2)?,
            action: r.get(3)?,
            resource: r.get(4)?,
            before_generation: r.get::<_, Option<i64>>(5)?.map(|g| g as u64),
            after_generation: r.get::<_, Option<i64>>(6)?.map(|g| g as u64),
            detail: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
