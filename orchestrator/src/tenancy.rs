//! Tenants, their quotas, and API tokens: the operations behind the admin routes, each one
//! store transaction that also writes the audit trail. `POST`s carry an optional
//! `Idempotency-Key` ([`Once`]) whose answer is stored in the same transaction.

use std::fmt;
use std::path::Path;

use herd_api::names::check_dns_label;
use herd_api::wire::{CreateTenant, CreateToken, Page, Quota, Scope, Tenant, TenantQuota, TokenCreated, TokenInfo};
use serde::Serialize;
use tracing::info;

use crate::auth::{self, Principal};
use crate::error::{Error, Result};
use crate::quota;
use crate::state::{State, now_ms, page};
use crate::store::audit::{self, Change};
use crate::store::{TenantRow, Tx, idempotency};

/// An `Idempotency-Key` and what it needs: the caller, the request's fingerprint, and the
/// caller's secret (which seals the stored answer; see [`idempotency`]).
pub struct Once {
    pub token_id: String,
    pub key: String,
    pub fingerprint: String,
    pub secret: String,
}

// NB: by hand, so the caller's secret never reaches a log through `{:?}`.
impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once").field("token_id", &self.token_id).field("key", &self.key).finish_non_exhaustive()
    }
}

/// The answer to a `POST`: its status and body, and whether it is a replay of a stored one.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub replayed: bool,
}

fn answer<T: Serialize>(status: u16, value: &T) -> Answer {
    // NB: plain data with string keys; serde_json cannot fail on it.
    Answer { status, body: serde_json::to_value(value).unwrap_or_default(), replayed: false }
}

/// Runs `f` once per idempotency key: a repeat of the same request gets the stored answer,
/// a different request with the same key is refused; the answer is stored in `f`'s
/// transaction, so a crash cannot separate the change from its stored answer.
fn once_in(tx: &dyn Tx, once: Option<&Once>, now: u64, f: impl FnOnce(&dyn Tx) -> Result<Answer>) -> Result<Answer> {
    if let Some(o) = once
        && let Some(stored) = tx.idempotent(&o.token_id, &o.key, now)?
    {
        if stored.fingerprint != o.fingerprint {
            return Err(Error::IdempotencyKeyReused { key: o.key.clone() });
        }
        let body = idempotency::open(&o.secret, &o.token_id, &o.key, &stored.body)
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or_else(|| Error::Conflict(format!("the answer stored for Idempotency-Key `{}` cannot be read; use a new key", o.key)))?;
        return Ok(Answer { status: stored.status, body, replayed: true });
    }
    let a = f(tx)?;
    if let Some(o) = once {
        let stored = idempotency::Stored {
            fingerprint: o.fingerprint.clone(),
            status: a.status,
            body: idempotency::seal(&o.secret, &o.token_id, &o.key, &a.body.to_string()),
        };
        tx.put_idempotent(&o.token_id, &o.key, &stored, now)?;
    }
    Ok(a)
}

fn check_quota(q: &Quota) -> Result<()> {
    quota::validate(q).map_err(|errors| Error::Spec(herd_api::SpecError::Inconsistent(errors)))
}

/// Live tokens already checked, by the hash of their secret, so a request checks its token
/// without a store read. Emptied on every revocation (`epoch` keeps a check that raced a
/// revocation from putting the revoked token back).
#[derive(Debug, Default)]
pub struct AuthCache {
    epoch: std::sync::atomic::AtomicU64,
    live: std::sync::Mutex<std::collections::HashMap<String, Principal>>,
}

