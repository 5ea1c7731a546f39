//! Links over netlink: the host bridge, and a veth pair per container.
//!
//! ```text
//!  host namespace                          container namespace
//!  ┌──────────────────────────┐            ┌──────────────────────────┐
//!  │ bridge (gateway, e.g.    │            │ lo  up                   │
//!  │   10.88.3.1/24)          │            │ eth0 10.88.3.7/24 up     │
//!  │   └─ hv0123456789 (up) ──┼── veth ────┼─ default via 10.88.3.1   │
//!  └──────────────────────────┘            └──────────────────────────┘
//! ```
//!
//! Host-side calls act in the namespace of the calling thread (the host's, for the agent). The
//! peer is created directly inside the container's namespace, so it never exists in the host's,
//! and everything inside is configured over a netlink socket opened by a [`Netns::run`] thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute, LinkInfo,
    LinkMessage, State,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::netns::{self, Netns};

/// The container end's name inside its namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

/// Prefix of every host end's name; the firewall recognises herd's bridge ports by it.
pub const HOST_VETH_PREFIX: &str = "hv";

/// Longest interface name Linux accepts (IFNAMSIZ less the terminating NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Errors from link plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name cannot be a Linux interface name.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The gateway is not a usable neighbour of the container's address.
    #[error("gateway {gateway} is not another host address of {address}'s subnet")]
    BadGateway { address: Ipv4Net, gateway: Ipv4Addr },
    /// No netlink socket could be opened.
    #[error("opening a netlink socket")]
    Socket(#[source] io::Error),
    /// No runtime could be started on the namespace thread.
    #[error("starting a runtime for work inside a network namespace")]
    Runtime(#[source] io::Error),
    /// The kernel refused a netlink request.
    #[error("netlink: {op} {name}")]
    Netlink {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// A link that must exist does not.
    #[error("link {name} not found")]
    NotFound { name: String },
    /// A link of that name exists but is something else; herd leaves it alone.
    #[error("link {name} is a {found}, not a {want}; leaving it alone")]
    WrongKind {
        name: String,
        found: String,
        want: &'static str,
    },
    /// Configuring the container's side failed (the veth pair was removed again).
    #[error("configuring {CONTAINER_IFNAME} inside network namespace {netns}")]
    Inside {
        netns: String,
        #[source]
        source: Box<Error>,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] netns::Error),
}

/// Result of link operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to plumb for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plumbing {
    /// The host bridge the host end joins.
    pub bridge: String,
    /// The host end's name, see [`host_veth_name`].
    pub host_veth: String,
    /// The container's address with the subnet's prefix, e.g. `10.88.3.7/24`.
    pub address: Ipv4Net,
    /// The default gateway: the bridge's address.
    pub gateway: Ipv4Addr,
    /// MTU for both ends; `None` keeps the kernel default (1500). Set it to the underlay's MTU
    /// when traffic leaves the host unencapsulated over a smaller one.
    pub mtu: Option<u32>,
}

/// The host end's name for an instance: [`HOST_VETH_PREFIX`] and 10 hex digits of a SHA-256 of
/// the name, which fits IFNAMSIZ and is the same on every call.
pub fn host_veth_name(instance: &str) -> String {
    let digest = Sha256::digest(instance.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{HOST_VETH_PREFIX}{hex}")
}

/// Makes sure bridge `name` exists, has exactly `gateway` as its IPv4 address and is up.
///
/// Idempotent. Other IPv4 addresses on the bridge (from an earlier subnet lease) are removed:
/// herd owns its bridge. A non-bridge link of that name is an error, never touched.
pub async fn ensure_bridge(name: &str, gateway: Ipv4Net) -> Result<()> {
    check_ifname(name)?;
    let nl = Netlink::connect()?;
    let bridge = match nl.find(name).await? {
        Some(link) => link,
        None => nl.create_bridge(name).await?,
    };
    expect_kind(&bridge, name, InfoKind::Bridge, "bridge")?;
    let index = bridge.header.index;
    // NB: a bridge without an address of its own takes the lowest of its ports' addresses and
    // changes it as veths come and go; containers that learned the gateway's old address then
    // send into the void until their neighbour entry expires (a second or more of lost packets
    // for every container start). A fixed address, derived from the gateway, never changes.
    let mac = bridge_mac(gateway.addr());
    let has_mac = bridge.attributes.iter().any(|a| matches!(a, LinkAttribute::Address(m) if *m == mac));
    if !has_mac {
        let set = LinkUnspec::new_with_index(index).address(mac.clone()).build();
        nl.handle.link().set(set).execute().await.map_err(|e| netlink("setting the address of", name, e))?;
    }

    let mut has_gateway = false;
    for (addr, prefix, msg) in nl.ipv4_addresses(index).await? {
        if addr == gateway.addr() && prefix == gateway.prefix_len() {
            has_gateway = true;
        } else {
            nl.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| netlink("removing a stale address from", name, e))?;
        }
    }
    if !has_gateway {
        let add = nl
            .handle
            .address()
            .add(index, IpAddr::V4(gateway.addr()), gateway.prefix_len());
        add.execute()
            .await
            .map_err(|e| netlink("adding the gateway address to", name, e))?;
    }
    nl.set_up(index, name).await
}

