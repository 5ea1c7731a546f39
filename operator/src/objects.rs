//! Every Kubernetes object a `HadoopCluster` becomes, as a pure function of the resource,
//! what the lifecycle decided (StatefulSet sizes, leaving workers) and the observed pods
//! (for the rack topology). No I/O: the reconciler applies the result with server-side
//! apply under one field manager.
//!
//! Per cluster `c` in namespace `ns` (the tenant):
//! - Service `c` (headless): stable pod DNS names `c-datanode-3.c.ns`, the names the
//!   NameNode knows DataNodes by and exclude files list.
//! - per pool: StatefulSet `c-<role>` (volume claim templates from the pool's `disk` for
//!   roles that keep data; pods spread over nodes and racks) and ConfigMap `c-<role>` with
//!   its `*-site.xml`, rendered by herd's renderer once for every pod of the pool (the pod's
//!   own name reaches Hadoop through `${env.POD_NAME}`).
//! - ConfigMap `c-hosts`: the topology table and include/exclude lists the masters re-read
//!   (`hdfs dfsadmin -refreshNodes` by the NameNode pod's `refresh` container).
//! - Services `c-namenode` and `c-resourcemanager`; PodDisruptionBudget `c-datanode`;
//!   discovery ConfigMap `c` with the client `core-site.xml`/`hdfs-site.xml`/`yarn-site.xml`.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::hadoop::{ConfigFile, ports};
use herd_api::names::InstanceRef;
use herd_api::{ClusterSpec, Role};
use herd_hadoop::render::{self, ClusterView, Member, site::Endpoint, site::Masters, topology, xml};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::crd::{DataPolicy, HadoopCluster};

/// The field manager of every apply.
pub const MANAGER: &str = "herd-operator";
/// Label keys (the recommended `app.kubernetes.io` set).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The node label every node carries its own name in.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Where the rendered configuration is mounted (herd's `CONF_DIR`).
pub const CONF_DIR: &str = herd_api::hadoop::CONF_DIR;

/// One object to apply, typed so the controller can own it (boxed: they differ in size by
/// kilobytes).
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    ConfigMap(Box<ConfigMap>),
    Service(Box<Service>),
    StatefulSet(Box<StatefulSet>),
    Pdb(Box<PodDisruptionBudget>),
}

impl Owned {
    pub fn kind(&self) -> &'static str {
        match self {
            Owned::ConfigMap(_) => "ConfigMap",
            Owned::Service(_) => "Service",
            Owned::StatefulSet(_) => "StatefulSet",
            Owned::Pdb(_) => "PodDisruptionBudget",
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Owned::ConfigMap(o) => &o.metadata,
            Owned::Service(o) => &o.metadata,
            Owned::StatefulSet(o) => &o.metadata,
            Owned::Pdb(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// A pod the operator observed, for the topology table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPod {
    pub name: String,
    pub role: Role,
    pub ordinal: u32,
    /// `spec.nodeName`, once scheduled.
    pub node: Option<String>,
    /// The node's rack label, when it has one.
    pub rack: Option<String>,
    pub ip: Option<std::net::Ipv4Addr>,
    pub ready: bool,
}

/// What the objects are built from, besides the resource.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub hc: &'a HadoopCluster,
    /// The validated `herd apply` spec of `hc`.
    pub spec: &'a ClusterSpec,
    /// StatefulSet replicas per role: the spec's, except while workers leave (a
    /// StatefulSet only shrinks once its highest ordinals are decommissioned).
    pub replicas: &'a BTreeMap<Role, u32>,
    /// Pod names of the leaving workers: they go in the exclude files.
    pub leaving: &'a BTreeSet<String>,
    pub pods: &'a [ObservedPod],
    /// The node label naming a node's rack (anti-affinity spreads DataNodes over it).
    pub rack_label: &'a str,
}

/// Why objects could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the resource has no {0}")]
    Missing(&'static str),
    #[error("cannot render the {role} pool's configuration: {source}")]
    Render { role: Role, source: render::RenderError },
    #[error("cannot build {what}: {source}")]
    Shape { what: String, source: serde_json::Error },
}

/// Names of a cluster's objects.
pub mod names {
    use herd_api::Role;

