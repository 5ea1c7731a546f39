//! Host operations of the orchestrator: registration (with the host's subnet lease),
//! heartbeats (what agents report goes to the hot state; the answer is the host's desired set
//! as a delta, see [`crate::delta`]), watches (long polls woken by commits that concern the
//! host), the write-behind of reports, and each host's network plan. Fleet-level host
//! operations (lost hosts, cordon, drain, delete) are in [`crate::fleet`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herd_api::names::{InstanceRef, check_host_id};
use herd_api::network::HostNetwork;
use herd_api::wire::{Heartbeat, HeartbeatReply, HostInfo, RegisterReply};
use tracing::{info, warn};

use crate::delta::{Answer, Unchanged};
use crate::desired;
use crate::error::{Error, Result};
use crate::hot::Hot;
use crate::network;
use crate::placement::schedule_pending;
use crate::state::{State, drive_lifecycle, now_ms};
use crate::store::Tx;
use crate::store::audit::{self, Change};

/// A heartbeat but for its report: what [`State::heartbeat_same`] takes.
#[derive(Debug)]
pub struct HeartbeatHead {
    pub host_id: String,
    pub conditions: Vec<String>,
    pub purged: Vec<InstanceRef>,
    pub applied: Option<u64>,
    pub network_deltas: bool,
}

impl HeartbeatHead {
    /// The whole heartbeat, with its report `observed`.
    pub fn with(self, observed: Vec<herd_api::wire::Observed>) -> Heartbeat {
        let HeartbeatHead { host_id, conditions, purged, applied, network_deltas } = self;
        Heartbeat { host_id, observed, conditions, purged, applied, network_deltas }
    }
}

impl State {
    /// Writes the reports that changed since the last call to the store, in one
    /// transaction (write-behind; see [`crate::hot`]).
    pub async fn flush_reports(&self) -> Result<usize> {
        let dirty = self.hot.take_dirty();
        if dirty.is_empty() {
            return Ok(0);
        }
        let hosts: Vec<String> = dirty.iter().map(|d| d.host.clone()).collect();
        let n = dirty.len();
        let dirty = Arc::new(dirty);
        let reports = dirty.clone();
        let written = self
            .store
            .write(move |tx| {
                for d in reports.iter() {
                    tx.update_observed(&d.host, &d.before, &d.observed)?;
                    tx.set_conditions(&d.host, &d.conditions)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = written {
            self.hot.mark_dirty(hosts);
            return Err(e);
        }
        self.hot.flushed(&dirty);
        Ok(n)
    }

    /// Flushes reports every second until `stop` is cancelled, then once more.
    pub async fn flush_reports_until(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let cancelled = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            if let Err(e) = self.flush_reports().await {
                warn!(error = %e, "cannot write agents' reports to the store; retrying");
            }
            if cancelled {
                return;
            }
        }
    }

    /// Registers a host or updates its capacity; then places pending instances.
    pub async fn register(&self, actor: String, info: HostInfo) -> Result<RegisterReply> {
        if let Err(m) = check_host_id(&info.id) {
            return Err(Error::invalid("host.id", m));
        }
        let settings = self.network;
        if let Some(address) = info.address {
            settings.check_address(address).map_err(|m| Error::refused("host.address", m))?;
        }
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let (hot, host_id) = (self.hot.clone(), info.id.clone());
        let (new, network, took_back) = self
            .store
            .write(move |tx| {
                let new = tx.upsert_host(&info, now)?;
                if new {
                    let resource = format!("hosts/{}", info.id);
                    let change = Change { actor: &actor, action: "host.register", resource: &resource, before: None, after: None };
                    audit::record(tx, now, &change)?;
                }
                let network = match info.address {
                    Some(_) => Some(lease_subnet(tx, &hot, &settings, &info.id)?),
                    None => None,
                };
                hot.register(info.clone(), network.map(|n| n.subnet), now);
                let took_back = schedule_pending(tx, &hot, now, lost_after)?;
                Ok((new, network, took_back))
            })
            .await?;
        // Placement may have taken borrowed NodeManagers back for a guarantee (a drain).
        // NB: only then: every heartbeat reads the store while leaving instances may exist.
        if took_back {
            self.leaving_may_exist();
        }
        // A new lease or description: the next reply is computed, not taken as idle.
        self.sents.forget(&host_id);
        info!(new, subnet = ?network.map(|n| n.subnet), "host registered");
        Ok(RegisterReply { heartbeat_interval_ms: self.interval_ms(), network, log_secret: None })
    }

    /// Records what a host observed (in memory) and answers with its full desired set. The
    /// store is written only when something durable moves: a purge acknowledged, a leaving
    /// instance's phase, or placements when a host comes back from `lost`.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply> {
        self.heartbeat_as(hb, None).await.map(Answer::into_reply)
    }

    /// [`State::heartbeat`] with the report parsed from JSON whose digest is `report`
    /// ([`crate::hot::report_digest`]).
    pub async fn heartbeat_as(&self, hb: Heartbeat, report: Option<u64>) -> Result<Answer> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let Heartbeat { host_id: host, observed, conditions, purged, applied, network_deltas } = hb;
        let Some(heard) = self.hot.heartbeat_as(&host, observed, report, conditions, now, lost_after) else {
            return Err(Error::not_found("host", host));
        };
        self.heartbeat_answer(host, heard, purged, applied, network_deltas, now, lost_after).await
    }

