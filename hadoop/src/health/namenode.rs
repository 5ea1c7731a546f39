//! The NameNode's `/jmx` answers into a [`NameNodeHealth`].
//!
//! herd asks `/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo`, `...FSNamesystemState`
//! and `...FSNamesystem` (or `/jmx` whole) and merges what it finds, in that order of
//! preference for counters both carry. `NameNodeInfo`'s `LiveNodes`, `DeadNodes` and
//! `DecomNodes` are JSON objects inside strings, keyed `host:xferPort` (bare host in
//! Hadoop 1). Every field but the beans' names is optional: older NameNodes lack many.

use herd_api::hadoop::{DataNodeReport, NameNodeHealth};
use serde_json::Value;

use super::Result;
use super::json::{HealthError, Obj, parse_answer};

const ANSWER: &str = "NameNode /jmx";
const NN_INFO: &str = "Hadoop:service=NameNode,name=NameNodeInfo";
const FS_STATE: &str = "Hadoop:service=NameNode,name=FSNamesystemState";
const FS_NAMESYSTEM: &str = "Hadoop:service=NameNode,name=FSNamesystem";
/// Hadoop 1's name for what later versions call `FSNamesystem`.
const FS_METRICS: &str = "Hadoop:service=NameNode,name=FSNamesystemMetrics";
const KNOWN: &str = "NameNodeInfo, FSNamesystemState, FSNamesystem";

/// `FSState` while in safe mode (otherwise `Operational`).
const FS_STATE_SAFE_MODE: &str = "safeMode";

/// Reads and merges `/jmx` answers; anything unreadable gives a report with only `error`
/// set, naming what was wrong.
pub fn parse(answers: &[&str]) -> NameNodeHealth {
    try_parse(answers).unwrap_or_else(|e| NameNodeHealth { error: Some(e.to_string()), ..NameNodeHealth::default() })
}

/// [`parse`], with the failure as a typed error.
pub fn try_parse(answers: &[&str]) -> Result<NameNodeHealth> {
    let docs = answers.iter().map(|a| parse_answer(ANSWER, a)).collect::<Result<Vec<Value>>>()?;
    let mut beans = Beans::default();
    for doc in &docs {
        let top = Obj::new(ANSWER, "", doc)?;
        let list = top.array("beans")?.ok_or_else(|| top.missing("beans", "an array of beans"))?;
        for (i, bean) in list.iter().enumerate() {
            let Value::Object(map) = bean else {
                return Err(HealthError::WrongType {
                    answer: ANSWER.into(),
                    field: format!("beans[{i}]"),
                    expected: "an object",
                    found: super::json::describe(bean),
                });
            };
            let slot = match map.get("name").and_then(Value::as_str) {
                Some(NN_INFO) => &mut beans.info,
                Some(FS_STATE) => &mut beans.state,
                Some(FS_NAMESYSTEM) => &mut beans.namesystem,
                Some(FS_METRICS) => &mut beans.metrics,
                _ => continue,
            };
            // NB: the first answer naming a bean wins; callers pass one answer per bean.
            slot.get_or_insert(bean);
        }
    }
    beans.health()
}

#[derive(Default)]
struct Beans<'a> {
    info: Option<&'a Value>,
    state: Option<&'a Value>,
    namesystem: Option<&'a Value>,
    metrics: Option<&'a Value>,
}

