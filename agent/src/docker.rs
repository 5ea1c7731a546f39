//! The Docker backend of [`Runtime`], over the engine's API with bollard.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::Docker;
use futures::StreamExt;
use futures::stream::BoxStream;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use herd_api::names::InstanceRef;
use herd_api::wire::ContainerState;

use crate::runtime::{Container, ContainerConfig, ExecOutput, Runtime, RuntimeError, labels};

/// Seconds a daemon gets to shut down after SIGTERM before it is killed.
const STOP_GRACE_S: i32 = 30;
/// The most output of a command run in a container that is kept (its tail).
const EXEC_OUTPUT_MAX: usize = 4096;

/// A container's `StartedAt` and exit code.
type Details = (Option<String>, Option<i64>);

pub struct DockerRuntime {
    docker: Docker,
    /// Size of each of the 3 files of Docker's own copy of a container's output.
    log_max_size: u64,
    /// `StartedAt` and exit code by (container id, state): they change only when the state
    /// does, so each container is inspected once per state rather than once per heartbeat.
    details: Mutex<HashMap<(String, ContainerState), Details>>,
}

/// Default size of each of the 3 files of Docker's own copy of a container's output.
pub const DEFAULT_DOCKER_LOG_SIZE: u64 = 8 << 20;

/// Docker's own copy of a container's output: the `local` driver, small and bounded, so it
/// cannot fill a disk yet still holds what was written while the agent was down (the agent
/// replays it from there; see `logs::cursor`).
fn docker_log_config(max_size: u64) -> HostConfigLogConfig {
    let config = HashMap::from([("max-size".to_string(), max_size.to_string()), ("max-file".to_string(), "3".to_string())]);
    HostConfigLogConfig { typ: Some("local".into()), config: Some(config) }
}

impl DockerRuntime {
    /// Sets the size of each of the 3 files of Docker's own copy of container output.
    pub fn with_log_max_size(mut self, bytes: u64) -> Self {
        self.log_max_size = bytes;
        self
    }

    /// The engine connection, for the log capture.
    pub fn docker(&self) -> Docker {
        self.docker.clone()
    }

    /// Connects to the local engine (or `DOCKER_HOST`) and agrees on an API version.
    pub async fn connect() -> Result<Self, BollardError> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;
        docker.ping().await?;
        Ok(Self { docker, log_max_size: DEFAULT_DOCKER_LOG_SIZE, details: Mutex::new(HashMap::new()) })
    }

    async fn details(&self, id: &str, state: ContainerState) -> Details {
        let key = (id.to_string(), state);
        if let Some(d) = self.details.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return d.clone();
        }
        let Ok(inspect) = self.docker.inspect_container(id, None::<InspectContainerOptions>).await else {
            return (None, None);
        };
        let s = inspect.state.unwrap_or_default();
        let d = (s.started_at, s.exit_code);
        let mut cache = self.details.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(cid, _), _| cid != id);
        cache.insert(key, d.clone());
        d
    }
}

fn call_error(op: &'static str, target: &str, e: BollardError) -> RuntimeError {
    crate::metrics::get().docker_error(op);
    let message = match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    };
    RuntimeError::Call { op, target: target.to_string(), message }
}

fn is_status(e: &BollardError, codes: &[u16]) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

fn state_of(s: Option<&str>) -> ContainerState {
    match s {
        Some("running") => ContainerState::Running,
        Some("restarting") => ContainerState::Restarting,
        Some("paused") => ContainerState::Paused,
        Some("exited") => ContainerState::Exited,
        Some("dead") | Some("removing") => ContainerState::Dead,
        _ => ContainerState::Created,
    }
}

