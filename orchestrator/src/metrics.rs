//! The orchestrator's metrics, served at `/metrics` in the Prometheus/OpenMetrics text format
//! (the `prometheus-client` crate): requests and their latency by route, heartbeat and store
//! latency, pending instances, placements, backups, refusals by the limits, and herd's own
//! log lines that could not be written. Names follow Prometheus' conventions: a `herd_`
//! prefix, the unit in the name (`_seconds`), `_total` on counters.
//!
//! One set per process ([`get`]): the store, the scheduler and the HTTP layer count into it
//! without a handle passed through every call. No label carries a tenant, cluster or token:
//! `/metrics` needs no token, and label values stay few (route templates, not paths).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of an answered request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    method: String,
    route: String,
    status: u16,
}

/// Labels of a request's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result_ {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The orchestrator's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Answered, Counter>,
    latency: Family<Route, Histogram>,
    heartbeat: Histogram,
    store: Family<Op, Histogram>,
    placements: Counter,
    views_made: Counter,
    desired_waits: Counter,
    unchanged: Counter,
    computed: Counter,
    derivations: Family<Reason, Histogram>,
    pending: Gauge,
    backups: Family<Result_, Counter>,
    refused: Family<Reason, Counter>,
    log_write_failures: Counter,
    /// The daemon log's count as last copied into `log_write_failures`.
    log_write_failures_seen: AtomicU64,
    leader: Gauge,
    terms: Counter,
    lost_hosts: Gauge,
    lost_held: Gauge,
}

