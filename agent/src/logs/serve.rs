//! The agent's log endpoint, which the orchestrator proxies `herd logs` to:
//!
//! `GET /v1/logs/{tenant}/{cluster}/{instance}?follow=&since=&tail=&stream=` with
//! `Authorization: Bearer SECRET` (the agent's random secret, sent to the orchestrator at
//! registration, until the orchestrator answers with a credential of its own; only the
//! accepted secret's hash is kept, see [`Auth`]) answers the instance's records as `text/plain`, one per line in the
//! [`super::record`] format, streamed as they are read (and written, with `follow`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_api::names::{InstanceRef, check_dns_label};
use herd_api::wire::Problem;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::read::{self, Query};
use super::stdio_dir;

/// Readers at once; each holds a blocking thread while it reads or follows.
const MAX_READERS: usize = 64;
/// Bytes batched per body chunk.
const BATCH: usize = 64 << 10;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Server {
    pub root: PathBuf,
    pub max_files: u32,
    /// Which bearer the orchestrator must present.
    pub auth: Auth,
    readers: Arc<Semaphore>,
}

/// The bearer the endpoint accepts, kept as its SHA-256 hash; cheap to clone, shared with the
/// agent's loop, which replaces it with the credential the orchestrator answers a
/// registration with.
#[derive(Clone)]
pub struct Auth(Arc<std::sync::RwLock<Vec<u8>>>);

impl Auth {
    pub fn new(secret: &str) -> Self {
        Self(Arc::new(std::sync::RwLock::new(hash(secret))))
    }

    /// Accepts `secret` instead from now on.
    pub fn set(&self, secret: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = hash(secret);
    }

    fn accepts(&self, given: &str) -> bool {
        same(&hash(given), &self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
}

fn hash(secret: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).to_vec()
}

impl Server {
    pub fn new(root: PathBuf, max_files: u32, auth: Auth) -> Self {
        Self { root, max_files, auth, readers: Arc::new(Semaphore::new(MAX_READERS)) }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/logs/{tenant}/{cluster}/{instance}", get(logs))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self)
    }

    /// Serves on `listener` until `shutdown`; HTTPS when given a TLS config.
    pub async fn serve(self, listener: TcpListener, tls: Option<std::sync::Arc<herd_tls::ServerConfig>>, shutdown: CancellationToken) {
        let addr = listener.local_addr().ok();
        info!(addr = ?addr, tls = tls.is_some(), "serving logs");
        let span = info_span!("logs-http");
        let stop = async move { shutdown.cancelled().await };
        let r = match tls {
            Some(config) => match herd_tls::TlsListener::new(listener, config) {
                Ok(l) => axum::serve(l, self.router()).with_graceful_shutdown(stop).into_future().instrument(span).await,
                Err(e) => Err(e),
            },
            None => axum::serve(listener, self.router()).with_graceful_shutdown(stop).into_future().instrument(span).await,
        };
        if let Err(e) = r {
            warn!(error = %e, "log endpoint failed");
        }
    }
}

/// Ready once the orchestrator answered a heartbeat within three intervals; 503 otherwise.
async fn readyz() -> Response {
    if crate::metrics::get().ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no heartbeat answered by the orchestrator within three intervals").into_response()
    }
}

/// The agent's metrics ([`crate::metrics`]); no token needed.
async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::get().render()).into_response()
}

/// A random secret: 32 bytes, hex.
pub fn new_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL the orchestrator should use for a listener bound at `bound`; an unspecified
/// address is replaced with this host's address on the route to `orchestrator` (found by
/// connecting a UDP socket, which sends nothing).
pub fn advertised_url(bound: SocketAddr, orchestrator: &url::Url, scheme: &str) -> String {
    let mut ip = bound.ip();
    if ip.is_unspecified() {
        let target = orchestrator.socket_addrs(|| Some(80)).ok().and_then(|a| a.into_iter().next());
        if let Some(target) = target {
            let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            if let Ok(s) = std::net::UdpSocket::bind(local)
                && s.connect(target).is_ok()
                && let Ok(a) = s.local_addr()
            {
                ip = a.ip();
            }
        }
    }
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

fn problem(status: StatusCode, code: &str, detail: String, field: Option<&str>) -> Response {
    let errors = field.map(|f| vec![herd_api::FieldError::new(f.to_string(), detail.clone())]).unwrap_or_default();
    let p = Problem { kind: "about:blank".into(), title: status.canonical_reason().unwrap_or("error").into(), status: status.as_u16(), detail, code: code.into(), errors };
    let body = serde_json::to_vec(&p).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
}

/// Compares without leaking where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn logs(
    State(s): State<Server>,
    Path((tenant, cluster, instance)): Path<(String, String, String)>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| s.auth.accepts(g)) {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized", "this agent's log endpoint needs the secret it registered with".into(), None);
    }
    for (field, v) in [("tenant", &tenant), ("cluster", &cluster), ("instance", &instance)] {
        if let Err(m) = check_dns_label(v) {
            return problem(StatusCode::NOT_FOUND, "not_found", format!("{field} {m}"), None);
        }
    }
    let p = |k: &str| params.get(k).map(String::as_str);
    let q = match Query::parse(p("follow"), p("since"), p("tail"), p("stream"), SystemTime::now()) {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{}: {}", e.field, e.message), Some(&e.field)),
    };
    let i = InstanceRef { tenant, cluster, name: instance };
    let dir = stdio_dir(&s.root, &i);
    if !dir.is_dir() {
        return problem(StatusCode::NOT_FOUND, "not_found", format!("instance {i} has no logs on this host"), None);
    }
    let Ok(permit) = s.readers.clone().try_acquire_owned() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("more than {MAX_READERS} log readers on this host; retry later"), None);
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let max_files = s.max_files;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let batch = RefCell::new(Vec::with_capacity(BATCH));
        let send = |force: bool| -> bool {
            let mut b = batch.borrow_mut();
            if b.is_empty() || (!force && b.len() < BATCH) {
                return !tx.is_closed();
            }
            let chunk = Bytes::from(std::mem::replace(&mut *b, Vec::with_capacity(BATCH)));
            tx.blocking_send(Ok(chunk)).is_ok()
        };
        let mut emit = |line: &[u8]| -> bool {
            batch.borrow_mut().extend_from_slice(line);
            send(false)
        };
        // A follower sends its batch whenever it catches up, so new lines leave at once.
        let mut idle = || send(true);
        match read::read(&dir, max_files, &q, &mut emit, &mut idle) {
            Ok(()) => {
                send(true);
            }
            Err(e) => {
                send(true);
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let body = Body::from_stream(tokio_stream_of(rx));
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
