use super::*;
use crate::health::fixtures::*;

fn ok(answers: &[&str]) -> NameNodeHealth {
    match try_parse(answers) {
        Ok(h) => h,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn err(answers: &[&str]) -> String {
    let h = parse(answers);
    assert_eq!(h.live_datanodes, 0);
    assert!(h.datanodes.is_empty());
    h.error.unwrap_or_else(|| panic!("expected an error for {answers:?}"))
}

#[test]
fn nninfo_3_1_alone() {
    let h = ok(&[NN_INFO_3_1]);
    assert_eq!(h.error, None);
    assert_eq!(h.version.as_deref(), Some("3.1.3"));
    assert!(!h.safe_mode);
    assert_eq!(h.datanodes.len(), 1);
    let d = &h.datanodes[0];
    assert_eq!(d.name, "c68ae3949d7f:50010");
    assert_eq!(d.hostname, "c68ae3949d7f");
    assert_eq!(d.xfer_addr.as_deref(), Some("172.24.0.3:50010"));
    assert_eq!(d.admin_state.as_deref(), Some("In Service"));
    assert!(d.live);
    assert_eq!(d.last_contact_s, Some(2));
    assert_eq!(d.num_blocks, Some(0));
    assert_eq!(d.used, Some(24576));
    assert_eq!(d.capacity, Some(62725623808));
    assert_eq!(d.decommission_under_replicated, None);
    // Without FSNamesystemState the counts come from the lists, capacity from Total/Used/Free.
    assert_eq!((h.live_datanodes, h.dead_datanodes, h.decommissioning_datanodes), (1, 0, 0));
    assert_eq!((h.capacity_total, h.capacity_used, h.capacity_remaining), (62725623808, 24576, 55830482944));
    assert_eq!((h.blocks_total, h.missing_blocks), (0, 0));
}

#[test]
fn fsnamesystemstate_2_7_alone() {
    let h = ok(&[NN_STATE_2_7]);
    assert_eq!((h.live_datanodes, h.dead_datanodes, h.decommissioning_datanodes), (1, 0, 0));
    assert_eq!(h.blocks_total, 27661);
    assert_eq!(h.under_replicated_blocks, 27661);
    assert_eq!(h.pending_replication_blocks, 0);
    assert_eq!((h.capacity_total, h.capacity_used, h.capacity_remaining), (41167421440, 501932032, 27878948864));
    assert!(!h.safe_mode, "FSState is Operational");
    assert!(h.datanodes.is_empty());
    assert_eq!(h.version, None);
}

#[test]
fn fsnamesystem_2_7_alone() {
    let h = ok(&[NN_FSN_2_7]);
    assert_eq!((h.blocks_total, h.under_replicated_blocks, h.missing_blocks), (27689, 27689, 0));
    assert_eq!(h.capacity_total, 41167421440);
    // NB: FSNamesystem carries no DataNode counts.
    assert_eq!(h.live_datanodes, 0);
}

#[test]
fn merged_answers_prefer_fsnamesystemstate_counters() {
    let h = ok(&[NN_INFO_3_1, NN_STATE_2_7, NN_FSN_2_7]);
    assert_eq!(h.version.as_deref(), Some("3.1.3"));
    assert_eq!(h.datanodes.len(), 1);
    assert_eq!(h.blocks_total, 27661, "FSNamesystemState first");
    assert_eq!(h.capacity_total, 41167421440, "FSNamesystemState before NameNodeInfo's Total");
    assert_eq!(h.missing_blocks, 0);
    assert_eq!(h.under_replicated_blocks, 27661);
    // Order of answers does not matter.
    assert_eq!(ok(&[NN_FSN_2_7, NN_STATE_2_7, NN_INFO_3_1]), h);
}

#[test]
fn whole_jmx_answer_with_other_beans() {
    let whole = format!(
        r#"{{"beans":[{{"name":"java.lang:type=Memory","HeapMemoryUsage":{{"used":1}}}},{},{}]}}"#,
        bean(NN_INFO_3_1),
        bean(NN_STATE_2_7)
    );
    let h = ok(&[&whole]);
    assert_eq!((h.live_datanodes, h.blocks_total, h.datanodes.len()), (1, 27661, 1));
}

/// The first bean of a capture, as JSON text.
fn bean(capture: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(capture).unwrap_or_default();
    v["beans"][0].to_string()
}

/// A NameNodeInfo bean with the given fields (JSON text without braces).
fn info(fields: &str) -> String {
    format!(r#"{{"beans":[{{"name":"Hadoop:service=NameNode,name=NameNodeInfo",{fields}}}]}}"#)
}

#[test]
fn dead_and_decommissioning_nodes() {
    let live = r#"{\"dn-1.c.t:9866\":{\"adminState\":\"Decommission In Progress\",\"lastContact\":1,\"numBlocks\":9},\"dn-2.c.t:9866\":{\"adminState\":\"In Service\",\"lastContact\":0,\"numBlocks\":7}}"#;
    let dead = r#"{\"dn-3.c.t:9866\":{\"lastContact\":700,\"decommissioned\":false,\"xferaddr\":\"10.0.0.3:9866\"},\"dn-4.c.t:9866\":{\"lastContact\":900,\"decommissioned\":true},\"dn-6.c.t:9866\":{\"lastContact\":30,\"decommissioned\":false,\"adminState\":\"Decommission In Progress\"}}"#;
    // A decommissioning DataNode may be live or dead (DatanodeManager.getDecommissioningNodes).
    let decom = r#"{\"dn-1.c.t:9866\":{\"underReplicatedBlocks\":4,\"decommissionOnlyReplicas\":0,\"underReplicateInOpenFiles\":0},\"dn-5.c.t:9866\":{\"underReplicatedBlocks\":2},\"dn-6.c.t:9866\":{\"underReplicatedBlocks\":11}}"#;
    let h = ok(&[&info(&format!(
        r#""Safemode":"Safe mode is ON. The reported blocks 3 needs additional 2 blocks.","Version":"2.10.2, r123","LiveNodes":"{live}","DeadNodes":"{dead}","DecomNodes":"{decom}""#
    ))]);
    assert!(h.safe_mode);
    assert_eq!(h.safe_mode_reason.as_deref(), Some("Safe mode is ON. The reported blocks 3 needs additional 2 blocks."));
    assert_eq!(h.version.as_deref(), Some("2.10.2"));
    let names: Vec<&str> = h.datanodes.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["dn-1.c.t:9866", "dn-2.c.t:9866", "dn-3.c.t:9866", "dn-4.c.t:9866", "dn-6.c.t:9866", "dn-5.c.t:9866"]);
    let d1 = &h.datanodes[0];
    assert_eq!((d1.admin_state.as_deref(), d1.decommission_under_replicated), (Some(DECOMMISSION_IN_PROGRESS), Some(4)));
    let d3 = &h.datanodes[2];
    assert_eq!((d3.live, d3.admin_state.as_deref(), d3.last_contact_s), (false, None, Some(700)));
    assert_eq!(d3.xfer_addr.as_deref(), Some("10.0.0.3:9866"));
    assert_eq!(h.datanodes[3].admin_state.as_deref(), Some(DECOMMISSIONED));
    let d6 = &h.datanodes[4];
    assert_eq!((d6.live, d6.admin_state.as_deref(), d6.decommission_under_replicated), (false, Some(DECOMMISSION_IN_PROGRESS), Some(11)), "died mid-decommission: still dead");
    let d5 = &h.datanodes[5];
    assert_eq!((d5.live, d5.admin_state.as_deref(), d5.decommission_under_replicated), (true, Some(DECOMMISSION_IN_PROGRESS), Some(2)));
    assert_eq!((h.live_datanodes, h.dead_datanodes, h.decommissioning_datanodes), (3, 3, 3));
}

#[test]
fn hadoop1_bare_host_keys_and_used_space() {
    // The shape of Hadoop 1.1.2's NameNodeInfo (apache/ambari's hdfs_namenode_jmx.json).
    let h = ok(&[&info(
        r#""Version":"1.1.2.21, r","Safemode":"","LiveNodes":"{\"ip-10-85-111-149.ec2.internal\":{\"usedSpace\":299008,\"lastContact\":0}}","DeadNodes":"{}","DecomNodes":"{}""#,
    )]);
    assert_eq!(h.version.as_deref(), Some("1.1.2.21"));
    let d = &h.datanodes[0];
    assert_eq!((d.name.as_str(), d.hostname.as_str()), ("ip-10-85-111-149.ec2.internal", "ip-10-85-111-149.ec2.internal"));
    assert_eq!((d.used, d.admin_state.as_deref(), d.live), (Some(299008), None, true));
}

#[test]
fn fsstate_safe_mode() {
    let h = ok(&[r#"{"beans":[{"name":"Hadoop:service=NameNode,name=FSNamesystemState","FSState":"safeMode"}]}"#]);
    assert!(h.safe_mode);
    assert_eq!(h.safe_mode_reason, None);
}

#[test]
fn host_part_of_names() {
    for (name, host) in [
        ("dn-1.c.t:9866", "dn-1.c.t"),
        ("c68ae3949d7f:50010", "c68ae3949d7f"),
        ("ip-10-85-111-149.ec2.internal", "ip-10-85-111-149.ec2.internal"),
        ("[fd00::1]:9866", "fd00::1"),
        ("fd00::1", "fd00::1"),
        ("host:", "host:"),
        ("host:http", "host:http"),
    ] {
        assert_eq!(host_of(name), host, "{name}");
    }
}

#[test]
fn malformed_answers_are_errors_not_panics() {
    let table: &[(&str, &[&str], &str)] = &[
        ("garbage", &["garbage"], "is not JSON"),
        ("empty", &[""], "is not JSON"),
        ("no answers", &[], "none of the beans"),
        ("html", &["<html><head><title>Error 500</title></head></html>"], "starts with \"<html>"),
        ("truncated capture", &[NN_FSN_TRUNCATED], "is not JSON"),
        ("cut short", &[&NN_INFO_3_1[..NN_INFO_3_1.len() / 2]], "is not JSON"),
        ("not an object", &["[1,2]"], "expected an object"),
        ("no beans", &["{}"], "no `beans`"),
        ("beans not array", &[r#"{"beans":{}}"#], "`beans` is an object, expected an array"),
        ("bean not object", &[r#"{"beans":[3]}"#], "`beans[0]` is the number 3"),
        ("no known bean", &[r#"{"beans":[]}"#], "none of the beans"),
        ("one good, one garbage", &[NN_INFO_3_1, "oops"], "is not JSON"),
        ("LiveNodes not JSON", &[&info(r#""LiveNodes":"{oops""#)], "`NameNodeInfo.LiveNodes` should hold JSON text"),
        ("LiveNodes not a string", &[&info(r#""LiveNodes":{}"#)], "`NameNodeInfo.LiveNodes` is an object, expected a string"),
        ("LiveNodes an array", &[&info(r#""LiveNodes":"[]""#)], "`NameNodeInfo.LiveNodes` is an array, expected an object"),
        ("entry not object", &[&info(r#""LiveNodes":"{\"a:1\":5}""#)], "`NameNodeInfo.LiveNodes.a:1` is the number 5"),
        ("numBlocks a string", &[&info(r#""LiveNodes":"{\"a:1\":{\"numBlocks\":\"9\"}}""#)], "`NameNodeInfo.LiveNodes.a:1.numBlocks` is the string \"9\""),
        ("negative count", &[r#"{"beans":[{"name":"Hadoop:service=NameNode,name=FSNamesystemState","NumLiveDataNodes":-1}]}"#], "NumLiveDataNodes"),
        ("huge count", &[r#"{"beans":[{"name":"Hadoop:service=NameNode,name=FSNamesystemState","BlocksTotal":18446744073709551616}]}"#], "below 2^64"),
        ("float count", &[r#"{"beans":[{"name":"Hadoop:service=NameNode,name=FSNamesystem","MissingBlocks":1.5}]}"#], "MissingBlocks"),
        ("Safemode not string", &[&info(r#""Safemode":true"#)], "`NameNodeInfo.Safemode` is the boolean true"),
        ("DecomNodes bad count", &[&info(r#""DecomNodes":"{\"a:1\":{\"underReplicatedBlocks\":-4}}""#)], "underReplicatedBlocks"),
    ];
    for (case, answers, want) in table {
        let e = err(answers);
        assert!(e.contains(want), "{case}: {e:?} should contain {want:?}");
    }
}

#[test]
fn huge_counts_that_fit() {
    let h = ok(&[r#"{"beans":[{"name":"Hadoop:service=NameNode,name=FSNamesystemState","CapacityTotal":18446744073709551615}]}"#]);
    assert_eq!(h.capacity_total, u64::MAX);
}

#[test]
fn null_fields_read_as_absent() {
    let h = ok(&[&info(r#""LiveNodes":null,"Safemode":null,"Version":null"#)]);
    assert_eq!(h, NameNodeHealth::default());
}
