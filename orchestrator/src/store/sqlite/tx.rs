//! The SQLite store's queries: [`Tx`] over one connection inside the writer's transaction
//! (a write) or a reader's read transaction (a read).

use std::collections::{BTreeMap, HashMap};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{AuditEntry, HostInfo, LogEndpoint, Observed, Quota, TokenInfo};
use herd_api::{ClusterSpec, Role};
use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::reconciler::Instance;
use crate::store::usage::{Part, Usage};
use crate::store::{ClusterKey, ClusterRow, HostRow, TenantRow, Tx, audit, from_json, idempotency, to_json, tokens, touch};
use std::sync::Mutex;

/// Statements through the connection's statement cache: each is parsed once per connection,
/// not per call (`execute_batch` for the writer's savepoints alone was 12 % of the
/// orchestrator's CPU while 2,000 hosts a second registered).
pub(super) trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// [`Tx`] over a SQLite connection with a transaction open; the writer's also keeps the
/// store's [`Usage`] (reads and tests pass `None`).
pub struct SqliteTx<'a>(pub(super) &'a Connection, pub(super) Option<&'a Mutex<Kept>>);

/// The writer's [`Usage`] (see [`crate::store::usage`]): `None` until summed, and after a
/// write that moved it failed.
#[derive(Debug, Default)]
pub(super) struct Kept {
    pub usage: Option<Usage>,
    /// How many times a write moved it (a failed write that moved it drops it).
    pub moves: u64,
}

/// What an instance row held before a write changed it.
struct Before {
    host: Option<String>,
    role: String,
    cpu: i64,
    memory: i64,
}

impl SqliteTx<'_> {
    /// Touches the tenant of `i` and the host it is placed on now (see [`crate::store::Touched`]);
    /// returns what its row held.
    fn touch_instance(&self, i: &InstanceRef) -> Result<Option<Before>> {
        let mut stmt = self.0.prepare_cached("SELECT host_id, role, cpu, memory FROM instances WHERE tenant = ?1 AND cluster = ?2 AND name = ?3")?;
        let before = stmt
            .query_row([&i.tenant, &i.cluster, &i.name], |r| Ok(Before { host: r.get(0)?, role: r.get(1)?, cpu: r.get(2)?, memory: r.get(3)? }))
            .optional()?;
        touch(before.as_ref().and_then(|b| b.host.as_deref()), Some((&i.tenant, &i.cluster)));
        Ok(before)
    }

    /// Moves the writer's [`Usage`] (if summed) from what `i`'s row held to what it holds now.
    fn move_usage(&self, i: &InstanceRef, before: Option<&Before>, now: Option<&Instance>) -> Result<()> {
        let Some(kept) = self.1 else { return Ok(()) };
        let mut kept = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.moves += 1;
        let Some(usage) = kept.usage.as_mut() else { return Ok(()) };
        if let Some(b) = before
            && let Some(host) = b.host.as_deref()
        {
            let part = Part { host, tenant: &i.tenant, cluster: &i.cluster, role: parse_role(&b.role)?, cpu: b.cpu as u64, memory: b.memory as u64 };
            usage.remove(&part);
        }
        if let Some(part) = now.and_then(Part::of) {
            usage.add(&part);
        }
        Ok(())
    }
}

/// Writes instance `i`'s row with `sql`: [`INSERT_INSTANCE`] or [`UPSERT_INSTANCE`].
fn write_instance(c: &Connection, sql: &str, i: &Instance) -> Result<()> {
    let (cpu, memory) = (i.cpu.0 as i64, i.memory.0 as i64);
    c.exec(sql, params![i.instance.tenant, i.instance.cluster, i.instance.name, i.role.as_str(), i.ordinal, i.host, i.pending, cpu, memory])?;
    Ok(())
}

macro_rules! insert_instance {
    () => {
        "INSERT INTO instances (tenant, cluster, name, role, ordinal, host_id, pending, cpu, memory, placement)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?6 IS NOT NULL)"
    };
}

