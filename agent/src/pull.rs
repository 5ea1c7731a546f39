//! Image pulls: when a container's image is not on the host, the agent pulls it in the
//! background (with the credentials its config file gives for that registry) and reports
//! the pull as the instance's state, `image-pulling: ...` with progress, or
//! `image-pull-failed: ...` with the registry's answer and when it retries. A failed image is
//! retried with exponential backoff per image (2 s doubling to 5 min, with jitter), never on
//! every heartbeat; the converge loop never waits for a pull.
//!
//! ```text
//! create ─► ImageMissing ─► Pulls::missing ─┬─ none running, not backing off ─► spawn pull task
//!                                           ├─ running ─► "image-pulling: IMG: 12/40 MB"
//!                                           └─ failed  ─► "image-pull-failed: IMG: ... (retry in 8s)"
//! pull task ─► done: forgotten (the next pass creates the container) │ failed: backoff
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use tracing::{info, warn};

use crate::runtime::RuntimeError;

/// Credentials for one registry, from the agent's config file (`registries:`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (read at each pull), instead of `password`.
    pub password_file: Option<std::path::PathBuf>,
    /// An identity token (OAuth refresh token) instead of a password.
    pub identity_token: Option<String>,
}

// NB: by hand, so a password never reaches a log through `{:?}`.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth").field("username", &self.username).field("password_file", &self.password_file).finish_non_exhaustive()
    }
}

/// How far a pull is, from the engine's progress messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes downloaded and to download, summed over the layers seen so far.
    pub current: u64,
    pub total: u64,
}

/// A reference split the way the engine's pull wants it: repository, and tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    /// `latest`, `t1`, or a digest `sha256:...`.
    pub tag: String,
    /// The registry host it is pulled from (`docker.io` when the name has none).
    pub registry: String,
}

impl Reference {
    /// Splits `image` (`[REGISTRY/]PATH[:TAG][@DIGEST]`); without tag or digest, `latest`
    /// (never every tag, which is what an empty tag asks the engine for).
    pub fn parse(image: &str) -> Reference {
        let (name, tag) = match image.split_once('@') {
            Some((name, digest)) => (name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(name, |(n, _)| n), digest.to_string()),
            None => match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (image, "latest".to_string()),
            },
        };
        let first = name.split('/').next().unwrap_or_default();
        let registry = if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
            first.to_string()
        } else {
            "docker.io".to_string()
        };
        Reference { repository: name.to_string(), tag, registry }
    }
}

/// Pulls an image: progress messages until it is there, or an error.
pub trait Puller: Send + Sync + 'static {
    fn pull(&self, reference: &Reference, auth: Option<&RegistryAuth>) -> BoxStream<'static, Result<Progress, RuntimeError>>;
}

#[derive(Debug, Clone)]
enum State {
    Pulling { progress: Progress, since: Instant },
    Failed { error: String, failures: u32, retry_at: Instant },
}

/// Every image being pulled or backing off on this host.
#[derive(Debug, Default)]
pub struct Pulls {
    registries: BTreeMap<String, RegistryAuth>,
    state: Arc<Mutex<HashMap<String, State>>>,
}

/// Delay before retry `failures` (1, 2, ...): 2 s doubling, at most 5 min, ±20 % jitter.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(2).saturating_mul(1u32 << failures.saturating_sub(1).min(8)).min(Duration::from_secs(300));
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    base.mul_f64(jitter)
}

impl Pulls {
    pub fn new(registries: BTreeMap<String, RegistryAuth>) -> Self {
        Pulls { registries, state: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The credentials configured for `reference`'s registry, with a password file read.
    fn auth(&self, reference: &Reference) -> Result<Option<RegistryAuth>, String> {
        let Some(a) = self.registries.get(&reference.registry) else { return Ok(None) };
        let mut a = a.clone();
        if let Some(path) = &a.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file {} for registry {}: {e}", path.display(), reference.registry))?;
            a.password = Some(text.trim_end().to_string());
        }
        Ok(Some(a))
    }

    /// `image` is not on the host: what to report for the instances that need it. Starts a
    /// pull unless one runs or the image is backing off after a failure.
    pub fn missing<P: Puller>(&self, puller: &P, image: &str) -> String {
        let now = Instant::now();
        let failures = {
            let state = self.lock();
            match state.get(image) {
                Some(State::Pulling { progress, since }) => return pulling_text(image, progress, now.duration_since(*since)),
                Some(State::Failed { error, failures, retry_at }) if *retry_at > now => {
                    return format!(
                        "image-pull-failed: {image}: {error} (attempt {failures}; retry in {}s)",
                        retry_at.duration_since(now).as_secs().max(1)
                    );
                }
                Some(State::Failed { failures, .. }) => *failures,
                None => 0,
            }
        };
        let reference = Reference::parse(image);
        let auth = match self.auth(&reference) {
            Ok(a) => a,
            Err(e) => {
                self.failed(image, e.clone(), failures + 1);
                return format!("image-pull-failed: {image}: {e}");
            }
        };
        info!(image, registry = %reference.registry, attempt = failures + 1, "pulling a missing image");
        self.lock().insert(image.to_string(), State::Pulling { progress: Progress::default(), since: now });
        let mut stream = puller.pull(&reference, auth.as_ref());
        let (state, image_owned) = (self.state.clone(), image.to_string());
        tokio::spawn(async move {
            let mut outcome = Ok(());
            while let Some(step) = stream.next().await {
                match step {
                    Ok(p) => {
                        if let Some(State::Pulling { progress, .. }) = state.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&image_owned) {
                            *progress = p;
                        }
                    }
                    Err(e) => {
                        outcome = Err(e.to_string());
                        break;
                    }
                }
            }
            let mut map = state.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(()) => {
                    info!(image = %image_owned, "image pulled");
                    map.remove(&image_owned);
                }
                Err(error) => {
                    let failures = failures + 1;
                    let retry = backoff(failures);
                    warn!(image = %image_owned, %error, failures, retry = ?retry, "image pull failed");
                    map.insert(image_owned, State::Failed { error, failures, retry_at: Instant::now() + retry });
                }
            }
        });
        format!("image-pulling: {image}: started")
    }

    fn failed(&self, image: &str, error: String, failures: u32) {
        let retry_at = Instant::now() + backoff(failures);
        self.lock().insert(image.to_string(), State::Failed { error, failures, retry_at });
    }
}

