//! The one Hadoop config renderer: a cluster's spec, members and placements in; one
//! instance's files out. Pure (no I/O), deterministic (sorted keys and lines), so a changed
//! hash means a changed config. See [`render`].
//!
//! # Layout
//! - [`site`]: the keys herd sets in each `*-site.xml`, by role.
//! - [`xml`]: Hadoop's XML format and its escaping.
//! - [`topology`]: the topology table and the include/exclude host lists.
//! - [`paths`]: where files and data folders are inside the container.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use herd_api::hadoop::{ConfigFile, HadoopConfig, Text, daemon_heap};
use herd_api::hash::stable_hash;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::{ClusterSpec, Role};

pub mod site;
pub mod topology;
pub mod xml;

#[cfg(test)]
mod defaults_test;
#[cfg(test)]
mod tests;

/// Paths inside the container; the image (`images/hadoop/entrypoint.sh`) agrees on them.
pub mod paths {
    /// The topology table, a live file.
    pub const TOPOLOGY_TABLE: &str = "/etc/hadoop/conf/topology.table";
    /// HDFS include list (empty: every DataNode may join).
    pub const DFS_HOSTS: &str = "/etc/hadoop/conf/dfs.hosts";
    /// HDFS exclude list: DataNodes being decommissioned.
    pub const DFS_EXCLUDE: &str = "/etc/hadoop/conf/dfs.exclude";
    /// YARN include list (empty: every NodeManager may join).
    pub const YARN_INCLUDE: &str = "/etc/hadoop/conf/yarn.include";
    /// YARN exclude list: NodeManagers being drained.
    pub const YARN_EXCLUDE: &str = "/etc/hadoop/conf/yarn.exclude";
    /// Where the agent mounts the `n`th data disk's folder.
    pub const DATA_DIR_PREFIX: &str = "/hadoop/dfs/data";

    /// `dfs.datanode.data.dir`: every data disk (`file:///hadoop/dfs/data0,...`), or
    /// `file:///hadoop/dfs/data` in the container's own storage when there are none.
    pub fn data_dirs(count: usize) -> String {
        if count == 0 {
            return format!("file://{DATA_DIR_PREFIX}");
        }
        (0..count).map(|n| format!("file://{DATA_DIR_PREFIX}{n}")).collect::<Vec<_>>().join(",")
    }

    /// `dfs.namenode.name.dir`: `name` on the first data disk, else in the container.
    pub fn name_dir(data_dirs: usize) -> String {
        if data_dirs == 0 { "file:///hadoop/dfs/name".into() } else { format!("file://{DATA_DIR_PREFIX}0/name") }
    }
}

/// One instance of the cluster, where it is placed and what its host gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub instance: InstanceRef,
    pub role: Role,
    /// The host it is placed on; `None` while pending.
    pub host: Option<String>,
    /// That host's rack label (`--rack`), if any.
    pub rack: Option<String>,
    /// Its container address, once observed.
    pub ip: Option<Ipv4Addr>,
    /// How many data folders the agent mounts (`/hadoop/dfs/data0` ..): one per data disk
    /// of its host, for roles that keep data.
    pub data_dirs: usize,
    pub cpu: Cpu,
    pub memory: Memory,
}

impl Member {
    /// Whether `other` renders the same worker (DataNode or NodeManager) config: all but the
    /// container address, which only the masters' topology table names. Memos of workers'
    /// configs compare with this, or every report of a new address would render again.
    pub fn same_worker_config(&self, other: &Member) -> bool {
        let Member { instance, role, host, rack, ip: _, data_dirs, cpu, memory } = self;
        (instance, role, host, rack, data_dirs, cpu, memory)
            == (&other.instance, &other.role, &other.host, &other.rack, &other.data_dirs, &other.cpu, &other.memory)
    }
}

/// Everything the renderer needs about one cluster.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    pub spec: &'a ClusterSpec,
    pub members: &'a [Member],
    /// DataNodes being decommissioned and NodeManagers being drained: they go in the
    /// exclude files.
    pub leaving: BTreeSet<InstanceRef>,
}

