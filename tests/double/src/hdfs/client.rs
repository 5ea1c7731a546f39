//! The `hdfs` command: `dfs` (`-put`, `-ls`, `-rm`, `-mkdir`, `-cat`), `fsck`, `dfsadmin`
//! (`-report`, `-refreshNodes`, `-safemode`), with Hadoop 3's output and exit codes (0 ok,
//! 1 error, -1 i.e. 255 for usage errors and failed admin calls). It finds the NameNode through
//! the configuration like the real client (`fs.defaultFS`, `-fs`, `-D key=value`).

use std::process::ExitCode;

use serde::de::DeserializeOwned;

use super::datanode::send;
use super::proto::{AddBlock, Block, Complete, Create, HdfsConf, Listing, LocatedBlock, PathOp, Report, SafeMode};
use crate::common::{java_date, ls_time};
use crate::conf::{self, Conf};

const USAGE: &str = "Usage: hdfs [OPTIONS] SUBCOMMAND [SUBCOMMAND OPTIONS]\n\n  OPTIONS is none or any of:\n\n--config dir                     Hadoop config directory\n--loglevel level                 set the log4j level for this command\n\n  SUBCOMMAND is one of:\n\n    Admin Commands:\n\ndfsadmin             run a DFS admin client\nfsck                 run a DFS filesystem checking utility\n\n    Client Commands:\n\ndfs                  run a filesystem command on the file system\n\n(herd test double: only dfs, fsck and dfsadmin are provided)\n\nSUBCOMMAND may print help when invoked w/o parameters or with -h.";

const DFS_USAGE: &str = "Usage: hadoop fs [generic options]\n\t[-cat [-ignoreCrc] <src> ...]\n\t[-ls [-C] [-d] [-h] [-q] [-R] [-t] [-S] [-r] [-u] [-e] [<path> ...]]\n\t[-mkdir [-p] <path> ...]\n\t[-put [-f] [-p] [-l] [-d] [-t <thread count>] [-q <thread pool queue size>] <localsrc> ... <dst>]\n\t[-rm [-f] [-r|-R] [-skipTrash] [-safely] <src> ...]\n\nGeneric options supported are:\n-conf <configuration file>        specify an application configuration file\n-D <property=value>               define a value for a given property\n-fs <file:///|hdfs://namenode:port> specify default filesystem URL to use, overrides 'fs.defaultFS' property from configurations.";

const DFSADMIN_USAGE: &str = "Usage: hdfs dfsadmin\nNote: Administrative commands can only be run as the HDFS superuser.\n\t[-report [-live] [-dead] [-decommissioning] [-enteringmaintenance] [-inmaintenance]]\n\t[-safemode <enter | leave | get | wait>]\n\t[-refreshNodes]\n";

