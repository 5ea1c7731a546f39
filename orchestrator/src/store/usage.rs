//! Per host, what its placed instances take: CPU, memory and how many instances of each pool
//! (`tenant/cluster/role`; disks and ports follow from the pool's spec). Placement needs only
//! these sums, not every instance: reading and decoding every instance row per apply made
//! applying clusters quadratic in the fleet's instances (the hundredth 10,000-instance apply
//! read 990,000 rows to place 10,000).
//!
//! The SQLite store keeps one [`Usage`] beside its writer connection, moved by the writer's own
//! `put_instance` and `delete_instance` as they write, so it is always the sum of the
//! instances the writer's transaction sees (uncommitted operations of the same group commit
//! included). A write that fails after moving it, or a group commit that fails, drops it; the
//! next placement sums the table again ([`Usage::of`] over every instance). The etcd store
//! keeps none: placement sums what it reads.
//!
//! The sums also say which hosts they moved on since placement last looked
//! ([`Usage::take_changed`]), and hold placement's memo of its host views over them
//! ([`Usage::memo`]): dropped with the sums, so a memo never outlives the sums it was made
//! from (a rolled-back write drops both).

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Map as HashMap;
use crate::Set as HashSet;

use herd_api::Role;

use crate::reconciler::Instance;

/// The pool an instance belongs to, as placement names it.
pub fn pool_key(tenant: &str, cluster: &str, role: Role) -> String {
    format!("{tenant}/{cluster}/{role}")
}

/// What one host's placed instances take.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HostUsage {
    pub cpu: u64,
    pub memory: u64,
    /// Instances per pool (see [`pool_key`]); pools with none are absent.
    pub pools: HashMap<String, u32>,
}

/// Per host, what its placed instances take (hosts with none are absent).
#[derive(Debug)]
pub struct Usage {
    hosts: HashMap<String, HostUsage>,
    /// Instances per pool over all hosts (pools with none are absent).
    held: HashMap<String, u32>,
    /// Hosts whose sums moved since [`Usage::take_changed`].
    changed: HashSet<String>,
    /// Which sums these are: a new number for every `Usage` made.
    epoch: u64,
    /// Placement's memo over these sums (see the module docs).
    memo: Option<Box<dyn Any + Send>>,
}

/// Numbers `Usage` values, so that a memo is only ever used with the sums it was made from.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

impl Default for Usage {
    fn default() -> Self {
        Usage {
            hosts: HashMap::default(),
            held: HashMap::default(),
            changed: HashSet::default(),
            epoch: EPOCHS.fetch_add(1, Ordering::Relaxed),
            memo: None,
        }
    }
}

/// The same sums (a new epoch, no memo).
impl Clone for Usage {
    fn clone(&self) -> Self {
        Usage { hosts: self.hosts.clone(), held: self.held.clone(), changed: self.changed.clone(), ..Usage::default() }
    }
}

/// Equal sums (what changed since, and the memo, are bookkeeping).
impl PartialEq for Usage {
    fn eq(&self, other: &Self) -> bool {
        self.hosts == other.hosts && self.held == other.held
    }
}

/// One placed instance's part of its host's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<'a> {
    pub host: &'a str,
    pub tenant: &'a str,
    pub cluster: &'a str,
    pub role: Role,
    pub cpu: u64,
    pub memory: u64,
}

impl<'a> Part<'a> {
    /// `i`'s part, if it is placed.
    pub fn of(i: &'a Instance) -> Option<Self> {
        Some(Part {
            host: i.host.as_deref()?,
            tenant: &i.instance.tenant,
            cluster: &i.instance.cluster,
            role: i.role,
            cpu: i.cpu.0,
            memory: i.memory.0,
        })
    }
}

