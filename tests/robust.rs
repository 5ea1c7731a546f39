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
//! - a backup taken while four writers create tenants holds every write acknowledged before
//!   it started and passes SQLite's integrity check; restore refuses over a running
//!   orchestrator, and a restored store serves; scheduled backups keep the newest N.
//!
//! - limits: 2 x 10,000 replicas refused by admission (nothing stored), a tenant without a
//!   quota gets a finite one, a tenant's clusters capped; one token flooding gets 429 with
//!   `Retry-After` while another is served, and the CLI waits and gets its answer; a page of
//!   big clusters ends early.
//!
//! - `/metrics`, `/healthz`, `/readyz` of the orchestrator and of an agent, scraped and parsed.
//!
//! - `Idempotency-Key` on PUT, PATCH and DELETE replays the first answer; `herd delete`,
//!   `herd scale` and `herd apply` send `If-Match` and refuse a cluster changed after they
//!   read it (412, saying to look and run the command again).
//!
//! The agent tests need the Docker engine; they fail, never skip, without it.

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

    // Every answer is lost: the read before the scale (which then goes without If-Match), the
    // scale's first try and its 3 retries; the read after it gets through and shows the change
    // applied.
    let (port, seen) = lossy_proxy(upstream, 5).await?;
    let proxy = format!("http://127.0.0.1:{port}");
    let token = orch.admin.clone();
    let args = ["scale".to_string(), format!("{tenant}/c"), "datanode=3".to_string()];
    let cli = move || herd(&proxy, &token, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = tokio::task::spawn_blocking(cli).await??;
    eprintln!("{out}");
    ensure!(ok, "herd scale failed although the change was applied: {out}");
    ensure!(out.contains("APPLIED"), "does not say it was applied: {out}");
    ensure!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 6, "not retried: {} connections", seen.load(std::sync::atomic::Ordering::SeqCst));
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

