//! The tenant provisioning API over real HTTP against a real orchestrator process and its
//! store: every route's happy path, every route refused to callers that may not use it
//! (with nothing changed), quotas, generations (`If-Match`) under a real race, idempotent
//! `POST`s across a restart, pagination, the audit trail, the OpenAPI document and the CLI.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::Result;
use herd_tests::{Api, Orchestrator, bins, free_port, unique};
use serde_json::{Value, json};
use sha2::Digest;

fn spec(tenant: &str, name: &str, datanodes: u32, cpu: &str) -> String {
    format!(
        "tenant: {tenant}\nname: {name}\nimages:\n  datanode: herd/datanode:testbed\npools:\n  datanode:\n    replicas: {datanodes}\n    cpu: {cpu}\n    memory: 512Mi\n    disk: 10Gi\n"
    )
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    items(v).iter().filter_map(|i| i["name"].as_str().map(String::from)).collect()
}

async fn audit_len(api: &Api) -> Result<usize> {
    let (status, page) = api.get("/v1/audit?limit=1000").await?;
    assert_eq!(status, 200, "{page}");
    Ok(items(&page).len())
}

#[tokio::test]
async fn every_route_works_for_its_callers_and_is_audited() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("happy");

    // Tenants: create with a quota, read, list, change the quota.
    let (status, tenant) = admin.post("/v1/tenants", json!({"name": t, "quota": {"cpu": "4", "memory": "8Gi"}})).await?;
    assert_eq!(status, 201, "{tenant}");
    assert_eq!(tenant["quota"], json!({"cpu": "4", "memory": "8Gi"}));
    let (status, again) = admin.post("/v1/tenants", json!({"name": t})).await?;
    assert_eq!((status, &again["name"]), (200, &json!(t)), "creating it again changes nothing");
    let (status, list) = admin.get("/v1/tenants").await?;
    assert!(status == 200 && names(&list).contains(&t), "{list}");
    let (status, tenant) = admin.put_json(&format!("/v1/tenants/{t}/quota"), json!({"quota": {"cpu": "6", "memory": "8Gi", "disk": "100Gi"}})).await?;
    assert_eq!((status, &tenant["quota"]["cpu"]), (200, &json!("6")), "{tenant}");

    // Tokens: a tenant token, listed without its secret.
    let secret = orch.token("tenant", Some(&t)).await?;
    let (_, tokens) = admin.get("/v1/tokens").await?;
    assert!(!tokens.to_string().contains(&secret), "a token list shows a secret");
    let mine = items(&tokens).into_iter().find(|k| k["tenant"] == json!(t)).unwrap_or_default();
    assert_eq!(mine["scope"], "tenant");
    let tenant_api = Api::new(&orch.url).with_token(&secret);

    // Clusters, with the tenant's own token: create, read with ETag, scale, list, delete.
    let path = format!("/v1/tenants/{t}/clusters/prod");
    let (status, created) = tenant_api.put_yaml(&path, &spec(&t, "prod", 2, "500m")).await?;
    assert_eq!(status, 201, "{created}");
    let (status, body, etag) = tenant_api.json_with("GET", &path, &[], &Value::Null).await?;
    assert_eq!((status, etag.as_deref(), &body["generation"]), (200, Some("\"1\""), &json!(1)));
    let (status, scaled, etag) = tenant_api.json_with("PATCH", &format!("{path}/pools/datanode"), &[("if-match", "\"1\"")], &json!({"replicas": 3})).await?;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{scaled}");
    assert_eq!(scaled["instances"].as_array().map(Vec::len), Some(3));
    let (_, tenant) = tenant_api.get(&format!("/v1/tenants/{t}")).await?;
    assert_eq!(tenant["usage"], json!({"cpu": "1500m", "memory": "1536Mi", "disk": "30Gi"}), "usage counts every pool");
    let (_, mine) = tenant_api.get(&format!("/v1/tenants/{t}/clusters")).await?;
    assert_eq!(items(&mine).len(), 1);
    // Another tenant's cluster exists, but a tenant's /v1/clusters lists only its own.
    let other = unique("other");
    admin.post("/v1/tenants", json!({"name": other})).await?;
    assert_eq!(admin.put_yaml(&format!("/v1/tenants/{other}/clusters/prod"), &spec(&other, "prod", 1, "500m")).await?.0, 201);
    let (_, all) = tenant_api.get("/v1/clusters").await?;
    let tenants: BTreeSet<String> = items(&all).iter().filter_map(|c| c["tenant"].as_str().map(String::from)).collect();
    assert_eq!(tenants, BTreeSet::from([t.clone()]), "{all}");
    let (_, all) = admin.get("/v1/clusters").await?;
    assert_eq!(items(&all).len(), 2, "an admin sees every cluster");

    // Hosts and the agent protocol, with an agent token.
    let host = unique("h");
    let agent = Api::new(&orch.url).with_token(&orch.agent_token(&host).await?);
    let (status, _) = agent.post("/v1/agent/register", json!({"host": {"id": host, "cpu": "8", "memory": "16Gi"}})).await?;
    assert_eq!(status, 200);
    let (status, reply) = agent.post("/v1/agent/heartbeat", json!({"host_id": host, "observed": []})).await?;
    assert_eq!(status, 200, "{reply}");
    assert!(!reply["desired"].as_array().map(Vec::is_empty).unwrap_or(true), "placed instances reach the host");
    let (_, hosts) = admin.get("/v1/hosts").await?;
    assert_eq!(items(&hosts)[0]["info"]["id"], json!(host));
    // An agent token bound to one host cannot speak for another.
    let (status, bound) = admin.post("/v1/tokens", json!({"scope": "agent", "host": host})).await?;
    assert_eq!(status, 201, "{bound}");
    let bound = Api::new(&orch.url).with_token(bound["secret"].as_str().unwrap_or_default());
    assert_eq!(bound.post("/v1/agent/heartbeat", json!({"host_id": host, "observed": []})).await?.0, 200);
    let other_host = unique("h");
    let (status, body) = bound.post("/v1/agent/register", json!({"host": {"id": other_host, "cpu": "8", "memory": "16Gi"}})).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(bound.post("/v1/agent/heartbeat", json!({"host_id": other_host, "observed": []})).await?.0, 403);
    let (status, _) = admin.post("/v1/tokens", json!({"scope": "tenant", "tenant": other, "host": host})).await?;
    assert_eq!(status, 422, "only agent tokens name a host");

    // Delete: a tenant with clusters stays; without, it goes and its tokens stop working.
    let (status, body) = admin.delete(&format!("/v1/tenants/{t}")).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains(&format!("{t}/prod")), "{body}");
    assert_eq!(tenant_api.delete(&path).await?.0, 204);
    assert_eq!(tenant_api.get(&path).await?.0, 404);
    assert_eq!(admin.delete(&format!("/v1/tenants/{t}")).await?.0, 204);
    assert_eq!(tenant_api.get(&format!("/v1/tenants/{t}")).await?.0, 401, "a deleted tenant's token is revoked");
    assert_eq!(admin.get(&format!("/v1/tenants/{t}")).await?.0, 404);

    // Revoking a token stops it at once.
    let id = mine_token_id(&admin, &other).await?;
    let other_secret = orch.token("tenant", Some(&other)).await?;
    let other_api = Api::new(&orch.url).with_token(&other_secret);
    assert_eq!(other_api.get(&format!("/v1/tenants/{other}")).await?.0, 200);
    let new_id = mine_token_id(&admin, &other).await?;
    assert!(id.is_none() && new_id.is_some());
    assert_eq!(admin.delete(&format!("/v1/tokens/{}", new_id.unwrap_or_default())).await?.0, 204);
    assert_eq!(other_api.get(&format!("/v1/tenants/{other}")).await?.0, 401);

    // The last admin token cannot be revoked: nobody could administer herd any more.
    let (_, tokens) = admin.get("/v1/tokens").await?;
    let admins: Vec<String> = items(&tokens).iter().filter(|k| k["scope"] == "admin").filter_map(|k| k["id"].as_str().map(String::from)).collect();
    assert_eq!(admins.len(), 1, "{tokens}");
    let (status, body) = admin.delete(&format!("/v1/tokens/{}", admins[0])).await?;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
    assert_eq!(admin.get("/v1/tenants").await?.0, 200, "the admin token still works");

    // The audit trail has every change, with who and the generations.
    let (_, trail) = admin.get("/v1/audit").await?;
    let entries = items(&trail);
    let actions: Vec<&str> = entries.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["token.create", "tenant.create", "tenant.quota", "cluster.create", "cluster.scale", "cluster.delete", "tenant.delete", "token.revoke", "host.register"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let scale = entries.iter().find(|e| e["action"] == "cluster.scale").cloned().unwrap_or_default();
    assert_eq!((&scale["before_generation"], &scale["after_generation"]), (&json!(1), &json!(2)), "{scale}");
    assert!(scale["actor"].as_str().unwrap_or("").starts_with(&format!("tenant:{t}:")), "{scale}");
    assert_eq!(scale["resource"], json!(format!("{t}/prod")));
    Ok(())
}

