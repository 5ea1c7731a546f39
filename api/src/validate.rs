//! Semantic validation of a parsed spec. Every problem is reported at once, each naming
//! its field by path (`pools.datanode.memory`), so one round trip fixes a spec.

use std::fmt;

use serde::{Deserialize, Serialize};

use std::net::Ipv4Addr;

use crate::hadoop::{
    ConfigOverrides, MIN_CONTAINER_MEMORY, check_key, check_value, daemon_heap, nodemanager_container_memory, owned_key_reason,
};
use crate::names::check_dns_label;
use crate::spec::{ClusterSpec, Role};

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `pools.datanode.replicas`; empty for the whole document.
    pub field: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
    /// 1-based line in the YAML document, when the input was YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), line: None }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() { "spec" } else { &self.field };
        match self.line {
            Some(line) => write!(f, "{field} (line {line}): {}", self.message),
            None => write!(f, "{field}: {}", self.message),
        }
    }
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The document is not well-formed, or a field has the wrong type or an unknown name.
    #[error("cannot parse spec: {0}")]
    Parse(FieldError),
    /// The document parsed but some fields are invalid; all of them are listed.
    #[error("invalid spec: {}", join(.0))]
    Invalid(Vec<FieldError>),
    /// Every field is valid on its own, but some contradict others (rules between fields,
    /// which a JSON schema cannot state: a pool without an image, two pools publishing one
    /// host port, a master given both as a pool and as external); all of them are listed.
    #[error("inconsistent spec: {}", join(.0))]
    Inconsistent(Vec<FieldError>),
}

impl SpecError {
    /// Every field error, for problem+json bodies.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            SpecError::Parse(e) => vec![e.clone()],
            SpecError::Invalid(errors) | SpecError::Inconsistent(errors) => errors.clone(),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Linux capability names (without `CAP_`) a pool may ask for.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT",
    "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "WAKE_ALARM",
];

/// Which host ports a cluster may publish: the orchestrator's `--publish-ports` range, never
/// below 1024 and never one of herd's own ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    /// The admin's range, e.g. 30000–32767.
    pub first: u16,
    pub last: u16,
    /// herd's own ports (the orchestrator's, the agents' log endpoint, ...), refused even
    /// inside the range.
    pub reserved: std::collections::BTreeSet<u16>,
}

impl Default for PortPolicy {
    fn default() -> Self {
        Self { first: 30000, last: 32767, reserved: [7480, 7481].into() }
    }
}

