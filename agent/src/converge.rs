//! Converging a host: a pure [`plan`] from the desired set and the containers found, and an
//! executor that applies it through a [`Runtime`], a few calls at a time.
//!
//! ```text
//! desired (orchestrator) ─┐
//!                         ├─► plan ─► [Create | Start | Recreate | Remove] ─► runtime
//! found (runtime.list) ───┘
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use herd_api::names::InstanceRef;
use herd_api::hadoop::HadoopConfig;
use herd_api::wire::{ContainerState, DesiredContainer, Observed};
use tracing::{info, warn};

use crate::runtime::{Container, ContainerConfig, Runtime, RuntimeError, labels};

/// Where a container's data disks and logs are on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    pub host_id: String,
    /// Root of per-instance log folders: `<logs>/<tenant>/<cluster>/<instance>/` (see [`crate::logs`]).
    pub logs: PathBuf,
    /// Data disks; a DataNode gets one directory on each.
    pub data_disks: Vec<PathBuf>,
    /// Root of per-instance `/etc/hosts` files (`<root>/<tenant>/<cluster>/<instance>`), when
    /// the agent networks its containers; each is bind-mounted read-only.
    pub hosts_files: Option<PathBuf>,
    /// Root of per-instance Hadoop config folders (see [`crate::hadoop`]), each mounted
    /// read-only at `/etc/hadoop/conf`.
    pub conf: PathBuf,
}

/// In-container paths, fixed so images and rendered Hadoop config agree on them.
pub const LOG_DIR: &str = "/hadoop/logs";
pub const DATA_DIR_PREFIX: &str = "/hadoop/dfs/data";

impl Layout {
    fn instance_dir(root: &Path, i: &InstanceRef) -> PathBuf {
        root.join(&i.tenant).join(&i.cluster).join(&i.name)
    }

    /// Host directories to create and bind-mount for `d`: (host path, container path).
    pub fn mounts(&self, d: &DesiredContainer) -> Vec<(PathBuf, String)> {
        // Only the `hadoop/` subfolder: the captured stdio next to it stays out of the container's reach.
        let mut out = vec![(crate::logs::hadoop_dir(&self.logs, &d.instance), LOG_DIR.to_string())];
        if d.role.has_data() {
            for (n, disk) in self.data_disks.iter().enumerate() {
                out.push((Self::instance_dir(&disk.join("herd"), &d.instance), format!("{DATA_DIR_PREFIX}{n}")));
            }
        }
        out
    }

    /// The full container config for a desired instance.
    pub fn container_config(&self, d: &DesiredContainer) -> ContainerConfig {
        self.container_config_with(d, d.config_hash())
    }

    /// The container config for `d` as if its Hadoop config files had hash `config_hash`
    /// (what a container holding its config during a rollout runs with).
    pub fn container_config_with(&self, d: &DesiredContainer, config_hash: Option<String>) -> ContainerConfig {
        let mounts = self.mounts(d);
        let mut env = d.env.clone();
        env.insert("HADOOP_LOG_DIR".into(), LOG_DIR.into());
        // YARN's own logs and a NodeManager's container logs (`${yarn.log.dir}/userlogs`).
        env.insert("YARN_LOG_DIR".into(), LOG_DIR.into());
        if d.role.has_data() {
            let dirs: Vec<&str> = mounts.iter().skip(1).map(|(_, c)| c.as_str()).collect();
            env.insert("HERD_DATA_DIRS".into(), dirs.join(","));
        }
        let mut labels = BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::HOST.to_string(), self.host_id.clone()),
            (labels::TENANT.to_string(), d.instance.tenant.clone()),
            (labels::CLUSTER.to_string(), d.instance.cluster.clone()),
            (labels::INSTANCE.to_string(), d.instance.name.clone()),
            (labels::POOL.to_string(), d.role.as_str().to_string()),
        ]);
        if d.placement > 0 {
            // In the hashed config: a container from another placement is replaced, not adopted.
            labels.insert(labels::PLACEMENT.to_string(), d.placement.to_string());
        }
        let mut config = ContainerConfig {
            name: d.instance.container_name(),
            hostname: d.instance.hostname(),
            image: d.image.clone(),
            cmd: d.command.clone(),
            env,
            labels: labels.clone(),
            nano_cpus: (d.cpu.0 as i64).saturating_mul(1_000_000),
            memory_bytes: d.memory.0 as i64,
            binds: mounts.iter().map(|(h, c)| format!("{}:{c}", h.display())).collect(),
            cap_add: d.cap_add.clone(),
        };
        if let Some(root) = &self.hosts_files {
            let file = crate::net::hosts::path(root, &d.instance);
            config.binds.push(format!("{}:/etc/hosts:ro", file.display()));
        }
        if d.hadoop.is_some() {
            let dir = crate::hadoop::conf_dir(&self.conf, &d.instance);
            config.binds.push(format!("{}:{}:ro", dir.display(), herd_api::hadoop::CONF_DIR));
        }
        if let Some(hash) = config_hash {
            // In the hashed config too: a new config recreates the container.
            config.labels.insert(labels::CONFIG_HASH.to_string(), hash.clone());
            labels.insert(labels::CONFIG_HASH.to_string(), hash);
        }
        labels.insert(labels::SPEC_HASH.to_string(), spec_hash(&config));
        config.labels = labels;
        config
    }
}

