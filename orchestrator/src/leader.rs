//! Leader election on etcd (`--store etcd`): several orchestrators share one store; exactly
//! one of them leads (schedules, reconciles, runs decommissions, answers the API), the others
//! send every client to it ([`crate::http::front`]).
//!
//! # How
//! - **Campaign.** An orchestrator reads the leader key (`PREFIX.leader`, outside the data
//!   prefix). While it exists, its value is the leader's `--advertise-url`. When it is absent,
//!   the orchestrator grants a lease of `--lease-ttl` and, in one transaction, creates the key
//!   under that lease unless it exists (`create_revision == 0`). Whoever commits first leads;
//!   the others read it back and follow. Followers look again every `ttl / 10` (100–500 ms),
//!   so a new leader is in place within the TTL and a poll after the old lease ends.
//! - **Holding.** The leader renews its lease every `ttl / 4` and checks that the key is still
//!   the one it created. It keeps a local deadline: the instant it *sent* the last successful
//!   renewal plus the TTL etcd granted, less a margin (`ttl / 10`, at least 300 ms). etcd
//!   counts the TTL from when it *received* the renewal, so the lease cannot end before the
//!   local deadline: a leader that cannot renew in time (etcd unreachable, no quorum, the
//!   process paused) stops acting at its deadline, **before** etcd lets another one start.
//! - **Fencing.** Every store commit of the leader carries `create_revision(KEY) == REV`,
//!   the key as this term created it ([`crate::store::etcd::Fence`]). When the lease ends,
//!   etcd deletes the key and any later commit of the old leader fails ([`Error::NotLeader`]),
//!   even one already under way when it paused: a partitioned or frozen old leader cannot
//!   write, whatever its clock says.
//! - **Stepping down.** On SIGTERM the leader revokes its lease after it stopped serving, so a
//!   follower takes over at its next poll instead of after the TTL.
//!
//! etcd does the consensus; herd only compares revisions (no clock is trusted across
//! machines: only the leader's own monotonic clock, against a TTL etcd guarantees).
//!
//! NB: etcd renews no lease while it elects a leader of its own (about one to two election
//! timeouts after its leader dies, 1–2 s with etcd's defaults), so the TTL must outlast that
//! with room: the default 5 s leaves a leader at least 3 s of its deadline at any moment.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::store::etcd::{Campaign, Etcd, Fence};

/// Leader election for one orchestrator.
#[derive(Clone)]
pub struct Election {
    etcd: Etcd,
    key: String,
    me: String,
    ttl: Duration,
}

/// This orchestrator's time as leader.
pub struct Term {
    /// The leader key's create revision: what every write of this term is fenced with.
    pub create_revision: i64,
    /// Cancelled when the term ends without being asked to: the lease could not be renewed
    /// in time, or the key is not this term's any more.
    pub lost: CancellationToken,
    resign: CancellationToken,
    holder: tokio::task::JoinHandle<()>,
}

impl Term {
    /// Ends the term: revokes the lease (when it can), so another orchestrator takes over at once.
    pub async fn resign(self) {
        self.resign.cancel();
        let _ = self.holder.await;
    }
}

impl Election {
    /// `me`: the URL clients are sent to while this orchestrator leads.
    pub fn new(etcd: Etcd, me: String, ttl: Duration) -> Self {
        let key = format!("{}.leader", etcd.prefix());
        Election { etcd, key, me, ttl }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// How long one etcd call may take.
    fn within(&self) -> Duration {
        (self.ttl / 3).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// How often a follower looks at the leader key.
    pub fn poll(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(100), Duration::from_millis(500))
    }

    /// Campaigns until this orchestrator leads (`None`: `stop` came first). Meanwhile `seen`
    /// is told who leads (`None`: nobody known, e.g. etcd cannot be reached).
    pub async fn campaign(&self, stop: &CancellationToken, seen: impl Fn(Option<String>)) -> Option<Term> {
        let mut complained = false;
        loop {
            match self.try_once().await {
                Ok(Ok(term)) => return Some(term),
                Ok(Err(leader)) => {
                    complained = false;
                    seen(Some(leader));
                }
                Err(e) => {
                    seen(None);
                    if !complained {
                        warn!(error = %e, "cannot campaign for leadership; trying again");
                        complained = true;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll()) => {}
                () = stop.cancelled() => return None,
            }
        }
    }

    /// One look at the key, and one try at creating it when it is absent: the term, or
    /// whom the key names.
    async fn try_once(&self) -> Result<std::result::Result<Term, String>> {
        let within = self.within();
        if let Some((leader, _)) = self.etcd.get_full(&self.key, within).await? {
            return Ok(Err(leader));
        }
        let asked = Instant::now();
        let lease = self.etcd.grant(self.ttl, within).await?;
        let won = self.etcd.campaign(&self.key, &self.me, lease, within).await;
        let create_revision = match won {
            Ok(Campaign::Won { create_revision }) => create_revision,
            Ok(Campaign::Held { leader, .. }) => {
                let _ = self.etcd.revoke(lease, within).await;
                return Ok(Err(leader));
            }
            Err(e) => {
                let _ = self.etcd.revoke(lease, within).await;
                return Err(e);
            }
        };
        self.etcd.set_fence(Some(Fence { key: self.key.clone(), create_revision }));
        let (lost, resign) = (CancellationToken::new(), CancellationToken::new());
        let holder = tokio::spawn(hold(self.clone(), lease, create_revision, asked, lost.clone(), resign.clone()));
        info!(key = %self.key, create_revision, lease, ttl = ?self.ttl, "leading");
        Ok(Ok(Term { create_revision, lost, resign, holder }))
    }
}

/// Keeps lease `lease` alive until `resign` (then revokes it) or until it cannot be kept
/// (then cancels `lost`). `asked`: when the lease was asked for.
async fn hold(e: Election, lease: i64, create_revision: i64, asked: Instant, lost: CancellationToken, resign: CancellationToken) {
    let margin = (e.ttl / 10).max(Duration::from_millis(300));
    let mut deadline = asked + e.ttl.saturating_sub(margin);
    let mut wait = e.ttl / 4;
    loop {
        let next = (Instant::now() + wait).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = resign.cancelled() => {
                if let Err(err) = e.etcd.revoke(lease, e.within()).await {
                    warn!(error = %err, "cannot revoke the leader's lease; another orchestrator takes over when it ends");
                }
                info!("stepped down");
                return;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            warn!(lease, "the lease could not be renewed in time: stopped leading");
            lost.cancel();
            return;
        }
        let within = (deadline - now).min(e.within());
        let renewed = async {
            let left = e.etcd.keep_alive(lease, within).await?;
            if left <= 0 {
                return Ok(None);
            }
            let key = e.etcd.get_full(&e.key, within).await?;
            Ok::<_, Error>(key.filter(|(_, rev)| *rev == create_revision).map(|_| left))
        };
        match renewed.await {
            Ok(Some(left)) => {
                deadline = now + Duration::from_secs(left.unsigned_abs()).saturating_sub(margin);
                wait = e.ttl / 4;
            }
            Ok(None) => {
                warn!(lease, key = %e.key, "the lease or the leader key is gone: stopped leading");
                lost.cancel();
                return;
            }
            Err(err) => {
                warn!(error = %err, "cannot renew the leader's lease; trying again until its deadline");
                wait = e.poll();
            }
        }
    }
}
