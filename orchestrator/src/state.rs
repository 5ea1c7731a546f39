//! The orchestrator's operations. Each is one store transaction that validates, plans
//! (`reconciler::plan`), places (`scheduler::place`) and writes, so a failure halfway
//! stores nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_api::names::{InstanceRef, check_dns_label, check_host_id};
use herd_api::quantity::{Cpu, Memory};
use herd_api::spec::Replicas;
use herd_api::validate::validate;
use herd_api::wire::{
    ClusterStatus, DesiredContainer, Heartbeat, HeartbeatReply, HostInfo, HostState, HostStatus, InstanceStatus,
    RegisterReply, Tenant,
};
use herd_api::{ClusterSpec, Role};
use rusqlite::Connection;
use tracing::info;

use crate::error::{Error, Result};
use crate::reconciler::{self, Instance};
use crate::scheduler::{self, HostView, Request};
use crate::store::{self, Store};

/// The orchestrator's shared state: the store and the settings its operations need.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    /// How often agents heartbeat; a host that misses three is `lost`.
    pub heartbeat_interval: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

impl State {
    fn interval_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64
    }

    /// Registers a host or updates its capacity; then places pending instances.
    pub async fn register(&self, info: HostInfo) -> Result<RegisterReply> {
        if let Err(m) = check_host_id(&info.id) {
            return Err(Error::invalid("host.id", m));
        }
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let new = self
            .store
            .write(move |tx| {
                let new = store::upsert_host(tx, &info, now)?;
                schedule_pending(tx, now, lost_after)?;
                Ok(new)
            })
            .await?;
        info!(new, "host registered");
        Ok(RegisterReply { heartbeat_interval_ms: self.interval_ms() })
    }

    /// Records what a host observed and answers with its full desired set.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        let (now, lost_after, interval) = (now_ms(), 3 * self.interval_ms(), self.interval_ms());
        self.store
            .write(move |tx| {
                if !store::touch_host(tx, &hb.host_id, now)? {
                    return Err(Error::not_found("host", hb.host_id));
                }
                store::replace_observed(tx, &hb.host_id, &hb.observed)?;
                store::set_conditions(tx, &hb.host_id, &hb.conditions)?;
                // A host coming back may make room for what is pending.
                schedule_pending(tx, now, lost_after)?;
                let desired = desired_for(tx, &hb.host_id)?;
                Ok(HeartbeatReply { generation: store::revision(tx)?, desired, heartbeat_interval_ms: interval })
            })
            .await
    }

    pub async fn create_tenant(&self, name: String) -> Result<(Tenant, bool)> {
        if let Err(m) = check_dns_label(&name) {
            return Err(Error::invalid("name", m));
        }
        let now_s = now_ms() / 1000;
        self.store
            .write(move |tx| {
                let created = store::insert_tenant(tx, &name, now_s)?;
                let tenant = store::tenants(tx)?.into_iter().find(|t| t.name == name);
                tenant.map(|t| (t, created)).ok_or_else(|| Error::not_found("tenant", name))
            })
            .await
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.store.read(store::tenants).await
    }

    /// Creates or replaces a cluster from its spec.
    pub async fn apply(&self, spec: ClusterSpec) -> Result<(ClusterStatus, Applied)> {
        validate(&spec)?;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                if !store::tenant_exists(tx, &spec.tenant)? {
                    return Err(Error::invalid(
                        "tenant",
                        format!("tenant `{0}` does not exist; create it first with `herd tenants create {0}`", spec.tenant),
                    ));
                }
                let applied = apply_in(tx, spec.clone(), now, lost_after)?;
                Ok((cluster_status(tx, &spec.tenant, &spec.name)?, applied))
            })
            .await
    }

    /// Sets one pool's replica count, leaving the rest of the spec as it is.
    pub async fn scale(&self, tenant: String, cluster: String, pool: Role, replicas: Replicas) -> Result<ClusterStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                let row = store::cluster(tx, &tenant, &cluster)?
                    .ok_or_else(|| Error::not_found("cluster", format!("{tenant}/{cluster}")))?;
                let mut spec = row.spec;
                let Some(p) = spec.pools.get_mut(&pool) else {
                    let have: Vec<_> = spec.pools.keys().map(|r| r.as_str()).collect();
                    return Err(Error::invalid(
                        "pool",
                        format!("cluster {tenant}/{cluster} has no {pool} pool (it has: {}); add it with `herd apply`", have.join(", ")),
                    ));
                };
                p.replicas = replicas;
                validate(&spec)?;
                apply_in(tx, spec, now, lost_after)?;
                cluster_status(tx, &tenant, &cluster)
            })
            .await
    }

    /// Deletes a cluster: its instances go from every host's desired set.
    pub async fn delete(&self, tenant: String, cluster: String) -> Result<()> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                if store::cluster(tx, &tenant, &cluster)?.is_none() {
                    return Err(Error::not_found("cluster", format!("{tenant}/{cluster}")));
                }
                let existing = store::instances(tx, Some((&tenant, &cluster)))?;
                let plan = reconciler::plan(&tenant, &cluster, None, &existing);
                for gone in &plan.remove {
                    store::delete_instance(tx, gone)?;
                }
                store::delete_cluster(tx, &tenant, &cluster)?;
                store::bump_revision(tx)?;
                // Freed capacity may let another cluster's pending instances in.
                schedule_pending(tx, now, lost_after)?;
                Ok(())
            })
            .await
    }

    pub async fn cluster(&self, tenant: String, cluster: String) -> Result<ClusterStatus> {
        self.store.read(move |c| cluster_status(c, &tenant, &cluster)).await
    }

    /// Every cluster, or one tenant's.
    pub async fn clusters(&self, tenant: Option<String>) -> Result<Vec<ClusterStatus>> {
        self.store
            .read(move |c| {
                let rows = store::clusters(c, tenant.as_deref())?;
                rows.iter().map(|r| cluster_status(c, &r.spec.tenant, &r.spec.name)).collect()
            })
            .await
    }

    pub async fn hosts(&self) -> Result<Vec<HostStatus>> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .read(move |c| {
                let placed = store::instances(c, None)?;
                let hosts = store::hosts(c)?;
                let mut conditions = store::conditions(c)?;
                Ok(hosts
                    .into_iter()
                    .map(|h| {
                        let mine: Vec<&Instance> = placed.iter().filter(|i| i.host.as_deref() == Some(&h.info.id)).collect();
                        let age = now.saturating_sub(h.last_seen_ms);
                        HostStatus {
                            state: if age <= lost_after { HostState::Ready } else { HostState::Lost },
                            last_heartbeat_ms_ago: Some(age),
                            allocated_cpu: Cpu(mine.iter().map(|i| i.cpu.0).sum()),
                            allocated_memory: Memory(mine.iter().map(|i| i.memory.0).sum()),
                            instances: mine.len() as u32,
                            conditions: conditions.remove(&h.info.id).unwrap_or_default(),
                            info: h.info,
                        }
                    })
                    .collect())
            })
            .await
    }
}

