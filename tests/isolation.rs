//! Multi-tenant isolation, with real packets: two hosts (network namespaces) on an underlay
//! (10.225.0.0/24, the orchestrator at .1) and containers from 10.226.0.0/16. From inside a
//! tenant's container every one of these fails, and each has a control that succeeds, so no
//! check passes because the probe itself is broken:
//! - connecting to its host's 22, 7480 and 7481 (on the host's address and the gateway's) and
//!   to the orchestrator;
//! - reaching another tenant's container directly, and through its published port on either
//!   host's address;
//! - reaching the underlay, link-local or metadata addresses outside `--allow-egress`;
//! - sending with a forged source: a raw socket is refused without `CAP_NET_RAW`, and with the
//!   capability (granted by an admin) the forged packet never arrives.
//!
//! After `nft flush ruleset` on a host, herd's rules (and isolation) are back within one
//! heartbeat and the host reports it as a condition.
//!
//! Probes are `hadoop-double probe` (tests/double), copied into the containers with `docker
//! cp` and run in namespaces with `ip netns exec`. Traffic goes only to addresses inside
//! namespaces this test made. Needs root, Docker and `nft`; fails, never skips, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::netbed::{HostPlan, Plan, Testbed, must, require_root_docker_nft, sh};
use herd_tests::{IDLE, Api, TenantContainers, bins, unique, wait_for};
use serde_json::json;

/// Egress the admin allows: one underlay address, to show the allow list opens exactly it.
const ALLOWED: &str = "10.225.0.3";

fn plan() -> Plan {
    const ARGS: &[&str] = &["--allow-egress", "10.225.0.3/32"];
    Plan {
        underlay: "10.225.0",
        cluster_cidr: "10.226.0.0/16",
        hosts: vec![HostPlan { agent_args: ARGS, ..HostPlan::ns("a") }, HostPlan { agent_args: ARGS, ..HostPlan::ns("b") }],
    }
}

/// The probe binary, as built for the testbed images (`images/testbed/build.sh`).
fn probe_bin() -> PathBuf {
    bins().join("hadoop-double")
}

/// A probe listener running on the host side; killed when dropped.
struct Listener {
    child: Child,
}

