//! `GET /v1/tenants/{tenant}/clusters/{cluster}/instances/{instance}/logs?follow=&since=&tail=&stream=`:
//! an instance's captured stdout and stderr, proxied as a stream from the agent of the host
//! that holds it (never buffered whole here), one record per line:
//! `TIMESTAMP STREAM PAYLOAD`, the payload escaped reversibly (`\\`, `\n`, `\r`, `\xHH`).
//!
//! Agents tell where they serve logs when they register; the orchestrator answers with the
//! credential it will present ([`LogKey::credential`], derived per host from a key kept in a
//! file of its data directory), and stores only that credential's hash.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_api::logs::LogQuery;
use herd_api::names::InstanceRef;
use herd_api::wire::LogEndpoint;
use tracing::warn;

use crate::error::{Error, Result};
use crate::http::auth::Caller;
use crate::http::problem::ApiError;
use crate::state::State;

/// The key each agent's log credential is derived from (HMAC-SHA256 over the host id). It
/// lives in a file of the data directory (mode 0600), never in the store, so the store holds
/// no secret an agent accepts.
#[derive(Clone)]
pub struct LogKey(std::sync::Arc<[u8; 32]>);

impl LogKey {
    /// Reads the key from `path`, creating it (random) on first start.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Self> {
        let parse = |text: &str| -> Option<[u8; 32]> {
            let text = text.trim();
            let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect::<Option<_>>()?;
            bytes.try_into().ok()
        };
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text)
                .map(|k| Self(k.into()))
                .ok_or_else(|| std::io::Error::other(format!("{} is not 32 bytes of hex; remove it to make a new one", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use rand::RngCore;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                crate::auth::write_secret_file(path, &hex)?;
                Ok(Self(key.into()))
            }
            Err(e) => Err(e),
        }
    }

    /// The bearer the orchestrator presents to `host`'s log endpoint.
    pub fn credential(&self, host: &str) -> String {
        use hmac::{Hmac, Mac};
        // NB: HMAC takes keys of any length, so this never fails; if it did, the empty
        // credential would match no agent.
        let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0[..]) else { return String::new() };
        mac.update(b"herd-agent-logs\0");
        mac.update(host.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// CA certificates trusted for agents' HTTPS log endpoints besides the public ones.
static AGENT_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Trusts the CA certificates in `pem` for agents' HTTPS log endpoints (`--agent-ca-file`);
/// once, at start, before any log is read.
pub fn trust_agent_cas(pem: &[u8]) -> std::result::Result<(), String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    AGENT_ROOTS.set(certs).map_err(|_| "agent CAs were set already".to_string())
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // NB: no overall timeout: a followed log streams for as long as the reader wants.
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        for c in AGENT_ROOTS.get().into_iter().flatten() {
            builder = builder.add_root_certificate(c.clone());
        }
        builder.build().unwrap_or_default()
    })
}

impl State {
    /// Records where `host`'s agent serves logs.
    pub async fn set_log_endpoint(&self, host: String, ep: LogEndpoint) -> Result<()> {
        match url::Url::parse(&ep.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(Error::invalid("logs.url", format!("`{}` is not an http(s) URL", ep.url))),
        }
        self.store.write(move |tx| tx.put_log_endpoint(&host, &ep)).await
    }

    /// The instance and the log endpoint of the host holding it.
    pub async fn log_source(&self, tenant: String, cluster: String, name: String) -> Result<(InstanceRef, String, LogEndpoint)> {
        self.store
            .read(move |c| {
                let wanted = InstanceRef { tenant: tenant.clone(), cluster: cluster.clone(), name: name.clone() };
                let inst = c.instances(Some((&tenant, &cluster)))?
                    .into_iter()
                    .find(|i| i.instance == wanted)
                    .ok_or_else(|| Error::not_found("instance", wanted.to_string()))?;
                let Some(host) = inst.host else {
                    let why = inst.pending.unwrap_or_else(|| "pending".into());
                    return Err(Error::Conflict(format!("instance {wanted} is not placed on a host yet ({why}), so it has no logs")));
                };
                let ep = c.log_endpoint(&host)?.ok_or_else(|| {
                    Error::Unavailable(format!("the agent of host {host} has not registered a log endpoint; upgrade or restart it"))
                })?;
                Ok((wanted, host, ep))
            })
            .await
    }
}

