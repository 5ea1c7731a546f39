//! The controller: one `HadoopCluster` at a time, observe → decide → persist the decision →
//! apply → status.
//!
//! ```text
//!  HadoopCluster (watch) ──► reconcile
//!                              │ finalizer (added first; on delete: Cleanup, then removed)
//!                              │ validate (herd_api::validate) ── invalid ─► status.invalid,
//!                              │                                  Degraded/InvalidSpec, event;
//!                              │                                  nothing applied
//!                              ▼
//!          HadoopPools (one per worker pool): created, or sent the cluster's replicas
//!          when those changed; their spec.replicas sizes the pools (see `pools`)
//!                              ▼
//!          observe: StatefulSets, pods, nodes (rack label), NameNode /jmx, RM /ws/v1
//!                              ▼
//!          lifecycle::decide (pure): StatefulSet sizes, leaving phases
//!                              ▼
//!          status.leaving patched FIRST (a restart resumes from it)
//!                              ▼
//!          objects::build (pure) ─► server-side apply, field manager `herd-operator`
//!                              ▼
//!          status: pools, HDFS/YARN health, conditions; the HadoopPools' status;
//!          events for notable steps
//! ```
//!
//! Errors (the API server refusing, or a reconcile not done within `reconcile_timeout`)
//! requeue with exponential backoff per
//! resource (with jitter, capped) and set `Degraded` with reason `ReconcileError` when the
//! status can still be written; the operator never exits on them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_api::hadoop::{NameNodeHealth, ResourceManagerHealth};
use herd_api::validate::FieldError;
use herd_api::{ClusterSpec, Role};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{FieldProblem, HadoopCluster, HadoopClusterStatus, HadoopPool, HadoopPoolStatus, PoolStatus, Watched, WorkerRole};
use crate::lifecycle::{self, DecideInput, Decision, PoolObserved};
use crate::objects::{self, MANAGER, ObservedPod, Owned};
use crate::pools;

/// The finalizer the operator puts on every `HadoopCluster`.
pub const FINALIZER: &str = "herd.dev/cleanup";

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node label naming a node's rack.
    pub rack_label: String,
    /// How soon to look again while workers leave or pods start.
    pub busy_every: Duration,
    /// How soon to look again when all is settled (the safety net beside the watches).
    pub idle_every: Duration,
    /// The first backoff after an error; doubled per further error, up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a master may take to answer a health read.
    pub health_timeout: Duration,
    /// How long one reconcile may take in all: an API server that stops answering fails it
    /// (then backoff and a condition) rather than holding the resource forever.
    pub reconcile_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rack_label: "topology.kubernetes.io/zone".into(),
            busy_every: Duration::from_secs(5),
            idle_every: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            health_timeout: Duration::from_secs(5),
            reconcile_timeout: Duration::from_secs(120),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// For the masters' web ports.
    pub http: reqwest::Client,
    pub recorder: Recorder,
    pub options: Options,
    /// Now, in Unix milliseconds (an argument, so tests control time).
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Consecutive failures per resource (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, http: reqwest::Client, recorder: Recorder, options: Options) -> Context {
        let clock = Arc::new(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
        });
        Context { client, http, recorder, options, clock, failures: Mutex::new(HashMap::new()) }
    }

    /// The same, with a clock of the caller's.
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> u64 + Send + Sync>) -> Context {
        self.clock = clock;
        self
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    Build(#[from] objects::BuildError),
    #[error("the resource has no namespace (HadoopCluster is namespaced)")]
    NoNamespace,
    #[error("the reconcile took longer than {0:?} (is the API server answering?)")]
    Timeout(Duration),
    #[error("HadoopPool {0} exists but is not this cluster's (it has no controller owner reference to it): delete or rename it")]
    ForeignPool(String),
}

/// `Result` with this module's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn key(obj: &impl Resource) -> String {
    format!("{}/{}", obj.meta().namespace.as_deref().unwrap_or_default(), obj.meta().name.as_deref().unwrap_or_default())
}

