//! herd's per-host agent.
//!
//! # Layout
//! - [`config`]: typed, validated configuration (flags, environment, file, detection).
//! - [`client`]: the agent protocol towards the orchestrator.
//! - [`runtime`]: the container runtime trait; [`docker`]: its bollard backend.
//! - [`converge`]: pure `plan(desired, found)` and the executor that applies it.
//! - [`hadoop`]: rendered Hadoop config files, live-file refreshes, the masters' health.
//! - [`agent`]: the register / heartbeat / converge loop.
//! - [`logs`]: per-instance log capture, rotation, reading, serving and syslog forwarding.
//! - [`net`]: container networking: IPAM, bridge and veths over netlink, nftables firewall.
//! - [`metrics`]: the agent's Prometheus metrics, served with `/healthz` and `/readyz` beside the logs.

pub mod agent;
pub mod client;
pub mod config;
pub mod converge;
pub mod docker;
pub mod hadoop;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod pull;
pub mod runtime;

/// An error and its causes on one line, for instance statuses and log fields.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
