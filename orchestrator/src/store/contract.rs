//! The store contract: what every [`Tx`](super::Tx) implementation must do alike, run against
//! each (SQLite in memory and on disk, etcd started by the test on loopback). Operations and
//! their orderings (pages), transactions (all or nothing), conflicts (a subnet leased twice,
//! a token stored twice, a cluster of no tenant, ...), revisions, and for etcd concurrent
//! writers (two handles, as two orchestrators would be) that must serialize.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd_api::lifecycle::Phase;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{ContainerState, HostInfo, LogEndpoint, Observed, Quota, Scope, TokenInfo};
use herd_api::{ClusterSpec, Role};

use super::audit::Change;
use super::{Store, Tx, etcd, idempotency};
use crate::error::{Error, Result};
use crate::reconciler::Instance;

/// A fresh store of one kind, kept alive (its files, its etcd process) by the guard.
pub type Fresh = (Store, Box<dyn std::any::Any>);

pub fn sqlite_memory() -> Fresh {
    (Store::in_memory().expect("in-memory store"), Box::new(()))
}

pub fn sqlite_file() -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("herd.db")).expect("sqlite store");
    (store, Box::new(dir))
}

pub fn etcd_store() -> Fresh {
    let server = EtcdServer::start();
    let store = server.store("/herd/v1");
    (store, Box::new(server))
}

/// A single-member etcd of Debian's `etcd-server` on free loopback ports, with a data dir of
/// its own; killed when dropped.
pub struct EtcdServer {
    child: Child,
    pub url: url::Url,
    _dir: tempfile::TempDir,
}

const ETCD: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

impl EtcdServer {
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd store tests need Debian's etcd-server (run deploy/lib/etcd.sh as root)"
        );
        // NB: a free port can be taken by another test between `free_port` and etcd's bind:
        // then etcd exits saying so, and starts again on other ports (a few times at most).
        for attempt in 1.. {
            let dir = tempfile::tempdir().expect("tempdir");
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("http://127.0.0.1:{client}");
            let url: url::Url = client_url.parse().expect("url");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(ETCD)
                .args(["--name", "contract", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("contract={peer_url}"), "--max-txn-ops", "10000"])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log"))
                .spawn()
                .expect("start etcd");
            let mut server = EtcdServer { child, url, _dir: dir };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("address already in use") => continue,
                Err(log) => panic!("etcd exited before it answered; its log:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Waits until etcd answers; its log when it exited first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::net::TcpStream::connect_timeout(
                &format!("127.0.0.1:{}", self.url.port().unwrap_or(0)).parse().expect("addr"),
                Duration::from_millis(200),
            )
            .is_ok();
            if ok && etcd::Etcd::connect(etcd::Options::new(vec![self.url.clone()])).is_ok() {
                return Ok(());
            }
            let log = std::fs::read_to_string(self._dir.path().join("etcd.log")).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("({status})\n{log}"));
            }
            assert!(Instant::now() < deadline, "etcd did not answer on {} within 30 s; its log:\n{log}", self.url);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A store handle on this etcd under `prefix`.
    pub fn store(&self, prefix: &str) -> Store {
        let mut o = etcd::Options::new(vec![self.url.clone()]);
        o.prefix = prefix.into();
        Store::etcd(o).expect("etcd store")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Fixtures.

pub(crate) fn host(id: &str) -> HostInfo {
    serde_json::from_value(serde_json::json!({"id": id, "cpu": "8", "memory": "32Gi"})).expect("host")
}

fn spec(tenant: &str, name: &str, datanodes: u32) -> ClusterSpec {
    let yaml = format!(
        "tenant: {tenant}\nname: {name}\nimages: {{namenode: n, datanode: d}}\npools:\n  namenode: {{replicas: 1, cpu: 100m, memory: 512Mi}}\n  datanode: {{replicas: {datanodes}, cpu: 200m, memory: 256Mi}}\n"
    );
    herd_api::yaml::parse_cluster_spec(&yaml).expect("spec")
}

pub(crate) fn inst(tenant: &str, cluster: &str, role: Role, ordinal: u32, host: Option<&str>) -> Instance {
    Instance {
        instance: InstanceRef::new(tenant, cluster, role, ordinal),
        role,
        ordinal,
        host: host.map(Into::into),
        pending: host.is_none().then(|| "no room".to_string()),
        cpu: Cpu(200),
        memory: Memory(256 << 20),
        placement: 0,
    }
}

fn token(id: &str, scope: Scope, tenant: Option<&str>, host: Option<&str>) -> TokenInfo {
    TokenInfo {
        id: id.into(),
        scope,
        tenant: tenant.map(Into::into),
        host: host.map(Into::into),
        description: None,
        created_at: 1,
        revoked: false,
    }
}

fn observed(i: &InstanceRef) -> Observed {
    serde_json::from_value(serde_json::json!({"instance": i, "container_id": "c1", "state": "running"})).expect("observed")
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Conflict(_)))
}

/// A write, as an operation makes it.
async fn write<R: Send + 'static>(s: &Store, f: impl Fn(&dyn Tx) -> Result<R> + Send + 'static) -> Result<R> {
    s.write(f).await
}

async fn read<R: Send + 'static>(s: &Store, f: impl FnOnce(&dyn Tx) -> Result<R> + Send + 'static) -> Result<R> {
    s.read(f).await
}

/// A tenant `t` with cluster `t/c` (two DataNodes).
pub(crate) async fn with_cluster(s: &Store) -> Result<()> {
    write(s, |tx| {
        tx.insert_tenant("t", &Quota::default(), 10)?;
        tx.put_cluster(1, &spec("t", "c", 2))
    })
    .await
}

// The cases.

