//! Per-instance logs end to end, on the real Docker engine: two containers on one host write
//! numbered lines flat out (one also lines over 64 KiB and bytes that are not UTF-8); each
//! instance's files must hold exactly its own lines, in order, none missing or doubled, across
//! rotation and two SIGKILLs of the agent mid-stream. Then the read side: `herd logs -f` sees
//! a new line within a second, tail over REST, 404 for an unknown or foreign instance. Last,
//! a full log disk (a small tmpfs) is reported on the host's status and capture resumes,
//! losing nothing, when space returns; lines are forwarded to a syslog collector on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_api::record::{self, Stream};
use herd_tests::{Agent, Orchestrator, TenantContainers, bins, docker, free_port, unique, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

/// Numbered lines on stdout and stderr, flat out: N of each, then waits for `go` to appear in
/// its log folder (so the test can kill the agent first), N more of each, then `end`.
fn interleaved(n: u32) -> String {
    format!(
        r#"i=0; while [ $i -lt {n} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
while [ ! -e /hadoop/logs/go ]; do sleep 0.05; done
while [ $i -lt {n2} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
echo end
while :; do if [ -e /hadoop/logs/ping ]; then rm -f /hadoop/logs/ping; echo pong; fi; sleep 0.02; done"#,
        n2 = 2 * n
    )
}

/// Like [`interleaved`], but every 25th line on stdout is over 64 KiB and every 7th line on
/// stderr carries bytes that are not UTF-8 (0xff 0xfe) and a backslash.
fn long_and_binary(n: u32) -> String {
    let body = r#"if [ $((i % 25)) -eq 0 ]; then printf 'long %d ' $i; head -c 70000 /dev/zero | tr '\0' L; echo; else echo "out $i"; fi
if [ $((i % 7)) -eq 0 ]; then printf 'bin %d \377\376\\x\n' $i >&2; else echo "err $i" >&2; fi
i=$((i+1))"#;
    format!(
        "i=0; while [ $i -lt {n} ]; do {body}; done
while [ ! -e /hadoop/logs/go ]; do sleep 0.05; done
while [ $i -lt {n2} ]; do {body}; done
echo end
exec sleep 1000000",
        n2 = 2 * n
    )
}

fn expected_long_and_binary(n: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for i in 0..2 * n {
        out.push(if i % 25 == 0 { [format!("long {i} ").into_bytes(), vec![b'L'; 70000]].concat() } else { format!("out {i}").into_bytes() });
        err.push(if i % 7 == 0 { [format!("bin {i} ").into_bytes(), vec![0xff, 0xfe, b'\\', b'x']].concat() } else { format!("err {i}").into_bytes() });
    }
    out.push(b"end".to_vec());
    (out, err)
}

fn spec(tenant: &str, a: &str, b: &str) -> String {
    let cmd = |s: &str| serde_json::to_string(&["/bin/sh", "-c", s]).unwrap_or_default();
    format!(
        "tenant: {tenant}
name: prod
images:
  datanode: herd/testbed-base:latest
  nodemanager: herd/testbed-base:latest
pools:
  datanode:
    replicas: 1
    cpu: 500m
    memory: 256Mi
    command: {}
  nodemanager:
    replicas: 1
    cpu: 500m
    memory: 512Mi
    command: {}
",
        cmd(a),
        cmd(b)
    )
}

/// Every record in an instance's `stdio/` folder, oldest first: (stream, payload).
fn records(stdio: &Path) -> Result<Vec<(Stream, Vec<u8>)>> {
    let mut files: Vec<(u32, PathBuf)> = Vec::new();
    if !stdio.exists() {
        return Ok(vec![]);
    }
    for e in std::fs::read_dir(stdio)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let n = match name.strip_prefix("current.log") {
            Some("") => 0,
            Some(rest) => rest.trim_start_matches('.').parse().context("odd file name")?,
            None => continue,
        };
        files.push((n, p));
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut out = Vec::new();
    for (_, f) in files {
        let bytes = std::fs::read(&f)?;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if !line.ends_with(b"\n") {
                continue; // being written
            }
            let r = record::parse(line).with_context(|| format!("not a record in {}: {:?}", f.display(), String::from_utf8_lossy(line)))?;
            if r.stream != Stream::Herd {
                out.push((r.stream, record::unescape(r.payload)));
            }
        }
    }
    Ok(out)
}

fn split(recs: &[(Stream, Vec<u8>)]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let pick = |s| recs.iter().filter(|r| r.0 == s).map(|r| r.1.clone()).collect();
    (pick(Stream::Stdout), pick(Stream::Stderr))
}

/// Fails with the first difference, not with megabytes of lines.
fn same_lines(what: &str, got: &[Vec<u8>], want: &[Vec<u8>]) -> Result<()> {
    let short = |l: &[u8]| String::from_utf8_lossy(&l[..l.len().min(60)]).into_owned();
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        let at = got[i].iter().zip(&want[i]).position(|(a, b)| a != b).unwrap_or(got[i].len().min(want[i].len()));
        let around = |l: &[u8]| String::from_utf8_lossy(&l[at.saturating_sub(10)..(at + 40).min(l.len())]).into_owned();
        bail!(
            "{what}: line {i} is {:?} ({} bytes), expected {:?} ({} bytes); first difference at byte {at}: {:?} instead of {:?}",
            short(&got[i]), got[i].len(), short(&want[i]), want[i].len(), around(&got[i]), around(&want[i])
        );
    }
    ensure!(got.len() == want.len(), "{what}: {} lines, expected {} (next expected: {:?})", got.len(), want.len(), want.get(got.len()).map(|l| short(l)));
    Ok(())
}

