//! The orchestrator's cluster and host operations. Each is one store transaction that
//! validates, checks the generation (`If-Match`) and the tenant's quota, plans
//! (`reconciler::plan`), places (`scheduler::place`), writes and records the change in the
//! audit trail, so a failure halfway stores nothing. Tenants and tokens are in
//! [`crate::tenancy`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_api::names::{InstanceRef, check_host_id};
use herd_api::quantity::{Cpu, Memory};
use herd_api::spec::Replicas;
use herd_api::validate::validate;
use herd_api::network::{HostNetwork, NetworkPlan, Protocol};
use herd_api::wire::{
    ClusterStatus, DesiredContainer, Heartbeat, HeartbeatReply, HostInfo, HostState, HostStatus, InstanceStatus, Observed,
    Page, Quota, RegisterReply,
};
use herd_api::{ClusterSpec, Role};
use rusqlite::Connection;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::hadoop;
use crate::network;
use crate::reconciler::{self, Instance};
use crate::scheduler::{self, HostView, Request};
use crate::quota;
use crate::store::audit::{self, Change};
use crate::store::{self, Store};

/// The orchestrator's shared state: the store and the settings its operations need.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    /// How often agents heartbeat; a host that misses three is `lost`.
    pub heartbeat_interval: Duration,
    /// The cluster CIDR and host subnet size.
    pub network: network::Settings,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// A precondition on a cluster's generation, from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `*`: the cluster must exist, at any generation.
    Exists,
    /// The cluster must be at exactly this generation.
    Generation(u64),
}

/// Fails with [`Error::Stale`] unless `current` (the stored generation, `None` when the
/// cluster does not exist) meets `expect`.
fn check_expect(resource: &str, current: Option<u64>, expect: Option<Expect>) -> Result<()> {
    match (expect, current) {
        (None, _) | (Some(Expect::Exists), Some(_)) => Ok(()),
        (Some(Expect::Generation(given)), Some(current)) if given == current => Ok(()),
        (Some(Expect::Generation(given)), current) => {
            Err(Error::Stale { resource: resource.into(), current: current.unwrap_or(0), given })
        }
        (Some(Expect::Exists), None) => Err(Error::not_found("cluster", resource)),
    }
}

/// One page of a list: fetch `limit + 1`, keep `limit`, and the last kept item's cursor
/// says where the next page starts.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&cursor)
    } else {
        None
    };
    Page { items, next }
}