/// `hdfs ARGS...`.
pub fn command(args: &[String]) -> ExitCode {
    let Some((sub, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(1);
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hdfs: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match sub.as_str() {
        "dfs" => rt.block_on(dfs(rest)),
        "fsck" => rt.block_on(fsck(rest)),
        "dfsadmin" => rt.block_on(dfsadmin(rest)),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("Error: Could not find or load main class {other}");
            1
        }
    };
    ExitCode::from(code)
}

/// Generic options (`-D k=v`, `-fs URI`, `-conf FILE`) before the command; the rest.
fn generic(args: &[String]) -> Result<(Conf, Vec<String>), String> {
    let mut conf = Conf::load().map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let kv = if a == "-D" {
            i += 1;
            args.get(i).cloned()
        } else {
            a.strip_prefix("-D").filter(|s| s.contains('=')).map(String::from)
        };
        if a == "-D" || (a.starts_with("-D") && a.contains('=')) {
            let kv = kv.ok_or("-D needs key=value")?;
            let (k, v) = kv.split_once('=').ok_or("-D needs key=value")?;
            conf.props.insert(k.to_string(), v.to_string());
        } else if a == "-fs" {
            i += 1;
            let v = args.get(i).ok_or("-fs needs a URI")?;
            conf.props.insert("fs.defaultFS".into(), v.clone());
            conf.props.remove("dfs.namenode.rpc-address");
        } else if a == "-conf" {
            i += 1;
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    Ok((conf, rest))
}

/// The NameNode as the client reaches it.
struct Nn {
    hc: HdfsConf,
    rpc: String,
    http: reqwest::Client,
}

/// A failed call, printed as `cmd: message`.
enum Fail {
    /// Hadoop's message.
    Msg(String),
}

fn local() -> String {
    let h = conf::hostname();
    let ip = conf::resolve(&h).map(|i| i.to_string()).unwrap_or_else(|| "127.0.0.1".into());
    format!("{h}/{ip}")
}

impl Nn {
    fn new(conf: &Conf) -> Result<Nn, Fail> {
        let hc = HdfsConf::from(conf).map_err(|e| Fail::Msg(e.to_string()))?;
        let (host, port) = hc.nn_rpc.clone();
        let ip = conf::resolve(&host).ok_or_else(|| Fail::Msg(format!("java.net.UnknownHostException: {host}")))?;
        let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(20)).build().map_err(|e| Fail::Msg(e.to_string()))?;
        Ok(Nn { rpc: format!("http://{ip}:{port}"), hc, http })
    }

    fn refused(&self, e: &reqwest::Error) -> Fail {
        let (host, port) = &self.hc.nn_rpc;
        if e.is_connect() {
            Fail::Msg(format!("Call From {} to {host}:{port} failed on connection exception: java.net.ConnectException: Connection refused; For more details see:  http://wiki.apache.org/hadoop/ConnectionRefused", local()))
        } else {
            Fail::Msg(format!("Failed on local exception: java.io.IOException: {e}; Host Details : local host is: \"{}\"; destination host is: \"{host}\":{port}; ", local()))
        }
    }

    async fn answer<T: DeserializeOwned>(&self, r: Result<reqwest::Response, reqwest::Error>) -> Result<T, Remote> {
        let r = r.map_err(|e| Remote::Io(self.refused(&e)))?;
        if r.status().is_success() {
            r.json().await.map_err(|e| Remote::Io(Fail::Msg(e.to_string())))
        } else {
            let e: super::proto::RemoteError = r.json().await.map_err(|e| Remote::Io(Fail::Msg(e.to_string())))?;
            Err(Remote::Exc(e))
        }
    }

    async fn get<T: DeserializeOwned>(&self, route: &str, q: &[(&str, &str)]) -> Result<T, Remote> {
        self.answer(self.http.get(format!("{}{route}", self.rpc)).query(q).send().await).await
    }

    async fn post<B: serde::Serialize, T: DeserializeOwned>(&self, route: &str, body: &B) -> Result<T, Remote> {
        self.answer(self.http.post(format!("{}{route}", self.rpc)).json(body).send().await).await
    }
}

/// A NameNode error or a transport failure.
enum Remote {
    Exc(super::proto::RemoteError),
    Io(Fail),
}

impl Remote {
    /// The message Hadoop's shell prints for it.
    fn text(&self) -> String {
        match self {
            Remote::Io(Fail::Msg(m)) => m.clone(),
            Remote::Exc(e) => e.message.lines().next().unwrap_or("").to_string(),
        }
    }

    fn full(&self) -> String {
        match self {
            Remote::Io(Fail::Msg(m)) => m.clone(),
            Remote::Exc(e) => e.message.clone(),
        }
    }

    fn is(&self, short: &str) -> bool {
        matches!(self, Remote::Exc(e) if e.short() == short)
    }
}

fn user() -> String {
    std::env::var("HADOOP_USER_NAME").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "root".into())
}

/// Absolute HDFS path (relative ones are under `/user/<user>`).
fn absolute(p: &str) -> String {
    let p = p.strip_prefix("hdfs://").map(|r| r.find('/').map(|i| &r[i..]).unwrap_or("/")).unwrap_or(p);
    if p.starts_with('/') { p.to_string() } else { format!("/user/{}/{p}", user()) }
}

