//! The embedded SQLite store: hosts (and their subnet leases), tenants (with quotas),
//! clusters (spec and generation), instances with their placements, the state agents last
//! observed, API tokens (hashed), the audit trail and stored answers to idempotent requests
//! ([`tokens`], [`audit`], [`idempotency`]). Every change runs in one
//! transaction with `synchronous=FULL`, so a crash or restart loses nothing acknowledged.
//!
//! SQLite is synchronous: calls run on tokio's blocking pool behind a std mutex (never
//! held across an await, so a std mutex and not a tokio one). Writes go through one
//! connection; reads through a few read-only ones of their own (WAL: readers see the last
//! commit and never wait for a writer), so status reads and token checks do not queue behind
//! writes. What agents report is not written per heartbeat: see [`crate::hot`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory, Resources};
use herd_api::wire::{HostInfo, LogEndpoint, Observed, Quota, Tenant};
use herd_api::{ClusterSpec, Role};
use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::reconciler::Instance;

pub mod audit;
pub mod idempotency;
pub mod tokens;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    created_s INTEGER NOT NULL,
    quota TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS subnets (
    host_id TEXT PRIMARY KEY REFERENCES hosts(id),
    subnet TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS clusters (
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    generation INTEGER NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS instances (
    tenant TEXT NOT NULL,
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    host_id TEXT,
    pending TEXT,
    cpu INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    PRIMARY KEY (tenant, cluster, name),
    FOREIGN KEY (tenant, cluster) REFERENCES clusters(tenant, name)
);
CREATE INDEX IF NOT EXISTS instances_by_host ON instances(host_id);
CREATE TABLE IF NOT EXISTS host_logs (host_id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS host_conditions (host_id TEXT PRIMARY KEY, conditions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS observed (
    tenant TEXT NOT NULL,
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    host_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (tenant, cluster, name, host_id)
);
CREATE INDEX IF NOT EXISTS observed_by_host ON observed(host_id);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    tenant TEXT,
    description TEXT,
    created_s INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    host TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    before_generation INTEGER,
    after_generation INTEGER,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS leaving (
    tenant TEXT NOT NULL,
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (tenant, cluster, name)
);
CREATE TABLE IF NOT EXISTS purge (
    host_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (host_id, tenant, cluster, name)
);
CREATE TABLE IF NOT EXISTS idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (actor, key)
);
";

/// Columns added after a table was first created: `(table, column, definition)`. A store
/// written by an older herd gains them on open; nothing stored is rewritten.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tenants", "quota", "TEXT NOT NULL DEFAULT '{}'"),
    ("tokens", "host", "TEXT"),
    ("audit", "detail", "TEXT"),
    ("instances", "placement", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "cordoned", "INTEGER NOT NULL DEFAULT 0"),
    ("hosts", "drain_since_ms", "INTEGER"),
];

/// One write operation for the writer thread: runs the operation in its own savepoint and
/// returns what to do once the batch it is in has committed (or failed to).
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;
type Done = Box<dyn FnOnce(Option<&str>) + Send>;

/// Operations committed together at most (one fsync for all of them).
const BATCH: usize = 256;

/// What one commit changed that agents may have to learn: the hosts whose placements or
/// purges moved and the tenants whose specs, instances or leaving phases did. Published after
/// the commit ([`Store::changes`]) so agents' watches ([`crate::state::State::watch`]) wake
/// for what concerns their host only.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub revision: u64,
    pub hosts: std::collections::BTreeSet<String>,
    pub tenants: std::collections::BTreeSet<String>,
}

impl Touched {
    /// Whether a host running instances of `tenants` may see another desired set.
    pub fn concerns(&self, host: &str, tenants: &std::collections::BTreeSet<String>) -> bool {
        self.hosts.contains(host) || self.tenants.iter().any(|t| tenants.contains(t))
    }
}

thread_local! {
    /// What the operations of the writer thread's open transaction touched.
    static TOUCHED: std::cell::RefCell<Touched> = std::cell::RefCell::default();
}

/// Records that the open transaction changed what `host` (or every host of `tenant`) runs.
fn touch(host: Option<&str>, tenant: Option<&str>) {
    TOUCHED.with_borrow_mut(|t| {
        if let Some(h) = host {
            t.hosts.insert(h.to_string());
        }
        if let Some(tenant) = tenant {
            t.tenants.insert(tenant.to_string());
        }
    });
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// To the writer thread, which owns the writes on `conn`.
    jobs: std::sync::mpsc::Sender<Job>,
    /// Read-only connections (empty for a store in memory: reads then use `conn`).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// The revision as of the last commit (see [`revision`]), readable without a query.
    revision: Arc<std::sync::atomic::AtomicU64>,
    /// Every commit that touched what some agent runs.
    changes: tokio::sync::broadcast::Sender<Arc<Touched>>,
    /// How many commits touched any host or tenant: bumped before their writers are
    /// answered, so what is cached against it is never older than a write that returned.
    touches: Arc<std::sync::atomic::AtomicU64>,
}

/// Read-only connections of a store on disk.
const READERS: usize = 4;

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// Refuses to start where starting would lose what a user stored: a missing or empty
    /// store beside an `admin.token` (a previous life: starting would make a new, empty
    /// control plane and a new admin token), or a store SQLite finds corrupt. Says what to do.
    pub fn check_before_open(path: &Path, data_dir: &Path) -> std::result::Result<(), String> {
        let token = data_dir.join("admin.token");
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if empty && token.exists() {
            return Err(format!(
                "refusing to start: the store {} is {} but {} shows this orchestrator ran before, so starting would \
                 begin a new, empty control plane; restore the store from your latest backup (`herd-orchestrator --data-dir {} restore --from \
                 FILE`; backups are taken with `herd-orchestrator backup` or --backup-dir) or, to really start from \
                 nothing, move {} away first",
                path.display(),
                if path.exists() { "empty" } else { "missing" },
                token.display(),
                data_dir.display(),
                token.display()
            ));
        }
        if empty {
            return Ok(());
        }
        let corrupt = |why: String| {
            format!(
                "refusing to start: the store {} is corrupt ({why}); restore it from your latest backup \
                 (`herd-orchestrator --data-dir {} restore --from FILE`, which keeps the corrupt one beside it) and \
                 start again (nothing was changed)",
                path.display(),
                data_dir.display()
            )
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| corrupt(e.to_string()))?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        Ok(())
    }

    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        let mut store = Self::init(conn)?;
        let mut readers = Vec::new();
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_secs(5))?;
            r.pragma_update(None, "query_only", "ON")?;
            readers.push(Mutex::new(r));
        }
        store.readers = Arc::new(readers);
        Ok(store)
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NB: FULL, not WAL's usual NORMAL: an acknowledged apply must survive power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, definition) in ADDED_COLUMNS {
            let has: bool = conn.query_row(
                &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
            }
        }
        let rev = revision(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(rev));
        let (jobs, queue) = std::sync::mpsc::channel();
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let touches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, r, ch, t) = (conn.clone(), revision.clone(), changes.clone(), touches.clone());
        std::thread::Builder::new()
            .name("herd-store-writer".into())
            .spawn(move || writer(&c, &r, (&ch, &t), &queue))
            .map_err(|e| Error::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { conn, jobs, readers: Arc::new(Vec::new()), next_reader: Arc::default(), revision, changes, touches })
    }

    /// Runs `f` as one atomic operation on the writer thread: all it changes is stored, or
    /// (when it returns `Err` or panics) nothing. Returns once that is durable. Operations
    /// queued meanwhile are committed together, each in its own savepoint (group commit: one
    /// fsync for the batch), so writers wait in a queue, not on threads.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel::<Result<R>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let out = savepoint(conn, f);
            Box::new(move |failed: Option<&str>| {
                let out = match (out, failed) {
                    (Ok(_), Some(why)) => Err(Error::Writer(why.to_string())),
                    (out, _) => out,
                };
                let _ = done.send(out);
            })
        });
        let started = std::time::Instant::now();
        self.jobs.send(job).map_err(|_| Error::Writer("the writer thread is gone".into()))?;
        let out = answer.await.map_err(|_| Error::Writer("the writer thread is gone".into()))?;
        crate::metrics::get().store("write", started.elapsed());
        out
    }

    /// Runs a read-only `f` on the blocking pool, on a reader connection (it sees the last
    /// commit and waits for no writer).
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let store = self.clone();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || store.read_now(f)).await.map_err(Error::Worker)?;
        crate::metrics::get().store("read", started.elapsed());
        out
    }

    /// Commits from now on that touched what agents run (see [`Touched`]). A receiver that
    /// lags behind gets `Lagged`: it must assume it was touched.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<Touched>> {
        self.changes.subscribe()
    }

    /// How many commits so far touched a host or tenant (see [`Touched`]): what is derived
    /// from the store may be cached until it moves.
    pub fn touches(&self) -> u64 {
        self.touches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The store's revision as of the last commit through this handle.
    pub fn current_revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// [`Store::read`] on the calling thread (which may block).
    pub fn read_now<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        if self.readers.is_empty() {
            let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            return f(&conn);
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A free reader if there is one, else wait for the next in turn.
        for i in 0..n {
            if let Ok(conn) = self.readers[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.readers[start % n].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn)
    }
}

/// Runs `f` in a savepoint of the open transaction: released on `Ok`, rolled back on `Err`
/// or a panic.
fn savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.execute_batch("SAVEPOINT op")?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(Error::Writer("the operation panicked".into())));
    match out {
        Ok(v) => {
            conn.execute_batch("RELEASE op")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

/// The writer thread: takes queued operations, up to [`BATCH`] at a time, runs them in one
/// transaction and commits it, then answers each.
fn writer(
    conn: &Mutex<Connection>,
    latest: &std::sync::atomic::AtomicU64,
    (changes, touches): (&tokio::sync::broadcast::Sender<Arc<Touched>>, &std::sync::atomic::AtomicU64),
    queue: &std::sync::mpsc::Receiver<Job>,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < BATCH {
            match queue.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut done = Vec::with_capacity(jobs.len());
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // NB: never run an operation outside a transaction; dropping a job answers its
            // caller with an error.
            tracing::error!(error = %e, "store: cannot begin a transaction");
            drop(jobs);
            continue;
        }
        for job in jobs {
            done.push(job(&conn));
        }
        let committed = revision(&conn).and_then(|rev| {
            conn.execute_batch("COMMIT")?;
            Ok(rev)
        });
        // NB: what a rolled-back operation of the batch touched is published too: at worst a
        // watch wakes and finds nothing new.
        let touched = TOUCHED.take();
        match committed {
            Ok(rev) => {
                latest.fetch_max(rev, std::sync::atomic::Ordering::SeqCst);
                if !touched.hosts.is_empty() || !touched.tenants.is_empty() {
                    touches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // No receiver is no error: nobody is watching.
                    let _ = changes.send(Arc::new(Touched { revision: rev, ..touched }));
                }
                for d in done {
                    d(None);
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let why = e.to_string();
                for d in done {
                    d(Some(&why));
                }
            }
        }
    }
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    // NB: plain data types with string keys only; serde_json cannot fail on them.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| Error::Corrupt { what, source })
}

/// The store's revision, bumped whenever any placement changes; agents see it as the
/// generation of their desired set.
pub fn revision(c: &Connection) -> Result<u64> {
    let v: Option<i64> = c.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| r.get(0)).optional()?;
    Ok(v.unwrap_or(0) as u64)
}

pub fn bump_revision(c: &Connection) -> Result<u64> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('revision', 1)
         ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    )?;
    revision(c)
}