impl State {
    fn interval_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64
    }

    /// Registers a host or updates its capacity; then places pending instances.
    pub async fn register(&self, actor: String, info: HostInfo) -> Result<RegisterReply> {
        if let Err(m) = check_host_id(&info.id) {
            return Err(Error::invalid("host.id", m));
        }
        let settings = self.network;
        if let Some(address) = info.address {
            settings.check_address(address).map_err(|m| Error::invalid("host.address", m))?;
        }
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (new, network) = self
            .store
            .write(move |tx| {
                let new = store::upsert_host(tx, &info, now)?;
                if new {
                    let resource = format!("hosts/{}", info.id);
                    let change = Change { actor: &actor, action: "host.register", resource: &resource, before: None, after: None };
                    audit::record(tx, now, &change)?;
                }
                let network = match info.address {
                    Some(_) => Some(lease_subnet(tx, &settings, &info.id)?),
                    None => None,
                };
                schedule_pending(tx, now, lost_after)?;
                Ok((new, network))
            })
            .await?;
        info!(new, subnet = ?network.map(|n| n.subnet), "host registered");
        Ok(RegisterReply { heartbeat_interval_ms: self.interval_ms(), network })
    }

    /// Records what a host observed and answers with its full desired set.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        let (now, lost_after, interval, settings) = (now_ms(), 3 * self.interval_ms(), self.interval_ms(), self.network);
        self.store
            .write(move |tx| {
                if !store::touch_host(tx, &hb.host_id, now)? {
                    return Err(Error::not_found("host", hb.host_id));
                }
                store::replace_observed(tx, &hb.host_id, &hb.observed)?;
                store::set_conditions(tx, &hb.host_id, &hb.conditions)?;
                // A host coming back may make room for what is pending.
                schedule_pending(tx, now, lost_after)?;
                let desired = desired_for(tx, &hb.host_id, now, lost_after)?;
                let network = network_plan(tx, &settings, &hb.host_id)?;
                Ok(HeartbeatReply { generation: store::revision(tx)?, desired, heartbeat_interval_ms: interval, network })
            })
            .await
    }

    /// Creates or replaces a cluster from its spec, within the tenant's quota.
    pub async fn apply(&self, actor: String, spec: ClusterSpec, expect: Option<Expect>) -> Result<(ClusterStatus, Applied)> {
        validate(&spec)?;
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                let Some(tenant) = store::tenant(tx, &spec.tenant)? else {
                    return Err(Error::invalid(
                        "tenant",
                        format!("tenant `{0}` does not exist; create it first with `herd tenants create {0}`", spec.tenant),
                    ));
                };
                let resource = format!("{}/{}", spec.tenant, spec.name);
                let current = store::cluster(tx, &spec.tenant, &spec.name)?;
                check_expect(&resource, current.as_ref().map(|r| r.generation), expect)?;
                let (tenant_name, name) = (spec.tenant.clone(), spec.name.clone());
                let (applied, before, after) = apply_in(tx, &tenant.quota, spec, now, lost_after)?;
                if applied != Applied::Unchanged {
                    let action = if applied == Applied::Created { "cluster.create" } else { "cluster.update" };
                    audit::record(tx, now, &Change { actor: &actor, action, resource: &resource, before, after: Some(after) })?;
                }
                Ok((cluster_status(tx, &tenant_name, &name, now, lost_after)?, applied))
            })
            .await
    }

    /// Sets one pool's replica count, leaving the rest of the spec as it is.
    pub async fn scale(
        &self,
        actor: String,
        tenant: String,
        cluster: String,
        pool: Role,
        replicas: Replicas,
        expect: Option<Expect>,
    ) -> Result<ClusterStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let row = store::cluster(tx, &tenant, &cluster)?.ok_or_else(|| Error::not_found("cluster", &resource))?;
                check_expect(&resource, Some(row.generation), expect)?;
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
                let quota = store::tenant(tx, &tenant)?.map(|t| t.quota).unwrap_or_default();
                let (applied, before, after) = apply_in(tx, &quota, spec, now, lost_after)?;
                if applied != Applied::Unchanged {
                    let change = Change { actor: &actor, action: "cluster.scale", resource: &resource, before, after: Some(after) };
                    audit::record(tx, now, &change)?;
                }
                cluster_status(tx, &tenant, &cluster, now, lost_after)
            })
            .await
    }

    /// Deletes a cluster: its instances go from every host's desired set.
    pub async fn delete(&self, actor: String, tenant: String, cluster: String, expect: Option<Expect>) -> Result<()> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .write(move |tx| {
                let resource = format!("{tenant}/{cluster}");
                let Some(row) = store::cluster(tx, &tenant, &cluster)? else {
                    return Err(Error::not_found("cluster", resource));
                };
                check_expect(&resource, Some(row.generation), expect)?;
                let existing = store::instances(tx, Some((&tenant, &cluster)))?;
                let plan = reconciler::plan(&tenant, &cluster, None, &existing);
                for gone in &plan.remove {
                    store::delete_instance(tx, gone)?;
                }
                store::delete_cluster(tx, &tenant, &cluster)?;
                store::bump_revision(tx)?;
                let change =
                    Change { actor: &actor, action: "cluster.delete", resource: &resource, before: Some(row.generation), after: None };
                audit::record(tx, now, &change)?;
                // Freed capacity may let another cluster's pending instances in.
                schedule_pending(tx, now, lost_after)?;
                Ok(())
            })
            .await
    }

    pub async fn cluster(&self, tenant: String, cluster: String) -> Result<ClusterStatus> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store.read(move |c| cluster_status(c, &tenant, &cluster, now, lost_after)).await
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
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .read(move |c| {
                let after = after.as_ref().map(|(t, n)| (t.as_str(), n.as_str()));
                let rows = store::clusters_page(c, tenant.as_deref(), after, limit + 1)?;
                let items = rows.iter().map(|r| cluster_status(c, &r.spec.tenant, &r.spec.name, now, lost_after)).collect::<Result<Vec<_>>>()?;
                Ok(page(items, limit, |s| format!("{}/{}", s.tenant, s.name)))
            })
            .await
    }

    /// A page of hosts, by id.
    pub async fn hosts(&self, after: Option<String>, limit: usize) -> Result<Page<HostStatus>> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        self.store
            .read(move |c| {
                let placed = store::instances(c, None)?;
                let hosts = store::hosts_page(c, after.as_deref(), limit + 1)?;
                let mut conditions = store::conditions(c)?;
                let items = hosts
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
                    .collect();
                Ok(page(items, limit, |h: &HostStatus| h.info.id.clone()))
            })
            .await
    }
}