pub async fn hosts(s: Store) -> Result<()> {
    assert!(write(&s, |tx| tx.upsert_host(&host("h2"), 100)).await?, "new");
    assert!(!write(&s, |tx| tx.upsert_host(&host("h2"), 200)).await?, "known");
    write(&s, |tx| tx.upsert_host(&host("h1"), 300)).await?;
    assert!(write(&s, |tx| tx.set_host_schedule("h2", true, Some(7))).await?);
    assert!(!write(&s, |tx| tx.set_host_schedule("nope", true, None)).await?);
    // An update keeps the cordon.
    write(&s, |tx| tx.upsert_host(&host("h2"), 400)).await?;
    let h2 = read(&s, |c| c.host("h2")).await?.expect("h2 stored");
    assert_eq!((h2.last_seen_ms, h2.cordoned, h2.drain_since_ms, h2.info.id.as_str()), (400, true, Some(7), "h2"));
    assert_eq!(read(&s, |c| c.host("h3")).await?, None);
    let ids = |rows: Vec<super::HostRow>| rows.into_iter().map(|h| h.info.id).collect::<Vec<_>>();
    assert_eq!(ids(read(&s, |c| c.hosts()).await?), ["h1", "h2"]);
    assert_eq!(ids(read(&s, |c| c.hosts_page(None, 1)).await?), ["h1"]);
    assert_eq!(ids(read(&s, |c| c.hosts_page(Some("h1"), 5)).await?), ["h2"]);

    write(&s, |tx| {
        tx.put_log_endpoint("h1", &LogEndpoint { url: "https://h1:7481".into(), secret: "s".into() })?;
        tx.set_conditions("h1", &["DiskPressure".to_string()])?;
        tx.set_conditions("h2", &["A".to_string()])?;
        tx.set_conditions("h2", &[])
    })
    .await?;
    assert_eq!(read(&s, |c| c.log_endpoint("h1")).await?.map(|e| e.url), Some("https://h1:7481".into()));
    assert_eq!(read(&s, |c| c.log_endpoint("h2")).await?, None);
    let conditions = read(&s, |c| c.conditions()).await?;
    assert_eq!((conditions.len(), conditions.get("h1").map(Vec::len)), (1, Some(1)));

    // Forgetting a host takes its leases, reports and purges with it, and revokes its agent tokens.
    with_cluster(&s).await?;
    let i = InstanceRef::new("t", "c", Role::Datanode, 0);
    write(&s, move |tx| {
        tx.put_subnet("h1", "10.1.0.0/24".parse().expect("net"))?;
        tx.replace_observed("h1", &[observed(&i)])?;
        tx.put_purge("h1", &i)?;
        tx.insert_token(&token("a2", Scope::Agent, None, Some("h1")), "hash-a2")?;
        tx.insert_token(&token("a1", Scope::Agent, None, Some("h1")), "hash-a1")?;
        tx.insert_token(&token("a3", Scope::Agent, None, Some("h2")), "hash-a3")
    })
    .await?;
    assert_eq!(write(&s, |tx| tx.delete_host("h1")).await?, ["a1", "a2"]);
    let (h, subnet, logs, purges, observed, live) = read(&s, |c| {
        Ok((c.host("h1")?, c.subnets_of("h1")?, c.log_endpoint("h1")?, c.purges("h1")?, c.observed()?, c.token_by_hash("hash-a3")?))
    })
    .await?;
    assert!(h.is_none() && subnet.is_none() && logs.is_none() && purges.is_empty() && observed.is_empty());
    assert_eq!(live.map(|t| t.id), Some("a3".into()));
    assert_eq!(read(&s, |c| c.token("a1")).await?.map(|t| t.revoked), Some(true));
    // The freed subnet can go to another host.
    write(&s, |tx| tx.put_subnet("h2", "10.1.0.0/24".parse().expect("net"))).await?;
    Ok(())
}

pub async fn subnets(s: Store) -> Result<()> {
    let net = |n: &str| n.parse::<ipnet::Ipv4Net>().expect("net");
    assert!(is_conflict(write(&s, move |tx| tx.put_subnet("ghost", net("10.0.0.0/24"))).await), "a lease needs its host");
    write(&s, |tx| {
        tx.upsert_host(&host("h1"), 1)?;
        tx.upsert_host(&host("h2"), 1)
    })
    .await?;
    write(&s, move |tx| tx.put_subnet("h1", net("10.0.0.0/24"))).await?;
    // Again for the same host: a no-op.
    write(&s, move |tx| tx.put_subnet("h1", net("10.0.0.0/24"))).await?;
    assert!(is_conflict(write(&s, move |tx| tx.put_subnet("h2", net("10.0.0.0/24"))).await), "one subnet, one host");
    write(&s, move |tx| tx.put_subnet("h2", net("10.0.1.0/24"))).await?;
    // h1 moves to another subnet: its old one is free again.
    write(&s, move |tx| tx.put_subnet("h1", net("10.0.2.0/24"))).await?;
    write(&s, move |tx| tx.put_subnet("h2", net("10.0.0.0/24"))).await?;
    let all = read(&s, |c| c.subnets()).await?;
    assert_eq!(all.into_iter().collect::<Vec<_>>(), [("h1".into(), net("10.0.2.0/24")), ("h2".into(), net("10.0.0.0/24"))]);
    assert_eq!(read(&s, |c| c.subnets_of("h2")).await?, Some(net("10.0.0.0/24")));
    Ok(())
}

