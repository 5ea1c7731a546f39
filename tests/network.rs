//! herd networking across hosts, for real: three hosts, two of them network namespaces this
//! test makes and one the machine's own namespace beside dockerd (where Docker's FORWARD policy
//! is DROP), joined by veths to an underlay bridge in a namespace of its own, where the
//! orchestrator listens. Containers run on the one Docker engine; each host's agent plumbs its
//! containers into its namespace. Real packets (busybox `nc`) prove same-host and cross-host
//! reachability within a tenant, isolation between tenants, names from /etc/hosts, survival of
//! an agent's SIGKILL without re-plumbing, and that removal leaks nothing.
//!
//! Traffic goes only to addresses inside namespaces this test made. Needs root, Docker and
//! `nft`; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
// The serializing guard is held across awaits on purpose: it keeps this binary's tests apart
// when run by `cargo test` (threads of one process); nextest runs them one at a time already.
#![allow(clippy::await_holding_lock)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::{Api, Proc, TenantContainers, bins, docker, unique, wait_for};
use serde_json::{Value, json};

/// The underlay: 10.213.0.0/24; the orchestrator at .1, hosts from .10.
const UNDERLAY: &str = "10.213.0";
/// Container addresses: a /24 per host out of this.
const CLUSTER_CIDR: &str = "10.214.0.0/16";
/// The port every test listener uses inside its container.
const PORT: u16 = 7000;

/// Runs a command (test plumbing and checks only); returns (success, stdout + stderr).
fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    match Command::new(cmd).args(args).stdin(Stdio::null()).output() {
        Ok(o) => (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
        Err(e) => (false, format!("cannot run {cmd}: {e}")),
    }
}

/// Runs a command that must succeed; returns its output.
fn must(cmd: &str, args: &[&str]) -> String {
    let (ok, out) = sh(cmd, args);
    assert!(ok, "{cmd} {}: {out}", args.join(" "));
    out
}

fn require_root_docker_nft() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    assert_eq!(euid, Some("0"), "the multi-host network test needs root (netns, netlink, nft); it never skips");
    docker();
    let (ok, out) = sh("nft", &["--version"]);
    assert!(ok, "the `nft` tool (Debian package nftables) is missing: {out}");
    // NB: herd's table is one per network namespace; a demo agent in this namespace would fight
    // the test's root-namespace agent over it.
    let (_, tables) = sh("nft", &["list", "tables"]);
    assert!(
        !tables.lines().any(|l| l.trim() == "table inet herd"),
        "the root namespace already has herd's firewall (is the demo running? run `deploy/demo.sh down`)"
    );
    let (_, routes) = sh("ip", &["-4", "-o", "addr"]);
    assert!(!routes.contains(&format!(" {UNDERLAY}.")) && !routes.contains(" 10.214."), "10.213.0.0/24 or {CLUSTER_CIDR} is already in use here:\n{routes}");
}

/// One simulated host.
struct Host {
    id: String,
    /// Its network namespace; `None` for the machine's own.
    ns: Option<String>,
    address: Ipv4Addr,
    bridge: String,
    data_dir: PathBuf,
}

impl Host {
    /// `ip` (or any command) run inside the host's namespace.
    fn cmd(&self, cmd: &str, args: &[&str]) -> (bool, String) {
        match &self.ns {
            Some(ns) => {
                let mut all = vec!["netns", "exec", ns.as_str(), cmd];
                all.extend_from_slice(args);
                sh("ip", &all)
            }
            None => sh(cmd, args),
        }
    }

    /// Host ends of container veths: name → ifindex.
    fn veths(&self) -> BTreeMap<String, u64> {
        let (ok, out) = self.cmd("ip", &["-j", "link", "show"]);
        assert!(ok, "{out}");
        let links: Vec<Value> = serde_json::from_str(&out).unwrap();
        links
            .iter()
            .filter_map(|l| Some((l["ifname"].as_str()?.to_string(), l["ifindex"].as_u64()?)))
            .filter(|(name, _)| name.starts_with("hv"))
            .collect()
    }

    /// herd's `inet` table, as nft prints it.
    fn ruleset(&self) -> String {
        let (ok, out) = self.cmd("nft", &["list", "table", "inet", "herd"]);
        assert!(ok, "{}: {out}", self.id);
        out
    }

