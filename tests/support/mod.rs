//! Support for herd's end-to-end tests: builds the binaries and testbed images once, starts
//! orchestrators and agents as real processes on loopback, and talks to the real Docker
//! engine. Docker-dependent tests fail loudly when no engine answers; they never skip.

pub mod decom;
pub mod etcd;
pub mod netbed;

/// The `command` of a container that idles until SIGTERM (and then exits at once), for tests
/// about containers rather than Hadoop: the Hadoop doubles exit without masters to join, as
/// Hadoop does.
pub const IDLE: &str = r#"["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]"#;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Builds herd's binaries once per test process and returns the directory holding them.
pub fn bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| build_bins(false))
}

/// Like [`bins`], optimized (for benchmarks).
pub fn release_bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| build_bins(true))
}

/// `cargo` in the workspace's root, without the variables `cargo test` and `cargo run` set
/// (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...): some build scripts watch them, and passing them
/// on would rebuild half the tree on every run.
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS"].contains(&key.as_str());
        if (key.starts_with("CARGO_") && !keep) || key == "CARGO" || key.starts_with("RUST_") {
            build.env_remove(key);
        }
    }
    build.current_dir(root());
    build
}

fn build_bins(release: bool) -> PathBuf {
    {
        let mut build = cargo();
        build.args(["build", "--workspace", "--bins"]);
        if release {
            build.arg("--release");
        }
        let status = build.status();
        assert!(matches!(status, Ok(s) if s.success()), "building herd's binaries failed: {status:?}");
        target_dir().join(if release { "release" } else { "debug" })
    }
}

/// Fails the test unless a Docker engine answers, and builds the testbed images once.
pub fn docker() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
        match info {
            Ok(o) if o.status.success() => {}
            other => panic!(
                "these tests need a Docker engine and none answers ({other:?}); start dockerd. \
                 They fail rather than skip so CI cannot pass without running them."
            ),
        }
        let status = Command::new("bash").arg(root().join("images/testbed/build.sh")).status();
        assert!(matches!(status, Ok(s) if s.success()), "images/testbed/build.sh failed: {status:?}");
    });
}

/// A name unique to this test run, usable as a tenant or host id (a DNS label).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A free loopback port (bound, then released for the process under test).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `herd-orchestrator`.
pub struct Orchestrator {
    pub proc: Proc,
    pub url: String,
    pub data_dir: PathBuf,
    /// The bootstrap admin token's secret, read from `DATA_DIR/admin.token`.
    pub admin: String,
}

impl Orchestrator {
    /// Starts an orchestrator on `port` (0: any) with its store under `data_dir`.
    pub fn start(data_dir: &Path, port: u16) -> Result<Self> {
        Self::start_from(bins(), data_dir, port)
    }

    /// Starts the orchestrator binary in `bin_dir` (e.g. [`release_bins`]).
    pub fn start_from(bin_dir: &Path, data_dir: &Path, port: u16) -> Result<Self> {
        // NB: tests drive one token far faster than the default rate (50 requests/s); the
        // tests of the limit itself start with `start_with`.
        Self::start_with(bin_dir, data_dir, port, &["--rate-limit", "100000"])
    }

