//! Host operations (admin only): one host, cordon, uncordon, drain, delete. See
//! [`crate::fleet`].

use axum::Extension;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herd_api::wire::{HostStatus, Problem};

use super::Result;
use super::auth::Caller;
use crate::state::State;

/// One host: capacity, allocation, liveness, cordon and drain progress.
#[utoipa::path(get, path = "/v1/hosts/{host}", tag = "hosts", params(("host" = String, Path)),
    responses((status = 200, body = HostStatus), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<HostStatus>> {
    caller.principal.require_admin()?;
    let Path(host) = path?;
    Ok(Json(s.host(host).await?))
}

/// Cordons a host: nothing new is placed there; what runs there stays. Audited.
#[utoipa::path(post, path = "/v1/hosts/{host}/cordon", tag = "hosts", params(("host" = String, Path)),
    responses((status = 200, body = HostStatus), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn cordon(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<HostStatus>> {
    caller.principal.require_admin()?;
    let Path(host) = path?;
    Ok(Json(s.cordon(caller.principal.actor(), host, true).await?))
}

/// Uncordons a host (and ends its drain). Audited.
#[utoipa::path(post, path = "/v1/hosts/{host}/uncordon", tag = "hosts", params(("host" = String, Path)),
    responses((status = 200, body = HostStatus), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn uncordon(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<HostStatus>> {
    caller.principal.require_admin()?;
    let Path(host) = path?;
    Ok(Json(s.cordon(caller.principal.actor(), host, false).await?))
}

/// Drains a host: cordons it and moves everything elsewhere, DataNodes decommissioned and
/// NodeManagers drained first, masters last; a NameNode stays (its metadata is there).
/// Progress is in the answer's `drain` (poll `GET /v1/hosts/{host}`). Audited.
#[utoipa::path(post, path = "/v1/hosts/{host}/drain", tag = "hosts", params(("host" = String, Path)),
    responses((status = 200, body = HostStatus), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn drain(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<HostStatus>> {
    caller.principal.require_admin()?;
    let Path(host) = path?;
    Ok(Json(s.drain(caller.principal.actor(), host).await?))
}

/// Deletes a host: refused (409) while anything is placed on it. Its subnet lease is
/// released and its agent tokens revoked. Audited.
#[utoipa::path(delete, path = "/v1/hosts/{host}", tag = "hosts", params(("host" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    caller.principal.require_admin()?;
    let Path(host) = path?;
    s.delete_host(caller.principal.actor(), host).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
