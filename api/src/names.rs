//! Names. Tenants, clusters and hosts are DNS labels (RFC 1123), so every name derived from
//! them is a valid hostname, Docker container name and Kubernetes object name.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::Role;

/// Checks that `s` is a DNS label: 1-63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
/// Anything else (upper case, dots, Unicode look-alikes) is refused.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("must be at most 63 characters, got {}", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!(
            "`{}` may contain only lower-case letters a-z, digits and `-` (found {c:?})",
            s.escape_default()
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("`{s}` must start and end with a letter or digit"));
    }
    Ok(())
}

/// Host ids are DNS labels too, so they can name bridges, log folders and metrics.
pub fn check_host_id(s: &str) -> Result<(), String> {
    check_dns_label(s)
}

/// One instance of a pool: `tenant/cluster/pool-ordinal`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceRef {
    pub tenant: String,
    pub cluster: String,
    /// `pool-ordinal`, e.g. `datanode-3`; stable for the instance's life.
    pub name: String,
}

impl InstanceRef {
    pub fn new(tenant: &str, cluster: &str, role: Role, ordinal: u32) -> Self {
        Self { tenant: tenant.into(), cluster: cluster.into(), name: format!("{}-{ordinal}", role.as_str()) }
    }

    /// The Docker container name. Dots separate the parts: DNS labels hold none, so the name
    /// is unambiguous (`acme-x/prod` and `acme/x-prod` stay apart).
    pub fn container_name(&self) -> String {
        format!("herd.{}.{}.{}", self.tenant, self.cluster, self.name)
    }

    /// The hostname the instance's Hadoop daemon sees: `datanode-3.prod.acme`.
    pub fn hostname(&self) -> String {
        format!("{}.{}.{}", self.name, self.cluster, self.tenant)
    }
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.cluster, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "acme", "prod-1", "0abc", &"a".repeat(63)] {
            assert_eq!(check_dns_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a.b", "a_b", "аcme" /* Cyrillic a */, "a b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn derived_names() {
        let i = InstanceRef::new("acme", "prod", Role::Datanode, 3);
        assert_eq!(i.to_string(), "acme/prod/datanode-3");
        assert_eq!(i.container_name(), "herd.acme.prod.datanode-3");
        assert_eq!(i.hostname(), "datanode-3.prod.acme");
    }
}