/// A host row.
#[derive(Debug, Clone)]
pub struct HostRow {
    pub info: HostInfo,
    pub last_seen_ms: u64,
    /// No new placements (`herd hosts cordon`, or a drain).
    pub cordoned: bool,
    /// Set while `herd hosts drain` empties the host: when it was asked for.
    pub drain_since_ms: Option<u64>,
}

/// Cordons or uncordons a host, and starts (`Some`) or ends (`None`) its drain; returns
/// whether the host exists.
pub fn set_host_schedule(c: &Connection, host: &str, cordoned: bool, drain_since_ms: Option<u64>) -> Result<bool> {
    let n = c.execute(
        "UPDATE hosts SET cordoned = ?2, drain_since_ms = ?3 WHERE id = ?1",
        params![host, cordoned, drain_since_ms.map(|ms| ms as i64)],
    )?;
    Ok(n == 1)
}

/// One host row.
pub fn host(c: &Connection, id: &str) -> Result<Option<HostRow>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE id = ?1"))?;
    let row = stmt.query_row([id], host_columns).optional()?;
    row.map(host_row).transpose()
}

/// Forgets a host: its row, subnet lease, log endpoint, reported conditions and state, and
/// the purges still owed on it (its disks are gone with it). Its agent tokens are revoked;
/// returns their ids.
pub fn delete_host(c: &Connection, host: &str) -> Result<Vec<String>> {
    for table in ["subnets", "host_logs", "host_conditions", "observed", "purge"] {
        c.execute(&format!("DELETE FROM {table} WHERE host_id = ?1"), [host])?;
    }
    c.execute("DELETE FROM hosts WHERE id = ?1", [host])?;
    let mut stmt = c.prepare_cached("SELECT id FROM tokens WHERE host = ?1 AND revoked = 0 ORDER BY id")?;
    let ids: Vec<String> = stmt.query_map([host], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    c.execute("UPDATE tokens SET revoked = 1 WHERE host = ?1", [host])?;
    Ok(ids)
}

const HOST_COLUMNS: &str = "info, last_seen_ms, cordoned, drain_since_ms";

type HostColumns = (String, i64, bool, Option<i64>);

fn host_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostColumns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn host_row((info, last_seen, cordoned, drain): HostColumns) -> Result<HostRow> {
    Ok(HostRow { info: from_json("host", &info)?, last_seen_ms: last_seen as u64, cordoned, drain_since_ms: drain.map(|ms| ms as u64) })
}

/// Inserts a host or updates its description; returns whether it was new.
pub fn upsert_host(c: &Connection, info: &HostInfo, now_ms: u64) -> Result<bool> {
    let existed = c.query_row("SELECT 1 FROM hosts WHERE id = ?1", [&info.id], |_| Ok(())).optional()?.is_some();
    c.execute(
        "INSERT INTO hosts (id, info, registered_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen_ms = excluded.last_seen_ms",
        params![info.id, to_json(info), now_ms as i64],
    )?;
    Ok(!existed)
}

/// Whether some instance waits for a host (uses the `host_id` index).
pub fn any_unplaced(c: &Connection) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM instances WHERE host_id IS NULL LIMIT 1", [], |_| Ok(())).optional()?.is_some())
}

