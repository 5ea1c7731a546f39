//! The `yarn` command subset: `node` (Hadoop 3's NodeCLI output), `rmadmin -refreshNodes`
//! (RMAdminCLI's options, messages and exit codes: -1 → 255), and the double-only
//! `herd-double-sleep`. It finds the ResourceManager through the rendered config, and logs
//! "Connecting to ResourceManager" on stderr as the real client does.

use super::cluster::NodeState;
use super::config::{RmAddrs, split_host_port};
use crate::common::{log_time, now_millis};
use super::wire::{DecommissionType, DecommissioningNodes, NodeReport, RefreshNodesRequest, SleepAppRequest, SleepAppResponse};
use crate::conf::{self, Conf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Hadoop's `-1`, as the shell sees it.
const FAIL: u8 = 255;

/// `yarn ARGS...`.
pub fn run(args: &[String]) -> ExitCode {
    let Some(sub) = args.first() else {
        eprint!("{}", yarn_usage());
        return ExitCode::from(1);
    };
    let rest = &args[1..];
    let conf = match Conf::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Exception in thread \"main\" java.lang.RuntimeException: {e}");
            return ExitCode::from(1);
        }
    };
    let client = match Client::new(&conf) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("yarn (double): {e}");
            return ExitCode::from(1);
        }
    };
    let code = match sub.as_str() {
        "node" => node(&client, rest),
        "rmadmin" => rmadmin(&client, rest),
        "herd-double-sleep" => sleep_app(&client, rest),
        "version" => {
            println!("Hadoop {}\nherd-hadoop-double: a TEST DOUBLE of Hadoop, not Hadoop", super::rest::VERSION);
            0
        }
        "--help" | "-help" | "-h" | "help" => {
            print!("{}", yarn_usage());
            0
        }
        other => {
            eprintln!("Error: Could not find or load main class {other}");
            eprint!("{}", yarn_usage());
            1
        }
    };
    ExitCode::from(code)
}

fn yarn_usage() -> String {
    "Usage: yarn [OPTIONS] SUBCOMMAND [SUBCOMMAND OPTIONS]\n\
     \x20 (herd-hadoop-double: a TEST DOUBLE of Hadoop's yarn command, this subset only)\n\n\
     \x20   SUBCOMMAND is one of:\n\n\
     \x20 node                 prints node report(s)\n\
     \x20 rmadmin              admin tools\n\
     \x20 version              print the version\n\
     \x20 herd-double-sleep    DOUBLE ONLY: run simulated containers for a while\n\
     \x20                      -nodes NODE_ID[,..] -containers N -duration SECS [-memory MB]\n"
        .to_string()
}

/// Talks to the RM's client (8032) and admin (8033) addresses.
struct Client {
    addrs: RmAddrs,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    fn new(conf: &Conf) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Client { addrs: RmAddrs::from_conf(conf), rt, http })
    }

    fn log(&self, class: &str, msg: &str) {
        eprintln!("{} INFO {class}: {msg}", log_time(now_millis()));
    }

    /// `http://IP:PORT` for `host:port`, and the `host/ip:port` Hadoop prints.
    fn base(&self, addr: &str) -> Result<(String, String), String> {
        let host = split_host_port(addr).0;
        let sock = conf::resolve_addr(addr).ok_or_else(|| format!("java.lang.IllegalArgumentException: java.net.UnknownHostException: {host}"))?;
        Ok((format!("http://{sock}"), format!("{host}/{sock}")))
    }

    fn connect(&self, addr: &str) -> Result<String, String> {
        let (url, shown) = self.base(addr)?;
        self.log("client.DefaultNoHARMFailoverProxyProvider", &format!("Connecting to ResourceManager at {shown}"));
        Ok(url)
    }

    /// Sends one request, retrying a refused connection ten times a second apart, as
    /// Hadoop's IPC client does; the error text on failure.
    fn send(&self, addr: &str, req: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder) -> Result<String, String> {
        let (_, shown) = self.base(addr)?;
        self.rt.block_on(async {
            let mut tries = 0;
            loop {
                match req(&self.http).send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let body = resp.text().await.map_err(|e| e.to_string())?;
                        return if ok { Ok(body) } else { Err(body) };
                    }
                    Err(e) if tries < 10 => {
                        self.log(
                            "ipc.Client",
                            &format!("Retrying connect to server: {shown}. Already tried {tries} time(s); retry policy is RetryUpToMaximumCountWithFixedSleep(maxRetries=10, sleepTime=1000 MILLISECONDS) ({e})"),
                        );
                        tries += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(format!(
                            "Call From {} to {shown} failed on connection exception: java.net.ConnectException: Connection refused ({e})",
                            conf::hostname()
                        ));
                    }
                }
            }
        })
    }

    fn nodes(&self, states: &[NodeState]) -> Result<Vec<NodeReport>, String> {
        let url = self.connect(&self.addrs.client)?;
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let q = states.join(",");
        let body = self.send(&self.addrs.client, |h| h.get(format!("{url}/getClusterNodes")).query(&[("states", q.as_str())]))?;
        serde_json::from_str(&body).map_err(|e| e.to_string())
    }

    fn refresh(&self, url: &str, kind: DecommissionType, timeout_secs: Option<i64>) -> Result<(), String> {
        let body = RefreshNodesRequest { kind, timeout_secs };
        self.send(&self.addrs.admin, |h| h.post(format!("{url}/refreshNodes")).json(&body)).map(|_| ())
    }

    fn decommissioning(&self, url: &str) -> Result<Vec<String>, String> {
        let body = self.send(&self.addrs.admin, |h| h.get(format!("{url}/checkForDecommissioningNodes")))?;
        serde_json::from_str::<DecommissioningNodes>(&body).map(|d| d.nodes).map_err(|e| e.to_string())
    }
}

