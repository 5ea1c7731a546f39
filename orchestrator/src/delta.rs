//! Delta replies: what the orchestrator last told each host, so a heartbeat or a watch
//! answers only what changed since the generation the agent says it applied.
//!
//! ```text
//!  agent: applied = g ──> orchestrator computes the host's full set F (desired, network)
//!                         Sent[host] = { generation g', hash per container, network told:
//!                                        lease + each tenant view's version }
//!                         g == g' and F unchanged ──> { base: g, generation: g }      (empty)
//!                         g == g' and F changed   ──> { base: g, generation: g'', only the
//!                                                       new/changed containers, removed, and
//!                                                       the network's delta (or whole plan) if it moved }
//!                         g the set before g' (the reply telling g' was lost) ──> a delta against it
//!                         g unknown (restart, older) ──> F in full, generation g'
//!  agent: applied = g' and no commit named the host since, each cluster F came from keeps
//!         its result's stamp, each tenant network view told is fresh at its version, no
//!         purge ──> { base: g', generation: g' },
//!         F not computed at all ([`Sents::unchanged_since`])
//! ```
//!
//! Generations come from one counter seeded with the wall clock in microseconds at start, so
//! they only increase, also across restarts: a generation from before a restart is unknown to
//! the new process and gets the full set, never a wrong delta.

use std::collections::BTreeSet;
use crate::Map as HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use herd_api::names::InstanceRef;
use herd_api::wire::{DesiredContainer, HeartbeatReply};

use crate::netview::{HostNet, Told};

/// A container as hosts are told it, with its [`digest`]: made once per derivation of its
/// cluster and shared by every reply that carries it. (Each computed reply cloned and
/// digested every container of its host again: a host running instances of thirty clusters
/// did that thirty times over for each one a million-instance apply placed there.)
#[derive(Debug)]
pub struct Entry {
    pub container: DesiredContainer,
    pub digest: u64,
}

impl Entry {
    pub fn new(container: DesiredContainer) -> Arc<Self> {
        Arc::new(Entry { digest: digest(&container), container })
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.container == other.container
    }
}

impl Eq for Entry {}

/// One host's desired set in full, as computed from one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Full {
    pub desired: Vec<Arc<Entry>>,
    /// Its lease and the views of its tenants' networks ([`crate::netview`]).
    pub network: Option<HostNet>,
    /// The agent takes network plan deltas ([`herd_api::wire::Heartbeat::network_deltas`]).
    pub network_deltas: bool,
    pub purge: Vec<InstanceRef>,
    /// The store revision it was computed at.
    pub revision: u64,
    /// [`crate::store::Store::touches`] read before that snapshot: every commit counted up
    /// to it is in the snapshot.
    pub touches: u64,
    /// The clusters `desired` was taken from, each with its result's stamp.
    pub sources: Vec<crate::desired::Source>,
}

/// What a host was last told.
#[derive(Debug, Clone)]
struct Sent {
    generation: u64,
    revision: u64,
    touches: u64,
    containers: HashMap<InstanceRef, u64>,
    network: Option<Told>,
    /// Tenants with instances on the host: a change to one of them may concern it.
    tenants: BTreeSet<String>,
    /// Nothing placed, nothing to purge: the set moves only with a commit naming the host
    /// (a placement, a purge) or a new registration (a new lease), never through a tenant
    /// or what other agents report.
    idle: bool,
    /// Nothing to purge (see [`Sents::unchanged_since`]).
    plain: bool,
    /// Shared: every heartbeat answered from memory checks them, outside the lock.
    sources: Arc<[crate::desired::Source]>,
    /// What it was told before, if that was another set: a delta is made against either.
    prev: Option<Box<Sent>>,
}

/// Per host, what it was last told.
#[derive(Debug)]
pub struct Sents {
    hosts: Mutex<HashMap<String, Sent>>,
    next: AtomicU64,
}

impl Default for Sents {
    fn default() -> Self {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Sents { hosts: Mutex::default(), next: AtomicU64::new(now_us) }
    }
}