impl Listener {
    /// `probe listen PROTO ADDR` inside namespace `ns` (`None`: the test's own).
    fn start(dir: &std::path::Path, ns: Option<&str>, proto: &str, at: &str) -> Result<Self> {
        let out = dir.join(format!("listener-{}.log", unique("")));
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(probe_bin());
                c
            }
            None => Command::new(probe_bin()),
        };
        let child = cmd
            .args(["probe", "listen", proto, at])
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the probe listener")?;
        Ok(Listener { child })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `probe ARGS` run inside `ns` (`None`: the test's own namespace): (exit code, output).
fn probe_on_host(ns: Option<&str>, args: &[&str]) -> (i32, String) {
    let bin = probe_bin().display().to_string();
    let mut all: Vec<&str> = match ns {
        Some(ns) => vec!["netns", "exec", ns, &bin],
        None => vec![],
    };
    all.push("probe");
    all.extend_from_slice(args);
    let out = match ns {
        Some(_) => Command::new("ip").args(&all).output(),
        None => Command::new(&bin).args(&all).output(),
    }
    .unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `probe ARGS` run inside container `c`: (exit code, output).
fn probe_in(c: &str, args: &[&str]) -> (i32, String) {
    // NB: named `probe`, the multi-call binary takes its command from argv[0].
    let mut all = vec!["exec", c, "/tmp/probe"];
    all.extend_from_slice(args);
    let out = Command::new("docker").args(&all).output().unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Whether container `c` opens a TCP connection to `to` (within 1.5 s).
fn connects(c: &str, to: &str) -> bool {
    probe_in(c, &["connect", to, "1500"]).0 == 0
}

/// Whether the test's own namespace (or `ns`) opens a TCP connection to `to`.
fn host_connects(ns: Option<&str>, to: &str) -> bool {
    probe_on_host(ns, &["connect", to, "1500"]).0 == 0
}

/// A running instance: container name, host index and address.
#[derive(Debug, Clone)]
struct Placed {
    pool: String,
    container: String,
    host: usize,
    ip: Ipv4Addr,
}

async fn running(api: &Api, bed: &Testbed, tenant: &str, n: usize) -> Result<Vec<Placed>> {
    wait_for(&format!("{n} running, addressed instances of {tenant}/net"), Duration::from_secs(120), || async {
        let (status, body) = api.get(&format!("/v1/tenants/{tenant}/clusters/net")).await?;
        ensure!(status == 200, "{status}: {body}");
        let instances = body["instances"].as_array().cloned().unwrap_or_default();
        let placed: Vec<Placed> = instances
            .iter()
            .filter(|i| i["observed"]["state"] == "running")
            .filter_map(|i| {
                let name = i["instance"]["name"].as_str()?;
                Some(Placed {
                    pool: i["pool"].as_str()?.into(),
                    container: format!("herd.{tenant}.net.{name}"),
                    host: bed.host_index(i["host"].as_str()?)?,
                    ip: i["observed"]["ip"].as_str()?.parse().ok()?,
                })
            })
            .collect();
        Ok((instances.len() == n && placed.len() == n).then_some(placed))
    })
    .await
}

/// Copies the probe into container `c` and starts its TCP (7000) and UDP (7001) listeners.
fn arm(c: &str) {
    must("docker", &["cp", &probe_bin().display().to_string(), &format!("{c}:/tmp/probe")]);
    for (proto, port, log) in [("tcp", 7000, "tcp"), ("udp", 7001, "udp")] {
        let cmd = format!("/tmp/probe listen {proto} 0.0.0.0:{port} >/tmp/{log}.log 2>&1");
        must("docker", &["exec", "-d", c, "sh", "-c", &cmd]);
    }
}

/// What container `c`'s UDP listener received.
fn received(c: &str) -> String {
    sh("docker", &["exec", c, "cat", "/tmp/udp.log"]).1
}

/// Waits until container `c` can be reached by a control connection from `from` (addresses of
/// new containers reach the other host's firewall within a heartbeat or two).
async fn reachable(from: &str, to: &str) -> Result<()> {
    let start = Instant::now();
    while !connects(from, to) {
        if start.elapsed() > Duration::from_secs(20) {
            let (_, out) = probe_in(from, &["connect", to, "1500"]);
            let (_, ps) = sh("docker", &["exec", from, "ps"]);
            let (_, addr) = sh("docker", &["exec", from, "ip", "addr"]);
            let (_, state) = sh("docker", &["inspect", "-f", "{{json .State}}", from]);
            bail!("control: {from} cannot reach {to}: {out}\nprocesses in {from}:\n{ps}\n{addr}\n{state}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_reach_neither_the_host_nor_herd_nor_each_other() -> Result<()> {
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
    let api = bed.start_orchestrator_with_token(&[]).await?;
    bed.start_agents(&api).await?;
    let result = scenario(&mut bed, &api).await;
    if result.is_err() {
        eprintln!("{}", bed.logs());
    }
    result
}

async fn scenario(bed: &mut Testbed, api: &Api) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ul = bed.underlay_ns.clone();
    let ns: Vec<String> = bed.hosts.iter().map(|h| h.ns.clone().unwrap()).collect();
    let addr: Vec<Ipv4Addr> = bed.hosts.iter().map(|h| h.address).collect();
    // The underlay: the orchestrator's namespace also holds an allowed address and a
    // "metadata service" at 169.254.169.254, which host a routes to.
    must("ip", &["-n", &ul, "addr", "add", &format!("{ALLOWED}/24"), "dev", "ulbr"]);
    must("ip", &["-n", &ul, "addr", "add", "169.254.169.254/32", "dev", "ulbr"]);
    must("ip", &["-n", &ns[0], "route", "add", "169.254.169.254/32", "via", "10.225.0.1"]);
    must("ip", &["-n", &ns[1], "route", "add", "169.254.169.254/32", "via", "10.225.0.1"]);
    let _listeners = [
        Listener::start(dir.path(), Some(&ul), "tcp", "10.225.0.1:9000")?,
        Listener::start(dir.path(), Some(&ul), "tcp", &format!("{ALLOWED}:9000"))?,
        Listener::start(dir.path(), Some(&ul), "tcp", "169.254.169.254:80")?,
        // Each host's sshd and a co-located orchestrator (its agent's log endpoint, 7481, runs already).
        Listener::start(dir.path(), Some(&ns[0]), "tcp", "0.0.0.0:22")?,
        Listener::start(dir.path(), Some(&ns[0]), "tcp", "0.0.0.0:7480")?,
        Listener::start(dir.path(), Some(&ns[1]), "tcp", "0.0.0.0:22")?,
        Listener::start(dir.path(), Some(&ns[1]), "tcp", "0.0.0.0:7480")?,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Blue: two DataNodes publishing 7000 on host port 30700 (so one per host). Red: a
    // DataNode with herd's default capabilities and a NodeManager an admin granted NET_RAW.
    let (blue, red) = (unique("blue"), unique("red"));
    let _cleanup = (TenantContainers(blue.clone()), TenantContainers(red.clone()));
    for t in [&blue, &red] {
        let (status, body) = api.post("/v1/tenants", json!({ "name": t })).await?;
        ensure!(status == 201, "{status}: {body}");
    }
    let img = "herd/datanode:testbed";
    let blue_spec = format!(
        "tenant: {blue}\nname: net\nimages:\n  datanode: {img}\npools:\n  datanode:\n    replicas: 2\n    cpu: 50m\n    memory: 256Mi\n    command: {IDLE}\n    publish:\n      - port: 7000\n        host_port: 30700\n"
    );
    let red_spec = format!(
        "tenant: {red}\nname: net\nimages:\n  datanode: {img}\n  nodemanager: {img}\npools:\n  datanode: {{replicas: 1, cpu: 50m, memory: 256Mi, command: {IDLE}}}\n  nodemanager:\n    replicas: 1\n    cpu: 50m\n    memory: 512Mi\n    command: {IDLE}\n    capabilities:\n      add: [NET_RAW]\n"
    );
    // A tenant cannot grant itself a capability; its admin applies the spec.
    let red_api = api.with_token(&{
        let (status, t) = api.post("/v1/tokens", json!({"scope": "tenant", "tenant": red})).await?;
        ensure!(status == 201, "{status}: {t}");
        t["secret"].as_str().unwrap_or_default().to_string()
    });
    let (status, body) = red_api.put_yaml(&format!("/v1/tenants/{red}/clusters/net"), &red_spec).await?;
    ensure!(status == 403, "a tenant granted itself NET_RAW: {status}: {body}");
    for (t, spec) in [(&blue, &blue_spec), (&red, &red_spec)] {
        let (status, body) = api.put_yaml(&format!("/v1/tenants/{t}/clusters/net"), spec).await?;
        ensure!(status == 201, "{status}: {body}");
    }
    let blues = running(api, bed, &blue, 2).await?;
    let reds = running(api, bed, &red, 2).await?;
    eprintln!("blue: {blues:?}\nred: {reds:?}");
    ensure!(blues[0].host != blues[1].host, "blue publishes one host port: one DataNode per host");
    for p in blues.iter().chain(&reds) {
        arm(&p.container);
    }
    let r = reds.iter().find(|p| p.pool == "datanode").context("red's DataNode")?;
    let n = reds.iter().find(|p| p.pool == "nodemanager").context("red's NodeManager")?;
    let near = |p: &Placed| blues.iter().find(|b| b.host == p.host).unwrap().clone();
    let far = |p: &Placed| blues.iter().find(|b| b.host != p.host).unwrap().clone();
    let gateway = |p: &Placed| {
        let [a, b, c, _] = p.ip.octets();
        Ipv4Addr::new(a, b, c, 1)
    };

    // Controls: blue reaches blue across hosts and red reaches red; published ports answer
    // from the underlay; every host-side listener answers from its own namespace.
    reachable(&blues[0].container, &format!("{}:7000", blues[1].ip)).await?;
    reachable(&blues[1].container, &format!("{}:7000", blues[0].ip)).await?;
    reachable(&r.container, &format!("{}:7000", n.ip)).await?;
    for a in &addr {
        ensure!(host_connects(None, &format!("{a}:30700")), "control: published port on {a} from the underlay");
    }
    for (h, a) in ns.iter().zip(&addr) {
        for port in [22, 7480, 7481] {
            ensure!(host_connects(Some(h), &format!("{a}:{port}")), "control: {h} itself reaches {a}:{port}");
        }
        for to in ["10.225.0.1:7480", "10.225.0.1:9000", "169.254.169.254:80"] {
            ensure!(host_connects(Some(h), to), "control: {h} itself reaches {to}");
        }
    }
    ensure!(connects(&r.container, &format!("{ALLOWED}:9000")), "allowed egress ({ALLOWED}) is reachable");

    isolated(bed, r, &blues, &addr, gateway(r))?;
    isolated(bed, &near(r), &reds, &addr, gateway(&near(r)))?;

    // Forged sources. Without NET_RAW (herd's default) a raw socket is refused outright.
    let (code, out) = probe_in(&r.container, &["spoof", &n.ip.to_string(), &format!("{}:7001", far(r).ip), "forged-noraw"]);
    ensure!(code == 3, "a container without NET_RAW opened a raw socket: {code} {out}");
    // With NET_RAW: a packet with its own source arrives (control) ...
    let (code, out) = probe_in(&n.container, &["spoof", &n.ip.to_string(), &format!("{}:7001", r.ip), "control-own"]);
    ensure!(code == 0, "raw send failed: {out}");
    wait_for("the raw control datagram", Duration::from_secs(10), || async { Ok(received(&r.container).contains("control-own").then_some(())) })
        .await?;
    // ... one forging a blue address to a blue container (which blue's own rules would let in)
    // never does: neither routed to the other host nor bridged to a neighbour.
    let forged = [(near(n).ip, far(n).ip, "forged-routed"), (far(n).ip, near(n).ip, "forged-bridged")];
    for (src, dst, payload) in forged {
        let (code, out) = probe_in(&n.container, &["spoof", &src.to_string(), &format!("{dst}:7001"), payload]);
        ensure!(code == 0, "raw send failed: {out}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for b in &blues {
        let got = received(&b.container);
        ensure!(!got.contains("forged"), "a forged packet reached blue {}: {got}", b.container);
    }

    // Until now nothing touched herd's tables: no host reports a repair (the kernel's listing
    // is stable, so the per-pass check never re-applies by mistake).
    let (_, hosts) = api.get("/v1/hosts").await?;
    for x in hosts["items"].as_array().into_iter().flatten() {
        ensure!(x["conditions"].as_array().is_none_or(|c| c.is_empty()), "a repair reported with nothing changed: {x}");
    }

    // `nft flush ruleset` on the red DataNode's host: herd's tables are back within one
    // heartbeat (500 ms here; allow a few for a busy machine), the host says so, and
    // isolation holds again.
    let h = r.host;
    let flushed = Instant::now();
    must("ip", &["netns", "exec", &ns[h], "nft", "flush", "ruleset"]);
    wait_for("herd's tables back after a flush", Duration::from_secs(10), || async {
        let (ok, _) = bed.hosts[h].cmd("nft", &["list", "table", "bridge", "herd"]);
        Ok(ok.then_some(()))
    })
    .await?;
    let took = flushed.elapsed();
    ensure!(took < Duration::from_millis(2500), "herd's tables came back only after {took:?}");
    eprintln!("firewall repaired {took:?} after the flush");
    isolated(bed, r, &blues, &addr, gateway(r))?;
    let id = bed.hosts[h].id.clone();
    let condition = wait_for("the repair reported as a host condition", Duration::from_secs(10), || async {
        let (_, hosts) = api.get("/v1/hosts").await?;
        let host = hosts["items"].as_array().and_then(|all| all.iter().find(|x| x["info"]["id"] == id.as_str()).cloned());
        Ok(host.and_then(|x| x["conditions"].as_array().cloned()).and_then(|c| c.first().and_then(|c| c.as_str().map(String::from))))
    })
    .await?;
    ensure!(condition.contains("re-applied") && condition.contains("nft"), "unclear condition: {condition}");
    Ok(())
}

/// From container `from`: herd's and the host's ports, the orchestrator, the underlay and
/// metadata outside the allowed egress, and `others` (another tenant's containers, directly
/// and through their published port on every host) are all out of reach.
fn isolated(bed: &Testbed, from: &Placed, others: &[Placed], addr: &[Ipv4Addr], gateway: Ipv4Addr) -> Result<()> {
    let c = &from.container;
    let own = addr[from.host];
    let mut targets: Vec<String> = Vec::new();
    for port in [22, 7480, 7481] {
        targets.push(format!("{own}:{port}"));
        targets.push(format!("{gateway}:{port}"));
    }
    targets.extend(["10.225.0.1:7480".into(), "10.225.0.1:9000".into(), "169.254.169.254:80".into()]);
    for o in others {
        targets.push(format!("{}:7000", o.ip));
    }
    for a in addr {
        targets.push(format!("{a}:30700"));
    }
    for (n, h) in bed.hosts.iter().enumerate() {
        if n != from.host {
            targets.push(format!("{}:22", h.address));
        }
    }
    let reached: Vec<&String> = targets.iter().filter(|t| connects(c, t)).collect();
    ensure!(reached.is_empty(), "{c} on host {} reached {reached:?}", bed.hosts[from.host].id);
    Ok(())
}
