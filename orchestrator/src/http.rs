//! The HTTP API under `/v1`: agents (`/v1/agent/*`), admins and tenants. Every route but
//! `/healthz` and `/v1/openapi.json` needs a bearer token ([`auth`]); each handler checks
//! what the token may see. Errors leave in one shape, RFC 9457 problem+json, mapped in
//! [`problem`]. The OpenAPI document is generated from the handlers' annotations
//! ([`crate::openapi`]).
//!
//! # Layout
//! - [`auth`]: the bearer-token layer; [`idempotent`]: `Idempotency-Key` on `PUT`/`PATCH`/`DELETE`;
//!   [`problem`]: errors to problem+json.
//! - [`clusters`], [`tenants`], [`tokens`], [`agents`] (agent protocol and hosts), [`audit`].
//! - here: the router and what the handlers share (bodies, names, pages, `If-Match`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use herd_api::names::check_dns_label;
use herd_api::yaml;
use serde::Deserialize;

use crate::error::Error;
use crate::state::{Expect, State};

pub mod agents;
pub mod audit;
pub mod auth;
pub mod clusters;
pub mod front;
pub mod hosts;
pub mod idempotent;
pub mod problem;
pub mod tenants;
pub mod tokens;

/// The agents' long poll ([`agents::watch`]): it only waits, so [`to_the_end`] lets it go
/// with its client.
const WATCH: &str = "/v1/agent/watch";

/// Largest request body accepted; a cluster spec is a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Items per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

pub fn router(state: State) -> Router {
    let protected = Router::new()
        .route("/v1/agent/register", post(agents::register))
        .route("/v1/agent/heartbeat", post(agents::heartbeat))
        .route(WATCH, post(agents::watch))
        .route("/v1/hosts", get(agents::hosts))
        .route("/v1/hosts/{host}", get(hosts::get).delete(hosts::delete))
        .route("/v1/hosts/{host}/cordon", post(hosts::cordon))
        .route("/v1/hosts/{host}/uncordon", post(hosts::uncordon))
        .route("/v1/hosts/{host}/drain", post(hosts::drain))
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route("/v1/tenants/{tenant}", get(tenants::get).delete(tenants::delete))
        .route("/v1/tenants/{tenant}/quota", put(tenants::set_quota))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/audit", get(audit::list))
        .route("/v1/clusters", get(clusters::all))
        .route("/v1/tenants/{tenant}/clusters", get(clusters::of_tenant))
        .route(
            "/v1/tenants/{tenant}/clusters/{cluster}",
            get(clusters::get).put(clusters::apply).delete(clusters::delete),
        )
        .route("/v1/tenants/{tenant}/clusters/{cluster}/pools/{pool}", patch(clusters::scale))
        .route("/v1/tenants/{tenant}/clusters/{cluster}/instances/{instance}/logs", get(crate::logs::logs))
        // NB: layers run outermost last-added: authentication, then idempotent replays.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotent::layer))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::layer))
        .route_layer(axum::middleware::from_fn(to_the_end));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .merge(protected)
        .route_layer(axum::middleware::from_fn(count))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(too_large))
        .with_state(state)
}

type Result<T> = std::result::Result<T, problem::ApiError>;

/// Runs a request that may change something to its end, in a task of its own, even when its
/// client goes away: hyper drops the handler of a closed connection, and a handler dropped
/// after its write committed would skip what follows the commit (the in-memory marks that
/// tell heartbeats a host changed, the idempotent answer's record). Reads and watches (long
/// polls that only wait) are dropped with their client, as before.
async fn to_the_end(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let reads = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    if reads || req.uri().path() == WATCH {
        return next.run(req).await;
    }
    match tokio::spawn(next.run(req)).await {
        Ok(response) => response,
        Err(e) => problem::ApiError::from(Error::Worker(e)).into_response(),
    }
}

/// Ready when the store answers a read (at most 5 s); 503 otherwise.
async fn readyz(axum::extract::State(s): axum::extract::State<State>) -> Response {
    let read = s.store.read(|c| c.revision());
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(_)) => "ready".into_response(),
        Ok(Err(e)) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the store cannot be read ({e})")).into_response(),
        Err(_) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready: the store did not answer within 5 s").into_response(),
    }
}

/// `/metrics` in the OpenMetrics text format (see [`crate::metrics`]); no token needed.
async fn metrics(axum::extract::State(s): axum::extract::State<State>) -> Response {
    let pending = s.store.read(|c| c.pending_count(None)).await.unwrap_or(0);
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::get().render(Some(pending))).into_response()
}

/// Counts every answered request by its route template, method and status, with its latency.
async fn count(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    let m = crate::metrics::get();
    m.request(method.as_str(), &route, resp.status().as_u16(), took);
    if route == "/v1/agent/heartbeat" {
        m.heartbeat(took);
    }
    resp
}

pub(crate) async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    axum::Json(DOC.get_or_init(crate::openapi::served)).into_response()
}

// NB: the fallbacks take the body so it is read (see `auth::layer`).
async fn no_route(method: Method, uri: Uri, _body: Bytes) -> problem::ApiError {
    let path: String = uri.path().chars().take(200).collect();
    problem::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "no_route",
        format!("no route {method} {}; see /v1/openapi.json", path.escape_default()),
    )
}

async fn no_method(method: Method, uri: Uri, _body: Bytes) -> problem::ApiError {
    let path: String = uri.path().chars().take(200).collect();
    problem::ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}; see /v1/openapi.json", path.escape_default()),
    )
}