/// What a container's entry hashes to: every field, except that its Hadoop `files` (a
/// rendered site of many kilobytes per instance) count through `rollout_hash` when it is set,
/// which is computed from them once per render ([`crate::hadoop::rollout_hash`]). Serializing
/// and hashing every file of every container on every reply was 8 % of the orchestrator's
/// CPU while 300,000 instances were applied. The fields are named one by one, so a field
/// added to [`DesiredContainer`] does not compile until it is hashed here too.
fn digest(d: &DesiredContainer) -> u64 {
    let DesiredContainer {
        instance,
        role,
        image,
        cpu,
        memory,
        command,
        env,
        publish,
        cap_add,
        hadoop,
        rollout_hash,
        hold_config,
        placement,
    } = d;
    let hadoop = hadoop.as_deref().map(|h| {
        let herd_api::hadoop::HadoopConfig { files, live_files, refresh } = h;
        (rollout_hash.is_none().then_some(files), live_files, refresh)
    });
    hash_of(&(instance, role, image, cpu, memory, command, env, publish, cap_add, hadoop, rollout_hash, hold_config, placement))
}

fn hash_of<T: serde::Serialize>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // NB: plain data; serde_json cannot fail on it.
    serde_json::to_vec(v).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Sents {
    /// The reply to an agent that applied generation `applied`, given its full set now;
    /// records what the host is told. `None` when `full` was computed from an older snapshot
    /// than what the host was told already (a watch and a heartbeat racing): compute it again,
    /// never take a newer set back.
    pub fn reply(&self, host: &str, applied: Option<u64>, full: Full, interval_ms: u64) -> Option<Answer> {
        // NB: sized once, and each tenant's name copied once (not once per container).
        let mut hashes: HashMap<InstanceRef, u64> = HashMap::with_capacity_and_hasher(full.desired.len(), Default::default());
        hashes.extend(full.desired.iter().map(|e| (e.container.instance.clone(), e.digest)));
        let network = full.network.as_ref().map(HostNet::told);
        let tenants: BTreeSet<&str> = full.desired.iter().map(|e| e.container.instance.tenant.as_str()).collect();
        let tenants = tenants.into_iter().map(str::to_string).collect();
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if hosts.get(host).is_some_and(|s| s.revision > full.revision) {
            return None;
        }
        let (last, prev) = match hosts.remove(host) {
            Some(mut s) => {
                let prev = s.prev.take();
                (Some(s), prev)
            }
            None => (None, None),
        };
        let same = last.as_ref().is_some_and(|s| s.containers == hashes && s.network == network);
        let generation = match &last {
            Some(s) if same => s.generation,
            _ => self.next.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let idle = hashes.is_empty() && full.purge.is_empty();
        let plain = full.purge.is_empty();
        let mut reply = HeartbeatReply {
            generation,
            desired: vec![],
            heartbeat_interval_ms: interval_ms,
            network: None,
            purge: full.purge,
            base: None,
            removed: vec![],
            network_cleared: false,
            network_delta: None,
        };
        // What the agent holds: the last set it was told, or the one before when that reply was
        // lost (timed out under load: a full set then made the next reply slower still).
        let base = [last.as_ref(), prev.as_deref()].into_iter().flatten().find(|s| applied == Some(s.generation));
        // NB: the containers stay shared with their derivation until they are written out
        // (each copied into its reply was a tenth of the orchestrator's work while a million
        // instances reached their hosts).
        let mut carried = Vec::new();
        match base {
            Some(s) => {
                reply.base = applied;
                if s.generation != generation {
                    reply.removed = s.containers.keys().filter(|i| !hashes.contains_key(*i)).cloned().collect();
                    reply.removed.sort();
                    carried = full.desired.iter().filter(|e| s.containers.get(&e.container.instance) != Some(&e.digest)).cloned().collect();
                    if s.network != network {
                        match (&s.network, &full.network) {
                            (_, None) => reply.network_cleared = true,
                            (Some(told), Some(now)) if full.network_deltas => match now.delta(told) {
                                Some(d) => reply.network_delta = Some(d),
                                None => reply.network = Some(now.plan()),
                            },
                            (_, Some(now)) => reply.network = Some(now.plan()),
                        }
                    }
                }
            }
            None => {
                carried = full.desired;
                reply.network = full.network.as_ref().map(HostNet::plan);
            }
        }
        let (touches, sources) = (full.touches, full.sources);
        // The same set keeps its generation, and the one before it stays the one before.
        let prev = if same { prev } else { last.map(Box::new) };
        let sent = Sent { generation, revision: full.revision, touches, containers: hashes, network, tenants, idle, plain, sources: sources.into(), prev };
        hosts.insert(host.to_string(), sent);
        Some(Answer { reply, desired: carried })
    }

    /// Whether `host`, which applied generation `applied`, would be told exactly what it was
    /// last told, known without reading the store; and that set's generation. Never when a
    /// commit named the host after the set was computed (`touched`: that commit's
    /// [`crate::store::Store::touches`] count: a placement, a purge or a lease moved). Else:
    /// - [`Unchanged::Idle`]: the set had nothing placed and nothing to purge. Commits for
    ///   other hosts and tenants leave it idle: an idle fleet is answered from memory while
    ///   clusters move (whatever `applied` is: an empty set is told in full as easily);
    /// - [`Unchanged::Busy`]: the host holds the set (`applied` is its generation) and each
    ///   cluster it was taken from would answer with a result of the same stamp (`stamp_of`,
    ///   [`crate::desired::DesiredCache::stamp`]: not derived again, or derived again to the
    ///   same containers), and each tenant's network view it was told would be answered at the
    ///   same version (`view_of`, [`crate::netview::NetViews::fresh`]: fresh and not built
    ///   again; the host's tenants and lease move only with commits naming it). Never with
    ///   purges, which are repeated until acknowledged. Reading each busy host's instances and
    ///   building, hashing and comparing its containers on every heartbeat held 30,000 hosts
    ///   running 300,000 instances at 3,000 of their 10,000 heartbeats a second, p99 11 s.
    pub fn unchanged_since(
        &self,
        host: &str,
        applied: Option<u64>,
        touched: u64,
        stamp_of: impl Fn(&(String, String)) -> Option<u64>,
        view_of: impl Fn(&str) -> Option<u64>,
    ) -> Option<Unchanged> {
        let (generation, sources, views) = {
            let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            let s = hosts.get(host).filter(|s| s.touches >= touched)?;
            if s.idle {
                return Some(Unchanged::Idle(s.generation));
            }
            if !s.plain || applied != Some(s.generation) {
                return None;
            }
            (s.generation, s.sources.clone(), s.network.as_ref().map(|(_, views)| views.clone()).unwrap_or_default())
        };
        let same = sources.iter().all(|(key, stamp)| stamp_of(key) == Some(*stamp))
            && views.iter().all(|(tenant, version)| view_of(tenant) == Some(*version));
        same.then_some(Unchanged::Busy(generation))
    }

    /// Whether generation `applied` is one `host` was told by this process (the last set, or
    /// the one before): a reply to it is a delta, never the full set.
    pub fn holds(&self, host: &str, applied: Option<u64>) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.get(host).is_some_and(|s| applied == Some(s.generation) || s.prev.as_ref().is_some_and(|p| applied == Some(p.generation)))
    }

    /// The tenants with instances on `host` when it was last told.
    pub fn tenants(&self, host: &str) -> BTreeSet<String> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.get(host).map(|s| s.tenants.clone()).unwrap_or_default()
    }

    /// Forgets a host (deleted).
    pub fn forget(&self, host: &str) {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner).remove(host);
    }
}