impl AuthCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(hash).cloned()
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn put(&self, hash: String, p: &Principal, epoch: u64) {
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.epoch() == epoch {
            live.insert(hash, p.clone());
        }
    }

    /// A token may have been revoked: forget every checked one.
    pub fn revoked(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl State {
    /// Creates a tenant: 201, or 200 when it exists with the same quota (or none given). A
    /// tenant created without a quota gets the default one ([`crate::limits::Limits`]).
    pub async fn create_tenant(&self, actor: String, req: CreateTenant, once: Option<Once>) -> Result<Answer> {
        if let Err(m) = check_dns_label(&req.name) {
            return Err(Error::invalid("name", m));
        }
        let given = req.quota.map(|q| match q {
            TenantQuota::Unlimited(_) => Quota::default(),
            TenantQuota::Limits(q) => q,
        });
        if let Some(q) = &given {
            check_quota(q)?;
        }
        let quota = given.clone().unwrap_or_else(|| self.limits.default_quota.clone());
        let (now, lost_after, hot) = (now_ms(), 3 * self.heartbeat_interval.as_millis() as u64, self.hot.clone());
        self.store
            .write(move |tx| {
                once_in(tx, once.as_ref(), now, |tx| {
                    if let Some(existing) = tenant_of(tx, &req.name)? {
                        if given.as_ref().is_some_and(|q| *q != existing.quota) {
                            return Err(Error::Conflict(format!(
                                "tenant `{}` exists with another quota; change it with `herd tenants quota {}` (PUT /v1/tenants/{}/quota)",
                                req.name, req.name, req.name
                            )));
                        }
                        return Ok(answer(200, &existing));
                    }
                    crate::placement::admit(tx, &hot, &req.name, &quota, now, lost_after)?;
                    tx.insert_tenant(&req.name, &quota, now / 1000)?;
                    let resource = format!("tenants/{}", req.name);
                    audit::record(tx, now, &Change { actor: &actor, action: "tenant.create", resource: &resource, before: None, after: None })?;
                    let tenant = tenant_of(tx, &req.name)?.ok_or_else(|| Error::not_found("tenant", &req.name))?;
                    Ok(answer(201, &tenant))
                })
            })
            .await
    }

    pub async fn tenant(&self, name: String) -> Result<Tenant> {
        self.store.read(move |c| tenant_of(c, &name)?.ok_or_else(|| Error::not_found("tenant", name))).await
    }

    pub async fn tenants(&self, after: Option<String>, limit: usize) -> Result<Page<Tenant>> {
        self.store
            .read(move |c| {
                let rows = c.tenants(after.as_deref(), limit + 1)?;
                let tenants = rows.into_iter().map(|row| tenant_view(c, row)).collect::<Result<Vec<_>>>()?;
                Ok(page(tenants, limit, |t: &Tenant| t.name.clone()))
            })
            .await
    }

    /// Replaces a tenant's quota. A quota below what the tenant uses now is accepted: it
    /// stops growth, and scaling down stays possible.
    pub async fn set_quota(&self, actor: String, name: String, quota: Quota) -> Result<Tenant> {
        check_quota(&quota)?;
        let (now, lost_after, hot) = (now_ms(), 3 * self.heartbeat_interval.as_millis() as u64, self.hot.clone());
        self.store
            .write(move |tx| {
                if !tx.tenant_exists(&name)? {
                    return Err(Error::not_found("tenant", &name));
                }
                crate::placement::admit(tx, &hot, &name, &quota, now, lost_after)?;
                if !tx.set_quota(&name, &quota)? {
                    return Err(Error::not_found("tenant", &name));
                }
                let resource = format!("tenants/{name}");
                audit::record(tx, now, &Change { actor: &actor, action: "tenant.quota", resource: &resource, before: None, after: None })?;
                tenant_of(tx, &name)?.ok_or_else(|| Error::not_found("tenant", &name))
            })
            .await
    }

    /// Deletes a tenant that owns no cluster; its tokens are revoked.
    pub async fn delete_tenant(&self, actor: String, name: String) -> Result<()> {
        let now = now_ms();
        let out = self
            .store
            .write(move |tx| {
                if !tx.tenant_exists(&name)? {
                    return Err(Error::not_found("tenant", &name));
                }
                let clusters = tx.clusters_page(Some(&name), None, 6)?;
                if !clusters.is_empty() {
                    let names: Vec<String> = clusters.iter().take(5).map(|c| format!("{name}/{}", c.spec.name)).collect();
                    let more = if clusters.len() > 5 { ", ..." } else { "" };
                    return Err(Error::Conflict(format!(
                        "tenant `{name}` still has clusters ({}{more}); delete them first with `herd delete {}`",
                        names.join(", "),
                        names[0]
                    )));
                }
                tx.delete_tenant(&name)?;
                let resource = format!("tenants/{name}");
                audit::record(tx, now, &Change { actor: &actor, action: "tenant.delete", resource: &resource, before: None, after: None })?;
                Ok(())
            })
            .await;
        // Its tokens were revoked.
        self.auth.revoked();
        out
    }

    /// Issues a token; the answer holds its secret, shown only this once.
    pub async fn create_token(&self, actor: String, req: CreateToken, once: Option<Once>) -> Result<Answer> {
        match (req.scope, &req.tenant) {
            (Scope::Tenant, None) => return Err(Error::invalid("tenant", "a tenant token names its tenant")),
            (Scope::Tenant, Some(t)) => check_dns_label(t).map_err(|m| Error::invalid("tenant", m))?,
            (_, Some(_)) => return Err(Error::invalid("tenant", "only `scope: tenant` tokens name a tenant")),
            (_, None) => {}
        }
        match (req.scope, &req.host) {
            (Scope::Agent, Some(h)) => herd_api::names::check_host_id(h).map_err(|m| Error::invalid("host", m))?,
            (Scope::Agent, None) => {
                return Err(Error::invalid("host", "an agent token speaks for one host: name it (`herd tokens create --agent --host H`)"));
            }
            (_, Some(_)) => return Err(Error::invalid("host", "only `scope: agent` tokens name a host")),
            (_, None) => {}
        }
        if let Some(d) = &req.description
            && (d.chars().count() > 200 || d.chars().any(char::is_control))
        {
            return Err(Error::invalid("description", "must be at most 200 characters, without control characters"));
        }
        let now = now_ms();
        self.store
            .write(move |tx| {
                once_in(tx, once.as_ref(), now, |tx| {
                    if let Some(t) = &req.tenant
                        && !tx.tenant_exists(t)?
                    {
                        return Err(Error::refused("tenant", format!("tenant `{t}` does not exist; create it first with `herd tenants create {t}`")));
                    }
                    let binding = Binding { tenant: req.tenant.clone(), host: req.host.clone() };
                    let (created, secret) = new_token(tx, req.scope, binding, req.description.clone(), now)?;
                    let resource = format!("tokens/{}", created.id);
                    audit::record(tx, now, &Change { actor: &actor, action: "token.create", resource: &resource, before: None, after: None })?;
                    Ok(answer(201, &TokenCreated { token: created, secret }))
                })
            })
            .await
    }

    pub async fn tokens(&self, after: Option<String>, limit: usize) -> Result<Page<TokenInfo>> {
        self.store
            .read(move |c| Ok(page(c.tokens(after.as_deref(), limit + 1)?, limit, |t: &TokenInfo| t.id.clone())))
            .await
    }

    /// Revokes a token (again: no-op); the last live admin token cannot be revoked.
    pub async fn revoke_token(&self, actor: String, id: String) -> Result<()> {
        let now = now_ms();
        let out = self
            .store
            .write(move |tx| {
                let Some(token) = tx.token(&id)? else { return Err(Error::not_found("token", &id)) };
                if token.revoked {
                    return Ok(());
                }
                tx.revoke_token(&id)?;
                if token.scope == Scope::Admin && !tx.has_live_admin()? {
                    return Err(Error::Conflict(format!(
                        "token {id} is the last admin token; create another with `herd tokens create --admin` first"
                    )));
                }
                let resource = format!("tokens/{id}");
                audit::record(tx, now, &Change { actor: &actor, action: "token.revoke", resource: &resource, before: None, after: None })?;
                Ok(())
            })
            .await;
        self.auth.revoked();
        out
    }

    /// The caller a bearer secret belongs to; `Unauthorized` when it is unknown or revoked.
    pub async fn authenticate(&self, secret: String) -> Result<Principal> {
        let hash = auth::hash(&secret);
        if let Some(p) = self.auth.get(&hash) {
            return Ok(p);
        }
        let epoch = self.auth.epoch();
        let key = hash.clone();
        let token = self.store.read(move |c| c.token_by_hash(&hash)).await?;
        let token = token.ok_or_else(|| {
            Error::Unauthorized("the bearer token is not valid (unknown or revoked); ask an admin for a token (`herd tokens create`)".into())
        })?;
        let p = Principal { token_id: token.id, scope: token.scope, tenant: token.tenant, host: token.host };
        self.auth.put(key, &p, epoch);
        Ok(p)
    }

    /// On first start (no live admin token), creates an admin token and writes its secret to
    /// `path` (mode 0600). Returns whether it did. The secret is never logged.
    pub async fn bootstrap_admin(&self, path: &Path) -> Result<bool, BootstrapError> {
        let now = now_ms();
        let created = self
            .store
            .write(move |tx| {
                if tx.has_live_admin()? {
                    return Ok(None);
                }
                let (token, secret) = new_token(tx, Scope::Admin, Binding::default(), Some("bootstrap admin token".into()), now)?;
                let resource = format!("tokens/{}", token.id);
                let change = Change { actor: "herd-orchestrator", action: "token.create", resource: &resource, before: None, after: None };
                audit::record(tx, now, &change)?;
                Ok(Some((token, secret)))
            })
            .await?;
        let Some((token, secret)) = created else { return Ok(false) };
        auth::write_secret_file(path, &secret).map_err(|source| BootstrapError::Write { path: path.into(), source })?;
        info!(token = %token.id, file = %path.display(), "created the first admin token; its secret is in the file");
        Ok(true)
    }
}

/// Why the first admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] Error),
    #[error("cannot write the admin token to {path}")]
    Write { path: std::path::PathBuf, #[source] source: std::io::Error },
}

/// What a token is bound to: a tenant (tenant tokens), a host (agent tokens, optional).
#[derive(Debug, Default)]
struct Binding {
    tenant: Option<String>,
    host: Option<String>,
}

/// A stored tenant with what its clusters ask for and hold now.
fn tenant_view(tx: &dyn Tx, row: TenantRow) -> Result<Tenant> {
    let usage = tx.usage(&row.name, None)?;
    let (used, borrowed) = crate::placement::tenant_use(tx, &row.name, &row.quota)?;
    Ok(Tenant { created_at: row.created_at, quota: row.quota, usage, used, borrowed, name: row.name })
}

/// Tenant `name` as [`tenant_view`] shows it, if it exists.
fn tenant_of(tx: &dyn Tx, name: &str) -> Result<Option<Tenant>> {
    tx.tenant(name)?.map(|row| tenant_view(tx, row)).transpose()
}

fn new_token(tx: &dyn Tx, scope: Scope, binding: Binding, description: Option<String>, now: u64) -> Result<(TokenInfo, String)> {
    let (id, secret) = auth::new_secret();
    let token =
        TokenInfo { id, scope, tenant: binding.tenant, host: binding.host, description, created_at: now / 1000, revoked: false };
    tx.insert_token(&token, &auth::hash(&secret))?;
    Ok((token, secret))
}