pub async fn tenants(s: Store) -> Result<()> {
    let q = Quota { cpu: Some(Cpu(4000)), ..Quota::default() };
    let q2 = q.clone();
    assert!(write(&s, move |tx| tx.insert_tenant("b", &q2, 5)).await?);
    assert!(!write(&s, |tx| tx.insert_tenant("b", &Quota::default(), 6)).await?, "exists");
    write(&s, |tx| tx.insert_tenant("a", &Quota::default(), 7)).await?;
    let b = read(&s, |c| c.tenant("b")).await?.expect("b");
    assert_eq!((b.name.as_str(), b.created_at, b.quota), ("b", 5, q));
    assert!(read(&s, |c| c.tenant_exists("a")).await? && !read(&s, |c| c.tenant_exists("z")).await?);
    let names = |v: Vec<super::TenantRow>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(read(&s, |c| c.tenants(None, 10)).await?), ["a", "b"]);
    assert_eq!(names(read(&s, |c| c.tenants(Some("a"), 10)).await?), ["b"]);
    assert_eq!(names(read(&s, |c| c.tenants(None, 1)).await?), ["a"]);
    assert!(!write(&s, |tx| tx.set_quota("z", &Quota::default())).await?);
    assert!(write(&s, |tx| tx.set_quota("b", &Quota::default())).await?);
    assert_eq!(read(&s, |c| c.quotas()).await?.len(), 2);

    // A tenant with a cluster cannot go; without, it goes with its tokens.
    write(&s, |tx| {
        tx.put_cluster(1, &spec("b", "c", 1))?;
        tx.insert_token(&token("tb", Scope::Tenant, Some("b"), None), "hash-tb")
    })
    .await?;
    assert!(is_conflict(write(&s, |tx| tx.delete_tenant("b")).await));
    assert!(read(&s, |c| c.tenant_exists("b")).await?, "nothing changed");
    write(&s, |tx| tx.delete_cluster("b", "c")).await?;
    write(&s, |tx| tx.delete_tenant("b")).await?;
    assert!(!read(&s, |c| c.tenant_exists("b")).await?);
    assert_eq!(read(&s, |c| c.token_by_hash("hash-tb")).await?, None, "revoked with its tenant");
    Ok(())
}

pub async fn clusters(s: Store) -> Result<()> {
    assert!(is_conflict(write(&s, |tx| tx.put_cluster(1, &spec("t", "c", 1))).await), "a cluster needs its tenant");
    // NB: `a` < `a-b` as tuples, though `a-b/…` < `a/…` as bytes.
    write(&s, |tx| {
        for t in ["a", "a-b"] {
            tx.insert_tenant(t, &Quota::default(), 1)?;
        }
        for (t, n) in [("a-b", "x"), ("a", "y"), ("a", "x"), ("a", "x-1")] {
            tx.put_cluster(1, &spec(t, n, 1))?;
        }
        Ok(())
    })
    .await?;
    let keys = |v: Vec<super::ClusterRow>| v.into_iter().map(|c| format!("{}/{}", c.spec.tenant, c.spec.name)).collect::<Vec<_>>();
    assert_eq!(keys(read(&s, |c| c.clusters(None)).await?), ["a/x", "a/x-1", "a/y", "a-b/x"]);
    assert_eq!(keys(read(&s, |c| c.clusters(Some("a"))).await?), ["a/x", "a/x-1", "a/y"]);
    assert_eq!(keys(read(&s, |c| c.clusters_page(None, Some(("a", "x-1")), 2)).await?), ["a/y", "a-b/x"]);
    assert_eq!(keys(read(&s, |c| c.clusters_page(Some("a"), Some(("a", "x")), 1)).await?), ["a/x-1"]);
    assert_eq!(keys(read(&s, |c| c.clusters_page(None, None, 1)).await?), ["a/x"]);
    assert_eq!(read(&s, |c| c.cluster_count("a")).await?, 3);
    write(&s, |tx| tx.put_cluster(2, &spec("a", "x", 3))).await?;
    let x = read(&s, |c| c.cluster("a", "x")).await?.expect("a/x");
    assert_eq!((x.generation, x.spec.pools.get(&Role::Datanode).map(|p| p.replicas.0)), (2, Some(3)));
    assert_eq!(read(&s, |c| c.cluster("a", "nope")).await?, None);
    // Usage: each cluster's requests (1 NameNode 100m + DataNodes 200m), but the one left out.
    let usage = read(&s, |c| Ok((c.usage("a", None)?, c.usage("a", Some("x"))?))).await?;
    assert_eq!((usage.0.cpu, usage.1.cpu), (Cpu(700 + 300 + 300), Cpu(300 + 300)));

    // A cluster with instances cannot go; its phases and reports go with it.
    write(&s, |tx| tx.put_instance(&inst("a", "y", Role::Datanode, 0, Some("h1")))).await?;
    assert!(is_conflict(write(&s, |tx| tx.delete_cluster("a", "y")).await));
    let i = InstanceRef::new("a", "y", Role::Datanode, 0);
    let i2 = i.clone();
    write(&s, move |tx| {
        tx.upsert_host(&host("h1"), 1)?;
        tx.replace_observed("h1", &[observed(&i2)])?;
        tx.put_phase(&i2, &Phase::Removing)?;
        tx.delete_instance(&i2)?;
        tx.put_phase(&i2, &Phase::Removing)?;
        tx.delete_cluster("a", "y")
    })
    .await?;
    let (row, leaving, observed) = read(&s, |c| Ok((c.cluster("a", "y")?, c.leaving(None)?, c.observed()?))).await?;
    assert!(row.is_none() && leaving.is_empty() && observed.is_empty(), "{leaving:?} {observed:?}");
    let _ = i;
    Ok(())
}

