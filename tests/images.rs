//! Image pulls, end to end: a registry started by the test on loopback (Debian's
//! `docker-registry`, the CNCF distribution registry), one agent on the real Docker engine.
//! - an image the host does not have is pulled and its container created, by tag and by digest;
//! - a name the registry does not know is reported as `image-pull-failed: ...` with the
//!   registry's answer, and retried with backoff, not at every heartbeat.
//!
//! Needs Docker and `docker-registry` (installed by `deploy/lib/registry.sh` when missing);
//! fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use herd_tests::{Agent, Orchestrator, Proc, TenantContainers, docker, free_port, root, unique, wait_for};
use serde_json::Value;

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("cannot run {args:?}"))?;
    ensure!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Starts a registry on 127.0.0.1:`port` storing under `dir`; its access log goes to a file.
fn registry(dir: &std::path::Path, port: u16) -> Result<Proc> {
    let status = Command::new("bash").arg("-c").arg("source deploy/lib/registry.sh && ensure_registry").current_dir(root()).status()?;
    ensure!(status.success(), "docker-registry is missing and could not be installed (deploy/lib/registry.sh)");
    std::fs::create_dir_all(dir.join("data"))?;
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )?;
    let log = dir.join("registry.log");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start docker-registry")?;
    Ok(Proc { child, log })
}

fn spec(tenant: &str, cluster: &str, image: &str) -> String {
    format!("tenant: {tenant}\nname: {cluster}\nimages: {{datanode: '{image}'}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi}}\n")
}

/// The one DataNode of `cluster`, as status shows it.
async fn datanode(api: &herd_tests::Api, tenant: &str, cluster: &str) -> Result<Value> {
    let (code, s) = api.get(&format!("/v1/tenants/{tenant}/clusters/{cluster}")).await?;
    ensure!(code == 200, "status: {code} {s}");
    Ok(s["instances"][0].clone())
}

/// Docker's image of `cluster`'s DataNode container, once it exists.
fn container_image(tenant: &str, cluster: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Image}}", "--filter", &format!("label=herd.tenant={tenant}"), "--filter", &format!("label=herd.cluster={cluster}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_are_pulled_and_a_wrong_name_backs_off() -> Result<()> {
    docker();
    let tmp = tempfile::tempdir()?;
    let port = free_port();
    let mut reg = registry(&tmp.path().join("registry"), port)?;
    let base = format!("127.0.0.1:{port}");
    wait_for("the registry up", Duration::from_secs(20), || async {
        Ok(reqwest::get(format!("http://{base}/v2/")).await.ok().filter(|r| r.status().is_success()).map(|_| ()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", reg.log_text()))?;

    // An image only the registry has: pushed there, then untagged here.
    let tag = unique("t");
    let image = format!("{base}/herd/pulled:{tag}");
    sh(&["docker", "tag", "herd/datanode:testbed", &image])?;
    let pushed = sh(&["docker", "push", &image])?;
    let digest = pushed.split_whitespace().skip_while(|w| *w != "digest:").nth(1).context("no digest in docker push's output")?.to_string();
    sh(&["docker", "rmi", &image])?;
    ensure!(Command::new("docker").args(["image", "inspect", &image]).output()?.status.code() != Some(0), "{image} is still here");

    let orch = Orchestrator::start(&tmp.path().join("orch"), 0)?;
    let api = orch.api();
    let host = unique("img");
    let token = orch.agent_token(&host).await?;
    let mut agent = Agent::start(&orch.url, &token, &host, &tmp.path().join("agent"), "4", "8Gi")?;
    let tenant = unique("im");
    let _cleanup = TenantContainers(tenant.clone());
    let result = async {
        // By tag: pulled, then created.
        api.create_tenant_and_cluster(&tenant, "bytag", &spec(&tenant, "bytag", &image)).await?;
        wait_for("the pulled image's container", Duration::from_secs(60), || async { Ok(container_image(&tenant, "bytag").filter(|i| *i == image)) }).await?;
        wait_for("the DataNode's container reported, without error", Duration::from_secs(30), || async {
            let dn = datanode(&api, &tenant, "bytag").await?;
            Ok((dn["observed"]["container_id"].as_str().is_some_and(|id| !id.is_empty()) && dn["observed"]["error"].is_null()).then_some(dn))
        })
        .await?;

        // By digest: untag what was pulled, pull again by digest.
        sh(&["docker", "rm", "-f", &format!("herd.{tenant}.bytag.datanode-0")]).ok();
        let by_digest = format!("{base}/herd/pulled@{digest}");
        sh(&["docker", "rmi", "-f", &image])?;
        let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/bydigest"), &spec(&tenant, "bydigest", &by_digest)).await?;
        ensure!(code == 201, "apply by digest: {code} {body}");
        let waited = wait_for("the container pulled by digest", Duration::from_secs(60), || async {
            let dn = datanode(&api, &tenant, "bydigest").await?;
            Ok((dn["observed"]["container_id"].as_str().is_some_and(|id| !id.is_empty()) && dn["observed"]["error"].is_null()).then_some(()))
        })
        .await;
        if let Err(e) = waited {
            anyhow::bail!("{e}: {} (container image: {:?})", datanode(&api, &tenant, "bydigest").await?, container_image(&tenant, "bydigest"));
        }

        // A wrong name: the registry's answer as the instance's state, retried with backoff.
        let wrong = format!("{base}/herd/nope:x");
        let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/wrong"), &spec(&tenant, "wrong", &wrong)).await?;
        ensure!(code == 201, "apply wrong: {code} {body}");
        let error = wait_for("image-pull-failed on the instance", Duration::from_secs(30), || async {
            let dn = datanode(&api, &tenant, "wrong").await?;
            Ok(dn["observed"]["error"].as_str().filter(|e| e.starts_with("image-pull-failed: ")).map(String::from))
        })
        .await?;
        ensure!(error.contains(&wrong) && error.contains("retry in"), "{error}");
        ensure!(error.contains("not found") || error.contains("unknown"), "the registry's answer is not in: {error}");
        let failed_at = Instant::now();
        let attempts = |log: String| log.lines().filter(|l| l.contains("pulling a missing image") && l.contains(&wrong)).count();
        let before = attempts(agent.proc.log_text());
        // NB: a plain sleep is the measurement here: how many attempts a window of 14 s holds.
        tokio::time::sleep(Duration::from_secs(14)).await;
        let during = attempts(agent.proc.log_text()) - before;
        // Heartbeats every 500 ms would give 28 attempts; backoff (2, 4, 8 s ±20 %) gives 2 or 3.
        ensure!((1..=4).contains(&during), "{during} pull attempts of {wrong} in {:.1?} after the first failure", failed_at.elapsed());
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("agent:\n{}\nregistry:\n{}", agent.proc.log_text(), reg.log_text());
    }
    agent.proc.kill();
    reg.kill();
    result
}
