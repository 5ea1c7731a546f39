//! What an agent may claim for its host, beyond its token's binding to one host id: container
//! addresses only from its own host's subnet, and a log endpoint only on its own address. A
//! claim outside those is refused (403 or 422) and written to the audit trail, as another
//! host's token or a forged agent would make it.
//!
//! NB: an address reported for an instance that is not placed on the reporting host is not
//! refused (a host back from `lost` still runs what moved elsewhere, and a container awaiting
//! removal is still reported; refusing their heartbeats would keep them from ever hearing
//! that): such an address is never used, as [`crate::netview::contents`] takes an instance's
//! address only from the host it is placed on.

use std::net::{IpAddr, Ipv4Addr};

use herd_api::wire::{Heartbeat, LogEndpoint};
use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::state::{State, now_ms};

use crate::store::audit::{self, Change};

/// Why `hb` may not be stored, if it may not: it reports an address outside `subnet` (the
/// reporting host's lease; `None` when it has none, so no address at all).
pub fn check_addresses(hb: &Heartbeat, subnet: Option<Ipv4Net>) -> Result<(), String> {
    for o in &hb.observed {
        let Some(ip) = o.ip else { continue };
        if !subnet.is_some_and(|s| s.contains(&ip)) {
            let inside = subnet.map_or("no subnet (it registered without an address)".to_string(), |s| format!("subnet {s}"));
            return Err(format!(
                "host `{}` reported address {ip} for {}, but its containers' addresses come from its {inside}",
                hb.host_id, o.instance
            ));
        }
    }
    Ok(())
}

/// Why `ep` may not be a host's log endpoint, if it may not: its URL must be plain `http(s)`
/// on the host's registered `address`, or, for a host without one, on the address the
/// registration came from (`peer`, when known).
pub fn check_log_endpoint(ep: &LogEndpoint, address: Option<Ipv4Addr>, peer: Option<IpAddr>) -> Result<(), String> {
    let host = log_url_address(ep)?;
    let want = address.map(IpAddr::V4).or(peer);
    match want {
        Some(w) if w != host => Err(format!(
            "`{}` is not on this host's {} {w}: an agent serves logs on its own address",
            ep.url,
            if address.is_some() { "registered address" } else { "address" }
        )),
        _ => Ok(()),
    }
}

