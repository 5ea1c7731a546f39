//! The orchestrator on the etcd store (`--store etcd`), end to end through its HTTP API: a
//! host registers, a tenant applies, scales and deletes a cluster; a SIGKILLed orchestrator
//! started again on the same etcd finds everything as it was; `migrate` moves a SQLite
//! store's control plane to etcd without changing what the API shows. (The store's own contract,
//! against SQLite and etcd alike, is in `orchestrator/src/store/contract.rs`.)

use anyhow::Result;
use herd_tests::etcd::Etcd;
use herd_tests::{Orchestrator, bins, free_port, unique};
use serde_json::{Value, json};

const SPEC: &str = "tenant: TENANT
name: prod
images:
  datanode: herd/datanode:testbed
pools:
  datanode:
    replicas: 2
    cpu: 500m
    memory: 512Mi
    maxPerHost: 3
";

/// `body` without the times that move by themselves (a host's last heartbeat).
fn steady(mut body: Value) -> Value {
    for item in body["items"].as_array_mut().into_iter().flatten() {
        if let Some(o) = item.as_object_mut() {
            o.remove("last_heartbeat_ms_ago");
        }
    }
    body
}

fn hosts_of(status: &Value) -> Vec<String> {
    status["instances"].as_array().into_iter().flatten().filter_map(|i| i["host"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn the_orchestrator_runs_on_etcd_and_a_restart_keeps_everything() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let etcd = Etcd::start(&tmp.path().join("etcd"))?;
    let data_dir = tmp.path().join("orchestrator");
    let port = free_port();
    let flags = ["--store", "etcd", "--etcd-endpoints", etcd.url.as_str(), "--rate-limit", "100000"];
    let mut orch = Orchestrator::start_with(bins(), &data_dir, port, &flags)?;
    let api = orch.api();

    let host = unique("h");
    let register = json!({"host": {"id": host, "cpu": "4", "memory": "8Gi", "rack": "r1"}});
    assert_eq!(api.post("/v1/agent/register", register.clone()).await?.0, 200);
    let tenant = unique("etcd");
    assert_eq!(api.post("/v1/tenants", json!({"name": tenant})).await?.0, 201);
    let path = format!("/v1/tenants/{tenant}/clusters/prod");
    let (status, body) = api.put_yaml(&path, &SPEC.replace("TENANT", &tenant)).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(hosts_of(&body), [host.clone(), host.clone()], "placed on the one host: {body}");
    assert_eq!(body["generation"], 1);

    // Scale out; then a stale If-Match is refused and changes nothing.
    let (status, body) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": 3})).await?;
    assert_eq!((status, hosts_of(&body).len(), &body["generation"]), (200, 3, &json!(2)), "{body}");
    let (status, _, _) = api.json_with("PATCH", &format!("{path}/pools/datanode"), &[("If-Match", "\"1\"")], &json!({"replicas": 1})).await?;
    assert_eq!(status, 412, "a stale generation (If-Match failed)");
    // Over the host's capacity (4 CPU, 500m each, at most 3 per host): waits, pending.
    let (status, body) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": 4})).await?;
    assert_eq!(status, 200, "{body}");
    let pending = body["instances"].as_array().into_iter().flatten().filter(|i| i["host"].is_null()).count();
    assert_eq!(pending, 1, "{body}");
    let (_, before) = api.get(&path).await?;
    let (_, audit) = api.get("/v1/audit").await?;
    let actions: Vec<&str> = audit["items"].as_array().into_iter().flatten().filter_map(|e| e["action"].as_str()).collect();
    for a in ["host.register", "tenant.create", "cluster.create", "cluster.scale"] {
        assert!(actions.contains(&a), "audit has {a}: {actions:?}");
    }

    // SIGKILL, start again on the same etcd: the same cluster, host and audit trail.
    orch.proc.kill();
    let orch = Orchestrator::start_with(bins(), &data_dir, port, &flags)?;
    let api = orch.api();
    assert_eq!(api.get(&path).await?.1, before, "the cluster survives a SIGKILL of the orchestrator");
    assert_eq!(api.get("/v1/audit").await?.1["items"], audit["items"]);
    let (_, hosts) = api.get("/v1/hosts").await?;
    assert_eq!(hosts["items"][0]["info"]["id"], json!(host));
    assert!(orch.proc.log_text().contains("store=\"etcd\"") || orch.proc.log_text().contains("store=etcd"), "{}", orch.proc.log_text());

    assert_eq!(api.delete(&path).await?.0, 204);
    assert_eq!(api.get(&path).await?.0, 404);
    assert_eq!(api.delete(&format!("/v1/tenants/{tenant}")).await?.0, 204);
    Ok(())
}

#[test]
fn a_wrong_etcd_endpoint_stops_the_orchestrator_with_a_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = std::process::Command::new(bins().join("herd-orchestrator"))
        .args(["--data-dir", &tmp.path().display().to_string(), "--listen", "127.0.0.1:0"])
        .args(["--store", "etcd", "--etcd-endpoints", &url])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot open the etcd store at") && err.contains("no etcd endpoint answered"), "{err}");
    assert!(!tmp.path().join("admin.token").exists(), "nothing made");
    Ok(())
}

#[tokio::test]
async fn migrate_moves_a_sqlite_control_plane_to_etcd_unchanged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("orchestrator");
    let port = free_port();
    let mut orch = Orchestrator::start(&data_dir, port)?;
    let api = orch.api();
    let host = unique("h");
    assert_eq!(api.post("/v1/agent/register", json!({"host": {"id": host, "cpu": "4", "memory": "8Gi"}})).await?.0, 200);
    let tenant = unique("mig");
    assert_eq!(api.post("/v1/tenants", json!({"name": tenant})).await?.0, 201);
    let path = format!("/v1/tenants/{tenant}/clusters/prod");
    assert_eq!(api.put_yaml(&path, &SPEC.replace("TENANT", &tenant)).await?.0, 201);
    assert_eq!(api.patch(&format!("{path}/pools/datanode"), json!({"replicas": 3})).await?.0, 200);
    let tenant_token = orch.token("tenant", Some(&tenant)).await?;
    let reads = ["/v1/hosts", "/v1/tenants", "/v1/audit", "/v1/tokens"];
    let mut before = Vec::new();
    for r in reads.iter().copied().chain([path.as_str()]) {
        before.push(steady(api.get(r).await?.1));
    }
    orch.proc.kill();

    // While an orchestrator runs on the data directory, migrate refuses.
    let etcd = Etcd::start(&tmp.path().join("etcd"))?;
    let migrate = |data_dir: &std::path::Path| {
        std::process::Command::new(bins().join("herd-orchestrator"))
            .args(["--data-dir", &data_dir.display().to_string(), "migrate"])
            .args(["--from", &format!("sqlite:{}", data_dir.join("herd.db").display()), "--to", &format!("etcd:{}", etcd.url)])
            .output()
    };
    {
        let _running = Orchestrator::start(&data_dir, port)?;
        let out = migrate(&data_dir)?;
        assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let out = migrate(&data_dir)?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("every object verified equal") && said.contains("3 instances"), "{said}");

    let flags = ["--store", "etcd", "--etcd-endpoints", etcd.url.as_str(), "--rate-limit", "100000"];
    let orch = Orchestrator::start_with(bins(), &data_dir, port, &flags)?;
    let api = orch.api();
    for (r, was) in reads.iter().copied().chain([path.as_str()]).zip(&before) {
        let (status, now) = api.get(r).await?;
        assert_eq!((status, &steady(now)), (200, was), "{r} after the migration");
    }
    // The tokens came along: the tenant's works, and a change goes on from the same generation.
    let (status, body) = api.with_token(&tenant_token).patch(&format!("{path}/pools/datanode"), json!({"replicas": 2})).await?;
    assert_eq!((status, &body["generation"]), (200, &json!(3)), "{body}");
    // A second migration into the same prefix is refused.
    drop(orch);
    let out = migrate(&data_dir)?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already holds herd objects"));
    Ok(())
}