pub async fn instances(s: Store) -> Result<()> {
    with_cluster(&s).await?;
    assert!(
        is_conflict(write(&s, |tx| tx.put_instance(&inst("t", "nope", Role::Datanode, 0, None))).await),
        "an instance needs its cluster"
    );
    write(&s, |tx| {
        tx.insert_tenant("u", &Quota::default(), 1)?;
        tx.put_cluster(1, &spec("u", "c", 1))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 10, Some("h1")))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 2, None))?;
        tx.put_instance(&inst("t", "c", Role::Namenode, 0, Some("h2")))?;
        tx.put_instance(&inst("u", "c", Role::Datanode, 0, Some("h1")))
    })
    .await?;
    let names = |v: Vec<Instance>| v.into_iter().map(|i| i.instance.to_string()).collect::<Vec<_>>();
    // Ordered by tenant, cluster, role name and ordinal (as a number).
    assert_eq!(names(read(&s, |c| c.instances(None)).await?), ["t/c/datanode-2", "t/c/datanode-10", "t/c/namenode-0", "u/c/datanode-0"]);
    assert_eq!(names(read(&s, |c| c.instances(Some(("u", "c")))).await?), ["u/c/datanode-0"]);
    assert_eq!(names(read(&s, |c| c.instances_of_tenant("t")).await?).len(), 3);
    assert_eq!(names(read(&s, |c| c.instances_on_host("h1")).await?), ["t/c/datanode-10", "u/c/datanode-0"]);
    assert_eq!(read(&s, |c| Ok((c.pending_count(None)?, c.pending_count(Some(("u", "c")))?, c.any_unplaced()?))).await?, (1, 0, true));
    assert_eq!(names(read(&s, |c| c.unplaced()).await?), ["t/c/datanode-2"]);
    sums_match(&s).await?;
    // A new one written as such is as any other: on its host, counted, placed once.
    write(&s, |tx| tx.put_new_instance(&inst("u", "c", Role::Datanode, 1, Some("h3")))).await?;
    let on_h3 = read(&s, |c| c.instances_on_host("h3")).await?;
    assert_eq!(on_h3.iter().map(|i| (i.instance.to_string(), i.placement)).collect::<Vec<_>>(), [("u/c/datanode-1".to_string(), 1)]);
    sums_match(&s).await?;
    write(&s, |tx| tx.delete_instance(&InstanceRef::new("u", "c", Role::Datanode, 1))).await?;

    // Placement counts each landing on a host it was not on.
    let placement = |s: &Store| {
        let s = s.clone();
        async move { Ok::<_, Error>(read(&s, |c| c.instances(Some(("t", "c")))).await?.into_iter().map(|i| (i.instance.name, i.placement, i.host)).collect::<Vec<_>>()) }
    };
    let got = placement(&s).await?;
    assert_eq!(got[0], ("datanode-2".into(), 0, None));
    assert_eq!(got[1], ("datanode-10".into(), 1, Some("h1".into())));
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 2, Some("h2")))).await?; // pending → h2
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 10, Some("h1")))).await?; // stays
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 10, None))).await?; // pending again
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 10, Some("h2")))).await?; // lands
    let got = placement(&s).await?;
    assert_eq!(got[0], ("datanode-2".into(), 1, Some("h2".into())));
    assert_eq!(got[1], ("datanode-10".into(), 2, Some("h2".into())));
    // The host index follows moves.
    assert_eq!(names(read(&s, |c| c.instances_on_host("h1")).await?), ["u/c/datanode-0"]);
    assert_eq!(names(read(&s, |c| c.instances_on_host("h2")).await?), ["t/c/datanode-2", "t/c/datanode-10", "t/c/namenode-0"]);
    assert!(!read(&s, |c| c.any_unplaced()).await?);
    // Resources change in place.
    write(&s, |tx| tx.put_instance(&Instance { cpu: Cpu(500), ..inst("t", "c", Role::Datanode, 2, Some("h2")) })).await?;
    let on_h2 = read(&s, |c| c.instances_on_host("h2")).await?;
    assert_eq!(on_h2.first().map(|i| (i.cpu, i.placement)), Some((Cpu(500), 1)));
    sums_match(&s).await?;
    // A write that fails after moving instances leaves the sums as the instances are.
    let failed = write(&s, |tx| {
        tx.put_instance(&inst("t", "c", Role::Datanode, 7, Some("h3")))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 2, None))?;
        sums_match_in(tx)?;
        Err::<(), _>(Error::refused("replicas", "refused after writing"))
    })
    .await;
    assert!(failed.is_err());
    sums_match(&s).await?;
    assert!(read(&s, |c| c.instances_on_host("h3")).await?.is_empty());

    // Deleting an instance takes its phase and its place on the host.
    let dn2 = InstanceRef::new("t", "c", Role::Datanode, 2);
    let d = dn2.clone();
    write(&s, move |tx| {
        tx.put_phase(&d, &Phase::Drained)?;
        tx.delete_instance(&d)
    })
    .await?;
    assert!(read(&s, |c| c.leaving(None)).await?.is_empty());
    assert_eq!(names(read(&s, |c| c.instances_on_host("h2")).await?), ["t/c/datanode-10", "t/c/namenode-0"]);
    sums_match(&s).await?;
    Ok(())
}

/// Inside a write: what the store keeps of every host's usage (if it keeps it) is the sum of
/// the instances the write sees.
fn sums_match_in(tx: &dyn Tx) -> Result<()> {
    let mut kept = None;
    let keeps = tx.with_usage(&mut |u| kept = Some(u.clone()))?;
    let sum = crate::store::usage::Usage::of(&tx.instances(None)?);
    assert_eq!(keeps, kept.is_some(), "with_usage runs f exactly when it says it keeps the sums");
    if let Some(kept) = kept {
        assert_eq!(kept, sum, "the kept usage drifted from the instances");
    }
    Ok(())
}

async fn sums_match(s: &Store) -> Result<()> {
    write(s, sums_match_in).await
}

