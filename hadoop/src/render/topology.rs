//! The topology table (`net.topology.table.file.name`, read by Hadoop's `TableMapping`) and
//! the include/exclude host lists: the files a master re-reads without a restart.
//!
//! Topology has two levels below the root, `/<rack>/<host>`: the rack is the host's rack
//! label and the node group is the physical host, so with `NetworkTopologyWithNodeGroup` and
//! `BlockPlacementPolicyWithNodeGroup` HDFS never puts two replicas of a block on one machine,
//! even when herd packs two DataNodes of one cluster onto it.
//!
//! NB: the NameNode looks a DataNode up by its **IP address** (`DatanodeManager
//! .resolveNetworkLocation` passes `getIpAddr()` to a `CachedDNSToSwitchMapping` such as
//! `TableMapping`), so each member's address gets a line once it is known; its DNS name gets
//! one too, for tools and for the ResourceManager, which resolves NodeManagers by name.

use std::fmt::Write;

use herd_api::Role;

use super::{ClusterView, Member};

/// The node group's rack when a host has no rack label (Hadoop's own default rack name).
pub const DEFAULT_RACK: &str = "default-rack";

/// `/<rack>/<host>` for a placed member; `None` while it is pending (it has no host yet, and
/// Hadoop places unlisted names in `/default-rack`).
pub fn location(member: &Member) -> Option<String> {
    let host = member.host.as_deref()?;
    let rack = member.rack.as_deref().map(segment).filter(|r| !r.is_empty()).unwrap_or_else(|| DEFAULT_RACK.to_string());
    Some(format!("/{rack}/{}", segment(host)))
}

/// One path segment: no leading or trailing `/`, inner `/` and whitespace replaced by `-`
/// (a deeper path would not be a rack/node-group pair, and `TableMapping` splits on spaces).
fn segment(s: &str) -> String {
    s.trim().trim_matches('/').chars().map(|c| if c == '/' || c.is_whitespace() { '-' } else { c }).collect()
}

/// The topology table: a line `<name> /<rack>/<host>` for every placed DataNode and
/// NodeManager, and one for its address when known. Sorted by instance.
pub fn table(cluster: &ClusterView<'_>) -> String {
    let mut members: Vec<&Member> =
        cluster.members.iter().filter(|m| matches!(m.role, Role::Datanode | Role::Nodemanager)).collect();
    members.sort_by(|a, b| a.instance.cmp(&b.instance));
    let mut out = String::from("# Rendered by herd: <name or address> /<rack>/<host>\n");
    for member in members {
        let Some(location) = location(member) else { continue };
        let _ = writeln!(out, "{} {location}", member.instance.hostname());
        if let Some(ip) = member.ip {
            let _ = writeln!(out, "{ip} {location}");
        }
    }
    out
}

/// The hostnames of the members of `role` that are leaving, one per line: an exclude file.
/// Names are what the masters know the workers by (`dfs.datanode.hostname`,
/// `yarn.nodemanager.hostname`), resolved through herd's `/etc/hosts`.
pub fn leaving(cluster: &ClusterView<'_>, role: Role) -> String {
    let mut names: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| m.role == role && cluster.leaving.contains(&m.instance))
        .map(|m| m.instance.hostname())
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(|n| n + "\n").collect()
}
