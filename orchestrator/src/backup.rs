//! Backups of the store, and restoring one: `herd-orchestrator backup --to FILE`, scheduled
//! backups (`--backup-dir`, `--backup-every`, `--backup-keep`), `herd-orchestrator restore
//! --from FILE`.
//!
//! A backup is SQLite's online backup API copying every page in one step, from a read-only
//! connection of its own, so in one read transaction: a consistent snapshot of the last
//! commit, which holds every acknowledged write (the store commits before it answers). It is
//! taken while the orchestrator serves: in WAL mode a reader neither blocks the writer nor
//! waits for it. (Copying in several steps would restart whenever the orchestrator commits
//! meanwhile, and might never end under load.) The copy goes to `FILE.partial`, passes
//! `PRAGMA integrity_check`, is fsynced, and only then renamed to `FILE`.
//!
//! A running orchestrator holds `DATA_DIR/orchestrator.lock` ([`lock`]); `restore` takes the
//! same lock, so it refuses while an orchestrator runs there and none starts while it
//! restores. It checks the backup's integrity and that it is a herd store, moves the current
//! store (and its WAL) aside to `STORE.before-restore-TIME` (never deleting what a user
//! stored), and copies the backup into a new file that it renames into place.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot open {path} with SQLite")]
    Open { path: PathBuf, #[source] source: rusqlite::Error },
    #[error("copying {from} to {to} failed")]
    Copy { from: PathBuf, to: PathBuf, #[source] source: rusqlite::Error },
    #[error("copying {from} to {to}: the source stayed busy for {waited:?}; try again")]
    Busy { from: PathBuf, to: PathBuf, waited: Duration },
    #[error("{path} fails SQLite's integrity check: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("{path} is not a herd store (it has no {missing} table)")]
    NotHerd { path: PathBuf, missing: &'static str },
    #[error("{what} {path}")]
    Io { what: &'static str, path: PathBuf, #[source] source: std::io::Error },
    #[error(
        "a herd-orchestrator is running with data directory {0} (it holds orchestrator.lock there); stop it first, \
         or take a backup from it with `herd-orchestrator backup --to FILE`"
    )]
    Running(PathBuf),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// Takes `DATA_DIR/orchestrator.lock` for as long as the returned file is open (the
/// orchestrator: while it runs; `restore`: while it restores). Refused when another process
/// holds it.
pub fn lock(data_dir: &Path) -> Result<File, BackupError> {
    let path = data_dir.join("orchestrator.lock");
    let file = File::create(&path).map_err(io("cannot open", &path))?;
    file.try_lock().map_err(|_| BackupError::Running(data_dir.to_path_buf()))?;
    Ok(file)
}

fn open_read_only(path: &Path) -> Result<Connection, BackupError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| BackupError::Open { path: path.into(), source })?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|source| BackupError::Open { path: path.into(), source })?;
    Ok(conn)
}