    pub fn statefulset(cluster: &str, role: Role) -> String {
        format!("{cluster}-{role}")
    }
    pub fn pool_config(cluster: &str, role: Role) -> String {
        format!("{cluster}-{role}")
    }
    pub fn hosts_config(cluster: &str) -> String {
        format!("{cluster}-hosts")
    }
    pub fn pod(cluster: &str, role: Role, ordinal: u32) -> String {
        format!("{cluster}-{role}-{ordinal}")
    }
    /// A pod's DNS name through the headless Service, as Hadoop sees it.
    pub fn pod_host(cluster: &str, namespace: &str, pod: &str) -> String {
        format!("{pod}.{cluster}.{namespace}")
    }
    /// A worker pool's `HadoopPool`.
    pub fn pool(cluster: &str, role: Role) -> String {
        format!("{cluster}-{role}")
    }
    pub fn pdb(cluster: &str) -> String {
        format!("{cluster}-datanode")
    }
}

/// Labels every object of the cluster carries; `role` narrows them to one pool.
pub fn labels(cluster: &str, role: Option<Role>) -> BTreeMap<String, String> {
    let mut l = selector(cluster, role);
    l.insert(LABEL_MANAGED_BY.into(), MANAGER.into());
    l
}

/// The pods' selector: the whole cluster, or one pool.
pub fn selector(cluster: &str, role: Option<Role>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(LABEL_NAME.to_string(), "hadoop".to_string()), (LABEL_INSTANCE.to_string(), cluster.to_string())]);
    if let Some(role) = role {
        l.insert(LABEL_COMPONENT.into(), role.as_str().into());
    }
    l
}

/// `selector` as the string a scale subresource reports (`a=b,c=d`).
pub fn selector_string(cluster: &str, role: Option<Role>) -> String {
    selector(cluster, role).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Every object of the cluster, in the order they are applied (configuration before the
/// StatefulSets that mount it).
pub fn build(inputs: &Inputs<'_>) -> Result<Vec<Owned>, BuildError> {
    let hc = inputs.hc;
    let cluster = hc.metadata.name.as_deref().ok_or(BuildError::Missing("metadata.name"))?;
    let namespace = hc.metadata.namespace.as_deref().ok_or(BuildError::Missing("metadata.namespace"))?;
    let owner = owner_reference(hc)?;
    let ctx = Ctx { cluster, namespace, owner, inputs };

    let mut out = Vec::new();
    out.push(ctx.discovery()?);
    out.push(ctx.hosts()?);
    for role in inputs.spec.pools.keys() {
        out.push(ctx.pool_config(*role)?);
    }
    out.push(ctx.headless()?);
    if inputs.spec.pools.contains_key(&Role::Namenode) {
        out.push(ctx.master_service(Role::Namenode)?);
    }
    if inputs.spec.pools.contains_key(&Role::Resourcemanager) {
        out.push(ctx.master_service(Role::Resourcemanager)?);
    }
    if inputs.spec.pools.contains_key(&Role::Datanode) {
        out.push(ctx.pdb()?);
    }
    for role in inputs.spec.pools.keys() {
        out.push(ctx.statefulset(*role)?);
    }
    Ok(out)
}

/// The owner reference every object carries: the resource, as controller, so deleting it
/// removes them (Kubernetes' garbage collector) and the controller hears of their changes.
pub fn owner_reference(hc: &HadoopCluster) -> Result<OwnerReference, BuildError> {
    use kube::Resource;
    let mut owner = hc.controller_owner_ref(&()).ok_or(BuildError::Missing("metadata.uid"))?;
    // Foreground deletion of the resource waits for its objects.
    owner.block_owner_deletion = Some(true);
    Ok(owner)
}

struct Ctx<'a> {
    cluster: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    inputs: &'a Inputs<'a>,
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, BuildError> {
    serde_json::from_value(v).map_err(|source| BuildError::Shape { what: what.to_string(), source })
}

/// The ports a role's daemon listens on, by name.
fn role_ports(role: Role) -> &'static [(&'static str, u16)] {
    match role {
        Role::Namenode => &[("rpc", ports::NAMENODE_RPC), ("http", ports::NAMENODE_HTTP)],
        Role::Datanode => &[("data", ports::DATANODE_XFER), ("http", ports::DATANODE_HTTP), ("ipc", ports::DATANODE_IPC)],
        Role::Resourcemanager => &[
            ("scheduler", ports::RM_SCHEDULER),
            ("tracker", ports::RM_TRACKER),
            ("client", ports::RM_CLIENT),
            ("admin", ports::RM_ADMIN),
            ("http", ports::RM_HTTP),
        ],
        Role::Nodemanager => &[
            ("localizer", ports::NODEMANAGER_LOCALIZER),
            ("rpc", ports::NODEMANAGER_RPC),
            ("http", ports::NODEMANAGER_HTTP),
        ],
    }
}