/// A new instance's row (one there already breaks the key).
const INSERT_INSTANCE: &str = insert_instance!();

/// An instance's row, new or updated: its placement counts a landing on another host.
const UPSERT_INSTANCE: &str = concat!(
    insert_instance!(),
    " ON CONFLICT(tenant, cluster, name) DO UPDATE SET
       placement = placement + (excluded.host_id IS NOT NULL AND excluded.host_id IS NOT host_id),
       host_id = excluded.host_id, pending = excluded.pending,
       cpu = excluded.cpu, memory = excluded.memory"
);

/// Stores one host's report of one instance (the rows of a host's report: see
/// [`Tx::replace_observed`] and [`Tx::update_observed`]).
const PUT_OBSERVED: &str = "INSERT OR REPLACE INTO observed (tenant, cluster, name, host_id, state) VALUES (?1, ?2, ?3, ?4, ?5)";

impl Tx for SqliteTx<'_> {
    fn revision(&self) -> Result<u64> {
        super::revision(self.0)
    }

    fn batch(&self) -> Result<Option<u64>> {
        super::batch(self.0).map(Some)
    }

    fn bump_revision(&self) -> Result<u64> {
        let c = self.0;
        c.exec(
            "INSERT INTO meta (key, value) VALUES ('revision', 1)
             ON CONFLICT(key) DO UPDATE SET value = value + 1",
            [],
        )?;
        self.revision()
    }

    fn set_host_schedule(&self, host: &str, cordoned: bool, drain_since_ms: Option<u64>) -> Result<bool> {
        let c = self.0;
        let n = c.exec(
            "UPDATE hosts SET cordoned = ?2, drain_since_ms = ?3 WHERE id = ?1",
            params![host, cordoned, drain_since_ms.map(|ms| ms as i64)],
        )?;
        Ok(n == 1)
    }

    fn host(&self, id: &str) -> Result<Option<HostRow>> {
        let c = self.0;
        let mut stmt = c.prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE id = ?1"))?;
        let row = stmt.query_row([id], host_columns).optional()?;
        row.map(host_row).transpose()
    }

    fn delete_host(&self, host: &str) -> Result<Vec<String>> {
        let c = self.0;
        for table in ["subnets", "host_logs", "host_conditions", "observed", "purge"] {
            c.exec(&format!("DELETE FROM {table} WHERE host_id = ?1"), [host])?;
        }
        c.exec("DELETE FROM hosts WHERE id = ?1", [host])?;
        let mut stmt = c.prepare_cached("SELECT id FROM tokens WHERE host = ?1 AND revoked = 0 ORDER BY id")?;
        let ids: Vec<String> = stmt.query_map([host], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        c.exec("UPDATE tokens SET revoked = 1 WHERE host = ?1", [host])?;
        Ok(ids)
    }

    fn upsert_host(&self, info: &HostInfo, now_ms: u64) -> Result<bool> {
        let c = self.0;
        let existed = c.row("SELECT 1 FROM hosts WHERE id = ?1", [&info.id], |_| Ok(())).optional()?.is_some();
        c.exec(
            "INSERT INTO hosts (id, info, registered_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen_ms = excluded.last_seen_ms",
            params![info.id, to_json(info), now_ms as i64],
        )?;
        Ok(!existed)
    }

    fn any_unplaced(&self) -> Result<bool> {
        let c = self.0;
        Ok(c.row("SELECT 1 FROM instances WHERE host_id IS NULL LIMIT 1", [], |_| Ok(())).optional()?.is_some())
    }

    fn pending_count(&self, cluster: Option<ClusterKey<'_>>) -> Result<u64> {
        let c = self.0;
        let (tenant, name) = cluster.unzip();
        let mut stmt = c.prepare_cached(
            "SELECT count(*) FROM instances WHERE host_id IS NULL AND (?1 IS NULL OR (tenant = ?1 AND cluster = ?2))",
        )?;
        Ok(stmt.query_row(params![tenant, name], |r| r.get::<_, i64>(0))? as u64)
    }

    fn cluster_count(&self, tenant: &str) -> Result<u64> {
        let c = self.0;
        Ok(c.row("SELECT count(*) FROM clusters WHERE tenant = ?1", [tenant], |r| r.get::<_, i64>(0))? as u64)
    }

    fn any_leaving(&self) -> Result<bool> {
        let c = self.0;
        Ok(c.row("SELECT 1 FROM leaving LIMIT 1", [], |_| Ok(())).optional()?.is_some())
    }

    fn put_log_endpoint(&self, host: &str, ep: &LogEndpoint) -> Result<()> {
        let c = self.0;
        c.exec(
            "INSERT INTO host_logs (host_id, url, secret) VALUES (?1, ?2, ?3)
             ON CONFLICT(host_id) DO UPDATE SET url = excluded.url, secret = excluded.secret",
            params![host, ep.url, ep.secret],
        )?;
        Ok(())
    }

    fn log_endpoint(&self, host: &str) -> Result<Option<LogEndpoint>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT url, secret FROM host_logs WHERE host_id = ?1")?;
        Ok(stmt.query_row([host], |r| Ok(LogEndpoint { url: r.get(0)?, secret: r.get(1)? })).optional()?)
    }

    fn log_endpoints(&self) -> Result<HashMap<String, LogEndpoint>> {
        let mut stmt = self.0.prepare_cached("SELECT host_id, url, secret FROM host_logs")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, LogEndpoint { url: r.get(1)?, secret: r.get(2)? })))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_conditions(&self, host: &str, conditions: &[String]) -> Result<()> {
        let c = self.0;
        if conditions.is_empty() {
            c.exec("DELETE FROM host_conditions WHERE host_id = ?1", [host])?;
        } else {
            c.exec(
                "INSERT INTO host_conditions (host_id, conditions) VALUES (?1, ?2)
                 ON CONFLICT(host_id) DO UPDATE SET conditions = excluded.conditions",
                params![host, to_json(&conditions)],
            )?;
        }
        Ok(())
    }

    fn conditions(&self) -> Result<HashMap<String, Vec<String>>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT host_id, conditions FROM host_conditions")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = HashMap::new();
        for row in rows {
            let (host, text) = row?;
            out.insert(host, from_json("host conditions", &text)?);
        }
        Ok(out)
    }

    fn hosts_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<HostRow>> {
        let c = self.0;
        let mut stmt =
            c.prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"))?;
        let limit = sql_limit(limit);
        let rows = stmt.query_map(params![after, limit], host_columns)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(host_row(row?)?);
        }
        Ok(out)
    }

    fn insert_tenant(&self, name: &str, quota: &Quota, now_s: u64) -> Result<bool> {
        let c = self.0;
        Ok(c.exec(
            "INSERT OR IGNORE INTO tenants (name, created_s, quota) VALUES (?1, ?2, ?3)",
            params![name, now_s as i64, to_json(quota)],
        )? == 1)
    }

    fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<TenantRow>> {
        let c = self.0;
        let mut stmt = c.prepare_cached(
            "SELECT name, created_s, quota FROM tenants WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, sql_limit(limit)], tenant_columns)?;
        rows.map(|r| tenant_row(r?)).collect()
    }

    fn tenant(&self, name: &str) -> Result<Option<TenantRow>> {
        let c = self.0;
        let row = c.row("SELECT name, created_s, quota FROM tenants WHERE name = ?1", [name], tenant_columns).optional()?;
        row.map(tenant_row).transpose()
    }

    fn quotas(&self) -> Result<BTreeMap<String, Quota>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT name, quota FROM tenants")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, quota) = row?;
            out.insert(name, from_json("tenant quota", &quota)?);
        }
        Ok(out)
    }

    fn tenant_exists(&self, name: &str) -> Result<bool> {
        let c = self.0;
        Ok(c.row("SELECT 1 FROM tenants WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
    }

    fn set_quota(&self, name: &str, quota: &Quota) -> Result<bool> {
        let c = self.0;
        Ok(c.exec("UPDATE tenants SET quota = ?2 WHERE name = ?1", params![name, to_json(quota)])? == 1)
    }

    fn delete_tenant(&self, name: &str) -> Result<()> {
        let c = self.0;
        c.exec("UPDATE tokens SET revoked = 1 WHERE tenant = ?1", [name])?;
        c.exec("DELETE FROM tenants WHERE name = ?1", [name])?;
        Ok(())
    }

    fn cluster(&self, tenant: &str, name: &str) -> Result<Option<ClusterRow>> {
        let c = self.0;
        let row: Option<(i64, String)> = c
            .row("SELECT generation, spec FROM clusters WHERE tenant = ?1 AND name = ?2", [tenant, name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        row.map(|(generation, spec)| Ok(ClusterRow { generation: generation as u64, spec: from_json("cluster spec", &spec)? }))
            .transpose()
    }

    fn clusters_page(&self, tenant: Option<&str>, after: Option<ClusterKey<'_>>, limit: usize) -> Result<Vec<ClusterRow>> {
        let c = self.0;
        let (after_tenant, after_name) = after.unzip();
        let mut stmt = c.prepare_cached(
            "SELECT generation, spec FROM clusters
             WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR (tenant, name) > (?2, ?3))
             ORDER BY tenant, name LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![tenant, after_tenant, after_name, sql_limit(limit)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (generation, spec) = row?;
            out.push(ClusterRow { generation: generation as u64, spec: from_json("cluster spec", &spec)? });
        }
        Ok(out)
    }

    fn put_cluster(&self, generation: u64, spec: &ClusterSpec) -> Result<()> {
        let c = self.0;
        touch(None, Some((&spec.tenant, &spec.name)));
        c.exec(
            "INSERT INTO clusters (tenant, name, generation, spec) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tenant, name) DO UPDATE SET generation = excluded.generation, spec = excluded.spec",
            params![spec.tenant, spec.name, generation as i64, to_json(spec)],
        )?;
        Ok(())
    }

    fn delete_cluster(&self, tenant: &str, name: &str) -> Result<()> {
        let c = self.0;
        touch(None, Some((tenant, name)));
        c.exec("DELETE FROM leaving WHERE tenant = ?1 AND cluster = ?2", [tenant, name])?;
        c.exec("DELETE FROM observed WHERE tenant = ?1 AND cluster = ?2", [tenant, name])?;
        c.exec("DELETE FROM clusters WHERE tenant = ?1 AND name = ?2", [tenant, name])?;
        Ok(())
    }

    fn instances(&self, cluster: Option<ClusterKey<'_>>) -> Result<Vec<Instance>> {
        let c = self.0;
        // NB: two statements, not one `WHERE (?1 IS NULL OR ...)`: planned once for any bound
        // value (`steady_plans`), that one scanned every instance of the fleet to find one
        // cluster's (a million rows for each 10,000-member cluster applied or derived).
        match cluster {
            Some((tenant, name)) => {
                let mut stmt = c.prepare_cached(&instances_of_cluster())?;
                collect_instances(&mut stmt, params![tenant, name])
            }
            None => {
                let mut stmt = c.prepare_cached(&format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY tenant, cluster, role, ordinal"))?;
                collect_instances(&mut stmt, [])
            }
        }
    }

    fn instances_of_tenant(&self, tenant: &str) -> Result<Vec<Instance>> {
        let c = self.0;
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = ?1 ORDER BY tenant, cluster, role, ordinal"
        ))?;
        collect_instances(&mut stmt, [tenant])
    }

    fn instances_on_host(&self, host: &str) -> Result<Vec<Instance>> {
        let c = self.0;
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE host_id = ?1 ORDER BY tenant, cluster, role, ordinal"
        ))?;
        collect_instances(&mut stmt, [host])
    }

    fn unplaced(&self) -> Result<Vec<Instance>> {
        let mut stmt = self.0.prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE host_id IS NULL ORDER BY tenant, cluster, role, ordinal"
        ))?;
        collect_instances(&mut stmt, [])
    }

    fn with_usage(&self, f: &mut dyn FnMut(&mut Usage)) -> Result<bool> {
        let Some(kept) = self.1 else { return Ok(false) };
        let mut kept = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.usage.is_none() {
            kept.usage = Some(Usage::of(&self.instances(None)?));
        }
        if let Some(usage) = &mut kept.usage {
            f(usage);
        }
        Ok(true)
    }

    fn put_instance(&self, i: &Instance) -> Result<()> {
        let before = self.touch_instance(&i.instance)?;
        touch(i.host.as_deref(), None);
        write_instance(self.0, UPSERT_INSTANCE, i)?;
        self.move_usage(&i.instance, before.as_ref(), Some(i))
    }

    fn put_new_instance(&self, i: &Instance) -> Result<()> {
        touch(i.host.as_deref(), Some((&i.instance.tenant, &i.instance.cluster)));
        // NB: a row there already (or no such cluster) breaks a key: a conflict.
        write_instance(self.0, INSERT_INSTANCE, i)?;
        self.move_usage(&i.instance, None, Some(i))
    }

    fn delete_instance(&self, i: &InstanceRef) -> Result<()> {
        let c = self.0;
        let before = self.touch_instance(i)?;
        self.delete_phase(i)?;
        c.exec("DELETE FROM instances WHERE tenant = ?1 AND cluster = ?2 AND name = ?3", [&i.tenant, &i.cluster, &i.name])?;
        self.move_usage(i, before.as_ref(), None)
    }

    fn leaving(&self, cluster: Option<ClusterKey<'_>>) -> Result<BTreeMap<InstanceRef, Phase>> {
        let c = self.0;
        let (tenant, name) = cluster.unzip();
        let mut stmt = c.prepare_cached(
            "SELECT tenant, cluster, name, phase FROM leaving WHERE (?1 IS NULL OR (tenant = ?1 AND cluster = ?2))",
        )?;
        let rows = stmt.query_map(params![tenant, name], |r| {
            Ok((InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }, r.get::<_, String>(3)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (instance, phase) = row?;
            out.insert(instance, from_json("leaving phase", &phase)?);
        }
        Ok(out)
    }

    fn put_phase(&self, i: &InstanceRef, phase: &Phase) -> Result<()> {
        let c = self.0;
        touch(None, Some((&i.tenant, &i.cluster)));
        c.exec(
            "INSERT INTO leaving (tenant, cluster, name, phase) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(tenant, cluster, name) DO UPDATE SET phase = excluded.phase",
            params![i.tenant, i.cluster, i.name, to_json(phase)],
        )?;
        Ok(())
    }

    fn delete_phase(&self, i: &InstanceRef) -> Result<()> {
        let c = self.0;
        touch(None, Some((&i.tenant, &i.cluster)));
        c.exec("DELETE FROM leaving WHERE tenant = ?1 AND cluster = ?2 AND name = ?3", [&i.tenant, &i.cluster, &i.name])?;
        Ok(())
    }

    fn put_purge(&self, host: &str, i: &InstanceRef) -> Result<()> {
        let c = self.0;
        touch(Some(host), None);
        c.exec(
            "INSERT OR IGNORE INTO purge (host_id, tenant, cluster, name) VALUES (?1, ?2, ?3, ?4)",
            params![host, i.tenant, i.cluster, i.name],
        )?;
        Ok(())
    }

    fn purges(&self, host: &str) -> Result<Vec<InstanceRef>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT tenant, cluster, name FROM purge WHERE host_id = ?1 ORDER BY tenant, cluster, name")?;
        let rows = stmt.query_map([host], |r| Ok(InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn purge_pending(&self, i: &InstanceRef) -> Result<bool> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT 1 FROM purge WHERE tenant = ?1 AND cluster = ?2 AND name = ?3 LIMIT 1")?;
        Ok(stmt.exists(params![i.tenant, i.cluster, i.name])?)
    }

    fn delete_purge(&self, host: &str, i: &InstanceRef) -> Result<()> {
        let c = self.0;
        c.exec(
            "DELETE FROM purge WHERE host_id = ?1 AND tenant = ?2 AND cluster = ?3 AND name = ?4",
            params![host, i.tenant, i.cluster, i.name],
        )?;
        Ok(())
    }

    fn replace_observed(&self, host: &str, observed: &[Observed]) -> Result<()> {
        let c = self.0;
        c.exec("DELETE FROM observed WHERE host_id = ?1", [host])?;
        let mut stmt = c.prepare_cached(PUT_OBSERVED)?;
        for o in observed {
            stmt.execute(params![o.instance.tenant, o.instance.cluster, o.instance.name, host, to_json(o)])?;
        }
        Ok(())
    }

    fn update_observed(&self, host: &str, before: &[Observed], now: &[Observed]) -> Result<()> {
        let c = self.0;
        let (mut put, mut gone) = (
            c.prepare_cached(PUT_OBSERVED)?,
            c.prepare_cached("DELETE FROM observed WHERE tenant = ?1 AND cluster = ?2 AND name = ?3 AND host_id = ?4")?,
        );
        let mut put = |o: &Observed| put.execute(params![o.instance.tenant, o.instance.cluster, o.instance.name, host, to_json(o)]);
        let mut gone = |o: &Observed| gone.execute(params![o.instance.tenant, o.instance.cluster, o.instance.name, host]);
        let (mut was, mut is) = (before.iter().peekable(), now.iter().peekable());
        loop {
            match (was.peek(), is.peek()) {
                (None, None) => return Ok(()),
                (Some(b), None) => {
                    gone(b)?;
                    was.next();
                }
                (None, Some(n)) => {
                    put(n)?;
                    is.next();
                }
                (Some(b), Some(n)) => match b.instance.cmp(&n.instance) {
                    std::cmp::Ordering::Less => {
                        gone(b)?;
                        was.next();
                    }
                    std::cmp::Ordering::Greater => {
                        put(n)?;
                        is.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if b != n {
                            put(n)?;
                        }
                        was.next();
                        is.next();
                    }
                },
            }
        }
    }

    fn observed(&self) -> Result<HashMap<(InstanceRef, String), Observed>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT tenant, cluster, name, host_id, state FROM observed")?;
        let rows = stmt.query_map([], |r| {
            Ok((InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (instance, host, state) = row?;
            out.insert((instance, host), from_json("observed state", &state)?);
        }
        Ok(out)
    }

    fn subnets(&self) -> Result<BTreeMap<String, Ipv4Net>> {
        let c = self.0;
        let mut stmt = c.prepare_cached("SELECT host_id, subnet FROM subnets")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (host, subnet) = row?;
            let subnet = subnet.parse().map_err(|e: ipnet::AddrParseError| Error::Corrupt {
                what: "host subnet",
                source: serde::de::Error::custom(e),
            })?;
            out.insert(host, subnet);
        }
        Ok(out)
    }

    fn subnets_of(&self, host: &str) -> Result<Option<Ipv4Net>> {
        let c = self.0;
        let s: Option<String> = c.row("SELECT subnet FROM subnets WHERE host_id = ?1", [host], |r| r.get(0)).optional()?;
        s.map(|s| {
            s.parse().map_err(|e: ipnet::AddrParseError| Error::Corrupt { what: "host subnet", source: serde::de::Error::custom(e) })
        })
        .transpose()
    }

    fn put_subnet(&self, host: &str, subnet: Ipv4Net) -> Result<()> {
        let c = self.0;
        let owner: Option<String> =
            c.row("SELECT host_id FROM subnets WHERE subnet = ?1", [subnet.to_string()], |r| r.get(0)).optional()?;
        if let Some(owner) = owner.filter(|o| o != host) {
            return Err(Error::Conflict(format!("subnet {subnet} is leased to host {owner}")));
        }
        c.exec(
            "INSERT INTO subnets (host_id, subnet) VALUES (?1, ?2) ON CONFLICT(host_id) DO UPDATE SET subnet = excluded.subnet",
            params![host, subnet.to_string()],
        )?;
        Ok(())
    }

    fn insert_token(&self, token: &TokenInfo, hash: &str) -> Result<()> {
        self.0.exec(
            "INSERT INTO tokens (id, hash, scope, tenant, description, created_s, revoked, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
            params![token.id, hash, tokens::scope_str(token.scope), token.tenant, token.description, token.created_at as i64, token.host],
        )?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
        let r = self
            .0
            .row(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked = 0"), [hash], token_columns)
            .optional()?;
        r.map(token_info).transpose()
    }

    fn token(&self, id: &str) -> Result<Option<TokenInfo>> {
        let r = self.0.row(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), [id], token_columns).optional()?;
        r.map(token_info).transpose()
    }

    fn tokens(&self, after: Option<&str>, limit: usize) -> Result<Vec<TokenInfo>> {
        let mut stmt = self
            .0
            .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"))?;
        let rows = stmt.query_map(params![after, sql_limit(limit)], token_columns)?;
        rows.map(|r| token_info(r?)).collect()
    }

    fn revoke_token(&self, id: &str) -> Result<bool> {
        Ok(self.0.exec("UPDATE tokens SET revoked = 1 WHERE id = ?1", [id])? == 1)
    }

    fn has_live_admin(&self) -> Result<bool> {
        Ok(self
            .0
            .row("SELECT 1 FROM tokens WHERE scope = 'admin' AND revoked = 0 LIMIT 1", [], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn all_purges(&self) -> Result<Vec<(String, InstanceRef)>> {
        let mut stmt = self.0.prepare_cached("SELECT host_id, tenant, cluster, name FROM purge ORDER BY host_id, tenant, cluster, name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, InstanceRef { tenant: r.get(1)?, cluster: r.get(2)?, name: r.get(3)? })))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn token_hashes(&self) -> Result<BTreeMap<String, String>> {
        let mut stmt = self.0.prepare_cached("SELECT id, hash FROM tokens")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn idempotent_answers(&self) -> Result<Vec<idempotency::Row>> {
        let mut stmt =
            self.0.prepare_cached("SELECT actor, key, fingerprint, status, body, at_ms FROM idempotency ORDER BY actor, key")?;
        let rows = stmt.query_map([], |r| {
            Ok(idempotency::Row {
                actor: r.get(0)?,
                key: r.get(1)?,
                stored: idempotency::Stored { fingerprint: r.get(2)?, status: r.get::<_, i64>(3)? as u16, body: r.get(4)? },
                at_ms: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_audit(&self, at_ms: u64, ch: &audit::Change<'_>, detail: Option<&str>) -> Result<()> {
        self.0.exec(
            "INSERT INTO audit (at_ms, actor, action, resource, before_generation, after_generation, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![at_ms as i64, ch.actor, ch.action, ch.resource, ch.before.map(|g| g as i64), ch.after.map(|g| g as i64), detail],
        )?;
        Ok(())
    }

    fn audit(&self, after: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, at_ms, actor, action, resource, before_generation, after_generation, detail FROM audit
             WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(0) as i64, sql_limit(limit)], |r| {
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

    fn idempotent(&self, actor: &str, key: &str, now_ms: u64) -> Result<Option<idempotency::Stored>> {
        let row = self
            .0
            .row(
                "SELECT fingerprint, status, body FROM idempotency WHERE actor = ?1 AND key = ?2 AND at_ms >= ?3",
                params![actor, key, now_ms.saturating_sub(idempotency::KEEP_MS) as i64],
                |r| Ok(idempotency::Stored { fingerprint: r.get(0)?, status: r.get::<_, i64>(1)? as u16, body: r.get(2)? }),
            )
            .optional()?;
        Ok(row)
    }

    fn put_idempotent(&self, actor: &str, key: &str, stored: &idempotency::Stored, now_ms: u64) -> Result<()> {
        let c = self.0;
        c.exec("DELETE FROM idempotency WHERE at_ms < ?1", [now_ms.saturating_sub(idempotency::KEEP_MS) as i64])?;
        c.exec(
            "INSERT OR REPLACE INTO idempotency (actor, key, fingerprint, status, body, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![actor, key, stored.fingerprint, stored.status, stored.body, now_ms as i64],
        )?;
        Ok(())
    }
}

const HOST_COLUMNS: &str = "info, registered_ms, last_seen_ms, cordoned, drain_since_ms";

type HostColumns = (String, i64, i64, bool, Option<i64>);

fn host_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostColumns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn host_row((info, registered, last_seen, cordoned, drain): HostColumns) -> Result<HostRow> {
    Ok(HostRow { info: from_json("host", &info)?, registered_ms: registered as u64, last_seen_ms: last_seen as u64, cordoned, drain_since_ms: drain.map(|ms| ms as u64) })
}

/// SQLite's `LIMIT` for `limit` items.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

const INSTANCE_COLUMNS: &str = "tenant, cluster, name, role, ordinal, host_id, pending, cpu, memory, placement";

/// The statement reading one cluster's instances (see [`Tx::instances`]).
pub(super) fn instances_of_cluster() -> String {
    format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = ?1 AND cluster = ?2 ORDER BY role, ordinal")
}

/// An instance row's columns, before the role is parsed.
type InstanceColumns = (InstanceRef, String, u32, Option<String>, Option<String>, i64, i64, i64);

fn instance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceColumns> {
    Ok((
        InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? },
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn collect_instances(stmt: &mut rusqlite::CachedStatement<'_>, params: impl rusqlite::Params) -> Result<Vec<Instance>> {
    let rows = stmt.query_map(params, instance_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (instance, role, ordinal, host, pending, cpu, memory, placement) = row?;
        let role = parse_role(&role)?;
        let (cpu, memory, placement) = (Cpu(cpu as u64), Memory(memory as u64), placement as u64);
        out.push(Instance { instance, role, ordinal, host, pending, cpu, memory, placement });
    }
    Ok(out)
}

/// An instance row's role, as stored.
fn parse_role(role: &str) -> Result<Role> {
    role.parse().map_err(|e: String| Error::Corrupt { what: "instance role", source: serde::de::Error::custom(e) })
}

fn tenant_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn tenant_row((name, created_s, quota): (String, i64, String)) -> Result<TenantRow> {
    Ok(TenantRow { name, created_at: created_s as u64, quota: from_json("tenant quota", &quota)? })
}

const TOKEN_COLUMNS: &str = "id, scope, tenant, description, created_s, revoked, host";

type TokenColumns = (String, String, Option<String>, Option<String>, i64, bool, Option<String>);

fn token_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenColumns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn token_info((id, scope, tenant, description, created_s, revoked, host): TokenColumns) -> Result<TokenInfo> {
    Ok(TokenInfo { id, scope: tokens::parse_scope(&scope)?, tenant, host, description, created_at: created_s as u64, revoked })
}
