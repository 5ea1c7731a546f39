//! The client against fake orchestrators on 127.0.0.1:0: a dead URL (a port nobody listens
//! on), a follower answering `307` + `Herd-Leader`, one answering `503` (no leader), and a
//! leader that records what reached it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode as HttpStatus, Uri, header};
use axum::response::{IntoResponse, Response};

use super::*;

/// A request as a fake orchestrator saw it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    idempotency_key: Option<String>,
    if_match: Option<String>,
}

#[derive(Clone)]
enum Behaviour {
    /// Answers: an empty page to a GET, 204 to a DELETE, a line of log to a `/logs` read.
    Leader,
    /// `307` to this URL, as a follower does.
    Follower(Arc<Mutex<String>>),
    /// `503` `no_leader`, as during an election.
    NoLeader,
    /// `404` to everything: a leader that has no such thing.
    NotFound,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn fake(behaviour: Behaviour) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |method: HttpMethod, uri: Uri, headers: HeaderMap| {
        let (record, behaviour) = (record.clone(), behaviour.clone());
        async move {
            let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
            let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            record.lock().unwrap().push(Seen {
                method: method.to_string(),
                path: path.clone(),
                authorization: h("authorization"),
                idempotency_key: h("idempotency-key"),
                if_match: h("if-match"),
            });
            answer(&behaviour, &method, &path)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fake { url, seen }
}

fn answer(behaviour: &Behaviour, method: &HttpMethod, path: &str) -> Response {
    let problem = |status: HttpStatus, code: &str| {
        let p = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("").into(),
            status: status.as_u16(),
            detail: format!("fake {code}"),
            code: code.into(),
            errors: vec![],
        };
        (status, [(header::CONTENT_TYPE, "application/problem+json")], serde_json::to_string(&p).unwrap()).into_response()
    };
    match behaviour {
        Behaviour::Follower(leader) => {
            let leader = leader.lock().unwrap().clone();
            let mut resp = problem(HttpStatus::TEMPORARY_REDIRECT, "not_leader");
            resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&format!("{leader}{path}")).unwrap());
            resp.headers_mut().insert("herd-leader", HeaderValue::from_str(&leader).unwrap());
            resp
        }
        Behaviour::NoLeader => {
            let mut resp = problem(HttpStatus::SERVICE_UNAVAILABLE, "no_leader");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Behaviour::NotFound => problem(HttpStatus::NOT_FOUND, "not_found"),
        Behaviour::Leader if path.contains("/logs") => "a line\n".into_response(),
        Behaviour::Leader if method == HttpMethod::DELETE => HttpStatus::NO_CONTENT.into_response(),
        Behaviour::Leader => ([(header::CONTENT_TYPE, "application/json")], r#"{"items": []}"#).into_response(),
    }
}

async fn follower_of(leader: &str) -> Fake {
    fake(Behaviour::Follower(Arc::new(Mutex::new(leader.to_string())))).await
}

/// A URL nobody listens on: a port just bound and let go.
fn dead() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn client(servers: &[&str]) -> Client {
    Client::new(&servers.join(","), Some("s3cret".into())).unwrap()
}

fn cluster() -> ClusterRef {
    ClusterRef { tenant: "acme".into(), name: "prod".into() }
}

#[tokio::test]
async fn a_write_reaches_the_leader_with_its_headers_and_the_client_sticks_to_it() {
    let leader = fake(Behaviour::Leader).await;
    let follower = follower_of(&leader.url).await;
    let dead = dead();
    let client = client(&[&dead, &follower.url]);

    client.delete(&cluster(), false, Some(7)).await.unwrap();

    let at_leader = leader.seen();
    assert_eq!(at_leader.len(), 1, "{at_leader:?}");
    let sent = &at_leader[0];
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("DELETE", "/v1/tenants/acme/clusters/prod"));
    assert_eq!(sent.authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(sent.if_match.as_deref(), Some("\"7\""));
    let key = sent.idempotency_key.clone().expect("an Idempotency-Key");
    // The follower saw the very same request: the leader got a re-send, not a new one.
    assert_eq!(follower.seen(), vec![sent.clone()]);
    assert!(key.starts_with("herd-cli-"), "{key}");
    assert_eq!(base(&client.current()), leader.url);

    // Later requests go to the leader at once: neither the dead URL nor the follower again.
    assert!(client.tenants().await.unwrap().is_empty());
    client.delete_tenant("acme").await.unwrap();
    assert_eq!(follower.seen().len(), 1);
    let paths: Vec<String> = leader.seen().into_iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(paths, ["DELETE /v1/tenants/acme/clusters/prod", "GET /v1/tenants?limit=500", "DELETE /v1/tenants/acme"]);
}

#[tokio::test]
async fn a_503_moves_on_to_the_next_orchestrator() {
    let no_leader = fake(Behaviour::NoLeader).await;
    let leader = fake(Behaviour::Leader).await;
    let client = client(&[&no_leader.url, &leader.url]);

    assert!(client.tenants().await.unwrap().is_empty());
    assert!(client.tenants().await.unwrap().is_empty());

    assert_eq!(no_leader.seen().len(), 1, "asked again after moving on");
    assert_eq!(leader.seen().len(), 2);
    assert_eq!(leader.seen()[0].authorization.as_deref(), Some("Bearer s3cret"));
    assert_eq!(base(&client.current()), leader.url);
}

#[tokio::test]
async fn no_orchestrator_answering_is_unreachable_naming_each() {
    let no_leader = fake(Behaviour::NoLeader).await;
    let dead = dead();
    let client = client(&[&dead, &no_leader.url]);

    // A read makes one round.
    let e = client.tenants().await.unwrap_err();
    let text = e.downcast_ref::<Unreachable>().expect("Unreachable").to_string();
    assert!(text.starts_with("cannot reach any orchestrator at "), "{text}");
    assert!(text.contains(&dead) && text.contains(&format!("{}: fake no_leader", no_leader.url)), "{text}");
    assert_eq!(no_leader.seen().len(), 1);

    // A write goes round again, 1 + WRITE_RETRIES rounds, then cannot say whether it applied.
    let e = client.delete_tenant("acme").await.unwrap_err();
    let unconfirmed = e.downcast_ref::<Unconfirmed>().expect("Unconfirmed");
    assert_eq!(unconfirmed.attempts, 2 * (1 + WRITE_RETRIES), "{unconfirmed}");
    assert_eq!(no_leader.seen().len(), 1 + 1 + WRITE_RETRIES);
    let keys: BTreeSet<Option<String>> = no_leader.seen()[1..].iter().map(|s| s.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "one key across retries: {keys:?}");
}

#[tokio::test]
async fn a_refused_connection_before_a_404_is_not_taken_for_an_earlier_delete() {
    // NB: a connection refused carried no request, so the 404 is the only answer there is:
    // the thing never existed, and the DELETE must not say it deleted it.
    let leader = fake(Behaviour::NotFound).await;
    let dead = dead();
    let client = client(&[&dead, &leader.url]);

    let e = client.delete_tenant("ghost").await.unwrap_err();
    assert!(e.to_string().contains("fake not_found"), "{e}");
    assert_eq!(leader.seen().len(), 1);
}

#[tokio::test]
async fn redirects_stop_after_max_hops() {
    let (to_b, to_a) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
    let a = fake(Behaviour::Follower(to_b.clone())).await;
    let b = fake(Behaviour::Follower(to_a.clone())).await;
    *to_b.lock().unwrap() = b.url.clone();
    *to_a.lock().unwrap() = a.url.clone();
    let client = client(&[&a.url]);

    let e = client.tenants().await.unwrap_err();
    assert!(e.to_string().contains(&format!("redirected more than {MAX_HOPS} times")), "{e}");
    assert_eq!(a.seen().len() + b.seen().len(), 1 + MAX_HOPS);
}

#[tokio::test]
async fn a_log_stream_follows_the_leader() {
    let leader = fake(Behaviour::Leader).await;
    let follower = follower_of(&leader.url).await;
    let client = client(&[&follower.url]);

    let path = "/v1/tenants/acme/clusters/prod/instances/datanode-0/logs?follow=true";
    let text = client.stream(path).await.unwrap().text().await.unwrap();

    assert_eq!(text, "a line\n");
    let at_leader = leader.seen();
    assert_eq!(at_leader.len(), 1);
    assert_eq!(at_leader[0].path, path);
    assert_eq!(at_leader[0].authorization.as_deref(), Some("Bearer s3cret"));
}
