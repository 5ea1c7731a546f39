//! The served OpenAPI document is the API, as an independent fuzzer sees it: Schemathesis
//! (pinned, from PyPI; `tests/contract/schemathesis.sh` installs it once into a venv under the
//! target directory and fails loudly if it cannot) generates requests from
//! `/v1/openapi.json` and runs them against a live orchestrator, once with an admin token and
//! once with a tenant token. Required: no server error, no status code the document does not
//! list for the operation, no content type it does not list, every response body matching its
//! schema; every request the schema calls valid, bodies included, not refused for its shape
//! (`valid_requests_are_accepted` in `tests/contract/hooks.py`: a 422 only with the problem
//! types of refusals by the state or by rules between fields, as the document says); and, for
//! reads, requests the schema calls invalid refused. The stateful phase follows the document's
//! links (a new tenant to its clusters, a cluster to its scale, logs and deletion).

use std::process::Command;

use anyhow::{Result, ensure};
use herd_tests::{Orchestrator, root};

fn schemathesis(url: &str, token: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("bash")
        .arg(root().join("tests/contract/schemathesis.sh"))
        .args([url, token])
        .args(["--seed", "1", "--max-examples", "20", "--workers", "1"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()?;
    ensure!(out.status.code() != Some(2) || !String::from_utf8_lossy(&out.stderr).contains("cannot"), "{}", String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_api_as_documented() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    // Something to read, so reads get past 404.
    let spec = "tenant: acme\nname: prod\nimages: {datanode: herd/datanode:testbed}\npools:\n  datanode: {replicas: 1, cpu: 100m, memory: 256Mi}\n";
    orch.api().create_tenant_and_cluster("acme", "prod", spec).await?;
    let tenant = orch.token("tenant", Some("acme")).await?;
    for (who, token) in [("admin", orch.admin.clone()), ("tenant", tenant)] {
        let url = orch.url.clone();
        let (ok, out) = tokio::task::spawn_blocking({
            let (url, token) = (url.clone(), token.clone());
            move || {
                schemathesis(
                    &url,
                    &token,
                    &[
                        "--phases",
                        "examples,coverage,fuzzing,stateful",
                        "-c",
                        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,valid_requests_are_accepted",
                    ],
                )
            }
        })
        .await??;
        eprintln!("{who}: {}", out.lines().rev().take(3).collect::<Vec<_>>().join(" | "));
        ensure!(ok, "Schemathesis with the {who} token found the API not as documented:\n{out}");
        let (ok, out) = tokio::task::spawn_blocking(move || {
            // NB: no stateful phase: no link joins two reads.
            schemathesis(&url, &token, &["--include-method", "GET", "--phases", "examples,coverage,fuzzing", "-c", "negative_data_rejection"])
        })
        .await??;
        eprintln!("{who} reads: {}", out.lines().rev().take(3).collect::<Vec<_>>().join(" | "));
        ensure!(ok, "Schemathesis with the {who} token: reads accepted although invalid:\n{out}");
    }
    assert!(!orch.proc.log_text().contains("panicked"), "a handler panicked:\n{}", orch.proc.log_text());
    Ok(())
}
