//! The `HadoopCluster` custom resource: the cluster spec of `herd apply`, as Kubernetes
//! stores it. Its spec is built from the very types of `herd_api::spec` (their JSON schemas
//! come from the same derives), less `tenant` and `name`: the namespace is the tenant and
//! `metadata.name` the cluster. `manifests/operator/crd.yaml` is [`crd_yaml`]'s output, kept
//! in sync by a test.

use std::collections::BTreeMap;

use herd_api::hadoop::ConfigOverrides;
use herd_api::spec::{ExternalMasters, HdfsSpec, PoolSpec};
use herd_api::{ClusterSpec, Role};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::core::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of herd's resources.
pub const GROUP: &str = "herd.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// One tenant's Hadoop cluster, reconciled by `herd-operator` into StatefulSets (one per pool),
/// Services, ConfigMaps rendered by herd's Hadoop renderer, a PodDisruptionBudget and a
/// `HadoopPool` per worker pool. `kubectl scale hadooppool NAME-ROLE --replicas=N` (or a
/// HorizontalPodAutoscaler on it) sizes a worker pool; `kubectl scale hadoopcluster NAME`
/// changes the DataNode pool's replicas here, which are then sent to its HadoopPool.
/// Lowering either decommissions the DataNodes (drains the NodeManagers) leaving before their
/// pods go.
// NB: clippy reads kube's repeated `printcolumn(type_ = ...)` helper attributes as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "herd.dev",
    version = "v1alpha1",
    kind = "HadoopCluster",
    namespaced,
    status = "HadoopClusterStatus",
    shortname = "hc",
    category = "herd",
    derive = "PartialEq",
    doc = "A Hadoop cluster (HDFS and YARN) run by herd's operator; the namespace is the tenant.",
    scale(
        spec_replicas_path = ".spec.pools.datanode.replicas",
        status_replicas_path = ".status.datanodes.replicas",
        label_selector_path = ".status.datanodes.selector"
    ),
    printcolumn(name = "DataNodes", type_ = "string", json_path = ".status.datanodes.summary", description = "ready/desired DataNodes"),
    printcolumn(name = "NodeManagers", type_ = "string", json_path = ".status.nodemanagers.summary", description = "ready/desired NodeManagers"),
    printcolumn(name = "HDFS", type_ = "string", json_path = ".status.hdfs", description = "HDFS health as the NameNode reports it"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HadoopClusterSpec {
    /// The image per role, used by every pool of that role unless the pool names its own.
    #[serde(default)]
    #[schemars(schema_with = "herd_api::schema::images")]
    pub images: BTreeMap<Role, String>,
    /// The node pools, by role. DataNodes and NodeManagers are sized independently.
    #[serde(default)]
    #[schemars(schema_with = "herd_api::schema::pools")]
    pub pools: BTreeMap<Role, PoolSpec>,
    /// The Hadoop version the images run, e.g. `3.4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// HDFS settings.
    #[serde(default)]
    pub hdfs: HdfsSpec,
    /// Masters the tenant runs itself, outside this cluster.
    #[serde(default, skip_serializing_if = "ExternalMasters::is_empty")]
    pub external: ExternalMasters,
    /// Hadoop configuration overrides for every role, per file; a pool's own win over these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "herd_api::schema::config_overrides")]
    pub config_overrides: ConfigOverrides,
    /// What becomes of the volumes (HDFS data) when the resource is deleted: `Retain`
    /// (default) keeps the PersistentVolumeClaims, `Delete` removes them.
    #[serde(default)]
    pub data_on_delete: DataPolicy,
}

/// What happens to a cluster's volumes when it is deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DataPolicy {
    #[default]
    Retain,
    Delete,
}

impl DataPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DataPolicy::Retain => "Retain",
            DataPolicy::Delete => "Delete",
        }
    }
}

impl HadoopClusterSpec {
    /// The `herd apply` spec this resource stands for: tenant = namespace, name = the resource's.
    pub fn cluster_spec(&self, namespace: &str, name: &str) -> ClusterSpec {
        ClusterSpec {
            tenant: namespace.to_string(),
            name: name.to_string(),
            images: self.images.clone(),
            pools: self.pools.clone(),
            version: self.version.clone(),
            hdfs: self.hdfs.clone(),
            external: self.external.clone(),
            config_overrides: self.config_overrides.clone(),
        }
    }
}

/// What the operator observed and decided, shown by `kubectl get` and `kubectl describe`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HadoopClusterStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available`, `Progressing` and `Degraded`, with reasons from HDFS and YARN health as
    /// well as from pod readiness.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The DataNode pool (also what the scale subresource reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datanodes: Option<PoolStatus>,
    /// The NodeManager pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodemanagers: Option<PoolStatus>,
    /// HDFS health in one word and a reason: `Healthy`, `Degraded: 3 missing blocks`,
    /// `Unknown: ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdfs: Option<String>,
    /// YARN health, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yarn: Option<String>,
    /// Workers on their way out (decommissioning DataNodes, draining NodeManagers), by pod
    /// name: the state machine's phases, persisted before they are acted on, so a restarted
    /// operator resumes where it was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leaving: BTreeMap<String, LeavingStatus>,
    /// Why the spec was refused, one entry per bad field; nothing of a refused spec is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<FieldProblem>,
}