pub async fn phases_and_purges(s: Store) -> Result<()> {
    with_cluster(&s).await?;
    let i = |n| InstanceRef::new("t", "c", Role::Datanode, n);
    let d = Phase::Decommissioning { since_ms: 5, refreshed_ms: None, forced: false };
    write(&s, move |tx| {
        tx.insert_tenant("u", &Quota::default(), 1)?;
        tx.put_phase(&i(1), &d)?;
        tx.put_phase(&i(0), &Phase::Removing)?;
        tx.put_phase(&i(1), &Phase::Drained)?;
        tx.put_phase(&InstanceRef::new("u", "c", Role::Nodemanager, 0), &Phase::Drained)
    })
    .await?;
    let all = read(&s, |c| c.leaving(None)).await?;
    assert_eq!(all.len(), 3);
    assert_eq!(all.get(&i(1)), Some(&Phase::Drained));
    assert_eq!(read(&s, |c| c.leaving(Some(("t", "c")))).await?.len(), 2);
    assert!(read(&s, |c| c.any_leaving()).await?);
    write(&s, move |tx| tx.delete_phase(&i(0))).await?;
    assert_eq!(read(&s, |c| c.leaving(Some(("t", "c")))).await?.keys().cloned().collect::<Vec<_>>(), [i(1)]);

    write(&s, move |tx| {
        tx.put_purge("h1", &i(3))?;
        tx.put_purge("h1", &i(1))?;
        tx.put_purge("h1", &i(1))?;
        tx.put_purge("h2", &i(2))
    })
    .await?;
    assert_eq!(read(&s, |c| c.purges("h1")).await?, [i(1), i(3)]);
    assert!(read(&s, move |c| c.purge_pending(&i(2))).await? && !read(&s, move |c| c.purge_pending(&i(0))).await?);
    write(&s, move |tx| tx.delete_purge("h2", &i(2))).await?;
    assert!(!read(&s, move |c| c.purge_pending(&i(2))).await?);
    Ok(())
}

pub async fn reports(s: Store) -> Result<()> {
    with_cluster(&s).await?;
    let i = |n| InstanceRef::new("t", "c", Role::Datanode, n);
    write(&s, move |tx| {
        tx.replace_observed("h1", &[observed(&i(0)), observed(&i(1))])?;
        tx.replace_observed("h2", &[observed(&i(1))])
    })
    .await?;
    write(&s, move |tx| tx.replace_observed("h1", &[Observed { state: ContainerState::Exited, ..observed(&i(1)) }])).await?;
    let all = read(&s, |c| c.observed()).await?;
    let mut keys: Vec<(String, String)> = all.keys().map(|(i, h)| (i.to_string(), h.clone())).collect();
    keys.sort();
    assert_eq!(keys, [("t/c/datanode-1".into(), "h1".into()), ("t/c/datanode-1".into(), "h2".into())]);
    assert_eq!(all.get(&(i(1), "h1".into())).map(|o| o.state), Some(ContainerState::Exited));

    // Written as a change from what is stored: h1 ends holding exactly the new report, row
    // for row (one gone, one changed, one kept, two new, in every order of the merge), and
    // h2 keeps its own.
    let exited = |n| Observed { state: ContainerState::Exited, ..observed(&i(n)) };
    let steps = [
        (vec![exited(1)], vec![observed(&i(0)), observed(&i(1)), observed(&i(2))]),
        (vec![observed(&i(0)), observed(&i(1)), observed(&i(2))], vec![observed(&i(1)), exited(2), observed(&i(3))]),
        (vec![observed(&i(1)), exited(2), observed(&i(3))], vec![]),
    ];
    for (before, now) in steps {
        let want = now.clone();
        write(&s, move |tx| tx.update_observed("h1", &before, &now)).await?;
        let all = read(&s, |c| c.observed()).await?;
        let mut h1: Vec<Observed> = all.iter().filter(|((_, h), _)| h == "h1").map(|(_, o)| o.clone()).collect();
        h1.sort_by(|a, b| a.instance.cmp(&b.instance));
        assert_eq!(h1, want);
        assert_eq!(all.get(&(i(1), "h2".into())), Some(&observed(&i(1))), "another host's report is kept");
    }
    Ok(())
}

pub async fn tokens(s: Store) -> Result<()> {
    assert!(!read(&s, |c| c.has_live_admin()).await?);
    write(&s, |tx| {
        tx.insert_token(&token("k2", Scope::Admin, None, None), "hash-2")?;
        tx.insert_token(&token("k1", Scope::Agent, None, Some("h1")), "hash-1")
    })
    .await?;
    assert!(is_conflict(write(&s, |tx| tx.insert_token(&token("k3", Scope::Admin, None, None), "hash-2")).await), "one secret, one token");
    assert!(is_conflict(write(&s, |tx| tx.insert_token(&token("k2", Scope::Admin, None, None), "hash-9")).await), "one id, one token");
    assert!(read(&s, |c| c.has_live_admin()).await?);
    assert_eq!(read(&s, |c| c.token_by_hash("hash-1")).await?.map(|t| (t.id, t.host)), Some(("k1".into(), Some("h1".into()))));
    let ids = |v: Vec<TokenInfo>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(read(&s, |c| c.tokens(None, 10)).await?), ["k1", "k2"]);
    assert_eq!(ids(read(&s, |c| c.tokens(Some("k1"), 10)).await?), ["k2"]);
    assert!(write(&s, |tx| tx.revoke_token("k2")).await?);
    assert!(write(&s, |tx| tx.revoke_token("k2")).await?, "again: still there");
    assert!(!write(&s, |tx| tx.revoke_token("nope")).await?);
    assert_eq!(read(&s, |c| c.token_by_hash("hash-2")).await?, None);
    assert_eq!(read(&s, |c| c.token("k2")).await?.map(|t| t.revoked), Some(true));
    assert!(!read(&s, |c| c.has_live_admin()).await?);
    Ok(())
}

pub async fn audit(s: Store) -> Result<()> {
    for n in 0..5u64 {
        write(&s, move |tx| {
            let ch = Change { actor: "admin", action: "cluster.apply", resource: "t/c", before: Some(n), after: Some(n + 1) };
            tx.record_audit(1000 + n, &ch, (n == 3).then_some("forced"))
        })
        .await?;
    }
    let all = read(&s, |c| c.audit(None, 100)).await?;
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!((all[3].at, all[3].detail.as_deref(), all[3].after_generation), (1003, Some("forced"), Some(4)));
    let page = read(&s, |c| c.audit(Some(2), 2)).await?;
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4]);
    Ok(())
}