async fn dfs(args: &[String]) -> u8 {
    let (conf, args) = match generic(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}\n{DFS_USAGE}");
            return 255;
        }
    };
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{DFS_USAGE}");
        return 255;
    };
    let name = cmd.trim_start_matches('-').to_string();
    if !matches!(cmd.as_str(), "-put" | "-copyFromLocal" | "-ls" | "-rm" | "-mkdir" | "-cat") {
        eprintln!("{cmd}: Unknown command\n{DFS_USAGE}");
        return 255;
    }
    let nn = match Nn::new(&conf) {
        Ok(nn) => nn,
        Err(Fail::Msg(m)) => {
            eprintln!("{name}: {m}");
            return 1;
        }
    };
    let flags: Vec<&str> = rest.iter().filter(|a| a.starts_with('-') && a.len() > 1).map(String::as_str).collect();
    let paths: Vec<&str> = rest.iter().filter(|a| !(a.starts_with('-') && a.len() > 1)).map(String::as_str).collect();
    let mut code = 0;
    match cmd.as_str() {
        "-put" | "-copyFromLocal" => {
            if paths.len() < 2 {
                eprintln!("-{name}: Not enough arguments: expected 1 but got 0\nUsage: hadoop fs [generic options]\n\t-put [-f] [-p] [-l] [-d] <localsrc> ... <dst>");
                return 255;
            }
            let (dst, srcs) = paths.split_last().map(|(d, s)| (absolute(d), s)).unwrap_or_default();
            for src in srcs {
                if let Err(m) = put(&nn, &conf, src, &dst, srcs.len() > 1, flags.contains(&"-f")).await {
                    eprintln!("{name}: {m}");
                    code = 1;
                }
            }
        }
        "-ls" => {
            let targets = if paths.is_empty() { vec![format!("/user/{}", user())] } else { paths.iter().map(|p| absolute(p)).collect() };
            for p in targets {
                match nn.get::<Listing>("/client/list", &[("path", &p)]).await {
                    Ok(l) => print_ls(&l),
                    Err(e) if e.is("FileNotFoundException") => {
                        eprintln!("ls: `{p}': No such file or directory");
                        code = 1;
                    }
                    Err(e) => {
                        eprintln!("ls: {}", e.text());
                        code = 1;
                    }
                }
            }
        }
        "-rm" => {
            let recursive = flags.iter().any(|f| f.contains('r') || f.contains('R')) && !flags.iter().all(|f| *f == "-skipTrash" || *f == "-f" || *f == "-safely");
            let force = flags.contains(&"-f");
            if paths.is_empty() {
                eprintln!("-rm: Not enough arguments: expected 1 but got 0");
                return 255;
            }
            for p in paths {
                let abs = absolute(p);
                match nn.get::<Listing>("/client/list", &[("path", &abs)]).await {
                    Ok(l) if l.status.is_dir && !recursive => {
                        eprintln!("rm: `{p}': Is a directory");
                        code = 1;
                        continue;
                    }
                    Err(e) if e.is("FileNotFoundException") => {
                        if !force {
                            eprintln!("rm: `{p}': No such file or directory");
                            code = 1;
                        }
                        continue;
                    }
                    _ => {}
                }
                match nn.post::<_, bool>("/client/delete", &PathOp { path: abs, recursive }).await {
                    Ok(true) => println!("Deleted {p}"),
                    Ok(false) => {
                        eprintln!("rm: `{p}': No such file or directory");
                        code = 1;
                    }
                    Err(e) => {
                        eprintln!("rm: {}", e.text());
                        code = 1;
                    }
                }
            }
        }
        "-mkdir" => {
            for p in paths {
                let abs = absolute(p);
                if !flags.contains(&"-p") {
                    if nn.get::<Listing>("/client/list", &[("path", &abs)]).await.is_ok() {
                        eprintln!("mkdir: `{p}': File exists");
                        code = 1;
                        continue;
                    }
                    let parent = abs.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/" } else { p }).unwrap_or("/").to_string();
                    if nn.get::<Listing>("/client/list", &[("path", &parent)]).await.is_err() {
                        eprintln!("mkdir: `{p}': No such file or directory");
                        code = 1;
                        continue;
                    }
                }
                if let Err(e) = nn.post::<_, bool>("/client/mkdirs", &PathOp { path: abs, recursive: true }).await {
                    eprintln!("mkdir: {}", e.text());
                    code = 1;
                }
            }
        }
        "-cat" => {
            for p in paths {
                if let Err(m) = cat(&nn, &absolute(p)).await {
                    eprintln!("cat: {m}");
                    code = 1;
                }
            }
        }
        _ => {}
    }
    code
}

