//! The orchestrator's HTTP API: one method per route `herd` uses, typed with `herd_api`'s wire
//! types. An answer that is not a success becomes an error carrying the problem+json detail
//! and each offending field on its own line; a server that cannot be reached becomes
//! [`Unreachable`], which `--wait` retries; a refused token becomes [`NoToken`], which says
//! how to get one. Lists are followed page by page; `POST`s carry an `Idempotency-Key`.
//!
//! `--server` may list several orchestrators of one control plane. A request goes to the
//! current one (the last that answered); a follower's `307` is followed by re-sending the
//! same request, headers and all, to the leader (at most [`MAX_HOPS`] hops), which becomes
//! the current one; an orchestrator that cannot be reached or answers `503` (no leader yet,
//! lease lost) is left for the next of the list. A round is every orchestrator once; reads
//! make one round, writes go round again after a backoff within their retry budget.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use herd_api::Role;
use herd_api::orchestrators::{self, MAX_HOPS};
use herd_api::spec::Replicas;
use herd_api::wire::{
    AuditEntry, ClusterStatus, CreateTenant, CreateToken, HostStatus, Page, Problem, Quota, ScaleRequest, Tenant, TenantQuota,
    TokenCreated, TokenInfo, UpdateQuota,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::args::ClusterRef;

/// How long one request may take; the API's answers are small and quick.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to one orchestrator may take before the next of `--server` is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Items asked for per page when following a list.
const PAGE: u32 = 500;

/// How often a write is sent again, with the same `Idempotency-Key`, when its answer is lost
/// (no orchestrator of `--server` could be reached or had a leader, or the connection dropped
/// before the answer): rounds after the first. Every write the CLI sends is safe to repeat:
/// `POST`s by their key, `PUT`/`PATCH` because they set absolute values, `DELETE` because a
/// second one finds nothing to delete.
const WRITE_RETRIES: usize = 3;

/// A client of the orchestrators of one control plane (`--server URL[,URL...]`).
pub struct Client {
    http: reqwest::Client,
    /// The `--server` URLs, in the order given.
    servers: Vec<Url>,
    /// Where the next request goes first: the orchestrator that last answered (perhaps a
    /// leader a follower sent us to, not in `servers`). NB: a std mutex, held only to copy.
    current: Mutex<Url>,
    /// Moves from one orchestrator to another already reported on stderr: each is said once.
    said: Mutex<BTreeSet<(String, String)>>,
    /// The bearer token (`--token`, `HERD_TOKEN`, `HERD_TOKEN_FILE`); never printed.
    token: Option<String>,
    /// CA certificates trusted besides the public ones (`--ca-file`).
    roots: Vec<reqwest::Certificate>,
}

/// The orchestrator refused the token (401): says how to get one.
#[derive(Debug)]
pub struct NoToken {
    detail: String,
    given: bool,
}

impl fmt::Display for NoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.given {
            writeln!(f, "the orchestrator refused the token: {}", self.detail)?;
        } else {
            writeln!(f, "no token given; the orchestrator needs one")?;
        }
        write!(
            f,
            "  set HERD_TOKEN (or --token, or HERD_TOKEN_FILE=PATH) to a token from your admin (`herd tokens create`);\n  \
             on the orchestrator's host the first admin token is in its data directory: HERD_TOKEN_FILE=/var/lib/herd/orchestrator/admin.token"
        )
    }
}

impl std::error::Error for NoToken {}

/// No orchestrator of `--server` could be reached (or had a leader), as opposed to one
/// answering with an error.
#[derive(Debug)]
pub struct Unreachable {
    /// Each orchestrator tried in the last round, and why it gave no answer.
    tried: Vec<(String, String)>,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tried: Vec<String> = self.tried.iter().map(|(server, cause)| format!("{server}: {cause}")).collect();
        let whom = if self.tried.len() > 1 { "any orchestrator" } else { "the orchestrator" };
        write!(
            f,
            "cannot reach {whom} at {} (is herd-orchestrator running? set --server or HERD_SERVER)",
            tried.join("; ")
        )
    }
}

impl std::error::Error for Unreachable {}

/// A write whose every answer was lost: the orchestrator may or may not have applied it.
/// The command that sent it says which, when it can find out (e.g. by reading the cluster).
/// Also a write with `If-Match` whose first answers were lost and whose retry found the
/// cluster at another generation: perhaps by this very change.
#[derive(Debug)]
pub struct Unconfirmed {
    pub attempts: usize,
    /// Why: the orchestrator could not be reached, or the retry's 412.
    pub cause: String,
}

