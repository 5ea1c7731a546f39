//! The etcd store (`--store etcd --etcd-endpoints URL,...`): herd's objects as JSON values
//! under a key prefix (default `/herd/v1`; the layout is in [`super::kv`]), for a control
//! plane that outlives any one machine.
//!
//! # Transactions (etcd's STM, serializable)
//! A write closure runs over an [`EtcdTx`]: its first read fixes a snapshot revision and
//! every later read is served at that revision (a consistent snapshot); every key it reads
//! is recorded, and every list records its table's *counter key* (`PREFIX/counters/TABLE`,
//! put by every transaction that writes under that table), so a key created or deleted
//! under a list read is a conflict too. Writes are buffered (later reads in the same closure
//! see them). Commit is one etcd `Txn`: compare `mod_revision < snapshot + 1` on every
//! recorded key; on success apply every buffered write and put the counters of the tables
//! written. When the compare fails, something the closure read changed: it runs again on a
//! fresh snapshot (at most [`ATTEMPTS`] times, with jittered backoff). Nothing relies on a
//! lock in one process: two orchestrators writing the same store are serialized by etcd.
//! (Within one process writes still take turns, to spare them conflicts they would
//! mostly have: see `Inner::writer`.)
//!
//! Reads ([`Etcd::read_now`]) are linearizable at their first request and then pinned to
//! that revision.
//!
//! Fencing (leader election, [`crate::leader`]): [`Etcd::set_fence`] adds one compare to
//! every commit, `create_revision(KEY) == REV`, the leader key this orchestrator created
//! under its lease. When the lease expires etcd deletes the key, the compare fails, and the
//! write is refused ([`Error::NotLeader`]) instead of retried. [`Etcd::grant`] and the other
//! calls of [`crate::leader`] are in `etcd/lease.rs`.
//!
//! # Client
//! etcd's JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, keys and values in base64) over the
//! `reqwest` client the orchestrator already has: no gRPC stack (tonic, prost, `protoc` at
//! build) for two calls. Several endpoints are tried in turn; TLS with a CA and a client
//! certificate. The calls are synchronous for the [`Tx`] methods: they run on a small runtime
//! of this store's own, driven from blocking threads.
//!
//! NB: a transaction's compares and writes must stay within etcd's `--max-txn-ops`
//! (default 128): run etcd with a higher limit (herd's tests and deploy use 10000), since one
//! apply writes every new instance in one transaction.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

mod lease;

pub use lease::Campaign;

use super::kv::{Kv, Typed};
use super::Tx;
use crate::error::{Error, Result};

/// Keys one [`Etcd::put_all`] transaction writes at most (within `--max-txn-ops` and the
/// request size limit, 1.5 MiB by default, for small objects).
pub const CHUNK: usize = 100;

/// How often a write closure runs at most before the write gives up on conflicts.
pub const ATTEMPTS: u32 = 32;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct Options {
    /// Client URLs of the members, e.g. `https://10.0.0.1:2379`; tried in turn.
    pub endpoints: Vec<url::Url>,
    /// Every key starts with this (no trailing `/`).
    pub prefix: String,
    /// PEM CA to trust for the members' certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key (etcd's `--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Options {
    /// Plain HTTP endpoints under the default prefix.
    pub fn new(endpoints: Vec<url::Url>) -> Self {
        Options { endpoints, prefix: "/herd/v1".into(), ca_file: None, cert_file: None, key_file: None }
    }
}

/// The extra compare every commit carries once set: this orchestrator's leader key, as it
/// created it (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub create_revision: i64,
}