/// Reconciles one `HadoopCluster`: what `Controller::run` calls.
pub async fn reconcile(obj: Arc<Watched>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &namespace);
    let work = finalizer(&api, FINALIZER, obj.clone(), |event| {
        let ctx = ctx.clone();
        async move {
            match event {
                Finalize::Apply(obj) => match obj.read() {
                    Ok(hc) => apply(&hc, &ctx).await,
                    Err(problem) => refuse(obj.as_ref(), obj.status(), vec![problem], &ctx).await,
                },
                Finalize::Cleanup(obj) => cleanup(&obj, &ctx).await,
            }
        }
    });
    let limit = ctx.options.reconcile_timeout;
    let result = match tokio::time::timeout(limit, work).await {
        Ok(r) => r.map_err(|e| Error::Finalizer(Box::new(e))),
        Err(_) => Err(Error::Timeout(limit)),
    };
    match &result {
        Ok(_) => {
            ctx.failures().remove(&key(obj.as_ref()));
        }
        Err(e) => {
            // Best effort: the API server may be what fails.
            let mut status = obj.status();
            let now = (ctx.clock)();
            set_condition(&mut status.conditions, "Degraded", true, "ReconcileError", &e.to_string(), now, obj.metadata.generation);
            let _ = tokio::time::timeout(ctx.options.health_timeout, patch_status(&api, &obj.name_any(), &status)).await;
        }
    }
    result
}

/// What `Controller::run` calls on an error: retry after an exponential backoff per resource
/// (base × 2^failures, capped, with up to 10 % jitter).
pub fn error_policy(obj: Arc<Watched>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key(obj.as_ref())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(&ctx.options, failures);
    warn!(cluster = %key(obj.as_ref()), failures, retry_in = ?delay, error = %error, "reconcile failed");
    Action::requeue(delay)
}

/// The delay after `failures` consecutive failures (1 = the first).
pub fn backoff(options: &Options, failures: u32) -> Duration {
    let exp = options.backoff_base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(options.backoff_max);
    let jitter = capped.mul_f64(rand::random::<f64>() * 0.1);
    capped + jitter
}

/// Deletion: owned objects go with the resource (owner references); volumes only when
/// `dataOnDelete: Delete`.
async fn cleanup(obj: &Watched, ctx: &Context) -> Result<Action> {
    let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
    let name = obj.name_any();
    let reference = obj.object_ref(&());
    if obj.spec.get("dataOnDelete").and_then(|v| v.as_str()) == Some(crate::crd::DataPolicy::Delete.as_str()) {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        let lp = ListParams::default().labels(&objects::selector_string(&name, None));
        pvcs.delete_collection(&DeleteParams::default(), &lp).await?;
        event(ctx, &reference, EventType::Normal, "DataDeleted", format!("deleted the volumes of {name} (dataOnDelete: Delete)")).await;
    } else {
        event(ctx, &reference, EventType::Normal, "DataKept", format!("kept the volumes of {name} (dataOnDelete: Retain)")).await;
    }
    Ok(Action::await_change())
}

/// A spec that is refused: its status says which fields and why (and `Degraded`), a Warning
/// event says it once; nothing of it is applied, and nothing is retried until it changes.
async fn refuse(obj: &impl Resource<DynamicType = ()>, current: HadoopClusterStatus, problems: Vec<FieldProblem>, ctx: &Context) -> Result<Action> {
    let namespace = obj.meta().namespace.clone().ok_or(Error::NoNamespace)?;
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = obj.meta().generation;
    let now = (ctx.clock)();
    let mut status = current.clone();
    let message = problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; ");
    status.invalid = problems;
    status.observed_generation = generation;
    set_condition(&mut status.conditions, "Degraded", true, "InvalidSpec", &message, now, generation);
    set_condition(&mut status.conditions, "Progressing", false, "InvalidSpec", "the spec is refused; nothing of it is applied", now, generation);
    patch_status(&api, &name, &status).await?;
    if current.invalid != status.invalid {
        event(ctx, &obj.object_ref(&()), EventType::Warning, "InvalidSpec", message).await;
    }
    Ok(Action::await_change())
}

