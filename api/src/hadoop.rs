//! The Hadoop level of herd's vocabulary: what a spec says about HDFS and YARN, the rendered
//! configuration an agent writes for an instance, and the health herd reads from HDFS and
//! YARN themselves. Pure types; rendering and parsing live in the `herd-hadoop` crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::stable_hash;

use crate::quantity::Memory;
use crate::spec::Role;

/// In-container ports, fixed so that the rendered config, the images and the health probes
/// agree. The NodeManager's RPC port is pinned (Hadoop's default is ephemeral, which would
/// change a NodeManager's YARN id on every restart).
pub mod ports {
    pub const NAMENODE_RPC: u16 = 8020;
    pub const NAMENODE_HTTP: u16 = 9870;
    pub const DATANODE_XFER: u16 = 9866;
    pub const DATANODE_HTTP: u16 = 9864;
    pub const DATANODE_IPC: u16 = 9867;
    pub const RM_SCHEDULER: u16 = 8030;
    pub const RM_TRACKER: u16 = 8031;
    pub const RM_CLIENT: u16 = 8032;
    pub const RM_ADMIN: u16 = 8033;
    pub const RM_HTTP: u16 = 8088;
    pub const NODEMANAGER_LOCALIZER: u16 = 8040;
    pub const NODEMANAGER_RPC: u16 = 8041;
    pub const NODEMANAGER_HTTP: u16 = 8042;
}

/// Where the agent mounts an instance's rendered configuration (read-only).
pub const CONF_DIR: &str = "/etc/hadoop/conf";

/// A Hadoop configuration file herd renders and lets a spec override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
pub enum ConfigFile {
    #[serde(rename = "core-site.xml")]
    CoreSite,
    #[serde(rename = "hdfs-site.xml")]
    HdfsSite,
    #[serde(rename = "yarn-site.xml")]
    YarnSite,
    #[serde(rename = "mapred-site.xml")]
    MapredSite,
}

impl ConfigFile {
    pub const ALL: [ConfigFile; 4] = [ConfigFile::CoreSite, ConfigFile::HdfsSite, ConfigFile::YarnSite, ConfigFile::MapredSite];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigFile::CoreSite => "core-site.xml",
            ConfigFile::HdfsSite => "hdfs-site.xml",
            ConfigFile::YarnSite => "yarn-site.xml",
            ConfigFile::MapredSite => "mapred-site.xml",
        }
    }
}

impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConfigFile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ConfigFile::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            format!("unknown config file `{s}` (herd renders core-site.xml, hdfs-site.xml, yarn-site.xml, mapred-site.xml)")
        })
    }
}

// NB: through a string, like `Role`, so that errors name the map key.
impl<'de> Deserialize<'de> for ConfigFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Per-file `key: value` overrides, applied last over what herd renders.
pub type ConfigOverrides = BTreeMap<ConfigFile, BTreeMap<String, String>>;

/// What an agent writes for one instance and mounts at [`CONF_DIR`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HadoopConfig {
    /// Files the daemon reads at start (`core-site.xml`, ...): a change restarts the instance,
    /// and the orchestrator rolls such changes through a cluster one instance at a time.
    #[schema(value_type = BTreeMap<String, String>)]
    pub files: BTreeMap<String, Text>,
    /// Files the daemon re-reads when told to (include/exclude lists, the topology table):
    /// rewritten in place, then every `refresh` command runs in the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live_files: BTreeMap<String, String>,
    /// Commands run inside the container (e.g. `hdfs dfsadmin -refreshNodes`) after
    /// `live_files` changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refresh: Vec<Vec<String>>,
}

impl HadoopConfig {
    /// A stable hash of `files` (FNV-1a): what the agent reports as applied.
    pub fn files_hash(&self) -> String {
        stable_hash(&self.files)
    }

    /// A stable hash of `live_files` and `refresh`.
    pub fn live_hash(&self) -> String {
        stable_hash(&(&self.live_files, &self.refresh))
    }

