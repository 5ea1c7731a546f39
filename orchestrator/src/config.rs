//! Configuration: flags, then `HERD_*` environment, then a YAML file, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::network::Settings;

/// herd's control plane: stores cluster specs, places instances on hosts and tells each
/// host's agent what to run.
#[derive(Debug, Parser)]
#[command(
    name = "herd-orchestrator",
    version,
    // A flag given twice takes the last value (scripts append their own to defaults).
    args_override_self = true,
    after_help = "On first start it creates an admin token and writes its secret to DATA_DIR/admin.token (mode 0600).\n\nExamples:\n  herd-orchestrator --data-dir /var/lib/herd --listen 0.0.0.0:7480\n  herd-orchestrator --data-dir /var/lib/herd --listen 0.0.0.0:7480 --store etcd --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379 \\\n                    --advertise-url https://10.0.0.1:7480 --tls-cert server.pem --tls-key server.key   (one of several; one leads)\n  herd-orchestrator --data-dir /var/lib/herd --backup-dir /backup/herd --backup-every 1h --backup-keep 48\n  herd-orchestrator --data-dir /var/lib/herd backup --to /backup/herd-now.db   (while it serves)\n  herd-orchestrator --data-dir /var/lib/herd restore --from /backup/herd-now.db  (stopped)\n  herd-orchestrator openapi > manifests/openapi.json"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Directory for the embedded store and other state.
    #[arg(long, env = "HERD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address to serve the HTTP API on (port 0 picks a free one; the bound address is printed).
    #[arg(long, env = "HERD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Which store keeps the control plane's intent: `sqlite` (embedded, in --sqlite-path) or
    /// `etcd` (--etcd-endpoints) [default: sqlite].
    #[arg(long, env = "HERD_STORE", global = true, value_name = "sqlite|etcd")]
    pub store: Option<StoreKind>,
    /// Path of the SQLite store [default: DATA_DIR/herd.db].
    #[arg(long, env = "HERD_SQLITE_PATH", global = true)]
    pub sqlite_path: Option<PathBuf>,
    /// etcd client URLs, comma-separated (with --store etcd), e.g. `https://10.0.0.1:2379,https://10.0.0.2:2379`.
    #[arg(long, env = "HERD_ETCD_ENDPOINTS", global = true, value_delimiter = ',')]
    pub etcd_endpoints: Vec<url::Url>,
    /// PEM CA that signed the etcd members' certificates.
    #[arg(long, env = "HERD_ETCD_CA_FILE", global = true)]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key-file).
    #[arg(long, env = "HERD_ETCD_CERT_FILE", global = true)]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM key of --etcd-cert-file.
    #[arg(long, env = "HERD_ETCD_KEY_FILE", global = true)]
    pub etcd_key_file: Option<PathBuf>,
    /// Every key herd writes in etcd starts with this [default: /herd/v1].
    #[arg(long, env = "HERD_ETCD_PREFIX", global = true)]
    pub etcd_prefix: Option<String>,
    /// With --store etcd: the URL clients are sent to while this orchestrator leads (followers
    /// redirect to it) [default: http(s)://LISTEN, which must then not be 0.0.0.0].
    #[arg(long, env = "HERD_ADVERTISE_URL")]
    pub advertise_url: Option<url::Url>,
    /// With --store etcd: the leader's etcd lease, e.g. `5s` (1s to 1m). A leader that cannot
    /// renew it stops acting before it ends; another takes over within about this long.
    #[arg(long, env = "HERD_LEASE_TTL", value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// How often agents heartbeat, e.g. `2s`; a host missing three is `lost`.
    #[arg(long, env = "HERD_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// The most heartbeats per second the whole fleet sends: past `rate × interval` hosts,
    /// agents are told a longer interval (hosts / rate seconds) so the orchestrator's load
    /// stays flat as the fleet grows [default: 10000].
    #[arg(long, env = "HERD_MAX_HEARTBEAT_RATE")]
    pub max_heartbeat_rate: Option<u32>,
    /// The CIDR every container address is taken from; must overlap none of the hosts' own
    /// networks [default: 100.64.0.0/10; with /25 host subnets it holds 32,768 hosts of 125
    /// containers: hosts = 2^(host prefix - CIDR prefix)].
    #[arg(long, env = "HERD_CLUSTER_CIDR")]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Prefix length of the subnet each host gets from the cluster CIDR; containers per host =
    /// 2^(32 - prefix) - 3 [default: 25].
    #[arg(long, env = "HERD_HOST_SUBNET_PREFIX")]
    pub host_subnet_prefix: Option<u8>,
    /// Host ports clusters may publish, FIRST-LAST; never below 1024 nor herd's own ports
    /// (7480, 7481 and --listen's) [default: 30000-32767].
    #[arg(long, env = "HERD_PUBLISH_PORTS", value_name = "FIRST-LAST", value_parser = parse_range)]
    pub publish_ports: Option<(u16, u16)>,
    /// How long SIGTERM waits for open requests before cutting them (followed logs never end
    /// by themselves), e.g. `30s` [default: 30s; at most 10m].
    #[arg(long, env = "HERD_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// How long a host may be `lost` before the NodeManagers and data-less masters it ran are
    /// placed elsewhere, e.g. `60s` [default: 60s].
    #[arg(long, env = "HERD_RESCHEDULE_AFTER", value_parser = humantime::parse_duration)]
    pub reschedule_after: Option<Duration>,
    /// How long a host may be `lost` before each DataNode it ran is replaced by a new DataNode
    /// (a new identity, placed elsewhere; HDFS re-replicates the old one's blocks) [default: 10m].
    #[arg(long, env = "HERD_DATANODE_REPLACE_AFTER", value_parser = humantime::parse_duration)]
    pub datanode_replace_after: Option<Duration>,
    /// Nothing moves off lost hosts while more than this percentage of the fleet is lost at
    /// once (or all of it): so many hosts rarely fail together, and moving them would start
    /// decommissioning every DataNode when the orchestrator only lost its network or fell
    /// behind. `herd_lost_moves_held` is 1 meanwhile. 100 turns the hold off [default: 50].
    #[arg(long, env = "HERD_MAX_LOST_PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub max_lost_percent: Option<u8>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key); `herd-orchestrator tls-init`
    /// makes one for trying herd out.
    #[arg(long, env = "HERD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HERD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM file of the CA that signed the agents' log endpoint certificates (their
    /// --tls-cert), when it is not a public one.
    #[arg(long, env = "HERD_AGENT_CA_FILE")]
    pub agent_ca_file: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (tokens and specs cross the network
    /// in clear: only on a network you trust, e.g. a test bed).
    #[arg(long, env = "HERD_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Back the store up into this directory while serving, as herd-TIME.db files (see
    /// `backup`); off unless given.
    #[arg(long, env = "HERD_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// How often to back up into --backup-dir, e.g. `1h` [default: 1h; at least 1s].
    #[arg(long, env = "HERD_BACKUP_EVERY", value_parser = humantime::parse_duration)]
    pub backup_every: Option<Duration>,
    /// How many backups to keep in --backup-dir, newest first; older ones are removed [default: 24].
    #[arg(long, env = "HERD_BACKUP_KEEP")]
    pub backup_keep: Option<usize>,
    /// The most instances one cluster may have waiting for a host; an apply or scale that
    /// would leave more is refused (422) [default: 1000].
    #[arg(long, env = "HERD_MAX_PENDING_PER_CLUSTER")]
    pub max_pending_per_cluster: Option<u32>,
    /// The most clusters one tenant may have [default: 100].
    #[arg(long, env = "HERD_MAX_CLUSTERS_PER_TENANT")]
    pub max_clusters_per_tenant: Option<u32>,
    /// The quota of a tenant created without one, e.g. `cpu=64,memory=256Gi,disk=4Ti` (an
    /// admin gives a tenant no limit with `"quota": "unlimited"`) [default: cpu=64,memory=256Gi,disk=4Ti].
    #[arg(long, env = "HERD_DEFAULT_TENANT_QUOTA", value_name = "cpu=N,memory=N,disk=N")]
    pub default_tenant_quota: Option<String>,
    /// Requests per second one token may send, sustained; more are answered 429 with
    /// `Retry-After` [default: 50].
    #[arg(long, env = "HERD_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests one token may send in a burst above --rate-limit [default: 4 x --rate-limit].
    #[arg(long, env = "HERD_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// YAML file with any of the settings above (keys as the flags, with `_`).
    #[arg(long, env = "HERD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// Which store implementation (see [`crate::store`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Etcd,
}

