//! The command line: clap definitions with their help text, and the parsers for
//! `TENANT/CLUSTER` and `POOL=N`. Every argument is checked here, so a malformed one is a
//! usage error (exit code 2) before any request is sent.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use herd_api::Role;
use herd_api::names::check_dns_label;
use herd_api::spec::MAX_REPLICAS;

use crate::output::Format;

/// herd: multi-tenant Hadoop on your own hosts, in Docker.
///
/// The ops CLI for herd-orchestrator: create tenants, apply cluster specs, watch instances
/// (desired next to observed state), scale DataNode and NodeManager pools independently and
/// inspect hosts. It talks only to the orchestrator's HTTP API.
#[derive(Debug, Parser)]
#[command(
    name = "herd",
    version,
    arg_required_else_help = true,
    after_help = "Examples:
  herd tenants create acme
  herd apply -f manifests/examples/quickstart.yaml --wait
  herd status acme/quickstart
  herd scale acme/quickstart datanode=5 nodemanager=3 --wait
  herd hosts -o yaml
  HERD_SERVER=http://10.0.0.5:7480 HERD_TOKEN_FILE=~/.herd-token herd status
  herd --server https://10.0.0.5:7480,https://10.0.0.6:7480,https://10.0.0.7:7480 hosts

Every command but --help needs a token: --token, HERD_TOKEN, or a file named by --token-file
or HERD_TOKEN_FILE. An admin issues tokens with `herd tokens create`; the first admin token
is in the orchestrator's data directory, file admin.token."
)]
pub struct Cli {
    /// The orchestrator's URL; for a highly available control plane, its orchestrators' URLs,
    /// comma-separated: herd follows the leader, and moves on to the next URL when one cannot
    /// be reached or has no leader.
    #[arg(
        long,
        global = true,
        env = "HERD_SERVER",
        default_value = "http://127.0.0.1:7480",
        value_name = "URL[,URL...]"
    )]
    pub server: String,
    /// The API token's secret; wins over --token-file (prefer HERD_TOKEN or a file: `ps` shows arguments).
    #[arg(long, global = true, env = "HERD_TOKEN", hide_env_values = true, value_name = "SECRET")]
    pub token: Option<String>,
    /// A file holding the API token's secret, e.g. the orchestrator's admin.token.
    #[arg(long, global = true, env = "HERD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed an https --server's certificate, when it is not a public
    /// one (e.g. the ca.pem of `herd-orchestrator tls-init`).
    #[arg(long, global = true, env = "HERD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format of reads and of the results of changes.
    ///
    /// `json` and `yaml` print the API's objects as they are, for scripts; one-line results
    /// then go to stderr, as progress always does, so stdout parses as a whole. `wide` is a
    /// table with more columns where a command has more to show (`herd status`: racks).
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// Every `herd` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update a cluster from a spec file.
    ///
    /// The spec (YAML or JSON) is parsed and validated here first, so every mistake is reported
    /// with its field and line before anything is sent. Then it is stored as the cluster's
    /// desired state: `created` for a new cluster, `configured` when it changed (the generation
    /// goes up), `unchanged` when it is what is already stored. Applying the same file twice is
    /// harmless. The tenant named in the spec must exist (`herd tenants create`).
    ///
    /// With --wait, herd then watches until every instance runs on its host, printing progress
    /// on stderr, and prints the instances; on timeout it says which instances are not running
    /// and why, and exits with code 1.
    #[command(after_help = "Examples:
  herd apply -f cluster.yaml
  herd apply -f cluster.yaml --wait --timeout 10m
  cat cluster.yaml | herd apply -f -
  herd apply -f cluster.yaml -o json")]
    Apply {
        /// The spec file (YAML or JSON); `-` reads standard input.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// Show a cluster's instances, desired next to observed state.
    ///
    /// One row per instance: its cluster, name and pool; the host it is placed on (`-` while
    /// pending); its CPU and memory; the desired state (always `running`); the state its host's
    /// agent last reported (`pending` when not placed, `-` when not reported yet); and a detail:
    /// why it is pending, the agent's error, or how long it has been up.
    /// Without an argument, every cluster of every tenant. `-o wide` adds each instance's
    /// rack and, per cluster, how many instances of each pool every rack holds.
    /// A cluster of more than 100 instances is summarised: per pool how many exist, run, wait
    /// for a host, leave or are unknown, then only the instances that do not run; `--all`
    /// (or `-o wide`) lists every instance.
    #[command(after_help = "Examples:
  herd status
  herd status acme/prod
  herd status acme/prod --all
  herd status acme/prod -o wide
  herd status acme/prod -o json")]
    Status {
        /// The cluster to show; all clusters when omitted.
        #[arg(value_name = "TENANT/CLUSTER")]
        cluster: Option<ClusterRef>,
        /// List every instance of a big cluster instead of a summary (JSON and YAML too:
        /// without it they hold the first page of instances and `instances_next`).
        #[arg(long)]
        all: bool,
    },

    /// Set the number of instances of one or more pools.
    ///
    /// Each POOL=N sets one pool's replicas and keeps the rest of the spec, so DataNodes and
    /// NodeManagers scale independently. Every argument is checked before the first change.
    /// The pool must already be in the cluster's spec; add new pools with `herd apply`.
    ///
    /// Shrinking never loses data: in a cluster with a NameNode, leaving DataNodes (the ones
    /// holding the fewest blocks) are decommissioned first and removed only once HDFS has
    /// copied their blocks; with a ResourceManager, leaving NodeManagers are drained (their
    /// containers finish, up to the pool's lifecycle.drainTimeoutSeconds). `herd status`
    /// shows each leaving instance's phase. Growing while some are still leaving takes them
    /// back first. A DataNode scale-down that would leave fewer live DataNodes than
    /// hdfs.replication is refused unless --force.
    /// With --wait, waits until every instance runs and the leaving ones are gone.
    #[command(after_help = "Examples:
  herd scale acme/prod datanode=5
  herd scale acme/prod nodemanager=0 datanode=3 --wait
  herd scale acme/prod datanode=2 --force   # below hdfs.replication: audited, risks data")]
    Scale {
        /// The cluster to scale.
        #[arg(value_name = "TENANT/CLUSTER")]
        cluster: ClusterRef,
        /// Pools and their new replica counts, e.g. datanode=5.
        #[arg(value_name = "POOL=N", required = true)]
        pools: Vec<PoolReplicas>,
        /// Remove DataNodes even below hdfs.replication live ones, or before their
        /// decommission completes (one at a time, once HDFS reports no missing blocks).
        /// Under-replicated blocks are lost if a remaining DataNode fails. Audited.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },

    /// List hosts: capacity, allocation and liveness.
    ///
    /// One row per host whose agent has registered: its id, `ready` while heartbeats arrive or
    /// `lost` after three missed ones, its rack, CPU and memory placed on it out of what it
    /// offers, how many instances it holds, when its agent was last heard from, and the
    /// conditions its agent reports (e.g. `log-disk-full`), each explained below the table.
    ///
    /// With a subcommand, operates on one host: cordon it (no new placements), drain it
    /// (everything moves elsewhere, DataNodes decommissioned and NodeManagers drained first),
    /// or delete it once it is empty.
    #[command(after_help = "Examples:
  herd hosts
  herd hosts -o yaml
  herd hosts cordon rack1-h07
  herd hosts drain rack1-h07 --wait
  herd hosts delete rack1-h07")]
    Hosts {
        #[command(subcommand)]
        action: Option<HostCommand>,
    },

    /// Print an instance's stdout and stderr, as its host captured them.
    ///
    /// The orchestrator streams them from the agent of the host that holds the instance, so
    /// this works from anywhere the API is reachable. Lines are printed as the daemon wrote
    /// them (any bytes, lines longer than 64 KiB whole). With -f, new lines follow as they
    /// are written, across file rotation, until interrupted. The daemon's own log files
    /// (HADOOP_LOG_DIR) are in the instance's folder on its host, next to these.
    ///
    /// -o json prints one JSON object per line ({"time","stream","line"}; a line that is not
    /// UTF-8 comes escaped, with "escaped": true), -o yaml one YAML document per line.
    #[command(after_help = "Examples:
  herd logs acme/prod/datanode-0
  herd logs acme/prod/datanode-0 -f --tail 100
  herd logs acme/prod/nodemanager-1 --since 10m --stream stderr
  herd logs acme/prod/datanode-0 --since 2026-11-23T09:00:00Z --timestamps
  herd logs acme/prod/datanode-0 --tail 5 -o json")]
    Logs {
        /// The instance, as `herd status` lists it.
        #[arg(value_name = "TENANT/CLUSTER/INSTANCE")]
        instance: InstanceArg,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Only lines since this long ago (10m, 1h30m) or this time (RFC 3339).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<String>,
        /// Only the last N lines (then follow, with -f).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        tail: Option<u32>,
        /// Only one stream.
        #[arg(long, value_parser = ["stdout", "stderr"])]
        stream: Option<String>,
        /// Prefix each line with its timestamp (RFC 3339, UTC, as Docker recorded it).
        #[arg(short, long)]
        timestamps: bool,
    },

    /// Delete a cluster.
    ///
    /// The cluster and its instances leave the desired state at once; each host's agent then
    /// stops and removes their containers at its next heartbeat. Asks for confirmation
    /// first (--yes to skip; without a terminal --yes is required). HDFS data folders stay
    /// on their hosts, listed after the deletion, unless --purge-data.
    #[command(after_help = "Examples:
  herd delete acme/prod
  herd delete acme/prod --yes --wait
  herd delete acme/prod --yes --purge-data")]
    Delete {
        /// The cluster to delete.
        #[arg(value_name = "TENANT/CLUSTER")]
        cluster: ClusterRef,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
        /// Also remove the instances' data folders on their hosts (HDFS blocks, NameNode
        /// metadata): the data is gone for good.
        #[arg(long)]
        purge_data: bool,
        /// Wait until the orchestrator no longer lists the cluster.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits before giving up (e.g. 90s, 5m).
        #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, requires = "wait")]
        timeout: Duration,
    },

    /// Create, list and delete tenants; show and set their quotas (admin).
    ///
    /// A tenant owns clusters; it must exist before a spec naming it is applied. Its quota caps
    /// the CPU, memory and disk all its clusters may ask for together.
    #[command(
        subcommand,
        arg_required_else_help = true,
        after_help = "Examples:
  herd tenants list
  herd tenants create acme --cpu 16 --memory 64Gi --disk 2Ti
  herd tenants quota acme --cpu 32
  herd tenants delete acme"
    )]
    Tenants(TenantCommand),

    /// Issue, list and revoke API tokens (admin).
    ///
    /// A token is `admin` (everything), `agent` (the agent protocol only, for herd-agent) or
    /// scoped to one tenant (its clusters and its own record; other tenants' resources look
    /// as if they did not exist). The secret is printed once, when the token is created.
    #[command(
        subcommand,
        arg_required_else_help = true,
        after_help = "Examples:
  herd tokens create --tenant acme --description 'acme CI' > acme.token
  herd tokens create --agent --host rack1-h07 > agent.token
  herd tokens list
  herd tokens revoke 3f2a9c1b7d4e"
    )]
    Tokens(TokenCommand),

    /// Show the audit trail: who changed what, when (admin).
    ///
    /// One row per change, oldest first: when, the token that made it, the action, the
    /// resource and its generation before and after.
    #[command(after_help = "Examples:
  herd audit
  herd audit --limit 20 -o json")]
    Audit {
        /// Show only the last N changes.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

/// `herd tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print its secret (on stdout, alone, so it can be redirected to a file).
    #[command(after_help = "Examples:
  herd tokens create --tenant acme > acme.token
  herd tokens create --admin --description 'ops on-call'
  herd tokens create --agent --host rack1-h07 > agent.token
  herd tokens create --agent --host rack1-h07 -o json")]
    #[command(group = clap::ArgGroup::new("scope").required(true).multiple(false))]
    Create {
        /// An admin token.
        #[arg(long, group = "scope")]
        admin: bool,
        /// An agent token, for herd-agent's --token-file.
        #[arg(long, group = "scope")]
        agent: bool,
        /// A token for this tenant only.
        #[arg(long, group = "scope", value_name = "TENANT", value_parser = parse_tenant_name)]
        tenant: Option<String>,
        /// With --agent (and required by it): the one host the token may speak for.
        #[arg(long, requires = "agent", required_if_eq("agent", "true"), value_name = "HOST_ID", value_parser = parse_host_id)]
        host: Option<String>,
        /// Who or what holds it, for the audit trail.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List tokens (never their secrets).
    #[command(after_help = "Examples:
  herd tokens list
  herd tokens list -o yaml")]
    List,
    /// Revoke a token; it stops working at once.
    #[command(after_help = "Examples:
  herd tokens revoke 3f2a9c1b7d4e")]
    Revoke {
        /// The token's id, as `herd tokens list` shows it.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `herd hosts ...`: operations on one host (admin).
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts (the default).
    List,
    /// Show one host, with its drain's progress.
    #[command(after_help = "Examples:
  herd hosts get rack1-h07 -o yaml")]
    Get {
        #[arg(value_name = "HOST_ID", value_parser = parse_host_id)]
        host: String,
    },
    /// Stop placing anything new on a host; what runs there stays.
    #[command(after_help = "Examples:
  herd hosts cordon rack1-h07")]
    Cordon {
        #[arg(value_name = "HOST_ID", value_parser = parse_host_id)]
        host: String,
    },
    /// Place on a host again (also ends a drain; what already left stays where it went).
    #[command(after_help = "Examples:
  herd hosts uncordon rack1-h07")]
    Uncordon {
        #[arg(value_name = "HOST_ID", value_parser = parse_host_id)]
        host: String,
    },
    /// Empty a host for maintenance: cordon it, then move everything on it elsewhere.
    ///
    /// DataNodes are decommissioned through their NameNode (a replacement DataNode starts
    /// elsewhere first, and the old one leaves only when HDFS holds its blocks elsewhere) and
    /// NodeManagers drain through their ResourceManager; other instances without data are
    /// placed again elsewhere, masters last. A NameNode is never moved (its metadata lives on
    /// the host): the drain says so. With --wait, progress is shown until the host is empty.
    #[command(after_help = "Examples:
  herd hosts drain rack1-h07
  herd hosts drain rack1-h07 --wait --timeout 2h")]
    Drain {
        #[arg(value_name = "HOST_ID", value_parser = parse_host_id)]
        host: String,
        /// Wait until nothing is left to move, showing progress on stderr.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (e.g. 30m, 2h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, requires = "wait")]
        timeout: Duration,
    },
    /// Forget a host: refused while anything is placed on it (drain it first). Releases its
    /// subnet lease and revokes its agent tokens.
    #[command(after_help = "Examples:
  herd hosts delete rack1-h07")]
    Delete {
        #[arg(value_name = "HOST_ID", value_parser = parse_host_id)]
        host: String,
    },
}

/// Quota flags: each a quantity, or `unlimited`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// The most CPU all the tenant's containers may ask for, e.g. 16 or 500m.
    #[arg(long, value_name = "CPU|unlimited")]
    pub cpu: Option<Limit<herd_api::quantity::Cpu>>,
    /// The most memory, e.g. 64Gi.
    #[arg(long, value_name = "MEMORY|unlimited")]
    pub memory: Option<Limit<herd_api::quantity::Memory>>,
    /// The most data-disk space, e.g. 2Ti.
    #[arg(long, value_name = "DISK|unlimited")]
    pub disk: Option<Limit<herd_api::quantity::Memory>>,
    /// The share the scheduler guarantees the tenant, within the maximums: CPU,MEMORY[,DISK]
    /// (e.g. 4,16Gi,500Gi), or `none`.
    #[arg(long, value_name = "CPU,MEMORY[,DISK]|none")]
    pub guaranteed: Option<Guarantee>,
}

/// A guaranteed share, or `None` for `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guarantee(pub Option<herd_api::quantity::Resources>);

impl FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Guarantee(None));
        }
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let (cpu, memory, disk) = match parts.as_slice() {
            [cpu, memory] => (cpu, memory, None),
            [cpu, memory, disk] => (cpu, memory, Some(disk)),
            _ => return Err(format!("`{s}` is not CPU,MEMORY[,DISK]; write e.g. 4,16Gi or 4,16Gi,500Gi, or none")),
        };
        Ok(Guarantee(Some(herd_api::quantity::Resources {
            cpu: herd_api::quantity::Cpu::parse(cpu)?,
            memory: herd_api::quantity::Memory::parse(memory)?,
            disk: disk.map(|d| herd_api::quantity::Memory::parse(d)).transpose()?.unwrap_or_default(),
        })))
    }
}

