//! Every key herd renders or owns is one Hadoop knows: checked against Hadoop 3.4.1's own
//! `*-default.xml`, committed unchanged under `tests/fixtures/hadoop/defaults/` (see SOURCES
//! there).

use std::collections::{BTreeMap, BTreeSet};

use herd_api::Role;
use herd_api::hadoop::{ConfigFile, OWNED_KEYS};

use super::tests::{SPEC, members, parse, spec};
use super::{ClusterView, render};

const CORE: &str = include_str!("../../../tests/fixtures/hadoop/defaults/core-default.xml");
const HDFS: &str = include_str!("../../../tests/fixtures/hadoop/defaults/hdfs-default.xml");
const YARN: &str = include_str!("../../../tests/fixtures/hadoop/defaults/yarn-default.xml");
const MAPRED: &str = include_str!("../../../tests/fixtures/hadoop/defaults/mapred-default.xml");

/// Keys Hadoop reads but does not list in its defaults, each with where it is documented.
const NOT_IN_DEFAULTS: &[(&str, &str)] = &[
    // Read by no class of Hadoop 3.4.1 (a Hadoop 1 key), but the documented configuration of
    // BlockPlacementPolicyWithNodeGroup still sets it: hadoop-hdfs/src/site/markdown/
    // HdfsBlockPlacementPolicies.md. Harmless, kept for readers and older tools.
    ("net.topology.nodegroup.aware", "HdfsBlockPlacementPolicies.md"),
    // MRJobConfig.MAP_ENV and REDUCE_ENV (hadoop-mapreduce-client-core); mapred-default.xml
    // lists both only inside a comment, "so that it won't override mapred.child.env".
    ("mapreduce.map.env", "MRJobConfig.MAP_ENV"),
    ("mapreduce.reduce.env", "MRJobConfig.REDUCE_ENV"),
];

fn defaults() -> BTreeMap<ConfigFile, BTreeSet<String>> {
    [(ConfigFile::CoreSite, CORE), (ConfigFile::HdfsSite, HDFS), (ConfigFile::YarnSite, YARN), (ConfigFile::MapredSite, MAPRED)]
        .into_iter()
        .map(|(file, text)| (file, parse(text).into_keys().collect()))
        .collect()
}

fn known(defaults: &BTreeMap<ConfigFile, BTreeSet<String>>, key: &str) -> Option<ConfigFile> {
    defaults.iter().find(|(_, keys)| keys.contains(key)).map(|(file, _)| *file)
}

#[test]
fn the_defaults_are_hadoop_3_4_1() {
    let defaults = defaults();
    assert!(defaults.values().all(|keys| keys.len() > 100), "{:?}", defaults.values().map(BTreeSet::len).collect::<Vec<_>>());
    assert!(defaults[&ConfigFile::HdfsSite].contains("dfs.namenode.rpc-address"));
}

#[test]
fn every_rendered_key_exists_in_hadoop() {
    let defaults = defaults();
    let mut spec = spec(SPEC);
    spec.config_overrides.clear();
    for pool in spec.pools.values_mut() {
        pool.config_overrides.clear();
    }
    let members = members();
    let cluster = ClusterView { spec: &spec, members: &members, leaving: Default::default() };
    let mut checked = 0;
    for member in &members {
        let config = render(&cluster, &member.instance).unwrap();
        for file in ConfigFile::ALL {
            for key in parse(&config.files[file.as_str()].to_str()).keys() {
                checked += 1;
                if NOT_IN_DEFAULTS.iter().any(|(k, _)| k == key) {
                    assert_eq!(known(&defaults, key), None, "{key} is in the defaults now: drop it from NOT_IN_DEFAULTS");
                    continue;
                }
                // A key belongs in the site file of the defaults that list it.
                assert_eq!(known(&defaults, key), Some(file), "{} renders {key} in {file}", member.instance);
            }
        }
        assert!(member.role != Role::Nodemanager || !config.files["yarn-site.xml"].is_empty());
    }
    assert!(checked > 100, "only {checked} keys checked");
}

#[test]
fn every_owned_key_exists_in_hadoop_in_its_file() {
    let defaults = defaults();
    for &(file, key, _) in OWNED_KEYS {
        if NOT_IN_DEFAULTS.iter().any(|(k, _)| *k == key) {
            continue;
        }
        assert_eq!(known(&defaults, key), Some(file), "owned key {key}");
    }
}
