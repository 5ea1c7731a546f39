//! Several orchestrators on one three-member etcd cluster (Debian's etcd-server, started here
//! on loopback): one leads through an etcd lease, the other redirects to it; a paused
//! (partitioned) old leader cannot write once its lease is gone; losing one etcd member
//! changes nothing, losing two refuses writes clearly while the last state can still be
//! read, and bringing them back resumes with nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::etcd::EtcdCluster;
use herd_tests::{Api, Orchestrator, bins, free_port, unique, wait_for};
use serde_json::{Value, json};

/// The lease of the orchestrators of the pause test: failover is expected within it plus a second.
const TTL: Duration = Duration::from_secs(3);

/// The lease when etcd members die: it must outlast etcd's own election (1–2 s here), as
/// etcd renews no lease without a leader; the default.
const TTL_ETCD_LOSS: Duration = Duration::from_secs(5);

/// Starts an orchestrator on `etcd`. The first one writes the admin token; the others get
/// a copy of it and of the agents' log key (what an operator copies to every node).
fn orchestrator(etcd: &EtcdCluster, dir: &Path, first: Option<&Orchestrator>, ttl: Duration) -> Result<Orchestrator> {
    std::fs::create_dir_all(dir)?;
    if let Some(first) = first {
        for f in ["admin.token", "agent-logs.key"] {
            std::fs::copy(first.data_dir.join(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
        }
    }
    let endpoints = etcd.endpoints();
    let ttl = format!("{}s", ttl.as_secs());
    Orchestrator::start_with(bins(), dir, free_port(), &["--store", "etcd", "--etcd-endpoints", &endpoints, "--lease-ttl", &ttl, "--rate-limit", "100000"])
}

/// `GET /v1/leader` of `o`: its role and the leader it names.
async fn leader_of(o: &Orchestrator) -> Result<(String, Option<String>)> {
    let (status, body) = Api::new(&o.url).get("/v1/leader").await.with_context(|| format!("GET {}/v1/leader", o.url))?;
    ensure!(status == 200, "GET /v1/leader: {status} {body}");
    Ok((body["role"].as_str().unwrap_or_default().to_string(), body["leader"].as_str().map(String::from)))
}

/// Waits until `o` says it leads.
async fn until_leading(o: &Orchestrator, within: Duration) -> Result<()> {
    wait_for(&format!("{} to lead", o.url), within, || async { Ok((leader_of(o).await?.0 == "leader").then_some(())) }).await
}

fn signal(o: &Orchestrator, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill").args([sig, &o.proc.child.id().to_string()]).status()?;
    ensure!(status.success(), "kill {sig} failed");
    Ok(())
}

/// Sends a raw HTTP/1.1 request to `url`'s address and returns the connection to read the
/// answer from later: the request waits in the socket even while the server is stopped.
fn send_raw(url: &str, method: &str, path: &str, token: &str, body: &Value) -> Result<std::net::TcpStream> {
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.to_string();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes())?;
    Ok(conn)
}

fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_old_leader_cannot_write_and_the_other_takes_over_within_the_ttl() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let etcd = EtcdCluster::start(&tmp.path().join("etcd"), 3)?;
    let a = orchestrator(&etcd, &tmp.path().join("a"), None, TTL)?;
    until_leading(&a, Duration::from_secs(20)).await?;
    let b = orchestrator(&etcd, &tmp.path().join("b"), Some(&a), TTL)?;
    let result = async {
        wait_for("b to follow a", Duration::from_secs(20), || async { Ok((leader_of(&b).await? == ("follower".into(), Some(a.url.clone()))).then_some(())) })
            .await?;

        // The follower redirects, with the leader named; the leader answers.
        let admin = b.api();
        let (status, headers, _) = admin.raw("GET", "/v1/tenants", &[], vec![]).await?;
        ensure!(status == 307, "a follower answered {status}");
        ensure!(headers.get("herd-leader").and_then(|v| v.to_str().ok()) == Some(a.url.as_str()), "{headers:?}");
        ensure!(headers.get("location").and_then(|v| v.to_str().ok()) == Some(format!("{}/v1/tenants", a.url).as_str()), "{headers:?}");
        let kept = unique("kept");
        let (status, body) = a.api().post("/v1/tenants", json!({ "name": kept })).await?;
        ensure!(status == 201, "{status} {body}");

        // Pause the leader (as a partition or a stalled machine would): the other leads
        // within the lease's TTL and a second.
        signal(&a, "-STOP")?;
        let paused = Instant::now();
        until_leading(&b, TTL + Duration::from_secs(10)).await?;
        let took = paused.elapsed();
        ensure!(took <= TTL + Duration::from_secs(1), "the follower took {took:?} to lead (lease {TTL:?})");

        // A write sent to the paused old leader waits in its socket; when it resumes, its
        // lease is gone: the write is redirected or refused, never applied.
        let lost = unique("lost");
        let mut conn = send_raw(&a.url, "POST", "/v1/tenants", &a.admin, &json!({ "name": lost }))?;
        signal(&a, "-CONT")?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)?;
        let status = status_of(&answer);
        ensure!(status == 307 || status == 503, "the old leader answered a write {status}:\n{answer}");
        let new = b.api();
        let (status, _) = new.get(&format!("/v1/tenants/{lost}")).await?;
        ensure!(status == 404, "the old leader's write is in the store ({status})");
        let (status, body) = new.get(&format!("/v1/tenants/{kept}")).await?;
        ensure!(status == 200, "an acknowledged write is gone: {status} {body}");

        // The old leader follows the new one.
        wait_for("a to follow b", Duration::from_secs(20), || async { Ok((leader_of(&a).await? == ("follower".into(), Some(b.url.clone()))).then_some(())) })
            .await?;
        ensure!(a.proc.log_text().contains("stopped leading"), "a did not log that it stopped leading:\n{}", a.proc.log_text());
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("a:\n{}\nb:\n{}\netcd:\n{}", a.proc.log_text(), b.proc.log_text(), etcd.logs());
    }
    result
}