    /// Starts the orchestrator binary in `bin_dir` with `extra` flags.
    pub fn start_with(bin_dir: &Path, data_dir: &Path, port: u16, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join(format!("orchestrator-{}.log", unique("")));
        // Tests beat fast, unless `extra` says how fast (a benchmark, at the default).
        let interval: &[&str] = if extra.contains(&"--heartbeat-interval") { &[] } else { &["--heartbeat-interval", "500ms"] };
        let mut child = Command::new(bin_dir.join("herd-orchestrator"))
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(interval)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-orchestrator")?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        let proc = Proc { child, log };
        if !url.starts_with("http://") {
            bail!("orchestrator did not start: {}", proc.log_text());
        }
        let token_file = data_dir.join("admin.token");
        let admin = std::fs::read_to_string(&token_file)
            .with_context(|| format!("the orchestrator wrote no {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(Self { proc, url, data_dir: data_dir.into(), admin })
    }

    /// A client with the admin token.
    pub fn api(&self) -> Api {
        Api::new(&self.url).with_token(&self.admin)
    }

    /// Issues an agent token bound to `host` (the only kind of agent token herd issues).
    pub async fn agent_token(&self, host: &str) -> Result<String> {
        let (status, created) = self.api().post("/v1/tokens", serde_json::json!({ "scope": "agent", "host": host })).await?;
        if status != 201 {
            bail!("creating an agent token for {host} answered {status}: {created}");
        }
        created["secret"].as_str().map(String::from).context("no secret in the answer")
    }

    /// Issues a token through the API: `scope` is `admin` or `tenant` (with `tenant`).
    pub async fn token(&self, scope: &str, tenant: Option<&str>) -> Result<String> {
        let mut body = serde_json::json!({ "scope": scope });
        if let Some(t) = tenant {
            body["tenant"] = serde_json::json!(t);
        }
        let (status, created) = self.api().post("/v1/tokens", body).await?;
        if status != 201 {
            bail!("creating a {scope} token answered {status}: {created}");
        }
        created["secret"].as_str().map(String::from).context("no secret in the answer")
    }
}

/// A running `herd-agent`.
pub struct Agent {
    pub proc: Proc,
    pub host_id: String,
}

impl Agent {
    /// Starts an agent without herd networking (`--network none`): several of these share one
    /// network namespace, which herd networking (one bridge per host) does not allow. `token`
    /// (an agent token) goes in its environment, as `HERD_TOKEN`.
    pub fn start(orchestrator: &str, token: &str, host_id: &str, data_dir: &Path, cpus: &str, memory: &str) -> Result<Self> {
        Self::start_with(orchestrator, token, host_id, data_dir, cpus, memory, &[])
    }

    /// Starts an agent with more flags; its log endpoint listens on a free loopback port.
    pub fn start_with(orchestrator: &str, token: &str, host_id: &str, data_dir: &Path, cpus: &str, memory: &str, extra: &[&str]) -> Result<Self> {
        Self::start_from(bins(), orchestrator, token, host_id, data_dir, cpus, memory, extra)
    }

    /// Starts the agent binary in `bin_dir` (e.g. [`release_bins`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start_from(bin_dir: &Path, orchestrator: &str, token: &str, host_id: &str, data_dir: &Path, cpus: &str, memory: &str, extra: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join(format!("agent-{}.log", unique("")));
        let child = Command::new(bin_dir.join("herd-agent"))
            .args(["--orchestrator", orchestrator, "--host-id", host_id])
            .args(["--data-dir", &data_dir.display().to_string(), "--cpus", cpus, "--memory", memory])
            .args(["--network", "none", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info,herd_agent=debug")
            .env("HERD_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-agent")?;
        Ok(Self { proc: Proc { child, log }, host_id: host_id.into() })
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    while start.elapsed() < timeout {
        match f().await {
            Ok(Some(v)) => {
                // Where a slow test spends its time, in its output.
                if start.elapsed() > Duration::from_secs(3) {
                    eprintln!("waited {:.1?} for {what}", start.elapsed());
                }
                return Ok(v);
            }
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})")
}

/// A small HTTP client for the orchestrator's API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// A response's status and JSON body (`Null` when empty).
pub type Reply = (u16, Value);

impl Api {
    /// Creates `tenant` and applies `spec` as its cluster `cluster`, both new.
    pub async fn create_tenant_and_cluster(&self, tenant: &str, cluster: &str, spec: &str) -> Result<()> {
        let (code, body) = self.post("/v1/tenants", serde_json::json!({ "name": tenant })).await?;
        anyhow::ensure!(code == 201, "tenant: {code} {body}");
        let (code, body) = self.put_yaml(&format!("/v1/tenants/{tenant}/clusters/{cluster}"), spec).await?;
        anyhow::ensure!(code == 201, "apply: {code} {body}");
        Ok(())
    }

    /// A client without a token. It never follows redirects: a test sees a follower's 307
    /// as it is.
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default();
        Self { base: base.trim_end_matches('/').into(), http, token: None }
    }

    /// The bearer token it sends, if any (for running the `herd` CLI as the same caller).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self { token: Some(token.to_string()), ..self.clone() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Reply> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Reply> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> Result<Reply> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn put_yaml(&self, path: &str, yaml: &str) -> Result<Reply> {
        let req = self.http.put(format!("{}{path}", self.base)).header("content-type", "application/yaml").body(yaml.to_string());
        self.send(req).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    /// Any request: method, path (sent as given), headers and a raw body. The answer's
    /// status, headers and body bytes.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base)).body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Ok((status, headers, resp.bytes().await?.to_vec()))
    }

    /// A JSON request with extra headers (e.g. `If-Match`, `Idempotency-Key`); the answer's
    /// status, JSON body and `ETag`.
    pub async fn json_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> Result<(u16, Value, Option<String>)> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let (status, headers, bytes) = self.raw(method, path, &all, serde_json::to_vec(body)?).await?;
        let etag = headers.get("etag").and_then(|v| v.to_str().ok()).map(String::from);
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        Ok((status, body, etag))
    }
}

/// Removes every container of `tenant` when dropped, so a failed test leaves nothing behind.
pub struct TenantContainers(pub String);

impl Drop for TenantContainers {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=herd.tenant={}", self.0)])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
    }
}
