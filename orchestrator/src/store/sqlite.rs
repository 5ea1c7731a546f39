//! The embedded SQLite store (`--store sqlite`, the default): one file, nothing to run
//! beside the orchestrator. Every change runs in one transaction with `synchronous=FULL`, so
//! a crash or restart loses nothing acknowledged. The queries are in `sqlite/tx.rs` ([`SqliteTx`]).
//!
//! SQLite is synchronous: calls run on tokio's blocking pool behind a std mutex (never
//! held across an await, so a std mutex and not a tokio one). Writes go through one
//! connection on one writer thread (group commit); reads through a few read-only ones of
//! their own (WAL: readers see the last commit and never wait for a writer), so status reads
//! and token checks do not queue behind writes. What agents report is not written per
//! heartbeat: see [`crate::hot`]. Backups (`crate::backup`) copy this file and are
//! SQLite-only.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};

use super::Tx;
use crate::error::{Error, Result};

mod tx;

pub use tx::SqliteTx;
use tx::Cached;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            // A unique key or a reference the write would break (a subnet leased twice, a
            // cluster of no tenant, a tenant that still owns clusters, ...).
            rusqlite::Error::SqliteFailure(f, msg) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Error::Conflict(format!("the store refused the change: {}", msg.as_deref().unwrap_or("a constraint failed")))
            }
            _ => Error::Store { backend: "sqlite", source: Box::new(e) },
        }
    }
}

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
/// Called with the batch's number ([`BATCH_KEY`]) once it committed, or why it failed.
type Done = Box<dyn FnOnce(std::result::Result<u64, &str>) + Send>;

/// The `meta` row holding the number of the last batch committed: each batch writes its own,
/// one more than the last, so a snapshot knows which batches it holds ([`super::Tx::batch`]).
const BATCH_KEY: &str = "batch";

/// Operations committed together at most (one fsync for all of them).
const BATCH: usize = 256;

/// A batch takes in operations queued meanwhile only while it has run for less than this:
/// then it commits, and what is still queued goes in the next. (It used to take in every
/// queued operation first: thirty 10,000-instance applies queued at once were one
/// transaction of a minute, and every one of them answered only at its end, most past
/// their clients' 30 s.)
const BATCH_MS: u128 = 100;

/// Handle to the SQLite store; cheap to clone.
#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// To the writer thread, which owns the writes on `conn`.
    jobs: std::sync::mpsc::Sender<Job>,
    /// Read-only connections (empty for a store in memory: reads then use `conn`).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// The revision as of the last commit (see [`Tx::revision`]), readable without a query.
    revision: Arc<std::sync::atomic::AtomicU64>,
    /// What every host's placed instances take, kept by the writer ([`super::usage`]).
    usage: Arc<Mutex<tx::Kept>>,
}

/// Read-only connections of a store on disk.
const READERS: usize = 4;

