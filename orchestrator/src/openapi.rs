//! The OpenAPI 3 document of the HTTP API, generated from the handlers' annotations and the
//! wire types, so it has one source. Served at `/v1/openapi.json`, printed by
//! `herd-orchestrator openapi`, and committed as `manifests/openapi.json` (a test keeps the
//! committed file in sync).

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http;

mod requests;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "herd",
        description = "Tenant provisioning API of herd-orchestrator: tenants, quotas, tokens, clusters and hosts. \
Every route but /healthz and this document needs `Authorization: Bearer SECRET`. Errors are RFC 9457 problem+json \
(`Problem`) with a stable `code` and every offending field. A request this document calls valid is never refused for its \
shape; it may be refused (422) by rules between its fields that a schema cannot state (problem type \
`urn:herd:problem:inconsistent`, the rules listed on the request schema), or by the current state, a quota or the \
orchestrator's limits and flags (problem type `urn:herd:problem:refused-by-state`). Lists take `?limit=N&after=CURSOR` and answer a page with \
`items` and `next`. Cluster reads carry the generation as `ETag`; changes honour `If-Match`.",
        license(name = "Apache-2.0")
    ),
    paths(
        http::tenants::create, http::tenants::list, http::tenants::get, http::tenants::set_quota, http::tenants::delete,
        http::tokens::create, http::tokens::list, http::tokens::revoke,
        http::clusters::all, http::clusters::of_tenant, http::clusters::get, http::clusters::apply,
        http::clusters::delete, http::clusters::scale,
        http::agents::register, http::agents::heartbeat, http::agents::watch, http::agents::hosts,
        http::hosts::get, http::hosts::cordon, http::hosts::uncordon, http::hosts::drain, http::hosts::delete,
        http::audit::list, crate::logs::logs, http::front::leader,
    ),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Tenants and their quotas (admin)"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "clusters", description = "A tenant's Hadoop clusters"),
        (name = "hosts", description = "The fleet (admin)"),
        (name = "agents", description = "The agent protocol"),
        (name = "audit", description = "Who changed what, when (admin)"),
        (name = "leader", description = "Which orchestrator leads (several on etcd; no token)"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("an API token's secret")).build()),
        );
    }
}

/// The document as the handlers' annotations make it; [`served`] completes it.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as served and committed: the annotations' document with what every route
/// shares added in one place, so no handler can forget it (see [`contract`]).
pub fn served() -> serde_json::Value {
    // NB: the document is plain data with string keys; serializing it cannot fail.
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    contract(&mut doc);
    doc
}

/// The document as committed under `manifests/`: pretty JSON and a final newline.
pub fn pretty() -> String {
    serde_json::to_string_pretty(&served()).unwrap_or_default() + "\n"
}

