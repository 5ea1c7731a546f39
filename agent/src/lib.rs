//! herd's per-host agent.
//!
//! # Layout
//! - [`config`]: typed, validated configuration (flags, environment, file, detection).
//! - [`client`]: the agent protocol towards the orchestrator.
//! - [`runtime`]: the container runtime trait; [`docker`]: its bollard backend.
//! - [`converge`]: pure `plan(desired, found)` and the executor that applies it.
//! - [`agent`]: the register / heartbeat / converge loop.
//! - [`logs`]: per-instance log capture, rotation, reading, serving and syslog forwarding.
//! - [`net`]: container networking: IPAM, bridge and veths over netlink, nftables firewall.

pub mod agent;
pub mod client;
pub mod config;
pub mod converge;
pub mod docker;
pub mod logs;
pub mod net;
pub mod runtime;
