use super::*;

const POLL_MS: u64 = 10_000;

fn member(role: Role, ordinal: u32, running: bool) -> Member {
    Member { instance: InstanceRef::new("acme", "prod", role, ordinal), role, running }
}

fn dn_report(ordinal: u32, live: bool, admin: Option<&str>) -> DataNodeReport {
    let host = format!("datanode-{ordinal}.prod.acme");
    DataNodeReport {
        name: format!("{host}:9866"),
        // NB: the NameNode may spell the host in capitals.
        hostname: if ordinal == 1 { host.to_uppercase() } else { host },
        admin_state: admin.map(str::to_string),
        live,
        last_contact_s: Some(if live { 1 } else { 700 }),
        num_blocks: Some(10 + u64::from(ordinal)),
        ..DataNodeReport::default()
    }
}

fn nm_report(ordinal: u32, state: &str, updated: u64) -> NodeManagerReport {
    NodeManagerReport {
        id: format!("nodemanager-{ordinal}.prod.acme:{}", 8041 + updated),
        hostname: format!("nodemanager-{ordinal}.prod.acme"),
        state: state.to_string(),
        last_health_update_ms: Some(updated),
        health_report: (state == "UNHEALTHY").then(|| "1/1 local-dirs are bad".to_string()),
        num_containers: Some(u64::from(ordinal) * 2),
        ..NodeManagerReport::default()
    }
}

fn healthy_nn(dns: u32) -> NameNodeHealth {
    NameNodeHealth {
        live_datanodes: u64::from(dns),
        capacity_total: 1000,
        capacity_used: 10,
        blocks_total: 50,
        datanodes: (0..dns).map(|i| dn_report(i, true, Some("In Service"))).collect(),
        version: Some("3.4.1".into()),
        ..NameNodeHealth::default()
    }
}

fn healthy_rm(nms: u32) -> ResourceManagerHealth {
    ResourceManagerHealth {
        state: "STARTED".into(),
        active_nodes: u64::from(nms),
        total_mb: 8192,
        total_vcores: 8,
        nodes: (0..nms).map(|i| nm_report(i, "RUNNING", 1)).collect(),
        ..ResourceManagerHealth::default()
    }
}

/// A cluster with a NameNode, a ResourceManager, `dns` DataNodes and `nms` NodeManagers, all
/// running, with fresh healthy reports.
fn cluster(dns: u32, nms: u32) -> Assess {
    let mut instances = vec![member(Role::Namenode, 0, true), member(Role::Resourcemanager, 0, true)];
    instances.extend((0..dns).map(|i| member(Role::Datanode, i, true)));
    instances.extend((0..nms).map(|i| member(Role::Nodemanager, i, true)));
    Assess {
        instances,
        replication: 3,
        namenode: MasterSource::Herd,
        resourcemanager: MasterSource::Herd,
        namenode_report: Some(Aged { report: healthy_nn(dns), age_ms: 1000 }),
        resourcemanager_report: Some(Aged { report: healthy_rm(nms), age_ms: 1000 }),
        poll_interval_ms: POLL_MS,
    }
}

fn kinds(a: &Assessment) -> Vec<&str> {
    a.conditions.iter().map(|c| c.kind.as_str()).collect()
}

fn message<'a>(a: &'a Assessment, kind: &str) -> &'a str {
    a.conditions.iter().find(|c| c.kind == kind).map_or("", |c| c.message.as_str())
}

fn of(a: &Assessment, role: Role, ordinal: u32) -> InstanceHadoop {
    a.instances.get(&InstanceRef::new("acme", "prod", role, ordinal)).cloned().unwrap_or_default()
}

#[test]
fn healthy_cluster_has_no_conditions() {
    let a = assess(&cluster(3, 2));
    assert_eq!(kinds(&a), Vec::<&str>::new(), "{:#?}", a.conditions);
    assert_eq!(a.instances.len(), 7);
    assert_eq!(of(&a, Role::Namenode, 0).master.as_deref(), Some(UP));
    assert_eq!(of(&a, Role::Resourcemanager, 0).master.as_deref(), Some(UP));
    let dn1 = of(&a, Role::Datanode, 1);
    assert_eq!(dn1.hdfs_state.as_deref(), Some("In Service"), "matched case-insensitively");
    assert_eq!((dn1.live, dn1.last_contact_s, dn1.blocks), (Some(true), Some(1), Some(11)));
    assert_eq!(of(&a, Role::Nodemanager, 1).yarn_state.as_deref(), Some("RUNNING"));
    assert_eq!(of(&a, Role::Nodemanager, 1).containers, Some(2), "YARN containers running on it");
    let hdfs = a.hdfs.unwrap_or_default();
    assert_eq!((hdfs.live_datanodes, hdfs.capacity_total, hdfs.blocks_total, hdfs.safe_mode), (3, 1000, 50, false));
    let yarn = a.yarn.unwrap_or_default();
    assert_eq!((yarn.active_nodemanagers, yarn.total_mb, yarn.total_vcores), (2, 8192, 8));
}