/// One pool's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// What the spec asks for.
    pub desired: i32,
    /// Pods the StatefulSet runs, leaving ones included (the scale subresource's status).
    pub replicas: i32,
    /// Pods ready.
    pub ready: i32,
    /// `ready/desired`, for the printer column.
    pub summary: String,
    /// The pods' label selector, for the scale subresource (HorizontalPodAutoscaler).
    pub selector: String,
}

/// One leaving worker: its phase in herd's lifecycle state machine (`herd_api::lifecycle::Phase`),
/// flattened for the CRD's structural schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeavingStatus {
    /// `datanode` or `nodemanager`.
    pub role: String,
    /// The pod's ordinal in its StatefulSet.
    pub ordinal: u32,
    /// `decommissioning`, `decommissioned`, `draining`, `drained` or `removing`.
    pub phase: String,
    /// When it was chosen to leave (Unix ms).
    #[serde(default)]
    pub since_ms: u64,
    /// When its master was first seen to have applied the exclude file (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_ms: Option<u64>,
    /// DataNode: when the NameNode reported it `Decommissioned` (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// NodeManager: its graceful drain timeout (s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// DataNode: blocks still to copy elsewhere, when the NameNode says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_to_move: Option<u64>,
    /// What it waits for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// One refused field, as `herd apply` reports it, with the resource's path
/// (`spec.pools.datanode.memory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

/// One worker pool of a `HadoopCluster` as its own resource, `<cluster>-<role>`, created and
/// owned by the operator: the scale target of `kubectl scale hadooppool prod-nodemanager
/// --replicas=N` and of a HorizontalPodAutoscaler. Its `spec.replicas` is the source of truth
/// for the pool's size; the cluster's `spec.pools.<role>.replicas` is forwarded into it when
/// that changes (see DESIGN.md, "Operator mode"). A scale-down decommissions DataNodes and
/// drains NodeManagers before their pods go, as for the cluster.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "herd.dev",
    version = "v1alpha1",
    kind = "HadoopPool",
    namespaced,
    status = "HadoopPoolStatus",
    shortname = "hp",
    category = "herd",
    derive = "PartialEq",
    doc = "A worker pool (DataNodes or NodeManagers) of a HadoopCluster, scaled with kubectl scale or an HPA.",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.replicas", label_selector_path = ".status.selector"),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster", description = "the HadoopCluster this pool belongs to"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role", description = "datanode or nodemanager"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas", description = "workers asked for"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas", description = "pods the StatefulSet runs, leaving ones included"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready", description = "pods ready"),
    printcolumn(name = "Leaving", type_ = "integer", json_path = ".status.leaving", description = "workers decommissioning or draining"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HadoopPoolSpec {
    /// The HadoopCluster (in the same namespace) the pool belongs to.
    pub cluster: String,
    /// The pool's role.
    pub role: WorkerRole,
    /// How many workers the pool runs.
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,
}

/// The roles a `HadoopPool` sizes: the worker pools (the masters run one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerRole {
    Datanode,
    Nodemanager,
}

impl WorkerRole {
    /// Both, in the order pools are reconciled.
    pub const ALL: [WorkerRole; 2] = [WorkerRole::Datanode, WorkerRole::Nodemanager];

    pub fn role(self) -> Role {
        match self {
            WorkerRole::Datanode => Role::Datanode,
            WorkerRole::Nodemanager => Role::Nodemanager,
        }
    }
}

/// A pool's size as the operator last decided and observed it (what the scale subresource
/// and an HPA read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HadoopPoolStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods the StatefulSet runs, leaving ones included (the scale subresource's status).
    pub replicas: i32,
    /// Pods ready.
    pub ready: i32,
    /// Workers on their way out (decommissioning DataNodes, draining NodeManagers).
    pub leaving: i32,
    /// The pods' label selector (the scale subresource's, for an HPA).
    pub selector: String,
}

/// The CustomResourceDefinitions, as generated from the types above: `HadoopCluster`, then
/// `HadoopPool`.
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    vec![HadoopCluster::crd(), HadoopPool::crd()]
}

/// The `HadoopCluster` CRD.
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    HadoopCluster::crd()
}