/// Stores `spec` and makes the cluster's instances match it, placing new ones.
fn apply_in(tx: &Connection, spec: ClusterSpec, now: u64, lost_after: u64) -> Result<Applied> {
    let (tenant, name) = (spec.tenant.clone(), spec.name.clone());
    let current = store::cluster(tx, &tenant, &name)?;
    let applied = match &current {
        None => Applied::Created,
        Some(row) if row.spec == spec => return Ok(Applied::Unchanged),
        Some(_) => Applied::Updated,
    };
    let generation = current.map(|r| r.generation + 1).unwrap_or(1);
    store::put_cluster(tx, generation, &spec)?;
    let existing = store::instances(tx, Some((&tenant, &name)))?;
    let plan = reconciler::plan(&tenant, &name, Some(&spec), &existing);
    for gone in &plan.remove {
        store::delete_instance(tx, gone)?;
    }
    for resized in &plan.resize {
        // Re-placed by the scheduler below, which prefers nothing: a later scheduler keeps
        // data roles on the host that holds their data.
        store::put_instance(tx, &Instance { host: None, pending: Some("resized".into()), ..resized.clone() })?;
    }
    for new in &plan.add {
        store::put_instance(tx, new)?;
    }
    schedule_pending(tx, now, lost_after)?;
    store::bump_revision(tx)?;
    info!(tenant = %tenant, cluster = %name, generation, add = plan.add.len(), remove = plan.remove.len(), resize = plan.resize.len(), "cluster applied");
    Ok(applied)
}