/// Runs `herd-orchestrator ARGS` to completion: success, and stdout with stderr.
fn orchestrator_cmd(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(bins().join("herd-orchestrator")).args(args).output()?;
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir()?;
    let (live, backups) = (dir.path().join("live"), dir.path().join("backups"));
    let backups_arg = backups.display().to_string();
    let orch = Orchestrator::start_with(
        bins(),
        &live,
        0,
        &["--rate-limit", "100000", "--backup-dir", &backups_arg, "--backup-every", "1s", "--backup-keep", "2"],
    )?;
    // Writers: new tenants as fast as they are acknowledged, each name kept once its 201 is in.
    let (acked, stop) = (Arc::new(Mutex::new(Vec::<String>::new())), Arc::new(AtomicBool::new(false)));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (api, acked, stop) = (orch.api(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{w}x{n}x{}", std::process::id());
                n += 1;
                let (code, body) = api.post("/v1/tenants", json!({ "name": name, "quota": "unlimited" })).await?;
                ensure!(code == 201, "{code} {body}");
                acked.lock().unwrap().push(name);
            }
            anyhow::Ok(())
        }));
    }
    let count = || acked.lock().unwrap().len();
    wait_for("100 acknowledged writes", Duration::from_secs(60), || async { Ok((count() >= 100).then_some(())) }).await?;

    // The backup, while the writers go on: it holds at least every write acknowledged before it
    // started, and writes go on while it is taken. A backup of this small store takes a few
    // milliseconds, so one may fall between two writes: backups are taken again (up to 20)
    // until one has a write acknowledged while it ran (never, if backups stopped writers).
    let file = dir.path().join("taken.db");
    let (mut before, mut at_backup) = (Vec::new(), 0);
    for attempt in 1..=20 {
        before = acked.lock().unwrap().clone();
        let (data, to) = (live.display().to_string(), file.display().to_string());
        let (ok, out) = tokio::task::spawn_blocking(move || orchestrator_cmd(&["--data-dir", &data, "backup", "--to", &to])).await??;
        ensure!(ok && out.contains("backed up"), "backup failed: {out}");
        at_backup = count();
        eprintln!("{}; {} writes acknowledged before it, {} while (attempt {attempt})", out.trim(), before.len(), at_backup - before.len());
        if at_backup > before.len() {
            break;
        }
    }
    wait_for("writes after the backup", Duration::from_secs(30), || async { Ok((count() >= at_backup + 20).then_some(())) }).await?;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await??;
    }
    ensure!(at_backup > before.len(), "no write ran while any of 20 backups was taken ({at_backup} acknowledged)");

    // Restore refuses while the orchestrator runs on its data directory, and changes nothing.
    let (ok, out) = orchestrator_cmd(&["--data-dir", &live.display().to_string(), "restore", "--from", &file.display().to_string()])?;
    ensure!(!ok && out.contains("is running"), "restore over a running orchestrator: {out}");

    // Restored elsewhere: integrity checked, every write acknowledged before the backup there,
    // served by an orchestrator started on it (same admin token).
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored)?;
    let (ok, out) = orchestrator_cmd(&["--data-dir", &restored.display().to_string(), "restore", "--from", &file.display().to_string()])?;
    ensure!(ok && out.contains("restored"), "restore failed: {out}");
    let db = rusqlite::Connection::open(restored.join("herd.db"))?;
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(check == "ok", "restored store: {check}");
    let names: std::collections::HashSet<String> =
        db.prepare("SELECT name FROM tenants")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let lost: Vec<&String> = before.iter().filter(|n| !names.contains(*n)).collect();
    ensure!(lost.is_empty(), "{} acknowledged writes missing from the backup, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    drop(db);
    std::fs::copy(live.join("admin.token"), restored.join("admin.token"))?;
    let again = Orchestrator::start(&restored, 0)?;
    for name in before.iter().step_by(10) {
        let (code, body) = again.api().get(&format!("/v1/tenants/{name}")).await?;
        ensure!(code == 200, "{name} after the restore: {code} {body}");
    }

    // Scheduled backups: taken every second, the newest 2 kept, each one sound.
    let seen = std::sync::Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    wait_for("4 scheduled backups", Duration::from_secs(60), || {
        let (backups, seen) = (backups.clone(), seen.clone());
        async move {
            let files = herd_orchestrator_backups(&backups)?;
            ensure!(files.len() <= 2, "more than --backup-keep 2 backups kept: {files:?}");
            let mut seen = seen.lock().unwrap();
            seen.extend(files);
            Ok((seen.len() >= 4).then_some(()))
        }
    })
    .await?;
    let newest = herd_orchestrator_backups(&backups)?.pop().context("no scheduled backup")?;
    let check: String = rusqlite::Connection::open(&newest)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(check == "ok", "{}: {check}", newest.display());
    drop(orch);
    Ok(())
}