    /// Writes it as JSON, the bytes `serde_json` writes for it, its files' texts each from
    /// its shape's pieces escaped once ([`Text::write_json`]).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // NB: every field named, so a new one cannot be left out here.
        let HadoopConfig { files, live_files, refresh } = self;
        out.extend_from_slice(b"{\"files\":{");
        for (n, (name, text)) in files.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name)?;
            out.push(b':');
            text.write_json(out);
        }
        out.push(b'}');
        if !live_files.is_empty() {
            out.extend_from_slice(b",\"live_files\":");
            serde_json::to_writer(&mut *out, live_files)?;
        }
        if !refresh.is_empty() {
            out.extend_from_slice(b",\"refresh\":");
            serde_json::to_writer(&mut *out, refresh)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// The text of a rendered config file. Workers of one shape (role, data folders, size) get
/// files that differ only by the instance's name ([`herd_hadoop`'s `Shapes`]), so the text
/// may be held as the shape's pieces, shared by every worker of that shape, with the name put
/// between them: 10,000 DataNodes hold their files once, not 10,000 times (a million
/// instances held 4 GB of identical XML). It serializes as the plain string, byte for byte
/// (so its [`stable_hash`] is that of the string), and is whole once received.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Whole(String),
    /// `pieces` joined with `name`.
    Cut { pieces: std::sync::Arc<Pieces>, name: std::sync::Arc<str> },
}

/// A shape's text cut at its stand-in's name: the pieces between, and each as it is written
/// inside a JSON string (escaped once, when first written: every reply carrying a member's
/// files escaped the same XML again, a sixth of the orchestrator's work while a million
/// instances reached their hosts). Serialized (and hashed) as the list of pieces.
pub struct Pieces {
    text: Box<[String]>,
    json: std::sync::OnceLock<Box<[String]>>,
}

impl From<Vec<String>> for Pieces {
    fn from(text: Vec<String>) -> Self {
        Pieces { text: text.into(), json: std::sync::OnceLock::new() }
    }
}

impl Pieces {
    /// The pieces, escaped as inside a JSON string.
    fn escaped(&self) -> &[String] {
        self.json.get_or_init(|| {
            self.text
                .iter()
                .map(|p| {
                    let mut out = Vec::with_capacity(p.len() + p.len() / 8);
                    escape_json_into(&mut out, p);
                    String::from_utf8_lossy(&out).into_owned()
                })
                .collect()
        })
    }
}