    /// A heartbeat whose report is, byte for byte, the JSON last parsed for its host
    /// (`report` its digest): answered without parsing or comparing the report again (a
    /// host of a full fleet reports some thirty containers, unchanged heartbeat after
    /// heartbeat: parsing and comparing them was a third of the orchestrator's CPU at rest).
    /// `None` when it is another report: parse it.
    pub async fn heartbeat_same(&self, head: &HeartbeatHead, report: u64) -> Option<Result<Answer>> {
        let (now, lost_after) = (now_ms(), 3 * self.interval_ms());
        let heard = self.hot.heartbeat_same(&head.host_id, report, &head.conditions, now, lost_after)?;
        let (host, purged) = (head.host_id.clone(), head.purged.clone());
        Some(self.heartbeat_answer(host, heard, purged, head.applied, head.network_deltas, now, lost_after).await)
    }

    /// What follows a recorded heartbeat: purges acknowledged, leaving instances moved on,
    /// pending work placed when the host came back, and the reply. `heard` is held until the
    /// reply is made: the host's agent waits for it and sends nothing else meanwhile, so it
    /// counts as heard from until then (see `HostLive::age_ms`).
    #[allow(clippy::too_many_arguments)]
    async fn heartbeat_answer(
        &self,
        host: String,
        heard: crate::hot::Heard,
        purged: Vec<InstanceRef>,
        applied: Option<u64>,
        network_deltas: bool,
        now: u64,
        lost_after: u64,
    ) -> Result<Answer> {
        let crate::hot::Heard { was_ready, answering: _answering } = heard;
        let acked = !purged.is_empty();
        if acked {
            let host = host.clone();
            self.store
                .write(move |tx| {
                    for done in &purged {
                        tx.delete_purge(&host, done)?;
                    }
                    Ok(())
                })
                .await?;
        }
        // Masters' health and removed containers arrive here: move leaving instances on.
        let epoch = self.leaving_epoch.load(Ordering::SeqCst);
        if epoch != self.leaving_none_at.load(Ordering::SeqCst) {
            let h = host.clone();
            let (any, mine) = self
                .store
                .read(move |c| {
                    let leaving = c.leaving(None)?;
                    let clusters: BTreeSet<(String, String)> =
                        leaving.keys().map(|i| (i.tenant.clone(), i.cluster.clone())).collect();
                    let mine: BTreeSet<(String, String)> = c.instances_on_host(&h)?
                        .into_iter()
                        .map(|i| (i.instance.tenant, i.instance.cluster))
                        .filter(|k| clusters.contains(k))
                        .collect();
                    Ok((!leaving.is_empty(), mine))
                })
                .await?;
            if !any {
                self.leaving_none_at.fetch_max(epoch, Ordering::SeqCst);
            } else if !mine.is_empty() {
                let hot = self.hot.clone();
                self.store.write(move |tx| drive_lifecycle(tx, &hot, now, lost_after, Some(&mine))).await?;
                self.leaving_may_exist();
            }
        }
        // A host coming back may make room for what is pending.
        if !was_ready {
            self.schedule_soon();
        }
        self.reply_for(&host, applied, network_deltas, now, lost_after, !acked, desired::Want::Heartbeat).await
    }

