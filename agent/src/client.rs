//! The agent's side of the agent protocol: it starts every exchange, so agents behind NAT work.

use std::time::Duration;

use herd_api::wire::{Heartbeat, HeartbeatReply, HostInfo, LogEndpoint, Problem, RegisterReply, RegisterRequest, Watch};
use reqwest::StatusCode;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the orchestrator at {url}")]
    Unreachable { url: String, #[source] source: reqwest::Error },
    /// The orchestrator does not know this host (e.g. its store was replaced): register again.
    #[error("the orchestrator does not know this host")]
    UnknownHost,
    #[error("the orchestrator refused {what}: {status} {detail}")]
    Refused { what: &'static str, status: StatusCode, detail: String },
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The bearer token; never logged.
    token: String,
}

impl Client {
    /// A client of the orchestrator at `base`; `roots`: CA certificates (PEM) to trust for its
    /// HTTPS besides the public ones (`--ca-file`).
    pub fn new(base: Url, token: String, roots: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(15));
        if let Some(pem) = roots {
            let certs = reqwest::Certificate::from_pem_bundle(pem)?;
            anyhow::ensure!(!certs.is_empty(), "no certificate in it");
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        Ok(Self { http: builder.build()?, base, token })
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
        let url = self.base.join(path).map_err(|e| ClientError::Refused { what, status: StatusCode::BAD_REQUEST, detail: e.to_string() })?;
        let unreachable = |source| ClientError::Unreachable { url: url.to_string(), source };
        let mut req = self.http.post(url.clone()).bearer_auth(&self.token).json(body);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(unreachable);
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

    pub async fn register(&self, host: HostInfo, logs: Option<LogEndpoint>) -> Result<RegisterReply, ClientError> {
        self.post("registration", "/v1/agent/register", &RegisterRequest { host, logs }).await
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        self.post("heartbeat", "/v1/agent/heartbeat", hb).await
    }

    /// A long poll for the host's desired set (see `POST /v1/agent/watch`).
    pub async fn watch(&self, w: &Watch) -> Result<HeartbeatReply, ClientError> {
        let timeout = Duration::from_millis(w.wait_ms) + Duration::from_secs(15);
        self.post_within("watch", "/v1/agent/watch", w, Some(timeout)).await
    }
}