/// A stable hash of a container config ([`herd_api::hash::stable_hash`]): a changed hash
/// recreates the container.
pub fn spec_hash(c: &ContainerConfig) -> String {
    herd_api::hash::stable_hash(c)
}

/// The container configs for `desired`. A container told to hold during a rollout is left
/// exactly as it runs (its config, image and size): its desired config carries the hashes
/// of the container found, so [`plan`] leaves it alone.
pub fn configs(layout: &Layout, desired: &[DesiredContainer], found: &[Container]) -> Vec<(InstanceRef, ContainerConfig)> {
    desired
        .iter()
        .map(|d| {
            let held = d.hold_config.then(|| found.iter().find(|c| c.instance == d.instance && c.config_hash.is_some())).flatten();
            let config = match held {
                Some(c) => {
                    let mut config = layout.container_config_with(d, c.config_hash.clone());
                    config.labels.insert(labels::SPEC_HASH.to_string(), c.spec_hash.clone());
                    config
                }
                None => layout.container_config(d),
            };
            (d.instance.clone(), config)
        })
        .collect()
}

/// One step towards the desired set.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Box<ContainerConfig>, InstanceRef),
    /// Start a stopped container that is otherwise as desired.
    Start(String, InstanceRef),
    /// Its config changed: remove the old container, then create the new one.
    Recreate(String, Box<ContainerConfig>, InstanceRef),
    /// Not desired (or a duplicate): stop and remove.
    Remove(String, InstanceRef),
}

/// Plans the actions that turn `found` into `desired` (configs with their hash label set).
/// Containers already right are left alone: that is how an agent restart adopts them.
pub fn plan(desired: &[(InstanceRef, ContainerConfig)], found: &[Container]) -> Vec<Action> {
    let mut by_instance: HashMap<&InstanceRef, Vec<&Container>> = HashMap::new();
    for c in found {
        by_instance.entry(&c.instance).or_default().push(c);
    }
    let mut actions = Vec::new();
    for (instance, config) in desired {
        let hash = config.labels.get(labels::SPEC_HASH).cloned().unwrap_or_default();
        let mut mine = by_instance.remove(instance).unwrap_or_default();
        // Keep the best match: right config first, then running.
        mine.sort_by_key(|c| (c.spec_hash != hash, c.state != ContainerState::Running));
        let mut rest = mine.into_iter();
        match rest.next() {
            None => actions.push(Action::Create(Box::new(config.clone()), instance.clone())),
            Some(c) if c.spec_hash != hash => {
                actions.push(Action::Recreate(c.id.clone(), Box::new(config.clone()), instance.clone()))
            }
            Some(c) if matches!(c.state, ContainerState::Created | ContainerState::Exited) => {
                actions.push(Action::Start(c.id.clone(), instance.clone()))
            }
            Some(_) => {}
        }
        actions.extend(rest.map(|c| Action::Remove(c.id.clone(), c.instance.clone())));
    }
    let mut undesired: Vec<&Container> = by_instance.into_values().flatten().collect();
    undesired.sort_by(|a, b| a.instance.cmp(&b.instance));
    actions.extend(undesired.into_iter().map(|c| Action::Remove(c.id.clone(), c.instance.clone())));
    actions
}