/// A container's MAC address, from its IP address (as Docker does): locally administered,
/// unicast, and the same whenever the container is plumbed again, so peers' neighbour entries
/// stay right across a re-plumb.
pub fn container_mac(ip: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = ip.octets();
    vec![0x02, 0x42, a, b, c, d]
}

/// The bridge's fixed MAC address: locally administered, unicast, from the gateway address.
pub fn bridge_mac(gateway: Ipv4Addr) -> Vec<u8> {
    let [a, b, c, d] = gateway.octets();
    vec![0x02, 0x68, a, b, c, d]
}

/// Removes bridge `name`; a missing bridge is success. A non-bridge link of that name is an
/// error, never touched.
pub async fn remove_bridge(name: &str) -> Result<()> {
    check_ifname(name)?;
    Netlink::connect()?.delete(name, InfoKind::Bridge, "bridge").await
}

/// Plumbs a container: a veth pair whose host end joins the bridge (up) and whose peer is created
/// as [`CONTAINER_IFNAME`] directly inside `netns`, with the address, `lo` up and a default route
/// via the gateway.
///
/// An existing host end of that name is replaced. If anything fails once the pair exists, the
/// pair is deleted again, so nothing is left half-configured.
///
/// NB: run it to completion (not under a `select!` or timeout that drops it): a future dropped
/// between creating and configuring the pair cannot roll back; [`unplumb`] then removes it.
pub async fn plumb(netns: &Netns, p: &Plumbing) -> Result<()> {
    check_ifname(&p.bridge)?;
    check_ifname(&p.host_veth)?;
    check_gateway(p.address, p.gateway)?;
    let nl = Netlink::connect()?;
    let bridge = nl.find(&p.bridge).await?.ok_or_else(|| Error::NotFound {
        name: p.bridge.clone(),
    })?;
    expect_kind(&bridge, &p.bridge, InfoKind::Bridge, "bridge")?;
    nl.delete(&p.host_veth, InfoKind::Veth, "veth").await?;

    let mut peer = LinkUnspec::new_with_name(CONTAINER_IFNAME)
        .address(container_mac(p.address.addr()))
        .setns_by_fd(netns.as_fd().as_raw_fd());
    let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(p.host_veth.clone())
        .controller(bridge.header.index)
        .up();
    if let Some(mtu) = p.mtu {
        peer = peer.mtu(mtu);
        host = host.mtu(mtu);
    }
    let host = host
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    nl.handle
        .link()
        .add(host)
        .execute()
        .await
        .map_err(|e| netlink("creating veth pair", &p.host_veth, e))?;

    let (address, gateway) = (p.address, p.gateway);
    let inside = netns
        .run(move || in_runtime(configure_container(address, gateway)))
        .await;
    let failure = match inside {
        Ok(Ok(())) => {
            nl.await_forwarding(&p.host_veth).await;
            return Ok(());
        }
        Ok(Err(e)) => e,
        Err(e) => Error::Netns(e),
    };
    // Deleting the host end deletes its peer (and the peer's address and route) with it.
    if let Err(cleanup) = nl.delete(&p.host_veth, InfoKind::Veth, "veth").await {
        warn!(veth = %p.host_veth, error = %cleanup, "removing a half-plumbed veth failed");
    }
    Err(Error::Inside {
        netns: netns.path().display().to_string(),
        source: Box::new(failure),
    })
}

/// Removes a container's veth pair by its host end; a missing one is success. A non-veth link of
/// that name is an error, never touched.
pub async fn unplumb(host_veth: &str) -> Result<()> {
    check_ifname(host_veth)?;
    Netlink::connect()?
        .delete(host_veth, InfoKind::Veth, "veth")
        .await
}

