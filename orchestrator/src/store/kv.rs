//! The store's operations over an ordered key-value transaction ([`Kv`]): how the etcd
//! store lays herd's objects out as keys and JSON values. [`Typed`] implements [`Tx`] over
//! any [`Kv`]; the etcd implementation provides the [`Kv`] (with its conflict detection).
//!
//! Keys are `TABLE/COMPONENT[/COMPONENT...]`, relative to the store's prefix, each component
//! escaped (`%` and `/`). Tables:
//!
//! | key | value |
//! | --- | --- |
//! | `meta/revision`, `meta/audit` | the revision; the last audit entry's number |
//! | `hosts/H` | [`HostDoc`] |
//! | `host-logs/H`, `host-conditions/H` | the agent's log endpoint; its conditions |
//! | `observed/H/T/C/N` | what host H last reported of instance T/C/N |
//! | `subnets/H`, `subnet-owners/S` | H's subnet lease; the host holding subnet S (unique) |
//! | `tenants/T` | [`TenantDoc`] |
//! | `clusters/T/C` | [`ClusterDoc`] |
//! | `instances/T/C/N`, `instances-by-host/H/T/C/N` | [`InstanceDoc`]; the same, indexed by host |
//! | `leaving/T/C/N` | its [`Phase`] |
//! | `purge/H/T/C/N` | `{}`: H's agent is to remove T/C/N's data folders |
//! | `tokens/ID`, `token-hashes/HASH` | [`TokenDoc`]; the token id (unique hash) |
//! | `audit/NNNNNNNNNNNNNNNNNNNN` | the entry, numbered from 1 |
//! | `idempotency/ACTOR/KEY` | [`IdempotencyDoc`] |
//!
//! NB: key order is byte order, which is not the order of a tuple of components (`a-b/x`
//! sorts before `a/x`), so lists over composite keys are sorted after they are read; pages by
//! one component (hosts, tenants, tokens, audit) use the key order directly.

use std::collections::{BTreeMap, HashMap};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{AuditEntry, HostInfo, LogEndpoint, Observed, Quota, TokenInfo};
use herd_api::{ClusterSpec, Role};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{ClusterKey, ClusterRow, HostRow, TenantRow, Tx, audit, from_json, idempotency, to_json};
use crate::error::{Error, Result};
use crate::reconciler::Instance;

/// An ordered key-value transaction: reads see the writes made before them in the same
/// transaction.
pub trait Kv {
    /// The value at `key`.
    fn get(&self, key: &str) -> Result<Option<String>>;
    /// Up to `limit` keys and values under `prefix` (which ends in `/`), after key `after`
    /// when given (a full key), in byte order.
    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, String)>>;
    fn put(&self, key: &str, value: String) -> Result<()>;
    fn delete(&self, key: &str) -> Result<()>;
}

/// A stored host.
#[derive(Debug, Serialize, Deserialize)]
pub struct HostDoc {
    pub info: HostInfo,
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    #[serde(default)]
    pub cordoned: bool,
    #[serde(default)]
    pub drain_since_ms: Option<u64>,
}

/// A stored tenant.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantDoc {
    pub created_at: u64,
    #[serde(default)]
    pub quota: Quota,
}

/// A stored cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterDoc {
    pub generation: u64,
    pub spec: ClusterSpec,
}

/// A stored instance (its name is in its key).
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceDoc {
    pub role: Role,
    pub ordinal: u32,
    pub host: Option<String>,
    pub pending: Option<String>,
    pub cpu: u64,
    pub memory: u64,
    pub placement: u64,
}

/// A stored token: what is shown of it, and the hash of its secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenDoc {
    pub info: TokenInfo,
    pub hash: String,
}

/// A stored answer to an idempotent request.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdempotencyDoc {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub at_ms: u64,
}

/// Escapes one key component (`%` and `/`).
pub fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// The component [`escape`] made.
pub fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

