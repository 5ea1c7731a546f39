//! `Idempotency-Key` on `PUT`, `PATCH` and `DELETE`: the first answer to a key is stored (sealed,
//! as [`crate::store::idempotency`] does for `POST`s) and a retry with the same key and request
//! gets it again, marked `Idempotent-Replayed: true`; the same key with another request is
//! refused (422). So a retried `DELETE` whose first answer was lost answers 204, not 404.
//!
//! NB: unlike a `POST`'s, the answer is stored after the change commits, not in its
//! transaction: these methods set a state, so a retry that finds no stored answer (the process
//! died in between) sets the same state again.

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::problem::ApiError;
use crate::error::Error;
use crate::state::{State, now_ms};
use crate::store::idempotency;

/// Largest answer stored for replay; a larger one is answered but not kept.
const MAX_ANSWER: usize = 1 << 20;

pub async fn layer(AxumState(state): AxumState<State>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if !matches!(method, Method::PUT | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let (Some(key), Some(caller)) = (req.headers().get("idempotency-key").cloned(), req.extensions().get::<Caller>().cloned()) else {
        return next.run(req).await;
    };
    let Some(key) = key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())).map(String::from)
    else {
        return ApiError::from(Error::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters, e.g. a UUID")).into_response();
    };
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::MAX_BODY).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the request body is over {} bytes", super::MAX_BODY))
            .into_response();
    };
    let fingerprint = idempotency::fingerprint(method.as_str(), &path, &bytes);
    let token = caller.principal.token_id.clone();
    let stored = {
        let (token, key) = (token.clone(), key.clone());
        state.store.read(move |c| c.idempotent(&token, &key, now_ms())).await
    };
    match stored {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Some(s)) if s.fingerprint != fingerprint => {
            return ApiError::from(Error::IdempotencyKeyReused { key }).into_response();
        }
        Ok(Some(s)) => {
            let Some(body) = idempotency::open(&caller.secret, &token, &key, &s.body) else {
                return ApiError::from(Error::Conflict(format!("the answer stored for Idempotency-Key `{key}` cannot be read; use a new key")))
                    .into_response();
            };
            return replay(s.status, body);
        }
        Ok(None) => {}
    }
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(answer) = axum::body::to_bytes(body, MAX_ANSWER).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "answer too large").into_response();
    };
    let text = String::from_utf8_lossy(&answer).to_string();
    let stored = idempotency::Stored {
        fingerprint,
        status: parts.status.as_u16(),
        body: idempotency::seal(&caller.secret, &token, &key, &text),
    };
    let now = now_ms();
    if let Err(e) = state.store.write(move |tx| tx.put_idempotent(&token, &key, &stored, now)).await {
        tracing::warn!(error = %e, "cannot store an idempotent answer; a retry will apply the change again");
    }
    Response::from_parts(parts, Body::from(answer))
}

/// A stored answer again: its status and body (JSON, or none), with the `ETag` of a cluster.
fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut resp = if body.is_empty() {
        status.into_response()
    } else {
        let etag = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["generation"].as_u64());
        let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(g) = etag.and_then(|g| HeaderValue::from_str(&super::etag(g)).ok()) {
            r.headers_mut().insert(header::ETAG, g);
        }
        r
    };
    resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
