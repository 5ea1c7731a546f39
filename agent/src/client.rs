//! The agent's side of the agent protocol: it starts every exchange, so agents behind NAT work.

use std::time::Duration;

use herd_api::wire::{Heartbeat, HeartbeatReply, HostInfo, LogEndpoint, Problem, RegisterReply, RegisterRequest};
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
        let url = self.base.join(path).map_err(|e| ClientError::Refused { what, status: StatusCode::BAD_REQUEST, detail: e.to_string() })?;
        let unreachable = |source| ClientError::Unreachable { url: url.to_string(), source };
        let resp = self.http.post(url.clone()).bearer_auth(&self.token).json(body).send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(unreachable);
        }
        if status == StatusCode::NOT_FOUND && what == "heartbeat" {
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
}