/// How many instances wait for a host: one cluster's, or every cluster's.
pub fn pending_count(c: &Connection, cluster: Option<(&str, &str)>) -> Result<u64> {
    let (tenant, name) = cluster.unzip();
    let mut stmt = c.prepare_cached(
        "SELECT count(*) FROM instances WHERE host_id IS NULL AND (?1 IS NULL OR (tenant = ?1 AND cluster = ?2))",
    )?;
    Ok(stmt.query_row(params![tenant, name], |r| r.get::<_, i64>(0))? as u64)
}

/// How many clusters a tenant has.
pub fn cluster_count(c: &Connection, tenant: &str) -> Result<u64> {
    Ok(c.query_row("SELECT count(*) FROM clusters WHERE tenant = ?1", [tenant], |r| r.get::<_, i64>(0))? as u64)
}

/// Whether any instance is leaving (decommissioning, draining, being removed).
pub fn any_leaving(c: &Connection) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM leaving LIMIT 1", [], |_| Ok(())).optional()?.is_some())
}

/// Records where a host's agent serves logs (replacing what it sent before).
pub fn put_log_endpoint(c: &Connection, host: &str, ep: &LogEndpoint) -> Result<()> {
    c.execute(
        "INSERT INTO host_logs (host_id, url, secret) VALUES (?1, ?2, ?3)
         ON CONFLICT(host_id) DO UPDATE SET url = excluded.url, secret = excluded.secret",
        params![host, ep.url, ep.secret],
    )?;
    Ok(())
}

