//! Container networking, the orchestrator's half: it owns the cluster CIDR, leases each host a
//! subnet of it (stored, stable for the host's life). Which routes and addresses each agent is
//! told is [`crate::netview`]'s. Pure: the store calls live in [`crate::hosts`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The cluster's address plan, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Every container address is inside it; it must not overlap any host's own networks.
    pub cluster_cidr: Ipv4Net,
    /// Prefix length of each host's subnet, e.g. 24 for 254 containers per host.
    pub host_prefix: u8,
}

impl Settings {
    /// The defaults: `100.64.0.0/10` (RFC 6598 shared address space, seldom a host network),
    /// a `/25` per host: 32,768 hosts of 125 containers. (Before: `10.88.0.0/16` in `/24`s,
    /// which refused the 257th host.) Sizing: hosts = 2^(host prefix − CIDR prefix),
    /// containers per host = 2^(32 − host prefix) − 3 (network, gateway, broadcast).
    pub fn default_plan() -> Self {
        // NB: a literal network with a valid prefix; `new` cannot fail on it.
        let cluster_cidr = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).unwrap_or_default();
        Self { cluster_cidr, host_prefix: 25 }
    }

    /// How many hosts the plan holds.
    pub fn hosts(&self) -> u64 {
        1u64 << (self.host_prefix - self.cluster_cidr.prefix_len())
    }

    /// Checks that host subnets fit the cluster CIDR and hold a gateway and containers.
    pub fn check(&self) -> Result<(), String> {
        if self.cluster_cidr != self.cluster_cidr.trunc() {
            return Err(format!("cluster CIDR {} has host bits set; write {}", self.cluster_cidr, self.cluster_cidr.trunc()));
        }
        if self.host_prefix < self.cluster_cidr.prefix_len() || self.host_prefix > 29 {
            return Err(format!(
                "host subnet prefix /{} must be between the cluster CIDR's /{} and /29",
                self.host_prefix,
                self.cluster_cidr.prefix_len()
            ));
        }
        Ok(())
    }

    /// Whether `subnet` is a host subnet of this plan.
    pub fn fits(&self, subnet: Ipv4Net) -> bool {
        subnet.prefix_len() == self.host_prefix && self.cluster_cidr.contains(&subnet)
    }

    /// A host subnet not in `taken`, or why there is none: the one after the highest taken
    /// (O(1) while hosts join one after another), else the first free one.
    pub fn lease(&self, taken: &BTreeSet<Ipv4Net>) -> Result<Ipv4Net, String> {
        if let Some(last) = taken.iter().rev().find(|s| self.fits(**s)) {
            let next = u32::from(last.broadcast()).checked_add(1).map(Ipv4Addr::from);
            if let Some(n) = next.and_then(|a| Ipv4Net::new(a, self.host_prefix).ok())
                && self.fits(n)
                && !taken.contains(&n)
            {
                return Ok(n);
            }
        }
        let mut subnets = self.cluster_cidr.subnets(self.host_prefix).map_err(|e| e.to_string())?;
        subnets.find(|s| !taken.contains(s)).ok_or_else(|| {
            format!(
                "cluster CIDR {} has no free /{} left ({} hosts hold one): widen --cluster-cidr or lengthen --host-subnet-prefix",
                self.cluster_cidr,
                self.host_prefix,
                taken.len()
            )
        })
    }

    /// Why a host with underlay `address` cannot join, if it cannot: its own address inside the
    /// cluster CIDR would make container routes shadow the underlay.
    pub fn check_address(&self, address: Ipv4Addr) -> Result<(), String> {
        if self.cluster_cidr.contains(&address) {
            return Err(format!(
                "{address} is inside the cluster CIDR {}: choose a --cluster-cidr that overlaps none of the hosts' networks",
                self.cluster_cidr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn leases_first_free_and_reports_exhaustion() {
        let s = Settings { cluster_cidr: net("10.9.0.0/23"), host_prefix: 24 };
        assert_eq!(s.lease(&BTreeSet::new()), Ok(net("10.9.0.0/24")));
        assert_eq!(s.lease(&BTreeSet::from([net("10.9.0.0/24")])), Ok(net("10.9.1.0/24")));
        let full = BTreeSet::from([net("10.9.0.0/24"), net("10.9.1.0/24")]);
        assert!(s.lease(&full).err().unwrap_or_default().contains("no free /24 left"));
    }

    #[test]
    fn settings_are_checked() {
        let cases = [
            ("10.88.0.0/16", 24, true),
            ("10.88.0.1/16", 24, false),
            ("10.88.0.0/16", 8, false),
            ("10.88.0.0/16", 30, false),
        ];
        for (cidr, prefix, ok) in cases {
            let s = Settings { cluster_cidr: net(cidr), host_prefix: prefix };
            assert_eq!(s.check().is_ok(), ok, "{cidr} /{prefix}");
        }
        let s = Settings::default_plan();
        assert!(s.check().is_ok());
        assert!(s.hosts() >= 30_000, "the default plan must hold 30,000 hosts: {}", s.hosts());
        assert!(s.check_address(Ipv4Addr::new(100, 64, 1, 1)).is_err());
        assert!(s.check_address(Ipv4Addr::new(10, 88, 1, 1)).is_ok());
        assert!(s.check_address(Ipv4Addr::new(192, 0, 2, 1)).is_ok());
    }
}