impl Sqlite {
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

    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
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
            steady_plans(&r)?;
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
        // Each operation runs in a savepoint of the batch's transaction, and SQLite copies
        // every page a savepoint changes into a statement journal first, spilled to a
        // temporary file past 64 KiB: writing that file was a fifth of each big apply (a
        // 10,000-instance apply changes thousands of pages). In memory it is only ever
        // read back to roll one operation back; the database and its WAL are as durable as
        // before. The writer's page cache (64 MiB, SQLite's default is 2 MB) holds such a
        // transaction's pages without spilling them to the WAL before the commit.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        steady_plans(&conn)?;
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
        let batch = batch(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(rev));
        let (jobs, queue) = std::sync::mpsc::channel();
        let usage: Arc<Mutex<tx::Kept>> = Arc::default();
        let (c, r, u) = (conn.clone(), revision.clone(), usage.clone());
        std::thread::Builder::new()
            .name("herd-store-writer".into())
            .spawn(move || writer(&c, &r, &u, &queue, batch))
            .map_err(|e| Error::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { conn, jobs, readers: Arc::new(Vec::new()), next_reader: Arc::default(), revision, usage })
    }

    /// Runs `f` as one atomic operation on the writer thread: all it changes is stored, or
    /// (when it returns `Err` or panics) nothing. Returns once that is durable. Operations
    /// queued meanwhile are committed together, each in its own savepoint (group commit: one
    /// fsync for the batch), so writers wait in a queue, not on threads. `f` runs once.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&dyn Tx) -> Result<R> + Send + 'static,
    {
        self.write_then(f, |_, _| {}).await
    }

    /// [`Sqlite::write`], running `committed` on what `f` returned and the batch's number
    /// ([`super::Tx::batch`]) as soon as its batch is committed, on the writer thread: before
    /// the caller's task is woken, which under load took long enough for readers to see the
    /// commit many times over.
    pub async fn write_then<R, F, C>(&self, f: F, committed: C) -> Result<R>
    where
        R: Send + 'static,
        F: Fn(&dyn Tx) -> Result<R> + Send + 'static,
        C: FnOnce(&mut R, u64) + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel::<Result<R>>();
        let usage = self.usage.clone();
        let job: Job = Box::new(move |conn: &Connection| {
            let moves = usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner).moves;
            let out = savepoint(conn, |c| f(&SqliteTx(c, Some(&usage))));
            if out.is_err() {
                // Rolled back: a usage it moved no longer matches the table.
                let mut kept = usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if kept.moves != moves {
                    kept.usage = None;
                }
            }
            Box::new(move |batch: std::result::Result<u64, &str>| {
                let out = match (out, batch) {
                    (Ok(_), Err(why)) => Err(Error::Writer(why.to_string())),
                    (Ok(mut r), Ok(batch)) => {
                        committed(&mut r, batch);
                        Ok(r)
                    }
                    (out, _) => out,
                };
                let _ = done.send(out);
            })
        });
        self.jobs.send(job).map_err(|_| Error::Writer("the writer thread is gone".into()))?;
        answer.await.map_err(|_| Error::Writer("the writer thread is gone".into()))?
    }

    /// The store's revision as of the last commit through this handle.
    pub fn current_revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs a read-only `f` on the calling thread (which may block), over one snapshot: a
    /// read transaction on a reader connection (it sees the last commit and waits for no
    /// writer).
    pub fn read_now<R>(&self, f: impl FnOnce(&dyn Tx) -> Result<R>) -> Result<R> {
        let run = |conn: &Connection| {
            let snapshot = conn.unchecked_transaction()?;
            f(&SqliteTx(&snapshot, None))
        };
        if self.readers.is_empty() {
            // In memory: the writer's connection, made read-only for the read.
            let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            conn.pragma_update(None, "query_only", "ON")?;
            let out = run(&conn);
            conn.pragma_update(None, "query_only", "OFF")?;
            return out;
        }
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A free reader if there is one, else wait for the next in turn.
        for i in 0..n {
            if let Ok(conn) = self.readers[(start + i) % n].try_lock() {
                return run(&conn);
            }
        }
        let conn = self.readers[start % n].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        run(&conn)
    }
}

/// Runs `f` in a savepoint of the open transaction: released on `Ok`, rolled back on `Err`
/// or a panic.
fn savepoint<R>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.exec("SAVEPOINT op", [])?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(Error::Writer("the operation panicked".into())));
    match out {
        Ok(v) => {
            conn.exec("RELEASE op", [])?;
            Ok(v)
        }
        Err(e) => {
            conn.exec("ROLLBACK TO op", [])?;
            conn.exec("RELEASE op", [])?;
            Err(e)
        }
    }
}

/// The nice value the writer thread asks for (Linux: lower runs first). Every change of
/// intent (an apply, a scale, a decommission step, a purge acknowledged) goes through this
/// one thread, while any number of request threads can compute replies in parallel: under
/// a heartbeat storm the writer waited on the run queue for 45 % of its time (a million
/// instances applied on 30,000 hosts: all written 37 s after the apply at nice 0, 25 s at -5;
/// at -5 it still waited a fifth of its time, and every placement was made 29–32 s after the
/// apply; at -10 it waits 8–9 %, and they are made in 24–26 s).
pub const WRITER_NICE: i32 = -10;

