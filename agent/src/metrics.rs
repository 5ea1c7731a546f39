//! The agent's metrics, served with `/healthz` and `/readyz` on its log endpoint's listener
//! (`--listen`; `/metrics` needs no token, the log route does), in the Prometheus/OpenMetrics
//! text format (`prometheus-client`): heartbeat latency and results, Docker call errors by
//! operation, firewall applies, log bytes captured, log records and bytes dropped, and herd's
//! own log lines that could not be written. One set per process ([`get`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dropped {
    reason: &'static str,
}

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    heartbeat: Histogram,
    heartbeats: Family<Outcome, Counter>,
    docker_errors: Family<Call, Counter>,
    firewall: Family<Outcome, Counter>,
    log_bytes: Counter,
    log_dropped: Family<Dropped, Counter>,
    log_dropped_bytes: Family<Dropped, Counter>,
    log_write_failures: Counter,
    log_write_failures_seen: AtomicU64,
    /// Unix ms of the last heartbeat the orchestrator answered (0: none yet).
    last_heartbeat_ms: AtomicU64,
    /// The heartbeat interval the orchestrator asked for, in ms.
    interval_ms: AtomicU64,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let heartbeat = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register_with_unit("herd_agent_heartbeat_duration", "Time the orchestrator took to answer a heartbeat", Unit::Seconds, heartbeat.clone());
        let heartbeats = Family::<Outcome, Counter>::default();
        registry.register("herd_agent_heartbeats", "Heartbeats sent, by result (ok, failed)", heartbeats.clone());
        let docker_errors = Family::<Call, Counter>::default();
        registry.register("herd_agent_docker_errors", "Docker Engine API calls that failed, by operation", docker_errors.clone());
        let firewall = Family::<Outcome, Counter>::default();
        registry.register("herd_agent_firewall_applies", "nftables rule sets applied, by result (ok, failed)", firewall.clone());
        let log_bytes = Counter::default();
        registry.register_with_unit("herd_agent_log_captured", "Bytes of container log records written to disk", Unit::Bytes, log_bytes.clone());
        let log_dropped = Family::<Dropped, Counter>::default();
        registry.register(
            "herd_agent_log_records_dropped",
            "Container log records dropped (replayed: Docker sent a copy again; lost: Docker no longer had them; forward: not forwarded to syslog, the files keep them)",
            log_dropped.clone(),
        );
        let log_dropped_bytes = Family::<Dropped, Counter>::default();
        registry.register_with_unit(
            "herd_agent_log_dropped",
            "Bytes of the container log lines dropped, by the reasons of herd_agent_log_records_dropped_total (lost lines are not counted: their size is unknown)",
            Unit::Bytes,
            log_dropped_bytes.clone(),
        );
        // NB: every reason from the start, so a scrape shows 0 rather than nothing.
        for reason in DROP_REASONS {
            drop(log_dropped.get_or_create(&Dropped { reason }));
            if reason != "lost" {
                drop(log_dropped_bytes.get_or_create(&Dropped { reason }));
            }
        }
        let log_write_failures = Counter::default();
        registry.register("herd_log_write_failures", "herd's own log lines that could not be written to stderr", log_write_failures.clone());
        Metrics {
            registry,
            heartbeat,
            heartbeats,
            docker_errors,
            firewall,
            log_bytes,
            log_dropped,
            log_dropped_bytes,
            log_write_failures,
            log_write_failures_seen: AtomicU64::new(0),
            last_heartbeat_ms: AtomicU64::new(0),
            interval_ms: AtomicU64::new(2000),
        }
    }

    /// The heartbeat interval the orchestrator asks for.
    pub fn set_interval(&self, interval: Duration) {
        self.interval_ms.store(interval.as_millis() as u64, Ordering::Relaxed);
    }

    /// A heartbeat's answer (or failure) after `took`.
    pub fn heartbeat(&self, ok: bool, took: Duration) {
        self.heartbeats.get_or_create(&Outcome { result: if ok { "ok" } else { "failed" } }).inc();
        if ok {
            self.heartbeat.observe(took.as_secs_f64());
            self.last_heartbeat_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    pub fn docker_error(&self, op: &'static str) {
        self.docker_errors.get_or_create(&Call { op }).inc();
    }

    pub fn firewall_apply(&self, ok: bool) {
        self.firewall.get_or_create(&Outcome { result: if ok { "ok" } else { "failed" } }).inc();
    }

    pub fn log_captured(&self, bytes: usize) {
        self.log_bytes.inc_by(bytes as u64);
    }

    /// A log record dropped (one of [`DROP_REASONS`]), with its size when known.
    pub fn log_dropped(&self, reason: &'static str, bytes: Option<usize>) {
        self.log_dropped.get_or_create(&Dropped { reason }).inc();
        if let Some(n) = bytes {
            self.log_dropped_bytes.get_or_create(&Dropped { reason }).inc_by(n as u64);
        }
    }

    /// Ready: the orchestrator answered a heartbeat within the last three intervals (as it
    /// counts a host lost after three missed ones).
    pub fn ready(&self) -> bool {
        let last = self.last_heartbeat_ms.load(Ordering::Relaxed);
        last > 0 && now_ms().saturating_sub(last) <= 3 * self.interval_ms.load(Ordering::Relaxed) + 1000
    }

    /// The text to serve.
    pub fn render(&self) -> String {
        let failed = herd_api::daemon_log::failed_writes();
        let seen = self.log_write_failures_seen.swap(failed, Ordering::Relaxed);
        self.log_write_failures.inc_by(failed.saturating_sub(seen));
        let mut out = String::new();
        // NB: writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Why a log record is dropped: `replayed` (Docker sent a copy of a captured record again),
/// `lost` (Docker no longer had records written while the agent was away; their size is
/// unknown), `forward` (the syslog collector could not keep up; the files keep them).
pub const DROP_REASONS: [&str; 3] = ["replayed", "lost", "forward"];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        assert!(!m.ready());
        m.heartbeat(true, Duration::from_millis(4));
        m.docker_error("list");
        m.log_captured(100);
        m.log_dropped("lost", None);
        m.log_dropped("replayed", Some(40));
        assert!(m.ready());
        let text = m.render();
        for want in [
            "herd_agent_heartbeat_duration_seconds_count 1",
            "herd_agent_heartbeats_total{result=\"ok\"} 1",
            "herd_agent_docker_errors_total{op=\"list\"} 1",
            "herd_agent_log_captured_bytes_total 100",
            "herd_agent_log_records_dropped_total{reason=\"lost\"} 1",
            "herd_agent_log_records_dropped_total{reason=\"forward\"} 0",
            "herd_agent_log_dropped_bytes_total{reason=\"replayed\"} 40",
            "herd_agent_log_dropped_bytes_total{reason=\"forward\"} 0",
        ] {
            assert!(text.contains(want), "no `{want}` in\n{text}");
        }
    }
}
