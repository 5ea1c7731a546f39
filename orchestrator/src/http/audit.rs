//! The audit trail (admin only), oldest first.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as AxumState};
use axum::Json;
use herd_api::wire::{AuditEntry, Page, Problem};

use super::auth::Caller;
use super::{ListParams, Result};
use crate::error::Error;
use crate::state::{State, page};

/// Every change: who, what, when, and the generations before and after.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(ListParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    AxumState(s): AxumState<State>,
    Extension(caller): Extension<Caller>,
    q: std::result::Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page<AuditEntry>>> {
    caller.principal.require_admin()?;
    let (limit, after) = q?.0.checked()?;
    let after = after
        .map(|a| a.parse::<u64>().map_err(|_| Error::invalid("after", "must be the `next` cursor of the previous page")))
        .transpose()?;
    let entries = s.store.read(move |c| c.audit(after, limit + 1)).await?;
    Ok(Json(page(entries, limit, |e: &AuditEntry| e.id.to_string())))
}
