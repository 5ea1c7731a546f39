//! Container IP addresses from the host's subnet: allocated per owner, persisted, race-free.
//!
//! The subnet's first host address is the gateway (on the bridge); the network and broadcast
//! addresses are never handed out. Leases live in `<state dir>/ipam.json`, keyed by owner (an
//! instance name like `acme/prod/datanode-0`). Every operation takes an exclusive lock on
//! `<state dir>/ipam.lock`, reads the file, and writes it back atomically (temp file, fsync,
//! rename, fsync of the directory), so two agent processes or concurrent tasks never hand out one
//! address twice and a crash never leaves a torn file.
//!
//! NB: every method does blocking file I/O; from async code call it inside `spawn_blocking`.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Name of the lease file inside the state directory.
pub const LEASES_FILE: &str = "ipam.json";
/// Name of the lock file inside the state directory.
///
/// NB: the lock is on a file of its own, because the lease file is replaced by `rename` on
/// every write and a lock on a replaced inode would guard nothing.
pub const LOCK_FILE: &str = "ipam.lock";

/// Errors from the IP allocator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The subnet has no room for a gateway and containers.
    #[error("subnet {subnet} is too small for a gateway and containers (needs /30 or larger)")]
    SubnetTooSmall { subnet: Ipv4Net },
    /// Every address of the subnet is leased.
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Ipv4Net },
    /// An owner must be named.
    #[error("an IP lease needs a non-empty owner")]
    EmptyOwner,
    /// File I/O on the state directory failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The lease file is not valid JSON of the expected shape.
    #[error("parsing IP leases in {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The lease file was written for another subnet (the host's lease changed).
    #[error("IP leases in {path} are for subnet {stored}, not {subnet}")]
    SubnetMismatch {
        path: PathBuf,
        stored: Ipv4Net,
        subnet: Ipv4Net,
    },
    /// The lease file holds leases that cannot be right.
    #[error("IP leases in {path} are inconsistent: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Result of IPAM operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the lease file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    subnet: Ipv4Net,
    /// The address handed out last; allocation continues after it so a released address is not
    /// reused at once (peers may still hold it in ARP caches and conntrack).
    #[serde(default)]
    last: Option<Ipv4Addr>,
    leases: BTreeMap<String, Ipv4Addr>,
}

/// The allocator for one host subnet, backed by a state directory.
///
/// Cheap to clone; clones (and other processes) share the state through the files.
#[derive(Debug, Clone)]
pub struct Ipam {
    subnet: Ipv4Net,
    dir: PathBuf,
}

impl Ipam {
    /// Opens (creating if needed) the allocator for `subnet` under `state_dir`, and checks the
    /// leases stored there.
    pub fn open(state_dir: impl Into<PathBuf>, subnet: Ipv4Net) -> Result<Self> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return Err(Error::SubnetTooSmall { subnet });
        }
        let dir = state_dir.into();
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "creating IPAM state directory",
            path: dir.clone(),
            source,
        })?;
        let ipam = Self { subnet, dir };
        ipam.locked(|_| Ok(((), false)))?;
        Ok(ipam)
    }

    /// The host subnet addresses come from.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway: the subnet's first host address, kept for the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        first_host(self.subnet)
    }

    /// The gateway with the subnet's prefix, as the bridge's address (e.g. `10.88.3.1/24`).
    pub fn gateway_cidr(&self) -> Ipv4Net {
        with_prefix(self.gateway(), self.subnet)
    }

    /// `ip` with the subnet's prefix, as a container's interface address.
    pub fn cidr(&self, ip: Ipv4Addr) -> Ipv4Net {
        with_prefix(ip, self.subnet)
    }

    /// The address leased to `owner`, leasing a free one if it has none (idempotent).
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        if owner.is_empty() {
            return Err(Error::EmptyOwner);
        }
        self.locked(|state| {
            if let Some(ip) = state.leases.get(owner) {
                return Ok((*ip, false));
            }
            let ip = next_free(state).ok_or(Error::Exhausted {
                subnet: state.subnet,
            })?;
            state.leases.insert(owner.to_string(), ip);
            state.last = Some(ip);
            Ok((ip, true))
        })
    }

    /// Returns `owner`'s address to the pool; the address it had, if any ("not found" is fine).
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>> {
        self.locked(|state| {
            let ip = state.leases.remove(owner);
            Ok((ip, ip.is_some()))
        })
    }

    /// The address leased to `owner`, if any.
    pub fn lookup(&self, owner: &str) -> Result<Option<Ipv4Addr>> {
        self.locked(|state| Ok((state.leases.get(owner).copied(), false)))
    }

    /// Every lease, by owner.
    pub fn leases(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        self.locked(|state| Ok((state.leases.clone(), false)))
    }

    /// Releases every lease whose owner `keep` rejects (owners that no longer exist); returns
    /// the released leases.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Ipv4Addr)>> {
        self.locked(|state| {
            let gone: Vec<(String, Ipv4Addr)> = state
                .leases
                .iter()
                .filter(|(owner, _)| !keep(owner))
                .map(|(owner, ip)| (owner.clone(), *ip))
                .collect();
            for (owner, _) in &gone {
                state.leases.remove(owner);
            }
            let changed = !gone.is_empty();
            Ok((gone, changed))
        })
    }

    fn leases_path(&self) -> PathBuf {
        self.dir.join(LEASES_FILE)
    }

    /// Runs `f` on the stored state under the exclusive lock; writes the state back when `f`
    /// says it changed it.
    fn locked<T>(&self, f: impl FnOnce(&mut State) -> Result<(T, bool)>) -> Result<T> {
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                op: "opening IPAM lock",
                path: lock_path.clone(),
                source,
            })?;
        // Released when `lock` is closed at the end of this function, also on error paths.
        lock.lock().map_err(|source| Error::Io {
            op: "locking",
            path: lock_path,
            source,
        })?;
        let mut state = self.load()?;
        let (out, changed) = f(&mut state)?;
        if changed {
            self.store(&state)?;
        }
        Ok(out)
    }

    /// Reads and checks the lease file; a missing file is an empty pool.
    fn load(&self) -> Result<State> {
        let path = self.leases_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State {
                    subnet: self.subnet,
                    last: None,
                    leases: BTreeMap::new(),
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "reading IP leases",
                    path,
                    source,
                });
            }
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        if state.subnet != self.subnet {
            return Err(Error::SubnetMismatch {
                path,
                stored: state.subnet,
                subnet: self.subnet,
            });
        }
        check(&state).map_err(|reason| Error::Corrupt { path, reason })?;
        Ok(state)
    }

    /// Replaces the lease file atomically: temp file, fsync, rename, fsync of the directory.
    fn store(&self, state: &State) -> Result<()> {
        let path = self.leases_path();
        let tmp = self.dir.join(format!("{LEASES_FILE}.tmp"));
        let io_err = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        let mut bytes = serde_json::to_vec_pretty(state)
            .map_err(io::Error::other)
            .map_err(io_err("encoding IP leases for", &path))?;
        bytes.push(b'\n');
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err("syncing directory", &self.dir))?;
        Ok(())
    }
}

