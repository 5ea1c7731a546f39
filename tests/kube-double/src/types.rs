//! The resource types the double serves: built-in ones herd's operator (and kubectl) use, and
//! those registered by creating a CustomResourceDefinition.

use serde_json::{Value, json};

/// A printer column (`additionalPrinterColumns`).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
}

/// Where a resource's scale subresource reads and writes.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One resource type.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// A `status` subresource: writes to the resource keep the stored status, writes to
    /// `/status` change only it.
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<Column>,
    /// A CRD version's `openAPIV3Schema`: unknown fields are pruned by it.
    pub schema: Option<Value>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool, status: bool, short: &[&str]) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            status,
            scale: None,
            columns: Vec::new(),
            schema: None,
        }
    }

    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The types served from the start.
    pub fn builtins() -> Vec<ResourceType> {
        let mut sts = ResourceType::builtin("apps", "v1", "statefulsets", "StatefulSet", true, true, &["sts"]);
        sts.scale = Some(ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        });
        sts.columns = vec![
            Column { name: "Ready".into(), type_: "string".into(), json_path: ".status.readyReplicas".into(), description: String::new(), priority: 0 },
            Column { name: "Age".into(), type_: "date".into(), json_path: ".metadata.creationTimestamp".into(), description: String::new(), priority: 0 },
        ];
        vec![
            ResourceType::builtin("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
            ResourceType::builtin("", "v1", "nodes", "Node", false, true, &["no"]),
            ResourceType::builtin("", "v1", "pods", "Pod", true, true, &["po"]),
            ResourceType::builtin("", "v1", "services", "Service", true, true, &["svc"]),
            ResourceType::builtin("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
            ResourceType::builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true, &["pvc"]),
            ResourceType::builtin("", "v1", "events", "Event", true, false, &["ev"]),
            ResourceType::builtin("", "v1", "serviceaccounts", "ServiceAccount", true, false, &["sa"]),
            ResourceType::builtin("apps", "v1", "deployments", "Deployment", true, true, &["deploy"]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, false, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, false, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, false, &[]),
            ResourceType::builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, false, &[]),
            sts,
            ResourceType::builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true, &["pdb"]),
            ResourceType::builtin("coordination.k8s.io", "v1", "leases", "Lease", true, false, &[]),
            ResourceType::builtin("events.k8s.io", "v1", "events", "Event", true, false, &["ev"]),
            ResourceType::builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true, &["crd", "crds"]),
        ]
    }

    /// The types a CustomResourceDefinition declares (one per served version).
    pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let strings = |v: &Value| v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut out = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == false {
                continue;
            }
            let sub = &version["subresources"];
            let scale = sub.get("scale").filter(|s| s.is_object()).map(|s| ScalePaths {
                spec_replicas: text(&s["specReplicasPath"]),
                status_replicas: text(&s["statusReplicasPath"]),
                label_selector: s["labelSelectorPath"].as_str().map(String::from),
            });
            let columns = version["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| Column {
                    name: text(&c["name"]),
                    type_: text(&c["type"]),
                    json_path: text(&c["jsonPath"]),
                    description: text(&c["description"]),
                    priority: c["priority"].as_i64().unwrap_or(0),
                })
                .collect();
            out.push(ResourceType {
                group: text(&spec["group"]),
                version: text(&version["name"]),
                plural: text(&names["plural"]),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| text(&names["kind"]).to_ascii_lowercase()),
                kind: text(&names["kind"]),
                namespaced: spec["scope"] == "Namespaced",
                short_names: strings(&names["shortNames"]),
                categories: strings(&names["categories"]),
                status: sub.get("status").is_some_and(Value::is_object),
                scale,
                columns,
                schema: version["schema"].get("openAPIV3Schema").cloned(),
            });
        }
        out
    }

    /// Its entries in an `APIResourceList`.
    pub fn discovery(&self) -> Vec<Value> {
        let verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status {
            out.push(json!({"name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        if self.scale.is_some() {
            out.push(json!({
                "name": format!("{}/scale", self.plural), "singularName": "", "namespaced": self.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// The value at a simple JSONPath (`.status.datanodes.summary`), as printer columns and the
/// scale subresource use them.
pub fn at_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).try_fold(v, |v, key| v.get(key))
}

/// Sets the value at a simple JSONPath, creating objects on the way.
pub fn set_path(v: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).collect();
    let mut cur = v;
    for key in &keys[..keys.len().saturating_sub(1)] {
        if !cur.get(*key).is_some_and(Value::is_object) {
            cur[*key] = json!({});
        }
        cur = &mut cur[*key];
    }
    if let Some(last) = keys.last() {
        cur[*last] = value;
    }
}

/// Prunes what a structural schema does not declare, as the API server does for custom
/// resources (objects without `properties`, with `additionalProperties` or
/// `x-kubernetes-preserve-unknown-fields` keep everything), returning the pruned paths.
pub fn prune(v: &mut Value, schema: &Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let top = path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                    match props.get(&k) {
                        Some(sub) => {
                            if let Some(child) = map.get_mut(&k) {
                                prune(child, sub, &format!("{path}{}{k}", if path.is_empty() { "" } else { "." }), pruned);
                            }
                        }
                        None if top => {}
                        None => {
                            map.remove(&k);
                            pruned.push(format!("{path}{}{k}", if path.is_empty() { "" } else { "." }));
                        }
                    }
                }
            } else if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, child) in map.iter_mut() {
                    prune(child, sub, &format!("{path}.{k}"), pruned);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, sub, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The StatefulSet entries of a real kube-apiserver 1.20 answer to `GET /apis/apps/v1`
    /// (a minikube capture in a public repository), less `storageVersionHash`.
    const REAL: &str = r#"[
      {"name": "statefulsets", "singularName": "", "namespaced": true, "kind": "StatefulSet",
       "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
       "shortNames": ["sts"], "categories": ["all"]},
      {"name": "statefulsets/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1",
       "kind": "Scale", "verbs": ["get", "patch", "update"]},
      {"name": "statefulsets/status", "singularName": "", "namespaced": true, "kind": "StatefulSet",
       "verbs": ["get", "patch", "update"]}
    ]"#;

    #[test]
    fn discovery_entries_have_the_real_shape() {
        let real: Vec<Value> = serde_json::from_str(REAL).unwrap();
        let sts = ResourceType::builtins().into_iter().find(|t| t.plural == "statefulsets").unwrap();
        let ours = sts.discovery();
        for r in &real {
            let name = r["name"].as_str().unwrap();
            let o = ours.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("{name} missing from {ours:?}"));
            let keys = |v: &Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.retain(|k| k != "categories");
                k.sort();
                k
            };
            assert_eq!(keys(o), keys(r), "{name}");
            for field in ["namespaced", "kind", "verbs", "group", "version"] {
                assert_eq!(o.get(field), r.get(field), "{name}.{field}");
            }
        }
    }
}
