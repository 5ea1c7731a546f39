//! API tokens as stored: the SHA-256 hash of the secret, never the secret itself
//! ([`Tx::insert_token`](super::Tx::insert_token) and the methods after it).

use herd_api::wire::Scope;

use crate::error::{Error, Result};

/// A scope as stored.
pub fn scope_str(s: Scope) -> &'static str {
    match s {
        Scope::Admin => "admin",
        Scope::Agent => "agent",
        Scope::Tenant => "tenant",
    }
}

/// A stored scope.
pub fn parse_scope(s: &str) -> Result<Scope> {
    match s {
        "admin" => Ok(Scope::Admin),
        "agent" => Ok(Scope::Agent),
        "tenant" => Ok(Scope::Tenant),
        other => Err(Error::Corrupt { what: "token scope", source: serde::de::Error::custom(format!("unknown scope {other}")) }),
    }
}