/// The subnet's first host address (the gateway).
fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// The range of addresses containers may get: after the gateway, before the broadcast address.
fn container_range(subnet: Ipv4Net) -> (u32, u32) {
    let lo = u32::from(subnet.network()).saturating_add(2);
    let hi = u32::from(subnet.broadcast()).saturating_sub(1);
    (lo, hi)
}

fn with_prefix(ip: Ipv4Addr, subnet: Ipv4Net) -> Ipv4Net {
    // The prefix comes from a valid Ipv4Net, so it is at most 32 and `new` cannot fail; fall
    // back to a host route rather than panic.
    Ipv4Net::new(ip, subnet.prefix_len()).unwrap_or_else(|_| Ipv4Net::from(ip))
}

/// The first free address after the last one handed out, wrapping around.
fn next_free(state: &State) -> Option<Ipv4Addr> {
    let (lo, hi) = container_range(state.subnet);
    if hi < lo {
        return None;
    }
    let count = u64::from(hi - lo) + 1;
    let used: HashSet<Ipv4Addr> = state.leases.values().copied().collect();
    let start = match state.last.map(u32::from) {
        Some(last) if (lo..hi).contains(&last) => u64::from(last - lo) + 1,
        _ => 0,
    };
    (0..count)
        .map(|i| Ipv4Addr::from(lo + ((start + i) % count) as u32))
        .find(|ip| !used.contains(ip))
}

