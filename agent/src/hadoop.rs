//! The agent's Hadoop duties.
//!
//! - **Config files.** Each instance's rendered config (from the orchestrator) is written to
//!   its own folder, `<data dir>/conf/<tenant>/<cluster>/<instance>/`, which is bind-mounted
//!   read-only at `/etc/hadoop/conf`. Files the daemon reads at start are written just before
//!   its container is (re)created; a change to them changes the container's config hash, so
//!   the container is recreated (the orchestrator releases such changes one instance at a
//!   time).
//! - **Live files** (include/exclude lists, the topology table) are rewritten in place when
//!   they change, and the instance's refresh commands (`hdfs dfsadmin -refreshNodes` in a
//!   NameNode) run in its container; the hash of what was written and refreshed without error
//!   is reported back as `live_hash`, and remembered in the folder across agent restarts.
//! - **Health.** The masters this host runs are read over HTTP from the host side (the
//!   NameNode's `/jmx`, the ResourceManager's `/ws/v1/cluster/*`) every few seconds by a
//!   background task, parsed by [`herd_hadoop::health`], and sent with their observed state.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_api::hadoop::{MasterHealth, NameNodeHealth, ResourceManagerHealth, ports};
use herd_api::names::InstanceRef;
use herd_api::wire::{ContainerState, DesiredContainer};
use herd_api::Role;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::runtime::{Container, Runtime};

/// Name of the file in an instance's config folder that remembers the applied live hash.
const LIVE_MARK: &str = ".herd-live-hash";
/// How often the masters' health is read.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long one health request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a refresh command in a master's container may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

/// Why config files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("refusing config file name `{0}`: not a plain file name")]
    BadName(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An instance's config folder under `root`.
pub fn conf_dir(root: &Path, i: &InstanceRef) -> PathBuf {
    root.join(&i.tenant).join(&i.cluster).join(&i.name)
}

/// Writes `files` into `dir`, each atomically (a temporary file renamed over the old one, so
/// a daemon reading it never sees half a file), world-readable (daemons run as other users).
pub fn write_files<T: std::fmt::Display>(dir: &Path, files: &BTreeMap<String, T>) -> Result<(), ConfError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, text) in files {
        if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
            return Err(ConfError::BadName(name.clone()));
        }
        let path = dir.join(name);
        let text = text.to_string();
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
        set_readable(&tmp).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// Live files and their refreshes, per instance.
pub struct Live {
    root: PathBuf,
    /// The live hash last written and refreshed without error, per instance.
    applied: Mutex<HashMap<InstanceRef, String>>,
}

impl Live {
    pub fn new(root: PathBuf) -> Self {
        Live { root, applied: Mutex::new(HashMap::new()) }
    }

    /// The live hash applied to `i`, from memory or, after a restart, from its folder.
    pub fn applied(&self, i: &InstanceRef) -> Option<String> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = applied.get(i) {
            return Some(h.clone());
        }
        let h = std::fs::read_to_string(conf_dir(&self.root, i).join(LIVE_MARK)).ok()?.trim().to_string();
        applied.insert(i.clone(), h.clone());
        Some(h)
    }

    fn remember(&self, i: &InstanceRef, hash: &str) {
        let dir = conf_dir(&self.root, i);
        if let Err(e) = std::fs::write(dir.join(LIVE_MARK), hash) {
            warn!(instance = %i, error = %e, "cannot remember the applied live files");
        }
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).insert(i.clone(), hash.to_string());
    }

    /// Writes changed live files and runs the refresh commands of running containers; an
    /// instance whose refresh fails is tried again next pass.
    pub async fn sync<R: Runtime>(&self, runtime: &R, desired: &[DesiredContainer], found: &[Container]) {
        for d in desired {
            let Some(config) = &d.hadoop else { continue };
            let want = config.live_hash();
            if self.applied(&d.instance).as_deref() == Some(want.as_str()) {
                continue;
            }
            let Some(c) = found.iter().find(|c| c.instance == d.instance) else { continue };
            let dir = conf_dir(&self.root, &d.instance);
            if let Err(e) = write_files(&dir, &config.live_files) {
                warn!(instance = %d.instance, error = %crate::error_chain(&e), "cannot write live config files");
                continue;
            }
            if c.state != ContainerState::Running {
                // It reads them when it starts.
                self.remember(&d.instance, &want);
                continue;
            }
            let mut ok = true;
            for cmd in &config.refresh {
                // The container runs tenant code: a refresh that never returns must not stall
                // the agent's loop.
                let ran = tokio::time::timeout(REFRESH_TIMEOUT, runtime.exec(&c.id, cmd)).await.unwrap_or_else(|_| {
                    Err(crate::runtime::RuntimeError::Call {
                        op: "exec in",
                        target: d.instance.to_string(),
                        message: format!("no answer within {REFRESH_TIMEOUT:?}"),
                    })
                });
                match ran {
                    Ok(out) if out.exit_code == 0 => info!(instance = %d.instance, command = %cmd.join(" "), "refreshed"),
                    Ok(out) => {
                        ok = false;
                        warn!(instance = %d.instance, command = %cmd.join(" "), exit_code = out.exit_code, output = %out.output.trim(), "refresh failed; retrying next pass");
                    }
                    Err(e) => {
                        ok = false;
                        warn!(instance = %d.instance, command = %cmd.join(" "), error = %e, "refresh failed; retrying next pass");
                    }
                }
                if !ok {
                    break;
                }
            }
            if ok {
                self.remember(&d.instance, &want);
            }
        }
    }
}

