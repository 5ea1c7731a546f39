//! The agent's client against fake orchestrators on 127.0.0.1:0: a dead URL (a port nobody
//! listens on), a follower answering `307` + `Herd-Leader`, one answering `503` (no leader),
//! and a leader that records what reached it. Register, heartbeat and watch each follow the
//! leader with the token and body intact, move on past a 503, and stick to the leader.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use herd_agent::client::{Client, ClientError};
use herd_api::quantity::{Cpu, Memory};
use herd_api::wire::{Heartbeat, HostInfo, Problem, Watch};
use url::Url;

/// A request as a fake orchestrator saw it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    path: String,
    authorization: Option<String>,
    host_id: Option<String>,
}

#[derive(Clone)]
enum Behaviour {
    Leader,
    /// `307` to this URL, as a follower does.
    Follower(String),
    /// `503` `no_leader`, as during an election or after losing the lease.
    NoLeader,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

async fn fake(behaviour: Behaviour) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, behaviour) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(behaviour)));
    let (record, acting) = (seen.clone(), behaviour.clone());
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let (record, acting) = (record.clone(), acting.clone());
        async move {
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let host_id = body.get("host_id").or_else(|| body.pointer("/host/id")).and_then(|v| v.as_str()).map(String::from);
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
            record.lock().unwrap().push(Seen { path: uri.path().to_string(), authorization, host_id });
            let behaviour = acting.lock().unwrap().clone();
            answer(&behaviour, &uri)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fake { url, seen, behaviour }
}

fn answer(behaviour: &Behaviour, uri: &Uri) -> Response {
    let problem = |status: StatusCode, code: &str| {
        let p = Problem {
            kind: "about:blank".into(),
            title: String::new(),
            status: status.as_u16(),
            detail: format!("fake {code}"),
            code: code.into(),
            errors: vec![],
        };
        (status, [(header::CONTENT_TYPE, "application/problem+json")], serde_json::to_string(&p).unwrap()).into_response()
    };
    let json = |text: &'static str| ([(header::CONTENT_TYPE, "application/json")], text).into_response();
    match behaviour {
        Behaviour::Follower(leader) => {
            let mut resp = problem(StatusCode::TEMPORARY_REDIRECT, "not_leader");
            resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&format!("{leader}{}", uri.path())).unwrap());
            resp.headers_mut().insert("herd-leader", HeaderValue::from_str(leader).unwrap());
            resp
        }
        Behaviour::NoLeader => problem(StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
        Behaviour::Leader if uri.path() == "/v1/agent/register" => json(r#"{"heartbeat_interval_ms": 1000}"#),
        Behaviour::Leader => json(r#"{"generation": 5, "desired": [], "heartbeat_interval_ms": 1000}"#),
    }
}

/// A URL nobody listens on: a port just bound and let go.
fn dead() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn client(urls: &[&str]) -> Client {
    let urls = urls.iter().map(|u| Url::parse(u).unwrap()).collect();
    Client::new(urls, "agent-token".into(), None).unwrap()
}

fn host() -> HostInfo {
    HostInfo {
        id: "h1".into(),
        cpu: Cpu(1000),
        memory: Memory(1 << 30),
        rack: None,
        data_disks: vec![],
        data_disk_capacity: vec![],
        labels: Default::default(),
        agent_version: "test".into(),
        address: None,
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat { host_id: "h1".into(), observed: vec![], conditions: vec![], purged: vec![], applied: None, network_deltas: true }
}

fn origin(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

#[tokio::test]
async fn register_heartbeat_and_watch_reach_the_leader_through_a_follower_and_stick_to_it() {
    let leader = fake(Behaviour::Leader).await;
    let follower = fake(Behaviour::Follower(leader.url.clone())).await;
    let dead = dead();
    let client = client(&[&dead, &follower.url]);

    let reply = client.register(host(), None).await.unwrap();
    assert_eq!(reply.heartbeat_interval_ms, 1000);
    let want = Seen { path: "/v1/agent/register".into(), authorization: Some("Bearer agent-token".into()), host_id: Some("h1".into()) };
    assert_eq!(leader.seen(), vec![want.clone()]);
    assert_eq!(follower.seen(), vec![want], "the follower saw the very request re-sent");
    assert_eq!(origin(&client.current()), leader.url);

    // Later exchanges go straight to the leader.
    assert_eq!(client.heartbeat(&heartbeat()).await.unwrap().generation, 5);
    let watch = Watch { host_id: "h1".into(), applied: Some(4), wait_ms: 0, network_deltas: true };
    assert_eq!(client.watch(&watch).await.unwrap().generation, 5);
    assert_eq!(follower.seen().len(), 1);
    assert_eq!(leader.paths(), ["/v1/agent/register", "/v1/agent/heartbeat", "/v1/agent/watch"]);
    assert!(leader.seen().iter().all(|s| s.authorization.as_deref() == Some("Bearer agent-token") && s.host_id.as_deref() == Some("h1")));
}

#[tokio::test]
async fn a_503_moves_on_and_the_new_leader_is_kept() {
    let a = fake(Behaviour::Leader).await;
    let b = fake(Behaviour::Follower(a.url.clone())).await;
    let client = client(&[&a.url, &b.url]);
    client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!((a.seen().len(), b.seen().len()), (1, 0));

    // `a` lost its lease; `b` leads now.
    a.set(Behaviour::NoLeader);
    b.set(Behaviour::Leader);
    let watch = Watch { host_id: "h1".into(), applied: Some(4), wait_ms: 0, network_deltas: true };
    assert_eq!(client.watch(&watch).await.unwrap().generation, 5);
    assert_eq!(origin(&client.current()), b.url);
    client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(a.paths(), ["/v1/agent/heartbeat", "/v1/agent/watch"], "asked again after moving on");
    assert_eq!(b.paths(), ["/v1/agent/watch", "/v1/agent/heartbeat"]);
    assert_eq!(b.seen()[1].authorization.as_deref(), Some("Bearer agent-token"));
}

#[tokio::test]
async fn no_orchestrator_answering_is_unreachable_naming_each() {
    let no_leader = fake(Behaviour::NoLeader).await;
    let dead = dead();
    let client = client(&[&dead, &no_leader.url]);

    let e = client.register(host(), None).await.unwrap_err();
    let ClientError::Unreachable { tried } = &e else { panic!("not unreachable: {e}") };
    let tried: Vec<String> = tried.iter().map(|(url, _)| origin(url)).collect();
    assert_eq!(tried, [dead.clone(), no_leader.url.clone()]);
    let text = e.to_string();
    assert!(text.contains("503") && text.contains("fake no_leader"), "{text}");
    assert_eq!(no_leader.seen().len(), 1);
    // Still the first of the list: nothing answered.
    assert_eq!(origin(&client.current()), dead);
}

#[tokio::test]
async fn redirects_stop_after_three_hops() {
    let a = fake(Behaviour::NoLeader).await;
    let b = fake(Behaviour::Follower(a.url.clone())).await;
    a.set(Behaviour::Follower(b.url.clone()));
    let client = client(&[&a.url]);

    let e = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(e.to_string().contains("redirected more than 3 times"), "{e}");
    assert_eq!(a.seen().len() + b.seen().len(), 4);
}