/// Checks that every lease is a container address of the subnet and no address is leased twice.
fn check(state: &State) -> Result<(), String> {
    let (lo, hi) = container_range(state.subnet);
    let mut seen: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (owner, ip) in &state.leases {
        if owner.is_empty() {
            return Err(format!("{ip} is leased to an empty owner"));
        }
        if !(lo..=hi).contains(&u32::from(*ip)) {
            return Err(format!(
                "{owner} holds {ip}, not a container address of {}",
                state.subnet
            ));
        }
        if let Some(other) = seen.insert(*ip, owner) {
            return Err(format!("{ip} is leased to both {other} and {owner}"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_and_range_per_subnet() {
        // (subnet, gateway, first container address, last container address)
        let cases = [
            ("10.88.3.0/24", "10.88.3.1", "10.88.3.2", "10.88.3.254"),
            ("10.88.3.77/24", "10.88.3.1", "10.88.3.2", "10.88.3.254"),
            ("10.88.0.0/16", "10.88.0.1", "10.88.0.2", "10.88.255.254"),
            (
                "192.168.5.8/29",
                "192.168.5.9",
                "192.168.5.10",
                "192.168.5.14",
            ),
            ("10.0.0.4/30", "10.0.0.5", "10.0.0.6", "10.0.0.6"),
        ];
        for (subnet, gw, first, last) in cases {
            let dir = tempfile::tempdir().unwrap();
            let ipam = Ipam::open(dir.path(), net(subnet)).unwrap();
            assert_eq!(ipam.gateway(), ip(gw), "{subnet}");
            assert_eq!(
                ipam.gateway_cidr().to_string(),
                format!("{gw}/{}", net(subnet).prefix_len())
            );
            assert_eq!(ipam.allocate("a").unwrap(), ip(first), "{subnet}");
            let (lo, hi) = container_range(ipam.subnet());
            assert_eq!(
                (Ipv4Addr::from(lo), Ipv4Addr::from(hi)),
                (ip(first), ip(last)),
                "{subnet}"
            );
        }
    }

    #[test]
    fn too_small_subnets_are_refused() {
        for subnet in ["10.0.0.0/31", "10.0.0.1/32"] {
            let dir = tempfile::tempdir().unwrap();
            let err = Ipam::open(dir.path(), net(subnet)).unwrap_err();
            assert!(
                matches!(err, Error::SubnetTooSmall { .. }),
                "{subnet}: {err}"
            );
        }
    }

    #[test]
    fn allocation_is_idempotent_per_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), net("10.88.3.0/24")).unwrap();
        let a = ipam.allocate("acme/prod/datanode-0").unwrap();
        let b = ipam.allocate("acme/prod/datanode-1").unwrap();
        assert_ne!(a, b);
        assert_eq!(ipam.allocate("acme/prod/datanode-0").unwrap(), a);
        assert_eq!(ipam.lookup("acme/prod/datanode-1").unwrap(), Some(b));
        assert_eq!(ipam.lookup("nobody").unwrap(), None);
        assert!(matches!(ipam.allocate(""), Err(Error::EmptyOwner)));
    }

    #[test]
    fn exhaustion_and_release() {
        let dir = tempfile::tempdir().unwrap();
        // /29: .0 network, .1 gateway, .2-.6 containers, .7 broadcast.
        let ipam = Ipam::open(dir.path(), net("10.1.1.0/29")).unwrap();
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("o{i}")).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 1, 1, h)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("o5").unwrap_err();
        assert!(
            matches!(err, Error::Exhausted { subnet } if subnet == net("10.1.1.0/29")),
            "{err}"
        );
        assert_eq!(err.to_string(), "no free address left in 10.1.1.0/29");

        assert_eq!(ipam.release("o2").unwrap(), Some(ip("10.1.1.4")));
        assert_eq!(ipam.release("o2").unwrap(), None, "releasing twice is fine");
        assert_eq!(ipam.allocate("o5").unwrap(), ip("10.1.1.4"));
    }

    #[test]
    fn released_addresses_are_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), net("10.1.1.0/24")).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b, "the next allocation moves on");
        assert_eq!(b, ip("10.1.1.3"));
    }

    #[test]
    fn leases_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = net("10.2.0.0/24");
        let a = Ipam::open(dir.path(), subnet)
            .unwrap()
            .allocate("x")
            .unwrap();
        let reopened = Ipam::open(dir.path(), subnet).unwrap();
        assert_eq!(reopened.lookup("x").unwrap(), Some(a));
        assert_ne!(reopened.allocate("y").unwrap(), a);
        assert!(
            !dir.path().join("ipam.json.tmp").exists(),
            "no temp file left behind"
        );
    }

    #[test]
    fn retain_releases_owners_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), net("10.2.0.0/24")).unwrap();
        for owner in ["keep-1", "drop-1", "keep-2", "drop-2"] {
            ipam.allocate(owner).unwrap();
        }
        let gone = ipam.retain(|owner| owner.starts_with("keep")).unwrap();
        let names: Vec<&str> = gone.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["drop-1", "drop-2"]);
        let left: Vec<String> = ipam.leases().unwrap().into_keys().collect();
        assert_eq!(left, ["keep-1", "keep-2"]);
    }

    #[test]
    fn bad_lease_files_are_reported() {
        let subnet = net("10.3.0.0/24");
        // (file contents, expected error)
        type IsExpected = fn(&Error) -> bool;
        let cases: [(&str, IsExpected); 5] = [
            ("{not json", |e| matches!(e, Error::Parse { .. })),
            (r#"{"subnet":"10.9.0.0/24","leases":{}}"#, |e| {
                matches!(e, Error::SubnetMismatch { .. })
            }),
            (
                r#"{"subnet":"10.3.0.0/24","leases":{"a":"10.3.0.1"}}"#,
                |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("not a container address")),
            ),
            (
                r#"{"subnet":"10.3.0.0/24","leases":{"a":"10.3.0.255"}}"#,
                |e| matches!(e, Error::Corrupt { .. }),
            ),
            (
                r#"{"subnet":"10.3.0.0/24","leases":{"a":"10.3.0.7","b":"10.3.0.7"}}"#,
                |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("both a and b")),
            ),
        ];
        for (contents, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(LEASES_FILE), contents).unwrap();
            let err = Ipam::open(dir.path(), subnet).unwrap_err();
            assert!(want(&err), "{contents}: got {err}");
            assert!(
                err.to_string().contains("ipam.json"),
                "errors name the file: {err}"
            );
        }
    }
}