impl QuotaArgs {
    /// Whether any flag was given.
    pub fn any(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some() || self.disk.is_some() || self.guaranteed.is_some()
    }

    /// `quota` with the given flags applied.
    pub fn apply_to(&self, mut quota: herd_api::wire::Quota) -> herd_api::wire::Quota {
        if let Some(l) = &self.cpu {
            quota.cpu = l.0;
        }
        if let Some(l) = &self.memory {
            quota.memory = l.0;
        }
        if let Some(l) = &self.disk {
            quota.disk = l.0;
        }
        if let Some(g) = &self.guaranteed {
            quota.guaranteed = g.0;
        }
        quota
    }
}

/// A limit: a quantity, or `None` for `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<T>(pub Option<T>);

impl FromStr for Limit<herd_api::quantity::Cpu> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "unlimited" {
            return Ok(Limit(None));
        }
        herd_api::quantity::Cpu::parse(s).map(|c| Limit(Some(c)))
    }
}

impl FromStr for Limit<herd_api::quantity::Memory> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "unlimited" {
            return Ok(Limit(None));
        }
        herd_api::quantity::Memory::parse(s).map(|m| Limit(Some(m)))
    }
}

/// `herd tenants ...`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants.
    ///
    /// One row per tenant: when it was created (UTC), and for CPU, memory and disk what its
    /// clusters ask for out of its quota (`-` for no limit).
    #[command(after_help = "Examples:
  herd tenants list
  herd tenants list -o json")]
    List,

    /// Create a tenant, optionally with a quota.
    ///
    /// The name is a DNS label: 1-63 lower-case letters, digits and `-`, starting and ending
    /// with a letter or digit. Creating a tenant that exists changes nothing.
    #[command(after_help = "Examples:
  herd tenants create acme                     (the orchestrator's default quota)
  herd tenants create acme --cpu 16 --memory 64Gi --disk 2Ti
  herd tenants create platform --unlimited")]
    Create {
        /// The tenant's name, e.g. acme.
        #[arg(value_name = "NAME", value_parser = parse_tenant_name)]
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
        /// No limit at all. Without it or a limit flag, the tenant gets the orchestrator's
        /// default quota (herd-orchestrator --default-tenant-quota).
        #[arg(long, conflicts_with_all = ["cpu", "memory", "disk", "guaranteed"])]
        unlimited: bool,
    },

    /// Show a tenant's quota and usage, or change it.
    ///
    /// Without flags, shows the quota and what the tenant's clusters ask for now. Each flag
    /// changes one limit and keeps the others; `unlimited` removes a limit. A lower limit
    /// stops growth; clusters already above it keep running and may scale down.
    #[command(after_help = "Examples:
  herd tenants quota acme
  herd tenants quota acme --cpu 32 --memory 128Gi
  herd tenants quota acme --guaranteed 8,32Gi
  herd tenants quota acme --disk unlimited")]
    Quota {
        /// The tenant.
        #[arg(value_name = "NAME", value_parser = parse_tenant_name)]
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },

    /// Delete a tenant that has no clusters; its tokens are revoked.
    #[command(after_help = "Examples:
  herd tenants delete acme")]
    Delete {
        /// The tenant.
        #[arg(value_name = "NAME", value_parser = parse_tenant_name)]
        name: String,
    },
}