/// Where a host's agent serves logs, if it said.
pub fn log_endpoint(c: &Connection, host: &str) -> Result<Option<LogEndpoint>> {
    let mut stmt = c.prepare_cached("SELECT url, secret FROM host_logs WHERE host_id = ?1")?;
    Ok(stmt.query_row([host], |r| Ok(LogEndpoint { url: r.get(0)?, secret: r.get(1)? })).optional()?)
}

/// Replaces the conditions a host's agent reports.
pub fn set_conditions(c: &Connection, host: &str, conditions: &[String]) -> Result<()> {
    if conditions.is_empty() {
        c.execute("DELETE FROM host_conditions WHERE host_id = ?1", [host])?;
    } else {
        c.execute(
            "INSERT INTO host_conditions (host_id, conditions) VALUES (?1, ?2)
             ON CONFLICT(host_id) DO UPDATE SET conditions = excluded.conditions",
            params![host, to_json(&conditions)],
        )?;
    }
    Ok(())
}

/// Every host's reported conditions, by host id.
pub fn conditions(c: &Connection) -> Result<HashMap<String, Vec<String>>> {
    let mut stmt = c.prepare_cached("SELECT host_id, conditions FROM host_conditions")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = HashMap::new();
    for row in rows {
        let (host, text) = row?;
        out.insert(host, from_json("host conditions", &text)?);
    }
    Ok(out)
}