/// NodeCLI's `%16s\t%15s\t%17s\t%28s` row.
pub fn node_row(id: &str, state: &str, http: &str, containers: &str) -> String {
    format!("{id:>16}\t{state:>15}\t{http:>17}\t{containers:>28}\n")
}

fn valid_states() -> String {
    let all: Vec<&str> = NodeState::ALL.iter().map(|s| s.as_str()).collect();
    format!("The valid node state can be one of the following: {}.", all.join(","))
}

fn node_usage() -> String {
    format!(
        "usage: node\n\
         \x20-all                 Works with -list to list all nodes.\n\
         \x20-help                Displays help for all commands.\n\
         \x20-list                List all running nodes. Supports optional use of\n\
         \x20                     -states to filter nodes based on node state, all -all\n\
         \x20                     to list all nodes, -showDetails to display more\n\
         \x20                     details about each node.\n\
         \x20-showDetails         Works with -list to show more details about each\n\
         \x20                     node.\n\
         \x20-states <States>     Works with -list to filter nodes based on input\n\
         \x20                     comma-separated list of node states. {}\n\
         \x20-status <NodeId>     Prints the status report of the node.\n",
        valid_states()
    )
}

/// `yarn node`: NodeCLI. Note its quirk, kept: an invalid command prints usage and exits 0.
fn node(client: &Client, args: &[String]) -> u8 {
    let (mut list, mut all, mut help) = (false, false, false);
    let mut states: Option<Vec<String>> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].to_ascii_lowercase().as_str() {
            "-list" | "--list" => list = true,
            "-all" | "--all" => all = true,
            "-help" | "--help" => help = true,
            "-showdetails" | "--showdetails" => {}
            "-states" | "--states" => {
                let mut vals = Vec::new();
                while i + 1 < args.len() && !args[i + 1].starts_with('-') {
                    i += 1;
                    vals.extend(args[i].split(',').map(str::to_string));
                }
                if vals.is_empty() {
                    println!("Missing argument for options");
                    print!("{}", node_usage());
                    return FAIL;
                }
                states = Some(vals);
            }
            "-status" => {
                println!("yarn node -status: not supported by the herd double");
                return FAIL;
            }
            _ => {}
        }
        i += 1;
    }
    if !list {
        if help {
            print!("{}", node_usage());
            return 0;
        }
        eprintln!("Invalid Command Usage : ");
        print!("{}", node_usage());
        return 0;
    }
    let wanted: Vec<NodeState> = if all {
        NodeState::ALL.to_vec()
    } else if let Some(names) = states {
        let mut out = Vec::new();
        for n in names.iter().filter(|n| !n.trim().is_empty()) {
            match NodeState::parse(n) {
                Some(s) => out.push(s),
                None => {
                    println!("The node state {n} is invalid.");
                    println!("{}", valid_states());
                    return FAIL;
                }
            }
        }
        out
    } else {
        vec![NodeState::Running]
    };
    match client.nodes(&wanted) {
        Ok(reports) => {
            let mut out = format!("Total Nodes:{}\n", reports.len());
            out.push_str(&node_row("Node-Id", "Node-State", "Node-Http-Address", "Number-of-Running-Containers"));
            for r in &reports {
                out.push_str(&node_row(&r.node_id, &r.state, &r.http_address, &r.num_containers.to_string()));
            }
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("Exception in thread \"main\" {e}");
            FAIL
        }
    }
}

