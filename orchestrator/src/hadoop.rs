//! Hadoop at the orchestrator: what makes a cluster's containers one HDFS and one YARN.
//!
//! - Each instance's configuration is rendered by [`herd_hadoop::render`] from the cluster's
//!   spec, its placements and its hosts, and travels to the agent in the heartbeat reply.
//! - A config change that needs restarts rolls through the cluster one instance at a time:
//!   the next instance gets its new files only once every instance already on the new config
//!   reports healthy to its master (a DataNode live and `In Service`, a NodeManager
//!   `RUNNING`, a master answering). The others are told to hold what they run.
//! - Health comes from the masters themselves (the agent that runs a NameNode or
//!   ResourceManager reads it and sends it with its heartbeat) and is joined with the
//!   cluster's instances by [`herd_hadoop::health`].
//!
//! ```text
//!  spec + placements + hosts ──► render ──► new config per instance ─┐
//!  observed config hash + health (from the masters) ─────────────────┼─► release / hold
//!                                                                    └─► herd status
//! ```

use std::collections::{BTreeMap, BTreeSet};
use crate::Map as HashMap;

use herd_api::hash::stable_hash;
use herd_api::hadoop::{HadoopConfig, MasterHealth, NameNodeHealth, ResourceManagerHealth};
use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::wire::{Condition, ContainerState, HdfsSummary, HostInfo, InstanceHadoop, Observed, YarnSummary};
use herd_api::{ClusterSpec, Role};
use herd_hadoop::health::join::{self, Aged, Assess, MasterSource, Member as JoinMember};
use herd_hadoop::lifecycle::{self, Leaving, MasterReport, StepInput};
use herd_hadoop::render::{self, ClusterView, Member};
use tracing::warn;

use crate::reconciler::Instance;

/// One cluster with everything the Hadoop side needs about it.
pub struct ClusterData<'a> {
    pub spec: &'a ClusterSpec,
    pub instances: Vec<&'a Instance>,
    pub hosts: &'a HashMap<&'a str, HostRef<'a>>,
    /// What each instance's own host last reported about it.
    pub observed: HashMap<&'a InstanceRef, &'a Observed>,
    /// Instances leaving the cluster (decommissioning DataNodes, draining NodeManagers).
    pub leaving: BTreeSet<InstanceRef>,
    /// How often agents heartbeat (and so how often a master's health is refreshed).
    pub poll_interval_ms: u64,
}

/// A host as the Hadoop side sees it: its description and how fresh its last report is.
pub struct HostRef<'a> {
    pub info: &'a HostInfo,
    /// Milliseconds since its last heartbeat.
    pub age_ms: u64,
}

/// What an instance is given: its rendered config, and whether to hold the config it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Shared with the rendering memo and every reply that carries it.
    pub config: std::sync::Arc<HadoopConfig>,
    /// A newer config exists but it is not this instance's turn yet: keep running as it is.
    pub hold: bool,
    /// [`rollout_hash`] of the config.
    pub rollout: String,
}

/// One instance's rendered config with its rollout hash.
#[derive(Debug)]
pub struct Rendered {
    pub config: std::sync::Arc<HadoopConfig>,
    /// [`rollout_hash`] of `config` for this instance.
    pub rollout: String,
}

/// Workers' rendered configs, per cluster (tenant, name): a DataNode's or NodeManager's
/// config depends on the spec and on the member alone (where it is placed, its size, its
/// address), so a cluster derived again because a report changed renders only the members
/// that changed. Masters are rendered every time: their live files list every member.
/// Process-wide: it memoizes a pure function (an entry answers only for an equal spec and an
/// equal member), so it is never stale, only ever pruned. One cluster's renders take turns
/// on its entry (other clusters' do not wait): a status assembled while a derivation renders
/// a 10,000-member cluster waits for it and then finds every worker rendered. (The entry
/// used to be taken out while rendering, so the other found none and rendered all 10,000
/// again: two of the four store readers during a 300,000-instance apply.)
static RENDERED: std::sync::LazyLock<std::sync::Mutex<HashMap<(String, String), MemoEntry>>> = std::sync::LazyLock::new(Default::default);

/// One cluster's [`RenderMemo`], locked while its workers render.
type MemoEntry = std::sync::Arc<std::sync::Mutex<RenderMemo>>;

