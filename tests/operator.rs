//! herd's Kubernetes operator end to end, without a Kubernetes: the real `herd-operator`
//! binary (its controller loop: watches, reconcile, status, Lease, HadoopPools) against the
//! in-process fake API server of `tests/kube-double` (TEST DOUBLE, NOT Kubernetes), the Hadoop
//! doubles of `tests/double` as local processes on loopback, and Debian's real `kubectl`
//! (package kubernetes-client, unpacked by `deploy/lib/kube-tools.sh`) driving the fake API
//! server as a user would; and the operator image, built with Docker.
//!
//! The test plays two parts of a real cluster the double does not: the NameNode pod's
//! `refresh` container (when the operator rewrites the exclude list in ConfigMap
//! `<cluster>-hosts`, copy it to the NameNode and run `hdfs dfsadmin -refreshNodes`), and
//! the DataNode containers (a DataNode process stops when the kubelet removes its pod).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd_kube_double::KubeDouble;
use herd_tests::{bins, root};
use serde_json::{Value, json};

const NS: &str = "acme";
const CLUSTER: &str = "prod";

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `f` (blocking) until it gives `Some`, failing with `what` after `secs`.
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

/// The fake API server on its own runtime (the tests themselves are blocking).
struct Api {
    double: KubeDouble,
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Api {
    fn start() -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let double = rt.block_on(KubeDouble::start()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), double.kubeconfig(NS)).unwrap();
        double.put("", "namespaces", "", json!({"metadata": {"name": NS}})).unwrap();
        Api { double, _rt: rt, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn get(&self, group: &str, plural: &str, name: &str) -> Option<Value> {
        self.double.get(group, plural, NS, name)
    }

    fn cluster(&self) -> Value {
        self.get("herd.dev", "hadoopclusters", CLUSTER).expect("the HadoopCluster")
    }

    fn sts_replicas(&self, role: &str) -> Option<u64> {
        self.get("apps", "statefulsets", &format!("{CLUSTER}-{role}"))?["spec"]["replicas"].as_u64()
    }

    /// Installs the committed CRDs (as `kubectl apply` would; the kubectl test does it with kubectl).
    fn install_crd(&self) {
        for crd in yaml_documents(&std::fs::read_to_string(root().join("manifests/operator/crd.yaml")).unwrap()) {
            self.double.put("apiextensions.k8s.io", "customresourcedefinitions", "", crd).unwrap();
        }
    }

    /// Starts `herd-operator` against the double; `extra` are more flags.
    fn operator(&self, name: &str, extra: &[&str]) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bins().join("herd-operator"))
            .args(["--lease-namespace", NS, "--lease-duration", "3s", "--busy-every", "1s", "--identity", name])
            .args(extra)
            .env("KUBECONFIG", self.kubeconfig())
            .env("RUST_LOG", "info,herd_operator=debug")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }
}

/// The CRDs are committed as YAML (documents after a comment); the double takes JSON.
fn yaml_documents(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = text
        .split("\n---\n")
        .skip(1)
        .map(|doc| serde_yaml::from_str(doc).expect("manifests/operator/crd.yaml is YAML"))
        .collect();
    assert_eq!(docs.len(), 2, "crd.yaml holds the HadoopCluster and HadoopPool CRDs");
    docs
}

/// A HadoopCluster of 6 DataNodes (and a NameNode) whose images are never run: the Hadoop
/// doubles run as local processes instead.
fn hadoop_cluster(datanodes: u32) -> Value {
    json!({
        "apiVersion": "herd.dev/v1alpha1",
        "kind": "HadoopCluster",
        "metadata": {"name": CLUSTER, "namespace": NS},
        "spec": {
            "images": {"namenode": "herd/namenode:3.4.1", "datanode": "herd/datanode:3.4.1"},
            "hdfs": {"replication": 3},
            "pools": {
                "namenode": {"replicas": 1, "cpu": "1", "memory": "1Gi", "disk": "10Gi"},
                "datanode": {"replicas": datanodes, "cpu": "500m", "memory": "1Gi", "disk": "10Gi"},
            },
        },
    })
}

/// The HDFS doubles: a NameNode and six DataNodes named as the operator's pods are
/// (`prod-datanode-3.prod.acme`), each on its own 127.a.b.c address.
struct Hdfs {
    dir: tempfile::TempDir,
    net: String,
    namenode: Option<Proc>,
    datanodes: BTreeMap<u32, Proc>,
}

fn site(props: &[(&str, String)]) -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<configuration>\n");
    for (k, v) in props {
        s.push_str(&format!("  <property><name>{k}</name><value>{v}</value></property>\n"));
    }
    s + "</configuration>\n"
}

fn host(role: &str, n: u32) -> String {
    format!("{CLUSTER}-{role}-{n}.{CLUSTER}.{NS}")
}