impl Usage {
    /// The sum over `instances` (the unplaced ones take nothing).
    pub fn of<'a>(instances: impl IntoIterator<Item = &'a Instance>) -> Self {
        let mut u = Usage::default();
        for p in instances.into_iter().filter_map(Part::of) {
            u.add(&p);
        }
        u
    }

    /// What `host`'s instances take (`None`: nothing is placed there).
    pub fn host(&self, host: &str) -> Option<&HostUsage> {
        self.hosts.get(host)
    }

    /// Every host something is placed on, with what it takes.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &HostUsage)> {
        self.hosts.iter().map(|(id, h)| (id.as_str(), h))
    }

    /// Whether any host holds an instance of `pool`.
    pub fn holds(&self, pool: &str) -> bool {
        self.held.contains_key(pool)
    }

    /// Which sums these are (see [`Usage::memo`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The hosts whose sums moved since the last call (every host they hold, the first time).
    pub fn take_changed(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Placement's memo over these sums: whatever it left with [`Usage::keep_memo`], taken
    /// out (so it may be used while the sums move: it must check what changed).
    pub fn memo<T: Any + Send>(&mut self) -> Option<Box<T>> {
        self.memo.take()?.downcast().ok()
    }

    /// Leaves a memo over these sums for the next [`Usage::memo`].
    pub fn keep_memo<T: Any + Send>(&mut self, memo: Box<T>) {
        self.memo = Some(memo);
    }

    /// Counts an instance placed.
    pub fn add(&mut self, p: &Part<'_>) {
        moved(&mut self.changed, p.host);
        let h = match self.hosts.get_mut(p.host) {
            Some(h) => h,
            None => self.hosts.entry(p.host.to_string()).or_default(),
        };
        h.cpu += p.cpu;
        h.memory += p.memory;
        let key = pool_key(p.tenant, p.cluster, p.role);
        match self.held.get_mut(&key) {
            Some(n) => *n += 1,
            None => {
                self.held.insert(key.clone(), 1);
            }
        }
        *h.pools.entry(key).or_insert(0) += 1;
    }

    /// Takes away an instance counted by [`Usage::add`].
    pub fn remove(&mut self, p: &Part<'_>) {
        let Some(h) = self.hosts.get_mut(p.host) else { return };
        moved(&mut self.changed, p.host);
        h.cpu = h.cpu.saturating_sub(p.cpu);
        h.memory = h.memory.saturating_sub(p.memory);
        let key = pool_key(p.tenant, p.cluster, p.role);
        if let Some(n) = h.pools.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                h.pools.remove(&key);
            }
            if let Some(total) = self.held.get_mut(&key) {
                *total -= 1;
                if *total == 0 {
                    self.held.remove(&key);
                }
            }
        }
        if h.pools.is_empty() {
            self.hosts.remove(p.host);
        }
    }
}

/// Notes that `host`'s sums moved.
fn moved(changed: &mut HashSet<String>, host: &str) {
    if !changed.contains(host) {
        changed.insert(host.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::names::InstanceRef;
    use herd_api::quantity::{Cpu, Memory};

    fn inst(cluster: &str, role: Role, n: u32, host: Option<&str>) -> Instance {
        Instance {
            instance: InstanceRef::new("t", cluster, role, n),
            role,
            ordinal: n,
            host: host.map(str::to_string),
            pending: None,
            cpu: Cpu(100 * (u64::from(n) + 1)),
            memory: Memory(1 << 20),
            placement: 0,
        }
    }

    #[test]
    fn kept_by_adds_and_removes_equals_the_sum_of_what_is_left() {
        let all = vec![
            inst("a", Role::Datanode, 0, Some("h1")),
            inst("a", Role::Datanode, 1, Some("h1")),
            inst("a", Role::Nodemanager, 0, Some("h2")),
            inst("b", Role::Datanode, 0, Some("h1")),
            inst("b", Role::Datanode, 1, None),
        ];
        let mut kept = Usage::default();
        for p in all.iter().filter_map(Part::of) {
            kept.add(&p);
        }
        assert_eq!(kept, Usage::of(&all));
        let h1 = kept.host("h1").expect("h1 holds three");
        assert_eq!((h1.cpu, h1.memory), (100 + 200 + 100, 3 << 20));
        assert_eq!(h1.pools.get("t/a/datanode"), Some(&2));
        // The NodeManager moves from h2 to h1, one DataNode leaves.
        kept.remove(&Part::of(&all[2]).expect("placed"));
        let moved = inst("a", Role::Nodemanager, 0, Some("h1"));
        kept.add(&Part::of(&moved).expect("placed"));
        kept.remove(&Part::of(&all[0]).expect("placed"));
        let left = vec![all[1].clone(), moved, all[3].clone()];
        assert_eq!(kept, Usage::of(&left));
        assert!(kept.host("h2").is_none(), "a host left empty is forgotten");
    }
}