/// What the agents logged about capture, and what each instance's files hold, for a failure.
fn diagnose(data: &Path, instances: &[&Path]) -> String {
    let mut out = String::new();
    for d in instances {
        let recs = records(&d.join("stdio")).unwrap_or_default();
        let (o, e) = split(&recs);
        let last = |v: &[Vec<u8>]| v.last().map(|l| String::from_utf8_lossy(&l[..l.len().min(40)]).into_owned());
        out.push_str(&format!("{}: {} stdout (last {:?}), {} stderr (last {:?})\n", d.display(), o.len(), last(&o), e.len(), last(&e)));
    }
    let mut logs: Vec<_> = std::fs::read_dir(data).into_iter().flatten().flatten().map(|e| e.path()).collect();
    logs.sort();
    for p in logs.iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("agent-"))) {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        out.push_str(&format!("--- {}\n", p.display()));
        for l in text.lines().filter(|l| l.contains("capture") || l.contains("WARN") || l.contains("Docker sent")) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn count_of(stdio: &Path) -> usize {
    records(stdio).map(|r| r.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_gets_exactly_its_lines_across_rotation_and_agent_kills() -> Result<()> {
    docker();
    let tenant = unique("logs");
    let _cleanup = TenantContainers(tenant.clone());
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(&tmp.path().join("orch"), free_port())?;
    let api = orch.api();
    let host = format!("{tenant}-h1");
    let agent_token = orch.agent_token(&host).await?;
    let data = tmp.path().join(&host);
    // Small files, so both instances rotate many times; enough of them to keep every line.
    // Docker's own copy rotates too (4 MiB files, which still hold what is written while the
    // agent is away), which its follow answers with replays.
    let flags = ["--log-max-size", "256Ki", "--log-max-files", "1000", "--docker-log-max-size", "4Mi"];
    let start = || Agent::start_with(&orch.url, &agent_token, &host, &data, "4", "2Gi", &flags);
    let mut agent = start()?;
    wait_for("the host to register", WAIT, || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        Ok(hosts["items"].as_array().is_some_and(|h| h.iter().any(|h| h["state"] == "ready")).then_some(()))
    })
    .await?;
    let (status, _) = api.post("/v1/tenants", json!({"name": tenant})).await?;
    ensure!(status == 201);
    let n = 30_000;
    let nb = 1_000;
    let (status, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/prod"), &spec(&tenant, &interleaved(n), &long_and_binary(nb))).await?;
    ensure!(status == 201, "{body}");

    let inst = data.join("logs").join(&tenant).join("prod");
    let (a, b) = (inst.join("datanode-0"), inst.join("nodemanager-0"));
    // Mid-stream: both are being captured, then the agent dies.
    wait_for("capture of both instances", WAIT, || async { Ok((count_of(&a.join("stdio")) > 1000 && count_of(&b.join("stdio")) > 100).then_some(())) }).await?;
    agent.proc.kill();
    // The second half is written while no agent runs; then a new agent starts, and is
    // killed again while it catches up and the writers are still writing.
    for d in [&a, &b] {
        std::fs::write(d.join("hadoop").join("go"), b"")?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = count_of(&a.join("stdio"));
    agent = start()?;
    wait_for("the new agent to capture more", WAIT, || async { Ok((count_of(&a.join("stdio")) > before + 1000).then_some(())) }).await?;
    agent.proc.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent = start()?;

    let done = |d: &Path| records(&d.join("stdio")).map(|r| r.iter().any(|(s, p)| *s == Stream::Stdout && p == b"end"));
    wait_for("both writers' last line to be captured", WAIT, || async { Ok((done(&a)? && done(&b)?).then_some(())) })
        .await
        .with_context(|| diagnose(&data, &[&a, &b]))?;
    // For people reading the output: how often Docker re-sent records the agent then dropped.
    let mut replays = 0;
    for e in std::fs::read_dir(&data)? {
        let p = e?.path();
        if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("agent-")) {
            replays += std::fs::read_to_string(&p)?.matches("Docker sent records again").count();
        }
    }
    eprintln!("agent log lines about records Docker sent twice: {replays}");
    let stdio_files = std::fs::read_dir(a.join("stdio"))?.count();
    ensure!(stdio_files > 3, "expected several rotated files, found {stdio_files}");

    let (out, err) = split(&records(&a.join("stdio"))?);
    let mut want_out: Vec<Vec<u8>> = (0..2 * n).map(|i| format!("out {i}").into_bytes()).collect();
    want_out.push(b"end".to_vec());
    same_lines("datanode-0 stdout", &out, &want_out)?;
    same_lines("datanode-0 stderr", &err, &(0..2 * n).map(|i| format!("err {i}").into_bytes()).collect::<Vec<_>>())?;
    let (out, err) = split(&records(&b.join("stdio"))?);
    let (want_out, want_err) = expected_long_and_binary(nb);
    same_lines("nodemanager-0 stdout", &out, &want_out)?;
    same_lines("nodemanager-0 stderr", &err, &want_err)?;
    // The container cannot reach its captured output: only hadoop/ is mounted.
    let d = bollard::Docker::connect_with_local_defaults()?.negotiate_version().await?;
    let name = format!("herd.{tenant}.prod.datanode-0");
    let info = d.inspect_container(&name, None::<bollard::query_parameters::InspectContainerOptions>).await?;
    let binds = info.host_config.clone().and_then(|h| h.binds).unwrap_or_default();
    ensure!(binds.iter().any(|b| b.ends_with("/datanode-0/hadoop:/hadoop/logs")), "binds: {binds:?}");
    ensure!(binds.iter().all(|b| !b.contains("/logs/") || b.contains("/datanode-0/hadoop:")), "captured output reachable from the container: {binds:?}");
    let driver = info.host_config.and_then(|h| h.log_config).and_then(|l| l.typ);
    ensure!(driver.as_deref() == Some("local"), "Docker's own copy uses the local driver: {driver:?}");

    // Reading: the REST tail, then `herd logs -f` seeing a new line within a second.
    let logs = format!("{}/v1/tenants/{tenant}/clusters/prod/instances/datanode-0/logs", orch.url);
    let text = reqwest::Client::new().get(format!("{logs}?tail=3&stream=stdout")).bearer_auth(&orch.admin).send().await?.text().await?;
    let tail: Vec<Vec<u8>> = text.lines().map(|l| record::parse(l.as_bytes()).map(|r| r.payload.to_vec()).unwrap_or_default()).collect();
    ensure!(tail == [format!("out {}", 2 * n - 2).into_bytes(), format!("out {}", 2 * n - 1).into_bytes(), b"end".to_vec()], "tail: {text}");
    let mut follow = Command::new(bins().join("herd")).env("HERD_TOKEN", &orch.admin)
        .args(["--server", &orch.url, "logs", &format!("{tenant}/prod/datanode-0"), "-f", "--tail", "1", "--stream", "stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().context("no stdout")?).lines();
    let first = tokio::task::spawn_blocking(move || lines.next().map(|l| (l, lines))).await?;
    let Some((Ok(first), mut lines)) = first else { bail!("herd logs -f printed nothing") };
    ensure!(first == "end", "herd logs -f --tail 1 printed {first:?}");
    for round in 0..3 {
        let t0 = Instant::now();
        std::fs::write(a.join("hadoop").join("ping"), b"")?;
        let (next, back) = tokio::task::spawn_blocking(move || (lines.next(), lines)).await?;
        lines = back;
        let elapsed = t0.elapsed();
        ensure!(matches!(next, Some(Ok(ref l)) if l == "pong"), "round {round}: herd logs -f printed {next:?}");
        ensure!(elapsed < Duration::from_secs(1), "round {round}: a new line took {elapsed:?} to reach herd logs -f");
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // Bad input: unknown instance, another tenant's path, a bad parameter.
    let (status, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/prod/instances/datanode-9/logs")).await?;
    ensure!(status == 404 && body["code"] == "not_found", "{status} {body}");
    let (status, _) = api.get("/v1/tenants/someone-else/clusters/prod/instances/datanode-0/logs").await?;
    ensure!(status == 404);
    let (status, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/prod/instances/datanode-0/logs?tail=lots")).await?;
    ensure!(status == 422 && body["errors"][0]["field"] == "tail", "{status} {body}");
    let out = Command::new(bins().join("herd")).env("HERD_TOKEN", &orch.admin).args(["--server", &orch.url, "logs", &format!("{tenant}/prod/datanode-9")]).output()?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("datanode-9"), "{out:?}");
    drop(agent);
    Ok(())
}

/// Unmounts the test's tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(at)?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "herd-test-logs"]).arg(at).status()?;
        ensure!(ok.success(), "cannot mount a tmpfs at {} (the test needs root)", at.display());
        Ok(Tmpfs(at.into()))
    }

    fn resize(&self, size: &str) -> Result<()> {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status()?;
        ensure!(ok.success(), "cannot resize the tmpfs");
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_log_disk_is_reported_and_capture_resumes_without_loss_and_syslog_gets_lines() -> Result<()> {
    docker();
    let tenant = unique("logfull");
    let _cleanup = TenantContainers(tenant.clone());
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start(&tmp.path().join("orch"), free_port())?;
    let api = orch.api();
    let host = format!("{tenant}-h1");
    let agent_token = orch.agent_token(&host).await?;
    let data = tmp.path().join(&host);
    let disk = Tmpfs::mount(&data.join("logs"), "1m")?;
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let syslog = format!("tcp://{}", collector.local_addr()?);
    let flags = ["--log-max-size", "64Ki", "--log-max-files", "1000", "--syslog", &syslog];
    let _agent = Agent::start_with(&orch.url, &agent_token, &host, &data, "4", "2Gi", &flags)?;
    let (status, _) = api.post("/v1/tenants", json!({"name": tenant})).await?;
    ensure!(status == 201);
    // About 3 MB of lines: three times what the disk holds.
    let n = 60_000;
    let writer = format!(r#"i=0; while [ $i -lt {n} ]; do echo "line $i of a disk filler"; i=$((i+1)); done; echo end; exec sleep 1000000"#);
    let spec = spec(&tenant, &writer, "exec sleep 1000000").replace("  nodemanager:\n    replicas: 1", "  nodemanager:\n    replicas: 0");
    wait_for("the host to register", WAIT, || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        Ok(hosts["items"].as_array().is_some_and(|h| !h.is_empty()).then_some(()))
    })
    .await?;
    let (status, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/prod"), &spec).await?;
    ensure!(status == 201, "{body}");

    // A collector on loopback receives the lines, framed and labelled (RFC 5424 over TCP).
    let (mut conn, _) = tokio::time::timeout(WAIT, collector.accept()).await??;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !String::from_utf8_lossy(&got).contains("line 10 of") {
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut conn, &mut buf)).await??;
        ensure!(n > 0, "collector connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let first = text.split_once(' ').map(|(_, m)| m).unwrap_or("");
    ensure!(first.starts_with("<14>1 "), "{first:.200}");
    ensure!(
        first.contains(&format!(" {host} datanode-0 - stdout [herd@32473 tenant=\"{tenant}\" cluster=\"prod\" pool=\"datanode\"] \u{feff}line 0 of")),
        "{first:.300}"
    );

    // The disk fills: the agent says so on the host's status and keeps running.
    let full = wait_for("the host to report a full log disk", WAIT, || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        let conds = hosts["items"][0]["conditions"].as_array().cloned().unwrap_or_default();
        Ok(conds.iter().any(|c| c.as_str().is_some_and(|s| s.starts_with("log-disk-full"))).then_some(conds))
    })
    .await?;
    let table = Command::new(bins().join("herd")).env("HERD_TOKEN", &orch.admin).args(["--server", &orch.url, "hosts"]).output()?;
    ensure!(String::from_utf8_lossy(&table.stdout).contains("log-disk-full"), "herd hosts: {table:?} (conditions {full:?})");
    // Space returns: capture resumes by itself, and nothing is lost.
    disk.resize("64m")?;
    let stdio = data.join("logs").join(&tenant).join("prod").join("datanode-0").join("stdio");
    wait_for("the last line after space returned", WAIT, || async { Ok(records(&stdio)?.iter().any(|(_, p)| p == b"end").then_some(())) }).await?;
    let (out, err) = split(&records(&stdio)?);
    let mut want: Vec<Vec<u8>> = (0..n).map(|i| format!("line {i} of a disk filler").into_bytes()).collect();
    want.push(b"end".to_vec());
    same_lines("datanode-0 stdout", &out, &want)?;
    ensure!(err.is_empty());
    wait_for("the condition to clear", WAIT, || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        Ok(hosts["items"][0]["conditions"].as_array().is_some_and(|c| c.is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}
