//! The NameNode double's `/jmx` against real captures (tests/fixtures/hadoop, see SOURCES
//! there): every field of the captured beans exists in the double's answer with the same JSON
//! type, including the entries of LiveNodes, DeadNodes and DecomNodes (JSON inside strings).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hadoop-double");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/hadoop")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Flattens a bean to `path → type`; node maps held in strings are parsed and their host keys
/// replaced by `*`.
fn shape(prefix: &str, v: &Value, out: &mut BTreeMap<String, &'static str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                shape(&format!("{prefix}/{k}"), v, out);
            }
        }
        Value::Array(a) => {
            out.insert(prefix.into(), "array");
            if let Some(first) = a.first() {
                shape(&format!("{prefix}[]"), first, out);
            }
        }
        Value::String(s) if ["/LiveNodes", "/DeadNodes", "/DecomNodes"].iter().any(|f| prefix.ends_with(f)) => {
            out.insert(prefix.into(), "string");
            if let Ok(Value::Object(nodes)) = serde_json::from_str::<Value>(s) {
                for node in nodes.values() {
                    shape(&format!("{prefix}/*"), node, out);
                }
            }
        }
        _ => {
            out.insert(prefix.into(), kind(v));
        }
    }
}

fn capture(file: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["beans"][0].clone()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf.split_once("\r\n\r\n")?.1.to_string())
}

#[test]
fn namenode_beans_have_the_captured_shape() {
    let dir = tempfile::tempdir().unwrap();
    let net = format!("127.{}.{}", 1 + std::process::id() % 250, 1 + (std::process::id() / 250) % 250);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("{net}.10 nn.test\n{net}.11 dn-a.test\n{net}.12 dn-b.test\n{net}.13 dn-c.test\n")).unwrap();
    std::fs::write(dir.path().join("exclude"), "").unwrap();
    let start = |role: &str, name: &str| {
        let conf = dir.path().join(format!("conf-{name}"));
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("core-site.xml"), "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn.test:8020</value></property></configuration>").unwrap();
        let props = [
            ("dfs.namenode.name.dir", dir.path().join("name").display().to_string()),
            ("dfs.datanode.data.dir", dir.path().join(name).display().to_string()),
            ("dfs.heartbeat.interval", "200ms".into()),
            ("dfs.namenode.heartbeat.recheck-interval", "200".into()),
            ("dfs.namenode.decommission.interval", "1".into()),
            ("dfs.namenode.fs-limits.min-block-size", "0".into()),
            ("dfs.namenode.safemode.extension", "0".into()),
            ("dfs.hosts.exclude", dir.path().join("exclude").display().to_string()),
        ];
        let body: String = props.iter().map(|(k, v)| format!("<property><name>{k}</name><value>{v}</value></property>")).collect();
        std::fs::write(conf.join("hdfs-site.xml"), format!("<configuration>{body}</configuration>")).unwrap();
        Command::new(BIN)
            .args(["daemon", role])
            .env("HADOOP_CONF_DIR", &conf)
            .env("HERD_DOUBLE_HOSTS_FILE", &hosts)
            .env("HERD_DOUBLE_HOSTNAME", name)
            .env("HADOOP_LOG_DIR", dir.path().join("logs"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let hdfs = |args: &[&str]| {
        Command::new(BIN).arg("hdfs").args(args).env("HADOOP_CONF_DIR", dir.path().join("conf-nn.test")).env("HERD_DOUBLE_HOSTS_FILE", &hosts).output().unwrap()
    };
    let _nn = Kill(start("namenode", "nn.test"));
    let _a = Kill(start("datanode", "dn-a.test"));
    let _b = Kill(start("datanode", "dn-b.test"));
    let c = Kill(start("datanode", "dn-c.test"));
    let jmx = |name: &str| -> Option<Value> {
        let body = get(&format!("{net}.10:9870"), &format!("/jmx?qry=Hadoop:service=NameNode,name={name}"))?;
        serde_json::from_str::<Value>(&body).ok()?["beans"].get(0).cloned()
    };
    let nodes = |field: &str| -> BTreeMap<String, Value> { jmx("NameNodeInfo").and_then(|i| serde_json::from_str(i[field].as_str()?).ok()).unwrap_or_default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes("LiveNodes").len() < 3 {
        assert!(Instant::now() < deadline, "DataNodes did not register");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A file on two nodes, one of them decommissioning (it cannot finish: replication 2, and
    // the third node dies), so LiveNodes, DeadNodes and DecomNodes all have entries.
    let local = dir.path().join("f");
    std::fs::write(&local, vec![7u8; 100]).unwrap();
    assert!(hdfs(&["dfs", "-D", "dfs.replication=3", "-put", local.to_str().unwrap(), "/f"]).status.success());
    drop(c);
    std::fs::write(dir.path().join("exclude"), "dn-a.test\n").unwrap();
    assert!(hdfs(&["dfsadmin", "-refreshNodes"]).status.success());
    while nodes("DeadNodes").is_empty() || nodes("DecomNodes").is_empty() {
        assert!(Instant::now() < deadline, "no dead or decommissioning node");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut failures = Vec::new();
    for (file, bean) in [
        ("namenode-jmx-nninfo.datadog-integrations-core.json", "NameNodeInfo"),
        ("namenode-jmx-fsnamesystemstate.dd-agent.json", "FSNamesystemState"),
        ("namenode-jmx-fsnamesystem.dd-agent.json", "FSNamesystem"),
    ] {
        let mut want = BTreeMap::new();
        shape("", &capture(file), &mut want);
        let mut got = BTreeMap::new();
        shape("", &jmx(bean).unwrap(), &mut got);
        for (path, ty) in &want {
            match got.get(path) {
                Some(t) if t == ty => {}
                Some(t) => failures.push(format!("{bean}{path}: {t}, capture has {ty}")),
                None if OPTIONAL.contains(&path.as_str()) => {}
                None => failures.push(format!("{bean}{path}: missing ({ty} in {file})")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Captured fields the double leaves out, each because the double has no such subsystem.
const OPTIONAL: &[&str] = &[];