/// What to do instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the HTTP API's OpenAPI 3 document (JSON) and exit.
    Openapi,
    /// Make a local CA and a server certificate for trying herd out over TLS: writes
    /// DIR/ca.pem (give it to `herd --ca-file` and `herd-agent --ca-file`), DIR/server.pem and
    /// DIR/server.key (give them to --tls-cert and --tls-key). Never replaces an existing CA.
    #[command(after_help = "Example:\n  herd-orchestrator tls-init --dir /var/lib/herd/tls --name 127.0.0.1 --name orch.example.com")]
    TlsInit {
        /// Folder to write into.
        #[arg(long)]
        dir: PathBuf,
        /// A DNS name or IP address clients reach the orchestrator at; repeat for each.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// Back the store up to FILE and exit: SQLite's online backup API, a consistent copy of
    /// the last commit, taken while an orchestrator serves from the same store (or not).
    Backup {
        /// Where to write the backup (replaced if it exists; written beside it first).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Copy every object of a SQLite store into an empty etcd prefix and verify the copy by
    /// comparing every object; the orchestrator on DATA_DIR must be stopped. The etcd TLS flags
    /// (--etcd-ca-file, --etcd-cert-file, --etcd-key-file) and --etcd-prefix apply to the target.
    #[command(after_help = "Example:\n  herd-orchestrator --data-dir /var/lib/herd migrate --from sqlite:/var/lib/herd/herd.db --to etcd:https://10.0.0.1:2379,https://10.0.0.2:2379")]
    Migrate {
        /// The source: `sqlite:PATH`.
        #[arg(long, value_name = "sqlite:PATH")]
        from: String,
        /// The target: `etcd:URL[,URL...]`.
        #[arg(long, value_name = "etcd:URL,...")]
        to: String,
    },
    /// Replace the store with a backup and exit. Refused while an orchestrator runs with this
    /// data directory; the backup's integrity is checked first, and the replaced store is kept
    /// beside it as STORE.before-restore-TIME.
    Restore {
        /// The backup to restore (from `backup` or --backup-dir).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    store: Option<StoreKind>,
    sqlite_path: Option<PathBuf>,
    etcd_endpoints: Option<Vec<String>>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
    etcd_prefix: Option<String>,
    advertise_url: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    lease_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    heartbeat_interval: Option<Duration>,
    max_heartbeat_rate: Option<u32>,
    cluster_cidr: Option<Ipv4Net>,
    host_subnet_prefix: Option<u8>,
    publish_ports: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    reschedule_after: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    datanode_replace_after: Option<Duration>,
    max_lost_percent: Option<u8>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    agent_ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_http: bool,
    backup_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde_opt")]
    backup_every: Option<Duration>,
    backup_keep: Option<usize>,
    max_pending_per_cluster: Option<u32>,
    max_clusters_per_tenant: Option<u32>,
    default_tenant_quota: Option<String>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
}

/// `FIRST-LAST`, both from 1024 to 65535.
fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("`{s}` is not FIRST-LAST, e.g. 30000-32767"))?;
    let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("`{p}` is not a port number"));
    let (first, last) = (port(a)?, port(b)?);
    if first < 1024 || first > last {
        return Err(format!("`{s}`: the range must start at 1024 or above and not end before it starts"));
    }
    Ok((first, last))
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// The settings the orchestrator runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The store to open.
    pub store: crate::store::Options,
    /// The SQLite store's path (what `backup` and `restore` copy; SQLite only).
    pub sqlite_path: PathBuf,
    pub heartbeat_interval: Duration,
    /// Heartbeats per second the fleet is asked for at most (see `State::interval_ms`).
    pub max_heartbeat_rate: u32,
    pub network: Settings,
    /// Which host ports clusters may publish.
    pub publish_ports: herd_api::validate::PortPolicy,
    /// How long SIGTERM waits for open requests.
    pub shutdown_timeout: Duration,
    /// What happens to the instances of lost hosts, and when.
    pub fleet: crate::fleet::FleetSettings,
    /// Certificate chain and key to serve HTTPS with; plain HTTP when `None`.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA certificates (PEM) to trust for agents' HTTPS log endpoints.
    pub agent_ca_file: Option<PathBuf>,
    /// Scheduled backups, if asked for.
    pub backups: Option<crate::backup::Schedule>,
    /// Admission limits, default quota and rate limits.
    pub limits: crate::limits::Limits,
    /// With etcd: the URL followers send clients to while this one leads (`None`: from the
    /// bound address, see [`Config::advertise`]).
    pub advertise_url: Option<url::Url>,
    /// With etcd: the leader's lease.
    pub lease_ttl: Duration,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, #[source] source: herd_api::SpecError },
    #[error("heartbeat_interval must be between 100ms and 1m, got {0:?}")]
    Interval(Duration),
    #[error("cluster_cidr / host_subnet_prefix: {0}")]
    Network(String),
    #[error("publish_ports: {0}")]
    PublishPorts(String),
    #[error("shutdown_timeout must be at most 10m, got {0:?}")]
    ShutdownTimeout(Duration),
    #[error("{0}")]
    Fleet(String),
    #[error("{0}")]
    Tls(String),
    #[error("backup_every must be at least 1s, got {0:?}")]
    BackupEvery(Duration),
    #[error("backup_keep must be at least 1")]
    BackupKeep,
    #[error("backup_every / backup_keep need backup_dir, the directory to back up into")]
    BackupDir,
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("default_tenant_quota: {0}")]
    DefaultQuota(String),
    #[error("{0}")]
    Store(String),
}