impl fmt::Display for Unconfirmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sent {} times, no answer came back: {}", self.attempts, self.cause)
    }
}

impl std::error::Error for Unconfirmed {}

/// A write's answer, and whether an earlier send of it may have been applied.
struct Sent {
    status: StatusCode,
    body: Vec<u8>,
    /// Sends whose answer was lost after the request may have reached an orchestrator.
    lost: usize,
}

/// One request as the CLI sends it, the same to every orchestrator it goes to.
struct Request<'a> {
    method: Method,
    path: &'a str,
    body: Option<Body>,
    /// `Idempotency-Key`, `If-Match`: kept across redirects and retries.
    headers: &'a [(&'static str, String)],
    /// A log stream: a success is handed over unread.
    stream: bool,
}

/// What came back from the control plane.
enum Answer {
    Read(StatusCode, Vec<u8>),
    /// A success to a streaming request, its body not yet read.
    Streaming(reqwest::Response),
}

/// What one orchestrator, and the leader it sent the request to, made of it.
enum Tried {
    Answered { at: Url, answer: Answer },
    /// No answer: `503`, too many redirects, or a transport error; `lost` when the request
    /// may have reached the orchestrator (not a refused connection).
    Failed { at: Url, cause: String, lost: bool },
}

/// Every orchestrator of a round gave no answer.
struct Round {
    tried: Vec<(String, String)>,
}

/// A body to send and its content type.
#[derive(Clone)]
struct Body {
    content_type: &'static str,
    text: String,
}

/// The client's settings but TLS roots: herd's user agent, a connect timeout, no redirects
/// followed by reqwest (it drops `Authorization` when the port changes: herd re-sends itself).
fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
}

/// The backoff between rounds of a write: exponential with jitter, capped, [`WRITE_RETRIES`] times.
fn write_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(WRITE_RETRIES)
        .with_jitter()
}