async fn mine_token_id(admin: &Api, tenant: &str) -> Result<Option<String>> {
    let (_, tokens) = admin.get("/v1/tokens").await?;
    Ok(items(&tokens)
        .iter()
        .find(|k| k["tenant"] == json!(tenant) && k["revoked"] == json!(false))
        .and_then(|k| k["id"].as_str().map(String::from)))
}

#[tokio::test]
async fn every_route_refuses_callers_that_may_not_use_it_and_changes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let (a, b) = (unique("a"), unique("b"));
    for t in [&a, &b] {
        assert_eq!(admin.post("/v1/tenants", json!({"name": t})).await?.0, 201);
    }
    assert_eq!(admin.put_yaml(&format!("/v1/tenants/{a}/clusters/prod"), &spec(&a, "prod", 1, "500m")).await?.0, 201);
    let agent_host = unique("h");
    let agent_secret = orch.agent_token(&agent_host).await?;
    let b_secret = orch.token("tenant", Some(&b)).await?;
    let (_, to_revoke) = admin.post("/v1/tokens", json!({"scope": "admin", "description": "revoked"})).await?;
    let revoked = to_revoke["secret"].as_str().unwrap_or_default().to_string();
    let revoked_id = to_revoke["token"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(admin.delete(&format!("/v1/tokens/{revoked_id}")).await?.0, 204);
    let token_id = revoked_id.clone();

    // What is stored of clusters (placement may change when the agent registers a host).
    let specs = |v: Value| items(&v).iter().map(|c| (c["generation"].clone(), c["spec"].clone())).collect::<Vec<_>>();
    let before_clusters = specs(admin.get("/v1/clusters").await?.1);
    let before_tenants = admin.get("/v1/tenants").await?.1;
    let before_tokens = admin.get("/v1/tokens").await?.1;
    let before_audit = audit_len(&admin).await?;

    let cluster = format!("/v1/tenants/{a}/clusters/prod");
    let spec_a = spec(&a, "prod", 3, "500m");
    // (method, path, body, what another tenant's token gets, what an agent token gets)
    let routes: Vec<(&str, String, String, u16)> = vec![
        ("GET", "/v1/tenants".into(), String::new(), 403),
        ("POST", "/v1/tenants".into(), json!({"name": unique("x")}).to_string(), 403),
        ("GET", format!("/v1/tenants/{a}"), String::new(), 404),
        ("DELETE", format!("/v1/tenants/{a}"), String::new(), 404),
        ("PUT", format!("/v1/tenants/{a}/quota"), json!({"quota": {"cpu": "1"}}).to_string(), 404),
        ("GET", "/v1/tokens".into(), String::new(), 403),
        ("POST", "/v1/tokens".into(), json!({"scope": "tenant", "tenant": a}).to_string(), 403),
        ("DELETE", format!("/v1/tokens/{token_id}"), String::new(), 403),
        ("GET", "/v1/audit".into(), String::new(), 403),
        ("GET", "/v1/hosts".into(), String::new(), 403),
        ("GET", format!("/v1/tenants/{a}/clusters"), String::new(), 404),
        ("GET", cluster.clone(), String::new(), 404),
        ("PUT", cluster.clone(), spec_a.clone(), 404),
        ("DELETE", cluster.clone(), String::new(), 404),
        ("PATCH", format!("{cluster}/pools/datanode"), json!({"replicas": 5}).to_string(), 404),
        ("POST", "/v1/agent/register".into(), json!({"host": {"id": agent_host, "cpu": "1", "memory": "1Gi"}}).to_string(), 403),
        ("POST", "/v1/agent/heartbeat".into(), json!({"host_id": "nohost", "observed": []}).to_string(), 403),
    ];
    let anonymous = Api::new(&orch.url);
    let callers = [
        ("no token", anonymous.clone(), None),
        ("a wrong token", anonymous.with_token("herd_000000000000_0123456789abcdef"), None),
        ("a revoked token", anonymous.with_token(&revoked), None),
        ("another tenant's token", anonymous.with_token(&b_secret), Some("tenant")),
        ("an agent token", anonymous.with_token(&agent_secret), Some("agent")),
    ];
    for (method, path, body, other_tenant) in &routes {
        for (who, api, kind) in &callers {
            let (status, headers, bytes) = api.raw(method, path, &[("content-type", "application/json")], body.clone().into_bytes()).await?;
            let want = match kind {
                None => 401,
                Some("tenant") => *other_tenant,
                // The agent token speaks for its own host only, not `nohost`.
                _ if path.starts_with("/v1/agent/") => if path.ends_with("heartbeat") { 403 } else { 200 },
                _ => 403,
            };
            let text = String::from_utf8_lossy(&bytes);
            assert_eq!(status, want, "{method} {path} with {who}: {text}");
            if status >= 400 {
                let problem: Value = serde_json::from_slice(&bytes)?;
                assert_eq!(problem["status"], json!(status), "{method} {path} with {who}: {text}");
                assert!(problem["code"].is_string() && problem["detail"].is_string(), "{text}");
                assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
            }
            if status == 401 {
                assert_eq!(headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
            }
        }
    }
    // Another tenant's cluster answers exactly as a missing one does: names do not leak.
    let b_api = anonymous.with_token(&b_secret);
    let (_, hidden) = b_api.get(&cluster).await?;
    let (_, missing) = b_api.get(&format!("/v1/tenants/{b}/clusters/prod")).await?;
    assert_eq!((&hidden["code"], &hidden["title"]), (&missing["code"], &missing["title"]));

    // Nothing changed, except that the agent registered one host (its route allows it), where
    // a's pending instance then went (what tenants hold, `used`, changed with it).
    assert_eq!(specs(admin.get("/v1/clusters").await?.1), before_clusters);
    let asked = |mut v: Value| {
        for t in v["items"].as_array_mut().into_iter().flatten() {
            t.as_object_mut().map(|t| (t.remove("used"), t.remove("borrowed")));
        }
        v
    };
    assert_eq!(asked(admin.get("/v1/tenants").await?.1), asked(before_tenants));
    assert_eq!(admin.get("/v1/tokens").await?.1, before_tokens);
    let (_, trail) = admin.get("/v1/audit?limit=1000").await?;
    let new: Vec<Value> = items(&trail).into_iter().skip(before_audit).collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["action"], "host.register");
    Ok(())
}

