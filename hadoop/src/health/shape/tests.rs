use super::*;
use crate::health::fixtures::*;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("capture is not JSON: {e}"))
}

#[test]
fn nninfo_capture_flattens_embedded_node_lists() {
    let t = field_types(&json(NN_INFO_3_1));
    let bean = "beans[Hadoop:service=NameNode,name=NameNodeInfo]";
    assert_eq!(t.get(""), Some(&"object"));
    assert_eq!(t.get("beans"), Some(&"array"));
    assert_eq!(t.get(bean), Some(&"object"));
    for (field, ty) in [
        ("Total", "integer"),
        ("PercentUsed", "number"),
        ("Safemode", "string"),
        ("UpgradeFinalized", "bool"),
        ("RollingUpgradeStatus", "null"),
        ("DistinctVersions", "array"),
        ("DistinctVersions[].key", "string"),
        ("LiveNodes", "string(json)"),
        ("LiveNodes.*.adminState", "string"),
        ("LiveNodes.*.lastContact", "integer"),
        ("LiveNodes.*.numBlocks", "integer"),
        ("LiveNodes.*.blockPoolUsedPercent", "number"),
        ("DeadNodes", "string(json)"),
        ("DecomNodes", "string(json)"),
        // Other JSON-in-strings stay strings: their keys are paths, not DataNodes.
        ("NameDirStatuses", "string"),
    ] {
        assert_eq!(t.get(&format!("{bean}.{field}")).copied(), Some(ty), "{field}");
    }
    assert!(!t.keys().any(|k| k.contains("c68ae3949d7f")), "DataNode keys collapse to *");
}

#[test]
fn rm_captures() {
    let t = field_types(&json(RM_NODES_2_4));
    assert_eq!(t.get("nodes.node"), Some(&"array"));
    assert_eq!(t.get("nodes.node[].nodeHostName"), Some(&"string"));
    assert_eq!(t.get("nodes.node[].lastHealthUpdate"), Some(&"integer"));
    let t = field_types(&json(RM_METRICS_2_7));
    assert_eq!(t.get("clusterMetrics.decommissioningNodes"), Some(&"integer"));
    assert_eq!(t.len(), 26, "root, clusterMetrics and its 24 counters");
}

#[test]
fn every_capture_flattens() {
    for (name, text) in ALL_JSON {
        let t = field_types(&json(text));
        assert!(t.len() > 3, "{name}: {t:?}");
        assert!(t.values().all(|ty| *ty != MIXED), "{name}: {t:?}");
        // A capture matches itself.
        assert_eq!(differences(&json(text), &json(text), &[]), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn mixed_types_across_elements() {
    let t = field_types(&json(r#"{"a":[{"x":1},{"x":"1"},{"y":null}]}"#));
    assert_eq!(t.get("a[].x"), Some(&MIXED));
    assert_eq!(t.get("a[].y"), Some(&"null"));
}

#[test]
fn differences_name_missing_and_mistyped_fields() {
    let capture = json(NN_INFO_3_1);
    // A double answering what herd reads, with its own DataNode, but `numBlocks` as a string
    // and no `Safemode`.
    let double = json(
        r#"{"beans":[{"name":"Hadoop:service=NameNode,name=NameNodeInfo",
        "LiveNodes":"{\"datanode-0.c.t:9866\":{\"adminState\":\"In Service\",\"lastContact\":0,\"numBlocks\":\"3\"}}",
        "DeadNodes":"{}","DecomNodes":"{}"}]}"#,
    );
    let bean = "beans[Hadoop:service=NameNode,name=NameNodeInfo]";
    let d = differences(&capture, &double, &[&format!("{bean}.LiveNodes"), &format!("{bean}.Safemode")]);
    assert!(d.contains(&format!("{bean}.LiveNodes.*.numBlocks: capture has integer, candidate has string")), "{d:#?}");
    assert!(d.contains(&format!("{bean}.Safemode: capture has string, candidate has nothing")), "{d:#?}");
    assert!(d.contains(&format!("{bean}.LiveNodes.*.xferaddr: capture has string, candidate has nothing")), "{d:#?}");
    assert!(!d.iter().any(|l| l.contains("adminState") || l.contains("lastContact")), "{d:#?}");
    // A LiveNodes that is not JSON inside its string differs in type.
    let flat = json(r#"{"beans":[{"name":"Hadoop:service=NameNode,name=NameNodeInfo","LiveNodes":"oops"}]}"#);
    let d = differences(&capture, &flat, &[&format!("{bean}.LiveNodes")]);
    assert!(d.contains(&format!("{bean}.LiveNodes: capture has string(json), candidate has string")), "{d:#?}");
    // An integer where the capture has a fraction is accepted.
    assert!(differences(&json(r#"{"p":0.5}"#), &json(r#"{"p":0}"#), &[]).is_empty());
}
