//! API tokens as stored: the SHA-256 hash of the secret, never the secret itself.

use herd_api::wire::{Scope, TokenInfo};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

fn scope_str(s: Scope) -> &'static str {
    match s {
        Scope::Admin => "admin",
        Scope::Agent => "agent",
        Scope::Tenant => "tenant",
    }
}

fn parse_scope(s: &str) -> Result<Scope> {
    match s {
        "admin" => Ok(Scope::Admin),
        "agent" => Ok(Scope::Agent),
        "tenant" => Ok(Scope::Tenant),
        other => Err(Error::Corrupt { what: "token scope", source: serde::de::Error::custom(format!("unknown scope {other}")) }),
    }
}

const COLUMNS: &str = "id, scope, tenant, description, created_s, revoked, host";

type Row = (String, String, Option<String>, Option<String>, i64, bool, Option<String>);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn info((id, scope, tenant, description, created_s, revoked, host): Row) -> Result<TokenInfo> {
    Ok(TokenInfo { id, scope: parse_scope(&scope)?, tenant, host, description, created_at: created_s as u64, revoked })
}

/// Stores a new token by the hash of its secret.
pub fn insert(c: &Connection, token: &TokenInfo, hash: &str) -> Result<()> {
    c.execute(
        "INSERT INTO tokens (id, hash, scope, tenant, description, created_s, revoked, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
        params![token.id, hash, scope_str(token.scope), token.tenant, token.description, token.created_at as i64, token.host],
    )?;
    Ok(())
}

/// The live (not revoked) token whose secret hashes to `hash`.
pub fn by_hash(c: &Connection, hash: &str) -> Result<Option<TokenInfo>> {
    let r = c
        .query_row(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1 AND revoked = 0"), [hash], row)
        .optional()?;
    r.map(info).transpose()
}

pub fn get(c: &Connection, id: &str) -> Result<Option<TokenInfo>> {
    let r = c.query_row(&format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"), [id], row).optional()?;
    r.map(info).transpose()
}

/// Up to `limit` tokens after id `after`, by id.
pub fn list(c: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<TokenInfo>> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {COLUMNS} FROM tokens WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"))?;
    let rows = stmt.query_map(params![after, limit as i64], row)?;
    rows.map(|r| info(r?)).collect()
}

/// Marks a token revoked; `false` when there is no such token.
pub fn revoke(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.execute("UPDATE tokens SET revoked = 1 WHERE id = ?1", [id])? == 1)
}

/// Whether any live admin token exists (else the orchestrator bootstraps one).
pub fn has_live_admin(c: &Connection) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM tokens WHERE scope = 'admin' AND revoked = 0 LIMIT 1", [], |_| Ok(())).optional()?.is_some())
}