/// Refuses a body whose declared length is over [`MAX_BODY`] before reading any of it, so a
/// client that sent `Expect: 100-continue` never has to send it. Bodies without a length
/// are cut at the limit while read ([`DefaultBodyLimit`]).
async fn too_large(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY as u64 => problem::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is {n} bytes, over the limit of {MAX_BODY} bytes"),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Reads a body as UTF-8 YAML or JSON (JSON is YAML), naming the field of any error.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> std::result::Result<T, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::invalid("", "request body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(Error::invalid("", "request body is empty; send a JSON or YAML object"));
    }
    Ok(yaml::from_json_or_yaml(text)?)
}

/// Checks that a name taken from the path is a DNS label, naming the path parameter.
fn check_name(field: &str, value: &str) -> std::result::Result<(), Error> {
    check_dns_label(value).map_err(|m| Error::invalid(field, m))
}

/// `?limit=N&after=CURSOR` on every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl ListParams {
    /// The page size and cursor, checked.
    fn checked(self) -> std::result::Result<(usize, Option<String>), Error> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::invalid("limit", format!("must be from 1 to {MAX_LIMIT}, got {limit}")));
        }
        if let Some(a) = &self.after
            && (a.is_empty() || a.len() > 300)
        {
            return Err(Error::invalid("after", "must be the `next` cursor of the previous page"));
        }
        Ok((limit as usize, self.after))
    }
}

/// The `If-Match` precondition: `"N"` (a generation, as the `ETag` of a read), `N` or `*`.
fn if_match(headers: &HeaderMap) -> std::result::Result<Option<Expect>, Error> {
    let Some(value) = headers.get("if-match") else { return Ok(None) };
    let bad = || Error::invalid("If-Match", "must be a generation as the ETag of a read gives it (e.g. \"3\"), or *");
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(Some(Expect::Exists));
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    text.parse::<u64>().map(|g| Some(Expect::Generation(g))).map_err(|_| bad())
}

/// An `ETag` header value for a generation.
fn etag(generation: u64) -> String {
    format!("\"{generation}\"")
}

/// The `Idempotency-Key` of a `POST`, with what [`crate::tenancy`] needs to store and replay
/// its answer.
fn once(headers: &HeaderMap, caller: &auth::Caller, uri: &Uri, body: &Bytes) -> std::result::Result<Option<crate::tenancy::Once>, Error> {
    let Some(key) = headers.get("idempotency-key") else { return Ok(None) };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| Error::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters, e.g. a UUID"))?;
    Ok(Some(crate::tenancy::Once {
        token_id: caller.principal.token_id.clone(),
        key: key.to_string(),
        fingerprint: crate::store::idempotency::fingerprint("POST", uri.path(), body),
        secret: caller.secret.clone(),
    }))
}

/// A `POST`'s answer as a response; a replay says so in `Idempotent-Replayed: true`.
fn answered(a: crate::tenancy::Answer) -> Response {
    let status = axum::http::StatusCode::from_u16(a.status).unwrap_or(axum::http::StatusCode::OK);
    let mut resp = (status, axum::Json(a.body)).into_response();
    if a.replayed {
        resp.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// A change whose client goes away runs to its end; a read is dropped with its client.
    #[tokio::test]
    async fn a_change_runs_to_its_end_when_its_client_goes_away() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::sync::{Notify, Semaphore};
        use tower::ServiceExt;
        let (started, gate, done) = (Arc::new(Notify::new()), Arc::new(Semaphore::new(0)), Arc::new(AtomicBool::new(false)));
        let handler = {
            let (started, gate, done) = (started.clone(), gate.clone(), done.clone());
            move || async move {
                started.notify_one();
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                done.store(true, Ordering::SeqCst);
                "done"
            }
        };
        let app = Router::new().route("/x", put(handler.clone()).get(handler)).route_layer(axum::middleware::from_fn(to_the_end));
        for (method, runs_on) in [(axum::http::Method::PUT, true), (axum::http::Method::GET, false)] {
            done.store(false, Ordering::SeqCst);
            let req = axum::http::Request::builder().method(method.clone()).uri("/x").body(axum::body::Body::empty()).expect("a request");
            let answer = app.clone().oneshot(req);
            // The client gives up once the handler runs.
            tokio::select! {
                a = answer => panic!("{method}: answered while held: {:?}", a.map(|r| r.status())),
                () = started.notified() => {}
            }
            gate.add_permits(1);
            if runs_on {
                tokio::time::timeout(std::time::Duration::from_secs(10), async {
                    while !done.load(Ordering::SeqCst) {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("the PUT was dropped with its client");
            } else {
                // Dropped: nothing holds the handler any more, so its permit stays unused.
                tokio::task::yield_now().await;
                assert!(!done.load(Ordering::SeqCst), "the GET ran on");
                assert_eq!(gate.available_permits(), 1);
                let _ = gate.acquire().await.map(|p| p.forget());
            }
        }
    }

    #[test]
    fn if_match_forms() {
        let parse = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("if-match", HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x")));
            if_match(&h).map_err(|e| e.to_string())
        };
        assert_eq!(parse("\"3\""), Ok(Some(Expect::Generation(3))));
        assert_eq!(parse("W/\"3\""), Ok(Some(Expect::Generation(3))));
        assert_eq!(parse("7"), Ok(Some(Expect::Generation(7))));
        assert_eq!(parse("*"), Ok(Some(Expect::Exists)));
        assert!(parse("\"-1\"").is_err() && parse("abc").is_err());
        assert_eq!(if_match(&HeaderMap::new()).map_err(|e| e.to_string()), Ok(None));
    }
}
