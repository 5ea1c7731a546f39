//! The NameNode's `/jmx` beans, in the shape of real Hadoop 3 captures: `NameNodeInfo` (with
//! LiveNodes/DeadNodes/DecomNodes as JSON inside strings, keyed `host:xferPort`),
//! `FSNamesystemState`, `FSNamesystem` and `NameNodeStatus`.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::namesystem::{Admin, Namesystem};

/// What the beans need besides the namesystem.
pub struct Context<'a> {
    pub now: Instant,
    pub started_ms: u64,
    pub hostname: &'a str,
    pub rpc_port: u16,
    pub name_dir: &'a str,
    pub xfer_port: u16,
}

const VERSION: &str = "3.3.6";

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 { 100.0 } else { (part as f64 * 100.0 / total as f64) as f32 as f64 }
}

/// All beans, in the order a real NameNode lists them.
pub fn beans(ns: &Namesystem, cx: &Context) -> Vec<Value> {
    let s = ns.summary();
    let mut live = serde_json::Map::new();
    let mut dead = serde_json::Map::new();
    let mut decom = serde_json::Map::new();
    for n in ns.nodes.values() {
        let last_contact = cx.now.saturating_duration_since(n.last_contact).as_secs();
        if n.alive && n.registered {
            let used_pct = pct(n.dfs_used, n.capacity) as f32;
            live.insert(
                n.key(),
                json!({
                    "infoAddr": format!("{}:{}", n.ip, n.info_port),
                    "infoSecureAddr": format!("{}:0", n.ip),
                    "xferaddr": n.xfer_addr(),
                    "lastContact": last_contact,
                    "usedSpace": n.dfs_used,
                    "adminState": n.admin.jmx(),
                    "nonDfsUsedSpace": n.capacity.saturating_sub(n.dfs_used + n.remaining),
                    "capacity": n.capacity,
                    "numBlocks": n.blocks.len(),
                    "version": VERSION,
                    "used": n.dfs_used,
                    "remaining": n.remaining,
                    "blockScheduled": n.transfers.len(),
                    "blockPoolUsed": n.dfs_used,
                    "blockPoolUsedPercent": if n.capacity == 0 { 0.0 } else { used_pct },
                    "volfails": 0,
                    "lastBlockReport": n.last_report.map(|r| cx.now.saturating_duration_since(r).as_secs() / 60).unwrap_or(0),
                }),
            );
        } else {
            dead.insert(
                n.key(),
                json!({
                    "lastContact": last_contact,
                    "decommissioned": n.admin == Admin::Decommissioned,
                    "adminState": n.admin.jmx(),
                    "xferaddr": n.xfer_addr(),
                }),
            );
        }
        if n.admin == Admin::DecommissionInProgress {
            decom.insert(
                n.key(),
                json!({
                    "xferaddr": n.xfer_addr(),
                    "underReplicatedBlocks": n.decom_under_replicated,
                    "decommissionOnlyReplicas": n.decom_only_replicas,
                    "underReplicateInOpenFiles": 0,
                }),
            );
        }
    }
    for key in ns.unregistered_included(cx.xfer_port) {
        dead.insert(key.clone(), json!({"lastContact": 0, "decommissioned": false, "adminState": "In Service", "xferaddr": key}));
    }
    let dead_count = s.dead + ns.unregistered_included(cx.xfer_port).len() as u64;
    let non_dfs = s.capacity.saturating_sub(s.dfs_used + s.remaining);
    let info = json!({
        "name": "Hadoop:service=NameNode,name=NameNodeInfo",
        "modelerType": "org.apache.hadoop.hdfs.server.namenode.FSNamesystem",
        "Total": s.capacity,
        "ClusterId": ns.ns.cluster_id,
        "UpgradeFinalized": true,
        "Version": format!("{VERSION}, rherd-test-double"),
        "Used": s.dfs_used,
        "Free": s.remaining,
        "Safemode": s.safemode.clone().unwrap_or_default(),
        "NonDfsUsedSpace": non_dfs,
        "PercentUsed": pct(s.dfs_used, s.capacity) as f32,
        "BlockPoolUsedSpace": s.dfs_used,
        "PercentBlockPoolUsed": pct(s.dfs_used, s.capacity) as f32,
        "PercentRemaining": if s.capacity == 0 { 0.0 } else { pct(s.remaining, s.capacity) as f32 },
        "CacheCapacity": 0,
        "CacheUsed": 0,
        "TotalBlocks": s.blocks_total,
        "TotalFiles": s.files_total,
        "NumberOfMissingBlocks": s.missing,
        "NumberOfMissingBlocksWithReplicationFactorOne": s.missing_repl_one,
        "LiveNodes": Value::Object(live).to_string(),
        "DeadNodes": Value::Object(dead).to_string(),
        "DecomNodes": Value::Object(decom).to_string(),
        "EnteringMaintenanceNodes": "{}",
        "BlockPoolId": ns.ns.pool_id,
        "NameDirStatuses": json!({"active": {cx.name_dir: "IMAGE_AND_EDITS"}, "failed": {}}).to_string(),
        "NodeUsage": json!({"nodeUsage": {"min": "0.00%", "median": "0.00%", "max": "0.00%", "stdDev": "0.00%"}}).to_string(),
        "NameJournalStatus": "[]",
        "JournalTransactionInfo": json!({"MostRecentCheckpointTxId": "0", "LastAppliedOrWrittenTxId": "0"}).to_string(),
        "NNStarted": crate::common::java_date(cx.started_ms),
        "NNStartedTimeInMillis": cx.started_ms,
        "CompileInfo": "herd test double (NOT Hadoop)",
        "CorruptFiles": "[]",
        "NumberOfSnapshottableDirs": 0,
        "DistinctVersionCount": 1,
        "DistinctVersions": [{"key": VERSION, "value": s.live}],
        "SoftwareVersion": VERSION,
        "NameDirSize": json!({cx.name_dir: 0}).to_string(),
        "RollingUpgradeStatus": null,
        "Threads": 40,
    });
    let counters = |name: &str, model: &str| {
        json!({
            "name": name,
            "modelerType": model,
            "CapacityTotal": s.capacity,
            "CapacityUsed": s.dfs_used,
            "CapacityRemaining": s.remaining,
            "TotalLoad": s.total_load,
            "BlocksTotal": s.blocks_total,
            "FilesTotal": s.files_total,
            "PendingReplicationBlocks": s.pending_replication,
            "UnderReplicatedBlocks": s.under_replicated,
            "ScheduledReplicationBlocks": s.scheduled_replication,
            "PendingDeletionBlocks": s.pending_deletion,
            "NumLiveDataNodes": s.live,
            "NumDeadDataNodes": dead_count,
            "NumDecomLiveDataNodes": s.decom_live,
            "NumDecomDeadDataNodes": s.decom_dead,
            "VolumeFailuresTotal": 0,
            "EstimatedCapacityLostTotal": 0,
            "NumDecommissioningDataNodes": s.decommissioning,
            "NumStaleStorages": 0,
            "NumInMaintenanceLiveDataNodes": 0,
            "NumInMaintenanceDeadDataNodes": 0,
            "NumEnteringMaintenanceDataNodes": 0,
        })
    };
    let mut state = counters("Hadoop:service=NameNode,name=FSNamesystemState", "org.apache.hadoop.hdfs.server.namenode.FSNamesystem");
    if let Some(o) = state.as_object_mut() {
        o.insert("FSState".into(), json!(if s.safemode.is_some() { "safeMode" } else { "Operational" }));
        o.insert("NumStaleDataNodes".into(), json!(0));
        o.insert("SnapshotStats".into(), json!(json!({"SnapshottableDirectories": 0, "Snapshots": 0}).to_string()));
        o.insert("NumEncryptionZones".into(), json!(0));
        o.insert("FsLockQueueLength".into(), json!(0));
        o.insert("MaxObjects".into(), json!(0));
        o.insert("BlockDeletionStartTime".into(), json!(cx.started_ms));
        o.insert("TotalSyncCount".into(), json!(0));
        o.insert("TotalSyncTimes".into(), json!(""));
        o.insert("TopUserOpCounts".into(), json!(json!({"timestamp": "", "windows": []}).to_string()));
    }
    let mut fsn = counters("Hadoop:service=NameNode,name=FSNamesystem", "FSNamesystem");
    if let Some(o) = fsn.as_object_mut() {
        o.insert("tag.Context".into(), json!("dfs"));
        o.insert("tag.HAState".into(), json!("active"));
        o.insert("tag.TotalSyncTimes".into(), json!(""));
        o.insert("tag.Hostname".into(), json!(cx.hostname));
        o.insert("MissingBlocks".into(), json!(s.missing));
        o.insert("MissingReplOneBlocks".into(), json!(s.missing_repl_one));
        o.insert("ExpiredHeartbeats".into(), json!(0));
        o.insert("CapacityTotalGB".into(), json!((s.capacity as f64 / (1u64 << 30) as f64).round()));
        o.insert("CapacityUsedGB".into(), json!((s.dfs_used as f64 / (1u64 << 30) as f64).round()));
        o.insert("CapacityRemainingGB".into(), json!((s.remaining as f64 / (1u64 << 30) as f64).round()));
        o.insert("CapacityUsedNonDFS".into(), json!(non_dfs));
        o.insert("CorruptBlocks".into(), json!(0));
        o.insert("ExcessBlocks".into(), json!(0));
        o.insert("StaleDataNodes".into(), json!(0));
        o.insert("TotalFiles".into(), json!(s.files_total));
        o.insert("NumFilesUnderConstruction".into(), json!(ns.ns.files.values().filter(|f| !f.complete).count()));
        o.insert("LowRedundancyBlocks".into(), json!(s.under_replicated));
        o.insert("BlockCapacity".into(), json!(2_097_152));
        for zero in [
            "LastWrittenTransactionId",
            "LockQueueLength",
            "MillisSinceLastLoadedEdits",
            "NumActiveClients",
            "PendingDataNodeMessageCount",
            "PostponedMisreplicatedBlocks",
            "Snapshots",
            "SnapshottableDirectories",
            "TotalSyncCount",
            "TransactionsSinceLastCheckpoint",
            "TransactionsSinceLastLogRoll",
        ] {
            o.insert(zero.into(), json!(0));
        }
        o.insert("LastCheckpointTime".into(), json!(cx.started_ms));
    }
    let status = json!({
        "name": "Hadoop:service=NameNode,name=NameNodeStatus",
        "modelerType": "org.apache.hadoop.hdfs.server.namenode.NameNode",
        "NNRole": "NameNode",
        "HostAndPort": format!("{}:{}", cx.hostname, cx.rpc_port),
        "SecurityEnabled": false,
        "LastHATransitionTime": 0,
        "BytesWithFutureGenerationStamps": 0,
        "SlowPeersReport": null,
        "SlowDisksReport": null,
        "State": "active",
    });
    vec![info, state, fsn, status]
}

