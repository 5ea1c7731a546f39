//! The agent's side of the agent protocol: it starts every exchange, so agents behind NAT work.
//!
//! `--orchestrator` may list several orchestrators of one control plane. Each request goes to
//! the current one (the last that answered) first; a follower's `307` is followed by
//! re-sending the same request, token and body, to the leader (at most [`MAX_HOPS`] hops),
//! which becomes the current one; an orchestrator that cannot be reached or answers `503`
//! (no leader yet, lease lost) is left for the next of the list. One call is one round (each
//! orchestrator at most once): the agent's loops back off and call again, for ever.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use herd_api::orchestrators::{self, MAX_HOPS};
use herd_api::wire::{Heartbeat, HeartbeatReply, HostInfo, LogEndpoint, Problem, RegisterReply, RegisterRequest, Watch};
use reqwest::StatusCode;
use tracing::{info, warn};
use url::Url;

use crate::error_chain;

/// How long one request may take (a watch: its wait and this).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long connecting to one orchestrator may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No orchestrator of the list answered: each could not be reached, or had no leader.
    #[error("cannot reach an orchestrator: {}", tried.iter().map(|(url, cause)| format!("{url}: {cause}")).collect::<Vec<_>>().join("; "))]
    Unreachable { tried: Vec<(Url, String)> },
    /// The orchestrator does not know this host (e.g. its store was replaced): register again.
    #[error("the orchestrator does not know this host")]
    UnknownHost,
    #[error("the orchestrator refused {what}: {status} {detail}")]
    Refused { what: &'static str, status: StatusCode, detail: String },
}

pub struct Client {
    http: reqwest::Client,
    /// `--orchestrator`, in the order given; never empty.
    orchestrators: Vec<Url>,
    /// Where the next request goes first: the orchestrator that last answered (perhaps a
    /// leader a follower sent us to, not in the list). NB: a std mutex, held only to copy.
    current: Mutex<Url>,
    /// Moves logged since an orchestrator last answered: each is logged once per outage.
    said: Mutex<BTreeSet<(Url, Url)>>,
    /// The bearer token; never logged.
    token: String,
}

/// One orchestrator's (and the leader it redirected to) failure to answer.
struct Failed {
    at: Url,
    cause: String,
}

impl Client {
    /// A client of the orchestrators `orchestrators` (one control plane; at least one);
    /// `roots`: CA certificates (PEM) to trust for their HTTPS besides the public ones (`--ca-file`).
    pub fn new(orchestrators: Vec<Url>, token: String, roots: Option<&[u8]>) -> anyhow::Result<Self> {
        let first = orchestrators.first().cloned().ok_or_else(|| anyhow::anyhow!("no orchestrator URL given"))?;
        // NB: herd follows redirects itself: reqwest's drop `Authorization` when the port changes.
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)?;
            anyhow::ensure!(!certs.is_empty(), "no certificate in it");
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        Ok(Self { http: builder.build()?, orchestrators, current: Mutex::new(first), said: Mutex::new(BTreeSet::new()), token })
    }

    /// The orchestrator the next request goes to first: the one that last answered.
    pub fn current(&self) -> Url {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn post<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        self.post_within(what, path, body, None).await
    }

    /// [`Client::post`], with another timeout than the client's 15 s.
    async fn post_within<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &Req,
        timeout: Option<Duration>,
    ) -> Result<Resp, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Refused { what, status: StatusCode::BAD_REQUEST, detail: e.to_string() })?;
        let (at, resp) = self.round(path, &body, timeout).await?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| ClientError::Unreachable { tried: vec![(at, error_chain(&e))] });
        }
        // NB: an unknown host is a problem body; an orchestrator without the route answers
        // `no_route` (an old one: see `Watch`).
        if status == StatusCode::NOT_FOUND && (what == "heartbeat" || what == "watch") {
            let p = resp.json::<Problem>().await.ok();
            if p.as_ref().is_some_and(|p| p.code == "no_route") {
                return Err(ClientError::Refused { what, status, detail: p.map(|p| p.detail).unwrap_or_default() });
            }
            return Err(ClientError::UnknownHost);
        }
        let detail = match resp.json::<Problem>().await {
            Ok(p) => p.detail,
            Err(_) => String::new(),
        };
        Err(ClientError::Refused { what, status, detail })
    }

    /// Sends `POST path` to each orchestrator once, the current one first, until one answers
    /// (anything but a `503`); that one becomes the current one.
    async fn round(&self, path: &str, body: &[u8], timeout: Option<Duration>) -> Result<(Url, reqwest::Response), ClientError> {
        let first = self.current();
        let order = orchestrators::round(&self.orchestrators, &first);
        let mut tried = Vec::new();
        for (i, server) in order.iter().enumerate() {
            match self.send_to(server.clone(), path, body, timeout).await {
                Ok((at, resp)) => {
                    if at != first {
                        info!(orchestrator = %at, "now talking to this orchestrator");
                    }
                    *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at.clone();
                    self.said.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                    return Ok((at, resp));
                }
                Err(Failed { at, cause }) => {
                    if let Some(next) = order.get(i + 1)
                        && self.said.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((at.clone(), next.clone()))
                    {
                        warn!(orchestrator = %at, next = %next, error = %cause, "orchestrator unreachable; trying the next");
                    }
                    tried.push((at, cause));
                }
            }
        }
        Err(ClientError::Unreachable { tried })
    }

    /// Sends `POST path` to `server`, and on to the leader while a follower redirects.
    async fn send_to(&self, server: Url, path: &str, body: &[u8], timeout: Option<Duration>) -> Result<(Url, reqwest::Response), Failed> {
        let mut at = server;
        let mut hops = 0;
        loop {
            let url = at.join(path).map_err(|e| Failed { at: at.clone(), cause: e.to_string() })?;
            let mut req = self
                .http
                .post(url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => return Err(Failed { cause: error_chain(&e), at }),
            };
            let status = resp.status();
            let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
            if matches!(status, StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT)
                && let Some(leader) = orchestrators::redirect_target(&at, header("herd-leader"), header("location"))
            {
                if hops == MAX_HOPS {
                    return Err(Failed { cause: format!("redirected more than {MAX_HOPS} times"), at });
                }
                hops += 1;
                at = leader;
                continue;
            }
            // No leader yet, or the leader lost its lease: nothing was done; try another.
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let detail = resp.json::<Problem>().await.map(|p| format!("{} {}", p.code, p.detail)).unwrap_or_default();
                return Err(Failed { cause: format!("{status} {detail}"), at });
            }
            return Ok((at, resp));
        }
    }

    pub async fn register(&self, host: HostInfo, logs: Option<LogEndpoint>) -> Result<RegisterReply, ClientError> {
        self.post("registration", "/v1/agent/register", &RegisterRequest { host, logs }).await
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        self.post("heartbeat", "/v1/agent/heartbeat", hb).await
    }

    /// A long poll for the host's desired set (see `POST /v1/agent/watch`).
    pub async fn watch(&self, w: &Watch) -> Result<HeartbeatReply, ClientError> {
        let timeout = Duration::from_millis(w.wait_ms) + REQUEST_TIMEOUT;
        self.post_within("watch", "/v1/agent/watch", w, Some(timeout)).await
    }
}