#[tokio::test]
async fn quotas_refuse_with_the_numbers_and_store_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("q");
    admin.post("/v1/tenants", json!({"name": t, "quota": {"cpu": "2", "memory": "4Gi", "disk": "1Ti"}})).await?;
    let audit_before = audit_len(&admin).await?;

    // 3 x 1 CPU: over the limit of 2, nothing stored.
    let path = format!("/v1/tenants/{t}/clusters/big");
    let (status, body) = admin.put_yaml(&path, &spec(&t, "big", 3, "1")).await?;
    assert_eq!((status, &body["code"]), (422, &json!("quota_exceeded")), "{body}");
    let fields: Vec<&str> = body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["cpu"], "{body}");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("ask for 3 ") && detail.contains("other clusters ask for 0") && detail.contains("limit of 2"), "{detail}");
    assert_eq!(admin.get(&path).await?.0, 404, "a refused cluster is not stored");
    assert_eq!(audit_len(&admin).await?, audit_before);

    // Within the quota: stored; scaling past it: refused, the cluster unchanged.
    let small = format!("/v1/tenants/{t}/clusters/small");
    assert_eq!(admin.put_yaml(&small, &spec(&t, "small", 2, "500m")).await?.0, 201);
    let (_, stored) = admin.get(&small).await?;
    let (status, body) = admin.patch(&format!("{small}/pools/datanode"), json!({"replicas": 5})).await?;
    assert_eq!((status, &body["code"]), (422, &json!("quota_exceeded")), "{body}");
    assert_eq!(body["type"], "urn:herd:problem:refused-by-state", "a valid request refused by the quota says so: {body}");
    assert_eq!(admin.get(&small).await?.1, stored, "a refused scale changes nothing");

    // Lowering the quota below usage is allowed; then growing is refused, shrinking is not.
    admin.put_json(&format!("/v1/tenants/{t}/quota"), json!({"quota": {"cpu": "500m"}})).await?;
    assert_eq!(admin.patch(&format!("{small}/pools/datanode"), json!({"replicas": 3})).await?.0, 422);
    assert_eq!(admin.patch(&format!("{small}/pools/datanode"), json!({"replicas": 1})).await?.0, 200);

    // Two clusters applied at once that fit alone but not together: exactly one gets in.
    admin.put_json(&format!("/v1/tenants/{t}/quota"), json!({"quota": {"cpu": "2"}})).await?;
    for round in 0..5 {
        let (p1, p2) = (format!("/v1/tenants/{t}/clusters/r{round}a"), format!("/v1/tenants/{t}/clusters/r{round}b"));
        let (s1, s2) = (spec(&t, &format!("r{round}a"), 1, "1"), spec(&t, &format!("r{round}b"), 1, "1"));
        let (x, y) = tokio::join!(admin.put_yaml(&p1, &s1), admin.put_yaml(&p2, &s2));
        let mut got = [x?.0, y?.0];
        got.sort();
        assert_eq!(got, [201, 422], "round {round}: both slipped under the quota, or neither got in");
        let (_, tenant) = admin.get(&format!("/v1/tenants/{t}")).await?;
        assert_eq!(tenant["usage"]["cpu"], json!("1500m"), "{tenant}");
        let winner = if admin.get(&p1).await?.0 == 200 { p1 } else { p2 };
        assert_eq!(admin.delete(&winner).await?.0, 204);
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_scales_with_one_generation_have_one_winner() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("race");
    admin.post("/v1/tenants", json!({"name": t})).await?;
    let path = format!("/v1/tenants/{t}/clusters/prod");
    assert_eq!(admin.put_yaml(&path, &spec(&t, "prod", 1, "500m")).await?.0, 201);
    let scale = format!("{path}/pools/datanode");
    for round in 0..10u32 {
        let (_, cluster, etag) = admin.json_with("GET", &path, &[], &Value::Null).await?;
        let etag = etag.unwrap_or_default();
        assert_eq!(etag, format!("\"{}\"", cluster["generation"]));
        let (h1, h2) = ([("if-match", etag.as_str())], [("if-match", etag.as_str())]);
        let (b1, b2) = (json!({"replicas": 2 + round % 3}), json!({"replicas": 5 + round % 3}));
        let (one, two) = tokio::join!(admin.json_with("PATCH", &scale, &h1, &b1), admin.json_with("PATCH", &scale, &h2, &b2));
        let (one, two) = (one?, two?);
        let mut got = [one.0, two.0];
        got.sort();
        assert_eq!(got, [200, 412], "round {round}: {} / {}", one.1, two.1);
        let loser = if one.0 == 412 { one.1 } else { two.1 };
        assert_eq!(loser["code"], "stale_generation", "{loser}");
        let winner = if one.0 == 200 { (2 + round % 3) as usize } else { (5 + round % 3) as usize };
        let (_, now) = admin.get(&path).await?;
        assert_eq!(now["instances"].as_array().map(Vec::len), Some(winner), "the winner's change is what is stored");
    }
    // A stale PUT and DELETE are refused too; without If-Match they apply as before.
    let (status, body, _) = admin.json_with("DELETE", &path, &[("if-match", "\"1\"")], &Value::Null).await?;
    assert_eq!((status, &body["code"]), (412, &json!("stale_generation")));
    let stale = admin.raw("PUT", &path, &[("if-match", "\"1\""), ("content-type", "application/yaml")], spec(&t, "prod", 4, "500m").into_bytes()).await?;
    assert_eq!(stale.0, 412);
    assert_eq!(admin.get(&path).await?.0, 200, "a stale delete deletes nothing");
    let bad = admin.raw("PUT", &path, &[("if-match", "yesterday")], spec(&t, "prod", 4, "500m").into_bytes()).await?;
    assert_eq!(bad.0, 422, "{}", String::from_utf8_lossy(&bad.2));
    let (status, _) = admin.put_yaml(&path, &spec(&t, "prod", 4, "500m")).await?;
    assert_eq!(status, 200);
    let (status, same) = admin.put_yaml(&path, &spec(&t, "prod", 4, "500m")).await?;
    let (_, again) = admin.get(&path).await?;
    assert_eq!((status, &same["generation"]), (200, &again["generation"]), "PUT is idempotent");
    Ok(())
}