/// `url` as a prefix for paths: without the trailing `/`.
fn base(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

impl Client {
    /// A client for the orchestrators at `servers` (`--server`): one URL, e.g.
    /// `http://127.0.0.1:7480`, or several of one control plane, comma-separated.
    pub fn new(servers: &str, token: Option<String>) -> Result<Self> {
        let servers = orchestrators::parse_list("--server", servers).map_err(|e| anyhow!(e))?;
        let first = servers.first().cloned().ok_or_else(|| anyhow!("--server: no URL given"))?;
        let http = http_builder().timeout(REQUEST_TIMEOUT).build().context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            servers,
            current: Mutex::new(first),
            said: Mutex::new(BTreeSet::new()),
            token,
            roots: Vec::new(),
        })
    }

    /// The orchestrator requests go to first now.
    fn current(&self) -> Url {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The same client, trusting the CA certificates in `ca_file` (PEM) besides the public ones.
    pub fn with_ca_file(mut self, ca_file: Option<&std::path::Path>) -> Result<Self> {
        let Some(path) = ca_file else { return Ok(self) };
        let pem = std::fs::read(path).with_context(|| format!("cannot read --ca-file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("--ca-file {}: not PEM certificates", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("--ca-file {}: no certificate in it", path.display());
        }
        let mut builder = http_builder().timeout(REQUEST_TIMEOUT);
        for c in &certs {
            builder = builder.add_root_certificate(c.clone());
        }
        self.http = builder.build().context("cannot set up the HTTP client")?;
        self.roots = certs;
        Ok(self)
    }

    /// `GET /v1/hosts`, every page.
    pub async fn hosts(&self) -> Result<Vec<HostStatus>> {
        self.list("/v1/hosts").await
    }

    /// `GET /v1/tenants`, every page.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.list("/v1/tenants").await
    }

    /// `GET /v1/tenants/{t}`.
    pub async fn tenant(&self, name: &str) -> Result<Tenant> {
        self.read(&format!("/v1/tenants/{name}")).await
    }

    /// `POST /v1/tenants`: the tenant, and whether it was created (rather than already there).
    /// Without a quota, the tenant gets the orchestrator's default one.
    pub async fn create_tenant(&self, name: &str, quota: Option<TenantQuota>) -> Result<(Tenant, bool)> {
        let request = CreateTenant { name: name.to_string(), quota };
        let (status, tenant) = self.post_once("/v1/tenants", &request).await?;
        Ok((tenant, status == StatusCode::CREATED))
    }

    /// `PUT /v1/tenants/{t}/quota`.
    pub async fn set_quota(&self, name: &str, quota: Quota) -> Result<Tenant> {
        let request = UpdateQuota { quota };
        Ok(self.write_call(Method::PUT, &format!("/v1/tenants/{name}/quota"), || json_body(&request).map(Some), None).await?.1)
    }

    /// `DELETE /v1/tenants/{t}`.
    pub async fn delete_tenant(&self, name: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/tenants/{name}"), None).await
    }

    /// `GET /v1/hosts/{id}`.
    pub async fn host(&self, id: &str) -> Result<HostStatus> {
        self.read(&format!("/v1/hosts/{id}")).await
    }

    /// `POST /v1/hosts/{id}/{cordon|uncordon|drain}`: the host after the change.
    pub async fn host_action(&self, id: &str, action: &str) -> Result<HostStatus> {
        Ok(self.write_call(Method::POST, &format!("/v1/hosts/{id}/{action}"), || Ok(None), None).await?.1)
    }

    /// `DELETE /v1/hosts/{id}`.
    pub async fn delete_host(&self, id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/hosts/{id}"), None).await
    }

    /// `POST /v1/tokens`: the token and its secret.
    pub async fn create_token(&self, request: &CreateToken) -> Result<TokenCreated> {
        Ok(self.post_once("/v1/tokens", request).await?.1)
    }

    /// `GET /v1/tokens`, every page.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.list("/v1/tokens").await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/tokens/{id}"), None).await
    }

    /// `GET /v1/audit`: up to `limit` entries after `after`, and the cursor of the next ones.
    pub async fn audit(&self, after: Option<&str>, limit: u32) -> Result<Page<AuditEntry>> {
        let mut path = format!("/v1/audit?limit={limit}");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        self.read(&path).await
    }

    /// `GET /v1/clusters`: every cluster the token sees, every page.
    pub async fn clusters(&self) -> Result<Vec<ClusterStatus>> {
        self.list("/v1/clusters").await
    }

    /// Follows a paginated list to its end.
    async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit={PAGE}");
            if let Some(a) = &after {
                // NB: cursors are names, `TENANT/CLUSTER` or numbers; `/` is fine in a query.
                url.push_str(&format!("&after={a}"));
            }
            let page: Page<T> = self.read(&url).await?;
            items.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// A `POST` with an `Idempotency-Key`, sent again with the same key when its answer is
    /// lost, so a lost answer never makes two of a thing.
    async fn post_once<Req: serde::Serialize, T: DeserializeOwned>(&self, path: &str, request: &Req) -> Result<(StatusCode, T)> {
        let sent = self.write(Method::POST, path, || json_body(request).map(Some)).await?;
        Ok((sent.status, decode(&Method::POST, path, sent.status, &sent.body, self.token.is_some())?))
    }

    /// Sends a write with an `Idempotency-Key` and retries it, same key and body, with
    /// exponential backoff and jitter while its answer is lost; [`Unconfirmed`] when every
    /// answer was.
    async fn write(&self, method: Method, path: &str, body: impl Fn() -> Result<Option<Body>>) -> Result<Sent> {
        self.write_if(method, path, body, None).await
    }

    /// [`Client::write`] with `If-Match: "GENERATION"` when the caller read one.
    async fn write_if(&self, method: Method, path: &str, body: impl Fn() -> Result<Option<Body>>, if_match: Option<u64>) -> Result<Sent> {
        use backon::Retryable;
        let key = idempotency_key();
        let mut headers = vec![("idempotency-key", key)];
        headers.extend(if_match.map(|g| ("if-match", format!("\"{g}\""))));
        let (sends, lost) = (std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0));
        let send = || async {
            let request = Request { method: method.clone(), path, body: body()?, headers: &headers, stream: false };
            let (answer, sent) = self.exchange(&self.http, &request).await;
            sends.fetch_add(sent.sends, std::sync::atomic::Ordering::Relaxed);
            lost.fetch_add(sent.lost, std::sync::atomic::Ordering::Relaxed);
            match answer {
                Ok(Answer::Read(status, body)) => Ok((status, body)),
                Ok(Answer::Streaming(_)) => Err(anyhow!("unexpected streaming answer to {method} {path}")),
                Err(round) => Err(Unreachable { tried: round.tried }.into()),
            }
        };
        let answer = send.retry(write_backoff()).when(|e: &anyhow::Error| e.is::<Unreachable>()).await;
        let (attempts, lost) = (sends.into_inner(), lost.into_inner());
        match answer {
            // NB: a retry's precondition may fail because a lost earlier send applied.
            Ok((status, body)) if status == StatusCode::PRECONDITION_FAILED && lost > 0 => Err(Unconfirmed {
                attempts,
                cause: format!("the earlier answers were lost and the last found the cluster changed ({})", refusal(status, &body)),
            }
            .into()),
            Ok((status, body)) => Ok(Sent { status, body, lost }),
            Err(e) => match e.downcast::<Unreachable>() {
                Ok(cause) => Err(Unconfirmed { attempts, cause: cause.to_string() }.into()),
                Err(e) => Err(e),
            },
        }
    }

    /// A write that decodes a successful answer; with `if_match`, refused (412) when the
    /// cluster is no longer at that generation.
    async fn write_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: impl Fn() -> Result<Option<Body>>,
        if_match: Option<u64>,
    ) -> Result<(StatusCode, T)> {
        let sent = self.write_if(method.clone(), path, body, if_match).await?;
        Ok((sent.status, decode(&method, path, sent.status, &sent.body, self.token.is_some())?))
    }

    /// A `DELETE` (retried as a write): success, or the refusal. A 404 after a send whose
    /// answer was lost means that send deleted it.
    async fn call_empty(&self, method: Method, path: &str, if_match: Option<u64>) -> Result<()> {
        let sent = self.write_if(method, path, || Ok(None), if_match).await?;
        let gone_earlier = sent.lost > 0 && sent.status == StatusCode::NOT_FOUND;
        if !sent.status.is_success() && !gone_earlier {
            return Err(refused(sent.status, &sent.body, self.token.is_some()));
        }
        Ok(())
    }

    /// `GET /v1/tenants/{t}/clusters/{c}`; `None` when there is no such cluster.
    pub async fn cluster(&self, cluster: &ClusterRef) -> Result<Option<ClusterStatus>> {
        let path = cluster_path(cluster);
        let (status, body) = self.send(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND && is_problem(&body) {
            return Ok(None);
        }
        Ok(Some(decode(&Method::GET, &path, status, &body, self.token.is_some())?))
    }

    /// [`Client::cluster`] with every instance: follows `instances_next` page by page.
    pub async fn cluster_all(&self, cluster: &ClusterRef) -> Result<Option<ClusterStatus>> {
        let base = cluster_path(cluster);
        let Some(mut status) = self.cluster_page(&base, None).await? else { return Ok(None) };
        while let Some(after) = status.instances_next.take() {
            let Some(next) = self.cluster_page(&base, Some(&after)).await? else { return Ok(None) };
            if next.generation != status.generation {
                // Changed between pages: start again, so the list is one generation's.
                return Box::pin(self.cluster_all(cluster)).await;
            }
            status.instances.extend(next.instances);
            status.instances_next = next.instances_next;
        }
        Ok(Some(status))
    }

    async fn cluster_page(&self, base: &str, after: Option<&str>) -> Result<Option<ClusterStatus>> {
        let mut path = format!("{base}?limit={CLUSTER_PAGE}");
        if let Some(a) = after {
            // NB: a cursor is an instance name: lowercase letters, digits and dashes only.
            path.push_str(&format!("&after={a}"));
        }
        let (status, body) = self.send(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND && is_problem(&body) {
            return Ok(None);
        }
        Ok(Some(decode(&Method::GET, &path, status, &body, self.token.is_some())?))
    }

    /// `PUT /v1/tenants/{t}/clusters/{c}` with the spec as written: the cluster, and whether
    /// it was created (rather than updated or unchanged). With `generation` (as read),
    /// refused (412) when the cluster changed since.
    pub async fn apply(&self, cluster: &ClusterRef, spec: String, generation: Option<u64>) -> Result<(ClusterStatus, bool)> {
        let body = || Ok(Some(Body { content_type: "application/yaml", text: spec.clone() }));
        let (status, applied) = self.write_call(Method::PUT, &cluster_path(cluster), body, generation).await?;
        Ok((applied, status == StatusCode::CREATED))
    }

    /// `PATCH /v1/tenants/{t}/clusters/{c}/pools/{pool}`. With `generation` (as read),
    /// refused (412) when the cluster changed since.
    pub async fn scale(
        &self,
        cluster: &ClusterRef,
        pool: Role,
        replicas: u32,
        force: bool,
        generation: Option<u64>,
    ) -> Result<ClusterStatus> {
        let request = ScaleRequest {
            replicas: Replicas(replicas),
            force,
        };
        let path = format!("{}/pools/{pool}", cluster_path(cluster));
        Ok(self.write_call(Method::PATCH, &path, || json_body(&request).map(Some), generation).await?.1)
    }

    /// `DELETE /v1/tenants/{t}/clusters/{c}`, with `?purgeData=true` when `purge_data`.
    /// With `generation` (as read), refused (409) when the cluster changed since.
    pub async fn delete(&self, cluster: &ClusterRef, purge_data: bool, generation: Option<u64>) -> Result<()> {
        let mut path = cluster_path(cluster);
        if purge_data {
            path.push_str("?purgeData=true");
        }
        self.call_empty(Method::DELETE, &path, generation).await
    }

    /// `GET {path}` as a stream (a log read): the response once it is a success. No overall
    /// timeout, as a followed log streams for as long as the reader wants.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let mut builder = http_builder();
        for c in &self.roots {
            builder = builder.add_root_certificate(c.clone());
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        let request = Request { method: Method::GET, path, body: None, headers: &[], stream: true };
        match self.exchange(&http, &request).await.0 {
            Ok(Answer::Streaming(response)) => Ok(response),
            Ok(Answer::Read(status, body)) => Err(refused(status, &body, self.token.is_some())),
            Err(round) => Err(Unreachable { tried: round.tried }.into()),
        }
    }

    async fn read<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    /// Sends a request and decodes a successful answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, T)> {
        let (status, bytes) = self.send(method.clone(), path, body).await?;
        Ok((status, decode(&method, path, status, &bytes, self.token.is_some())?))
    }

    /// Sends a request and reads the whole answer.
    async fn send(&self, method: Method, path: &str, body: Option<Body>) -> Result<(StatusCode, Vec<u8>)> {
        self.send_with(method, path, body, &[]).await
    }

    /// Sends a request in one round and reads the whole answer.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&'static str, String)],
    ) -> Result<(StatusCode, Vec<u8>)> {
        let request = Request { method, path, body, headers, stream: false };
        match self.exchange(&self.http, &request).await.0 {
            Ok(Answer::Read(status, body)) => Ok((status, body)),
            Ok(Answer::Streaming(_)) => Err(anyhow!("unexpected streaming answer to {} {path}", request.method)),
            Err(round) => Err(Unreachable { tried: round.tried }.into()),
        }
    }

    /// One round, repeated while the answer is `429` (over the token's request rate: waits
    /// as the server says, at most 10 s, a few times). Also says how often the request was
    /// sent and how many of those answers were lost.
    async fn exchange(&self, http: &reqwest::Client, request: &Request<'_>) -> (Result<Answer, Round>, Counts) {
        let mut counts = Counts::default();
        let mut limited = 0;
        loop {
            let answer = self.round(http, request, &mut counts).await;
            if let Ok(Answer::Read(status, _)) = &answer
                && *status == StatusCode::TOO_MANY_REQUESTS
                && limited < RATE_RETRIES
            {
                limited += 1;
                let wait = counts.retry_after.take().unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait.clamp(1, 10))).await;
                continue;
            }
            return (answer, counts);
        }
    }

    /// Sends `request` to each orchestrator once, the current one first, until one answers;
    /// the one that answered becomes the current one.
    async fn round(&self, http: &reqwest::Client, request: &Request<'_>, counts: &mut Counts) -> Result<Answer, Round> {
        let order = orchestrators::round(&self.servers, &self.current());
        let mut tried = Vec::new();
        for (i, server) in order.iter().enumerate() {
            let next = order.get(i + 1);
            match self.send_to(http, server.clone(), request, counts).await {
                Tried::Answered { at, answer } => {
                    *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
                    return Ok(answer);
                }
                Tried::Failed { at, cause, lost } => {
                    counts.lost += usize::from(lost);
                    if let Some(to) = next {
                        self.say_move(&at, to, &cause);
                    }
                    tried.push((base(&at).to_string(), cause));
                }
            }
        }
        Err(Round { tried })
    }

    /// Says on stderr, once per pair, that herd moves from one orchestrator to another.
    fn say_move(&self, from: &Url, to: &Url, cause: &str) {
        let pair = (base(from).to_string(), base(to).to_string());
        if self.said.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(pair.clone()) {
            eprintln!("orchestrator {} unreachable ({cause}); trying {}", pair.0, pair.1);
        }
    }

    /// Sends `request` to `server`, and on to the leader while a follower redirects.
    async fn send_to(&self, http: &reqwest::Client, server: Url, request: &Request<'_>, counts: &mut Counts) -> Tried {
        let mut at = server;
        let mut hops = 0;
        loop {
            let mut builder = http
                .request(request.method.clone(), format!("{}{}", base(&at), request.path))
                .header("accept", "application/json");
            if let Some(token) = &self.token {
                builder = builder.bearer_auth(token);
            }
            for (name, value) in request.headers {
                builder = builder.header(*name, value);
            }
            if let Some(body) = request.body.clone() {
                builder = builder.header("content-type", body.content_type).body(body.text);
            }
            counts.sends += 1;
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => return Tried::Failed { cause: cause(&e), lost: !e.is_connect(), at },
            };
            let status = response.status();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
            if matches!(status, StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT)
                && let Some(leader) = orchestrators::redirect_target(&at, header("herd-leader"), header("location"))
            {
                if hops == MAX_HOPS {
                    return Tried::Failed { cause: format!("redirected more than {MAX_HOPS} times"), lost: false, at };
                }
                hops += 1;
                at = leader;
                continue;
            }
            counts.retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
            if request.stream && status.is_success() {
                return Tried::Answered { at, answer: Answer::Streaming(response) };
            }
            let body = match response.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => return Tried::Failed { cause: cause(&e), lost: true, at },
            };
            // No leader yet, or the leader lost its lease: nothing was done; try another.
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return Tried::Failed { cause: refusal(status, &body), lost: false, at };
            }
            return Tried::Answered { at, answer: Answer::Read(status, body) };
        }
    }
}