impl Runtime for DockerRuntime {
    async fn list(&self, host: &str) -> Result<Vec<Container>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED), format!("{}={host}", labels::HOST)],
        )]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(opts)).await.map_err(|e| call_error("list", host, e))?;
        let mut out = Vec::new();
        for s in summaries {
            let (Some(id), Some(l)) = (s.id, s.labels) else { continue };
            let label = |k: &str| l.get(k).cloned().unwrap_or_default();
            let instance = InstanceRef { tenant: label(labels::TENANT), cluster: label(labels::CLUSTER), name: label(labels::INSTANCE) };
            let state = state_of(s.state.map(|s| s.to_string()).as_deref());
            let (started_at, exit_code) = self.details(&id, state).await;
            let config_hash = l.get(labels::CONFIG_HASH).cloned();
            out.push(Container { spec_hash: label(labels::SPEC_HASH), config_hash, id, instance, state, started_at, exit_code });
        }
        Ok(out)
    }

    async fn create_and_start(&self, c: &ContainerConfig) -> Result<String, RuntimeError> {
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: c.cmd.clone(),
            hostname: Some(c.hostname.clone()),
            env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(c.labels.clone().into_iter().collect()),
            host_config: Some(HostConfig {
                nano_cpus: Some(c.nano_cpus),
                memory: Some(c.memory_bytes),
                // NB: no swap beyond the memory limit: a swapping DataNode is worse than a restarted one.
                memory_swap: Some(c.memory_bytes),
                binds: Some(c.binds.clone()),
                // herd owns networking (DESIGN.md, Networking): Docker only gets `none`.
                network_mode: Some("none".into()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                init: Some(true),
                cap_drop: Some(
                    crate::runtime::DROPPED_CAPABILITIES
                        .iter()
                        .filter(|d| !c.cap_add.iter().any(|a| a == *d))
                        .map(|d| d.to_string())
                        .collect(),
                ),
                cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
                security_opt: Some(vec!["no-new-privileges".into()]),
                log_config: Some(docker_log_config(self.log_max_size)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptions { name: Some(c.name.clone()), ..Default::default() };
        let created = match self.docker.create_container(Some(opts), body).await {
            Ok(r) => r,
            Err(e) if is_status(&e, &[404]) => return Err(RuntimeError::ImageMissing { image: c.image.clone() }),
            Err(e) => return Err(call_error("create", &c.name, e)),
        };
        self.start(&created.id).await?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self.docker.start_container(id, None::<StartContainerOptions>).await {
            // 304: already running.
            Err(e) if !is_status(&e, &[304]) => Err(call_error("start", id, e)),
            _ => Ok(()),
        }
    }

    async fn pid(&self, id: &str) -> Result<Option<u32>, RuntimeError> {
        let inspect = match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(i) => i,
            Err(e) if is_status(&e, &[404]) => return Ok(None),
            Err(e) => return Err(call_error("inspect", id, e)),
        };
        let state = inspect.state.unwrap_or_default();
        Ok(state.pid.filter(|&p| p > 0 && state.running == Some(true)).and_then(|p| u32::try_from(p).ok()))
    }

    fn pull(&self, r: &crate::pull::Reference, auth: Option<&crate::pull::RegistryAuth>) -> BoxStream<'static, Result<crate::pull::Progress, RuntimeError>> {
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default().from_image(&r.repository).tag(&r.tag).build();
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: a.username.clone(),
            password: a.password.clone(),
            identitytoken: a.identity_token.clone(),
            serveraddress: Some(r.registry.clone()),
            ..Default::default()
        });
        let target = if r.tag.contains(':') { format!("{}@{}", r.repository, r.tag) } else { format!("{}:{}", r.repository, r.tag) };
        // Per layer: (downloaded, size); the sums are the pull's progress.
        let mut layers: HashMap<String, (u64, u64)> = HashMap::new();
        self.docker
            .create_image(Some(opts), None, credentials)
            .map(move |item| match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|e| e.message) {
                        return Err(RuntimeError::Call { op: "pull", target: target.clone(), message: e });
                    }
                    if let (Some(id), Some(d), Some("Downloading")) = (info.id, info.progress_detail, info.status.as_deref()) {
                        layers.insert(id, (d.current.unwrap_or(0).max(0) as u64, d.total.unwrap_or(0).max(0) as u64));
                    }
                    let (current, total) = layers.values().fold((0, 0), |(c, t), (lc, lt)| (c + lc, t + lt));
                    Ok(crate::pull::Progress { current, total })
                }
                Err(e) => Err(call_error("pull", &target, e)),
            })
            .boxed()
    }

    fn starts(&self, host: &str) -> BoxStream<'static, Result<String, RuntimeError>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string()]),
            ("label".to_string(), vec![format!("{}=true", labels::MANAGED), format!("{}={host}", labels::HOST)]),
        ]);
        let host = host.to_string();
        let opts = EventsOptions { filters: Some(filters), ..Default::default() };
        self.docker
            .events(Some(opts))
            .map(move |e| match e {
                Ok(msg) => Ok(msg.actor.and_then(|a| a.id).unwrap_or_default()),
                Err(e) => Err(call_error("watch events of", &host, e)),
            })
            .boxed()
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        let target = format!("{id} ({})", cmd.join(" "));
        let config = CreateExecOptions {
            cmd: Some(cmd.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self.docker.create_exec(id, config).await.map_err(|e| call_error("exec in", &target, e))?;
        let mut output = Vec::new();
        if let StartExecResults::Attached { output: mut stream, .. } =
            self.docker.start_exec(&created.id, None::<StartExecOptions>).await.map_err(|e| call_error("exec in", &target, e))?
        {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| call_error("exec in", &target, e))?;
                output.extend_from_slice(&chunk.into_bytes());
                // Keep the tail only: a chatty command must not grow the agent.
                if output.len() > 2 * EXEC_OUTPUT_MAX {
                    output.drain(..output.len() - EXEC_OUTPUT_MAX);
                }
            }
        }
        if output.len() > EXEC_OUTPUT_MAX {
            output.drain(..output.len() - EXEC_OUTPUT_MAX);
        }
        let inspect = self.docker.inspect_exec(&created.id).await.map_err(|e| call_error("exec in", &target, e))?;
        Ok(ExecOutput { exit_code: inspect.exit_code.unwrap_or(-1), output: String::from_utf8_lossy(&output).into_owned() })
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let stop = StopContainerOptions { t: Some(STOP_GRACE_S), ..Default::default() };
        match self.docker.stop_container(id, Some(stop)).await {
            Err(e) if !is_status(&e, &[304, 404]) => return Err(call_error("stop", id, e)),
            _ => {}
        }
        let opts = RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(id, Some(opts)).await {
            Err(e) if !is_status(&e, &[404, 409]) => Err(call_error("remove", id, e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_states_map() {
        assert_eq!(state_of(Some("running")), ContainerState::Running);
        assert_eq!(state_of(Some("exited")), ContainerState::Exited);
        assert_eq!(state_of(Some("created")), ContainerState::Created);
    }
}