/// Every host, by id.
pub fn hosts(c: &Connection) -> Result<Vec<HostRow>> {
    hosts_page(c, None, usize::MAX)
}

/// SQLite's `LIMIT` for `limit` items.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Up to `limit` hosts after `after`, by id.
pub fn hosts_page(c: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<HostRow>> {
    let mut stmt =
        c.prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2"))?;
    let limit = sql_limit(limit);
    let rows = stmt.query_map(params![after, limit], host_columns)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(host_row(row?)?);
    }
    Ok(out)
}

pub fn insert_tenant(c: &Connection, name: &str, quota: &Quota, now_s: u64) -> Result<bool> {
    Ok(c.execute(
        "INSERT OR IGNORE INTO tenants (name, created_s, quota) VALUES (?1, ?2, ?3)",
        params![name, now_s as i64, to_json(quota)],
    )? == 1)
}

fn tenant_from_row(c: &Connection, name: String, created_s: i64, quota: &str) -> Result<Tenant> {
    let usage = usage(c, &name, None)?;
    let quota: Quota = from_json("tenant quota", quota)?;
    let (used, borrowed) = crate::placement::tenant_use(c, &name, &quota)?;
    Ok(Tenant { created_at: created_s as u64, quota, usage, used, borrowed, name })
}

/// Up to `limit` tenants after `after`, by name, with their quota and usage.
pub fn tenants(c: &Connection, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>> {
    let mut stmt = c.prepare_cached(
        "SELECT name, created_s, quota FROM tenants WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, sql_limit(limit)], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
    })?;
    let rows: Vec<_> = rows.collect::<Result<_, _>>()?;
    rows.into_iter().map(|(name, created, quota)| tenant_from_row(c, name, created, &quota)).collect()
}

pub fn tenant(c: &Connection, name: &str) -> Result<Option<Tenant>> {
    let row: Option<(String, i64, String)> = c
        .query_row("SELECT name, created_s, quota FROM tenants WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    row.map(|(name, created, quota)| tenant_from_row(c, name, created, &quota)).transpose()
}

/// Every tenant's quota, by name (no usage: cheap enough for every placement pass).
pub fn quotas(c: &Connection) -> Result<BTreeMap<String, Quota>> {
    let mut stmt = c.prepare_cached("SELECT name, quota FROM tenants")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, quota) = row?;
        out.insert(name, from_json("tenant quota", &quota)?);
    }
    Ok(out)
}

pub fn tenant_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM tenants WHERE name = ?1", [name], |_| Ok(())).optional()?.is_some())
}

/// Sets a tenant's quota; `false` when there is no such tenant.
pub fn set_quota(c: &Connection, name: &str, quota: &Quota) -> Result<bool> {
    Ok(c.execute("UPDATE tenants SET quota = ?2 WHERE name = ?1", params![name, to_json(quota)])? == 1)
}

/// Deletes a tenant that owns no cluster, and revokes its tokens.
pub fn delete_tenant(c: &Connection, name: &str) -> Result<()> {
    c.execute("UPDATE tokens SET revoked = 1 WHERE tenant = ?1", [name])?;
    c.execute("DELETE FROM tenants WHERE name = ?1", [name])?;
    Ok(())
}