/// The port readiness is probed on: the daemon's web port, up once it has started.
fn ready_port(role: Role) -> u16 {
    match role {
        Role::Namenode => ports::NAMENODE_HTTP,
        Role::Datanode => ports::DATANODE_HTTP,
        Role::Resourcemanager => ports::RM_HTTP,
        Role::Nodemanager => ports::NODEMANAGER_HTTP,
    }
}

/// The masters as the cluster's pods reach them: their pods' DNS names through the headless
/// Service, else the spec's external ones.
pub fn masters(spec: &ClusterSpec, cluster: &str, namespace: &str) -> Masters {
    let endpoint = |role: Role, external: &Option<herd_api::spec::ExternalMaster>, rpc: u16, http: u16| {
        if spec.pools.contains_key(&role) {
            Some(Endpoint { host: names::pod_host(cluster, namespace, &names::pod(cluster, role, 0)), rpc_port: rpc, http_port: http })
        } else {
            external.as_ref().map(|e| Endpoint {
                host: e.host.clone(),
                rpc_port: e.rpc_port.unwrap_or(rpc),
                http_port: e.http_port.unwrap_or(http),
            })
        }
    };
    Masters {
        namenode: endpoint(Role::Namenode, &spec.external.namenode, ports::NAMENODE_RPC, ports::NAMENODE_HTTP),
        resourcemanager: endpoint(Role::Resourcemanager, &spec.external.resourcemanager, ports::RM_CLIENT, ports::RM_HTTP),
    }
}

/// The member the pool's configuration is rendered for: every pod of the pool at once, its
/// name left to Hadoop's `${env.POD_NAME}` expansion.
fn pool_member(spec: &ClusterSpec, role: Role) -> Option<Member> {
    let pool = spec.pools.get(&role)?;
    Some(Member {
        instance: InstanceRef { tenant: spec.tenant.clone(), cluster: spec.name.clone(), name: "${env.POD_NAME}".into() },
        role,
        host: None,
        rack: None,
        ip: None,
        data_dirs: usize::from(role.has_data() && pool.disk.is_some()),
        cpu: pool.cpu,
        memory: pool.memory,
    })
}

