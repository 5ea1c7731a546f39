//! etcd (Debian's `etcd-server`, installed by `deploy/lib/etcd.sh`) on free loopback ports with
//! data dirs of its own, for the tests of the etcd store: one member ([`Etcd`]) or a cluster of
//! several ([`EtcdCluster`], whose members can be SIGKILLed and started again on their data);
//! killed when dropped. Fails loudly when etcd is missing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Proc, free_port};

const ETCD: &str = "/usr/bin/etcd";

pub struct Etcd {
    pub proc: Proc,
    /// The client URL, e.g. `http://127.0.0.1:34567`.
    pub url: String,
}

impl Etcd {
    /// Starts etcd with its data under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self> {
        if !Path::new(ETCD).exists() {
            bail!("{ETCD} is missing: the etcd store tests need Debian's etcd-server (run deploy/lib/etcd.sh as root)");
        }
        std::fs::create_dir_all(dir)?;
        // NB: a free port can be taken by another test between `free_port` and etcd's bind:
        // then etcd exits saying so, and starts again on other ports (a few times at most).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(dir) {
                Err(e) if attempt < 5 && e.to_string().contains("address already in use") => {
                    let _ = std::fs::remove_dir_all(dir.join("data"));
                }
                started => return started,
            }
        }
    }

    fn start_once(dir: &Path) -> Result<Self> {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.join("etcd.log");
        let child = Command::new(ETCD)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}"), "--max-txn-ops", "10000"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start etcd")?;
        let mut etcd = Etcd { proc: Proc { child, log }, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if answers(client) {
                return Ok(etcd);
            }
            if let Ok(Some(status)) = etcd.proc.child.try_wait() {
                bail!("etcd exited ({status}) before it answered: {}", etcd.proc.log_text());
            }
            if Instant::now() > deadline {
                bail!("etcd did not answer on {} within 30 s: {}", etcd.url, etcd.proc.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether etcd on `port` answers a read (200).
fn answers(port: u16) -> bool {
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let body = r#"{"key":"AA=="}"#;
    let request = format!("POST /v3/kv/range HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let mut answer = String::new();
    conn.write_all(request.as_bytes()).is_ok() && conn.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.0 200")
}

/// An etcd cluster of several members on loopback; every member runs as its own process.
pub struct EtcdCluster {
    dir: std::path::PathBuf,
    /// Per member: its name, client port, peer port.
    ports: Vec<(String, u16, u16)>,
    /// Per member: the running process, `None` while killed.
    pub members: Vec<Option<Proc>>,
}

impl EtcdCluster {
    /// Starts `n` members under `dir` and waits until every one answers a read (which needs
    /// a quorum, so the cluster has a leader).
    pub fn start(dir: &Path, n: usize) -> Result<Self> {
        if !Path::new(ETCD).exists() {
            bail!("{ETCD} is missing: the etcd tests need Debian's etcd-server (run deploy/lib/etcd.sh as root)");
        }
        std::fs::create_dir_all(dir)?;
        let ports: Vec<(String, u16, u16)> = (0..n).map(|i| (format!("m{i}"), free_port(), free_port())).collect();
        let mut cluster = EtcdCluster { dir: dir.to_path_buf(), ports, members: (0..n).map(|_| None).collect() };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        for i in 0..n {
            cluster.wait_answering(i, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<()> {
        let initial: Vec<String> = self.ports.iter().map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}")).collect();
        let (name, client, peer) = self.ports[i].clone();
        let (url, peer_url) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
        let log = self.dir.join(format!("{name}.log"));
        let child = Command::new(ETCD)
            .args(["--name", &name, "--data-dir"])
            .arg(self.dir.join(&name))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", state])
            .args(["--initial-cluster-token", &format!("herd-test-{}", self.ports[0].2)])
            // NB: loopback: short heartbeats and elections, so losing a member costs about a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000", "--max-txn-ops", "10000"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log)?)
            .spawn()
            .context("cannot start etcd")?;
        self.members[i] = Some(Proc { child, log });
        Ok(())
    }

    fn wait_answering(&mut self, i: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let client = self.ports[i].1;
        loop {
            if answers(client) {
                return Ok(());
            }
            if let Some(p) = self.members[i].as_mut()
                && let Ok(Some(status)) = p.child.try_wait()
            {
                bail!("etcd member {i} exited ({status}) before it answered: {}", p.log_text());
            }
            if Instant::now() > deadline {
                let log = self.members[i].as_ref().map(Proc::log_text).unwrap_or_default();
                bail!("etcd member {i} did not answer within {within:?}: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's client URL, comma-separated (for `--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        self.urls().join(",")
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|(_, client, _)| format!("http://127.0.0.1:{client}")).collect()
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].take() {
            p.kill();
        }
    }

    /// Starts member `i` again on its data dir; waits until it answers when `wait` (which
    /// needs a quorum).
    pub fn restart(&mut self, i: usize, wait: bool) -> Result<()> {
        self.spawn(i, "existing")?;
        if wait {
            self.wait_answering(i, Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Every member's log, for a failure report.
    pub fn logs(&self) -> String {
        self.ports.iter().map(|(name, _, _)| format!("--- {name}\n{}", std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default())).collect()
    }
}
