//! The files of `deploy/systemd/` as shipped, rewritten only for loopback: `etcd-pki.sh`'s
//! certificates; three etcd members started as `herd-etcd.service` starts one (its
//! `ExecStart`, with the variables of `etcd-m1.env` for each member's name, ports and
//! certificate); two orchestrators on `orchestrator-etcd.yaml`, each with
//! `orchestrator.env`'s `HERD_ADVERTISE_URL`, sharing one `tls-init` certificate and the first
//! one's `agent-logs.key`. One leads, the other redirects to it; etcd refuses a client without
//! the client certificate; the leader SIGKILLed, the other leads. Needs Debian's etcd-server
//! and openssl; no Docker. (systemd itself does not run on these machines: the units'
//! sandboxing is not exercised here.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use herd_tests::{Proc, bins, free_port, root, wait_for};
use serde_json::Value;

fn deploy_file(name: &str) -> Result<String> {
    let path = root().join("deploy/systemd").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// `text` with each `(from, to)` replaced; fails when a `from` is not in it (the shipped file
/// changed shape: this test must follow).
fn rewrite(text: &str, pairs: &[(&str, String)]) -> Result<String> {
    let mut out = text.to_string();
    for (from, to) in pairs {
        ensure!(out.contains(from), "`{from}` is not in the file any more:\n{text}");
        out = out.replace(from, to);
    }
    Ok(out)
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
}

fn start_member(dir: &Path, pki: &Path, members: &[Member], i: usize) -> Result<Proc> {
    let m = &members[i];
    let unit = deploy_file("herd-etcd.service")?;
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).context("herd-etcd.service has no ExecStart")?;
    let mut words = exec.split_whitespace();
    let program = words.next().context("empty ExecStart")?;
    let initial: Vec<String> = members.iter().map(|m| format!("{}=https://127.0.0.1:{}", m.name, m.peer)).collect();
    let env = rewrite(
        &deploy_file("etcd-m1.env")?,
        &[
            ("ETCD_NAME=m1", format!("ETCD_NAME={}", m.name)),
            ("/var/lib/herd-etcd/data", dir.join(&m.name).display().to_string()),
            ("m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380,m3=https://10.0.0.3:2380", initial.join(",")),
            ("https://10.0.0.1:2380", format!("https://127.0.0.1:{}", m.peer)),
            ("https://10.0.0.1:2379", format!("https://127.0.0.1:{}", m.client)),
            ("/etc/herd/etcd/ca.pem", pki.join("ca.pem").display().to_string()),
            ("/etc/herd/etcd/member.pem", pki.join(format!("{}.pem", m.name)).display().to_string()),
            ("/etc/herd/etcd/member.key", pki.join(format!("{}.key", m.name)).display().to_string()),
        ],
    )?;
    let vars = env_file(&env);
    ensure!(
        !vars.iter().any(|(_, v)| v.contains("10.0.0.") || v.contains("/etc/herd") || v.contains("/var/lib")),
        "not all of etcd-m1.env rewritten:\n{env}"
    );
    let log = dir.join(format!("{}.log", m.name));
    let child = Command::new(program)
        .args(words)
        .envs(vars)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {program} (Debian's etcd-server: deploy/lib/etcd.sh)"))?;
    Ok(Proc { child, log })
}

/// A client of etcd's JSON gateway with the CA and, when `cert`, the client certificate.
fn etcd_client(pki: &Path, cert: bool) -> Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.pem"))?)?;
    let mut b = reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(2));
    if cert {
        let mut pem = std::fs::read(pki.join("client.pem"))?;
        pem.extend(std::fs::read(pki.join("client.key"))?);
        b = b.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

struct Orch {
    proc: Proc,
    url: String,
    data: PathBuf,
}

fn start_orchestrator(dir: &Path, name: &str, pki: &Path, tls: &Path, members: &[Member], port: u16) -> Result<Orch> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data)?;
    let endpoints: Vec<String> = members.iter().map(|m| format!("  - https://127.0.0.1:{}", m.client)).collect();
    let config = rewrite(
        &deploy_file("orchestrator-etcd.yaml")?,
        &[
            ("/var/lib/herd/orchestrator", data.display().to_string()),
            ("0.0.0.0:7480", format!("127.0.0.1:{port}")),
            ("/etc/herd/tls/server.pem", tls.join("server.pem").display().to_string()),
            ("/etc/herd/tls/server.key", tls.join("server.key").display().to_string()),
            ("  - https://10.0.0.1:2379\n  - https://10.0.0.2:2379\n  - https://10.0.0.3:2379", endpoints.join("\n")),
            ("/etc/herd/etcd/ca.pem", pki.join("ca.pem").display().to_string()),
            ("/etc/herd/etcd/client.pem", pki.join("client.pem").display().to_string()),
            ("/etc/herd/etcd/client.key", pki.join("client.key").display().to_string()),
        ],
    )?;
    let live: Vec<&str> = config.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    ensure!(!live.iter().any(|l| l.contains("10.0.0.") || l.contains("/etc/herd") || l.contains("/var/lib")), "not all of orchestrator-etcd.yaml rewritten:\n{config}");
    let config_path = dir.join(format!("{name}.yaml"));
    std::fs::write(&config_path, config)?;
    let url = format!("https://127.0.0.1:{port}");
    let env = rewrite(&deploy_file("orchestrator.env")?, &[("https://orch1.example.com:7480", url.clone())])?;
    let env = env_file(&env);
    ensure!(env.iter().any(|(k, _)| k == "HERD_ADVERTISE_URL"), "orchestrator.env sets no HERD_ADVERTISE_URL");
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new(bins().join("herd-orchestrator"))
        .arg("--config")
        .arg(&config_path)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start herd-orchestrator")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let proc = Proc { child, log };
    ensure!(line.contains(&url), "{name} does not serve {url}: {line:?}\n{}", proc.log_text());
    Ok(Orch { proc, url, data })
}

