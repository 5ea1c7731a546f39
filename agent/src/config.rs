//! Agent configuration: flags, then `HERD_*` environment, then a YAML file, then what the
//! host itself reports (CPU count, memory).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use clap::Parser;
use herd_api::names::check_host_id;
use herd_api::quantity::{Cpu, Memory};
use serde::Deserialize;
use url::Url;

use crate::logs::rotate::Rotation;
use crate::logs::syslog;
use std::net::SocketAddr;

/// herd's per-host agent: registers this host with the orchestrator, heartbeats what runs
/// here, and makes Docker run exactly the containers the orchestrator places here.
#[derive(Debug, Parser)]
#[command(
    name = "herd-agent",
    version,
    after_help = "Examples:\n  herd-agent --orchestrator http://10.0.0.1:7480 --host-id rack1-h07 --data-dir /var/lib/herd/agent \\\n             --rack rack1 --label disk=ssd --data-disk /data/1 --data-disk /data/2 \\\n             --listen 0.0.0.0:7481 --log-max-size 16Mi --log-max-files 5 --syslog udp://10.0.0.9:514\n  herd-agent --orchestrator http://10.0.0.1:7480,http://10.0.0.2:7480,http://10.0.0.3:7480 \\\n             --host-id rack1-h07 --token-file /etc/herd/agent.token"
)]
pub struct Args {
    /// URL of the orchestrator's API; for a highly available control plane, its
    /// orchestrators' URLs, comma-separated: the agent follows the leader, and moves on to
    /// the next URL when one cannot be reached or has no leader.
    #[arg(long, env = "HERD_ORCHESTRATOR", value_name = "URL[,URL...]")]
    pub orchestrator: Option<String>,
    /// This host's id: a DNS label, stable for the host's life.
    #[arg(long, env = "HERD_HOST_ID")]
    pub host_id: Option<String>,
    /// Directory for the agent's state and instance logs.
    #[arg(long, env = "HERD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Rack label, used to spread replicas.
    #[arg(long, env = "HERD_RACK")]
    pub rack: Option<String>,
    /// A label for pools' `nodeSelector`, as KEY=VALUE; repeat for each label.
    #[arg(long = "label", env = "HERD_LABELS", value_delimiter = ',', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// CPU to offer, in cores or millicores (`8`, `7500m`) [default: all cores].
    #[arg(long, env = "HERD_CPUS", value_parser = Cpu::parse)]
    pub cpus: Option<Cpu>,
    /// Memory to offer (`64Gi`) [default: all of MemTotal].
    #[arg(long, env = "HERD_MEMORY", value_parser = Memory::parse)]
    pub memory: Option<Memory>,
    /// A data disk's mount point for DataNode blocks; repeat for each disk [default: DATA_DIR/disks/0].
    #[arg(long = "data-disk", env = "HERD_DATA_DISKS", value_delimiter = ',')]
    pub data_disks: Vec<PathBuf>,
    /// The agent's bearer token (an `agent` token bound to this host: `herd tokens create --agent --host HOST_ID`); wins over --token-file.
    #[arg(long, env = "HERD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the agent's bearer token (safer than --token, which `ps` shows).
    #[arg(long, env = "HERD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed an https --orchestrator's certificate, when it is not a
    /// public one (e.g. the ca.pem of `herd-orchestrator tls-init`).
    #[arg(long, env = "HERD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain for the log endpoint (--listen) to serve HTTPS with (with
    /// --tls-key); the orchestrator trusts its CA with its --agent-ca-file.
    #[arg(long, env = "HERD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HERD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Container networking: `herd` (the agent plumbs every container: bridge, veth, routes,
    /// firewall; needs root and the `nft` tool) or `none` (containers get loopback only)
    /// [default: herd].
    #[arg(long, env = "HERD_NETWORK")]
    pub network: Option<NetworkMode>,
    /// The bridge herd owns on this host [default: herd0].
    #[arg(long, env = "HERD_BRIDGE")]
    pub bridge: Option<String>,
    /// This host's underlay IPv4 address, which other hosts route its containers through
    /// [default: the address this host uses to reach the orchestrator it registers with].
    #[arg(long, env = "HERD_ADDRESS")]
    pub address: Option<Ipv4Addr>,
    /// MTU of container links, e.g. the underlay's when it is below 1500 [default: 1500].
    #[arg(long, env = "HERD_MTU")]
    pub mtu: Option<u32>,
    /// Let containers reach this destination although it is one of the host's own networks,
    /// link-local or a metadata address (all refused by default; the rest of the internet is
    /// allowed); repeat for each CIDR.
    #[arg(long = "allow-egress", env = "HERD_ALLOW_EGRESS", value_delimiter = ',', value_name = "CIDR")]
    pub allow_egress: Vec<Ipv4Net>,
    /// Address the log endpoint listens on (the orchestrator proxies `herd logs` to it).
    #[arg(long, env = "HERD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Rotate an instance's captured stdout/stderr file at this size (e.g. 16Mi) [default: 16Mi].
    #[arg(long, env = "HERD_LOG_MAX_SIZE", value_parser = Memory::parse)]
    pub log_max_size: Option<Memory>,
    /// Captured files kept per instance, the current one included (at least 2) [default: 5].
    #[arg(long, env = "HERD_LOG_MAX_FILES")]
    pub log_max_files: Option<u32>,
    /// Size of each of the 3 files of Docker's own bounded copy of a container's output (the
    /// `local` driver), which holds what is written while the agent is down [default: 8Mi].
    #[arg(long, env = "HERD_DOCKER_LOG_MAX_SIZE", value_parser = Memory::parse)]
    pub docker_log_max_size: Option<Memory>,
    /// Also forward every captured line to this syslog collector (RFC 5424):
    /// udp://HOST:PORT or tcp://HOST:PORT.
    #[arg(long, env = "HERD_SYSLOG", value_name = "URL")]
    pub syslog: Option<String>,
    /// YAML file with any of the settings above (keys as the flags, with `_`).
    #[arg(long, env = "HERD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How the agent networks containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// herd plumbs every container itself (DESIGN.md, Networking).
    #[default]
    Herd,
    /// Containers get loopback only; for hosts networked by other means, and for tests that
    /// run several agents in one network namespace.
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    orchestrator: Option<String>,
    host_id: Option<String>,
    data_dir: Option<PathBuf>,
    rack: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    cpus: Option<Cpu>,
    memory: Option<Memory>,
    #[serde(default)]
    data_disks: Vec<PathBuf>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    network: Option<NetworkMode>,
    bridge: Option<String>,
    address: Option<Ipv4Addr>,
    mtu: Option<u32>,
    #[serde(default)]
    allow_egress: Vec<Ipv4Net>,
    listen: Option<String>,
    log_max_size: Option<Memory>,
    log_max_files: Option<u32>,
    docker_log_max_size: Option<Memory>,
    syslog: Option<String>,
    /// Credentials per registry host (`registry.example.com`, `10.0.0.5:5000`) for pulling
    /// missing images; the file only (never a flag: `ps` shows flags).
    #[serde(default)]
    registries: std::collections::BTreeMap<String, crate::pull::RegistryAuth>,
}