/// One cluster's entry in [`RENDERED`].
#[derive(Default)]
struct RenderMemo {
    /// The spec the workers were rendered with (its stable hash).
    spec: String,
    /// Each worker as rendered, its config, and the rollout hash its container reported when
    /// it was (see [`rollout_kept`]: a report of another hash renders it again, once).
    workers: HashMap<InstanceRef, (Member, std::sync::Arc<Rendered>, Option<String>)>,
}

/// Forgets a deleted cluster's rendered configs.
pub fn forget_rendered(tenant: &str, name: &str) {
    let mut memo = RENDERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    memo.remove(&(tenant.to_string(), name.to_string()));
}

impl<'a> ClusterData<'a> {
    fn members(&self) -> Vec<Member> {
        self.instances
            .iter()
            .map(|i| {
                let host = i.host.as_deref().and_then(|h| self.hosts.get(h));
                Member {
                    instance: i.instance.clone(),
                    role: i.role,
                    host: i.host.clone(),
                    rack: host.and_then(|h| h.info.rack.clone()),
                    ip: self.observed.get(&i.instance).and_then(|o| o.ip),
                    data_dirs: if i.role.has_data() { host.map(|h| h.info.data_disks.len()).unwrap_or(0) } else { 0 },
                    cpu: i.cpu,
                    memory: i.memory,
                }
            })
            .collect()
    }

    /// The newest config of every placed instance (or only of the masters), rendered;
    /// instances whose config cannot be rendered are left out (and logged): the agent then
    /// keeps what it has. Workers come from [`RENDERED`] when neither the spec nor the member
    /// changed.
    pub fn render_all(&self) -> HashMap<InstanceRef, std::sync::Arc<Rendered>> {
        self.render(false)
    }

    fn render(&self, masters_only: bool) -> HashMap<InstanceRef, std::sync::Arc<Rendered>> {
        let members = self.members();
        let view = ClusterView { spec: self.spec, members: &members, leaving: self.leaving.clone() };
        let key = (self.spec.tenant.clone(), self.spec.name.clone());
        let spec_hash = stable_hash(self.spec);
        let entry = RENDERED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key).or_default().clone();
        let mut memo = entry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut workers = if memo.spec == spec_hash { std::mem::take(&mut memo.workers) } else { HashMap::default() };
        // NB: sized for every member up front (grown by doubling, moving each member's entry
        // each time, they were a tenth of rendering a freshly applied 10,000-member cluster).
        let n = members.len();
        let mut seen: HashMap<&InstanceRef, u32> = HashMap::with_capacity_and_hasher(n, Default::default());
        for m in &members {
            *seen.entry(&m.instance).or_insert(0) += 1;
        }
        let masters = render::site::Masters::of(&view);
        let mut shapes = render::Shapes::default();
        let mut out = HashMap::with_capacity_and_hasher(n, Default::default());
        let mut kept = HashMap::with_capacity_and_hasher(n, Default::default());
        for m in &members {
            let worker = matches!(m.role, Role::Datanode | Role::Nodemanager);
            if masters_only && worker {
                continue;
            }
            let running = self.observed.get(&m.instance).and_then(|o| o.config_hash.as_deref());
            // NB: a container reporting a hash the memo has not seen may run this config
            // under the hash of an earlier form (an orchestrator upgraded while it ran,
            // whose report was not known when it was rendered): rendered again, once.
            let rendered = match workers.remove(&m.instance) {
                Some((was, r, checked))
                    if worker && was.same_worker_config(m) && (running.is_none_or(|h| h == r.rollout) || checked.as_deref() == running) =>
                {
                    Ok((r, checked))
                }
                _ if seen.get(&m.instance).copied().unwrap_or(0) > 1 => Err(render::RenderError::DuplicateMember(m.instance.clone())),
                _ => shapes.render_hashed(&view, &masters, m).map(|(config, files)| {
                    let rollout = rollout_kept(self.spec, m, &config, &files, running);
                    (std::sync::Arc::new(Rendered { config: config.into(), rollout }), running.map(str::to_string))
                }),
            };
            match rendered {
                Ok((r, checked)) => {
                    if worker {
                        kept.insert(m.instance.clone(), (m.clone(), r.clone(), checked));
                    }
                    out.insert(m.instance.clone(), r);
                }
                Err(e) => warn!(instance = %m.instance, error = %e, "cannot render Hadoop config"),
            }
        }
        if masters_only {
            // Workers not looked at this time stay as they were.
            kept.extend(workers);
        }
        *memo = RenderMemo { spec: spec_hash, workers: kept };
        out
    }

    /// The masters' last reports, with their age (that of their host's last heartbeat).
    fn reports(&self) -> (Option<Aged<NameNodeHealth>>, Option<Aged<ResourceManagerHealth>>) {
        let (mut nn, mut rm) = (None, None);
        for i in &self.instances {
            let Some(o) = self.observed.get(&i.instance) else { continue };
            let age_ms = i.host.as_deref().and_then(|h| self.hosts.get(h)).map_or(u64::MAX, |h| h.age_ms);
            match &o.hadoop {
                Some(MasterHealth::Namenode(h)) if i.role == Role::Namenode => nn = Some(Aged { report: h.clone(), age_ms }),
                Some(MasterHealth::Resourcemanager(h)) if i.role == Role::Resourcemanager => {
                    rm = Some(Aged { report: h.clone(), age_ms })
                }
                _ => {}
            }
        }
        (nn, rm)
    }
}

