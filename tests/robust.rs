//! herd's daemons under faults of their surroundings, with the real binaries:
//! - stderr on a full disk (`/dev/full`: every write fails with ENOSPC): the orchestrator
//!   answers every request and still stops on SIGTERM; the agent keeps registering and
//!   heartbeating, and reports the lost log lines as a host condition.
//!
//! - the CLI's answer lost on the way back (a proxy that forwards the request and cuts the
//!   connection before the answer): `herd scale` retries, then reads the cluster and says
//!   `APPLIED`; with no orchestrator at all it says `UNKNOWN` and how to check.
//!
//! - a zero-length store beside an `admin.token`, or a store with a corrupt page: refused at
//!   start with what to do, the admin token and the store left as they were.
//!
//! Needs the Docker engine (the agent); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::{Api, Orchestrator, Proc, bins, docker, free_port, unique, wait_for};
use serde_json::json;

fn dev_full() -> std::fs::File {
    OpenOptions::new().write(true).open("/dev/full").expect("/dev/full")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_keep_serving_when_stderr_cannot_be_written() -> Result<()> {
    docker();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("orchestrator");
    let mut child = Command::new(bins().join("herd-orchestrator"))
        .args(["--data-dir", &data.display().to_string(), "--listen", "127.0.0.1:0", "--heartbeat-interval", "500ms"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(dev_full())
        .spawn()
        .context("cannot start herd-orchestrator")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let mut orchestrator = Proc { child, log: "/dev/full".into() };
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
    ensure!(url.starts_with("http://"), "the orchestrator did not start with stderr on a full disk: {line:?}");
    let admin = std::fs::read_to_string(data.join("admin.token"))?.trim().to_string();
    let api = Api::new(&url).with_token(&admin);

    // Requests that log (debug level: every one): all answered.
    for n in 0..20 {
        let tenant = unique("full");
        let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(code == 201, "request {n}: {code} {body}");
        let (code, body) = api.get(&format!("/v1/tenants/{tenant}")).await?;
        ensure!(code == 200, "request {n}: {code} {body}");
    }
    let (code, _) = api.post("/v1/tenants", json!({ "name": "Not A Name" })).await?;
    ensure!(code == 422, "a refused request is answered too: {code}");

    // An agent whose stderr is full too keeps heartbeating and says so.
    let host = unique("full-host");
    let (code, created) = api.post("/v1/tokens", json!({ "scope": "agent", "host": host })).await?;
    ensure!(code == 201, "agent token: {code} {created}");
    let token = created["secret"].as_str().context("no secret")?.to_string();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let child = Command::new(bins().join("herd-agent"))
        .args(["--orchestrator", &url, "--host-id", &host, "--data-dir", &agent_dir.display().to_string()])
        .args(["--cpus", "2", "--memory", "2Gi", "--network", "none", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .env("HERD_TOKEN", &token)
        .stdout(Stdio::null())
        .stderr(dev_full())
        .spawn()
        .context("cannot start herd-agent")?;
    let mut agent = Proc { child, log: "/dev/full".into() };
    let conditions = wait_for("the agent's host ready, reporting LogWriteFailed", Duration::from_secs(30), || async {
        let (code, hosts) = api.get("/v1/hosts").await?;
        ensure!(code == 200, "hosts: {code} {hosts}");
        let h = hosts["items"].as_array().and_then(|a| a.iter().find(|h| h["info"]["id"] == host.as_str())).cloned();
        let ready = h.as_ref().is_some_and(|h| h["state"] == "ready");
        let conditions = h.map(|h| h["conditions"].to_string()).unwrap_or_default();
        Ok((ready && conditions.contains("LogWriteFailed")).then_some(conditions))
    })
    .await?;
    ensure!(agent.child.try_wait()?.is_none(), "the agent exited");
    eprintln!("agent condition: {conditions}");

    // SIGTERM still stops the orchestrator, at once (nothing is open).
    let sent = Instant::now();
    let status = terminate(&mut orchestrator)?;
    ensure!(status.success(), "the orchestrator stopped with {status}");
    eprintln!("orchestrator stopped {:?} after SIGTERM", sent.elapsed());
    agent.kill();
    Ok(())
}

/// A TCP proxy to `upstream` that cuts the first `cut` connections once the answer starts
/// coming back (the request reached the server; its answer never reaches the client), and
/// passes the others through. Returns its port and the count of connections it took.
async fn lossy_proxy(upstream: String, cut: usize) -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                if n >= cut {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut from_client, _to_client) = client.split();
                let (mut from_server, mut to_server) = server.split();
                let forward = tokio::io::copy(&mut from_client, &mut to_server);
                let mut answer = [0u8; 64];
                // The answer's first bytes mean the server has done the work: cut here.
                tokio::select! {
                    _ = forward => {}
                    _ = from_server.read(&mut answer) => {}
                }
            });
        }
    });
    Ok((port, seen))
}

