//! Limits that protect every tenant from one: admission caps (a cluster's pending instances,
//! a tenant's clusters), the quota of a tenant created without one, and a request rate per
//! token (the `governor` crate's GCRA, keyed by token id; over it, 429 with `Retry-After`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::Quota;

/// The limits the orchestrator enforces (flags `--max-pending-per-cluster` and so on).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The most instances of one cluster waiting for a host after an apply or scale.
    pub max_pending_per_cluster: u32,
    /// The most clusters of one tenant.
    pub max_clusters_per_tenant: u32,
    /// The quota of a tenant created without one.
    pub default_quota: Quota,
    /// Requests per second per token, sustained.
    pub rate_limit: u32,
    /// Requests per token in a burst.
    pub rate_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending_per_cluster: 1000,
            max_clusters_per_tenant: 100,
            default_quota: Quota {
                cpu: Some(Cpu(64_000)),
                memory: Some(Memory(256 << 30)),
                disk: Some(Memory(4 << 40)),
                guaranteed: None,
            },
            rate_limit: 50,
            rate_burst: 200,
        }
    }
}

/// Parses `cpu=64,memory=256Gi,disk=4Ti` (any of the three; those left out are unlimited).
pub fn parse_quota(text: &str) -> Result<Quota, String> {
    let mut quota = Quota::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not KEY=VALUE (cpu=64,memory=256Gi,disk=4Ti)"))?;
        match key.trim() {
            "cpu" => quota.cpu = Some(Cpu::parse(value.trim()).map_err(|e| format!("cpu: {e}"))?),
            "memory" => quota.memory = Some(Memory::parse(value.trim()).map_err(|e| format!("memory: {e}"))?),
            "disk" => quota.disk = Some(Memory::parse(value.trim()).map_err(|e| format!("disk: {e}"))?),
            other => return Err(format!("unknown key `{other}`: use cpu, memory and disk")),
        }
    }
    if quota == Quota::default() {
        return Err(format!("`{text}` sets no limit; give cpu=, memory= or disk="));
    }
    Ok(quota)
}

/// Requests per token: each token's own bucket.
#[derive(Debug)]
pub struct RateLimiter {
    limiter: governor::DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimiter {
    pub fn new(limits: &Limits) -> Self {
        let per_second = NonZeroU32::new(limits.rate_limit).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.rate_burst.max(limits.rate_limit)).unwrap_or(per_second);
        RateLimiter {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `token`'s bucket; `Err` holds how long until one is allowed.
    pub fn check(&self, token: &str) -> Result<(), Duration> {
        // NB: tokens are few (each is issued by an admin), so keys are never dropped.
        self.limiter.check_key(&token.to_string()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_text() {
        let q = parse_quota("cpu=8, memory=16Gi").unwrap();
        assert_eq!((q.cpu, q.memory, q.disk), (Some(Cpu(8000)), Some(Memory(16 << 30)), None));
        assert!(parse_quota("cpu=x").unwrap_err().starts_with("cpu:"));
        assert!(parse_quota("gpu=1").unwrap_err().contains("unknown key `gpu`"));
        assert!(parse_quota("").is_err());
    }

    #[test]
    fn one_token_over_its_rate_does_not_slow_another() {
        let limits = Limits { rate_limit: 1, rate_burst: 3, ..Limits::default() };
        let r = RateLimiter::new(&limits);
        for _ in 0..3 {
            assert!(r.check("a").is_ok());
        }
        let wait = r.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(r.check("b").is_ok());
    }
}