fn problem(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

/// What every route shares, added to the annotations' document:
/// - errors are `application/problem+json` (`Problem`), never `application/json`;
/// - every route with a token can answer 401 (no or a bad token, with `WWW-Authenticate`), 403
///   (a token whose scope does not reach the route, e.g. an agent token off the agent
///   protocol) and 429 (over the token's rate, with `Retry-After`);
/// - a route with parameters can answer 400 (undecodable) and 422 (a value the server refuses,
///   named in `errors`); one with path parameters 404; one with a body 413 and 422;
/// - the constraints the server enforces on path, query and header parameters (name patterns,
///   lengths, ranges);
/// - `307` (a follower's redirect to the leader) and `503` (no leader, no store) on every route
///   with a token;
/// - `/healthz`, `/readyz` and `/metrics`, which need no token.
pub fn contract(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let dns_label = requests::dns_label();
    let constraints: Vec<(&str, Value)> = vec![
        ("tenant", dns_label.clone()),
        ("cluster", dns_label.clone()),
        ("instance", dns_label.clone()),
        ("host", dns_label.clone()),
        ("id", json!({ "type": "string", "pattern": "^[0-9a-f]{1,64}$" })),
        ("limit", json!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 1000 })),
        ("after", json!({ "type": "string", "minLength": 1, "maxLength": 300 })),
        ("Idempotency-Key", json!({ "type": "string", "pattern": "^[!-~]{1,255}$" })),
        ("If-Match", json!({ "type": "string", "pattern": "^(\\*|(W/)?\"[0-9]{1,19}\"|[0-9]{1,19})$" })),
    ];
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, op) in item.iter_mut() {
                let Some(op) = op.as_object_mut() else { continue };
                let secured = op.get("security").is_some();
                // Every write with a token takes an Idempotency-Key (POSTs declare theirs).
                if secured && ["put", "patch", "delete"].contains(&method.as_str()) {
                    let ps = op.entry("parameters").or_insert_with(|| json!([]));
                    if let Some(ps) = ps.as_array_mut()
                        && !ps.iter().any(|p| p["name"] == "Idempotency-Key")
                    {
                        ps.push(json!({ "name": "Idempotency-Key", "in": "header", "required": false,
                            "description": "retry safely: the same key and request get the first answer (Idempotent-Replayed: true)" }));
                    }
                }
                let has_body = op.get("requestBody").is_some();
                // Request bodies get the schemas of what the server checks (see `requests`).
                if let Some(content) = op.get_mut("requestBody").and_then(|b| b.get_mut("content")).and_then(Value::as_object_mut) {
                    for media in content.values_mut() {
                        let to = match media["schema"]["$ref"].as_str() {
                            Some("#/components/schemas/ClusterSpec") => "ClusterSpecRequest",
                            Some("#/components/schemas/CreateToken") => "CreateTokenRequest",
                            _ => continue,
                        };
                        media["schema"] = json!({ "$ref": format!("#/components/schemas/{to}") });
                    }
                }
                let params: Vec<(String, String)> = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .map(|ps| ps.iter().map(|p| (p["name"].as_str().unwrap_or_default().into(), p["in"].as_str().unwrap_or_default().into())).collect())
                    .unwrap_or_default();
                if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                    for p in ps {
                        if let Some((_, schema)) = constraints.iter().find(|(n, _)| p["name"] == *n) {
                            p["schema"] = schema.clone();
                        }
                        // A cluster's instances page by instance name, up to 10,000 at once.
                        if path == "/v1/tenants/{tenant}/clusters/{cluster}" && p["name"] == "limit" {
                            p["schema"]["maximum"] = json!(10_000);
                        }
                        // Each list's cursor is what its `next` holds.
                        if p["name"] == "after" {
                            p["schema"]["pattern"] = match path.as_str() {
                                "/v1/audit" => json!("^[0-9]{1,19}$"),
                                "/v1/clusters" | "/v1/tenants/{tenant}/clusters" => json!("^[^/]{1,150}/[^/]{1,150}$"),
                                "/v1/tenants/{tenant}/clusters/{cluster}" => dns_label["pattern"].clone(),
                                _ => Value::Null,
                            };
                            if let Some(schema) = p["schema"].as_object_mut() {
                                schema.retain(|_, v| !v.is_null());
                            }
                        }
                    }
                }
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
                for r in responses.values_mut() {
                    if let Some(content) = r.get_mut("content").and_then(Value::as_object_mut)
                        && content.get("application/json").is_some_and(|c| c["schema"]["$ref"] == "#/components/schemas/Problem")
                        && let Some(c) = content.remove("application/json")
                    {
                        content.insert("application/problem+json".into(), c);
                    }
                }
                let mut add = |code: &str, r: Value| {
                    responses.entry(code.to_string()).or_insert(r);
                };
                if secured {
                    let mut unauthorized = problem("no bearer token, or one herd does not know");
                    unauthorized["headers"] = json!({ "WWW-Authenticate": { "schema": { "type": "string" } } });
                    add("401", unauthorized);
                    add("403", problem("the token's scope does not reach this"));
                    let mut limited = problem("over the token's request rate (herd-orchestrator --rate-limit)");
                    limited["headers"] = json!({ "Retry-After": { "description": "seconds to wait", "schema": { "type": "integer" } } });
                    add("429", limited);
                    // Several orchestrators on etcd (see `crate::leader`): a follower redirects,
                    // and nobody answers for the store while none leads or etcd has no quorum.
                    let mut redirect = problem("this orchestrator follows: send the same request, with its token, to the leader");
                    redirect["headers"] = json!({
                        "Location": { "description": "the same path on the leader", "schema": { "type": "string" } },
                        "Herd-Leader": { "description": "the leader's URL", "schema": { "type": "string" } },
                    });
                    add("307", redirect);
                    let mut unavailable = problem("no orchestrator leads now, or the store cannot be reached: nothing was changed; retry");
                    unavailable["headers"] = json!({ "Retry-After": { "description": "seconds to wait", "schema": { "type": "integer" } } });
                    add("503", unavailable);
                }
                if !params.is_empty() {
                    add("400", problem("a parameter that cannot be decoded"));
                    add("422", problem("a parameter the server refuses; `errors` names it"));
                }
                if params.iter().any(|(_, at)| at == "path") {
                    add("404", problem("not found, or not visible to this token"));
                }
                if has_body {
                    add("413", problem("the body is over 1 MiB"));
                    add("422", problem("an invalid body; `errors` names each field"));
                }
                if params.iter().any(|(name, _)| name == "If-Match") {
                    add("412", problem("`If-Match` names another generation than the stored one: read it again (`ETag`) and retry"));
                }
            }
        }
        let text = |description: &str, ct: &str| json!({ "description": description, "content": { ct: { "schema": { "type": "string" } } } });
        paths.insert("/healthz".into(), json!({ "get": { "tags": ["health"], "summary": "The process answers (no token).", "operationId": "healthz",
            "responses": { "200": text("ok", "text/plain") } } }));
        paths.insert("/readyz".into(), json!({ "get": { "tags": ["health"], "summary": "The store answers a read (no token).", "operationId": "readyz",
            "responses": { "200": text("ready", "text/plain"), "503": text("not ready, and why", "text/plain") } } }));
        paths.insert("/metrics".into(), json!({ "get": { "tags": ["health"], "summary": "Prometheus metrics, OpenMetrics text (no token).", "operationId": "metrics",
            "responses": { "200": text("the metrics", "application/openmetrics-text") } } }));
    }
    unique_operation_ids(doc);
    links(doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        schemas.extend(requests::schemas());
        for schema in schemas.values_mut() {
            requests::use_totals(schema);
        }
        schemas.extend(requests::totals());
        // What the server checks of an agent's registration.
        if let Some(id) = schemas.get_mut("HostInfo").and_then(|h| h.pointer_mut("/properties/id")) {
            let description = id["description"].clone();
            *id = dns_label.clone();
            id["description"] = description;
        }
        // NB: `format` alone only annotates (JSON Schema 2020-12); the pattern is what holds.
        for (schema, field) in [("HostInfo", "address"), ("Observed", "ip")] {
            if let Some(address) = schemas.get_mut(schema).and_then(|h| h.pointer_mut(&format!("/properties/{field}"))) {
                address["format"] = json!("ipv4");
                address["pattern"] = json!(format!("^{}$", requests::IPV4));
            }
        }
        if let Some(url) = schemas.get_mut("LogEndpoint").and_then(|h| h.pointer_mut("/properties/url")) {
            url["pattern"] = json!(format!(
                "^https?://{}:([1-9][0-9]{{0,3}}|[1-5][0-9]{{4}}|6[0-4][0-9]{{3}}|65[0-4][0-9]{{2}}|655[0-2][0-9]|6553[0-5])/?$",
                requests::IPV4
            ));
        }
    }
    if let Some(tags) = doc.get_mut("tags").and_then(Value::as_array_mut) {
        tags.push(json!({ "name": "health", "description": "Liveness, readiness and metrics" }));
    }
}

