//! The CLI and an agent given every orchestrator of a control plane on etcd (issue 15), with
//! the real binaries: through a dead URL and a follower they reach the leader; when the
//! leader is SIGKILLed and the other takes over, both move on to it. (The redirect, 503 and
//! retry rules themselves are tested against fake orchestrators in `cli/src/client_tests.rs`
//! and `agent/tests/client.rs`.)
//!
//! The agent needs the Docker engine; the test fails, never skips, without it.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use herd_tests::etcd::Etcd;
use herd_tests::{Agent, Api, Orchestrator, bins, free_port, unique, wait_for};
use serde_json::Value;

/// What `/v1/leader` of the orchestrator at `url` says: its role and the leader's URL.
async fn leader_of(url: &str) -> Result<(String, Option<String>)> {
    let (status, body) = Api::new(url).get("/v1/leader").await?;
    ensure!(status == 200, "GET /v1/leader: {status} {body}");
    Ok((body["role"].as_str().unwrap_or_default().to_string(), body["leader"].as_str().map(String::from)))
}

/// Runs `herd --server servers ARGS`: whether it succeeded, and stdout with stderr.
fn herd(servers: &str, token: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(bins().join("herd")).env("HERD_TOKEN", token).args(["--server", servers]).args(args).output()?;
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_an_agent_follow_the_leader_and_move_on_when_it_dies() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let etcd = Etcd::start(&tmp.path().join("etcd"))?;
    let flags = ["--store", "etcd", "--etcd-endpoints", etcd.url.as_str(), "--rate-limit", "100000", "--lease-ttl", "2s"];
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = Orchestrator::start_with(bins(), &dir_a, free_port(), &flags)?;
    wait_for("the first orchestrator to lead", Duration::from_secs(15), || async {
        Ok((leader_of(&a.url).await?.0 == "leader").then_some(()))
    })
    .await?;
    // The second shares the admin token and the agents' log key, as every orchestrator of one
    // control plane must.
    std::fs::create_dir_all(&dir_b)?;
    for file in ["admin.token", "agent-logs.key"] {
        std::fs::copy(dir_a.join(file), dir_b.join(file)).with_context(|| format!("copying {file}"))?;
    }
    let b = Orchestrator::start_with(bins(), &dir_b, free_port(), &flags)?;
    let follows = ("follower".to_string(), Some(a.url.clone()));
    wait_for("the second orchestrator to follow the first", Duration::from_secs(15), || async {
        Ok((leader_of(&b.url).await? == follows).then_some(()))
    })
    .await?;

    // The CLI, through a dead URL and the follower, reaches the leader.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let servers = format!("{dead},{}", b.url);
    let tenant = unique("ha");
    let (ok, out) = herd(&servers, &a.admin, &["tenants", "create", &tenant])?;
    ensure!(ok && out.contains(&format!("tenant {tenant} created")), "{out}");
    ensure!(out.contains(&format!("orchestrator {dead} unreachable")), "the move is not said: {out}");
    let (status, _) = a.api().get(&format!("/v1/tenants/{tenant}")).await?;
    ensure!(status == 200, "the tenant is not on the leader: {status}");

    // So does an agent.
    let host = unique("h");
    let token = a.agent_token(&host).await?;
    let agent = Agent::start(&servers, &token, &host, &tmp.path().join("agent"), "1", "1Gi")?;
    let host_path = format!("/v1/hosts/{host}");
    let ready = |api: Api| {
        let path = host_path.clone();
        async move {
            let (status, body): (u16, Value) = api.get(&path).await?;
            let fresh = body["last_heartbeat_ms_ago"].as_u64().is_some_and(|ms| ms < 1500);
            Ok((status == 200 && body["state"] == "ready" && fresh).then_some(()))
        }
    };
    wait_for("the agent registered through the follower", Duration::from_secs(30), || ready(a.api())).await?;

    // The leader dies; the other takes over; the CLI (old leader first) and the agent move on.
    a.proc.kill();
    wait_for("the second orchestrator to lead", Duration::from_secs(20), || async {
        Ok((leader_of(&b.url).await?.0 == "leader").then_some(()))
    })
    .await?;
    let (ok, out) = herd(&format!("{},{}", a.url, b.url), &a.admin, &["tenants", "create", &format!("{tenant}b")])?;
    ensure!(ok && out.contains("created"), "{out}");
    // NB: the new leader may call the host fresh from before: the agent's word comes first.
    let moved = format!("now talking to this orchestrator orchestrator={}/", b.url);
    wait_for("the agent to move to the new leader", Duration::from_secs(30), || async {
        Ok(agent.proc.log_text().contains(&moved).then_some(()))
    })
    .await
    .with_context(|| agent.proc.log_text())?;
    wait_for("the agent heartbeating the new leader", Duration::from_secs(30), || ready(b.api())).await?;
    Ok(())
}
