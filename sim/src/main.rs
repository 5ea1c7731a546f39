//! `herd-sim`: a fleet simulator. N simulated agents run as tokio tasks in one process,
//! sharing one HTTP client, against a real orchestrator over real HTTP. Each registers,
//! heartbeats every `--interval`, and reports each instance it is given as `running` once
//! `--start-delay` has passed since it first saw it. Optional: apply cluster specs mid-run
//! (`--apply`, repeatable: a scale storm), churn (`--churn`: agents going silent and
//! registering again), status readers (`--readers` on `--read-path`).
//!
//! It prints heartbeat latency (p50/p99/max), errors, reply sizes, the orchestrator's RSS
//! and CPU (from `/proc/<pid>`), and the time from apply to every instance placed by the
//! orchestrator (committed: its `/metrics` polled every 250 ms), delivered to an agent (JSON
//! `all_placed_s`) and reported running.
//!
//!     herd-sim --orchestrator http://127.0.0.1:7480 --token-file DATA/admin.token \
//!              --hosts 10000 --interval 3s --duration 60s [-o json]
//!
//! The token must be an admin token to `--apply` or read; an agent token suffices otherwise.
//! Only loopback is meant: the addresses it reports (`--network`) are data, never dialled.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod conns;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use herd_api::names::InstanceRef;
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{ContainerState, Heartbeat, HeartbeatReply, HostInfo, Observed, RegisterReply, RegisterRequest, Watch};
use rand::Rng;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Simulates a fleet of herd agents against a real orchestrator.
#[derive(Debug, Parser)]
#[command(name = "herd-sim", version)]
struct Args {
    /// The orchestrator's base URL (loopback only).
    #[arg(long)]
    orchestrator: String,
    /// File holding the bearer token (admin: also applies specs and reads status).
    #[arg(long)]
    token_file: PathBuf,
    /// Simulated hosts.
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Heartbeat interval of every simulated agent.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long to run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Time from first seeing an instance to reporting it running.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    start_delay: Duration,
    /// Allocatable CPU of each host.
    #[arg(long, default_value = "16")]
    cpu: String,
    /// Allocatable memory of each host.
    #[arg(long, default_value = "64Gi")]
    memory: String,
    /// Host ids are PREFIX-00000, PREFIX-00001, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Hosts register an underlay address (10.228.0.0/16, never dialled), so they get a
    /// subnet lease and network plans as with herd networking on.
    #[arg(long)]
    network: bool,
    /// Cluster spec (YAML) to apply at `--apply-at`; repeat for a storm of applies at once.
    /// The tenant is created if missing.
    #[arg(long)]
    apply: Vec<PathBuf>,
    /// Applies each `--apply` spec this many times, as clusters NAME-1 … NAME-N (a storm of
    /// big applies from one file; the tenant's cluster cap still holds).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    copies: usize,
    /// When to apply, from the start.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    apply_at: Duration,
    /// Fraction of agents that die once (go silent) and come back (register again).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// How long a dying agent stays silent.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    churn_down: Duration,
    /// Concurrent readers of `--read-path` (status reads while the fleet heartbeats).
    #[arg(long, default_value_t = 0)]
    readers: usize,
    /// API path the readers GET, e.g. /v1/tenants/t/clusters/c.
    #[arg(long)]
    read_path: Option<String>,
    /// The orchestrator's pid, for RSS and CPU; found by name and port when not given.
    #[arg(long)]
    orchestrator_pid: Option<u32>,
    /// Agents register at random points of this first stretch [default: one interval].
    #[arg(long, value_parser = humantime::parse_duration)]
    ramp: Option<Duration>,
    /// Each agent also keeps a watch open (`POST /v1/agent/watch`, a long poll) as herd-agent
    /// does, so changes reach it without waiting for its next heartbeat.
    #[arg(long)]
    watch: bool,
    /// Latencies of the first this-long (the registration ramp) are left out of the
    /// steady-state figures [default: the ramp plus one interval].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Registrations and heartbeats in flight at once, all agents together (each waits for
    /// a free one; the wait counts in its latency). It bounds the open connections: a real
    /// fleet holds one per agent, but one process here may hold only as many sockets as its
    /// file limit allows (`ulimit -n`), and the orchestrator's side the same. Watches are
    /// not counted (each holds its own connection).
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    connections: usize,
}

