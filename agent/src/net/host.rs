//! The host's networking, put together: what the agent calls from its loop. Each step is small
//! and idempotent, so every heartbeat can run them all (Nomad's hook style):
//!
//! ```text
//! setup (at registration): overlap check ─► ip_forward ─► bridge ─► DOCKER-USER ─► IPAM
//!                          ─► replay the saved firewall
//! prepare (before create):  lease an address per desired instance ─► write its /etc/hosts
//! attach (after start):     veth missing? ─► plumb into the container's netns (by PID)
//! release:                  leases of instances with neither a container nor a desire go back
//! sync (every heartbeat):   routes to other hosts ─► firewall (if changed, or changed in the
//!                           kernel behind herd's back: re-applied, saved, reported) ─► /etc/hosts
//! ```
//!
//! A container's veth dies with its network namespace, so a stopped or removed container
//! leaves no link behind, and a container Docker restarts (new namespace) is plumbed again on
//! the next pass, which a Docker `start` event triggers at once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herd_api::names::InstanceRef;
use herd_api::network::{self as wire, HostNetwork, NetworkPlan, PortSpec};
use ipnet::Ipv4Net;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::firewall::{self, Member, Port, Published, Ruleset};
use super::ipam::{self, Ipam};
use super::link::{self, Plumbing};
use super::netns::{self, Netns};
use super::{docker_user, hosts, route};

/// The bridge's default name.
pub const DEFAULT_BRIDGE: &str = "herd0";