/// Handle to the etcd store; cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// For [`Etcd::grant`], [`Etcd::keep_alive`] and the other calls of leader election, made
    /// from async code on the orchestrator's runtime.
    lease_http: reqwest::Client,
    endpoints: Vec<url::Url>,
    /// The endpoint that answered last.
    current: AtomicUsize,
    prefix: String,
    runtime: Runtime,
    /// herd's revision as of the last commit through this handle.
    revision: AtomicU64,
    fence: Mutex<Option<Fence>>,
    /// Reads are served by any one member from its own copy (etcd's serializable reads),
    /// without a quorum: for an orchestrator that stopped leading and answers GETs from its
    /// last state while etcd has no quorum (see `crate::http::front`). Off while leading.
    stale_reads: std::sync::atomic::AtomicBool,
    /// Held by the write being attempted: within one process writes run one at a time, as
    /// nearly all of them bump the revision or append to the audit trail and would only
    /// conflict (and back off) otherwise. Not what makes them safe: across processes the
    /// commit's compare does that.
    writer: Mutex<()>,
}

/// This store's own runtime for its HTTP calls, shut down without blocking when dropped
/// (it may be dropped on an async thread).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn store_error(message: impl Into<String>) -> Error {
    Error::Store { backend: "etcd", source: message.into().into() }
}

/// An HTTP client for the members: their CA, this orchestrator's client certificate.
fn client(options: &Options) -> Result<reqwest::Client> {
    let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).timeout(Duration::from_secs(10));
    if let Some(ca) = &options.ca_file {
        let pem = read_file("etcd-ca-file", ca)?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::invalid("etcd-ca-file", e.to_string()))?;
        http = http.add_root_certificate(cert);
    }
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read_file("etcd-cert-file", cert)?;
            pem.push(b'\n');
            pem.extend(read_file("etcd-key-file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| Error::invalid("etcd-cert-file", e.to_string()))?;
            http = http.identity(id);
        }
        (None, None) => {}
        _ => return Err(Error::invalid("etcd-cert-file", "give both --etcd-cert-file and --etcd-key-file, or neither")),
    }
    http.build().map_err(|e| store_error(format!("cannot build the etcd client: {e}")))
}

fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::invalid(what, format!("cannot read {}: {e}", path.display())))
}

impl Etcd {
    /// Connects to etcd and reads herd's revision (so a store that cannot be reached fails
    /// here, with the endpoints named).
    pub fn connect(options: Options) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(Error::invalid("etcd-endpoints", "name at least one etcd client URL"));
        }
        let http = client(&options)?;
        // NB: the lease calls run on the caller's runtime, with a client (and connections) of their own.
        let lease_http = client(&options)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("herd-etcd")
            .enable_all()
            .build()
            .map_err(|e| store_error(format!("cannot start the etcd client's runtime: {e}")))?;
        let prefix = options.prefix.trim_end_matches('/').to_string();
        let inner = Inner {
            http,
            lease_http,
            endpoints: options.endpoints,
            current: AtomicUsize::new(0),
            prefix,
            runtime: Runtime(Some(runtime)),
            revision: AtomicU64::new(0),
            fence: Mutex::new(None),
            stale_reads: std::sync::atomic::AtomicBool::new(false),
            writer: Mutex::new(()),
        };
        let etcd = Etcd { inner: Arc::new(inner) };
        let rev = etcd.read_now(|tx| tx.revision())?;
        etcd.inner.revision.store(rev, Ordering::SeqCst);
        Ok(etcd)
    }

    /// Adds (or, with `None`, removes) the fencing compare on every later commit.
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.inner.fence.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fence;
    }

    /// Serves reads from any one member's copy, without a quorum (`true`), or linearizably
    /// (`false`, the default); see `Inner::stale_reads`.
    pub fn set_stale_reads(&self, stale: bool) {
        self.inner.stale_reads.store(stale, Ordering::Relaxed);
    }

    /// See [`super::Store::write`]: `f` runs until its transaction commits without conflict.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&dyn Tx) -> Result<R> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.write(&f)).await.map_err(Error::Worker)?
    }

    /// See [`super::Store::read_now`].
    pub fn read_now<R: Send>(&self, f: impl FnOnce(&dyn Tx) -> Result<R> + Send) -> Result<R> {
        // NB: on a thread of its own, which is never inside an async context (the caller's
        // may be), so it may block on this store's runtime.
        std::thread::scope(|s| {
            s.spawn(|| {
                let tx = EtcdTx::new(&self.inner, false);
                f(&Typed(&tx))
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Writer("a store read panicked".into())))
        })
    }

    /// The key prefix of this store.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether no key lies under this store's prefix.
    pub fn is_empty(&self) -> Result<bool> {
        let inner = self.inner.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let start = format!("{}/", inner.prefix);
                Ok(inner.range(&start, Some(&prefix_end(&start)), 1, None)?.kvs.is_empty())
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Writer("a store read panicked".into())))
        })
    }

    /// Writes `docs` (keys relative to the prefix) as they are, [`CHUNK`] keys per
    /// transaction, with the counters of their tables: a bulk load into a store nothing else
    /// writes (see [`super::migrate`]).
    pub fn put_all(&self, docs: Vec<(String, String)>) -> Result<()> {
        let inner = self.inner.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                for chunk in docs.chunks(CHUNK) {
                    let tx = EtcdTx::new(&inner, true);
                    for (k, v) in chunk {
                        tx.put(k, v.clone())?;
                    }
                    if !tx.commit()? {
                        return Err(store_error("a bulk write met a conflict: is something else writing this prefix?"));
                    }
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Writer("a store write panicked".into())))
        })
    }

    /// The create revision of `key` (a full key), if it exists: what a [`Fence`] compares.
    pub fn create_revision(&self, key: &str) -> Result<Option<i64>> {
        let inner = self.inner.clone();
        let key = key.to_string();
        std::thread::scope(|s| {
            s.spawn(move || Ok(inner.range(&key, None, 1, None)?.kvs.first().map(|kv| kv.create_revision)))
                .join()
                .unwrap_or_else(|_| Err(Error::Writer("a store read panicked".into())))
        })
    }

    pub fn current_revision(&self) -> u64 {
        self.inner.revision.load(Ordering::SeqCst)
    }
}