/// One table row: a change to the healthy 3 DataNode, 2 NodeManager cluster, the condition
/// kinds expected, and words the messages must hold.
struct Case {
    name: &'static str,
    change: fn(&mut Assess),
    kinds: &'static [&'static str],
    says: &'static [&'static str],
}

#[test]
fn conditions_table() {
    let cases = [
        Case {
            name: "namenode error",
            change: |a| {
                a.namenode_report = Some(Aged {
                    report: NameNodeHealth { error: Some("NameNode /jmx is not JSON".into()), ..NameNodeHealth::default() },
                    age_ms: 0,
                })
            },
            kinds: &[kind::NAMENODE_UNREADABLE],
            says: &["could not be read: NameNode /jmx is not JSON", "herd logs acme/prod/namenode-0"],
        },
        Case {
            name: "stale namenode report",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.age_ms = 3 * POLL_MS + 1;
                }
            },
            kinds: &[kind::NAMENODE_UNREADABLE],
            says: &["30s old", "polled every 10s"],
        },
        Case {
            name: "report at exactly three polls is fresh",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.age_ms = 3 * POLL_MS;
                }
            },
            kinds: &[],
            says: &[],
        },
        Case {
            name: "no namenode report yet",
            change: |a| a.namenode_report = None,
            kinds: &[kind::NAMENODE_UNREADABLE],
            says: &["no health report from the NameNode yet"],
        },
        Case {
            name: "namenode not running",
            change: |a| {
                a.namenode_report = None;
                a.instances[0].running = false;
            },
            kinds: &[kind::NAMENODE_UNREADABLE],
            says: &["namenode-0) is not running"],
        },
        Case {
            name: "external namenode without report is not a condition",
            change: |a| {
                a.instances.retain(|m| m.role != Role::Namenode);
                a.namenode = MasterSource::External;
                a.namenode_report = None;
            },
            kinds: &[],
            says: &[],
        },
        Case {
            name: "safe mode",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.safe_mode = true;
                    r.report.safe_mode_reason = Some("Safe mode is ON. The reported blocks 3 needs additional 2 blocks.".into());
                }
            },
            kinds: &[kind::SAFE_MODE],
            says: &["needs additional 2 blocks", "hdfs dfsadmin -safemode leave"],
        },
        Case {
            name: "dead datanode",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.datanodes[2] = dn_report(2, false, None);
                    r.report.live_datanodes = 2;
                    r.report.dead_datanodes = 1;
                }
            },
            kinds: &[kind::HDFS_DEGRADED],
            says: &["2 live and 1 dead DataNode(s) for 3", "running but not live in HDFS: datanode-2"],
        },
        Case {
            name: "datanode container stopped and unregistered",
            change: |a| {
                a.instances[4].running = false; // datanode-2
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.datanodes.truncate(2);
                    r.report.live_datanodes = 2;
                }
            },
            kinds: &[kind::HDFS_DEGRADED],
            says: &["not running: datanode-2"],
        },
        Case {
            name: "dead datanode that is no instance",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.datanodes.push(dn_report(7, false, Some("Decommissioned")));
                    r.report.dead_datanodes = 1;
                }
            },
            kinds: &[kind::HDFS_DEGRADED],
            says: &["dead and not an instance of this cluster: datanode-7.prod.acme:9866"],
        },
        Case {
            name: "under-replicated",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.under_replicated_blocks = 5;
                }
            },
            kinds: &[kind::UNDER_REPLICATED],
            says: &["5 of 50 block(s)", "re-replicates them by itself"],
        },
        Case {
            name: "missing blocks",
            change: |a| {
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report.missing_blocks = 2;
                }
            },
            kinds: &[kind::MISSING_BLOCKS],
            says: &["2 block(s) have no live replica", "hdfs fsck / -list-corruptfileblocks"],
        },
        Case {
            name: "replication above datanodes",
            change: |a| {
                a.instances.retain(|m| !(m.role == Role::Datanode && m.instance.name != "datanode-0"));
                if let Some(r) = a.namenode_report.as_mut() {
                    r.report = healthy_nn(1);
                    r.report.under_replicated_blocks = 50;
                }
            },
            kinds: &[kind::UNDER_REPLICATED, kind::REPLICATION_ABOVE_DATANODES],
            says: &[
                "hdfs.replication (3) is above the number of DataNodes (1)",
                "HDFS will report every block under-replicated; add DataNodes (`herd scale acme/prod datanode=3`) or lower hdfs.replication",
            ],
        },
        Case {
            name: "datanodes without a namenode",
            change: |a| {
                a.instances.retain(|m| m.role != Role::Namenode);
                a.namenode = MasterSource::Missing;
                a.namenode_report = None;
            },
            kinds: &[kind::MASTERS_MISSING],
            says: &["3 DataNode(s) but no NameNode", "add a `namenode` pool", "external.namenode.host"],
        },
        Case {
            name: "nodemanagers without a resourcemanager",
            change: |a| {
                a.instances.retain(|m| m.role != Role::Resourcemanager);
                a.resourcemanager = MasterSource::Missing;
                a.resourcemanager_report = None;
            },
            kinds: &[kind::MASTERS_MISSING],
            says: &["2 NodeManager(s) but no ResourceManager", "`resourcemanager` pool", "external.resourcemanager.host"],
        },
        Case {
            name: "resourcemanager error",
            change: |a| {
                a.resourcemanager_report = Some(Aged {
                    report: ResourceManagerHealth { error: Some("/ws/v1/cluster/metrics is not JSON".into()), ..ResourceManagerHealth::default() },
                    age_ms: 0,
                })
            },
            kinds: &[kind::RESOURCEMANAGER_UNREADABLE],
            says: &["ResourceManager's health could not be read: /ws/v1/cluster/metrics is not JSON"],
        },
        Case {
            name: "lost and unhealthy nodemanagers",
            change: |a| {
                if let Some(r) = a.resourcemanager_report.as_mut() {
                    r.report.nodes = vec![nm_report(0, "UNHEALTHY", 5), nm_report(1, "LOST", 5)];
                    r.report.lost_nodes = 1;
                    r.report.unhealthy_nodes = 1;
                    r.report.active_nodes = 0;
                }
            },
            kinds: &[kind::YARN_DEGRADED],
            says: &[
                "0 of 2 NodeManager instance(s) RUNNING",
                "nodemanager-0 is UNHEALTHY: its health check fails (1/1 local-dirs are bad)",
                "nodemanager-1 is LOST: check `herd logs acme/prod/nodemanager-1`",
            ],
        },
        Case {
            name: "nodemanager restarted with a new port: RUNNING entry wins",
            change: |a| {
                if let Some(r) = a.resourcemanager_report.as_mut() {
                    r.report.nodes.push(nm_report(1, "LOST", 0));
                    r.report.lost_nodes = 1;
                }
            },
            kinds: &[kind::YARN_DEGRADED],
            says: &["2 of 2 NodeManager instance(s) RUNNING", "counts 1 lost"],
        },
        Case {
            name: "nodemanager not registered",
            change: |a| {
                if let Some(r) = a.resourcemanager_report.as_mut() {
                    r.report.nodes.truncate(1);
                    r.report.active_nodes = 1;
                }
            },
            kinds: &[kind::YARN_DEGRADED],
            says: &["nodemanager-1 is not registered"],
        },
    ];
    for case in cases {
        let mut input = cluster(3, 2);
        (case.change)(&mut input);
        let a = assess(&input);
        assert_eq!(kinds(&a), case.kinds, "{}: {:#?}", case.name, a.conditions);
        let all: String = a.conditions.iter().map(|c| format!("{}\n", c.message)).collect();
        for word in case.says {
            assert!(all.contains(word), "{}: {all:?} should say {word:?}", case.name);
        }
    }
}