async fn put(nn: &Nn, conf: &Conf, src: &str, dst: &str, many: bool, overwrite: bool) -> Result<(), String> {
    let data = std::fs::read(src).map_err(|_| format!("`{src}': No such file or directory"))?;
    let base = std::path::Path::new(src).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = match nn.get::<Listing>("/client/list", &[("path", dst)]).await {
        Ok(l) if l.status.is_dir => format!("{}/{base}", dst.trim_end_matches('/')),
        Ok(_) if many => return Err(format!("`{dst}': Is not a directory")),
        Ok(_) if !overwrite => return Err(format!("`{dst}': File exists")),
        _ => dst.to_string(),
    };
    let replication = conf.num("dfs.replication", 3u16).map_err(|e| e.to_string())?;
    let block_size = conf.bytes("dfs.blocksize", 134_217_728).map_err(|e| e.to_string())?;
    let create = Create { path: path.clone(), replication, block_size, overwrite };
    match nn.post::<_, ()>("/client/create", &create).await {
        Ok(()) => {}
        Err(e) if e.is("FileAlreadyExistsException") => return Err(format!("`{path}': File exists")),
        Err(e) if e.is("FileNotFoundException") => {
            let parent = path.rsplit_once('/').map(|(p, _)| p.to_string()).unwrap_or_default();
            return Err(format!("`{parent}': No such file or directory"));
        }
        Err(e) => return Err(e.full()),
    }
    let mut written = Vec::new();
    for chunk in data.chunks(block_size.max(1) as usize) {
        let lb: LocatedBlock = nn.post("/client/addblock", &AddBlock { path: path.clone(), client_host: conf::hostname() }).await.map_err(|e| e.full())?;
        let b = Block { len: chunk.len() as u64, ..lb.block };
        let pipeline: Vec<String> = lb.targets.iter().map(|t| t.xfer_addr.clone()).collect();
        send(&nn.http, &lb.pool_id, b, axum::body::Bytes::copy_from_slice(chunk), &pipeline).await?;
        written.push(b);
    }
    nn.post::<_, ()>("/client/complete", &Complete { path, blocks: written }).await.map_err(|e| e.full())
}