impl ClusterData<'_> {
    /// The observed report of this cluster's first master of `role` (health and live hash),
    /// with the age of its host's last heartbeat.
    fn master(&self, role: Role) -> Option<(&Instance, &Observed, u64)> {
        let mut masters: Vec<&&Instance> = self.instances.iter().filter(|i| i.role == role).collect();
        masters.sort_by_key(|i| i.ordinal);
        masters.into_iter().find_map(|i| {
            let o = self.observed.get(&i.instance)?;
            let age = i.host.as_deref().and_then(|h| self.hosts.get(h)).map_or(u64::MAX, |h| h.age_ms);
            Some((*i, *o, age))
        })
    }

    /// The NameNode's last report when it is fresh (its host heartbeated within three
    /// intervals) and carries no error: what `select_leaving` chooses by.
    pub fn fresh_namenode(&self) -> Option<NameNodeHealth> {
        let (_, o, age) = self.master(Role::Namenode)?;
        match &o.hadoop {
            Some(MasterHealth::Namenode(h)) if h.error.is_none() && age <= 3 * self.poll_interval_ms => Some(h.clone()),
            _ => None,
        }
    }

    /// One step of the decommission/drain state machine for this cluster's stored `leaving`
    /// phases (see `herd_hadoop::lifecycle`). `self.leaving` must be the exclude set of the
    /// same list: a master counts as refreshed only when it reports the live files rendered
    /// with it. A `Removing` instance's container is gone once its host reports no container
    /// for it.
    pub fn lifecycle_step(&self, leaving: &BTreeMap<InstanceRef, Phase>, now_ms: u64) -> lifecycle::Step {
        let roles: HashMap<&InstanceRef, Role> = self.instances.iter().map(|i| (&i.instance, i.role)).collect();
        let list: Vec<Leaving> = leaving
            .iter()
            .filter_map(|(instance, phase)| {
                let role = *roles.get(instance)?;
                let container_gone = self.observed.get(instance).is_none_or(|o| o.container_id.is_empty());
                Some(Leaving { instance: instance.clone(), role, phase: *phase, container_gone })
            })
            .collect();
        let exclude = lifecycle::exclude_set(&list);
        let configs = if exclude == self.leaving { self.render(true) } else { HashMap::default() };
        let report = |role: Role| {
            let (inst, o, age_ms) = self.master(role)?;
            let refreshed = match (configs.get(&inst.instance), &o.live_hash) {
                (Some(c), Some(have)) => c.config.live_hash() == *have,
                _ => false,
            };
            Some((o, age_ms, refreshed))
        };
        let nn = report(Role::Namenode);
        let rm = report(Role::Resourcemanager);
        let namenode = match nn {
            Some((o, age_ms, refreshed)) => match &o.hadoop {
                Some(MasterHealth::Namenode(h)) => MasterReport { health: Some(h), age_ms, refreshed },
                _ => MasterReport { health: None, age_ms, refreshed },
            },
            None => MasterReport::none(),
        };
        let resourcemanager = match rm {
            Some((o, age_ms, refreshed)) => match &o.hadoop {
                Some(MasterHealth::Resourcemanager(h)) => MasterReport { health: Some(h), age_ms, refreshed },
                _ => MasterReport { health: None, age_ms, refreshed },
            },
            None => MasterReport::none(),
        };
        let datanode = self.spec.pools.get(&Role::Datanode).map(|p| p.lifecycle).unwrap_or_default();
        let input = StepInput {
            now_ms,
            leaving: &list,
            namenode,
            resourcemanager,
            max_health_age_ms: 3 * self.poll_interval_ms,
            datanode: &datanode,
        };
        lifecycle::step(&input)
    }
}

