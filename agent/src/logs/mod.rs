//! Per-instance logs (DESIGN.md, Logs).
//!
//! ```text
//! <log root>/<tenant>/<cluster>/<instance>/
//!     hadoop/   bind-mounted at /hadoop/logs: HADOOP_LOG_DIR, YARN's container logs (userlogs/)
//!     stdio/    the container's stdout and stderr as captured by the agent, not mounted, so
//!               the container cannot touch it: current.log, current.log.1, ...
//! ```
//!
//! # Layout
//! - [`record`] (in `herd_api`, as the CLI reads it too): the one-line record format.
//! - [`rotate`]: the size-rotated writer; [`cursor`]: where to resume, from the files alone.
//! - [`capture`]: following one container through a [`capture::Source`] ([`docker`]: Docker's
//!   logs API) into its files; [`status`]: write failures (a full disk) for the heartbeat.
//! - [`read`]: reading files back (tail, since, follow across rotation); [`serve`]: the
//!   agent's HTTP endpoint the orchestrator proxies `herd logs` to.
//! - [`syslog`]: optional RFC 5424 forwarding.
//! - [`Logs`] (here): one capture task per instance, kept in step with the containers found.

pub mod capture;
pub mod cursor;
pub mod docker;
pub mod read;
pub mod rotate;
pub mod serve;
pub mod status;
pub mod syslog;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use herd_api::record;

use herd_api::names::InstanceRef;
use herd_api::wire::{ContainerState, DesiredContainer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use crate::runtime::Container;
use capture::{Context, Source, Target};
use rotate::Rotation;
use status::Status;

/// An instance's folder under the log root.
pub fn instance_dir(root: &Path, i: &InstanceRef) -> PathBuf {
    root.join(&i.tenant).join(&i.cluster).join(&i.name)
}

/// Where the agent writes an instance's captured stdout and stderr.
pub fn stdio_dir(root: &Path, i: &InstanceRef) -> PathBuf {
    instance_dir(root, i).join("stdio")
}

/// The host folder bind-mounted as the daemon's own log directory.
pub fn hadoop_dir(root: &Path, i: &InstanceRef) -> PathBuf {
    instance_dir(root, i).join("hadoop")
}

/// How the agent captures logs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `<data dir>/logs`.
    pub root: PathBuf,
    pub rotation: Rotation,
    pub syslog: Option<syslog::Target>,
    pub host_id: String,
}

struct Task {
    container: String,
    started_at: Option<String>,
    handle: JoinHandle<()>,
}