fn pulling_text(image: &str, p: &Progress, for_: Duration) -> String {
    let mb = |b: u64| b as f64 / 1_048_576.0;
    if p.total > 0 {
        format!("image-pulling: {image}: {:.1}/{:.1} MB ({}s)", mb(p.current), mb(p.total), for_.as_secs())
    } else {
        format!("image-pulling: {image} ({}s)", for_.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_tag_and_registry() {
        let cases = [
            ("herd/datanode:testbed", "herd/datanode", "testbed", "docker.io"),
            ("ubuntu", "ubuntu", "latest", "docker.io"),
            ("127.0.0.1:5000/herd/dn:t1", "127.0.0.1:5000/herd/dn", "t1", "127.0.0.1:5000"),
            ("127.0.0.1:5000/herd/dn", "127.0.0.1:5000/herd/dn", "latest", "127.0.0.1:5000"),
            ("reg.example.com/a/b@sha256:abc", "reg.example.com/a/b", "sha256:abc", "reg.example.com"),
            ("reg.example.com/a/b:1.0@sha256:abc", "reg.example.com/a/b", "sha256:abc", "reg.example.com"),
            ("localhost/x:2", "localhost/x", "2", "localhost"),
        ];
        for (image, repo, tag, registry) in cases {
            let r = Reference::parse(image);
            assert_eq!((r.repository.as_str(), r.tag.as_str(), r.registry.as_str()), (repo, tag, registry), "{image}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for (failures, base) in [(1u32, 2.0f64), (2, 4.0), (3, 8.0), (9, 300.0), (30, 300.0)] {
            let d = backoff(failures).as_secs_f64();
            assert!(d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9, "failure {failures}: {d}");
        }
    }

    /// A puller that answers from a script and counts its calls.
    #[derive(Default)]
    struct Scripted {
        fail: bool,
        calls: std::sync::atomic::AtomicUsize,
        auth_seen: Mutex<Vec<Option<RegistryAuth>>>,
    }

    impl Puller for Scripted {
        fn pull(&self, _: &Reference, auth: Option<&RegistryAuth>) -> BoxStream<'static, Result<Progress, RuntimeError>> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.auth_seen.lock().unwrap_or_else(PoisonError::into_inner).push(auth.cloned());
            let last = if self.fail {
                Err(RuntimeError::Call { op: "pull", target: "img".into(), message: "manifest unknown".into() })
            } else {
                Ok(Progress { current: 10, total: 10 })
            };
            futures::stream::iter(vec![Ok(Progress { current: 1, total: 10 }), last]).boxed()
        }
    }

    async fn settle(pulls: &Pulls, image: &str) {
        for _ in 0..100 {
            if !matches!(pulls.lock().get(image), Some(State::Pulling { .. })) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the pull of {image} never ended");
    }

    #[tokio::test]
    async fn a_failed_image_backs_off_and_a_pulled_one_is_forgotten() {
        let pulls = Pulls::new(BTreeMap::from([("reg.example.com".to_string(), RegistryAuth { username: Some("u".into()), password: Some("p".into()), ..Default::default() })]));
        let bad = Scripted { fail: true, ..Default::default() };
        let first = pulls.missing(&bad, "reg.example.com/x:1");
        assert_eq!(first, "image-pulling: reg.example.com/x:1: started");
        settle(&pulls, "reg.example.com/x:1").await;
        // Backing off: asked again and again, it does not pull again and says why and when.
        for _ in 0..5 {
            let text = pulls.missing(&bad, "reg.example.com/x:1");
            assert!(text.starts_with("image-pull-failed: reg.example.com/x:1: pull img failed: manifest unknown (attempt 1; retry in"), "{text}");
        }
        assert_eq!(bad.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let seen = bad.auth_seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen[0].as_ref().and_then(|a| a.username.clone()).as_deref(), Some("u"), "the registry's credentials are used");

        let good = Scripted::default();
        pulls.missing(&good, "other/img:2");
        settle(&pulls, "other/img:2").await;
        assert!(pulls.lock().get("other/img:2").is_none(), "a pulled image is forgotten");
        assert_eq!(good.auth_seen.lock().unwrap_or_else(PoisonError::into_inner)[0], None, "no credentials for docker.io");
    }
}