fn herd(server: &str, token: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(bins().join("herd")).env("HERD_TOKEN", token).args(["--server", server]).args(args).output()?;
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tells_whether_a_write_whose_answer_was_lost_was_applied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let api = orch.api();
    let tenant = unique("lost");
    let spec = format!("tenant: {tenant}\nname: c\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi}}\n");
    api.create_tenant_and_cluster(&tenant, "c", &spec).await?;
    let upstream = orch.url.trim_start_matches("http://").to_string();

    // Every answer to the scale is lost (the first try and its 3 retries); the read after it
    // gets through and shows the change applied.
    let (port, seen) = lossy_proxy(upstream, 4).await?;
    let proxy = format!("http://127.0.0.1:{port}");
    let token = orch.admin.clone();
    let args = ["scale".to_string(), format!("{tenant}/c"), "datanode=3".to_string()];
    let cli = move || herd(&proxy, &token, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = tokio::task::spawn_blocking(cli).await??;
    eprintln!("{out}");
    ensure!(ok, "herd scale failed although the change was applied: {out}");
    ensure!(out.contains("APPLIED"), "does not say it was applied: {out}");
    ensure!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 5, "not retried: {} connections", seen.load(std::sync::atomic::Ordering::SeqCst));
    let (code, c) = api.get(&format!("/v1/tenants/{tenant}/clusters/c")).await?;
    ensure!(code == 200 && c["spec"]["pools"]["datanode"]["replicas"] == 3, "not scaled: {code} {c}");

    // No orchestrator at all: unknown, with the command to check.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (ok, out) = herd(&nowhere, &orch.admin, &["scale", &format!("{tenant}/c"), "datanode=2"])?;
    eprintln!("{out}");
    ensure!(!ok, "succeeded without an orchestrator: {out}");
    ensure!(out.contains("UNKNOWN") && out.contains(&format!("herd status {tenant}/c")), "does not say it is unknown and how to check: {out}");
    Ok(())
}

/// SIGTERM, and the exit status once the process is gone; fails after 10 s.
fn terminate(proc: &mut Proc) -> Result<std::process::ExitStatus> {
    let pid = proc.child.id().to_string();
    ensure!(Command::new("kill").args(["-TERM", &pid]).status()?.success(), "kill -TERM {pid}");
    let sent = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait()? {
            return Ok(status);
        }
        if sent.elapsed() > Duration::from_secs(10) {
            bail!("pid {pid} ignored SIGTERM for 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_corrupt_store_is_refused_and_the_admin_token_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut orch = Orchestrator::start(dir.path(), 0)?;
    let (code, body) = orch.api().post("/v1/tenants", json!({ "name": unique("kept") })).await?;
    ensure!(code == 201, "{code} {body}");
    terminate(&mut orch.proc)?;
    let store = dir.path().join("herd.db");
    // Everything into the main file (the orchestrator leaves its WAL for the next start), so
    // that a page of it holds what the user stored.
    rusqlite::Connection::open(&store)?.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let token = std::fs::read_to_string(dir.path().join("admin.token"))?;
    let good = std::fs::read(&store)?;
    ensure!(good.len() > 8192, "store too small to corrupt: {} bytes", good.len());

    // Zero-length store beside an admin token: refused, token untouched.
    std::fs::write(&store, b"")?;
    let refused = Orchestrator::start(dir.path(), 0).err().map(|e| format!("{e:#}")).unwrap_or_default();
    eprintln!("empty: {refused}");
    ensure!(refused.contains("refusing to start") && refused.contains("admin.token") && refused.contains("backup"), "not refused clearly: {refused:?}");
    ensure!(std::fs::read_to_string(dir.path().join("admin.token"))? == token, "the admin token was overwritten");
    ensure!(std::fs::metadata(&store)?.len() == 0, "the empty store was written to");

    // A corrupt page: refused, nothing changed.
    let mut bad = good.clone();
    for b in &mut bad[4096..8192] {
        *b = 0xA5;
    }
    std::fs::write(&store, &bad)?;
    let refused = Orchestrator::start(dir.path(), 0).err().map(|e| format!("{e:#}")).unwrap_or_default();
    eprintln!("corrupt: {refused}");
    ensure!(refused.contains("corrupt") && refused.contains("backup"), "not refused clearly: {refused:?}");
    ensure!(std::fs::read(&store)? == bad, "the corrupt store was written to");

    // The good store back: it starts, with the same token.
    std::fs::write(&store, &good)?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    ensure!(orch.admin == token.trim(), "a new admin token after restoring the store");
    let (code, _) = orch.api().get("/v1/tenants").await?;
    ensure!(code == 200, "restored store does not serve: {code}");
    Ok(())
}