impl Hdfs {
    fn start(datanodes: u32) -> Hdfs {
        let dir = tempfile::tempdir().unwrap();
        let seed = std::process::id() as u64 ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
        let seed = seed.wrapping_mul(6364136223846793005);
        let net = format!("127.{}.{}", 1 + (seed >> 20) % 250, 1 + (seed >> 40) % 250);
        let mut hosts = format!("127.0.0.1 localhost\n{net}.10 {}\n", host("namenode", 0));
        for i in 0..datanodes {
            hosts.push_str(&format!("{net}.{} {}\n", 20 + i, host("datanode", i)));
        }
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        std::fs::write(dir.path().join("topology.table"), "").unwrap();
        std::fs::write(dir.path().join("dfs.exclude"), "").unwrap();
        std::fs::write(dir.path().join("dfs.hosts"), "").unwrap();
        let mut hdfs = Hdfs { dir, net, namenode: None, datanodes: BTreeMap::new() };
        let conf = hdfs.conf("nn", &[]);
        hdfs.namenode = Some(hdfs.daemon("namenode", &host("namenode", 0), &conf));
        for i in 0..datanodes {
            let name = host("datanode", i);
            let conf = hdfs.conf(&name, &[hdfs.path(&format!("dn{i}/data0"))]);
            let p = hdfs.daemon("datanode", &name, &conf);
            hdfs.datanodes.insert(i, p);
        }
        hdfs
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn nn_ip(&self) -> String {
        format!("{}.10", self.net)
    }

    fn conf(&self, name: &str, data: &[PathBuf]) -> PathBuf {
        let conf = self.path(&format!("conf-{name}"));
        std::fs::create_dir_all(&conf).unwrap();
        let fs = format!("hdfs://{}:8020", host("namenode", 0));
        std::fs::write(conf.join("core-site.xml"), site(&[("fs.defaultFS", fs), ("net.topology.table.file.name", self.path("topology.table").display().to_string())])).unwrap();
        let dirs: Vec<String> = data.iter().map(|d| format!("file://{}", d.display())).collect();
        let data_dir = if dirs.is_empty() { format!("file://{}", self.path("unused").display()) } else { dirs.join(",") };
        std::fs::write(
            conf.join("hdfs-site.xml"),
            site(&[
                ("dfs.namenode.name.dir", format!("file://{}", self.path("name").display())),
                ("dfs.datanode.data.dir", data_dir),
                ("dfs.replication", "3".into()),
                ("dfs.heartbeat.interval", "300ms".into()),
                ("dfs.namenode.heartbeat.recheck-interval", "500".into()),
                ("dfs.blockreport.intervalMsec", "10000".into()),
                ("dfs.namenode.redundancy.interval.seconds", "1".into()),
                ("dfs.namenode.replication.work.multiplier.per.iteration", "4".into()),
                ("dfs.namenode.replication.max-streams", "4".into()),
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

    fn daemon(&self, role: &str, name: &str, conf: &Path) -> Proc {
        let logs = self.path(&format!("logs-{name}"));
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join("stdout");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bins().join("hadoop-double"))
            .args(["daemon", role])
            .env("HADOOP_CONF_DIR", conf)
            .env("HERD_DOUBLE_HOSTS_FILE", self.path("hosts"))
            .env("HERD_DOUBLE_HOSTNAME", name)
            .env("HADOOP_LOG_DIR", &logs)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn hdfs(&self, args: &[&str]) -> Output {
        Command::new(bins().join("hadoop-double"))
            .arg("hdfs")
            .args(args)
            .env("HADOOP_CONF_DIR", self.path("conf-nn"))
            .env("HERD_DOUBLE_HOSTS_FILE", self.path("hosts"))
            .env("HERD_DOUBLE_HOSTNAME", "client.test")
            .env("HADOOP_USER_NAME", "root")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn bean(&self, name: &str) -> Option<Value> {
        let mut s = TcpStream::connect((self.nn_ip().as_str(), 9870)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET /jmx?qry=Hadoop:service=NameNode,name={name} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (_, body) = buf.split_once("\r\n\r\n")?;
        serde_json::from_str::<Value>(body).ok()?["beans"].get(0).cloned()
    }

    /// `adminState` per DataNode hostname, live ones.
    fn admin_states(&self) -> BTreeMap<String, String> {
        let Some(info) = self.bean("NameNodeInfo") else { return BTreeMap::new() };
        let live: BTreeMap<String, Value> = serde_json::from_str(info["LiveNodes"].as_str().unwrap_or("{}")).unwrap_or_default();
        live.into_iter().map(|(k, v)| (k.split(':').next().unwrap_or_default().to_string(), v["adminState"].as_str().unwrap_or_default().to_string())).collect()
    }

    fn counter(&self, name: &str) -> Option<u64> {
        self.bean("FSNamesystem")?[name].as_u64()
    }
}

/// The StatefulSet's replicas and the NameNode's `adminState` per DataNode host.
type Shrink = (u64, BTreeMap<String, String>);

/// The NameNode pod's `refresh` container and the DataNode containers, played by a thread:
/// while `enabled`, copy `dfs.exclude` of ConfigMap `prod-hosts` to the NameNode and refresh
/// it; always stop a DataNode process once the kubelet has removed its pod.
struct Pods {
    enabled: Arc<AtomicBool>,
    /// The DataNode StatefulSet's replicas when first seen below 6, and the NameNode's
    /// `adminState`s at that moment, read before any DataNode process is stopped (so the
    /// NameNode cannot have declared one dead yet).
    first_shrink: Arc<Mutex<Option<Shrink>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn play_pods(api: Arc<Api>, hdfs: Arc<Mutex<Hdfs>>) -> Pods {
    let enabled = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let first_shrink = Arc::new(Mutex::new(None));
    let (e, s, shrink) = (enabled.clone(), stop.clone(), first_shrink.clone());
    let thread = std::thread::spawn(move || {
        let mut applied = String::new();
        let mut seen = std::collections::BTreeSet::new();
        // NB: in the order of a real cluster: the StatefulSet shrinks, its pods' containers
        // stop, and only then is the exclude list (emptied by the operator) re-read.
        while !s.load(Ordering::SeqCst) {
            if let Some(replicas) = api.sts_replicas("datanode").filter(|r| *r < 6) {
                let mut seen = shrink.lock().unwrap();
                if seen.is_none() {
                    *seen = Some((replicas, hdfs.lock().unwrap().admin_states()));
                }
            }
            let pods: Vec<String> = api.double.list("", "pods", Some(NS)).iter().filter_map(|p| p["metadata"]["name"].as_str().map(String::from)).collect();
            {
                // A DataNode process stops only once its pod was seen and is gone again: right
                // after the StatefulSet appears its pods are still being created one by one, and
                // a pod not made yet is not a removed one.
                let mut h = hdfs.lock().unwrap();
                seen.extend(pods.iter().cloned());
                let gone: Vec<u32> = h
                    .datanodes
                    .keys()
                    .copied()
                    .filter(|i| {
                        let pod = format!("{CLUSTER}-datanode-{i}");
                        seen.contains(&pod) && !pods.contains(&pod)
                    })
                    .collect();
                for i in gone {
                    h.datanodes.remove(&i);
                }
            }
            if e.load(Ordering::SeqCst)
                && let Some(cm) = api.get("", "configmaps", &format!("{CLUSTER}-hosts"))
            {
                let exclude = cm["data"]["dfs.exclude"].as_str().unwrap_or_default().to_string();
                if exclude != applied {
                    let h = hdfs.lock().unwrap();
                    std::fs::write(h.path("dfs.exclude"), &exclude).unwrap();
                    let out = h.hdfs(&["dfsadmin", "-refreshNodes"]);
                    if out.status.success() {
                        applied = exclude;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Pods { enabled, first_shrink, stop, thread: Some(thread) }
}

fn leaving(cluster: &Value) -> BTreeMap<String, String> {
    cluster["status"]["leaving"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v["phase"].as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

#[test]
fn scale_down_6_to_3_decommissions_first_and_a_killed_operator_resumes() {
    let api = Arc::new(Api::start());
    api.install_crd();
    let hdfs = Arc::new(Mutex::new(Hdfs::start(6)));
    let nn_ip = hdfs.lock().unwrap().nn_ip();
    let resolve = format!("{}={nn_ip}", host("namenode", 0));
    let pods = play_pods(api.clone(), hdfs.clone());

    api.double.put("herd.dev", "hadoopclusters", NS, hadoop_cluster(6)).unwrap();
    let op = api.operator("op-1", &["--resolve", &resolve]);
    wait_for(60, "the DataNode StatefulSet at 6 and 6 ready pods", || {
        let c = api.cluster();
        (api.sts_replicas("datanode") == Some(6) && c["status"]["datanodes"]["ready"] == 6).then_some(())
    });
    {
        let h = hdfs.lock().unwrap();
        wait_for(30, "6 live DataNodes", || (h.admin_states().len() == 6).then_some(()));
        // 60 blocks of 4 KiB, three copies each.
        let local = h.path("data.bin");
        let data: Vec<u8> = (0..60 * 4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        std::fs::write(&local, &data).unwrap();
        let put = h.hdfs(&["dfs", "-D", "dfs.blocksize=4096", "-put", local.to_str().unwrap(), "/data.bin"]);
        assert!(put.status.success(), "put: {}", text(&put.stderr));
        wait_for(30, "0 under-replicated blocks", || (h.counter("UnderReplicatedBlocks") == Some(0)).then_some(()));
    }
    wait_for(30, "Available with HDFS healthy", || {
        let c = api.cluster();
        let available = c["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Available" && c["status"] == "True");
        (available && c["status"]["hdfs"] == "Healthy").then_some(())
    });

    // Scale down through the DataNode pool's HadoopPool, with the NameNode's refresh held: the
    // operator stores the phases and writes the exclude list, and the StatefulSet stays at 6.
    let out = ok(kubectl(&api, &["scale", "hadooppool", &format!("{CLUSTER}-datanode"), "--replicas=3"]));
    assert_eq!(out.trim(), format!("hadooppool.herd.dev/{CLUSTER}-datanode scaled"));
    let want: BTreeMap<String, String> = (3..6).map(|i| (format!("{CLUSTER}-datanode-{i}"), "decommissioning".to_string())).collect();
    wait_for(30, "3, 4, 5 decommissioning in status and excluded", || {
        let excluded = api.get("", "configmaps", &format!("{CLUSTER}-hosts"))?["data"]["dfs.exclude"].as_str()?.to_string();
        (leaving(&api.cluster()) == want && excluded == format!("{}\n{}\n{}\n", host("datanode", 3), host("datanode", 4), host("datanode", 5))).then_some(())
    });
    assert_eq!(api.sts_replicas("datanode"), Some(6));

    // SIGKILL mid-decommission.
    let since = |c: &Value| -> BTreeMap<String, u64> {
        c["status"]["leaving"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v["sinceMs"].as_u64().unwrap_or(0))).collect()).unwrap_or_default()
    };
    let chosen_at = since(&api.cluster());
    let mut op = op;
    op.child.kill().unwrap();
    op.child.wait().unwrap();
    let first_log = op.log();
    drop(op);
    assert!(first_log.contains("leading"), "{first_log}");
    pods.enabled.store(true, Ordering::SeqCst);
    wait_for(30, "the NameNode decommissioning 3, 4, 5 while no operator runs", || {
        let s = hdfs.lock().unwrap().admin_states();
        (3..6).all(|i| matches!(s.get(&host("datanode", i)).map(String::as_str), Some("Decommission In Progress" | "Decommissioned"))).then_some(())
    });
    assert_eq!(api.sts_replicas("datanode"), Some(6), "nothing shrinks without the operator");
    assert_eq!(leaving(&api.cluster()), want, "the phases are in the status");

    // A new operator resumes from the status; the StatefulSet shrinks only once the NameNode
    // lists 3, 4 and 5 Decommissioned.
    let op2 = api.operator("op-2", &["--resolve", &resolve]);
    wait_for(120, "the StatefulSet at 3", || {
        assert_eq!(hdfs.lock().unwrap().counter("MissingBlocks"), Some(0), "never a missing block");
        // The new operator carries on with the stored phases (chosen by the first one), not
        // with a new decision.
        let c = api.cluster();
        for (pod, at) in since(&c) {
            assert_eq!(Some(&at), chosen_at.get(&pod), "{pod} keeps the time the first operator chose it");
        }
        (api.sts_replicas("datanode")? == 3 && pods.first_shrink.lock().unwrap().is_some()).then_some(())
    });
    let (replicas, states) = pods.first_shrink.lock().unwrap().clone().expect("the shrink was seen");
    for i in 3..6 {
        let state = states.get(&host("datanode", i)).cloned().unwrap_or_default();
        assert_eq!(state, "Decommissioned", "the StatefulSet shrank to {replicas} while datanode-{i} was `{state}`: {states:?}");
    }
    wait_for(60, "status.leaving empty and the exclude list empty", || {
        let excluded = api.get("", "configmaps", &format!("{CLUSTER}-hosts"))?["data"]["dfs.exclude"].as_str()?.to_string();
        (leaving(&api.cluster()).is_empty() && excluded.is_empty()).then_some(())
    });
    let h = hdfs.lock().unwrap();
    assert_eq!(h.counter("MissingBlocks"), Some(0));
    // The pool keeps the size it was scaled to; the cluster's own field was never touched.
    let pool = api.get("herd.dev", "hadooppools", &format!("{CLUSTER}-datanode")).unwrap();
    assert_eq!(pool["spec"]["replicas"], 3, "{pool}");
    assert_eq!(pool["status"]["replicas"], 3, "{pool}");
    assert_eq!(api.cluster()["spec"]["pools"]["datanode"]["replicas"], 6);
    assert_eq!(api.sts_replicas("datanode"), Some(3));
    let fsck = text(&h.hdfs(&["fsck", "/"]).stdout);
    assert!(fsck.contains(" Total blocks (validated):\t60 ") && fsck.contains("is HEALTHY"), "{fsck}");
    let cat = h.hdfs(&["dfs", "-cat", "/data.bin"]);
    assert_eq!(cat.stdout.len(), 60 * 4096, "every byte readable from the 3 DataNodes left");
    drop(h);
    let log = op2.log();
    assert!(log.contains("leading"), "{log}");
    // Events tell the story, and who did what: op-1 chose the leaving DataNodes, op-2 (after
    // the SIGKILL) moved them on from the stored phases.
    let events: Vec<(String, String)> = api
        .double
        .list("events.k8s.io", "events", Some(NS))
        .iter()
        .map(|e| (e["reason"].as_str().unwrap_or_default().to_string(), e["reportingInstance"].as_str().unwrap_or_default().to_string()))
        .collect();
    for (reason, by) in [("DecommissionStarted", "op-1"), ("Decommissioned", "op-2"), ("Removing", "op-2"), ("Removed", "op-2")] {
        assert!(events.iter().any(|(r, i)| r == reason && i == by), "event {reason} by {by} in {events:?}");
    }
    assert!(!events.iter().any(|(r, i)| r == "DecommissionStarted" && i == "op-2"), "op-2 chose nothing anew: {events:?}");
}

/// kubectl `cmd` against the double, as the user `kubectl --kubeconfig ...` would run it.
fn kubectl(api: &Api, args: &[&str]) -> Output {
    static KUBECTL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let bin = KUBECTL.get_or_init(|| {
        let out = Command::new("bash").arg(root().join("deploy/lib/kube-tools.sh")).output().unwrap();
        assert!(
            out.status.success(),
            "Debian's kubectl (kubernetes-client) is needed and could not be had: {}; these tests fail rather than skip",
            text(&out.stderr)
        );
        PathBuf::from(text(&out.stdout).trim())
    });
    Command::new(bin)
        .args(["--kubeconfig", api.kubeconfig().to_str().unwrap(), "--cache-dir", api.dir.path().join("kube-cache").to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "kubectl failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn kubectl_applies_gets_scales_and_deletes_through_the_operator() {
    let api = Api::start();
    // The install as the README says: CRD, RBAC and Deployment from manifests/operator/.
    let dir = root().join("manifests/operator");
    let out = ok(kubectl(&api, &["apply", "-f", dir.to_str().unwrap()]));
    for line in [
        "customresourcedefinition.apiextensions.k8s.io/hadoopclusters.herd.dev created",
        "customresourcedefinition.apiextensions.k8s.io/hadooppools.herd.dev created",
        "clusterrole.rbac.authorization.k8s.io/herd-operator created",
        "deployment.apps/herd-operator created",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
    let example = root().join("manifests/operator/examples/hadoopcluster.yaml");
    let out = ok(kubectl(&api, &["apply", "-f", example.to_str().unwrap()]));
    assert_eq!(out.trim(), "hadoopcluster.herd.dev/prod created");
    let out = ok(kubectl(&api, &["apply", "-f", example.to_str().unwrap()]));
    assert_eq!(out.trim(), "hadoopcluster.herd.dev/prod unchanged");

    let op = api.operator("op-1", &[]);
    wait_for(60, "the operator to fill the status", || {
        let c = api.cluster();
        (c["status"]["datanodes"]["ready"] == 6 && c["status"]["nodemanagers"]["ready"] == 4).then_some(())
    });

    // Printer columns, and the short name.
    let table = ok(kubectl(&api, &["get", "hc"]));
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATANODES", "NODEMANAGERS", "HDFS", "AGE"], "{table}");
    assert!(lines[1].starts_with("prod "), "{table}");
    assert!(lines[1].contains(" 6/6 ") && lines[1].contains(" 4/4 ") && lines[1].contains("Unknown:"), "{table}");
    // One HadoopPool per worker pool, with its printer columns.
    wait_for(30, "the pools' status", || {
        let ready = |name: &str| api.get("herd.dev", "hadooppools", name).map(|p| p["status"]["ready"].clone());
        (ready("prod-datanode")? == 6 && ready("prod-nodemanager")? == 4).then_some(())
    });
    let table = ok(kubectl(&api, &["get", "hp"]));
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "CLUSTER", "ROLE", "DESIRED", "REPLICAS", "READY", "LEAVING", "AGE"], "{table}");
    assert_eq!(lines[1][..7], ["prod-datanode", "prod", "datanode", "6", "6", "6", "0"], "{table}");
    assert_eq!(lines[2][..7], ["prod-nodemanager", "prod", "nodemanager", "4", "4", "4", "0"], "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    // Both kinds are in kubectl's `herd` category.
    let herd = ok(kubectl(&api, &["get", "herd", "-o", "name"]));
    let mut names: Vec<&str> = herd.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["hadoopcluster.herd.dev/prod", "hadooppool.herd.dev/prod-datanode", "hadooppool.herd.dev/prod-nodemanager"], "{herd}");
    let all = ok(kubectl(&api, &["get", "statefulsets,services,configmaps,poddisruptionbudgets", "-o", "name"]));
    for name in ["statefulset.apps/prod-datanode", "statefulset.apps/prod-namenode", "service/prod", "service/prod-namenode", "configmap/prod", "configmap/prod-hosts", "poddisruptionbudget.policy/prod-datanode"] {
        assert!(all.lines().any(|l| l == name), "{name} in {all}");
    }

    // kubectl scale goes through the scale subresource to the DataNode pool.
    let out = ok(kubectl(&api, &["scale", "hadoopcluster", "prod", "--replicas=5"]));
    assert_eq!(out.trim(), "hadoopcluster.herd.dev/prod scaled");
    assert_eq!(api.cluster()["spec"]["pools"]["datanode"]["replicas"], 5);
    wait_for(30, "prod-datanode-5 decommissioning (the NameNode is unreachable here: the StatefulSet keeps 6)", || {
        (leaving(&api.cluster()).get("prod-datanode-5").map(String::as_str) == Some("decommissioning")).then_some(())
    });
    assert_eq!(api.sts_replicas("datanode"), Some(6));
    // What a HorizontalPodAutoscaler reads: the scale subresource, with the DataNode pods' selector.
    let scale: Value = serde_json::from_str(&ok(kubectl(&api, &["get", "--raw", "/apis/herd.dev/v1alpha1/namespaces/acme/hadoopclusters/prod/scale"]))).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["replicas"], 6, "the StatefulSet keeps 6 while one decommissions");
    let selector = scale["status"]["selector"].as_str().unwrap().to_string();
    assert_eq!(selector, "app.kubernetes.io/component=datanode,app.kubernetes.io/instance=prod,app.kubernetes.io/name=hadoop");
    let selected = ok(kubectl(&api, &["get", "pods", "-l", &selector, "-o", "name"]));
    assert_eq!(selected.lines().count(), 6, "{selected}");
    let json = ok(kubectl(&api, &["get", "hc", "prod", "-o", "json"]));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"]["datanodes"]["desired"], 5);
    // The cluster's new replicas reached its DataNode pool.
    wait_for(30, "HadoopPool prod-datanode at 5", || {
        (api.get("herd.dev", "hadooppools", "prod-datanode")?["spec"]["replicas"] == 5).then_some(())
    });

    // kubectl scale on the NodeManager pool's HadoopPool: the pool is the size, the operator
    // drains NodeManager 3 (the ResourceManager is unreachable here: it stays draining and the
    // StatefulSet keeps 4) and never takes the pool's replicas back.
    let out = ok(kubectl(&api, &["scale", "hadooppool", "prod-nodemanager", "--replicas=3"]));
    assert_eq!(out.trim(), "hadooppool.herd.dev/prod-nodemanager scaled");
    wait_for(30, "prod-nodemanager-3 draining", || {
        (leaving(&api.cluster()).get("prod-nodemanager-3").map(String::as_str) == Some("draining")).then_some(())
    });
    wait_for(30, "the cluster's status and the pool's following the pool", || {
        let c = api.cluster();
        let pool = api.get("herd.dev", "hadooppools", "prod-nodemanager")?;
        (c["status"]["nodemanagers"]["desired"] == 3 && pool["status"]["leaving"] == 1).then_some(())
    });
    let scale: Value = serde_json::from_str(&ok(kubectl(&api, &["get", "--raw", "/apis/herd.dev/v1alpha1/namespaces/acme/hadooppools/prod-nodemanager/scale"]))).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 4, "the StatefulSet keeps 4 while one drains");
    assert_eq!(scale["status"]["selector"], "app.kubernetes.io/component=nodemanager,app.kubernetes.io/instance=prod,app.kubernetes.io/name=hadoop");
    assert_eq!(api.sts_replicas("nodemanager"), Some(4));
    assert_eq!(api.cluster()["spec"]["pools"]["nodemanager"]["replicas"], 4, "the cluster's field is not rewritten");
    let pool = api.get("herd.dev", "hadooppools", "prod-nodemanager").unwrap();
    assert_eq!(pool["spec"]["replicas"], 3, "the operator did not take the scale back: {pool}");
    // An edit of the cluster's pool replicas still works: sent to the pool, it wins; the
    // draining NodeManager is back in service and the StatefulSet grows.
    ok(kubectl(&api, &["patch", "hc", "prod", "--type=merge", "-p", r#"{"spec":{"pools":{"nodemanager":{"replicas":5}}}}"#]));
    wait_for(30, "the pool at 5, NodeManager 3 back, the StatefulSet at 5", || {
        let pool = api.get("herd.dev", "hadooppools", "prod-nodemanager")?;
        let back = !leaving(&api.cluster()).contains_key("prod-nodemanager-3");
        (pool["spec"]["replicas"] == 5 && back && api.sts_replicas("nodemanager") == Some(5)).then_some(())
    });
    // What a HorizontalPodAutoscaler does: GET the Scale, PUT it back with new replicas (and
    // the resourceVersion read). NodeManager 4 drains; the pool keeps 4.
    // NB: the operator may write the pool's status between the GET and the PUT (it moves the
    // resourceVersion): the PUT is then refused with a Conflict, and an HPA reads again.
    let url = "/apis/herd.dev/v1alpha1/namespaces/acme/hadooppools/prod-nodemanager/scale";
    let file = api.dir.path().join("scale.json");
    let mut conflicts = 0;
    loop {
        let mut scale: Value = serde_json::from_str(&ok(kubectl(&api, &["get", "--raw", url]))).unwrap();
        scale["spec"]["replicas"] = json!(4);
        std::fs::write(&file, scale.to_string()).unwrap();
        let put = kubectl(&api, &["replace", "--raw", url, "-f", file.to_str().unwrap()]);
        if put.status.success() {
            break;
        }
        assert!(text(&put.stderr).contains("Conflict") && conflicts < 5, "the Scale's PUT failed: {}", text(&put.stderr));
        conflicts += 1;
    }
    wait_for(30, "prod-nodemanager-4 draining after the HPA's write", || {
        (leaving(&api.cluster()).get("prod-nodemanager-4").map(String::as_str) == Some("draining")).then_some(())
    });
    assert_eq!(api.get("herd.dev", "hadooppools", "prod-nodemanager").unwrap()["spec"]["replicas"], 4);
    let stale = kubectl(&api, &["replace", "--raw", url, "-f", file.to_str().unwrap()]);
    assert!(!stale.status.success() && text(&stale.stderr).contains("Conflict"), "a Scale of an older version is refused: {}", text(&stale.stderr));

    // An invalid change is refused in the status; nothing of it is applied; the operator runs on.
    let bad = ok(kubectl(&api, &["patch", "hc", "prod", "--type=merge", "-p", r#"{"spec":{"pools":{"nodemanager":{"memory":"64Mi"}}}}"#]));
    assert!(bad.contains("patched"), "{bad}");
    wait_for(30, "the refusal in the status", || {
        let c = api.cluster();
        let invalid = c["status"]["invalid"].as_array()?.clone();
        (invalid.iter().any(|p| p["field"] == "spec.pools.nodemanager.memory")).then_some(())
    });
    let nm = api.get("apps", "statefulsets", "prod-nodemanager").unwrap();
    assert_eq!(nm["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "17179869184", "not half-applied");
    let describe = ok(kubectl(&api, &["get", "hc", "prod", "-o", "jsonpath={.status.conditions[?(@.type==\"Degraded\")].reason}"]));
    assert_eq!(describe, "InvalidSpec");

    // Fields the CRD does not declare are pruned by the structural schema, with a warning.
    let odd = api.dir.path().join("odd.yaml");
    std::fs::write(&odd, "apiVersion: herd.dev/v1alpha1\nkind: HadoopCluster\nmetadata: {name: odd}\nspec:\n  frobnicate: 1\n  images: {datanode: r/dn}\n  pools:\n    datanode: {replicas: 1, cpu: 1, memory: 1Gi, colour: blue}\n").unwrap();
    let out = kubectl(&api, &["apply", "-f", odd.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let warned = text(&out.stderr);
    assert!(warned.contains("unknown field \"spec.frobnicate\"") && warned.contains("unknown field \"spec.pools.datanode.colour\""), "{warned}");
    let stored = api.get("herd.dev", "hadoopclusters", "odd").unwrap();
    assert!(stored["spec"].get("frobnicate").is_none() && stored["spec"]["pools"]["datanode"].get("colour").is_none(), "{stored}");

    // A resource the operator cannot read is refused in its own status, naming the field, and
    // the others are still reconciled.
    let bad = api.dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: herd.dev/v1alpha1\nkind: HadoopCluster\nmetadata: {name: bad}\nspec:\n  images: {datanode: r/dn}\n  pools:\n    datanode: {replicas: 1, cpu: lots, memory: 1Gi}\n").unwrap();
    ok(kubectl(&api, &["apply", "-f", bad.to_str().unwrap()]));
    wait_for(30, "bad refused with its field", || {
        let invalid = api.get("herd.dev", "hadoopclusters", "bad")?["status"]["invalid"].as_array()?.clone();
        (invalid.first()?["field"] == "spec.pools.datanode.cpu").then_some(())
    });
    assert!(api.get("apps", "statefulsets", "bad-datanode").is_none(), "nothing of it applied");
    wait_for(30, "odd reconciled beside it", || api.get("apps", "statefulsets", "odd-datanode"));

    // The API server failing: the reconcile backs off with a condition, then recovers.
    api.double.fail("PATCH /apis/apps/v1/namespaces/acme/statefulsets/odd-datanode", 3, 500);
    let out = ok(kubectl(&api, &["scale", "hc", "odd", "--replicas=2"]));
    assert!(out.contains("scaled"), "{out}");
    wait_for(30, "Degraded/ReconcileError on odd", || {
        let c = api.get("herd.dev", "hadoopclusters", "odd")?;
        c["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Degraded" && c["reason"] == "ReconcileError").then_some(())
    });
    wait_for(60, "odd's StatefulSet at 2 after the backoff", || (api.get("apps", "statefulsets", "odd-datanode")?["spec"]["replicas"] == 2).then_some(()));
    assert!(op.log().contains("reconcile failed"), "{}", op.log());

    // Deletion: the finalizer runs, then the resource and everything it owns are gone.
    let out = ok(kubectl(&api, &["delete", "hc", "prod", "--wait=true", "--timeout=30s"]));
    assert_eq!(out.trim(), "hadoopcluster.herd.dev \"prod\" deleted");
    let gone = kubectl(&api, &["get", "hc", "prod"]);
    assert!(!gone.status.success());
    assert!(text(&gone.stderr).contains("NotFound") || text(&gone.stderr).contains("not found"), "{}", text(&gone.stderr));
    wait_for(10, "the owned objects gone", || {
        (api.get("apps", "statefulsets", "prod-datanode").is_none() && api.get("herd.dev", "hadooppools", "prod-nodemanager").is_none()).then_some(())
    });
    drop(op);
}

#[test]
fn two_replicas_one_leads_and_the_other_takes_over() {
    let api = Arc::new(Api::start());
    api.install_crd();
    let mut spec = hadoop_cluster(3);
    spec["spec"]["pools"].as_object_mut().unwrap().remove("namenode");
    spec["spec"]["external"] = json!({"namenode": {"host": "127.0.0.1"}});
    api.double.put("herd.dev", "hadoopclusters", NS, spec).unwrap();
    let mut a = api.operator("op-a", &[]);
    wait_for(30, "op-a to lead", || (api.get("coordination.k8s.io", "leases", "herd-operator")?["spec"]["holderIdentity"] == "op-a").then_some(()));
    let b = api.operator("op-b", &[]);
    wait_for(30, "op-b to wait", || b.log().contains("waiting for the leader lease").then_some(()));
    wait_for(30, "the StatefulSet applied by the leader", || api.sts_replicas("datanode"));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_for(30, "op-b to take over once the lease expires", || (api.get("coordination.k8s.io", "leases", "herd-operator")?["spec"]["holderIdentity"] == "op-b").then_some(()));
    // op-b reconciles: a scale-up reaches the StatefulSet.
    let mut c = api.cluster();
    c["spec"]["pools"]["datanode"]["replicas"] = json!(4);
    api.double.put("herd.dev", "hadoopclusters", NS, json!({"metadata": {"name": CLUSTER}, "spec": c["spec"]})).unwrap();
    wait_for(30, "op-b applying the scale-up", || (api.sts_replicas("datanode") == Some(4)).then_some(()));
    assert!(b.log().contains("leading"), "{}", b.log());
    let lease = api.get("coordination.k8s.io", "leases", "herd-operator").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
}

/// The YARN doubles: a ResourceManager and NodeManagers named as the operator's pods are.
struct Yarn {
    dir: tempfile::TempDir,
    net: String,
    daemons: BTreeMap<String, Proc>,
}

impl Yarn {
    fn start(nodemanagers: u32) -> Yarn {
        let dir = tempfile::tempdir().unwrap();
        let seed = (std::process::id() as u64 ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64).wrapping_mul(0x9E3779B97F4A7C15);
        let net = format!("127.{}.{}", 1 + (seed >> 24) % 250, 1 + (seed >> 44) % 250);
        let mut hosts = format!("127.0.0.1 localhost\n{net}.10 {}\n", host("resourcemanager", 0));
        for i in 0..nodemanagers {
            hosts.push_str(&format!("{net}.{} {}\n", 20 + i, host("nodemanager", i)));
        }
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        std::fs::write(dir.path().join("yarn.exclude"), "").unwrap();
        let mut yarn = Yarn { dir, net, daemons: BTreeMap::new() };
        yarn.daemon("resourcemanager", &host("resourcemanager", 0), &[]);
        for i in 0..nodemanagers {
            let name = host("nodemanager", i);
            let addr = format!("{name}:8041");
            yarn.daemon("nodemanager", &name, &[("yarn.nodemanager.address", &addr)]);
        }
        yarn
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn conf(&self, name: &str, extra: &[(&str, &str)]) -> PathBuf {
        let conf = self.path(&format!("conf-{name}"));
        std::fs::create_dir_all(&conf).unwrap();
        let mut props: Vec<(&str, String)> = vec![
            ("yarn.resourcemanager.hostname", host("resourcemanager", 0)),
            ("yarn.resourcemanager.nodemanagers.heartbeat-interval-ms", "200".into()),
            ("yarn.nm.liveness-monitor.expiry-interval-ms", "3000".into()),
            ("yarn.resourcemanager.decommissioning-nodes-watcher.poll-interval-secs", "1".into()),
            ("yarn.resourcemanager.nodes.exclude-path", self.path("yarn.exclude").display().to_string()),
            ("yarn.nodemanager.resource.memory-mb", "4096".into()),
        ];
        props.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        std::fs::write(conf.join("yarn-site.xml"), site(&props)).unwrap();
        conf
    }

    fn daemon(&mut self, role: &str, name: &str, extra: &[(&str, &str)]) {
        let conf = self.conf(name, extra);
        let logs = self.path(&format!("logs-{name}"));
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join("stdout");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bins().join("hadoop-double"))
            .args(["daemon", role])
            .env("HADOOP_CONF_DIR", conf)
            .env("HERD_DOUBLE_HOSTS_FILE", self.path("hosts"))
            .env("HERD_DOUBLE_HOSTNAME", name)
            .env("HADOOP_LOG_DIR", &logs)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.daemons.insert(name.to_string(), Proc { child, log });
    }

    fn yarn(&self, args: &[&str]) -> Output {
        Command::new(bins().join("hadoop-double"))
            .arg("yarn")
            .args(args)
            .env("HADOOP_CONF_DIR", self.path(&format!("conf-{}", host("resourcemanager", 0))))
            .env("HERD_DOUBLE_HOSTS_FILE", self.path("hosts"))
            .env("HERD_DOUBLE_HOSTNAME", host("resourcemanager", 0))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn rest(&self, path: &str) -> Option<Value> {
        let mut s = TcpStream::connect((format!("{}.10", self.net).as_str(), 8088)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
    }

    /// Node state per NodeManager hostname.
    fn states(&self) -> BTreeMap<String, String> {
        let Some(v) = self.rest("/ws/v1/cluster/nodes") else { return BTreeMap::new() };
        v["nodes"]["node"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| (n["nodeHostName"].as_str().unwrap_or_default().to_string(), n["state"].as_str().unwrap_or_default().to_string()))
            .collect()
    }
}

#[test]
fn nodemanagers_drain_gracefully_before_their_statefulset_shrinks() {
    let api = Arc::new(Api::start());
    api.install_crd();
    let yarn = Arc::new(Mutex::new(Yarn::start(4)));
    let rm_ip = format!("{}.10", yarn.lock().unwrap().net);
    wait_for(30, "4 NodeManagers RUNNING", || (yarn.lock().unwrap().states().values().filter(|s| *s == "RUNNING").count() == 4).then_some(()));
    let cluster = json!({
        "apiVersion": "herd.dev/v1alpha1",
        "kind": "HadoopCluster",
        "metadata": {"name": CLUSTER, "namespace": NS},
        "spec": {
            "images": {"resourcemanager": "herd/resourcemanager:3.4.1", "nodemanager": "herd/nodemanager:3.4.1"},
            "pools": {
                "resourcemanager": {"replicas": 1, "cpu": "1", "memory": "1Gi"},
                "nodemanager": {"replicas": 4, "cpu": "1", "memory": "2Gi", "lifecycle": {"drainTimeoutSeconds": 60}},
            },
        },
    });
    api.double.put("herd.dev", "hadoopclusters", NS, cluster).unwrap();
    let op = api.operator("op-1", &["--resolve", &format!("{}={rm_ip}", host("resourcemanager", 0))]);
    wait_for(60, "the NodeManager StatefulSet at 4", || (api.sts_replicas("nodemanager") == Some(4)).then_some(()));
    // The ResourceManager pod's refresh container (graceful, as the operator renders it) and
    // the NodeManager containers, played here; the first shrink is checked against the
    // ResourceManager's states read before any NodeManager stops.
    let refresh = api.get("apps", "statefulsets", &format!("{CLUSTER}-resourcemanager")).unwrap()["spec"]["template"]["spec"]["containers"][1]["command"][2]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refresh.contains("yarn rmadmin -refreshNodes -g 60 -server"), "{refresh}");
    let first_shrink: Arc<Mutex<Option<Shrink>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (api, yarn, first_shrink, stop) = (api.clone(), yarn.clone(), first_shrink.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut applied = String::new();
            let mut seen_pods = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some(r) = api.sts_replicas("nodemanager").filter(|r| *r < 4) {
                    let mut seen = first_shrink.lock().unwrap();
                    if seen.is_none() {
                        *seen = Some((r, yarn.lock().unwrap().states()));
                    }
                }
                let pods: Vec<String> = api.double.list("", "pods", Some(NS)).iter().filter_map(|p| p["metadata"]["name"].as_str().map(String::from)).collect();
                {
                    // As for DataNodes: only a pod seen and gone again stops its NodeManager.
                    let mut y = yarn.lock().unwrap();
                    seen_pods.extend(pods.iter().cloned());
                    y.daemons.retain(|name, _| {
                        let removed = |p: &String| name.starts_with(&format!("{p}.")) && !pods.contains(p);
                        !name.starts_with(&format!("{CLUSTER}-nodemanager-")) || !seen_pods.iter().any(removed)
                    });
                }
                if let Some(cm) = api.get("", "configmaps", &format!("{CLUSTER}-hosts")) {
                    let exclude = cm["data"]["yarn.exclude"].as_str().unwrap_or_default().to_string();
                    if exclude != applied {
                        let y = yarn.lock().unwrap();
                        std::fs::write(y.path("yarn.exclude"), &exclude).unwrap();
                        if y.yarn(&["rmadmin", "-refreshNodes", "-g", "60", "-server"]).status.success() {
                            applied = exclude;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // A job with a container on NodeManager 3 for 6 s.
    let nm3 = format!("{}:8041", host("nodemanager", 3));
    let out = yarn.lock().unwrap().yarn(&["herd-double-sleep", "-nodes", &nm3, "-containers", "1", "-duration", "6", "-memory", "512"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let started = Instant::now();
    wait_for(30, "the job's container running on NodeManager 3", || {
        let nodes = yarn.lock().unwrap().rest("/ws/v1/cluster/nodes")?;
        let running = nodes["nodes"]["node"].as_array()?.iter().any(|n| n["id"] == nm3.as_str() && n["numContainers"] == 1);
        running.then_some(())
    });

    // `kubectl scale` on the NodeManager pool's HadoopPool.
    let out = ok(kubectl(&api, &["scale", "hadooppool", &format!("{CLUSTER}-nodemanager"), "--replicas=2"]));
    assert_eq!(out.trim(), format!("hadooppool.herd.dev/{CLUSTER}-nodemanager scaled"));
    wait_for(30, "2 and 3 draining", || {
        let l = leaving(&api.cluster());
        (l.get(&format!("{CLUSTER}-nodemanager-2")).map(String::as_str) == Some("draining") || l.contains_key(&format!("{CLUSTER}-nodemanager-3"))).then_some(())
    });
    wait_for(60, "the NodeManager StatefulSet at 2", || (api.sts_replicas("nodemanager") == Some(2) && first_shrink.lock().unwrap().is_some()).then_some(()));
    assert!(started.elapsed() >= Duration::from_secs(5), "the StatefulSet waited for the 6 s container: {:?}", started.elapsed());
    let (replicas, states) = first_shrink.lock().unwrap().clone().unwrap();
    for i in 2..4 {
        let state = states.get(&host("nodemanager", i)).cloned().unwrap_or_default();
        assert_eq!(state, "DECOMMISSIONED", "the StatefulSet shrank to {replicas} while nodemanager-{i} was `{state}`: {states:?}");
    }
    let metrics = yarn.lock().unwrap().rest("/ws/v1/cluster/metrics").unwrap();
    assert_eq!(metrics["clusterMetrics"]["appsCompleted"], 1, "the job finished on the draining NodeManager: {metrics}");
    wait_for(30, "status.leaving empty", || leaving(&api.cluster()).is_empty().then_some(()));
    let pool = api.get("herd.dev", "hadooppools", &format!("{CLUSTER}-nodemanager")).unwrap();
    assert_eq!((pool["spec"]["replicas"].clone(), pool["status"]["replicas"].clone()), (json!(2), json!(2)), "{pool}");
    assert_eq!(api.sts_replicas("nodemanager"), Some(2), "the StatefulSet stays at the pool's size");
    assert_eq!(api.cluster()["spec"]["pools"]["nodemanager"]["replicas"], 4, "the cluster's field is not rewritten");
    stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    drop(op);
}

/// `images/operator/build.sh` builds `herd/operator:<tag>` with Docker and no registry; the
/// image runs the operator as the nonroot user the Deployment names, and its `crd` prints the
/// committed CRDs. Needs Docker; fails, never skips, without it.
#[test]
fn the_operator_image_builds_locally_and_runs_its_binary() {
    let tag = format!("test-{}", std::process::id());
    let image = format!("herd/operator:{tag}");
    let out = Command::new(root().join("images/operator/build.sh"))
        .arg(&tag)
        .env("HERD_OPERATOR_BIN", bins().join("herd-operator"))
        .output()
        .unwrap();
    assert!(out.status.success(), "images/operator/build.sh (needs Docker): {}{}", text(&out.stdout), text(&out.stderr));
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
        }
    }
    let _remove = Remove(image.clone());
    let again = Command::new(root().join("images/operator/build.sh")).arg(&tag).env("HERD_OPERATOR_BIN", bins().join("herd-operator")).output().unwrap();
    assert!(text(&again.stdout).contains("up to date"), "a second build with the same inputs changes nothing: {}", text(&again.stdout));

    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user.trim(), "65532:65532");
    let crds = docker(&["run", "--rm", "--network", "none", "--read-only", &image, "crd"]);
    assert_eq!(crds, std::fs::read_to_string(root().join("manifests/operator/crd.yaml")).unwrap(), "the image's `crd` is the committed CRDs");
    let help = docker(&["run", "--rm", "--network", "none", &image, "--help"]);
    assert!(help.contains("herd's Kubernetes operator") && help.contains("--rack-label"), "{help}");
}