/// What every agent task shares.
struct Shared {
    args: Args,
    http: reqwest::Client,
    /// Registrations and heartbeats (see `--connections`).
    conns: conns::Conns,
    /// Every simulated host's CPU and memory.
    capacity: (Cpu, Memory),
    base: String,
    token: String,
    start: Instant,
    deadline: Instant,
    /// Instances currently in some agent's desired set.
    delivered: AtomicUsize,
    /// Instances an agent reported running in an acknowledged heartbeat.
    running: AtomicUsize,
    /// Instances the applied specs ask for (0 until applied).
    expected: AtomicUsize,
    applied_ms: AtomicU64,
    delivered_all_ms: AtomicU64,
    running_all_ms: AtomicU64,
    /// When the orchestrator had placed every applied instance (committed, as its `/metrics`
    /// count them; see [`watch_placements`]).
    committed_all_ms: AtomicU64,
    /// Placements it counted after the apply beyond the instances applied (a move off a lost
    /// host counts one more): `committed_all_ms` is then not to be trusted.
    placements_beyond: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Shared {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Records the first time `count` reaches the expected total after an apply.
    fn check_done(&self, count: usize, at: &AtomicU64) {
        let expected = self.expected.load(Ordering::Relaxed);
        if expected > 0 && count >= expected && self.applied_ms.load(Ordering::Relaxed) != NEVER {
            let _ = at.compare_exchange(NEVER, self.ms(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// One heartbeat as measured: when it was sent (ms from start), its latency (µs) and the
/// reply's size (bytes).
#[derive(Clone, Copy)]
struct Sample {
    at_ms: u32,
    latency_us: u32,
    bytes: u32,
}

#[derive(Default)]
struct AgentStats {
    samples: Vec<Sample>,
    errors: BTreeMap<String, u64>,
    registrations: u64,
    /// Watches answered with a change.
    watch_changes: u64,
    /// Whether this host was ever given more than its capacity (CPU or memory).
    over_capacity: bool,
}

/// An instance the agent was given: when it first saw it, and whether it said running.
struct Held {
    since: Instant,
    /// Its container's address in the host's subnet (with a lease), reported once running.
    ip: Option<Ipv4Addr>,
    reported_running: bool,
    config_hash: Option<String>,
    live_hash: Option<String>,
}

/// See the workspace's Cargo.toml for why not glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read token file {}", args.token_file.display()))?
        .trim()
        .to_string();
    let base = args.orchestrator.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // NB: watches, readers and applies only; registrations and heartbeats go through
        // `conns`.
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;
    let resp = http.get(format!("{base}/healthz")).send().await.with_context(|| format!("cannot reach {base}"))?;
    if !resp.status().is_success() {
        bail!("{base}/healthz answered {}", resp.status());
    }
    let pid = args.orchestrator_pid.or_else(|| find_orchestrator(&base));
    let start = Instant::now();
    let deadline = start + args.duration;
    let shared = Arc::new(Shared {
        http,
        conns: conns::Conns::new(&base, &token, args.connections)?,
        capacity: (Cpu::parse(&args.cpu).map_err(anyhow::Error::msg)?, Memory::parse(&args.memory).map_err(anyhow::Error::msg)?),
        base,
        token,
        start,
        deadline,
        delivered: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        expected: AtomicUsize::new(0),
        applied_ms: AtomicU64::new(NEVER),
        delivered_all_ms: AtomicU64::new(NEVER),
        running_all_ms: AtomicU64::new(NEVER),
        committed_all_ms: AtomicU64::new(NEVER),
        placements_beyond: AtomicU64::new(0),
        args,
    });

    let sampler = tokio::spawn(sample_processes(shared.clone(), pid));
    let applier = (!shared.args.apply.is_empty()).then(|| tokio::spawn(apply(shared.clone())));
    let readers: Vec<_> = match &shared.args.read_path {
        Some(path) => (0..shared.args.readers).map(|_| tokio::spawn(read_loop(shared.clone(), path.clone()))).collect(),
        None => vec![],
    };
    let agents: Vec<_> = (0..shared.args.hosts).map(|i| tokio::spawn(agent(shared.clone(), i))).collect();
    let mut stats = Vec::with_capacity(agents.len());
    for a in agents {
        stats.push(a.await?);
    }
    let apply_report = match applier {
        Some(a) => Some(a.await??),
        None => None,
    };
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await?);
    }
    let processes = sampler.await?;
    let counters = orchestrator_counters(&shared).await;
    let mut report = report(&shared, pid, &stats, apply_report, &reads, &processes);
    report["orchestrator"]["counters"] = counters;
    match shared.args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print_text(&report),
    }
    Ok(())
}

/// The orchestrator's own counts of how it answered, from its `/metrics` at the end of the
/// run: busy hosts' heartbeats answered from memory, replies computed, clusters derived (by
/// reason) and heartbeats that waited for a derivation. `null` when it could not be read.
async fn orchestrator_counters(s: &Shared) -> Value {
    let text = match s.http.get(format!("{}/metrics", s.base)).send().await {
        Ok(resp) if resp.status().is_success() => resp.text().await.unwrap_or_default(),
        _ => return Value::Null,
    };
    let mut derivations = serde_json::Map::new();
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let Ok(n) = value.parse::<f64>() else { continue };
        let n = json!(n as u64);
        match name {
            "herd_heartbeats_unchanged_total" => _ = out.insert("heartbeats_unchanged".into(), n),
            "herd_heartbeats_computed_total" => _ = out.insert("replies_computed".into(), n),
            "herd_desired_waits_total" => _ = out.insert("desired_waits".into(), n),
            _ => {
                if let Some(reason) = name.strip_prefix("herd_derivation_duration_seconds_count{reason=\"").and_then(|r| r.strip_suffix("\"}")) {
                    derivations.insert(reason.to_string(), n);
                }
            }
        }
    }
    out.insert("derivations".into(), Value::Object(derivations));
    Value::Object(out)
}

fn host_info(args: &Args, i: usize) -> Result<HostInfo> {
    let address = args.network.then(|| Ipv4Addr::new(10, 228, (i / 250) as u8, (i % 250 + 1) as u8));
    Ok(HostInfo {
        id: format!("{}-{i:05}", args.prefix),
        cpu: Cpu::parse(&args.cpu).map_err(anyhow::Error::msg)?,
        memory: Memory::parse(&args.memory).map_err(anyhow::Error::msg)?,
        rack: Some(format!("rack-{}", i % 40)),
        data_disks: vec!["/data/1".into()],
        data_disk_capacity: vec![Memory(4 << 40)],
        labels: Default::default(),
        agent_version: "herd-sim".into(),
        address,
    })
}

/// How long after `--duration` requests still waiting for a connection or an answer are
/// given before they are cut and counted as `unanswered at the end` (a saturated orchestrator
/// would otherwise hold the run's end for as long as its queue takes).
const END_GRACE: Duration = Duration::from_secs(10);

/// A registration or heartbeat, over one of the `--connections` connections.
async fn post(s: &Shared, path: &'static str, body: &impl serde::Serialize) -> std::result::Result<(u16, bytes::Bytes), String> {
    // NB: plain data; serde_json cannot fail on it.
    post_with(s, path, || serde_json::to_vec(body).unwrap_or_default()).await
}

/// [`post`] of the body `body` makes once a connection is free.
async fn post_with(s: &Shared, path: &'static str, body: impl FnOnce() -> Vec<u8>) -> std::result::Result<(u16, bytes::Bytes), String> {
    let end = tokio::time::Instant::from_std(s.deadline + END_GRACE);
    tokio::time::timeout_at(end, s.conns.post(path, body)).await.unwrap_or_else(|_| Err("unanswered at the end".into()))
}

async fn send(s: &Shared, path: &str, body: &impl serde::Serialize) -> std::result::Result<(u16, Vec<u8>), String> {
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(&s.token)
        .json(body)
        .send()
        .await
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| classify(&e))?;
    Ok((status, body.to_vec()))
}

fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
}

/// One simulated agent: register (at a random point of the first interval), then heartbeat
/// every interval until the deadline, dying once if churn picked it.
async fn agent(s: Arc<Shared>, i: usize) -> AgentStats {
    let mut stats = AgentStats::default();
    let Ok(info) = host_info(&s.args, i) else {
        *stats.errors.entry("bad host info".into()).or_default() += 1;
        return stats;
    };
    let interval = s.args.interval;
    let (offset, death) = {
        let mut rng = rand::rng();
        let ramp = s.args.ramp.unwrap_or(interval);
        let offset = Duration::from_micros(rng.random_range(0..ramp.as_micros().max(1) as u64));
        let death = (s.args.churn > 0.0 && rng.random_bool(s.args.churn.min(1.0))).then(|| {
            let lo = interval.as_millis() as u64;
            let hi = (s.args.duration.as_millis() as u64 / 2).max(lo + 1);
            s.start + Duration::from_millis(rng.random_range(lo..hi))
        });
        (offset, death)
    };
    let mut death = death;
    let mut next = s.start + offset;
    let mut held: HashMap<InstanceRef, Held> = HashMap::new();
    let mut set = herd_api::wire::DesiredSet::default();
    // The subnet the orchestrator leased this host (`--network`).
    let mut subnet: Option<ipnet::Ipv4Net> = None;
    let mut registered = false;
    // The open watch, kept across heartbeats (cancelling it would cost a connection).
    type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(u16, Vec<u8>), String>> + Send>>;
    let mut watch: Option<Pending> = None;
    while next < s.deadline {
        loop {
            if watch.is_none()
                && s.args.watch
                && registered
                && let Some(g) = set.generation
            {
                let (s2, w) = (s.clone(), Watch { host_id: info.id.clone(), applied: Some(g), wait_ms: 20_000, network_deltas: true });
                watch = Some(Box::pin(async move { send(&s2, "/v1/agent/watch", &w).await }));
            }
            let Some(w) = watch.as_mut() else {
                sleep_until(next).await;
                break;
            };
            tokio::select! {
                _ = sleep_until(next) => break,
                answer = w => {
                    watch = None;
                    let reply = match answer {
                        Ok((200, body)) => read_reply(&body).map_err(|_| "watch reply unreadable".to_string()),
                        Ok((status, _)) => Err(format!("watch {status}")),
                        Err(kind) => Err(format!("watch {kind}")),
                    };
                    match reply.map(|r| set.take(r)) {
                        Ok(Ok(Some(taken))) => {
                            stats.watch_changes += 1;
                            stats.over_capacity |= apply_reply(&s, &mut held, &set, &taken, subnet);
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(_)) => set.generation = None,
                        Err(e) => {
                            *stats.errors.entry(e).or_default() += 1;
                            // Not at once again: the heartbeat goes first.
                            sleep_until(next).await;
                            break;
                        }
                    }
                }
            }
        }
        if let Some(d) = death
            && Instant::now() >= d
        {
            death = None;
            registered = false;
            // A restarted agent holds nothing.
            set = herd_api::wire::DesiredSet::default();
            watch = None;
            next = Instant::now() + s.args.churn_down;
            continue;
        }
        if !registered {
            let req = RegisterRequest { host: info.clone(), logs: None };
            match post(&s, "/v1/agent/register", &req).await {
                Ok((200, body)) => {
                    subnet = serde_json::from_slice::<RegisterReply>(&body).ok().and_then(|r| r.network).map(|n| n.subnet);
                    registered = true;
                    stats.registrations += 1;
                }
                Ok((status, _)) => *stats.errors.entry(format!("register {status}")).or_default() += 1,
                Err(kind) => *stats.errors.entry(format!("register {kind}")).or_default() += 1,
            }
            if !registered {
                next = Instant::now() + Duration::from_secs(1);
                continue;
            }
        }
        // NB: the report is made once a connection is free, as an agent reports what it sees
        // when it sends: made before, 30,000 agents queued for 1,024 connections in a storm
        // each held their report, and its JSON, while they waited (a third of herd-sim's
        // memory, which it took from the kernel page by page).
        let mut newly_running: Vec<InstanceRef> = Vec::new();
        let applied = set.generation;
        let report = || {
            let now = Instant::now();
            // NB: sorted, as the agent sends it (the same report is the same bytes).
            let mut sorted: Vec<(&InstanceRef, &Held)> = held.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let observed: Vec<Observed> = sorted
                .into_iter()
                .map(|(instance, h)| {
                    let running = now.duration_since(h.since) >= s.args.start_delay;
                    Observed {
                        instance: instance.clone(),
                        container_id: format!("sim-{}-{}", i, instance.name),
                        state: if running { ContainerState::Running } else { ContainerState::Created },
                        started_at: None,
                        exit_code: None,
                        error: None,
                        ip: h.ip.filter(|_| running),
                        config_hash: h.config_hash.clone(),
                        live_hash: h.live_hash.clone(),
                        hadoop: None,
                    }
                })
                .collect();
            newly_running = observed
                .iter()
                .filter(|o| o.state == ContainerState::Running && !held.get(&o.instance).is_some_and(|h| h.reported_running))
                .map(|o| o.instance.clone())
                .collect();
            let hb = Heartbeat { host_id: info.id.clone(), observed, conditions: vec![], purged: vec![], applied, network_deltas: true };
            // NB: plain data; serde_json cannot fail on it.
            serde_json::to_vec(&hb).unwrap_or_default()
        };
        let sent = Instant::now();
        let at_ms = s.start.elapsed().as_millis() as u32;
        let result = post_with(&s, "/v1/agent/heartbeat", report).await;
        let latency_us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
        next += interval;
        if next < Instant::now() {
            // Behind (a slow reply): the next heartbeat goes out at once, as an agent does.
            next = Instant::now();
        }
        let body = match result {
            Ok((200, body)) => body,
            Ok((404, _)) => {
                registered = false;
                *stats.errors.entry("heartbeat 404 (unknown host)".into()).or_default() += 1;
                continue;
            }
            Ok((status, _)) => {
                *stats.errors.entry(format!("heartbeat {status}")).or_default() += 1;
                continue;
            }
            Err(kind) => {
                *stats.errors.entry(format!("heartbeat {kind}")).or_default() += 1;
                continue;
            }
        };
        stats.samples.push(Sample { at_ms, latency_us, bytes: body.len() as u32 });
        for instance in newly_running {
            if let Some(h) = held.get_mut(&instance)
                && !h.reported_running
            {
                h.reported_running = true;
                let n = s.running.fetch_add(1, Ordering::Relaxed) + 1;
                s.check_done(n, &s.running_all_ms);
            }
        }
        let reply: HeartbeatReply = match read_reply(&body) {
            Ok(r) => r,
            Err(_) => {
                *stats.errors.entry("heartbeat reply unreadable".into()).or_default() += 1;
                continue;
            }
        };
        // As an agent does: a delta against what it holds, else the full set.
        match set.take(reply) {
            Ok(Some(taken)) => stats.over_capacity |= apply_reply(&s, &mut held, &set, &taken, subnet),
            Ok(None) => {}
            Err(_) => {
                *stats.errors.entry("heartbeat delta against another generation".into()).or_default() += 1;
                set.generation = None;
            }
        }
    }
    stats
}