/// How a request fared over its rounds.
#[derive(Default)]
struct Counts {
    /// Times it was sent (redirects included).
    sends: usize,
    /// Sends whose answer was lost after the request may have reached an orchestrator.
    lost: usize,
    /// `Retry-After` of the last answer, in seconds.
    retry_after: Option<u64>,
}

/// Instances per page when the CLI reads a whole cluster (the API's maximum).
const CLUSTER_PAGE: u32 = 10_000;

fn cluster_path(cluster: &ClusterRef) -> String {
    // NB: both parts are DNS labels (checked by `ClusterRef`), so they need no escaping.
    format!("/v1/tenants/{}/clusters/{}", cluster.tenant, cluster.name)
}

fn json_body<T: serde::Serialize>(value: &T) -> Result<Body> {
    Ok(Body {
        content_type: "application/json",
        text: serde_json::to_string(value).context("cannot encode the request")?,
    })
}

/// How often a request answered 429 (over the token's rate) is sent again after `Retry-After`.
const RATE_RETRIES: u32 = 5;

/// A fresh `Idempotency-Key`: unique per invocation, the same across its retries.
fn idempotency_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("herd-cli-{}-{nanos}", std::process::id())
}

/// The error for an answer that is not a success; a 401 says how to get a token.
fn refused(status: StatusCode, body: &[u8], token_given: bool) -> anyhow::Error {
    if status == StatusCode::UNAUTHORIZED {
        let detail = serde_json::from_slice::<Problem>(body).map(|p| p.detail).unwrap_or_default();
        return NoToken { detail, given: token_given }.into();
    }
    anyhow!(refusal(status, body))
}

