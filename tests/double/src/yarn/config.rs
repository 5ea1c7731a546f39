//! The `yarn-site.xml` keys the doubles read, typed once, with yarn-default.xml's defaults.

use crate::conf::Conf;
use std::path::PathBuf;
use std::time::Duration;

/// The ResourceManager's addresses as `host:port`, derived like `YarnConfiguration`: an
/// explicit `yarn.resourcemanager.*.address` wins, else `yarn.resourcemanager.hostname`
/// (default `0.0.0.0`) with the default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RmAddrs {
    pub resource_tracker: String,
    pub client: String,
    pub admin: String,
    pub scheduler: String,
    pub webapp: String,
}

impl RmAddrs {
    pub fn from_conf(conf: &Conf) -> RmAddrs {
        let host = expand(conf, conf.get_or("yarn.resourcemanager.hostname", "0.0.0.0"));
        let addr = |key: &str, port: u16| value(conf, key).unwrap_or_else(|| format!("{host}:{port}"));
        RmAddrs {
            resource_tracker: addr("yarn.resourcemanager.resource-tracker.address", 8031),
            client: addr("yarn.resourcemanager.address", 8032),
            admin: addr("yarn.resourcemanager.admin.address", 8033),
            scheduler: addr("yarn.resourcemanager.scheduler.address", 8030),
            webapp: addr("yarn.resourcemanager.webapp.address", 8088),
        }
    }
}

/// What the ResourceManager double is configured with.
#[derive(Debug, Clone)]
pub struct RmConf {
    pub addrs: RmAddrs,
    pub min_allocation_mb: u64,
    pub min_allocation_vcores: u64,
    pub heartbeat_interval: Duration,
    pub nm_expiry: Duration,
    pub include_path: Option<PathBuf>,
    pub exclude_path: Option<PathBuf>,
    /// `yarn.resourcemanager.nodemanager-graceful-decommission-timeout-secs`: the timeout of a
    /// graceful refresh that names none.
    pub graceful_timeout_secs: i64,
    pub decommission_poll: Duration,
}

impl RmConf {
    pub fn from_conf(conf: &Conf) -> RmConf {
        RmConf {
            addrs: RmAddrs::from_conf(conf),
            min_allocation_mb: conf.u64_or("yarn.scheduler.minimum-allocation-mb", 1024),
            min_allocation_vcores: conf.u64_or("yarn.scheduler.minimum-allocation-vcores", 1),
            heartbeat_interval: Duration::from_millis(conf.u64_or("yarn.resourcemanager.nodemanagers.heartbeat-interval-ms", 1000)),
            nm_expiry: Duration::from_millis(conf.u64_or("yarn.nm.liveness-monitor.expiry-interval-ms", 600_000)),
            include_path: conf.path("yarn.resourcemanager.nodes.include-path"),
            exclude_path: conf.path("yarn.resourcemanager.nodes.exclude-path"),
            graceful_timeout_secs: conf
                .get("yarn.resourcemanager.nodemanager-graceful-decommission-timeout-secs")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(3600),
            decommission_poll: Duration::from_secs(conf.u64_or("yarn.resourcemanager.decommissioning-nodes-watcher.poll-interval-secs", 20)),
        }
    }
}

/// What the NodeManager double is configured with.
#[derive(Debug, Clone)]
pub struct NmConf {
    pub rm: RmAddrs,
    /// The host of `yarn.nodemanager.address` (a `0.0.0.0` or empty one replaced by the
    /// hostname) and its port (0: ephemeral): the NodeId once bound.
    pub host: String,
    pub port: u16,
    /// `yarn.nodemanager.webapp.address` as the RM shows it (`host:8042`).
    pub http_address: String,
    pub memory_mb: u64,
    pub vcores: u64,
    /// `yarn.nodemanager.health-checker.script.path`: output starting with `ERROR` makes the
    /// node UNHEALTHY, as Hadoop's NodeHealthScriptRunner does.
    pub health_script: Option<PathBuf>,
    pub health_interval: Duration,
}