/// Errors from the host's networking, each saying what the agent was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster CIDR overlaps a network already on this host.
    #[error(
        "cluster CIDR {cluster_cidr} overlaps {network} on link {link} of this host: \
         give the orchestrator a --cluster-cidr that overlaps none of the hosts' networks"
    )]
    Overlap { cluster_cidr: Ipv4Net, network: Ipv4Net, link: String },
    #[error("enabling IPv4 forwarding")]
    Forwarding(#[source] io::Error),
    #[error("host links")]
    Link(#[from] link::Error),
    #[error("container addresses")]
    Ipam(#[from] ipam::Error),
    #[error("herd's firewall")]
    Firewall(#[from] firewall::Error),
    #[error("Docker's DOCKER-USER chain")]
    DockerUser(#[from] docker_user::Error),
    #[error("routes to other hosts")]
    Route(#[source] link::Error),
    #[error("the network namespace of container process {pid}")]
    Netns { pid: u32, #[source] source: netns::Error },
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, #[source] source: io::Error },
    #[error("a blocking networking task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Result of host networking.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the host networks its containers, from the agent's configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bridge herd owns on this host.
    pub bridge: String,
    /// Where IP leases, the applied firewall and the /etc/hosts files are kept.
    pub state_dir: PathBuf,
    /// The host's underlay address: routes point at it, published ports listen on it.
    pub address: Ipv4Addr,
    /// MTU for container links; `None` keeps 1500.
    pub mtu: Option<u32>,
    /// Destinations outside the cluster containers may reach although they are the host's own
    /// networks, link-local or metadata addresses (`--allow-egress`).
    pub allow_egress: Vec<Ipv4Net>,
}

/// Destinations always refused to containers unless allowed: link-local (cloud metadata at
/// 169.254.169.254 among them) and the metadata addresses that are not link-local.
pub const ALWAYS_BLOCKED: [&str; 3] = ["169.254.0.0/16", "100.100.100.200/32", "168.63.129.16/32"];

/// How long a repaired firewall stays a host condition.
const REPAIRED_SHOWN: std::time::Duration = std::time::Duration::from_secs(600);

/// One of this host's instances, as the firewall and name files need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub instance: InstanceRef,
    pub publish: Vec<PortSpec>,
}

/// The host's networking after [`HostNet::setup`].
pub struct HostNet {
    opts: Options,
    lease: HostNetwork,
    ipam: Arc<Ipam>,
    /// The rule set last applied and the kernel's listing of herd's tables right after. A
    /// tokio mutex: it is held across the `nft` run, so two passes never apply out of order.
    applied: Mutex<Option<(Ruleset, String)>>,
    /// When herd's tables were last found changed from outside and re-applied, and how.
    repaired: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    /// The container process each instance's veth was plumbed for (or found with, after a
    /// restart). A new PID means a new network namespace: the veth left, if any, is stale.
    /// A std mutex: never held across an await.
    plumbed: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// Where the instances' /etc/hosts files live, under the networking state directory.
pub fn hosts_root(state_dir: &Path) -> PathBuf {
    state_dir.join("hosts")
}

/// The owner key of an instance's IP lease.
pub fn owner(i: &InstanceRef) -> String {
    format!("{}/{}/{}", i.tenant, i.cluster, i.name)
}

/// The local address the host would use to reach `peer` (no packet is sent: connecting a UDP
/// socket only picks a route).
pub fn address_towards(peer: std::net::SocketAddr) -> io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.connect(peer)?;
    match socket.local_addr()?.ip() {
        std::net::IpAddr::V4(ip) => Ok(ip),
        std::net::IpAddr::V6(ip) => Err(io::Error::other(format!("route to {peer} uses IPv6 address {ip}; herd's underlay is IPv4"))),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::Task)?
}

impl HostNet {
    /// Prepares the host for `lease`; idempotent, so an agent restart runs it again safely.
    pub async fn setup(opts: Options, lease: HostNetwork) -> Result<Self> {
        for (link, network) in link::ipv4_networks().await? {
            let overlaps = network.contains(&lease.cluster_cidr.network()) || lease.cluster_cidr.contains(&network.network());
            if overlaps && link != opts.bridge && !network.addr().is_loopback() {
                return Err(Error::Overlap { cluster_cidr: lease.cluster_cidr, network, link });
            }
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(Error::Forwarding)?;
        let (dir, subnet) = (opts.state_dir.join("ipam"), lease.subnet);
        let ipam = Arc::new(blocking(move || Ok(Ipam::open(dir, subnet)?)).await?);
        link::ensure_bridge(&opts.bridge, ipam.gateway_cidr()).await?;
        let outcome = docker_user::ensure_accept(&opts.bridge).await?;
        let net = Self { opts, lease, ipam, applied: Mutex::new(None), repaired: Default::default(), plumbed: Default::default() };
        if let Some(saved) = net.load_ruleset()? {
            // Replay what was applied before a restart, so isolation holds from the first moment.
            if saved.host_subnet == subnet && saved.bridge == net.opts.bridge {
                firewall::apply(&saved).await?;
                let listing = firewall::listing().await?.unwrap_or_default();
                *net.applied.lock().await = Some((saved, listing));
            }
        }
        info!(bridge = %net.opts.bridge, subnet = %subnet, gateway = %net.ipam.gateway(), docker_user = ?outcome, "host network ready");
        Ok(net)
    }

    /// The subnet lease this host networks.
    pub fn lease(&self) -> HostNetwork {
        self.lease
    }

    /// Where `instance`'s /etc/hosts lives on the host.
    fn hosts_file(&self, instance: &InstanceRef) -> PathBuf {
        hosts::path(&hosts_root(&self.opts.state_dir), instance)
    }

    /// Leases an address for each instance (keeping existing leases) and writes each one's
    /// /etc/hosts, so both exist before its container is created. Returns every lease.
    pub async fn prepare(&self, instances: &[InstanceRef], plan: Option<&NetworkPlan>) -> Result<BTreeMap<InstanceRef, Ipv4Addr>> {
        let ipam = self.ipam.clone();
        let wanted: Vec<InstanceRef> = instances.to_vec();
        let leases = blocking(move || {
            let mut out = BTreeMap::new();
            for i in wanted {
                out.insert(i.clone(), ipam.allocate(&owner(&i))?);
            }
            Ok(out)
        })
        .await?;
        self.write_hosts(&leases, plan).await?;
        Ok(leases)
    }

    /// The address leased to each instance now.
    pub async fn leases(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        let ipam = self.ipam.clone();
        blocking(move || Ok(ipam.leases()?)).await
    }

    /// Plumbs the container of `instance` (process `pid`) unless its veth already exists.
    /// Returns whether it plumbed.
    pub async fn attach(&self, instance: &InstanceRef, pid: u32, links: &HashSet<String>) -> Result<bool> {
        let host_veth = link::host_veth_name(&owner(instance));
        let key = owner(instance);
        if links.contains(&host_veth) {
            let known = self.plumbed.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
            match known {
                Some(p) if p != pid => {
                    // Docker restarted the container; its old namespace (and veth) outlived it.
                    info!(instance = %instance, old_pid = p, pid, "container restarted; plumbing it again");
                    link::unplumb(&host_veth).await?;
                }
                Some(_) => return Ok(false),
                None => {
                    self.plumbed.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pid);
                    return Ok(false);
                }
            }
        }
        let ipam = self.ipam.clone();
        let ip = blocking(move || Ok(ipam.allocate(&key)?)).await?;
        let netns = Netns::of_pid(pid).map_err(|source| Error::Netns { pid, source })?;
        let plumbing = Plumbing {
            bridge: self.opts.bridge.clone(),
            host_veth,
            address: self.ipam.cidr(ip),
            gateway: self.ipam.gateway(),
            mtu: self.opts.mtu,
        };
        link::plumb(&netns, &plumbing).await?;
        self.plumbed.lock().unwrap_or_else(|p| p.into_inner()).insert(owner(instance), pid);
        info!(instance = %instance, ip = %ip, veth = %plumbing.host_veth, "plumbed");
        Ok(true)
    }

    /// Names of the links on the host now, for [`HostNet::attach`].
    pub async fn links(&self) -> Result<HashSet<String>> {
        Ok(link::link_names().await?.into_iter().collect())
    }

    /// Returns the address of every lease whose instance is not in `keep` to the pool, and
    /// removes such an instance's veth and /etc/hosts if any are left.
    pub async fn release(&self, keep: &BTreeSet<InstanceRef>) -> Result<()> {
        let keep: HashSet<String> = keep.iter().map(owner).collect();
        let ipam = self.ipam.clone();
        let gone = blocking(move || Ok(ipam.retain(|o| keep.contains(o))?)).await?;
        for (owner, ip) in gone {
            self.plumbed.lock().unwrap_or_else(|p| p.into_inner()).remove(&owner);
            link::unplumb(&link::host_veth_name(&owner)).await?;
            let file = hosts_root(&self.opts.state_dir).join(&owner);
            if let Err(e) = std::fs::remove_file(&file) && e.kind() != io::ErrorKind::NotFound {
                warn!(file = %file.display(), error = %e, "removing a stale hosts file failed");
            }
            info!(instance = %owner, ip = %ip, "address released");
        }
        Ok(())
    }

    /// Problems an operator should see on the host's status: herd's firewall found changed
    /// from outside (and repaired) within the last ten minutes.
    pub fn conditions(&self) -> Vec<String> {
        let repaired = self.repaired.lock().unwrap_or_else(|p| p.into_inner());
        repaired.iter().filter(|(at, _)| at.elapsed() < REPAIRED_SHOWN).map(|(_, m)| m.clone()).collect()
    }

    /// Destinations outside the cluster containers may not reach: the host's own networks
    /// (the underlay, Docker's networks; not herd's bridge) and [`ALWAYS_BLOCKED`].
    async fn egress_block(&self) -> Result<Vec<Ipv4Net>> {
        let mut block: Vec<Ipv4Net> = ALWAYS_BLOCKED.iter().filter_map(|n| n.parse().ok()).collect();
        for (link, network) in link::ipv4_networks().await? {
            if link != self.opts.bridge && !self.lease.cluster_cidr.contains(&network.network()) {
                block.push(network.trunc());
            }
        }
        block.sort();
        block.dedup();
        Ok(block)
    }

    /// Brings routes, firewall and name files in line with `plan` and this host's instances.
    pub async fn sync(&self, plan: Option<&NetworkPlan>, local: &[Local]) -> Result<()> {
        let want: BTreeSet<route::Via> = plan
            .map(|p| p.routes.iter().filter(|r| r.subnet != self.lease.subnet).map(|r| (r.subnet, r.via)).collect())
            .unwrap_or_default();
        let changes = route::sync(&want).await.map_err(Error::Route)?;
        if changes != route::Changes::default() {
            info!(added = ?changes.added, removed = ?changes.removed, "routes changed");
        }

        let leases = self.leases().await?;
        let ip_of = |i: &InstanceRef| leases.get(&owner(i)).copied();
        // Members: every address the orchestrator knows, plus this host's own leases (known
        // here before the orchestrator hears of them).
        let mut members: BTreeMap<Ipv4Addr, InstanceRef> =
            plan.map(|p| p.members.iter().map(|m| (m.ip, m.instance.clone())).collect()).unwrap_or_default();
        members.retain(|ip, _| !self.lease.subnet.contains(ip));
        for l in local {
            if let Some(ip) = ip_of(&l.instance) {
                members.insert(ip, l.instance.clone());
            }
        }
        let ruleset = Ruleset {
            bridge: self.opts.bridge.clone(),
            host_subnet: self.lease.subnet,
            cluster_cidr: self.lease.cluster_cidr,
            host_address: self.opts.address,
            members: members.iter().map(|(ip, i)| Member { ip: *ip, tenant: i.tenant.clone() }).collect(),
            published: local
                .iter()
                .filter_map(|l| Some((ip_of(&l.instance)?, &l.publish)))
                .flat_map(|(ip, ports)| {
                    ports.iter().map(move |p| Published {
                        protocol: match p.protocol {
                            wire::Protocol::Tcp => firewall::Protocol::Tcp,
                            wire::Protocol::Udp => firewall::Protocol::Udp,
                        },
                        host_port: p.host_port(),
                        ip,
                        port: p.port,
                    })
                })
                .collect(),
            ports: local
                .iter()
                .filter_map(|l| Some(Port { ifname: link::host_veth_name(&owner(&l.instance)), ip: ip_of(&l.instance)? }))
                .collect(),
            egress_allow: self.opts.allow_egress.clone(),
            egress_block: self.egress_block().await?,
        };
        let mut applied = self.applied.lock().await;
        // NB: compared with the kernel every pass, so rules removed or changed behind herd's
        // back (`nft flush ruleset`, another tool's reload) are back within one heartbeat.
        let listing = firewall::listing().await?;
        let same_rules = applied.as_ref().is_some_and(|(r, _)| *r == ruleset);
        let intact = same_rules && applied.as_ref().map(|(_, l)| l) == listing.as_ref();
        if !intact {
            if same_rules {
                let found = if listing.is_none() { "missing" } else { "changed" };
                let message = format!(
                    "herd's firewall (nftables tables inet/bridge herd) was found {found} at {} and re-applied: \
                     something on this host rewrites nftables (e.g. `nft flush ruleset`, a firewall service); \
                     exclude herd's tables from it",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                );
                warn!(found, "herd's firewall was changed outside herd; re-applying it");
                *self.repaired.lock().unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), message));
            }
            firewall::apply(&ruleset).await?;
            let listing = firewall::listing().await?.unwrap_or_default();
            if !same_rules {
                self.save_ruleset(&ruleset)?;
                info!(members = ruleset.members.len(), published = ruleset.published.len(), ports = ruleset.ports.len(), "firewall applied");
            }
            *applied = Some((ruleset, listing));
        }
        drop(applied);

        let all: Vec<(Ipv4Addr, InstanceRef)> = members.into_iter().collect();
        for l in local.iter().filter(|l| ip_of(&l.instance).is_some()) {
            self.write_hosts_file(&l.instance, &all)?;
        }
        Ok(())
    }

    async fn write_hosts(&self, leases: &BTreeMap<InstanceRef, Ipv4Addr>, plan: Option<&NetworkPlan>) -> Result<()> {
        let mut all: Vec<(Ipv4Addr, InstanceRef)> =
            plan.map(|p| p.members.iter().map(|m| (m.ip, m.instance.clone())).collect()).unwrap_or_default();
        all.retain(|(ip, _)| !self.lease.subnet.contains(ip));
        all.extend(leases.iter().map(|(i, ip)| (*ip, i.clone())));
        for instance in leases.keys() {
            self.write_hosts_file(instance, &all)?;
        }
        Ok(())
    }

    fn write_hosts_file(&self, instance: &InstanceRef, all: &[(Ipv4Addr, InstanceRef)]) -> Result<()> {
        let path = self.hosts_file(instance);
        hosts::write(&path, &hosts::render(instance, all)).map_err(|source| Error::Io { op: "writing", path, source })?;
        Ok(())
    }

    fn ruleset_path(&self) -> PathBuf {
        self.opts.state_dir.join("firewall.json")
    }

    fn load_ruleset(&self) -> Result<Option<Ruleset>> {
        let path = self.ruleset_path();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "saved firewall unreadable; rebuilding it from the orchestrator's plan");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { op: "reading", path, source }),
        }
    }

    fn save_ruleset(&self, r: &Ruleset) -> Result<()> {
        let path = self.ruleset_path();
        let io = |source| Error::Io { op: "saving", path: path.clone(), source };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(r).map_err(|e| io(io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }
}