pub async fn idempotent_answers(s: Store) -> Result<()> {
    let stored = idempotency::Stored { fingerprint: "f".into(), status: 201, body: "sealed".into() };
    let day = idempotency::KEEP_MS;
    let st = stored.clone();
    write(&s, move |tx| tx.put_idempotent("actor", "key/1", &st, 1000)).await?;
    assert_eq!(read(&s, move |c| c.idempotent("actor", "key/1", 1000 + day)).await?, Some(stored.clone()));
    assert_eq!(read(&s, move |c| c.idempotent("actor", "key/1", 1001 + day)).await?, None, "too old");
    assert_eq!(read(&s, |c| c.idempotent("other", "key/1", 1000)).await?, None);
    // A later answer drops the expired ones.
    let st = stored.clone();
    write(&s, move |tx| tx.put_idempotent("actor", "key2", &st, 2000 + day)).await?;
    assert_eq!(read(&s, move |c| c.idempotent("actor", "key/1", 0)).await?, None);
    Ok(())
}

pub async fn transactions(s: Store) -> Result<()> {
    assert_eq!((read(&s, |c| c.revision()).await?, s.current_revision()), (0, 0));
    // All or nothing: an operation that fails after writing leaves nothing behind.
    let failed = write(&s, |tx| {
        tx.insert_tenant("t", &Quota::default(), 1)?;
        tx.bump_revision()?;
        tx.upsert_host(&host("h1"), 1)?;
        Err::<(), _>(Error::invalid("test", "stop here"))
    })
    .await;
    assert!(matches!(failed, Err(Error::Invalid { .. })), "{failed:?}");
    let (t, h, rev) = read(&s, |c| Ok((c.tenant_exists("t")?, c.host("h1")?, c.revision()?))).await?;
    assert!(!t && h.is_none() && rev == 0);
    // A conflict halfway through rolls the earlier writes back too.
    let conflict = write(&s, |tx| {
        tx.insert_tenant("t", &Quota::default(), 1)?;
        tx.put_instance(&inst("t", "missing", Role::Datanode, 0, None))
    })
    .await;
    assert!(is_conflict(conflict));
    assert!(!read(&s, |c| c.tenant_exists("t")).await?);
    // A panic, too.
    let panicked = write(&s, |tx| {
        tx.insert_tenant("t", &Quota::default(), 1)?;
        panic!("the operation panics");
        #[allow(unreachable_code)]
        Ok(())
    })
    .await;
    assert!(panicked.is_err() && !read(&s, |c| c.tenant_exists("t")).await?);

    // A transaction sees its own writes, in lookups and in lists.
    let seen = write(&s, |tx| {
        tx.insert_tenant("t", &Quota::default(), 1)?;
        tx.put_cluster(1, &spec("t", "c", 1))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 1, Some("h1")))?;
        tx.delete_instance(&InstanceRef::new("t", "c", Role::Datanode, 1))?;
        let listed = tx.instances(None)?.len();
        let on_host = tx.instances_on_host("h1")?.len();
        Ok((tx.tenant_exists("t")?, tx.cluster_count("t")?, listed, on_host, tx.bump_revision()?, tx.bump_revision()?))
    })
    .await?;
    assert_eq!(seen, (true, 1, 1, 1, 1, 2));
    assert_eq!((read(&s, |c| c.revision()).await?, s.current_revision()), (2, 2));
    // A read sees one snapshot and cannot write.
    assert!(read(&s, |c| c.put_phase(&InstanceRef::new("t", "c", Role::Datanode, 0), &Phase::Drained)).await.is_err());
    assert!(read(&s, |c| c.leaving(None)).await?.is_empty());
    Ok(())
}

