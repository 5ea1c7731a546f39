//! A single-member etcd (Debian's `etcd-server`, installed by `deploy/lib/etcd.sh`) on free
//! loopback ports with a data dir of its own, for the tests of the etcd store; killed when
//! dropped. Fails loudly when etcd is missing.

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
