//! Capture throughput benchmark (not a test): `cargo run --release -p herd-tests --bin logbench`.
//!
//! Ten containers on one host each write `LINES` lines of 100 bytes as fast as they can,
//! all starting at one moment. Measured twice, on the same engine and the same workload:
//!
//! 1. herd: a release `herd-agent` captures them through the Docker API (`local` driver) into
//!    each instance's rotated files; done when every instance's last line is in its files.
//! 2. Docker's own json-file capture, read back with `docker logs -f` (one reader per
//!    container, the way one would collect them without herd); done when every reader has
//!    seen the last line.
//!
//! Printed: lines/s and MB/s of payload sustained end to end, CPU seconds of the capturing
//! side (herd-agent; the `docker logs` clients) and of dockerd, as a share of one core, and
//! the ratio herd / Docker. Options: `LOGBENCH_CONTAINERS` (10), `LOGBENCH_LINES` (100000).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::{Agent, Orchestrator, TenantContainers, docker, free_port, release_bins, unique, wait_for};
use serde_json::json;

const LINE: usize = 100;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The writer: waits for `/go/go` (or `/hadoop/logs/go`), writes `n` lines, then `end`.
fn writer(go: &str, n: usize) -> String {
    let payload = "x".repeat(LINE - 1);
    format!("while [ ! -e {go} ]; do sleep 0.05; done; yes {payload} | head -n {n}; echo end; exec sleep 1000000")
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let tck: f64 = Command::new("getconf").arg("CLK_TCK").output().ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / tck
}

fn dockerd_pid() -> Option<u32> {
    let out = Command::new("pidof").arg("dockerd").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.parse().ok()
}

/// True when `current.log` in `stdio` ends with the record of the line `end`.
fn ended(stdio: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(stdio.join("current.log")) else { return false };
    let Ok(len) = f.metadata().map(|m| m.len()) else { return false };
    let mut tail = vec![0u8; len.min(200) as usize];
    f.seek(SeekFrom::Start(len - tail.len() as u64)).is_ok() && f.read_exact(&mut tail).is_ok() && tail.ends_with(b" stdout end\n")
}

/// Lines in every file of `stdio` that are records of the container's stdout.
fn captured(stdio: &Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(stdio)? {
        let f = std::fs::File::open(e?.path())?;
        for line in BufReader::new(f).split(b'\n') {
            if herd_api::record::parse(&line?).is_some_and(|r| r.stream == herd_api::record::Stream::Stdout) {
                n += 1;
            }
        }
    }
    Ok(n)
}

struct Run {
    secs: f64,
    lines: usize,
    reader_cpu: f64,
    dockerd_cpu: f64,
}

impl Run {
    fn print(&self, name: &str) {
        let mb = (self.lines * LINE) as f64 / 1e6;
        println!(
            "{name:<34} {:>10.0} lines/s {:>8.1} MB/s   capture CPU {:>5.1}% of a core   dockerd CPU {:>5.1}%   ({} lines in {:.2}s)",
            self.lines as f64 / self.secs,
            mb / self.secs,
            100.0 * self.reader_cpu / self.secs,
            100.0 * self.dockerd_cpu / self.secs,
            self.lines,
            self.secs
        );
    }
}