impl Serialize for Pieces {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl PartialEq for Pieces {
    fn eq(&self, other: &Pieces) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Pieces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Writes `s` as it stands inside a JSON string, escaped as `serde_json` escapes it (the short
/// forms of `\b \f \n \r \t`, `\"` and `\\`, other control characters as `\u00XX`), so
/// what is written either way is the same bytes (a test compares them). Written here because
/// `serde_json` keeps its escaper private and a piece is no whole JSON string.
fn escape_json_into(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\t' => b't',
            b'\r' => b'r',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short == 0 {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

impl Text {
    /// `pieces` joined with `name` between each two, held as they are.
    pub fn cut(pieces: std::sync::Arc<Pieces>, name: std::sync::Arc<str>) -> Self {
        Text(Repr::Cut { pieces, name })
    }

    /// Writes the text as a JSON string, the bytes `serde_json` writes for it; a cut text
    /// from its pieces escaped once per shape.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match &self.0 {
            Repr::Whole(s) => escape_json_into(out, s),
            Repr::Cut { pieces, name } => {
                for (k, p) in pieces.escaped().iter().enumerate() {
                    if k > 0 {
                        escape_json_into(out, name);
                    }
                    out.extend_from_slice(p.as_bytes());
                }
            }
        }
        out.push(b'"');
    }

    /// The text as one string (a copy when it is held cut).
    pub fn to_str(&self) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            Repr::Whole(s) => std::borrow::Cow::Borrowed(s),
            Repr::Cut { .. } => std::borrow::Cow::Owned(self.to_string()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks().all(str::is_empty)
    }

    /// The text in order, in pieces.
    fn chunks(&self) -> impl Iterator<Item = &str> {
        let (whole, pieces, name) = match &self.0 {
            Repr::Whole(s) => (Some(s.as_str()), &[][..], ""),
            Repr::Cut { pieces, name } => (None, &pieces.text[..], &**name),
        };
        let cut = pieces.iter().enumerate().flat_map(move |(k, p)| [(k > 0).then_some(name), Some(p.as_str())]).flatten();
        whole.into_iter().chain(cut)
    }
}

impl Default for Text {
    fn default() -> Self {
        Text(Repr::Whole(String::new()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Repr::Whole(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Repr::Whole(s.to_string()))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chunks().try_for_each(|c| f.write_str(c))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.to_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        if let (Repr::Cut { pieces: a, name: x }, Repr::Cut { pieces: b, name: y }) = (&self.0, &other.0)
            && std::sync::Arc::ptr_eq(a, b)
        {
            return x == y;
        }
        same_bytes(self.chunks(), other.chunks())
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        same_bytes(self.chunks(), std::iter::once(other))
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// Whether two texts given in pieces are the same bytes, wherever they are cut.
fn same_bytes<'a>(mut a: impl Iterator<Item = &'a str>, mut b: impl Iterator<Item = &'a str>) -> bool {
    let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
    loop {
        while x.is_empty() {
            match a.next() {
                Some(c) => x = c.as_bytes(),
                None => break,
            }
        }
        while y.is_empty() {
            match b.next() {
                Some(c) => y = c.as_bytes(),
                None => break,
            }
        }
        if x.is_empty() || y.is_empty() {
            return x.is_empty() && y.is_empty();
        }
        let n = x.len().min(y.len());
        if x[..n] != y[..n] {
            return false;
        }
        (x, y) = (&x[n..], &y[n..]);
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Whole(text) => s.serialize_str(text),
            // NB: serde_json writes it escaped as it goes, never held whole.
            Repr::Cut { .. } => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

/// What a NameNode reports about HDFS (its `/jmx`), as an agent read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameNodeHealth {
    /// Set instead of the fields below when the NameNode did not answer, or answered
    /// something that could not be read: the reason, for a condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the NameNode is in safe mode (`Safemode` non-empty, or `FSState` `safeMode`).
    #[serde(default)]
    pub safe_mode: bool,
    /// `Safemode`'s text, when in safe mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_mode_reason: Option<String>,
    pub live_datanodes: u64,
    pub dead_datanodes: u64,
    pub decommissioning_datanodes: u64,
    pub capacity_total: u64,
    pub capacity_used: u64,
    pub capacity_remaining: u64,
    pub blocks_total: u64,
    pub under_replicated_blocks: u64,
    pub missing_blocks: u64,
    pub pending_replication_blocks: u64,
    /// Every DataNode the NameNode knows, live, dead and decommissioning.
    #[serde(default)]
    pub datanodes: Vec<DataNodeReport>,
    /// The NameNode's software version, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One DataNode as the NameNode sees it (an entry of `LiveNodes`/`DeadNodes`/`DecomNodes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataNodeReport {
    /// The key the NameNode uses, `host:xferPort` (bare host in Hadoop 1): the exact name
    /// exclude files must use.
    pub name: String,
    /// The host part of `name`.
    pub hostname: String,
    /// `xferaddr`, `IP:port`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfer_addr: Option<String>,
    /// `In Service`, `Decommission In Progress`, `Decommissioned`, `Entering Maintenance`,
    /// `In Maintenance`; `None` when the NameNode did not say (dead nodes in older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_state: Option<String>,
    /// Listed in `LiveNodes` (false: `DeadNodes`).
    pub live: bool,
    /// Seconds since its last heartbeat (`lastContact`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_blocks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    /// From `DecomNodes`: blocks still to replicate before it may leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommission_under_replicated: Option<u64>,
}

/// What a ResourceManager reports about YARN (`/ws/v1/cluster/{info,metrics,nodes}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceManagerHealth {
    /// Set when the ResourceManager did not answer or answered something unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `clusterInfo.state`, e.g. `STARTED`.
    #[serde(default)]
    pub state: String,
    /// `clusterInfo.haState`, e.g. `ACTIVE`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_state: Option<String>,
    pub active_nodes: u64,
    pub lost_nodes: u64,
    pub unhealthy_nodes: u64,
    /// Optional in the API (absent in Hadoop 2.4): 0 when not given.
    pub decommissioning_nodes: u64,
    pub decommissioned_nodes: u64,
    pub shutdown_nodes: u64,
    pub total_mb: u64,
    pub allocated_mb: u64,
    pub total_vcores: u64,
    pub allocated_vcores: u64,
    pub apps_running: u64,
    /// Every NodeManager in every state.
    #[serde(default)]
    pub nodes: Vec<NodeManagerReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One NodeManager as the ResourceManager sees it (an entry of `/ws/v1/cluster/nodes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeManagerReport {
    /// YARN's node id, `host:port`.
    pub id: String,
    /// `nodeHostName`.
    pub hostname: String,
    /// NEW, RUNNING, UNHEALTHY, DECOMMISSIONING, DECOMMISSIONED, LOST, REBOOTED, SHUTDOWN.
    pub state: String,
    /// Unix milliseconds of its last health report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_update_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_containers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avail_memory_mb: Option<u64>,
    /// `healthReport`, when not empty: why an UNHEALTHY node is so (e.g. a full local dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_report: Option<String>,
}

/// What an agent read from a master it runs, sent with that instance's observed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MasterHealth {
    Namenode(NameNodeHealth),
    Resourcemanager(ResourceManagerHealth),
}

/// Keys herd renders itself and a spec may not override, with the file each belongs in and
/// why herd owns it. Every key here exists in Hadoop 3.4.1's `*-default.xml` (tested in
/// `herd-hadoop` against the committed defaults), except where the reason says otherwise.
pub const OWNED_KEYS: &[(ConfigFile, &str, &str)] = {
    use ConfigFile::{CoreSite, HdfsSite, YarnSite};
    const NN: &str = "herd points every instance at the NameNode by its stable DNS name";
    const RM: &str = "herd points every instance at the ResourceManager by its stable DNS name";
    const BIND: &str = "herd binds the daemons to every address of the container";
    const DIRS: &str = "herd mounts the data disks at fixed paths and renders the folders on them";
    const PORTS: &str = "herd fixes the in-container ports (the images, health probes and published ports rely on them)";
    const HOSTS: &str = "herd keeps the include/exclude lists to add and decommission workers";
    const TOPO: &str = "herd renders the rack and host topology from placement (no two replicas of a block on one machine)";
    const NAMES: &str = "herd's containers reach each other by the names in herd's /etc/hosts";
    const SIZE: &str = "herd sizes YARN from the pool's cpu and memory (less the daemon heap)";
    &[
        (CoreSite, "fs.defaultFS", NN),
        (CoreSite, "net.topology.node.switch.mapping.impl", TOPO),
        (CoreSite, "net.topology.table.file.name", TOPO),
        (CoreSite, "net.topology.impl", TOPO),
        (CoreSite, "net.topology.nodegroup.aware", TOPO),
        (CoreSite, "net.topology.script.file.name", TOPO),
        (HdfsSite, "dfs.block.replicator.classname", TOPO),
        (HdfsSite, "dfs.use.dfs.network.topology", TOPO),
        (HdfsSite, "dfs.net.topology.impl", TOPO),
        (HdfsSite, "dfs.namenode.rpc-address", NN),
        (HdfsSite, "dfs.namenode.http-address", NN),
        (HdfsSite, "dfs.namenode.servicerpc-address", NN),
        (HdfsSite, "dfs.namenode.rpc-bind-host", BIND),
        (HdfsSite, "dfs.namenode.http-bind-host", BIND),
        (HdfsSite, "dfs.namenode.servicerpc-bind-host", BIND),
        (HdfsSite, "dfs.namenode.name.dir", DIRS),
        (HdfsSite, "dfs.datanode.data.dir", DIRS),
        (HdfsSite, "dfs.datanode.address", PORTS),
        (HdfsSite, "dfs.datanode.http.address", PORTS),
        (HdfsSite, "dfs.datanode.ipc.address", PORTS),
        (HdfsSite, "dfs.datanode.hostname", NAMES),
        (HdfsSite, "dfs.namenode.datanode.registration.ip-hostname-check", NAMES),
        (HdfsSite, "dfs.client.use.datanode.hostname", NAMES),
        (HdfsSite, "dfs.datanode.use.datanode.hostname", NAMES),
        (HdfsSite, "dfs.hosts", HOSTS),
        (HdfsSite, "dfs.hosts.exclude", HOSTS),
        (HdfsSite, "dfs.namenode.hosts.provider.classname", HOSTS),
        (HdfsSite, "dfs.replication", "set it with `hdfs.replication` in the spec, which herd checks against the DataNodes it runs"),
        (YarnSite, "yarn.resourcemanager.hostname", RM),
        (YarnSite, "yarn.resourcemanager.address", RM),
        (YarnSite, "yarn.resourcemanager.scheduler.address", RM),
        (YarnSite, "yarn.resourcemanager.resource-tracker.address", RM),
        (YarnSite, "yarn.resourcemanager.admin.address", RM),
        (YarnSite, "yarn.resourcemanager.webapp.address", RM),
        (YarnSite, "yarn.resourcemanager.bind-host", BIND),
        (YarnSite, "yarn.nodemanager.bind-host", BIND),
        (YarnSite, "yarn.resourcemanager.nodes.include-path", HOSTS),
        (YarnSite, "yarn.resourcemanager.nodes.exclude-path", HOSTS),
        (YarnSite, "yarn.nodemanager.hostname", NAMES),
        (YarnSite, "yarn.nodemanager.address", "herd pins the NodeManager's RPC port so its YARN node id survives restarts"),
        (YarnSite, "yarn.nodemanager.localizer.address", PORTS),
        (YarnSite, "yarn.nodemanager.webapp.address", PORTS),
        (YarnSite, "yarn.nodemanager.resource.memory-mb", SIZE),
        (YarnSite, "yarn.nodemanager.resource.cpu-vcores", SIZE),
    ]
};

/// Why herd owns `key` in `file`, if it does: a spec overriding it is refused with this
/// reason. A key herd owns in another file is refused too (it would be in the wrong file, and
/// herd renders it anyway), with a reason naming the right one.
pub fn owned_key_reason(file: ConfigFile, key: &str) -> Option<&'static str> {
    OWNED_KEYS.iter().find(|(_, k, _)| *k == key).map(|(owner, _, reason)| {
        if *owner == file {
            *reason
        } else {
            match owner {
                ConfigFile::CoreSite => "herd renders this key itself, in core-site.xml",
                ConfigFile::HdfsSite => "herd renders this key itself, in hdfs-site.xml",
                ConfigFile::YarnSite => "herd renders this key itself, in yarn-site.xml",
                ConfigFile::MapredSite => "herd renders this key itself, in mapred-site.xml",
            }
        }
    })
}

/// The longest configuration key a spec may override (Hadoop's own are under 100 characters).
pub const MAX_KEY_LEN: usize = 256;

/// Checks the form of an override key: non-empty, at most [`MAX_KEY_LEN`] characters, no
/// whitespace or control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("configuration keys must not be empty".into());
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(format!("configuration keys must be at most {MAX_KEY_LEN} characters, got {}", key.chars().count()));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` is not a configuration key: no whitespace or control characters", key.escape_default()));
    }
    Ok(())
}

/// Checks an override value: any text XML 1.0 can carry (the renderer escapes `<`, `&`,
/// quotes and `]]>`), so not NUL or the other C0 control characters but tab, newline and
/// carriage return, nor U+FFFE/U+FFFF.
pub fn check_value(value: &str) -> Result<(), String> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    match value.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!("values may not contain {c:?}: an XML configuration file cannot carry it")),
        None => Ok(()),
    }
}

/// The least memory a NodeManager must leave for YARN containers after its own heap.
pub const MIN_CONTAINER_MEMORY: Memory = Memory(256 << 20);

/// The Java heap herd gives a role's daemon in a container of `memory`, rounded down to MiB.
///
/// The rule (what `HADOOP_HEAPSIZE_MAX` is set to):
/// - NameNode, ResourceManager: half the container, at most 16 GiB. The rest is for the JVM's
///   own (metaspace, threads, direct buffers) and the OS.
/// - DataNode: half the container, at most 4 GiB. Its heap holds block reports, not data;
///   the page cache makes better use of the rest.
/// - NodeManager: an eighth of the container, at least 128 MiB and at most 1 GiB. Everything
///   else is offered to YARN containers (`yarn.nodemanager.resource.memory-mb`).
pub fn daemon_heap(role: Role, memory: Memory) -> Memory {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let m = memory.0;
    let heap = match role {
        Role::Namenode | Role::Resourcemanager => (m / 2).min(16 * GIB),
        Role::Datanode => (m / 2).min(4 * GIB),
        Role::Nodemanager => (m / 8).clamp(128 * MIB, GIB),
    };
    Memory(heap / MIB * MIB)
}

/// What a NodeManager in a container of `memory` offers YARN: the container less the
/// daemon's heap ([`daemon_heap`]); zero when the heap takes it all.
pub fn nodemanager_container_memory(memory: Memory) -> Memory {
    Memory(memory.0.saturating_sub(daemon_heap(Role::Nodemanager, memory).0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cut(text: &str, name: &str) -> Text {
        Text::cut(Arc::new(text.split(name).map(str::to_string).collect::<Vec<_>>().into()), name.into())
    }

    #[test]
    fn a_cut_text_is_its_string_on_the_wire_in_hashes_and_in_comparisons() {
        let name = "datanode-7";
        // Escapes, non-ASCII, the name at both ends and twice in a row.
        let whole = format!(
            "{name}<?xml version=\"1.0\"?>\n<!-- {name} -->\t<value>é\\{name}{name}</value>{}{name}",
            "<property/>".repeat(300)
        );
        let (a, b) = (cut(&whole, name), Text::from(whole.clone()));
        assert_eq!(serde_json::to_string(&a).ok(), serde_json::to_string(&whole).ok());
        assert_eq!(stable_hash(&a), stable_hash(&whole));
        let files = BTreeMap::from([("core-site.xml".to_string(), a.clone())]);
        assert_eq!(stable_hash(&files), stable_hash(&BTreeMap::from([("core-site.xml", whole.as_str())])));
        assert_eq!(a, b);
        assert_eq!(b, a);
        assert_eq!(a, whole.as_str());
        assert_eq!(a.to_str(), whole);
        assert_eq!(a.to_string(), whole);
        let back: Text = serde_json::from_str(&serde_json::to_string(&a).unwrap_or_default()).unwrap_or_default();
        assert_eq!(back, a);
        assert!(!a.is_empty());
        assert!(cut("", name).is_empty() && Text::default().is_empty());
    }

    #[test]
    fn cut_texts_compare_by_content_wherever_they_are_cut() {
        let (x, y) = (cut("a-NAME-b-NAME", "NAME"), cut("a-NAME-b-NAME", "-b-"));
        assert_eq!(x, y);
        // Another name in the same pieces, and a shorter or longer text.
        let pieces: Arc<Pieces> = Arc::new(vec!["<a>".to_string(), "</a>".to_string()].into());
        let (one, two) = (Text::cut(pieces.clone(), "n1".into()), Text::cut(pieces.clone(), "n2".into()));
        assert_ne!(one, two);
        assert_eq!(one, Text::cut(pieces, "n1".into()));
        assert_eq!(one, "<a>n1</a>");
        assert_ne!(one, "<a>n1</a>!");
        assert_ne!(one, "<a>n1</a");
        assert_ne!(Text::from(""), "x");
    }
}