/// What a tenant's clusters ask for together, leaving out cluster `except`.
pub fn usage(c: &Connection, tenant: &str, except: Option<&str>) -> Result<Resources> {
    let mut stmt = c.prepare_cached("SELECT name, spec FROM clusters WHERE tenant = ?1")?;
    let rows = stmt.query_map([tenant], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut total = Resources::default();
    for row in rows {
        let (name, spec) = row?;
        if Some(name.as_str()) != except {
            total = total.plus(from_json::<ClusterSpec>("cluster spec", &spec)?.requests());
        }
    }
    Ok(total)
}

/// A stored cluster.
#[derive(Debug, Clone)]
pub struct ClusterRow {
    pub generation: u64,
    pub spec: ClusterSpec,
}

pub fn cluster(c: &Connection, tenant: &str, name: &str) -> Result<Option<ClusterRow>> {
    let row: Option<(i64, String)> = c
        .query_row("SELECT generation, spec FROM clusters WHERE tenant = ?1 AND name = ?2", [tenant, name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(generation, spec)| Ok(ClusterRow { generation: generation as u64, spec: from_json("cluster spec", &spec)? }))
        .transpose()
}

/// Every cluster, or one tenant's, ordered by tenant and name.
pub fn clusters(c: &Connection, tenant: Option<&str>) -> Result<Vec<ClusterRow>> {
    clusters_page(c, tenant, None, usize::MAX)
}

/// Up to `limit` clusters after the cursor `(tenant, name)`, of every tenant or one,
/// ordered by tenant and name.
pub fn clusters_page(c: &Connection, tenant: Option<&str>, after: Option<(&str, &str)>, limit: usize) -> Result<Vec<ClusterRow>> {
    let (after_tenant, after_name) = after.unzip();
    let mut stmt = c.prepare_cached(
        "SELECT generation, spec FROM clusters
         WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR (tenant, name) > (?2, ?3))
         ORDER BY tenant, name LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![tenant, after_tenant, after_name, sql_limit(limit)], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (generation, spec) = row?;
        out.push(ClusterRow { generation: generation as u64, spec: from_json("cluster spec", &spec)? });
    }
    Ok(out)
}

pub fn put_cluster(c: &Connection, generation: u64, spec: &ClusterSpec) -> Result<()> {
    touch(None, Some(&spec.tenant));
    c.execute(
        "INSERT INTO clusters (tenant, name, generation, spec) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(tenant, name) DO UPDATE SET generation = excluded.generation, spec = excluded.spec",
        params![spec.tenant, spec.name, generation as i64, to_json(spec)],
    )?;
    Ok(())
}

pub fn delete_cluster(c: &Connection, tenant: &str, name: &str) -> Result<()> {
    touch(None, Some(tenant));
    c.execute("DELETE FROM leaving WHERE tenant = ?1 AND cluster = ?2", [tenant, name])?;
    c.execute("DELETE FROM observed WHERE tenant = ?1 AND cluster = ?2", [tenant, name])?;
    c.execute("DELETE FROM clusters WHERE tenant = ?1 AND name = ?2", [tenant, name])?;
    Ok(())
}

const INSTANCE_COLUMNS: &str = "tenant, cluster, name, role, ordinal, host_id, pending, cpu, memory, placement";

/// An instance row's columns, before the role is parsed.
type InstanceColumns = (InstanceRef, String, u32, Option<String>, Option<String>, i64, i64, i64);

fn instance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceColumns> {
    Ok((
        InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? },
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn collect_instances(stmt: &mut rusqlite::CachedStatement<'_>, params: impl rusqlite::Params) -> Result<Vec<Instance>> {
    let rows = stmt.query_map(params, instance_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (instance, role, ordinal, host, pending, cpu, memory, placement) = row?;
        let role: Role = role.parse().map_err(|e: String| Error::Corrupt {
            what: "instance role",
            source: serde::de::Error::custom(e),
        })?;
        let (cpu, memory, placement) = (Cpu(cpu as u64), Memory(memory as u64), placement as u64);
        out.push(Instance { instance, role, ordinal, host, pending, cpu, memory, placement });
    }
    Ok(out)
}

/// One cluster's instances, or every instance when `cluster` is `None`.
pub fn instances(c: &Connection, cluster: Option<(&str, &str)>) -> Result<Vec<Instance>> {
    let (tenant, name) = cluster.unzip();
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances
         WHERE (?1 IS NULL OR (tenant = ?1 AND cluster = ?2)) ORDER BY tenant, cluster, role, ordinal"
    ))?;
    collect_instances(&mut stmt, params![tenant, name])
}

/// Every instance of one tenant (the primary key's prefix).
pub fn instances_of_tenant(c: &Connection, tenant: &str) -> Result<Vec<Instance>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = ?1 ORDER BY tenant, cluster, role, ordinal"
    ))?;
    collect_instances(&mut stmt, [tenant])
}

pub fn instances_on_host(c: &Connection, host: &str) -> Result<Vec<Instance>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE host_id = ?1 ORDER BY tenant, cluster, role, ordinal"
    ))?;
    collect_instances(&mut stmt, [host])
}