/// Names of all links in the calling thread's namespace.
pub async fn link_names() -> Result<Vec<String>> {
    let nl = Netlink::connect()?;
    let links = nl.links().await?;
    Ok(links.iter().filter_map(link_name).collect())
}

/// Every IPv4 network configured on a link of the calling thread's namespace, with the link's
/// name: what a cluster CIDR must not overlap.
pub async fn ipv4_networks() -> Result<Vec<(String, Ipv4Net)>> {
    let nl = Netlink::connect()?;
    let links = nl.links().await?;
    let mut out = Vec::new();
    for link in &links {
        let name = link_name(link).unwrap_or_default();
        for (ip, prefix, _) in nl.ipv4_addresses(link.header.index).await? {
            if let Ok(net) = Ipv4Net::new(ip, prefix) {
                out.push((name.clone(), net));
            }
        }
    }
    Ok(out)
}

/// Inside the container's namespace: `lo` up, address on `eth0`, `eth0` up, default route.
///
/// NB: the route is added without replace, so a namespace that already has a default route
/// (configured by something else) makes plumbing fail rather than be silently rerouted.
async fn configure_container(address: Ipv4Net, gateway: Ipv4Addr) -> Result<()> {
    let nl = Netlink::connect()?;
    let lo = nl.index("lo").await?;
    nl.set_up(lo, "lo").await?;
    let eth = nl.index(CONTAINER_IFNAME).await?;
    let add = nl
        .handle
        .address()
        .add(eth, IpAddr::V4(address.addr()), address.prefix_len());
    add.execute()
        .await
        .map_err(|e| netlink("adding the address to", CONTAINER_IFNAME, e))?;
    nl.set_up(eth, CONTAINER_IFNAME).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(gateway)
        .output_interface(eth)
        .build();
    nl.handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(|e| netlink("adding the default route via", &gateway.to_string(), e))
}

/// Runs `work` to completion on a single-threaded runtime of the current (namespace) thread.
fn in_runtime<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?
        .block_on(work)
}

/// A netlink connection in the namespace of the thread that opened it.
pub(super) struct Netlink {
    pub(super) handle: Handle,
    /// The connection's driver task, stopped when this is dropped.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace. Needs a tokio runtime.
    pub(super) fn connect() -> Result<Self> {
        let (conn, handle, _unsolicited) = rtnetlink::new_connection().map_err(Error::Socket)?;
        Ok(Self {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// Every link in the namespace.
    async fn links(&self) -> Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| netlink("listing", "links", e))
    }

    /// The link called `name`, if any.
    async fn find(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(netlink("looking up link", name, e)),
        }
    }

    /// Creates bridge `name` (down; callers set it up once addressed) and returns what is
    /// there afterwards: if someone else created a link of that name just now, that one.
    async fn create_bridge(&self, name: &str) -> Result<LinkMessage> {
        let request = self.handle.link().add(LinkBridge::new(name).down().build());
        match request.execute().await {
            Err(e) if errno(&e) != Some(libc::EEXIST) => Err(netlink("creating bridge", name, e)),
            _ => self
                .find(name)
                .await?
                .ok_or_else(|| Error::NotFound { name: name.into() }),
        }
    }

