use super::*;
use crate::health::fixtures::*;

fn ok(info: Option<&str>, metrics: &str, nodes: &str) -> ResourceManagerHealth {
    match try_parse(info, metrics, nodes) {
        Ok(h) => h,
        Err(e) => panic!("parse failed: {e}"),
    }
}

#[test]
fn knox_2_4_captures() {
    let h = ok(Some(RM_INFO_2_4), RM_METRICS_2_4, RM_NODES_2_4);
    assert_eq!(h.error, None);
    assert_eq!(h.state, "STARTED");
    assert_eq!(h.ha_state.as_deref(), Some("ACTIVE"));
    assert_eq!(h.version.as_deref(), Some("2.4.0.2.1.1.0-390"));
    assert_eq!((h.active_nodes, h.lost_nodes, h.unhealthy_nodes, h.decommissioned_nodes), (1, 0, 0, 0));
    // Absent in 2.4: read as 0.
    assert_eq!((h.decommissioning_nodes, h.shutdown_nodes, h.total_vcores, h.allocated_vcores), (0, 0, 0, 0));
    assert_eq!((h.total_mb, h.allocated_mb, h.apps_running), (8192, 0, 0));
    assert_eq!(h.nodes.len(), 1);
    let n = &h.nodes[0];
    assert_eq!((n.id.as_str(), n.hostname.as_str(), n.state.as_str()), ("localhost:45454", "localhost", "RUNNING"));
    assert_eq!(n.last_health_update_ms, Some(1401194681758));
    assert_eq!((n.num_containers, n.used_memory_mb, n.avail_memory_mb), (Some(0), Some(0), Some(8192)));
    assert_eq!(n.health_report, None, "empty healthReport reads as none");
}

#[test]
fn metrics_2_7_with_vcores_and_decommissioning() {
    let h = ok(None, RM_METRICS_2_7, RM_NODES_2_4);
    assert_eq!((h.state.as_str(), h.ha_state.as_deref(), h.version.as_deref()), ("", None, None));
    assert_eq!((h.total_mb, h.total_vcores, h.allocated_vcores, h.active_nodes), (17408, 8, 1, 1));
    assert_eq!(h.decommissioning_nodes, 0);
    let h2 = ok(None, RM_METRICS_2_X, RM_NODES_2_4);
    assert_eq!((h2.total_mb, h2.total_vcores), (17408, 8));
}

#[test]
fn oldest_info_and_nodes() {
    let h = ok(Some(RM_INFO_0_23), RM_METRICS_2_X, RM_NODES_0_23);
    assert_eq!((h.state.as_str(), h.ha_state.as_deref()), ("STARTED", None));
    assert_eq!(h.version.as_deref(), Some("0.23.1-SNAPSHOT"));
    let n = &h.nodes[0];
    assert_eq!((n.id.as_str(), n.hostname.as_str(), n.state.as_str()), ("h2:1235", "h2", "NEW"));
    assert_eq!(n.health_report.as_deref(), Some("Healthy"));
}

#[test]
fn no_nodes() {
    for nodes in [r#"{"nodes":null}"#, r#"{"nodes":{}}"#, r#"{"nodes":{"node":[]}}"#, r#"{"nodes":{"node":null}}"#] {
        assert!(ok(None, RM_METRICS_2_7, nodes).nodes.is_empty(), "{nodes}");
    }
}

