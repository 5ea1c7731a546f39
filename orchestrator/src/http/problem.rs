//! The one mapping from errors to RFC 9457 problem+json responses.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herd_api::validate::FieldError;
use herd_api::SpecError;
use herd_api::wire::{INCONSISTENT, Problem, REFUSED_BY_STATE};
use tracing::error;

use crate::error::Error;

/// An error on its way to becoming a problem+json response.
#[derive(Debug)]
pub struct ApiError(pub Problem);

fn problem(status: StatusCode, code: &str, detail: String, errors: Vec<FieldError>) -> ApiError {
    ApiError(Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("error").into(),
        status: status.as_u16(),
        detail,
        code: code.into(),
        errors,
    })
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: String) -> Self {
        problem(status, code, detail, vec![])
    }

    /// A valid request refused by the current state, a quota or a limit: its own problem type.
    fn by_state(mut self) -> Self {
        self.0.kind = REFUSED_BY_STATE.into();
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound { .. } => problem(StatusCode::NOT_FOUND, "not_found", e.to_string(), vec![]),
            Error::Spec(spec @ SpecError::Inconsistent(_)) => {
                let mut p = problem(StatusCode::UNPROCESSABLE_ENTITY, "inconsistent_spec", e.to_string(), spec.field_errors());
                p.0.kind = INCONSISTENT.into();
                p
            }
            Error::Spec(spec) => problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", e.to_string(), spec.field_errors()),
            Error::Invalid { field, message } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                e.to_string(),
                vec![FieldError::new(field.clone(), message.clone())],
            ),
            Error::Conflict(_) => problem(StatusCode::CONFLICT, "conflict", e.to_string(), vec![]),
            // NB: RFC 9110 section 13.1.1: a false `If-Match` is 412, not 409.
            Error::Stale { .. } => problem(
                StatusCode::PRECONDITION_FAILED,
                "stale_generation",
                e.to_string(),
                vec![FieldError::new("If-Match", "older than the stored generation")],
            ),
            Error::Refused(fields) => problem(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string(), fields.clone()).by_state(),
            Error::Quota(fields) => problem(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", e.to_string(), fields.clone()).by_state(),
            Error::Limit { field, message, reason } => {
                crate::metrics::get().refused(reason);
                problem(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded", e.to_string(), vec![FieldError::new(field.clone(), message.clone())])
                    .by_state()
            }
            Error::IdempotencyKeyReused { .. } => problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
                vec![FieldError::new("Idempotency-Key", "used before with a different request")],
            ),
            Error::Unauthorized(_) => problem(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string(), vec![]),
            Error::Forbidden(_) => problem(StatusCode::FORBIDDEN, "forbidden", e.to_string(), vec![]),
            Error::Unavailable(_) => problem(StatusCode::BAD_GATEWAY, "unavailable", e.to_string(), vec![]),
            Error::StoreUnavailable(_) => {
                error!(error = %e, "the store cannot be reached");
                problem(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("{e}; nothing was changed: retry later"), vec![])
            }
            Error::NotLeader(_) => problem(StatusCode::SERVICE_UNAVAILABLE, "not_leader", format!("{e}; retry: another orchestrator leads"), vec![]),
            Error::Store { .. } | Error::Corrupt { .. } | Error::Worker(_) | Error::Writer(_) => {
                error!(error = %e, source = ?std::error::Error::source(&e), "request failed");
                problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the orchestrator's log".into(), vec![])
            }
        }
    }
}

macro_rules! from_rejection {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl From<$ty> for ApiError {
            fn from(e: $ty) -> Self {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_request" };
                problem(status, code, format!("{}: {}", $what, e.body_text()), vec![])
            }
        }
    )*};
}

from_rejection!(
    BytesRejection => "request body",
    PathRejection => "request path",
    QueryRejection => "query string",
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        let mut resp = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