/// `--wait` and `--timeout`, shared by the commands that change instances.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until every instance runs on its host, showing progress on stderr.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits before giving up (e.g. 90s, 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

impl WaitArgs {
    /// How long to wait, when asked to.
    pub fn limit(&self) -> Option<Duration> {
        self.wait.then_some(self.timeout)
    }
}

impl Cli {
    /// Parses the command line and checks what clap cannot check alone; exits with code 2
    /// and the usage on any mistake, as clap does.
    pub fn parse_checked() -> Self {
        let cli = Self::parse();
        if let Command::Scale { pools, .. } = &cli.command {
            let mut seen = BTreeSet::new();
            if let Some(twice) = pools.iter().find(|p| !seen.insert(p.pool)) {
                let mut herd = Self::command();
                herd.build();
                // NB: the usage printed is the subcommand's when it can be found (it always can).
                let cmd = match herd.find_subcommand_mut("scale") {
                    Some(scale) => scale,
                    None => &mut herd,
                };
                cmd.error(
                    ErrorKind::ArgumentConflict,
                    format!("pool `{}` is given more than once", twice.pool),
                )
                .exit();
            }
        }
        cli
    }
}

/// A cluster named on the command line as `TENANT/CLUSTER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    pub tenant: String,
    pub name: String,
}