/// Retries `f` until it answers 2xx within `within` (etcd electing a leader of its own after
/// losing a member refuses for a moment); the last answer otherwise.
async fn until_ok<F, Fut>(within: Duration, mut f: F) -> Result<(u16, Value)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(u16, Value)>>,
{
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = f().await?;
        if (200..300).contains(&status) || Instant::now() > deadline {
            return Ok((status, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whoever of `orchs` leads now.
async fn current_leader<'a>(orchs: &[&'a Orchestrator], within: Duration) -> Result<&'a Orchestrator> {
    let deadline = Instant::now() + within;
    loop {
        for o in orchs {
            if leader_of(o).await?.0 == "leader" {
                return Ok(o);
            }
        }
        if Instant::now() > deadline {
            bail!("nobody leads after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(body: &Value) -> Vec<String> {
    body["items"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_etcd_member_lost_changes_nothing_two_refuse_writes_and_serve_the_last_state() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut etcd = EtcdCluster::start(&tmp.path().join("etcd"), 3)?;
    let a = orchestrator(&etcd, &tmp.path().join("a"), None, TTL_ETCD_LOSS)?;
    until_leading(&a, Duration::from_secs(20)).await?;
    let b = orchestrator(&etcd, &tmp.path().join("b"), Some(&a), TTL_ETCD_LOSS)?;
    let both = [&a, &b];
    let tenants: Vec<String> = (0..3).map(|i| unique(&format!("m{i}"))).collect();
    let result = async {
        let create = |name: String| async move {
            let leader = current_leader(&both, Duration::from_secs(30)).await?;
            let key = format!("create-{name}");
            let body = serde_json::to_vec(&json!({ "name": name }))?;
            let headers = [("Idempotency-Key", key.as_str()), ("content-type", "application/json")];
            let (status, _, bytes) = leader.api().raw("POST", "/v1/tenants", &headers, body).await?;
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            Ok::<_, anyhow::Error>((status, body))
        };
        let (status, body) = until_ok(Duration::from_secs(30), || create(tenants[0].clone())).await?;
        ensure!(status == 201, "{status} {body}");

        // One member down: writes go on (after etcd's own election, if it led).
        etcd.kill(0);
        let (status, body) = until_ok(Duration::from_secs(30), || create(tenants[1].clone())).await?;
        ensure!(status == 201, "with one etcd member down: {status} {body}");

        // Two down: no quorum. Nobody leads; a write is refused with a clear answer; the
        // orchestrator that led last still answers reads of its last state.
        let last = current_leader(&both, Duration::from_secs(30)).await?;
        etcd.kill(1);
        wait_for("nobody to lead", Duration::from_secs(20), || async {
            Ok((leader_of(&a).await?.1.is_none() && leader_of(&b).await?.1.is_none()).then_some(()))
        })
        .await?;
        for o in both {
            let request = serde_json::to_vec(&json!({ "name": tenants[2] }))?;
            let (status, _, bytes) = o.api().raw("POST", "/v1/tenants", &[("content-type", "application/json")], request).await?;
            let text = String::from_utf8_lossy(&bytes);
            ensure!(status == 503, "a write without an etcd quorum answered {status} {text}");
            let body: Value = serde_json::from_slice(&bytes).with_context(|| format!("not JSON: {text}"))?;
            let detail = body["detail"].as_str().unwrap_or_default();
            ensure!(detail.contains("no orchestrator leads") && detail.contains("retry"), "{body}");
        }
        let (status, headers, bytes) = last.api().raw("GET", "/v1/tenants", &[], vec![]).await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        ensure!(status == 200, "the last leader's state cannot be read: {status} {body}");
        ensure!(headers.get("warning").and_then(|w| w.to_str().ok()).is_some_and(|w| w.contains("stale")), "no staleness warning: {headers:?}");
        let seen = names(&body);
        ensure!(tenants[..2].iter().all(|t| seen.contains(t)), "the last state lacks an acknowledged write: {seen:?}");
        let (status, _, _) = last.api().raw("GET", "/readyz", &[], vec![]).await?;
        ensure!(status == 503, "ready without a leader: {status}");

        // Both back: a leader again, the refused write can be made, nothing was lost.
        etcd.restart(0, false)?;
        etcd.restart(1, true)?;
        let (status, body) = until_ok(Duration::from_secs(60), || create(tenants[2].clone())).await?;
        ensure!(status == 201, "after etcd came back: {status} {body}");
        let leader = current_leader(&both, Duration::from_secs(30)).await?;
        let (status, body) = leader.api().get("/v1/tenants?limit=1000").await?;
        ensure!(status == 200, "{status} {body}");
        let seen = names(&body);
        ensure!(tenants.iter().all(|t| seen.contains(t)), "after etcd came back: {seen:?}");
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("a:\n{}\nb:\n{}\netcd:\n{}", a.proc.log_text(), b.proc.log_text(), etcd.logs());
    }
    result
}

fn spec(tenant: &str, n: u32) -> String {
    format!(
        "tenant: {tenant}\nname: c\nimages:\n  datanode: herd/testbed-base:latest\npools:\n  datanode: {{replicas: {n}, cpu: 100m, memory: 256Mi, maxPerHost: 100, command: {}}}\n",
        herd_tests::IDLE
    )
}

/// `herd` with `--server` listing every orchestrator (the CLI moves to the next when one fails).
fn herd(servers: &str, token: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(bins().join("herd")).args(["--server", servers, "--token-file"]).arg(token).args(args).output()?)
}

/// The tenant's containers as Docker reports them: (instance label, host label, running).
fn containers(tenant: &str) -> Result<Vec<(String, String, bool)>> {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label=herd.tenant={tenant}"), "--format", "{{.Label \"herd.instance\"}} {{.Label \"herd.host\"}} {{.State}}"])
        .output()?;
    ensure!(out.status.success(), "docker ps: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string(), f.next()? == "running"))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_leader_during_a_stream_of_scales_loses_and_doubles_nothing() -> Result<()> {
    herd_tests::docker();
    let tmp = tempfile::tempdir()?;
    let etcd = EtcdCluster::start(&tmp.path().join("etcd"), 3)?;
    let mut a = orchestrator(&etcd, &tmp.path().join("a"), None, TTL)?;
    until_leading(&a, Duration::from_secs(20)).await?;
    let b = orchestrator(&etcd, &tmp.path().join("b"), Some(&a), TTL)?;
    let servers = format!("{},{}", a.url, b.url);
    let token = tmp.path().join("a").join("admin.token");
    let tenant = unique("ha");
    let _cleanup = herd_tests::TenantContainers(tenant.clone());
    let mut agents = Vec::new();
    for i in 0..2 {
        let host = unique(&format!("hah{i}"));
        let secret = a.agent_token(&host).await?;
        agents.push(herd_tests::Agent::start(&servers, &secret, &host, &tmp.path().join(&host), "4", "4Gi")?);
    }
    let result = async {
        let (status, body) = a.api().post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(status == 201, "{status} {body}");
        let spec_file = tmp.path().join("spec.yaml");
        std::fs::write(&spec_file, spec(&tenant, 2))?;
        let out = herd(&servers, &token, &["apply", "-f", spec_file.to_str().unwrap_or_default()])?;
        ensure!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));

        // A stream of scales through the CLI; the leader is SIGKILLed after the fourth.
        let cluster = format!("{tenant}/c");
        let sizes = [3u32, 5, 4, 6, 8, 7, 9, 6, 10, 8, 11, 9];
        let mut took = None;
        for (i, n) in sizes.iter().enumerate() {
            if i == 4 {
                a.proc.kill();
                let killed = Instant::now();
                until_leading(&b, TTL + Duration::from_secs(10)).await?;
                took = Some(killed.elapsed());
            }
            let out = herd(&servers, &token, &["scale", &cluster, &format!("datanode={n}")])?;
            ensure!(out.status.success(), "scale to {n} (#{i}) was not acknowledged: {}", String::from_utf8_lossy(&out.stderr));
        }
        let took = took.context("no kill")?;
        ensure!(took <= TTL + Duration::from_secs(1), "the follower took {took:?} to lead (lease {TTL:?})");

        // Every acknowledged scale is there: the last size, and one generation per change.
        let last = *sizes.last().unwrap_or(&0);
        let (status, body) = b.api().get(&format!("/v1/tenants/{tenant}/clusters/c")).await?;
        ensure!(status == 200, "{status} {body}");
        ensure!(body["spec"]["pools"]["datanode"]["replicas"] == last, "replicas: {}", body["spec"]["pools"]["datanode"]);
        ensure!(body["generation"] == 1 + sizes.len() as u64, "generation {} after {} acknowledged scales", body["generation"], sizes.len());

        // The containers converge to exactly that many, each instance once, on the host the
        // orchestrator placed it on.
        let placed = wait_for("exactly the last size running, each instance once", Duration::from_secs(90), || async {
            let (_, body) = b.api().get(&format!("/v1/tenants/{tenant}/clusters/c")).await?;
            let running: Vec<_> = containers(&tenant)?.into_iter().filter(|c| c.2).collect();
            let ready = body["instances"].as_array().map(|v| v.len()) == Some(last as usize) && running.len() == last as usize;
            Ok(ready.then_some((body, running)))
        })
        .await;
        let (body, running) = match placed {
            Ok(v) => v,
            Err(e) => bail!("{e}\ncontainers: {:?}", containers(&tenant)?),
        };
        let mut names: Vec<&String> = running.iter().map(|c| &c.0).collect();
        names.sort();
        names.dedup();
        ensure!(names.len() == last as usize, "an instance runs twice: {running:?}");
        for inst in body["instances"].as_array().into_iter().flatten() {
            let name = inst["instance"]["name"].as_str().unwrap_or_default();
            let host = inst["host"].as_str().unwrap_or_default();
            let found: Vec<_> = running.iter().filter(|c| c.0 == name).collect();
            ensure!(found.len() == 1 && found[0].1 == host, "{name} is placed on {host}, runs as {found:?}");
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("a:\n{}\nb:\n{}", a.proc.log_text(), b.proc.log_text());
        for ag in &agents {
            eprintln!("agent {}:\n{}", ag.host_id, ag.proc.log_text());
        }
    }
    result
}