impl Config {
    /// The URL followers send clients to while this orchestrator leads: `--advertise-url`, or
    /// the address it bound (`bound`, with the port picked for port 0).
    pub fn advertise(&self, bound: SocketAddr) -> String {
        match &self.advertise_url {
            Some(u) => u.as_str().trim_end_matches('/').to_string(),
            None => format!("{}://{bound}", if self.tls.is_some() { "https" } else { "http" }),
        }
    }

    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                herd_api::yaml::from_str::<File>(&text).map_err(|source| ConfigError::Parse { path: path.clone(), source })?
            }
            None => File::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("/var/lib/herd/orchestrator"));
        let heartbeat_interval = args.heartbeat_interval.or(file.heartbeat_interval).unwrap_or(Duration::from_secs(2));
        if heartbeat_interval < Duration::from_millis(100) || heartbeat_interval > Duration::from_secs(60) {
            return Err(ConfigError::Interval(heartbeat_interval));
        }
        let default = Settings::default_plan();
        let network = Settings {
            cluster_cidr: args.cluster_cidr.or(file.cluster_cidr).unwrap_or(default.cluster_cidr),
            host_prefix: args.host_subnet_prefix.or(file.host_subnet_prefix).unwrap_or(default.host_prefix),
        };
        network.check().map_err(ConfigError::Network)?;
        let listen = args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7480)));
        let (first, last) = match (args.publish_ports, file.publish_ports) {
            (Some(r), _) => r,
            (None, Some(s)) => parse_range(&s).map_err(ConfigError::PublishPorts)?,
            (None, None) => (30000, 32767),
        };
        let shutdown_timeout = args.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(Duration::from_secs(30));
        if shutdown_timeout > Duration::from_secs(600) {
            return Err(ConfigError::ShutdownTimeout(shutdown_timeout));
        }
        let defaults = crate::fleet::FleetSettings::default();
        let fleet = crate::fleet::FleetSettings {
            reschedule_after: args.reschedule_after.or(file.reschedule_after).unwrap_or(defaults.reschedule_after),
            datanode_replace_after: args.datanode_replace_after.or(file.datanode_replace_after).unwrap_or(defaults.datanode_replace_after),
            max_lost_percent: args.max_lost_percent.or(file.max_lost_percent).unwrap_or(defaults.max_lost_percent),
        };
        fleet.check(heartbeat_interval).map_err(ConfigError::Fleet)?;
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError::Tls("tls_cert and tls_key go together: give both, or neither".into())),
        };
        if tls.is_none() && crate::tls::plain_needs_consent(&listen) && !(args.insecure_http || file.insecure_http) {
            return Err(ConfigError::Tls(format!(
                "--listen {listen} is not loopback and no --tls-cert/--tls-key is given: serve HTTPS (try \
                 `herd-orchestrator tls-init`), or pass --insecure-http to serve plain HTTP anyway"
            )));
        }
        let backups = match (args.backup_dir.or(file.backup_dir), args.backup_every.or(file.backup_every), args.backup_keep.or(file.backup_keep)) {
            (None, None, None) => None,
            (None, _, _) => return Err(ConfigError::BackupDir),
            (Some(dir), every, keep) => {
                let every = every.unwrap_or(Duration::from_secs(3600));
                if every < Duration::from_secs(1) {
                    return Err(ConfigError::BackupEvery(every));
                }
                let keep = keep.unwrap_or(24);
                if keep == 0 {
                    return Err(ConfigError::BackupKeep);
                }
                Some(crate::backup::Schedule { dir, every, keep })
            }
        };
        let positive = |field: &'static str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
            0 => Err(ConfigError::Zero { field }),
            n => Ok(n),
        };
        let rate_limit = positive("rate_limit", args.rate_limit.or(file.rate_limit), 50)?;
        let max_heartbeat_rate = positive(
            "max_heartbeat_rate",
            args.max_heartbeat_rate.or(file.max_heartbeat_rate),
            crate::state::DEFAULT_HEARTBEAT_RATE as u32,
        )?;
        let default_quota = match args.default_tenant_quota.or(file.default_tenant_quota) {
            Some(text) => crate::limits::parse_quota(&text).map_err(ConfigError::DefaultQuota)?,
            None => crate::limits::Limits::default().default_quota,
        };
        let limits = crate::limits::Limits {
            max_pending_per_cluster: positive("max_pending_per_cluster", args.max_pending_per_cluster.or(file.max_pending_per_cluster), 1000)?,
            max_clusters_per_tenant: positive("max_clusters_per_tenant", args.max_clusters_per_tenant.or(file.max_clusters_per_tenant), 100)?,
            default_quota,
            rate_limit,
            rate_burst: positive("rate_burst", args.rate_burst.or(file.rate_burst), rate_limit.saturating_mul(4))?,
        };
        let sqlite_path = args.sqlite_path.or(file.sqlite_path).unwrap_or_else(|| data_dir.join("herd.db"));
        let endpoints = if args.etcd_endpoints.is_empty() {
            let given = file.etcd_endpoints.unwrap_or_default();
            given
                .iter()
                .map(|u| u.parse::<url::Url>().map_err(|e| ConfigError::Store(format!("etcd_endpoints: `{u}`: {e}"))))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            args.etcd_endpoints
        };
        let store = match args.store.or(file.store).unwrap_or(StoreKind::Sqlite) {
            StoreKind::Sqlite => {
                if !endpoints.is_empty() {
                    return Err(ConfigError::Store("etcd_endpoints is for --store etcd; the store is sqlite".into()));
                }
                crate::store::Options::Sqlite(sqlite_path.clone())
            }
            StoreKind::Etcd => {
                if endpoints.is_empty() {
                    return Err(ConfigError::Store("etcd_endpoints: --store etcd needs the etcd client URLs (--etcd-endpoints URL,...)".into()));
                }
                if let Some(u) = endpoints.iter().find(|u| !matches!(u.scheme(), "http" | "https")) {
                    return Err(ConfigError::Store(format!("etcd_endpoints: `{u}` is not an http:// or https:// URL")));
                }
                if backups.is_some() {
                    return Err(ConfigError::Store(
                        "backup_dir: scheduled backups copy the SQLite store; back etcd up with `etcdctl snapshot save`".into(),
                    ));
                }
                let mut o = crate::store::etcd::Options::new(endpoints);
                o.ca_file = args.etcd_ca_file.or(file.etcd_ca_file);
                o.cert_file = args.etcd_cert_file.or(file.etcd_cert_file);
                o.key_file = args.etcd_key_file.or(file.etcd_key_file);
                if o.cert_file.is_some() != o.key_file.is_some() {
                    return Err(ConfigError::Store("etcd_cert_file and etcd_key_file go together: give both, or neither".into()));
                }
                if let Some(prefix) = args.etcd_prefix.or(file.etcd_prefix) {
                    if !prefix.starts_with('/') || prefix.len() < 2 {
                        return Err(ConfigError::Store(format!("etcd_prefix: `{prefix}` must start with / and name something, e.g. /herd/v1")));
                    }
                    o.prefix = prefix;
                }
                crate::store::Options::Etcd(o)
            }
        };
        let advertise_url = match (args.advertise_url, file.advertise_url) {
            (Some(u), _) => Some(u),
            (None, Some(u)) => Some(u.parse::<url::Url>().map_err(|e| ConfigError::Store(format!("advertise_url: `{u}`: {e}")))?),
            (None, None) => None,
        };
        if let Some(u) = advertise_url.as_ref().filter(|u| !matches!(u.scheme(), "http" | "https") || u.host().is_none()) {
            return Err(ConfigError::Store(format!("advertise_url: `{u}` is not an http:// or https:// URL with a host")));
        }
        let lease_ttl = args.lease_ttl.or(file.lease_ttl).unwrap_or(Duration::from_secs(5));
        if lease_ttl < Duration::from_secs(1) || lease_ttl > Duration::from_secs(60) {
            return Err(ConfigError::Store(format!("lease_ttl must be between 1s and 1m, got {lease_ttl:?}")));
        }
        if matches!(store, crate::store::Options::Etcd(_)) && advertise_url.is_none() && listen.ip().is_unspecified() {
            return Err(ConfigError::Store(format!(
                "advertise_url: listening on {listen}, this orchestrator cannot tell followers where to send clients: give --advertise-url, e.g. https://10.0.0.1:{}",
                listen.port()
            )));
        }
        let mut publish_ports = herd_api::validate::PortPolicy { first, last, ..Default::default() };
        publish_ports.reserved.insert(listen.port());
        Ok(Config {
            network,
            publish_ports,
            store,
            sqlite_path,
            listen,
            heartbeat_interval,
            max_heartbeat_rate,
            shutdown_timeout,
            fleet,
            tls,
            agent_ca_file: args.agent_ca_file.or(file.agent_ca_file),
            backups,
            limits,
            data_dir,
            advertise_url,
            lease_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(extra: &[&str]) -> Result<Config, ConfigError> {
        let args = ["herd-orchestrator", "--data-dir", "/nonexistent/herd"].iter().chain(extra).copied();
        match Args::try_parse_from(args) {
            Ok(a) => Config::resolve(a),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn shutdown_timeout_defaults_to_30s_and_is_bounded() {
        assert_eq!(resolve(&[]).map(|c| c.shutdown_timeout).ok(), Some(Duration::from_secs(30)));
        assert_eq!(resolve(&["--shutdown-timeout", "5s"]).map(|c| c.shutdown_timeout).ok(), Some(Duration::from_secs(5)));
        let err = resolve(&["--shutdown-timeout", "11m"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("shutdown_timeout must be at most 10m"), "{err}");
    }

    #[test]
    fn plain_http_off_loopback_is_refused_without_consent() {
        let err = resolve(&["--listen", "0.0.0.0:7480"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--insecure-http") && err.contains("tls-init"), "{err}");
        assert!(resolve(&["--listen", "0.0.0.0:7480", "--insecure-http"]).is_ok());
        assert!(resolve(&["--listen", "127.0.0.1:7480"]).is_ok_and(|c| c.tls.is_none()));
    }

    #[test]
    fn lost_host_graces_default_and_are_checked() {
        let fleet = resolve(&[]).map(|c| c.fleet).ok();
        assert_eq!(fleet.map(|f| (f.reschedule_after, f.datanode_replace_after)), Some((Duration::from_secs(60), Duration::from_secs(600))));
        let err = resolve(&["--reschedule-after", "2m", "--datanode-replace-after", "1m"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("datanode_replace_after (1m) must not be shorter than reschedule_after (2m)"), "{err}");
        let err = resolve(&["--heartbeat-interval", "2s", "--reschedule-after", "1s"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("reschedule_after (1s) must be at least three heartbeat intervals (6s)"), "{err}");
        assert_eq!(resolve(&[]).map(|c| c.fleet.max_lost_percent).ok(), Some(50));
        assert_eq!(resolve(&["--max-lost-percent", "100"]).map(|c| c.fleet.max_lost_percent).ok(), Some(100));
        let args = ["herd-orchestrator", "--data-dir", "/nonexistent/herd", "--max-lost-percent", "0"];
        let err = Args::try_parse_from(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--max-lost-percent") && err.contains("1..=100"), "{err}");
    }

    #[test]
    fn backups_and_limits() {
        assert!(resolve(&[]).map(|c| c.backups.is_none()).unwrap_or(false));
        let c = resolve(&["--backup-dir", "/b"]).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.backups.map(|b| (b.every, b.keep))), Ok(Some((Duration::from_secs(3600), 24))));
        let err = |extra: &[&str]| resolve(extra).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["--backup-keep", "3"]).contains("need backup_dir"));
        assert!(err(&["--backup-dir", "/b", "--backup-every", "10ms"]).contains("at least 1s"));
        assert!(err(&["--backup-dir", "/b", "--backup-keep", "0"]).contains("backup_keep"));
        assert!(err(&["--rate-limit", "0"]).starts_with("rate_limit must be at least 1"));
        assert!(err(&["--default-tenant-quota", "cpu=x"]).starts_with("default_tenant_quota: cpu"));
        let c = resolve(&["--rate-limit", "5", "--max-pending-per-cluster", "10"]).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| (c.limits.rate_limit, c.limits.rate_burst, c.limits.max_pending_per_cluster)), Ok((5, 20, 10)));
    }

    #[test]
    fn the_store_is_sqlite_unless_etcd_is_asked_for_with_its_endpoints() {
        let c = resolve(&[]).map_err(|e| e.to_string());
        assert!(matches!(c.map(|c| c.store), Ok(crate::store::Options::Sqlite(p)) if p == std::path::Path::new("/nonexistent/herd/herd.db")));
        let err = |extra: &[&str]| resolve(extra).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&["--store", "etcd"]).starts_with("etcd_endpoints: --store etcd needs"));
        assert!(err(&["--etcd-endpoints", "http://127.0.0.1:2379"]).starts_with("etcd_endpoints is for --store etcd"));
        assert!(err(&["--store", "etcd", "--etcd-endpoints", "unix:/x"]).contains("is not an http:// or https:// URL"));
        assert!(err(&["--store", "etcd", "--etcd-endpoints", "http://a:2379", "--etcd-cert-file", "/c"]).contains("go together"));
        assert!(err(&["--store", "etcd", "--etcd-endpoints", "http://a:2379", "--backup-dir", "/b"]).contains("etcdctl snapshot save"));
        let c = resolve(&["--store", "etcd", "--etcd-endpoints", "http://a:2379,https://b:2379", "--etcd-prefix", "/x"]);
        let Ok(Config { store: crate::store::Options::Etcd(o), .. }) = c else { panic!("not an etcd store: {c:?}") };
        assert_eq!((o.endpoints.len(), o.prefix.as_str()), (2, "/x"));
    }
}