async fn herd_run(containers: usize, lines: usize) -> Result<Run> {
    let bins = release_bins();
    let tenant = unique("bench");
    let _cleanup = TenantContainers(tenant.clone());
    let tmp = tempfile::tempdir()?;
    let orch = Orchestrator::start_from(bins, &tmp.path().join("orch"), free_port())?;
    let api = orch.api();
    let host = format!("{tenant}-h1");
    let agent_token = orch.agent_token(&host).await?;
    let data = tmp.path().join(&host);
    let agent = Agent::start_from(bins, &orch.url, &agent_token, &host, &data, "64", "64Gi", &[])?;
    let (status, _) = api.post("/v1/tenants", json!({"name": tenant})).await?;
    ensure!(status == 201, "cannot create tenant");
    let cmd = serde_json::to_string(&["/bin/sh", "-c", &writer("/hadoop/logs/go", lines)])?;
    let spec = format!(
        "tenant: {tenant}\nname: bench\nimages:\n  datanode: herd/testbed-base:latest\npools:\n  datanode:\n    replicas: {containers}\n    cpu: 100m\n    memory: 256Mi\n    command: {cmd}\n"
    );
    let (status, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/bench"), &spec).await?;
    ensure!(status == 201, "{body}");
    let inst = data.join("logs").join(&tenant).join("bench");
    let dirs: Vec<_> = (0..containers).map(|i| inst.join(format!("datanode-{i}"))).collect();
    wait_for("every container to run and be captured", Duration::from_secs(120), || async {
        Ok(dirs.iter().all(|d| d.join("stdio").join("current.log").exists()).then_some(()))
    })
    .await?;
    let (pid, dockerd) = (agent.proc.child.id(), dockerd_pid());
    let (cpu0, d0) = (cpu_seconds(pid), dockerd.map(cpu_seconds).unwrap_or(0.0));
    let t0 = Instant::now();
    for d in &dirs {
        std::fs::write(d.join("hadoop").join("go"), b"")?;
    }
    while !dirs.iter().all(|d| ended(&d.join("stdio"))) {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("herd did not capture every line within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, d1) = (cpu_seconds(pid), dockerd.map(cpu_seconds).unwrap_or(0.0));
    let mut total = 0;
    for d in &dirs {
        let n = captured(&d.join("stdio"))?;
        ensure!(n == lines + 1, "{}: captured {n} lines, expected {}", d.display(), lines + 1);
        total += lines;
    }
    Ok(Run { secs, lines: total, reader_cpu: cpu1 - cpu0, dockerd_cpu: d1 - d0 })
}

fn docker_run(containers: usize, lines: usize) -> Result<Run> {
    let name = unique("logbench");
    let tmp = tempfile::tempdir()?;
    let _cleanup = TenantContainers(name.clone());
    let mut ids = Vec::new();
    for i in 0..containers {
        let out = Command::new("docker")
            .args(["run", "-d", "--network", "none", "--log-driver", "json-file", "--label"])
            .arg(format!("herd.tenant={name}"))
            .args(["--name", &format!("{name}-{i}"), "-v", &format!("{}:/go", tmp.path().display())])
            .args(["herd/testbed-base:latest", "/bin/sh", "-c", &writer("/go/go", lines)])
            .output()?;
        ensure!(out.status.success(), "docker run failed: {}", String::from_utf8_lossy(&out.stderr));
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let mut readers = Vec::new();
    for id in &ids {
        let child = Command::new("docker").args(["logs", "-f", id]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        readers.push(child);
    }
    let dockerd = dockerd_pid();
    let pids: Vec<u32> = readers.iter().map(|c| c.id()).collect();
    let d0 = dockerd.map(cpu_seconds).unwrap_or(0.0);
    let c0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let t0 = Instant::now();
    std::fs::write(tmp.path().join("go"), b"")?;
    let threads: Vec<_> = readers
        .iter_mut()
        .map(|c| {
            let out = c.stdout.take();
            std::thread::spawn(move || -> usize {
                let Some(out) = out else { return 0 };
                let mut n = 0;
                for line in BufReader::with_capacity(1 << 20, out).split(b'\n') {
                    match line {
                        Ok(l) if l == b"end" => return n,
                        Ok(_) => n += 1,
                        Err(_) => return n,
                    }
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        let n = t.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
        ensure!(n == lines, "docker logs read {n} lines, expected {lines}");
        total += n;
    }
    let secs = t0.elapsed().as_secs_f64();
    let c1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let d1 = dockerd.map(cpu_seconds).unwrap_or(0.0);
    for mut c in readers {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(Run { secs, lines: total, reader_cpu: c1 - c0, dockerd_cpu: d1 - d0 })
}

#[tokio::main]
async fn main() -> Result<()> {
    let containers = env_or("LOGBENCH_CONTAINERS", 10);
    let lines = env_or("LOGBENCH_LINES", 100_000);
    docker();
    println!("logbench: {containers} containers x {lines} lines of {LINE} bytes, flat out, {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let herd = herd_run(containers, lines).await.context("herd run")?;
    herd.print("herd (agent, Docker API, files)");
    let base = docker_run(containers, lines).context("docker json-file run")?;
    base.print("Docker json-file + docker logs -f");
    println!(
        "ratio herd / Docker: {:.2}x throughput; capture CPU per line {:.2}x",
        (herd.lines as f64 / herd.secs) / (base.lines as f64 / base.secs),
        (herd.reader_cpu / herd.lines as f64) / (base.reader_cpu / base.lines as f64).max(f64::MIN_POSITIVE)
    );
    Ok(())
}