impl Ctx<'_> {
    fn meta(&self, name: &str, role: Option<Role>) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": labels(self.cluster, role),
            "ownerReferences": [self.owner],
        })
    }

    /// The observed pods as renderer members, and the leaving ones, for the live files.
    fn view_members(&self) -> (Vec<Member>, BTreeSet<InstanceRef>) {
        let spec = self.inputs.spec;
        let instance = |pod: &str| InstanceRef { tenant: spec.tenant.clone(), cluster: spec.name.clone(), name: pod.to_string() };
        let members = self
            .inputs
            .pods
            .iter()
            .filter_map(|p| {
                let pool = spec.pools.get(&p.role)?;
                Some(Member {
                    instance: instance(&p.name),
                    role: p.role,
                    host: p.node.clone(),
                    rack: p.rack.clone(),
                    ip: p.ip,
                    data_dirs: 0,
                    cpu: pool.cpu,
                    memory: pool.memory,
                })
            })
            .collect();
        let leaving = self.inputs.leaving.iter().map(|p| instance(p)).collect();
        (members, leaving)
    }

    fn discovery(&self) -> Result<Owned, BuildError> {
        let spec = self.inputs.spec;
        let svc = |role: Role| format!("{}-{role}.{}.svc", self.cluster, self.namespace);
        let mut core = BTreeMap::new();
        let mut hdfs = BTreeMap::new();
        let mut yarn = BTreeMap::new();
        let m = masters(spec, self.cluster, self.namespace);
        if spec.pools.contains_key(&Role::Namenode) {
            core.insert("fs.defaultFS".to_string(), format!("hdfs://{}:{}", svc(Role::Namenode), ports::NAMENODE_RPC));
        } else if let Some(nn) = &m.namenode {
            core.insert("fs.defaultFS".to_string(), format!("hdfs://{}:{}", nn.host, nn.rpc_port));
        }
        hdfs.insert("dfs.replication".to_string(), spec.hdfs.replication.to_string());
        hdfs.insert("dfs.client.use.datanode.hostname".to_string(), "true".to_string());
        if spec.pools.contains_key(&Role::Resourcemanager) {
            yarn.insert("yarn.resourcemanager.hostname".to_string(), svc(Role::Resourcemanager));
        } else if let Some(rm) = &m.resourcemanager {
            yarn.insert("yarn.resourcemanager.address".to_string(), format!("{}:{}", rm.host, rm.rpc_port));
        }
        let title = format!("{}/{} (client)", self.namespace, self.cluster);
        let data = BTreeMap::from([
            (ConfigFile::CoreSite.as_str().to_string(), xml::configuration(&title, &core)),
            (ConfigFile::HdfsSite.as_str().to_string(), xml::configuration(&title, &hdfs)),
            (ConfigFile::YarnSite.as_str().to_string(), xml::configuration(&title, &yarn)),
        ]);
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(self.cluster, None), "data": data});
        Ok(Owned::ConfigMap(Box::new(parse("the discovery ConfigMap", v)?)))
    }

    fn hosts(&self) -> Result<Owned, BuildError> {
        let (members, leaving) = self.view_members();
        let view = ClusterView { spec: self.inputs.spec, members: &members, leaving };
        let data = BTreeMap::from([
            (render::TOPOLOGY_FILE, topology::table(&view)),
            (render::DFS_HOSTS_FILE, String::new()),
            (render::DFS_EXCLUDE_FILE, topology::leaving(&view, Role::Datanode)),
            (render::YARN_INCLUDE_FILE, String::new()),
            (render::YARN_EXCLUDE_FILE, topology::leaving(&view, Role::Nodemanager)),
        ]);
        let name = names::hosts_config(self.cluster);
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(&name, None), "data": data});
        Ok(Owned::ConfigMap(Box::new(parse("the hosts ConfigMap", v)?)))
    }

    fn pool_config(&self, role: Role) -> Result<Owned, BuildError> {
        let spec = self.inputs.spec;
        let member = pool_member(spec, role).ok_or(BuildError::Missing("pool"))?;
        let view = ClusterView { spec, members: &[], leaving: BTreeSet::new() };
        let config = render::render_with(&view, &masters(spec, self.cluster, self.namespace), &member)
            .map_err(|source| BuildError::Render { role, source })?;
        let name = names::pool_config(self.cluster, role);
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(&name, Some(role)), "data": config.files});
        Ok(Owned::ConfigMap(Box::new(parse("a pool's ConfigMap", v)?)))
    }

    fn headless(&self) -> Result<Owned, BuildError> {
        let v = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.meta(self.cluster, None),
            "spec": {
                "clusterIP": "None",
                // NB: DataNodes must resolve one another (and the NameNode them) before they
                // are ready; readiness is the web port, which starts after registration.
                "publishNotReadyAddresses": true,
                "selector": selector(self.cluster, None),
                "ports": [{"name": "nn-rpc", "port": ports::NAMENODE_RPC}],
            },
        });
        Ok(Owned::Service(Box::new(parse("the headless Service", v)?)))
    }

    fn master_service(&self, role: Role) -> Result<Owned, BuildError> {
        let name = format!("{}-{role}", self.cluster);
        let ports: Vec<Value> = role_ports(role).iter().map(|(n, p)| json!({"name": n, "port": p, "targetPort": p})).collect();
        let v = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.meta(&name, Some(role)),
            "spec": {"selector": selector(self.cluster, Some(role)), "ports": ports},
        });
        Ok(Owned::Service(Box::new(parse("a master's Service", v)?)))
    }

    /// DataNodes: a block stored `replication` times stays readable while any
    /// `replication - 1` of its DataNodes are down, so voluntary disruptions (node drains,
    /// cluster upgrades) may take up to `replication - 1` DataNode pods at once; never fewer
    /// than one, or no node holding a DataNode could ever be drained. Their volumes come back
    /// with their pods, so a disruption costs availability, never data; decommission, not
    /// the budget, guards a scale-down.
    fn pdb(&self) -> Result<Owned, BuildError> {
        let name = names::pdb(self.cluster);
        let v = json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": self.meta(&name, Some(Role::Datanode)),
            "spec": {
                "maxUnavailable": max_unavailable_datanodes(self.inputs.spec.hdfs.replication),
                "selector": {"matchLabels": selector(self.cluster, Some(Role::Datanode))},
            },
        });
        Ok(Owned::Pdb(Box::new(parse("the DataNode PodDisruptionBudget", v)?)))
    }

    fn statefulset(&self, role: Role) -> Result<Owned, BuildError> {
        let spec = self.inputs.spec;
        let pool = spec.pools.get(&role).ok_or(BuildError::Missing("pool"))?;
        let name = names::statefulset(self.cluster, role);
        let replicas = self.inputs.replicas.get(&role).copied().unwrap_or(pool.replicas.0);
        let image = spec.image_for(role).unwrap_or_default();
        let member = pool_member(spec, role).ok_or(BuildError::Missing("pool"))?;

        let mut env = vec![
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
            json!({"name": "HADOOP_CONF_DIR", "value": CONF_DIR}),
            json!({"name": "HERD_ROLE", "value": role.as_str()}),
        ];
        let mut daemon_env = render::daemon_env(&member);
        daemon_env.extend(pool.env.clone());
        if member.data_dirs > 0 {
            daemon_env.insert("HERD_DATA_DIRS".into(), format!("{}0", render::paths::DATA_DIR_PREFIX));
        }
        env.extend(daemon_env.iter().map(|(k, v)| json!({"name": k, "value": v})));

        let mut mounts = vec![json!({"name": "conf", "mountPath": CONF_DIR, "readOnly": true})];
        let mut claims = Vec::new();
        if let (true, Some(disk)) = (role.has_data(), pool.disk) {
            mounts.push(json!({"name": "data0", "mountPath": format!("{}0", render::paths::DATA_DIR_PREFIX)}));
            claims.push(json!({
                "metadata": {"name": "data0", "labels": labels(self.cluster, Some(role))},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": disk.0.to_string()}}},
            }));
        }
        let resources = json!({
            "cpu": format!("{}m", pool.cpu.0),
            "memory": pool.memory.0.to_string(),
        });
        let mut container = json!({
            "name": role.as_str(),
            "image": image,
            "env": env,
            "ports": role_ports(role).iter().map(|(n, p)| json!({"name": n, "containerPort": p})).collect::<Vec<_>>(),
            "resources": {"requests": resources, "limits": resources},
            "volumeMounts": mounts,
            "readinessProbe": {"tcpSocket": {"port": ready_port(role)}, "periodSeconds": 5},
        });
        if let Some(args) = &pool.command {
            container["args"] = json!(args);
        }
        if !pool.capabilities.add.is_empty() {
            container["securityContext"] = json!({"capabilities": {"add": pool.capabilities.add}});
        }
        let mut containers = vec![container];
        if role == Role::Namenode || role == Role::Resourcemanager {
            let drain_timeout = spec.pools.get(&Role::Nodemanager).map_or(3600, |p| p.lifecycle.drain_timeout_s);
            containers.push(refresh_container(role, image, drain_timeout));
        }

        // The pool's own files, and the live files the masters re-read, in one folder.
        // NB: a projected volume (not subPath mounts) so kubelet updates the files in place.
        let volumes = vec![json!({
            "name": "conf",
            "projected": {"sources": [
                {"configMap": {"name": names::pool_config(self.cluster, role)}},
                {"configMap": {"name": names::hosts_config(self.cluster)}},
            ]},
        })];
        let mut pod_spec = json!({"containers": containers, "volumes": volumes});
        self.place(role, pool, &mut pod_spec);
        let when_deleted = self.inputs.hc.spec.data_on_delete.as_str();
        // A decommissioned DataNode's blocks live elsewhere: its claim goes with it.
        let when_scaled = if role == Role::Datanode { "Delete" } else { DataPolicy::Retain.as_str() };
        let mut sts_spec = json!({
            "replicas": replicas,
            "serviceName": self.cluster,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(self.cluster, Some(role))},
            "template": {"metadata": {"labels": labels(self.cluster, Some(role))}, "spec": pod_spec},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": when_scaled},
        });
        if !claims.is_empty() {
            sts_spec["volumeClaimTemplates"] = json!(claims);
        }
        let v = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta(&name, Some(role)), "spec": sts_spec});
        Ok(Owned::StatefulSet(Box::new(parse("a StatefulSet", v)?)))
    }

    /// Where a pool's pods may go. `nodeSelector` becomes the pods' `nodeSelector` (the node
    /// labels play the part of `herd-agent --label`). Worker pods prefer distinct nodes, then
    /// distinct racks. An explicit `maxPerHost: 1` is a rule (required anti-affinity on
    /// `kubernetes.io/hostname`: exactly bare metal's cap); `maxPerHost: N > 1` has no exact
    /// Kubernetes counterpart and becomes a topology spread constraint of `maxSkew: N` over
    /// nodes, which caps a node at N only while an eligible node holds none of the pool.
    /// Without `maxPerHost`, DataNodes keep their spread a preference (bare metal's default
    /// of 1 would leave pods Pending on a cluster with fewer nodes than DataNodes).
    fn place(&self, role: Role, pool: &herd_api::spec::PoolSpec, pod_spec: &mut Value) {
        if !pool.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(pool.node_selector);
        }
        let pods = json!({"matchLabels": selector(self.cluster, Some(role))});
        let preferred = |key: &str, weight: i32| json!({"weight": weight, "podAffinityTerm": {"topologyKey": key, "labelSelector": pods}});
        let worker = matches!(role, Role::Datanode | Role::Nodemanager);
        let mut anti = serde_json::Map::new();
        match pool.max_per_host {
            Some(1) => {
                anti.insert(
                    "requiredDuringSchedulingIgnoredDuringExecution".into(),
                    json!([{"topologyKey": HOSTNAME_LABEL, "labelSelector": pods}]),
                );
                if worker {
                    anti.insert("preferredDuringSchedulingIgnoredDuringExecution".into(), json!([preferred(self.inputs.rack_label, 50)]));
                }
            }
            max => {
                if let Some(n) = max {
                    pod_spec["topologySpreadConstraints"] = json!([{
                        "maxSkew": n,
                        "topologyKey": HOSTNAME_LABEL,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "nodeAffinityPolicy": "Honor",
                        "labelSelector": pods,
                    }]);
                }
                if worker {
                    anti.insert(
                        "preferredDuringSchedulingIgnoredDuringExecution".into(),
                        json!([preferred(HOSTNAME_LABEL, 100), preferred(self.inputs.rack_label, 50)]),
                    );
                }
            }
        }
        if !anti.is_empty() {
            pod_spec["affinity"] = json!({"podAntiAffinity": anti});
        }
    }
}