/// The logs route's query parameters, as documented (checked by [`LogQuery::parse`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // NB: for the OpenAPI document only; the handler reads the raw query.
pub struct LogParams {
    /// Keep streaming new lines as they are written.
    follow: Option<bool>,
    /// Only lines from then on: a duration before now (`10m`, `1h30m`) or an RFC 3339 UTC time.
    #[param(pattern = r"^(([0-9]{1,6}(ms|s|m|h|d))+|20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z)$")]
    since: Option<String>,
    /// Only the last N lines (before following), 0 to 1000000.
    #[param(minimum = 0, maximum = 1000000)]
    tail: Option<u32>,
    /// Only one stream: `stdout` or `stderr`.
    #[param(pattern = "^(stdout|stderr)$")]
    stream: Option<String>,
}

/// An instance's captured stdout and stderr, streamed from its host's agent as `text/plain`,
/// one record per line: `TIMESTAMP STREAM PAYLOAD`. A tenant token reads its own tenant's only.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/clusters/{cluster}/instances/{instance}/logs", tag = "clusters",
    params(("tenant" = String, Path), ("cluster" = String, Path), ("instance" = String, Path), LogParams),
    responses((status = 200, content_type = "text/plain", body = String, description = "the records, streamed"),
        (status = 404, body = herd_api::wire::Problem), (status = 409, body = herd_api::wire::Problem, description = "the instance is not placed on a host yet"),
        (status = 502, body = herd_api::wire::Problem, description = "the instance's agent cannot be reached")),
    security(("bearer" = [])))]
pub async fn logs(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    key: Option<Extension<LogKey>>,
    path: std::result::Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    query: std::result::Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw): RawQuery,
) -> std::result::Result<Response, ApiError> {
    let Path((tenant, cluster, instance)) = path?;
    let Query(params) = query?;
    for (field, name) in [("tenant", &tenant), ("cluster", &cluster), ("instance", &instance)] {
        herd_api::names::check_dns_label(name).map_err(|m| Error::invalid(field, m))?;
    }
    if let Some(unknown) = params.keys().find(|k| !["follow", "since", "tail", "stream"].contains(&k.as_str())) {
        return Err(Error::invalid(unknown.as_str(), "unknown query parameter; use follow, since, tail or stream").into());
    }
    // Another tenant's instance answers exactly as a missing one does.
    caller.principal.require_tenant(&tenant, "instance", format!("{tenant}/{cluster}/{instance}"))?;
    let p = |k: &str| params.get(k).map(String::as_str);
    LogQuery::parse(p("follow"), p("since"), p("tail"), p("stream")).map_err(|e| Error::invalid(e.field, e.message))?;
    let (inst, host, ep) = s.log_source(tenant, cluster, instance).await?;
    let url = format!(
        "{}/v1/logs/{}/{}/{}?{}",
        ep.url.trim_end_matches('/'),
        inst.tenant,
        inst.cluster,
        inst.name,
        raw.unwrap_or_default()
    );
    // The host's derived credential; without a key (a router made without one) the stored
    // secret, as an older orchestrator stored it.
    let bearer = key.map(|Extension(k)| k.credential(&host)).unwrap_or_else(|| ep.secret.clone());
    let resp = client().get(&url).bearer_auth(&bearer).send().await.map_err(|e| {
        warn!(host = %host, instance = %inst, error = %e, "cannot reach agent for logs");
        Error::Unavailable(format!("cannot reach the agent of host {host} at {} for the logs of {inst}: is it running?", ep.url))
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if status == StatusCode::NOT_FOUND {
        return Err(Error::not_found("logs of instance", format!("{inst} (on host {host}, which has none yet)")).into());
    }
    if !status.is_success() {
        let detail = resp.text().await.unwrap_or_default();
        warn!(host = %host, instance = %inst, status = %status, detail = %detail, "agent refused a log read");
        return Err(Error::Unavailable(format!("the agent of host {host} answered {status} for the logs of {inst}")).into());
    }
    let body = Body::from_stream(resp.bytes_stream());
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}
