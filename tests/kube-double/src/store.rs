//! The double's objects: one resourceVersion counter, a log of every change (what WATCH
//! replays from a resourceVersion), and the write semantics of the API server that herd's
//! operator and kubectl rely on:
//! - create/replace with optimistic concurrency (`resourceVersion` must match on replace);
//! - patches: JSON merge (a `metadata.resourceVersion` in it is a precondition), JSON patch
//!   (with `test`), strategic merge (as a JSON merge: the
//!   double knows no patch strategies) and server-side apply (fields the same manager applied
//!   before and leaves out now are removed; maps merge; lists are replaced whole);
//! - `status` subresources: writes to the resource keep the stored status, `/status` writes
//!   change only it; `metadata.generation` moves when anything but metadata and status does;
//! - deletion: an object with finalizers gets a `deletionTimestamp` and goes when its last
//!   finalizer is removed; objects whose owner went are deleted (background cascade).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use crate::types::{ResourceType, at_path, set_path};

/// Identifies a type: (group, plural).
pub type TypeKey = (String, String);
/// Identifies an object of a type: (namespace, name); namespace empty when cluster-scoped.
pub type ObjKey = (String, String);

/// One change, for WATCH.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub ty: TypeKey,
    pub namespace: String,
    /// `ADDED`, `MODIFIED`, `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// A refusal, as the API server's `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into() }
    }
    pub fn not_found(ty: &ResourceType, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{}.{} \"{name}\" not found", ty.plural, ty.group))
    }
    pub fn body(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code})
    }
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// A PATCH: how its body is read, the body, who sends it, and the part it addresses.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest<'a> {
    pub kind: PatchKind,
    pub body: &'a Value,
    /// `fieldManager` (server-side apply remembers what each manager applied).
    pub manager: &'a str,
    pub part: Part,
}

/// How a PATCH body is read (its Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

