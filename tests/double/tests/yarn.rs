//! The YARN doubles as local processes on loopback: each daemon gets its own config folder,
//! a hosts file mapping the cluster's names to 127.X.Y.n (`HERD_DOUBLE_HOSTS_FILE`), its
//! name (`HERD_DOUBLE_HOSTNAME`), and binds to the address its name resolves to. Every wait
//! polls with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hadoop-double");

/// One test's cluster: names, addresses, config folders, and the daemons it started.
struct Testbed {
    dir: PathBuf,
    /// Names to 127.A.B.x: a block of loopback addresses for this test alone (tests run in
    /// parallel).
    hosts: BTreeMap<String, String>,
    daemons: BTreeMap<String, Child>,
}

impl Testbed {
    /// `block` keeps tests apart; the process id keeps parallel runs of the suite apart.
    fn new(name: &str, block: u8) -> Testbed {
        let pid = std::process::id();
        let prefix = format!("127.{}.{}", 100 + block, pid % 250);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("yarn-{name}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut hosts = BTreeMap::new();
        hosts.insert("rm.prod.acme".to_string(), format!("{prefix}.1"));
        for n in 1..=5 {
            hosts.insert(format!("nodemanager-{n}.prod.acme"), format!("{prefix}.{}", n + 1));
        }
        // Resolves, but nothing listens there: a wrong RM address.
        hosts.insert("old-rm.prod.acme".to_string(), format!("{prefix}.250"));
        let text: String = hosts.iter().map(|(n, ip)| format!("{ip}\t{n}\n")).collect();
        std::fs::write(dir.join("hosts"), text).unwrap();
        std::fs::write(dir.join("exclude"), "").unwrap();
        Testbed { dir, hosts, daemons: BTreeMap::new() }
    }

    fn exclude(&self, hosts: &[&str]) {
        std::fs::write(self.dir.join("exclude"), hosts.iter().map(|h| format!("{h}\n")).collect::<String>()).unwrap();
    }

    /// Writes `yarn-site.xml` for one daemon: the cluster's common keys plus `extra`.
    fn conf(&self, name: &str, extra: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.join(format!("conf-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let exclude = self.dir.join("exclude");
        let mut props: BTreeMap<&str, String> = [
            ("yarn.resourcemanager.hostname", "rm.prod.acme".to_string()),
            ("yarn.resourcemanager.nodemanagers.heartbeat-interval-ms", "200".to_string()),
            ("yarn.nm.liveness-monitor.expiry-interval-ms", "3000".to_string()),
            ("yarn.resourcemanager.decommissioning-nodes-watcher.poll-interval-secs", "1".to_string()),
            ("yarn.resourcemanager.nodes.exclude-path", exclude.display().to_string()),
            ("yarn.nodemanager.resource.memory-mb", "4096".to_string()),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            props.insert(k, v.to_string());
        }
        let body: String = props.iter().map(|(k, v)| format!("  <property><name>{k}</name><value>{v}</value></property>\n")).collect();
        std::fs::write(dir.join("yarn-site.xml"), format!("<?xml version=\"1.0\"?>\n<configuration>\n{body}</configuration>\n")).unwrap();
        dir
    }

    fn env(&self, cmd: &mut Command, name: &str, conf: &Path) {
        cmd.env("HADOOP_CONF_DIR", conf)
            .env("HERD_DOUBLE_HOSTS_FILE", self.dir.join("hosts"))
            .env("HERD_DOUBLE_HOSTNAME", name)
            .env("HADOOP_LOG_DIR", self.dir.join(format!("logs-{name}")));
    }

    /// Starts `hadoop-double daemon ROLE` as host `name`.
    fn start(&mut self, role: &str, name: &str, extra: &[(&str, &str)]) {
        let conf = self.conf(name, extra);
        let mut cmd = Command::new(BIN);
        cmd.args(["daemon", role]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        self.env(&mut cmd, name, &conf);
        let child = cmd.spawn().unwrap();
        self.daemons.insert(name.to_string(), child);
    }

    fn start_nm(&mut self, n: u8, extra: &[(&str, &str)]) {
        let name = format!("nodemanager-{n}.prod.acme");
        let addr = format!("{name}:8041");
        let mut all = vec![("yarn.nodemanager.address", addr.as_str())];
        all.extend_from_slice(extra);
        self.start("nodemanager", &name, &all);
    }

    /// The daemon's log file (`$HADOOP_LOG_DIR/<role>.log`).
    fn log(&self, name: &str) -> String {
        let dir = self.dir.join(format!("logs-{name}"));
        ["resourcemanager.log", "nodemanager.log"].iter().filter_map(|f| std::fs::read_to_string(dir.join(f)).ok()).collect()
    }

    /// Runs `yarn ARGS` from the RM's host (its config); (exit code, stdout, stderr).
    fn yarn(&self, args: &[&str]) -> (i32, String, String) {
        let conf = self.dir.join("conf-rm.prod.acme");
        let mut cmd = Command::new(BIN);
        cmd.arg("yarn").args(args);
        self.env(&mut cmd, "rm.prod.acme", &conf);
        let out = cmd.output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// GETs `path` from the RM's web services (8088): (status, JSON body).
    fn rest(&self, path: &str) -> Option<(u16, Value)> {
        let mut s = TcpStream::connect(format!("{}:8088", self.hosts["rm.prod.acme"])).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: rm.prod.acme:8088\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1;
        Some((status, serde_json::from_str(body).ok()?))
    }

    /// The node entries of `/ws/v1/cluster/nodes`, by id.
    fn nodes(&self) -> BTreeMap<String, Value> {
        let Some((200, v)) = self.rest("/ws/v1/cluster/nodes") else { return BTreeMap::new() };
        v["nodes"]["node"].as_array().into_iter().flatten().map(|n| (n["id"].as_str().unwrap_or("").to_string(), n.clone())).collect()
    }

    fn node_state(&self, id: &str) -> Option<String> {
        self.nodes().get(id).and_then(|n| n["state"].as_str().map(str::to_string))
    }

    fn wait_state(&self, id: &str, state: &str, within: Duration) {
        wait(within, &format!("{id} {state}"), || (self.node_state(id).as_deref() == Some(state)).then_some(()));
    }

    /// Waits for a daemon to exit by itself.
    fn wait_exit(&mut self, name: &str, within: Duration) -> ExitStatus {
        let child = self.daemons.get_mut(name).unwrap();
        wait(within, &format!("{name} exits"), || child.try_wait().ok().flatten())
    }

    fn kill(&mut self, name: &str) {
        if let Some(mut c) = self.daemons.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn sigterm(&mut self, name: &str) -> ExitStatus {
        let pid = self.daemons[name].id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.wait_exit(name, Duration::from_secs(10))
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.daemons) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kept for a look when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `f` every 50 ms until it gives a value, failing after `within`.
fn wait<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const NM1: &str = "nodemanager-1.prod.acme:8041";
const NM2: &str = "nodemanager-2.prod.acme:8041";
const UP: Duration = Duration::from_secs(15);

/// JSON flattened to `path → type` (array items as `[]`), for shape comparison.
fn shape(v: &Value, path: &str, out: &mut BTreeMap<String, &'static str>) {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.insert(path.to_string(), kind);
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| shape(v, &format!("{path}.{k}"), out)),
        Value::Array(a) => a.iter().for_each(|v| shape(v, &format!("{path}[]"), out)),
        _ => {}
    }
}

/// Every field of every capture named `rm-<what>.*.json` is in `ours`, with the same JSON type.
fn assert_shape_like_captures(what: &str, ours: &Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/hadoop");
    let mut ours_shape = BTreeMap::new();
    shape(ours, "", &mut ours_shape);
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with(&format!("rm-cluster-{what}.")) {
            continue;
        }
        let capture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut theirs = BTreeMap::new();
        shape(&capture, "", &mut theirs);
        for (field, kind) in theirs {
            assert_eq!(ours_shape.get(&field), Some(&kind), "{name}: field `{field}` ({kind}) missing or of another type in {ours}");
        }
        compared += 1;
    }
    assert!(compared >= 2, "no captures of {what} in {}", dir.display());
}

#[test]
fn nodemanagers_join_through_the_config_and_bad_ones_never_do() {
    let mut tb = Testbed::new("join", 1);
    tb.start("resourcemanager", "rm.prod.acme", &[("yarn.scheduler.minimum-allocation-mb", "1024")]);
    wait(UP, "RM web services", || tb.rest("/ws/v1/cluster/info"));
    // Before any NM: YARN renders the empty list as null.
    assert_eq!(tb.rest("/ws/v1/cluster/nodes").unwrap().1, serde_json::json!({"nodes": null}));
    tb.start_nm(1, &[]);
    tb.start_nm(2, &[]);
    // Below minimum-allocation-mb: told SHUTDOWN at registration.
    tb.start_nm(3, &[("yarn.nodemanager.resource.memory-mb", "512")]);
    // A wrong RM address: resolves, nothing answers.
    tb.start_nm(4, &[("yarn.resourcemanager.hostname", "old-rm.prod.acme")]);
    tb.wait_state(NM1, "RUNNING", UP);
    tb.wait_state(NM2, "RUNNING", UP);

    let nm3 = tb.wait_exit("nodemanager-3.prod.acme", UP);
    assert_eq!(nm3.code(), Some(255), "a refused NM fails to start, as the real one (System.exit(-1))");
    let log3 = tb.log("nodemanager-3.prod.acme");
    assert!(log3.contains("Registration of NodeManager failed, Message from ResourceManager: NodeManager from  nodemanager-3.prod.acme doesn't satisfy minimum allocations"), "{log3}");
    let rm_log = tb.log("rm.prod.acme");
    assert!(rm_log.contains("NodeManager from  nodemanager-3.prod.acme doesn't satisfy minimum allocations, Sending SHUTDOWN signal to the NodeManager."), "{rm_log}");
    assert!(rm_log.contains("STARTUP_MSG: Starting ResourceManager") && rm_log.contains("host = rm.prod.acme/"), "{rm_log}");

    // The misconfigured NM keeps retrying and never appears.
    wait(UP, "NM4 retries 3 times", || (tb.log("nodemanager-4.prod.acme").matches("Retrying connect to server: old-rm.prod.acme/").count() >= 3).then_some(()));
    let nodes = tb.nodes();
    assert_eq!(nodes.keys().cloned().collect::<Vec<_>>(), vec![NM1.to_string(), NM2.to_string()]);
    assert!(tb.daemons.get_mut("nodemanager-4.prod.acme").unwrap().try_wait().unwrap().is_none(), "NM4 still retrying");

    let n1 = &nodes[NM1];
    assert_eq!(n1["nodeHostName"], "nodemanager-1.prod.acme");
    assert_eq!(n1["nodeHTTPAddress"], "nodemanager-1.prod.acme:8042");
    assert_eq!((n1["availMemoryMB"].as_u64(), n1["numContainers"].as_u64()), (Some(4096), Some(0)));
    let (code, out, err) = tb.yarn(&["node", "-list", "-all"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Connecting to ResourceManager at rm.prod.acme/"), "{err}");
    let expected = format!(
        "Total Nodes:2\n         Node-Id\t     Node-State\tNode-Http-Address\tNumber-of-Running-Containers\n\
         {NM1}\t        RUNNING\tnodemanager-1.prod.acme:8042\t                           0\n\
         {NM2}\t        RUNNING\tnodemanager-2.prod.acme:8042\t                           0\n"
    );
    assert_eq!(out, expected);
    let (code, out, _) = tb.yarn(&["node", "-list", "-states", "LOST"]);
    assert_eq!((code, out.lines().next()), (0, Some("Total Nodes:0")));
    let (code, out, _) = tb.yarn(&["node", "-list", "-states", "BOGUS"]);
    assert_eq!(code, 255);
    assert!(out.starts_with("The node state BOGUS is invalid."), "{out}");

    // The web services in the shapes of the real captures.
    assert_shape_like_captures("info", &tb.rest("/ws/v1/cluster/info").unwrap().1);
    let metrics = tb.rest("/ws/v1/cluster/metrics").unwrap().1;
    assert_shape_like_captures("metrics", &metrics);
    assert_eq!((metrics["clusterMetrics"]["activeNodes"].as_u64(), metrics["clusterMetrics"]["totalMB"].as_u64()), (Some(2), Some(8192)));
    assert_shape_like_captures("nodes", &tb.rest("/ws/v1/cluster/nodes").unwrap().1);
    let (status, one) = tb.rest(&format!("/ws/v1/cluster/nodes/{NM1}")).unwrap();
    assert_eq!((status, &one["node"]["id"]), (200, &Value::from(NM1)));
    let (status, missing) = tb.rest("/ws/v1/cluster/nodes/nope:1").unwrap();
    assert_eq!((status, &missing["RemoteException"]["exception"]), (404, &Value::from("NotFoundException")));
    let (status, filtered) = tb.rest("/ws/v1/cluster/nodes?states=LOST,DECOMMISSIONED").unwrap();
    assert_eq!((status, filtered), (200, serde_json::json!({"nodes": null})));

    // SIGTERM: prompt exit 0 with the shutdown banner.
    assert_eq!(tb.sigterm("nodemanager-4.prod.acme").code(), Some(0));
    assert_eq!(tb.sigterm("rm.prod.acme").code(), Some(0));
    assert!(tb.log("rm.prod.acme").contains("SHUTDOWN_MSG: Shutting down ResourceManager at rm.prod.acme/"));
}

#[test]
fn a_silent_nodemanager_is_lost_and_comes_back() {
    let mut tb = Testbed::new("lost", 2);
    tb.start("resourcemanager", "rm.prod.acme", &[]);
    tb.start_nm(1, &[]);
    tb.start_nm(2, &[]);
    // NM3's health script reports an error: UNHEALTHY, with the script's line as the report.
    let script = tb.dir.join("health.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'ERROR local-dirs are bad: /hadoop/yarn/local'\n").unwrap();
    assert!(Command::new("chmod").arg("755").arg(&script).status().unwrap().success());
    let script = script.display().to_string();
    tb.start_nm(3, &[("yarn.nodemanager.health-checker.script.path", &script), ("yarn.nodemanager.health-checker.interval-ms", "500")]);
    tb.wait_state(NM1, "RUNNING", UP);
    tb.wait_state(NM2, "RUNNING", UP);
    tb.wait_state("nodemanager-3.prod.acme:8041", "UNHEALTHY", UP);
    let n3 = &tb.nodes()["nodemanager-3.prod.acme:8041"];
    assert_eq!(n3["healthReport"], "ERROR local-dirs are bad: /hadoop/yarn/local");
    assert_eq!(tb.rest("/ws/v1/cluster/metrics").unwrap().1["clusterMetrics"]["unhealthyNodes"].as_u64(), Some(1));
    tb.kill("nodemanager-2.prod.acme");
    let killed = Instant::now();
    tb.wait_state(NM2, "LOST", Duration::from_secs(10));
    assert!(killed.elapsed() >= Duration::from_millis(2500), "LOST only after the 3 s expiry, was {:?}", killed.elapsed());
    let n2 = &tb.nodes()[NM2];
    assert_eq!(n2["nodeHTTPAddress"], "", "inactive nodes show no HTTP address");
    let m = tb.rest("/ws/v1/cluster/metrics").unwrap().1;
    assert_eq!((m["clusterMetrics"]["lostNodes"].as_u64(), m["clusterMetrics"]["activeNodes"].as_u64()), (Some(1), Some(1)));
    assert_eq!(m["clusterMetrics"]["totalNodes"].as_u64(), Some(3));
    assert_eq!(tb.node_state(NM1).as_deref(), Some("RUNNING"), "the heartbeating one stays");
    assert!(tb.log("rm.prod.acme").contains(&format!("Deactivating Node {NM2} as it is now LOST")));
    let (_, out, _) = tb.yarn(&["node", "-list", "-states", "LOST"]);
    assert!(out.contains(&format!("{NM2}\t           LOST\t")), "{out}");
    // Restarted, it registers again.
    tb.start_nm(2, &[]);
    tb.wait_state(NM2, "RUNNING", UP);
}

#[test]
fn graceful_decommission_drains_running_containers_then_shuts_the_nodemanager_down() {
    let mut tb = Testbed::new("drain", 3);
    tb.start("resourcemanager", "rm.prod.acme", &[]);
    tb.start_nm(1, &[]);
    tb.start_nm(2, &[]);
    tb.wait_state(NM1, "RUNNING", UP);
    tb.wait_state(NM2, "RUNNING", UP);

    let (code, out, err) = tb.yarn(&["herd-double-sleep", "-nodes", NM1, "-containers", "2", "-duration", "4", "-memory", "1024"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("application_"), "{out}");
    wait(UP, "2 containers on NM1", || (tb.nodes()[NM1]["numContainers"].as_u64() == Some(2)).then_some(()));
    assert_eq!(tb.nodes()[NM1]["usedMemoryMB"].as_u64(), Some(2048));
    assert_eq!(tb.rest("/ws/v1/cluster/metrics").unwrap().1["clusterMetrics"]["appsRunning"].as_u64(), Some(1));

    tb.exclude(&["nodemanager-1.prod.acme"]);
    let asked = Instant::now();
    let (code, _, err) = tb.yarn(&["rmadmin", "-refreshNodes", "-g", "60", "-server"]);
    assert_eq!(code, 0, "{err}");
    assert!(asked.elapsed() < Duration::from_secs(3), "-server returns at once");
    let n1 = &tb.nodes()[NM1];
    assert_eq!((n1["state"].as_str(), n1["numContainers"].as_u64()), (Some("DECOMMISSIONING"), Some(2)), "draining while containers run");
    assert_eq!(tb.rest("/ws/v1/cluster/metrics").unwrap().1["clusterMetrics"]["decommissioningNodes"].as_u64(), Some(1));
    let (_, out, _) = tb.yarn(&["node", "-list", "-states", "DECOMMISSIONING"]);
    assert!(out.contains(&format!("{NM1}\tDECOMMISSIONING\t")), "{out}");

    tb.wait_state(NM1, "DECOMMISSIONED", Duration::from_secs(20));
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "drained when the containers finished, well before 60 s: {took:?}");
    assert_eq!(tb.nodes()[NM1]["nodeHTTPAddress"], "");
    let status = tb.wait_exit("nodemanager-1.prod.acme", UP);
    assert_eq!(status.code(), Some(0));
    let log1 = tb.log("nodemanager-1.prod.acme");
    assert!(log1.contains("Received SHUTDOWN signal from Resourcemanager as part of heartbeat, hence shutting down."), "{log1}");
    assert!(log1.contains(&format!("Message from ResourceManager: DECOMMISSIONING {NM1} is ready to be decommissioned")), "{log1}");
    let m = tb.rest("/ws/v1/cluster/metrics").unwrap().1;
    assert_eq!((m["clusterMetrics"]["appsRunning"].as_u64(), m["clusterMetrics"]["appsCompleted"].as_u64()), (Some(0), Some(1)));

    // Without -g: NM2 is decommissioned at once.
    tb.exclude(&["nodemanager-1.prod.acme", "nodemanager-2.prod.acme"]);
    let (code, _, err) = tb.yarn(&["rmadmin", "-refreshNodes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tb.node_state(NM2).as_deref(), Some("DECOMMISSIONED"));
    assert_eq!(tb.wait_exit("nodemanager-2.prod.acme", UP).code(), Some(0));
    assert!(tb.log("nodemanager-2.prod.acme").contains(&format!("Message from ResourceManager: Disallowed NodeManager nodeId: {NM2}")));
}

#[test]
fn zero_timeout_recommission_and_client_tracking() {
    let mut tb = Testbed::new("zero", 4);
    tb.start("resourcemanager", "rm.prod.acme", &[]);
    tb.start_nm(1, &[]);
    tb.start_nm(2, &[]);
    tb.wait_state(NM1, "RUNNING", UP);
    tb.wait_state(NM2, "RUNNING", UP);
    let (code, _, err) = tb.yarn(&["herd-double-sleep", "-nodes", NM1, "-containers", "1", "-duration", "600"]);
    assert_eq!(code, 0, "{err}");
    wait(UP, "a container on NM1", || (tb.nodes()[NM1]["numContainers"].as_u64() == Some(1)).then_some(()));

    // Excluded, then un-excluded while draining: back to RUNNING with its container.
    tb.exclude(&["nodemanager-1.prod.acme"]);
    assert_eq!(tb.yarn(&["rmadmin", "-refreshNodes", "-g", "60", "-server"]).0, 0);
    assert_eq!(tb.node_state(NM1).as_deref(), Some("DECOMMISSIONING"));
    tb.exclude(&[]);
    assert_eq!(tb.yarn(&["rmadmin", "-refreshNodes", "-g", "60", "-server"]).0, 0);
    let n1 = &tb.nodes()[NM1];
    assert_eq!((n1["state"].as_str(), n1["numContainers"].as_u64()), (Some("RUNNING"), Some(1)));

    // -g 0: decommissioned at the next heartbeat even with a container running (killed).
    tb.exclude(&["nodemanager-1.prod.acme"]);
    let asked = Instant::now();
    assert_eq!(tb.yarn(&["rmadmin", "-refreshNodes", "-g", "0", "-server"]).0, 0);
    tb.wait_state(NM1, "DECOMMISSIONED", Duration::from_secs(5));
    assert!(asked.elapsed() < Duration::from_secs(3), "{:?}", asked.elapsed());
    assert_eq!(tb.nodes()[NM1]["numContainers"].as_u64(), Some(0));
    assert_eq!(tb.wait_exit("nodemanager-1.prod.acme", UP).code(), Some(0));

    // -client blocks until the drain is over.
    tb.exclude(&["nodemanager-1.prod.acme", "nodemanager-2.prod.acme"]);
    let (code, out, err) = tb.yarn(&["rmadmin", "-refreshNodes", "-g", "30", "-client"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Graceful decommissioning completed in"), "{out}");
    assert_eq!(tb.node_state(NM2).as_deref(), Some("DECOMMISSIONED"));

    // RMAdminCLI's usage errors.
    let (code, _, err) = tb.yarn(&["rmadmin", "-refreshNodes", "-g", "60"]);
    assert_eq!(code, 255);
    assert!(err.starts_with("Usage: yarn rmadmin [-refreshNodes [-g|graceful [timeout in seconds] -client|server]]"), "{err}");
    let (code, _, err) = tb.yarn(&["rmadmin", "-refreshNodes", "-g", "soon", "-server"]);
    assert_eq!(code, 255);
    assert!(err.starts_with("refreshNodes: Invalid timeout specified : soon"), "{err}");
    let (code, _, err) = tb.yarn(&["rmadmin", "-frobnicate"]);
    assert_eq!(code, 255);
    assert!(err.starts_with("frobnicate: Unknown command"), "{err}");
    let (code, _, err) = tb.yarn(&["frobnicate"]);
    assert_eq!(code, 1);
    assert!(err.contains("Usage: yarn"), "{err}");
}

#[test]
fn a_restarted_rm_forgets_the_drain_and_decommissions_at_once() {
    let mut tb = Testbed::new("restart", 5);
    tb.start("resourcemanager", "rm.prod.acme", &[]);
    tb.start_nm(1, &[]);
    tb.wait_state(NM1, "RUNNING", UP);
    assert_eq!(tb.yarn(&["herd-double-sleep", "-containers", "1", "-duration", "600"]).0, 0);
    wait(UP, "a container on NM1", || (tb.nodes()[NM1]["numContainers"].as_u64() == Some(1)).then_some(()));
    tb.exclude(&["nodemanager-1.prod.acme"]);
    assert_eq!(tb.yarn(&["rmadmin", "-refreshNodes", "-g", "3600", "-server"]).0, 0);
    assert_eq!(tb.node_state(NM1).as_deref(), Some("DECOMMISSIONING"));
    // YARN-5464: the timeout is not persisted; the new RM refuses the NM at its next heartbeat
    // (the host check comes before the unknown-node RESYNC, as in ResourceTrackerService).
    assert_eq!(tb.sigterm("rm.prod.acme").code(), Some(0));
    tb.start("resourcemanager", "rm.prod.acme", &[]);
    assert_eq!(tb.wait_exit("nodemanager-1.prod.acme", UP).code(), Some(0));
    let log1 = tb.log("nodemanager-1.prod.acme");
    assert!(log1.contains(&format!("Message from ResourceManager: Disallowed NodeManager nodeId: {NM1}")), "{log1}");
    // Excluded hosts are listed as `host:-1`, DECOMMISSIONED, from the RM's start.
    assert_eq!(tb.node_state("nodemanager-1.prod.acme:-1").as_deref(), Some("DECOMMISSIONED"));
    assert_eq!(tb.rest("/ws/v1/cluster/metrics").unwrap().1["clusterMetrics"]["decommissionedNodes"].as_u64(), Some(1));
}
