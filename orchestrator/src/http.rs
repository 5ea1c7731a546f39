//! The HTTP API: routes for agents (`/v1/agent/*`), operators and tenants. Errors leave in
//! one shape, RFC 9457 problem+json, mapped in [`problem`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, extract::rejection::JsonRejection};
use herd_api::wire::{CreateTenant, Heartbeat, RegisterRequest, ScaleRequest};
use herd_api::{Role, yaml};

use crate::error::Error;
use crate::state::{Applied, State};

/// Largest request body accepted; a cluster spec is a few KiB.
pub const MAX_BODY: usize = 1 << 20;

pub fn router(state: State) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/agent/register", post(register))
        .route("/v1/agent/heartbeat", post(heartbeat))
        .route("/v1/hosts", get(hosts))
        .route("/v1/tenants", get(tenants).post(create_tenant))
        .route("/v1/clusters", get(all_clusters))
        .route("/v1/tenants/{tenant}/clusters", get(tenant_clusters))
        .route("/v1/tenants/{tenant}/clusters/{cluster}", get(cluster).put(apply).delete(delete))
        .route("/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", patch(scale))
        .route("/v1/tenants/{tenant}/clusters/{cluster}/instances/{instance}/logs", get(crate::logs::logs))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

type Result<T> = std::result::Result<T, problem::ApiError>;

/// Reads a body as UTF-8 YAML or JSON (JSON is YAML), naming the field of any error.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> std::result::Result<T, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::invalid("", "request body is not UTF-8"))?;
    Ok(yaml::from_str(text)?)
}

async fn register(AxumState(s): AxumState<State>, body: std::result::Result<Json<RegisterRequest>, JsonRejection>) -> Result<Response> {
    let Json(req) = body?;
    let host = req.host.id.clone();
    let reply = s.register(req.host).await?;
    if let Some(ep) = req.logs {
        s.set_log_endpoint(host, ep).await?;
    }
    Ok(Json(reply).into_response())
}

async fn heartbeat(AxumState(s): AxumState<State>, body: std::result::Result<Json<Heartbeat>, JsonRejection>) -> Result<Response> {
    let Json(hb) = body?;
    Ok(Json(s.heartbeat(hb).await?).into_response())
}

async fn hosts(AxumState(s): AxumState<State>) -> Result<Response> {
    Ok(Json(s.hosts().await?).into_response())
}

async fn tenants(AxumState(s): AxumState<State>) -> Result<Response> {
    Ok(Json(s.tenants().await?).into_response())
}

async fn create_tenant(AxumState(s): AxumState<State>, body: Bytes) -> Result<Response> {
    let req: CreateTenant = parse(&body)?;
    let (tenant, created) = s.create_tenant(req.name).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(tenant)).into_response())
}

async fn all_clusters(AxumState(s): AxumState<State>) -> Result<Response> {
    Ok(Json(s.clusters(None).await?).into_response())
}

async fn tenant_clusters(AxumState(s): AxumState<State>, Path(tenant): Path<String>) -> Result<Response> {
    Ok(Json(s.clusters(Some(tenant)).await?).into_response())
}

async fn cluster(AxumState(s): AxumState<State>, Path((tenant, cluster)): Path<(String, String)>) -> Result<Response> {
    Ok(Json(s.cluster(tenant, cluster).await?).into_response())
}

async fn apply(AxumState(s): AxumState<State>, Path((tenant, cluster)): Path<(String, String)>, body: Bytes) -> Result<Response> {
    let text = std::str::from_utf8(&body).map_err(|_| Error::invalid("", "request body is not UTF-8"))?;
    let spec = yaml::parse_cluster_spec(text).map_err(Error::from)?;
    if spec.tenant != tenant {
        return Err(Error::invalid("tenant", format!("`{}` does not match the URL's tenant `{tenant}`", spec.tenant)).into());
    }
    if spec.name != cluster {
        return Err(Error::invalid("name", format!("`{}` does not match the URL's cluster `{cluster}`", spec.name)).into());
    }
    let (status, applied) = s.apply(spec).await?;
    let code = if applied == Applied::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((code, Json(status)).into_response())
}

async fn delete(AxumState(s): AxumState<State>, Path((tenant, cluster)): Path<(String, String)>) -> Result<Response> {
    s.delete(tenant, cluster).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn scale(
    AxumState(s): AxumState<State>,
    Path((tenant, cluster, pool)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response> {
    let pool: Role = pool.parse().map_err(|m: String| Error::invalid("pool", m))?;
    let req: ScaleRequest = parse(&body)?;
    Ok(Json(s.scale(tenant, cluster, pool, req.replicas).await?).into_response())
}

pub mod problem {
    //! The one mapping from errors to RFC 9457 problem+json responses.

    use axum::extract::rejection::JsonRejection;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use herd_api::validate::FieldError;
    use herd_api::wire::Problem;
    use tracing::error;

    use crate::error::Error;

    /// An error on its way to becoming a problem+json response.
    pub struct ApiError(Problem);

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

    impl From<Error> for ApiError {
        fn from(e: Error) -> Self {
            match &e {
                Error::NotFound { .. } => problem(StatusCode::NOT_FOUND, "not_found", e.to_string(), vec![]),
                Error::Spec(spec) => {
                    problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", e.to_string(), spec.field_errors())
                }
                Error::Invalid { field, message } => problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    e.to_string(),
                    vec![FieldError::new(field.clone(), message.clone())],
                ),
                Error::Conflict(_) => problem(StatusCode::CONFLICT, "conflict", e.to_string(), vec![]),
                Error::Stale { .. } => problem(StatusCode::CONFLICT, "stale_generation", e.to_string(), vec![]),
                Error::Quota(fields) => problem(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", e.to_string(), fields.clone()),
                Error::Unauthorized(_) => problem(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string(), vec![]),
                Error::Forbidden(_) => problem(StatusCode::FORBIDDEN, "forbidden", e.to_string(), vec![]),
                Error::Unavailable(_) => problem(StatusCode::BAD_GATEWAY, "unavailable", e.to_string(), vec![]),
                Error::Store(_) | Error::Corrupt { .. } | Error::Worker(_) => {
                    error!(error = %e, source = ?std::error::Error::source(&e), "request failed");
                    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the orchestrator's log".into(), vec![])
                }
            }
        }
    }

    impl From<JsonRejection> for ApiError {
        fn from(e: JsonRejection) -> Self {
            problem(e.status(), "bad_request", e.body_text(), vec![])
        }
    }

    impl IntoResponse for ApiError {
        fn into_response(self) -> Response {
            let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::to_vec(&self.0).unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
        }
    }
}
