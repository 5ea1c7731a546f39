//! The HDFS doubles as local processes on loopback: one NameNode and four DataNodes, each on
//! its own 127.a.b.c address named in a test hosts file (`HERD_DOUBLE_HOSTS_FILE`), driven with
//! the `hdfs` command and observed through `/jmx`, fsck and the replica files on disk.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hadoop-double");

struct Cluster {
    dir: tempfile::TempDir,
    net: String,
    hosts: PathBuf,
}

/// A running daemon, killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn site(props: &[(&str, String)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<configuration>\n");
    for (k, v) in props {
        s.push_str(&format!("  <property><name>{k}</name><value>{v}</value></property>\n"));
    }
    s + "</configuration>\n"
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // A random 127.a.b.0/24 so parallel runs do not collide.
        let r = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64 ^ (dir.path().to_string_lossy().len() as u64 * 7919);
        let seed = r.wrapping_mul(6364136223846793005).wrapping_add(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64);
        let net = format!("127.{}.{}", 1 + (seed >> 8) % 250, 1 + (seed >> 24) % 250);
        let hosts = dir.path().join("hosts");
        let mut h = format!("127.0.0.1 localhost\n{net}.10 namenode-0.test\n");
        for i in 0..6 {
            h.push_str(&format!("{net}.{} datanode-{i}.test\n", 20 + i));
        }
        std::fs::write(&hosts, h).unwrap();
        std::fs::write(dir.path().join("topology.table"), "datanode-0.test /rack1/g0\ndatanode-1.test /rack1/g1\ndatanode-2.test /rack2/g2\ndatanode-3.test /rack2/g3\ndatanode-4.test /rack2/g4\n").unwrap();
        std::fs::write(dir.path().join("dfs.exclude"), "").unwrap();
        std::fs::write(dir.path().join("dfs.hosts"), "").unwrap();
        Cluster { dir, net, hosts }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes a config folder for one process.
    fn conf(&self, name: &str, default_fs: &str, data_dirs: &[PathBuf]) -> PathBuf {
        let conf = self.path(&format!("conf-{name}"));
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("core-site.xml"), site(&[("fs.defaultFS", default_fs.to_string()), ("net.topology.table.file.name", self.path("topology.table").display().to_string()), ("net.topology.impl", "org.apache.hadoop.net.NetworkTopologyWithNodeGroup".into())])).unwrap();
        let dirs: Vec<String> = data_dirs.iter().map(|d| format!("file://{}", d.display())).collect();
        std::fs::write(
            conf.join("hdfs-site.xml"),
            site(&[
                ("dfs.namenode.name.dir", format!("file://{}", self.path("name").display())),
                ("dfs.datanode.data.dir", if dirs.is_empty() { format!("file://{}", self.path("unused").display()) } else { dirs.join(",") }),
                ("dfs.replication", "3".into()),
                ("dfs.heartbeat.interval", "300ms".into()),
                ("dfs.namenode.heartbeat.recheck-interval", "500".into()),
                ("dfs.blockreport.intervalMsec", "10000".into()),
                ("dfs.namenode.redundancy.interval.seconds", "1".into()),
                ("dfs.namenode.replication.work.multiplier.per.iteration", "10".into()),
                ("dfs.namenode.replication.max-streams", "10".into()),
                ("dfs.namenode.decommission.interval", "1".into()),
                ("dfs.namenode.reconstruction.pending.timeout-sec", "10".into()),
                ("dfs.namenode.fs-limits.min-block-size", "1024".into()),
                ("dfs.namenode.safemode.extension", "0".into()),
                ("dfs.hosts", self.path("dfs.hosts").display().to_string()),
                ("dfs.hosts.exclude", self.path("dfs.exclude").display().to_string()),
            ]),
        )
        .unwrap();
        conf
    }

    fn nn_fs(&self) -> String {
        "hdfs://namenode-0.test:8020".into()
    }

    fn start(&self, role: &str, name: &str, conf: &Path) -> Daemon {
        let logs = self.path(&format!("logs-{name}"));
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join("stdout");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["daemon", role])
            .env("HADOOP_CONF_DIR", conf)
            .env("HERD_DOUBLE_HOSTS_FILE", &self.hosts)
            .env("HERD_DOUBLE_HOSTNAME", name)
            .env("HADOOP_LOG_DIR", &logs)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn namenode(&self) -> Daemon {
        let conf = self.conf("nn", &self.nn_fs(), &[]);
        self.start("namenode", "namenode-0.test", &conf)
    }

    fn data_dirs(&self, name: &str) -> Vec<PathBuf> {
        vec![self.path(&format!("{name}/data0")), self.path(&format!("{name}/data1"))]
    }

    fn datanode(&self, i: usize, disk: &str) -> Daemon {
        let name = format!("datanode-{i}.test");
        let conf = self.conf(&name, &self.nn_fs(), &self.data_dirs(disk));
        self.start("datanode", &name, &conf)
    }

    fn hdfs(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("hdfs")
            .args(args)
            .env("HADOOP_CONF_DIR", self.path("conf-nn"))
            .env("HERD_DOUBLE_HOSTS_FILE", &self.hosts)
            .env("HERD_DOUBLE_HOSTNAME", "client.test")
            .env("HADOOP_USER_NAME", "root")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn http_get(&self, host_ip: &str, port: u16, path: &str) -> Option<String> {
        let mut s = TcpStream::connect((host_ip, port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string()).or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
    }

    /// One bean from the NameNode's `/jmx`.
    fn bean(&self, name: &str) -> Option<Value> {
        let body = self.http_get(&format!("{}.10", self.net), 9870, &format!("/jmx?qry=Hadoop:service=NameNode,name={name}"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["beans"].get(0).cloned()
    }

    /// A JSON-in-string node map of NameNodeInfo.
    fn nodes(&self, field: &str) -> BTreeMap<String, Value> {
        let Some(info) = self.bean("NameNodeInfo") else { return BTreeMap::new() };
        serde_json::from_str(info[field].as_str().unwrap_or("{}")).unwrap_or_default()
    }

    fn counter(&self, name: &str) -> Option<u64> {
        self.bean("FSNamesystem")?[name].as_u64()
    }

    /// Finalized replica files per block id over the given disks.
    fn replicas(&self, disks: &[&str]) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for disk in disks {
            for d in self.data_dirs(disk) {
                let Ok(pools) = std::fs::read_dir(d.join("current")) else { continue };
                for pool in pools.flatten() {
                    let Ok(files) = std::fs::read_dir(pool.path().join("current/finalized")) else { continue };
                    for f in files.flatten() {
                        let name = f.file_name().to_string_lossy().to_string();
                        if let Some(id) = name.strip_prefix("blk_").filter(|r| !r.contains('_')).and_then(|r| r.parse().ok()) {
                            *out.entry(id).or_default() += 1;
                        }
                    }
                }
            }
        }
        out
    }
}

/// Polls `f` until it returns `Some`, failing with `what` at the deadline.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn hdfs_doubles_write_rereplicate_decommission_and_restart() {
    let c = Cluster::new();
    let mut nn = c.namenode();
    let mut dns: Vec<Option<Daemon>> = (0..4).map(|i| Some(c.datanode(i, &format!("dn{i}")))).collect();
    // A DataNode whose config names the wrong NameNode port never registers.
    let bad_conf = c.conf("datanode-5.test", "hdfs://namenode-0.test:8021", &c.data_dirs("dn5"));
    let bad = c.start("datanode", "datanode-5.test", &bad_conf);

    let live = wait_for(30, "4 live DataNodes", || {
        let live = c.nodes("LiveNodes");
        (live.len() == 4).then_some(live)
    });
    for i in 0..4 {
        let n = &live[&format!("datanode-{i}.test:9866")];
        assert_eq!(n["xferaddr"], format!("{}.{}:9866", c.net, 20 + i));
        assert_eq!(n["adminState"], "In Service");
    }
    assert!(nn.log().contains("STARTUP_MSG: Starting NameNode"));

    // Write 100 blocks of 4 KiB with replication 3.
    let local = c.path("data.bin");
    let data: Vec<u8> = (0..100 * 4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let small = c.hdfs(&["dfs", "-D", "dfs.blocksize=512", "-put", local.to_str().unwrap(), "/small.bin"]);
    assert_eq!(small.status.code(), Some(1));
    assert!(text(&small.stderr).contains("put: Specified block size is less than configured minimum value (dfs.namenode.fs-limits.min-block-size): 512 < 1024"), "{}", text(&small.stderr));
    let put = c.hdfs(&["dfs", "-D", "dfs.blocksize=4096", "-D", "dfs.replication=3", "-put", local.to_str().unwrap(), "/data.bin"]);
    assert!(put.status.success(), "put: {}", text(&put.stderr));

    let ls = c.hdfs(&["dfs", "-ls", "/"]);
    let out = text(&ls.stdout);
    assert!(out.starts_with("Found 1 items\n-rw-r--r--   3 root supergroup     409600 "), "{out}");
    assert!(out.trim_end().ends_with(" /data.bin"), "{out}");

    let fsck = wait_for(20, "fsck HEALTHY with 0 under-replicated", || {
        let f = c.hdfs(&["fsck", "/"]);
        let out = text(&f.stdout);
        (f.status.code() == Some(0) && out.contains(" Under-replicated blocks:\t0 (0.0 %)")).then_some(out)
    });
    assert!(fsck.contains("Status: HEALTHY"), "{fsck}");
    assert!(fsck.contains(" Total blocks (validated):\t100 (avg. block size 4096 B)"), "{fsck}");
    assert!(fsck.contains(" Number of data-nodes:\t4"), "{fsck}");
    assert!(fsck.contains(" Number of racks:\t\t2"), "{fsck}");
    assert!(fsck.contains("The filesystem under path '/' is HEALTHY"), "{fsck}");
    let on_disk = c.replicas(&["dn0", "dn1", "dn2", "dn3"]);
    assert_eq!(on_disk.len(), 100);
    assert!(on_disk.values().all(|n| *n == 3), "{on_disk:?}");

    let cat = c.hdfs(&["dfs", "-cat", "/data.bin"]);
    assert!(cat.stdout == data, "cat returns the bytes written");

    // Kill a DataNode: it goes dead, its blocks are copied back to 3 replicas.
    drop(dns[3].take());
    wait_for(30, "datanode-3 dead", || c.nodes("DeadNodes").contains_key("datanode-3.test:9866").then_some(()));
    assert_eq!(c.counter("NumDeadDataNodes"), Some(1));
    wait_for(60, "re-replication back to 0 under-replicated", || {
        (c.counter("UnderReplicatedBlocks") == Some(0) && c.counter("PendingReplicationBlocks") == Some(0) && c.counter("MissingBlocks") == Some(0)).then_some(())
    });
    let on_disk = wait_for(20, "3 replicas of every block on the live nodes' disks", || {
        let r = c.replicas(&["dn0", "dn1", "dn2"]);
        (r.len() == 100 && r.values().all(|n| *n == 3)).then_some(r)
    });
    assert_eq!(on_disk.values().sum::<usize>(), 300);

    // Recreated elsewhere: an empty disk.
    dns[3] = Some(c.datanode(3, "dn3-new"));
    wait_for(30, "datanode-3 live again", || (c.nodes("LiveNodes").len() == 4).then_some(()));

    // Decommission datanode-0: In Progress, then Decommissioned, never a missing block.
    std::fs::write(c.path("dfs.exclude"), "datanode-0.test\n").unwrap();
    let refresh = c.hdfs(&["dfsadmin", "-refreshNodes"]);
    assert_eq!(text(&refresh.stdout), "Refresh nodes successful\n");
    let state = |c: &Cluster| c.nodes("LiveNodes").get("datanode-0.test:9866").map(|n| n["adminState"].as_str().unwrap_or("").to_string());
    assert_eq!(state(&c).as_deref(), Some("Decommission In Progress"));
    assert!(c.nodes("DecomNodes").contains_key("datanode-0.test:9866"));
    wait_for(60, "datanode-0 Decommissioned", || {
        assert_eq!(c.counter("MissingBlocks"), Some(0));
        (state(&c).as_deref() == Some("Decommissioned")).then_some(())
    });
    assert_eq!(c.counter("NumDecomLiveDataNodes"), Some(1));
    let report = text(&c.hdfs(&["dfsadmin", "-report"]).stdout);
    assert!(report.contains("Live datanodes (4):"), "{report}");
    assert!(report.contains(&format!("Name: {}.20:9866 (datanode-0.test)\nHostname: datanode-0.test\nRack: /rack1/g0\nDecommission Status : Decommissioned", c.net)), "{report}");
    let fsck = text(&c.hdfs(&["fsck", "/"]).stdout);
    assert!(fsck.contains(" Under-replicated blocks:\t0 (0.0 %)") && fsck.contains("is HEALTHY"), "{fsck}");

    // Recommission.
    std::fs::write(c.path("dfs.exclude"), "").unwrap();
    assert!(c.hdfs(&["dfsadmin", "-refreshNodes"]).status.success());
    assert_eq!(state(&c).as_deref(), Some("In Service"));

    // The NameNode stops on SIGTERM with 0 and keeps its files across a restart.
    let pid = nn.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_for(10, "the NameNode to exit", || nn.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
    assert!(nn.log().contains("SHUTDOWN_MSG: Shutting down NameNode at namenode-0.test"));
    let down = c.hdfs(&["dfsadmin", "-report"]);
    assert_eq!(down.status.code(), Some(255));
    assert!(text(&down.stderr).starts_with("report: Call From client.test/"), "{}", text(&down.stderr));
    assert!(text(&down.stderr).contains("to namenode-0.test:8020 failed on connection exception: java.net.ConnectException: Connection refused"));
    nn = c.namenode();
    wait_for(30, "safe mode off with all blocks reported", || {
        let sm = c.hdfs(&["dfsadmin", "-safemode", "get"]);
        (text(&sm.stdout) == "Safe mode is OFF\n" && c.nodes("LiveNodes").len() == 4).then_some(())
    });
    let fsck = text(&c.hdfs(&["fsck", "/"]).stdout);
    assert!(fsck.contains(" Total blocks (validated):\t100 ") && fsck.contains("is HEALTHY"), "{fsck}");

    // The misconfigured DataNode never appeared, and says why.
    let all: Vec<String> = c.nodes("LiveNodes").into_keys().chain(c.nodes("DeadNodes").into_keys()).collect();
    assert!(!all.iter().any(|k| k.starts_with("datanode-5")), "{all:?}");
    assert!(bad.log().contains("Retrying connect to server: namenode-0.test/"), "{}", bad.log());
    drop(nn);
}

#[test]
fn registration_is_refused_outside_the_include_list_and_for_unresolvable_names() {
    let c = Cluster::new();
    std::fs::write(c.path("dfs.hosts"), "datanode-0.test\n").unwrap();
    let _nn = c.namenode();
    let _ok = c.datanode(0, "dn0");
    let refused = c.datanode(1, "dn1");
    // Registers under a name the hosts file does not know (`dfs.datanode.hostname`).
    let conf = c.conf("datanode-4.test", &c.nn_fs(), &c.data_dirs("dn4"));
    let site = std::fs::read_to_string(conf.join("hdfs-site.xml")).unwrap();
    std::fs::write(conf.join("hdfs-site.xml"), site.replace("</configuration>", "<property><name>dfs.datanode.hostname</name><value>ghost.test</value></property></configuration>")).unwrap();
    let ghost = c.start("datanode", "datanode-4.test", &conf);
    wait_for(30, "both refusals logged", || {
        (refused.log().contains("Datanode denied communication with namenode because the host is not in the include-list") && ghost.log().contains("because hostname cannot be resolved"))
            .then_some(())
    });
    let live = wait_for(30, "datanode-0 live", || {
        let l = c.nodes("LiveNodes");
        l.contains_key("datanode-0.test:9866").then_some(l)
    });
    assert_eq!(live.len(), 1, "{live:?}");
}

#[test]
fn command_errors_follow_hadoop() {
    let c = Cluster::new();
    c.conf("nn", &c.nn_fs(), &[]);
    let o = c.hdfs(&["dfs", "-bogus"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(text(&o.stderr).starts_with("-bogus: Unknown command"));
    let o = c.hdfs(&["dfsadmin", "-bogus"]);
    assert_eq!(o.status.code(), Some(255));
    let o = c.hdfs(&["dfs", "-ls", "/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("failed on connection exception: java.net.ConnectException: Connection refused"), "{}", text(&o.stderr));
    // A config that does not parse: the daemon logs and exits 1.
    let bad = c.path("conf-broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("hdfs-site.xml"), "<configuration><property>").unwrap();
    let mut d = c.start("namenode", "namenode-0.test", &bad);
    let status = wait_for(10, "the daemon to exit", || d.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(1));
    assert!(d.log().contains("Exiting with status 1"), "{}", d.log());
}
