//! Table tests of the scoring scheduler (and the first-fit baseline where they differ).

use super::*;

fn host(id: &str, cpu: u64, mem_mi: u64) -> HostView {
    HostView { id: id.into(), ready: true, free_cpu: cpu, free_memory: mem_mi << 20, ..HostView::default() }
}

fn racked(id: &str, rack: &str) -> HostView {
    HostView { rack: Some(rack.into()), ..host(id, 16_000, 65_536) }
}

fn disks(h: HostView, gib: &[u64]) -> HostView {
    HostView { free_disks: Some(gib.iter().map(|g| g << 30).collect()), ..h }
}

fn labelled(h: HostView, labels: &[(&str, &str)]) -> HostView {
    HostView { labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..h }
}

fn req(pool: &str, cpu: u64, mem_mi: u64) -> Request {
    Request { pool: pool.into(), cpu: Cpu(cpu), memory: Memory(mem_mi << 20), ..Request::default() }
}

/// A DataNode of cluster `t/c`: one per host, spread over racks.
fn dn(disk_gib: u64) -> Request {
    Request { max_per_host: Some(1), spread_racks: true, disk: Memory(disk_gib << 30), ..req("t/c/datanode", 1000, 1024) }
}

struct Case {
    name: &'static str,
    hosts: Vec<HostView>,
    requests: Vec<Request>,
    want: Vec<Option<&'static str>>,
}

/// A placement policy: [`place`] or [`first_fit::place`].
type Policy = fn(&mut [HostView], &[Request]) -> Vec<Result<String, String>>;