/// Stores `spec` and makes the cluster's instances match it, placing new ones; refuses it
/// when it would take the tenant over `quota`. Returns how it ended and the generations
/// before (`None` for a new cluster) and after.
fn apply_in(tx: &Connection, quota: &Quota, spec: ClusterSpec, now: u64, lost_after: u64) -> Result<(Applied, Option<u64>, u64)> {
    let (tenant, name) = (spec.tenant.clone(), spec.name.clone());
    let current = store::cluster(tx, &tenant, &name)?;
    let before = current.as_ref().map(|r| r.generation);
    let applied = match &current {
        None => Applied::Created,
        Some(row) if row.spec == spec => return Ok((Applied::Unchanged, before, row.generation)),
        Some(_) => Applied::Updated,
    };
    let change = quota::Change {
        others: store::usage(tx, &tenant, Some(&name))?,
        before: current.as_ref().map(|r| r.spec.requests()).unwrap_or_default(),
        after: spec.requests(),
    };
    quota::check(quota, change).map_err(Error::Quota)?;
    let generation = before.map(|g| g + 1).unwrap_or(1);
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
    Ok((applied, before, generation))
}

/// Places every unplaced instance that fits, in a stable order; the rest stay pending
/// with the reason.
fn schedule_pending(tx: &Connection, now: u64, lost_after: u64) -> Result<()> {
    let all = store::instances(tx, None)?;
    let mut pending: Vec<&Instance> = all.iter().filter(|i| i.host.is_none()).collect();
    // Masters first: workers are useless without them, so they must never take their room.
    pending.sort_by_key(|i| i.role);
    if pending.is_empty() {
        return Ok(());
    }
    // Host ports each pool publishes: two instances publishing one port never share a host.
    let mut ports: HashMap<String, Vec<(Protocol, u16)>> = HashMap::new();
    for row in store::clusters(tx, None)? {
        for (role, pool) in &row.spec.pools {
            let key = format!("{}/{}/{}", row.spec.tenant, row.spec.name, role);
            ports.insert(key, pool.publish.iter().map(|p| (p.protocol, p.host_port())).collect());
        }
    }
    let ports_of = |i: &Instance| ports.get(&pool_key(i)).cloned().unwrap_or_default();
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
                ports: mine.iter().flat_map(|i| ports_of(i)).collect(),
                id: h.info.id,
            }
        })
        .collect();
    let requests: Vec<Request> =
        pending.iter().map(|i| Request { pool: pool_key(i), cpu: i.cpu, memory: i.memory, ports: ports_of(i) }).collect();
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

/// The containers `host` should run, with the environment herd gives every daemon and each
/// instance's Hadoop config.
fn desired_for(c: &Connection, host: &str, now: u64, lost_after: u64) -> Result<Vec<DesiredContainer>> {
    let mine = store::instances_on_host(c, host)?;
    let clusters: BTreeSet<(String, String)> =
        mine.iter().map(|i| (i.instance.tenant.clone(), i.instance.cluster.clone())).collect();
    let ctx = HadoopContext::load(c, now, lost_after)?;
    let mut out = Vec::new();
    for (tenant, name) in clusters {
        let Some(row) = store::cluster(c, &tenant, &name)? else { continue };
        let members = store::instances(c, Some((&tenant, &name)))?;
        let outcome = ctx.evaluate(&row.spec, &members);
        for i in mine.iter().filter(|i| i.instance.tenant == tenant && i.instance.cluster == name) {
            let spec = &row.spec;
            let Some(image) = spec.image_for(i.role) else { continue };
            let pool = spec.pools.get(&i.role);
            let mut env = pool.map(|p| p.env.clone()).unwrap_or_default();
            env.extend(herd_env(&i.instance, i.role));
            if let Some(daemon) = outcome.env.get(&i.instance) {
                env.extend(daemon.clone());
            }
            let command = pool.and_then(|p| p.command.clone());
            let publish = pool.map(|p| p.publish.clone()).unwrap_or_default();
            let release = outcome.releases.get(&i.instance);
            out.push(DesiredContainer {
                image: image.to_string(),
                instance: i.instance.clone(),
                role: i.role,
                cpu: i.cpu,
                memory: i.memory,
                command,
                env,
                publish,
                hadoop: release.map(|r| r.config.clone()),
                hold_config: release.is_some_and(|r| r.hold),
            });
        }
    }
    Ok(out)
}

