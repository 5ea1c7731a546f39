//! NameNode and DataNode doubles and the `hdfs` command.
//!
//! # Layout
//! - [`proto`]: the wire between the doubles and the HDFS keys they read.
//! - [`namesystem`]: the NameNode's state without I/O (namespace, replicas, placement,
//!   redundancy, decommission, liveness, safe mode).
//! - [`topology`]: the topology table and node groups.
//! - [`namenode`]: the NameNode server (RPC routes, `/jmx`, `/fsck`, monitors, fsimage on disk).
//! - [`jmx`]: the NameNode's beans in real Hadoop's shape.
//! - [`datanode`]: the DataNode (registration, heartbeats, block reports, replica files,
//!   block transfer).
//! - [`client`]: the `hdfs` command.

pub mod client;
pub mod datanode;
pub mod jmx;
pub mod namenode;
pub mod namesystem;
pub mod proto;
pub mod topology;

use std::process::ExitCode;

use crate::common::{init_log, log, shutdown_banner, shutdown_signal, startup_banner};
use crate::conf::{self, Conf};

/// Runs the NameNode or DataNode double until SIGTERM or SIGINT (exit 0); a configuration that
/// does not parse, or a failure to start, logs and exits 1 like Hadoop.
pub fn daemon(role: &str) -> ExitCode {
    let (class, daemon) = match role {
        "namenode" => ("org.apache.hadoop.hdfs.server.namenode.NameNode", "NameNode"),
        _ => ("org.apache.hadoop.hdfs.server.datanode.DataNode", "DataNode"),
    };
    init_log(role);
    let host = conf::hostname();
    let ip = conf::resolve(&host).map(|i| i.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    startup_banner(class, daemon, &host, &ip);
    let fail = |e: anyhow::Error| {
        log("ERROR", class, &format!("Failed to start {}.\n{e}", daemon.to_ascii_lowercase()));
        log("INFO", "org.apache.hadoop.util.ExitUtil", &format!("Exiting with status 1: {e}"));
        shutdown_banner(class, daemon, &host, &ip);
        ExitCode::from(1)
    };
    let hc = match Conf::load().and_then(|c| proto::HdfsConf::from(&c)) {
        Ok(hc) => hc,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e.into()),
    };
    let result = rt.block_on(async {
        match role {
            "namenode" => namenode::run(hc, host.clone(), shutdown_signal()).await,
            _ => datanode::run(hc, host.clone(), shutdown_signal()).await,
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => {
            shutdown_banner(class, daemon, &host, &ip);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `hdfs ARGS...`.
pub fn command(args: &[String]) -> ExitCode {
    client::command(args)
}