impl Inner {
    fn write<R>(&self, f: &dyn Fn(&dyn Tx) -> Result<R>) -> Result<R> {
        let _one_at_a_time = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut backoff = Duration::from_millis(2);
        for _ in 0..ATTEMPTS {
            let tx = EtcdTx::new(self, true);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&Typed(&tx))))
                .unwrap_or_else(|_| Err(Error::Writer("the operation panicked".into())))?;
            if tx.commit()? {
                return Ok(out);
            }
            // NB: jitter, so that two writers that conflicted do not meet again.
            let jitter = rand::random_range(0..=backoff.as_micros() as u64);
            std::thread::sleep(backoff + Duration::from_micros(jitter));
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
        Err(store_error(format!("gave up after {ATTEMPTS} attempts: what the write read kept changing under it")))
    }

    fn full(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    fn counter(&self, table: &str) -> String {
        format!("{}/counters/{table}", self.prefix)
    }

    /// POSTs `body` to `path` on the first endpoint that answers (blocking, on this store's
    /// own runtime; see [`Inner::request`]).
    fn call<T: serde::de::DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> Result<T> {
        match &self.runtime.0 {
            Some(rt) => rt.block_on(self.request(&self.http, path, body, None)),
            None => Err(Error::StoreUnavailable("the etcd client's runtime is gone".into())),
        }
    }

    /// POSTs `body` to `path` with `http`, on each member in turn from the one that answered
    /// last, until one answers. With `within`, the whole call has that long, and a member that
    /// does not answer gets its share of the time left, not all of it (a dead machine, one cut
    /// off from its peers). A member that cannot serve now (a 5xx: no leader, no quorum) is
    /// left for the next; a request etcd refuses (a 4xx) is refused by every member alike.
    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
        within: Option<Duration>,
    ) -> Result<T> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let deadline = within.map(|w| tokio::time::Instant::now() + w);
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let Ok(url) = self.endpoints[at].join(path) else { continue };
            let mut req = http.post(url.clone()).json(body);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    errors.push(format!("{url}: no time left"));
                    break;
                }
                let share = (left / u32::try_from(n - i).unwrap_or(1)).max(Duration::from_millis(100)).min(left);
                req = req.timeout(share);
            }
            let sent = async {
                let resp = req.send().await?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.text().await?))
            };
            match sent.await {
                Ok((status, text)) if status.is_success() => {
                    self.current.store(at, Ordering::Relaxed);
                    return serde_json::from_str(&text)
                        .map_err(|e| store_error(format!("unexpected answer from etcd at {url}: {e}: {text}")));
                }
                Ok((status, text)) if status.is_server_error() => {
                    let message = serde_json::from_str::<GatewayError>(&text).map(|e| e.message).unwrap_or(text);
                    errors.push(format!("{url} ({status}): {message}"));
                }
                Ok((status, text)) => {
                    let message = serde_json::from_str::<GatewayError>(&text).map(|e| e.message).unwrap_or(text);
                    return Err(store_error(format!("etcd at {url} refused {path} ({status}): {message}")));
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(Error::StoreUnavailable(format!("no etcd endpoint answered {path}: {}", errors.join("; "))))
    }

    fn range(&self, key: &str, end: Option<&str>, limit: usize, revision: Option<i64>) -> Result<RangeResponse> {
        let mut body = json!({ "key": B64.encode(key) });
        if let Some(end) = end {
            body["range_end"] = json!(B64.encode(end));
        }
        if limit != usize::MAX {
            body["limit"] = json!(limit.to_string());
        }
        if let Some(rev) = revision {
            body["revision"] = json!(rev.to_string());
        }
        if self.stale_reads.load(Ordering::Relaxed) {
            body["serializable"] = json!(true);
        }
        self.call("/v3/kv/range", &body)
    }
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    // NB: prefixes end in `/` (0x2f): adding one stays valid UTF-8 (`0`).
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn decode(what: &str, b64: &str) -> Result<String> {
    let bytes = B64.decode(b64).map_err(|e| store_error(format!("etcd sent a {what} that is not base64: {e}")))?;
    String::from_utf8(bytes).map_err(|e| store_error(format!("etcd sent a {what} that is not UTF-8: {e}")))
}

/// One transaction (a write) or snapshot (a read) over etcd; see the module docs.
pub struct EtcdTx<'a> {
    etcd: &'a Inner,
    writable: bool,
    /// The revision every read is served at, fixed by the first.
    snapshot: Cell<Option<i64>>,
    /// Keys whose revision the commit compares (read keys, and the counters of listed tables).
    reads: RefCell<BTreeSet<String>>,
    /// Buffered writes by key relative to the prefix (`None`: delete).
    writes: RefCell<BTreeMap<String, Option<String>>>,
}

