//! Cluster operations of the orchestrator: apply, scale, delete and status. Each change is
//! one store transaction that validates, checks the generation (`If-Match`) and the
//! tenant's quota, plans (`reconciler::plan`), places (`scheduler::place`), writes and records
//! the change in the audit trail, so a failure halfway stores nothing. Status is assembled
//! from the store and the hot state and served from memory while nothing changed.

use std::collections::BTreeSet;
use crate::Map as HashMap;
use std::sync::Arc;

use herd_api::quantity::{Cpu, Memory};
use herd_api::validate::validate;
use herd_api::wire::{ClusterStatus, InstanceStatus, Page, Quota, ScaleRequest};
use herd_api::{ClusterSpec, Role};

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::hot::Hot;
use crate::lifecycle;
use crate::placement::{self, schedule_new, schedule_pending};
use crate::quota;
use crate::reconciler::{self, Instance};
use crate::state::{Applied, Expect, HadoopContext, State, check_expect, now_ms};
use crate::store::Tx;
use crate::store::audit::{self, Change};

impl State {
    /// Creates or replaces a cluster from its spec, within the tenant's quota.
    pub async fn apply(&self, actor: String, spec: ClusterSpec, expect: Option<Expect>) -> Result<(ClusterStatus, Applied)> {
        validate(&spec)?;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, limits) = (self.hot.clone(), self.limits.clone());
        let out = self
            .store
            .write(move |tx| {
                let Some(tenant) = tx.tenant(&spec.tenant)? else {
                    return Err(Error::refused(
                        "tenant",
                        format!("tenant `{0}` does not exist; create it first with `herd tenants create {0}`", spec.tenant),
                    ));
                };
                let resource = format!("{}/{}", spec.tenant, spec.name);
                let current = tx.cluster(&spec.tenant, &spec.name)?;
                check_expect(&resource, current.as_ref().map(|r| r.generation), expect)?;
                let (tenant_name, name) = (spec.tenant.clone(), spec.name.clone());
                let (outcome, before, after) = apply_in(tx, &hot, &limits, &tenant.quota, spec.clone(), now, lost_after, false)?;
                let applied = outcome.applied;
                if applied != Applied::Unchanged {
                    let action = if applied == Applied::Created { "cluster.create" } else { "cluster.update" };
                    audit::record(tx, now, &Change { actor: &actor, action, resource: &resource, before, after: Some(after) })?;
                }
                Ok((tenant_name.clone(), name.clone(), applied))
            })
            .await;
        self.leaving_may_exist();
        let (tenant, name, applied) = out?;
        Ok((self.status_after_write(tenant, name).await?, applied))
    }

    /// The status of a cluster a write just changed, read after the commit (assembling it is
    /// O(cluster): not while holding the writer). A delete racing in between is a conflict.
    async fn status_after_write(&self, tenant: String, name: String) -> Result<ClusterStatus> {
        let key = (tenant.clone(), name.clone());
        match self.assemble_status(&key, now_ms(), 3 * self.interval_ms(), crate::desired::Want::Written, INSTANCES_PAGE).await {
            Err(Error::NotFound { .. }) => Err(Error::Conflict(format!(
                "{tenant}/{name} was changed as asked, then deleted by another request before its status was read"
            ))),
            other => other,
        }
    }

    /// Sets one pool's replica count, leaving the rest of the spec as it is.
    pub async fn scale(
        &self,
        actor: String,
        tenant: String,
        cluster: String,
        pool: Role,
        req: ScaleRequest,
        expect: Option<Expect>,
    ) -> Result<ClusterStatus> {
        let ScaleRequest { replicas, force } = req;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, limits) = (self.hot.clone(), self.limits.clone());
        let out = self
            .store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let row = tx.cluster(&tenant, &cluster)?.ok_or_else(|| Error::not_found("cluster", &resource))?;
                check_expect(&resource, Some(row.generation), expect)?;
                let mut spec = row.spec;
                let Some(p) = spec.pools.get_mut(&pool) else {
                    let have: Vec<_> = spec.pools.keys().map(|r| r.as_str()).collect();
                    return Err(Error::refused(
                        "pool",
                        format!("cluster {tenant}/{cluster} has no {pool} pool (it has: {}); add it with `herd apply`", have.join(", ")),
                    ));
                };
                p.replicas = replicas;
                // NB: the request is valid; the stored cluster with it would not be (e.g. two
                // NameNodes): refused by the state, each field named.
                validate(&spec).map_err(|e| match e.field_errors().into_iter().next() {
                    Some(f) => Error::refused(f.field, f.message),
                    None => Error::from(e),
                })?;
                let quota = tx.tenant(&tenant)?.map(|t| t.quota).unwrap_or_default();
                let (outcome, before, after) = apply_in(tx, &hot, &limits, &quota, spec, now, lost_after, force)?;
                if outcome.applied != Applied::Unchanged {
                    let change = Change { actor: &actor, action: "cluster.scale", resource: &resource, before, after: Some(after) };
                    audit::record(tx, now, &change)?;
                }
                if let Some(risk) = outcome.forced.as_deref() {
                    let change =
                        Change { actor: &actor, action: "cluster.scale.force", resource: &resource, before, after: Some(after) };
                    audit::record_detail(tx, now, &change, Some(risk))?;
                    warn!(cluster = %resource, %pool, risk, "forced scale-down");
                }
                Ok((tenant.clone(), cluster.clone()))
            })
            .await;
        self.leaving_may_exist();
        let (tenant, cluster) = out?;
        self.status_after_write(tenant, cluster).await
    }

    /// Deletes a cluster: its instances go from every host's desired set. Their data folders
    /// stay on their hosts unless `purge_data`, which asks each host's agent to remove them
    /// once the container is gone.
    pub async fn delete(
        &self,
        actor: String,
        tenant: String,
        cluster: String,
        purge_data: bool,
        expect: Option<Expect>,
    ) -> Result<()> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let hot = self.hot.clone();
        self.store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let Some(row) = tx.cluster(&tenant, &cluster)? else {
                    return Err(Error::not_found("cluster", resource));
                };
                check_expect(&resource, Some(row.generation), expect)?;
                let existing = tx.instances(Some((&tenant, &cluster)))?;
                let plan = reconciler::plan(&tenant, &cluster, None, &existing, &BTreeSet::new(), &BTreeSet::new());
                for gone in &plan.remove {
                    tx.delete_instance(gone)?;
                }
                if purge_data {
                    for i in existing.iter().filter(|i| i.role.has_data()) {
                        if let Some(host) = &i.host {
                            tx.put_purge(host, &i.instance)?;
                        }
                    }
                }
                tx.delete_cluster(&tenant, &cluster)?;
                tx.bump_revision()?;
                let change =
                    Change { actor: &actor, action: "cluster.delete", resource: &resource, before: Some(row.generation), after: None };
                let detail = purge_data.then_some("data folders purged (--purge-data)");
                audit::record_detail(tx, now, &change, detail)?;
                // Freed capacity may let another cluster's pending instances in.
                schedule_pending(tx, &hot, now, lost_after)?;
                Ok((tenant.clone(), cluster.clone()))
            })
            .await
            .map(|(tenant, cluster)| {
                self.leaving_may_exist();
                self.desired.forget(&tenant, &cluster)
            })
    }

    pub async fn cluster(&self, tenant: String, cluster: String) -> Result<ClusterStatus> {
        self.cluster_page(tenant, cluster, None, usize::MAX).await
    }

    /// A cluster's status with one page of its instances: at most `limit`, starting after
    /// the instance named `after` (the order is by pool, then ordinal). Its pool summaries
    /// count every instance.
    pub async fn cluster_page(&self, tenant: String, cluster: String, after: Option<String>, limit: usize) -> Result<ClusterStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let key = (tenant, cluster);
        // NB: read before the store, so a commit racing the read makes the entry stale, never
        // an old status fresh.
        let (touches, version) = (self.store.touches(), self.hot.cluster_version(&key.0, &key.1));
        let mark = self.store.cluster_touched(&key.0, &key.1);
        let cached = {
            let statuses = self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            statuses
                .get(&key)
                .filter(|c| c.touches >= mark && c.version == version && now.saturating_sub(c.at_ms) < STATUS_TTL_MS)
                .map(|c| c.status.clone())
        };
        let status = match cached {
            Some(s) => s,
            None => {
                let want = crate::desired::Want::Status { max_age_ms: STATUS_TTL_MS };
                let fresh = self.assemble_status(&key, now, lost_after, want, usize::MAX).await;
                let mut statuses = self.statuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match fresh {
                    Ok(s) => {
                        let s = Arc::new(s);
                        statuses.insert(key, CachedStatus { touches, version, at_ms: now, status: s.clone() });
                        s
                    }
                    Err(e) => {
                        statuses.remove(&key);
                        return Err(e);
                    }
                }
            }
        };
        let mut status = Arc::unwrap_or_clone(status);
        let start = match after {
            None => 0,
            Some(a) => match status.instances.iter().position(|i| i.instance.name == a) {
                Some(n) => n + 1,
                None => return Err(Error::refused("after", format!("no instance `{}` in this cluster (any more): read the cluster again from its first page", a.escape_default()))),
            },
        };
        let end = start.saturating_add(limit).min(status.instances.len());
        if start > 0 || end < status.instances.len() {
            status.instances_next = (end < status.instances.len()).then(|| status.instances[end - 1].instance.name.clone()).filter(|_| end > start);
            status.instances = status.instances.drain(start..end).collect();
        }
        Ok(status)
    }

    /// A cluster's status assembled from its derived desired state ([`crate::desired::Parts`]),
    /// derived again unless it is as fresh as `want` asks (a read: derived from the reports
    /// as they are now; a write's answer: after its commit), and then the heartbeats that
    /// follow find it fresh too. Assembled off the store's threads.
    /// `limit`: the instances whose status it holds (the first ones; see [`assemble`]).
    pub(crate) async fn assemble_status(
        &self,
        key: &(String, String),
        now: u64,
        lost_after: u64,
        want: crate::desired::Want,
        limit: usize,
    ) -> Result<ClusterStatus> {
        let derived = loop {
            let (hot, cache, store, k) = (self.hot.clone(), self.desired.clone(), self.store.clone(), key.clone());
            // NB: the count read before the snapshot's first read (see `Store::touches`).
            let asked = self.store.read(move |c| cache.cluster(c, &store, &hot, &k, want, store.touches(), now, lost_after)).await?;
            match asked {
                Ok(d) => break d,
                Err(busy) => {
                    busy.wait().await;
                }
            }
        };
        let (tenant, name) = key.clone();
        tokio::task::spawn_blocking(move || {
            let parts = derived.parts.as_ref().ok_or_else(|| Error::not_found("cluster", format!("{tenant}/{name}")))?;
            Ok(assemble(parts, derived.at_ms, limit))
        })
        .await
        .map_err(|e| Error::Writer(format!("assembling a status failed: {e}")))?
    }

    /// A page of every cluster, or of one tenant's; `after` is `TENANT/CLUSTER`.
    pub async fn clusters(&self, tenant: Option<String>, after: Option<String>, limit: usize) -> Result<Page<ClusterStatus>> {
        let after = match after {
            None => None,
            Some(a) => match a.split_once('/') {
                Some((t, c)) => Some((t.to_string(), c.to_string())),
                None => return Err(Error::invalid("after", format!("`{}` is not a cluster cursor (TENANT/CLUSTER)", a.escape_default()))),
            },
        };
        let rows = self
            .store
            .read(move |c| {
                let after = after.as_ref().map(|(t, n)| (t.as_str(), n.as_str()));
                let rows = c.clusters_page(tenant.as_deref(), after, limit + 1)?;
                Ok(rows.into_iter().map(|r| (r.spec.tenant, r.spec.name)).collect::<Vec<_>>())
            })
            .await?;
        // A page ends at `limit` clusters, or sooner once it holds PAGE_INSTANCES instances,
        // so no answer grows with the size of the clusters in it. Each cluster's status is
        // its own snapshot (as `GET` of it would answer).
        let mut items = Vec::new();
        let mut instances = 0;
        let mut last = None;
        for (t, n) in rows.iter().take(limit) {
            if instances >= PAGE_INSTANCES {
                break;
            }
            last = Some((t, n));
            match self.cluster(t.clone(), n.clone()).await {
                Ok(s) => {
                    instances += s.instances.len();
                    items.push(s);
                }
                // Deleted since the page was read: not on it.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let ended = last.and_then(|l| rows.iter().position(|r| (&r.0, &r.1) == l)).is_some_and(|at| at + 1 < rows.len());
        let next = ended.then(|| last.map(|(t, n)| format!("{t}/{n}"))).flatten();
        Ok(Page { items, next })
    }
}

/// A cluster's status as assembled at `at_ms` from a snapshot taken after
/// [`crate::store::Store::touches`] read `touches`: valid while no later commit named the
/// cluster ([`crate::store::Store::cluster_touched`]) and no report about it changed
/// (`version`), for at most [`STATUS_TTL_MS`] (liveness ages).
pub(crate) struct CachedStatus {
    touches: u64,
    version: u64,
    at_ms: u64,
    status: Arc<ClusterStatus>,
}

/// How long a cluster's assembled status answers reads when nothing changed.
pub const STATUS_TTL_MS: u64 = 250;

/// The most instances one page of a cluster list holds before it ends (the cluster that
/// crosses it included).
pub const PAGE_INSTANCES: usize = 10_000;

/// The instances a cluster's status holds unless a read asks for another page size (`GET`
/// with `?limit=`); a write (apply, scale) answers with this first page and `instances_next`.
/// (Answering a `PUT` of 10,000 instances with all of them made and serialized 10,000
/// statuses per apply: a twentieth of the orchestrator's CPU while a hundred were applied.)
pub const INSTANCES_PAGE: usize = 1000;

/// Stores `spec` and makes the cluster's instances match it, placing new ones; refuses it
/// when it would take the tenant over `quota`. Returns how it ended and the generations
/// before (`None` for a new cluster) and after.
///
/// Graceful pools ([`lifecycle::graceful`]) change through the decommission/drain
/// lifecycle: shrinking stores the first phase of each leaving instance (they keep running
/// until the lifecycle removes them), growing recommissions leaving ones before creating
/// any. A resized DataNode keeps its host (its blocks are there), or the change is refused.
#[allow(clippy::too_many_arguments)]
fn apply_in(
    tx: &dyn Tx,
    hot: &Hot,
    limits: &crate::limits::Limits,
    quota: &Quota,
    spec: ClusterSpec,
    now: u64,
    lost_after: u64,
    force: bool,
) -> Result<(Outcome, Option<u64>, u64)> {
    let (tenant, name) = (spec.tenant.clone(), spec.name.clone());
    let current = tx.cluster(&tenant, &name)?;
    let before = current.as_ref().map(|r| r.generation);
    let applied = match &current {
        None => Applied::Created,
        Some(row) if row.spec == spec && !force => return Ok((Outcome::of(Applied::Unchanged), before, row.generation)),
        Some(_) => Applied::Updated,
    };
    if current.is_none() && tx.cluster_count(&tenant)? >= u64::from(limits.max_clusters_per_tenant) {
        return Err(Error::Limit {
            field: "name".into(),
            reason: "clusters_per_tenant",
            message: format!(
                "tenant `{tenant}` already has {} clusters, the most one tenant may have (herd-orchestrator --max-clusters-per-tenant); delete one first",
                limits.max_clusters_per_tenant
            ),
        });
    }
    let pending_before = tx.pending_count(Some((&tenant, &name)))?;
    let change = quota::Change {
        others: tx.usage(&tenant, Some(&name))?,
        before: current.as_ref().map(|r| r.spec.requests()).unwrap_or_default(),
        after: spec.requests(),
    };
    quota::check(quota, change).map_err(Error::Quota)?;
    placement::check_borrowing(tx, quota, &spec, current.as_ref().map(|r| &r.spec))?;
    let existing = tx.instances(Some((&tenant, &name)))?;
    // Admission, at once when the fleet cannot possibly take what would wait (an upper bound:
    // every ready host's whole CPU, filled with the smallest request), so that an absurd
    // request does not hold the writer while it is planned and placed; exactly below.
    let wanted: u64 = spec.pools.values().map(|p| u64::from(p.replicas.0)).sum();
    let new = wanted.saturating_sub(existing.len() as u64);
    let smallest = spec.pools.values().map(|p| p.cpu.0).min().unwrap_or(0).max(1);
    let placeable: u64 = hot.with_hosts(|hosts| {
        hosts.values().filter(|h| h.age_ms(now) <= lost_after).map(|h| h.info.cpu.0 / smallest).sum()
    });
    let at_least = (pending_before + new).saturating_sub(placeable);
    if at_least > u64::from(limits.max_pending_per_cluster) && new > 0 {
        return Err(too_many_pending(limits, &tenant, &name, at_least));
    }
    let leaving = tx.leaving(Some((&tenant, &name)))?;
    let graceful = lifecycle::graceful(&spec);

    // The NameNode's report chooses which DataNodes leave; read it before anything changes.
    let namenode = match &current {
        Some(row) if graceful.contains(&Role::Datanode) => {
            let ctx = HadoopContext::load(hot, &existing, now, lost_after);
            ctx.with_data(&row.spec, &existing, &leaving, |d| d.fresh_namenode())
        }
        _ => None,
    };
    let mut forced = Vec::new();
    // DataNodes that joined a NameNode herd does not run: herd cannot decommission them through
    // it, so removing them could lose the last replicas of blocks. Only `--force`, audited.
    let datanodes_now = existing.iter().filter(|i| i.role == Role::Datanode).count();
    let datanodes_next = spec.pools.get(&Role::Datanode).map_or(0, |p| p.replicas.0 as usize);
    if spec.external.namenode.is_some() && !graceful.contains(&Role::Datanode) && datanodes_next < datanodes_now {
        let why = format!(
            "the DataNodes of {tenant}/{name} joined an external NameNode ({}), which herd cannot decommission them through: \
             removing {} of them could lose the only replicas of blocks. Decommission them on your NameNode first \
             (exclude file, `hdfs dfsadmin -refreshNodes`, wait for Decommissioned), then scale with --force",
            spec.external.namenode.as_ref().map(|m| m.host.as_str()).unwrap_or_default(),
            datanodes_now - datanodes_next
        );
        if !force {
            return Err(Error::refused("pools.datanode.replicas", why));
        }
        forced.push(why);
    }
    let mut pools = Vec::new();
    for role in &graceful {
        let plan = lifecycle::plan_pool(&spec, *role, &existing, &leaving, namenode.as_ref(), force, now)?;
        if let Some(refusal) = &plan.selection.forced_below_minimum {
            forced.push(refusal.to_string());
        }
        pools.push(plan);
    }
    let generation = match (&current, before) {
        (Some(row), Some(g)) if row.spec == spec => g,
        _ => before.map(|g| g + 1).unwrap_or(1),
    };
    tx.put_cluster(generation, &spec)?;
    let mut plan = reconciler::plan(&tenant, &name, Some(&spec), &existing, &graceful, &leaving.keys().cloned().collect());
    for gone in &plan.remove {
        tx.delete_instance(gone)?;
    }
    resize(tx, &plan.resize)?;
    // New instances are stored once, by the scheduling pass, placed or pending.
    let mut fresh = std::mem::take(&mut plan.add);
    let planned = fresh.len();
    let (mut leave, mut back, mut add) = (0, 0, 0);
    for p in &pools {
        for (instance, phase) in &p.selection.phases {
            tx.put_phase(instance, phase)?;
            leave += 1;
        }
        for instance in &p.selection.recommission {
            tx.delete_phase(instance)?;
            back += 1;
        }
        fresh.extend(p.add.iter().cloned());
        add += p.add.len();
    }
    schedule_new(tx, hot, now, lost_after, fresh)?;
    // Admission: instances no host can take now wait in the store, and every heartbeat and
    // scheduling pass carries them; a cluster may not leave more than its share waiting.
    let pending = tx.pending_count(Some((&tenant, &name)))?;
    if pending > u64::from(limits.max_pending_per_cluster) && pending > pending_before {
        return Err(too_many_pending(limits, &tenant, &name, pending));
    }
    tx.bump_revision()?;
    info!(tenant = %tenant, cluster = %name, generation, add = planned + add, remove = plan.remove.len(),
        resize = plan.resize.len(), leave, recommission = back, "cluster applied");
    let forced = (!forced.is_empty()).then(|| {
        format!("forced below the replication minimum ({}); refused otherwise: {}", spec.hdfs.replication, forced.join("; "))
    });
    let forced = forced.or_else(|| {
        (force && leave > 0).then(|| {
            format!(
                "{leave} DataNodes may be removed before their decommission completes: blocks they alone hold are \
                 under-replicated until HDFS copies them, and lost if a remaining DataNode fails meanwhile"
            )
        })
    });
    Ok((Outcome { applied, forced }, before, generation))
}

fn too_many_pending(limits: &crate::limits::Limits, tenant: &str, name: &str, pending: u64) -> Error {
    Error::Limit {
        field: "pools".into(),
        reason: "pending_instances",
        message: format!(
            "{tenant}/{name} would have {pending} instances waiting for a host, more than the {} one cluster may have waiting \
             (herd-orchestrator --max-pending-per-cluster); ask for fewer replicas, or add hosts first",
            limits.max_pending_per_cluster
        ),
    }
}

/// How an apply ended, with what a forced scale-down risks (for the audit trail).
struct Outcome {
    applied: Applied,
    forced: Option<String>,
}

impl Outcome {
    fn of(applied: Applied) -> Self {
        Outcome { applied, forced: None }
    }
}

/// Stores new sizes. Roles that keep data (DataNodes, NameNodes) restart in place on the
/// host that holds their data; when that host cannot fit the new size the whole change is
/// refused. Other roles are placed again by the scheduler.
fn resize(tx: &dyn Tx, resized: &[Instance]) -> Result<()> {
    let mut kept_on: BTreeSet<String> = BTreeSet::new();
    for i in resized {
        match (&i.host, i.role.has_data()) {
            (Some(host), true) => {
                tx.put_instance(i)?;
                kept_on.insert(host.clone());
            }
            _ => tx.put_instance(&Instance { host: None, pending: Some("resized".into()), ..i.clone() })?,
        }
    }
    if kept_on.is_empty() {
        return Ok(());
    }
    let all = tx.instances(None)?;
    for h in tx.hosts()?.into_iter().filter(|h| kept_on.contains(&h.info.id)) {
        let mine: Vec<&Instance> = all.iter().filter(|i| i.host.as_deref() == Some(h.info.id.as_str())).collect();
        let (cpu, memory): (u64, u64) = (mine.iter().map(|i| i.cpu.0).sum(), mine.iter().map(|i| i.memory.0).sum());
        if cpu > h.info.cpu.0 || memory > h.info.memory.0 {
            let names: Vec<&str> = resized
                .iter()
                .filter(|i| i.host.as_deref() == Some(h.info.id.as_str()) && i.role.has_data())
                .map(|i| i.instance.name.as_str())
                .collect();
            let role = resized.iter().find(|i| i.role.has_data()).map_or(Role::Datanode, |i| i.role);
            return Err(Error::refused(
                format!("pools.{role}"),
                format!(
                    "{} must stay on host {} with its data, which cannot fit the new size ({} CPU and {} memory asked, \
                     {} and {} there): ask for less, or free room on that host",
                    names.join(", "),
                    h.info.id,
                    Cpu(cpu),
                    Memory(memory),
                    h.info.cpu,
                    h.info.memory
                ),
            ));
        }
    }
    Ok(())
}

/// A cluster's status from what its derivation at `at_ms` read and evaluated, with the
/// status of its first `limit` instances (`instances_next` names the last of them when there
/// are more); its pool summaries count every instance.
pub(crate) fn assemble(parts: &crate::desired::Parts, at_ms: u64, limit: usize) -> ClusterStatus {
    let crate::desired::Parts { row, members, leaving, ctx, .. } = parts;
    let mut conditions = parts.conditions.clone();
    // What the lifecycle would do now, for status only (the heartbeat persists it).
    let mut step = if leaving.is_empty() {
        herd_hadoop::lifecycle::Step::default()
    } else {
        ctx.with_data(&row.spec, members, leaving, |d| d.lifecycle_step(leaving, at_ms))
    };
    conditions.extend(step.conditions.drain(..).map(Into::into));
    conditions.extend(crate::fleet::lost_conditions(members, leaving, |h| ctx.lost_ms(h)));
    let lost: HashMap<&str, u64> = members.iter().filter_map(|i| i.host.as_deref()).filter_map(|h| Some((h, ctx.lost_ms(h)?))).collect();
    let racks: HashMap<&str, &str> = ctx.view.hosts.iter().filter_map(|(id, (info, _))| Some((id.as_str(), info.rack.as_deref()?))).collect();
    let observed = |i: &Instance| match &i.host {
        Some(h) => ctx.report(&i.instance, h),
        _ => None,
    };
    // Nobody knows what runs on a lost host: never shown `running`.
    let on_lost = |i: &Instance| i.host.as_deref().is_some_and(|h| lost.contains_key(h));
    let pools = herd_api::wire::PoolSummary::count(
        &row.spec,
        members.iter().map(|i| herd_api::wire::Counted {
            pool: i.role,
            state: observed(i).map(|o| if on_lost(i) { herd_api::wire::ContainerState::Unknown } else { o.state }),
            placed: i.host.is_some(),
            leaving: step.status.contains_key(&i.instance),
        }),
    );
    let instances: Vec<InstanceStatus> = members
        .iter()
        .take(limit)
        .map(|i| InstanceStatus {
            host_lost_ms_ago: i.host.as_deref().and_then(|h| lost.get(h).copied()),
            observed: observed(i).map(|o| {
                let mut o = o.clone();
                if on_lost(i) {
                    o.state = herd_api::wire::ContainerState::Unknown;
                }
                o
            }),
            hadoop: parts.hadoop.get(&i.instance).cloned(),
            leaving: step.status.remove(&i.instance),
            instance: i.instance.clone(),
            pool: i.role,
            rack: i.host.as_deref().and_then(|h| racks.get(h)).map(|r| r.to_string()),
            host: i.host.clone(),
            cpu: i.cpu,
            memory: i.memory,
            pending: i.pending.clone(),
        })
        .collect();
    let instances_next = (members.len() > limit && limit > 0).then(|| members[limit - 1].instance.name.clone());
    ClusterStatus {
        tenant: row.spec.tenant.clone(),
        name: row.spec.name.clone(),
        generation: row.generation,
        pools,
        spec: row.spec.clone(),
        instances,
        hdfs: parts.hdfs.clone(),
        yarn: parts.yarn.clone(),
        conditions,
        instances_next,
    }
}