/// A key from a table and components.
pub fn key(table: &str, parts: &[&str]) -> String {
    let mut k = table.to_string();
    for p in parts {
        k.push('/');
        k.push_str(&escape(p));
    }
    k
}

/// The prefix of every key under `table` and `parts`, ending in `/`.
pub fn prefix(table: &str, parts: &[&str]) -> String {
    let mut k = key(table, parts);
    k.push('/');
    k
}

/// The components of `key` after its table.
fn parts(key: &str) -> Vec<String> {
    key.split('/').skip(1).map(unescape).collect()
}

fn instance_ref(p: &[String]) -> Option<InstanceRef> {
    match p {
        [t, c, n] => Some(InstanceRef { tenant: t.clone(), cluster: c.clone(), name: n.clone() }),
        _ => None,
    }
}

fn bad_key(key: &str) -> Error {
    Error::Corrupt { what: "store key", source: serde::de::Error::custom(format!("unexpected key {key}")) }
}

fn instance_key(i: &InstanceRef) -> String {
    key("instances", &[&i.tenant, &i.cluster, &i.name])
}

fn by_host_key(host: &str, i: &InstanceRef) -> String {
    key("instances-by-host", &[host, &i.tenant, &i.cluster, &i.name])
}

fn instance(key: &str, value: &str) -> Result<Instance> {
    let p = parts(key);
    // `instances/T/C/N` or `instances-by-host/H/T/C/N`.
    let i = instance_ref(&p[p.len().saturating_sub(3)..]).ok_or_else(|| bad_key(key))?;
    let d: InstanceDoc = from_json("instance", value)?;
    Ok(Instance {
        instance: i,
        role: d.role,
        ordinal: d.ordinal,
        host: d.host,
        pending: d.pending,
        cpu: Cpu(d.cpu),
        memory: Memory(d.memory),
        placement: d.placement,
    })
}

/// Instances in the order of [`Tx::instances`]: tenant, cluster, role name, ordinal.
fn sorted(mut v: Vec<Instance>) -> Vec<Instance> {
    v.sort_by(|a, b| {
        (&a.instance.tenant, &a.instance.cluster, a.role.as_str(), a.ordinal).cmp(&(
            &b.instance.tenant,
            &b.instance.cluster,
            b.role.as_str(),
            b.ordinal,
        ))
    });
    v
}

fn host_row(value: &str) -> Result<HostRow> {
    let d: HostDoc = from_json("host", value)?;
    Ok(HostRow { info: d.info, registered_ms: d.registered_ms, last_seen_ms: d.last_seen_ms, cordoned: d.cordoned, drain_since_ms: d.drain_since_ms })
}

fn tenant_row(key: &str, value: &str) -> Result<TenantRow> {
    let name = parts(key).pop().ok_or_else(|| bad_key(key))?;
    let d: TenantDoc = from_json("tenant", value)?;
    Ok(TenantRow { name, created_at: d.created_at, quota: d.quota })
}

fn cluster_row(value: &str) -> Result<ClusterRow> {
    let d: ClusterDoc = from_json("cluster", value)?;
    Ok(ClusterRow { generation: d.generation, spec: d.spec })
}

fn subnet(value: &str) -> Result<Ipv4Net> {
    value.parse().map_err(|e: ipnet::AddrParseError| Error::Corrupt { what: "host subnet", source: serde::de::Error::custom(e) })
}

fn number(what: &'static str, value: Option<String>) -> Result<u64> {
    value.map_or(Ok(0), |v| from_json(what, &v))
}

/// [`Tx`] over a [`Kv`].
pub struct Typed<'a>(pub &'a dyn Kv);

