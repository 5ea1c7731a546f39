//! Tenants (admin only, but a tenant token reads its own record): create, list, get with
//! quota and usage, set the quota, delete when empty.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_api::wire::{CreateTenant, Page, Problem, Tenant, UpdateQuota};

use super::auth::Caller;
use super::{ListParams, Result, answered, check_name, once, parse};
use crate::state::State;

/// Creates a tenant (201), or answers 200 when it exists with the same quota. Accepts an
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    params(("Idempotency-Key" = Option<String>, Header, description = "retry safely: the same key and body get the first answer")),
    request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 200, body = Tenant), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    caller.principal.require_admin()?;
    let body = body?;
    let once = once(&headers, &caller, &uri, &body)?;
    let req: CreateTenant = parse(&body)?;
    Ok(answered(s.create_tenant(caller.principal.actor(), req, once).await?))
}

/// Every tenant, with quota and usage (admin only).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(ListParams),
    responses((status = 200, body = Page<Tenant>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<Tenant>>> {
    caller.principal.require_admin()?;
    let (limit, after) = q?.0.checked()?;
    Ok(Json(s.tenants(after, limit).await?))
}

/// A tenant with its quota and usage.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Json<Tenant>> {
    let Path(tenant) = path?;
    check_name("tenant", &tenant)?;
    caller.principal.require_tenant(&tenant, "tenant", &tenant)?;
    Ok(Json(s.tenant(tenant).await?))
}

/// Replaces a tenant's quota (admin only).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/quota", tag = "tenants", params(("tenant" = String, Path)),
    request_body = UpdateQuota,
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn set_quota(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Tenant>> {
    let Path(tenant) = path?;
    check_name("tenant", &tenant)?;
    caller.principal.require_tenant(&tenant, "tenant", &tenant)?;
    caller.principal.require_admin()?;
    let req: UpdateQuota = parse(&body?)?;
    Ok(Json(s.set_quota(caller.principal.actor(), tenant, req.quota).await?))
}

/// Deletes a tenant that has no clusters (admin only); its tokens are revoked.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants", params(("tenant" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    let Path(tenant) = path?;
    check_name("tenant", &tenant)?;
    caller.principal.require_tenant(&tenant, "tenant", &tenant)?;
    caller.principal.require_admin()?;
    s.delete_tenant(caller.principal.actor(), tenant).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