    /// The IPAM lease file's leases.
    fn leases(&self) -> Value {
        let text = std::fs::read_to_string(self.data_dir.join("net/ipam/ipam.json")).unwrap_or_else(|_| "{}".into());
        serde_json::from_str::<Value>(&text).unwrap()["leases"].clone()
    }
}

/// The simulated network; everything it made is removed when it is dropped, even on failure.
struct Testbed {
    tag: String,
    underlay_ns: String,
    hosts: Vec<Host>,
    procs: Vec<(String, Proc)>,
    _dir: tempfile::TempDir,
    /// The agents' token, issued once the orchestrator runs.
    agent_token: String,
}

impl Testbed {
    fn new() -> Self {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("n{}{run}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let underlay_ns = format!("{tag}ul");
        let mut bed = Testbed { tag: tag.clone(), underlay_ns: underlay_ns.clone(), hosts: vec![], procs: vec![], _dir: dir, agent_token: String::new() };
        must("ip", &["netns", "add", &underlay_ns]);
        must("ip", &["-n", &underlay_ns, "link", "add", "ulbr", "type", "bridge"]);
        must("ip", &["-n", &underlay_ns, "addr", "add", &format!("{UNDERLAY}.1/24"), "dev", "ulbr"]);
        must("ip", &["-n", &underlay_ns, "link", "set", "ulbr", "up"]);
        must("ip", &["-n", &underlay_ns, "link", "set", "lo", "up"]);
        for (n, name) in ["a", "b", "r"].iter().enumerate() {
            let id = unique(&format!("{name}h"));
            let ns = (*name != "r").then(|| format!("{tag}{name}"));
            let (outer, inner) = (format!("{tag}{name}0"), format!("{tag}{name}1"));
            let address = Ipv4Addr::new(10, 213, 0, 10 + n as u8);
            must("ip", &["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            must("ip", &["link", "set", &inner, "netns", &underlay_ns]);
            must("ip", &["-n", &underlay_ns, "link", "set", &inner, "master", "ulbr", "up"]);
            if let Some(ns) = &ns {
                must("ip", &["netns", "add", ns]);
                must("ip", &["link", "set", &outer, "netns", ns]);
                must("ip", &["-n", ns, "link", "set", "lo", "up"]);
            }
            let host = Host {
                id,
                ns: ns.clone(),
                address,
                // NB: the root namespace host's bridge gets a name of its own, beside any demo's herd0.
                bridge: if ns.is_some() { "herd0".into() } else { format!("{tag}br") },
                data_dir: bed._dir.path().join(name),
            };
            host.cmd("ip", &["addr", "add", &format!("{address}/24"), "dev", &outer]);
            let (ok, out) = host.cmd("ip", &["link", "set", &outer, "up"]);
            assert!(ok, "{out}");
            bed.hosts.push(host);
        }
        bed
    }

    fn orchestrator_url(&self) -> String {
        format!("http://{UNDERLAY}.1:7480")
    }

    fn start_orchestrator(&mut self, extra: &[&str]) -> Result<()> {
        let dir = self._dir.path().join("orchestrator");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("orchestrator.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.underlay_ns])
            .arg(bins().join("herd-orchestrator"))
            .args(["--data-dir", &dir.display().to_string(), "--listen", &format!("{UNDERLAY}.1:7480")])
            .args(["--heartbeat-interval", "500ms", "--cluster-cidr", CLUSTER_CIDR])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-orchestrator")?;
        self.procs.push(("orchestrator".into(), Proc { child, log }));
        Ok(())
    }

    fn start_agent(&mut self, n: usize) -> Result<()> {
        let h = &self.hosts[n];
        std::fs::create_dir_all(&h.data_dir)?;
        let log = h.data_dir.join(format!("agent-{}.log", unique("")));
        let mut cmd = match &h.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bins().join("herd-agent"));
                c
            }
            None => Command::new(bins().join("herd-agent")),
        };
        let child = cmd
            .args(["--orchestrator", &self.orchestrator_url(), "--host-id", &h.id, "--bridge", &h.bridge])
            .args(["--data-dir", &h.data_dir.display().to_string(), "--cpus", "8", "--memory", "64Gi"])
            .env("RUST_LOG", "info,herd_agent=debug")
            .env("HERD_TOKEN", &self.agent_token)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-agent")?;
        self.procs.retain(|(name, _)| name != &h.id);
        self.procs.push((h.id.clone(), Proc { child, log }));
        Ok(())
    }

    fn kill_agent(&mut self, n: usize) {
        let id = self.hosts[n].id.clone();
        if let Some((_, mut p)) = self.procs.iter().position(|(name, _)| *name == id).map(|i| self.procs.remove(i)) {
            p.kill();
        }
    }

    fn logs(&self) -> String {
        for h in &self.hosts {
            let (_, l) = h.cmd("ip", &["-br", "link"]);
            eprintln!("=== links on {}:\n{l}", h.id);
        }
        self.procs.iter().map(|(name, p)| format!("--- {name}\n{}", tail(&p.log_text().lines().filter(|l| !l.contains(" DEBUG ")).collect::<Vec<_>>().join("\n"), 40))).collect()
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for (_, p) in &mut self.procs {
            p.kill();
        }
        for h in &self.hosts {
            if let Some(ns) = &h.ns {
                let _ = sh("ip", &["netns", "delete", ns]);
            } else {
                // The root namespace: herd's bridge, tables, routes and DOCKER-USER accepts.
                let _ = sh("ip", &["link", "delete", &h.bridge]);
                let _ = sh("ip", &["link", "delete", &format!("{}a0", self.tag)]);
                let _ = sh("ip", &["link", "delete", &format!("{}r0", self.tag)]);
                for family in ["inet", "bridge"] {
                    let _ = sh("nft", &["delete", "table", family, "herd"]);
                }
                let _ = sh("ip", &["route", "flush", "proto", "104"]);
                for dir in ["-i", "-o"] {
                    while sh("iptables", &["-C", "DOCKER-USER", dir, &h.bridge, "-j", "ACCEPT"]).0 {
                        let _ = sh("iptables", &["-D", "DOCKER-USER", dir, &h.bridge, "-j", "ACCEPT"]);
                    }
                }
            }
        }
        let _ = sh("ip", &["netns", "delete", &self.underlay_ns]);
    }
}

fn spec(tenant: &str, datanodes: u32, nodemanagers: u32) -> String {
    format!(
        "tenant: {tenant}\nname: net\nimages:\n  datanode: herd/datanode:testbed\n  nodemanager: herd/nodemanager:testbed\n\
         pools:\n  datanode: {{replicas: {datanodes}, cpu: 50m, memory: 256Mi}}\n  nodemanager: {{replicas: {nodemanagers}, cpu: 50m, memory: 512Mi}}\n"
    )
}

/// An instance as the status API reports it: (name, host, ip).
#[derive(Debug, Clone)]
struct Placed {
    name: String,
    host: String,
    ip: Ipv4Addr,
    container: String,
}

/// Waits until all `n` instances of `tenant/net` run and have addresses.
async fn running(api: &Api, tenant: &str, n: usize) -> Result<Vec<Placed>> {
    wait_for(&format!("{n} running, addressed instances of {tenant}/net"), Duration::from_secs(120), || async {
        let (status, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/net")).await?;
        ensure!(status == 200, "{status}: {body}");
        let instances = body["instances"].as_array().cloned().unwrap_or_default();
        let placed: Vec<Placed> = instances
            .iter()
            .filter(|i| i["observed"]["state"] == "running")
            .filter_map(|i| {
                Some(Placed {
                    name: i["instance"]["name"].as_str()?.into(),
                    host: i["host"].as_str()?.into(),
                    ip: i["observed"]["ip"].as_str()?.parse().ok()?,
                    container: format!("herd.{tenant}.net.{}", i["instance"]["name"].as_str()?),
                })
            })
            .collect();
        Ok((instances.len() == n && placed.len() == n).then_some(placed))
    })
    .await
}

/// Starts a TCP listener in `container` answering every connection with the container's hostname.
fn listen(container: &str) {
    must("docker", &["exec", "-d", container, "sh", "-c", &format!("nc -ll -p {PORT} -e hostname")]);
}

/// What `from` reads from `to:PORT` (empty when it cannot connect).
fn connect(from: &str, to: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", from, "sh", "-c", &format!("nc -w 2 {to} {PORT} </dev/null")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.trim().to_string()
}

/// Waits until `from` reaches `to` and reads `expect` (addresses of a new container reach the
/// other hosts' firewalls within a heartbeat or two).
async fn reaches(from: &str, to: &str, expect: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let got = connect(from, to);
        if got == expect {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("{from} cannot reach {to}:{PORT}: got {got:?}, want {expect:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn hostname_of(tenant: &str, instance: &str) -> String {
    format!("{instance}.net.{tenant}")
}

/// The tests here share addresses and the root namespace's herd table: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

impl Testbed {
    /// Starts the orchestrator, waits for it, and issues the agents' token; returns an admin client.
    async fn start_orchestrator_with_token(&mut self, extra: &[&str]) -> Result<Api> {
        self.start_orchestrator(extra)?;
        let anonymous = Api::new(&self.orchestrator_url());
        wait_for("the orchestrator", Duration::from_secs(20), || async {
            Ok(anonymous.get("/v1/openapi.json").await.ok().filter(|(s, _)| *s == 200).map(|_| ()))
        })
        .await?;
        let admin = std::fs::read_to_string(self._dir.path().join("orchestrator/admin.token"))?;
        let api = anonymous.with_token(admin.trim());
        let (status, created) = api.post("/v1/tokens", serde_json::json!({"scope": "agent"})).await?;
        ensure!(status == 201, "agent token: {status} {created}");
        self.agent_token = created["secret"].as_str().unwrap_or_default().to_string();
        Ok(api)
    }
}

/// Bad networks: a host whose own networks overlap the cluster CIDR reports it on every instance
/// placed there and plumbs nothing; a host that finds the cluster CIDR exhausted is refused at
/// registration with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_and_exhausted_networks_are_refused_clearly() -> Result<()> {
    let _serial = serial();
    require_root_docker_nft();
    let mut bed = Testbed::new();
    // One /16 host subnet: the whole cluster CIDR goes to the first host that registers.
    let api = bed.start_orchestrator_with_token(&["--host-subnet-prefix", "16"]).await?;
    // Host a also holds 10.214.99.1/24, inside the cluster CIDR.
    let (ok, out) = bed.hosts[0].cmd("ip", &["addr", "add", "10.214.99.1/24", "dev", &format!("{}a0", bed.tag)]);
    ensure!(ok, "{out}");
    bed.start_agent(0)?;
    let result = async {
        let a = bed.hosts[0].id.clone();
        wait_for("host a registered", Duration::from_secs(20), || async {
            let (_, hosts) = api.get("/v1/hosts").await?;
            Ok(hosts["items"].as_array().is_some_and(|h| h.iter().any(|h| h["info"]["id"] == a.as_str())).then_some(()))
        })
        .await?;
        bed.start_agent(1)?;
        let tenant = unique("ovl");
        let _cleanup = TenantContainers(tenant.clone());
        let (status, body) = api.post("/v1/tenants", json!({ "name": tenant })).await?;
        ensure!(status == 201, "{status}: {body}");
        let (status, body) = api.put_yaml(&format!("/v1/tenants/{tenant}/clusters/net"), &spec(&tenant, 1, 0)).await?;
        ensure!(status == 201, "{status}: {body}");
        let error = wait_for("the overlap reported on the instance", Duration::from_secs(30), || async {
            let (_, c) = api.get(&format!("/v1/tenants/{tenant}/clusters/net")).await?;
            Ok(c["instances"][0]["observed"]["error"].as_str().map(String::from))
        })
        .await?;
        ensure!(
            error.contains("cluster CIDR 10.214.0.0/16 overlaps 10.214.99.1/24") && error.contains("--cluster-cidr"),
            "unclear error: {error}"
        );
        let (_, ids) = sh("docker", &["ps", "-aq", "--filter", &format!("label=herd.tenant={tenant}")]);
        ensure!(ids.trim().is_empty(), "a container was created on a host whose network is broken: {ids}");
        let (_, links) = bed.hosts[0].cmd("ip", &["-br", "link"]);
        ensure!(!links.contains("herd0") && !links.contains("hv"), "something was plumbed:\n{links}");
        let (_, tables) = bed.hosts[0].cmd("nft", &["list", "tables"]);
        ensure!(!tables.contains("herd"), "a firewall was applied:\n{tables}");
        // Host b: the only host subnet is taken.
        let b = bed.hosts[1].id.clone();
        let log = wait_for("host b refused", Duration::from_secs(20), || async {
            let log = bed.procs.iter().find(|(n, _)| *n == b).map(|(_, p)| p.log_text()).unwrap_or_default();
            Ok(log.contains("no free /16 left").then_some(log))
        })
        .await?;
        ensure!(log.contains("widen --cluster-cidr"), "no advice in: {log}");
        let (_, hosts) = api.get("/v1/hosts").await?;
        let b_state = hosts["items"].as_array().and_then(|h| h.iter().find(|h| h["info"]["id"] == b.as_str()).cloned());
        ensure!(b_state.is_none(), "host b was registered without a subnet: {b_state:?}");
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", bed.logs());
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_reach_their_tenant_across_hosts_and_nothing_else() -> Result<()> {
    let _serial = serial();
    require_root_docker_nft();
    let mut bed = Testbed::new();
    let api = bed.start_orchestrator_with_token(&[]).await?;
    for n in 0..3 {
        bed.start_agent(n)?;
    }
    let ids: BTreeSet<String> = bed.hosts.iter().map(|h| h.id.clone()).collect();
    let result = scenario(&mut bed, &api, &ids).await;
    if result.is_err() {
        eprintln!("{}", bed.logs());
    }
    result
}

async fn scenario(bed: &mut Testbed, api: &Api, ids: &BTreeSet<String>) -> Result<()> {
    wait_for("three hosts with subnets, ready", Duration::from_secs(30), || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        let ready = hosts["items"].as_array().map_or(0, |h| h.iter().filter(|h| h["state"] == "ready" && ids.contains(h["info"]["id"].as_str().unwrap_or(""))).count());
        Ok((ready == 3).then_some(()))
    })
    .await?;
    // Each agent found its underlay address itself, from its route to the orchestrator.
    let (_, hosts) = api.get("/v1/hosts").await?;
    for h in &bed.hosts {
        let info = hosts["items"].as_array().and_then(|all| all.iter().find(|x| x["info"]["id"] == h.id.as_str())).context("host listed")?;
        ensure!(info["info"]["address"] == h.address.to_string(), "{}: address {} reported, {} expected", h.id, info["info"]["address"], h.address);
    }
    // What each host's firewall and links are before any container: removal must return to it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_rules: Vec<String> = bed.hosts.iter().map(Host::ruleset).collect();
    let start_veths: Vec<_> = bed.hosts.iter().map(Host::veths).collect();

    let (blue, red) = (unique("blue"), unique("red"));
    let _cleanup = (TenantContainers(blue.clone()), TenantContainers(red.clone()));
    for t in [&blue, &red] {
        let (status, body) = api.post("/v1/tenants", json!({ "name": t })).await?;
        ensure!(status == 201, "{status}: {body}");
    }
    // Blue: 3 DataNodes spread over the three hosts, 1 NodeManager sharing a host with one.
    let (status, body) = api.put_yaml(&format!("/v1/tenants/{blue}/clusters/net"), &spec(&blue, 3, 1)).await?;
    ensure!(status == 201, "{status}: {body}");
    let (status, body) = api.put_yaml(&format!("/v1/tenants/{red}/clusters/net"), &spec(&red, 1, 0)).await?;
    ensure!(status == 201, "{status}: {body}");
    let blues = running(api, &blue, 4).await?;
    let reds = running(api, &red, 1).await?;
    eprintln!("blue: {blues:?}\nred: {reds:?}");
    let hosts_used: BTreeSet<&str> = blues.iter().map(|p| p.host.as_str()).collect();
    ensure!(hosts_used.len() == 3, "blue's DataNodes spread over all three hosts: {blues:?}");
    let ips: BTreeSet<Ipv4Addr> = blues.iter().chain(&reds).map(|p| p.ip).collect();
    ensure!(ips.len() == 5, "five containers, five addresses: {ips:?}");
    for p in blues.iter().chain(&reds) {
        listen(&p.container);
    }

    let nm = blues.iter().find(|p| p.name == "nodemanager-0").context("blue's NodeManager")?;
    let same_host = blues.iter().find(|p| p.name != nm.name && p.host == nm.host).context("a DataNode beside the NodeManager")?;
    // Same host, by address and by name.
    reaches(&nm.container, &same_host.ip.to_string(), &hostname_of(&blue, &same_host.name)).await?;
    reaches(&same_host.container, &hostname_of(&blue, &nm.name), &hostname_of(&blue, &nm.name)).await?;
    // Across hosts: every blue container reaches every other, by name, including the host in
    // the machine's own namespace where Docker's FORWARD policy is DROP.
    for from in &blues {
        for to in blues.iter().filter(|to| to.host != from.host) {
            reaches(&from.container, &hostname_of(&blue, &to.name), &hostname_of(&blue, &to.name)).await?;
        }
    }
    // Isolation: red reaches no blue container and no blue container reaches red, whether on
    // red's host or another one. First prove red's listener answers at all: from itself.
    let r = &reds[0];
    reaches(&r.container, "127.0.0.1", &hostname_of(&red, &r.name)).await?;
    for b in &blues {
        let (there, back) = (connect(&r.container, &b.ip.to_string()), connect(&b.container, &r.ip.to_string()));
        ensure!(there.is_empty(), "red {} reached blue {} on {}: {there:?}", r.name, b.name, b.host);
        ensure!(back.is_empty(), "blue {} reached red {} on {}: {back:?}", b.name, r.name, r.host);
    }
    // Names are per cluster: red's /etc/hosts does not list blue.
    let (_, red_hosts) = sh("docker", &["exec", &r.container, "cat", "/etc/hosts"]);
    ensure!(!red_hosts.contains(&blue), "red's /etc/hosts names blue's instances:\n{red_hosts}");

    // SIGKILL one namespace host's agent and the root one; restart them: nothing re-plumbed,
    // the same rules, and traffic still flows.
    let veths_before: Vec<_> = bed.hosts.iter().map(Host::veths).collect();
    let rules_before: Vec<String> = bed.hosts.iter().map(Host::ruleset).collect();
    for n in [0, 2] {
        bed.kill_agent(n);
        bed.start_agent(n)?;
    }
    wait_for("the restarted agents to heartbeat", Duration::from_secs(30), || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        let fresh = hosts["items"].as_array().map_or(0, |h| {
            h.iter().filter(|h| ids.contains(h["info"]["id"].as_str().unwrap_or("")) && h["last_heartbeat_ms_ago"].as_u64().unwrap_or(u64::MAX) < 400).count()
        });
        Ok((fresh == 3).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (n, h) in bed.hosts.iter().enumerate() {
        ensure!(h.veths() == veths_before[n], "{}: veths changed across the agent restart (re-plumbed)", h.id);
        ensure!(h.ruleset() == rules_before[n], "{}: firewall changed across the agent restart", h.id);
    }
    let far = blues.iter().find(|p| p.host != nm.host).context("a blue container on another host")?;
    reaches(&nm.container, &hostname_of(&blue, &far.name), &hostname_of(&blue, &far.name)).await?;

    // Docker restarts a container (new network namespace): its agent sees the start event and
    // plumbs it again, with the same address.
    eprintln!("restarting {} on {}", far.container, far.host);
    must("docker", &["restart", "-t", "1", &far.container]);
    wait_for("the restarted container plumbed again", Duration::from_secs(30), || async {
        let (_, out) = sh("docker", &["exec", &far.container, "ip", "-4", "-o", "addr", "show", "eth0"]);
        Ok(out.contains(&format!("{}/", far.ip)).then_some(()))
    })
    .await?;
    listen(&far.container);
    reaches(&nm.container, &hostname_of(&blue, &far.name), &hostname_of(&blue, &far.name)).await?;

    // Many containers at once: blue grows to 45 DataNodes (15 per host, started four at a
    // time per host and plumbed eight at a time); every address is distinct.
    let (status, body) = api.patch(&format!("/v1/tenants/{blue}/clusters/net/pools/datanode"), json!({"replicas": 45})).await?;
    ensure!(status == 200, "{status}: {body}");
    let many = running(api, &blue, 46).await?;
    let distinct: BTreeSet<Ipv4Addr> = many.iter().map(|p| p.ip).collect();
    ensure!(distinct.len() == 46, "46 containers got {} distinct addresses", distinct.len());

    // Removal: nothing leaks. Links, rule sets and leases are back to where they started.
    for t in [&blue, &red] {
        let (status, body) = api.delete(&format!("/v1/tenants/{t}/clusters/net")).await?;
        ensure!(status == 204, "{status}: {body}");
    }
    wait_for("every host back to its start", Duration::from_secs(120), || async {
        let (_, out) = sh("docker", &["ps", "-aq", "--filter", &format!("label=herd.tenant={blue}")]);
        let (_, out2) = sh("docker", &["ps", "-aq", "--filter", &format!("label=herd.tenant={red}")]);
        let clean = bed.hosts.iter().enumerate().all(|(n, h)| {
            h.veths() == start_veths[n] && h.ruleset() == start_rules[n] && h.leases().as_object().is_none_or(|l| l.is_empty())
        });
        Ok((out.trim().is_empty() && out2.trim().is_empty() && clean).then_some(()))
    })
    .await?;
    Ok(())
}
