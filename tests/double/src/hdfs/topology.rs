//! Network topology: `TableMapping` (`net.topology.table.file.name`: `name location` lines)
//! and, with `NetworkTopologyWithNodeGroup`, the node-group layer (`/rack/nodegroup`).

use std::collections::HashMap;
use std::path::Path;

/// Where a DataNode sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The network location as Hadoop reports it (`/rack1` or `/rack1/host7`).
    pub path: String,
    pub rack: String,
    /// Replicas of one block never share a node group. Without the node-group layer every
    /// node is its own group.
    pub group: String,
}

/// The table file's mapping, read when a node registers (unknown names get the default).
#[derive(Debug, Clone, Default)]
pub struct Table {
    map: HashMap<String, String>,
}

impl Table {
    /// Reads the table; a missing or unreadable file is an empty table (Hadoop logs a warning
    /// and maps everything to the default rack).
    pub fn read(path: Option<&Path>) -> Table {
        let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else { return Table::default() };
        Table::parse(&text)
    }

    pub fn parse(text: &str) -> Table {
        let map = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('#').next().unwrap_or("").split_whitespace();
                Some((f.next()?.to_ascii_lowercase(), f.next()?.to_string()))
            })
            .collect();
        Table { map }
    }

    /// The location of a node known by `hostname` and `ip` (the table may name either).
    pub fn locate(&self, hostname: &str, ip: &str, node_group: bool) -> Location {
        let default = if node_group { "/default-rack/default-nodegroup" } else { "/default-rack" };
        let path = self
            .map
            .get(&hostname.to_ascii_lowercase())
            .or_else(|| self.map.get(ip))
            .cloned()
            .unwrap_or_else(|| default.to_string());
        if node_group {
            let rack = match path.rsplit_once('/') {
                Some((r, _)) if !r.is_empty() => r.to_string(),
                _ => path.clone(),
            };
            Location { group: path.clone(), rack, path }
        } else {
            Location { rack: path.clone(), group: format!("{path}/{hostname}"), path }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_groups_and_racks() {
        let t = Table::parse("datanode-0.prod.acme /rack1/h1\n10.0.0.7 /rack2/h2 # by ip\n");
        let a = t.locate("DataNode-0.prod.acme", "10.0.0.5", true);
        assert_eq!((a.rack.as_str(), a.group.as_str()), ("/rack1", "/rack1/h1"));
        let b = t.locate("datanode-9", "10.0.0.7", true);
        assert_eq!(b.rack, "/rack2");
        let c = t.locate("other", "10.0.0.8", true);
        assert_eq!(c.path, "/default-rack/default-nodegroup");
        let d = t.locate("other", "10.0.0.8", false);
        assert_eq!((d.rack.as_str(), d.group.as_str()), ("/default-rack", "/default-rack/other"));
    }
}
