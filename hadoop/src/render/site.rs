//! What herd sets in `core-site.xml`, `hdfs-site.xml`, `yarn-site.xml` and `mapred-site.xml`
//! for one member, before the spec's overrides. Everything is addressed by stable DNS names
//! (`datanode-3.prod.acme`), which herd's `/etc/hosts` resolves in every container.

use std::collections::BTreeMap;

use herd_api::Role;
use herd_api::hadoop::{ConfigFile, ports};
use herd_api::names::InstanceRef;
use herd_api::spec::ExternalMaster;

use super::{ClusterView, Member, paths};

/// Where a master is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub rpc_port: u16,
    pub http_port: u16,
}

/// The cluster's masters: its own pool's instance 0, else the external one, else none (a
/// worker-only cluster renders without them; the orchestrator reports the missing master).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Masters {
    pub namenode: Option<Endpoint>,
    pub resourcemanager: Option<Endpoint>,
}

impl Masters {
    pub fn of(cluster: &ClusterView<'_>) -> Masters {
        let spec = cluster.spec;
        let master = |role: Role, external: &Option<ExternalMaster>, rpc: u16, http: u16| {
            if spec.pools.contains_key(&role) {
                let host = InstanceRef::new(&spec.tenant, &spec.name, role, 0).hostname();
                Some(Endpoint { host, rpc_port: rpc, http_port: http })
            } else {
                external.as_ref().map(|e| Endpoint {
                    host: e.host.clone(),
                    rpc_port: e.rpc_port.unwrap_or(rpc),
                    http_port: e.http_port.unwrap_or(http),
                })
            }
        };
        Masters {
            namenode: master(Role::Namenode, &spec.external.namenode, ports::NAMENODE_RPC, ports::NAMENODE_HTTP),
            resourcemanager: master(Role::Resourcemanager, &spec.external.resourcemanager, ports::RM_CLIENT, ports::RM_HTTP),
        }
    }
}

