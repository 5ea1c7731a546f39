//! Table and golden tests of the renderer over a small cluster: a NameNode and a
//! ResourceManager on host h1 (rack r1), DataNodes on h1 and h2 (no rack), a NodeManager on h2.

use std::collections::{BTreeMap, BTreeSet};

use herd_api::ClusterSpec;
use herd_api::Role;
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};

use super::*;

pub(super) const SPEC: &str = "\
tenant: acme
name: prod
images:
  namenode: r/namenode:3.4.1
  resourcemanager: r/resourcemanager:3.4.1
  datanode: r/datanode:3.4.1
  nodemanager: r/nodemanager:3.4.1
hdfs: {replication: 2}
configOverrides:
  core-site.xml:
    io.file.buffer.size: '131072'
  hdfs-site.xml:
    dfs.blocksize: 128m
pools:
  namenode: {replicas: 1, cpu: 1, memory: 2Gi}
  resourcemanager: {replicas: 1, cpu: 1, memory: 2Gi}
  datanode:
    replicas: 2
    cpu: 500m
    memory: 1Gi
    configOverrides:
      hdfs-site.xml:
        dfs.blocksize: 256m
  nodemanager: {replicas: 1, cpu: 2500m, memory: 4Gi}
";

pub(super) fn spec(text: &str) -> ClusterSpec {
    herd_api::yaml::parse_cluster_spec(text).unwrap()
}

fn id(role: Role, n: u32) -> InstanceRef {
    InstanceRef::new("acme", "prod", role, n)
}

/// `size`: CPU millicores and memory MiB.
fn member(role: Role, n: u32, host: &str, rack: Option<&str>, ip: Option<[u8; 4]>, data_dirs: usize, size: (u64, u64)) -> Member {
    let (cpu, memory_mib) = size;
    Member {
        instance: id(role, n),
        role,
        host: Some(host.into()),
        rack: rack.map(Into::into),
        ip: ip.map(Into::into),
        data_dirs,
        cpu: Cpu(cpu),
        memory: Memory(memory_mib << 20),
    }
}

pub(super) fn members() -> Vec<Member> {
    vec![
        member(Role::Namenode, 0, "h1", Some("r1"), Some([10, 88, 1, 2]), 1, (1000, 2048)),
        member(Role::Resourcemanager, 0, "h1", Some("r1"), Some([10, 88, 1, 3]), 0, (1000, 2048)),
        member(Role::Datanode, 0, "h1", Some("/r1"), Some([10, 88, 1, 4]), 2, (500, 1024)),
        member(Role::Datanode, 1, "h2", None, None, 0, (500, 1024)),
        member(Role::Nodemanager, 0, "h2", None, Some([10, 88, 2, 2]), 0, (2500, 4096)),
    ]
}

fn view<'a>(spec: &'a ClusterSpec, members: &'a [Member]) -> ClusterView<'a> {
    ClusterView { spec, members, leaving: BTreeSet::new() }
}

/// A rendered file, parsed back as Hadoop's `Configuration` would read it.
pub(super) fn parse(xml: &str) -> BTreeMap<String, String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "configuration");
    doc.descendants()
        .filter(|n| n.has_tag_name("property"))
        .map(|p| {
            let child = |tag: &str| p.children().find(|c| c.has_tag_name(tag)).and_then(|c| c.text()).unwrap_or("").to_string();
            (child("name"), child("value"))
        })
        .collect()
}

fn props(config: &HadoopConfig, file: &str) -> BTreeMap<String, String> {
    parse(&config.files[file].to_str())
}

const GOLDEN_CORE_SITE: &str = r#"<?xml version="1.0"?>
<!-- Rendered by herd for acme/prod/datanode-0; edits are overwritten. -->
<configuration>
  <property>
    <name>fs.defaultFS</name>
    <value>hdfs://namenode-0.prod.acme:8020</value>
  </property>
  <property>
    <name>io.file.buffer.size</name>
    <value>131072</value>
  </property>
  <property>
    <name>net.topology.impl</name>
    <value>org.apache.hadoop.net.NetworkTopologyWithNodeGroup</value>
  </property>
  <property>
    <name>net.topology.node.switch.mapping.impl</name>
    <value>org.apache.hadoop.net.TableMapping</value>
  </property>
  <property>
    <name>net.topology.nodegroup.aware</name>
    <value>true</value>
  </property>
  <property>
    <name>net.topology.table.file.name</name>
    <value>/etc/hadoop/conf/topology.table</value>
  </property>