#[derive(Default)]
pub struct Store {
    pub types: Vec<ResourceType>,
    pub objects: BTreeMap<TypeKey, BTreeMap<ObjKey, Value>>,
    pub rv: u64,
    pub log: Vec<Change>,
    /// The last configuration each manager applied, per object and part.
    applied: HashMap<(TypeKey, ObjKey, String, bool), Value>,
    uid: u64,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Store {
    pub fn new() -> Store {
        Store { types: ResourceType::builtins(), ..Store::default() }
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    fn type_of(&self, key: &TypeKey) -> Option<ResourceType> {
        self.types.iter().find(|t| t.group == key.0 && t.plural == key.1).cloned()
    }

    pub fn get(&self, ty: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(ty.group.clone(), ty.plural.clone()))?.get(&(ns.to_string(), name.to_string()))
    }

    /// Every object of a type, in `namespace` (all when `None`).
    pub fn list(&self, ty: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&(ty.group.clone(), ty.plural.clone()))
            .map(|m| m.iter().filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns)).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    fn record(&mut self, ty: &TypeKey, namespace: &str, kind: &'static str, object: Value) {
        self.log.push(Change { rv: self.rv, ty: ty.clone(), namespace: namespace.to_string(), kind, object });
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Creates `obj`; 409 when it exists.
    pub fn create(&mut self, ty: &ResourceType, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::new(400, "BadRequest", "the body is not an object"));
        }
        let mut name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() {
            let prefix = obj["metadata"]["generateName"].as_str().unwrap_or_default().to_string();
            if prefix.is_empty() {
                return Err(ApiError::new(422, "Invalid", "metadata.name: Required value: name or generateName is required"));
            }
            self.uid += 1;
            name = format!("{prefix}{:05x}", self.uid);
        }
        let key = (ty.group.clone(), ty.plural.clone());
        let okey = (if ty.namespaced { ns.to_string() } else { String::new() }, name.clone());
        if self.objects.get(&key).is_some_and(|m| m.contains_key(&okey)) {
            return Err(ApiError::new(409, "AlreadyExists", format!("{}.{} \"{name}\" already exists", ty.plural, ty.group)));
        }
        self.uid += 1;
        let rv = self.bump();
        let meta = obj["metadata"].as_object_mut().map(std::mem::take).unwrap_or_default();
        let mut meta = Value::Object(meta);
        meta["name"] = json!(name);
        if ty.namespaced {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        obj["metadata"] = meta;
        obj["apiVersion"] = json!(ty.api_version());
        obj["kind"] = json!(ty.kind);
        if ty.group == "apiextensions.k8s.io" {
            self.register_crd(&obj);
            obj["status"] = json!({"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]});
        }
        self.objects.entry(key.clone()).or_default().insert(okey.clone(), obj.clone());
        self.record(&key, &okey.0, "ADDED", obj.clone());
        Ok(obj)
    }

    fn register_crd(&mut self, crd: &Value) {
        for t in ResourceType::from_crd(crd) {
            self.types.retain(|x| !(x.group == t.group && x.version == t.version && x.plural == t.plural));
            self.types.push(t);
        }
    }

    /// Stores `new` over the existing object at `okey`, keeping what the API server keeps,
    /// bumping resourceVersion (and generation when the spec moved), and finishing a deletion
    /// whose finalizers are gone.
    fn update(&mut self, ty: &ResourceType, okey: &ObjKey, old: &Value, mut new: Value, part: Part) -> Result<Value, ApiError> {
        let key = (ty.group.clone(), ty.plural.clone());
        match part {
            Part::Status => {
                let status = new.get("status").cloned().unwrap_or(Value::Null);
                new = old.clone();
                new["status"] = status;
            }
            Part::Main if ty.status => {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            Part::Main => {}
        }
        // What the server owns in metadata.
        for k in ["uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"] {
            match old["metadata"].get(k) {
                Some(v) => new["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        new["apiVersion"] = json!(ty.api_version());
        new["kind"] = json!(ty.kind);
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(if strip(old) != strip(&new) { generation + 1 } else { generation });
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == *old {
            return Ok(new);
        }
        let rv = self.bump();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        if ty.group == "apiextensions.k8s.io" {
            self.register_crd(&new);
        }
        let deleting = new["metadata"].get("deletionTimestamp").is_some();
        let finalizers = new["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if deleting && !finalizers {
            self.remove(&key, okey);
            return Ok(new);
        }
        self.objects.entry(key.clone()).or_default().insert(okey.clone(), new.clone());
        self.record(&key, &okey.0, "MODIFIED", new.clone());
        Ok(new)
    }

    fn okey(ty: &ResourceType, ns: &str, name: &str) -> ObjKey {
        (if ty.namespaced { ns.to_string() } else { String::new() }, name.to_string())
    }

    /// PUT: replaces the object; a `resourceVersion` in the body must be the stored one.
    pub fn replace(&mut self, ty: &ResourceType, ns: &str, name: &str, new: Value, part: Part) -> Result<Value, ApiError> {
        let okey = Store::okey(ty, ns, name);
        let old = self.get(ty, ns, name).cloned().ok_or_else(|| ApiError::not_found(ty, name))?;
        if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", ty.plural, ty.group),
            ));
        }
        self.update(ty, &okey, &old, new, part)
    }

    /// PATCH of any kind; server-side apply creates a missing object.
    pub fn patch(&mut self, ty: &ResourceType, ns: &str, name: &str, request: &PatchRequest<'_>) -> Result<Value, ApiError> {
        let PatchRequest { kind, body, manager, part } = *request;
        let okey = Store::okey(ty, ns, name);
        let Some(old) = self.get(ty, ns, name).cloned() else {
            if kind == PatchKind::Apply && part == Part::Main {
                let mut obj = body.clone();
                obj["metadata"]["name"] = json!(name);
                let created = self.create(ty, ns, obj)?;
                self.remember(ty, &okey, manager, part, body);
                return self.with_managed(ty, &okey, manager, created);
            }
            return Err(ApiError::not_found(ty, name));
        };
        // A resourceVersion in a merge patch is a precondition, as the API server has it.
        if matches!(kind, PatchKind::Merge | PatchKind::Strategic)
            && let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", ty.plural, ty.group),
            ));
        }
        let new = match kind {
            PatchKind::Merge | PatchKind::Strategic => {
                let mut new = old.clone();
                json_patch::merge(&mut new, body);
                new
            }
            PatchKind::Json => {
                // NB: as the API server (evanphx/json-patch), a `test` of `null` passes on a
                // missing path (kube-runtime's finalizer helper relies on it).
                let mut ops = body.as_array().cloned().unwrap_or_default();
                ops.retain(|op| !(op["op"] == "test" && op["value"].is_null() && old.pointer(op["path"].as_str().unwrap_or_default()).is_none()));
                let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                    .map_err(|e| ApiError::new(400, "BadRequest", format!("not a JSON patch: {e}")))?;
                let mut new = old.clone();
                json_patch::patch(&mut new, &ops).map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))?;
                new
            }
            PatchKind::Apply => {
                let tk = (ty.group.clone(), ty.plural.clone());
                let last = self.applied.get(&(tk, okey.clone(), manager.to_string(), part == Part::Status)).cloned();
                let mut new = old.clone();
                let (target, applied, last) = match part {
                    Part::Main => (&mut new, body.clone(), last),
                    Part::Status => {
                        if !new.get("status").is_some_and(Value::is_object) {
                            new["status"] = json!({});
                        }
                        (&mut new["status"], body.get("status").cloned().unwrap_or(json!({})), last.map(|l| l.get("status").cloned().unwrap_or(json!({}))))
                    }
                };
                if let Some(last) = &last {
                    prune(target, last, &applied);
                }
                merge_apply(target, &applied);
                new
            }
        };
        let out = self.update(ty, &okey, &old, new, part)?;
        if kind == PatchKind::Apply {
            self.remember(ty, &okey, manager, part, body);
            return self.with_managed(ty, &okey, manager, out);
        }
        Ok(out)
    }

    fn remember(&mut self, ty: &ResourceType, okey: &ObjKey, manager: &str, part: Part, body: &Value) {
        let tk = (ty.group.clone(), ty.plural.clone());
        self.applied.insert((tk, okey.clone(), manager.to_string(), part == Part::Status), body.clone());
    }

    /// Records `manager` in `metadata.managedFields` (operation Apply; the field set itself
    /// is not tracked).
    fn with_managed(&mut self, ty: &ResourceType, okey: &ObjKey, manager: &str, mut obj: Value) -> Result<Value, ApiError> {
        let entries = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        if entries.iter().any(|e| e["manager"] == manager && e["operation"] == "Apply") {
            return Ok(obj);
        }
        let mut entries = entries;
        entries.push(json!({"manager": manager, "operation": "Apply", "apiVersion": ty.api_version(), "fieldsType": "FieldsV1", "fieldsV1": {}}));
        obj["metadata"]["managedFields"] = json!(entries);
        let key = (ty.group.clone(), ty.plural.clone());
        if let Some(stored) = self.objects.get_mut(&key).and_then(|m| m.get_mut(okey)) {
            stored["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
        }
        Ok(obj)
    }

    /// DELETE: marks an object with finalizers, removes others (and what they own).
    pub fn delete(&mut self, ty: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let okey = Store::okey(ty, ns, name);
        let old = self.get(ty, ns, name).cloned().ok_or_else(|| ApiError::not_found(ty, name))?;
        let finalizers = old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if finalizers {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(old);
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            let rv = self.bump();
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            let key = (ty.group.clone(), ty.plural.clone());
            self.objects.entry(key.clone()).or_default().insert(okey.clone(), new.clone());
            self.record(&key, &okey.0, "MODIFIED", new.clone());
            return Ok(new);
        }
        let key = (ty.group.clone(), ty.plural.clone());
        self.remove(&key, &okey);
        Ok(old)
    }

    /// Removes an object for good, then (background cascade) every object it owned.
    fn remove(&mut self, key: &TypeKey, okey: &ObjKey) {
        let Some(obj) = self.objects.get_mut(key).and_then(|m| m.remove(okey)) else { return };
        let rv = self.bump();
        let mut gone = obj.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(key, &okey.0, "DELETED", gone);
        if key.0 == "apiextensions.k8s.io" {
            let group = obj["spec"]["group"].as_str().unwrap_or_default().to_string();
            let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
            self.types.retain(|t| !(t.group == group && t.plural == plural));
            let owned: Vec<ObjKey> = self.objects.get(&(group.clone(), plural.clone())).map(|m| m.keys().cloned().collect()).unwrap_or_default();
            for o in owned {
                self.remove(&(group.clone(), plural.clone()), &o);
            }
        }
        let uid = obj["metadata"]["uid"].clone();
        let mut owned = Vec::new();
        for (tk, objects) in &self.objects {
            for (ok, o) in objects {
                if o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid)) {
                    owned.push((tk.clone(), ok.clone()));
                }
            }
        }
        for (tk, ok) in owned {
            let Some(ty) = self.type_of(&tk) else { continue };
            let _ = self.delete(&ty, &ok.0, &ok.1);
        }
    }

    /// The scale subresource of an object.
    pub fn scale(&self, ty: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let paths = ty.scale.as_ref().ok_or_else(|| ApiError::new(404, "NotFound", format!("{} has no scale subresource", ty.plural)))?;
        let obj = self.get(ty, ns, name).ok_or_else(|| ApiError::not_found(ty, name))?;
        let selector = match &paths.label_selector {
            Some(p) => at_path(obj, p).cloned().unwrap_or(json!("")),
            None => {
                let labels = obj["spec"]["selector"]["matchLabels"].as_object().cloned().unwrap_or_default();
                json!(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
            }
        };
        let meta = &obj["metadata"];
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
            "spec": {"replicas": at_path(obj, &paths.spec_replicas).cloned().unwrap_or(json!(0))},
            "status": {"replicas": at_path(obj, &paths.status_replicas).cloned().unwrap_or(json!(0)), "selector": selector},
        }))
    }

    /// Writes `spec.replicas` of a Scale (PUT or merge PATCH) through to the object.
    pub fn set_scale(&mut self, ty: &ResourceType, ns: &str, name: &str, kind: Option<PatchKind>, body: &Value) -> Result<Value, ApiError> {
        let current = self.scale(ty, ns, name)?;
        let new = match kind {
            None => body.clone(),
            Some(PatchKind::Json) => {
                let ops: json_patch::Patch = serde_json::from_value(body.clone()).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
                let mut s = current.clone();
                json_patch::patch(&mut s, &ops).map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                s
            }
            Some(_) => {
                let mut s = current.clone();
                json_patch::merge(&mut s, body);
                s
            }
        };
        if kind.is_none()
            && let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && current["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::new(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"));
        }
        let replicas = new["spec"]["replicas"].as_i64().ok_or_else(|| ApiError::new(422, "Invalid", "spec.replicas: Required value"))?;
        if replicas < 0 {
            return Err(ApiError::new(422, "Invalid", format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")));
        }
        let paths = ty.scale.clone().ok_or_else(|| ApiError::new(404, "NotFound", "no scale subresource"))?;
        let old = self.get(ty, ns, name).cloned().ok_or_else(|| ApiError::not_found(ty, name))?;
        let mut obj = old.clone();
        set_path(&mut obj, &paths.spec_replicas, json!(replicas));
        let okey = Store::okey(ty, ns, name);
        self.update(ty, &okey, &old, obj, Part::Main)?;
        self.scale(ty, ns, name)
    }

    /// Changes since `rv` of a type, in `namespace` (all when `None`).
    pub fn changes_since(&self, ty: &ResourceType, namespace: Option<&str>, rv: u64) -> Vec<Change> {
        let start = self.log.partition_point(|c| c.rv <= rv);
        self.log[start..]
            .iter()
            .filter(|c| c.ty.0 == ty.group && c.ty.1 == ty.plural && namespace.is_none_or(|n| n == c.namespace))
            .cloned()
            .collect()
    }
}