impl<'a> EtcdTx<'a> {
    fn new(etcd: &'a Inner, writable: bool) -> Self {
        EtcdTx { etcd, writable, snapshot: Cell::new(None), reads: RefCell::default(), writes: RefCell::default() }
    }

    fn range(&self, key: &str, end: Option<&str>, limit: usize) -> Result<RangeResponse> {
        let r = self.etcd.range(key, end, limit, self.snapshot.get())?;
        if self.snapshot.get().is_none() {
            self.snapshot.set(Some(r.header.revision));
        }
        Ok(r)
    }

    fn write(&self, key: &str, value: Option<String>) -> Result<()> {
        if !self.writable {
            return Err(store_error(format!("a read tried to write {key}")));
        }
        self.writes.borrow_mut().insert(key.to_string(), value);
        Ok(())
    }

    /// Commits the buffered writes; `false` when something read changed meanwhile.
    fn commit(self) -> Result<bool> {
        let writes = self.writes.into_inner();
        if writes.is_empty() {
            return Ok(true);
        }
        let etcd = self.etcd;
        let mut compare = Vec::new();
        if let Some(rev) = self.snapshot.get() {
            for key in self.reads.into_inner() {
                compare.push(json!({ "key": B64.encode(&key), "target": "MOD", "result": "LESS", "mod_revision": (rev + 1).to_string() }));
            }
        }
        let fence = etcd.fence.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(f) = &fence {
            compare.push(json!({ "key": B64.encode(&f.key), "target": "CREATE", "result": "EQUAL", "create_revision": f.create_revision.to_string() }));
        }
        let mut success = Vec::new();
        let mut tables = BTreeSet::new();
        let mut revision = None;
        for (key, value) in &writes {
            tables.insert(key.split('/').next().unwrap_or_default());
            let full = B64.encode(etcd.full(key));
            success.push(match value {
                Some(v) => json!({ "request_put": { "key": full, "value": B64.encode(v) } }),
                None => json!({ "request_delete_range": { "key": full } }),
            });
            if key == "meta/revision" {
                revision = value.as_deref().and_then(|v| v.parse::<u64>().ok());
            }
        }
        for table in tables {
            success.push(json!({ "request_put": { "key": B64.encode(etcd.counter(table)), "value": "" } }));
        }
        let answer: TxnResponse = etcd.call("/v3/kv/txn", &json!({ "compare": compare, "success": success }))?;
        if !answer.succeeded {
            if let Some(f) = fence {
                let r = etcd.range(&f.key, None, 1, None)?;
                if r.kvs.first().is_none_or(|kv| kv.create_revision != f.create_revision) {
                    return Err(Error::NotLeader(format!(
                        "this orchestrator lost its lease (leader key {} is gone): the write was not applied",
                        f.key
                    )));
                }
            }
            return Ok(false);
        }
        if let Some(rev) = revision {
            etcd.revision.fetch_max(rev, Ordering::SeqCst);
        }
        Ok(true)
    }
}

