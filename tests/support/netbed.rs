//! A simulated fleet for multi-host tests: hosts are network namespaces this module makes
//! (and, optionally, the machine's own namespace beside dockerd), joined by veths to an
//! underlay bridge in a namespace of its own, where the orchestrator listens. Containers run
//! on the one Docker engine; each host's agent plumbs its containers into its namespace.
//! Everything made is removed on drop, even on failure. Traffic goes only to addresses inside
//! the namespaces made here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is the failure report

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::{Api, Proc, bins, docker, unique, wait_for};

/// The addresses and hosts of one testbed. Testbeds that may run at once use disjoint ones.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The underlay's first three octets (`10.213.0`): the orchestrator at .1, the test's
    /// own end at .2 (when no host is the root namespace), hosts from .10.
    pub underlay: &'static str,
    /// The cluster CIDR given to the orchestrator.
    pub cluster_cidr: &'static str,
    pub hosts: Vec<HostPlan>,
}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// A short name (one letter or two): namespaces and links are named after it.
    pub name: &'static str,
    /// The machine's own namespace (beside dockerd) instead of a namespace of its own.
    pub root: bool,
    /// `--rack`.
    pub rack: Option<&'static str>,
    /// How many `--data-disk` folders it has.
    pub data_disks: usize,
    /// More `herd-agent` flags (e.g. `--allow-egress`).
    pub agent_args: &'static [&'static str],
}

impl HostPlan {
    pub fn ns(name: &'static str) -> Self {
        HostPlan { name, root: false, rack: None, data_disks: 0, agent_args: &[] }
    }
}

/// Runs a command (test plumbing and checks only); returns (success, stdout + stderr).
pub fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    match Command::new(cmd).args(args).stdin(Stdio::null()).output() {
        Ok(o) => (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
        Err(e) => (false, format!("cannot run {cmd}: {e}")),
    }
}

/// Runs a command that must succeed; returns its output.
pub fn must(cmd: &str, args: &[&str]) -> String {
    let (ok, out) = sh(cmd, args);
    assert!(ok, "{cmd} {}: {out}", args.join(" "));
    out
}

/// Fails unless the test runs as root with Docker and `nft`, and the plan's addresses are free.
pub fn require_root_docker_nft(plan: &Plan) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().nth(1));
    assert_eq!(euid, Some("0"), "the multi-host network test needs root (netns, netlink, nft); it never skips");
    docker();
    let (ok, out) = sh("nft", &["--version"]);
    assert!(ok, "the `nft` tool (Debian package nftables) is missing: {out}");
    // NB: herd's table is one per network namespace; a demo agent in this namespace would fight
    // the test's root-namespace agent over it.
    // Hosts in namespaces of their own have tables of their own: only a root-namespace host cares.
    let (_, tables) = sh("nft", &["list", "tables"]);
    assert!(
        !plan.hosts.iter().any(|h| h.root) || !tables.lines().any(|l| l.trim() == "table inet herd"),
        "the root namespace already has herd's firewall (is the demo running? run `deploy/demo.sh down`)"
    );
    let (_, routes) = sh("ip", &["-4", "-o", "addr"]);
    let cidr_prefix = plan.cluster_cidr.rsplitn(3, '.').last().unwrap_or(plan.cluster_cidr);
    assert!(
        !routes.contains(&format!(" {}.", plan.underlay)) && !routes.contains(&format!(" {cidr_prefix}.")),
        "{}.0/24 or {} is already in use here:\n{routes}",
        plan.underlay,
        plan.cluster_cidr
    );
}

/// One simulated host.
pub struct Host {
    pub id: String,
    /// Its network namespace; `None` for the machine's own.
    pub ns: Option<String>,
    pub address: Ipv4Addr,
    pub bridge: String,
    pub data_dir: PathBuf,
    pub plan: HostPlan,
}