/// Runs the calling thread at [`WRITER_NICE`] when it may (root, `CAP_SYS_NICE`, or an
/// `RLIMIT_NICE` of at least 30: systemd's `LimitNICE=-10`, as `deploy/systemd` sets), else
/// says once why it runs at the default priority. (On Linux a nice value is per thread.)
fn favour_this_thread() {
    // SAFETY: setpriority reads no memory; `who` 0 is the calling thread under Linux.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WRITER_NICE) } != 0;
    if failed {
        let why = std::io::Error::last_os_error();
        tracing::info!(nice = WRITER_NICE, error = %why,
            "the store's writer runs at the default priority: raising it needs CAP_SYS_NICE or LimitNICE={WRITER_NICE} (systemd); under load, writes then wait behind replies");
    }
}

/// The writer thread: takes queued operations, up to [`BATCH`] at a time, runs them in one
/// transaction and commits it, then answers each.
fn writer(conn: &Mutex<Connection>, latest: &std::sync::atomic::AtomicU64, usage: &Mutex<tx::Kept>, queue: &std::sync::mpsc::Receiver<Job>, mut batch: u64) {
    favour_this_thread();
    while let Ok(first) = queue.recv() {
        let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = conn.exec("BEGIN IMMEDIATE", []) {
            // NB: never run an operation outside a transaction; dropping a job answers its
            // caller with an error.
            tracing::error!(error = %e, "store: cannot begin a transaction");
            drop(first);
            continue;
        }
        let started = std::time::Instant::now();
        let mut done = vec![first(&conn)];
        while done.len() < BATCH && started.elapsed().as_millis() < BATCH_MS {
            match queue.try_recv() {
                Ok(job) => done.push(job(&conn)),
                Err(_) => break,
            }
        }
        let committed = revision(&conn).and_then(|rev| {
            conn.exec(
                &format!("INSERT INTO meta (key, value) VALUES ('{BATCH_KEY}', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
                [batch as i64 + 1],
            )?;
            conn.exec("COMMIT", [])?;
            Ok(rev)
        });
        match committed {
            Ok(rev) => {
                batch += 1;
                latest.fetch_max(rev, std::sync::atomic::Ordering::SeqCst);
                for d in done {
                    d(Ok(batch));
                }
            }
            Err(e) => {
                let _ = conn.exec("ROLLBACK", []);
                usage.lock().unwrap_or_else(std::sync::PoisonError::into_inner).usage = None;
                let why = e.to_string();
                for d in done {
                    d(Err(&why));
                }
            }
        }
    }
}

/// Statements each connection keeps parsed: more than the store has (rusqlite's default,
/// 16, made the busiest ones evict each other).
const STATEMENT_CACHE: usize = 256;

/// Keeps each statement parsed and planned once per connection: a statement cache big enough
/// for all of them, and SQLite's query planner stability guarantee. Without the latter the
/// bundled SQLite (built with STAT4) re-prepared `... WHERE host_id = ?1` at every run to
/// re-plan for the bound value: a fifth of the orchestrator's CPU while 2,000 hosts a second
/// registered (`sqlite3_stmt_status(REPREPARE)` equal to its runs).
/// Also maps the store's file into memory for reads ([`MMAP_BYTES`]).
fn steady_plans(conn: &Connection) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(())
}

/// How much of the store's file each connection reads through one shared memory mapping
/// (`PRAGMA mmap_size`; SQLite caps it at 2 GiB) instead of copying pages into its own 2 MB
/// page cache with a `pread` each. With a million instances stored, the readers' heartbeat
/// lookups (`instances WHERE host_id = ?`) missed that cache row after row: `pread` and page
/// cache work were a third of the orchestrator's CPU while the million reached their hosts.
/// Writes still go through `write` and the WAL, as before; the mapping is read-only.
const MMAP_BYTES: i64 = 2 << 30;