    /// Places pending instances in a scheduling pass of its own, soon: one pass for however
    /// many hosts come back meanwhile, and never awaited by a heartbeat. (Awaited, a host back
    /// from `lost` waited behind every write queued before it: while a hundred applies were
    /// queued that was a minute, so the simulated agents' heartbeats stopped, more hosts went
    /// `lost`, and each of those waited in turn: no heartbeat was answered for 40 s.) What it
    /// places reaches the host through its watch, or its next heartbeat.
    pub(crate) fn schedule_soon(&self) {
        if self.schedule_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let (hot, lost_after, queued) = (state.hot.clone(), 3 * state.interval_ms(), state.schedule_queued.clone());
            let pass = move |tx: &dyn Tx| {
                // NB: cleared when the pass runs, not when it is queued: hosts back while it
                // waits in the writer's queue are in it; a host back after this asks for another.
                queued.store(false, Ordering::SeqCst);
                schedule_pending(tx, &hot, now_ms(), lost_after)
            };
            match state.store.write(pass).await {
                Ok(_) => state.leaving_may_exist(),
                Err(e) => {
                    // A pass the writer dropped without running must not keep others out.
                    state.schedule_queued.store(false, Ordering::SeqCst);
                    warn!(error = %e, "cannot place pending instances after a host came back; the next change will");
                }
            }
        });
    }

    /// The reply for `host`, which applied generation `applied`: a delta against it when the
    /// orchestrator knows it (see [`crate::delta`]). With `may_skip`, a host whose set was
    /// empty at the current store revision is answered without reading the store.
    /// `network_deltas`: the agent takes network plan deltas. `want`: a heartbeat's or a
    /// watch's (see [`desired::Want`]).
    #[allow(clippy::too_many_arguments)]
    async fn reply_for(
        &self,
        host: &str,
        applied: Option<u64>,
        network_deltas: bool,
        now: u64,
        lost_after: u64,
        may_skip: bool,
        want: desired::Want,
    ) -> Result<Answer> {
        let (interval, settings) = (self.interval_ms(), self.network);
        loop {
            let at = now_ms();
            let stamp_of = |key: &(String, String)| self.desired.stamp(&self.store, &self.hot, key, lost_after, at);
            let view_of = |tenant: &str| self.netviews.fresh(&self.store, &self.hot, tenant, now);
            let touched = self.store.host_touched(host);
            if may_skip && let Some(known) = self.sents.unchanged_since(host, applied, touched, stamp_of, view_of) {
                let generation = match known {
                    Unchanged::Idle(generation) => generation,
                    Unchanged::Busy(generation) => {
                        crate::metrics::get().heartbeat_unchanged();
                        generation
                    }
                };
                return Ok(crate::delta::unchanged(generation, applied, interval).into());
            }
            crate::metrics::get().heartbeat_computed();
            let skip_new = self.sents.holds(host, applied);
            let (hot, cache, h, store) = (self.hot.clone(), self.desired.clone(), host.to_string(), self.store.clone());
            let views = self.netviews.clone();
            let full = self
                .store
                .read(move |c| {
                    // One snapshot for the whole reply (as every read is). NB: the count read
                    // here, on the store's thread, before the snapshot's first read (see
                    // `Store::touches`).
                    let touches = store.touches();
                    let (desired, sources) = match desired::desired_for(c, &store, &hot, &cache, &h, want, skip_new, touches, now, lost_after)? {
                        Ok(d) => d,
                        Err(busy) => return Ok(Err(busy)),
                    };
                    let network = host_network(c, &store, &hot, &views, &settings, &h, touches, now)?;
                    let purge = c.purges(&h)?;
                    let revision = c.revision()?;
                    Ok(Ok(crate::delta::Full { desired, network, network_deltas, purge, revision, touches, sources }))
                })
                .await?;
            // A cluster this host runs is being derived by another request: wait for it here,
            // not on a store thread, then read again.
            let full = match full {
                Ok(full) => full,
                Err(busy) => {
                    crate::metrics::get().desired_wait();
                    busy.wait().await;
                    continue;
                }
            };
            // `None`: a racing request told the host a newer set; read again.
            if let Some(reply) = self.sents.reply(host, applied, full, interval) {
                return Ok(reply);
            }
        }
    }

    /// A long poll: answers as soon as `host`'s desired set differs from generation `applied`
    /// (a commit touched the host or a tenant it runs: see [`store::Touched`]), else after
    /// `wait` with an empty delta. What agents report (rollout steps, other hosts' container
    /// addresses) reaches a host with its next heartbeat instead.
    pub async fn watch(&self, host: &str, applied: Option<u64>, wait: Duration, network_deltas: bool) -> Result<Answer> {
        let lost_after = 3 * self.interval_ms();
        if self.hot.host(host).is_none() {
            return Err(Error::not_found("host", host));
        }
        let _watching = {
            let mut map = self.watching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = map.entry(host.to_string()).or_default();
            if *n >= WATCHES_PER_HOST {
                return Err(Error::Conflict(format!(
                    "host {host} already holds {WATCHES_PER_HOST} watches open (its agent needs one); wait for one to be answered"
                )));
            }
            *n += 1;
            Watching { map: self.watching.clone(), host: host.to_string() }
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before reading: no commit falls between the read and the wait.
        let mut changes = self.store.changes();
        loop {
            let reply = self.reply_for(host, applied, network_deltas, now_ms(), lost_after, true, desired::Want::Watch).await?;
            if reply.reply.base != Some(reply.reply.generation) || applied.is_none() {
                return Ok(reply);
            }
            let tenants = self.sents.tenants(host);
            loop {
                tokio::select! {
                    change = changes.recv() => match change {
                        Ok(t) if t.concerns(host, &tenants) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(reply),
                    },
                    _ = tokio::time::sleep_until(deadline) => return Ok(reply),
                    // Shutting down: the agent watches again, here or elsewhere.
                    _ = self.shutdown.cancelled() => return Ok(reply),
                }
            }
        }
    }
}