</configuration>
"#;

const GOLDEN_HDFS_SITE: &str = r#"<?xml version="1.0"?>
<!-- Rendered by herd for acme/prod/datanode-0; edits are overwritten. -->
<configuration>
  <property>
    <name>dfs.block.replicator.classname</name>
    <value>org.apache.hadoop.hdfs.server.blockmanagement.BlockPlacementPolicyWithNodeGroup</value>
  </property>
  <property>
    <name>dfs.blocksize</name>
    <value>256m</value>
  </property>
  <property>
    <name>dfs.client.use.datanode.hostname</name>
    <value>true</value>
  </property>
  <property>
    <name>dfs.datanode.address</name>
    <value>0.0.0.0:9866</value>
  </property>
  <property>
    <name>dfs.datanode.data.dir</name>
    <value>file:///hadoop/dfs/data0,file:///hadoop/dfs/data1</value>
  </property>
  <property>
    <name>dfs.datanode.hostname</name>
    <value>datanode-0.prod.acme</value>
  </property>
  <property>
    <name>dfs.datanode.http.address</name>
    <value>0.0.0.0:9864</value>
  </property>
  <property>
    <name>dfs.datanode.ipc.address</name>
    <value>0.0.0.0:9867</value>
  </property>
  <property>
    <name>dfs.datanode.use.datanode.hostname</name>
    <value>true</value>
  </property>
  <property>
    <name>dfs.hosts</name>
    <value>/etc/hadoop/conf/dfs.hosts</value>
  </property>
  <property>
    <name>dfs.hosts.exclude</name>
    <value>/etc/hadoop/conf/dfs.exclude</value>
  </property>
  <property>
    <name>dfs.namenode.datanode.registration.ip-hostname-check</name>
    <value>true</value>
  </property>
  <property>
    <name>dfs.namenode.http-address</name>
    <value>namenode-0.prod.acme:9870</value>
  </property>
  <property>
    <name>dfs.namenode.http-bind-host</name>
    <value>0.0.0.0</value>
  </property>
  <property>
    <name>dfs.namenode.rpc-address</name>
    <value>namenode-0.prod.acme:8020</value>
  </property>
  <property>
    <name>dfs.namenode.rpc-bind-host</name>
    <value>0.0.0.0</value>
  </property>
  <property>
    <name>dfs.replication</name>
    <value>2</value>
  </property>
  <property>
    <name>dfs.use.dfs.network.topology</name>
    <value>false</value>
  </property>
</configuration>
"#;

const GOLDEN_TOPOLOGY: &str = "\
# Rendered by herd: <name or address> /<rack>/<host>
datanode-0.prod.acme /r1/h1
10.88.1.4 /r1/h1
datanode-1.prod.acme /default-rack/h2
nodemanager-0.prod.acme /default-rack/h2
10.88.2.2 /default-rack/h2
";

#[test]
fn golden_datanode_config() {
    let spec = spec(SPEC);
    let members = members();
    let config = render(&view(&spec, &members), &id(Role::Datanode, 0)).unwrap();
    assert_eq!(config.files["core-site.xml"], GOLDEN_CORE_SITE);
    assert_eq!(config.files["hdfs-site.xml"], GOLDEN_HDFS_SITE);
    let names: Vec<_> = config.files.keys().map(String::as_str).collect();
    assert_eq!(names, ["core-site.xml", "hdfs-site.xml", "mapred-site.xml", "yarn-site.xml"]);
    // Live files are the masters': a worker's config does not grow with its cluster.
    assert!(config.live_files.is_empty(), "{:?}", config.live_files.keys());
    assert!(config.refresh.is_empty());
    let nn = render(&view(&spec, &members), &id(Role::Namenode, 0)).unwrap();
    assert_eq!(nn.live_files["topology.table"], GOLDEN_TOPOLOGY);
    let live: Vec<_> = nn.live_files.keys().map(String::as_str).collect();
    assert_eq!(live, ["dfs.exclude", "dfs.hosts", "topology.table", "yarn.exclude", "yarn.include"]);
}