impl Kv for EtcdTx<'_> {
    fn get(&self, key: &str) -> Result<Option<String>> {
        if let Some(v) = self.writes.borrow().get(key) {
            return Ok(v.clone());
        }
        let full = self.etcd.full(key);
        let r = self.range(&full, None, 1)?;
        if self.writable {
            self.reads.borrow_mut().insert(full);
        }
        r.kvs.first().map(|kv| decode("value", &kv.value)).transpose()
    }

    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, String)>> {
        let in_range = |k: &str| k.starts_with(prefix) && after.is_none_or(|a| k > a);
        let buffered: Vec<(String, Option<String>)> =
            self.writes.borrow().iter().filter(|(k, _)| in_range(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let full_prefix = self.etcd.full(prefix);
        let start = match after {
            // The first key after `after`.
            Some(a) => format!("{}\0", self.etcd.full(a)),
            None => full_prefix.clone(),
        };
        // With writes of its own in the range, read all of it: they may fall anywhere.
        let fetch = if buffered.is_empty() { limit } else { usize::MAX };
        let r = self.range(&start, Some(&prefix_end(&full_prefix)), fetch)?;
        if self.writable {
            let table = prefix.split('/').next().unwrap_or_default();
            self.reads.borrow_mut().insert(self.etcd.counter(table));
        }
        let strip = self.etcd.prefix.len() + 1;
        let mut out = BTreeMap::new();
        for kv in &r.kvs {
            let key = decode("key", &kv.key)?;
            let rel = key.get(strip..).unwrap_or_default().to_string();
            out.insert(rel, decode("value", &kv.value)?);
        }
        for (k, v) in buffered {
            match v {
                Some(v) => out.insert(k, v),
                None => out.remove(&k),
            };
        }
        Ok(out.into_iter().take(limit).collect())
    }

    fn put(&self, key: &str, value: String) -> Result<()> {
        self.write(key, Some(value))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.write(key, None)
    }
}

/// etcd's JSON answers (the gateway writes 64-bit numbers as strings and leaves defaults out).
#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "int")]
    revision: i64,
}

#[derive(Debug, Deserialize)]
struct RangeResponse {
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int")]
    create_revision: i64,
}

#[derive(Debug, Deserialize)]
struct TxnResponse {
    #[serde(default)]
    succeeded: bool,
}

#[derive(Debug, Deserialize)]
struct GatewayError {
    #[serde(alias = "error")]
    message: String,
}

fn int<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        N(i64),
        S(String),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}