/// Writers at once, through one handle or several (as several orchestrators would), each
/// reading what it changes: none is lost, none is applied twice.
pub async fn concurrent_writers(handles: Vec<Store>) -> Result<()> {
    let first = handles.first().cloned().expect("a store");
    write(&first, |tx| {
        tx.insert_tenant("t", &Quota::default(), 1)?;
        tx.put_cluster(1, &spec("t", "c", 1))
    })
    .await?;
    let mut tasks = Vec::new();
    for n in 0..24u32 {
        let s = handles[n as usize % handles.len()].clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |tx| {
                // Read-modify-write of one key (the revision), a list, and a new key each.
                let before = tx.instances(Some(("t", "c")))?.len() as u64;
                tx.put_instance(&inst("t", "c", Role::Datanode, n, None))?;
                tx.bump_revision()?;
                let ch = Change { actor: "test", action: "instance.add", resource: "t/c", before: Some(before), after: Some(before + 1) };
                tx.record_audit(u64::from(n), &ch, None)
            })
            .await
        }));
    }
    for t in tasks {
        t.await.map_err(Error::Worker)??;
    }
    let (rev, instances, audit) = read(&first, |c| Ok((c.revision()?, c.instances(None)?.len(), c.audit(None, 100)?))).await?;
    assert_eq!((rev, instances, audit.len()), (24, 24, 24));
    // Serializable: each writer saw the instances of the writers before it, exactly.
    let befores: BTreeSet<u64> = audit.iter().filter_map(|e| e.before_generation).collect();
    assert_eq!(befores, (0..24).collect::<BTreeSet<_>>());
    assert_eq!(audit.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=24).collect::<Vec<_>>());
    // One subnet, many hosts asking for it at once: exactly one gets it.
    write(&first, |tx| {
        for h in 0..6 {
            tx.upsert_host(&host(&format!("h{h}")), 1)?;
        }
        Ok(())
    })
    .await?;
    let mut tasks = Vec::new();
    for h in 0..6 {
        let s = handles[h % handles.len()].clone();
        tasks.push(tokio::spawn(async move { s.write(move |tx| tx.put_subnet(&format!("h{h}"), "10.9.0.0/24".parse().expect("net"))).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.map_err(Error::Worker)? {
            Ok(()) => won += 1,
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(read(&first, |c| c.subnets()).await?.len(), 1);
    Ok(())
}

/// Every commit says which hosts and tenants it touched (what agents' watches wake for);
/// a failed write publishes nothing, and only touching commits move `touches`.
pub async fn touches(s: Store) -> Result<()> {
    with_cluster(&s).await?;
    write(&s, |tx| tx.upsert_host(&host("h1"), 1).and_then(|_| tx.upsert_host(&host("h2"), 1)).map(|_| ())).await?;
    let mut changes = s.changes();
    let before = s.touches();
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))).await?;
    let t = changes.recv().await.expect("a change");
    assert_eq!((t.hosts.iter().map(String::as_str).collect::<Vec<_>>(), t.clusters.keys().map(String::as_str).collect::<Vec<_>>()), (vec!["h1"], vec!["t"]));
    // Moving it touches the host it left and the one it goes to.
    write(&s, |tx| tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h2")))).await?;
    let t = changes.recv().await.expect("a change");
    assert_eq!(t.hosts.iter().collect::<Vec<_>>(), ["h1", "h2"]);
    write(&s, |tx| tx.put_purge("h1", &InstanceRef::new("t", "c", Role::Datanode, 0))).await?;
    assert_eq!(changes.recv().await.expect("a change").hosts.iter().collect::<Vec<_>>(), ["h1"]);
    // Nothing for a write that fails, nor for one that touches nothing that agents run.
    let failed: Result<()> = write(&s, |tx| {
        tx.put_instance(&inst("t", "c", Role::Datanode, 1, Some("h1")))?;
        Err(Error::Conflict("no".into()))
    })
    .await;
    assert!(failed.is_err());
    write(&s, |tx| tx.set_conditions("h1", &["x".into()])).await?;
    assert!(matches!(changes.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)));
    assert_eq!(s.touches(), before + 3);
    // Each host carries the count of the last commit that named it: h1 the purge's, h2 the
    // move's; a host never named has 0.
    assert_eq!((s.host_touched("h1"), s.host_touched("h2"), s.host_touched("h3")), (before + 3, before + 2, 0));
    // Each cluster likewise: t/c by the move (the purge names only its host), a cluster
    // never named 0; a leaving phase names its cluster.
    assert_eq!((s.cluster_touched("t", "c"), s.cluster_touched("t", "other"), s.cluster_touched("u", "c")), (before + 2, 0, 0));
    write(&s, |tx| tx.put_phase(&InstanceRef::new("t", "c", Role::Datanode, 0), &Phase::Removing)).await?;
    assert_eq!(changes.recv().await.expect("a change").clusters.get("t").map(|n| n.iter().map(String::as_str).collect::<Vec<_>>()), Some(vec!["c"]));
    assert_eq!(s.cluster_touched("t", "c"), before + 4);
    Ok(())
}

/// A commit whose caller gave up waiting for it (a client that closed its request) is
/// counted all the same: uncounted, the hosts it placed instances on were taken as unchanged
/// and never told.
pub async fn touches_of_an_abandoned_write(s: Store) -> Result<()> {
    with_cluster(&s).await?;
    write(&s, |tx| tx.upsert_host(&host("h1"), 1).map(|_| ())).await?;
    let mut changes = s.changes();
    let before = s.touches();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let go = std::sync::Mutex::new(go);
    let abandoned = write(&s, move |tx| {
        if let Some(t) = started_tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = t.send(());
        }
        // Held until its caller is gone (etcd may run it again: it does not wait then).
        let _ = go.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv_timeout(std::time::Duration::from_secs(10));
        tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))
    });
    // The caller waits until the write runs, then gives up on it.
    tokio::select! {
        _ = abandoned => panic!("the write finished while it was held"),
        _ = started => {}
    }
    drop(go_tx);
    let t = tokio::time::timeout(std::time::Duration::from_secs(30), changes.recv()).await.expect("the abandoned commit was never counted").expect("a change");
    assert_eq!(t.hosts.iter().collect::<Vec<_>>(), ["h1"]);
    assert_eq!((s.touches(), s.host_touched("h1"), s.cluster_touched("t", "c")), (before + 1, before + 1, before + 1));
    assert_eq!(read(&s, |c| c.instances_on_host("h1")).await?.len(), 1);
    Ok(())
}

/// One test per case and store kind.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite_memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> crate::error::Result<()> {
                let (store, _guard) = super::sqlite_memory();
                super::$case(store).await
            })*
        }
        mod on_sqlite_file {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> crate::error::Result<()> {
                let (store, _guard) = super::sqlite_file();
                super::$case(store).await
            })*
        }
        mod on_etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> crate::error::Result<()> {
                let (store, _guard) = super::etcd_store();
                super::$case(store).await
            })*
        }
    };
}

