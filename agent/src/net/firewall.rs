//! herd's firewall: its own nftables tables, rendered from a pure [`Ruleset`] and applied as one
//! atomic `nft -f` transaction.
//!
//! Two tables, both deleted and recreated inside the same batch (`table X; delete table X;
//! table X {..}`), so applying is idempotent and a failing batch leaves the old rules in place:
//! - `table inet herd`: routed traffic. Tenant isolation inside the cluster CIDR, egress
//!   filtering and masquerade, DNAT of published ports on the host address, and the input path
//!   (what containers may reach on the host itself: nothing they did not answer).
//! - `table bridge herd`: anti-spoofing (a frame from a container's port must carry that
//!   container's MAC and IPv4 address) and traffic between two containers on one bridge, which
//!   is switched, not routed, and so never reaches an `inet` hook unless `br_netfilter` is loaded.
//!
//! Isolation: a container may send to a cluster address only if both are of one tenant; every
//! tenant has a set of its addresses and a chain, and a verdict map from source address jumps to
//! the source's tenant chain. Packets between cluster addresses that no map entry admits are
//! dropped. Traffic leaving the cluster is allowed (and masqueraded) unless its destination is
//! in `egress_block` (the host's own networks, link-local, metadata addresses) and not in
//! `egress_allow` (the admin's `--allow-egress`); inbound traffic onto the bridge is allowed only
//! for published ports and established connections; traffic from the bridge to the host itself
//! only when it answers a connection the host opened.
//!
//! NB: herd's tables only *add* drops. A packet that Docker's FORWARD chain (policy DROP) drops is
//! dropped whatever herd's tables say: see [`super::docker_user`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::process::{ExitStatus, Stdio};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::link::HOST_VETH_PREFIX;

/// herd's table names (in families `inet` and `bridge`).
pub const TABLE: &str = "herd";

/// The `nft` binary (Debian package `nftables`).
pub const NFT: &str = "nft";

/// Errors from checking, rendering or applying a rule set.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bridge name cannot be an interface name.
    #[error("invalid bridge name {name:?}")]
    InvalidBridge { name: String },
    /// Tenant names go into the rules as comments and must be plain.
    #[error("invalid tenant name {tenant:?}: use letters, digits, '.', '_', '-' or '/'")]
    InvalidTenant { tenant: String },
    /// The host subnet must be part of the cluster CIDR.
    #[error("host subnet {host_subnet} is not inside cluster CIDR {cluster_cidr}")]
    HostSubnetOutsideCluster {
        host_subnet: Ipv4Net,
        cluster_cidr: Ipv4Net,
    },
    /// A container address outside the cluster CIDR.
    #[error("container address {ip} is not inside cluster CIDR {cluster_cidr}")]
    MemberOutsideCluster { ip: Ipv4Addr, cluster_cidr: Ipv4Net },
    /// One address listed for two tenants.
    #[error("container address {ip} is listed for tenants {first} and {second}")]
    DuplicateMember {
        ip: Ipv4Addr,
        first: String,
        second: String,
    },
    /// A published port must lead to a container of this host.
    #[error(
        "published {protocol} port {host_port} leads to {ip}, not inside host subnet {host_subnet}"
    )]
    PublishedOutsideHost {
        protocol: Protocol,
        host_port: u16,
        ip: Ipv4Addr,
        host_subnet: Ipv4Net,
    },
    /// One host port published twice.
    #[error("{protocol} port {host_port} is published twice")]
    DuplicatePublished { protocol: Protocol, host_port: u16 },
    /// Port 0 cannot be published or targeted.
    #[error("{protocol} port 0 cannot be published")]
    PortZero { protocol: Protocol },
    /// `nft` could not be run (is the Debian package `nftables` installed?).
    #[error("running {NFT} (Debian package nftables)")]
    Spawn(#[source] io::Error),
    /// `nft -j` printed something that is not JSON.
    #[error("reading the JSON that {NFT} printed")]
    Json(#[source] serde_json::Error),
    /// A container port must be an interface name and lead to an address of this host's subnet.
    #[error("container port {ifname:?} with address {ip} is not a herd veth of host subnet {host_subnet}")]
    InvalidPort { ifname: String, ip: Ipv4Addr, host_subnet: Ipv4Net },
    /// One container port listed twice.
    #[error("container port {ifname} is listed twice")]
    DuplicatePort { ifname: String },
    /// `nft` ran and refused.
    #[error("{NFT} failed to {action} ({status}): {stderr}")]
    Nft {
        action: &'static str,
        status: ExitStatus,
        stderr: String,
    },
}

/// Result of firewall operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A container address and its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub ip: Ipv4Addr,
    pub tenant: String,
}