/// Removes from `target` what `last` set and `applied` no longer does.
fn prune(target: &mut Value, last: &Value, applied: &Value) {
    let (Some(t), Some(l)) = (target.as_object_mut(), last.as_object()) else { return };
    for (k, lv) in l {
        match applied.get(k) {
            None => {
                t.remove(k);
            }
            Some(av) if av.is_object() && lv.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    prune(tv, lv, av);
                }
            }
            Some(_) => {}
        }
    }
}

/// Merges an applied configuration: maps merge, everything else is replaced.
fn merge_apply(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, av) in a {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && av.is_object() => merge_apply(tv, av),
                    _ => {
                        t.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Keeps objects matching an equality-based label selector (`a=b,c!=d,e`).
pub fn matches_labels(obj: &Value, selector: &str) -> bool {
    let labels = obj["metadata"]["labels"].as_object().cloned().unwrap_or_else(Map::new);
    selector.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).and_then(Value::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            let k = k.trim().trim_end_matches('=');
            labels.get(k).and_then(Value::as_str) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            !labels.contains_key(k)
        } else {
            labels.contains_key(term)
        }
    })
}

/// Keeps objects matching a field selector on `metadata.name` / `metadata.namespace`.
pub fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|term| {
        let (path, want, negate) = match term.split_once("!=") {
            Some((p, v)) => (p, v, true),
            None => match term.split_once('=') {
                Some((p, v)) => (p.trim_end_matches('='), v, false),
                None => return true,
            },
        };
        let have = at_path(obj, path.trim()).and_then(Value::as_str).unwrap_or_default();
        (have == want.trim()) != negate
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A merge patch carrying the resourceVersion it was computed from is refused once the
    /// object moved on (what the operator's forward of a cluster's replicas relies on); one
    /// without is applied.
    #[test]
    fn a_merge_patch_with_a_stale_resource_version_conflicts() {
        let mut s = Store::new();
        let ty = s.find_type("", "v1", "configmaps").cloned().unwrap();
        let created = s.create(&ty, "acme", json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
        let read = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        fn merge(body: &Value) -> PatchRequest<'_> {
            PatchRequest { kind: PatchKind::Merge, body, manager: "m", part: Part::Main }
        }
        let current = json!({"metadata": {"resourceVersion": read}, "data": {"a": "2"}});
        let moved = s.patch(&ty, "acme", "c", &merge(&current)).unwrap();
        assert_eq!(moved["data"]["a"], "2", "the version read is current: applied");
        let stale = json!({"metadata": {"resourceVersion": read}, "data": {"a": "3"}});
        let refused = s.patch(&ty, "acme", "c", &merge(&stale)).unwrap_err();
        assert_eq!((refused.code, refused.reason), (409, "Conflict"));
        assert_eq!(s.get(&ty, "acme", "c").unwrap()["data"]["a"], "2", "nothing of the refused patch applied");
        let plain = s.patch(&ty, "acme", "c", &merge(&json!({"data": {"a": "4"}}))).unwrap();
        assert_eq!(plain["data"]["a"], "4");
    }
}
