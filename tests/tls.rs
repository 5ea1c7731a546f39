//! TLS end to end on loopback: `herd-orchestrator tls-init` makes a CA and a certificate, the
//! orchestrator serves HTTPS with them, the CLI and an agent work with `--ca-file`, and both
//! refuse a server whose certificate no trusted CA signed; the agent's log endpoint serves
//! HTTPS too and `herd logs` reads through it (the orchestrator trusts it with
//! `--agent-ca-file`). Plain HTTP off loopback is refused without `--insecure-http`. Needs
//! Docker (one container, for its logs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use herd_tests::{Agent, Proc, TenantContainers, bins, docker, unique, wait_for};

fn tls_init(dir: &Path) -> Result<()> {
    let out = Command::new(bins().join("herd-orchestrator")).args(["tls-init", "--dir"]).arg(dir).args(["--name", "127.0.0.1", "--name", "localhost"]).output()?;
    ensure!(out.status.success(), "tls-init: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn herd(url: &str, token_file: &Path, ca: Option<&Path>, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(bins().join("herd"));
    cmd.args(["--server", url, "--token-file"]).arg(token_file).env_remove("HERD_CA_FILE");
    if let Some(ca) = ca {
        cmd.arg("--ca-file").arg(ca);
    }
    Ok(cmd.args(args).output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_tls_with_the_local_ca_and_an_unknown_certificate_refused() -> Result<()> {
    docker();
    let tmp = tempfile::tempdir()?;
    let (tls, other) = (tmp.path().join("tls"), tmp.path().join("other"));
    tls_init(&tls)?;
    tls_init(&other)?;
    let again = Command::new(bins().join("herd-orchestrator")).args(["tls-init", "--dir"]).arg(&tls).args(["--name", "127.0.0.1"]).output()?;
    ensure!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never replaces a CA"), "tls-init replaced a CA");

    let data = tmp.path().join("orch");
    std::fs::create_dir_all(&data)?;
    let log = data.join("orchestrator.log");
    let mut child = Command::new(bins().join("herd-orchestrator"))
        .args(["--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--heartbeat-interval", "500ms", "--tls-cert"])
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(tls.join("server.key"))
        .arg("--agent-ca-file")
        .arg(tls.join("ca.pem"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let mut orch = Proc { child, log };
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
    ensure!(url.starts_with("https://127.0.0.1:"), "the orchestrator does not say it serves HTTPS: {line:?} {}", orch.log_text());
    let admin = data.join("admin.token");
    let (ca, wrong_ca) = (tls.join("ca.pem"), other.join("ca.pem"));

    let result = async {
        // The CLI with the CA: works.
        let tenant = unique("tl");
        let out = herd(&url, &admin, Some(&ca), &["tenants", "create", &tenant])?;
        ensure!(out.status.success(), "herd over TLS: {}", String::from_utf8_lossy(&out.stderr));

        // Without it, or with another CA: refused, saying what to do.
        for ca in [None, Some(wrong_ca.as_path())] {
            let out = herd(&url, &admin, ca, &["tenants", "list"])?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            ensure!(!out.status.success() && err.contains("certificate") && err.contains("--ca-file"), "with CA {ca:?}: {err}");
        }

        // An agent with the CA registers and heartbeats over TLS; one without it cannot.
        let host = unique("tlsh");
        let out = herd(&url, &admin, Some(&ca), &["tokens", "create", "--agent", "--host", &host])?;
        ensure!(out.status.success(), "agent token: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let ca_arg = ca.display().to_string();
        let (cert, key) = (tls.join("server.pem").display().to_string(), tls.join("server.key").display().to_string());
        let mut agent =
            Agent::start_with(&url, &token, &host, &tmp.path().join("agent"), "1", "1Gi", &["--ca-file", &ca_arg, "--tls-cert", &cert, "--tls-key", &key])?;
        let ready = wait_for("the agent's host ready over TLS", Duration::from_secs(30), || async {
            let out = herd(&url, &admin, Some(&ca), &["hosts", "-o", "json"])?;
            let hosts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            Ok(hosts.as_array().into_iter().flatten().any(|h| h["info"]["id"] == host.as_str() && h["state"] == "ready").then_some(()))
        })
        .await;
        if let Err(e) = ready {
            anyhow::bail!("{e}\nagent:\n{}", agent.proc.log_text());
        }

        // Its log endpoint is HTTPS: `herd logs` reads an instance's output through it.
        let _cleanup = TenantContainers(tenant.clone());
        let spec = tmp.path().join("spec.yaml");
        std::fs::write(
            &spec,
            // NB: a NameNode, which runs alone (a DataNode without one exits, as Hadoop's does:
            // `fs.defaultFS` is `file:///`, and an apply waiting for it running then fails).
            format!("tenant: {tenant}\nname: c\nimages: {{namenode: herd/namenode:testbed}}\npools:\n  namenode: {{replicas: 1, cpu: 100m, memory: 512Mi}}\n"),
        )?;
        let spec_arg = spec.display().to_string();
        let out = herd(&url, &admin, Some(&ca), &["apply", "-f", &spec_arg, "--wait", "--timeout", "60s"])?;
        if !out.status.success() {
            let containers = Command::new("sh")
                .args(["-c", &format!("for c in $(docker ps -aq --filter label=herd.tenant={tenant}); do docker inspect --format '{{{{.Name}}}} exit={{{{.State.ExitCode}}}} oom={{{{.State.OOMKilled}}}} restarts={{{{.RestartCount}}}}' $c; docker logs --tail 30 $c 2>&1; done")])
                .output()?;
            anyhow::bail!(
                "apply: {}\ncontainers:\n{}\nagent:\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&containers.stdout),
                agent.proc.log_text()
            );
        }
        let instance = format!("{tenant}/c/namenode-0");
        let logs = wait_for("the instance's logs through the agent's HTTPS endpoint", Duration::from_secs(30), || async {
            let out = herd(&url, &admin, Some(&ca), &["logs", &instance, "--tail", "5"])?;
            Ok((out.status.success() && !out.stdout.is_empty()).then_some(()))
        })
        .await;
        let last = herd(&url, &admin, Some(&ca), &["logs", &instance, "--tail", "5"])?;
        let agent_log = agent.proc.log_text();
        agent.proc.kill();
        logs.map_err(|e| anyhow::anyhow!("{e}\nherd logs: {}\nagent:\n{agent_log}", String::from_utf8_lossy(&last.stderr)))?;
        ensure!(agent_log.contains("tls=true"), "the log endpoint did not serve TLS:\n{agent_log}");

        let lost = unique("tlsx");
        let mut blind = Agent::start_with(&url, &token, &lost, &tmp.path().join("blind"), "1", "1Gi", &[])?;
        let refused = wait_for("an agent without the CA refusing the server", Duration::from_secs(30), || async {
            Ok(blind.proc.log_text().contains("InvalidCertificate(UnknownIssuer)").then_some(()))
        })
        .await;
        let blind_log = blind.proc.log_text();
        blind.proc.kill();
        refused.map_err(|e| anyhow::anyhow!("{e}\nagent:\n{blind_log}"))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("orchestrator:\n{}", orch.log_text());
    }
    orch.kill();
    result
}

#[test]
fn plain_http_off_loopback_needs_insecure_http() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = Command::new(bins().join("herd-orchestrator")).arg("--data-dir").arg(tmp.path()).args(["--listen", "0.0.0.0:0"]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("--insecure-http") && err.contains("tls-init"), "{}: {err}", out.status);
    Ok(())
}