/// Why an instance's config could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("instance {0} is not a member of the cluster")]
    NotAMember(InstanceRef),
    /// The instance is listed twice, so which member it is is ambiguous.
    #[error("instance {0} is listed more than once among the cluster's members")]
    DuplicateMember(InstanceRef),
    /// A member of a role the spec has no pool for (overrides and sizing come from the pool).
    #[error("instance {instance} is a {role}, but the cluster has no {role} pool")]
    NoPool { instance: InstanceRef, role: Role },
}

/// Live file names (relative to the config folder), as in [`paths`].
pub const TOPOLOGY_FILE: &str = "topology.table";
pub const DFS_HOSTS_FILE: &str = "dfs.hosts";
pub const DFS_EXCLUDE_FILE: &str = "dfs.exclude";
pub const YARN_INCLUDE_FILE: &str = "yarn.include";
pub const YARN_EXCLUDE_FILE: &str = "yarn.exclude";

/// Renders the configuration of `instance`:
/// - `files`: the four `*-site.xml`, herd's keys then the cluster's `configOverrides`, then the
///   instance's pool's (the pool wins). Overrides are assumed valid (validation refuses keys
///   herd owns); their values are escaped, never spliced.
/// - `live_files`: the topology table and the include/exclude lists, for the masters only
///   (NameNode, ResourceManager: the ones that act on them). They grow with the cluster, so
///   giving them to every worker made a cluster's config O(n²) to render and every worker's
///   heartbeat reply O(n) (a 10,000-DataNode cluster: 10,000 tables of 10,000 lines).
/// - `refresh`: what makes a master re-read them (`hdfs dfsadmin -refreshNodes` on the
///   NameNode, `yarn rmadmin -refreshNodes` on the ResourceManager); nothing elsewhere.
pub fn render(cluster: &ClusterView<'_>, instance: &InstanceRef) -> Result<HadoopConfig, RenderError> {
    render_member(cluster, member(cluster, instance)?)
}

/// [`render`] for every member, in one pass: O(members) to find them, where calling
/// [`render`] per member looks each one up among all (O(members²)).
pub fn render_each(cluster: &ClusterView<'_>) -> Vec<(InstanceRef, Result<HadoopConfig, RenderError>)> {
    let mut seen = std::collections::HashMap::new();
    for m in cluster.members {
        *seen.entry(&m.instance).or_insert(0u32) += 1;
    }
    cluster
        .members
        .iter()
        .map(|m| {
            let out = if seen.get(&m.instance).copied().unwrap_or(0) > 1 {
                Err(RenderError::DuplicateMember(m.instance.clone()))
            } else {
                render_member(cluster, m)
            };
            (m.instance.clone(), out)
        })
        .collect()
}

fn render_member(cluster: &ClusterView<'_>, member: &Member) -> Result<HadoopConfig, RenderError> {
    render_with(cluster, &site::Masters::of(cluster), member)
}