/// Operation ids are unique in a document (OpenAPI 3.1, 4.8.10.1); the handlers' names are
/// not (`get`, `delete`, `list` in several modules): a repeated one is prefixed with its tag.
fn unique_operation_ids(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for op in paths.values().filter_map(Value::as_object).flat_map(|item| item.values()) {
        if let Some(id) = op["operationId"].as_str() {
            *seen.entry(id.to_string()).or_default() += 1;
        }
    }
    for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let (Some(id), Some(tag)) = (op["operationId"].as_str(), op["tags"][0].as_str()) else { continue };
        if seen.get(id).is_some_and(|n| *n > 1) {
            op["operationId"] = serde_json::json!(format!("{tag}_{id}"));
        }
    }
}

/// OpenAPI links from what a write answers to what a client does next with it (and the
/// stateful phase of the contract test follows): a new tenant to its quota and clusters, an
/// applied cluster to its reads, scaling, logs and deletion, a new token to its revocation.
fn links(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let link = |op: &str, params: Value| json!({ "operationId": op, "parameters": params });
    let tenant = json!({ "tenant": "$response.body#/name" });
    let cluster = json!({ "tenant": "$response.body#/tenant", "cluster": "$response.body#/name" });
    let mut logs = cluster.clone();
    logs["instance"] = json!("$response.body#/instances/0/instance/name");
    let tenant_links = json!({
        "GetTenant": link("tenants_get", tenant.clone()),
        "SetQuota": link("set_quota", tenant.clone()),
        "ApplyCluster": link("apply", tenant.clone()),
        "DeleteTenant": link("tenants_delete", tenant),
    });
    let cluster_links = json!({
        "GetCluster": link("clusters_get", cluster.clone()),
        "ScalePool": link("scale", cluster.clone()),
        "InstanceLogs": link("logs", logs),
        "DeleteCluster": link("clusters_delete", cluster),
    });
    let token_links = json!({ "RevokeToken": link("revoke", json!({ "id": "$response.body#/token/id" })) });
    for (path, method, codes, links) in [
        ("/v1/tenants", "post", &["200", "201"][..], &tenant_links),
        ("/v1/tenants/{tenant}/clusters/{cluster}", "put", &["200", "201"], &cluster_links),
        ("/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", "patch", &["200"], &cluster_links),
        ("/v1/tokens", "post", &["201"], &token_links),
    ] {
        for code in codes {
            if let Some(r) = doc.pointer_mut(&format!("/paths/{}/{method}/responses/{code}", path.replace('/', "~1")))
                && let Some(r) = r.as_object_mut()
            {
                r.insert("links".into(), links.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == pretty(),
            "manifests/openapi.json differs from the API the code serves; regenerate it with\n  \
             cargo run -p herd-orchestrator -- openapi > manifests/openapi.json\nand commit it"
        );
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_them() {
        let doc = served();
        let mut ids = std::collections::BTreeSet::new();
        for op in doc["paths"].as_object().into_iter().flat_map(|p| p.values()).filter_map(|i| i.as_object()).flat_map(|i| i.values()) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(ids.insert(id.clone()), "operationId {id} twice");
        }
        let text = doc.to_string();
        let mut named = 0;
        for part in text.split("\"operationId\":\"").skip(1) {
            let id = part.split('"').next().unwrap_or_default();
            assert!(ids.contains(id), "{id} is named but not an operation");
            named += 1;
        }
        assert!(named > ids.len(), "no links");
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in ["/v1/tenants", "/v1/tenants/{tenant}/quota", "/v1/tokens/{id}", "/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", "/v1/audit", "/v1/hosts"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
    }
}