/// Inserts or updates an instance (placement, pending reason, resources). Its `placement`
/// is counted here, not taken from `i`: it goes up by one each time the instance lands on a
/// host it was not on (from another host or from pending), so a container left from an
/// earlier placement is told apart from the current one (fencing).
pub fn put_instance(c: &Connection, i: &Instance) -> Result<()> {
    touch_instance(c, &i.instance)?;
    touch(i.host.as_deref(), None);
    c.execute(
        "INSERT INTO instances (tenant, cluster, name, role, ordinal, host_id, pending, cpu, memory, placement)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?6 IS NOT NULL)
         ON CONFLICT(tenant, cluster, name) DO UPDATE SET
           placement = placement + (excluded.host_id IS NOT NULL AND excluded.host_id IS NOT host_id),
           host_id = excluded.host_id, pending = excluded.pending,
           cpu = excluded.cpu, memory = excluded.memory",
        params![
            i.instance.tenant,
            i.instance.cluster,
            i.instance.name,
            i.role.as_str(),
            i.ordinal,
            i.host,
            i.pending,
            i.cpu.0 as i64,
            i.memory.0 as i64
        ],
    )?;
    Ok(())
}

/// Deletes an instance and its leaving phase, if any.
pub fn delete_instance(c: &Connection, i: &InstanceRef) -> Result<()> {
    touch_instance(c, i)?;
    delete_phase(c, i)?;
    c.execute("DELETE FROM instances WHERE tenant = ?1 AND cluster = ?2 AND name = ?3", [&i.tenant, &i.cluster, &i.name])?;
    Ok(())
}

/// Touches the tenant of `i` and the host it is placed on now.
fn touch_instance(c: &Connection, i: &InstanceRef) -> Result<()> {
    let mut stmt = c.prepare_cached("SELECT host_id FROM instances WHERE tenant = ?1 AND cluster = ?2 AND name = ?3")?;
    let host: Option<Option<String>> = stmt.query_row([&i.tenant, &i.cluster, &i.name], |r| r.get(0)).optional()?;
    touch(host.flatten().as_deref(), Some(&i.tenant));
    Ok(())
}