const REFRESH_USAGE: &str = "Usage: yarn rmadmin [-refreshNodes [-g|graceful [timeout in seconds] -client|server]]\n";

fn rmadmin_usage() -> String {
    "Usage: yarn rmadmin\n\
     \x20  -refreshQueues \n\
     \x20  -refreshNodes [-g|graceful [timeout in seconds] -client|server]\n\
     \x20  -refreshNodesResources \n\
     \x20  -refreshSuperUserGroupsConfiguration \n\
     \x20  -refreshUserToGroupsMappings \n\
     \x20  -refreshAdminAcls \n\
     \x20  -refreshServiceAcl \n\
     \x20  -help [cmd]\n"
        .to_string()
}

fn generic_usage() -> &'static str {
    "Generic options supported are:\n\
     -conf <configuration file>        specify an application configuration file\n\
     -D <property=value>               define a value for a given property\n\n\
     The general command line syntax is:\n\
     command [genericOptions] [commandOptions]\n\n"
}

/// `yarn rmadmin`: RMAdminCLI's `-refreshNodes` (other refreshes are accepted and do nothing).
fn rmadmin(client: &Client, args: &[String]) -> u8 {
    let Some(cmd) = args.first().map(String::as_str) else {
        eprint!("{}{}", rmadmin_usage(), generic_usage());
        return FAIL;
    };
    match cmd {
        "-help" => {
            println!("rmadmin is the command to execute YARN administrative commands.");
            print!("{}", rmadmin_usage());
            0
        }
        "-refreshNodes" => refresh_nodes(client, &args[1..]),
        "-refreshQueues" | "-refreshNodesResources" | "-refreshSuperUserGroupsConfiguration" | "-refreshUserToGroupsMappings"
        | "-refreshAdminAcls" | "-refreshServiceAcl" => {
            if args.len() != 1 {
                eprint!("Usage: yarn rmadmin [{cmd}]\n{}", generic_usage());
                return 0;
            }
            0
        }
        other => {
            eprintln!("{}: Unknown command", other.trim_start_matches('-'));
            eprint!("{}{}", rmadmin_usage(), generic_usage());
            FAIL
        }
    }
}

/// How `-refreshNodes` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Normal,
    Graceful { timeout: i64, client_tracking: bool },
}

/// Parses `-refreshNodes`'s options; `Err(message)` prints usage (message first when not empty).
pub fn parse_refresh(args: &[String]) -> Result<Refresh, String> {
    let (mut graceful, mut timeout, mut client, mut server) = (false, None, false, false);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-g" | "--g" | "-graceful" | "--graceful" => {
                graceful = true;
                if let Some(next) = args.get(i + 1)
                    && !matches!(next.as_str(), "-client" | "-server" | "--client" | "--server" | "-g" | "-graceful" | "--graceful")
                {
                    let t: i64 = next.parse().map_err(|_| format!("refreshNodes: Invalid timeout specified : {next}"))?;
                    if t < -1 {
                        return Err(format!("refreshNodes: Invalid timeout specified : {t}"));
                    }
                    timeout = Some(t);
                    i += 1;
                }
            }
            "-client" | "--client" => client = true,
            "-server" | "--server" => server = true,
            _ => {}
        }
        i += 1;
    }
    if !graceful {
        return Ok(Refresh::Normal);
    }
    if !client && !server {
        return Err(String::new());
    }
    Ok(Refresh::Graceful { timeout: timeout.unwrap_or(-1), client_tracking: client })
}