/// `GET /v1/leader` of `orch`, over HTTPS with the local CA.
async fn leader(http: &reqwest::Client, orch: &Orch) -> Result<Value> {
    Ok(http.get(format!("{}/v1/leader", orch.url)).send().await?.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_files_run_a_control_plane_on_loopback() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (pki, tls) = (tmp.path().join("pki"), tmp.path().join("tls"));
    let out = Command::new("bash")
        .arg(root().join("deploy/systemd/etcd-pki.sh"))
        .arg(&pki)
        .args(["m1=127.0.0.1", "m2=127.0.0.1", "m3=localhost"])
        .output()
        .context("cannot run etcd-pki.sh")?;
    ensure!(out.status.success(), "etcd-pki.sh: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(bins().join("herd-orchestrator")).args(["tls-init", "--dir"]).arg(&tls).args(["--name", "127.0.0.1", "--name", "localhost"]).output()?;
    ensure!(out.status.success(), "tls-init: {}", String::from_utf8_lossy(&out.stderr));

    let members: Vec<Member> = (1..=3).map(|i| Member { name: format!("m{i}"), client: free_port(), peer: free_port() }).collect();
    let etcd_dir = tmp.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir)?;
    let mut etcd = Vec::new();
    for i in 0..members.len() {
        etcd.push(start_member(&etcd_dir, &pki, &members, i)?);
    }
    let logs = |etcd: &[Proc]| etcd.iter().map(Proc::log_text).collect::<Vec<_>>().join("\n---\n");
    let with_cert = etcd_client(&pki, true)?;
    for m in &members {
        let url = format!("https://127.0.0.1:{}/health", m.client);
        let healthy = wait_for(&format!("etcd member {} healthy", m.name), Duration::from_secs(60), || async {
            let r = with_cert.get(&url).send().await?;
            Ok((r.status() == 200).then_some(()))
        })
        .await;
        if let Err(e) = healthy {
            bail!("{e}\n{}", logs(&etcd));
        }
    }
    // ETCD_CLIENT_CERT_AUTH: no client certificate, no answer.
    let url = format!("https://127.0.0.1:{}/v3/kv/range", members[0].client);
    let read = with_cert.post(&url).body(r#"{"key":"AA=="}"#).send().await?;
    ensure!(read.status() == 200, "etcd refused a read with the client certificate: {}", read.status());
    let refused = etcd_client(&pki, false)?.post(&url).body(r#"{"key":"AA=="}"#).send().await;
    ensure!(refused.is_err(), "etcd answered a client without a certificate: {refused:?}");

    let orch_dir = tmp.path().join("orch");
    let a = start_orchestrator(&orch_dir, "a", &pki, &tls, &members, free_port())?;
    let key = a.data.join("agent-logs.key");
    wait_for("a's agent-logs.key", Duration::from_secs(10), || async { Ok(key.exists().then_some(())) }).await?;
    std::fs::create_dir_all(orch_dir.join("b"))?;
    std::fs::copy(&key, orch_dir.join("b/agent-logs.key"))?;
    let b = start_orchestrator(&orch_dir, "b", &pki, &tls, &members, free_port())?;
    let mut orchs = [Some(a), Some(b)];

    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem"))?)?;
    let http = reqwest::Client::builder().add_root_certificate(ca).redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(5)).build()?;
    let report = |orchs: &[Option<Orch>]| orchs.iter().flatten().map(|o| format!("{}:\n{}", o.url, o.proc.log_text())).collect::<Vec<_>>().join("\n");
    let roles = wait_for("one leader and one follower", Duration::from_secs(30), || async {
        let mut roles = Vec::new();
        for o in orchs.iter().flatten() {
            roles.push(leader(&http, o).await?);
        }
        let leaders: Vec<&Value> = roles.iter().filter(|r| r["role"] == "leader").collect();
        Ok((leaders.len() == 1 && roles.iter().all(|r| r["leader"] == leaders[0]["self"])).then_some(roles))
    })
    .await;
    let roles = match roles {
        Ok(r) => r,
        Err(e) => bail!("{e}\n{}", report(&orchs)),
    };
    let leading = usize::from(roles[1]["role"] == "leader");
    let (lead_url, follow_url) = (orchs[leading].as_ref().unwrap().url.clone(), orchs[1 - leading].as_ref().unwrap().url.clone());
    ensure!(roles[leading]["self"] == lead_url.as_str(), "the leader advertises {} (orchestrator.env), not {lead_url}", roles[leading]["self"]);

    // The first orchestrator's admin token works through the follower's redirect.
    let admin = std::fs::read_to_string(orchs[0].as_ref().unwrap().data.join("admin.token"))?.trim().to_string();
    let r = http.get(format!("{follow_url}/v1/hosts")).bearer_auth(&admin).send().await?;
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    ensure!(r.status() == 307 && location == format!("{lead_url}/v1/hosts"), "the follower answered {} to {location:?}", r.status());
    let r = http.get(format!("{lead_url}/v1/hosts")).bearer_auth(&admin).send().await?;
    ensure!(r.status() == 200, "the leader answered {}", r.status());

    // The leader SIGKILLed: the other leads within the lease (5 s) and a few polls.
    orchs[leading].take();
    let survivor = orchs[1 - leading].as_ref().unwrap();
    let led = wait_for("the other orchestrator to lead", Duration::from_secs(15), || async {
        Ok((leader(&http, survivor).await?["role"] == "leader").then_some(()))
    })
    .await;
    if let Err(e) = led {
        bail!("{e}\n{}", report(&orchs));
    }
    let r = http.post(format!("{follow_url}/v1/tenants")).bearer_auth(&admin).json(&serde_json::json!({"name": "after"})).send().await?;
    ensure!(r.status() == 201, "a write to the new leader answered {}", r.status());
    drop(etcd);
    Ok(())
}
