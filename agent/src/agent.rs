//! The agent's loop: register, then heartbeat what is on the host and converge to the
//! desired set in the reply. Containers outlive the agent: stopping or killing it stops
//! nothing, and a restarted agent adopts what it finds (see [`crate::converge::plan`]).

use std::collections::HashMap;
use std::time::Duration;

use herd_api::names::InstanceRef;
use herd_api::wire::{Heartbeat, HostInfo, LogEndpoint};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{Client, ClientError};
use crate::config::Config;
use crate::converge::{self, Layout};
use crate::logs::Logs;
use crate::runtime::Runtime;

/// Right after acting, heartbeat again this soon so the orchestrator sees the result.
const AFTER_ACTION: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Agent<R> {
    pub config: Config,
    pub runtime: R,
    pub client: Client,
    /// The per-instance log captures, kept in step with the containers found.
    pub logs: Logs,
    /// Sent at registration so the orchestrator can proxy `herd logs` here.
    pub log_endpoint: Option<LogEndpoint>,
}

impl<R: Runtime> Agent<R> {
    fn layout(&self) -> Layout {
        Layout {
            host_id: self.config.host_id.clone(),
            logs: self.config.data_dir.join("logs"),
            data_disks: self.config.data_disks.clone(),
        }
    }

    fn host_info(&self) -> HostInfo {
        HostInfo {
            id: self.config.host_id.clone(),
            cpu: self.config.cpu,
            memory: self.config.memory,
            rack: self.config.rack.clone(),
            data_disks: self.config.data_disks.iter().map(|d| d.display().to_string()).collect(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("agent", host = %self.config.host_id);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(self, shutdown: CancellationToken) {
        let layout = self.layout();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.client.register(self.host_info(), self.log_endpoint.clone()).await {
                Ok(reply) => {
                    info!(cpu = %self.config.cpu, memory = %self.config.memory, heartbeat_ms = reply.heartbeat_interval_ms, "registered");
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, source = ?std::error::Error::source(&e), "registration failed, retrying");
                    if let Ok(found) = self.runtime.list(&self.config.host_id).await {
                        self.logs.sync(&found);
                    }
                    sleep_or_cancel(backoff(failures), &shutdown).await;
                    continue;
                }
            }
            self.heartbeat_loop(&layout, &shutdown).await;
        }
        info!("stopped; containers keep running");
    }

    /// Heartbeats until shutdown or until the orchestrator forgets this host.
    async fn heartbeat_loop(&self, layout: &Layout, shutdown: &CancellationToken) {
        let mut errors: HashMap<InstanceRef, String> = HashMap::new();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let found = match self.runtime.list(&self.config.host_id).await {
                Ok(found) => found,
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, "cannot list containers");
                    sleep_or_cancel(backoff(failures), shutdown).await;
                    continue;
                }
            };
            let hb = Heartbeat {
                host_id: self.config.host_id.clone(),
                observed: converge::observed(&found, &errors),
                conditions: self.logs.conditions(),
            };
            let reply = match self.client.heartbeat(&hb).await {
                Ok(reply) => reply,
                Err(ClientError::UnknownHost) => {
                    warn!("orchestrator does not know this host; registering again");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    warn!(error = %e, "heartbeat failed");
                    // Capture does not wait for the orchestrator.
                    self.logs.sync(&found);
                    sleep_or_cancel(backoff(failures), shutdown).await;
                    continue;
                }
            };
            failures = 0;
            self.logs.remember_pools(&reply.desired);
            self.logs.sync(&found);
            let interval = Duration::from_millis(reply.heartbeat_interval_ms.max(100));
            let desired: Vec<_> = reply.desired.iter().map(|d| (d.instance.clone(), layout.container_config(d))).collect();
            let actions = converge::plan(&desired, &found);
            debug!(generation = reply.generation, desired = desired.len(), found = found.len(), actions = actions.len(), "heartbeat");
            let acted = !actions.is_empty();
            errors = converge::execute(&self.runtime, layout, &reply.desired, actions).await;
            let pause = if acted && errors.is_empty() { AFTER_ACTION } else { interval };
            sleep_or_cancel(pause, shutdown).await;
        }
    }
}

/// Exponential backoff with full jitter, capped.
fn backoff(failures: u32) -> Duration {
    let cap = Duration::from_millis(250u64.saturating_mul(1 << failures.min(10))).min(MAX_BACKOFF);
    let ms = rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
    Duration::from_millis(ms)
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(3) >= Duration::from_millis(1000));
        assert!(backoff(40) <= MAX_BACKOFF);
    }
}
