//! End to end with real Docker: two `--network none` containers plumbed onto a test bridge in the
//! host namespace, pinging each other, then everything removed again.
//!
//! Needs root and a Docker engine with the `herd/datanode:testbed` image; fails (never skips)
//! without them. The only traffic is between the two containers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::Ipv4Addr;
use std::process::Command;

use herd_agent::net::docker_user::{self, Outcome};
use herd_agent::net::ipam::Ipam;
use herd_agent::net::link::{self, Plumbing};
use herd_agent::net::netns::Netns;
use ipnet::Ipv4Net;

const IMAGE: &str = "herd/datanode:testbed";

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        euid, "0",
        "this test plumbs the host's network and needs root; it never skips"
    );
}

/// Runs a command, returning (success, stdout + stderr).
fn try_run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let (ok, text) = try_run(cmd, args);
    assert!(ok, "{cmd} {args:?}: {text}");
    text
}

/// A /24 in 10.244.0.0/16 that no route of the host overlaps.
fn free_subnet() -> Ipv4Net {
    let routes: serde_json::Value =
        serde_json::from_str(&run("ip", &["-j", "-4", "route", "show", "table", "all"])).unwrap();
    let taken: Vec<Ipv4Net> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["dst"].as_str())
        .filter_map(|dst| {
            dst.parse::<Ipv4Net>()
                .ok()
                .or_else(|| dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
        })
        .collect();
    for _ in 0..100 {
        let candidate = Ipv4Net::new(Ipv4Addr::new(10, 244, rand::random::<u8>(), 0), 24).unwrap();
        let clash = taken
            .iter()
            .any(|t| t.contains(&candidate.network()) || candidate.contains(&t.network()));
        if !clash {
            return candidate;
        }
    }
    panic!("no free /24 in 10.244.0.0/16: {taken:?}");
}

/// Removes whatever the test created, even when it fails half-way. The happy path removes
/// everything through the library first; this then finds nothing left.
struct Cleanup {
    containers: Vec<String>,
    veths: Vec<String>,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = try_run("docker", &["rm", "-f", c]);
        }
        for link in self.veths.iter().chain([&self.bridge]) {
            if try_run("ip", &["link", "show", "dev", link]).0 {
                let (ok, text) = try_run("ip", &["link", "del", "dev", link]);
                eprintln!("cleanup: deleted leftover link {link}: ok={ok} {text}");
            }
        }
        for dir in ["-i", "-o"] {
            let rule = [
                "-w",
                "-D",
                docker_user::CHAIN,
                dir,
                &self.bridge,
                "-j",
                "ACCEPT",
            ];
            while try_run("iptables", &rule).0 {
                eprintln!(
                    "cleanup: removed leftover DOCKER-USER rule {dir} {}",
                    self.bridge
                );
            }
        }
    }
}

fn start_container(name: &str) -> u32 {
    run(
        "docker",
        &[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "herd.test=net_docker",
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            IMAGE,
            "-c",
            "sleep 600",
        ],
    );
    let pid = run("docker", &["inspect", "-f", "{{.State.Pid}}", name]);
    let pid: u32 = pid.trim().parse().unwrap();
    assert!(pid > 0, "{name} is not running");
    pid
}

fn ping(from: &str, to: Ipv4Addr) -> (bool, String) {
    try_run(
        "docker",
        &["exec", from, "ping", "-c1", "-W2", &to.to_string()],
    )
}

/// Whether Docker's FORWARD chain would drop bridged traffic that DOCKER-USER does not accept.
fn docker_forward_drops_bridged_traffic() -> bool {
    let nf =
        std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").unwrap_or_default();
    let policy = run("iptables", &["-w", "-S", "FORWARD"]);
    nf.trim() == "1" && policy.lines().any(|l| l == "-P FORWARD DROP")
}