/// Refusals of a spec, with the resource's field paths: `herd apply`'s validation, and what
/// operator mode does not offer.
pub fn check(spec: &ClusterSpec) -> Vec<FieldProblem> {
    let mut errors: Vec<FieldError> = match herd_api::validate::validate(spec) {
        Ok(()) => Vec::new(),
        Err(e) => e.field_errors(),
    };
    for (role, pool) in &spec.pools {
        if !pool.publish.is_empty() {
            errors.push(FieldError::new(
                format!("pools.{role}.publish"),
                "host ports are not published in operator mode: reach the daemons through the cluster's Services",
            ));
        }
    }
    errors
        .into_iter()
        .map(|e| FieldProblem {
            field: match e.field.as_str() {
                "tenant" => "metadata.namespace".to_string(),
                "name" => "metadata.name".to_string(),
                "" => "spec".to_string(),
                f => format!("spec.{f}"),
            },
            message: e.message,
        })
        .collect()
}

async fn apply(hc: &HadoopCluster, ctx: &Context) -> Result<Action> {
    let namespace = hc.namespace().ok_or(Error::NoNamespace)?;
    let name = hc.name_any();
    let api: Api<Watched> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = (ctx.clock)();
    let generation = hc.metadata.generation;
    let mut status = hc.status.clone().unwrap_or_default();
    let mut spec = hc.spec.cluster_spec(&namespace, &name);

    let problems = check(&spec);
    if !problems.is_empty() {
        return refuse(hc, status, problems, ctx).await;
    }
    status.invalid.clear();
    let reference = hc.object_ref(&());

    // The worker pools' sizes are their HadoopPools' (created, or sent the cluster's
    // replicas when those changed, first).
    let worker_pools = sync_pools(ctx, hc, &namespace, &mut spec, &reference).await?;

    // Observe.
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut pools = Vec::new();
    for role in [Role::Datanode, Role::Nodemanager] {
        if spec.pools.contains_key(&role) {
            let sts = statefulsets.get_opt(&objects::names::statefulset(&name, role)).await?;
            pools.push(PoolObserved { role, current: sts.and_then(|s| s.spec).and_then(|s| s.replicas).map(|r| r.max(0) as u32) });
        }
    }
    let pods = observe_pods(ctx, &namespace, &name).await?;
    let masters = objects::masters(&spec, &name, &namespace);
    let timeout = ctx.options.health_timeout;
    let nn = match &masters.namenode {
        Some(e) => Some(crate::health::namenode(&ctx.http, e, timeout).await),
        None => None,
    };
    let rm = match &masters.resourcemanager {
        Some(e) => Some(crate::health::resourcemanager(&ctx.http, e, timeout).await),
        None => None,
    };

    // Decide, and persist the decision before acting on it.
    let present: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    let decision = lifecycle::decide(&DecideInput {
        spec: &spec,
        stored: &status.leaving,
        pools: &pools,
        pods: &present,
        namenode: nn.as_ref(),
        resourcemanager: rm.as_ref(),
        now_ms: now,
    });
    if decision.leaving != status.leaving {
        status.leaving = decision.leaving.clone();
        patch_status(&api, &name, &status).await?;
    }
    for (reason, note) in &decision.notes {
        event(ctx, &reference, EventType::Normal, reason, note.clone()).await;
    }
    for refusal in &decision.refused {
        event(ctx, &reference, EventType::Warning, "ScaleRefused", refusal.clone()).await;
    }

    // Apply.
    let mut replicas: BTreeMap<Role, u32> = decision.replicas.clone();
    for (role, pool) in &spec.pools {
        replicas.entry(*role).or_insert(pool.replicas.0);
    }
    let exclude = decision.exclude();
    let owned = objects::build(&objects::Inputs {
        hc,
        spec: &spec,
        replicas: &replicas,
        leaving: &exclude,
        pods: &pods,
        rack_label: &ctx.options.rack_label,
    })?;
    for object in &owned {
        apply_one(ctx, &namespace, object).await?;
    }

    // Status.
    let was_ready = status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True");
    fill_status(&mut status, &spec, &name, &replicas, &pods, nn.as_ref(), rm.as_ref(), &decision, now, generation);
    patch_status(&api, &name, &status).await?;
    let pool_api: Api<HadoopPool> = Api::namespaced(ctx.client.clone(), &namespace);
    for (role, pool) in &worker_pools {
        let pool_status = HadoopPoolStatus {
            observed_generation: pool.metadata.generation,
            replicas: replicas.get(role).copied().unwrap_or(0) as i32,
            ready: pods.iter().filter(|p| p.role == *role && p.ready).count() as i32,
            leaving: decision.leaving.values().filter(|l| l.role == role.as_str()).count() as i32,
            selector: objects::selector_string(&name, Some(*role)),
        };
        if pool.status.as_ref() != Some(&pool_status) {
            patch_pool_status(&pool_api, &pool.name_any(), &pool_status).await?;
        }
    }
    let ready = status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True");
    if ready && !was_ready {
        event(ctx, &reference, EventType::Normal, "Available", format!("{name} is available")).await;
    }
    info!(cluster = %key(hc), leaving = decision.leaving.len(), "reconciled");
    // Look again soon while anything moves or is wrong (HDFS health changes without any
    // Kubernetes object changing); else the periodic resync is the safety net.
    let is = |t: &str, s: &str| status.conditions.iter().any(|c| c.type_ == t && c.status == s);
    let busy = !decision.leaving.is_empty() || is("Progressing", "True") || is("Degraded", "True") || !is("Available", "True");
    Ok(Action::requeue(if busy { ctx.options.busy_every } else { ctx.options.idle_every }))
}