#[test]
fn hadoop3_shape_with_lost_and_unhealthy() {
    let metrics = r#"{"clusterMetrics":{"activeNodes":2,"lostNodes":1,"unhealthyNodes":1,"decommissioningNodes":1,
        "decommissionedNodes":2,"shutdownNodes":1,"totalMB":16384,"allocatedMB":2048,"totalVirtualCores":16,
        "allocatedVirtualCores":2,"appsRunning":1,"utilizedMBPercent":11,
        "totalUsedResourcesAcrossPartition":{"memory":0,"vCores":0}}}"#;
    let nodes = r#"{"nodes":{"node":[
        {"rack":"/default-rack","state":"UNHEALTHY","id":"nodemanager-0.c.t:8041","nodeHostName":"nodemanager-0.c.t",
         "nodeHTTPAddress":"nodemanager-0.c.t:8042","lastHealthUpdate":1700000000000,"version":"3.3.6",
         "healthReport":"1/1 local-dirs usable space is below configured utilization percentage",
         "numContainers":0,"usedMemoryMB":0,"availMemoryMB":8192,"resourceUtilization":{"nodeCPUUsage":0.5}},
        {"state":"LOST","id":"nodemanager-1.c.t:8041","nodeHostName":"nodemanager-1.c.t","nodeHTTPAddress":""}]}}"#;
    let h = ok(None, metrics, nodes);
    assert_eq!((h.lost_nodes, h.unhealthy_nodes, h.decommissioning_nodes, h.shutdown_nodes), (1, 1, 1, 1));
    assert_eq!((h.allocated_mb, h.apps_running), (2048, 1));
    assert_eq!(h.nodes[0].health_report.as_deref(), Some("1/1 local-dirs usable space is below configured utilization percentage"));
    assert_eq!((h.nodes[1].state.as_str(), h.nodes[1].last_health_update_ms), ("LOST", None));
}

#[test]
fn malformed_answers_are_errors_not_panics() {
    let m = RM_METRICS_2_7;
    let n = RM_NODES_2_4;
    let html = "<html><head><title>Error 503 Service Unavailable</title></head><body>standby</body></html>";
    let table: &[(&str, Option<&str>, &str, &str, &str)] = &[
        ("garbage info", Some("garbage"), m, n, "/ws/v1/cluster/info is not JSON"),
        ("html metrics", None, html, n, "/ws/v1/cluster/metrics is not JSON"),
        ("empty nodes", None, m, "", "/ws/v1/cluster/nodes is not JSON"),
        ("truncated metrics", None, &m[..m.len() / 2], n, "/ws/v1/cluster/metrics is not JSON"),
        ("no clusterInfo", Some("{}"), m, n, "no `clusterInfo`"),
        ("clusterInfo array", Some(r#"{"clusterInfo":[]}"#), m, n, "`clusterInfo` is an array"),
        ("state a number", Some(r#"{"clusterInfo":{"state":1}}"#), m, n, "`clusterInfo.state` is the number 1"),
        ("no clusterMetrics", None, "{}", n, "no `clusterMetrics`"),
        ("no activeNodes", None, r#"{"clusterMetrics":{}}"#, n, "no `clusterMetrics.activeNodes`"),
        ("activeNodes string", None, r#"{"clusterMetrics":{"activeNodes":"1"}}"#, n, "`clusterMetrics.activeNodes` is the string \"1\""),
        ("negative lost", None, r#"{"clusterMetrics":{"activeNodes":1,"lostNodes":-1}}"#, n, "clusterMetrics.lostNodes"),
        ("huge totalMB", None, r#"{"clusterMetrics":{"activeNodes":1,"totalMB":1e300}}"#, n, "clusterMetrics.totalMB"),
        ("no nodes", None, m, "{}", "no `nodes`"),
        ("node not array", None, m, r#"{"nodes":{"node":{}}}"#, "`nodes.node` is an object, expected an array"),
        ("node entry number", None, m, r#"{"nodes":{"node":[7]}}"#, "`nodes.node[0]` is the number 7"),
        ("node without id", None, m, r#"{"nodes":{"node":[{"nodeHostName":"h","state":"RUNNING"}]}}"#, "no `nodes.node[0].id`"),
        ("numContainers float", None, m, r#"{"nodes":{"node":[{"id":"h:1","nodeHostName":"h","state":"RUNNING","numContainers":0.5}]}}"#, "nodes.node[0].numContainers"),
    ];
    for (case, info, metrics, nodes, want) in table {
        let h = parse(*info, metrics, nodes);
        let e = h.error.unwrap_or_else(|| panic!("{case}: expected an error"));
        assert!(e.contains(want), "{case}: {e:?} should contain {want:?}");
        assert!(h.nodes.is_empty() && h.active_nodes == 0, "{case}: nothing else is set");
    }
}