/// The settings the agent runs with, all checked.
#[derive(Clone)]
pub struct Config {
    /// The orchestrators of the control plane (`--orchestrator`), in the order given; never empty.
    pub orchestrators: Vec<Url>,
    pub host_id: String,
    pub data_dir: PathBuf,
    pub rack: Option<String>,
    /// Labels reported to the orchestrator, for pools' `nodeSelector`.
    pub labels: BTreeMap<String, String>,
    pub cpu: Cpu,
    pub memory: Memory,
    pub data_disks: Vec<PathBuf>,
    /// The bearer token sent to the orchestrator.
    pub token: String,
    pub network: NetworkMode,
    /// The bridge herd owns (with `network: herd`).
    pub bridge: String,
    /// The underlay address; detected at start when `None`.
    pub address: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
    /// Destinations containers may reach although the host's egress filter refuses them.
    pub allow_egress: Vec<Ipv4Net>,
    /// Where the log endpoint listens.
    pub listen: SocketAddr,
    /// Rotation of the captured stdout/stderr files.
    pub log_rotation: Rotation,
    /// Size of each of the 3 files of Docker's own copy of container output.
    pub docker_log_max_size: u64,
    /// Syslog collector to forward captured lines to.
    pub syslog: Option<syslog::Target>,
    /// Credentials per registry host, for pulling missing images.
    pub registries: std::collections::BTreeMap<String, crate::pull::RegistryAuth>,
    /// Extra CA certificates (PEM) to trust for the orchestrator's HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Certificate chain and key the log endpoint serves HTTPS with.
    pub tls: Option<(PathBuf, PathBuf)>,
}

// NB: by hand, so the token never reaches a log through `{:?}`.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("orchestrators", &self.orchestrators)
            .field("host_id", &self.host_id)
            .field("data_dir", &self.data_dir)
            .field("rack", &self.rack)
            .field("labels", &self.labels)
            .field("cpu", &self.cpu)
            .field("memory", &self.memory)
            .field("data_disks", &self.data_disks)
            .field("network", &self.network)
            .field("bridge", &self.bridge)
            .field("address", &self.address)
            .field("mtu", &self.mtu)
            .field("allow_egress", &self.allow_egress)
            .field("listen", &self.listen)
            .field("log_rotation", &self.log_rotation)
            .field("docker_log_max_size", &self.docker_log_max_size)
            .field("syslog", &self.syslog)
            .finish_non_exhaustive()
    }
}