impl FromStr for ClusterRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let example = "write TENANT/CLUSTER, e.g. acme/prod";
        let Some((tenant, name)) = s.split_once('/') else {
            return Err(format!("`{s}` names no cluster; {example}"));
        };
        if name.contains('/') {
            return Err(format!("`{s}` has more than one `/`; {example}"));
        }
        check_dns_label(tenant).map_err(|m| format!("tenant {m}; {example}"))?;
        check_dns_label(name).map_err(|m| format!("cluster {m}; {example}"))?;
        Ok(Self {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// One `POOL=N` argument of `herd scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolReplicas {
    pub pool: Role,
    pub replicas: u32,
}

impl FromStr for PoolReplicas {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((pool, n)) = s.split_once('=') else {
            return Err(format!("`{s}` is not POOL=N; write e.g. datanode=5"));
        };
        let pool: Role = pool.trim().parse()?;
        let replicas = n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_REPLICAS)
            .ok_or_else(|| {
                format!(
                    "`{n}` is not a number of replicas (a whole number from 0 to {MAX_REPLICAS})"
                )
            })?;
        Ok(Self { pool, replicas })
    }
}

fn parse_host_id(s: &str) -> Result<String, String> {
    herd_api::names::check_host_id(s).map(|()| s.to_string()).map_err(|m| format!("host id {m}"))
}