/// How many runtime calls run at once.
const PARALLEL: usize = 16;

/// Applies `actions`; returns the error per instance that could not be converged.
pub async fn execute<R: Runtime>(
    runtime: &R,
    pulls: &crate::pull::Pulls,
    layout: &Layout,
    desired: &[DesiredContainer],
    actions: Vec<Action>,
) -> HashMap<InstanceRef, String> {
    let mounts: HashMap<&InstanceRef, Vec<(PathBuf, String)>> =
        desired.iter().map(|d| (&d.instance, layout.mounts(d))).collect();
    let hadoop: HashMap<&InstanceRef, &HadoopConfig> = desired.iter().filter_map(|d| Some((&d.instance, d.hadoop.as_deref()?))).collect();
    // Fencing: what is no longer this host's goes first, before anything is created or
    // started (an instance moved away while this host was lost must never run twice).
    let (removes, rest): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| matches!(a, Action::Remove(..)));
    let run = |batch: Vec<Action>| stream::iter(batch)
        .map(|action| {
            let (mounts, hadoop) = (&mounts, &hadoop);
            async move {
                let prepare = |instance: &InstanceRef| -> Result<(), RuntimeError> {
                    let Some(h) = hadoop.get(instance) else { return Ok(()) };
                    let dir = crate::hadoop::conf_dir(&layout.conf, instance);
                    let mut files = h.files.clone();
                    files.extend(h.live_files.iter().map(|(k, v)| (k.clone(), herd_api::hadoop::Text::from(v.as_str()))));
                    crate::hadoop::write_files(&dir, &files).map_err(|e| RuntimeError::Call {
                        op: "write Hadoop config for",
                        target: instance.to_string(),
                        message: crate::error_chain(&e),
                    })
                };
                match action {
                    Action::Create(config, instance) => {
                        let r = match prepare(&instance) {
                            Ok(()) => create(runtime, &config, mounts.get(&instance)).await,
                            Err(e) => Err(e),
                        };
                        (instance, pulled(runtime, pulls, r))
                    }
                    Action::Start(id, instance) => {
                        info!(instance = %instance, container = %id, "starting stopped container");
                        (instance, runtime.start(&id).await)
                    }
                    Action::Recreate(id, config, instance) => {
                        info!(instance = %instance, container = %id, "config changed, recreating");
                        let r = match runtime.remove(&id).await.and_then(|()| prepare(&instance)) {
                            Ok(()) => create(runtime, &config, mounts.get(&instance)).await,
                            Err(e) => Err(e),
                        };
                        (instance, pulled(runtime, pulls, r))
                    }
                    Action::Remove(id, instance) => {
                        info!(instance = %instance, container = %id, "removing");
                        (instance, runtime.remove(&id).await)
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<(InstanceRef, Result<(), RuntimeError>)>>();
    let mut results = run(removes).await;
    results.extend(run(rest).await);
    let mut errors = HashMap::new();
    for (instance, r) in results {
        if let Err(e) = r {
            warn!(instance = %instance, error = %e, "converge failed");
            errors.insert(instance, e.to_string());
        }
    }
    errors
}

/// A create that found its image missing starts (or reports) the image's pull instead.
fn pulled<R: Runtime>(runtime: &R, pulls: &crate::pull::Pulls, r: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match r {
        Err(RuntimeError::ImageMissing { image }) => Err(RuntimeError::Pull(pulls.missing(runtime, &image))),
        other => other,
    }
}

async fn create<R: Runtime>(runtime: &R, config: &ContainerConfig, mounts: Option<&Vec<(PathBuf, String)>>) -> Result<(), RuntimeError> {
    for (host_path, _) in mounts.into_iter().flatten() {
        std::fs::create_dir_all(host_path).map_err(|e| RuntimeError::Call {
            op: "create directory",
            target: host_path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let id = runtime.create_and_start(config).await?;
    info!(container = %config.name, id = %id, "created and started");
    Ok(())
}

/// What to report to the orchestrator: every container found, plus desired instances that
/// could not be created, as `failed` with the reason.
pub fn observed(found: &[Container], errors: &HashMap<InstanceRef, String>, ips: &HashMap<InstanceRef, Ipv4Addr>) -> Vec<Observed> {
    let mut out: Vec<Observed> = found
        .iter()
        .map(|c| Observed {
            instance: c.instance.clone(),
            container_id: c.id.clone(),
            state: c.state,
            started_at: c.started_at.clone(),
            exit_code: c.exit_code,
            error: errors.get(&c.instance).cloned(),
            ip: ips.get(&c.instance).copied().filter(|_| c.state == ContainerState::Running),
            config_hash: c.config_hash.clone(),
            live_hash: None,
            hadoop: None,
        })
        .collect();
    for (instance, error) in errors {
        if !found.iter().any(|c| &c.instance == instance) {
            out.push(Observed {
                instance: instance.clone(),
                container_id: String::new(),
                state: ContainerState::Failed,
                started_at: None,
                exit_code: None,
                error: Some(error.clone()),
                ip: None,
                config_hash: None,
                live_hash: None,
                hadoop: None,
            });
        }
    }
    // NB: in one order (Docker lists containers in any): the same report is then the same
    // bytes, which the orchestrator takes again without parsing them.
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::Role;
    use herd_api::quantity::{Cpu, Memory};

    fn layout() -> Layout {
        Layout { host_id: "h1".into(), logs: "/l".into(), data_disks: vec!["/d0".into(), "/d1".into()], hosts_files: None, conf: "/c".into() }
    }

    fn desired(role: Role, n: u32, memory: u64) -> DesiredContainer {
        DesiredContainer::plain(InstanceRef::new("t", "c", role, n), role, "img", Cpu(500), Memory(memory))
    }

    fn found(d: &DesiredContainer, id: &str, state: ContainerState, hash: Option<&str>) -> Container {
        let config = layout().container_config(d);
        Container {
            id: id.into(),
            instance: d.instance.clone(),
            spec_hash: hash.map(String::from).unwrap_or_else(|| config.labels[labels::SPEC_HASH].clone()),
            config_hash: config.labels.get(labels::CONFIG_HASH).cloned(),
            state,
            started_at: None,
            exit_code: None,
        }
    }

    #[test]
    fn a_held_config_keeps_its_container_and_a_released_one_recreates_it() {
        let mut d = desired(Role::Datanode, 0, 1 << 30);
        let config = |v: &str| herd_api::hadoop::HadoopConfig {
            files: [("hdfs-site.xml".to_string(), v.into())].into(),
            ..Default::default()
        };
        d.hadoop = Some(config("old").into());
        let running = found(&d, "c1", ContainerState::Running, None);
        d.hadoop = Some(config("new").into());
        let released = configs(&layout(), std::slice::from_ref(&d), std::slice::from_ref(&running));
        assert_eq!(kinds(&plan(&released, std::slice::from_ref(&running))), ["recreate c1"]);
        let bind = format!("/c/t/c/datanode-0:{}:ro", herd_api::hadoop::CONF_DIR);
        assert!(released[0].1.binds.contains(&bind), "binds: {:?}", released[0].1.binds);
        d.hold_config = true;
        let held = configs(&layout(), std::slice::from_ref(&d), std::slice::from_ref(&running));
        assert!(plan(&held, std::slice::from_ref(&running)).is_empty(), "held config recreated the container");

        // A resize is held too: the container keeps its size until its turn.
        d.rollout_hash = Some("resized".into());
        d.memory = Memory(2 << 30);
        d.image = "img:2".into();
        let held = configs(&layout(), std::slice::from_ref(&d), std::slice::from_ref(&running));
        assert!(plan(&held, std::slice::from_ref(&running)).is_empty(), "held resize recreated the container");
        d.hold_config = false;
        let released = configs(&layout(), std::slice::from_ref(&d), std::slice::from_ref(&running));
        assert_eq!(kinds(&plan(&released, std::slice::from_ref(&running))), ["recreate c1"]);
        assert_eq!(released[0].1.labels.get(labels::CONFIG_HASH).map(String::as_str), Some("resized"), "labelled with the rollout hash");
        assert_eq!(released[0].1.memory_bytes, 2 << 30);
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Create(_, i) => format!("create {}", i.name),
                Action::Start(id, _) => format!("start {id}"),
                Action::Recreate(id, _, _) => format!("recreate {id}"),
                Action::Remove(id, _) => format!("remove {id}"),
            })
            .collect()
    }

    #[test]
    fn plan_table() {
        let dn0 = desired(Role::Datanode, 0, 1 << 30);
        let dn1 = desired(Role::Datanode, 1, 1 << 30);
        let dn0_bigger = desired(Role::Datanode, 0, 2 << 30);
        let want = |ds: &[&DesiredContainer]| -> Vec<(InstanceRef, ContainerConfig)> {
            ds.iter().map(|d| (d.instance.clone(), layout().container_config(d))).collect()
        };
        type Case<'a> = (&'a str, Vec<(InstanceRef, ContainerConfig)>, Vec<Container>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            ("nothing found: create all", want(&[&dn0, &dn1]), vec![], vec!["create datanode-0", "create datanode-1"]),
            ("running and right: adopt, no action", want(&[&dn0]), vec![found(&dn0, "a", ContainerState::Running, None)], vec![]),
            ("exited: start it", want(&[&dn0]), vec![found(&dn0, "a", ContainerState::Exited, None)], vec!["start a"]),
            ("restarting: leave it to Docker", want(&[&dn0]), vec![found(&dn0, "a", ContainerState::Restarting, None)], vec![]),
            ("config changed: recreate", want(&[&dn0_bigger]), vec![found(&dn0, "a", ContainerState::Running, None)], vec!["recreate a"]),
            ("not desired: remove", want(&[]), vec![found(&dn0, "a", ContainerState::Running, None)], vec!["remove a"]),
            (
                "duplicate: keep the running one",
                want(&[&dn0]),
                vec![found(&dn0, "a", ContainerState::Exited, None), found(&dn0, "b", ContainerState::Running, None)],
                vec!["remove a"],
            ),
        ];
        for (name, desired, found, expect) in cases {
            assert_eq!(kinds(&plan(&desired, &found)), expect, "{name}");
        }
    }

    #[test]
    fn datanode_gets_a_dir_on_every_disk_and_a_log_dir() {
        let d = desired(Role::Datanode, 3, 1 << 30);
        let c = layout().container_config(&d);
        assert_eq!(c.binds, ["/l/t/c/datanode-3/hadoop:/hadoop/logs", "/d0/herd/t/c/datanode-3:/hadoop/dfs/data0", "/d1/herd/t/c/datanode-3:/hadoop/dfs/data1"]);
        assert_eq!(c.env["HERD_DATA_DIRS"], "/hadoop/dfs/data0,/hadoop/dfs/data1");
        assert_eq!(c.nano_cpus, 500_000_000);
        let nm = layout().container_config(&desired(Role::Nodemanager, 0, 1 << 30));
        assert_eq!(nm.binds, ["/l/t/c/nodemanager-0/hadoop:/hadoop/logs"]);
        assert_eq!(nm.env["YARN_LOG_DIR"], "/hadoop/logs");
        assert!(!nm.env.contains_key("HERD_DATA_DIRS"));
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = layout().container_config(&desired(Role::Datanode, 0, 1 << 30));
        let b = layout().container_config(&desired(Role::Datanode, 0, 1 << 30));
        let c = layout().container_config(&desired(Role::Datanode, 0, 2 << 30));
        assert_eq!(a.labels[labels::SPEC_HASH], b.labels[labels::SPEC_HASH]);
        assert_ne!(a.labels[labels::SPEC_HASH], c.labels[labels::SPEC_HASH]);
    }

    #[test]
    fn failed_creates_are_reported() {
        let errors = HashMap::from([(InstanceRef::new("t", "c", Role::Datanode, 0), "image x is not on this host".to_string())]);
        let o = observed(&[], &errors, &HashMap::new());
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].state, ContainerState::Failed);
    }
}
