//! The orchestrator library's one error type; the HTTP layer maps it to problem+json.

use herd_api::SpecError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A named resource does not exist (or is not visible to the caller).
    #[error("{kind} `{name}` not found")]
    NotFound { kind: &'static str, name: String },
    /// The spec failed to parse or validate.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// One field of a request is wrong in context (e.g. an unknown tenant).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// An update was based on an older generation than the stored one.
    #[error("{resource} is at generation {current}, the request was based on generation {given}: read it again and retry")]
    Stale { resource: String, current: u64, given: u64 },
    /// A valid request that the current state refuses (a tenant that does not exist yet, a
    /// pool the cluster lacks, a scale-down its NameNode cannot absorb) or the orchestrator's
    /// configuration does (an address in the cluster CIDR, a port outside the published range):
    /// the same request may be accepted later, or by another orchestrator. Answered 422 with
    /// the problem type [`herd_api::wire::REFUSED_BY_STATE`], so a client (and the contract
    /// test) can tell it from a malformed request.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<herd_api::FieldError>),
    /// The change would take a tenant over its quota; each resource over names its field.
    #[error("over the tenant's quota: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Quota(Vec<herd_api::FieldError>),
    /// The change would pass one of the orchestrator's admission limits (see [`crate::limits`]).
    #[error("{message}")]
    Limit { field: String, message: String, reason: &'static str },
    /// An `Idempotency-Key` was used before with a different request.
    #[error("Idempotency-Key `{key}` was already used with a different request; send the same request again, or use a new key for a new request")]
    IdempotencyKeyReused { key: String },
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but its scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Something the request needs elsewhere (an agent) cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    /// The store cannot be reached now (no etcd member answered, or none has a quorum):
    /// nothing was changed; the same request may succeed later. Answered 503.
    #[error("the store cannot be reached: {0}")]
    StoreUnavailable(String),
    /// This orchestrator stopped leading (its etcd lease is gone) before the write committed:
    /// nothing was changed; another orchestrator leads, or will. Answered 503.
    #[error("{0}")]
    NotLeader(String),
    /// The store failed (SQLite or etcd: `backend` says which, the cause why).
    #[error("store operation failed ({backend})")]
    Store {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored row could not be decoded (written by a newer or broken version).
    #[error("stored {what} is unreadable")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The store's worker thread went away.
    #[error("store worker failed")]
    Worker(#[source] tokio::task::JoinError),
    /// The store's writer failed outside the operation (its commit, or the thread is gone).
    #[error("store writer failed: {0}")]
    Writer(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    pub fn refused(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Refused(vec![herd_api::FieldError::new(field, message)])
    }

    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Error::NotFound { kind, name: name.into() }
    }
}