/// Hosts and observed state, loaded once for evaluating any number of clusters.
struct HadoopContext {
    hosts: Vec<(String, HostInfo, u64)>,
    poll_interval_ms: u64,
    observed: HashMap<(InstanceRef, String), Observed>,
}

impl HadoopContext {
    fn load(c: &Connection, now: u64, lost_after: u64) -> Result<Self> {
        let hosts = store::hosts(c)?
            .into_iter()
            .map(|h| {
                (h.info.id.clone(), h.info, now.saturating_sub(h.last_seen_ms))
            })
            .collect();
        Ok(HadoopContext { hosts, observed: store::observed(c)?, poll_interval_ms: lost_after / 3 })
    }

    fn evaluate(&self, spec: &ClusterSpec, members: &[Instance]) -> hadoop::Outcome {
        let hosts: HashMap<String, hadoop::HostRef<'_>> =
            self.hosts.iter().map(|(id, info, age_ms)| (id.clone(), hadoop::HostRef { info, age_ms: *age_ms })).collect();
        let observed = members
            .iter()
            .filter_map(|i| {
                let host = i.host.as_ref()?;
                let o = self.observed.get(&(i.instance.clone(), host.clone()))?;
                Some((&i.instance, o))
            })
            .collect();
        let data = hadoop::ClusterData {
            spec,
            instances: members.iter().collect(),
            hosts: &hosts,
            observed,
            leaving: BTreeSet::new(),
            poll_interval_ms: self.poll_interval_ms,
        };
        hadoop::evaluate(&data)
    }
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

fn cluster_status(c: &Connection, tenant: &str, name: &str, now: u64, lost_after: u64) -> Result<ClusterStatus> {
    let row = store::cluster(c, tenant, name)?.ok_or_else(|| Error::not_found("cluster", format!("{tenant}/{name}")))?;
    let members = store::instances(c, Some((tenant, name)))?;
    let ctx = HadoopContext::load(c, now, lost_after)?;
    let mut outcome = ctx.evaluate(&row.spec, &members);
    let mut observed = ctx.observed;
    let instances = members
        .into_iter()
        .map(|i| InstanceStatus {
            observed: i.host.as_ref().and_then(|h| observed.remove(&(i.instance.clone(), h.clone()))),
            hadoop: outcome.instances.remove(&i.instance),
            instance: i.instance,
            pool: i.role,
            host: i.host,
            cpu: i.cpu,
            memory: i.memory,
            pending: i.pending,
        })
        .collect();
    Ok(ClusterStatus {
        tenant: tenant.into(),
        name: name.into(),
        generation: row.generation,
        spec: row.spec,
        instances,
        hdfs: outcome.hdfs,
        yarn: outcome.yarn,
        conditions: outcome.conditions,
    })
}

/// The host's subnet: its stored lease if that still fits the cluster CIDR, else a new one.
fn lease_subnet(tx: &Connection, settings: &network::Settings, host: &str) -> Result<HostNetwork> {
    let leases = store::subnets(tx)?;
    let subnet = match leases.get(host) {
        Some(s) if settings.fits(*s) => *s,
        stale => {
            let taken = leases.iter().filter(|(h, s)| h.as_str() != host && settings.fits(**s)).map(|(_, s)| *s).collect();
            let subnet = settings.lease(&taken).map_err(|m| Error::Conflict(format!("host {host}: {m}")))?;
            if let Some(old) = stale {
                warn!(host, old = %old, new = %subnet, "host subnet outside the cluster CIDR now; leased a new one");
            }
            store::put_subnet(tx, host, subnet)?;
            subnet
        }
    };
    Ok(HostNetwork { cluster_cidr: settings.cluster_cidr, subnet })
}

/// Routes and address owners for `host`, if it has a subnet lease.
fn network_plan(tx: &Connection, settings: &network::Settings, host: &str) -> Result<Option<NetworkPlan>> {
    let subnets = store::subnets(tx)?;
    if !subnets.contains_key(host) {
        return Ok(None);
    }
    let leases: Vec<network::HostLease> = store::hosts(tx)?
        .into_iter()
        .filter_map(|h| {
            let subnet = *subnets.get(&h.info.id)?;
            Some(network::HostLease { host: h.info.id, subnet, address: h.info.address })
        })
        .collect();
    let placed = store::instances(tx, None)?.into_iter().filter_map(|i| Some((i.instance, i.host?))).collect();
    let observed: Vec<_> =
        store::observed(tx)?.into_iter().filter_map(|((instance, reporter), o)| Some((instance, reporter, o.ip?))).collect();
    Ok(network::plan(settings, host, &leases, &placed, &observed))
}