/// Reads (and creates, or sends the cluster's replicas to) the `HadoopPool` of each worker
/// pool, and sizes the pools of `spec` by them (see [`pools`]); removes the pools of workers
/// the cluster no longer has. Returns the pools as stored, by role.
async fn sync_pools(
    ctx: &Context,
    hc: &HadoopCluster,
    namespace: &str,
    spec: &mut ClusterSpec,
    reference: &ObjectReference,
) -> Result<BTreeMap<Role, HadoopPool>> {
    let api: Api<HadoopPool> = Api::namespaced(ctx.client.clone(), namespace);
    let cluster = hc.name_any();
    let uid = hc.meta().uid.as_deref();
    let mut out = BTreeMap::new();
    for worker in WorkerRole::ALL {
        let role = worker.role();
        let name = objects::names::pool(&cluster, role);
        let existing = api.get_opt(&name).await?;
        let ours = existing.as_ref().map(|p| pools::owned_by(p, uid));
        let Some(pool_spec) = spec.pools.get_mut(&role) else {
            if ours == Some(true) {
                api.delete(&name, &DeleteParams::default()).await?;
                event(ctx, reference, EventType::Normal, "PoolRemoved", format!("deleted HadoopPool {name}: the cluster has no {role} pool")).await;
            }
            continue;
        };
        if ours == Some(false) {
            return Err(Error::ForeignPool(name));
        }
        let mut size = pools::size(pool_spec.replicas.0, existing.as_ref());
        let stored = match (size.write, existing) {
            (pools::Write::Keep, Some(p)) => p,
            (pools::Write::Forward, Some(p)) => {
                let pp = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
                let patch = pools::forward(p.metadata.resource_version.as_deref(), size.replicas);
                let sent = match api.patch(&name, &pp, &Patch::Merge(&patch)).await {
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        // The pool changed since it was read: decide again on it as it is now.
                        let fresh = api.get(&name).await?;
                        let (replicas, patch) = pools::after_conflict(&p, &fresh, size.replicas);
                        size.replicas = replicas;
                        api.patch(&name, &pp, &Patch::Merge(&patch)).await?
                    }
                    other => other?,
                };
                let note = format!("HadoopPool {name} at {} replicas: spec.pools.{role}.replicas changed", size.replicas);
                event(ctx, reference, EventType::Normal, "PoolResized", note).await;
                sent
            }
            _ => {
                let created = api.create(&PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() }, &pools::object(hc, worker, size.replicas)?).await?;
                event(ctx, reference, EventType::Normal, "PoolCreated", format!("created HadoopPool {name} ({} replicas): `kubectl scale hadooppool {name}` sizes the pool", size.replicas)).await;
                created
            }
        };
        pool_spec.replicas = herd_api::spec::Replicas(size.replicas);
        out.insert(role, stored);
    }
    Ok(out)
}