impl Typed<'_> {
    fn all(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.0.scan(prefix, None, usize::MAX)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, what: &'static str, key: &str) -> Result<Option<T>> {
        self.0.get(key)?.map(|v| from_json(what, &v)).transpose()
    }

    fn tokens_where(&self, keep: impl Fn(&TokenInfo) -> bool) -> Result<Vec<TokenDoc>> {
        let mut out = Vec::new();
        for (_, v) in self.all("tokens/")? {
            let d: TokenDoc = from_json("token", &v)?;
            if keep(&d.info) {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn revoke_where(&self, keep: impl Fn(&TokenInfo) -> bool) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for mut d in self.tokens_where(|t| !t.revoked && keep(t))? {
            d.info.revoked = true;
            self.0.put(&key("tokens", &[&d.info.id]), to_json(&d))?;
            ids.push(d.info.id);
        }
        Ok(ids)
    }
}

impl Tx for Typed<'_> {
    fn revision(&self) -> Result<u64> {
        number("revision", self.0.get("meta/revision")?)
    }

    fn bump_revision(&self) -> Result<u64> {
        let next = self.revision()? + 1;
        self.0.put("meta/revision", to_json(&next))?;
        Ok(next)
    }

    fn upsert_host(&self, info: &HostInfo, now_ms: u64) -> Result<bool> {
        let k = key("hosts", &[&info.id]);
        let old: Option<HostDoc> = self.json("host", &k)?;
        let new = old.is_none();
        let doc = match old {
            Some(d) => HostDoc { info: info.clone(), last_seen_ms: now_ms, ..d },
            None => HostDoc { info: info.clone(), registered_ms: now_ms, last_seen_ms: now_ms, cordoned: false, drain_since_ms: None },
        };
        self.0.put(&k, to_json(&doc))?;
        Ok(new)
    }

    fn host(&self, id: &str) -> Result<Option<HostRow>> {
        self.0.get(&key("hosts", &[id]))?.map(|v| host_row(&v)).transpose()
    }

    fn hosts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<HostRow>> {
        let after = after.map(|a| key("hosts", &[a]));
        self.0.scan("hosts/", after.as_deref(), limit)?.iter().map(|(_, v)| host_row(v)).collect()
    }

    fn set_host_schedule(&self, host: &str, cordoned: bool, drain_since_ms: Option<u64>) -> Result<bool> {
        let k = key("hosts", &[host]);
        let Some(d) = self.json::<HostDoc>("host", &k)? else { return Ok(false) };
        self.0.put(&k, to_json(&HostDoc { cordoned, drain_since_ms, ..d }))?;
        Ok(true)
    }

    fn delete_host(&self, host: &str) -> Result<Vec<String>> {
        if let Some(s) = self.subnets_of(host)? {
            self.0.delete(&key("subnet-owners", &[&s.to_string()]))?;
        }
        for table in ["subnets", "host-logs", "host-conditions", "hosts"] {
            self.0.delete(&key(table, &[host]))?;
        }
        for table in ["observed", "purge"] {
            for (k, _) in self.all(&prefix(table, &[host]))? {
                self.0.delete(&k)?;
            }
        }
        self.revoke_where(|t| t.host.as_deref() == Some(host))
    }

    fn put_log_endpoint(&self, host: &str, ep: &LogEndpoint) -> Result<()> {
        self.0.put(&key("host-logs", &[host]), to_json(ep))
    }

    fn log_endpoint(&self, host: &str) -> Result<Option<LogEndpoint>> {
        self.json("log endpoint", &key("host-logs", &[host]))
    }

    fn log_endpoints(&self) -> Result<HashMap<String, LogEndpoint>> {
        let mut out = HashMap::new();
        for (k, v) in self.all("host-logs/")? {
            out.insert(parts(&k).pop().ok_or_else(|| bad_key(&k))?, from_json("log endpoint", &v)?);
        }
        Ok(out)
    }

    fn set_conditions(&self, host: &str, conditions: &[String]) -> Result<()> {
        let k = key("host-conditions", &[host]);
        if conditions.is_empty() { self.0.delete(&k) } else { self.0.put(&k, to_json(&conditions)) }
    }

    fn conditions(&self) -> Result<HashMap<String, Vec<String>>> {
        let mut out = HashMap::new();
        for (k, v) in self.all("host-conditions/")? {
            let host = parts(&k).pop().ok_or_else(|| bad_key(&k))?;
            out.insert(host, from_json("host conditions", &v)?);
        }
        Ok(out)
    }

    fn replace_observed(&self, host: &str, observed: &[Observed]) -> Result<()> {
        for (k, _) in self.all(&prefix("observed", &[host]))? {
            self.0.delete(&k)?;
        }
        for o in observed {
            let i = &o.instance;
            self.0.put(&key("observed", &[host, &i.tenant, &i.cluster, &i.name]), to_json(o))?;
        }
        Ok(())
    }

    fn observed(&self) -> Result<HashMap<(InstanceRef, String), Observed>> {
        let mut out = HashMap::new();
        for (k, v) in self.all("observed/")? {
            let p = parts(&k);
            let (Some(host), Some(i)) = (p.first(), instance_ref(&p[1.min(p.len())..])) else { return Err(bad_key(&k)) };
            out.insert((i, host.clone()), from_json("observed state", &v)?);
        }
        Ok(out)
    }

    fn subnets(&self) -> Result<BTreeMap<String, Ipv4Net>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.all("subnets/")? {
            out.insert(parts(&k).pop().ok_or_else(|| bad_key(&k))?, subnet(&v)?);
        }
        Ok(out)
    }

    fn subnets_of(&self, host: &str) -> Result<Option<Ipv4Net>> {
        self.0.get(&key("subnets", &[host]))?.map(|v| subnet(&v)).transpose()
    }

    fn put_subnet(&self, host: &str, subnet: Ipv4Net) -> Result<()> {
        if self.0.get(&key("hosts", &[host]))?.is_none() {
            return Err(Error::Conflict(format!("cannot lease subnet {subnet} to host {host}: no such host")));
        }
        let owner_key = key("subnet-owners", &[&subnet.to_string()]);
        if let Some(owner) = self.0.get(&owner_key)?.filter(|o| o != host) {
            return Err(Error::Conflict(format!("subnet {subnet} is leased to host {owner}")));
        }
        if let Some(old) = self.subnets_of(host)?.filter(|old| *old != subnet) {
            self.0.delete(&key("subnet-owners", &[&old.to_string()]))?;
        }
        self.0.put(&owner_key, host.to_string())?;
        self.0.put(&key("subnets", &[host]), subnet.to_string())
    }

    fn insert_tenant(&self, name: &str, quota: &Quota, now_s: u64) -> Result<bool> {
        let k = key("tenants", &[name]);
        if self.0.get(&k)?.is_some() {
            return Ok(false);
        }
        self.0.put(&k, to_json(&TenantDoc { created_at: now_s, quota: quota.clone() }))?;
        Ok(true)
    }

    fn tenant(&self, name: &str) -> Result<Option<TenantRow>> {
        let k = key("tenants", &[name]);
        self.0.get(&k)?.map(|v| tenant_row(&k, &v)).transpose()
    }

    fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<TenantRow>> {
        let after = after.map(|a| key("tenants", &[a]));
        self.0.scan("tenants/", after.as_deref(), limit)?.iter().map(|(k, v)| tenant_row(k, v)).collect()
    }

    fn set_quota(&self, name: &str, quota: &Quota) -> Result<bool> {
        let k = key("tenants", &[name]);
        let Some(d) = self.json::<TenantDoc>("tenant", &k)? else { return Ok(false) };
        self.0.put(&k, to_json(&TenantDoc { quota: quota.clone(), ..d }))?;
        Ok(true)
    }

    fn delete_tenant(&self, name: &str) -> Result<()> {
        if !self.0.scan(&prefix("clusters", &[name]), None, 1)?.is_empty() {
            return Err(Error::Conflict(format!("tenant {name} still owns clusters")));
        }
        self.revoke_where(|t| t.tenant.as_deref() == Some(name))?;
        self.0.delete(&key("tenants", &[name]))
    }

    fn cluster(&self, tenant: &str, name: &str) -> Result<Option<ClusterRow>> {
        self.0.get(&key("clusters", &[tenant, name]))?.map(|v| cluster_row(&v)).transpose()
    }

    fn clusters_page(&self, tenant: Option<&str>, after: Option<ClusterKey<'_>>, limit: usize) -> Result<Vec<ClusterRow>> {
        let scope = match tenant {
            Some(t) => prefix("clusters", &[t]),
            None => "clusters/".to_string(),
        };
        let mut rows = self.all(&scope)?.iter().map(|(_, v)| cluster_row(v)).collect::<Result<Vec<_>>>()?;
        rows.sort_by(|a, b| (&a.spec.tenant, &a.spec.name).cmp(&(&b.spec.tenant, &b.spec.name)));
        Ok(rows
            .into_iter()
            .filter(|r| after.is_none_or(|(t, n)| (r.spec.tenant.as_str(), r.spec.name.as_str()) > (t, n)))
            .take(limit)
            .collect())
    }

    fn cluster_count(&self, tenant: &str) -> Result<u64> {
        Ok(self.all(&prefix("clusters", &[tenant]))?.len() as u64)
    }

    fn put_cluster(&self, generation: u64, spec: &ClusterSpec) -> Result<()> {
        super::touch(None, Some((&spec.tenant, &spec.name)));
        if self.0.get(&key("tenants", &[&spec.tenant]))?.is_none() {
            return Err(Error::Conflict(format!("cannot store cluster {}/{}: no tenant {}", spec.tenant, spec.name, spec.tenant)));
        }
        self.0.put(&key("clusters", &[&spec.tenant, &spec.name]), to_json(&ClusterDoc { generation, spec: spec.clone() }))
    }

    fn delete_cluster(&self, tenant: &str, name: &str) -> Result<()> {
        super::touch(None, Some((tenant, name)));
        if !self.0.scan(&prefix("instances", &[tenant, name]), None, 1)?.is_empty() {
            return Err(Error::Conflict(format!("cluster {tenant}/{name} still has instances")));
        }
        for (k, _) in self.all(&prefix("leaving", &[tenant, name]))? {
            self.0.delete(&k)?;
        }
        for (k, _) in self.all("observed/")? {
            if let [_, t, c, _] = parts(&k).as_slice()
                && t == tenant
                && c == name
            {
                self.0.delete(&k)?;
            }
        }
        self.0.delete(&key("clusters", &[tenant, name]))
    }

    fn instances(&self, cluster: Option<ClusterKey<'_>>) -> Result<Vec<Instance>> {
        let scope = match cluster {
            Some((t, c)) => prefix("instances", &[t, c]),
            None => "instances/".to_string(),
        };
        Ok(sorted(self.all(&scope)?.iter().map(|(k, v)| instance(k, v)).collect::<Result<_>>()?))
    }

    fn instances_of_tenant(&self, tenant: &str) -> Result<Vec<Instance>> {
        Ok(sorted(self.all(&prefix("instances", &[tenant]))?.iter().map(|(k, v)| instance(k, v)).collect::<Result<_>>()?))
    }

    fn instances_on_host(&self, host: &str) -> Result<Vec<Instance>> {
        let rows = self.all(&prefix("instances-by-host", &[host]))?;
        Ok(sorted(rows.iter().map(|(k, v)| instance(k, v)).collect::<Result<_>>()?))
    }

    fn put_instance(&self, i: &Instance) -> Result<()> {
        let k = instance_key(&i.instance);
        let old: Option<InstanceDoc> = self.json("instance", &k)?;
        super::touch(old.as_ref().and_then(|o| o.host.as_deref()), Some((&i.instance.tenant, &i.instance.cluster)));
        super::touch(i.host.as_deref(), None);
        let doc = match &old {
            None => {
                let (t, c) = (&i.instance.tenant, &i.instance.cluster);
                if self.0.get(&key("clusters", &[t, c]))?.is_none() {
                    return Err(Error::Conflict(format!("cannot store instance {}: no cluster {t}/{c}", i.instance)));
                }
                InstanceDoc {
                    role: i.role,
                    ordinal: i.ordinal,
                    host: i.host.clone(),
                    pending: i.pending.clone(),
                    cpu: i.cpu.0,
                    memory: i.memory.0,
                    placement: u64::from(i.host.is_some()),
                }
            }
            Some(o) => {
                let moved = i.host.is_some() && i.host != o.host;
                InstanceDoc {
                    role: o.role,
                    ordinal: o.ordinal,
                    host: i.host.clone(),
                    pending: i.pending.clone(),
                    cpu: i.cpu.0,
                    memory: i.memory.0,
                    placement: o.placement + u64::from(moved),
                }
            }
        };
        if let Some(old_host) = old.as_ref().and_then(|o| o.host.as_deref()).filter(|h| i.host.as_deref() != Some(*h)) {
            self.0.delete(&by_host_key(old_host, &i.instance))?;
        }
        let value = to_json(&doc);
        if let Some(h) = &doc.host {
            self.0.put(&by_host_key(h, &i.instance), value.clone())?;
        }
        self.0.put(&k, value)
    }

    fn delete_instance(&self, i: &InstanceRef) -> Result<()> {
        self.delete_phase(i)?;
        let k = instance_key(i);
        if let Some(h) = self.json::<InstanceDoc>("instance", &k)?.and_then(|d| d.host) {
            super::touch(Some(&h), None);
            self.0.delete(&by_host_key(&h, i))?;
        }
        self.0.delete(&k)
    }

    fn leaving(&self, cluster: Option<ClusterKey<'_>>) -> Result<BTreeMap<InstanceRef, Phase>> {
        let scope = match cluster {
            Some((t, c)) => prefix("leaving", &[t, c]),
            None => "leaving/".to_string(),
        };
        let mut out = BTreeMap::new();
        for (k, v) in self.all(&scope)? {
            out.insert(instance_ref(&parts(&k)).ok_or_else(|| bad_key(&k))?, from_json("leaving phase", &v)?);
        }
        Ok(out)
    }

    fn put_phase(&self, i: &InstanceRef, phase: &Phase) -> Result<()> {
        super::touch(None, Some((&i.tenant, &i.cluster)));
        self.0.put(&key("leaving", &[&i.tenant, &i.cluster, &i.name]), to_json(phase))
    }

    fn delete_phase(&self, i: &InstanceRef) -> Result<()> {
        super::touch(None, Some((&i.tenant, &i.cluster)));
        self.0.delete(&key("leaving", &[&i.tenant, &i.cluster, &i.name]))
    }

    fn put_purge(&self, host: &str, i: &InstanceRef) -> Result<()> {
        super::touch(Some(host), None);
        self.0.put(&key("purge", &[host, &i.tenant, &i.cluster, &i.name]), "{}".into())
    }

    fn purges(&self, host: &str) -> Result<Vec<InstanceRef>> {
        let mut out = Vec::new();
        for (k, _) in self.all(&prefix("purge", &[host]))? {
            out.push(instance_ref(&parts(&k)[1..]).ok_or_else(|| bad_key(&k))?);
        }
        out.sort();
        Ok(out)
    }

    fn purge_pending(&self, i: &InstanceRef) -> Result<bool> {
        Ok(self.all("purge/")?.iter().any(|(k, _)| parts(k).get(1..).and_then(instance_ref).as_ref() == Some(i)))
    }

    fn delete_purge(&self, host: &str, i: &InstanceRef) -> Result<()> {
        self.0.delete(&key("purge", &[host, &i.tenant, &i.cluster, &i.name]))
    }

    fn all_purges(&self) -> Result<Vec<(String, InstanceRef)>> {
        let mut out = Vec::new();
        for (k, _) in self.all("purge/")? {
            let p = parts(&k);
            let (Some(host), Some(i)) = (p.first(), instance_ref(&p[1.min(p.len())..])) else { return Err(bad_key(&k)) };
            out.push((host.clone(), i));
        }
        out.sort();
        Ok(out)
    }

    fn insert_token(&self, token: &TokenInfo, hash: &str) -> Result<()> {
        let (k, hk) = (key("tokens", &[&token.id]), key("token-hashes", &[hash]));
        if self.0.get(&k)?.is_some() || self.0.get(&hk)?.is_some() {
            return Err(Error::Conflict(format!("token {} (or its secret) is already stored", token.id)));
        }
        self.0.put(&hk, token.id.clone())?;
        self.0.put(&k, to_json(&TokenDoc { info: token.clone(), hash: hash.to_string() }))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let Some(id) = self.0.get(&key("token-hashes", &[hash]))? else { return Ok(None) };
        Ok(self.token(&id)?.filter(|t| !t.revoked))
    }

    fn token(&self, id: &str) -> Result<Option<TokenInfo>> {
        Ok(self.json::<TokenDoc>("token", &key("tokens", &[id]))?.map(|d| d.info))
    }

    fn tokens(&self, after: Option<&str>, limit: usize) -> Result<Vec<TokenInfo>> {
        let after = after.map(|a| key("tokens", &[a]));
        let rows = self.0.scan("tokens/", after.as_deref(), limit)?;
        rows.iter().map(|(_, v)| from_json::<TokenDoc>("token", v).map(|d| d.info)).collect()
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        let k = key("tokens", &[id]);
        let Some(mut d) = self.json::<TokenDoc>("token", &k)? else { return Ok(false) };
        d.info.revoked = true;
        self.0.put(&k, to_json(&d))?;
        Ok(true)
    }

    fn has_live_admin(&self) -> Result<bool> {
        Ok(!self.tokens_where(|t| !t.revoked && t.scope == herd_api::wire::Scope::Admin)?.is_empty())
    }

    fn token_hashes(&self) -> Result<BTreeMap<String, String>> {
        self.tokens_where(|_| true).map(|v| v.into_iter().map(|d| (d.info.id, d.hash)).collect())
    }

    fn record_audit(&self, at_ms: u64, ch: &audit::Change<'_>, detail: Option<&str>) -> Result<()> {
        let id = number("audit number", self.0.get("meta/audit")?)? + 1;
        self.0.put("meta/audit", to_json(&id))?;
        let entry = AuditEntry {
            id,
            at: at_ms,
            actor: ch.actor.into(),
            action: ch.action.into(),
            resource: ch.resource.into(),
            before_generation: ch.before,
            after_generation: ch.after,
            detail: detail.map(Into::into),
        };
        self.0.put(&format!("audit/{id:020}"), to_json(&entry))
    }

    fn audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let after = after.map(|a| format!("audit/{a:020}"));
        self.0.scan("audit/", after.as_deref(), limit)?.iter().map(|(_, v)| from_json("audit entry", v)).collect()
    }

    fn idempotent(&self, actor: &str, key_: &str, now_ms: u64) -> Result<Option<idempotency::Stored>> {
        let d: Option<IdempotencyDoc> = self.json("idempotent answer", &key("idempotency", &[actor, key_]))?;
        Ok(d.filter(|d| d.at_ms >= now_ms.saturating_sub(idempotency::KEEP_MS))
            .map(|d| idempotency::Stored { fingerprint: d.fingerprint, status: d.status, body: d.body }))
    }

    fn put_idempotent(&self, actor: &str, key_: &str, stored: &idempotency::Stored, now_ms: u64) -> Result<()> {
        let cutoff = now_ms.saturating_sub(idempotency::KEEP_MS);
        for (k, v) in self.all("idempotency/")? {
            if from_json::<IdempotencyDoc>("idempotent answer", &v)?.at_ms < cutoff {
                self.0.delete(&k)?;
            }
        }
        let doc = IdempotencyDoc { fingerprint: stored.fingerprint.clone(), status: stored.status, body: stored.body.clone(), at_ms: now_ms };
        self.0.put(&key("idempotency", &[actor, key_]), to_json(&doc))
    }

    fn idempotent_answers(&self) -> Result<Vec<idempotency::Row>> {
        let mut out = Vec::new();
        for (k, v) in self.all("idempotency/")? {
            let (Some(actor), Some(key_)) = (parts(&k).first().cloned(), parts(&k).get(1).cloned()) else { return Err(bad_key(&k)) };
            let d: IdempotencyDoc = from_json("idempotent answer", &v)?;
            let stored = idempotency::Stored { fingerprint: d.fingerprint, status: d.status, body: d.body };
            out.push(idempotency::Row { actor, key: key_, stored, at_ms: d.at_ms });
        }
        out.sort_by(|a, b| (&a.actor, &a.key).cmp(&(&b.actor, &b.key)));
        Ok(out)
    }
}