fn latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Answered, Counter>::default();
        registry.register("herd_http_requests", "HTTP requests answered, by route template, method and status", requests.clone());
        let latency = Family::<Route, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "herd_http_request_duration",
            "Time to answer an HTTP request, by route template and method",
            Unit::Seconds,
            latency.clone(),
        );
        let heartbeat = self::latency();
        registry.register_with_unit("herd_heartbeat_duration", "Time to answer an agent's heartbeat", Unit::Seconds, heartbeat.clone());
        let store = Family::<Op, Histogram>::new_with_constructor(self::latency as fn() -> Histogram);
        registry.register_with_unit(
            "herd_store_operation_duration",
            "Time a store operation took, queueing included (op: read or write)",
            Unit::Seconds,
            store.clone(),
        );
        let placements = Counter::default();
        registry.register("herd_placements", "Instances the scheduler placed on a host", placements.clone());
        let views_made = Counter::default();
        registry.register(
            "herd_placement_views_made",
            "Placement passes that made their views of every host anew (a host came or went, the writer's sums were summed again, or a pool's disk or ports changed) instead of updating the kept ones",
            views_made.clone(),
        );
        let desired_waits = Counter::default();
        registry.register(
            "herd_desired_waits",
            "Heartbeats that waited for a cluster another request was deriving (after an apply of a big cluster, its hosts all do)",
            desired_waits.clone(),
        );
        let unchanged = Counter::default();
        registry.register(
            "herd_heartbeats_unchanged",
            "Heartbeats of hosts running instances answered from memory: nothing they run changed since they were last told",
            unchanged.clone(),
        );
        let computed = Counter::default();
        registry.register(
            "herd_heartbeats_computed",
            "Heartbeats and watches whose reply was computed from the store and the clusters' derived results (a commit named the host, \
             or something it runs changed)",
            computed.clone(),
        );
        let derivations = Family::<Reason, Histogram>::new_with_constructor(self::latency as fn() -> Histogram);
        registry.register_with_unit(
            "herd_derivation_duration",
            "Time to derive one cluster's desired containers and status (reason: commit, reports, status, write)",
            Unit::Seconds,
            derivations.clone(),
        );
        let pending = Gauge::default();
        registry.register("herd_pending_instances", "Instances waiting for a host, as of this scrape", pending.clone());
        let backups = Family::<Result_, Counter>::default();
        registry.register("herd_backups", "Scheduled backups of the store, by result (ok, failed)", backups.clone());
        let refused = Family::<Reason, Counter>::default();
        registry.register(
            "herd_limit_refusals",
            "Requests refused by a limit (reason: rate_limit, pending_instances, clusters_per_tenant)",
            refused.clone(),
        );
        let log_write_failures = Counter::default();
        registry.register(
            "herd_log_write_failures",
            "herd's own log lines that could not be written to stderr",
            log_write_failures.clone(),
        );
        let leader = Gauge::default();
        registry.register("herd_leader", "1 while this orchestrator leads (always, on the SQLite store), else 0", leader.clone());
        let terms = Counter::default();
        registry.register("herd_leader_terms", "Times this orchestrator became the leader", terms.clone());
        let lost_hosts = Gauge::default();
        registry.register("herd_hosts_lost", "Hosts lost (no heartbeat for three intervals), as of the last sweep", lost_hosts.clone());
        let lost_held = Gauge::default();
        registry.register(
            "herd_lost_moves_held",
            "1 while so much of the fleet is lost at once that nothing moves off lost hosts (--max-lost-percent), else 0",
            lost_held.clone(),
        );
        Metrics {
            lost_hosts,
            lost_held,
            leader,
            terms,
            registry,
            requests,
            latency,
            heartbeat,
            store,
            placements,
            views_made,
            desired_waits,
            unchanged,
            computed,
            derivations,
            pending,
            backups,
            refused,
            log_write_failures,
            log_write_failures_seen: AtomicU64::new(0),
        }
    }

    /// One answered request: `route` is its template (e.g. `/v1/tenants/{tenant}`).
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let (method, route) = (method.to_string(), route.to_string());
        self.requests.get_or_create(&Answered { method: method.clone(), route: route.clone(), status }).inc();
        self.latency.get_or_create(&Route { method, route }).observe(took.as_secs_f64());
    }

    pub fn heartbeat(&self, took: Duration) {
        self.heartbeat.observe(took.as_secs_f64());
    }

    /// A store operation: `write` or `read`.
    pub fn store(&self, op: &'static str, took: Duration) {
        self.store.get_or_create(&Op { op }).observe(took.as_secs_f64());
    }

    pub fn placed(&self, n: u64) {
        self.placements.inc_by(n);
    }

    /// Placement made its views of every host anew.
    pub fn views_made(&self) {
        self.views_made.inc();
    }

    /// A busy host's heartbeat answered from memory ([`crate::delta::Sents::unchanged_since`]).
    pub fn heartbeat_unchanged(&self) {
        self.unchanged.inc();
    }

    /// A heartbeat's reply computed in full ([`crate::desired::desired_for`]).
    pub fn heartbeat_computed(&self) {
        self.computed.inc();
    }

    /// One cluster derived ([`crate::desired::DesiredCache`]): `commit` (a commit named it),
    /// `reports` (its hosts' reports changed or aged), `status` (a status read), `write` (a
    /// write's answer).
    pub fn derivation(&self, reason: &'static str, took: Duration) {
        self.derivations.get_or_create(&Reason { reason }).observe(took.as_secs_f64());
    }

    /// A heartbeat waits for a cluster another request derives ([`crate::desired::Busy`]).
    pub fn desired_wait(&self) {
        self.desired_waits.inc();
    }

    /// This orchestrator starts (`true`) or stops leading.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if leading {
            self.terms.inc();
        }
    }

    /// What the last sweep saw: `lost` hosts, and whether it held moves off them.
    pub fn lost_hosts(&self, lost: u64, held: bool) {
        self.lost_hosts.set(lost as i64);
        self.lost_held.set(i64::from(held));
    }

    pub fn backup(&self, ok: bool) {
        self.backups.get_or_create(&Result_ { result: if ok { "ok" } else { "failed" } }).inc();
    }

    /// A request refused by a limit: `rate_limit`, `pending_instances`, `clusters_per_tenant`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    /// The text to serve, with the gauges read now: `pending` instances (`None` on a
    /// follower, which leaves the gauge as it was when it last led).
    pub fn render(&self, pending: Option<u64>) -> String {
        if let Some(pending) = pending {
            self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        let failed = herd_api::daemon_log::failed_writes();
        let seen = self.log_write_failures_seen.swap(failed, Ordering::Relaxed);
        self.log_write_failures.inc_by(failed.saturating_sub(seen));
        let mut out = String::new();
        // NB: writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.request("GET", "/v1/tenants/{tenant}", 200, Duration::from_millis(3));
        m.placed(2);
        m.refused("rate_limit");
        m.leading(true);
        let text = m.render(Some(7));
        for want in [
            "herd_http_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}\",status=\"200\"} 1",
            "herd_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/tenants/{tenant}\"} 1",
            "herd_placements_total 2",
            "herd_pending_instances 7",
            "herd_limit_refusals_total{reason=\"rate_limit\"} 1",
            "herd_leader 1",
            "herd_leader_terms_total 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "no `{want}` in\n{text}");
        }
    }
}
