//! Container networking, owned by the agent: every container runs with Docker's network mode
//! `none` and is plumbed here.
//!
//! ```text
//! ipam::allocate(owner) ─► link::ensure_bridge(gateway) ─► link::plumb(netns, address)
//!                                                         firewall::apply(ruleset)
//!                                                         docker_user::ensure_accept(bridge)
//! teardown: link::unplumb(veth) ─► ipam::release(owner)
//! ```
//!
//! - [`host`]: the steps the agent runs each pass (setup, prepare, attach, release, sync).
//! - [`hosts`]: each instance's /etc/hosts, naming its cluster's instances.
//! - [`ipam`]: container addresses from the host subnet, persisted under a lock.
//! - [`link`]: the bridge and the per-container veth pairs, over netlink.
//! - [`route`]: routes to the other hosts' subnets via their underlay addresses.
//! - [`netns`]: running work inside a container's network namespace (all `unsafe` is there).
//! - [`firewall`]: herd's nftables tables from a pure [`firewall::Ruleset`], applied atomically.
//! - [`docker_user`]: accepts for herd's bridge in Docker's `DOCKER-USER` chain.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `setns`).

pub mod docker_user;
pub mod firewall;
pub mod host;
pub mod hosts;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod route;