impl NmConf {
    pub fn from_conf(conf: &Conf, hostname: &str) -> NmConf {
        let nm_host = value(conf, "yarn.nodemanager.hostname").unwrap_or_else(|| hostname.to_string());
        let own = |h: &str| if h.is_empty() || h == "0.0.0.0" { hostname.to_string() } else { h.to_string() };
        let (host, port) = split_host_port(&value(conf, "yarn.nodemanager.address").unwrap_or_else(|| format!("{nm_host}:0")));
        let (web_host, web_port) = split_host_port(&value(conf, "yarn.nodemanager.webapp.address").unwrap_or_else(|| format!("{nm_host}:8042")));
        let host = own(&host);
        NmConf {
            rm: RmAddrs::from_conf(conf),
            host,
            port,
            http_address: format!("{}:{web_port}", own(&web_host)),
            memory_mb: conf.u64_or("yarn.nodemanager.resource.memory-mb", 8192),
            vcores: conf.u64_or("yarn.nodemanager.resource.cpu-vcores", 8),
            health_script: conf.path("yarn.nodemanager.health-checker.script.path"),
            health_interval: Duration::from_millis(conf.u64_or("yarn.nodemanager.health-checker.interval-ms", 600_000)),
        }
    }
}

/// `host:port`; a missing or bad port is 0.
pub fn split_host_port(s: &str) -> (String, u16) {
    match s.trim().rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
        None => (s.trim().to_string(), 0),
    }
}

/// A value with `${other.key}` references expanded (one level deep is all yarn-site needs),
/// `None` when unset or blank.
fn value(conf: &Conf, key: &str) -> Option<String> {
    let raw = conf.get(key)?.trim();
    if raw.is_empty() {
        return None;
    }
    Some(expand(conf, raw))
}

/// `${other.key}` references expanded.
fn expand(conf: &Conf, raw: &str) -> String {
    let raw = raw.trim();
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else { break };
        let name = &rest[start + 2..start + end];
        out.push_str(conf.get(name).map(str::trim).unwrap_or(""));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Conf {
        Conf { dir: PathBuf::from("/etc/hadoop/conf"), props: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn rm_addresses_derive_from_hostname_and_explicit_ones_win() {
        let c = conf(&[("yarn.resourcemanager.hostname", "rm.prod.acme"), ("yarn.resourcemanager.admin.address", "rm-admin:9033")]);
        let a = RmAddrs::from_conf(&c);
        assert_eq!(a.resource_tracker, "rm.prod.acme:8031");
        assert_eq!(a.client, "rm.prod.acme:8032");
        assert_eq!(a.admin, "rm-admin:9033");
        assert_eq!(a.scheduler, "rm.prod.acme:8030");
        assert_eq!(a.webapp, "rm.prod.acme:8088");
        let c = conf(&[("yarn.resourcemanager.hostname", "rm"), ("yarn.resourcemanager.webapp.address", "${yarn.resourcemanager.hostname}:18088")]);
        assert_eq!(RmAddrs::from_conf(&c).webapp, "rm:18088");
    }

    #[test]
    fn node_id_is_the_pinned_address_with_a_wildcard_host_replaced() {
        let c = conf(&[("yarn.nodemanager.address", "nodemanager-1.prod.acme:8041")]);
        let nm = NmConf::from_conf(&c, "nodemanager-1.prod.acme");
        assert_eq!((nm.host.as_str(), nm.port), ("nodemanager-1.prod.acme", 8041));
        assert_eq!(nm.http_address, "nodemanager-1.prod.acme:8042");
        assert_eq!((nm.memory_mb, nm.vcores), (8192, 8));
        let c = conf(&[("yarn.nodemanager.address", "0.0.0.0:8041")]);
        assert_eq!(NmConf::from_conf(&c, "nm-2").host, "nm-2");
        let c = conf(&[("yarn.nodemanager.address", ":8041")]);
        assert_eq!(NmConf::from_conf(&c, "nm-3").host, "nm-3");
    }
}