impl PortPolicy {
    /// Every published host port of `spec` that this policy refuses, each naming its field.
    pub fn check(&self, spec: &ClusterSpec) -> Result<(), SpecError> {
        let mut errors = Vec::new();
        for (role, pool) in &spec.pools {
            for (n, p) in pool.publish.iter().enumerate() {
                let port = p.host_port();
                let field = if p.host_port.is_some() {
                    format!("pools.{role}.publish[{n}].host_port")
                } else {
                    format!("pools.{role}.publish[{n}].port")
                };
                let (first, last) = (self.first, self.last);
                if self.reserved.contains(&port) {
                    errors.push(FieldError::new(
                        field,
                        format!("host port {port} is one of herd's own ports; publish on a host port from {first} to {last} (set `host_port`)"),
                    ));
                } else if port < 1024 || port < first || port > last {
                    errors.push(FieldError::new(
                        field,
                        format!("host port {port} is outside the published port range {first}-{last} this orchestrator allows; set `host_port` inside it"),
                    ));
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(SpecError::Invalid(errors)) }
    }
}

/// Checks a spec; returns every problem found: [`SpecError::Inconsistent`] when each field
/// is valid alone and only rules between fields are broken.
pub fn validate(spec: &ClusterSpec) -> Result<(), SpecError> {
    let mut errors = Vec::new();
    // Rules between fields (see `SpecError::Inconsistent`).
    let mut between = Vec::new();
    if let Err(m) = check_dns_label(&spec.tenant) {
        errors.push(FieldError::new("tenant", m));
    }
    if let Err(m) = check_dns_label(&spec.name) {
        errors.push(FieldError::new("name", m));
    }
    if spec.pools.is_empty() {
        errors.push(FieldError::new("pools", "must name at least one pool (e.g. `datanode` or `nodemanager`)"));
    }
    for (role, image) in &spec.images {
        if let Err(m) = check_image(image) {
            errors.push(FieldError::new(format!("images.{role}"), m));
        }
    }
    // Host ports of the whole cluster: two pools publishing one host port could never share a host.
    let mut host_ports = std::collections::BTreeMap::new();
    for (role, pool) in &spec.pools {
        let at = |field: &str| format!("pools.{role}.{field}");
        for (n, p) in pool.publish.iter().enumerate() {
            let field = format!("{}[{n}]", at("publish"));
            if p.port == 0 || p.host_port == Some(0) {
                errors.push(FieldError::new(field.clone(), "ports must be from 1 to 65535"));
            }
            if let Some(first) = host_ports.insert((p.protocol, p.host_port()), field.clone()) {
                between.push(FieldError::new(
                    field,
                    format!("{} host port {} is already published by {first}", p.protocol, p.host_port()),
                ));
            }
        }
        for (n, cap) in pool.capabilities.add.iter().enumerate() {
            if !CAPABILITIES.contains(&cap.as_str()) {
                errors.push(FieldError::new(
                    format!("{}[{n}]", at("capabilities.add")),
                    format!("`{cap}` is not a Linux capability Docker knows; write it without `CAP_`, e.g. NET_RAW"),
                ));
            }
        }
        if pool.memory < role.min_memory() {
            errors.push(FieldError::new(
                at("memory"),
                format!("a {role} needs at least {} of memory, got {}", role.min_memory(), pool.memory),
            ));
        }
        if pool.cpu.0 == 0 {
            errors.push(FieldError::new(at("cpu"), "must be more than 0 (e.g. `500m` or `1`)"));
        }
        match (&pool.image, spec.images.get(role)) {
            (Some(image), _) => {
                if let Err(m) = check_image(image) {
                    errors.push(FieldError::new(at("image"), m));
                }
            }
            (None, Some(_)) => {}
            (None, None) => between.push(FieldError::new(
                format!("images.{role}"),
                format!("no image for pool `{role}`: set `images.{role}` or `pools.{role}.image`"),
            )),
        }
        for key in pool.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') || key.starts_with("HERD_") {
                errors.push(FieldError::new(
                    format!("{}.{key}", at("env")),
                    "environment names must be non-empty, without `=` or NUL, and must not start with HERD_ (reserved)",
                ));
            }
        }
        if (*role == Role::Namenode || *role == Role::Resourcemanager) && pool.replicas.0 > 1 {
            errors.push(FieldError::new(
                at("replicas"),
                format!(
                    "herd runs at most one {role} per cluster, got {}: high availability (several {}s) comes in a later herd version",
                    pool.replicas.0,
                    if *role == Role::Namenode { "NameNode" } else { "ResourceManager" },
                ),
            ));
        }
        if *role == Role::Nodemanager {
            let heap = daemon_heap(*role, pool.memory);
            let left = nodemanager_container_memory(pool.memory);
            if left < MIN_CONTAINER_MEMORY {
                errors.push(FieldError::new(
                    at("memory"),
                    format!(
                        "a nodemanager of {} keeps {heap} for its own heap and leaves {left} for YARN containers; at least {MIN_CONTAINER_MEMORY} must be left",
                        pool.memory
                    ),
                ));
            }
        }
        for (key, value) in &pool.node_selector {
            if let Err(m) = check_label(key, value) {
                errors.push(FieldError::new(format!("{}.{key}", at("nodeSelector")), m));
            }
        }
        if pool.max_per_host == Some(0) {
            errors.push(FieldError::new(at("maxPerHost"), "must be at least 1 (leave it out for the default)"));
        }
        if pool.disk.is_some_and(|d| d.0 > 0) && !role.has_data() {
            errors.push(FieldError::new(
                at("disk"),
                format!("only DataNodes and NameNodes are given room on the data disks; a {role} keeps nothing there (remove `disk`)"),
            ));
        }
        check_overrides(&at("configOverrides"), &pool.config_overrides, &mut errors);
    }
    check_overrides("configOverrides", &spec.config_overrides, &mut errors);
    check_hadoop(spec, &mut errors, &mut between);
    match (errors.is_empty(), between.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => Err(SpecError::Inconsistent(between)),
        (false, _) => {
            errors.extend(between);
            Err(SpecError::Invalid(errors))
        }
    }
}

