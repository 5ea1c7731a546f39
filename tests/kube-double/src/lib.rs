//! TEST DOUBLE of a Kubernetes API server (NOT Kubernetes), in-process on loopback, for
//! herd's operator tests and for driving with the real `kubectl`.
//!
//! It serves what herd's operator and kubectl use: discovery (`/api`, `/apis`, resource
//! lists with subresources, `/version`); LIST (label and field selectors, `as=Table` with
//! a CRD's printer columns), WATCH (from a resourceVersion, bookmarks, timeouts); GET,
//! CREATE, PUT, PATCH (JSON merge, JSON patch, strategic merge as merge, server-side
//! apply) and DELETE (finalizers, owner-reference cascade); `status` and `scale`
//! subresources; CustomResourceDefinitions registering new types; Leases. It plays kubelet
//! too: every StatefulSet's pods are created (spread over four nodes in two racks), made
//! ready, and removed from the highest ordinal when it shrinks.
//!
//! # Layout
//! - [`types`]: the resource types (built-in, and from CRDs) and their discovery entries.
//! - [`store`]: objects, the change log WATCH reads, write semantics.
//! - this file: HTTP routing, WATCH streams, tables, the kubelet loop, fault injection.

pub mod store;
pub mod types;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use store::{ApiError, Part, PatchKind, PatchRequest, Store, matches_fields, matches_labels};
use types::{ResourceType, at_path};

/// The nodes the kubelet places pods on, with their rack label.
pub const NODES: [(&str, &str); 4] = [("node-a", "rack-1"), ("node-b", "rack-1"), ("node-c", "rack-2"), ("node-d", "rack-2")];
/// The label the nodes carry their rack in.
pub const RACK_LABEL: &str = "topology.kubernetes.io/zone";

/// A scripted failure: the next `count` requests whose `METHOD path` contains `pattern`
/// are answered `code`.
#[derive(Debug, Clone)]
struct Fault {
    pattern: String,
    count: u32,
    code: u16,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<u64>,
    kubelet: AtomicBool,
    faults: Mutex<Vec<Fault>>,
    requests: Mutex<Vec<String>>,
    addr: Mutex<Option<SocketAddr>>,
}

impl Shared {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn notify(&self, rv: u64) {
        let _ = self.changes.send(rv);
    }
}

