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
    #[allow(dead_code)] // for the YARN double
    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    }

    /// A duration in milliseconds (`Configuration.getTimeDuration`); a bare number is in
    /// `default_unit_ms` milliseconds; `default_ms` when unset.
    pub fn duration_ms(&self, key: &str, default_ms: u64, default_unit_ms: f64) -> anyhow::Result<u64> {
        match self.get(key) {
            None => Ok(default_ms),
            Some(v) => parse_duration_ms(v, default_unit_ms).ok_or_else(|| anyhow::anyhow!("{key}: `{v}` is not a duration")),
        }
    }

    /// A size in bytes (`Configuration.getLongBytes`), `default` when unset.
    pub fn bytes(&self, key: &str, default: u64) -> anyhow::Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_bytes(v).ok_or_else(|| anyhow::anyhow!("{key}: `{v}` is not a size")),
        }
    }

    /// A number; an error when set but not a number (Hadoop's `NumberFormatException`).
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a number")),
        }
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
        && !name.trim().is_empty() {
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

/// Parses a Hadoop time duration (`Configuration.getTimeDuration`): a number with an optional
/// unit suffix (ns, us, ms, s, m, h, d); a bare number is in `default_unit_ms` milliseconds.
pub fn parse_duration_ms(value: &str, default_unit_ms: f64) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit_ms = match unit.trim() {
        "" => default_unit_ms,
        "ns" => 1e-6,
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some((num * unit_ms).round() as u64)
}

/// Parses a Hadoop size (`Configuration.getLongBytes`): a number with an optional binary prefix
/// (k, m, g, t, p, e).
pub fn parse_bytes(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        't' => (&v[..v.len() - 1], 1 << 40),
        'p' => (&v[..v.len() - 1], 1 << 50),
        'e' => (&v[..v.len() - 1], 1 << 60),
        _ => (v.as_str(), 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
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
#[allow(dead_code)] // for the YARN double
pub fn resolve_addr(host_port: &str) -> Option<SocketAddr> {
    let (host, port) = host_port.rsplit_once(':')?;
    Some(SocketAddr::new(resolve(host)?.into(), port.parse().ok()?))
}
