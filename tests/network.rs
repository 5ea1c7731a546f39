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

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use herd_tests::netbed::{HostPlan, Host, Plan, Testbed, must, require_root_docker_nft, sh};
use herd_tests::{IDLE, Api, TenantContainers, unique, wait_for};
use serde_json::json;

/// Three hosts on the underlay 10.213.0.0/24 (orchestrator at .1, hosts from .10): two
/// namespaces and the machine's own; container addresses are /24s out of 10.214.0.0/16.
fn plan() -> Plan {
    Plan {
        underlay: "10.213.0",
        cluster_cidr: "10.214.0.0/16",
        hosts: vec![HostPlan::ns("a"), HostPlan::ns("b"), HostPlan { root: true, ..HostPlan::ns("r") }],
    }
}
/// The port every test listener uses inside its container.
const PORT: u16 = 7000;


fn spec(tenant: &str, datanodes: u32, nodemanagers: u32) -> String {
    format!(
        "tenant: {tenant}\nname: net\nimages:\n  datanode: herd/testbed-base:latest\n  nodemanager: herd/testbed-base:latest\n\
         pools:\n  datanode: {{replicas: {datanodes}, cpu: 50m, memory: 256Mi, maxPerHost: 50, command: {IDLE}}}\n  nodemanager: {{replicas: {nodemanagers}, cpu: 50m, memory: 512Mi, command: {IDLE}}}\n"
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

/// Bad networks: a host whose own networks overlap the cluster CIDR reports it on every instance
/// placed there and plumbs nothing; a host that finds the cluster CIDR exhausted is refused at
/// registration with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_and_exhausted_networks_are_refused_clearly() -> Result<()> {
    let _serial = serial();
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
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
    require_root_docker_nft(&plan());
    let mut bed = Testbed::new(&plan());
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