/// An instance named on the command line as `TENANT/CLUSTER/INSTANCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceArg {
    pub tenant: String,
    pub cluster: String,
    pub name: String,
}

impl FromStr for InstanceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let example = "write TENANT/CLUSTER/INSTANCE, e.g. acme/prod/datanode-0 (see `herd status`)";
        let parts: Vec<&str> = s.split('/').collect();
        let [tenant, cluster, name] = parts[..] else {
            return Err(format!("`{s}` does not name an instance; {example}"));
        };
        for (what, v) in [("tenant", tenant), ("cluster", cluster), ("instance", name)] {
            check_dns_label(v).map_err(|m| format!("{what} {m}; {example}"))?;
        }
        Ok(Self { tenant: tenant.into(), cluster: cluster.into(), name: name.into() })
    }
}

impl fmt::Display for InstanceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.cluster, self.name)
    }
}

fn parse_since(s: &str) -> Result<String, String> {
    herd_api::logs::parse_since(s).map(|_| s.to_string())
}

fn parse_tenant_name(s: &str) -> Result<String, String> {
    check_dns_label(s)
        .map(|()| s.to_string())
        .map_err(|m| format!("tenant name {m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_refs() {
        let got: Result<ClusterRef, _> = "acme/prod-1".parse();
        assert_eq!(
            got,
            Ok(ClusterRef {
                tenant: "acme".into(),
                name: "prod-1".into()
            })
        );
        assert_eq!(got.map(|c| c.to_string()), Ok("acme/prod-1".to_string()));
        for (bad, says) in [
            ("acme", "names no cluster"),
            ("acme/", "cluster must not be empty"),
            ("/prod", "tenant must not be empty"),
            ("Acme/prod", "tenant `Acme` may contain only"),
            ("acme/prod_1", "cluster `prod_1` may contain only"),
            ("acme/prod/x", "more than one `/`"),
            ("acme/-prod", "must start and end"),
        ] {
            match bad.parse::<ClusterRef>() {
                Err(e) => assert!(
                    e.contains(says) && e.contains("TENANT/CLUSTER"),
                    "{bad}: {e}"
                ),
                Ok(c) => panic!("{bad} was accepted as {c}"),
            }
        }
    }

    #[test]
    fn pool_replicas() {
        assert_eq!(
            "datanode=5".parse(),
            Ok(PoolReplicas {
                pool: Role::Datanode,
                replicas: 5
            })
        );
        assert_eq!(
            "nodemanager=0".parse(),
            Ok(PoolReplicas {
                pool: Role::Nodemanager,
                replicas: 0
            })
        );
        for (bad, says) in [
            ("datanode", "is not POOL=N"),
            ("datanodes=5", "unknown pool `datanodes`"),
            ("datanode=-1", "`-1` is not a number of replicas"),
            ("datanode=x", "`x` is not a number"),
            ("datanode=", "`` is not a number"),
            ("datanode=1.5", "`1.5` is not a number"),
            ("datanode=10001", "from 0 to 10000"),
        ] {
            match bad.parse::<PoolReplicas>() {
                Err(e) => assert!(e.contains(says), "{bad}: {e}"),
                Ok(p) => panic!("{bad} was accepted as {p:?}"),
            }
        }
    }

    #[test]
    fn guarantees() {
        use herd_api::quantity::{Cpu, Memory, Resources};
        assert_eq!("none".parse(), Ok(Guarantee(None)));
        assert_eq!(
            "4,16Gi".parse(),
            Ok(Guarantee(Some(Resources { cpu: Cpu(4000), memory: Memory(16 << 30), disk: Memory(0) })))
        );
        assert_eq!(
            "500m, 1Gi, 1Ti".parse(),
            Ok(Guarantee(Some(Resources { cpu: Cpu(500), memory: Memory(1 << 30), disk: Memory(1 << 40) })))
        );
        for bad in ["4", "4,16Gi,1Ti,9", "x,1Gi", "4,lots"] {
            assert!(bad.parse::<Guarantee>().is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_needs_wait() {
        let parsed = |args: &[&str]| Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.kind());
        assert_eq!(
            parsed(&[
                "herd",
                "apply",
                "-f",
                "x.yaml",
                "--wait",
                "--timeout",
                "90s"
            ]),
            Ok(())
        );
        assert_eq!(parsed(&["herd", "apply", "-f", "x.yaml"]), Ok(()));
        assert_eq!(
            parsed(&["herd", "apply", "-f", "x.yaml", "--timeout", "90s"]),
            Err(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            parsed(&["herd", "scale", "acme/prod", "datanode=x"]).err(),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            parsed(&["herd", "status", "acme"]).err(),
            Some(ErrorKind::ValueValidation)
        );
    }
}