/// Every problem with the configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    pub fn resolve(args: Args) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let file = match &args.config {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => herd_api::yaml::from_str::<File>(&text).unwrap_or_else(|e| {
                    problems.push(format!("config file {}: {e}", path.display()));
                    File::default()
                }),
                Err(e) => {
                    problems.push(format!("cannot read config file {}: {e}", path.display()));
                    File::default()
                }
            },
            None => File::default(),
        };
        let orchestrators = match args.orchestrator.or(file.orchestrator) {
            None => {
                problems.push("--orchestrator is required (the orchestrator's URL, e.g. http://10.0.0.1:7480)".into());
                None
            }
            Some(u) => herd_api::orchestrators::parse_list("--orchestrator", &u).map_err(|e| problems.push(e)).ok(),
        };
        let host_id = args.host_id.or(file.host_id).or_else(hostname);
        match &host_id {
            None => problems.push("--host-id is required (no hostname could be read)".into()),
            Some(id) => {
                if let Err(m) = check_host_id(id) {
                    problems.push(format!("--host-id: {m}"));
                }
            }
        }
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("/var/lib/herd/agent"));
        let mut data_disks = if args.data_disks.is_empty() { file.data_disks } else { args.data_disks };
        if data_disks.is_empty() {
            data_disks.push(data_dir.join("disks").join("0"));
        }
        for d in &data_disks {
            if !d.is_absolute() {
                problems.push(format!("--data-disk: `{}` must be an absolute path", d.display()));
            }
        }
        let mut labels = file.labels;
        if !args.labels.is_empty() {
            labels.clear();
            for l in &args.labels {
                match l.split_once('=') {
                    Some((k, v)) => {
                        labels.insert(k.to_string(), v.to_string());
                    }
                    None => problems.push(format!("--label: `{}` is not KEY=VALUE (e.g. disk=ssd)", l.escape_default())),
                }
            }
        }
        for (k, v) in &labels {
            if let Err(m) = herd_api::validate::check_label(k, v) {
                problems.push(format!("--label {k}={v}: {m}"));
            }
        }
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                problems.push("--tls-cert and --tls-key go together: give both, or neither".into());
                None
            }
        };
        let cpu = args.cpus.or(file.cpus).unwrap_or_else(detect_cpu);
        let memory = args.memory.or(file.memory).unwrap_or_else(detect_memory);
        if cpu.0 == 0 {
            problems.push("--cpus must be more than 0".into());
        }
        if memory.0 == 0 {
            problems.push("--memory must be more than 0 (and could not be read from /proc/meminfo)".into());
        }
        let token = match (args.token, args.token_file.or(file.token_file)) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(t) => Some(t.trim().to_string()),
                Err(e) => {
                    problems.push(format!("--token-file: cannot read {}: {e}", path.display()));
                    None
                }
            },
            (None, None) => None,
        };
        let token = token.filter(|t| !t.is_empty());
        if token.is_none() && !problems.iter().any(|p| p.starts_with("--token-file")) {
            problems.push("--token or --token-file is required (an agent token for this host from an admin: `herd tokens create --agent --host HOST_ID`)".into());
        }
        let bridge = args.bridge.or(file.bridge).unwrap_or_else(|| crate::net::host::DEFAULT_BRIDGE.into());
        if bridge.is_empty() || bridge.len() > 15 || !bridge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.push(format!("--bridge: `{bridge}` is not a Linux interface name (1 to 15 letters, digits, `-`, `_`)"));
        }
        let mtu = args.mtu.or(file.mtu);
        if mtu.is_some_and(|m| !(576..=65535).contains(&m)) {
            problems.push("--mtu must be from 576 to 65535".into());
        }
        let listen_s = args.listen.or(file.listen).unwrap_or_else(|| "0.0.0.0:7481".into());
        let listen = listen_s.parse::<SocketAddr>().map_err(|_| {
            problems.push(format!("--listen: `{listen_s}` is not an address and port, e.g. 0.0.0.0:7481"));
        });
        let mut log_rotation = Rotation::default();
        if let Some(size) = args.log_max_size.or(file.log_max_size) {
            if size.0 < 4096 {
                problems.push(format!("--log-max-size: {size} is too small; use at least 4Ki (e.g. 16Mi)"));
            }
            log_rotation.max_bytes = size.0;
        }
        if let Some(n) = args.log_max_files.or(file.log_max_files) {
            if !(2..=1000).contains(&n) {
                problems.push(format!("--log-max-files: {n} is out of range; keep 2 to 1000 files"));
            }
            log_rotation.max_files = n;
        }
        let docker_log_max_size = args.docker_log_max_size.or(file.docker_log_max_size).map(|m| m.0).unwrap_or(8 << 20);
        if docker_log_max_size < (64 << 10) {
            problems.push(format!("--docker-log-max-size: {docker_log_max_size} bytes is too small; use at least 64Ki (e.g. 8Mi)"));
        }
        let syslog = match args.syslog.or(file.syslog).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => s.parse::<syslog::Target>().map_err(|m| problems.push(format!("--syslog: {m}"))).ok(),
        };
        match (orchestrators, host_id, token, listen, problems.is_empty()) {
            (Some(orchestrators), Some(host_id), Some(token), Ok(listen), true) => Ok(Config {
                listen,
                log_rotation,
                docker_log_max_size,
                syslog,
                orchestrators,
                host_id,
                data_dir,
                rack: args.rack.or(file.rack),
                labels,
                cpu,
                memory,
                data_disks,
                token,
                network: args.network.or(file.network).unwrap_or_default(),
                bridge,
                address: args.address.or(file.address),
                mtu,
                allow_egress: if args.allow_egress.is_empty() { file.allow_egress } else { args.allow_egress },
                registries: file.registries,
                ca_file: args.ca_file.or(file.ca_file),
                tls,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().split('.').next()?.to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn detect_cpu() -> Cpu {
    Cpu(std::thread::available_parallelism().map(|n| n.get() as u64 * 1000).unwrap_or(1000))
}

fn detect_memory() -> Memory {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Memory(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_problems_reported_at_once() {
        let args = Args::parse_from([
            "herd-agent", "--orchestrator", "ftp://x", "--host-id", "Bad_Id", "--data-disk", "rel", "--listen", "nowhere",
            "--log-max-size", "1Ki", "--log-max-files", "1", "--syslog", "http://collector",
        ]);
        let Err(ConfigError(problems)) = Config::resolve(args) else { panic!("bad config accepted") };
        assert_eq!(problems.len(), 8, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("--token")), "{problems:?}");
        for flag in ["--listen", "--log-max-size", "--log-max-files", "--syslog"] {
            assert!(problems.iter().any(|p| p.starts_with(flag)), "{flag} not named: {problems:?}");
        }
    }

    #[test]
    fn labels_are_key_value_pairs_and_checked() {
        let base = ["herd-agent", "--orchestrator", "http://o:7480", "--host-id", "h1", "--token", "t"];
        let c = Config::resolve(Args::parse_from(base.iter().copied().chain(["--label", "disk=ssd", "--label", "zone=a"]))).unwrap();
        assert_eq!(c.labels, BTreeMap::from([("disk".to_string(), "ssd".to_string()), ("zone".to_string(), "a".to_string())]));
        let Err(ConfigError(problems)) = Config::resolve(Args::parse_from(base.iter().copied().chain(["--label", "ssd", "--label=-x=y"])))
        else {
            panic!("bad labels accepted")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`ssd` is not KEY=VALUE") && problems[1].contains("label key"), "{problems:?}");
    }

    #[test]
    fn log_settings_default_to_safe_values() {
        let c = Config::resolve(Args::parse_from(["herd-agent", "--orchestrator", "http://o:7480", "--host-id", "h1", "--token", "t"])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:7481".parse().unwrap());
        assert_eq!(c.log_rotation, Rotation { max_bytes: 16 << 20, max_files: 5 });
        assert!(c.syslog.is_none());
    }

    #[test]
    fn orchestrators_are_a_list_and_a_bad_entry_is_named() {
        let base = ["herd-agent", "--host-id", "h1", "--token", "t", "--orchestrator"];
        let c = Config::resolve(Args::parse_from(base.iter().copied().chain(["http://o1:7480, https://o2:7480"]))).unwrap();
        let urls: Vec<&str> = c.orchestrators.iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://o1:7480/", "https://o2:7480/"]);
        let Err(ConfigError(problems)) = Config::resolve(Args::parse_from(base.iter().copied().chain(["http://o1:7480,o2:7480"]))) else {
            panic!("bad URL accepted")
        };
        assert_eq!(problems, ["--orchestrator: `o2:7480` is not an http(s) URL; write e.g. http://10.0.0.1:7480"]);
    }

    #[test]
    fn detection_finds_something() {
        assert!(detect_cpu().0 >= 1000);
        assert!(detect_memory().0 > 0);
    }
}