/// How [`Sents::unchanged_since`] knew a host's set is unchanged; its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    Idle(u64),
    Busy(u64),
}

/// A reply as computed for a host: `reply` holds no containers, `desired` the ones it
/// carries, still shared with the derivations that made them. [`Answer::to_json`] writes it as
/// the [`HeartbeatReply`] with them in, byte for byte, without copying them first.
#[derive(Debug)]
pub struct Answer {
    pub reply: HeartbeatReply,
    pub desired: Vec<Arc<Entry>>,
}

/// What [`Answer::to_json`] reserves per container it carries (4–5 KB of JSON each with its
/// Hadoop files).
const CONTAINER_JSON_BYTES: usize = 6 * 1024;

impl From<HeartbeatReply> for Answer {
    fn from(reply: HeartbeatReply) -> Self {
        Answer { reply, desired: vec![] }
    }
}

impl Answer {
    /// The reply with its containers copied in.
    pub fn into_reply(self) -> HeartbeatReply {
        let Answer { mut reply, desired } = self;
        reply.desired.extend(desired.iter().map(|e| e.container.clone()));
        reply
    }

    /// The reply as JSON, in a buffer sized for it at once.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(512 + CONTAINER_JSON_BYTES * self.reply.desired.len());
        serde_json::to_writer(&mut buf, &self.reply)?;
        if self.desired.is_empty() {
            return Ok(buf);
        }
        match self.splice(&buf)? {
            Some(whole) => Ok(whole),
            // NB: never taken while `generation` and `desired` lead `HeartbeatReply` (a test
            // says so); correct either way.
            None => serde_json::to_vec(&Answer { reply: self.reply.clone(), desired: self.desired.clone() }.into_reply()),
        }
    }

    /// `head` (the reply written without `desired`'s containers) with them written into its
    /// empty `"desired":[]`, which follows the generation; `None` when `head` does not start
    /// so (or the reply holds containers of its own).
    fn splice(&self, head: &[u8]) -> serde_json::Result<Option<Vec<u8>>> {
        let open = format!("{{\"generation\":{},\"desired\":[", self.reply.generation);
        let Some(tail) = head.strip_prefix(open.as_bytes()).filter(|t| t.first() == Some(&b']')) else { return Ok(None) };
        let mut out = Vec::with_capacity(head.len() + CONTAINER_JSON_BYTES * self.desired.len());
        out.extend_from_slice(open.as_bytes());
        for (n, e) in self.desired.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            e.container.write_json(&mut out)?;
        }
        out.extend_from_slice(tail);
        Ok(Some(out))
    }
}