#[test]
fn a_workers_config_does_not_depend_on_its_address() {
    let spec = spec(SPEC);
    for k in [2, 3, 4] {
        let with = members();
        let mut without = members();
        without[k].ip = if with[k].ip.is_some() { None } else { Some([10, 88, 9, 9].into()) };
        assert!(with[k].same_worker_config(&without[k]) && with[k] != without[k]);
        let a = render(&view(&spec, &with), &with[k].instance).unwrap();
        let b = render(&view(&spec, &without), &without[k].instance).unwrap();
        assert_eq!(a, b, "{}'s config changed with its address: the workers' memo would serve a stale one", with[k].instance);
    }
    // What a worker's config does depend on is not the same.
    let mut moved = members();
    moved[2].data_dirs = 3;
    assert!(!members()[2].same_worker_config(&moved[2]));
}

#[test]
fn every_role_by_table() {
    let spec = spec(SPEC);
    let members = members();
    let cluster = view(&spec, &members);
    // (instance, file, key, Some(value) or None for absent)
    let table: &[(InstanceRef, &str, &str, Option<&str>)] = &[
        (id(Role::Namenode, 0), "hdfs-site.xml", "dfs.namenode.name.dir", Some("file:///hadoop/dfs/data0/name")),
        (id(Role::Namenode, 0), "hdfs-site.xml", "dfs.datanode.data.dir", None),
        (id(Role::Namenode, 0), "hdfs-site.xml", "dfs.blocksize", Some("128m")),
        (id(Role::Namenode, 0), "core-site.xml", "io.file.buffer.size", Some("131072")),
        (id(Role::Datanode, 1), "hdfs-site.xml", "dfs.datanode.data.dir", Some("file:///hadoop/dfs/data")),
        (id(Role::Datanode, 1), "hdfs-site.xml", "dfs.datanode.hostname", Some("datanode-1.prod.acme")),
        (id(Role::Datanode, 1), "hdfs-site.xml", "dfs.namenode.name.dir", None),
        (id(Role::Resourcemanager, 0), "yarn-site.xml", "yarn.resourcemanager.hostname", Some("resourcemanager-0.prod.acme")),
        (id(Role::Resourcemanager, 0), "yarn-site.xml", "yarn.resourcemanager.address", None),
        (id(Role::Resourcemanager, 0), "yarn-site.xml", "yarn.resourcemanager.nodes.exclude-path", Some("/etc/hadoop/conf/yarn.exclude")),
        (id(Role::Resourcemanager, 0), "yarn-site.xml", "yarn.nodemanager.resource.memory-mb", None),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.resourcemanager.hostname", Some("resourcemanager-0.prod.acme")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.hostname", Some("nodemanager-0.prod.acme")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.address", Some("nodemanager-0.prod.acme:8041")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.localizer.address", Some("nodemanager-0.prod.acme:8040")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.webapp.address", Some("nodemanager-0.prod.acme:8042")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.bind-host", Some("0.0.0.0")),
        // 4 GiB less the NodeManager's 512 MiB heap (an eighth).
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.resource.memory-mb", Some("3584")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.resource.cpu-vcores", Some("2")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.scheduler.minimum-allocation-mb", Some("128")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.aux-services", Some("mapreduce_shuffle")),
        (id(Role::Nodemanager, 0), "yarn-site.xml", "yarn.nodemanager.vmem-check-enabled", Some("false")),
        (id(Role::Nodemanager, 0), "mapred-site.xml", "mapreduce.framework.name", Some("yarn")),
        (id(Role::Nodemanager, 0), "hdfs-site.xml", "dfs.blocksize", Some("128m")),
        (id(Role::Nodemanager, 0), "core-site.xml", "fs.defaultFS", Some("hdfs://namenode-0.prod.acme:8020")),
    ];
    for (instance, file, key, want) in table {
        let config = render(&cluster, instance).unwrap();
        let got = props(&config, file);
        assert_eq!(got.get(*key).map(String::as_str), *want, "{instance} {file} {key}");
    }
}