/// Places every unplaced instance that fits, in a stable order; the rest stay pending
/// with the reason.
fn schedule_pending(tx: &Connection, now: u64, lost_after: u64) -> Result<()> {
    let all = store::instances(tx, None)?;
    let pending: Vec<&Instance> = all.iter().filter(|i| i.host.is_none()).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let mut views: Vec<HostView> = store::hosts(tx)?
        .into_iter()
        .map(|h| {
            let mine: Vec<&Instance> = all.iter().filter(|i| i.host.as_deref() == Some(&h.info.id)).collect();
            let mut per_pool = HashMap::new();
            for i in &mine {
                *per_pool.entry(pool_key(i)).or_insert(0) += 1;
            }
            HostView {
                ready: now.saturating_sub(h.last_seen_ms) <= lost_after,
                free_cpu: h.info.cpu.0.saturating_sub(mine.iter().map(|i| i.cpu.0).sum()),
                free_memory: h.info.memory.0.saturating_sub(mine.iter().map(|i| i.memory.0).sum()),
                per_pool,
                id: h.info.id,
            }
        })
        .collect();
    let requests: Vec<Request> =
        pending.iter().map(|i| Request { pool: pool_key(i), cpu: i.cpu, memory: i.memory }).collect();
    let placed = scheduler::place(&mut views, &requests);
    let mut changed = false;
    for (inst, result) in pending.into_iter().zip(placed) {
        let updated = match result {
            Ok(host) => {
                changed = true;
                Instance { host: Some(host), pending: None, ..inst.clone() }
            }
            Err(reason) => Instance { host: None, pending: Some(reason), ..inst.clone() },
        };
        if &updated != inst {
            store::put_instance(tx, &updated)?;
        }
    }
    if changed {
        store::bump_revision(tx)?;
    }
    Ok(())
}

fn pool_key(i: &Instance) -> String {
    format!("{}/{}/{}", i.instance.tenant, i.instance.cluster, i.role)
}

/// The containers `host` should run, with the environment herd gives every daemon.
fn desired_for(c: &Connection, host: &str) -> Result<Vec<DesiredContainer>> {
    let mut specs: BTreeMap<(String, String), ClusterSpec> = BTreeMap::new();
    let mut out = Vec::new();
    for i in store::instances_on_host(c, host)? {
        let key = (i.instance.tenant.clone(), i.instance.cluster.clone());
        if !specs.contains_key(&key)
            && let Some(row) = store::cluster(c, &key.0, &key.1)? {
                specs.insert(key.clone(), row.spec);
            }
        let Some(spec) = specs.get(&key) else { continue };
        let Some(image) = spec.image_for(i.role) else { continue };
        let pool = spec.pools.get(&i.role);
        let mut env = pool.map(|p| p.env.clone()).unwrap_or_default();
        env.extend(herd_env(&i.instance, i.role));
        let command = pool.and_then(|p| p.command.clone());
        out.push(DesiredContainer { image: image.to_string(), instance: i.instance, role: i.role, cpu: i.cpu, memory: i.memory, command, env });
    }
    Ok(out)
}

fn herd_env(i: &InstanceRef, role: Role) -> [(String, String); 5] {
    [
        ("HERD_TENANT".into(), i.tenant.clone()),
        ("HERD_CLUSTER".into(), i.cluster.clone()),
        ("HERD_INSTANCE".into(), i.name.clone()),
        ("HERD_POOL".into(), role.as_str().into()),
        ("HERD_HOSTNAME".into(), i.hostname()),
    ]
}

fn cluster_status(c: &Connection, tenant: &str, name: &str) -> Result<ClusterStatus> {
    let row = store::cluster(c, tenant, name)?.ok_or_else(|| Error::not_found("cluster", format!("{tenant}/{name}")))?;
    let mut observed = store::observed(c)?;
    let instances = store::instances(c, Some((tenant, name)))?
        .into_iter()
        .map(|i| InstanceStatus {
            observed: i.host.as_ref().and_then(|h| observed.remove(&(i.instance.clone(), h.clone()))),
            instance: i.instance,
            pool: i.role,
            host: i.host,
            cpu: i.cpu,
            memory: i.memory,
            pending: i.pending,
        })
        .collect();
    Ok(ClusterStatus { tenant: tenant.into(), name: name.into(), generation: row.generation, spec: row.spec, instances })
}