/// The empty answer for a host whose set is still `generation`.
pub fn unchanged(generation: u64, applied: Option<u64>, interval_ms: u64) -> HeartbeatReply {
    let full = applied != Some(generation);
    HeartbeatReply {
        generation,
        desired: vec![],
        heartbeat_interval_ms: interval_ms,
        network: None,
        purge: vec![],
        base: (!full).then_some(generation),
        removed: vec![],
        network_cleared: false,
        network_delta: None,
    }
}

#[cfg(test)]
mod tests {
    //! The orchestrator's `Sents` and the agent's `DesiredSet` together: whatever sequence of
    //! full sets the orchestrator computes, and whichever replies reach the agent, the agent
    //! ends up holding exactly the last set it was answered with.

    use std::collections::BTreeMap;

    use herd_api::Role;
    use herd_api::network::{HostNetwork, NetworkPlan};
    use herd_api::quantity::{Cpu, Memory};
    use herd_api::wire::{DesiredContainer, DesiredSet};

    use super::*;

    fn dc(n: u32, image: &str) -> DesiredContainer {
        let instance = InstanceRef::new("t", "c", Role::Datanode, n);
        DesiredContainer { placement: 1, ..DesiredContainer::plain(instance, Role::Datanode, image, Cpu(500), Memory(1 << 30)) }
    }

    fn plan(octet: u8) -> NetworkPlan {
        NetworkPlan {
            lease: HostNetwork { cluster_cidr: "100.64.0.0/10".parse().unwrap(), subnet: format!("100.64.{octet}.0/25").parse().unwrap() },
            routes: vec![].into(),
            members: vec![].into(),
        }
    }

    fn net(plan: Option<NetworkPlan>) -> Option<crate::netview::HostNet> {
        plan.map(|p| crate::netview::from_plan(&p, 1))
    }

    fn full(desired: Vec<DesiredContainer>, network: Option<NetworkPlan>, revision: u64) -> Full {
        let desired = desired.into_iter().map(Entry::new).collect();
        Full { desired, network: net(network), network_deltas: true, purge: vec![], revision, touches: revision, sources: vec![] }
    }