/// The Hadoop-level fields: replication, external masters.
fn check_hadoop(spec: &ClusterSpec, errors: &mut Vec<FieldError>, between: &mut Vec<FieldError>) {
    if !(1..=MAX_REPLICATION).contains(&spec.hdfs.replication) {
        errors.push(FieldError::new(
            "hdfs.replication",
            format!("must be from 1 to {MAX_REPLICATION} copies of each block, got {}", spec.hdfs.replication),
        ));
    }
    let masters = [(Role::Namenode, &spec.external.namenode), (Role::Resourcemanager, &spec.external.resourcemanager)];
    for (role, external) in masters {
        let Some(external) = external else { continue };
        let at = |field: &str| format!("external.{role}{field}");
        if spec.pools.contains_key(&role) {
            between.push(FieldError::new(
                at(""),
                format!("the {role} is given both as pool `pools.{role}` and as `external.{role}`: keep one"),
            ));
        }
        if let Err(m) = check_host(&external.host) {
            errors.push(FieldError::new(at(".host"), m));
        }
        for (field, port) in [(".rpcPort", external.rpc_port), (".httpPort", external.http_port)] {
            if port == Some(0) {
                errors.push(FieldError::new(at(field), "ports must be from 1 to 65535"));
            }
        }
    }
}

/// Override keys: well-formed, and none that herd must own.
fn check_overrides(at: &str, overrides: &ConfigOverrides, errors: &mut Vec<FieldError>) {
    for (file, keys) in overrides {
        for (key, value) in keys {
            let field = format!("{at}.{file}.{key}");
            if let Err(m) = check_key(key) {
                errors.push(FieldError::new(field, m));
            } else if let Some(reason) = owned_key_reason(*file, key) {
                errors.push(FieldError::new(field, format!("`{key}` cannot be overridden: {reason}")));
            } else if let Err(m) = check_value(value) {
                errors.push(FieldError::new(field, m));
            }
        }
    }
}

/// Checks a host label (`herd-agent --label KEY=VALUE`, a pool's `nodeSelector`): a key of
/// 1 to 63 letters, digits, `-`, `_`, `.` or `/`, starting and ending with a letter or digit;
/// a value of at most 63 letters, digits, `-`, `_` or `.` (empty allowed), as Kubernetes
/// labels are written.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let edge = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    let key_ok = (1..=63).contains(&key.len())
        && edge(key)
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok {
        return Err(format!(
            "`{}` is not a label key (1 to 63 letters, digits, `-`, `_`, `.`, `/`, starting and ending with a letter or digit)",
            key.escape_default()
        ));
    }
    let value_ok = value.is_empty()
        || (value.len() <= 63 && edge(value) && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if !value_ok {
        return Err(format!(
            "`{}` is not a label value (at most 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit)",
            value.escape_default()
        ));
    }
    Ok(())
}

/// The most copies of a block `hdfs.replication` may ask for (Hadoop's own
/// `dfs.replication.max` default).
pub const MAX_REPLICATION: u16 = 512;