/// [`render`] of a member that need not be among `cluster.members`, with the masters given
/// rather than derived from the spec: operator mode renders one config per pool (a
/// StatefulSet's pods share it) for a member standing for every pod, and reaches the masters
/// by its pods' DNS names (`<cluster>-namenode-0.<cluster>.<namespace>`), not herd's.
pub fn render_with(cluster: &ClusterView<'_>, masters: &site::Masters, member: &Member) -> Result<HadoopConfig, RenderError> {
    let instance = &member.instance;
    let pool = cluster
        .spec
        .pools
        .get(&member.role)
        .ok_or_else(|| RenderError::NoPool { instance: instance.clone(), role: member.role })?;

    let mut properties = site::properties(cluster, masters, member);
    for overrides in [&cluster.spec.config_overrides, &pool.config_overrides] {
        for (file, keys) in overrides {
            let props = properties.entry(*file).or_default();
            props.extend(keys.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let files = ConfigFile::ALL
        .into_iter()
        .map(|file| {
            let empty = BTreeMap::new();
            let props = properties.get(&file).unwrap_or(&empty);
            (file.as_str().to_string(), xml::configuration(&instance.to_string(), props).into())
        })
        .collect();

    let live_files = match member.role {
        Role::Namenode | Role::Resourcemanager => BTreeMap::from([
            (TOPOLOGY_FILE.to_string(), topology::table(cluster)),
            (DFS_HOSTS_FILE.to_string(), String::new()),
            (DFS_EXCLUDE_FILE.to_string(), topology::leaving(cluster, Role::Datanode)),
            (YARN_INCLUDE_FILE.to_string(), String::new()),
            (YARN_EXCLUDE_FILE.to_string(), topology::leaving(cluster, Role::Nodemanager)),
        ]),
        Role::Datanode | Role::Nodemanager => BTreeMap::new(),
    };
    let command = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let refresh = match member.role {
        Role::Namenode => vec![command(&["hdfs", "dfsadmin", "-refreshNodes"])],
        Role::Resourcemanager => vec![rm_refresh(cluster)],
        Role::Datanode | Role::Nodemanager => Vec::new(),
    };
    Ok(HadoopConfig { files, live_files, refresh })
}

/// Workers' configs by shape, for rendering many members of one cluster: a DataNode's or a
/// NodeManager's files differ from another's of the same shape (role, data folders, size)
/// only by its instance name (its hostname and the files' header name it), so one render per
/// shape, with a stand-in name, then has the member's name put in. The result is exactly
/// [`render_with`]'s (a render test checks it member by member): a stand-in is used only after
/// a second stand-in, put in the same way, gave exactly what rendering it gave (a config
/// override that happens to hold the stand-in's name, say, is rendered per member instead).
/// Rendering 10,000 DataNodes one by one was a tenth of the orchestrator's CPU while 300,000
/// instances were applied.
#[derive(Default)]
pub struct Shapes {
    /// Per shape: its config split at the stand-in's name, or `None` (rendered per member).
    by: std::collections::HashMap<(Role, usize, Cpu, Memory), Option<Split>>,
}

/// A config with every occurrence of a name cut out: each text is the pieces between them.
#[derive(Debug, PartialEq)]
struct Split {
    /// Shared by every member's [`Text`]: a worker's files are held once per shape.
    files: BTreeMap<String, std::sync::Arc<herd_api::hadoop::Pieces>>,
    live_files: BTreeMap<String, Vec<String>>,
    refresh: Vec<Vec<Vec<String>>>,
    /// [`stable_hash`] of `files` as cut (see [`Shapes::render_hashed`]).
    digest: String,
}

impl Split {
    fn of(config: &HadoopConfig, name: &str) -> Self {
        let cut = |text: &str| text.split(name).map(str::to_string).collect::<Vec<_>>();
        let live_files = |f: &BTreeMap<String, String>| f.iter().map(|(k, v)| (k.clone(), cut(v))).collect();
        let files: BTreeMap<String, std::sync::Arc<herd_api::hadoop::Pieces>> =
            config.files.iter().map(|(k, v)| (k.clone(), std::sync::Arc::new(cut(&v.to_str()).into()))).collect();
        Split {
            digest: stable_hash(&files),
            files,
            live_files: live_files(&config.live_files),
            refresh: config.refresh.iter().map(|c| c.iter().map(|a| cut(a)).collect()).collect(),
        }
    }

    /// A hash of the files with `name` put in: the shape's `digest`, then the name.
    fn files_hash(&self, name: &str) -> String {
        stable_hash(&(SHAPED, &self.digest, name))
    }

    /// The config with `name` where the cuts are.
    fn with(&self, name: &str) -> HadoopConfig {
        let live_files = |f: &BTreeMap<String, Vec<String>>| f.iter().map(|(k, pieces)| (k.clone(), pieces.join(name))).collect();
        let shared: std::sync::Arc<str> = name.into();
        HadoopConfig {
            files: self.files.iter().map(|(k, pieces)| (k.clone(), Text::cut(pieces.clone(), shared.clone()))).collect(),
            live_files: live_files(&self.live_files),
            refresh: self.refresh.iter().map(|c| c.iter().map(|pieces| pieces.join(name)).collect()).collect(),
        }
    }
}

/// What a hash of a config rendered by shape starts with (see [`Shapes::render_hashed`]).
const SHAPED: &str = "herd/shaped-files/1";

impl Shapes {
    /// [`render_with`] for `member`, by its shape when it is a worker.
    pub fn render(&mut self, cluster: &ClusterView<'_>, masters: &site::Masters, member: &Member) -> Result<HadoopConfig, RenderError> {
        self.render_hashed(cluster, masters, member).map(|(config, _)| config)
    }

    /// [`Shapes::render`], with a hash of the files: [`HadoopConfig::files_hash`] when the
    /// member was rendered on its own; when it was rendered by shape, the shape's files hashed
    /// once, then the member's name. Both change exactly when the files do, for one member
    /// rendered the same way every time (whether a member renders by shape depends only on
    /// its role, its name and the spec). (Hashing every worker's whole files, some 6 KB
    /// with the name near the top of each, so that nothing could be shared, was 6 % of the
    /// orchestrator's CPU while a million instances were applied.)
    pub fn render_hashed(&mut self, cluster: &ClusterView<'_>, masters: &site::Masters, member: &Member) -> Result<(HadoopConfig, String), RenderError> {
        let whole = |config: HadoopConfig| {
            let hash = config.files_hash();
            (config, hash)
        };
        if !matches!(member.role, Role::Datanode | Role::Nodemanager) || !plain(&member.instance.name) {
            return render_with(cluster, masters, member).map(whole);
        }
        let key = (member.role, member.data_dirs, member.cpu, member.memory);
        let shape = self.by.entry(key).or_insert_with(|| stand_in(cluster, masters, member));
        match shape {
            Some(split) => Ok((split.with(&member.instance.name), split.files_hash(&member.instance.name))),
            None => render_with(cluster, masters, member).map(whole),
        }
    }
}

/// A name that substitution keeps exact: a DNS label of `[a-z0-9-]` without `--` (the
/// files' header comment turns `--` into `- -`), beginning and ending with a letter or digit.
fn plain(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.contains("--")
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `member`'s shape rendered for a stand-in name and cut at it, if putting another name in
/// gives exactly what rendering for that name gives.
fn stand_in(cluster: &ClusterView<'_>, masters: &site::Masters, member: &Member) -> Option<Split> {
    let named = |ordinal: u32| Member {
        instance: InstanceRef { name: format!("{}-{ordinal}", member.role.as_str()), ..member.instance.clone() },
        ..member.clone()
    };
    let (a, b) = (named(u32::MAX), named(u32::MAX - 1));
    let config = render_with(cluster, masters, &a).ok()?;
    let other = render_with(cluster, masters, &b).ok()?;
    let split = Split::of(&config, &a.instance.name);
    (split.with(&b.instance.name) == other).then_some(split)
}

/// The ResourceManager's refresh: `yarn rmadmin -refreshNodes`, and while a NodeManager is
/// leaving `-g <drain timeout> -server`, so the ResourceManager drains it gracefully (its
/// containers finish) for at most the pool's `lifecycle.drainTimeoutSeconds` (0: at once).
/// NB: the command is part of the live hash, so a changed timeout re-runs it.
fn rm_refresh(cluster: &ClusterView<'_>) -> Vec<String> {
    let mut args: Vec<String> = ["yarn", "rmadmin", "-refreshNodes"].iter().map(|s| s.to_string()).collect();
    let draining = cluster.members.iter().any(|m| m.role == Role::Nodemanager && cluster.leaving.contains(&m.instance));
    if draining {
        let timeout = cluster.spec.pools.get(&Role::Nodemanager).map_or(3600, |p| p.lifecycle.drain_timeout_s);
        args.extend(["-g".to_string(), timeout.to_string(), "-server".to_string()]);
    }
    args
}

/// The environment that sizes a member's daemon: `HADOOP_HEAPSIZE_MAX` (MiB, as Hadoop 3's
/// `hadoop-functions.sh` reads it into `-Xmx`), from [`daemon_heap`]'s rule. The agent sets
/// it on the container; a pool's own `env` may override it.
pub fn daemon_env(member: &Member) -> BTreeMap<String, String> {
    daemon_env_of(member.role, member.memory)
}

/// [`daemon_env`] of a member of `role` given `memory`: all it depends on.
pub fn daemon_env_of(role: Role, memory: Memory) -> BTreeMap<String, String> {
    let heap = daemon_heap(role, memory);
    BTreeMap::from([("HADOOP_HEAPSIZE_MAX".to_string(), format!("{}m", heap.0 >> 20))])
}

fn member<'m>(cluster: &ClusterView<'m>, instance: &InstanceRef) -> Result<&'m Member, RenderError> {
    let mut found = cluster.members.iter().filter(|m| &m.instance == instance);
    let first = found.next().ok_or_else(|| RenderError::NotAMember(instance.clone()))?;
    if found.next().is_some() {
        return Err(RenderError::DuplicateMember(instance.clone()));
    }
    Ok(first)
}