    /// What the agent reads of an answer: written as JSON as the HTTP layer writes it (the
    /// same bytes as the reply with its containers copied in), and parsed.
    fn wire(a: Answer) -> HeartbeatReply {
        let json = a.to_json().expect("writes");
        assert_eq!(String::from_utf8_lossy(&json), String::from_utf8_lossy(&serde_json::to_vec(&a.into_reply()).unwrap()));
        serde_json::from_slice(&json).expect("parses")
    }

    #[test]
    fn an_answer_is_written_as_its_reply_with_the_containers_in_byte_for_byte() {
        use herd_api::hadoop::{HadoopConfig, Text};
        let shape: Arc<herd_api::hadoop::Pieces> = Arc::new(vec!["<?xml version=\"1.0\"?>\n<name>".to_string(), "</name>\t\u{1}\n".to_string()].into());
        let rich = |n: u32| {
            let mut d = dc(n, "herd/datanode:testbed");
            d.env.insert("HERD_INSTANCE".into(), format!("datanode-{n}"));
            d.command = Some(vec!["sh".into(), "-c".into(), "echo \"hi\"".into()]);
            d.cap_add = vec!["NET_ADMIN".into()];
            let files = [("hdfs-site.xml".to_string(), Text::cut(shape.clone(), format!("datanode-{n}.c.t").into()))].into();
            d.hadoop = Some(Arc::new(HadoopConfig { files, live_files: [("dfs.hosts".to_string(), "a\nb".to_string())].into(), refresh: vec![vec!["true".into()]] }));
            d.rollout_hash = Some(format!("{n:016x}"));
            d
        };
        let replies = [
            HeartbeatReply { network: Some(plan(1)), ..unchanged(7, None, 3000) },
            HeartbeatReply { removed: vec![InstanceRef::new("t", "c", Role::Datanode, 9)], purge: vec![InstanceRef::new("t", "d", Role::Datanode, 1)], ..unchanged(u64::MAX, Some(3), 3000) },
        ];
        for reply in replies {
            for carried in [vec![], vec![Entry::new(rich(0))], vec![Entry::new(rich(0)), Entry::new(dc(1, "a")), Entry::new(rich(2))]] {
                let a = Answer { reply: reply.clone(), desired: carried };
                let head = serde_json::to_vec(&a.reply).unwrap();
                assert!(a.desired.is_empty() || a.splice(&head).unwrap().is_some(), "written by copying the containers: {}", String::from_utf8_lossy(&head));
                let back = wire(a);
                assert!(back.desired.iter().all(|d| d.hadoop.as_ref().is_none_or(|h| h.files["hdfs-site.xml"].to_string().ends_with("</name>\t\u{1}\n"))));
            }
        }
        // A reply holding containers of its own is written whole.
        let own = Answer { reply: HeartbeatReply { desired: vec![dc(5, "a")], ..unchanged(1, None, 1000) }, desired: vec![Entry::new(dc(6, "a"))] };
        assert_eq!(wire(own).desired.len(), 2);
    }

    /// The set `f` describes, as the agent would hold it.
    fn expected(f: &Full) -> (BTreeMap<InstanceRef, DesiredContainer>, Option<NetworkPlan>) {
        (f.desired.iter().map(|e| (e.container.instance.clone(), e.container.clone())).collect(), f.network.as_ref().map(crate::netview::HostNet::plan))
    }