/// Every key herd renders for `member`, by file.
pub fn properties(cluster: &ClusterView<'_>, masters: &Masters, member: &Member) -> BTreeMap<ConfigFile, BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut set = |file: ConfigFile, key: &str, value: String| {
        files.entry(file).or_insert_with(BTreeMap::new).insert(key.to_string(), value);
    };
    let me = member.instance.hostname();
    let any = "0.0.0.0";

    // core-site: the file system, and the rack/node-group topology.
    use ConfigFile::{CoreSite, HdfsSite, MapredSite, YarnSite};
    if let Some(nn) = &masters.namenode {
        set(CoreSite, "fs.defaultFS", format!("hdfs://{}:{}", nn.host, nn.rpc_port));
    }
    set(CoreSite, "net.topology.node.switch.mapping.impl", "org.apache.hadoop.net.TableMapping".into());
    set(CoreSite, "net.topology.table.file.name", paths::TOPOLOGY_TABLE.into());
    set(CoreSite, "net.topology.impl", "org.apache.hadoop.net.NetworkTopologyWithNodeGroup".into());
    set(CoreSite, "net.topology.nodegroup.aware", "true".into());

    // hdfs-site.
    if let Some(nn) = &masters.namenode {
        set(HdfsSite, "dfs.namenode.rpc-address", format!("{}:{}", nn.host, nn.rpc_port));
        set(HdfsSite, "dfs.namenode.http-address", format!("{}:{}", nn.host, nn.http_port));
    }
    set(HdfsSite, "dfs.namenode.rpc-bind-host", any.into());
    set(HdfsSite, "dfs.namenode.http-bind-host", any.into());
    set(HdfsSite, "dfs.replication", cluster.spec.hdfs.replication.to_string());
    set(HdfsSite, "dfs.hosts", paths::DFS_HOSTS.into());
    set(HdfsSite, "dfs.hosts.exclude", paths::DFS_EXCLUDE.into());
    set(HdfsSite, "dfs.namenode.datanode.registration.ip-hostname-check", "true".into());
    set(HdfsSite, "dfs.client.use.datanode.hostname", "true".into());
    set(HdfsSite, "dfs.datanode.use.datanode.hostname", "true".into());
    set(HdfsSite, "dfs.datanode.address", format!("{any}:{}", ports::DATANODE_XFER));
    set(HdfsSite, "dfs.datanode.http.address", format!("{any}:{}", ports::DATANODE_HTTP));
    set(HdfsSite, "dfs.datanode.ipc.address", format!("{any}:{}", ports::DATANODE_IPC));
    set(HdfsSite, "dfs.block.replicator.classname", "org.apache.hadoop.hdfs.server.blockmanagement.BlockPlacementPolicyWithNodeGroup".into());
    // NB: Hadoop 3's NameNode ignores `net.topology.impl` unless this is false (it builds a
    // `DFSNetworkTopology` from `dfs.net.topology.impl` instead), and then
    // `BlockPlacementPolicyWithNodeGroup.initialize` refuses to start: "Configured cluster
    // topology should be org.apache.hadoop.net.NetworkTopologyWithNodeGroup".
    set(HdfsSite, "dfs.use.dfs.network.topology", "false".into());
    match member.role {
        Role::Namenode => set(HdfsSite, "dfs.namenode.name.dir", paths::name_dir(member.data_dirs)),
        Role::Datanode => {
            set(HdfsSite, "dfs.datanode.data.dir", paths::data_dirs(member.data_dirs));
            set(HdfsSite, "dfs.datanode.hostname", me.clone());
        }
        Role::Resourcemanager | Role::Nodemanager => {}
    }

    // yarn-site.
    if let Some(rm) = &masters.resourcemanager {
        set(YarnSite, "yarn.resourcemanager.hostname", rm.host.clone());
        if (rm.rpc_port, rm.http_port) != (ports::RM_CLIENT, ports::RM_HTTP) {
            set(YarnSite, "yarn.resourcemanager.address", format!("{}:{}", rm.host, rm.rpc_port));
            set(YarnSite, "yarn.resourcemanager.webapp.address", format!("{}:{}", rm.host, rm.http_port));
        }
    }
    set(YarnSite, "yarn.resourcemanager.bind-host", any.into());
    set(YarnSite, "yarn.nodemanager.bind-host", any.into());
    set(YarnSite, "yarn.resourcemanager.nodes.include-path", paths::YARN_INCLUDE.into());
    set(YarnSite, "yarn.resourcemanager.nodes.exclude-path", paths::YARN_EXCLUDE.into());
    set(YarnSite, "yarn.nodemanager.aux-services", "mapreduce_shuffle".into());
    set(YarnSite, "yarn.scheduler.minimum-allocation-mb", "128".into());
    set(YarnSite, "yarn.nodemanager.vmem-check-enabled", "false".into());
    if member.role == Role::Nodemanager {
        let memory = herd_api::hadoop::nodemanager_container_memory(member.memory);
        set(YarnSite, "yarn.nodemanager.hostname", me.clone());
        set(YarnSite, "yarn.nodemanager.address", format!("{me}:{}", ports::NODEMANAGER_RPC));
        set(YarnSite, "yarn.nodemanager.localizer.address", format!("{me}:{}", ports::NODEMANAGER_LOCALIZER));
        set(YarnSite, "yarn.nodemanager.webapp.address", format!("{me}:{}", ports::NODEMANAGER_HTTP));
        set(YarnSite, "yarn.nodemanager.resource.memory-mb", (memory.0 >> 20).to_string());
        set(YarnSite, "yarn.nodemanager.resource.cpu-vcores", (member.cpu.0 / 1000).max(1).to_string());
    }

    // mapred-site: MapReduce on YARN. Hadoop 3's tasks find MapReduce through
    // HADOOP_MAPRED_HOME, which the NodeManager's launch script expands.
    set(MapredSite, "mapreduce.framework.name", "yarn".into());
    for key in ["yarn.app.mapreduce.am.env", "mapreduce.map.env", "mapreduce.reduce.env"] {
        set(MapredSite, key, "HADOOP_MAPRED_HOME=$HADOOP_HOME".into());
    }
    files
}