/// The stored [`Phase`] of every leaving instance of one cluster (or of all clusters): a
/// DataNode decommissioning or a NodeManager draining. Written before any action is taken
/// on it, so a restart resumes from here.
pub fn leaving(c: &Connection, cluster: Option<(&str, &str)>) -> Result<BTreeMap<InstanceRef, Phase>> {
    let (tenant, name) = cluster.unzip();
    let mut stmt = c.prepare_cached(
        "SELECT tenant, cluster, name, phase FROM leaving WHERE (?1 IS NULL OR (tenant = ?1 AND cluster = ?2))",
    )?;
    let rows = stmt.query_map(params![tenant, name], |r| {
        Ok((InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }, r.get::<_, String>(3)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (instance, phase) = row?;
        out.insert(instance, from_json("leaving phase", &phase)?);
    }
    Ok(out)
}

/// Stores (or replaces) the phase of a leaving instance.
pub fn put_phase(c: &Connection, i: &InstanceRef, phase: &Phase) -> Result<()> {
    touch(None, Some(&i.tenant));
    c.execute(
        "INSERT INTO leaving (tenant, cluster, name, phase) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(tenant, cluster, name) DO UPDATE SET phase = excluded.phase",
        params![i.tenant, i.cluster, i.name, to_json(phase)],
    )?;
    Ok(())
}

/// Forgets the phase of an instance: back in service (recommissioned) or gone.
pub fn delete_phase(c: &Connection, i: &InstanceRef) -> Result<()> {
    touch(None, Some(&i.tenant));
    c.execute("DELETE FROM leaving WHERE tenant = ?1 AND cluster = ?2 AND name = ?3", [&i.tenant, &i.cluster, &i.name])?;
    Ok(())
}

/// Asks `host`'s agent to remove the data folders of `i` once its container is gone (a
/// deleted cluster's instance, or a DataNode HDFS declared `Decommissioned`).
pub fn put_purge(c: &Connection, host: &str, i: &InstanceRef) -> Result<()> {
    touch(Some(host), None);
    c.execute(
        "INSERT OR IGNORE INTO purge (host_id, tenant, cluster, name) VALUES (?1, ?2, ?3, ?4)",
        params![host, i.tenant, i.cluster, i.name],
    )?;
    Ok(())
}

/// The instances whose data folders `host`'s agent is to remove.
pub fn purges(c: &Connection, host: &str) -> Result<Vec<InstanceRef>> {
    let mut stmt = c.prepare_cached("SELECT tenant, cluster, name FROM purge WHERE host_id = ?1 ORDER BY tenant, cluster, name")?;
    let rows = stmt.query_map([host], |r| Ok(InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether some agent is still to remove the data folders of `i`.
pub fn purge_pending(c: &Connection, i: &InstanceRef) -> Result<bool> {
    let mut stmt = c.prepare_cached("SELECT 1 FROM purge WHERE tenant = ?1 AND cluster = ?2 AND name = ?3 LIMIT 1")?;
    Ok(stmt.exists(params![i.tenant, i.cluster, i.name])?)
}

/// `host`'s agent removed the data folders of `i`.
pub fn delete_purge(c: &Connection, host: &str, i: &InstanceRef) -> Result<()> {
    c.execute(
        "DELETE FROM purge WHERE host_id = ?1 AND tenant = ?2 AND cluster = ?3 AND name = ?4",
        params![host, i.tenant, i.cluster, i.name],
    )?;
    Ok(())
}

/// Replaces everything `host` last reported.
pub fn replace_observed(c: &Connection, host: &str, observed: &[Observed]) -> Result<()> {
    c.execute("DELETE FROM observed WHERE host_id = ?1", [host])?;
    let mut stmt = c.prepare_cached(
        "INSERT OR REPLACE INTO observed (tenant, cluster, name, host_id, state) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for o in observed {
        stmt.execute(params![o.instance.tenant, o.instance.cluster, o.instance.name, host, to_json(o)])?;
    }
    Ok(())
}

/// What each host last reported, keyed by instance and host.
pub fn observed(c: &Connection) -> Result<HashMap<(InstanceRef, String), Observed>> {
    let mut stmt = c.prepare_cached("SELECT tenant, cluster, name, host_id, state FROM observed")?;
    let rows = stmt.query_map([], |r| {
        Ok((InstanceRef { tenant: r.get(0)?, cluster: r.get(1)?, name: r.get(2)? }, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (instance, host, state) = row?;
        out.insert((instance, host), from_json("observed state", &state)?);
    }
    Ok(out)
}

/// Every host's container subnet lease.
pub fn subnets(c: &Connection) -> Result<BTreeMap<String, Ipv4Net>> {
    let mut stmt = c.prepare_cached("SELECT host_id, subnet FROM subnets")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (host, subnet) = row?;
        let subnet = subnet.parse().map_err(|e: ipnet::AddrParseError| Error::Corrupt {
            what: "host subnet",
            source: serde::de::Error::custom(e),
        })?;
        out.insert(host, subnet);
    }
    Ok(out)
}

/// `host`'s subnet lease, if it has one.
pub fn subnets_of(c: &Connection, host: &str) -> Result<Option<Ipv4Net>> {
    let s: Option<String> = c.query_row("SELECT subnet FROM subnets WHERE host_id = ?1", [host], |r| r.get(0)).optional()?;
    s.map(|s| {
        s.parse().map_err(|e: ipnet::AddrParseError| Error::Corrupt { what: "host subnet", source: serde::de::Error::custom(e) })
    })
    .transpose()
}

/// Leases `subnet` to `host`, replacing its earlier lease.
pub fn put_subnet(c: &Connection, host: &str, subnet: Ipv4Net) -> Result<()> {
    c.execute(
        "INSERT INTO subnets (host_id, subnet) VALUES (?1, ?2) ON CONFLICT(host_id) DO UPDATE SET subnet = excluded.subnet",
        params![host, subnet.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_from_before_quotas_gains_them_and_keeps_its_tenants() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid("tempdir", e.to_string()))?;
        let path = dir.path().join("herd.db");
        {
            let old = Connection::open(&path)?;
            old.execute_batch(
                "CREATE TABLE tenants (name TEXT PRIMARY KEY, created_s INTEGER NOT NULL);
                 INSERT INTO tenants VALUES ('acme', 1767225600);",
            )?;
        }
        let store = Store::open(&path)?;
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        let t = tenant(&conn, "acme")?.ok_or_else(|| Error::not_found("tenant", "acme"))?;
        assert_eq!((t.created_at, t.quota), (1_767_225_600, Quota::default()));
        assert!(set_quota(&conn, "acme", &Quota { cpu: Some(Cpu(2000)), ..Quota::default() })?);
        drop(conn);
        drop(store);
        // Opening again is a no-op for the schema.
        let store = Store::open(&path)?;
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(tenant(&conn, "acme")?.map(|t| t.quota.cpu), Some(Some(Cpu(2000))));
        Ok(())
    }
}