    #[test]
    fn deltas_carry_only_what_changed_and_rebuild_the_same_set() {
        let sents = Sents::default();
        let mut agent = DesiredSet::default();
        let steps = [
            full(vec![dc(0, "a")], None, 1),
            full(vec![dc(0, "a"), dc(1, "a"), dc(2, "a")], Some(plan(1)), 2),
            full(vec![dc(0, "a"), dc(1, "a"), dc(2, "a")], Some(plan(1)), 2),
            full(vec![dc(0, "b"), dc(2, "a")], Some(plan(1)), 3),
            full(vec![dc(0, "b"), dc(2, "a")], Some(plan(2)), 3),
            full(vec![], None, 4),
        ];
        // (desired entries, removed entries, network sent, cleared) of each reply.
        let shapes = [(1, 0, false, false), (2, 0, true, false), (0, 0, false, false), (1, 1, false, false), (0, 0, true, false), (0, 2, false, true)];
        for (i, (step, shape)) in steps.into_iter().zip(shapes).enumerate() {
            let want = expected(&step);
            let reply = sents.reply("h", agent.generation, step, 1000).map(wire).expect("not stale");
            let got = (reply.desired.len(), reply.removed.len(), reply.network.is_some(), reply.network_cleared);
            assert_eq!(got, shape, "step {i}: {reply:?}");
            // Only the first reply is in full.
            assert_eq!(reply.base.is_none(), i == 0, "step {i}");
            agent.apply(&reply).expect("applies");
            assert_eq!((agent.containers.clone(), agent.network.clone()), want, "step {i}");
        }
    }

    #[test]
    fn a_busy_host_is_unchanged_only_while_it_holds_its_set_and_every_source_keeps_its_stamp() {
        let sents = Sents::default();
        let key = ("t".to_string(), "c".to_string());
        let told = |network: Option<NetworkPlan>, purge: Vec<InstanceRef>| Full {
            desired: vec![Entry::new(dc(0, "a")), Entry::new(dc(1, "a"))],
            network: net(network),
            network_deltas: true,
            purge,
            revision: 3,
            touches: 3,
            sources: vec![(key.clone(), 5)],
        };
        let r = sents.reply("h", None, told(None, vec![]), 1000).map(wire).unwrap();
        let g = Some(r.generation);
        let same = |_: &(String, String)| Some(5);
        let g_busy = g.map(Unchanged::Busy);
        // No network told: no view is asked.
        let any_view = |_: &str| None;
        assert_eq!(sents.unchanged_since("h", g, 3, same, any_view), g_busy);
        // The agent does not hold it (restarted, lost the reply): it needs the set in full.
        assert_eq!(sents.unchanged_since("h", None, 3, same, any_view), None);
        assert_eq!(sents.unchanged_since("h", Some(r.generation - 1), 3, same, any_view), None);
        // A commit named the host after it was told (a placement, a purge, a lease).
        assert_eq!(sents.unchanged_since("h", g, 4, same, any_view), None);
        // Its cluster was derived to other containers, or would be derived again now.
        assert_eq!(sents.unchanged_since("h", g, 3, |_| Some(6), any_view), None);
        assert_eq!(sents.unchanged_since("h", g, 3, |_| None, any_view), None);
        assert_eq!(sents.unchanged_since("other", g, 3, same, any_view), None);
        // A network plan: unchanged while its tenants' views would be told at the versions told
        // (`from_plan` names its one tenant `t`, at version 1).
        let r = sents.reply("h", g, told(Some(plan(1)), vec![]), 1000).map(wire).unwrap();
        let gn = Some(r.generation);
        assert_eq!(sents.unchanged_since("h", gn, 3, same, |t: &str| (t == "t").then_some(1)), gn.map(Unchanged::Busy));
        // The view moved (or is stale and would be built again): compute the reply.
        assert_eq!(sents.unchanged_since("h", gn, 3, same, |_: &str| Some(2)), None);
        assert_eq!(sents.unchanged_since("h", gn, 3, same, any_view), None);
        // Purges are repeated until acknowledged.
        let r = sents.reply("h", Some(r.generation), told(None, vec![InstanceRef::new("t", "c", Role::Datanode, 9)]), 1000).map(wire).unwrap();
        assert_eq!(sents.unchanged_since("h", Some(r.generation), 3, same, any_view), None);
        let r = sents.reply("h", Some(r.generation), told(None, vec![]), 1000).map(wire).unwrap();
        assert_eq!(sents.unchanged_since("h", Some(r.generation), 3, same, any_view), Some(Unchanged::Busy(r.generation)));
    }