/// A container port reachable on the host's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub protocol: Protocol,
    /// Port on the host address.
    pub host_port: u16,
    /// The container's address (in this host's subnet) and port.
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// Everything herd's firewall on one host is rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    /// herd's bridge on this host.
    pub bridge: String,
    /// This host's container subnet; its traffic leaving the cluster is masqueraded.
    pub host_subnet: Ipv4Net,
    /// All container addresses of the cluster, every host's subnet included.
    pub cluster_cidr: Ipv4Net,
    /// The host's own (underlay) address, on which ports are published.
    pub host_address: Ipv4Addr,
    /// Container addresses with their tenants: those of the whole cluster, so isolation also
    /// holds for traffic to and from other hosts. An unlisted cluster address reaches nothing.
    pub members: Vec<Member>,
    /// Published ports of this host's containers.
    pub published: Vec<Published>,
    /// This host's containers' bridge ports: a frame from one is accepted only with that
    /// container's address and MAC ([`super::link::container_mac`]); anything else from a
    /// herd veth is dropped.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Destinations outside the cluster that containers may reach although `egress_block`
    /// lists them (the admin's `--allow-egress`).
    #[serde(default)]
    pub egress_allow: Vec<Ipv4Net>,
    /// Destinations outside the cluster containers may not reach: the host's own networks,
    /// link-local and cloud metadata addresses.
    #[serde(default)]
    pub egress_block: Vec<Ipv4Net>,
}

/// A container's port on the bridge (the host end of its veth) and its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub ifname: String,
    pub ip: Ipv4Addr,
}

impl Ruleset {
    /// Checks the rule set; every later step relies on it being valid.
    pub fn check(&self) -> Result<()> {
        self.tenants().map(|_| ())
    }

    /// Tenant name → its member addresses, sorted, after checking everything.
    fn tenants(&self) -> Result<BTreeMap<&str, BTreeSet<Ipv4Addr>>> {
        if !valid_ifname(&self.bridge) {
            return Err(Error::InvalidBridge {
                name: self.bridge.clone(),
            });
        }
        let (host_subnet, cluster_cidr) = (self.host_subnet.trunc(), self.cluster_cidr.trunc());
        if !cluster_cidr.contains(&host_subnet) {
            return Err(Error::HostSubnetOutsideCluster {
                host_subnet,
                cluster_cidr,
            });
        }
        let mut owner: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        let mut tenants: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for m in &self.members {
            if !valid_tenant(&m.tenant) {
                return Err(Error::InvalidTenant {
                    tenant: m.tenant.clone(),
                });
            }
            if !cluster_cidr.contains(&m.ip) {
                return Err(Error::MemberOutsideCluster {
                    ip: m.ip,
                    cluster_cidr,
                });
            }
            match owner.insert(m.ip, &m.tenant) {
                Some(first) if first != m.tenant => {
                    return Err(Error::DuplicateMember {
                        ip: m.ip,
                        first: first.to_string(),
                        second: m.tenant.clone(),
                    });
                }
                _ => {}
            }
            tenants.entry(&m.tenant).or_default().insert(m.ip);
        }
        let mut ports = BTreeSet::new();
        for p in &self.published {
            if p.host_port == 0 || p.port == 0 {
                return Err(Error::PortZero {
                    protocol: p.protocol,
                });
            }
            if !host_subnet.contains(&p.ip) {
                return Err(Error::PublishedOutsideHost {
                    protocol: p.protocol,
                    host_port: p.host_port,
                    ip: p.ip,
                    host_subnet,
                });
            }
            if !ports.insert((p.protocol, p.host_port)) {
                return Err(Error::DuplicatePublished {
                    protocol: p.protocol,
                    host_port: p.host_port,
                });
            }
        }
        let mut ifnames = BTreeSet::new();
        for p in &self.ports {
            if !valid_ifname(&p.ifname) || !p.ifname.starts_with(HOST_VETH_PREFIX) || !host_subnet.contains(&p.ip) {
                return Err(Error::InvalidPort { ifname: p.ifname.clone(), ip: p.ip, host_subnet });
            }
            if !ifnames.insert(&p.ifname) {
                return Err(Error::DuplicatePort { ifname: p.ifname.clone() });
            }
        }
        Ok(tenants)
    }