/// Copies every page of `src` into `dst` in one step (one read transaction: a consistent
/// snapshot), retrying for up to 30 s while the source is busy (a checkpoint or a recovery).
fn copy(src: &Connection, dst: &mut Connection, from: &Path, to: &Path) -> Result<(), BackupError> {
    let failed = |source| BackupError::Copy { from: from.into(), to: to.into(), source };
    let started = Instant::now();
    let backup = Backup::new(src, dst).map_err(failed)?;
    loop {
        match backup.step(-1).map_err(failed)? {
            StepResult::Done => return Ok(()),
            // NB: `More` cannot follow a step of every page (-1), but is retried like a busy source.
            _ if started.elapsed() > Duration::from_secs(30) => {
                return Err(BackupError::Busy { from: from.into(), to: to.into(), waited: started.elapsed() });
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// SQLite's full `integrity_check` of an open database.
fn check(conn: &Connection, path: &Path) -> Result<(), BackupError> {
    let corrupt = |why: String| BackupError::Corrupt { path: path.into(), why };
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(|e| corrupt(e.to_string()))?;
    let rows: Vec<String> =
        stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| corrupt(e.to_string()))?;
    if rows != ["ok"] {
        return Err(corrupt(rows.into_iter().take(5).collect::<Vec<_>>().join("; ")));
    }
    for table in ["tenants", "clusters", "tokens"] {
        let has: bool = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|e| corrupt(e.to_string()))?;
        if !has {
            return Err(BackupError::NotHerd { path: path.into(), missing: table });
        }
    }
    Ok(())
}

/// Checks a store or backup file: SQLite's full integrity check, and that it is a herd store.
pub fn verify(path: &Path) -> Result<(), BackupError> {
    check(&open_read_only(path)?, path)
}

/// Makes `file`'s contents and its name in its directory durable.
fn sync(file: &Path) -> Result<(), BackupError> {
    File::open(file).and_then(|f| f.sync_all()).map_err(io("cannot sync", file))?;
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot sync directory", dir))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

/// Backs the store at `store` up to `to` (replacing it), consistent while an orchestrator
/// serves from it. See the module's documentation.
pub fn backup(store: &Path, to: &Path) -> Result<Written, BackupError> {
    let started = Instant::now();
    if !store.is_file() {
        return Err(BackupError::Io {
            what: "no store at",
            path: store.into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let partial = with_suffix(to, ".partial");
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("cannot remove", &partial)(e)),
        _ => {}
    }
    let src = open_read_only(store)?;
    let mut dst = Connection::open(&partial).map_err(|source| BackupError::Open { path: partial.clone(), source })?;
    let copied = copy(&src, &mut dst, store, to).and_then(|()| {
        // A backup is one file: no WAL beside it.
        dst.pragma_update(None, "journal_mode", "DELETE").map_err(|source| BackupError::Copy { from: store.into(), to: to.into(), source })?;
        check(&dst, to)
    });
    drop(dst);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    sync(&partial)?;
    std::fs::rename(&partial, to).map_err(io("cannot rename the backup to", to))?;
    sync(to)?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(Written { path: to.into(), bytes, took: started.elapsed() })
}

/// Replaces the store at `store` with the backup `from`, refusing while an orchestrator runs
/// with `data_dir`. Returns where the replaced store was moved (if there was one).
pub fn restore(from: &Path, store: &Path, data_dir: &Path) -> Result<Option<PathBuf>, BackupError> {
    let _lock = lock(data_dir)?;
    verify(from)?;
    let stamp = stamp(SystemTime::now());
    let mut aside = None;
    if store.exists() {
        let moved = with_suffix(store, &format!(".before-restore-{stamp}"));
        std::fs::rename(store, &moved).map_err(io("cannot move the current store aside to", &moved))?;
        // Its WAL and shared memory belong to it; a stale WAL beside the restored store would be
        // replayed into it.
        for side in ["-wal", "-shm"] {
            let file = with_suffix(store, side);
            if file.exists() {
                let to = with_suffix(&moved, side);
                std::fs::rename(&file, &to).map_err(io("cannot move the current store aside to", &to))?;
            }
        }
        aside = Some(moved);
    }
    let restoring = with_suffix(store, ".restoring");
    let _ = std::fs::remove_file(&restoring);
    {
        let src = open_read_only(from)?;
        let mut dst = Connection::open(&restoring).map_err(|source| BackupError::Open { path: restoring.clone(), source })?;
        copy(&src, &mut dst, from, store)?;
        check(&dst, &restoring)?;
    }
    sync(&restoring)?;
    std::fs::rename(&restoring, store).map_err(io("cannot rename the restored store to", store))?;
    sync(store)?;
    Ok(aside)
}

/// A UTC time as `YYYYMMDDTHHMMSS.mmmZ`: sorts as it runs, no `:` in a file name.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string().replace(['-', ':'], "")
}

/// Scheduled backups: every `every`, into `dir`, keeping the newest `keep`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

/// The backups in `dir` that [`run_schedule`] wrote, oldest first.
pub fn scheduled_backups(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("herd-") && n.ends_with(".db")))
        .collect();
    found.sort();
    Ok(found)
}

/// One scheduled backup, then the oldest beyond `keep` removed.
fn backup_once(store: &Path, schedule: &Schedule, now: SystemTime) -> Result<Written, BackupError> {
    std::fs::create_dir_all(&schedule.dir).map_err(io("cannot create the backup directory", &schedule.dir))?;
    let to = schedule.dir.join(format!("herd-{}.db", stamp(now)));
    let written = backup(store, &to)?;
    let all = scheduled_backups(&schedule.dir).map_err(io("cannot list the backup directory", &schedule.dir))?;
    for old in all.iter().take(all.len().saturating_sub(schedule.keep)) {
        std::fs::remove_file(old).map_err(io("cannot remove the old backup", old))?;
    }
    Ok(written)
}

/// Backs `store` up on `schedule` until `stop`: the first one at once, then every `every`.
/// A failed backup is logged and counted ([`crate::metrics`]), and the next one tried on time.
pub async fn run_schedule(store: PathBuf, schedule: Schedule, stop: CancellationToken) {
    let mut tick = tokio::time::interval(schedule.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let (store, schedule) = (store.clone(), schedule.clone());
        let done = tokio::task::spawn_blocking(move || backup_once(&store, &schedule, SystemTime::now())).await;
        match done {
            Ok(Ok(w)) => {
                crate::metrics::get().backup(true);
                info!(path = %w.path.display(), bytes = w.bytes, took = ?w.took, "scheduled backup written");
            }
            Ok(Err(e)) => {
                crate::metrics::get().backup(false);
                warn!(error = %e, source = ?std::error::Error::source(&e), "scheduled backup failed");
            }
            Err(e) => {
                crate::metrics::get().backup(false);
                warn!(error = %e, "scheduled backup failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(path: &Path, tenants: usize) -> rusqlite::Result<()> {
        let c = Connection::open(path)?;
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE tenants (name TEXT PRIMARY KEY); CREATE TABLE clusters (x); CREATE TABLE tokens (y);",
        )?;
        for n in 0..tenants {
            c.execute("INSERT INTO tenants VALUES (?1)", [format!("t{n}")])?;
        }
        Ok(())
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path).and_then(|c| c.query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))).unwrap_or(-1)
    }

    #[test]
    fn backup_restore_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("herd.db");
        store_with(&store, 3).unwrap();
        let to = dir.path().join("b.db");
        let w = backup(&store, &to).unwrap();
        assert!(w.bytes > 0 && !with_suffix(&to, ".partial").exists());
        assert_eq!(count(&to), 3);
        Connection::open(&store).unwrap().execute("INSERT INTO tenants VALUES ('later')", []).unwrap();
        assert_eq!(count(&store), 4);

        // Refused while the data directory is locked (an orchestrator runs).
        let held = lock(dir.path()).unwrap();
        assert!(matches!(restore(&to, &store, dir.path()), Err(BackupError::Running(_))));
        assert_eq!(count(&store), 4, "a refused restore changed the store");
        drop(held);

        let aside = restore(&to, &store, dir.path()).unwrap().unwrap();
        assert_eq!((count(&store), count(&aside)), (3, 4), "restored, and the replaced store kept");

        // Not a herd store, or not a database at all: refused before anything moves.
        let other = dir.path().join("other.db");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE tenants (name TEXT)").unwrap();
        assert!(matches!(restore(&other, &store, dir.path()), Err(BackupError::NotHerd { missing: "clusters", .. })));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        assert!(restore(&junk, &store, dir.path()).is_err());
        assert_eq!(count(&store), 3);
    }

    #[test]
    fn schedule_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("herd.db");
        store_with(&store, 1).unwrap();
        let schedule = Schedule { dir: dir.path().join("backups"), every: Duration::from_secs(1), keep: 2 };
        let mut names = Vec::new();
        let start = SystemTime::now();
        for n in 0..4 {
            names.push(backup_once(&store, &schedule, start + Duration::from_secs(n)).unwrap().path);
        }
        assert_eq!(scheduled_backups(&schedule.dir).unwrap(), names[2..].to_vec());
    }
}