    #[test]
    fn a_digest_changes_with_everything_the_agent_acts_on_and_not_with_the_config_copy() {
        use std::sync::Arc;

        use herd_api::hadoop::HadoopConfig;
        let mut a = dc(0, "a");
        a.hadoop = Some(Arc::new(HadoopConfig { files: [("core-site.xml".into(), "<x/>".into())].into(), ..Default::default() }));
        let base = digest(&a);
        // The same config rendered again (another allocation): the same digest.
        let mut again = a.clone();
        again.hadoop = a.hadoop.as_deref().map(|h| Arc::new(h.clone()));
        assert_eq!(digest(&again), base);
        /// What is changed, and how.
        type Change = (&'static str, fn(&mut DesiredContainer));
        let changes: Vec<Change> = vec![
            ("files without a rollout hash", |d| {
                Arc::make_mut(d.hadoop.as_mut().unwrap()).files.insert("hdfs-site.xml".into(), "<y/>".into());
            }),
            ("live files", |d| {
                Arc::make_mut(d.hadoop.as_mut().unwrap()).live_files.insert("dfs.exclude".into(), "dn-1".into());
            }),
            ("refresh", |d| Arc::make_mut(d.hadoop.as_mut().unwrap()).refresh.push(vec!["hdfs".into()])),
            ("rollout hash", |d| d.rollout_hash = Some("r".into())),
            ("hold", |d| d.hold_config = true),
            ("placement", |d| d.placement = 2),
            ("env", |d| {
                d.env.insert("K".into(), "v".into());
            }),
            ("image", |d| d.image = "b".into()),
            ("no config", |d| d.hadoop = None),
        ];
        for (what, change) in &changes {
            let mut d = a.clone();
            change(&mut d);
            assert_ne!(digest(&d), base, "{what}");
        }
        // With a rollout hash, it stands for the files (computed from them at render): the
        // files are not hashed again, the hash is.
        let mut rolled = a.clone();
        rolled.rollout_hash = Some("r1".into());
        let mut other_files = rolled.clone();
        Arc::make_mut(other_files.hadoop.as_mut().unwrap()).files.insert("core-site.xml".into(), "<z/>".into());
        assert_eq!(digest(&other_files), digest(&rolled));
        other_files.rollout_hash = Some("r2".into());
        assert_ne!(digest(&other_files), digest(&rolled));
    }

    #[test]
    fn an_unknown_generation_gets_the_full_set_and_an_unchanged_set_keeps_its_generation() {
        let sents = Sents::default();
        let first = sents.reply("h", None, full(vec![dc(0, "a"), dc(1, "a")], Some(plan(1)), 1), 1000).map(wire).unwrap();
        // The same set again: same generation, nothing in a delta.
        let again = sents.reply("h", Some(first.generation), full(vec![dc(0, "a"), dc(1, "a")], Some(plan(1)), 1), 1000).map(wire).unwrap();
        assert_eq!((again.generation, again.base, again.desired.len()), (first.generation, Some(first.generation), 0));
        // A generation from before a restart (or a lost reply): the full set.
        assert!(sents.holds("h", Some(first.generation)) && !sents.holds("h", Some(first.generation - 7)) && !sents.holds("h", None));
        assert!(!sents.holds("other", Some(first.generation)));
        let restarted = sents.reply("h", Some(first.generation - 7), full(vec![dc(0, "a"), dc(1, "a")], Some(plan(1)), 1), 1000).map(wire).unwrap();
        assert_eq!((restarted.base, restarted.desired.len(), restarted.network.is_some()), (None, 2, true));
        // Generations of another process start above this one's (wall clock in µs).
        let later = Sents::default();
        let other = later.reply("h", None, full(vec![], None, 1), 1000).map(wire).unwrap();
        assert!(other.generation > first.generation);
    }

    #[test]
    fn an_agent_whose_last_reply_was_lost_gets_a_delta_against_the_set_it_holds() {
        let sents = Sents::default();
        let mut agent = DesiredSet::default();
        agent.apply(&sents.reply("h", None, full(vec![dc(0, "a"), dc(1, "a")], Some(plan(1)), 1), 1000).map(wire).unwrap()).unwrap();
        let held = agent.generation;
        // This reply is lost (the agent timed out waiting for it).
        let lost = sents.reply("h", held, full(vec![dc(0, "b"), dc(1, "a")], Some(plan(1)), 2), 1000).map(wire).unwrap();
        assert_eq!(lost.desired.len(), 1);
        // The agent asks again from what it holds: a delta, not the full set.
        let now = full(vec![dc(0, "b"), dc(1, "a"), dc(2, "a")], Some(plan(1)), 3);
        let want = expected(&now);
        let r = sents.reply("h", held, now, 1000).map(wire).unwrap();
        assert_eq!((r.base, r.desired.len(), r.network.is_some()), (held, 2, false));
        agent.apply(&r).unwrap();
        assert_eq!((agent.containers.clone(), agent.network.clone()), want);
        // The same set again, asked from the generation before it: the same generation, as a delta.
        let again = sents.reply("h", Some(lost.generation), full(vec![dc(0, "b"), dc(1, "a"), dc(2, "a")], Some(plan(1)), 3), 1000).map(wire).unwrap();
        assert_eq!((again.generation, again.base, again.desired.len()), (r.generation, Some(lost.generation), 1));
        // Two behind: the full set.
        let full_again = sents.reply("h", held, full(vec![dc(0, "b"), dc(1, "a"), dc(2, "a")], Some(plan(1)), 3), 1000).map(wire).unwrap();
        assert_eq!((full_again.base, full_again.desired.len()), (None, 3));
    }

    #[test]
    fn an_answer_from_an_older_snapshot_never_takes_a_newer_set_back() {
        let sents = Sents::default();
        let new = sents.reply("h", None, full(vec![dc(0, "a"), dc(1, "a")], None, 5), 1000).map(wire).unwrap();
        assert!(sents.reply("h", Some(new.generation), full(vec![dc(0, "a")], None, 4), 1000).map(wire).is_none());
        // The agent holding the newer set ignores an older reply that raced it.
        let mut agent = DesiredSet::default();
        agent.apply(&new).unwrap();
        let older = HeartbeatReply { generation: new.generation - 1, desired: vec![], ..new.clone() };
        assert_eq!(agent.apply(&older), Ok(false));
        assert_eq!(agent.containers.len(), 2);
    }

    #[test]
    fn a_delta_against_a_generation_the_agent_does_not_hold_is_refused() {
        let sents = Sents::default();
        let a = sents.reply("h", None, full(vec![dc(0, "a")], None, 1), 1000).map(wire).unwrap();
        let b = sents.reply("h", Some(a.generation), full(vec![dc(0, "b")], None, 2), 1000).map(wire).unwrap();
        let mut fresh = DesiredSet::default();
        assert_eq!(fresh.apply(&b), Err(herd_api::wire::StaleDelta { base: a.generation, held: None }));
        assert!(fresh.containers.is_empty());
    }

    #[test]
    fn idle_hosts_are_known_until_a_commit_names_them() {
        let sents = Sents::default();
        // Idle hosts are answered whatever generation they hold, and without asking a cluster.
        let idle_since = |host: &str, touched: u64| match sents.unchanged_since(host, None, touched, |_| None, |_: &str| None) {
            Some(Unchanged::Idle(g)) => Some(g),
            _ => None,
        };
        // Told an empty set (with its own lease) computed after commit 3.
        let r = sents.reply("h", None, full(vec![], Some(plan(1)), 3), 1000).map(wire).unwrap();
        // The last commit naming it came before (or is that one): still idle.
        assert_eq!(idle_since("h", 0), Some(r.generation));
        assert_eq!(idle_since("h", 3), Some(r.generation));
        // A later commit named it (a placement, a purge): compute again.
        assert_eq!(idle_since("h", 4), None);
        assert_eq!(unchanged(r.generation, Some(r.generation), 1000).base, Some(r.generation));
        assert_eq!(unchanged(r.generation, None, 1000).base, None);
        // A host running something is never answered from memory.
        let busy = sents.reply("b", None, full(vec![dc(0, "a")], None, 3), 1000).map(wire).unwrap();
        assert_eq!(busy.desired.len(), 1);
        assert_eq!(idle_since("b", 0), None);
        sents.forget("h");
        assert_eq!(idle_since("h", 0), None);
    }
}