#[tokio::test]
async fn idempotent_posts_tokens_and_clusters_survive_a_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let port = free_port();
    let mut orch = Orchestrator::start(tmp.path(), port)?;
    let admin = orch.api();
    let t = unique("idem");

    let body = json!({"name": t, "quota": {"cpu": "8"}});
    let first = admin.json_with("POST", "/v1/tenants", &[("idempotency-key", "k-tenant-1")], &body).await?;
    assert_eq!(first.0, 201, "{}", first.1);
    let (status, headers, bytes) = admin
        .raw("POST", "/v1/tenants", &[("idempotency-key", "k-tenant-1"), ("content-type", "application/json")], serde_json::to_vec(&body)?)
        .await?;
    assert_eq!((status, serde_json::from_slice::<Value>(&bytes)?), (201, first.1.clone()), "a retry gets the first answer");
    assert_eq!(headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let reused = admin.json_with("POST", "/v1/tenants", &[("idempotency-key", "k-tenant-1")], &json!({"name": unique("y")})).await?;
    assert_eq!((reused.0, &reused.1["code"]), (422, &json!("idempotency_key_reused")), "{}", reused.1);

    let token_req = json!({"scope": "tenant", "tenant": t, "description": "ci"});
    let token = admin.json_with("POST", "/v1/tokens", &[("idempotency-key", "k-token-1")], &token_req).await?;
    assert_eq!(token.0, 201);
    let secret = token.1["secret"].as_str().unwrap_or_default().to_string();
    let replay = admin.json_with("POST", "/v1/tokens", &[("idempotency-key", "k-token-1")], &token_req).await?;
    assert_eq!(replay.1, token.1, "the replay is the same token, not a second one");
    let (_, tokens) = admin.get("/v1/tokens").await?;
    assert_eq!(items(&tokens).iter().filter(|k| k["tenant"] == json!(t)).count(), 1);
    // The same key from another caller is another request.
    let other_admin = Api::new(&orch.url).with_token(&orch.token("admin", None).await?);
    let theirs = other_admin.json_with("POST", "/v1/tokens", &[("idempotency-key", "k-token-1")], &token_req).await?;
    assert_eq!(theirs.0, 201);
    assert_ne!(theirs.1["token"]["id"], token.1["token"]["id"]);

    let tenant_api = Api::new(&orch.url).with_token(&secret);
    let path = format!("/v1/tenants/{t}/clusters/prod");
    assert_eq!(tenant_api.put_yaml(&path, &spec(&t, "prod", 2, "500m")).await?.0, 201);
    let (_, cluster) = tenant_api.get(&path).await?;

    // Secrets are stored hashed: no secret appears in the store's files or in the log.
    let mut stored = Vec::new();
    for f in std::fs::read_dir(tmp.path())? {
        let f = f?.path();
        if f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("herd.db")) {
            stored.extend(std::fs::read(&f)?);
        }
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    for s in [&secret, &orch.admin] {
        assert!(!stored.contains(s.as_str()), "a secret is stored in the clear");
        assert!(!orch.proc.log_text().contains(s.as_str()), "a secret is in the log");
    }
    let mode = std::fs::metadata(tmp.path().join("admin.token"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(orch.proc.log_text().contains("admin.token"), "the log names the admin token's file");

    // SIGKILL and restart on the same store: tenants, tokens, clusters and stored answers stay.
    let admin_secret = orch.admin.clone();
    orch.proc.kill();
    let orch = Orchestrator::start(tmp.path(), port)?;
    assert_eq!(orch.admin, admin_secret, "no second admin token on restart");
    let admin = orch.api();
    let tenant_api = Api::new(&orch.url).with_token(&secret);
    assert_eq!(tenant_api.get(&path).await?.1, cluster, "the cluster and the tenant's token survive");
    let (_, tenant) = admin.get(&format!("/v1/tenants/{t}")).await?;
    assert_eq!(tenant["quota"]["cpu"], "8");
    let replay = admin.json_with("POST", "/v1/tokens", &[("idempotency-key", "k-token-1")], &token_req).await?;
    assert_eq!(replay.1, token.1, "stored answers survive a restart");
    let replay = admin.json_with("POST", "/v1/tenants", &[("idempotency-key", "k-tenant-1")], &body).await?;
    assert_eq!((replay.0, replay.1["name"].clone()), (201, json!(t)));
    Ok(())
}

#[tokio::test]
async fn lists_paginate_in_order_without_gaps_or_repeats() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("page");
    let mut want = Vec::new();
    for i in 0..7 {
        let name = format!("{t}-{i}");
        assert_eq!(admin.post("/v1/tenants", json!({"name": name})).await?.0, 201);
        want.push(name);
    }
    assert_eq!(admin.put_yaml(&format!("/v1/tenants/{t}-0/clusters/a"), &spec(&format!("{t}-0"), "a", 1, "500m")).await?.0, 201);
    assert_eq!(admin.put_yaml(&format!("/v1/tenants/{t}-0/clusters/b"), &spec(&format!("{t}-0"), "b", 1, "500m")).await?.0, 201);
    assert_eq!(admin.put_yaml(&format!("/v1/tenants/{t}-1/clusters/a"), &spec(&format!("{t}-1"), "a", 1, "500m")).await?.0, 201);

    for (path, key, total) in [("/v1/tenants", "name", 7), ("/v1/clusters", "name", 3), ("/v1/audit", "id", 11)] {
        let mut got = Vec::new();
        let mut url = format!("{path}?limit=2");
        let mut pages = 0;
        loop {
            let (status, page) = admin.get(&url).await?;
            assert_eq!(status, 200, "{page}");
            assert!(items(&page).len() <= 2);
            got.extend(items(&page).iter().map(|i| format!("{}/{}", i["tenant"].as_str().unwrap_or(""), i[key])));
            pages += 1;
            match page["next"].as_str() {
                Some(next) => url = format!("{path}?limit=2&after={next}"),
                None => break,
            }
        }
        let unique_items: BTreeSet<&String> = got.iter().collect();
        assert_eq!((got.len(), unique_items.len()), (total, total), "{path}: {got:?}");
        assert_eq!(pages, total.div_ceil(2), "{path}");
    }
    let (_, all) = admin.get("/v1/tenants?limit=1000").await?;
    assert_eq!(names(&all), want);
    for bad in ["limit=0", "limit=1001", "limit=x", "after=", "bogus=1"] {
        let (status, body) = admin.get(&format!("/v1/tenants?{bad}")).await?;
        assert!(status == 422 || status == 400, "?{bad}: {status} {body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn openapi_document_is_served_and_matches_the_committed_one() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let (status, served) = Api::new(&orch.url).get("/v1/openapi.json").await?;
    assert_eq!(status, 200, "the document needs no token");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(herd_tests::root().join("manifests/openapi.json"))?)?;
    assert!(
        served == committed,
        "manifests/openapi.json differs from what the orchestrator serves; regenerate it with\n  cargo run -p herd-orchestrator -- openapi > manifests/openapi.json"
    );
    assert_eq!(served["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    Ok(())
}

#[tokio::test]
async fn cli_uses_tokens_and_manages_tenants_tokens_and_audit() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let herd = |args: &[&str], token_file: Option<&std::path::Path>| {
        let mut c = Command::new(bins().join("herd"));
        c.args(["--server", &orch.url]).args(args).env_remove("HERD_TOKEN").env_remove("HERD_TOKEN_FILE");
        if let Some(f) = token_file {
            c.env("HERD_TOKEN_FILE", f);
        }
        c.output()
    };
    let admin_file = tmp.path().join("admin.token");

    let out = herd(&["tenants", "list"], None)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("HERD_TOKEN") && stderr.contains("admin.token"), "a 401 says how to get a token: {stderr}");

    let t = unique("cli");
    let out = herd(&["tenants", "create", &t, "--cpu", "4", "--memory", "8Gi"], Some(&admin_file))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = herd(&["tenants", "quota", &t, "--disk", "1Ti", "--cpu", "unlimited"], Some(&admin_file))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("0/-") && stdout.contains("0/8Gi") && stdout.contains("0/1Ti"), "{stdout}");
    let out = herd(&["tenants", "quota", &t, "--cpu", "4", "--guaranteed", "8,1Gi"], Some(&admin_file))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && stderr.contains("quota.guaranteed.cpu: 8 is more than the maximum 4"), "{stderr}");
    // A guarantee must fit the fleet: refused with no host, accepted once one registers.
    let out = herd(&["tenants", "quota", &t, "--guaranteed", "2,4Gi"], Some(&admin_file))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && stderr.contains("quota.guaranteed.cpu") && stderr.contains("0 ready hosts"), "{stderr}");
    let host = unique("h");
    let agent = Api::new(&orch.url).with_token(&orch.agent_token(&host).await?);
    assert_eq!(agent.post("/v1/agent/register", json!({"host": {"id": host, "cpu": "8", "memory": "16Gi"}})).await?.0, 200);
    let out = herd(&["tenants", "quota", &t, "--guaranteed", "2,4Gi", "-o", "json"], Some(&admin_file))?;
    let tenant: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(tenant["quota"], json!({"memory": "8Gi", "disk": "1Ti", "guaranteed": {"cpu": "2", "memory": "4Gi", "disk": "0"}}));

    let out = herd(&["tokens", "create", "--tenant", &t, "--description", "cli test"], Some(&admin_file))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("herd_") && !secret.contains('\n'), "stdout holds the secret alone: {secret}");
    let tenant_file = tmp.path().join("tenant.token");
    std::fs::write(&tenant_file, &secret)?;

    // The tenant token reads its own tenant, is refused the admin's lists.
    let out = herd(&["tenants", "quota", &t, "-o", "json"], Some(&tenant_file))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = herd(&["tokens", "list"], Some(&tenant_file))?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));

    let out = herd(&["tokens", "list", "-o", "json"], Some(&admin_file))?;
    let tokens: Value = serde_json::from_slice(&out.stdout)?;
    let id = tokens.as_array().into_iter().flatten().find(|k| k["tenant"] == json!(t)).and_then(|k| k["id"].as_str()).unwrap_or("").to_string();
    let out = herd(&["tokens", "revoke", &id], Some(&admin_file))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = herd(&["tenants", "quota", &t], Some(&tenant_file))?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = herd(&["audit", "-o", "yaml"], Some(&admin_file))?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("action: tenant.quota") && text.contains("action: token.revoke"), "{text}");
    let out = herd(&["audit", "--limit", "1", "-o", "json"], Some(&admin_file))?;
    let last: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(last.as_array().map(Vec::len), Some(1));
    assert_eq!(last[0]["action"], "token.revoke");

    let out = herd(&["tenants", "delete", &t], Some(&admin_file))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Agent identity: an agent token is bound to one host (an unbound one cannot be made, and one
/// from an older herd is refused with how to re-issue it); host A's token cannot register as
/// B, heartbeat for B, or report an address of B's subnet (refused and audited), and its log
/// endpoint must be on its own address.
#[tokio::test]
async fn agent_tokens_speak_for_one_host_and_its_own_addresses() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let (status, body) = admin.post("/v1/tokens", json!({"scope": "agent"})).await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "host", "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("--host"), "{body}");

    let (a, b) = (unique("ha"), unique("hb"));
    let api_a = Api::new(&orch.url).with_token(&orch.agent_token(&a).await?);
    let api_b = Api::new(&orch.url).with_token(&orch.agent_token(&b).await?);
    let host = |id: &str, address: &str| json!({"host": {"id": id, "cpu": "8", "memory": "16Gi", "address": address}});
    let (status, reply_a) = api_a.post("/v1/agent/register", host(&a, "192.0.2.10")).await?;
    assert_eq!(status, 200, "{reply_a}");
    let (status, reply_b) = api_b.post("/v1/agent/register", host(&b, "192.0.2.11")).await?;
    assert_eq!(status, 200, "{reply_b}");
    let subnet = |reply: &Value| reply["network"]["subnet"].as_str().unwrap_or_default().to_string();
    let (subnet_a, subnet_b) = (subnet(&reply_a), subnet(&reply_b));
    assert!(!subnet_a.is_empty() && subnet_a != subnet_b, "{reply_a} {reply_b}");
    let in_subnet = |s: &str| s.parse::<ipnet::Ipv4Net>().ok().and_then(|n| n.hosts().nth(6)).map(|ip| ip.to_string()).unwrap_or_default();

    // A cannot register as B, nor heartbeat for it.
    let (status, body) = api_a.post("/v1/agent/register", host(&b, "192.0.2.10")).await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api_a.post("/v1/agent/heartbeat", json!({"host_id": b, "observed": []})).await?;
    assert_eq!(status, 403, "{body}");
    // A may report addresses of its own subnet only.
    let observed = |ip: &str| {
        json!({"host_id": a, "observed": [{"instance": {"tenant": "t", "cluster": "c", "name": "datanode-0"}, "state": "running", "ip": ip}]})
    };
    let (status, body) = api_a.post("/v1/agent/heartbeat", observed(&in_subnet(&subnet_a))).await?;
    assert_eq!(status, 200, "{body}");
    let audit_before = audit_len(&admin).await?;
    let (status, body) = api_a.post("/v1/agent/heartbeat", observed(&in_subnet(&subnet_b))).await?;
    assert_eq!(status, 403, "an address of B's subnet: {body}");
    assert!(body["detail"].as_str().unwrap_or("").contains(&subnet_a), "{body}");
    let (status, body) = api_a.post("/v1/agent/heartbeat", observed("203.0.113.9")).await?;
    assert_eq!(status, 403, "an address outside the cluster: {body}");
    let (_, audit) = admin.get("/v1/audit?limit=1000").await?;
    let refused: Vec<Value> = items(&audit).into_iter().skip(audit_before).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|e| e["action"] == "agent.heartbeat.refused" && e["resource"] == format!("hosts/{a}")), "{refused:?}");

    // The log endpoint must be on the host's registered address.
    let mut with_logs = host(&a, "192.0.2.10");
    with_logs["logs"] = json!({"url": "http://192.0.2.11:7481", "secret": "s"});
    let (status, body) = api_a.post("/v1/agent/register", with_logs.clone()).await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "logs.url", "{body}");
    with_logs["logs"]["url"] = json!("http://192.0.2.10:7481");
    let (status, reply) = api_a.post("/v1/agent/register", with_logs).await?;
    assert_eq!(status, 200, "{reply}");
    // The orchestrator answers with the credential it will present, and stores only its hash.
    let credential = reply["log_secret"].as_str().unwrap_or_default().to_string();
    assert_eq!(credential.len(), 64, "{reply}");
    let sha = |s: &str| -> String { sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect() };
    let db = rusqlite::Connection::open(orch.data_dir.join("herd.db"))?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    let stored: String = db.query_row("SELECT secret FROM host_logs WHERE host_id = ?1", [&a], |r| r.get(0))?;
    assert_eq!(stored, sha(&credential), "the store holds the credential's hash, not the agent's secret");

    // An unbound agent token from an older herd, still in the store: refused, with the fix.
    let secret = "herd_00000000aa55_unboundunboundunboundunboundunbound";
    db.execute(
        "INSERT INTO tokens (id, hash, scope, tenant, description, created_s, revoked, host) VALUES ('00000000aa55', ?1, 'agent', NULL, NULL, 0, 0, NULL)",
        [sha(secret)],
    )?;
    let old = Api::new(&orch.url).with_token(secret);
    let (status, body) = old.post("/v1/agent/heartbeat", json!({"host_id": a, "observed": []})).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("herd tokens create --agent --host"), "{body}");
    Ok(())
}

