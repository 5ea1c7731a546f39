//! `herd-orchestrator migrate --from sqlite:PATH --to etcd:URL,...`: copies every object of a
//! SQLite store into an empty etcd prefix, then reads both back and compares them object by
//! object ([`Snapshot`]); any difference fails the migration, naming what differs.
//!
//! The copy writes the etcd layout ([`super::kv::documents`]) as it is, in transactions of at
//! most [`super::etcd::CHUNK`] keys: placement counters, audit numbers, registration times and
//! the revision are kept, which the typed operations (that count them) would not. The source
//! orchestrator must be stopped (its data directory's lock is taken), and the target prefix
//! must be empty.

use std::collections::BTreeMap;

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::wire::{LogEndpoint, Observed, TokenInfo};
use ipnet::Ipv4Net;

use super::{ClusterRow, HostRow, TenantRow, Tx, etcd::Etcd, idempotency, sqlite::Sqlite};
use crate::error::{Error, Result};
use crate::reconciler::Instance;

/// Everything a store holds, in a canonical order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub revision: u64,
    pub hosts: Vec<HostRow>,
    pub log_endpoints: BTreeMap<String, LogEndpoint>,
    pub conditions: BTreeMap<String, Vec<String>>,
    pub observed: BTreeMap<(InstanceRef, String), Observed>,
    pub subnets: BTreeMap<String, Ipv4Net>,
    pub tenants: Vec<TenantRow>,
    pub clusters: Vec<ClusterRow>,
    pub instances: Vec<Instance>,
    pub leaving: BTreeMap<InstanceRef, Phase>,
    pub purges: Vec<(String, InstanceRef)>,
    /// Each token with the hash of its secret.
    pub tokens: Vec<(TokenInfo, String)>,
    /// The audit trail as JSON (its entries have no `PartialEq`).
    pub audit: Vec<serde_json::Value>,
    pub idempotent: Vec<idempotency::Row>,
}

impl Snapshot {
    /// Reads everything `c` holds.
    pub fn of(c: &dyn Tx) -> Result<Self> {
        let hashes = c.token_hashes()?;
        let tokens = c
            .tokens(None, usize::MAX)?
            .into_iter()
            .map(|t| {
                let hash = hashes.get(&t.id).cloned().unwrap_or_default();
                (t, hash)
            })
            .collect();
        let audit = c.audit(None, usize::MAX)?.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
        Ok(Snapshot {
            revision: c.revision()?,
            hosts: c.hosts()?,
            log_endpoints: c.log_endpoints()?.into_iter().collect(),
            conditions: c.conditions()?.into_iter().collect(),
            observed: c.observed()?.into_iter().collect(),
            subnets: c.subnets()?,
            tenants: c.tenants(None, usize::MAX)?,
            clusters: c.clusters(None)?,
            instances: c.instances(None)?,
            leaving: c.leaving(None)?,
            purges: c.all_purges()?,
            tokens,
            audit,
            idempotent: c.idempotent_answers()?,
        })
    }

    /// How many objects of each kind, for the report.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("hosts", self.hosts.len()),
            ("log endpoints", self.log_endpoints.len()),
            ("host conditions", self.conditions.len()),
            ("observed instances", self.observed.len()),
            ("subnet leases", self.subnets.len()),
            ("tenants", self.tenants.len()),
            ("clusters", self.clusters.len()),
            ("instances", self.instances.len()),
            ("leaving phases", self.leaving.len()),
            ("purges", self.purges.len()),
            ("tokens", self.tokens.len()),
            ("audit entries", self.audit.len()),
            ("idempotent answers", self.idempotent.len()),
        ]
    }

    /// The kinds of object that differ between `self` and `other`.
    pub fn differences(&self, other: &Snapshot) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |what, same: bool| {
            if !same {
                out.push(what);
            }
        };
        check("revision", self.revision == other.revision);
        check("hosts", self.hosts == other.hosts);
        check("log endpoints", self.log_endpoints == other.log_endpoints);
        check("host conditions", self.conditions == other.conditions);
        check("observed instances", self.observed == other.observed);
        check("subnet leases", self.subnets == other.subnets);
        check("tenants", self.tenants == other.tenants);
        check("clusters", self.clusters == other.clusters);
        check("instances", self.instances == other.instances);
        check("leaving phases", self.leaving == other.leaving);
        check("purges", self.purges == other.purges);
        check("tokens", self.tokens == other.tokens);
        check("audit entries", self.audit == other.audit);
        check("idempotent answers", self.idempotent == other.idempotent);
        out
    }
}

/// Copies `from` into the empty etcd store `to` and verifies the copy; returns what was copied.
pub fn sqlite_to_etcd(from: &Sqlite, to: &Etcd) -> Result<Snapshot> {
    if !to.is_empty()? {
        return Err(Error::Conflict(format!(
            "the etcd prefix {} already holds herd objects: migrate into an empty prefix (--etcd-prefix) or remove them first",
            to.prefix()
        )));
    }
    let source = from.read_now(Snapshot::of)?;
    to.put_all(super::kv::documents(&source))?;
    let copied = to.read_now(Snapshot::of)?;
    let differ = source.differences(&copied);
    if !differ.is_empty() {
        return Err(Error::Conflict(format!(
            "the copy in etcd differs from the SQLite store in: {} (the SQLite store is unchanged; clear the etcd prefix and retry)",
            differ.join(", ")
        )));
    }
    Ok(source)
}