/// Decodes a successful answer, or turns any other into an error.
fn decode<T: DeserializeOwned>(
    method: &Method,
    path: &str,
    status: StatusCode,
    body: &[u8],
    token_given: bool,
) -> Result<T> {
    if !status.is_success() {
        return Err(refused(status, body, token_given));
    }
    serde_json::from_slice(body).with_context(|| {
        format!("unexpected answer to {method} {path} (is --server an orchestrator of this herd version?)")
    })
}

fn is_problem(body: &[u8]) -> bool {
    serde_json::from_slice::<Problem>(body).is_ok()
}

/// What an error answer says: the problem's detail, then each offending field indented on its
/// own line. When the detail only repeats the fields, a short headline replaces it.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let Ok(problem) = serde_json::from_slice::<Problem>(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let hint = "is --server the URL of herd-orchestrator?";
        return if text.is_empty() {
            format!("the server answered {status} ({hint})")
        } else {
            format!("the server answered {status}: {text} ({hint})")
        };
    };
    let repeats_fields = problem
        .errors
        .iter()
        .all(|e| problem.detail.contains(&e.message));
    let mut text = if problem.errors.is_empty() || !repeats_fields {
        problem.detail.clone()
    } else {
        format!(
            "refused by the orchestrator ({} {})",
            problem.status, problem.code
        )
    };
    for e in &problem.errors {
        text.push_str(&format!("\n  - {e}"));
    }
    if status == StatusCode::PRECONDITION_FAILED {
        text.push_str("\n  it changed since herd read it: see what changed with `herd status`, then run the command again");
    }
    text
}