#[test]
fn instance_states() {
    let mut input = cluster(4, 3);
    if let Some(r) = input.namenode_report.as_mut() {
        r.report.datanodes = vec![
            dn_report(0, true, Some("Decommission In Progress")),
            dn_report(1, false, Some("In Service")),
            // A dead entry from an earlier registration beside the live one.
            dn_report(2, false, None),
            dn_report(2, true, None),
        ];
    }
    if let Some(r) = input.resourcemanager_report.as_mut() {
        r.report.nodes = vec![nm_report(0, "DECOMMISSIONING", 1), nm_report(1, "SHUTDOWN", 9), nm_report(1, "LOST", 3)];
    }
    let a = assess(&input);
    let dn = |i| of(&a, Role::Datanode, i);
    assert_eq!(dn(0).hdfs_state.as_deref(), Some("Decommission In Progress"));
    assert_eq!((dn(1).hdfs_state.as_deref(), dn(1).live, dn(1).last_contact_s), (Some(DEAD), Some(false), Some(700)));
    assert_eq!((dn(2).hdfs_state.as_deref(), dn(2).live), (Some("live"), Some(true)));
    assert_eq!((dn(3).hdfs_state.as_deref(), dn(3).live, dn(3).blocks), (Some(NOT_REGISTERED), None, None));
    let nm = |i| of(&a, Role::Nodemanager, i).yarn_state;
    assert_eq!(nm(0).as_deref(), Some("DECOMMISSIONING"));
    assert_eq!(nm(1).as_deref(), Some("SHUTDOWN"), "latest health update wins among non-RUNNING");
    assert_eq!(nm(2).as_deref(), Some(NOT_REGISTERED));
}