/// Everything the Hadoop side says about one cluster.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What each placed instance is given (config, hold).
    pub releases: HashMap<InstanceRef, Release>,
    /// How HDFS/YARN see each instance, with its rollout phase.
    pub instances: HashMap<InstanceRef, InstanceHadoop>,
    pub hdfs: Option<HdfsSummary>,
    pub yarn: Option<YarnSummary>,
    pub conditions: Vec<Condition>,
    /// Environment each instance's daemon needs (its heap, from its container's memory).
    pub env: HashMap<InstanceRef, BTreeMap<String, String>>,
}

/// Renders, assesses and decides the rollout of one cluster.
pub fn evaluate(data: &ClusterData<'_>) -> Outcome {
    let assessed = assess(data);
    let newest = data.render_all();
    let (releases, phases) = releases(data, newest, &assessed.instances);
    let mut instances = assessed.instances;
    for (instance, phase) in &phases {
        instances.entry(instance.clone()).or_default().rollout = Some((*phase).to_string());
    }
    let mut conditions = assessed.conditions;
    conditions.extend(machines_condition(data));
    let waiting = phases.values().filter(|p| **p == "waiting").count();
    if !phases.is_empty() {
        let restarting: Vec<String> =
            phases.iter().filter(|(_, p)| **p == "restarting").map(|(i, _)| i.name.clone()).collect();
        conditions.push(Condition {
            kind: "ConfigRollout".into(),
            message: format!(
                "rolling a new Hadoop config through the cluster one instance at a time: {} restarting, {waiting} waiting; each waits until the one before reports healthy",
                if restarting.is_empty() { "none (waiting for an instance to become healthy)".to_string() } else { restarting.join(", ") }
            ),
        });
    }
    // NB: from the instances (a member's environment depends on its role and size only), not
    // from members made again for it, each with copies of its names, host and rack.
    let env = data.instances.iter().map(|i| (i.instance.clone(), render::daemon_env_of(i.role, i.memory))).collect();
    Outcome { releases, instances, hdfs: assessed.hdfs, yarn: assessed.yarn, conditions, env }
}

/// HDFS never puts two replicas of a block on one machine (herd renders a node-group layer per
/// host), so DataNodes packed on fewer machines than `hdfs.replication` leave every block
/// under-replicated however many DataNodes there are.
fn machines_condition(data: &ClusterData<'_>) -> Option<Condition> {
    let datanodes: Vec<&&Instance> = data.instances.iter().filter(|i| i.role == Role::Datanode).collect();
    let machines: BTreeSet<&str> = datanodes.iter().filter_map(|i| i.host.as_deref()).collect();
    let replication = usize::from(data.spec.hdfs.replication);
    (datanodes.len() >= replication && !machines.is_empty() && machines.len() < replication).then(|| Condition {
        kind: "ReplicationAboveMachines".into(),
        message: format!(
            "hdfs.replication is {replication} but the {} DataNodes run on {} machine(s), and HDFS never keeps two replicas of a block on one machine: every block stays under-replicated; add hosts or lower hdfs.replication",
            datanodes.len(),
            machines.len()
        ),
    })
}

/// The health part of an [`Outcome`].
#[derive(Debug, Default)]
struct Assessed {
    instances: HashMap<InstanceRef, InstanceHadoop>,
    hdfs: Option<HdfsSummary>,
    yarn: Option<YarnSummary>,
    conditions: Vec<Condition>,
}

fn assess(data: &ClusterData<'_>) -> Assessed {
    let source = |role: Role, external: bool| {
        if data.spec.pools.get(&role).is_some_and(|p| p.replicas.0 > 0) {
            MasterSource::Herd
        } else if external {
            MasterSource::External
        } else {
            MasterSource::Missing
        }
    };
    let (namenode_report, resourcemanager_report) = data.reports();
    let input = Assess {
        instances: data
            .instances
            .iter()
            .map(|i| JoinMember {
                instance: i.instance.clone(),
                role: i.role,
                running: data.observed.get(&i.instance).is_some_and(|o| o.state == ContainerState::Running),
            })
            .collect(),
        replication: data.spec.hdfs.replication,
        namenode: source(Role::Namenode, data.spec.external.namenode.is_some()),
        resourcemanager: source(Role::Resourcemanager, data.spec.external.resourcemanager.is_some()),
        namenode_report,
        resourcemanager_report,
        poll_interval_ms: data.poll_interval_ms,
    };
    let a = join::assess(&input);
    Assessed { instances: a.instances.into_iter().collect(), hdfs: a.hdfs, yarn: a.yarn, conditions: a.conditions }
}