    /// Renders the `nft -f` script that replaces herd's tables with this rule set.
    ///
    /// Pure and deterministic: members and ports are sorted, so equal sets render equal scripts.
    pub fn render(&self) -> Result<String> {
        let tenants = self.tenants()?;
        let (host_subnet, cluster) = (self.host_subnet.trunc(), self.cluster_cidr.trunc());
        let bridge = &self.bridge;
        let mut out = Script::default();
        out.line(
            0,
            "# herd's firewall; generated by herd-agent, edits are overwritten",
        );

        out.replace_table("inet");
        tenant_rules(&mut out, &tenants);
        cidr_set(&mut out, "egress_allow", &self.egress_allow);
        cidr_set(&mut out, "egress_block", &self.egress_block);
        // The host itself: containers reach nothing on it (herd serves them no DNS or other
        // service); only answers to connections the host opened (health probes) come back.
        out.line(1, "chain input {");
        out.line(2, "type filter hook input priority filter; policy accept;");
        out.line(2, format!("iifname \"{bridge}\" ct state established,related accept"));
        out.line(2, format!("iifname \"{bridge}\" drop"));
        out.line(1, "}");
        out.line(1, "chain forward {");
        out.line(
            2,
            "type filter hook forward priority filter; policy accept;",
        );
        out.line(2, format!("iifname \"{bridge}\" ip saddr != {host_subnet} drop"));
        out.line(2, "ct state established,related accept");
        out.line(2, "ct status dnat accept");
        out.line(
            2,
            format!("ip saddr {cluster} ip daddr {cluster} ip saddr vmap @tenant_of"),
        );
        out.line(2, format!("ip saddr {cluster} ip daddr {cluster} drop"));
        out.line(2, format!("iifname \"{bridge}\" meta nfproto ipv6 drop"));
        out.line(2, format!("oifname \"{bridge}\" meta nfproto ipv6 drop"));
        out.line(2, format!("iifname \"{bridge}\" ip daddr @egress_allow accept"));
        out.line(2, format!("iifname \"{bridge}\" ip daddr @egress_block drop"));
        out.line(2, format!("iifname \"{bridge}\" accept"));
        out.line(2, format!("oifname \"{bridge}\" drop"));
        out.line(1, "}");
        let mut published: Vec<&Published> = self.published.iter().collect();
        published.sort_by_key(|p| (p.protocol, p.host_port));
        let dnat = |p: &Published| {
            format!(
                "ip daddr {} {} dport {} dnat ip to {}:{}",
                self.host_address, p.protocol, p.host_port, p.ip, p.port
            )
        };
        out.line(1, "chain prerouting {");
        out.line(
            2,
            "type nat hook prerouting priority dstnat; policy accept;",
        );
        for p in &published {
            out.line(2, format!("iifname != \"{bridge}\" {}", dnat(p)));
        }
        out.line(1, "}");
        out.line(1, "chain output {");
        // NB: nft 1.0.6 accepts the name `dstnat` only on prerouting; -100 is its value.
        out.line(2, "type nat hook output priority -100; policy accept;");
        for p in &published {
            out.line(2, dnat(p));
        }
        out.line(1, "}");
        out.line(1, "chain postrouting {");
        out.line(
            2,
            "type nat hook postrouting priority srcnat; policy accept;",
        );
        out.line(
            2,
            format!(
                "ip saddr {host_subnet} ip daddr != {cluster} oifname != \"{bridge}\" masquerade"
            ),
        );
        out.line(1, "}");
        out.line(0, "}");

        out.replace_table("bridge");
        tenant_rules(&mut out, &tenants);
        // Anti-spoofing: every frame a container sends must carry its own MAC and address
        // (ARP included), checked on entry, before any routing or switching decision.
        let mut ports: Vec<&Port> = self.ports.iter().collect();
        ports.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        out.line(1, "set ports {");
        out.line(2, "type ifname . ether_addr . ipv4_addr");
        if !ports.is_empty() {
            let elements = ports.iter().map(|p| format!("\"{}\" . {} . {}", p.ifname, mac(p.ip), p.ip));
            out.line(2, format!("elements = {{ {} }}", join(elements)));
        }
        out.line(1, "}");
        out.line(1, "chain prerouting {");
        out.line(2, "type filter hook prerouting priority filter; policy accept;");
        out.line(2, format!("iifname \"{HOST_VETH_PREFIX}*\" jump from_container"));
        out.line(1, "}");
        out.line(1, "chain from_container {");
        out.line(2, "ether type ip iifname . ether saddr . ip saddr @ports return");
        out.line(
            2,
            "ether type arp iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports return",
        );
        out.line(2, "drop");
        out.line(1, "}");
        out.line(1, "chain forward {");
        out.line(
            2,
            "type filter hook forward priority filter; policy accept;",
        );
        // NB: `meta ibrname` needs CONFIG_NFT_BRIDGE_META, which some kernels lack; herd's ports
        // are recognised by their name prefix instead.
        out.line(
            2,
            format!("iifname \"{HOST_VETH_PREFIX}*\" ip saddr vmap @tenant_of"),
        );
        out.line(
            2,
            format!("iifname \"{HOST_VETH_PREFIX}*\" ether type {{ ip, ip6 }} drop"),
        );
        out.line(1, "}");
        out.line(0, "}");
        Ok(out.0)
    }
}