/// A master to read: its instance, role and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub instance: InstanceRef,
    pub role: Role,
    pub ip: Ipv4Addr,
}

/// The masters' health, read in the background.
#[derive(Clone)]
pub struct Probe {
    targets: Arc<Mutex<Vec<Target>>>,
    results: Arc<Mutex<HashMap<InstanceRef, MasterHealth>>>,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Self {
        Probe { targets: Arc::default(), results: Arc::default() }
    }

    /// Sets the masters to read: running NameNodes and ResourceManagers with an address.
    pub fn set_targets(&self, found: &[Container], ips: &HashMap<InstanceRef, Ipv4Addr>, roles: &HashMap<InstanceRef, Role>) {
        let targets: Vec<Target> = found
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter_map(|c| {
                let role = *roles.get(&c.instance)?;
                matches!(role, Role::Namenode | Role::Resourcemanager)
                    .then(|| Some(Target { instance: c.instance.clone(), role, ip: *ips.get(&c.instance)? }))
                    .flatten()
            })
            .collect();
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results.retain(|i, _| targets.iter().any(|t| &t.instance == i));
        *self.targets.lock().unwrap_or_else(|p| p.into_inner()) = targets;
    }

    /// The last health read from `i`, if it is a master this host runs.
    pub fn health(&self, i: &InstanceRef) -> Option<MasterHealth> {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).get(i).cloned()
    }

    /// Reads every target every few seconds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder().timeout(PROBE_TIMEOUT).no_proxy().build() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot build the health client; masters' health will not be read");
                return;
            }
        };
        loop {
            let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let reads = targets.iter().map(|t| read(&client, t));
            let health = futures::future::join_all(reads).await;
            {
                let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
                for (t, h) in targets.iter().zip(health) {
                    results.insert(t.instance.clone(), h);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Queries of the NameNode's `/jmx` herd reads.
const NAMENODE_BEANS: [&str; 3] = [
    "Hadoop:service=NameNode,name=NameNodeInfo",
    "Hadoop:service=NameNode,name=FSNamesystemState",
    "Hadoop:service=NameNode,name=FSNamesystem",
];

async fn read(client: &reqwest::Client, t: &Target) -> MasterHealth {
    match t.role {
        Role::Namenode => {
            let base = format!("http://{}:{}/jmx?qry=", t.ip, ports::NAMENODE_HTTP);
            let answers = futures::future::join_all(NAMENODE_BEANS.iter().map(|q| get(client, format!("{base}{q}")))).await;
            let health = match answers.into_iter().collect::<Result<Vec<String>, String>>() {
                Ok(bodies) => {
                    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
                    herd_hadoop::health::namenode::parse(&refs)
                }
                Err(e) => NameNodeHealth { error: Some(e), ..Default::default() },
            };
            debug!(instance = %t.instance, error = ?health.error, "read NameNode health");
            MasterHealth::Namenode(health)
        }
        _ => {
            let base = format!("http://{}:{}/ws/v1/cluster", t.ip, ports::RM_HTTP);
            let (info, metrics, nodes) = futures::join!(
                get(client, format!("{base}/info")),
                get(client, format!("{base}/metrics")),
                get(client, format!("{base}/nodes")),
            );
            let health = match (metrics, nodes) {
                (Ok(m), Ok(n)) => herd_hadoop::health::resourcemanager::parse(info.ok().as_deref(), &m, &n),
                (Err(e), _) | (_, Err(e)) => ResourceManagerHealth { error: Some(e), ..Default::default() },
            };
            debug!(instance = %t.instance, error = ?health.error, "read ResourceManager health");
            MasterHealth::Resourcemanager(health)
        }
    }
}

/// A body read in full (at most 8 MiB), or why not, in words for a condition. The master runs
/// tenant code: an answer that would grow past the bound is dropped as it arrives, never
/// buffered whole.
async fn get(client: &reqwest::Client, url: String) -> Result<String, String> {
    const MAX: usize = 8 << 20;
    let too_large = || format!("GET {url}: answer larger than {MAX} bytes");
    let mut resp = client.get(&url).send().await.map_err(|e| format!("GET {url}: {}", crate::error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    if resp.content_length().is_some_and(|n| n > MAX as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {}", crate::error_chain(&e)))? {
        if body.len() + chunk.len() > MAX {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_files_atomically_and_refuses_paths() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = BTreeMap::from([("core-site.xml".to_string(), "<configuration/>".to_string())]);
        write_files(dir.path(), &files).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(dir.path().join("core-site.xml")).ok().as_deref(), Some("<configuration/>"));
        for bad in ["../x", "a/b", ".hidden", ""] {
            let files = BTreeMap::from([(bad.to_string(), String::new())]);
            assert!(matches!(write_files(dir.path(), &files), Err(ConfError::BadName(_))), "{bad}");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["core-site.xml"], "no temporary file left behind");
    }
}