#[test]
fn unreadable_reports_leave_workers_unknown() {
    let mut input = cluster(1, 1);
    input.namenode_report = Some(Aged { report: NameNodeHealth { error: Some("boom".into()), ..NameNodeHealth::default() }, age_ms: 0 });
    input.resourcemanager_report = None;
    let a = assess(&input);
    assert_eq!(of(&a, Role::Datanode, 0), InstanceHadoop::default());
    assert_eq!(of(&a, Role::Nodemanager, 0), InstanceHadoop::default());
    assert_eq!(of(&a, Role::Namenode, 0).master.as_deref(), Some("boom"));
    assert_eq!(of(&a, Role::Resourcemanager, 0).master.as_deref(), Some("no report yet"));
    assert_eq!((&a.hdfs, &a.yarn), (&None, &None));
    assert!(message(&a, kind::NAMENODE_UNREADABLE).contains("boom"));
}

#[test]
fn stale_report_still_fills_summary_and_says_its_age() {
    let mut input = cluster(3, 0);
    input.instances.retain(|m| m.role != Role::Resourcemanager);
    input.resourcemanager = MasterSource::Missing;
    input.resourcemanager_report = None;
    if let Some(r) = input.namenode_report.as_mut() {
        r.age_ms = 95_000;
    }
    let a = assess(&input);
    assert_eq!(a.hdfs.as_ref().map(|h| h.live_datanodes), Some(3));
    assert_eq!(of(&a, Role::Namenode, 0).master.as_deref(), Some("no report for 95s"));
    assert_eq!(kinds(&a), [kind::NAMENODE_UNREADABLE]);
    assert_eq!(a.yarn, None);
}

#[test]
fn yarn_only_cluster_has_no_hdfs_conditions() {
    let mut input = cluster(0, 1);
    input.instances.retain(|m| m.role != Role::Namenode);
    input.namenode = MasterSource::Missing;
    input.namenode_report = None;
    let a = assess(&input);
    assert_eq!(kinds(&a), Vec::<&str>::new(), "{:#?}", a.conditions);
}

#[test]
fn conditions_come_from_the_captures_too() {
    use crate::health::fixtures::*;
    // The dd-agent capture: one live DataNode, replication 3, every block under-replicated.
    let nn = crate::health::namenode::parse(&[NN_STATE_2_7]);
    let mut input = cluster(1, 1);
    input.namenode_report = Some(Aged { report: nn, age_ms: 0 });
    input.resourcemanager_report =
        Some(Aged { report: crate::health::resourcemanager::parse(Some(RM_INFO_2_4), RM_METRICS_2_4, RM_NODES_2_4), age_ms: 0 });
    let a = assess(&input);
    assert_eq!(
        kinds(&a),
        [kind::HDFS_DEGRADED, kind::UNDER_REPLICATED, kind::REPLICATION_ABOVE_DATANODES, kind::YARN_DEGRADED],
        "{:#?}",
        a.conditions
    );
    assert!(message(&a, kind::UNDER_REPLICATED).contains("27661 of 27661"));
    // The Knox RM knows only `localhost`: herd's NodeManager is not registered there.
    assert_eq!(of(&a, Role::Nodemanager, 0).yarn_state.as_deref(), Some(NOT_REGISTERED));
}
