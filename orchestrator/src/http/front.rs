//! What answers on an orchestrator's address, by its role ([`crate::leader`]):
//! - the **leader** serves the whole API ([`super::router`] over its [`crate::state::State`]);
//! - a **follower** serves `/healthz`, `/readyz` (ready while it knows a leader),
//!   `/metrics`, `/v1/openapi.json` and `/v1/leader` itself, and sends every other request to the leader: `307 Temporary
//!   Redirect` to the same path there, with `Herd-Leader: URL` (herd's CLI and agents re-send
//!   it with its token; they also accept a list of orchestrators and move on when one fails);
//! - while **no leader is known** (an election under way, etcd without a quorum), `503` with
//!   `Retry-After: 1`, except GETs on an orchestrator that led before: those are answered from
//!   its last state, marked `Warning: 110 herd "stale: ..."`, with the store read from any one
//!   etcd member's copy (serializable reads, no quorum needed): reads of the last state where
//!   that is safe; every write that state could try is fenced off in the store.
//!
//! Followers redirect rather than proxy: the observed state (what agents report) lives in
//! the leader's memory only, a redirected client keeps its own TLS trust and its source
//! address (which the leader checks for agents' log endpoints), and streams (`herd logs -f`,
//! the agents' long-polls) need no second hop.

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Extension, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herd_api::wire::LeaderInfo;
use tower::ServiceExt as _;

use super::problem::ApiError;

/// The header naming the leader's URL on a follower's redirect.
pub const LEADER_HEADER: &str = "herd-leader";

/// The role-dependent part of the HTTP front; cheap to clone.
#[derive(Clone)]
pub struct Front(Arc<Inner>);

struct Inner {
    me: String,
    mode: RwLock<Mode>,
}

#[derive(Clone)]
enum Mode {
    Leading(Router),
    Following { leader: Option<String>, last: Option<Router> },
}

impl Front {
    /// An orchestrator that is not (yet) the leader; `me`: its own advertised URL.
    pub fn following(me: String) -> Self {
        Front(Arc::new(Inner { me, mode: RwLock::new(Mode::Following { leader: None, last: None }) }))
    }

    fn set(&self, f: impl FnOnce(&mut Mode)) {
        f(&mut self.0.mode.write().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    fn mode(&self) -> Mode {
        self.0.mode.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// This orchestrator leads: `router` serves the API.
    pub fn lead(&self, router: Router) {
        crate::metrics::get().leading(true);
        self.set(|m| *m = Mode::Leading(router));
    }

    /// This orchestrator stopped leading: nobody is known to lead until [`Front::follow`].
    pub fn step_down(&self) {
        crate::metrics::get().leading(false);
        self.set(|m| {
            if let Mode::Leading(r) = m {
                *m = Mode::Following { leader: None, last: Some(r.clone()) };
            }
        });
    }

    /// Who leads, as a follower last saw it (`None`: nobody known). A key that names this
    /// orchestrator is a term of its own that ended (a crash and a quick restart): its lease
    /// has yet to expire, and until then nobody leads.
    pub fn follow(&self, leader: Option<String>) {
        let leader = leader.filter(|l| *l != self.0.me);
        self.set(|m| match m {
            Mode::Following { leader: known, .. } => *known = leader,
            Mode::Leading(_) => {}
        });
    }

    /// Whether this orchestrator leads now.
    pub fn is_leader(&self) -> bool {
        matches!(self.mode(), Mode::Leading(_))
    }

    fn info(&self) -> LeaderInfo {
        match self.mode() {
            Mode::Leading(_) => LeaderInfo { role: "leader".into(), me: self.0.me.clone(), leader: Some(self.0.me.clone()) },
            Mode::Following { leader, .. } => LeaderInfo { role: "follower".into(), me: self.0.me.clone(), leader },
        }
    }

    /// The service to serve: `/v1/leader`, then by role.
    pub fn router(&self) -> Router {
        Router::new().route("/v1/leader", get(leader)).fallback(dispatch).layer(Extension(self.clone()))
    }
}

/// Who leads the control plane, as this orchestrator knows it.
#[utoipa::path(get, path = "/v1/leader", tag = "leader",
    responses((status = 200, body = LeaderInfo, description = "this orchestrator's role and the leader's URL (null while none is known)")))]
pub async fn leader(Extension(front): Extension<Front>) -> axum::Json<LeaderInfo> {
    axum::Json(front.info())
}

async fn dispatch(Extension(front): Extension<Front>, req: Request) -> Response {
    let (leader, last) = match front.mode() {
        Mode::Leading(router) => return router.oneshot(req).await.unwrap_or_else(|e| match e {}),
        Mode::Following { leader, last } => (leader, last),
    };
    let path = req.uri().path();
    match path {
        "/healthz" => return "ok".into_response(),
        "/readyz" => {
            return match &leader {
                Some(l) => format!("ready (following {l})").into_response(),
                None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no orchestrator leads now").into_response(),
            };
        }
        "/metrics" => {
            return ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::get().render(None)).into_response();
        }
        "/v1/openapi.json" => return super::openapi().await,
        _ => {}
    }
    if let Some(leader) = leader {
        let target = format!("{}{}", leader.trim_end_matches('/'), req.uri().path_and_query().map_or(path, |p| p.as_str()));
        let mut resp = ApiError::new(
            StatusCode::TEMPORARY_REDIRECT,
            "not_leader",
            format!("this orchestrator follows; send the request to the leader, {leader}"),
        )
        .into_response();
        if let (Ok(location), Ok(l)) = (HeaderValue::from_str(&target), HeaderValue::from_str(&leader)) {
            resp.headers_mut().insert(header::LOCATION, location);
            resp.headers_mut().insert(LEADER_HEADER, l);
        }
        return resp;
    }
    if req.method() == Method::GET
        && let Some(last) = last
    {
        let mut resp = last.oneshot(req).await.unwrap_or_else(|e| match e {});
        resp.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static("110 herd \"stale: no orchestrator leads now; this is the state as this one last led\""),
        );
        return resp;
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        "no orchestrator leads now (an election is under way, or etcd has no quorum); nothing was changed: retry in a second".into(),
    )
    .into_response()
}