/// The scheduled backups in `dir` (`herd-TIME.db`), oldest first.
fn herd_orchestrator_backups(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    files.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("herd-") && n.ends_with(".db")));
    files.sort();
    Ok(files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_20000_replicas_and_tenants_get_a_finite_quota() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start_with(bins(), dir.path(), 0, &["--rate-limit", "100000", "--max-clusters-per-tenant", "2"])?;
    let api = orch.api();

    // Without a quota: the default, finite one. `unlimited` only when asked for.
    let (code, t) = api.post("/v1/tenants", json!({ "name": "plain" })).await?;
    ensure!(code == 201 && t["quota"]["cpu"] == "64" && t["quota"]["memory"] == "256Gi", "default quota: {code} {t}");
    let (code, t) = api.post("/v1/tenants", json!({ "name": "big", "quota": "unlimited" })).await?;
    ensure!(code == 201 && t["quota"] == json!({}), "unlimited: {code} {t}");
    let (code, p) = api.post("/v1/tenants", json!({ "name": "odd", "quota": "lots" })).await?;
    ensure!(code == 422 && p["detail"].as_str().unwrap_or_default().contains("unlimited"), "{code} {p}");

    // 2 x 10,000 replicas on an empty fleet: refused by admission, nothing stored.
    let spec = "tenant: big\nname: huge\nimages: {datanode: herd/datanode:testbed, nodemanager: herd/nodemanager:testbed}\npools:\n  \
                datanode: {replicas: 10000, cpu: 100m, memory: 256Mi}\n  nodemanager: {replicas: 10000, cpu: 100m, memory: 1Gi}\n";
    let started = Instant::now();
    let (code, p) = api.put_yaml("/v1/tenants/big/clusters/huge", spec).await?;
    eprintln!("refused in {:?}: {p}", started.elapsed());
    ensure!(code == 422 && p["code"] == "limit_exceeded", "20,000 replicas: {code} {p}");
    ensure!(p["detail"].as_str().unwrap_or_default().contains("--max-pending-per-cluster"), "{p}");
    let (code, _) = api.get("/v1/tenants/big/clusters/huge").await?;
    ensure!(code == 404, "the refused cluster was stored: {code}");
    let (_, m) = api.raw("GET", "/metrics", &[], vec![]).await.map(|(c, _, b)| (c, String::from_utf8_lossy(&b).to_string()))?;
    ensure!(m.contains("herd_pending_instances 0"), "refused instances left pending:\n{m}");

    // A tenant's clusters are capped.
    for name in ["a", "b"] {
        let spec = format!("tenant: big\nname: {name}\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi}}\n");
        let (code, body) = api.put_yaml(&format!("/v1/tenants/big/clusters/{name}"), &spec).await?;
        ensure!(code == 201, "{code} {body}");
    }
    let spec = "tenant: big\nname: c\nimages: {datanode: herd/datanode:testbed}\npools:\n  datanode: {replicas: 1, cpu: 100m, memory: 256Mi}\n";
    let (code, p) = api.put_yaml("/v1/tenants/big/clusters/c", spec).await?;
    ensure!(code == 422 && p["code"] == "limit_exceeded" && p["detail"].as_str().unwrap_or_default().contains("2 clusters"), "{code} {p}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_token_gets_429_while_another_token_is_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start_with(bins(), dir.path(), 0, &["--rate-limit", "5", "--rate-burst", "10"])?;
    for t in ["flood", "calm"] {
        let (code, body) = orch.api().post("/v1/tenants", json!({ "name": t })).await?;
        ensure!(code == 201, "{code} {body}");
    }
    let flood = Api::new(&orch.url).with_token(&orch.token("tenant", Some("flood")).await?);
    let calm = Api::new(&orch.url).with_token(&orch.token("tenant", Some("calm")).await?);
    // 200 requests at once from one token, and meanwhile a few from another.
    let mut floods = Vec::new();
    for _ in 0..200 {
        let flood = flood.clone();
        floods.push(tokio::spawn(async move { flood.raw("GET", "/v1/tenants/flood", &[], vec![]).await }));
    }
    for n in 0..5 {
        let (code, body) = calm.get("/v1/tenants/calm").await?;
        ensure!(code == 200, "the other token's request {n} while one floods: {code} {body}");
    }
    let (mut ok, mut limited) = (0, 0);
    for f in floods {
        let (code, headers, body) = f.await??;
        match code {
            200 => ok += 1,
            429 => {
                limited += 1;
                let retry: u64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
                ensure!(retry >= 1, "429 without a Retry-After: {headers:?}");
                ensure!(headers.get("content-type").is_some_and(|v| v == "application/problem+json"), "{headers:?}");
                let p: serde_json::Value = serde_json::from_slice(&body)?;
                ensure!(p["code"] == "rate_limited" && p["status"] == 429, "{p}");
            }
            other => bail!("flood answered {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    eprintln!("flood: {ok} served, {limited} refused with 429");
    ensure!(limited >= 150 && ok >= 10, "flood: {ok} served, {limited} refused");
    // The flood's token is served again once its bucket refills.
    wait_for("the flooding token served again", Duration::from_secs(10), || async {
        Ok((flood.get("/v1/tenants/flood").await?.0 == 200).then_some(()))
    })
    .await?;

    // The CLI waits as Retry-After says and gets its answer: one request a second, none in reserve.
    let dir = tempfile::tempdir()?;
    let slow = Orchestrator::start_with(bins(), dir.path(), 0, &["--rate-limit", "1", "--rate-burst", "1"])?;
    let (code, _) = slow.api().get("/v1/tenants").await?;
    ensure!(code == 200, "{code}");
    let (code, p) = slow.api().get("/v1/tenants").await?;
    ensure!(code == 429, "the second request within a second: {code} {p}");
    let (url, admin) = (slow.url.clone(), slow.admin.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || herd(&url, &admin, &["tenants", "list"])).await??;
    ensure!(ok, "herd tenants over the rate: {out}");
    let m = String::from_utf8(slow.api().raw("GET", "/metrics", &[], vec![]).await?.2)?;
    let refused = parse_scrape(&m, "herd_").map(|s| total(&s, "herd_limit_refusals_total", &[("reason", "rate_limit")]))?;
    ensure!(refused >= 2.0, "the CLI's request was not refused first ({refused} refusals)");
    Ok(())
}

/// One sample of a scrape: name, labels, value.
type Sample = (String, std::collections::BTreeMap<String, String>, f64);

/// Parses a Prometheus/OpenMetrics text scrape strictly: every line a `# HELP`, `# TYPE`,
/// `# UNIT` or the final `# EOF`, or `name{label="value",...} number`; a counter's samples end
/// in `_total`, every name starts with `prefix`.
fn parse_scrape(text: &str, prefix: &str) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let mut counters = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    ensure!(lines.last() == Some(&"# EOF"), "the scrape does not end with # EOF");
    let good_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') && !n.starts_with(|c: char| c.is_ascii_digit());
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            ensure!(["HELP", "TYPE", "UNIT"].contains(&kind) && good_name(name) && name.starts_with(prefix), "bad comment line: {line}");
            if kind == "TYPE" && parts.next() == Some("counter") {
                counters.push(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value: {line}"))?;
        let value: f64 = value.parse().with_context(|| format!("bad value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, std::collections::BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').with_context(|| format!("unclosed labels: {line}"))?;
                let mut labels = std::collections::BTreeMap::new();
                for pair in body.split("\",").map(|p| p.trim_end_matches('"')).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").with_context(|| format!("bad label `{pair}`: {line}"))?;
                    ensure!(good_name(k), "bad label name: {line}");
                    labels.insert(k.to_string(), v.to_string());
                }
                (name, labels)
            }
        };
        ensure!(good_name(name) && name.starts_with(prefix), "bad metric name: {line}");
        if let Some(family) = counters.iter().find(|c| name.starts_with(c.as_str())) {
            ensure!(name == format!("{family}_total") || name == format!("{family}_created"), "counter sample without _total: {line}");
        }
        samples.push((name.to_string(), labels, value));
    }
    Ok(samples)
}

/// The sum of the samples named `name` whose labels include `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && with.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v)))
        .map(|(_, _, v)| v)
        .sum()
}

async fn scrape(base: &str, prefix: &str) -> Result<Vec<Sample>> {
    let api = Api::new(base);
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let (code, _, body) = api.raw("GET", path, &[], vec![]).await?;
        ensure!(code == 200 && String::from_utf8_lossy(&body) == want, "{base}{path}: {code} {}", String::from_utf8_lossy(&body));
    }
    let (code, headers, body) = api.raw("GET", "/metrics", &[], vec![]).await?;
    ensure!(code == 200, "{base}/metrics: {code}");
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    ensure!(ct.starts_with("application/openmetrics-text"), "{base}/metrics content type {ct}");
    parse_scrape(&String::from_utf8(body)?, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_and_agent_serve_metrics_health_and_readiness() -> Result<()> {
    docker();
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(&dir.path().join("orchestrator"), 0)?;
    let api = orch.api();
    let host = unique("metrics-host");
    let agent = herd_tests::Agent::start(&orch.url, &orch.agent_token(&host).await?, &host, &dir.path().join("agent"), "2", "2Gi")?;
    let tenant = unique("metrics");
    let _containers = herd_tests::TenantContainers(tenant.clone());
    let command = serde_json::to_string(&["/bin/sh", "-c", "echo hello from herd; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"])?;
    let spec = format!(
        "tenant: {tenant}\nname: m\nimages: {{datanode: herd/testbed-base:latest}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi, command: {command}}}\n"
    );
    api.create_tenant_and_cluster(&tenant, "m", &spec).await?;
    // The agent's endpoint, from its log line.
    let agent_url = wait_for("the agent's log endpoint", Duration::from_secs(30), || async {
        let log = agent.proc.log_text();
        Ok(log.split("serving logs addr=Some(").nth(1).and_then(|r| r.split(')').next()).map(|a| format!("http://{a}")))
    })
    .await?;
    let agent_samples = wait_for("the agent to capture a log line and be ready", Duration::from_secs(60), || async {
        let (code, _, _) = Api::new(&agent_url).raw("GET", "/readyz", &[], vec![]).await?;
        if code != 200 {
            return Ok(None);
        }
        let s = scrape(&agent_url, "herd_").await?;
        Ok((total(&s, "herd_agent_log_captured_bytes_total", &[]) > 0.0).then_some(s))
    })
    .await?;
    ensure!(total(&agent_samples, "herd_agent_heartbeats_total", &[("result", "ok")]) >= 1.0, "no heartbeat counted");
    ensure!(total(&agent_samples, "herd_agent_heartbeat_duration_seconds_count", &[]) >= 1.0, "no heartbeat latency");
    ensure!(agent_samples.iter().any(|(n, _, _)| n == "herd_log_write_failures_total"), "no herd_log_write_failures_total");
    // Log lines dropped, in records and in bytes, by reason (0 until one is).
    for reason in ["replayed", "lost", "forward"] {
        ensure!(
            agent_samples.iter().any(|(n, labels, _)| n == "herd_agent_log_records_dropped_total" && labels.get("reason").is_some_and(|v| v == reason)),
            "no herd_agent_log_records_dropped_total{{reason=\"{reason}\"}}"
        );
    }
    for reason in ["replayed", "forward"] {
        ensure!(
            agent_samples.iter().any(|(n, labels, _)| n == "herd_agent_log_dropped_bytes_total" && labels.get("reason").is_some_and(|v| v == reason)),
            "no herd_agent_log_dropped_bytes_total{{reason=\"{reason}\"}}"
        );
    }

    let s = scrape(&orch.url, "herd_").await?;
    let heartbeats = total(&s, "herd_http_requests_total", &[("route", "/v1/agent/heartbeat"), ("method", "POST"), ("status", "200")]);
    ensure!(heartbeats >= 1.0, "heartbeats not counted by route: {heartbeats}");
    ensure!(total(&s, "herd_heartbeat_duration_seconds_count", &[]) >= 1.0, "no heartbeat latency");
    ensure!(total(&s, "herd_http_request_duration_seconds_bucket", &[("route", "/v1/tenants/{tenant}/clusters/{cluster}"), ("le", "+Inf")]) >= 1.0, "no apply latency");
    ensure!(total(&s, "herd_store_operation_duration_seconds_count", &[("op", "write")]) >= 1.0, "no store latency");
    ensure!(total(&s, "herd_placements_total", &[]) >= 1.0, "no placement counted");
    ensure!(s.iter().any(|(n, _, _)| n == "herd_pending_instances"), "no herd_pending_instances");
    ensure!(s.iter().any(|(n, _, _)| n == "herd_log_write_failures_total"), "no herd_log_write_failures_total");

    // Pending instances: one that no host can take.
    let big = format!("tenant: {tenant}\nname: big\nimages: {{datanode: herd/testbed-base:latest}}\npools:\n  datanode: {{replicas: 1, cpu: 8, memory: 256Mi}}\n");
    let (code, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/big"), &big).await?;
    ensure!(code == 201, "{code} {body}");
    let s = scrape(&orch.url, "herd_").await?;
    ensure!(total(&s, "herd_pending_instances", &[]) == 1.0, "pending: {}", total(&s, "herd_pending_instances", &[]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_replays_its_first_answer_to_the_same_idempotency_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let api = orch.api();
    let tenant = unique("once");
    let spec = format!("tenant: {tenant}\nname: c\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi}}\n");
    let (code, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
    ensure!(code == 201, "{code} {body}");
    let cluster = format!("/v1/tenants/{tenant}/clusters/c");
    let put = |key: &'static str| {
        let (api, cluster, spec) = (api.clone(), cluster.clone(), spec.clone());
        async move { api.raw("PUT", &cluster, &[("idempotency-key", key), ("content-type", "application/yaml")], spec.into_bytes()).await }
    };
    let replayed = |h: &reqwest::header::HeaderMap| h.get("idempotent-replayed").is_some_and(|v| v == "true");

    // PUT: created once; the retry gets the same 201 and ETag, marked replayed.
    let (code, h1, _) = put("apply-1").await?;
    ensure!(code == 201 && !replayed(&h1), "{code}");
    let (code, h2, _) = put("apply-1").await?;
    ensure!(code == 201 && replayed(&h2) && h2.get("etag") == h1.get("etag"), "retry: {code} {h2:?}");
    // Without the key the same PUT is just unchanged (200).
    let (code, _) = api.put_yaml(&cluster, &spec).await?;
    ensure!(code == 200, "{code}");

    // PATCH: the same key with another request is refused and changes nothing.
    let scale = |key: &'static str, n: u32| {
        let (api, cluster) = (api.clone(), cluster.clone());
        async move { api.json_with("PATCH", &format!("{cluster}/pools/datanode"), &[("idempotency-key", key)], &json!({ "replicas": n })).await }
    };
    let (code, c, _) = scale("scale-1", 2).await?;
    ensure!(code == 200 && c["spec"]["pools"]["datanode"]["replicas"] == 2, "{code} {c}");
    let (code, p, _) = scale("scale-1", 3).await?;
    ensure!(code == 422 && p["code"] == "idempotency_key_reused", "{code} {p}");
    let (_, c) = api.get(&cluster).await?;
    ensure!(c["spec"]["pools"]["datanode"]["replicas"] == 2, "a refused reuse changed the cluster: {c}");

    // DELETE: the retry of a delete whose answer was lost is a 204, not a 404.
    let (code, h, _) = api.raw("DELETE", &cluster, &[("idempotency-key", "delete-1")], vec![]).await?;
    ensure!(code == 204 && !replayed(&h), "{code}");
    let (code, h, _) = api.raw("DELETE", &cluster, &[("idempotency-key", "delete-1")], vec![]).await?;
    ensure!(code == 204 && replayed(&h), "retried delete: {code}");
    let (code, _, _) = api.raw("DELETE", &cluster, &[("idempotency-key", "delete-2")], vec![]).await?;
    ensure!(code == 404, "a new delete of a deleted cluster: {code}");

    // Another token with the same key is another request.
    let other = Api::new(&orch.url).with_token(&orch.token("admin", None).await?);
    let (code, _, _) = other.raw("DELETE", &cluster, &[("idempotency-key", "delete-1")], vec![]).await?;
    ensure!(code == 404, "another token's key replayed this token's answer: {code}");
    let (code, p, _) = api.json_with("PUT", &format!("/v1/tenants/{tenant}/quota"), &[("idempotency-key", &"k".repeat(300))], &json!({ "quota": {} })).await?;
    ensure!(code == 422 && p["errors"][0]["field"] == "Idempotency-Key", "{code} {p}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_clusters_ends_early_when_its_clusters_are_big() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start_with(bins(), dir.path(), 0, &["--rate-limit", "100000", "--max-pending-per-cluster", "5000"])?;
    let api = orch.api();
    let (code, body) = api.post("/v1/tenants", json!({ "name": "big", "quota": "unlimited" })).await?;
    ensure!(code == 201, "{code} {body}");
    for name in ["a", "b", "c", "d"] {
        let spec = format!("tenant: big\nname: {name}\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: 4000, cpu: 100m, memory: 256Mi}}\n");
        let (code, body) = api.put_yaml(&format!("/v1/tenants/big/clusters/{name}"), &spec).await?;
        ensure!(code == 201, "{name}: {code} {}", body.to_string().chars().take(300).collect::<String>());
    }
    // 4 clusters of 4,000 instances: the first page stops once it holds 10,000 (3 clusters).
    let (code, page) = api.get("/v1/clusters?limit=100").await?;
    ensure!(code == 200, "{code}");
    let names: Vec<&str> = page["items"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
    ensure!(names == ["a", "b", "c"] && page["next"] == "big/c", "first page: {names:?} next {}", page["next"]);
    let (code, page) = api.get("/v1/clusters?limit=100&after=big/c").await?;
    let names: Vec<&str> = page["items"].as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default();
    ensure!(code == 200 && names == ["d"] && page["next"].is_null(), "second page: {names:?} {}", page["next"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_scale_and_apply_change_only_the_cluster_they_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let api = orch.api();
    let tenant = unique("read");
    let spec = |replicas: u32, cpu: &str| {
        format!("tenant: {tenant}\nname: c\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: {replicas}, cpu: {cpu}, memory: 256Mi}}\n")
    };
    api.create_tenant_and_cluster(&tenant, "c", &spec(1, "100m")).await?;
    let cluster = format!("/v1/tenants/{tenant}/clusters/c");
    // Someone changes the cluster after the CLI read it and before its write arrives.
    let meddle = |trigger: &'static [u8], change: String| {
        let (api, cluster) = (api.clone(), cluster.clone());
        let meddler = move || {
            let (api, cluster, change) = (api.clone(), cluster.clone(), change.clone());
            Box::pin(async move {
                let _ = api.put_yaml(&cluster, &change).await;
            }) as futures::future::BoxFuture<'static, ()>
        };
        meddling_proxy(orch.url.trim_start_matches("http://").to_string(), trigger, meddler)
    };
    let run = |port: u16, args: Vec<String>| {
        let (proxy, admin) = (format!("http://127.0.0.1:{port}"), orch.admin.clone());
        tokio::task::spawn_blocking(move || herd(&proxy, &admin, &args.iter().map(String::as_str).collect::<Vec<_>>()))
    };

    // scale: refused (412), saying what to do; the other change stays.
    let port = meddle(b"PATCH ", spec(1, "200m")).await?;
    let (ok, out) = run(port, vec!["scale".into(), format!("{tenant}/c"), "datanode=3".into()]).await??;
    eprintln!("{out}");
    ensure!(!ok && out.contains("generation") && out.contains("run the command again"), "scaled a cluster changed after it was read: {out}");
    let (code, c) = api.get(&cluster).await?;
    ensure!(code == 200 && c["spec"]["pools"]["datanode"]["replicas"] == 1 && c["spec"]["pools"]["datanode"]["cpu"] == "200m", "{code} {c}");

    // apply: the same.
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, spec(2, "200m"))?;
    let port = meddle(b"PUT ", spec(1, "300m")).await?;
    let (ok, out) = run(port, vec!["apply".into(), "-f".into(), file.display().to_string()]).await??;
    eprintln!("{out}");
    ensure!(!ok && out.contains("generation") && out.contains("run the command again"), "applied over a cluster changed after it was read: {out}");
    let (code, c) = api.get(&cluster).await?;
    ensure!(code == 200 && c["spec"]["pools"]["datanode"]["cpu"] == "300m", "{code} {c}");

    // Unchanged since read: both go through.
    let (ok, out) = herd(&orch.url, &orch.admin, &["apply", "-f", &file.display().to_string()])?;
    ensure!(ok && out.contains("configured"), "{out}");
    let (ok, out) = herd(&orch.url, &orch.admin, &["scale", &format!("{tenant}/c"), "datanode=3"])?;
    ensure!(ok, "{out}");
    let (_, c) = api.get(&cluster).await?;
    ensure!(c["spec"]["pools"]["datanode"]["replicas"] == 3 && c["spec"]["pools"]["datanode"]["cpu"] == "200m", "{c}");
    Ok(())
}

/// A TCP proxy to `upstream` that, the first time a request starting with `trigger` passes,
/// runs `before` and only then forwards it.
async fn meddling_proxy<F>(upstream: String, trigger: &'static [u8], before: F) -> Result<u16>
where
    F: Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (before, done) = (Arc::new(before), Arc::new(AtomicBool::new(false)));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, before, done) = (upstream.clone(), before.clone(), done.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let back = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if buf[..n].starts_with(trigger) && !done.swap(true, Ordering::SeqCst) {
                        before().await;
                    }
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = back.await;
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_delete_deletes_only_the_cluster_it_showed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let orch = Orchestrator::start(dir.path(), 0)?;
    let api = orch.api();
    let tenant = unique("shown");
    let spec = format!("tenant: {tenant}\nname: c\nimages: {{datanode: herd/datanode:testbed}}\npools:\n  datanode: {{replicas: 1, cpu: 100m, memory: 256Mi}}\n");
    api.create_tenant_and_cluster(&tenant, "c", &spec).await?;
    // Someone scales the cluster after `herd delete` read it and before its DELETE arrives.
    let cluster = format!("/v1/tenants/{tenant}/clusters/c");
    let meddler = {
        let (api, cluster) = (api.clone(), cluster.clone());
        move || {
            let (api, cluster) = (api.clone(), cluster.clone());
            Box::pin(async move {
                let _ = api.patch(&format!("{cluster}/pools/datanode"), json!({ "replicas": 2 })).await;
            }) as futures::future::BoxFuture<'static, ()>
        }
    };
    let port = meddling_proxy(orch.url.trim_start_matches("http://").to_string(), b"DELETE ", meddler).await?;
    let (proxy, admin, target) = (format!("http://127.0.0.1:{port}"), orch.admin.clone(), format!("{tenant}/c"));
    let (ok, out) = tokio::task::spawn_blocking(move || herd(&proxy, &admin, &["delete", &target, "--yes"])).await??;
    eprintln!("{out}");
    ensure!(!ok && out.contains("generation"), "deleted a cluster that changed after it was shown: {out}");
    let (code, c) = api.get(&cluster).await?;
    ensure!(code == 200 && c["spec"]["pools"]["datanode"]["replicas"] == 2, "{code} {c}");
    // Unchanged since it was read: deleted.
    let (ok, out) = herd(&orch.url, &orch.admin, &["delete", &format!("{tenant}/c"), "--yes"])?;
    ensure!(ok, "{out}");
    ensure!(api.get(&cluster).await?.0 == 404, "not deleted");
    Ok(())
}