/// `JMXJsonServlet`'s `qry`: an ObjectName pattern (`*` wildcards; property order free).
pub fn matches(qry: &str, name: &str) -> bool {
    let split = |s: &str| -> Option<(String, Vec<(String, String)>)> {
        let (domain, props) = s.split_once(':')?;
        let mut kv: Vec<(String, String)> = props.split(',').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
        kv.sort();
        Some((domain.to_string(), kv))
    };
    let glob = |pat: &str, s: &str| -> bool {
        match pat.split_once('*') {
            None => pat == s,
            Some((a, b)) => s.starts_with(a) && s.ends_with(b) && s.len() >= a.len() + b.len(),
        }
    };
    if qry == "*" || qry == "*:*" {
        return true;
    }
    let (Some((qd, qp)), Some((nd, np))) = (split(qry), split(name)) else { return false };
    if !glob(&qd, &nd) {
        return false;
    }
    let wildcard = qry.ends_with(":*") || qry.ends_with(",*");
    qp.iter().filter(|(k, _)| k != "*").all(|(k, v)| np.iter().any(|(nk, nv)| nk == k && glob(v, nv))) && (wildcard || qp.len() == np.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qry_patterns() {
        let n = "Hadoop:service=NameNode,name=NameNodeInfo";
        assert!(matches("Hadoop:service=NameNode,name=NameNodeInfo", n));
        assert!(matches("Hadoop:name=NameNodeInfo,service=NameNode", n));
        assert!(matches("Hadoop:service=NameNode,name=*", n));
        assert!(matches("Hadoop:*", n));
        assert!(!matches("Hadoop:service=NameNode,name=FSNamesystem", n));
        assert!(!matches("Hadoop:service=NameNode", n));
    }
}