#[test]
fn refresh_commands_by_role() {
    let spec = spec(SPEC);
    let members = members();
    let cluster = view(&spec, &members);
    let refresh = |i: InstanceRef| render(&cluster, &i).unwrap().refresh;
    assert_eq!(refresh(id(Role::Namenode, 0)), [["hdfs", "dfsadmin", "-refreshNodes"]]);
    assert_eq!(refresh(id(Role::Resourcemanager, 0)), [["yarn", "rmadmin", "-refreshNodes"]]);
    assert!(refresh(id(Role::Datanode, 0)).is_empty());
    assert!(refresh(id(Role::Nodemanager, 0)).is_empty());
}

#[test]
fn a_single_vcore_at_least() {
    let spec = spec(SPEC);
    let mut members = members();
    members[4].cpu = Cpu(500);
    let config = render(&view(&spec, &members), &id(Role::Nodemanager, 0)).unwrap();
    assert_eq!(props(&config, "yarn-site.xml")["yarn.nodemanager.resource.cpu-vcores"], "1");
}

#[test]
fn override_values_are_escaped_and_round_trip() {
    let hostile = "<value>x</value></property><property><name>fs.defaultFS</name><value>evil & \"quoted\" 'single' ]]> tab\tnewline\n end ";
    let mut spec = spec(SPEC);
    spec.config_overrides.entry(ConfigFile::CoreSite).or_default().insert("herd.test.hostile".into(), hostile.into());
    spec.config_overrides.entry(ConfigFile::CoreSite).or_default().insert("herd.test.<key>&".into(), "v".into());
    let members = members();
    let config = render(&view(&spec, &members), &id(Role::Datanode, 0)).unwrap();
    let core = props(&config, "core-site.xml");
    assert_eq!(core["herd.test.hostile"], hostile);
    assert_eq!(core["herd.test.<key>&"], "v");
    assert_eq!(core["fs.defaultFS"], "hdfs://namenode-0.prod.acme:8020");
    assert!(!config.files["core-site.xml"].to_str().contains("]]>"));
}

#[test]
fn pool_overrides_win_over_the_clusters() {
    let spec = spec(SPEC);
    let members = members();
    let cluster = view(&spec, &members);
    let blocksize = |i| props(&render(&cluster, &i).unwrap(), "hdfs-site.xml")["dfs.blocksize"].clone();
    assert_eq!(blocksize(id(Role::Datanode, 0)), "256m");
    assert_eq!(blocksize(id(Role::Datanode, 1)), "256m");
    assert_eq!(blocksize(id(Role::Namenode, 0)), "128m");
}

#[test]
fn external_masters() {
    let text = SPEC
        .replace("  namenode: {replicas: 1, cpu: 1, memory: 2Gi}\n", "")
        .replace("  resourcemanager: {replicas: 1, cpu: 1, memory: 2Gi}\n", "")
        .replace(
            "hdfs: {replication: 2}\n",
            "hdfs: {replication: 2}\nexternal:\n  namenode: {host: nn.corp.example.com, rpcPort: 9000}\n  resourcemanager: {host: 10.0.0.5, httpPort: 8090}\n",
        );
    let spec = spec(&text);
    let members: Vec<Member> = members().into_iter().filter(|m| matches!(m.role, Role::Datanode | Role::Nodemanager)).collect();
    let config = render(&view(&spec, &members), &id(Role::Nodemanager, 0)).unwrap();
    let core = props(&config, "core-site.xml");
    let hdfs = props(&config, "hdfs-site.xml");
    let yarn = props(&config, "yarn-site.xml");
    assert_eq!(core["fs.defaultFS"], "hdfs://nn.corp.example.com:9000");
    assert_eq!(hdfs["dfs.namenode.rpc-address"], "nn.corp.example.com:9000");
    assert_eq!(hdfs["dfs.namenode.http-address"], "nn.corp.example.com:9870");
    assert_eq!(yarn["yarn.resourcemanager.hostname"], "10.0.0.5");
    assert_eq!(yarn["yarn.resourcemanager.address"], "10.0.0.5:8032");
    assert_eq!(yarn["yarn.resourcemanager.webapp.address"], "10.0.0.5:8090");
}