/// The address a log endpoint's URL names, if it is a plain `http(s)://ADDRESS:PORT` URL.
fn log_url_address(ep: &LogEndpoint) -> Result<IpAddr, String> {
    let url = url::Url::parse(&ep.url).map_err(|e| format!("`{}` is not a URL: {e}", ep.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.port_or_known_default().is_none() || url.path() != "/" {
        return Err(format!("`{}` is not an http(s)://ADDRESS:PORT URL", ep.url));
    }
    let host: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    host.ok_or_else(|| format!("`{}` must name the host's address, not a name", ep.url))
}

impl State {
    /// Refuses (403, audited) a heartbeat that reports an address outside its host's subnet.
    /// A host the orchestrator does not know passes: the heartbeat answers 404 and the agent
    /// registers again.
    pub async fn check_heartbeat(&self, actor: &str, hb: &Heartbeat) -> Result<()> {
        if hb.observed.iter().all(|o| o.ip.is_none()) {
            return Ok(());
        }
        // NB: from the hot state (hosts and leases live there; the store has them only
        // written behind): this runs on every heartbeat of every host.
        let Some(subnet) = self.hot.host(&hb.host_id).map(|h| h.subnet) else { return Ok(()) };
        if let Err(why) = check_addresses(hb, subnet) {
            self.audit_refusal(actor, "agent.heartbeat.refused", &hb.host_id, &why).await?;
            return Err(Error::Forbidden(why));
        }
        Ok(())
    }

    /// Refuses (422 on `logs.url`; refused by state and audited when the URL is well formed) a
    /// log endpoint that is not on the host's address.
    pub async fn check_log_endpoint(&self, actor: &str, host: &str, ep: &LogEndpoint, address: Option<Ipv4Addr>, peer: Option<IpAddr>) -> Result<()> {
        // A malformed URL is the request's fault; one on another address is refused (audited)
        // as the identity check it is.
        log_url_address(ep).map_err(|why| Error::invalid("logs.url", why))?;
        if let Err(why) = check_log_endpoint(ep, address, peer) {
            self.audit_refusal(actor, "agent.register.refused", host, &why).await?;
            return Err(Error::refused("logs.url", why));
        }
        Ok(())
    }

    /// The ports agents serve their log endpoints on (7481 unless `--listen` says otherwise):
    /// herd's own, so no cluster may publish them.
    pub async fn agent_ports(&self) -> Result<std::collections::BTreeSet<u16>> {
        self.store
            .read(|c| {
                let mut ports = std::collections::BTreeSet::new();
                for ep in c.log_endpoints()?.into_values() {
                    if let Some(port) = url::Url::parse(&ep.url).ok().and_then(|u| u.port_or_known_default()) {
                        ports.insert(port);
                    }
                }
                Ok(ports)
            })
            .await
    }

    async fn audit_refusal(&self, actor: &str, action: &'static str, host: &str, why: &str) -> Result<()> {
        tracing::warn!(actor, host, reason = why, "agent claim refused");
        let (actor, resource, why, now) = (actor.to_string(), format!("hosts/{host}"), why.to_string(), now_ms());
        self.store
            .write(move |tx| {
                let change = Change { actor: &actor, action, resource: &resource, before: None, after: None };
                audit::record_detail(tx, now, &change, Some(&why))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::names::InstanceRef;
    use herd_api::wire::{ContainerState, Observed};

    fn hb(ips: &[&str]) -> Heartbeat {
        let observed = ips
            .iter()
            .enumerate()
            .map(|(n, ip)| Observed {
                instance: InstanceRef { tenant: "t".into(), cluster: "c".into(), name: format!("datanode-{n}") },
                container_id: "x".into(),
                state: ContainerState::Running,
                started_at: None,
                exit_code: None,
                error: None,
                ip: ip.parse().ok(),
                config_hash: None,
                live_hash: None,
                hadoop: None,
            })
            .collect();
        Heartbeat { host_id: "a".into(), observed, conditions: vec![], purged: vec![], applied: None, network_deltas: true }
    }

    #[test]
    fn addresses_only_from_the_hosts_own_subnet() {
        let subnet = "10.88.1.0/24".parse().ok();
        assert!(check_addresses(&hb(&["10.88.1.2", "", "10.88.1.254"]), subnet).is_ok());
        let why = check_addresses(&hb(&["10.88.1.2", "10.88.2.7"]), subnet).unwrap_err();
        assert!(why.contains("10.88.2.7") && why.contains("10.88.1.0/24") && why.contains("t/c/datanode-1"), "{why}");
        assert!(check_addresses(&hb(&["10.88.1.2"]), None).is_err(), "a host without a subnet reports no address");
        assert!(check_addresses(&hb(&[""]), None).is_ok());
    }

    #[test]
    fn log_endpoint_only_on_the_hosts_address() {
        let ep = |url: &str| LogEndpoint { url: url.into(), secret: "s".into() };
        let a: Option<Ipv4Addr> = "192.0.2.7".parse().ok();
        let peer: Option<IpAddr> = "127.0.0.1".parse().ok();
        assert!(check_log_endpoint(&ep("http://192.0.2.7:7481"), a, peer).is_ok());
        assert!(check_log_endpoint(&ep("http://192.0.2.8:7481"), a, peer).unwrap_err().contains("192.0.2.7"));
        assert!(check_log_endpoint(&ep("http://127.0.0.1:7481"), None, peer).is_ok());
        assert!(check_log_endpoint(&ep("http://10.0.0.1:7481"), None, peer).is_err());
        assert!(check_log_endpoint(&ep("http://logs.example:7481"), a, peer).is_err());
        assert!(check_log_endpoint(&ep("ftp://192.0.2.7:7481"), a, peer).is_err());
        assert!(check_log_endpoint(&ep("http://192.0.2.7:7481/elsewhere"), a, peer).is_err());
        assert!(check_log_endpoint(&ep("http://10.0.0.1:7481"), None, None).is_ok(), "nothing to compare with");
    }
}