fn refresh_nodes(client: &Client, args: &[String]) -> u8 {
    let how = match parse_refresh(args) {
        Ok(h) => h,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            eprint!("{REFRESH_USAGE}{}", generic_usage());
            return FAIL;
        }
    };
    let url = match client.connect(&client.addrs.admin) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("refreshNodes: {e}");
            return FAIL;
        }
    };
    let fail = |e: String| {
        eprintln!("refreshNodes: {}", e.lines().next().unwrap_or(""));
        FAIL
    };
    match how {
        Refresh::Normal => client.refresh(&url, DecommissionType::Normal, None).map_or_else(fail, |_| 0),
        Refresh::Graceful { timeout, client_tracking } => {
            if let Err(e) = client.refresh(&url, DecommissionType::Graceful, Some(timeout)) {
                return fail(e);
            }
            if !client_tracking {
                return 0;
            }
            // RMAdminCLI's client-side tracking: poll every second, up to timeout + 5 s.
            let started = Instant::now();
            let mut waited: i64 = 0;
            let mut still = true;
            while timeout == -1 || waited < timeout + 5 {
                std::thread::sleep(Duration::from_secs(1));
                waited += 1;
                match client.decommissioning(&url) {
                    Ok(nodes) if nodes.is_empty() => {
                        still = false;
                        break;
                    }
                    Ok(nodes) => println!("Nodes '{}' are still decommissioning.", nodes.join(",")),
                    Err(e) => return fail(e),
                }
            }
            if still {
                println!("Graceful decommissioning not completed in {timeout} seconds, issuing forceful decommissioning command.");
                if let Err(e) = client.refresh(&url, DecommissionType::Forceful, None) {
                    return fail(e);
                }
            } else {
                println!("Graceful decommissioning completed in {} seconds.", started.elapsed().as_secs().max(1));
            }
            0
        }
    }
}

/// `yarn herd-double-sleep`: DOUBLE ONLY, asks the RM for simulated containers.
fn sleep_app(client: &Client, args: &[String]) -> u8 {
    let usage = "Usage: yarn herd-double-sleep [-nodes NODE_ID[,NODE_ID..]] -containers N -duration SECS [-memory MB]\n\
                 (herd-hadoop-double only: runs N simulated containers for SECS seconds; not a Hadoop command)\n";
    let mut req = SleepAppRequest { nodes: vec![], containers: 1, duration_ms: 0, memory_mb: 1024 };
    let mut duration = None;
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).map(String::as_str);
        let parsed = match (args[i].as_str(), val) {
            ("-nodes", Some(v)) => {
                req.nodes = v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                true
            }
            ("-containers", Some(v)) => v.parse().map(|n| req.containers = n).is_ok(),
            ("-memory", Some(v)) => v.parse().map(|n| req.memory_mb = n).is_ok(),
            ("-duration", Some(v)) => v.parse::<f64>().ok().filter(|d| *d >= 0.0).map(|d| duration = Some(d)).is_some(),
            _ => false,
        };
        if !parsed {
            eprint!("{usage}");
            return FAIL;
        }
        i += 2;
    }
    let Some(duration) = duration else {
        eprint!("{usage}");
        return FAIL;
    };
    req.duration_ms = (duration * 1000.0).round() as u64;
    let url = match client.connect(&client.addrs.client) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{e}");
            return FAIL;
        }
    };
    match client.send(&client.addrs.client, |h| h.post(format!("{url}/herd-double/submitSleepApp")).json(&req)) {
        Ok(body) => match serde_json::from_str::<SleepAppResponse>(&body) {
            Ok(r) => {
                client.log("impl.YarnClientImpl", &format!("Submitted application {}", r.app_id));
                println!("{}", r.app_id);
                0
            }
            Err(e) => {
                eprintln!("{e}");
                FAIL
            }
        },
        Err(e) => {
            eprintln!("herd-double-sleep: {e}");
            FAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn refresh_options_parse_like_rmadmincli() {
        assert_eq!(parse_refresh(&args("")), Ok(Refresh::Normal));
        assert_eq!(parse_refresh(&args("-g 60 -server")), Ok(Refresh::Graceful { timeout: 60, client_tracking: false }));
        assert_eq!(parse_refresh(&args("-g -client")), Ok(Refresh::Graceful { timeout: -1, client_tracking: true }));
        assert_eq!(parse_refresh(&args("-g -1 -server")), Ok(Refresh::Graceful { timeout: -1, client_tracking: false }));
        assert_eq!(parse_refresh(&args("-graceful 0 -client")), Ok(Refresh::Graceful { timeout: 0, client_tracking: true }));
        assert_eq!(parse_refresh(&args("-g 60")), Err(String::new()));
        assert_eq!(parse_refresh(&args("-g abc -server")), Err("refreshNodes: Invalid timeout specified : abc".into()));
        assert_eq!(parse_refresh(&args("-g -5 -server")), Err("refreshNodes: Invalid timeout specified : -5".into()));
    }

    #[test]
    fn node_rows_are_nodeclis_format() {
        assert_eq!(
            node_row("Node-Id", "Node-State", "Node-Http-Address", "Number-of-Running-Containers"),
            "         Node-Id\t     Node-State\tNode-Http-Address\tNumber-of-Running-Containers\n"
        );
        assert_eq!(node_row("h:8041", "RUNNING", "h:8042", "0"), "          h:8041\t        RUNNING\t           h:8042\t                           0\n");
    }
}
