//! The bearer-token layer: finds who calls (a [`Caller`] in the request's extensions) or
//! answers 401. Agent tokens reach only `/v1/agent/*`; what else a token may see is each
//! handler's check. The secret lives only in memory for the request and is never logged.

use std::fmt;

use axum::extract::{Request, State as AxumState};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herd_api::wire::Scope;

use super::problem::ApiError;
use crate::auth::Principal;
use crate::error::Error;
use crate::state::State;

/// The authenticated caller of a request.
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The bearer secret it sent; seals stored idempotent answers.
    pub secret: String,
}

// NB: by hand, so the secret never reaches a log through `{:?}`.
impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller").field("principal", &self.principal).finish_non_exhaustive()
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, Error> {
    let missing = || {
        Error::Unauthorized(
            "no bearer token: send `Authorization: Bearer SECRET` (herd CLI: --token or HERD_TOKEN); an admin issues tokens with `herd tokens create`, and the first admin token is in the orchestrator's data directory, file admin.token".into(),
        )
    };
    let value = headers.get(axum::http::header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (kind, secret) = value.split_once(' ').ok_or_else(missing)?;
    let secret = secret.trim();
    if !kind.eq_ignore_ascii_case("bearer") || secret.is_empty() || secret.len() > 512 {
        return Err(missing());
    }
    Ok(secret.to_string())
}

/// Authenticates every request of the routes it wraps.
pub async fn layer(AxumState(state): AxumState<State>, mut req: Request, next: Next) -> Response {
    let secret = bearer(req.headers());
    let agent_route = req.uri().path().starts_with("/v1/agent/");
    let caller = async {
        let secret = secret?;
        let principal = state.authenticate(secret.clone()).await?;
        if principal.scope == Scope::Agent && principal.host.is_none() {
            return Err(Error::Forbidden(format!(
                "agent token {} is bound to no host, which herd no longer accepts: issue one per host with `herd tokens create --agent --host H`, give it to that host's agent, and revoke this one (`herd tokens revoke {}`)",
                principal.token_id, principal.token_id
            )));
        }
        if principal.scope == Scope::Agent && !agent_route {
            return Err(Error::Forbidden("an agent token may only use the agent protocol (/v1/agent/*)".into()));
        }
        Ok(Caller { principal, secret })
    };
    let caller = caller.await;
    // NB: every token has its own rate; an admin token on the agent protocol (herd-sim
    // simulating a fleet through one token) is not limited, an agent's token is.
    if let Ok(c) = &caller
        && !(agent_route && c.principal.scope == Scope::Admin)
        && let Err(wait) = state.rate.check(&c.principal.token_id)
    {
        let _ = axum::body::to_bytes(req.into_body(), super::MAX_BODY).await;
        crate::metrics::get().refused("rate_limit");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut resp = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "token {} sent more than {} requests per second (burst {}); retry after {secs} s",
                c.principal.token_id, state.limits.rate_limit, state.limits.rate_burst
            ),
        )
        .into_response();
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs.max(1)));
        return resp;
    }
    match caller {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            // NB: read (and drop) the body, bounded, so the connection stays usable: a
            // server that answers without reading the body must close it, and a client that
            // reuses it then fails its next request.
            let _ = axum::body::to_bytes(req.into_body(), super::MAX_BODY).await;
            ApiError::from(e).into_response()
        }
    }
}