/// A hash of everything whose change restarts an instance's container: its Hadoop config
/// files, image, size, and its pool's command, environment and ports. The agent labels the
/// container with it and reports it back (`Observed::config_hash`), so [`releases`] rolls a
/// resize or an image change through a cluster one instance at a time, as it does a new
/// config (a DataNode pool resized at once would otherwise take every replica of some
/// blocks offline together).
pub fn rollout_hash(spec: &ClusterSpec, i: &Instance, config: &HadoopConfig) -> String {
    rollout_hash_of(spec, i.role, i.cpu, i.memory, config)
}

fn rollout_hash_of(spec: &ClusterSpec, role: Role, cpu: herd_api::quantity::Cpu, memory: herd_api::quantity::Memory, config: &HadoopConfig) -> String {
    rollout_with(spec, role, cpu, memory, &config.files_hash())
}

/// [`rollout_hash`] with the files' hash `files` given.
fn rollout_with(spec: &ClusterSpec, role: Role, cpu: herd_api::quantity::Cpu, memory: herd_api::quantity::Memory, files: &str) -> String {
    let pool = spec.pools.get(&role);
    stable_hash(&(files, spec.image_for(role), cpu, memory, pool.map(|p| (&p.command, &p.env, &p.publish))))
}

/// The rollout hash of member `m` rendered to `config`, whose files hash to `files`
/// ([`render::Shapes::render_hashed`]), when its container reports running `running`.
/// Workers rendered by shape take `files` in their rollout hash. Before, every member's
/// took [`HadoopConfig::files_hash`]: a container started then, whose hash is that of
/// `config` in that form, keeps it (only a change of the config restarts it, never a change
/// of how its hash is made; an upgrade must not restart every DataNode of the fleet). That
/// form is hashed only for a member reporting another hash than the new one.
fn rollout_kept(spec: &ClusterSpec, m: &Member, config: &HadoopConfig, files: &str, running: Option<&str>) -> String {
    let rollout = rollout_with(spec, m.role, m.cpu, m.memory, files);
    match running {
        Some(running) if running != rollout => {
            let whole = rollout_hash_of(spec, m.role, m.cpu, m.memory, config);
            if whole == running { whole } else { rollout }
        }
        _ => rollout,
    }
}

/// Whether an instance counts as healthy for a rollout: its master says so, or, for roles
/// no master reports on, its container runs.
pub fn healthy(role: Role, observed: Option<&Observed>, hadoop: Option<&InstanceHadoop>) -> bool {
    let running = observed.is_some_and(|o| o.state == ContainerState::Running);
    if !running {
        return false;
    }
    match (role, hadoop) {
        (Role::Datanode, Some(h)) if h.hdfs_state.is_some() => h.in_hdfs(),
        (Role::Nodemanager, Some(h)) if h.yarn_state.is_some() => h.in_yarn(),
        (Role::Namenode | Role::Resourcemanager, Some(h)) if h.master.is_some() => h.master.as_deref() == Some("up"),
        _ => true,
    }
}