fn run(cases: Vec<Case>, place: Policy) {
    for mut case in cases {
        let got = place(&mut case.hosts, &case.requests);
        let got: Vec<Option<&str>> = got.iter().map(|r| r.as_deref().ok()).collect();
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn rules_hold_for_both_policies() {
    let cases = || {
        vec![
            Case {
                name: "never overcommits cpu",
                hosts: vec![host("a", 1000, 4096)],
                requests: vec![req("p", 600, 1), req("p", 600, 1), req("p", 400, 1)],
                want: vec![Some("a"), None, Some("a")],
            },
            Case {
                name: "never overcommits memory",
                hosts: vec![host("a", 9000, 1024), host("b", 9000, 512)],
                requests: vec![req("p", 1, 1024), req("p", 1, 1024)],
                want: vec![Some("a"), None],
            },
            Case {
                name: "skips hosts that are not ready",
                hosts: vec![HostView { ready: false, ..host("a", 9000, 9000) }, host("b", 9000, 9000)],
                requests: vec![req("p", 1, 1); 2],
                want: vec![Some("b"), Some("b")],
            },
            Case {
                name: "one host port per host",
                hosts: vec![host("a", 9000, 9000), host("b", 9000, 9000)],
                requests: vec![Request { ports: vec![(Protocol::Tcp, 9870)], ..req("p", 1, 1) }; 3],
                want: vec![Some("a"), Some("b"), None],
            },
            Case { name: "no hosts", hosts: vec![], requests: vec![req("p", 1, 1)], want: vec![None] },
            Case {
                name: "the same unplaceable request again is unplaceable, the rest still place",
                hosts: vec![host("a", 1000, 4096)],
                requests: vec![req("p", 5000, 1), req("p", 5000, 1), req("p", 100, 1)],
                want: vec![None, None, Some("a")],
            },
            Case {
                name: "2 hosts, 3 DataNodes: the third waits",
                hosts: vec![host("a", 16_000, 65_536), host("b", 16_000, 65_536)],
                requests: vec![dn(0); 3],
                want: vec![Some("a"), Some("b"), None],
            },
            Case {
                name: "maxPerHost 2 lets two share a host",
                hosts: vec![host("a", 16_000, 65_536)],
                requests: vec![Request { max_per_host: Some(2), ..dn(0) }; 3],
                want: vec![Some("a"), Some("a"), None],
            },
            Case {
                name: "DataNodes of two clusters may share a host",
                hosts: vec![host("a", 16_000, 65_536)],
                requests: vec![dn(0), Request { pool: "t/d/datanode".into(), ..dn(0) }],
                want: vec![Some("a"), Some("a")],
            },
            Case {
                name: "disk is split over the data disks, each disk's use tracked",
                // 300Gi is 150Gi on each of two disks: b's 100Gi disk is too small; a takes
                // one (200 -> 50 free per disk) and then has no room for another.
                hosts: vec![disks(host("a", 16_000, 65_536), &[200, 200]), disks(host("b", 16_000, 65_536), &[400, 100])],
                requests: vec![dn(300), Request { pool: "t/d/datanode".into(), ..dn(300) }, dn(60)],
                want: vec![Some("a"), None, Some("b")],
            },
            Case {
                name: "a host that did not measure its disks is not checked; one without data disks takes no disk",
                hosts: vec![host("a", 16_000, 65_536), disks(host("b", 16_000, 65_536), &[])],
                requests: vec![dn(5000), Request { pool: "t/d/datanode".into(), ..dn(1) }, req("t/c/nodemanager", 1, 1)],
                want: vec![Some("a"), Some("a"), Some("a")],
            },
            Case {
                name: "node selectors",
                hosts: vec![
                    labelled(host("a", 16_000, 65_536), &[("disk", "hdd")]),
                    labelled(host("b", 16_000, 65_536), &[("disk", "ssd"), ("zone", "1")]),
                    host("c", 16_000, 65_536),
                ],
                requests: vec![
                    Request { selector: [("disk".into(), "ssd".into())].into(), ..req("p", 1, 1) },
                    Request { selector: [("disk".into(), "ssd".into()), ("zone".into(), "2".into())].into(), ..req("p", 1, 1) },
                    Request { selector: [("disk".into(), "hdd".into())].into(), ..req("p", 1, 1) },
                ],
                want: vec![Some("b"), None, Some("a")],
            },
        ]
    };
    run(cases(), place);
    run(cases(), first_fit::place);
}

#[test]
fn datanodes_one_per_host_and_even_over_racks() {
    run(
        vec![
            Case {
                name: "4 hosts on 2 racks, 4 DataNodes: one per host, two per rack",
                hosts: vec![racked("a", "r1"), racked("b", "r1"), racked("c", "r2"), racked("d", "r2")],
                requests: vec![dn(0); 4],
                want: vec![Some("a"), Some("c"), Some("b"), Some("d")],
            },
            Case {
                name: "as even as capacity allows: r2 has one host",
                hosts: vec![racked("a", "r1"), racked("b", "r1"), racked("c", "r1"), racked("d", "r2")],
                requests: vec![dn(0); 4],
                want: vec![Some("a"), Some("d"), Some("b"), Some("c")],
            },
            Case {
                name: "a rack already holding the pool's DataNodes comes last",
                hosts: vec![
                    HostView { per_pool: vec![("t/c/datanode".to_string(), 1)], ..racked("a", "r1") },
                    racked("b", "r1"),
                    racked("c", "r2"),
                    racked("d", "r2"),
                ],
                requests: vec![dn(0); 3],
                want: vec![Some("c"), Some("b"), Some("d")],
            },
            Case {
                name: "maxPerHost 2: a second DataNode on a host only once every host holds one",
                hosts: vec![racked("a", "r1"), racked("b", "r2"), racked("c", "r2")],
                requests: vec![Request { max_per_host: Some(2), ..dn(0) }; 5],
                want: vec![Some("a"), Some("b"), Some("c"), Some("a"), Some("b")],
            },
            Case {
                name: "a full rack is skipped, not waited for",
                hosts: vec![racked("a", "r1"), HostView { free_cpu: 0, ..racked("b", "r2") }, racked("c", "r3")],
                requests: vec![dn(0); 2],
                want: vec![Some("a"), Some("c")],
            },
        ],
        place,
    );
}

#[test]
fn best_fit_packs_by_room_left() {
    run(
        vec![
            Case {
                name: "the fullest host that fits, leaving the empty one whole",
                hosts: vec![host("a", 16_000, 65_536), host("b", 16_000, 65_536)],
                requests: vec![req("t/c/nodemanager", 4000, 8192); 5],
                want: vec![Some("a"), Some("a"), Some("a"), Some("a"), Some("b")],
            },
            Case {
                name: "memory-heavy requests fill by memory",
                hosts: vec![host("a", 16_000, 65_536), host("b", 16_000, 20_480)],
                requests: vec![req("t/c/nodemanager", 500, 16_384), req("t/c/nodemanager", 500, 16_384), req("t/c/nodemanager", 500, 40_000)],
                want: vec![Some("b"), Some("a"), Some("a")],
            },
            Case {
                name: "NodeManagers spare disk-rich hosts, DataNodes take them first",
                // b has the same CPU and memory as a but far more disk: the NodeManager goes to
                // a; c has less CPU but the most disk: the DataNode goes there.
                hosts: vec![
                    disks(host("a", 16_000, 65_536), &[100]),
                    disks(host("b", 16_000, 65_536), &[4000, 4000]),
                    disks(host("c", 8000, 32_768), &[4000, 4000, 4000]),
                ],
                requests: vec![req("t/c/nodemanager", 2000, 8192), dn(500)],
                want: vec![Some("a"), Some("c")],
            },
            Case {
                name: "a smaller request still fits where a larger one did not",
                hosts: vec![host("a", 1000, 4096), host("b", 4000, 4096)],
                requests: vec![req("p", 3000, 1), req("p", 500, 1)],
                want: vec![Some("b"), Some("b")],
            },
        ],
        place,
    );
    // The baseline spreads a pool instead.
    run(
        vec![Case {
            name: "first-fit spreads",
            hosts: vec![host("a", 16_000, 65_536), host("b", 16_000, 65_536)],
            requests: vec![req("t/c/nodemanager", 4000, 8192); 3],
            want: vec![Some("a"), Some("b"), Some("a")],
        }],
        first_fit::place,
    );
}

fn reason(hosts: &mut [HostView], r: Request) -> String {
    place(hosts, &[r]).remove(0).err().unwrap_or_default()
}

#[test]
fn pending_reason_names_the_rule() {
    let r = reason(&mut [host("a", 1000, 1024)], req("p", 2000, 512));
    assert!(r.contains("2 CPU") && r.contains("most free: a with 1 CPU, 1.0Gi"), "{r}");
    assert!(reason(&mut [], req("p", 1, 1)).contains("start herd-agent"));

    let mut two = [host("a", 16_000, 65_536), host("b", 16_000, 65_536)];
    let got = place(&mut two, &[dn(0), dn(0), dn(0)]);
    let r = got[2].clone().err().unwrap_or_default();
    assert!(r.contains("DataNodes of one cluster never share a host") && r.contains("pools.datanode.maxPerHost: 1"), "{r}");
    assert!(r.contains("each of the 2 ready hosts"), "{r}");

    let r = reason(&mut [disks(host("a", 16_000, 65_536), &[100, 100])], dn(300));
    assert!(r.contains("pools.datanode.disk") && r.contains("300Gi") && r.contains("most: a with 200.0Gi usable"), "{r}");

    let r = reason(&mut [host("a", 16_000, 65_536)], Request { selector: [("disk".into(), "ssd".into())].into(), ..req("t/c/nodemanager", 1, 1) });
    assert!(r.contains("pools.nodemanager.nodeSelector") && r.contains("disk=ssd"), "{r}");

    let r = reason(&mut [HostView { ready: false, ..host("a", 1, 1) }], req("p", 1, 1));
    assert!(r.contains("none of the 1 hosts is ready"), "{r}");
}

/// A big pool's own order of empty hosts (built once its spread skipped many hosts) chooses
/// exactly as the plain scan: mixed fleets with racks, two big spread pools sharing hosts
/// with maxPerHost above one (so the spread also falls back to the least-held host), small
/// pools in between, some hosts too small or not ready.
#[test]
fn a_big_pools_empty_hosts_order_chooses_as_the_plain_scan() {
    for seed in 0..6u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut hosts = Vec::new();
        for k in 0..300 {
            let h = HostView { ready: next(20) != 0, ..racked(&format!("h{k:03}"), &format!("r{}", next(7))) };
            hosts.push(if next(10) == 0 { HostView { free_cpu: 300, ..h } } else { h });
        }
        let mut requests = Vec::new();
        for k in 0..700 {
            let pool = ["t/a/datanode", "t/b/datanode"][k % 2];
            requests.push(Request { max_per_host: Some(3), spread_racks: true, ..req(pool, 100 + 50 * next(4), 256) });
            if k % 50 == 0 {
                requests.push(req("t/c/nodemanager", 2000, 4096));
            }
        }
        let (mut plain, mut indexed) = (hosts.clone(), hosts);
        let want = place_with(&mut plain, &requests, usize::MAX);
        let got = place_with(&mut indexed, &requests, 0);
        assert_eq!(got, want, "seed {seed}");
        assert!(want.iter().filter(|r| r.is_ok()).count() > 600, "seed {seed}: the case places most requests");
    }
}