/// Published host ports stay inside the orchestrator's range and off herd's own ports, and
/// capabilities beyond herd's reduced set are the admin's to grant.
#[tokio::test]
async fn specs_cannot_take_herds_ports_or_grant_themselves_capabilities() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let admin = orch.api();
    let t = unique("ports");
    assert_eq!(admin.post("/v1/tenants", json!({"name": t})).await?.0, 201);
    let tenant = Api::new(&orch.url).with_token(&orch.token("tenant", Some(&t)).await?);
    let path = format!("/v1/tenants/{t}/clusters/prod");
    for (publish, field) in [
        ("      - port: 7481\n", "pools.datanode.publish[0].port"),
        ("      - port: 9864\n        host_port: 22\n", "pools.datanode.publish[0].host_port"),
        ("      - port: 9864\n        host_port: 7480\n", "pools.datanode.publish[0].host_port"),
        ("      - port: 9864\n", "pools.datanode.publish[0].port"),
    ] {
        let text = format!("{}    publish:\n{publish}", spec(&t, "prod", 1, "500m"));
        for who in [&tenant, &admin] {
            let (status, body) = who.put_yaml(&path, &text).await?;
            assert_eq!(status, 422, "{publish}: {body}");
            assert_eq!(body["errors"][0]["field"], field, "{body}");
            assert!(body["detail"].as_str().unwrap_or("").contains("30000"), "the range is named: {body}");
        }
    }
    // An agent serving its log endpoint on another port makes that port herd's too.
    let h = unique("h");
    let agent = Api::new(&orch.url).with_token(&orch.agent_token(&h).await?);
    let register = json!({"host": {"id": h, "cpu": "1", "memory": "1Gi", "address": "192.0.2.20"},
        "logs": {"url": "http://192.0.2.20:31999", "secret": "s"}});
    assert_eq!(agent.post("/v1/agent/register", register).await?.0, 200);
    let text = format!("{}    publish:\n      - port: 9864\n        host_port: 31999\n", spec(&t, "prod", 1, "500m"));
    let (status, body) = tenant.put_yaml(&path, &text).await?;
    assert_eq!(status, 422, "an agent's port: {body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("herd's own"), "{body}");
    let ok = format!("{}    publish:\n      - port: 9864\n        host_port: 30864\n", spec(&t, "prod", 1, "500m"));
    assert_eq!(tenant.put_yaml(&path, &ok).await?.0, 201);

    let with_caps = format!("{ok}    capabilities:\n      add: [NET_RAW]\n");
    let (status, body) = tenant.put_yaml(&path, &with_caps).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("pools.datanode.capabilities.add"), "{body}");
    assert_eq!(admin.put_yaml(&path, &with_caps).await?.0, 200, "an admin grants it");
    assert_eq!(tenant.put_yaml(&path, &with_caps).await?.0, 200, "the tenant keeps what was granted");
    let more = format!("{ok}    capabilities:\n      add: [NET_RAW, SYS_ADMIN]\n");
    assert_eq!(tenant.put_yaml(&path, &more).await?.0, 403, "but adds nothing");
    assert_eq!(tenant.put_yaml(&path, &ok).await?.0, 200, "and may drop it");
    Ok(())
}