/// Every key and value of `snapshot` in this layout (what [`super::migrate`] writes): the
/// objects with the counters the typed operations keep (placements, audit numbers, the
/// revision) as they are, and the indexes (hosts' instances, subnet owners, token hashes).
pub fn documents(s: &super::migrate::Snapshot) -> Vec<(String, String)> {
    let mut out = vec![("meta/revision".to_string(), to_json(&s.revision))];
    for h in &s.hosts {
        let doc = HostDoc {
            info: h.info.clone(),
            registered_ms: h.registered_ms,
            last_seen_ms: h.last_seen_ms,
            cordoned: h.cordoned,
            drain_since_ms: h.drain_since_ms,
        };
        out.push((key("hosts", &[&h.info.id]), to_json(&doc)));
    }
    for (host, ep) in &s.log_endpoints {
        out.push((key("host-logs", &[host]), to_json(ep)));
    }
    for (host, c) in &s.conditions {
        out.push((key("host-conditions", &[host]), to_json(c)));
    }
    for ((i, host), o) in &s.observed {
        out.push((key("observed", &[host, &i.tenant, &i.cluster, &i.name]), to_json(o)));
    }
    for (host, net) in &s.subnets {
        out.push((key("subnets", &[host]), net.to_string()));
        out.push((key("subnet-owners", &[&net.to_string()]), host.clone()));
    }
    for t in &s.tenants {
        out.push((key("tenants", &[&t.name]), to_json(&TenantDoc { created_at: t.created_at, quota: t.quota.clone() })));
    }
    for c in &s.clusters {
        out.push((key("clusters", &[&c.spec.tenant, &c.spec.name]), to_json(&ClusterDoc { generation: c.generation, spec: c.spec.clone() })));
    }
    for i in &s.instances {
        let doc = InstanceDoc {
            role: i.role,
            ordinal: i.ordinal,
            host: i.host.clone(),
            pending: i.pending.clone(),
            cpu: i.cpu.0,
            memory: i.memory.0,
            placement: i.placement,
        };
        let value = to_json(&doc);
        if let Some(h) = &i.host {
            out.push((by_host_key(h, &i.instance), value.clone()));
        }
        out.push((instance_key(&i.instance), value));
    }
    for (i, phase) in &s.leaving {
        out.push((key("leaving", &[&i.tenant, &i.cluster, &i.name]), to_json(phase)));
    }
    for (host, i) in &s.purges {
        out.push((key("purge", &[host, &i.tenant, &i.cluster, &i.name]), "{}".into()));
    }
    for (t, hash) in &s.tokens {
        out.push((key("token-hashes", &[hash]), t.id.clone()));
        out.push((key("tokens", &[&t.id]), to_json(&TokenDoc { info: t.clone(), hash: hash.clone() })));
    }
    let mut last = 0;
    for e in &s.audit {
        let id = e["id"].as_u64().unwrap_or_default();
        last = last.max(id);
        out.push((format!("audit/{id:020}"), e.to_string()));
    }
    out.push(("meta/audit".into(), to_json(&last)));
    for r in &s.idempotent {
        let doc = IdempotencyDoc { fingerprint: r.stored.fingerprint.clone(), status: r.stored.status, body: r.stored.body.clone(), at_ms: r.at_ms };
        out.push((key("idempotency", &[&r.actor, &r.key]), to_json(&doc)));
    }
    out
}
