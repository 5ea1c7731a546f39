//! HTTP client for the orchestrator's API; turns problem+json answers into readable errors.

use anyhow::{Context, Result, anyhow};
use herd_api::wire::Problem;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// A successful answer: its status and body.
pub struct Answer<T> {
    pub status: StatusCode,
    pub body: T,
}

impl Client {
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build HTTP client")?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string() })
    }

    /// Sends a request and reads the whole answer (the API's answers are small).
    async fn send(&self, method: Method, path: &str, body: Option<(&str, String)>) -> Result<(StatusCode, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some((content_type, text)) = body {
            req = req.header("content-type", content_type).body(text);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the orchestrator at {}: {e} (is herd-orchestrator running? set --server or HERD_SERVER)",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the orchestrator's answer")?;
        Ok((status, bytes.to_vec()))
    }

    pub async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<(&str, String)>) -> Result<Answer<T>> {
        let (status, body) = self.send(method, path, body).await?;
        if !status.is_success() {
            return Err(problem_error(status, &body));
        }
        let bytes = if body.is_empty() { b"null".to_vec() } else { body };
        let body = serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from {path}"))?;
        Ok(Answer { status, body })
    }

    /// GET that maps 404 to `None`.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let (status, body) = self.send(Method::GET, path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(problem_error(status, &body));
        }
        Ok(Some(serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {path}"))?))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.call(Method::GET, path, None).await?.body)
    }
}

/// An error carrying the problem's detail and each offending field on its own line.
pub fn problem_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) => {
            let mut msg = p.detail.clone();
            if p.errors.len() > 1 || p.errors.first().is_some_and(|e| !msg.contains(&e.message)) {
                msg = format!("{} ({})", p.title, p.code);
                for e in &p.errors {
                    msg.push_str(&format!("\n  - {e}"));
                }
            }
            anyhow!(msg)
        }
        Err(_) => anyhow!("the orchestrator answered {status}: {}", String::from_utf8_lossy(body).trim()),
    }
}
