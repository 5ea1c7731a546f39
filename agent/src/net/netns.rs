//! Running code inside another network namespace. All of `net`'s `unsafe` lives here.
//!
//! A network namespace belongs to a *thread*, and a socket stays in the namespace of the thread
//! that opened it. So work for a container's namespace runs on a short-lived OS thread that
//! enters the namespace with `setns(2)`, does its work and exits: never on a tokio worker or a
//! `spawn_blocking` thread, which are reused and would carry the namespace to unrelated tasks.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Errors from opening or entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace file could not be opened (the process is gone, or no such namespace).
    #[error("opening network namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The namespace descriptor could not be duplicated for the worker thread.
    #[error("duplicating the descriptor of network namespace {path}")]
    Dup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No thread could be started to enter the namespace.
    #[error("starting a thread for network namespace {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `setns(2)` failed (not root, or the file is not a network namespace).
    #[error("entering network namespace {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The work panicked on the namespace thread.
    #[error("the work inside network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// An open handle on a network namespace; holding it keeps the namespace alive.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path` (e.g. `/run/netns/NAME` or `/proc/PID/ns/net`).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        match File::open(&path) {
            Ok(file) => Ok(Self { file, path }),
            Err(source) => Err(Error::Open { path, source }),
        }
    }

    /// Opens the network namespace of process `pid` (a container's init, from `docker inspect`).
    ///
    /// NB: the descriptor pins the namespace, so it stays valid even if the process exits later.
    pub fn of_pid(pid: u32) -> Result<Self, Error> {
        Self::open(format!("/proc/{pid}/ns/net"))
    }

    /// Where this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh OS thread that has entered this namespace, and returns its result.
    ///
    /// Sockets that `f` opens (netlink, TCP, ...) live in this namespace, and so do processes it
    /// spawns. Awaiting does not block the caller's runtime; `f` itself may block, and may build
    /// its own single-threaded runtime for async work.
    pub async fn run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let file = self.file.try_clone().map_err(|source| Error::Dup {
            path: self.path.clone(),
            source,
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("herd-netns".into())
            .spawn(move || {
                let result = enter(&file).map(|()| f());
                // A closed receiver means the caller stopped waiting: nothing is left to tell.
                let _ = tx.send(result);
            })
            .map_err(|source| Error::Spawn {
                path: self.path.clone(),
                source,
            })?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(Error::Enter {
                path: self.path.clone(),
                source,
            }),
            Err(_) => Err(Error::Panicked {
                path: self.path.clone(),
            }),
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Moves the calling thread into the network namespace `ns`.
fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: `setns` only reads the descriptor, which `ns` keeps open for the whole call. It
    // changes the network namespace of the calling thread alone (CLONE_NEWNET is per thread and
    // allowed in multi-threaded processes). The only caller is the thread `Netns::run` spawned,
    // which exits right after its closure, so no reused thread ever runs in the wrong namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn open_reports_the_path() {
        let err = Netns::open("/nonexistent/herd/netns").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/herd/netns"), "{err}");
    }

    // NB: entering even one's own namespace needs CAP_SYS_ADMIN; these fail when not root.
    #[tokio::test]
    async fn run_in_own_namespace_returns_the_value() {
        let ns = Netns::of_pid(std::process::id()).unwrap();
        assert_eq!(ns.run(|| 41 + 1).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn panics_on_the_thread_become_errors() {
        let ns = Netns::of_pid(std::process::id()).unwrap();
        let err = ns
            .run(|| -> u8 { panic!("boom (expected by this test)") })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Panicked { .. }), "{err}");
    }
}