/// The DataNode PodDisruptionBudget's `maxUnavailable`: `replication - 1` (every block keeps
/// one readable replica through a voluntary disruption), at least 1.
pub fn max_unavailable_datanodes(replication: u16) -> i32 {
    i32::from(replication).saturating_sub(1).max(1)
}

/// The masters' second container: when kubelet updates the live files (exclude lists,
/// topology), tell the daemon to re-read them, as herd's agent does on bare metal. The
/// ResourceManager drains excluded NodeManagers gracefully (`-g`, the pool's
/// `lifecycle.drainTimeoutSeconds`), never at once.
fn refresh_container(role: Role, image: &str, drain_timeout_s: u64) -> Value {
    let refresh = match role {
        Role::Namenode => "hdfs dfsadmin -refreshNodes".to_string(),
        _ => format!("yarn rmadmin -refreshNodes -g {drain_timeout_s} -server"),
    };
    let script = format!(
        "last=; while true; do now=$(cat {CONF_DIR}/*.exclude {CONF_DIR}/*.hosts {CONF_DIR}/*.include {CONF_DIR}/topology.table 2>/dev/null | cksum); \
         if [ \"$now\" != \"$last\" ] && {refresh}; then last=$now; fi; sleep 5; done"
    );
    json!({
        "name": "refresh",
        "image": image,
        "command": ["/bin/sh", "-c", script],
        "env": [{"name": "HADOOP_CONF_DIR", "value": CONF_DIR}],
        "volumeMounts": [{"name": "conf", "mountPath": CONF_DIR, "readOnly": true}],
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn cluster() -> HadoopCluster {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/operator/examples/hadoopcluster.yaml");
        let mut hc: HadoopCluster = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        hc.metadata.namespace = Some("acme".into());
        hc.metadata.uid = Some("u-1".into());
        hc
    }

    fn pod(role: Role, ordinal: u32, node: &str, rack: Option<&str>, ip: [u8; 4]) -> ObservedPod {
        ObservedPod {
            name: names::pod("prod", role, ordinal),
            role,
            ordinal,
            node: Some(node.into()),
            rack: rack.map(Into::into),
            ip: Some(ip.into()),
            ready: true,
        }
    }

    fn value(o: &Owned) -> Value {
        match o {
            Owned::ConfigMap(o) => serde_json::to_value(o).unwrap(),
            Owned::Service(o) => serde_json::to_value(o).unwrap(),
            Owned::StatefulSet(o) => serde_json::to_value(o).unwrap(),
            Owned::Pdb(o) => serde_json::to_value(o).unwrap(),
        }
    }

    fn statefulset_of(hc: &HadoopCluster, role: Role) -> Value {
        let spec = hc.spec.cluster_spec("acme", "prod");
        let replicas = BTreeMap::new();
        let leaving = BTreeSet::new();
        let inputs = Inputs { hc, spec: &spec, replicas: &replicas, leaving: &leaving, pods: &[], rack_label: "rack" };
        let objects = build(&inputs).unwrap();
        value(objects.iter().find(|o| o.kind() == "StatefulSet" && o.name() == format!("prod-{role}")).unwrap())
    }

    /// A pool's `nodeSelector` and `maxPerHost` as the pod template carries them.
    #[test]
    fn node_selector_and_max_per_host_reach_the_pod_template() {
        let pods = |role: &str| json!({"matchLabels": {"app.kubernetes.io/component": role, "app.kubernetes.io/instance": "prod", "app.kubernetes.io/name": "hadoop"}});
        let preferred = |role: &str, key: &str, weight: i32| json!({"weight": weight, "podAffinityTerm": {"topologyKey": key, "labelSelector": pods(role)}});
        /// The pool's role, `nodeSelector` and `maxPerHost`; the pod template's `nodeSelector`,
        /// `affinity` and `topologySpreadConstraints`.
        type Case = (Role, Option<Value>, Option<u32>, Value, Value, Value);
        let cases: Vec<Case> = vec![
            // Nothing asked: workers prefer distinct nodes then racks; masters go anywhere.
            (Role::Datanode, None, None, Value::Null, json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preferred("datanode", "kubernetes.io/hostname", 100), preferred("datanode", "rack", 50)]}}), Value::Null),
            (Role::Namenode, None, None, Value::Null, Value::Null, Value::Null),
            // nodeSelector, any role.
            (Role::Namenode, Some(json!({"disk": "ssd"})), None, json!({"disk": "ssd"}), Value::Null, Value::Null),
            (
                Role::Nodemanager,
                Some(json!({"pool": "gold", "cpu": "avx512"})),
                None,
                json!({"cpu": "avx512", "pool": "gold"}),
                json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preferred("nodemanager", "kubernetes.io/hostname", 100), preferred("nodemanager", "rack", 50)]}}),
                Value::Null,
            ),
            // maxPerHost 1: a rule, exactly bare metal's cap; racks stay a preference.
            (
                Role::Datanode,
                None,
                Some(1),
                Value::Null,
                json!({"podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": pods("datanode")}],
                    "preferredDuringSchedulingIgnoredDuringExecution": [preferred("datanode", "rack", 50)],
                }}),
                Value::Null,
            ),
            (Role::Namenode, None, Some(1), Value::Null, json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": pods("namenode")}]}}), Value::Null),
            // maxPerHost N > 1: a spread over nodes of skew N, on the selected nodes only.
            (
                Role::Nodemanager,
                Some(json!({"pool": "gold"})),
                Some(3),
                json!({"pool": "gold"}),
                json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [preferred("nodemanager", "kubernetes.io/hostname", 100), preferred("nodemanager", "rack", 50)]}}),
                json!([{"maxSkew": 3, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "nodeAffinityPolicy": "Honor", "labelSelector": pods("nodemanager")}]),
            ),
        ];
        for (role, node_selector, max_per_host, want_selector, want_affinity, want_spread) in cases {
            let mut hc = cluster();
            let pool = hc.spec.pools.get_mut(&role).unwrap();
            pool.node_selector = node_selector.map(|v| serde_json::from_value(v).unwrap()).unwrap_or_default();
            pool.max_per_host = max_per_host;
            let case = format!("{role} nodeSelector {:?} maxPerHost {max_per_host:?}", pool.node_selector);
            let sts = statefulset_of(&hc, role);
            let pod = &sts["spec"]["template"]["spec"];
            assert_eq!(pod["nodeSelector"], want_selector, "{case}");
            assert_eq!(pod["affinity"], want_affinity, "{case}");
            assert_eq!(pod["topologySpreadConstraints"], want_spread, "{case}");
        }
    }

    /// The DataNode budget lets `replication - 1` DataNodes be down at once (every block keeps
    /// a readable replica), and never fewer than one.
    #[test]
    fn the_datanode_budget_follows_the_replication_factor() {
        for (replication, want) in [(1, 1), (2, 1), (3, 2), (5, 4)] {
            let mut hc = cluster();
            hc.spec.hdfs.replication = replication;
            let spec = hc.spec.cluster_spec("acme", "prod");
            let (replicas, leaving) = (BTreeMap::new(), BTreeSet::new());
            let inputs = Inputs { hc: &hc, spec: &spec, replicas: &replicas, leaving: &leaving, pods: &[], rack_label: "rack" };
            let objects = build(&inputs).unwrap();
            let pdb = value(objects.iter().find(|o| o.kind() == "PodDisruptionBudget").unwrap());
            assert_eq!(pdb["spec"]["maxUnavailable"], want, "replication {replication}");
            assert_eq!(pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "datanode");
            assert!(pdb["spec"].get("minAvailable").is_none());
        }
    }

    #[test]
    fn every_object_of_a_cluster_with_topology_and_excludes() {
        let hc = cluster();
        let spec = hc.spec.cluster_spec("acme", "prod");
        let replicas = BTreeMap::from([(Role::Datanode, 6)]);
        let leaving = BTreeSet::from(["prod-datanode-5".to_string()]);
        let pods = [
            pod(Role::Datanode, 0, "node-a", Some("rack-1"), [10, 0, 0, 10]),
            pod(Role::Datanode, 5, "node-c", None, [10, 0, 0, 15]),
            pod(Role::Nodemanager, 0, "node-b", Some("rack-1"), [10, 0, 0, 20]),
        ];
        let inputs = Inputs { hc: &hc, spec: &spec, replicas: &replicas, leaving: &leaving, pods: &pods, rack_label: "topology.kubernetes.io/zone" };
        let objects = build(&inputs).unwrap();
        let names: Vec<String> = objects.iter().map(|o| format!("{}/{}", o.kind(), o.name())).collect();
        assert_eq!(
            names,
            [
                "ConfigMap/prod",
                "ConfigMap/prod-hosts",
                "ConfigMap/prod-namenode",
                "ConfigMap/prod-resourcemanager",
                "ConfigMap/prod-datanode",
                "ConfigMap/prod-nodemanager",
                "Service/prod",
                "Service/prod-namenode",
                "Service/prod-resourcemanager",
                "PodDisruptionBudget/prod-datanode",
                "StatefulSet/prod-namenode",
                "StatefulSet/prod-resourcemanager",
                "StatefulSet/prod-datanode",
                "StatefulSet/prod-nodemanager",
            ]
        );
        let by_name = |kind: &str, name: &str| value(objects.iter().find(|o| o.kind() == kind && o.name() == name).unwrap());

        // Rack topology from the pods' nodes and their rack labels (none: Hadoop's default rack).
        let hosts = by_name("ConfigMap", "prod-hosts");
        let table = hosts["data"]["topology.table"].as_str().unwrap();
        assert!(table.contains("prod-datanode-0.prod.acme /rack-1/node-a\n10.0.0.10 /rack-1/node-a\n"), "{table}");
        assert!(table.contains("prod-datanode-5.prod.acme /default-rack/node-c\n"), "{table}");
        assert!(table.contains("prod-nodemanager-0.prod.acme /rack-1/node-b\n"), "{table}");
        assert_eq!(hosts["data"]["dfs.exclude"], "prod-datanode-5.prod.acme\n");
        assert_eq!(hosts["data"]["yarn.exclude"], "");

        // Everything points at the NameNode's pod through the headless Service.
        let core = by_name("ConfigMap", "prod-datanode")["data"]["core-site.xml"].as_str().unwrap().to_string();
        assert!(core.contains("<value>hdfs://prod-namenode-0.prod.acme:8020</value>"), "{core}");
        let client = by_name("ConfigMap", "prod")["data"]["core-site.xml"].as_str().unwrap().to_string();
        assert!(client.contains("<value>hdfs://prod-namenode.acme.svc:8020</value>"), "{client}");

        // The masters re-read the live files; YARN drains gracefully.
        let refresh = |name: &str| {
            let sts = by_name("StatefulSet", name);
            sts["spec"]["template"]["spec"]["containers"][1]["command"][2].as_str().unwrap().to_string()
        };
        assert!(refresh("prod-namenode").contains("hdfs dfsadmin -refreshNodes"));
        assert!(refresh("prod-resourcemanager").contains("yarn rmadmin -refreshNodes -g 3600 -server"));
        let nn = by_name("StatefulSet", "prod-namenode");
        assert_eq!(nn["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "107374182400");
        assert!(nn["spec"]["template"]["spec"].get("affinity").is_none(), "masters are not spread");
        let rm = by_name("StatefulSet", "prod-resourcemanager");
        assert!(rm["spec"].get("volumeClaimTemplates").is_none(), "no data, no claim");
        assert_eq!(by_name("StatefulSet", "prod-datanode")["spec"]["replicas"], 6);
        assert_eq!(by_name("StatefulSet", "prod-nodemanager")["spec"]["replicas"], 4, "the spec's, when the lifecycle says nothing");
        for o in &objects {
            let v = value(o);
            assert_eq!(v["metadata"]["namespace"], "acme", "{}", o.name());
            assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u-1", "{}", o.name());
            assert_eq!(v["metadata"]["labels"]["app.kubernetes.io/managed-by"], "herd-operator", "{}", o.name());
        }
    }
}