/// A heartbeat or watch reply as herd-sim takes it: everything but the network plan, whose
/// routes and members are checked to be well-formed JSON and skipped, as serde skips fields a
/// struct does not name (a simulated host
/// plumbs nothing; its bytes still count in `reply_bytes`). Building them was four fifths of
/// herd-sim's CPU when one tenant spanned 10,000 networked hosts: one process parsing what
/// 10,000 agents each parse once, on the cores the orchestrator under test needs.
/// Each container's Hadoop files are taken as the raw JSON they came in (checked to be
/// well-formed, never unescaped into strings) and parsed only for an entry without a rollout
/// hash, whose files' hash is what it reports: a simulated host writes no file. What only
/// starts a process (command, environment, published ports, capabilities) is checked to be
/// well-formed and not kept: 30,000 hosts' sets held every container's environment (a map
/// node and a dozen strings each) in this one process. (Every
/// DataNode's files, some 6 KB of escaped XML, were most of what a million-instance apply
/// made herd-sim parse.)
fn read_reply(body: &[u8]) -> serde_json::Result<HeartbeatReply> {
    #[derive(serde::Deserialize)]
    struct LiteHadoop<'a> {
        #[serde(borrow)]
        files: &'a serde_json::value::RawValue,
        #[serde(default)]
        live_files: BTreeMap<String, String>,
        #[serde(default)]
        refresh: Vec<Vec<String>>,
    }
    #[derive(serde::Deserialize)]
    struct LiteContainer<'a> {
        instance: InstanceRef,
        role: herd_api::Role,
        image: String,
        cpu: Cpu,
        memory: Memory,
        #[serde(default, borrow)]
        hadoop: Option<LiteHadoop<'a>>,
        #[serde(default)]
        rollout_hash: Option<String>,
        #[serde(default)]
        hold_config: bool,
        #[serde(default)]
        placement: u64,
    }
    impl LiteContainer<'_> {
        fn take(self) -> serde_json::Result<herd_api::wire::DesiredContainer> {
            let LiteContainer { instance, role, image, cpu, memory, hadoop, rollout_hash, hold_config, placement } = self;
            let hadoop = match hadoop {
                Some(LiteHadoop { files, live_files, refresh }) => {
                    let files = if rollout_hash.is_some() { BTreeMap::new() } else { serde_json::from_str(files.get())? };
                    Some(Arc::new(herd_api::hadoop::HadoopConfig { files, live_files, refresh }))
                }
                None => None,
            };
            Ok(herd_api::wire::DesiredContainer { hadoop, rollout_hash, hold_config, placement, ..herd_api::wire::DesiredContainer::plain(instance, role, image, cpu, memory) })
        }
    }
    #[derive(serde::Deserialize)]
    struct Lite<'a> {
        generation: u64,
        #[serde(borrow)]
        desired: Vec<LiteContainer<'a>>,
        heartbeat_interval_ms: u64,
        #[serde(default)]
        base: Option<u64>,
        #[serde(default)]
        removed: Vec<InstanceRef>,
        #[serde(default)]
        purge: Vec<InstanceRef>,
    }
    let Lite { generation, desired, heartbeat_interval_ms, base, removed, purge } = serde_json::from_slice(body)?;
    let desired = desired.into_iter().map(LiteContainer::take).collect::<serde_json::Result<_>>()?;
    Ok(HeartbeatReply {
        generation,
        desired,
        heartbeat_interval_ms,
        network: None,
        base,
        removed,
        network_cleared: false,
        network_delta: None,
        purge,
    })
}

