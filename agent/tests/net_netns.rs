//! Link plumbing and the firewall, for real, each test in fresh network namespaces of its own:
//! one plays the host (bridge, firewall), others play containers and the outside world. Nothing
//! touches the machine's own namespace, and every namespace is deleted even when a test fails.
//!
//! These tests need root and fail (never skip) without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use herd_agent::error_chain;
use herd_agent::net::firewall::{self, Member, Port, Protocol, Published, Ruleset};
use herd_agent::net::link::{self, Plumbing};
use herd_agent::net::netns::Netns;
use ipnet::Ipv4Net;
use serde_json::Value;

/// Fails the test unless it runs as root.
fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        euid, "0",
        "network namespace tests need root (netlink, setns, nft); they never skip"
    );
}

/// Runs a command (test setup and checks only), asserting success; returns stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}


/// Deletes a named namespace when dropped.
struct DeleteNs(String);

impl Drop for DeleteNs {
    fn drop(&mut self) {
        match Command::new("ip").args(["netns", "del", &self.0]).output() {
            Ok(out) if out.status.success() => {}
            other => eprintln!("cleanup: ip netns del {} failed: {other:?}", self.0),
        }
    }
}

/// A fresh named network namespace, deleted on drop.
struct TestNs {
    ns: Netns,
    name: String,
    _cleanup: DeleteNs,
}

impl TestNs {
    fn new(tag: &str) -> Self {
        require_root();
        let name = format!("herdtest-{:08x}-{tag}", rand::random::<u32>());
        run("ip", &["netns", "add", &name]);
        let cleanup = DeleteNs(name.clone());
        let ns = Netns::open(format!("/run/netns/{name}")).unwrap();
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Self {
            ns,
            name,
            _cleanup: cleanup,
        }
    }

    /// Runs async work on a thread inside this namespace.
    async fn within<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.ns
            .run(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(f())
            })
            .await
            .unwrap()
    }

    /// `ip -n NS -j ARGS`, parsed.
    fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-n", &self.name, "-j"];
        all.extend_from_slice(args);
        serde_json::from_str(&run("ip", &all)).unwrap()
    }

    /// Link names in this namespace, listed over rtnetlink.
    async fn links(&self) -> Vec<String> {
        self.within(|| async { link::link_names().await.unwrap() })
            .await
    }

    fn sysctl(&self, key: &str, value: &str) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.name,
                "sysctl",
                "-q",
                "-w",
                &format!("{key}={value}"),
            ],
        );
    }

    /// Opens another handle on this namespace, for work started from another namespace.
    fn handle(&self) -> Netns {
        Netns::open(self.ns.path()).unwrap()
    }
}

/// A namespace playing the host: a bridge with the gateway of a random test subnet.
struct Host {
    ns: TestNs,
    bridge: String,
    subnet: Ipv4Net,
}

impl Host {
    async fn new() -> Self {
        let ns = TestNs::new("host");
        let subnet = Ipv4Net::new(Ipv4Addr::new(10, 250, rand::random::<u8>(), 0), 24).unwrap();
        let host = Self {
            ns,
            bridge: "hbtest0".into(),
            subnet,
        };
        let (bridge, gw) = (host.bridge.clone(), host.gateway_cidr());
        host.ns
            .within(move || async move { link::ensure_bridge(&bridge, gw).await.unwrap() })
            .await;
        host
    }

    fn gateway(&self) -> Ipv4Addr {
        self.addr(1)
    }

    fn gateway_cidr(&self) -> Ipv4Net {
        Ipv4Net::new(self.gateway(), 24).unwrap()
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let o = self.subnet.network().octets();
        Ipv4Addr::new(o[0], o[1], o[2], host)
    }

    fn plumbing(&self, instance: &str, host: u8) -> Plumbing {
        Plumbing {
            bridge: self.bridge.clone(),
            host_veth: link::host_veth_name(instance),
            address: Ipv4Net::new(self.addr(host), 24).unwrap(),
            gateway: self.gateway(),
            mtu: Some(1400),
        }
    }

    /// Plumbs `container` from inside the host namespace.
    async fn plumb(&self, container: &TestNs, p: &Plumbing) -> link::Result<()> {
        let (target, p) = (container.handle(), p.clone());
        self.ns
            .within(move || async move { link::plumb(&target, &p).await })
            .await
    }

    async fn unplumb(&self, veth: &str) -> link::Result<()> {
        let veth = veth.to_string();
        self.ns
            .within(move || async move { link::unplumb(&veth).await })
            .await
    }
}

