//! The orchestrator's HTTP API: one method per route `herd` uses, typed with `herd_api`'s wire
//! types. An answer that is not a success becomes an error carrying the problem+json detail
//! and each offending field on its own line; a server that cannot be reached becomes
//! [`Unreachable`], which `--wait` retries.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use herd_api::Role;
use herd_api::spec::Replicas;
use herd_api::wire::{ClusterStatus, HostStatus, Problem, ScaleRequest, Tenant};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::args::ClusterRef;

/// How long one request may take; the API's answers are small and quick.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one orchestrator.
pub struct Client {
    http: reqwest::Client,
    /// The `--server` URL without a trailing `/`.
    server: String,
}

/// The orchestrator could not be reached at all, as opposed to answering with an error.
#[derive(Debug)]
pub struct Unreachable {
    server: String,
    cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the orchestrator at {}: {} (is herd-orchestrator running? set --server or HERD_SERVER)",
            self.server, self.cause
        )
    }
}

impl std::error::Error for Unreachable {}

/// A body to send and its content type.
struct Body {
    content_type: &'static str,
    text: String,
}

impl Client {
    /// A client for the orchestrator at `server`, e.g. `http://127.0.0.1:7480`.
    pub fn new(server: &str) -> Result<Self> {
        let url = Url::parse(server)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                anyhow!(
                    "--server `{server}` is not an http(s) URL; write e.g. http://127.0.0.1:7480"
                )
            })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            server: url.as_str().trim_end_matches('/').to_string(),
        })
    }

    /// `GET /v1/hosts`.
    pub async fn hosts(&self) -> Result<Vec<HostStatus>> {
        self.read("/v1/hosts").await
    }

    /// `GET /v1/tenants`.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read("/v1/tenants").await
    }

    /// `POST /v1/tenants`: the tenant, and whether it was created (rather than already there).
    pub async fn create_tenant(&self, name: &str) -> Result<(Tenant, bool)> {
        let body = Body {
            content_type: "application/json",
            text: serde_json::json!({ "name": name }).to_string(),
        };
        let (status, tenant) = self.call(Method::POST, "/v1/tenants", Some(body)).await?;
        Ok((tenant, status == StatusCode::CREATED))
    }

    /// `GET /v1/clusters`: every tenant's clusters.
    pub async fn clusters(&self) -> Result<Vec<ClusterStatus>> {
        self.read("/v1/clusters").await
    }

    /// `GET /v1/tenants/{t}/clusters/{c}`; `None` when there is no such cluster.
    pub async fn cluster(&self, cluster: &ClusterRef) -> Result<Option<ClusterStatus>> {
        let path = cluster_path(cluster);
        let (status, body) = self.send(Method::GET, &path, None).await?;
        if status == StatusCode::NOT_FOUND && is_problem(&body) {
            return Ok(None);
        }
        Ok(Some(decode(&Method::GET, &path, status, &body)?))
    }

    /// `PUT /v1/tenants/{t}/clusters/{c}` with the spec as written: the cluster, and whether
    /// it was created (rather than updated or unchanged).
    pub async fn apply(&self, cluster: &ClusterRef, spec: String) -> Result<(ClusterStatus, bool)> {
        let body = Body {
            content_type: "application/yaml",
            text: spec,
        };
        let (status, applied) = self
            .call(Method::PUT, &cluster_path(cluster), Some(body))
            .await?;
        Ok((applied, status == StatusCode::CREATED))
    }

    /// `PATCH /v1/tenants/{t}/clusters/{c}/pools/{pool}`.
    pub async fn scale(
        &self,
        cluster: &ClusterRef,
        pool: Role,
        replicas: u32,
    ) -> Result<ClusterStatus> {
        let request = ScaleRequest {
            replicas: Replicas(replicas),
        };
        let body = Body {
            content_type: "application/json",
            text: serde_json::to_string(&request).context("cannot encode the scale request")?,
        };
        let path = format!("{}/pools/{pool}", cluster_path(cluster));
        Ok(self.call(Method::PATCH, &path, Some(body)).await?.1)
    }

    /// `DELETE /v1/tenants/{t}/clusters/{c}`.
    pub async fn delete(&self, cluster: &ClusterRef) -> Result<()> {
        let path = cluster_path(cluster);
        let (status, body) = self.send(Method::DELETE, &path, None).await?;
        if !status.is_success() {
            bail!(refusal(status, &body));
        }
        Ok(())
    }

    /// `GET {path}` as a stream (a log read): the response once it is a success. No overall
    /// timeout, as a followed log streams for as long as the reader wants.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        let http = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        let unreachable = |e: reqwest::Error| Unreachable {
            server: self.server.clone(),
            cause: cause(&e),
        };
        let response = http
            .get(format!("{}{path}", self.server))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.map_err(unreachable)?;
            bail!(refusal(status, &body));
        }
        Ok(response)
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
        Ok((status, decode(&method, path, status, &bytes)?))
    }

    /// Sends a request and reads the whole answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server))
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("content-type", body.content_type)
                .body(body.text);
        }
        let unreachable = |e: reqwest::Error| Unreachable {
            server: self.server.clone(),
            cause: cause(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        Ok((status, bytes.to_vec()))
    }
}

fn cluster_path(cluster: &ClusterRef) -> String {
    // NB: both parts are DNS labels (checked by `ClusterRef`), so they need no escaping.
    format!("/v1/tenants/{}/clusters/{}", cluster.tenant, cluster.name)
}

/// Decodes a successful answer, or turns any other into an error.
fn decode<T: DeserializeOwned>(
    method: &Method,
    path: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T> {
    if !status.is_success() {
        bail!(refusal(status, body));
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
    text
}

/// The innermost cause of a transport error, e.g. `Connection refused (os error 111)`;
/// reqwest's own message only names the URL.
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!(
            "no answer within {}",
            humantime::format_duration(REQUEST_TIMEOUT)
        );
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
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
            assert!(Client::new(bad).is_err(), "{bad}");
        }
        let c = Client::new("http://127.0.0.1:7480/");
        assert_eq!(
            c.map(|c| c.server).ok().as_deref(),
            Some("http://127.0.0.1:7480")
        );
    }
}