/// The CRDs as YAML documents, with a header: what `herd-operator crd` prints and
/// `manifests/operator/crd.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from("# Generated by `herd-operator crd` from herd's spec types; do not edit (a test compares).\n");
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The committed CRD is the generated one: regenerate with
    /// `cargo run --bin herd-operator -- crd > manifests/operator/crd.yaml`.
    #[test]
    fn committed_crd_matches_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/operator/crd.yaml");
        let committed = std::fs::read_to_string(path).expect("manifests/operator/crd.yaml");
        let generated = crd_yaml().unwrap();
        assert!(
            committed == generated,
            "manifests/operator/crd.yaml differs from the CRD generated from herd's types; regenerate it with \
             `cargo run --bin herd-operator -- crd > manifests/operator/crd.yaml`"
        );
        // deploy/operator/ carries the same files as manifests/operator/.
        for file in ["crd.yaml", "rbac.yaml", "deployment.yaml"] {
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
            let manifests = std::fs::read_to_string(format!("{root}/manifests/operator/{file}")).expect(file);
            let deploy = std::fs::read_to_string(format!("{root}/deploy/operator/{file}")).expect(file);
            assert_eq!(deploy, manifests, "deploy/operator/{file} differs from manifests/operator/{file}: copy it over");
        }
    }

    /// Every field of `herd apply`'s spec is in the resource's spec (but `tenant` and `name`,
    /// which are the namespace and `metadata.name`), with the same schema.
    #[test]
    fn spec_fields_are_herd_apply_fields() {
        let apply = schemars::schema_for!(ClusterSpec).to_value();
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        let mut apply_fields: Vec<&String> = apply["properties"].as_object().unwrap().keys().collect();
        apply_fields.retain(|k| *k != "tenant" && *k != "name");
        let mut crd_fields: Vec<&String> = spec.as_object().unwrap().keys().collect();
        crd_fields.retain(|k| *k != "dataOnDelete");
        assert_eq!(crd_fields, apply_fields);
        for pool_field in ["replicas", "cpu", "memory", "disk", "lifecycle", "configOverrides"] {
            assert!(spec["pools"]["properties"]["datanode"]["properties"].get(pool_field).is_some(), "{pool_field}");
        }
    }

    #[test]
    fn crd_is_structural_and_scalable() {
        let crd = serde_json::to_value(crd()).unwrap();
        let text = crd.to_string();
        assert!(!text.contains("\"additionalProperties\":false"), "not allowed in a structural schema: {text}");
        assert!(!text.contains("\"$ref\""), "{text}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["scale"]["specReplicasPath"], ".spec.pools.datanode.replicas");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["hc"]));
        let columns: Vec<&str> =
            version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(columns, ["DataNodes", "NodeManagers", "HDFS", "Age"]);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }

    #[test]
    fn the_pool_crd_is_structural_and_scalable() {
        let crd = serde_json::to_value(HadoopPool::crd()).unwrap();
        let text = crd.to_string();
        assert!(!text.contains("\"additionalProperties\":false"), "not allowed in a structural schema: {text}");
        assert!(!text.contains("\"$ref\""), "{text}");
        assert_eq!(crd["metadata"]["name"], "hadooppools.herd.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], serde_json::json!(["hp"]));
        assert_eq!(crd["spec"]["names"]["categories"], serde_json::json!(["herd"]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(
            version["subresources"]["scale"],
            serde_json::json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"})
        );
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["cluster", "replicas", "role"]));
        assert_eq!(spec["properties"]["role"]["enum"], serde_json::json!(["datanode", "nodemanager"]));
        assert_eq!(spec["properties"]["replicas"]["minimum"].as_f64(), Some(0.0));
        assert_eq!(spec["properties"]["replicas"]["maximum"].as_f64(), Some(10000.0));
        let columns: Vec<&str> =
            version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(columns, ["Cluster", "Role", "Desired", "Replicas", "Ready", "Leaving", "Age"]);
    }
}

#[cfg(test)]
mod example_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The example users apply is a valid HadoopCluster: it parses (unknown fields refused) and
    /// passes herd's validation as the operator runs it.
    #[test]
    fn the_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/operator/examples/hadoopcluster.yaml");
        let mut hc: HadoopCluster = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        hc.metadata.namespace = Some("acme".into());
        let spec = hc.spec.cluster_spec("acme", "prod");
        assert_eq!(crate::reconcile::check(&spec), Vec::new());
        assert_eq!(spec.pools[&Role::Datanode].replicas.0, 6);
    }
}

/// A `HadoopCluster` as the controller watches it: metadata typed, spec and status as sent.
/// One resource the operator cannot read (a quantity that is not one, an unknown pool) is
/// then refused in its own status ([`Watched::read`]) instead of failing the LIST, and with
/// it the reconcile of every tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl kube::Resource for Watched {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "HadoopCluster".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "hadoopclusters".into()
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.metadata
    }
}

impl Watched {
    /// The status as stored; one that cannot be read counts as none.
    pub fn status(&self) -> HadoopClusterStatus {
        self.status.clone().and_then(|s| serde_json::from_value(s).ok()).unwrap_or_default()
    }

    /// The typed resource, or why its spec cannot be read, naming the field
    /// (`spec.pools.datanode.cpu`).
    pub fn read(&self) -> Result<HadoopCluster, FieldProblem> {
        let spec: HadoopClusterSpec = serde_path_to_error::deserialize(self.spec.clone()).map_err(|e| {
            let path = e.path().to_string();
            FieldProblem { field: if path == "." || path.is_empty() { "spec".into() } else { format!("spec.{path}") }, message: e.into_inner().to_string() }
        })?;
        Ok(HadoopCluster { metadata: self.metadata.clone(), spec, status: Some(self.status()) })
    }
}
