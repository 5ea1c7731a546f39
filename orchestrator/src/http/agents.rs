//! The agent protocol (agent or admin tokens) and the host list (admin only).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State as AxumState};
use axum::Json;
use herd_api::wire::{Heartbeat, HeartbeatReply, HostStatus, Page, Problem, RegisterReply, RegisterRequest, Watch, WATCH_MAX_MS};

use super::auth::Caller;
use super::{ListParams, Result, parse};
use crate::logs::LogKey;
use crate::state::State;

/// An agent registers its host (again after a restart: capacity is updated).
#[utoipa::path(post, path = "/v1/agent/register", tag = "agents", request_body = RegisterRequest,
    responses((status = 200, body = RegisterReply), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn register(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    key: Option<Extension<LogKey>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<RegisterReply>> {
    caller.principal.require_agent()?;
    let req: RegisterRequest = parse(&body?)?;
    caller.principal.require_host(&req.host.id)?;
    let host = req.host.id.clone();
    if let Some(ep) = &req.logs {
        let peer = peer.map(|Extension(ConnectInfo(a))| a.ip());
        s.check_log_endpoint(&caller.principal.actor(), &host, ep, req.host.address, peer).await?;
    }
    let mut reply = s.register(caller.principal.actor(), req.host).await?;
    if let Some(mut ep) = req.logs {
        if let Some(Extension(key)) = &key {
            // The agent accepts the host's derived credential from now on; only its hash is kept.
            let credential = key.credential(&host);
            ep.secret = crate::auth::hash(&credential);
            reply.log_secret = Some(credential);
        }
        s.set_log_endpoint(host, ep).await?;
    }
    Ok(Json(reply))
}

/// A heartbeat's or a watch's answer as JSON ([`crate::delta::Answer::to_json`]: written into
/// a buffer sized for it at once, its containers written from where their derivation holds
/// them).
pub struct Reply(pub crate::delta::Answer);

impl axum::response::IntoResponse for Reply {
    fn into_response(self) -> axum::response::Response {
        match self.0.to_json() {
            Ok(buf) => ([(axum::http::header::CONTENT_TYPE, "application/json")], buf).into_response(),
            Err(e) => super::problem::ApiError::from(crate::error::Error::Writer(format!("cannot write the reply as JSON: {e}"))).into_response(),
        }
    }
}

/// An agent reports what runs on its host; the answer is the host's desired set, as a delta
/// against the generation the agent says it applied (`applied`), else in full. An address
/// outside the host's subnet is refused (403) and audited.
#[utoipa::path(post, path = "/v1/agent/heartbeat", tag = "agents", request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 403, body = Problem), (status = 404, body = Problem, description = "unknown host: register again")),
    security(("bearer" = [])))]
pub async fn heartbeat(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Reply> {
    caller.principal.require_agent()?;
    let body = body?;
    // A JSON heartbeat whose report is the one last parsed for its host, byte for byte, is
    // answered without parsing it again; anything else (another report, YAML, an error to
    // name) takes the full path.
    let raw = std::str::from_utf8(&body).ok().and_then(|text| serde_json::from_str::<RawHeartbeat<'_>>(text).ok());
    if let Some(RawHeartbeat { host_id, observed, conditions, purged, applied, network_deltas }) = raw {
        caller.principal.require_host(&host_id)?;
        let report = crate::hot::report_digest(observed.get());
        let head = crate::hosts::HeartbeatHead { host_id, conditions, purged, applied, network_deltas };
        if let Some(reply) = s.heartbeat_same(&head, report).await {
            return Ok(Reply(reply?));
        }
        if let Ok(observed) = serde_json::from_str(observed.get()) {
            let hb = head.with(observed);
            s.check_heartbeat(&caller.principal.actor(), &hb).await?;
            return Ok(Reply(s.heartbeat_as(hb, Some(report)).await?));
        }
    }
    let hb: Heartbeat = parse(&body)?;
    caller.principal.require_host(&hb.host_id)?;
    s.check_heartbeat(&caller.principal.actor(), &hb).await?;
    Ok(Reply(s.heartbeat_as(hb, None).await?))
}

/// A [`Heartbeat`] with its report left as the JSON it came in (see [`State::heartbeat_same`]).
#[derive(serde::Deserialize)]
struct RawHeartbeat<'a> {
    host_id: String,
    #[serde(borrow)]
    observed: &'a serde_json::value::RawValue,
    #[serde(default)]
    conditions: Vec<String>,
    #[serde(default)]
    purged: Vec<herd_api::names::InstanceRef>,
    #[serde(default)]
    applied: Option<u64>,
    #[serde(default)]
    network_deltas: bool,
}

/// A long poll for the host's desired set: answered as soon as it differs from generation
/// `applied` (a delta), or after `wait_ms` (at most 60 s) with an empty delta. Agents keep one
/// open beside their heartbeats, so a placement reaches its host within milliseconds.
#[utoipa::path(post, path = "/v1/agent/watch", tag = "agents", request_body = Watch,
    responses((status = 200, body = HeartbeatReply), (status = 403, body = Problem), (status = 404, body = Problem, description = "unknown host: register again"),
        (status = 409, body = Problem, description = "the host already holds two watches open"), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn watch(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Reply> {
    caller.principal.require_agent()?;
    let w: Watch = parse(&body?)?;
    caller.principal.require_host(&w.host_id)?;
    if w.wait_ms > WATCH_MAX_MS {
        return Err(crate::error::Error::invalid("wait_ms", format!("at most {WATCH_MAX_MS} (60 s), got {}", w.wait_ms)).into());
    }
    Ok(Reply(s.watch(&w.host_id, w.applied, std::time::Duration::from_millis(w.wait_ms), w.network_deltas).await?))
}

/// Hosts: capacity, allocation and liveness (admin only).
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts", params(ListParams),
    responses((status = 200, body = Page<HostStatus>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn hosts(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<HostStatus>>> {
    caller.principal.require_admin()?;
    let (limit, after) = q?.0.checked()?;
    Ok(Json(s.hosts(after, limit).await?))
}