/// The capture tasks of one host; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    ctx: Context,
    /// A std mutex: held only to look at and start tasks, never across an await.
    tasks: Mutex<HashMap<InstanceRef, Task>>,
    /// Each instance's pool, from the last desired set (for syslog's structured data).
    pools: Mutex<HashMap<InstanceRef, String>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Logs {
    /// Captures through `source`; every task stops at `shutdown`, having made its records durable.
    pub fn new(opts: Options, source: Arc<dyn Source>, shutdown: CancellationToken) -> Self {
        let forward = opts.syslog.map(|t| syslog::Forwarder::start(t, opts.host_id.clone(), shutdown.clone()));
        let ctx = Context { source, rotation: opts.rotation, status: Arc::new(Status::default()), forward, retry: Duration::from_secs(2) };
        let inner = Inner { root: opts.root, ctx, tasks: Mutex::new(HashMap::new()), pools: Mutex::new(HashMap::new()), shutdown, tracker: TaskTracker::new() };
        Self { inner: Arc::new(inner) }
    }

    /// Notes each desired instance's pool.
    pub fn remember_pools(&self, desired: &[DesiredContainer]) {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.clear();
        pools.extend(desired.iter().map(|d| (d.instance.clone(), d.role.as_str().to_string())));
    }

    /// Starts capturing every container found that is not captured yet: new containers, a
    /// container that started again, the new container of a recreated instance (once the
    /// old one's capture has drained). Needs no orchestrator: a restarted agent resumes
    /// capture even while the orchestrator is unreachable.
    pub fn sync(&self, found: &[Container]) {
        let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut best: HashMap<&InstanceRef, &Container> = HashMap::new();
        for c in found {
            let slot = best.entry(&c.instance).or_insert(c);
            if c.state == ContainerState::Running && slot.state != ContainerState::Running {
                *slot = c;
            }
        }
        let inner = &self.inner;
        let mut tasks = inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|i, t| !t.handle.is_finished() || best.contains_key(i));
        for (instance, c) in best {
            let start = match tasks.get(instance) {
                None => true,
                Some(t) if !t.handle.is_finished() => false,
                Some(t) => t.container != c.id || c.state == ContainerState::Running || t.started_at != c.started_at,
            };
            if !start || inner.shutdown.is_cancelled() {
                continue;
            }
            let target = Target {
                instance: instance.clone(),
                pool: pools.get(instance).cloned().unwrap_or_else(|| "-".into()),
                container: c.id.clone(),
                dir: stdio_dir(&inner.root, instance),
            };
            let span = info_span!("capture", instance = %instance, container = %c.id);
            let handle = inner.tracker.spawn(capture::run(target, inner.ctx.clone(), inner.shutdown.clone()).instrument(span));
            tasks.insert(instance.clone(), Task { container: c.id.clone(), started_at: c.started_at.clone(), handle });
        }
    }

    /// Conditions to report on the host's status (e.g. a full log disk).
    pub fn conditions(&self) -> Vec<String> {
        let mut out = self.inner.ctx.status.conditions();
        // The agent's own log lines: lost ones are counted, never fatal.
        out.extend(herd_api::daemon_log::condition());
        out
    }

    /// The log root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Files kept per instance.
    pub fn rotation(&self) -> Rotation {
        self.inner.ctx.rotation
    }

    /// Waits for every capture to stop after shutdown.
    pub async fn drain(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::capture::{Chunk, SourceError};
    use futures::StreamExt;
    use futures::stream::BoxStream;
    use herd_api::Role;

    /// Records which containers are followed; their output ends at once, or never.
    struct Fake {
        calls: Mutex<Vec<String>>,
        endless: bool,
    }

    impl Source for Fake {
        fn follow(&self, container: &str, _since: i64) -> BoxStream<'static, Result<Chunk, SourceError>> {
            self.calls.lock().unwrap().push(container.to_string());
            if self.endless { futures::stream::pending().boxed() } else { futures::stream::empty().boxed() }
        }
    }

    fn container(id: &str, state: ContainerState, started: &str) -> Container {
        Container {
            id: id.into(),
            instance: InstanceRef::new("t", "c", Role::Datanode, 0),
            spec_hash: String::new(),
            config_hash: None,
            state,
            started_at: Some(started.into()),
            exit_code: None,
        }
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    fn logs(dir: &Path, endless: bool) -> (Logs, Arc<Fake>) {
        let fake = Arc::new(Fake { calls: Mutex::new(vec![]), endless });
        let opts = Options { root: dir.into(), rotation: Rotation::default(), syslog: None, host_id: "h".into() };
        (Logs::new(opts, fake.clone(), CancellationToken::new()), fake)
    }

    #[tokio::test]
    async fn a_stopped_container_is_captured_once_and_again_when_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, fake) = logs(dir.path(), false);
        let calls = || fake.calls.lock().unwrap().clone();
        logs.sync(&[container("c1", ContainerState::Exited, "s1")]);
        settle().await;
        logs.sync(&[container("c1", ContainerState::Exited, "s1")]);
        settle().await;
        assert_eq!(calls(), ["c1"], "an exited container's output is read once");
        logs.sync(&[container("c1", ContainerState::Running, "s2")]);
        settle().await;
        assert_eq!(calls(), ["c1", "c1"], "started again: followed again");
        logs.sync(&[container("c2", ContainerState::Running, "s3")]);
        settle().await;
        assert_eq!(calls(), ["c1", "c1", "c2"], "recreated: the new container is followed");
        assert!(dir.path().join("t/c/datanode-0/stdio/current.log").exists());
    }

    #[tokio::test]
    async fn a_running_capture_is_not_doubled_and_a_new_container_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, fake) = logs(dir.path(), true);
        for _ in 0..3 {
            logs.sync(&[container("c1", ContainerState::Running, "s1")]);
            settle().await;
        }
        logs.sync(&[container("c2", ContainerState::Running, "s2")]);
        settle().await;
        assert_eq!(*fake.calls.lock().unwrap(), ["c1"], "one writer per instance folder");
    }
}