/// The cluster's pods, with their nodes' rack labels.
async fn observe_pods(ctx: &Context, namespace: &str, cluster: &str) -> Result<Vec<ObservedPod>> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(&objects::selector_string(cluster, None))).await?;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut racks: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for pod in list.items {
        let Some(role) = pod.labels().get(objects::LABEL_COMPONENT).and_then(|r| r.parse::<Role>().ok()) else { continue };
        let name = pod.name_any();
        let Some(ordinal) = name.rsplit('-').next().and_then(|o| o.parse::<u32>().ok()) else { continue };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(node) = &node
            && !racks.contains_key(node)
        {
            let rack = nodes.get_opt(node).await?.and_then(|n| n.labels().get(&ctx.options.rack_label).cloned());
            racks.insert(node.clone(), rack);
        }
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
        let rack = node.as_ref().and_then(|n| racks.get(n).cloned().flatten());
        out.push(ObservedPod { name, role, ordinal, node, rack, ip, ready });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Server-side apply of one object under [`MANAGER`], forcing ownership of its fields.
async fn apply_one(ctx: &Context, namespace: &str, object: &Owned) -> Result<()> {
    let pp = PatchParams::apply(MANAGER).force();
    let name = object.name().to_string();
    match object {
        Owned::ConfigMap(o) => {
            Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace).patch(&name, &pp, &Patch::Apply(o.as_ref())).await?;
        }
        Owned::Service(o) => {
            Api::<Service>::namespaced(ctx.client.clone(), namespace).patch(&name, &pp, &Patch::Apply(o.as_ref())).await?;
        }
        Owned::StatefulSet(o) => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), namespace).patch(&name, &pp, &Patch::Apply(o.as_ref())).await?;
        }
        Owned::Pdb(o) => {
            Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), namespace).patch(&name, &pp, &Patch::Apply(o.as_ref())).await?;
        }
    }
    Ok(())
}

/// Writes the status subresource (server-side apply: fields this manager no longer sets,
/// such as a leaving worker that is gone, are removed).
async fn patch_status(api: &Api<Watched>, name: &str, status: &HadoopClusterStatus) -> Result<()> {
    let body = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": "HadoopCluster",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// Writes a pool's status subresource (server-side apply, as the cluster's).
async fn patch_pool_status(api: &Api<HadoopPool>, name: &str, status: &HadoopPoolStatus) -> Result<()> {
    let body = json!({
        "apiVersion": format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
        "kind": "HadoopPool",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

/// Publishes an event on the resource; a failure to do so is logged, never fatal.
async fn event(ctx: &Context, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
    let ev = KubeEvent { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, reference).await {
        let name = reference.name.as_deref().unwrap_or_default();
        warn!(cluster = %name, reason, error = %e, "event not published");
    }
}

/// Sets condition `type_`, keeping its transition time when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now_ms: u64,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    let time = Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(now_ms as i64 / 1000 * 1000).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = time;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: time,
            observed_generation: generation,
        }),
    }
}

/// HDFS in one line: `Healthy`, `Degraded: ...`, `SafeMode: ...`, `Unknown: ...`.
pub fn hdfs_summary(nn: Option<&NameNodeHealth>) -> String {
    match nn {
        None => "Unknown: no NameNode".into(),
        Some(h) => match &h.error {
            Some(e) => format!("Unknown: {e}"),
            None if h.safe_mode => format!("SafeMode: {}", h.safe_mode_reason.as_deref().unwrap_or("the NameNode is in safe mode")),
            None if h.missing_blocks > 0 => format!("Degraded: {} missing blocks", h.missing_blocks),
            None if h.under_replicated_blocks > 0 => format!("Degraded: {} under-replicated blocks", h.under_replicated_blocks),
            None if h.dead_datanodes > 0 => format!("Degraded: {} dead DataNodes", h.dead_datanodes),
            None => "Healthy".into(),
        },
    }
}