#[test]
fn workers_without_masters_render_without_master_keys() {
    let text = SPEC
        .replace("  namenode: {replicas: 1, cpu: 1, memory: 2Gi}\n", "")
        .replace("  resourcemanager: {replicas: 1, cpu: 1, memory: 2Gi}\n", "");
    let spec = spec(&text);
    let members = members();
    let config = render(&view(&spec, &members), &id(Role::Datanode, 0)).unwrap();
    assert!(!props(&config, "core-site.xml").contains_key("fs.defaultFS"));
    assert!(!props(&config, "hdfs-site.xml").contains_key("dfs.namenode.rpc-address"));
    assert!(!props(&config, "yarn-site.xml").contains_key("yarn.resourcemanager.hostname"));
}

#[test]
fn leaving_members_are_in_the_exclude_files() {
    let spec = spec(SPEC);
    let mut members = members();
    members.push(member(Role::Nodemanager, 1, "h1", Some("r1"), None, 0, (1000, 1024)));
    let mut cluster = view(&spec, &members);
    cluster.leaving = BTreeSet::from([id(Role::Datanode, 1), id(Role::Nodemanager, 1), id(Role::Nodemanager, 0)]);
    let config = render(&cluster, &id(Role::Namenode, 0)).unwrap();
    assert_eq!(config.live_files["dfs.exclude"], "datanode-1.prod.acme\n");
    assert_eq!(config.live_files["yarn.exclude"], "nodemanager-0.prod.acme\nnodemanager-1.prod.acme\n");
    assert_eq!(config.live_files["dfs.hosts"], "");
    assert_eq!(config.live_files["yarn.include"], "");
    // Leaving members keep their topology lines until they are gone.
    assert!(config.live_files["topology.table"].contains("datanode-1.prod.acme /default-rack/h2\n"));
    // Nothing leaving: empty exclude files.
    cluster.leaving.clear();
    let config = render(&cluster, &id(Role::Namenode, 0)).unwrap();
    assert_eq!(config.live_files["dfs.exclude"], "");
    assert_eq!(config.live_files["yarn.exclude"], "");
    let rm = render(&cluster, &id(Role::Resourcemanager, 0)).unwrap();
    assert_eq!(rm.refresh, [["yarn", "rmadmin", "-refreshNodes"]]);
    // A NodeManager draining: the refresh is graceful, with the pool's timeout.
    cluster.leaving = BTreeSet::from([id(Role::Nodemanager, 1)]);
    let rm = render(&cluster, &id(Role::Resourcemanager, 0)).unwrap();
    assert_eq!(rm.refresh, [["yarn", "rmadmin", "-refreshNodes", "-g", "3600", "-server"]]);
    // Only DataNodes leaving: the NameNode refresh is enough, YARN's stays immediate.
    cluster.leaving = BTreeSet::from([id(Role::Datanode, 1)]);
    let rm = render(&cluster, &id(Role::Resourcemanager, 0)).unwrap();
    assert_eq!(rm.refresh, [["yarn", "rmadmin", "-refreshNodes"]]);
}

#[test]
fn output_does_not_depend_on_member_order() {
    let spec = spec(SPEC);
    let members = members();
    let mut reversed = members.clone();
    reversed.reverse();
    for m in &members {
        let a = render(&view(&spec, &members), &m.instance).unwrap();
        let b = render(&view(&spec, &reversed), &m.instance).unwrap();
        assert_eq!(a, b, "{}", m.instance);
        assert_eq!(a.files_hash(), b.files_hash());
    }
}

