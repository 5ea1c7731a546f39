//! API tokens (admin only): issue (the secret is in this answer only), list, revoke.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herd_api::wire::{CreateToken, Page, Problem, TokenCreated, TokenInfo};

use super::auth::Caller;
use super::{ListParams, Result, answered, once, parse};
use crate::error::Error;
use crate::state::State;

/// Issues a token: `admin`, `agent`, or `tenant` with its tenant. The secret is shown only
/// in this answer (and in a replay of it with the same `Idempotency-Key` and token).
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    params(("Idempotency-Key" = Option<String>, Header, description = "retry safely: the same key and body get the first answer")),
    request_body = CreateToken,
    responses((status = 201, body = TokenCreated), (status = 403, body = Problem), (status = 422, body = Problem)),
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
    let req: CreateToken = parse(&body)?;
    Ok(answered(s.create_token(caller.principal.actor(), req, once).await?))
}

/// Every token, revoked ones included; never a secret.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", params(ListParams),
    responses((status = 200, body = Page<TokenInfo>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<TokenInfo>>> {
    caller.principal.require_admin()?;
    let (limit, after) = q?.0.checked()?;
    Ok(Json(s.tokens(after, limit).await?))
}

/// Revokes a token at once; revoking it again is a no-op. The last admin token stays.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    path: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    caller.principal.require_admin()?;
    let Path(id) = path?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid("id", "a token id is hexadecimal, as `herd tokens list` shows it").into());
    }
    s.revoke_token(caller.principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