contract!(
    hosts, subnets, tenants, clusters, instances, phases_and_purges, reports, tokens, audit, idempotent_answers, transactions, touches,
    touches_of_an_abandoned_write,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_writers() -> Result<()> {
    let (store, _guard) = sqlite_file();
    concurrent_writers(vec![store]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_concurrent_writers_through_two_handles() -> Result<()> {
    let server = EtcdServer::start();
    concurrent_writers(vec![server.store("/herd/v1"), server.store("/herd/v1")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixes_are_separate_stores() -> Result<()> {
    let server = EtcdServer::start();
    let (a, b) = (server.store("/a"), server.store("/a2"));
    write(&a, |tx| tx.insert_tenant("t", &Quota::default(), 1)).await?;
    assert!(!read(&b, |c| c.tenant_exists("t")).await?);
    assert_eq!(read(&b, |c| c.tenants(None, 10)).await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_fenced_write_is_refused_once_the_leader_key_is_gone() -> Result<()> {
    let server = EtcdServer::start();
    let (leader, other) = (server.store("/herd/v1"), server.store("/herd/v1"));
    let super::Store(super::Backend::Etcd(etcd), _) = &leader else { panic!("not etcd") };
    // The leader key, as an election would create it: note its create revision.
    write(&other, |tx| tx.insert_tenant("leader-key-stand-in", &Quota::default(), 1)).await?;
    let key = "/herd/v1/tenants/leader-key-stand-in".to_string();
    let created = etcd.create_revision(&key)?.expect("leader key exists");
    etcd.set_fence(Some(etcd::Fence { key: key.clone(), create_revision: created }));
    write(&leader, |tx| tx.insert_tenant("a", &Quota::default(), 1)).await?;
    // The lease is gone (the key deleted): the leader's next write is refused, not retried.
    write(&other, |tx| tx.delete_tenant("leader-key-stand-in")).await?;
    let refused = write(&leader, |tx| tx.insert_tenant("b", &Quota::default(), 1)).await;
    assert!(matches!(refused, Err(Error::NotLeader(_))), "{refused:?}");
    assert!(!read(&other, |c| c.tenant_exists("b")).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_every_object_from_sqlite_to_etcd() -> Result<()> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = super::sqlite::Sqlite::open(&dir.path().join("herd.db"))?;
    let source = Store(super::Backend::Sqlite(sqlite.clone()), Default::default());
    // One of everything, with counters the typed operations count (placements, audit numbers).
    with_cluster(&source).await?;
    let i = InstanceRef::new("t", "c", Role::Datanode, 0);
    let i2 = i.clone();
    write(&source, move |tx| {
        tx.upsert_host(&host("h1"), 10)?;
        tx.upsert_host(&host("h2"), 20)?;
        tx.set_host_schedule("h2", true, Some(30))?;
        tx.put_subnet("h1", "10.0.0.0/24".parse().expect("net"))?;
        tx.put_log_endpoint("h1", &LogEndpoint { url: "https://h1:7481".into(), secret: "s".into() })?;
        tx.set_conditions("h1", &["DiskPressure".to_string()])?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h1")))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 0, Some("h2")))?;
        tx.put_instance(&inst("t", "c", Role::Datanode, 1, None))?;
        tx.replace_observed("h1", &[observed(&i2)])?;
        tx.put_phase(&i2, &Phase::Drained)?;
        tx.put_purge("h1", &InstanceRef::new("t", "c", Role::Datanode, 7))?;
        tx.insert_token(&token("k1", Scope::Admin, None, None), "hash-1")?;
        tx.insert_token(&token("k2", Scope::Tenant, Some("t"), None), "hash-2")?;
        tx.revoke_token("k2")?;
        tx.record_audit(5, &Change { actor: "a", action: "x", resource: "r", before: None, after: Some(1) }, Some("why"))?;
        tx.record_audit(6, &Change { actor: "a", action: "y", resource: "r", before: Some(1), after: None }, None)?;
        tx.put_idempotent("k1", "key/1", &idempotency::Stored { fingerprint: "f".into(), status: 201, body: "b".into() }, 7)?;
        tx.bump_revision()?;
        tx.bump_revision()
    })
    .await?;
    let server = EtcdServer::start();
    let target = server.store("/herd/v1");
    let super::Store(super::Backend::Etcd(etcd), _) = &target else { panic!("not etcd") };
    let etcd = etcd.clone();
    let copied = tokio::task::spawn_blocking(move || super::migrate::sqlite_to_etcd(&sqlite, &etcd)).await.map_err(Error::Worker)??;
    assert_eq!(copied.instances.iter().map(|i| i.placement).collect::<Vec<_>>(), [2, 0], "placements kept");
    assert!(copied.counts().iter().all(|(what, n)| *n > 0 || *what == "none"), "{:?}", copied.counts());
    // The copy serves like the original, and goes on counting from where it was.
    assert_eq!(read(&target, move |c| c.instances_on_host("h2")).await?.len(), 1);
    assert_eq!(read(&target, |c| c.token_by_hash("hash-1")).await?.map(|t| t.id), Some("k1".into()));
    write(&target, |tx| tx.record_audit(8, &Change { actor: "a", action: "z", resource: "r", before: None, after: None }, None)).await?;
    assert_eq!(read(&target, |c| c.audit(None, 10)).await?.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(write(&target, |tx| tx.bump_revision()).await?, 3);
    assert!(is_conflict(write(&target, |tx| tx.put_subnet("h2", "10.0.0.0/24".parse().expect("net"))).await), "the subnet index came along");
    // A prefix that holds objects is refused, and left as it was.
    let (sqlite, etcd) = (super::sqlite::Sqlite::open(&dir.path().join("herd.db"))?, {
        let super::Store(super::Backend::Etcd(e), _) = &target else { panic!("not etcd") };
        e.clone()
    });
    let again = tokio::task::spawn_blocking(move || super::migrate::sqlite_to_etcd(&sqlite, &etcd)).await.map_err(Error::Worker)?;
    assert!(is_conflict(again));
    assert_eq!(read(&target, |c| c.revision()).await?, 3);
    Ok(())
}

#[test]
fn a_missing_etcd_is_a_clear_error() {
    let url: url::Url = format!("http://127.0.0.1:{}", free_port()).parse().expect("url");
    let err = etcd::Etcd::connect(etcd::Options::new(vec![url])).err().map(|e| format!("{e}: {:?}", std::error::Error::source(&e)));
    let err = err.unwrap_or_default();
    assert!(err.contains("no etcd endpoint answered"), "{err}");
}