/// Connects from inside `client` to `to`, with a listener on `listen_port` inside `server`.
/// Returns the peer address the server saw, or the client's connect error.
async fn probe(
    client: &TestNs,
    to: SocketAddrV4,
    server: &TestNs,
    listen_port: u16,
) -> io::Result<SocketAddr> {
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, listen_port));
    let listener = server
        .ns
        .run(move || {
            let l = std::net::TcpListener::bind(any).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let to = SocketAddr::V4(to);
    client
        .ns
        .run(move || {
            std::net::TcpStream::connect_timeout(&to, Duration::from_millis(1500)).map(drop)
        })
        .await
        .unwrap()?;
    let accepted = tokio::time::timeout(Duration::from_secs(3), listener.accept()).await;
    let (_, peer) = accepted.expect("connected but never accepted").unwrap();
    Ok(peer)
}

/// Asserts that a probe did not get through because packets were dropped (not refused).
fn assert_dropped(result: io::Result<SocketAddr>, what: &str) {
    match result {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("{what}: expected the connection to be dropped, got {other:?}"),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

fn ipv4_addrs(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[tokio::test]
async fn bridge_is_created_idempotently_readdressed_and_removed() {
    let host = Host::new().await;
    let (bridge, gw) = (host.bridge.clone(), host.gateway_cidr());
    host.ns
        .within(move || async move { link::ensure_bridge(&bridge, gw).await.unwrap() })
        .await;

    let br = &host.ns.ip_json(&["addr", "show", "dev", &host.bridge])[0];
    assert_eq!(ipv4_addrs(br), [host.gateway_cidr().to_string()]);
    assert!(has_flag(br, "UP"), "{br}");
    assert_eq!(
        host.ns
            .ip_json(&["-d", "link", "show", "dev", &host.bridge])[0]["linkinfo"]["info_kind"],
        "bridge"
    );

    // A new subnet lease replaces the old gateway address.
    let (bridge, other) = (host.bridge.clone(), "10.251.0.1/24".parse().unwrap());
    host.ns
        .within(move || async move { link::ensure_bridge(&bridge, other).await.unwrap() })
        .await;
    let br = &host.ns.ip_json(&["addr", "show", "dev", &host.bridge])[0];
    assert_eq!(ipv4_addrs(br), ["10.251.0.1/24"]);

    // A link of another kind under that name is left alone. (NB: no `dummy` links here: some
    // kernels, like this CI's, are built without them.)
    run(
        "ip",
        &[
            "-n",
            &host.ns.name,
            "link",
            "add",
            "hvother0",
            "type",
            "veth",
            "peer",
            "name",
            "hvother1",
        ],
    );
    let err = host
        .ns
        .within(|| async {
            link::ensure_bridge("hvother0", "10.252.0.1/24".parse().unwrap()).await
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, link::Error::WrongKind { found, .. } if found == "veth"),
        "{err}"
    );
    let err = host.unplumb(&host.bridge).await.unwrap_err();
    assert!(
        matches!(err, link::Error::WrongKind { .. }),
        "unplumb deletes veths only: {err}"
    );
    let links = host.ns.links().await;
    assert!(
        links.contains(&"hvother0".to_string()) && links.contains(&host.bridge),
        "{links:?}"
    );

    for _ in 0..2 {
        let bridge = host.bridge.clone();
        host.ns
            .within(move || async move { link::remove_bridge(&bridge).await.unwrap() })
            .await;
    }
    assert!(!host.ns.links().await.contains(&host.bridge));
}

#[tokio::test]
async fn plumb_configures_the_container_and_unplumb_removes_it() {
    let host = Host::new().await;
    let c = TestNs::new("c");
    let p = host.plumbing("acme/prod/datanode-0", 2);
    host.plumb(&c, &p).await.unwrap();

    // Inside: eth0 with the address, up, MTU; lo up; default route via the gateway.
    let eth0 = &c.ip_json(&["addr", "show", "dev", "eth0"])[0];
    assert_eq!(ipv4_addrs(eth0), [p.address.to_string()]);
    assert!(has_flag(eth0, "UP"), "{eth0}");
    assert_eq!(eth0["mtu"], 1400);
    assert!(has_flag(
        &c.ip_json(&["link", "show", "dev", "lo"])[0],
        "UP"
    ));
    let routes = c.ip_json(&["route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["gateway"], host.gateway().to_string());
    assert_eq!(routes[0]["dev"], "eth0");
    assert_eq!(
        c.links().await,
        ["lo", "eth0"],
        "the peer never shows up under another name"
    );

    // Outside: the host end is up on the bridge; no eth0 in the host namespace.
    let veth = &host.ns.ip_json(&["link", "show", "dev", &p.host_veth])[0];
    assert_eq!(veth["master"], host.bridge);
    assert!(has_flag(veth, "UP"), "{veth}");
    assert!(!host.ns.links().await.contains(&"eth0".to_string()));

    // The gateway reaches the container.
    let to = SocketAddrV4::new(host.addr(2), 9870);
    let peer = probe(&host.ns, to, &c, 9870).await.unwrap();
    assert_eq!(peer.ip(), host.gateway());

    // Plumbing again replaces the pair and ends in the same state.
    host.plumb(&c, &p).await.unwrap();
    let eth0 = &c.ip_json(&["addr", "show", "dev", "eth0"])[0];
    assert_eq!(ipv4_addrs(eth0), [p.address.to_string()]);
    let peer = probe(&host.ns, SocketAddrV4::new(host.addr(2), 9871), &c, 9871)
        .await
        .unwrap();
    assert_eq!(peer.ip(), host.gateway());

    for _ in 0..2 {
        host.unplumb(&p.host_veth).await.unwrap();
    }
    assert!(!host.ns.links().await.contains(&p.host_veth));
    assert_eq!(
        c.links().await,
        ["lo"],
        "deleting the host end deletes the peer"
    );
}

#[tokio::test]
async fn two_containers_on_the_bridge_reach_each_other() {
    let host = Host::new().await;
    let (c1, c2) = (TestNs::new("c1"), TestNs::new("c2"));
    host.plumb(&c1, &host.plumbing("acme/prod/datanode-0", 2))
        .await
        .unwrap();
    host.plumb(&c2, &host.plumbing("acme/prod/datanode-1", 3))
        .await
        .unwrap();
    let peer = probe(&c1, SocketAddrV4::new(host.addr(3), 50010), &c2, 50010)
        .await
        .unwrap();
    assert_eq!(peer.ip(), host.addr(2));
    let peer = probe(&c2, SocketAddrV4::new(host.addr(2), 50010), &c1, 50010)
        .await
        .unwrap();
    assert_eq!(peer.ip(), host.addr(3));
}

#[tokio::test]
async fn a_failure_inside_the_container_leaves_nothing_behind() {
    let host = Host::new().await;
    let c = TestNs::new("c");
    // Something else already routes this namespace: plumbing must refuse and roll back.
    run(
        "ip",
        &[
            "-n", &c.name, "link", "add", "other0", "type", "veth", "peer", "name", "other1",
        ],
    );
    run("ip", &["-n", &c.name, "link", "set", "other0", "up"]);
    run(
        "ip",
        &["-n", &c.name, "route", "add", "default", "dev", "other0"],
    );

    let p = host.plumbing("acme/prod/datanode-0", 2);
    let err = host.plumb(&c, &p).await.unwrap_err();
    let text = error_chain(&err);
    assert!(matches!(err, link::Error::Inside { .. }), "{text}");
    assert!(
        text.contains("default route") && text.contains("File exists"),
        "{text}"
    );
    assert!(
        !host.ns.links().await.contains(&p.host_veth),
        "host end removed"
    );
    assert_eq!(
        sorted(c.links().await),
        ["lo", "other0", "other1"],
        "peer removed"
    );
}

#[tokio::test]
async fn an_existing_eth0_in_the_container_is_refused_before_anything_is_created() {
    let host = Host::new().await;
    let c = TestNs::new("c");
    run(
        "ip",
        &[
            "-n", &c.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    );
    let p = host.plumbing("acme/prod/datanode-0", 2);
    let err = host.plumb(&c, &p).await.unwrap_err();
    assert!(
        error_chain(&err).contains("creating veth pair"),
        "{}",
        error_chain(&err)
    );
    assert!(!host.ns.links().await.contains(&p.host_veth));
    assert_eq!(sorted(c.links().await), ["eth0", "eth0p", "lo"]);
}

#[tokio::test]
async fn plumbing_onto_a_missing_bridge_is_an_error() {
    let host = Host::new().await;
    let c = TestNs::new("c");
    let mut p = host.plumbing("acme/prod/datanode-0", 2);
    p.bridge = "hbnone0".into();
    let err = host.plumb(&c, &p).await.unwrap_err();
    assert!(
        matches!(&err, link::Error::NotFound { name } if name == "hbnone0"),
        "{err}"
    );
}

fn ruleset(host: &Host, host_address: Ipv4Addr, members: &[(u8, &str)]) -> Ruleset {
    Ruleset {
        bridge: host.bridge.clone(),
        host_subnet: host.subnet,
        cluster_cidr: "10.250.0.0/16".parse().unwrap(),
        host_address,
        members: members
            .iter()
            .map(|(h, tenant)| Member {
                ip: host.addr(*h),
                tenant: tenant.to_string(),
            })
            .collect(),
        published: vec![Published {
            protocol: Protocol::Tcp,
            host_port: 8080,
            ip: host.addr(2),
            port: 9870,
        }],
        // The containers the firewall tests plumb, by the last octet of their address.
        ports: members
            .iter()
            .filter_map(|(h, _)| {
                let owner = match h {
                    2 => "acme/prod/namenode-0",
                    3 => "acme/prod/datanode-0",
                    4 => "globex/dev/datanode-0",
                    _ => return None,
                };
                Some(Port {
                    ifname: link::host_veth_name(owner),
                    ip: host.addr(*h),
                })
            })
            .collect(),
        egress_allow: vec![],
        egress_block: vec!["169.254.0.0/16".parse().unwrap()],
    }
}

/// herd's table as `nft -j` JSON objects of one kind ("set", "chain", "rule", ...).
fn objects<'a>(json: &'a Value, kind: &str) -> Vec<&'a Value> {
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

#[tokio::test]
async fn firewall_applies_reads_back_and_is_removed() {
    let host = Host::new().await;
    let rules = ruleset(
        &host,
        Ipv4Addr::new(10, 245, 0, 1),
        &[(2, "acme"), (3, "acme"), (4, "globex")],
    );
    let json = {
        let rules = rules.clone();
        host.ns
            .within(move || async move {
                firewall::dry_run(&rules).await.unwrap();
                assert_eq!(
                    firewall::list_json().await.unwrap(),
                    None,
                    "a dry run applies nothing"
                );
                firewall::apply(&rules).await.unwrap();
                firewall::apply(&rules).await.unwrap(); // idempotent
                firewall::list_json().await.unwrap().unwrap()
            })
            .await
    };
    let sets = objects(&json, "set");
    let elems: Vec<(&str, &Value)> = sets
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("tenant_"))
        .map(|s| (s["name"].as_str().unwrap(), &s["elem"]))
        .collect();
    let want = [
        (
            "tenant_0",
            serde_json::json!([host.addr(2).to_string(), host.addr(3).to_string()]),
        ),
        ("tenant_1", serde_json::json!([host.addr(4).to_string()])),
    ];
    assert_eq!(elems, want.iter().map(|(n, e)| (*n, e)).collect::<Vec<_>>());
    let chains: Vec<&str> = objects(&json, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        chains,
        [
            "tenant_0",
            "tenant_1",
            "input",
            "forward",
            "prerouting",
            "output",
            "postrouting"
        ]
    );
    assert_eq!(
        objects(&json, "map")[0]["elem"].as_array().unwrap().len(),
        3
    );
    let rules_json = serde_json::to_string(&objects(&json, "rule")).unwrap();
    for needle in ["masquerade", "\"dnat\"", "8080", "9870", "vmap"] {
        assert!(
            rules_json.contains(needle),
            "{needle} missing from {rules_json}"
        );
    }
    let tables = run(
        "ip",
        &["netns", "exec", &host.ns.name, "nft", "list", "tables"],
    );
    assert_eq!(tables, "table inet herd\ntable bridge herd\n");

    // A changed rule set replaces the old one whole.
    let smaller = ruleset(&host, Ipv4Addr::new(10, 245, 0, 1), &[(2, "acme")]);
    let json = host
        .ns
        .within(move || async move {
            firewall::apply(&smaller).await.unwrap();
            firewall::list_json().await.unwrap().unwrap()
        })
        .await;
    let names: Vec<&str> = objects(&json, "set")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tenant_0", "egress_allow", "egress_block"]);

    host.ns
        .within(|| async {
            firewall::remove().await.unwrap();
            firewall::remove().await.unwrap(); // missing tables are fine
            assert_eq!(firewall::list_json().await.unwrap(), None);
        })
        .await;
    let tables = run(
        "ip",
        &["netns", "exec", &host.ns.name, "nft", "list", "tables"],
    );
    assert_eq!(tables, "");
}

#[tokio::test]
async fn firewall_isolates_tenants_masquerades_egress_and_publishes_ports() {
    let host = Host::new().await;
    let (c1, c2, c3) = (TestNs::new("a1"), TestNs::new("a2"), TestNs::new("g1"));
    host.plumb(&c1, &host.plumbing("acme/prod/namenode-0", 2))
        .await
        .unwrap();
    host.plumb(&c2, &host.plumbing("acme/prod/datanode-0", 3))
        .await
        .unwrap();
    host.plumb(&c3, &host.plumbing("globex/dev/datanode-0", 4))
        .await
        .unwrap();

    // The outside world: a namespace on a point-to-point underlay link, with no route to the
    // cluster, so only masqueraded traffic can be answered.
    let ext = TestNs::new("ext");
    let (host_ip, ext_ip) = (Ipv4Addr::new(10, 245, 0, 1), Ipv4Addr::new(10, 245, 0, 2));
    run(
        "ip",
        &[
            "-n",
            &host.ns.name,
            "link",
            "add",
            "hu0",
            "type",
            "veth",
            "peer",
            "name",
            "eu0",
            "netns",
            &ext.name,
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &host.ns.name,
            "addr",
            "add",
            "10.245.0.1/30",
            "dev",
            "hu0",
        ],
    );
    run("ip", &["-n", &host.ns.name, "link", "set", "hu0", "up"]);
    run(
        "ip",
        &[
            "-n",
            &ext.name,
            "addr",
            "add",
            "10.245.0.2/30",
            "dev",
            "eu0",
        ],
    );
    run("ip", &["-n", &ext.name, "link", "set", "eu0", "up"]);
    host.ns.sysctl("net.ipv4.ip_forward", "1");

    // Before herd's rules: tenants are not isolated, and egress is not masqueraded, so the
    // outside cannot answer.
    let peer = probe(&c1, SocketAddrV4::new(host.addr(4), 5999), &c3, 5999).await;
    assert_eq!(
        peer.unwrap().ip(),
        host.addr(2),
        "no isolation without herd's rules"
    );
    assert_dropped(
        probe(&c1, SocketAddrV4::new(ext_ip, 7000), &ext, 7000).await,
        "egress without NAT",
    );

    let rules = ruleset(&host, host_ip, &[(2, "acme"), (3, "acme"), (4, "globex")]);
    host.ns
        .within(move || async move { firewall::apply(&rules).await.unwrap() })
        .await;

    // Bridged traffic is checked by the bridge table alone when br_netfilter is off, and by
    // both tables when it is on (as Docker leaves it).
    for br_netfilter in ["1", "0"] {
        host.ns
            .sysctl("net.bridge.bridge-nf-call-iptables", br_netfilter);
        let what = format!("bridge-nf-call-iptables={br_netfilter}");
        let peer = probe(&c1, SocketAddrV4::new(host.addr(3), 6000), &c2, 6000).await;
        assert_eq!(peer.unwrap().ip(), host.addr(2), "same tenant, {what}");
        let peer = probe(&c2, SocketAddrV4::new(host.addr(2), 6001), &c1, 6001).await;
        assert_eq!(peer.unwrap().ip(), host.addr(3), "same tenant, {what}");
        assert_dropped(
            probe(&c1, SocketAddrV4::new(host.addr(4), 6002), &c3, 6002).await,
            &what,
        );
        assert_dropped(
            probe(&c3, SocketAddrV4::new(host.addr(2), 6003), &c1, 6003).await,
            &what,
        );
    }

    // Egress is masqueraded to the host's underlay address.
    let peer = probe(&c1, SocketAddrV4::new(ext_ip, 7001), &ext, 7001)
        .await
        .unwrap();
    assert_eq!(peer.ip(), host_ip, "egress leaves as the host");
    // A published port on the host address leads to the container, which sees the real client.
    let peer = probe(&ext, SocketAddrV4::new(host_ip, 8080), &c1, 9870)
        .await
        .unwrap();
    assert_eq!(peer.ip(), ext_ip);
    // Unpublished container ports are not reachable from outside, even with a route to them.
    run(
        "ip",
        &[
            "-n",
            &ext.name,
            "route",
            "add",
            "10.250.0.0/16",
            "via",
            "10.245.0.1",
        ],
    );
    assert_dropped(
        probe(&ext, SocketAddrV4::new(host.addr(3), 7002), &c2, 7002).await,
        "inbound",
    );
    // Unknown cluster addresses reach nothing: a container the rule set does not list yet.
    let c4 = TestNs::new("new");
    host.plumb(&c4, &host.plumbing("acme/prod/datanode-9", 5))
        .await
        .unwrap();
    assert_dropped(
        probe(&c4, SocketAddrV4::new(host.addr(2), 6004), &c1, 6004).await,
        "unlisted source",
    );
}
