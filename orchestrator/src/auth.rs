//! Bearer tokens: who is calling, and what they may see. Secrets are random, shown once,
//! and stored only as SHA-256 hashes; a secret is never logged.
//!
//! Authorization rule: a tenant token sees only its own tenant. Anything else answers
//! 404 exactly as if it did not exist, so names of other tenants' resources do not leak.

use std::path::Path;

use herd_api::wire::Scope;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The caller, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub scope: Scope,
    /// The tenant of a `tenant` token.
    pub tenant: Option<String>,
    /// The one host an `agent` token may speak for; any when `None`.
    pub host: Option<String>,
}

impl Principal {
    /// How the audit trail names the caller.
    pub fn actor(&self) -> String {
        match (&self.scope, &self.tenant) {
            (Scope::Tenant, Some(t)) => format!("tenant:{t}:{}", self.token_id),
            (Scope::Agent, _) => format!("agent:{}", self.token_id),
            _ => format!("admin:{}", self.token_id),
        }
    }

    pub fn require_admin(&self) -> Result<()> {
        match self.scope {
            Scope::Admin => Ok(()),
            _ => Err(Error::Forbidden("this needs an admin token".into())),
        }
    }

    pub fn require_agent(&self) -> Result<()> {
        match self.scope {
            Scope::Admin | Scope::Agent => Ok(()),
            Scope::Tenant => Err(Error::Forbidden("the agent protocol needs an agent or admin token".into())),
        }
    }

    /// `Ok` if the caller may speak for host `id` in the agent protocol.
    pub fn require_host(&self, id: &str) -> Result<()> {
        match &self.host {
            Some(h) if h != id => Err(Error::Forbidden(format!("this agent token speaks for host `{h}` only, not `{id}`"))),
            _ => Ok(()),
        }
    }

    /// Whether this caller may see `tenant` and what it owns.
    pub fn sees(&self, tenant: &str) -> bool {
        match self.scope {
            Scope::Admin => true,
            Scope::Tenant => self.tenant.as_deref() == Some(tenant),
            Scope::Agent => false,
        }
    }

    /// `Ok` if the caller sees `tenant`; otherwise the same 404 a missing `kind` gives.
    pub fn require_tenant(&self, tenant: &str, kind: &'static str, name: impl Into<String>) -> Result<()> {
        if self.sees(tenant) { Ok(()) } else { Err(Error::not_found(kind, name)) }
    }
}

/// A new secret: `herd_` + token id + 32 random bytes, hex.
pub fn new_secret() -> (String, String) {
    let mut id = [0u8; 6];
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut key);
    let id = hex::encode(id);
    (id.clone(), format!("herd_{id}_{}", hex::encode(key)))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Writes the bootstrap admin secret for the operator, readable by the owner only.
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_hashed() {
        let (id1, s1) = new_secret();
        let (_, s2) = new_secret();
        assert_ne!(s1, s2);
        assert!(s1.starts_with(&format!("herd_{id1}_")));
        assert_eq!(hash(&s1).len(), 64);
        assert_ne!(hash(&s1), hash(&s2));
    }

    #[test]
    fn tenant_tokens_see_only_their_tenant() {
        let p = Principal { token_id: "t".into(), scope: Scope::Tenant, tenant: Some("acme".into()), host: None };
        assert!(p.sees("acme") && !p.sees("globex"));
        assert!(matches!(p.require_tenant("globex", "cluster", "globex/prod"), Err(Error::NotFound { .. })));
        assert!(p.require_admin().is_err() && p.require_agent().is_err());
        let agent = Principal { token_id: "a".into(), scope: Scope::Agent, tenant: None, host: None };
        assert!(!agent.sees("acme") && agent.require_agent().is_ok() && agent.require_host("h1").is_ok());
        let bound = Principal { host: Some("h1".into()), ..agent };
        assert!(bound.require_host("h1").is_ok() && matches!(bound.require_host("h2"), Err(Error::Forbidden(_))));
    }
}