/// The writer connection's page cache, as `PRAGMA cache_size` takes it (negative: KiB).
const WRITER_CACHE_KIB: i64 = -65_536;

/// The number of the last batch committed (see [`BATCH_KEY`]).
fn batch(c: &Connection) -> Result<u64> {
    let v: Option<i64> = c.row(&format!("SELECT value FROM meta WHERE key = '{BATCH_KEY}'"), [], |r| r.get(0)).optional()?;
    Ok(v.unwrap_or(0) as u64)
}

/// The revision as stored (see [`Tx::revision`]).
fn revision(c: &Connection) -> Result<u64> {
    let v: Option<i64> = c.row("SELECT value FROM meta WHERE key = 'revision'", [], |r| r.get(0)).optional()?;
    Ok(v.unwrap_or(0) as u64)
}

#[cfg(test)]
mod tests {
    use herd_api::quantity::Cpu;
    use herd_api::wire::Quota;

    use super::*;

    /// Every connection, the writer's and each reader's, reads through the mapping; the
    /// writer keeps its statement journals in memory.
    #[test]
    fn connections_read_the_store_through_a_memory_mapping() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid("tempdir", e.to_string()))?;
        let store = Sqlite::open(&dir.path().join("herd.db"))?;
        let mapped = |c: &Connection| c.query_row("PRAGMA mmap_size", [], |r| r.get::<_, i64>(0));
        let writer = store.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(mapped(&writer)? > 0);
        // The writer's statement journals stay in memory (2: MEMORY), and its cache is big.
        assert_eq!(writer.query_row("PRAGMA temp_store", [], |r| r.get::<_, i64>(0))?, 2);
        assert_eq!(writer.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))?, WRITER_CACHE_KIB);
        drop(writer);
        for r in store.readers.iter() {
            assert!(mapped(&r.lock().unwrap_or_else(std::sync::PoisonError::into_inner))? > 0);
        }
        Ok(())
    }

    /// An instance written as new that the store holds is refused, and what it holds stays.
    #[tokio::test]
    async fn a_new_instance_the_store_holds_already_is_refused() -> Result<()> {
        use crate::store::contract::{inst, with_cluster};
        use herd_api::Role;
        let store = crate::store::Store::in_memory()?;
        with_cluster(&store).await?;
        store.write(|tx| tx.put_new_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))).await?;
        let again = store.write(|tx| tx.put_new_instance(&inst("t", "c", Role::Datanode, 0, Some("h2")))).await;
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
        let on = store.read(|c| c.instances(None)).await?;
        assert_eq!(on.iter().map(|i| (i.host.as_deref(), i.placement)).collect::<Vec<_>>(), [(Some("h1"), 1)]);
        Ok(())
    }

    /// A statement run again with other values is neither parsed nor planned again.
    #[test]
    fn statements_are_planned_once_per_connection() -> Result<()> {
        let runs = |steady: bool| -> Result<i32> {
            let c = Connection::open_in_memory()?;
            c.execute_batch(SCHEMA)?;
            if steady {
                steady_plans(&c)?;
            }
            for host in ["a", "b", "c", "d"] {
                let mut stmt = c.prepare_cached("SELECT name FROM instances WHERE host_id = ?1 ORDER BY tenant, cluster")?;
                let names: Vec<String> = stmt.query_map([host], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                assert!(names.is_empty());
            }
            let stmt = c.prepare_cached("SELECT name FROM instances WHERE host_id = ?1 ORDER BY tenant, cluster")?;
            Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
        };
        // What made it worth a setting: SQLite's default re-plans at every run.
        assert!(runs(false)? >= 3);
        assert_eq!(runs(true)?, 0);
        Ok(())
    }

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
        let store = Sqlite::open(&path)?;
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        let t = SqliteTx(&conn, None).tenant("acme")?.ok_or_else(|| Error::not_found("tenant", "acme"))?;
        assert_eq!((t.created_at, t.quota), (1_767_225_600, Quota::default()));
        assert!(SqliteTx(&conn, None).set_quota("acme", &Quota { cpu: Some(Cpu(2000)), ..Quota::default() })?);
        drop(conn);
        drop(store);
        // Opening again is a no-op for the schema.
        let store = Sqlite::open(&path)?;
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(SqliteTx(&conn, None).tenant("acme")?.map(|t| t.quota.cpu), Some(Some(Cpu(2000))));
        Ok(())
    }

    /// A snapshot names the last write batch it holds, and the batch of a cluster's last
    /// commit is known with its count: a snapshot holds that commit exactly when its batch is
    /// at least that one. The numbers go on across a restart (a snapshot of the new process
    /// must never take an old process's number for a batch it does not hold).
    #[tokio::test]
    async fn a_snapshot_holds_a_commit_exactly_when_it_holds_its_batch() -> Result<()> {
        use crate::store::contract::{inst, with_cluster};
        use herd_api::Role;
        let dir = tempfile::tempdir().map_err(|e| Error::invalid("tempdir", e.to_string()))?;
        let path = dir.path().join("herd.db");
        let first = {
            let store = crate::store::Store::open(&path)?;
            assert_eq!(store.read(|c| c.batch()).await?, Some(0), "a new store holds no batch");
            with_cluster(&store).await?;
            let (count, batch) = store.cluster_mark("t", "c");
            assert!(count > 0);
            let b = batch.ok_or_else(|| Error::Writer("SQLite numbers its batches".into()))?;
            assert_eq!(store.read(|c| c.batch()).await?, Some(b), "a snapshot after the commit holds its batch");
            b
        };
        let store = crate::store::Store::open(&path)?;
        assert_eq!(store.read(|c| c.batch()).await?, Some(first));
        store.write(|tx| tx.put_instance(&inst("t", "c", Role::Datanode, 0, None))).await?;
        let (_, batch) = store.cluster_mark("t", "c");
        assert!(batch.is_some_and(|b| b > first), "{batch:?} after {first} before the restart");
        Ok(())
    }

    /// The writer thread runs ahead of the request threads where the process may ask for it
    /// (root here, as in CI), and at the default priority where it may not.
    #[tokio::test]
    async fn the_writer_thread_runs_at_a_higher_priority_when_it_may() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::invalid("tempdir", e.to_string()))?;
        let store = crate::store::Store::open(&dir.path().join("herd.db"))?;
        // A write has run: the thread set its priority before taking its first job.
        store.write(|tx| tx.bump_revision()).await?;
        let nice_of = |task: &std::path::Path| -> Option<i64> {
            let stat = std::fs::read_to_string(task.join("stat")).ok()?;
            // Fields after the command's closing parenthesis; nice is the 19th field of the line.
            stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
        };
        let writers: Vec<i64> = std::fs::read_dir("/proc/self/task")
            .map_err(|e| Error::invalid("/proc/self/task", e.to_string()))?
            .filter_map(|t| t.ok().map(|t| t.path()))
            .filter(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "herd-store-writ"))
            .filter_map(|t| nice_of(&t))
            .collect();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes only the struct it is given.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0;
        // SAFETY: geteuid has no preconditions.
        let may = unsafe { libc::geteuid() } == 0 || (got && limit.rlim_cur >= (20 - WRITER_NICE) as libc::rlim_t);
        assert_eq!(writers, vec![if may { i64::from(WRITER_NICE) } else { 0 }], "the store's writer thread(s) and their nice values");
        Ok(())
    }

    /// One cluster's instances are found through the primary key, not by scanning every
    /// instance of the fleet.
    #[test]
    fn one_clusters_instances_are_read_through_the_key() -> Result<()> {
        let store = Sqlite::in_memory()?;
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", tx::instances_of_cluster()))?
            .query_map(["t", "c"], |r| r.get::<_, String>(3))?
            .collect::<rusqlite::Result<_>>()?;
        assert!(plan.iter().any(|p| p.starts_with("SEARCH instances USING") && p.contains("tenant=? AND cluster=?")), "{plan:?}");
        assert!(!plan.iter().any(|p| p.starts_with("SCAN instances")), "{plan:?}");
        Ok(())
    }
}