async fn cat(nn: &Nn, path: &str) -> Result<(), String> {
    use std::io::Write;
    let blocks: Vec<LocatedBlock> = match nn.get("/client/locations", &[("path", path)]).await {
        Ok(b) => b,
        Err(e) if e.is("FileNotFoundException") => return Err(format!("`{path}': No such file or directory")),
        Err(e) => return Err(e.text()),
    };
    let mut out = std::io::stdout().lock();
    for lb in blocks {
        let mut got = None;
        for t in &lb.targets {
            if let Ok(r) = nn.http.get(format!("http://{}/block/{}", t.xfer_addr, lb.block.id)).send().await
                && r.status().is_success()
                    && let Ok(b) = r.bytes().await {
                        got = Some(b);
                        break;
                    }
        }
        let data = got.ok_or_else(|| format!("Could not obtain block: {}:{} file={path}", lb.pool_id, lb.block.name()))?;
        out.write_all(&data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn print_ls(l: &Listing) {
    let entries = if l.status.is_dir {
        println!("Found {} items", l.children.len());
        &l.children
    } else {
        std::slice::from_ref(&l.status)
    };
    let max_len = entries.iter().map(|e| e.len.to_string().len()).max().unwrap_or(0).max(10);
    let u = user();
    for e in entries {
        let (perm, repl) = if e.is_dir { ("drwxr-xr-x", "-".to_string()) } else { ("-rw-r--r--", e.replication.to_string()) };
        println!("{perm} {repl:>3} {u} supergroup {:>max_len$} {} {}", e.len, ls_time(e.mtime), e.path);
    }
}

async fn fsck(args: &[String]) -> u8 {
    let (conf, args) = match generic(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 255;
        }
    };
    let path = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_else(|| "/".into());
    let hc = match HdfsConf::from(&conf) {
        Ok(hc) => hc,
        Err(e) => {
            eprintln!("fsck: {e}");
            return 255;
        }
    };
    let (host, port) = hc.nn_http_host();
    let encoded: String = path.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    println!("Connecting to namenode via http://{host}:{port}/fsck?ugi={}&path={encoded}", user());
    let Some(ip) = conf::resolve(&host) else {
        eprintln!("fsck: java.net.UnknownHostException: {host}");
        return 255;
    };
    let url = format!("http://{ip}:{port}/fsck?ugi={}&path={encoded}", user());
    let text = match reqwest::get(&url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => {
            eprintln!("fsck: java.net.ConnectException: Connection refused");
            return 255;
        }
    };
    print!("{text}");
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    if last.ends_with("is HEALTHY") {
        0
    } else if last.ends_with("is CORRUPT") {
        1
    } else if last.ends_with("does not exist") {
        0
    } else {
        255
    }
}

/// `StringUtils.byteDesc`.
pub fn byte_desc(n: u64) -> String {
    const P: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut i = 0;
    while i + 1 < P.len() && n >= 1u64 << (10 * (i + 2)) {
        i += 1;
    }
    let shift = 10 * (i + 1);
    if n & ((1u64 << shift) - 1) == 0 { format!("{} {}B", n >> shift, P[i]) } else { format!("{:.2} {}B", n as f64 / (1u64 << shift) as f64, P[i]) }
}

fn percent(part: u64, total: u64) -> String {
    let p = if total == 0 { 0.0 } else { part as f64 * 100.0 / total as f64 };
    format!("{p:.2}%")
}

fn print_report(r: &Report, show_live: bool, show_dead: bool, decom_only: bool) {
    let present = r.remaining + r.dfs_used;
    println!("Configured Capacity: {} ({})", r.capacity, byte_desc(r.capacity));
    println!("Present Capacity: {present} ({})", byte_desc(present));
    println!("DFS Remaining: {} ({})", r.remaining, byte_desc(r.remaining));
    println!("DFS Used: {} ({})", r.dfs_used, byte_desc(r.dfs_used));
    println!("DFS Used%: {}", percent(r.dfs_used, present));
    println!("Replicated Blocks:");
    println!("\tUnder replicated blocks: {}", r.under_replicated);
    println!("\tBlocks with corrupt replicas: {}", r.corrupt);
    println!("\tMissing blocks: {}", r.missing);
    println!("\tMissing blocks (with replication factor 1): {}", r.missing_repl_one);
    println!("\tLow redundancy blocks with highest priority to recover: {}", r.highest_priority);
    println!("\tPending deletion blocks: {}", r.pending_deletion);
    println!("Erasure Coded Block Groups: ");
    println!("\tLow redundancy block groups: 0");
    println!("\tBlock groups with corrupt internal blocks: 0");
    println!("\tMissing block groups: 0");
    println!("\tLow redundancy blocks with highest priority to recover: 0");
    println!("\tPending deletion blocks: 0");
    println!();
    println!("-------------------------------------------------");
    let node = |n: &super::proto::NodeReport| {
        let present = n.remaining + n.dfs_used;
        println!("Name: {} ({})", n.name, n.hostname);
        println!("Hostname: {}", n.hostname);
        if n.location != "/default-rack" {
            println!("Rack: {}", n.location);
        }
        println!("Decommission Status : {}", n.admin_state);
        println!("Configured Capacity: {} ({})", n.capacity, byte_desc(n.capacity));
        println!("DFS Used: {} ({})", n.dfs_used, byte_desc(n.dfs_used));
        let non_dfs = n.capacity.saturating_sub(present);
        println!("Non DFS Used: {non_dfs} ({})", byte_desc(non_dfs));
        println!("DFS Remaining: {} ({})", n.remaining, byte_desc(n.remaining));
        println!("DFS Used%: {}", percent(n.dfs_used, n.capacity));
        println!("DFS Remaining%: {}", percent(n.remaining, n.capacity));
        println!("Configured Cache Capacity: 0 (0 B)");
        println!("Cache Used: 0 (0 B)");
        println!("Cache Remaining: 0 (0 B)");
        println!("Cache Used%: 100.00%");
        println!("Cache Remaining%: 0.00%");
        println!("Xceivers: {}", n.xceivers);
        println!("Last contact: {}", java_date(n.last_contact_ms));
        println!("Last Block Report: {}", if n.last_block_report_ms == 0 { "Never".to_string() } else { java_date(n.last_block_report_ms) });
        println!("Num of Blocks: {}", n.num_blocks);
        println!();
    };
    if decom_only {
        let d: Vec<_> = r.nodes.iter().filter(|n| n.admin_state == "Decommission in progress").collect();
        println!("Decommissioning datanodes ({}):\n", d.len());
        d.into_iter().for_each(node);
        return;
    }
    if show_live {
        let live: Vec<_> = r.nodes.iter().filter(|n| n.alive).collect();
        println!("Live datanodes ({}):\n", live.len());
        live.into_iter().for_each(node);
        println!();
    }
    if show_dead {
        let dead: Vec<_> = r.nodes.iter().filter(|n| !n.alive).collect();
        println!("Dead datanodes ({}):\n", dead.len());
        dead.into_iter().for_each(node);
    }
}

async fn dfsadmin(args: &[String]) -> u8 {
    let (conf, args) = match generic(args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}\n{DFSADMIN_USAGE}");
            return 255;
        }
    };
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{DFSADMIN_USAGE}");
        return 255;
    };
    if !matches!(cmd.as_str(), "-report" | "-refreshNodes" | "-safemode") {
        eprintln!("{}: Unknown command\n{DFSADMIN_USAGE}", cmd.trim_start_matches('-'));
        return 255;
    }
    if cmd == "-safemode" && !matches!(rest.first().map(String::as_str), Some("get" | "enter" | "leave")) {
        eprintln!("Usage: hdfs dfsadmin [-safemode enter | leave | get | wait | forceExit]");
        return 255;
    }
    let name = cmd.trim_start_matches('-');
    let nn = match Nn::new(&conf) {
        Ok(nn) => nn,
        Err(Fail::Msg(m)) => {
            eprintln!("{name}: {m}");
            return 255;
        }
    };
    let res: Result<(), Remote> = match cmd.as_str() {
        "-report" => nn.get::<Report>("/admin/report", &[]).await.map(|r| {
            let has = |f: &str| rest.iter().any(|a| a == f);
            let (live, dead, decom) = (has("-live"), has("-dead"), has("-decommissioning"));
            let all = !(live || dead || decom);
            print_report(&r, all || live, all || dead, decom && !live && !dead);
        }),
        "-refreshNodes" => nn.post::<_, ()>("/admin/refreshNodes", &()).await.map(|()| println!("Refresh nodes successful")),
        _ => {
            let action = rest.first().map(String::as_str).unwrap_or("get");
            nn.post::<_, SafeMode>(&format!("/admin/safemode?action={action}"), &()).await.map(|s| println!("Safe mode is {}", if s.on { "ON" } else { "OFF" }))
        }
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {}", e.text());
            255
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_desc_like_hadoop() {
        assert_eq!(byte_desc(0), "0 B");
        assert_eq!(byte_desc(4096), "4 KB");
        assert_eq!(byte_desc(236_105_728), "225.17 MB");
        assert_eq!(byte_desc(7_641_759_744_000), "6.95 TB");
    }

    #[test]
    fn relative_paths_are_under_the_home_dir() {
        assert_eq!(absolute("/a"), "/a");
        assert_eq!(absolute("hdfs://nn:8020/a/b"), "/a/b");
        assert!(absolute("x").ends_with("/x"));
    }
}