/// The per-tenant sets and chains and the source map, shared by both tables.
fn tenant_rules(out: &mut Script, tenants: &BTreeMap<&str, BTreeSet<Ipv4Addr>>) {
    let mut map: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (id, (tenant, ips)) in tenants.iter().enumerate() {
        out.line(1, format!("set tenant_{id} {{"));
        out.line(2, "type ipv4_addr");
        out.line(2, format!("comment \"tenant {tenant}\""));
        out.line(2, format!("elements = {{ {} }}", join(ips.iter())));
        out.line(1, "}");
        map.extend(ips.iter().map(|ip| (*ip, id)));
    }
    out.line(1, "map tenant_of {");
    out.line(2, "type ipv4_addr : verdict");
    if !map.is_empty() {
        let elements = map
            .iter()
            .map(|(ip, id)| format!("{ip} : jump tenant_{id}"));
        out.line(2, format!("elements = {{ {} }}", join(elements)));
    }
    out.line(1, "}");
    for id in 0..tenants.len() {
        out.line(1, format!("chain tenant_{id} {{"));
        out.line(2, format!("ip daddr @tenant_{id} accept"));
        out.line(2, "drop");
        out.line(1, "}");
    }
}

/// A set of IPv4 networks (overlaps merged, as an interval set needs).
fn cidr_set(out: &mut Script, name: &str, nets: &[Ipv4Net]) {
    let nets = Ipv4Net::aggregate(&nets.iter().map(|n| n.trunc()).collect::<Vec<_>>());
    out.line(1, format!("set {name} {{"));
    out.line(2, "type ipv4_addr");
    out.line(2, "flags interval");
    if !nets.is_empty() {
        out.line(2, format!("elements = {{ {} }}", join(nets.iter())));
    }
    out.line(1, "}");
}

