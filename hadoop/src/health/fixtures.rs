//! The real captures under `tests/fixtures/hadoop/` (see `SOURCES` there), for tests.

macro_rules! capture {
    ($name:ident, $file:literal) => {
        pub const $name: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hadoop/", $file));
    };
}

capture!(NN_INFO_3_1, "namenode-jmx-nninfo.datadog-integrations-core.json");
capture!(NN_STATE_2_7, "namenode-jmx-fsnamesystemstate.dd-agent.json");
capture!(NN_FSN_2_7, "namenode-jmx-fsnamesystem.dd-agent.json");
capture!(NN_FSN_TRUNCATED, "namenode-jmx-fsnamesystem-truncated.datadog-integrations-core.json");
capture!(RM_INFO_2_4, "rm-cluster-info.knox.json");
capture!(RM_METRICS_2_4, "rm-cluster-metrics.knox.json");
capture!(RM_NODES_2_4, "rm-cluster-nodes.knox.json");
capture!(RM_METRICS_2_7, "rm-cluster-metrics.datadog-integrations-core.json");
capture!(RM_METRICS_2_X, "rm-cluster-metrics.dd-agent.json");
capture!(RM_INFO_0_23, "rm-cluster-info.dd-agent.json");
capture!(RM_NODES_0_23, "rm-cluster-nodes.dd-agent.json");

/// Every capture that is valid JSON, with its file name.
pub const ALL_JSON: [(&str, &str); 10] = [
    ("namenode-jmx-nninfo", NN_INFO_3_1),
    ("namenode-jmx-fsnamesystemstate", NN_STATE_2_7),
    ("namenode-jmx-fsnamesystem", NN_FSN_2_7),
    ("rm-cluster-info.knox", RM_INFO_2_4),
    ("rm-cluster-metrics.knox", RM_METRICS_2_4),
    ("rm-cluster-nodes.knox", RM_NODES_2_4),
    ("rm-cluster-metrics.datadog", RM_METRICS_2_7),
    ("rm-cluster-metrics.dd-agent", RM_METRICS_2_X),
    ("rm-cluster-info.dd-agent", RM_INFO_0_23),
    ("rm-cluster-nodes.dd-agent", RM_NODES_0_23),
];