/// Takes `set`, just changed as `taken` says, as what the host runs from now on; whether it
/// asks for more CPU or memory than the host has. A new container gets the lowest free
/// address of `subnet` after the gateway, as the agent's IPAM gives.
fn apply_reply(s: &Shared, held: &mut HashMap<InstanceRef, Held>, set: &herd_api::wire::DesiredSet, taken: &herd_api::wire::Taken, subnet: Option<ipnet::Ipv4Net>) -> bool {
    let (cpu, memory) = set.containers.values().fold((0u64, 0u64), |(c, m), d| (c + d.cpu.0, m + d.memory.0));
    let over = cpu > s.capacity.0.0 || memory > s.capacity.1.0;
    // NB: what a delta put and removed, not the whole set again: a host of a full fleet holds
    // some thirty containers and takes them in one by one, and copying and looking at all of
    // them per reply (as the set was handed over before) made herd-sim's CPU, and its fresh
    // memory, grow with the square of that while a million instances were delivered.
    let gone: Vec<InstanceRef> = if taken.whole {
        held.keys().filter(|i| !set.containers.contains_key(*i)).cloned().collect()
    } else {
        taken.removed.iter().filter(|i| !set.containers.contains_key(*i)).cloned().collect()
    };
    for instance in gone {
        if let Some(h) = held.remove(&instance) {
            s.delivered.fetch_sub(1, Ordering::Relaxed);
            if h.reported_running {
                s.running.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    let put: Vec<&InstanceRef> = if taken.whole { set.containers.keys().collect() } else { taken.put.iter().collect() };
    let now = Instant::now();
    let mut used: Option<std::collections::HashSet<Ipv4Addr>> = None;
    for instance in put {
        let Some(d) = set.containers.get(instance) else { continue };
        if !held.contains_key(instance) {
            let used = used.get_or_insert_with(|| held.values().filter_map(|h| h.ip).collect());
            let ip = subnet.and_then(|net| net.hosts().skip(1).find(|ip| !used.contains(ip)));
            used.extend(ip);
            let n = s.delivered.fetch_add(1, Ordering::Relaxed) + 1;
            s.check_done(n, &s.delivered_all_ms);
            held.insert(instance.clone(), Held { since: now, ip, reported_running: false, config_hash: None, live_hash: None });
        }
        let Some(h) = held.get_mut(instance) else { continue };
        // The config the container "runs with" (labelled and reported as a real agent does):
        // what it was given, unless told to hold. (It reported the hash of the files alone
        // while the orchestrator's rollout compares the rollout hash: every running instance
        // looked out of date, each cluster rolled one instance at a time forever, and
        // every busy host's set changed with every derivation.)
        if let Some(config) = &d.hadoop {
            if !d.hold_config || h.config_hash.is_none() {
                h.config_hash = d.config_hash();
            }
            h.live_hash = Some(config.live_hash());
        }
    }
    over
}

struct ApplyReport {
    specs: usize,
    expected: usize,
    put_ms: Vec<u64>,
    errors: Vec<String>,
}

async fn apply(s: Arc<Shared>) -> Result<ApplyReport> {
    let mut specs = Vec::new();
    for path in &s.args.apply {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let spec = herd_api::yaml::parse_cluster_spec(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if s.args.copies == 1 {
            specs.push((spec, text));
            continue;
        }
        for k in 1..=s.args.copies {
            let name = format!("{}-{k}", spec.name);
            let renamed: String = text
                .lines()
                .map(|l| if l.starts_with("name:") { format!("name: {name}\n") } else { format!("{l}\n") })
                .collect();
            let copy = herd_api::yaml::parse_cluster_spec(&renamed).map_err(|e| anyhow::anyhow!("{} as {name}: {e}", path.display()))?;
            anyhow::ensure!(copy.name == name, "{}: no top-level `name:` line to rename", path.display());
            specs.push((copy, renamed));
        }
    }
    let expected: usize = specs.iter().map(|(spec, _)| spec.pools.values().map(|p| p.replicas.0 as usize).sum::<usize>()).sum();
    let mut errors = Vec::new();
    let tenants: std::collections::BTreeSet<String> = specs.iter().map(|(spec, _)| spec.tenant.clone()).collect();
    for t in tenants {
        let resp = s.http.post(format!("{}/v1/tenants", s.base)).bearer_auth(&s.token).json(&json!({"name": t, "quota": "unlimited"})).send().await?;
        if !resp.status().is_success() && resp.status().as_u16() != 409 {
            errors.push(format!("create tenant {t}: {} {}", resp.status(), resp.text().await.unwrap_or_default()));
        }
    }
    sleep_until(s.start + s.args.apply_at).await;
    let before = placement_counts(&s).await.map(|(placed, _)| placed);
    s.expected.store(expected, Ordering::Relaxed);
    s.applied_ms.store(s.ms(), Ordering::Relaxed);
    let watcher = before.map(|before| tokio::spawn(watch_placements(s.clone(), before, expected as u64)));
    let puts = specs.into_iter().map(|(spec, text)| {
        let s = s.clone();
        async move {
            let t = Instant::now();
            let url = format!("{}/v1/tenants/{}/clusters/{}", s.base, spec.tenant, spec.name);
            let resp = s.http.put(url).bearer_auth(&s.token).header("content-type", "application/yaml").body(text).send().await;
            let ms = t.elapsed().as_millis() as u64;
            match resp {
                Ok(r) if r.status().is_success() => Ok(ms),
                Ok(r) => Err(format!("apply {}/{}: {} {}", spec.tenant, spec.name, r.status(), r.text().await.unwrap_or_default())),
                Err(e) => Err(format!("apply {}/{}: {}", spec.tenant, spec.name, classify(&e))),
            }
        }
    });
    let mut put_ms = Vec::new();
    for r in futures_join(puts).await {
        match r {
            Ok(ms) => put_ms.push(ms),
            Err(e) => errors.push(e),
        }
    }
    // Instances already delivered before the PUTs returned count too.
    s.check_done(s.delivered.load(Ordering::Relaxed), &s.delivered_all_ms);
    s.check_done(s.running.load(Ordering::Relaxed), &s.running_all_ms);
    if let Some(w) = watcher {
        w.await?;
    }
    Ok(ApplyReport { specs: s.args.apply.len() * s.args.copies, expected, put_ms, errors })
}

/// The orchestrator's count of placements made since it started and of instances waiting
/// for a host, from its `/metrics` (`herd_placements_total`, `herd_pending_instances`).
async fn placement_counts(s: &Shared) -> Option<(u64, u64)> {
    let resp = s.http.get(format!("{}/metrics", s.base)).timeout(Duration::from_secs(5)).send().await.ok()?;
    let text = resp.error_for_status().ok()?.text().await.ok()?;
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok()).map(|v| v as u64);
    Some((value("herd_placements_total")?, value("herd_pending_instances")?))
}

/// How often [`watch_placements`] reads the orchestrator's counts.
const PLACEMENTS_POLL: Duration = Duration::from_millis(250);

/// Reads the orchestrator's counts every [`PLACEMENTS_POLL`] from the apply on, and records
/// when it had placed every applied instance (`expected` placements more than `before`,
/// none waiting): the orchestrator's side of "placed", committed to its store, as against
/// delivered to the hosts. Until every instance is placed or the run ends; then once more
/// at the end, for placements beyond the expected (moves).
async fn watch_placements(s: Arc<Shared>, before: u64, expected: u64) {
    while Instant::now() < s.deadline {
        if let Some((placed, pending)) = placement_counts(&s).await
            && placed >= before + expected
            && pending == 0
        {
            let _ = s.committed_all_ms.compare_exchange(NEVER, s.ms(), Ordering::Relaxed, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(PLACEMENTS_POLL).await;
    }
    sleep_until(s.deadline).await;
    if let Some((placed, _)) = placement_counts(&s).await {
        s.placements_beyond.store(placed.saturating_sub(before + expected), Ordering::Relaxed);
    }
}

/// Runs futures concurrently (each as a task) and returns their outputs in order.
async fn futures_join<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// A status reader: GETs `path` back to back after the warmup; (latency µs, ok) per read.
async fn read_loop(s: Arc<Shared>, path: String) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    sleep_until(s.start + warmup(&s.args)).await;
    while Instant::now() < s.deadline {
        let t = Instant::now();
        let r = s.http.get(format!("{}{path}", s.base)).bearer_auth(&s.token).send().await;
        let ok = match r {
            Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
            Err(_) => false,
        };
        out.push((t.elapsed().as_micros() as u32, ok));
    }
    out
}

fn warmup(args: &Args) -> Duration {
    args.warmup.unwrap_or(args.ramp.unwrap_or(args.interval) + args.interval)
}

/// The pid of a `herd-orchestrator` process listening on `base`'s port (from its command
/// line), or the only one there is.
fn find_orchestrator(base: &str) -> Option<u32> {
    let port = base.rsplit(':').next().map(|p| p.trim_end_matches('/').to_string());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "herd-orchestrat" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        found.push((pid, cmdline));
    }
    if let Some(port) = port
        && let Some((pid, _)) = found.iter().find(|(_, c)| c.contains(&format!(":{port}")))
    {
        return Some(*pid);
    }
    (found.len() == 1).then(|| found[0].0)
}

/// (ms from start, CPU ticks used, RSS KiB) of the orchestrator and of this process.
#[derive(Clone, Copy)]
struct ProcSample {
    at_ms: u64,
    orch_ticks: Option<u64>,
    orch_rss_kib: Option<u64>,
    /// Of that, the process's own memory (`RssAnon`): not the pages of files it maps, such
    /// as the store's SQLite file, which the kernel may drop and read again.
    orch_anon_kib: Option<u64>,
    self_ticks: Option<u64>,
    /// The orchestrator's store writer thread: nanoseconds on a core and waiting for one.
    writer: Option<(u64, u64)>,
}

/// The nanoseconds the orchestrator's store writer thread (`herd-store-writer`, shortened
/// to 15 bytes by the kernel) has spent on a core and runnable but waiting for one
/// (`/proc/PID/task/TID/schedstat`): the writer serializes every change of intent, and its
/// waits are what a storm of heartbeats takes from applies.
fn writer_schedstat(pid: &str) -> Option<(u64, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.filter_map(|t| t.ok()).find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        if comm.trim() != "herd-store-writ" {
            return None;
        }
        let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some((fields.next()??, fields.next()??))
    })
}

fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) end with ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`).
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn sample_processes(s: Arc<Shared>, pid: Option<u32>) -> Vec<ProcSample> {
    let pid = pid.map(|p| p.to_string());
    let mut out = Vec::new();
    loop {
        out.push(ProcSample {
            at_ms: s.ms(),
            orch_ticks: pid.as_deref().and_then(cpu_ticks),
            orch_rss_kib: pid.as_deref().and_then(|p| status_kib(p, "VmRSS")),
            orch_anon_kib: pid.as_deref().and_then(|p| status_kib(p, "RssAnon")),
            self_ticks: cpu_ticks("self"),
            writer: pid.as_deref().and_then(writer_schedstat),
        });
        if Instant::now() >= s.deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn latency_json(mut us: Vec<u32>) -> Value {
    us.sort_unstable();
    let ms = |v: u32| (v as f64 / 1000.0 * 100.0).round() / 100.0;
    json!({
        "count": us.len(),
        "p50_ms": ms(percentile(&us, 0.50)),
        "p90_ms": ms(percentile(&us, 0.90)),
        "p99_ms": ms(percentile(&us, 0.99)),
        "max_ms": ms(us.last().copied().unwrap_or(0)),
    })
}

/// Per second of the run (by when each heartbeat was sent): how many were answered and
/// their p99 and max latency (ms), to see when a run stalled.
fn per_second(all: &[Sample]) -> Vec<Value> {
    let mut by: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for x in all {
        by.entry(x.at_ms / 1000).or_default().push(x.latency_us);
    }
    by.into_iter()
        .map(|(second, mut l)| {
            l.sort_unstable();
            let ms = |us: u32| (us as f64 / 10.0).round() / 100.0;
            json!({"s": second, "answered": l.len(), "p99_ms": ms(percentile(&l, 0.99)), "max_ms": ms(l.last().copied().unwrap_or(0))})
        })
        .collect()
}

fn report(
    s: &Shared,
    pid: Option<u32>,
    stats: &[AgentStats],
    apply: Option<ApplyReport>,
    reads: &[(u32, bool)],
    procs: &[ProcSample],
) -> Value {
    let args = &s.args;
    let warm_ms = warmup(args).as_millis() as u32;
    let all: Vec<Sample> = stats.iter().flat_map(|a| a.samples.iter().copied()).collect();
    let steady: Vec<Sample> = all.iter().copied().filter(|x| x.at_ms >= warm_ms).collect();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for a in stats {
        for (k, v) in &a.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let steady_secs = (args.duration.as_secs_f64() - warm_ms as f64 / 1000.0).max(0.001);
    let mut bytes: Vec<u32> = all.iter().map(|x| x.bytes).collect();
    bytes.sort_unstable();
    let mean_bytes = if bytes.is_empty() { 0 } else { bytes.iter().map(|&b| b as u64).sum::<u64>() / bytes.len() as u64 };
    let ticks = 100.0; // USER_HZ on Linux
    let window: Vec<&ProcSample> = procs.iter().filter(|p| p.at_ms >= warm_ms as u64).collect();
    let cpu = |f: fn(&ProcSample) -> Option<u64>| -> Option<f64> {
        let (first, last) = (window.first()?, window.last()?);
        let secs = (last.at_ms - first.at_ms) as f64 / 1000.0;
        let used = f(last)?.checked_sub(f(first)?)?;
        (secs > 0.0).then(|| (used as f64 / ticks / secs * 100.0).round())
    };
    // The writer's share of its busy time spent waiting for a core, over the same window.
    let writer_waiting = (|| {
        let (first, last) = (window.first()?.writer?, window.last()?.writer?);
        let (on, waiting) = (last.0.checked_sub(first.0)?, last.1.checked_sub(first.1)?);
        Some(if on + waiting == 0 { 0.0 } else { (waiting as f64 * 100.0 / (on + waiting) as f64).round() })
    })();
    let rss_max = procs.iter().filter_map(|p| p.orch_rss_kib).max();
    let rss_end = procs.last().and_then(|p| p.orch_rss_kib);
    let anon_max = procs.iter().filter_map(|p| p.orch_anon_kib).max();
    let at = |a: &AtomicU64| {
        let v = a.load(Ordering::Relaxed);
        let applied = s.applied_ms.load(Ordering::Relaxed);
        (v != NEVER && applied != NEVER).then(|| (v.saturating_sub(applied)) as f64 / 1000.0)
    };
    // At rest: heartbeats sent in the run's last five intervals, when every applied instance
    // ran before they began: what a fleet running its work costs once the backlog of the
    // apply drained (it takes tens of seconds after the last instance ran at 300,000).
    let rest = {
        let running = s.running_all_ms.load(Ordering::Relaxed);
        let end = args.duration.as_millis() as u64;
        let from = end.saturating_sub(5 * args.interval.as_millis() as u64);
        (running != NEVER && running <= from).then(|| {
            let lat: Vec<u32> = all.iter().filter(|x| u64::from(x.at_ms) >= from).map(|x| x.latency_us).collect();
            json!({
                "from_s": from as f64 / 1000.0,
                "heartbeats": lat.len(),
                "served_per_s": (lat.len() as f64 / ((end - from).max(1) as f64 / 1000.0)).round(),
                "latency": latency_json(lat),
            })
        })
    };
    let read_us: Vec<u32> = reads.iter().filter(|r| r.1).map(|r| r.0).collect();
    let read_window = (args.duration.as_secs_f64() - warmup(args).as_secs_f64()).max(0.001);
    json!({
        "hosts": args.hosts,
        "interval_s": args.interval.as_secs_f64(),
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": warm_ms as f64 / 1000.0,
        "network": args.network,
        "churn": args.churn,
        "registrations": stats.iter().map(|a| a.registrations).sum::<u64>(),
        "watch": args.watch,
        "connections": args.connections,
        "watch_changes": stats.iter().map(|a| a.watch_changes).sum::<u64>(),
        "heartbeats": {
            "ok": all.len(),
            "errors": errors.values().sum::<u64>(),
            "error_kinds": errors,
            "offered_per_s": (args.hosts as f64 / args.interval.as_secs_f64()).round(),
            "served_per_s_steady": (steady.len() as f64 / steady_secs).round(),
            "latency_steady": latency_json(steady.iter().map(|x| x.latency_us).collect()),
            "latency_all": latency_json(all.iter().map(|x| x.latency_us).collect()),
            "per_second": per_second(&all),
        },
        "reply_bytes": {
            "p50": percentile(&bytes, 0.5),
            "mean": mean_bytes,
            "max": bytes.last().copied().unwrap_or(0),
        },
        "orchestrator": {
            "pid": pid,
            "rss_max_mib": rss_max.map(|k| k / 1024),
            "rss_end_mib": rss_end.map(|k| k / 1024),
            "rss_anon_max_mib": anon_max.map(|k| k / 1024),
            "cpu_percent_steady": cpu(|p| p.orch_ticks),
            "writer_waiting_percent_steady": writer_waiting,
        },
        "sim_cpu_percent_steady": cpu(|p| p.self_ticks),
        "apply": apply.map(|a| json!({
            "specs": a.specs,
            "instances": a.expected,
            "put_ms_max": a.put_ms.iter().max(),
            "put_ms": a.put_ms,
            "errors": a.errors,
            "at_s": s.applied_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            "all_placed_s": at(&s.delivered_all_ms),
            "all_committed_s": at(&s.committed_all_ms),
            "placements_beyond_expected": s.placements_beyond.load(Ordering::Relaxed),
            "all_running_s": at(&s.running_all_ms),
            "placed_at_end": s.delivered.load(Ordering::Relaxed),
            "hosts_over_capacity": stats.iter().filter(|a| a.over_capacity).count(),
            "running_at_end": s.running.load(Ordering::Relaxed),
            "at_rest": rest,
        })),
        "reads": (!reads.is_empty()).then(|| json!({
            "path": args.read_path,
            "readers": args.readers,
            "ok": read_us.len(),
            "errors": reads.len() - read_us.len(),
            "per_s": (read_us.len() as f64 / read_window).round(),
            "latency": latency_json(read_us),
        })),
    })
}

fn print_text(r: &Value) {
    let hb = &r["heartbeats"];
    let l = &hb["latency_steady"];
    println!(
        "herd-sim: {} hosts, heartbeat every {}s for {}s (first {}s left out of steady figures){}",
        r["hosts"],
        r["interval_s"],
        r["duration_s"],
        r["warmup_s"],
        if r["network"] == true { ", herd networking" } else { "" }
    );
    println!(
        "heartbeats: {} ok, {} errors {}; {} served/s of {} offered",
        hb["ok"], hb["errors"], hb["error_kinds"], hb["served_per_s_steady"], hb["offered_per_s"]
    );
    println!("latency (steady): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms", l["p50_ms"], l["p90_ms"], l["p99_ms"], l["max_ms"]);
    let la = &hb["latency_all"];
    println!("latency (all):    p50 {} ms, p99 {} ms, max {} ms", la["p50_ms"], la["p99_ms"], la["max_ms"]);
    if r["watch"] == true {
        println!("watches: {} answered with a change", r["watch_changes"]);
    }
    let b = &r["reply_bytes"];
    println!("reply size: p50 {} B, mean {} B, max {} B", b["p50"], b["mean"], b["max"]);
    let o = &r["orchestrator"];
    println!(
        "orchestrator (pid {}): RSS max {} MiB (its own memory at most {} MiB, the rest mapped files), end {} MiB, CPU {}% (steady; 100% = one core), its store writer waiting for a core {}% of its busy time; herd-sim CPU {}%",
        o["pid"], o["rss_max_mib"], o["rss_anon_max_mib"], o["rss_end_mib"], o["cpu_percent_steady"], o["writer_waiting_percent_steady"], r["sim_cpu_percent_steady"]
    );
    let c = &o["counters"];
    if c.is_object() {
        println!(
            "orchestrator counts: {} busy hosts' heartbeats answered from memory, {} replies computed, {} waited for a derivation; clusters derived: {}",
            c["heartbeats_unchanged"], c["replies_computed"], c["desired_waits"], c["derivations"]
        );
    }
    if let Some(a) = r["apply"].as_object() {
        println!(
            "apply: {} specs, {} instances at {}s (slowest PUT {} ms, errors {}); all placed by the orchestrator +{}s ({} placements beyond), all on their hosts +{}s, all running +{}s; at end {} placed, {} running; {} hosts ever over capacity",
            a["specs"], a["instances"], a["at_s"], a["put_ms_max"], a["errors"], a["all_committed_s"], a["placements_beyond_expected"], a["all_placed_s"], a["all_running_s"], a["placed_at_end"], a["running_at_end"], a["hosts_over_capacity"]
        );
        match a["at_rest"].as_object() {
            Some(rest) => {
                let l = &rest["latency"];
                println!(
                    "at rest (heartbeats sent from {}s, the last five intervals, all running): {} served/s; p50 {} ms, p99 {} ms, max {} ms",
                    rest["from_s"], rest["served_per_s"], l["p50_ms"], l["p99_ms"], l["max_ms"]
                );
            }
            None => println!("at rest: not measured (not every instance ran before the last five intervals: run longer)"),
        }
    }
    if let Some(rd) = r["reads"].as_object() {
        let l = &rd["latency"];
        println!(
            "reads of {} ({} readers): {} ok, {} errors, {}/s; p50 {} ms, p99 {} ms, max {} ms",
            rd["path"], rd["readers"], rd["ok"], rd["errors"], rd["per_s"], l["p50_ms"], l["p99_ms"], l["max_ms"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_api::hadoop::HadoopConfig;
    use herd_api::wire::DesiredContainer;

    fn container(n: u32, rollout_hash: Option<&str>) -> DesiredContainer {
        let files = [("hdfs-site.xml".to_string(), "<configuration>\n  <name>\"x\"</name>\n</configuration>\n".into())].into();
        DesiredContainer {
            instance: InstanceRef::new("t", "c", herd_api::Role::Datanode, n),
            role: herd_api::Role::Datanode,
            image: "herd/datanode:testbed".into(),
            cpu: Cpu(100),
            memory: Memory(1 << 28),
            command: None,
            env: [("HERD_INSTANCE".to_string(), format!("datanode-{n}"))].into(),
            publish: vec![],
            cap_add: vec![],
            hadoop: Some(Arc::new(HadoopConfig { files, live_files: [("dfs.exclude".to_string(), "a\n".to_string())].into(), refresh: vec![vec!["x".into()]] })),
            rollout_hash: rollout_hash.map(Into::into),
            hold_config: false,
            placement: 2,
        }
    }

    #[test]
    fn a_reply_is_read_as_sent_but_for_files_a_rollout_hash_stands_for() -> serde_json::Result<()> {
        let sent = HeartbeatReply {
            generation: 7,
            desired: vec![container(0, Some("r0")), container(1, None)],
            heartbeat_interval_ms: 3000,
            network: None,
            base: Some(6),
            removed: vec![InstanceRef::new("t", "c", herd_api::Role::Datanode, 9)],
            network_cleared: false,
            network_delta: None,
            purge: vec![],
        };
        let read = read_reply(&serde_json::to_vec(&sent)?)?;
        assert_eq!((read.generation, read.base, &read.removed, read.heartbeat_interval_ms), (7, Some(6), &sent.removed, 3000));
        // Reported as a real agent would: the same config and live hashes.
        for (got, want) in read.desired.iter().zip(&sent.desired) {
            assert_eq!(got.config_hash(), want.config_hash());
            let (g, w) = (got.hadoop.as_deref().map(HadoopConfig::live_hash), want.hadoop.as_deref().map(HadoopConfig::live_hash));
            assert_eq!(g, w);
        }
        let files = |d: &DesiredContainer| d.hadoop.as_ref().map(|h| h.files.len());
        assert_eq!(files(&read.desired[0]), Some(0), "not kept: the rollout hash stands for them");
        // What only starts a process is not kept.
        assert!(!sent.desired[1].env.is_empty());
        let unkept = |d: &DesiredContainer| DesiredContainer { command: None, env: BTreeMap::new(), publish: vec![], cap_add: vec![], ..d.clone() };
        assert_eq!(read.desired[1], unkept(&sent.desired[1]), "kept: their hash is what it reports");
        let without_files = DesiredContainer { hadoop: read.desired[0].hadoop.clone(), ..unkept(&sent.desired[0]) };
        assert_eq!(read.desired[0], without_files);
        Ok(())
    }
}
