//! The simulated agents' registrations and heartbeats: HTTP/1.1 over a fixed set of
//! kept-alive connections, on hyper directly.
//!
//! Why not the shared `reqwest::Client` the rest of the simulator uses: per request it
//! parses the URL, builds its headers and locks its pool, and at 10,000 heartbeats/s that
//! cost the simulator more CPU than the orchestrator spent answering, on the same 2 cores it
//! is measuring. Here the request line and headers are made once, a connection is taken from
//! a stack, and at most `--connections` requests are in flight (so at most that many
//! connections are open, whatever the fleet size).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use tokio::sync::Semaphore;

/// How long one request may take before it counts as a `timeout`.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Conns {
    /// host:port, dialled for each new connection.
    authority: String,
    host: HeaderValue,
    auth: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    slots: Semaphore,
}

impl Conns {
    /// Connections to `base` (`http://HOST:PORT`), authenticating with `token`, at most
    /// `max` at once.
    pub fn new(base: &str, token: &str, max: usize) -> Result<Self> {
        let Some(authority) = base.strip_prefix("http://") else {
            bail!("--orchestrator {base}: herd-sim's agents speak plain HTTP (http://127.0.0.1:PORT), on loopback only")
        };
        let authority = authority.trim_end_matches('/').to_string();
        Ok(Conns {
            host: HeaderValue::from_str(&authority).with_context(|| format!("--orchestrator {base}: not a host:port"))?,
            auth: HeaderValue::from_str(&format!("Bearer {token}")).context("the token file holds characters a header cannot")?,
            authority,
            idle: Mutex::new(Vec::with_capacity(max)),
            slots: Semaphore::new(max),
        })
    }

    /// POSTs the JSON `body` makes, once a slot is free, to `path`; the status and the
    /// answer's body. The wait for a free slot is part of the request's time. Errors are
    /// kinds: `connect`, `timeout`, `transport`.
    pub async fn post(&self, path: &'static str, body: impl FnOnce() -> Vec<u8>) -> std::result::Result<(u16, Bytes), String> {
        // NB: never closed, so acquire cannot fail.
        let _slot = self.slots.acquire().await.map_err(|_| "closed".to_string())?;
        let body = body();
        let taken = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut conn = match taken {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        let request = hyper::Request::post(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "transport".to_string())?;
        let exchange = async {
            conn.ready().await.map_err(|_| "transport".to_string())?;
            let response = conn.send_request(request).await.map_err(|_| "transport".to_string())?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|_| "transport".to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        };
        let answer = tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| "timeout".to_string())??;
        // Kept for the next request only when whole (a failed one is dropped, and so closed).
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
        Ok(answer)
    }

    async fn connect(&self) -> std::result::Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&self.authority))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|_| "connect".to_string())?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| "connect".to_string())?;
        // Drives the connection until it closes (or its last SendRequest is dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }
}