/// Watches one host may hold open at once: its agent needs one (two while a new one
/// replaces a timed-out one); a stolen agent token cannot pile up long polls.
pub const WATCHES_PER_HOST: usize = 2;

/// One open watch of a host, counted while it lives.
pub(crate) struct Watching {
    map: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    host: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.host);
            }
        }
    }
}

/// The host's subnet: its stored lease if that still fits the cluster CIDR, else a new one.
/// Leases come from the hot state's set of leases (no scan of the store per registration);
/// a new one is stored in the registration's transaction.
fn lease_subnet(tx: &dyn Tx, hot: &Hot, settings: &network::Settings, host: &str) -> Result<HostNetwork> {
    let (subnet, stale) = hot
        .lease(host, |s| settings.fits(s), |taken| settings.lease(taken))
        .map_err(|m| Error::Conflict(format!("host {host}: {m}")))?;
    if stale.is_some() || tx.subnets_of(host)? != Some(subnet) {
        if let Some(old) = stale {
            warn!(host, old = %old, new = %subnet, "host subnet outside the cluster CIDR now; leased a new one");
        }
        tx.put_subnet(host, subnet)?;
    }
    Ok(HostNetwork { cluster_cidr: settings.cluster_cidr, subnet })
}

/// `host`'s network, if it has a subnet lease: its lease and the views of the tenants with
/// instances on it ([`crate::netview`]): routes to the hosts holding their instances and the
/// addresses of those instances. (Every other address is dropped by tenant isolation anyway.)
/// O(the host's instances) while the views are fresh, never O(fleet).
#[allow(clippy::too_many_arguments)]
fn host_network(
    tx: &dyn Tx,
    store: &crate::store::Store,
    hot: &Hot,
    views: &crate::netview::NetViews,
    settings: &network::Settings,
    host: &str,
    touches: u64,
    now: u64,
) -> Result<Option<crate::netview::HostNet>> {
    let Some(subnet) = hot.subnet(host) else {
        return Ok(None);
    };
    let tenants: BTreeSet<String> = tx.instances_on_host(host)?.into_iter().map(|i| i.instance.tenant).collect();
    let views = tenants.iter().map(|t| views.get(tx, store, hot, settings, t, touches, now)).collect::<Result<Vec<_>>>()?;
    Ok(Some(crate::netview::HostNet { lease: HostNetwork { cluster_cidr: settings.cluster_cidr, subnet }, views }))
}