impl Host {
    /// `ip` (or any command) run inside the host's namespace.
    pub fn cmd(&self, cmd: &str, args: &[&str]) -> (bool, String) {
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
    pub fn veths(&self) -> BTreeMap<String, u64> {
        let (ok, out) = self.cmd("ip", &["-j", "link", "show"]);
        assert!(ok, "{out}");
        let links: Vec<Value> = serde_json::from_str(&out).unwrap();
        links
            .iter()
            .filter_map(|l| Some((l["ifname"].as_str()?.to_string(), l["ifindex"].as_u64()?)))
            .filter(|(name, _)| name.starts_with("hv"))
            .collect()
    }

    /// herd's `inet` table, as nft prints it, without the elements of `egress_block`: those are
    /// the host's own networks, which on the machine's own namespace change with whatever else
    /// runs here (other testbeds' links, Docker networks), not with what herd was asked to do.
    pub fn ruleset(&self) -> String {
        let (ok, out) = self.cmd("nft", &["list", "table", "inet", "herd"]);
        assert!(ok, "{}: {out}", self.id);
        let mut kept = Vec::new();
        let mut in_block = false;
        for line in out.lines() {
            if line.trim() == "set egress_block {" {
                in_block = true;
                kept.push("\tset egress_block { (the host's networks) }");
            } else if in_block {
                in_block = line.trim() != "}";
            } else {
                kept.push(line);
            }
        }
        kept.join("\n")
    }

    /// The IPAM lease file's leases.
    pub fn leases(&self) -> Value {
        let text = std::fs::read_to_string(self.data_dir.join("net/ipam/ipam.json")).unwrap_or_else(|_| "{}".into());
        serde_json::from_str::<Value>(&text).unwrap()["leases"].clone()
    }
}

/// The simulated network; everything it made is removed when it is dropped, even on failure.
pub struct Testbed {
    pub tag: String,
    pub underlay_ns: String,
    pub hosts: Vec<Host>,
    pub procs: Vec<(String, Proc)>,
    pub plan: Plan,
    pub _dir: tempfile::TempDir,
    /// Each host's agent token (bound to its host id), by host index, issued once the
    /// orchestrator runs.
    pub agent_tokens: Vec<String>,
}

impl Testbed {
    pub fn new(plan: &Plan) -> Self {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("n{}{run}", std::process::id() % 100_000);
        let dir = tempfile::tempdir().unwrap();
        let underlay_ns = format!("{tag}ul");
        let mut bed = Testbed {
            tag: tag.clone(),
            underlay_ns: underlay_ns.clone(),
            hosts: vec![],
            procs: vec![],
            plan: plan.clone(),
            _dir: dir,
            agent_tokens: Vec::new(),
        };
        let underlay = plan.underlay;
        must("ip", &["netns", "add", &underlay_ns]);
        must("ip", &["-n", &underlay_ns, "link", "add", "ulbr", "type", "bridge"]);
        must("ip", &["-n", &underlay_ns, "addr", "add", &format!("{underlay}.1/24"), "dev", "ulbr"]);
        must("ip", &["-n", &underlay_ns, "link", "set", "ulbr", "up"]);
        must("ip", &["-n", &underlay_ns, "link", "set", "lo", "up"]);
        if !plan.hosts.iter().any(|h| h.root) {
            // The test's own end of the underlay, to reach the orchestrator.
            let (outer, inner) = (format!("{tag}t0"), format!("{tag}t1"));
            must("ip", &["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            must("ip", &["link", "set", &inner, "netns", &underlay_ns]);
            must("ip", &["-n", &underlay_ns, "link", "set", &inner, "master", "ulbr", "up"]);
            must("ip", &["addr", "add", &format!("{underlay}.2/24"), "dev", &outer]);
            must("ip", &["link", "set", &outer, "up"]);
        }
        for (n, hp) in plan.hosts.iter().enumerate() {
            let name = hp.name;
            let id = unique(&format!("{name}h"));
            let ns = (!hp.root).then(|| format!("{tag}{name}"));
            let (outer, inner) = (format!("{tag}{name}0"), format!("{tag}{name}1"));
            let address: Ipv4Addr = format!("{underlay}.{}", 10 + n).parse().unwrap();
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
                plan: hp.clone(),
            };
            host.cmd("ip", &["addr", "add", &format!("{address}/24"), "dev", &outer]);
            let (ok, out) = host.cmd("ip", &["link", "set", &outer, "up"]);
            assert!(ok, "{out}");
            bed.hosts.push(host);
        }
        bed
    }

    pub fn orchestrator_url(&self) -> String {
        format!("http://{}.1:7480", self.plan.underlay)
    }

    pub fn start_orchestrator(&mut self, extra: &[&str]) -> Result<()> {
        let dir = self._dir.path().join("orchestrator");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("orchestrator-{}.log", unique("")));
        let child = Command::new("ip")
            .args(["netns", "exec", &self.underlay_ns])
            .arg(bins().join("herd-orchestrator"))
            .args(["--data-dir", &dir.display().to_string(), "--listen", &format!("{}.1:7480", self.plan.underlay)])
            // NB: a test bed's own underlay namespace; TLS is tested in tests/tls.rs.
            .arg("--insecure-http")
            .args(["--heartbeat-interval", "500ms", "--cluster-cidr", self.plan.cluster_cidr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-orchestrator")?;
        self.procs.push(("orchestrator".into(), Proc { child, log }));
        Ok(())
    }

    pub fn start_agent(&mut self, n: usize) -> Result<()> {
        let h = &self.hosts[n];
        std::fs::create_dir_all(&h.data_dir)?;
        let mut extra: Vec<String> = Vec::new();
        if let Some(rack) = h.plan.rack {
            extra.extend(["--rack".into(), rack.into()]);
        }
        for d in 0..h.plan.data_disks {
            let disk = h.data_dir.join(format!("disk{d}"));
            std::fs::create_dir_all(&disk)?;
            extra.extend(["--data-disk".into(), disk.display().to_string()]);
        }
        extra.extend(h.plan.agent_args.iter().map(|a| a.to_string()));
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
            .args(&extra)
            .env("RUST_LOG", "info,herd_agent=debug")
            .env("HERD_TOKEN", self.agent_tokens.get(n).context("no agent token: start the orchestrator with start_orchestrator_with_token")?)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start herd-agent")?;
        self.procs.retain(|(name, _)| name != &h.id);
        self.procs.push((h.id.clone(), Proc { child, log }));
        Ok(())
    }

    /// Starts every host's agent and waits until the orchestrator lists them all ready, so
    /// that what is applied next is spread over all of them.
    pub async fn start_agents(&mut self, api: &Api) -> Result<()> {
        for n in 0..self.hosts.len() {
            self.start_agent(n)?;
        }
        let ids: Vec<String> = self.hosts.iter().map(|h| h.id.clone()).collect();
        wait_for("every host ready", Duration::from_secs(30), || async {
            let (_, hosts) = api.get("/v1/hosts").await?;
            let ready = hosts["items"]
                .as_array()
                .map_or(0, |h| h.iter().filter(|h| h["state"] == "ready" && ids.iter().any(|id| h["info"]["id"] == id.as_str())).count());
            Ok((ready == ids.len()).then_some(()))
        })
        .await
    }

    pub fn kill_agent(&mut self, n: usize) {
        let id = self.hosts[n].id.clone();
        if let Some((_, mut p)) = self.procs.iter().position(|(name, _)| *name == id).map(|i| self.procs.remove(i)) {
            p.kill();
        }
    }

    /// SIGKILLs the orchestrator, as a crash would; its data dir stays.
    pub fn kill_orchestrator(&mut self) {
        if let Some((_, mut p)) = self.procs.iter().position(|(name, _)| name == "orchestrator").map(|i| self.procs.remove(i)) {
            p.kill();
        }
    }

    /// Starts the orchestrator again on its data dir and waits until it answers.
    pub async fn restart_orchestrator(&mut self, extra: &[&str]) -> Result<()> {
        self.kill_orchestrator();
        self.start_orchestrator(extra)?;
        let anonymous = Api::new(&self.orchestrator_url());
        wait_for("the restarted orchestrator", Duration::from_secs(20), || async {
            Ok(anonymous.get("/v1/openapi.json").await.ok().filter(|(s, _)| *s == 200).map(|_| ()))
        })
        .await
    }

    /// The index of the host with this id.
    pub fn host_index(&self, id: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.id == id)
    }

    pub fn logs(&self) -> String {
        for h in &self.hosts {
            let (_, l) = h.cmd("ip", &["-br", "link"]);
            eprintln!("=== links on {}:\n{l}", h.id);
        }
        self.procs.iter().map(|(name, p)| format!("--- {name}\n{}", tail(&p.log_text().lines().filter(|l| !l.contains(" DEBUG ")).collect::<Vec<_>>().join("\n"), 40))).collect()
    }
}

pub fn tail(text: &str, n: usize) -> String {
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
                for other in &self.hosts {
                    let _ = sh("ip", &["link", "delete", &format!("{}{}0", self.tag, other.plan.name)]);
                }
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
        let _ = sh("ip", &["link", "delete", &format!("{}t0", self.tag)]);
        let _ = sh("ip", &["netns", "delete", &self.underlay_ns]);
    }
}

impl Testbed {
    /// Starts the orchestrator, waits for it, and issues each host's agent token (bound to
    /// its host id); returns an admin client.
    pub async fn start_orchestrator_with_token(&mut self, extra: &[&str]) -> Result<Api> {
        self.start_orchestrator(extra)?;
        let anonymous = Api::new(&self.orchestrator_url());
        wait_for("the orchestrator", Duration::from_secs(20), || async {
            Ok(anonymous.get("/v1/openapi.json").await.ok().filter(|(s, _)| *s == 200).map(|_| ()))
        })
        .await?;
        let admin = std::fs::read_to_string(self._dir.path().join("orchestrator/admin.token"))?;
        let api = anonymous.with_token(admin.trim());
        self.agent_tokens.clear();
        for h in &self.hosts {
            let (status, created) = api.post("/v1/tokens", serde_json::json!({"scope": "agent", "host": h.id})).await?;
            ensure!(status == 201, "agent token: {status} {created}");
            self.agent_tokens.push(created["secret"].as_str().unwrap_or_default().to_string());
        }
        Ok(api)
    }
}

