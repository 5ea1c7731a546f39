//! The orchestrator's HTTP API and the CLI against a real orchestrator process and its
//! real store: bad input is refused with the field named and changes nothing; a host that
//! registers twice is updated, not duplicated; a restart keeps what was stored.

use std::process::Command;

use anyhow::Result;
use herd_tests::{Orchestrator, bins, free_port, unique};
use serde_json::{Value, json};

const GOOD: &str = "tenant: TENANT
name: prod
images:
  datanode: herd/datanode:testbed
pools:
  datanode:
    replicas: 2
    cpu: 500m
    memory: 512Mi
";

fn good(tenant: &str) -> String {
    GOOD.replace("TENANT", tenant)
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str().map(String::from)).collect()
}

#[tokio::test]
async fn bad_specs_are_refused_whole_and_change_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let api = orch.api();
    let tenant = unique("api");
    let path = format!("/v1/tenants/{tenant}/clusters/prod");

    // Unknown tenant: refused, naming the field.
    let (status, body) = api.put_yaml(&path, &good(&tenant)).await?;
    assert_eq!((status, fields(&body)), (422, vec!["tenant".to_string()]), "{body}");
    assert_eq!(api.get(&path).await?.0, 404, "nothing stored for an unknown tenant");

    api.post("/v1/tenants", json!({"name": tenant})).await?;
    let (status, body) = api.put_yaml(&path, &good(&tenant)).await?;
    assert_eq!(status, 201, "{body}");
    let (_, stored) = api.get(&path).await?;

    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("bad YAML", format!("tenant: {tenant}\nname: 'prod\n"), vec!["name"]),
        ("unknown field", good(&tenant).replace("replicas: 2", "replicas: 2\n    disks: 4"), vec!["pools.datanode.disks"]),
        ("negative replicas", good(&tenant).replace("replicas: 2", "replicas: -1"), vec!["pools.datanode.replicas"]),
        ("memory below the role's minimum", good(&tenant).replace("512Mi", "100Mi"), vec!["pools.datanode.memory"]),
        ("unknown pool", good(&tenant).replace("  datanode:\n    replicas", "  datanodes:\n    replicas"), vec!["pools"]),
        (
            "several bad fields at once",
            good(&tenant).replace("512Mi", "1Mi").replace("500m", "0").replace("images:\n  datanode: herd/datanode:testbed\n", ""),
            vec!["pools.datanode.memory", "pools.datanode.cpu", "images.datanode"],
        ),
        ("name not a DNS label", good(&tenant).replace("name: prod", "name: Prod"), vec!["name"]),
    ];
    for (what, spec, want) in cases {
        let (status, body) = api.put_yaml(&path, &spec).await?;
        assert_eq!(status, 422, "{what}: {body}");
        let got = fields(&body);
        let got: Vec<&str> = got.iter().map(String::as_str).collect();
        // A parse error names where it stopped (the unknown key, or the document for bad YAML).
        let got = if what == "unknown pool" { got.iter().map(|f| f.split('.').next().unwrap_or("")).collect() } else { got };
        assert_eq!(got, want, "{what}: {body}");
        if what != "several bad fields at once" && what != "name not a DNS label" {
            assert!(body["errors"][0]["line"].as_u64().is_some(), "{what}: YAML errors carry a line: {body}");
        }
        let (_, now) = api.get(&path).await?;
        assert_eq!(now, stored, "{what} changed the stored cluster");
        // About shape (a missing image among them is too): the default problem type.
        assert_eq!(body["type"], "about:blank", "{what}: {body}");
    }
    let (status, body) = api.put_yaml(&path, &good(&tenant).replace("images:\n  datanode: herd/datanode:testbed\n", "")).await?;
    assert_eq!((status, &body["type"]), (422, &json!("urn:herd:problem:inconsistent")), "a pool without an image: {body}");
    assert_eq!(fields(&body), ["images.datanode"], "{body}");

    // Scaling with bad input changes nothing either.
    let (status, _) = api.patch(&format!("{path}/pools/datanode"), json!({"replicas": -3})).await?;
    assert_eq!(status, 422);
    let (status, _) = api.patch(&format!("{path}/pools/namenode"), json!({"replicas": 1})).await?;
    assert_eq!(status, 422);
    let (status, _) = api.patch(&format!("{path}/pools/bogus"), json!({"replicas": 1})).await?;
    assert_eq!(status, 422);
    assert_eq!(api.get(&path).await?.1, stored);
    Ok(())
}

#[tokio::test]
async fn double_registration_updates_and_restart_keeps_everything() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let port = free_port();
    let mut orch = Orchestrator::start(tmp.path(), port)?;
    let api = orch.api();
    let host = unique("h");
    let register = |cpu: &str| json!({"host": {"id": host, "cpu": cpu, "memory": "4Gi", "rack": "r1", "data_disks": ["/d0"]}});
    assert_eq!(api.post("/v1/agent/register", register("2")).await?.0, 200);
    assert_eq!(api.post("/v1/agent/register", register("8")).await?.0, 200);
    let (_, hosts) = api.get("/v1/hosts").await?;
    let hosts = hosts["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(hosts.len(), 1, "registered twice, listed once: {hosts:?}");
    assert_eq!(hosts[0]["info"]["cpu"], "8", "capacity updated");
    let bad = json!({"host": {"id": "Not A Label", "cpu": "1", "memory": "1Gi"}});
    assert_eq!(api.post("/v1/agent/register", bad).await?.0, 422);

    let tenant = unique("keep");
    api.post("/v1/tenants", json!({"name": tenant})).await?;
    let path = format!("/v1/tenants/{tenant}/clusters/prod");
    // Two DataNodes on one host: allowed by `maxPerHost` (one per host by default).
    assert_eq!(api.put_yaml(&path, &good(&tenant).replace("memory: 512Mi", "memory: 512Mi\n    maxPerHost: 2")).await?.0, 201);
    let (_, before) = api.get(&path).await?;
    let placed: Vec<&Value> = before["instances"].as_array().into_iter().flatten().map(|i| &i["host"]).collect();
    assert_eq!(placed, [&json!(host), &json!(host)], "placed on the one host");

    orch.proc.kill();
    let orch = Orchestrator::start(tmp.path(), port)?;
    let api = orch.api();
    assert_eq!(api.get(&path).await?.1, before, "cluster survives a SIGKILL of the orchestrator");
    let (_, tenants) = api.get("/v1/tenants").await?;
    assert!(tenants["items"].as_array().into_iter().flatten().any(|t| t["name"] == json!(tenant)));
    let (_, hosts) = api.get("/v1/hosts").await?;
    assert_eq!(hosts["items"][0]["info"]["cpu"], "8");
    Ok(())
}

#[tokio::test]
async fn cli_reports_bad_specs_with_field_and_line_before_sending() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(tmp.path(), 0)?;
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, good("acme").replace("replicas: 2", "replicas: -2"))?;
    let out = Command::new(bins().join("herd")).args(["--server", &orch.url, "apply", "-f"]).arg(&file).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pools.datanode.replicas (line 7): must be 0 or more, got -2"), "{stderr}");

    // Reads in every format.
    orch.api().post("/v1/tenants", json!({"name": "acme"})).await?;
    for (format, check) in [("json", "\"name\": \"acme\""), ("yaml", "- name: acme"), ("table", "NAME  CREATED")] {
        let out = Command::new(bins().join("herd"))
            .args(["--server", &orch.url, "tenants", "list", "-o", format])
            .env("HERD_TOKEN", &orch.admin)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains(check), "-o {format}: {stdout}");
    }
    Ok(())
}