/// A container's MAC as nft writes it.
fn mac(ip: Ipv4Addr) -> String {
    super::link::container_mac(ip).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// An nft script being written.
#[derive(Default)]
struct Script(String);

impl Script {
    fn line(&mut self, indent: usize, text: impl AsRef<str>) {
        self.0.extend(std::iter::repeat_n('\t', indent));
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }

    /// Opens `table FAMILY herd {` after creating (if missing) and deleting the old one, so the
    /// batch works whether or not the table exists.
    fn replace_table(&mut self, family: &str) {
        self.line(0, format!("table {family} {TABLE}"));
        self.line(0, format!("delete table {family} {TABLE}"));
        self.line(0, format!("table {family} {TABLE} {{"));
    }
}

/// Replaces herd's tables with `rules` in one atomic transaction; if `nft` refuses any part,
/// the tables stay as they were.
///
/// Acts in the network namespace of the calling thread.
pub async fn apply(rules: &Ruleset) -> Result<()> {
    let applied = nft(
        &["-f", "-"],
        Some(&rules.render()?),
        "apply herd's rule set",
    )
    .await;
    crate::metrics::get().firewall_apply(applied.is_ok());
    applied?;
    Ok(())
}

/// Checks `rules` with `nft --check` without applying them.
pub async fn dry_run(rules: &Ruleset) -> Result<()> {
    nft(
        &["--check", "-f", "-"],
        Some(&rules.render()?),
        "check herd's rule set",
    )
    .await?;
    Ok(())
}

/// Removes herd's tables; missing tables are success.
pub async fn remove() -> Result<()> {
    let mut script = String::new();
    for family in ["inet", "bridge"] {
        script.push_str(&format!(
            "table {family} {TABLE}\ndelete table {family} {TABLE}\n"
        ));
    }
    nft(&["-f", "-"], Some(&script), "remove herd's tables").await?;
    Ok(())
}

/// herd's `inet` table as `nft -j` JSON, or `None` when it does not exist.
pub async fn list_json() -> Result<Option<serde_json::Value>> {
    match nft(
        &["-j", "list", "table", "inet", TABLE],
        None,
        "list herd's table",
    )
    .await
    {
        Ok(stdout) => serde_json::from_slice(&stdout)
            .map(Some)
            .map_err(Error::Json),
        Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

/// herd's two tables as `nft` prints them now, or `None` when either is missing. Compared
/// after every pass with what was printed right after applying, it notices herd's rules
/// changed or removed from outside (e.g. `nft flush ruleset`).
pub async fn listing() -> Result<Option<String>> {
    let mut out = String::new();
    for family in ["inet", "bridge"] {
        match nft(&["list", "table", family, TABLE], None, "list herd's table").await {
            Ok(stdout) => out.push_str(&String::from_utf8_lossy(&stdout)),
            Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(out))
}

/// Runs `nft ARGS` with `stdin`, returning its standard output.
async fn nft(args: &[&str], stdin: Option<&str>, action: &'static str) -> Result<Vec<u8>> {
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(Error::Spawn)?;
        // Dropping the pipe closes it, so nft sees the end of the script.
    }
    let out = child.wait_with_output().await.map_err(Error::Spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Nft {
            action,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn member(ip_: &str, tenant: &str) -> Member {
        Member {
            ip: ip(ip_),
            tenant: tenant.into(),
        }
    }

    fn sample() -> Ruleset {
        Ruleset {
            bridge: "herd0".into(),
            host_subnet: "10.88.3.0/24".parse().unwrap(),
            cluster_cidr: "10.88.0.0/16".parse().unwrap(),
            host_address: ip("192.0.2.2"),
            members: vec![
                member("10.88.3.3", "globex"),
                member("10.88.3.2", "acme"),
                member("10.88.4.2", "acme"),
            ],
            published: vec![
                Published {
                    protocol: Protocol::Udp,
                    host_port: 5353,
                    ip: ip("10.88.3.3"),
                    port: 53,
                },
                Published {
                    protocol: Protocol::Tcp,
                    host_port: 9870,
                    ip: ip("10.88.3.2"),
                    port: 9870,
                },
            ],
            ports: vec![
                Port { ifname: "hv00000000b2".into(), ip: ip("10.88.3.3") },
                Port { ifname: "hv00000000a1".into(), ip: ip("10.88.3.2") },
            ],
            egress_allow: vec!["192.0.2.53/32".parse().unwrap()],
            egress_block: vec![
                "192.0.2.0/24".parse().unwrap(),
                "169.254.0.0/16".parse().unwrap(),
                "192.0.2.128/25".parse().unwrap(),
            ],
        }
    }

    const GOLDEN: &str = r#"# herd's firewall; generated by herd-agent, edits are overwritten
table inet herd
delete table inet herd
table inet herd {
	set tenant_0 {
		type ipv4_addr
		comment "tenant acme"
		elements = { 10.88.3.2, 10.88.4.2 }
	}
	set tenant_1 {
		type ipv4_addr
		comment "tenant globex"
		elements = { 10.88.3.3 }
	}
	map tenant_of {
		type ipv4_addr : verdict
		elements = { 10.88.3.2 : jump tenant_0, 10.88.3.3 : jump tenant_1, 10.88.4.2 : jump tenant_0 }
	}
	chain tenant_0 {
		ip daddr @tenant_0 accept
		drop
	}
	chain tenant_1 {
		ip daddr @tenant_1 accept
		drop
	}
	set egress_allow {
		type ipv4_addr
		flags interval
		elements = { 192.0.2.53/32 }
	}
	set egress_block {
		type ipv4_addr
		flags interval
		elements = { 169.254.0.0/16, 192.0.2.0/24 }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "herd0" ct state established,related accept
		iifname "herd0" drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "herd0" ip saddr != 10.88.3.0/24 drop
		ct state established,related accept
		ct status dnat accept
		ip saddr 10.88.0.0/16 ip daddr 10.88.0.0/16 ip saddr vmap @tenant_of
		ip saddr 10.88.0.0/16 ip daddr 10.88.0.0/16 drop
		iifname "herd0" meta nfproto ipv6 drop
		oifname "herd0" meta nfproto ipv6 drop
		iifname "herd0" ip daddr @egress_allow accept
		iifname "herd0" ip daddr @egress_block drop
		iifname "herd0" accept
		oifname "herd0" drop
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname != "herd0" ip daddr 192.0.2.2 tcp dport 9870 dnat ip to 10.88.3.2:9870
		iifname != "herd0" ip daddr 192.0.2.2 udp dport 5353 dnat ip to 10.88.3.3:53
	}
	chain output {
		type nat hook output priority -100; policy accept;
		ip daddr 192.0.2.2 tcp dport 9870 dnat ip to 10.88.3.2:9870
		ip daddr 192.0.2.2 udp dport 5353 dnat ip to 10.88.3.3:53
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.88.3.0/24 ip daddr != 10.88.0.0/16 oifname != "herd0" masquerade
	}
}
table bridge herd
delete table bridge herd
table bridge herd {
	set tenant_0 {
		type ipv4_addr
		comment "tenant acme"
		elements = { 10.88.3.2, 10.88.4.2 }
	}
	set tenant_1 {
		type ipv4_addr
		comment "tenant globex"
		elements = { 10.88.3.3 }
	}
	map tenant_of {
		type ipv4_addr : verdict
		elements = { 10.88.3.2 : jump tenant_0, 10.88.3.3 : jump tenant_1, 10.88.4.2 : jump tenant_0 }
	}
	chain tenant_0 {
		ip daddr @tenant_0 accept
		drop
	}
	chain tenant_1 {
		ip daddr @tenant_1 accept
		drop
	}
	set ports {
		type ifname . ether_addr . ipv4_addr
		elements = { "hv00000000a1" . 02:42:0a:58:03:02 . 10.88.3.2, "hv00000000b2" . 02:42:0a:58:03:03 . 10.88.3.3 }
	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "hv*" jump from_container
	}
	chain from_container {
		ether type ip iifname . ether saddr . ip saddr @ports return
		ether type arp iifname . ether saddr . arp saddr ip @ports iifname . arp saddr ether . arp saddr ip @ports return
		drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "hv*" ip saddr vmap @tenant_of
		iifname "hv*" ether type { ip, ip6 } drop
	}
}
"#;

    #[test]
    fn renders_the_golden_script() {
        assert_eq!(sample().render().unwrap(), GOLDEN);
    }

    #[test]
    fn rendering_ignores_input_order() {
        let mut shuffled = sample();
        shuffled.members.reverse();
        shuffled.published.reverse();
        shuffled.ports.reverse();
        shuffled.egress_block.reverse();
        assert_eq!(shuffled.render().unwrap(), GOLDEN);
    }

    #[test]
    fn empty_rule_set_renders_no_elements() {
        let mut rules = sample();
        rules.members.clear();
        rules.published.clear();
        rules.ports.clear();
        rules.egress_allow.clear();
        rules.egress_block.clear();
        let script = rules.render().unwrap();
        assert!(!script.contains("elements"), "{script}");
        assert!(!script.contains("set tenant_"), "{script}");
        assert!(
            script.contains("map tenant_of {\n\t\ttype ipv4_addr : verdict\n\t}"),
            "{script}"
        );
    }

    #[test]
    fn invalid_rule_sets_are_refused() {
        // (how to break the sample, expected error)
        type Case = (fn(&mut Ruleset), fn(&Error) -> bool);
        let cases: Vec<Case> = vec![
            (
                |r| r.bridge = "bad\"name".into(),
                |e| matches!(e, Error::InvalidBridge { .. }),
            ),
            (
                |r| r.bridge = "a23456789012345x".into(),
                |e| matches!(e, Error::InvalidBridge { .. }),
            ),
            (
                |r| r.members[0].tenant = "a\nb".into(),
                |e| matches!(e, Error::InvalidTenant { .. }),
            ),
            (
                |r| r.members[0].tenant = String::new(),
                |e| matches!(e, Error::InvalidTenant { .. }),
            ),
            (
                |r| r.host_subnet = "10.99.0.0/24".parse().unwrap(),
                |e| matches!(e, Error::HostSubnetOutsideCluster { .. }),
            ),
            (
                |r| r.members.push(member("10.99.0.2", "acme")),
                |e| matches!(e, Error::MemberOutsideCluster { .. }),
            ),
            (
                |r| r.members.push(member("10.88.3.2", "globex")),
                |e| matches!(e, Error::DuplicateMember { .. }),
            ),
            (
                |r| r.published[0].ip = ip("10.88.4.2"),
                |e| matches!(e, Error::PublishedOutsideHost { .. }),
            ),
            (
                |r| {
                    r.published[1].protocol = Protocol::Udp;
                    r.published[1].host_port = 5353;
                },
                |e| matches!(e, Error::DuplicatePublished { .. }),
            ),
            (
                |r| r.published[0].port = 0,
                |e| matches!(e, Error::PortZero { .. }),
            ),
            (
                |r| r.ports[0].ip = ip("10.88.4.9"),
                |e| matches!(e, Error::InvalidPort { .. }),
            ),
            (
                |r| r.ports[0].ifname = "eth0".into(),
                |e| matches!(e, Error::InvalidPort { .. }),
            ),
            (
                |r| r.ports[1].ifname = r.ports[0].ifname.clone(),
                |e| matches!(e, Error::DuplicatePort { .. }),
            ),
        ];
        for (i, (breakit, want)) in cases.into_iter().enumerate() {
            let mut rules = sample();
            breakit(&mut rules);
            let err = rules.render().unwrap_err();
            assert!(want(&err), "case {i}: got {err}");
            assert!(rules.check().is_err(), "case {i}");
        }
    }

    #[test]
    fn same_member_listed_twice_for_one_tenant_is_fine() {
        let mut rules = sample();
        rules.members.push(member("10.88.3.2", "acme"));
        assert_eq!(rules.render().unwrap(), GOLDEN);
    }
}