#[test]
fn pending_members_and_odd_rack_labels() {
    let spec = spec(SPEC);
    let mut members = members();
    members[3].host = None;
    members[2].rack = Some("/dc1/row 2/".into());
    let config = render(&view(&spec, &members), &id(Role::Namenode, 0)).unwrap();
    let table = &config.live_files["topology.table"];
    assert!(!table.contains("datanode-1"), "{table}");
    assert!(table.contains("datanode-0.prod.acme /dc1-row-2/h1\n"), "{table}");
}

#[test]
fn render_errors() {
    let spec = spec(SPEC);
    let members = members();
    let stranger = id(Role::Datanode, 7);
    assert_eq!(render(&view(&spec, &members), &stranger), Err(RenderError::NotAMember(stranger)));
    let mut twice = members.clone();
    twice.push(members[2].clone());
    assert_eq!(render(&view(&spec, &twice), &id(Role::Datanode, 0)), Err(RenderError::DuplicateMember(id(Role::Datanode, 0))));
    let text = SPEC.replace("  nodemanager: {replicas: 1, cpu: 2500m, memory: 4Gi}\n", "");
    let no_nm = self::spec(&text);
    assert_eq!(
        render(&view(&no_nm, &members), &id(Role::Nodemanager, 0)),
        Err(RenderError::NoPool { instance: id(Role::Nodemanager, 0), role: Role::Nodemanager })
    );
}

#[test]
fn daemon_env_sets_the_heap() {
    let members = members();
    let env = |n: usize| daemon_env(&members[n])["HADOOP_HEAPSIZE_MAX"].clone();
    assert_eq!(env(0), "1024m"); // NameNode, 2 GiB: half
    assert_eq!(env(2), "512m"); // DataNode, 1 GiB: half
    assert_eq!(env(4), "512m"); // NodeManager, 4 GiB: an eighth
}

#[test]
fn workers_rendered_by_shape_are_exactly_what_rendering_each_gives() {
    // Workers of two shapes on many hosts, racks and addresses, named by ordinals of every
    // length, and one override that holds the stand-in's own name (that shape is then
    // rendered per member, and still exactly).
    let text = SPEC.replace("dfs.blocksize: 256m", "dfs.blocksize: 256m\n        herd.note: datanode-4294967295 datanode-4294967294");
    for (spec, by_stand_in) in [(spec(SPEC), 4), (spec(&text), 2)] {
        let mut members = Vec::new();
        for n in [0, 1, 7, 10, 99, 100, 4242, 4294967293] {
            let rack = (n % 2 == 0).then_some("r1");
            let ip = (n % 3 == 0).then_some([10, 88, 0, (n % 250) as u8 + 2]);
            members.push(member(Role::Datanode, n, &format!("h{n}"), rack, ip, 1 + (n as usize % 2), (500, 1024)));
            members.push(member(Role::Nodemanager, n, &format!("h{n}"), rack, ip, 0, (2500 + 500 * u64::from(n % 2), 4096)));
        }
        members.push(member(Role::Namenode, 0, "h1", Some("r1"), Some([10, 88, 0, 1]), 1, (1000, 2048)));
        let cluster = view(&spec, &members);
        let masters = site::Masters::of(&cluster);
        let mut shapes = Shapes::default();
        for m in &members {
            assert_eq!(shapes.render(&cluster, &masters, m).unwrap(), render_with(&cluster, &masters, m).unwrap(), "{}", m.instance);
        }
        // Two DataNode and two NodeManager shapes were rendered once each.
        assert_eq!(shapes.by.len(), 4);
        assert_eq!(shapes.by.values().filter(|s| s.is_some()).count(), by_stand_in, "shapes rendered by a stand-in");
    }
}

#[test]
fn only_plain_names_take_a_stand_ins_place() {
    for (name, ok) in [("datanode-3", true), ("a", true), ("datanode--3", false), ("-a", false), ("a-", false), ("A-1", false), ("a.b", false), ("", false)] {
        assert_eq!(plain(name), ok, "{name}");
    }
}