#[tokio::test]
async fn two_docker_containers_plumbed_by_herd_ping_each_other() {
    require_root();
    run("docker", &["image", "inspect", "-f", "{{.Id}}", IMAGE]);
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let subnet = free_subnet();
    let bridge = format!("hbt{tag}");
    let owners = [
        format!("nettest-{tag}/e2e/datanode-0"),
        format!("nettest-{tag}/e2e/datanode-1"),
    ];
    let names = [format!("herdnet-{tag}-0"), format!("herdnet-{tag}-1")];
    let veths: Vec<String> = owners.iter().map(|o| link::host_veth_name(o)).collect();
    let _cleanup = Cleanup {
        containers: names.to_vec(),
        veths: veths.clone(),
        bridge: bridge.clone(),
    };
    eprintln!("e2e: subnet {subnet}, bridge {bridge}, veths {veths:?}");

    let state = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(state.path(), subnet).unwrap();
    let ips = [
        ipam.allocate(&owners[0]).unwrap(),
        ipam.allocate(&owners[1]).unwrap(),
    ];
    link::ensure_bridge(&bridge, ipam.gateway_cidr())
        .await
        .unwrap();
    link::ensure_bridge(&bridge, ipam.gateway_cidr())
        .await
        .unwrap();

    for i in 0..2 {
        let pid = start_container(&names[i]);
        let netns = Netns::of_pid(pid).unwrap();
        let plumbing = Plumbing {
            bridge: bridge.clone(),
            host_veth: veths[i].clone(),
            address: ipam.cidr(ips[i]),
            gateway: ipam.gateway(),
            mtu: None,
        };
        link::plumb(&netns, &plumbing).await.unwrap();
        let inside = run(
            "docker",
            &["exec", &names[i], "ip", "-4", "addr", "show", "dev", "eth0"],
        );
        assert!(inside.contains(&ipam.cidr(ips[i]).to_string()), "{inside}");
        let routes = run("docker", &["exec", &names[i], "ip", "route"]);
        assert!(
            routes.contains(&format!("default via {}", ipam.gateway())),
            "{routes}"
        );
    }

    // Docker's FORWARD policy is DROP and br_netfilter sends bridged frames through it: without
    // DOCKER-USER accepts, two containers on herd's bridge cannot talk.
    if docker_forward_drops_bridged_traffic() && !docker_user::has_accept(&bridge).await.unwrap() {
        let (ok, text) = ping(&names[0], ips[1]);
        assert!(
            !ok,
            "expected Docker's FORWARD DROP to stop bridged traffic, but ping got through: {text}"
        );
        eprintln!("e2e: measured: without DOCKER-USER accepts the ping fails:\n{text}");
    } else {
        eprintln!(
            "e2e: Docker's FORWARD chain does not see bridged traffic here; no DOCKER-USER check"
        );
    }
    assert_ne!(
        docker_user::ensure_accept(&bridge).await.unwrap(),
        Outcome::Present
    );
    assert_eq!(
        docker_user::ensure_accept(&bridge).await.unwrap(),
        Outcome::Present
    );

    let (ok, text) = ping(&names[0], ips[1]);
    assert!(ok, "ping {} -> {}: {text}", names[0], ips[1]);
    eprintln!("e2e: {text}");
    let (ok, text) = ping(&names[1], ips[0]);
    assert!(ok, "ping {} -> {}: {text}", names[1], ips[0]);

    // Teardown through the library, each step twice: not found is success.
    for _ in 0..2 {
        for veth in &veths {
            link::unplumb(veth).await.unwrap();
        }
        docker_user::remove_accept(&bridge).await.unwrap();
    }
    assert!(!docker_user::has_accept(&bridge).await.unwrap());
    let inside = run("docker", &["exec", &names[0], "ip", "link"]);
    assert!(
        !inside.contains("eth0"),
        "unplumbing removed the container's end: {inside}"
    );
    for _ in 0..2 {
        link::remove_bridge(&bridge).await.unwrap();
    }
    for owner in &owners {
        ipam.release(owner).unwrap();
    }
    assert!(ipam.leases().unwrap().is_empty());

    let links = link::link_names().await.unwrap();
    for veth in &veths {
        assert!(!links.contains(veth), "leaked veth {veth}: {links:?}");
    }
    assert!(
        !links.contains(&bridge),
        "leaked bridge {bridge}: {links:?}"
    );
    assert!(
        !links.iter().any(|l| l.starts_with(&format!("hbt{tag}"))),
        "nothing of this test is left: {links:?}"
    );
}