/// Decides which instances get their newest config now and which hold the one they run:
/// one restart at a time per cluster, masters first, and none while any running instance of
/// the cluster is unhealthy (as a careful operator would: never take a second DataNode out
/// while one is out) — except that an unhealthy instance still on the old config goes first,
/// since restarting it takes out nothing that is in. Returns the releases and, per instance,
/// its rollout phase for `herd status` (`waiting` or `restarting`).
pub fn releases(
    data: &ClusterData<'_>,
    newest: HashMap<InstanceRef, std::sync::Arc<Rendered>>,
    hadoop: &HashMap<InstanceRef, InstanceHadoop>,
) -> (HashMap<InstanceRef, Release>, HashMap<InstanceRef, &'static str>) {
    let mut order: Vec<&&Instance> = data.instances.iter().filter(|i| newest.contains_key(&i.instance)).collect();
    order.sort_by_key(|i| (i.role, i.ordinal));
    let mut busy = false;
    let mut candidates = Vec::new();
    let mut unhealthy_candidate = None;
    let mut phases = HashMap::default();
    for i in &order {
        // NB: a leaving instance is never restarted (a DataNode mid-decommission would start
        // over) and does not hold up the rollout of the others.
        if data.leaving.contains(&i.instance) {
            continue;
        }
        let observed = data.observed.get(&i.instance).copied();
        let want = &newest[&i.instance].rollout;
        let running = observed.is_some_and(|o| o.state == ContainerState::Running);
        let unhealthy = running && !healthy(i.role, observed, hadoop.get(&i.instance));
        match observed.and_then(|o| o.config_hash.as_deref()) {
            // Nothing runs yet, or it runs what it should.
            None => {}
            Some(have) if have == want.as_str() => busy |= unhealthy,
            // Stopped or failed containers restart anyway: nothing to protect.
            Some(_) if !running => {}
            Some(_) => {
                if unhealthy && unhealthy_candidate.is_none() {
                    unhealthy_candidate = Some(i.instance.clone());
                }
                busy |= unhealthy;
                candidates.push(i.instance.clone());
            }
        }
    }
    let released = match (unhealthy_candidate, busy) {
        (Some(out), _) => Some(out),
        (None, true) => None,
        (None, false) => candidates.first().cloned(),
    };
    let is_candidate: BTreeSet<&InstanceRef> = candidates.iter().collect();
    let mut out = HashMap::with_capacity_and_hasher(newest.len(), Default::default());
    for (instance, rendered) in newest {
        let hold = (is_candidate.contains(&instance) && Some(&instance) != released.as_ref())
            || (data.leaving.contains(&instance) && data.observed.get(&instance).is_some_and(|o| o.config_hash.is_some()));
        // NB: a leaving instance is held whatever its config, but it is not waiting for a
        // rollout (it never restarts): only held candidates show `waiting`.
        if hold && is_candidate.contains(&instance) {
            phases.insert(instance.clone(), "waiting");
        } else if Some(&instance) == released.as_ref() {
            phases.insert(instance.clone(), "restarting");
        }
        out.insert(instance, Release { config: rendered.config.clone(), hold, rollout: rendered.rollout.clone() });
    }
    (out, phases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::quantity::{Cpu, Memory};

    fn inst(role: Role, n: u32) -> Instance {
        Instance {
            instance: InstanceRef::new("t", "c", role, n),
            role,
            ordinal: n,
            host: Some("h1".into()),
            pending: None,
            cpu: Cpu(1000),
            memory: Memory(1 << 30),
            placement: 0,
        }
    }

    fn obs(i: &Instance, hash: Option<&str>, state: ContainerState) -> Observed {
        Observed {
            instance: i.instance.clone(),
            container_id: "x".into(),
            state,
            started_at: None,
            exit_code: None,
            error: None,
            ip: None,
            config_hash: hash.map(Into::into),
            live_hash: None,
            hadoop: None,
        }
    }

    fn config(v: &str) -> HadoopConfig {
        HadoopConfig { files: [("core-site.xml".to_string(), v.into())].into(), ..Default::default() }
    }

    /// `instances` with what their hosts `observed`, nothing leaving.
    fn cluster_data<'a>(
        spec: &'a ClusterSpec,
        instances: &'a [Instance],
        hosts: &'a HashMap<&'a str, HostRef<'a>>,
        observed: &'a [Observed],
    ) -> ClusterData<'a> {
        ClusterData {
            spec,
            instances: instances.iter().collect(),
            hosts,
            observed: observed.iter().map(|o| (&o.instance, o)).collect(),
            leaving: BTreeSet::new(),
            poll_interval_ms: 1000,
        }
    }

    /// A cluster spec with no pools: what `releases` reads of it is the images and pools.
    fn empty_spec() -> ClusterSpec {
        match serde_json::from_value(serde_json::json!({"tenant": "t", "name": "c"})) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn in_service() -> InstanceHadoop {
        InstanceHadoop { hdfs_state: Some("In Service".into()), live: Some(true), ..Default::default() }
    }

    fn rendered(spec: &ClusterSpec, i: &Instance, config: &HadoopConfig) -> std::sync::Arc<Rendered> {
        std::sync::Arc::new(Rendered { config: config.clone().into(), rollout: rollout_hash(spec, i, config) })
    }

    #[test]
    fn a_container_started_with_a_hash_of_its_whole_files_keeps_it_and_others_get_the_shaped_one() {
        let spec = herd_api::yaml::parse_cluster_spec(
            "tenant: t\nname: hash-form\nimages: {datanode: i}\npools:\n  datanode: {replicas: 3, cpu: 100m, memory: 256Mi}\n",
        )
        .expect("spec");
        let dns: Vec<Instance> = (0..3)
            .map(|n| Instance { instance: InstanceRef::new("t", "hash-form", Role::Datanode, n), ..inst(Role::Datanode, n) })
            .collect();
        let info: HostInfo = serde_json::from_value(serde_json::json!({"id": "h1", "cpu": "16", "memory": "64Gi", "dataDisks": ["/data/1"]}))
            .expect("host");
        let hosts: HashMap<&str, HostRef<'_>> = [("h1", HostRef { info: &info, age_ms: 0 })].into_iter().collect();
        let fresh = cluster_data(&spec, &dns, &hosts, &[]).render_all();
        let whole: Vec<String> = dns.iter().map(|i| rollout_hash(&spec, i, &fresh[&i.instance].config)).collect();
        for (i, whole) in dns.iter().zip(&whole) {
            assert_ne!(&fresh[&i.instance].rollout, whole, "{} rendered by shape takes the shaped hash", i.instance);
        }
        // Containers started before: one with the hash of its whole files, one with an older
        // config's, one with the shaped hash.
        let observed =
            [obs(&dns[0], Some(&whole[0]), ContainerState::Running), obs(&dns[1], Some("older"), ContainerState::Running), obs(&dns[2], Some(&fresh[&dns[2].instance].rollout), ContainerState::Running)];
        forget_rendered("t", "hash-form");
        let again = cluster_data(&spec, &dns, &hosts, &observed).render_all();
        assert_eq!(again[&dns[0].instance].rollout, whole[0], "kept: its config did not change");
        assert_eq!(again[&dns[1].instance].rollout, fresh[&dns[1].instance].rollout, "its config changed: the shaped hash");
        assert_eq!(again[&dns[2].instance].rollout, fresh[&dns[2].instance].rollout);
        // Every rollout hash names one config: a change of config changes it either way.
        assert_ne!(fresh[&dns[0].instance].rollout, fresh[&dns[1].instance].rollout);
        // Rendered before its container's report was known (memoized with the shaped hash):
        // the report, when it comes, is checked once all the same.
        forget_rendered("t", "hash-form");
        let before_reports = cluster_data(&spec, &dns, &hosts, &[]).render_all();
        assert_eq!(before_reports[&dns[0].instance].rollout, fresh[&dns[0].instance].rollout);
        let later = cluster_data(&spec, &dns, &hosts, &observed).render_all();
        assert_eq!(later[&dns[0].instance].rollout, whole[0], "kept once its report is known");
        assert_eq!(later[&dns[1].instance].rollout, fresh[&dns[1].instance].rollout);
        let after = cluster_data(&spec, &dns, &hosts, &observed).render_all();
        assert!(std::sync::Arc::ptr_eq(&after[&dns[1].instance], &later[&dns[1].instance]), "a report checked once is not rendered again");
        forget_rendered("t", "hash-form");
    }

    #[test]
    fn one_restart_at_a_time_and_none_while_one_is_unhealthy() {
        let spec = empty_spec();
        let dns: Vec<Instance> = (0..3).map(|n| inst(Role::Datanode, n)).collect();
        let (old, new) = (config("old"), config("new"));
        let hosts = HashMap::default();
        let run = |observed: Vec<Observed>, hadoop: HashMap<InstanceRef, InstanceHadoop>| {
            let data = cluster_data(&spec, &dns, &hosts, &observed);
            let newest = dns.iter().map(|i| (i.instance.clone(), rendered(&spec, i, &new))).collect();
            let (r, phases) = releases(&data, newest, &hadoop);
            let held: Vec<u32> = dns.iter().filter(|i| r[&i.instance].hold).map(|i| i.ordinal).collect();
            let restarting: Vec<u32> = dns.iter().filter(|i| phases.get(&i.instance) == Some(&"restarting")).map(|i| i.ordinal).collect();
            (held, restarting)
        };
        let healthy_all: HashMap<_, _> = dns.iter().map(|i| (i.instance.clone(), in_service())).collect();
        let (o, n) = (rollout_hash(&spec, &dns[0], &old), rollout_hash(&spec, &dns[0], &new));

        // All on the old config: the first one is released, the others hold.
        let all_old = dns.iter().map(|i| obs(i, Some(&o), ContainerState::Running)).collect();
        assert_eq!(run(all_old, healthy_all.clone()), (vec![1, 2], vec![0]));

        // datanode-0 restarted on the new config but is not yet live: everyone else waits.
        let first_done = vec![
            obs(&dns[0], Some(&n), ContainerState::Running),
            obs(&dns[1], Some(&o), ContainerState::Running),
            obs(&dns[2], Some(&o), ContainerState::Running),
        ];
        let mut not_yet = healthy_all.clone();
        not_yet.insert(dns[0].instance.clone(), InstanceHadoop { hdfs_state: Some("not registered".into()), ..Default::default() });
        assert_eq!(run(first_done.clone(), not_yet), (vec![1, 2], vec![]));

        // Once it is live and in service, the next one goes.
        assert_eq!(run(first_done, healthy_all.clone()), (vec![2], vec![1]));

        // A new cluster (nothing running yet) holds nothing.
        assert_eq!(run(vec![], HashMap::default()), (vec![], vec![]));

        // A worker out of HDFS on the old config goes first; nobody else meanwhile.
        let mut one_out = healthy_all.clone();
        one_out.insert(dns[2].instance.clone(), InstanceHadoop { hdfs_state: Some("dead".into()), live: Some(false), ..Default::default() });
        let all_old: Vec<Observed> = dns.iter().map(|i| obs(i, Some(&o), ContainerState::Running)).collect();
        assert_eq!(run(all_old.clone(), one_out.clone()), (vec![0, 1], vec![2]));

        // One out on the new config (say, a dead DataNode): the rollout waits, whatever the others.
        let mut on_new = all_old;
        on_new[2] = obs(&dns[2], Some(&n), ContainerState::Running);
        assert_eq!(run(on_new, one_out), (vec![0, 1], vec![]));

        // An exited container restarts with the new config at once.
        let exited = vec![
            obs(&dns[0], Some(&o), ContainerState::Exited),
            obs(&dns[1], Some(&o), ContainerState::Running),
            obs(&dns[2], Some(&o), ContainerState::Running),
        ];
        assert_eq!(run(exited, healthy_all), (vec![2], vec![1]));
    }

    #[test]
    fn a_resize_rolls_one_datanode_at_a_time() {
        let spec = empty_spec();
        let before: Vec<Instance> = (0..3).map(|n| inst(Role::Datanode, n)).collect();
        let after: Vec<Instance> = before.iter().map(|i| Instance { memory: Memory(2 << 30), ..i.clone() }).collect();
        let same = config("same");
        assert_ne!(rollout_hash(&spec, &before[0], &same), rollout_hash(&spec, &after[0], &same), "the size is in the hash");
        let observed: Vec<Observed> = before.iter().map(|i| obs(i, Some(&rollout_hash(&spec, i, &same)), ContainerState::Running)).collect();
        let hosts = HashMap::default();
        let data = cluster_data(&spec, &after, &hosts, &observed);
        let newest: HashMap<InstanceRef, std::sync::Arc<Rendered>> = after.iter().map(|i| (i.instance.clone(), rendered(&spec, i, &same))).collect();
        let healthy: HashMap<_, _> = after.iter().map(|i| (i.instance.clone(), in_service())).collect();
        let (r, _) = releases(&data, newest.clone(), &healthy);
        let held: Vec<u32> = after.iter().filter(|i| r[&i.instance].hold).map(|i| i.ordinal).collect();
        assert_eq!(held, [1, 2], "one DataNode restarts with its new size, the others keep theirs");

        // A leaving DataNode keeps its container and is not shown waiting for a rollout.
        let data = ClusterData { leaving: BTreeSet::from([after[0].instance.clone()]), ..data };
        let (r, phases) = releases(&data, newest, &healthy);
        assert!(r[&after[0].instance].hold);
        assert_eq!(phases.get(&after[0].instance), None, "leaving, not waiting");
        assert_eq!(phases.get(&after[1].instance), Some(&"restarting"));
    }
}
