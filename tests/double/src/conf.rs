//! The double's view of its container: Hadoop configuration from `$HADOOP_CONF_DIR`
//! (default `/etc/hadoop/conf`), its hostname, and name resolution through `/etc/hosts`
//! (what resolves cluster names in herd's containers).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Merged `core-site.xml`, `hdfs-site.xml`, `yarn-site.xml` (later files win), as Hadoop's
/// `Configuration` does; missing files are empty.
#[derive(Debug, Clone, Default)]
pub struct Conf {
    pub dir: PathBuf,
    pub props: BTreeMap<String, String>,
}

impl Conf {
    /// Reads the configuration the container was given.
    pub fn load() -> anyhow::Result<Conf> {
        let dir = std::env::var("HADOOP_CONF_DIR").unwrap_or_else(|_| "/etc/hadoop/conf".into());
        Conf::load_from(Path::new(&dir))
    }

    pub fn load_from(dir: &Path) -> anyhow::Result<Conf> {
        let mut props = BTreeMap::new();
        for file in ["core-site.xml", "hdfs-site.xml", "yarn-site.xml", "mapred-site.xml"] {
            let path = dir.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let doc = roxmltree::Document::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for prop in doc.descendants().filter(|n| n.has_tag_name("property")) {
                let child = |tag: &str| prop.children().find(|c| c.has_tag_name(tag)).and_then(|c| c.text()).map(str::trim);
                if let (Some(name), Some(value)) = (child("name"), child("value")) {
                    props.insert(name.to_string(), value.to_string());
                }
            }
        }
        Ok(Conf { dir: dir.to_path_buf(), props })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }

    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// A number, or `default` when unset or not a number.
    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    }

    /// A file named by `key`, relative paths taken against the config folder.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        let v = self.get(key)?.trim();
        if v.is_empty() {
            return None;
        }
        let v = v.strip_prefix("file://").unwrap_or(v);
        Some(if Path::new(v).is_absolute() { PathBuf::from(v) } else { self.dir.join(v) })
    }
}

/// The container's hostname (herd sets it to the instance's DNS name); `$HERD_DOUBLE_HOSTNAME`
/// overrides it so tests can run several doubles as local processes.
pub fn hostname() -> String {
    if let Ok(name) = std::env::var("HERD_DOUBLE_HOSTNAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The hosts file names resolve through: `$HERD_DOUBLE_HOSTS_FILE` (tests) or `/etc/hosts`.
pub fn hosts_file() -> PathBuf {
    std::env::var_os("HERD_DOUBLE_HOSTS_FILE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/etc/hosts"))
}

/// True when running outside a container with a test hosts file: each daemon then binds to the
/// address its hostname resolves to (several share loopback); in a container it binds 0.0.0.0,
/// like Hadoop with `*.bind-host=0.0.0.0`.
pub fn bind_to_own_address() -> bool {
    std::env::var_os("HERD_DOUBLE_HOSTS_FILE").is_some()
}

/// Resolves `host` through `/etc/hosts` (or [`hosts_file`]; or an IPv4 literal); `None` when it does not resolve,
/// which a real daemon sees as `UnknownHostException`.
pub fn resolve(host: &str) -> Option<Ipv4Addr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    let hosts = std::fs::read_to_string(hosts_file()).ok()?;
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let ip: Ipv4Addr = fields.next()?.parse().ok()?;
        fields.any(|n| n.eq_ignore_ascii_case(host)).then_some(ip)
    })
}

/// `host:port` resolved to a socket address.
pub fn resolve_addr(host_port: &str) -> Option<SocketAddr> {
    let (host, port) = host_port.rsplit_once(':')?;
    Some(SocketAddr::new(resolve(host)?.into(), port.parse().ok()?))
}