/// YARN in one line, likewise.
pub fn yarn_summary(rm: Option<&ResourceManagerHealth>) -> String {
    match rm {
        None => "Unknown: no ResourceManager".into(),
        Some(h) => match &h.error {
            Some(e) => format!("Unknown: {e}"),
            None if h.lost_nodes > 0 => format!("Degraded: {} lost NodeManagers", h.lost_nodes),
            None if h.unhealthy_nodes > 0 => format!("Degraded: {} unhealthy NodeManagers", h.unhealthy_nodes),
            None => "Healthy".into(),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_status(
    status: &mut HadoopClusterStatus,
    spec: &ClusterSpec,
    cluster: &str,
    replicas: &BTreeMap<Role, u32>,
    pods: &[ObservedPod],
    nn: Option<&NameNodeHealth>,
    rm: Option<&ResourceManagerHealth>,
    decision: &Decision,
    now: u64,
    generation: Option<i64>,
) {
    let pool = |role: Role| -> Option<PoolStatus> {
        let desired = spec.pools.get(&role)?.replicas.0 as i32;
        let ready = pods.iter().filter(|p| p.role == role && p.ready).count() as i32;
        Some(PoolStatus {
            desired,
            replicas: replicas.get(&role).copied().unwrap_or(0) as i32,
            ready,
            summary: format!("{ready}/{desired}"),
            selector: objects::selector_string(cluster, Some(role)),
        })
    };
    status.observed_generation = generation;
    status.datanodes = pool(Role::Datanode);
    status.nodemanagers = pool(Role::Nodemanager);
    status.hdfs = spec.pools.contains_key(&Role::Namenode).then(|| hdfs_summary(nn)).or_else(|| nn.map(|h| hdfs_summary(Some(h))));
    status.yarn = rm.map(|h| yarn_summary(Some(h)));

    let not_ready: Vec<String> = spec
        .pools
        .iter()
        .filter_map(|(role, p)| {
            let ready = pods.iter().filter(|x| x.role == *role && x.ready).count() as u32;
            (ready < p.replicas.0).then(|| format!("{role} {ready}/{}", p.replicas.0))
        })
        .collect();
    let masters_ready = [Role::Namenode, Role::Resourcemanager]
        .iter()
        .filter(|r| spec.pools.contains_key(r))
        .all(|r| pods.iter().any(|p| p.role == *r && p.ordinal == 0 && p.ready));

    // Available: HDFS answers and serves (not in safe mode, no missing blocks) and the masters run.
    let (available, reason, message) = match nn {
        Some(h) if h.error.is_some() => (false, "NameNodeUnreachable", hdfs_summary(Some(h))),
        Some(h) if h.safe_mode => (false, "SafeMode", hdfs_summary(Some(h))),
        Some(h) if h.missing_blocks > 0 => (false, "MissingBlocks", hdfs_summary(Some(h))),
        _ if !masters_ready => (false, "MastersNotReady", "the NameNode or ResourceManager pod is not ready".to_string()),
        Some(h) if h.live_datanodes < u64::from(spec.hdfs.replication) => (
            false,
            "TooFewDataNodes",
            format!("{} live DataNodes, fewer than the replication factor {}", h.live_datanodes, spec.hdfs.replication),
        ),
        _ => (true, "Available", "HDFS and YARN answer and serve".to_string()),
    };
    set_condition(&mut status.conditions, "Available", available, reason, &message, now, generation);

    let (progressing, reason, message) = if !decision.leaving.is_empty() {
        let names: Vec<String> = decision.leaving.iter().map(|(p, l)| format!("{p} {}", l.phase)).collect();
        (true, "WorkersLeaving", names.join(", "))
    } else if !not_ready.is_empty() {
        (true, "PodsNotReady", format!("ready: {}", not_ready.join(", ")))
    } else {
        (false, "Stable", "every pod is ready and none is leaving".to_string())
    };
    set_condition(&mut status.conditions, "Progressing", progressing, reason, &message, now, generation);

    let mut degraded: Vec<(String, String)> = Vec::new();
    for c in &decision.conditions {
        degraded.push((c.kind.as_str().to_string(), c.message.clone()));
    }
    for r in &decision.refused {
        degraded.push(("ScaleRefused".into(), r.clone()));
    }
    if let Some(h) = nn.filter(|h| h.error.is_none()) {
        if h.missing_blocks > 0 || h.under_replicated_blocks > 0 {
            degraded.push(("UnderReplicatedBlocks".into(), hdfs_summary(Some(h))));
        } else if h.dead_datanodes > 0 {
            degraded.push(("DeadDataNodes".into(), hdfs_summary(Some(h))));
        }
    }
    if let Some(h) = rm.filter(|h| h.error.is_none() && (h.lost_nodes > 0 || h.unhealthy_nodes > 0)) {
        degraded.push(("NodeManagersLost".into(), yarn_summary(Some(h))));
    }
    match degraded.first() {
        Some((reason, _)) => {
            let message = degraded.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            set_condition(&mut status.conditions, "Degraded", true, reason, &message, now, generation);
        }
        None => set_condition(&mut status.conditions, "Degraded", false, "Healthy", "HDFS and YARN report no problem", now, generation),
    }
}