    /// The index of the link called `name`, which must exist.
    async fn index(&self, name: &str) -> Result<u32> {
        match self.find(name).await? {
            Some(link) => Ok(link.header.index),
            None => Err(Error::NotFound { name: name.into() }),
        }
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<()> {
        let up = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(up)
            .execute()
            .await
            .map_err(|e| netlink("setting up", name, e))
    }

    /// Waits (a bounded while) until the host end `name` is operationally up and its bridge
    /// port forwards.
    ///
    /// NB: the kernel finishes bringing a new veth's carrier up asynchronously; a packet sent to
    /// the container in the few milliseconds before its port forwards is lost, and a lost ARP
    /// request costs a whole second (the neighbour retry). Measured here: 8 of 16 containers
    /// started together lost their first second without this wait, none with it.
    async fn await_forwarding(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + FORWARDING_WAIT;
        loop {
            match self.find(name).await {
                Ok(Some(link)) if port_forwards(&link) => return,
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {}
                other => {
                    let state = other.map(|l| l.map(|l| port_forwards(&l)));
                    warn!(veth = %name, state = ?state, "port not forwarding yet; its first packets may be lost");
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Deletes link `name` if it exists and is of `kind`; missing is success.
    async fn delete(&self, name: &str, kind: InfoKind, want: &'static str) -> Result<()> {
        let Some(link) = self.find(name).await? else {
            return Ok(());
        };
        expect_kind(&link, name, kind, want)?;
        match self.handle.link().del(link.header.index).execute().await {
            Err(e) if errno(&e) != Some(libc::ENODEV) => Err(netlink("deleting", name, e)),
            _ => Ok(()),
        }
    }

    /// The IPv4 addresses on link `index`: (address, prefix length, message for deletion).
    pub(super) async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8, AddressMessage)>> {
        let all: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| netlink("listing addresses of link", &index.to_string(), e))?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let address = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                local.or(address).map(|ip| (ip, m.header.prefix_len, m))
            })
            .collect())
    }
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

/// How long [`Netlink::await_forwarding`] waits at most.
const FORWARDING_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a bridge port's link is operationally up and its port state (when the kernel reports
/// one) is forwarding.
fn port_forwards(link: &LinkMessage) -> bool {
    let up = link.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Up)));
    let port_state = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => attrs.iter().find_map(|b| match b {
                InfoBridgePort::State(s) => Some(*s),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    });
    up && port_state.is_none_or(|s| s == BridgePortState::Forwarding)
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

fn expect_kind(link: &LinkMessage, name: &str, kind: InfoKind, want: &'static str) -> Result<()> {
    match link_kind(link) {
        Some(found) if *found == kind => Ok(()),
        found => Err(Error::WrongKind {
            name: name.into(),
            found: found.map_or_else(|| "device".to_string(), |k| k.to_string()),
            want,
        }),
    }
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

pub(super) fn netlink(op: &'static str, name: &str, source: rtnetlink::Error) -> Error {
    Error::Netlink {
        op,
        name: name.into(),
        source,
    }
}

/// Checks that `name` can be a Linux interface name (see the kernel's `dev_valid_name`).
fn check_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':', whitespace or a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks that `gateway` is another host address of `address`'s subnet.
fn check_gateway(address: Ipv4Net, gateway: Ipv4Addr) -> Result<()> {
    let subnet = address.trunc();
    let usable = subnet.contains(&gateway)
        && gateway != address.addr()
        && gateway != subnet.network()
        && gateway != subnet.broadcast();
    if usable {
        Ok(())
    } else {
        Err(Error::BadGateway { address, gateway })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_are_stable() {
        let names = [
            "acme/prod/datanode-0",
            "acme/prod/datanode-1",
            "",
            &"x".repeat(300),
        ];
        for name in names {
            let veth = host_veth_name(name);
            assert_eq!(veth.len(), 12, "{veth}");
            assert!(veth.len() <= MAX_IFNAME_LEN);
            assert!(veth.starts_with("hv"));
            assert!(veth[2..].chars().all(|c| c.is_ascii_hexdigit()), "{veth}");
            check_ifname(&veth).unwrap();
            assert_eq!(host_veth_name(name), veth, "same name, same veth");
        }
        assert_ne!(
            host_veth_name("acme/prod/datanode-0"),
            host_veth_name("acme/prod/datanode-1")
        );
    }

    #[test]
    fn interface_names_are_checked() {
        // (name, valid)
        let cases = [
            ("hbr0", true),
            ("hv0123456789", true),
            ("a23456789012345", true),
            ("a234567890123456", false),
            ("", false),
            ("..", false),
            ("a/b", false),
            ("a:b", false),
            ("a b", false),
            ("a\nb", false),
        ];
        for (name, valid) in cases {
            assert_eq!(check_ifname(name).is_ok(), valid, "{name:?}");
        }
    }

    #[test]
    fn gateways_are_checked() {
        let address: Ipv4Net = "10.88.3.7/24".parse().unwrap();
        // (gateway, valid)
        let cases = [
            ("10.88.3.1", true),
            ("10.88.3.254", true),
            ("10.88.3.7", false),
            ("10.88.3.0", false),
            ("10.88.3.255", false),
            ("10.88.4.1", false),
        ];
        for (gateway, valid) in cases {
            let ok = check_gateway(address, gateway.parse().unwrap()).is_ok();
            assert_eq!(ok, valid, "{gateway}");
        }
    }
}
