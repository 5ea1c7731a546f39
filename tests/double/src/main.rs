//! TEST DOUBLE of Hadoop (NOT Hadoop): one multi-call binary copied into herd's testbed role
//! images. As a daemon it plays a NameNode, DataNode, ResourceManager or NodeManager in the
//! slice herd uses (registration through the rendered config, heartbeats, block reports,
//! replicas stored as files, decommission, `/jmx` and `/ws/v1` in the shapes of real
//! captures); as `hdfs` or `yarn` (by argv[0] or first argument) it gives the command-line
//! subset herd and its tests run, with Hadoop 3's output and exit codes.
//!
//! # Layout
//! - [`common`]: logging, banners, the shutdown signal, time formatting (shared by all roles).
//! - [`conf`]: reading `$HADOOP_CONF_DIR/*-site.xml`, the container's hostname, name resolution.
//! - [`hdfs`]: NameNode and DataNode daemons, the `hdfs` command.
//! - [`yarn`]: ResourceManager and NodeManager daemons, the `yarn` command.
//! - [`probe`]: not Hadoop: TCP/UDP listeners, a connect check and a forged-source sender for
//!   herd's isolation tests (`hadoop-double probe ...`).
//!
//! Wire between the doubles: JSON over HTTP on Hadoop's real ports (real Hadoop speaks its
//! own RPC there); what herd reads (`/jmx`, `/ws/v1/cluster/*`) is byte-shape compatible.

mod common;
mod conf;
mod hdfs;
mod probe;
mod yarn;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
    // Multi-call: `hdfs ...` through a symlink, or `hadoop-double hdfs ...`.
    let (cmd, rest) = if argv0 == "hadoop-double" {
        if args.len() < 2 {
            eprintln!("usage: hadoop-double daemon|hdfs|yarn ... (a TEST DOUBLE of Hadoop)");
            return ExitCode::from(255);
        }
        let cmd = args.remove(1);
        (cmd, args.split_off(1))
    } else {
        (argv0, args.split_off(1))
    };
    match cmd.as_str() {
        // `daemon [ROLE]`: the role from the argument or $HERD_ROLE.
        "daemon" => {
            let role = rest.first().cloned().or_else(|| std::env::var("HERD_ROLE").ok()).unwrap_or_default();
            match role.as_str() {
                "namenode" | "datanode" => hdfs::daemon(&role),
                "resourcemanager" | "nodemanager" => yarn::daemon(&role),
                other => {
                    eprintln!("hadoop-double: unknown role `{other}` (namenode, datanode, resourcemanager, nodemanager)");
                    ExitCode::from(2)
                }
            }
        }
        "hdfs" => hdfs::command(&rest),
        "yarn" => yarn::command(&rest),
        "probe" => probe::command(&rest),
        other => {
            eprintln!("hadoop-double: unknown command `{other}` (daemon, hdfs, yarn, probe)");
            ExitCode::from(255)
        }
    }
}