impl<'a> Beans<'a> {
    fn obj(v: Option<&'a Value>, path: &'a str) -> Result<Option<Obj<'a>>> {
        v.map(|v| Obj::new(ANSWER, path, v)).transpose()
    }

    fn health(&self) -> Result<NameNodeHealth> {
        let info = Self::obj(self.info, "NameNodeInfo")?;
        let state = Self::obj(self.state, "FSNamesystemState")?;
        let namesystem = Self::obj(self.namesystem, "FSNamesystem")?;
        let metrics = Self::obj(self.metrics, "FSNamesystemMetrics")?;
        if info.is_none() && state.is_none() && namesystem.is_none() && metrics.is_none() {
            return Err(HealthError::NoKnownBeans { answer: ANSWER.into(), expected: KNOWN });
        }

        // The first bean that has the counter gives it.
        let counter = |sources: &[(Option<Obj<'_>>, &str)]| -> Result<Option<u64>> {
            for (bean, field) in sources {
                if let Some(bean) = bean
                    && let Some(v) = bean.u64(field)?
                {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };

        let mut h = NameNodeHealth::default();
        let nodes = match info {
            Some(info) => datanodes(&info)?,
            None => Vec::new(),
        };
        if let Some(info) = info {
            if let Some(text) = info.str("Safemode")?.filter(|t| !t.trim().is_empty()) {
                h.safe_mode = true;
                h.safe_mode_reason = Some(text.trim().to_string());
            }
            h.version = match info.str("SoftwareVersion")? {
                Some(v) => Some(v.to_string()),
                // `Version` is `3.1.3, rba631c4…`: the release, then the revision.
                None => info.str("Version")?.map(|v| v.split(',').next().unwrap_or(v).trim().to_string()),
            };
        }
        if let Some(state) = state
            && state.str("FSState")? == Some(FS_STATE_SAFE_MODE)
        {
            h.safe_mode = true;
        }

        let count = |pred: &dyn Fn(&DataNodeReport) -> bool| nodes.iter().filter(|d| pred(d)).count() as u64;
        let listed = info.is_some();
        h.live_datanodes = match counter(&[(state, "NumLiveDataNodes")])? {
            Some(n) => n,
            None if listed => count(&|d| d.live),
            None => 0,
        };
        h.dead_datanodes = match counter(&[(state, "NumDeadDataNodes")])? {
            Some(n) => n,
            None if listed => count(&|d| !d.live),
            None => 0,
        };
        h.decommissioning_datanodes = match counter(&[(state, "NumDecommissioningDataNodes")])? {
            Some(n) => n,
            None if listed => count(&|d| d.admin_state.as_deref() == Some(DECOMMISSION_IN_PROGRESS)),
            None => 0,
        };
        h.capacity_total =
            counter(&[(state, "CapacityTotal"), (namesystem, "CapacityTotal"), (info, "Total")])?.unwrap_or(0);
        h.capacity_used = counter(&[(state, "CapacityUsed"), (namesystem, "CapacityUsed"), (info, "Used")])?.unwrap_or(0);
        h.capacity_remaining =
            counter(&[(state, "CapacityRemaining"), (namesystem, "CapacityRemaining"), (info, "Free")])?.unwrap_or(0);
        h.blocks_total = counter(&[
            (state, "BlocksTotal"),
            (namesystem, "BlocksTotal"),
            (metrics, "BlocksTotal"),
            (info, "TotalBlocks"),
        ])?
        .unwrap_or(0);
        h.under_replicated_blocks = counter(&[
            (state, "UnderReplicatedBlocks"),
            (namesystem, "UnderReplicatedBlocks"),
            (metrics, "UnderReplicatedBlocks"),
        ])?
        .unwrap_or(0);
        h.missing_blocks = counter(&[
            (namesystem, "MissingBlocks"),
            (metrics, "MissingBlocks"),
            (info, "NumberOfMissingBlocks"),
        ])?
        .unwrap_or(0);
        h.pending_replication_blocks = counter(&[
            (state, "PendingReplicationBlocks"),
            (namesystem, "PendingReplicationBlocks"),
            (metrics, "PendingReplicationBlocks"),
        ])?
        .unwrap_or(0);
        h.datanodes = nodes;
        Ok(h)
    }
}

/// `adminState` of a DataNode being drained.
pub const DECOMMISSION_IN_PROGRESS: &str = "Decommission In Progress";
/// `adminState` of a drained DataNode.
pub const DECOMMISSIONED: &str = "Decommissioned";

/// The DataNodes of `LiveNodes`, `DeadNodes` and `DecomNodes`, in that order, each list
/// sorted by name; a `DecomNodes` entry updates the live entry of the same name.
fn datanodes(info: &Obj<'_>) -> Result<Vec<DataNodeReport>> {
    let mut out = Vec::new();
    for (field, live) in [("LiveNodes", true), ("DeadNodes", false)] {
        let Some(list) = info.embedded_json(field)? else { continue };
        let path = info.field(field);
        let list = Obj::new(ANSWER, &path, &list)?;
        for (name, entry) in list.map {
            let entry_path = format!("{path}.{name}");
            let e = Obj::new(ANSWER, &entry_path, entry)?;
            let mut admin_state = e.str("adminState")?.map(str::to_string);
            if !live && admin_state.is_none() && e.bool("decommissioned")? == Some(true) {
                admin_state = Some(DECOMMISSIONED.to_string());
            }
            out.push(DataNodeReport {
                name: name.clone(),
                hostname: host_of(name).to_string(),
                xfer_addr: e.str("xferaddr")?.map(str::to_string),
                admin_state,
                live,
                last_contact_s: e.i64("lastContact")?,
                num_blocks: e.u64("numBlocks")?,
                // NB: Hadoop 1 has only `usedSpace`; later versions have both, equal.
                used: match e.u64("used")? {
                    Some(u) => Some(u),
                    None => e.u64("usedSpace")?,
                },
                capacity: e.u64("capacity")?,
                decommission_under_replicated: None,
            });
        }
    }
    if let Some(list) = info.embedded_json("DecomNodes")? {
        let path = info.field("DecomNodes");
        let list = Obj::new(ANSWER, &path, &list)?;
        for (name, entry) in list.map {
            let entry_path = format!("{path}.{name}");
            let e = Obj::new(ANSWER, &entry_path, entry)?;
            let under = e.u64("underReplicatedBlocks")?;
            // NB: a decommissioning DataNode may be live or dead (`DatanodeManager.
            // getDecommissioningNodes`): its entry keeps the liveness its list gave it, so a
            // DataNode that died mid-decommission is seen dead, not revived by this list.
            let entry = out.iter().position(|d| d.live && &d.name == name).or_else(|| out.iter().position(|d| &d.name == name));
            match entry.and_then(|i| out.get_mut(i)) {
                Some(d) => d.decommission_under_replicated = under,
                None => out.push(DataNodeReport {
                    name: name.clone(),
                    hostname: host_of(name).to_string(),
                    xfer_addr: e.str("xferaddr")?.map(str::to_string),
                    admin_state: Some(DECOMMISSION_IN_PROGRESS.to_string()),
                    // In neither list (not seen in a real NameNode): taken as live, so
                    // that it is not blamed for a death nobody reported.
                    live: true,
                    decommission_under_replicated: under,
                    ..DataNodeReport::default()
                }),
            }
        }
    }
    Ok(out)
}

/// The host part of a DataNode's name: `host:port`, `[v6]:port` or a bare host (Hadoop 1).
pub fn host_of(name: &str) -> &str {
    if let Some(rest) = name.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host;
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => name,
    }
}

#[cfg(test)]
mod tests;