/// A running double; stops when dropped.
pub struct KubeDouble {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeDouble {
    /// Starts on 127.0.0.1 (a port chosen by the OS), with the nodes and namespace `default`.
    pub async fn start() -> anyhow::Result<KubeDouble> {
        KubeDouble::start_on("127.0.0.1:0".parse()?).await
    }

    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<KubeDouble> {
        let (changes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            changes,
            kubelet: AtomicBool::new(true),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            addr: Mutex::new(None),
        });
        {
            let mut s = shared.store();
            let ty = |s: &Store, plural: &str| s.find_type("", "v1", plural).cloned();
            if let Some(nodes) = ty(&s, "nodes") {
                for (name, rack) in NODES {
                    let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, RACK_LABEL: rack}}});
                    s.create(&nodes, "", node).map_err(|e| anyhow::anyhow!(e.message))?;
                }
            }
            if let Some(namespaces) = ty(&s, "namespaces") {
                s.create(&namespaces, "", json!({"metadata": {"name": "default"}})).map_err(|e| anyhow::anyhow!(e.message))?;
            }
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        *shared.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let kubelet = tokio::spawn(kubelet(shared.clone()));
        Ok(KubeDouble { addr, shared, tasks: vec![server, kubelet] })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for kubectl (plain HTTP, no credentials), namespace `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: nobody\n    namespace: {namespace}\ncurrent-context: double\nusers:\n- name: nobody\n  user: {{}}\n",
            self.url()
        )
    }

    /// Whether the kubelet runs (creates, readies and removes StatefulSet pods).
    pub fn set_kubelet(&self, on: bool) {
        self.shared.kubelet.store(on, Ordering::SeqCst);
    }

    /// Answers the next `count` requests whose `METHOD path?query` contains `pattern` with
    /// `code` (e.g. 500, 503).
    pub fn fail(&self, pattern: &str, count: u32, code: u16) {
        self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()).push(Fault { pattern: pattern.into(), count, code });
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An object as stored (group `""` for core).
    pub fn get(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let s = self.shared.store();
        let ty = s.types.iter().find(|t| t.group == group && t.plural == plural)?.clone();
        s.get(&ty, namespace, name).cloned()
    }

    /// Every object of a type in `namespace` (all when `None`).
    pub fn list(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let s = self.shared.store();
        let Some(ty) = s.types.iter().find(|t| t.group == group && t.plural == plural).cloned() else { return Vec::new() };
        s.list(&ty, namespace)
    }

    /// Creates or updates an object directly (as another client would).
    pub fn put(&self, group: &str, plural: &str, namespace: &str, obj: Value) -> Result<Value, String> {
        let mut s = self.shared.store();
        let ty = s.types.iter().find(|t| t.group == group && t.plural == plural).cloned().ok_or("no such type")?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let out = if s.get(&ty, namespace, &name).is_some() {
            s.patch(&ty, namespace, &name, &PatchRequest { kind: PatchKind::Merge, body: &obj, manager: "test", part: Part::Main })
        } else {
            s.create(&ty, namespace, obj)
        };
        let rv = s.rv;
        drop(s);
        self.shared.notify(rv);
        out.map_err(|e| e.message)
    }
}

fn respond(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(e: &ApiError) -> Response {
    respond(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.body())
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a request points.
struct Target {
    ty: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

async fn handle(axum::extract::State(shared): axum::extract::State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let line = format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    shared.requests.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
    {
        let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = faults.iter_mut().find(|f| f.count > 0 && line.contains(&f.pattern)) {
            f.count -= 1;
            let code = f.code;
            return error(&ApiError::new(code, "InternalError", format!("the double was told to fail `{line}` with {code}")));
        }
    }
    let path = uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = query(&uri);
    let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());

    match segments.as_slice() {
        ["version"] => {
            return respond(StatusCode::OK, &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-herd-kube-double", "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}));
        }
        ["api"] => {
            let addr = shared.addr.lock().unwrap_or_else(|p| p.into_inner()).map(|a| a.to_string()).unwrap_or_default();
            return respond(StatusCode::OK, &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}));
        }
        ["apis"] => {
            let s = shared.store();
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for t in s.types.iter().filter(|t| !t.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == t.group) {
                    Some((_, versions)) if !versions.contains(&t.version) => versions.push(t.version.clone()),
                    Some(_) => {}
                    None => groups.push((t.group.clone(), vec![t.version.clone()])),
                }
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            return respond(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["openapi", "v2"] => return openapi_v2(),
        ["openapi", ..] => return error(&ApiError::new(404, "NotFound", "the double serves no OpenAPI v3 document")),
        _ => {}
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest.to_vec()),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest.to_vec()),
        _ => return error(&ApiError::new(404, "NotFound", format!("the double does not serve {path}"))),
    };
    if rest.is_empty() {
        let s = shared.store();
        let resources: Vec<Value> = s.types.iter().filter(|t| t.group == group && t.version == version).flat_map(|t| t.discovery()).collect();
        if resources.is_empty() {
            return error(&ApiError::new(404, "NotFound", format!("no group version {group}/{version}")));
        }
        let gv = if group.is_empty() { version.clone() } else { format!("{group}/{version}") };
        return respond(StatusCode::OK, &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}));
    }
    let (namespace, plural, name, sub) = match rest.as_slice() {
        ["namespaces", ns, plural, tail @ ..] => (Some(ns.to_string()), plural.to_string(), tail.first().map(|s| s.to_string()), tail.get(1).map(|s| s.to_string())),
        [plural, tail @ ..] => (None, plural.to_string(), tail.first().map(|s| s.to_string()), tail.get(1).map(|s| s.to_string())),
        [] => return error(&ApiError::new(404, "NotFound", "no resource")),
    };
    let Some(ty) = shared.store().find_type(&group, &version, &plural).cloned() else {
        return error(&ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({plural}.{group}/{version})")));
    };
    let target = Target { ty, namespace, name, sub };
    let manager = param("fieldManager").unwrap_or_else(|| "unknown".into());
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let parsed = || -> Result<Value, ApiError> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        let mut v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body is not JSON: {e}")))?;
        // Custom resources: fields the CRD's structural schema does not declare are pruned,
        // with a warning per field (as kube-apiserver does since 1.27 without fieldValidation).
        if let Some(schema) = &target.ty.schema
            && !matches!(target.sub.as_deref(), Some("scale"))
            && !content_type.starts_with("application/json-patch")
        {
            let mut pruned = Vec::new();
            types::prune(&mut v, schema, "", &mut pruned);
            warnings.lock().unwrap_or_else(|p| p.into_inner()).extend(pruned.into_iter().map(|p| format!("299 - \"unknown field \\\"{p}\\\"\"")));
        }
        Ok(v)
    };
    let ns = target.namespace.clone().unwrap_or_default();

    let result: Result<(StatusCode, Value), ApiError> = match (&method, &target.name, target.sub.as_deref()) {
        (&Method::GET, None, _) if matches!(param("watch").as_deref(), Some("true" | "1")) => {
            return watch(shared.clone(), &target, &q);
        }
        (&Method::GET, None, _) => {
            let s = shared.store();
            let mut items = s.list(&target.ty, target.namespace.as_deref());
            if let Some(sel) = param("labelSelector") {
                items.retain(|o| matches_labels(o, &sel));
            }
            if let Some(sel) = param("fieldSelector") {
                items.retain(|o| matches_fields(o, &sel));
            }
            let rv = s.rv.to_string();
            if accept.contains("as=Table") {
                Ok((StatusCode::OK, table(&target.ty, &items, &rv)))
            } else {
                Ok((StatusCode::OK, json!({"kind": format!("{}List", target.ty.kind), "apiVersion": target.ty.api_version(), "metadata": {"resourceVersion": rv}, "items": items})))
            }
        }
        (&Method::POST, None, _) => parsed().and_then(|obj| {
            let mut s = shared.store();
            let ns = if target.ty.namespaced { obj["metadata"]["namespace"].as_str().map(String::from).unwrap_or(ns.clone()) } else { String::new() };
            s.create(&target.ty, &ns, obj).map(|o| (StatusCode::CREATED, o))
        }),
        (&Method::GET, Some(name), None | Some("status")) => {
            let s = shared.store();
            match s.get(&target.ty, &ns, name) {
                Some(o) if accept.contains("as=Table") => Ok((StatusCode::OK, table(&target.ty, std::slice::from_ref(o), &s.rv.to_string()))),
                Some(o) => Ok((StatusCode::OK, o.clone())),
                None => Err(ApiError::not_found(&target.ty, name)),
            }
        }
        (&Method::GET, Some(name), Some("scale")) => shared.store().scale(&target.ty, &ns, name).map(|o| (StatusCode::OK, o)),
        (&Method::PUT, Some(name), Some("scale")) => parsed().and_then(|b| shared.store().set_scale(&target.ty, &ns, name, None, &b)).map(|o| (StatusCode::OK, o)),
        (&Method::PATCH, Some(name), Some("scale")) => {
            let kind = patch_kind(&content_type);
            parsed().and_then(|b| shared.store().set_scale(&target.ty, &ns, name, Some(kind), &b)).map(|o| (StatusCode::OK, o))
        }
        (&Method::PUT, Some(name), sub) => {
            let part = if sub == Some("status") { Part::Status } else { Part::Main };
            parsed().and_then(|b| shared.store().replace(&target.ty, &ns, name, b, part)).map(|o| (StatusCode::OK, o))
        }
        (&Method::PATCH, Some(name), sub) => {
            let part = if sub == Some("status") { Part::Status } else { Part::Main };
            let kind = patch_kind(&content_type);
            parsed().and_then(|b| {
                let mut s = shared.store();
                let existed = s.get(&target.ty, &ns, name).is_some();
                s.patch(&target.ty, &ns, name, &PatchRequest { kind, body: &b, manager: &manager, part }).map(|o| (if existed { StatusCode::OK } else { StatusCode::CREATED }, o))
            })
        }
        (&Method::DELETE, Some(name), None) => shared.store().delete(&target.ty, &ns, name).map(|o| (StatusCode::OK, o)),
        (&Method::DELETE, None, None) => {
            let mut s = shared.store();
            let mut items = s.list(&target.ty, target.namespace.as_deref());
            if let Some(sel) = param("labelSelector") {
                items.retain(|o| matches_labels(o, &sel));
            }
            for o in &items {
                let name = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let _ = s.delete(&target.ty, &ns, &name);
            }
            Ok((StatusCode::OK, json!({"kind": format!("{}List", target.ty.kind), "apiVersion": target.ty.api_version(), "metadata": {}, "items": items})))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("the double does not support {line}"))),
    };
    let rv = shared.store().rv;
    shared.notify(rv);
    let mut response = match result {
        Ok((code, body)) => respond(code, &body),
        Err(e) => error(&e),
    };
    for w in warnings.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        if let Ok(v) = axum::http::HeaderValue::from_str(w) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// `/openapi/v2` as kubectl asks for it (gnostic's protobuf `Document`): an empty document
/// (`swagger: "2.0"`, an `info`, no paths or definitions). kubectl's client-side validation
/// skips kinds it finds no schema for, as it does for a CRD without one.
fn openapi_v2() -> Response {
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let info = [field(1, b"herd-kube-double"), field(2, b"v1.33.0")].concat();
    let doc = [field(1, b"2.0"), field(2, &info), field(8, b"")].concat();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")], doc).into_response()
}

fn patch_kind(content_type: &str) -> PatchKind {
    if content_type.starts_with("application/apply-patch") {
        PatchKind::Apply
    } else if content_type.starts_with("application/json-patch") {
        PatchKind::Json
    } else if content_type.starts_with("application/strategic-merge-patch") {
        PatchKind::Strategic
    } else {
        PatchKind::Merge
    }
}

/// A `meta.k8s.io/v1` Table: Name, then the type's printer columns.
fn table(ty: &ResourceType, items: &[Value], rv: &str) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0})];
    let mut paths = Vec::new();
    let defs = if ty.columns.is_empty() {
        vec![types::Column { name: "Age".into(), type_: "date".into(), json_path: ".metadata.creationTimestamp".into(), description: String::new(), priority: 0 }]
    } else {
        ty.columns.clone()
    };
    for c in &defs {
        columns.push(json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority}));
        paths.push((c.json_path.clone(), c.type_.clone()));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for (path, type_) in &paths {
                let v = at_path(o, path).cloned().unwrap_or(Value::Null);
                cells.push(if type_ == "date" { v.as_str().map(age).map(Value::String).unwrap_or(Value::Null) } else { v });
            }
            let meta = o["metadata"].clone();
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": columns, "rows": rows})
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time.
fn age(t: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339(t) else { return "<invalid>".into() };
    let s = std::time::SystemTime::now().duration_since(then).map_or(0, |d| d.as_secs());
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A WATCH: newline-delimited `{"type", "object"}` events from the asked resourceVersion
/// (`0` or none: every current object as ADDED first), BOOKMARKs every second when asked
/// for, ending after `timeoutSeconds`.
fn watch(shared: Arc<Shared>, target: &Target, q: &[(String, String)]) -> Response {
    let param = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let labels = param("labelSelector");
    let fields = param("fieldSelector");
    let bookmarks = param("allowWatchBookmarks").as_deref() == Some("true");
    let timeout = Duration::from_secs(param("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800));
    let ty = target.ty.clone();
    let namespace = target.namespace.clone();
    let mut changes = shared.changes.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let keep = move |o: &Value| labels.as_deref().is_none_or(|s| matches_labels(o, s)) && fields.as_deref().is_none_or(|s| matches_fields(o, s));
    let from = param("resourceVersion").filter(|v| !v.is_empty() && v != "0").and_then(|v| v.parse::<u64>().ok());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let line = |kind: &str, object: &Value| Bytes::from(format!("{}\n", json!({"type": kind, "object": object})));
        let mut last = {
            let s = shared.store();
            match from {
                Some(rv) => rv,
                None => {
                    for o in s.list(&ty, namespace.as_deref()).iter().filter(|o| keep(o)) {
                        if tx.try_send(Ok(line("ADDED", o))).is_err() {
                            return;
                        }
                    }
                    s.rv
                }
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let (batch, seen) = {
                let s = shared.store();
                (s.changes_since(&ty, namespace.as_deref(), last), s.rv)
            };
            for c in batch {
                if keep(&c.object) && tx.send(Ok(line(c.kind, &c.object))).await.is_err() {
                    return;
                }
            }
            last = last.max(seen);
            tokio::select! {
                _ = changes.recv() => {}
                _ = tick.tick() => {
                    if bookmarks {
                        let mark = json!({"kind": ty.kind, "apiVersion": ty.api_version(), "metadata": {"resourceVersion": last.to_string()}});
                        if tx.send(Ok(line("BOOKMARK", &mark))).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(&ApiError::new(500, "InternalError", "cannot stream")))
}

/// Plays kubelet and the StatefulSet controller: pods `<sts>-<n>` for `n` below
/// `spec.replicas`, each on a node (round robin), ready at once; pods above it removed; the
/// StatefulSet's status kept up to date.
async fn kubelet(shared: Arc<Shared>) {
    let mut changes = shared.changes.subscribe();
    loop {
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if !shared.kubelet.load(Ordering::SeqCst) {
            continue;
        }
        let rv = {
            let mut s = shared.store();
            let before = s.rv;
            sync_statefulsets(&mut s);
            (s.rv != before).then_some(s.rv)
        };
        if let Some(rv) = rv {
            shared.notify(rv);
        }
    }
}

fn sync_statefulsets(s: &mut Store) {
    let (Some(sts_ty), Some(pod_ty)) = (s.find_type("apps", "v1", "statefulsets").cloned(), s.find_type("", "v1", "pods").cloned()) else { return };
    for sts in s.list(&sts_ty, None) {
        let ns = sts["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = sts["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
        let labels = sts["spec"]["template"]["metadata"]["labels"].clone();
        let owned = |p: &Value| p["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|r| r["uid"] == sts["metadata"]["uid"]));
        let pods: Vec<Value> = s.list(&pod_ty, Some(&ns)).into_iter().filter(|p| owned(p)).collect();
        // Highest ordinals go first, one per pass (as the StatefulSet controller does).
        let mut ordinals: Vec<u64> = pods.iter().filter_map(|p| p["metadata"]["name"].as_str()?.rsplit('-').next()?.parse().ok()).collect();
        ordinals.sort_unstable();
        if let Some(top) = ordinals.last().filter(|o| **o >= replicas) {
            let _ = s.delete(&pod_ty, &ns, &format!("{name}-{top}"));
        }
        for n in 0..replicas {
            let pod_name = format!("{name}-{n}");
            if s.get(&pod_ty, &ns, &pod_name).is_some() {
                continue;
            }
            let (node, _) = NODES[(n as usize) % NODES.len()];
            let mut pod_labels = labels.clone();
            pod_labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
            let mut spec = sts["spec"]["template"]["spec"].clone();
            spec["nodeName"] = json!(node);
            spec["hostname"] = json!(pod_name);
            spec["subdomain"] = sts["spec"]["serviceName"].clone();
            let pod = json!({
                "metadata": {
                    "name": pod_name,
                    "labels": pod_labels,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name, "uid": sts["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": spec,
                "status": {
                    "phase": "Running",
                    "podIP": format!("10.244.{}.{}", n / 250, n % 250 + 2),
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                },
            });
            let _ = s.create(&pod_ty, &ns, pod);
        }
        let count = s.list(&pod_ty, Some(&ns)).iter().filter(|p| owned(p)).count() as u64;
        let status = json!({"status": {
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": count, "readyReplicas": count, "currentReplicas": count, "updatedReplicas": count, "availableReplicas": count,
        }});
        if sts.get("status").map(|st| st["replicas"] != count || st["observedGeneration"] != sts["metadata"]["generation"]).unwrap_or(true) {
            let _ = s.patch(&sts_ty, &ns, &name, &PatchRequest { kind: PatchKind::Merge, body: &status, manager: "kubelet", part: Part::Status });
        }
    }
}