/// Checks an external master's address: an IPv4 address or a DNS name (RFC 1123 labels).
fn check_host(host: &str) -> Result<(), String> {
    let bad = || format!("`{}` is not a DNS name or IPv4 address", host.escape_default());
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // NB: a name whose last label is all digits would read as a (bad) IPv4 address.
    let numeric_tld = labels.last().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if labels.iter().all(label_ok) && !numeric_tld { Ok(()) } else { Err(bad()) }
}

fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty".into());
    }
    if image.len() > 255 || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` is not an image reference", image.escape_default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_cluster_spec;

    const GOOD: &str = "tenant: acme\nname: prod\nimages:\n  datanode: herd/datanode:testbed\npools:\n  datanode:\n    replicas: 3\n    cpu: 500m\n    memory: 512Mi\n";

    #[test]
    fn good_spec_passes() {
        let spec = parse_cluster_spec(GOOD).map_err(|e| e.to_string());
        assert_eq!(spec.as_ref().map(|s| s.pools.len()), Ok(1));
    }

    #[test]
    fn published_host_ports_stay_in_the_admins_range_and_off_herds_ports() {
        let text = format!(
            "{GOOD}    publish:\n      - port: 9864\n        host_port: 30001\n      - port: 7481\n      - port: 22\n      - port: 9870\n        host_port: 31000\n      - port: 9871\n        host_port: 7480\n"
        );
        let spec = parse_cluster_spec(&text).unwrap_or_else(|e| panic!("{e}"));
        let policy = PortPolicy { first: 7000, last: 31000, reserved: [7480, 7481].into() };
        let Err(SpecError::Invalid(errors)) = policy.check(&spec) else { panic!("herd's ports accepted") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pools.datanode.publish[1].port", "pools.datanode.publish[2].port", "pools.datanode.publish[4].host_port"]);
        assert!(errors[0].message.contains("herd's own ports") && errors[0].message.contains("7000 to 31000"), "{}", errors[0].message);
        assert!(errors[1].message.contains("7000-31000"), "{}", errors[1].message);
        // The default range is NodePort's; below 1024 is never allowed, even in an admin's range.
        let Err(SpecError::Invalid(errors)) = PortPolicy::default().check(&spec) else { panic!() };
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().all(|e| e.message.contains("30000")), "{errors:?}");
        let low = PortPolicy { first: 1, last: 65535, reserved: Default::default() };
        let Err(SpecError::Invalid(errors)) = low.check(&spec) else { panic!() };
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["pools.datanode.publish[2].port"]);
    }

    #[test]
    fn capabilities_must_be_known_names() {
        let text = format!("{GOOD}    capabilities:\n      add: [NET_RAW, CAP_SYS_ADMIN]\n");
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(&text) else { panic!("unknown capability accepted") };
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["pools.datanode.capabilities.add[1]"]);
    }

    #[test]
    fn published_ports_are_checked() {
        let text = format!("{GOOD}    publish:\n      - port: 9864\n      - port: 0\n      - port: 80\n        host_port: 9864\n");
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(&text) else {
            panic!("bad ports accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pools.datanode.publish[1]", "pools.datanode.publish[2]"]);
        assert!(errors[1].message.contains("already published by pools.datanode.publish[0]"), "{}", errors[1].message);
    }

    #[test]
    fn every_error_is_reported_with_field_and_line() {
        let text = "tenant: Acme\nname: prod\npools:\n  datanode:\n    replicas: 3\n    cpu: 500m\n    memory: 64Mi\n";
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(text) else {
            panic!("spec with three problems was accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            fields,
            vec![("tenant", Some(1)), ("pools.datanode.memory", Some(7)), ("images.datanode", None)]
        );
    }

    #[test]
    fn placement_fields_are_checked() {
        let text = format!(
            "{GOOD}    maxPerHost: 0\n    nodeSelector: {{disk: ssd, 'bad key': x, zone: 'a b', 'herd.io/pool': gold}}\n  nodemanager: {{replicas: 1, cpu: 1, memory: 1Gi, disk: 1Gi}}\nimages: {{datanode: d, nodemanager: n}}\n"
        )
        .replace("images:\n  datanode: herd/datanode:testbed\n", "");
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(&text) else { panic!("bad placement fields accepted: {text}") };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["pools.datanode.nodeSelector.bad key", "pools.datanode.nodeSelector.zone", "pools.datanode.maxPerHost", "pools.nodemanager.disk"]
        );
        assert!(check_label("herd.io/pool", "gold").is_ok() && check_label("rack", "").is_ok());
        assert!(check_label("-x", "y").is_err() && check_label("x", "y-").is_err() && check_label(&"k".repeat(64), "v").is_err());
    }

    /// A full Hadoop cluster: both masters, both worker pools, overrides at both levels.
    const HADOOP: &str = "\
tenant: acme
name: prod
version: 3.4.1
images:
  namenode: r/namenode:3.4.1
  resourcemanager: r/resourcemanager:3.4.1
  datanode: r/datanode:3.4.1
  nodemanager: r/nodemanager:3.4.1
hdfs:
  replication: 3
configOverrides:
  core-site.xml:
    io.file.buffer.size: '131072'
pools:
  namenode: {replicas: 1, cpu: 1, memory: 2Gi}
  resourcemanager: {replicas: 1, cpu: 1, memory: 2Gi}
  datanode:
    replicas: 3
    cpu: 500m
    memory: 1Gi
    configOverrides:
      hdfs-site.xml:
        dfs.datanode.du.reserved: '1073741824'
  nodemanager: {replicas: 2, cpu: 2, memory: 4Gi}
";

    fn hadoop() -> ClusterSpec {
        crate::yaml::from_str(HADOOP).unwrap()
    }

    fn external(host: &str) -> Option<crate::spec::ExternalMaster> {
        Some(crate::spec::ExternalMaster { host: host.into(), rpc_port: None, http_port: None })
    }

    fn set(spec: &mut ClusterSpec, file: ConfigFile, key: &str, value: &str) {
        spec.config_overrides.entry(file).or_default().insert(key.into(), value.into());
    }

    fn set_pool(spec: &mut ClusterSpec, role: Role, file: ConfigFile, key: &str, value: &str) {
        let pool = spec.pools.get_mut(&role).unwrap();
        pool.config_overrides.entry(file).or_default().insert(key.into(), value.into());
    }

    use crate::hadoop::ConfigFile;
    use crate::quantity::Memory;

    type Change = fn(&mut ClusterSpec);
    type Refused = (&'static str, Change, &'static [(&'static str, &'static str)]);

    #[test]
    fn hadoop_fields_table() {
        let accepted: &[(&str, Change)] = &[
            ("the full cluster", |_| {}),
            ("workers without masters", |s| {
                s.pools.remove(&Role::Namenode);
                s.pools.remove(&Role::Resourcemanager);
            }),
            ("replication above the DataNode count", |s| s.hdfs.replication = 10),
            ("replication at the bounds", |s| s.hdfs.replication = 512),
            ("external masters by name and address", |s| {
                s.pools.remove(&Role::Namenode);
                s.pools.remove(&Role::Resourcemanager);
                s.external.namenode = external("nn.corp.example.com");
                s.external.resourcemanager = external("10.1.2.3");
            }),
            ("values are any string", |s| set(s, ConfigFile::CoreSite, "x.y", "<a & \"b\" ]]> \n")),
            ("a key herd owns elsewhere, in mapred-site, is not an owned key", |s| {
                set(s, ConfigFile::MapredSite, "mapreduce.map.memory.mb", "512")
            }),
            ("the smallest nodemanager", |s| s.pools.get_mut(&Role::Nodemanager).unwrap().memory = Memory(512 << 20)),
        ];
        for (name, change) in accepted {
            let mut spec = hadoop();
            change(&mut spec);
            assert_eq!(validate(&spec), Ok(()), "{name}");
        }

        let refused: &[Refused] = &[
            ("two namenodes", |s| s.pools.get_mut(&Role::Namenode).unwrap().replicas.0 = 2, &[(
                "pools.namenode.replicas",
                "several NameNodes) comes in a later herd version",
            )]),
            ("three resourcemanagers", |s| s.pools.get_mut(&Role::Resourcemanager).unwrap().replicas.0 = 3, &[(
                "pools.resourcemanager.replicas",
                "high availability (several ResourceManagers)",
            )]),
            ("a master both as pool and external", |s| s.external.namenode = external("nn.example.com"), &[(
                "external.namenode",
                "both as pool `pools.namenode` and as `external.namenode`",
            )]),
            ("a bad external host", |s| {
                s.pools.remove(&Role::Resourcemanager);
                s.external.resourcemanager = external("rm host");
            }, &[("external.resourcemanager.host", "`rm host` is not a DNS name or IPv4 address")]),
            ("a numeric external host that is no address", |s| {
                s.pools.remove(&Role::Namenode);
                s.external.namenode = external("10.1.2.300");
            }, &[("external.namenode.host", "not a DNS name or IPv4 address")]),
            ("a label starting with a hyphen", |s| {
                s.pools.remove(&Role::Namenode);
                s.external.namenode = external("-nn.example.com");
            }, &[("external.namenode.host", "not a DNS name")]),
            ("external port 0", |s| {
                s.pools.remove(&Role::Namenode);
                s.external.namenode = external("nn");
                if let Some(nn) = s.external.namenode.as_mut() {
                    nn.http_port = Some(0);
                }
            }, &[("external.namenode.httpPort", "from 1 to 65535")]),
            ("replication 0", |s| s.hdfs.replication = 0, &[("hdfs.replication", "from 1 to 512")]),
            ("replication 513", |s| s.hdfs.replication = 513, &[("hdfs.replication", "from 1 to 512 copies of each block, got 513")]),
            ("fs.defaultFS overridden", |s| set(s, ConfigFile::CoreSite, "fs.defaultFS", "hdfs://x:8020"), &[(
                "configOverrides.core-site.xml.fs.defaultFS",
                "`fs.defaultFS` cannot be overridden: herd points every instance at the NameNode",
            )]),
            ("dfs.replication in a pool", |s| set_pool(s, Role::Datanode, ConfigFile::HdfsSite, "dfs.replication", "2"), &[(
                "pools.datanode.configOverrides.hdfs-site.xml.dfs.replication",
                "set it with `hdfs.replication`",
            )]),
            ("an owned key in the wrong file", |s| set(s, ConfigFile::HdfsSite, "fs.defaultFS", "hdfs://x"), &[(
                "configOverrides.hdfs-site.xml.fs.defaultFS",
                "herd renders this key itself, in core-site.xml",
            )]),
            ("nodemanager sizing", |s| set_pool(s, Role::Nodemanager, ConfigFile::YarnSite, "yarn.nodemanager.resource.memory-mb", "1"), &[(
                "pools.nodemanager.configOverrides.yarn-site.xml.yarn.nodemanager.resource.memory-mb",
                "herd sizes YARN from the pool's cpu and memory",
            )]),
            ("a key with a space", |s| set(s, ConfigFile::CoreSite, "io.file buffer", "1"), &[(
                "configOverrides.core-site.xml.io.file buffer",
                "no whitespace or control characters",
            )]),
            ("a key with a control character", |s| set(s, ConfigFile::CoreSite, "a\u{7}b", "1"), &[(
                "configOverrides.core-site.xml.a\u{7}b",
                "`a\\u{7}b` is not a configuration key",
            )]),
            ("a value XML cannot carry", |s| set(s, ConfigFile::CoreSite, "x.y", "a\u{0}b"), &[(
                "configOverrides.core-site.xml.x.y",
                "values may not contain '\\0'",
            )]),
            ("an empty key", |s| set(s, ConfigFile::YarnSite, "", "1"), &[(
                "configOverrides.yarn-site.xml.",
                "must not be empty",
            )]),
            ("a key too long", |s| set(s, ConfigFile::MapredSite, &"k".repeat(257), "1"), &[(
                "configOverrides.mapred-site.xml.kkkk",
                "at most 256 characters, got 257",
            )]),
            ("a nodemanager too small for containers", |s| s.pools.get_mut(&Role::Nodemanager).unwrap().memory = Memory(300 << 20), &[
                ("pools.nodemanager.memory", "needs at least 512Mi"),
                ("pools.nodemanager.memory", "keeps 128Mi for its own heap and leaves 172Mi for YARN containers; at least 256Mi"),
            ]),
        ];
        for (name, change, expected) in refused {
            let mut spec = hadoop();
            change(&mut spec);
            let errors = match validate(&spec) {
                Err(SpecError::Invalid(errors) | SpecError::Inconsistent(errors)) => errors,
                other => panic!("{name}: expected refusal, got {other:?}"),
            };
            assert_eq!(errors.len(), expected.len(), "{name}: {errors:?}");
            for (error, (field, fragment)) in errors.iter().zip(expected.iter()) {
                assert!(error.field.starts_with(field), "{name}: field {} is not {field}", error.field);
                assert!(error.message.contains(fragment), "{name}: `{}` lacks `{fragment}`", error.message);
            }
        }
    }

    #[test]
    fn every_hadoop_error_at_once_with_lines() {
        let text = HADOOP
            .replace("replication: 3", "replication: 0")
            .replace("io.file.buffer.size", "fs.defaultFS")
            .replace("namenode: {replicas: 1", "namenode: {replicas: 2");
        let Err(SpecError::Invalid(errors)) = parse_cluster_spec(&text) else {
            panic!("three problems accepted");
        };
        let got: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("pools.namenode.replicas", Some(15)),
                ("configOverrides.core-site.xml.fs.defaultFS", Some(13)),
                ("hdfs.replication", Some(10)),
            ]
        );
    }

    #[test]
    fn unknown_config_file_names_path_and_line() {
        let text = HADOOP.replace("hdfs-site.xml:", "hdfs-sites.xml:");
        let Err(SpecError::Parse(e)) = parse_cluster_spec(&text) else {
            panic!("unknown config file accepted");
        };
        assert_eq!(e.field, "pools.datanode.configOverrides.hdfs-sites.xml");
        assert_eq!(e.line, Some(22));
        assert!(e.message.contains("unknown config file `hdfs-sites.xml`"), "{}", e.message);
    }

    #[test]
    fn daemon_heap_rule() {
        use crate::hadoop::{daemon_heap, nodemanager_container_memory};
        let gi = |n: u64| Memory(n << 30);
        assert_eq!(daemon_heap(Role::Namenode, gi(4)), gi(2));
        assert_eq!(daemon_heap(Role::Namenode, gi(64)), gi(16));
        assert_eq!(daemon_heap(Role::Datanode, gi(16)), gi(4));
        assert_eq!(daemon_heap(Role::Nodemanager, Memory(512 << 20)), Memory(128 << 20));
        assert_eq!(daemon_heap(Role::Nodemanager, gi(4)), Memory(512 << 20));
        assert_eq!(daemon_heap(Role::Nodemanager, gi(64)), gi(1));
        assert_eq!(nodemanager_container_memory(gi(4)), Memory(3584 << 20));
        // Rounded down to whole MiB.
        assert_eq!(daemon_heap(Role::Datanode, Memory((300 << 20) + 1)), Memory(150 << 20));
    }
}