/// The innermost cause of a transport error, e.g. `Connection refused (os error 111)`;
/// reqwest's own message only names the URL.
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        let (what, within) = if e.is_connect() { ("no connection", CONNECT_TIMEOUT) } else { ("no answer", REQUEST_TIMEOUT) };
        return format!("{what} within {}", humantime::format_duration(within));
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    if text.contains("certificate") {
        return format!("{text}: the server's TLS certificate is not trusted; if its CA is your own, pass --ca-file CA.pem (or HERD_CA_FILE)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::FieldError;
    use serde_json::json;

    fn problem(detail: &str, errors: Vec<FieldError>) -> Vec<u8> {
        let p = Problem {
            kind: "about:blank".into(),
            title: "Unprocessable Entity".into(),
            status: 422,
            detail: detail.into(),
            code: "invalid_spec".into(),
            errors,
        };
        serde_json::to_vec(&p).unwrap_or_default()
    }

    #[test]
    fn refusal_lists_every_field() {
        let errors = vec![
            FieldError {
                field: "pools.datanode.memory".into(),
                message: "too small".into(),
                line: Some(9),
            },
            FieldError::new("tenant", "bad name"),
        ];
        let detail = "invalid spec: pools.datanode.memory (line 9): too small; tenant: bad name";
        let got = refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            &problem(detail, errors.clone()),
        );
        assert_eq!(
            got,
            "refused by the orchestrator (422 invalid_spec)\n  - pools.datanode.memory (line 9): too small\n  - tenant: bad name"
        );
        let got = refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            &problem("the spec is refused", errors),
        );
        assert!(
            got.starts_with("the spec is refused\n  - pools.datanode.memory (line 9): too small\n"),
            "{got}"
        );
    }

    #[test]
    fn refusal_without_fields_is_the_detail() {
        let got = refusal(
            StatusCode::NOT_FOUND,
            &problem("cluster `acme/prod` not found", vec![]),
        );
        assert_eq!(got, "cluster `acme/prod` not found");
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY, b"upstream down\n"),
            "the server answered 502 Bad Gateway: upstream down (is --server the URL of herd-orchestrator?)"
        );
        assert_eq!(
            refusal(StatusCode::METHOD_NOT_ALLOWED, b""),
            "the server answered 405 Method Not Allowed (is --server the URL of herd-orchestrator?)"
        );
        assert!(
            is_problem(&problem("x", vec![]))
                && !is_problem(json!({"a": 1}).to_string().as_bytes())
        );
    }

    #[test]
    fn server_must_be_an_http_url() {
        for bad in ["127.0.0.1:7480", "localhost", "ftp://host", ""] {
            assert!(Client::new(bad, None).is_err(), "{bad}");
        }
        let c = Client::new("http://127.0.0.1:7480/", None).unwrap();
        assert_eq!(base(&c.current()), "http://127.0.0.1:7480");
        let e = Client::new("http://10.0.0.1:7480,10.0.0.2:7480", None).err().unwrap().to_string();
        assert!(e.starts_with("--server: `10.0.0.2:7480` is not an http(s) URL"), "{e}");
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod failover_tests;
