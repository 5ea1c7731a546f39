//! Leader election through a `coordination.k8s.io/v1` Lease, so two or more replicas of the
//! operator can run and exactly one reconciles.
//!
//! A replica holds the lease while it renews it within `leaseDurationSeconds`; another takes
//! it over only once it has expired. Every write carries the `resourceVersion` read before
//! it (optimistic concurrency): of two replicas racing for an expired lease, the API server
//! lets one write win and answers the other 409 Conflict. A leader that cannot renew before
//! its lease runs out stops reconciling (the caller cancels its controller).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// One replica's view of the lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    /// This replica's identity (its pod name).
    holder: String,
    duration: Duration,
}

/// What a try gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This replica holds the lease (acquired or renewed).
    Leader,
    /// Another replica holds it, unexpired.
    Follower { holder: String },
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, holder: &str, duration: Duration) -> Elector {
        Elector { api, name: name.into(), holder: holder.into(), duration }
    }

    /// How often a leader renews (a third of the lease, as client-go's default ratios).
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Acquires, renews or observes the lease once. A conflict (another replica wrote first)
    /// is a follower's answer, not an error.
    pub async fn try_acquire(&self) -> Result<Outcome, kube::Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease { metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() }, spec: Some(spec(0, None)) };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leader),
                Err(kube::Error::Api(s)) if s.code == 409 => self.follower().await,
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let expired = match (&current.renew_time, current.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(d)) => now.as_millisecond() > renewed.as_millisecond() + i64::from(d) * 1000,
            _ => true,
        };
        if holder != self.holder && !expired && !holder.is_empty() {
            return Ok(Outcome::Follower { holder });
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(holder != self.holder);
        let acquired = (holder == self.holder).then_some(current.acquire_time).flatten();
        lease.spec = Some(spec(transitions, acquired));
        // NB: `replace` sends the resourceVersion read above: a concurrent writer makes it 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leader),
            Err(kube::Error::Api(s)) if s.code == 409 => self.follower().await,
            Err(e) => Err(e),
        }
    }

    async fn follower(&self) -> Result<Outcome, kube::Error> {
        let holder = self.api.get_opt(&self.name).await?.and_then(|l| l.spec).and_then(|s| s.holder_identity).unwrap_or_default();
        Ok(Outcome::Follower { holder })
    }
}
