//! The calls of leader election ([`crate::leader`]): leases, and the leader key created under
//! one, through etcd's JSON gateway (`/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`, `/v3/kv/txn`). Async, on the caller's runtime, each with a deadline of
//! its own (a member that does not answer must not hold a leader past its lease).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

use super::{Etcd, RangeResponse, int, store_error};
use crate::error::Result;

/// What a campaign found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// This orchestrator created the leader key; its create revision fences every write.
    Won { create_revision: i64 },
    /// Another one holds it.
    Held { leader: String, create_revision: i64 },
}

#[derive(Debug, Deserialize)]
struct Grant {
    #[serde(rename = "ID", deserialize_with = "int")]
    id: i64,
}

#[derive(Debug, Deserialize)]
struct KeepAlive {
    result: Option<KeepAliveResult>,
}

#[derive(Debug, Deserialize)]
struct KeepAliveResult {
    /// Seconds left; absent (zero) when the lease is gone.
    #[serde(rename = "TTL", default, deserialize_with = "int")]
    ttl: i64,
}

#[derive(Debug, Deserialize)]
struct Txn {
    header: super::Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<TxnOp>,
}

#[derive(Debug, Deserialize)]
struct TxnOp {
    response_range: Option<RangeResponse>,
}

impl Etcd {
    /// POSTs `body` to `path` on the first member that answers within `within`, on the
    /// caller's runtime with the lease calls' own client.
    async fn call_async<T: serde::de::DeserializeOwned>(&self, path: &str, body: &serde_json::Value, within: Duration) -> Result<T> {
        self.inner.request(&self.inner.lease_http, path, body, Some(within)).await
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration, within: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1);
        let g: Grant = self.call_async("/v3/lease/grant", &json!({ "TTL": secs.to_string() }), within).await?;
        Ok(g.id)
    }

    /// Renews lease `id`; the seconds it has left (0: it is gone).
    pub async fn keep_alive(&self, id: i64, within: Duration) -> Result<i64> {
        let k: KeepAlive = self.call_async("/v3/lease/keepalive", &json!({ "ID": id.to_string() }), within).await?;
        Ok(k.result.map_or(0, |r| r.ttl))
    }

    /// Revokes lease `id`, deleting the keys under it (a leader stepping down hands over at once).
    pub async fn revoke(&self, id: i64, within: Duration) -> Result<()> {
        let _: serde_json::Value = self.call_async("/v3/lease/revoke", &json!({ "ID": id.to_string() }), within).await?;
        Ok(())
    }

    /// The value and create revision of `key` (a full key), read linearizably.
    pub async fn get_full(&self, key: &str, within: Duration) -> Result<Option<(String, i64)>> {
        let r: RangeResponse = self.call_async("/v3/kv/range", &json!({ "key": B64.encode(key) }), within).await?;
        r.kvs.first().map(|kv| Ok((super::decode("leader key", &kv.value)?, kv.create_revision))).transpose()
    }

    /// Creates `key` = `value` under lease `lease` unless it exists (one transaction).
    pub async fn campaign(&self, key: &str, value: &str, lease: i64, within: Duration) -> Result<Campaign> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": k, "value": B64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": k } }],
        });
        let t: Txn = self.call_async("/v3/kv/txn", &body, within).await?;
        if t.succeeded {
            // NB: the key was created by this transaction, at its revision.
            return Ok(Campaign::Won { create_revision: t.header.revision });
        }
        let held = t.responses.into_iter().find_map(|r| r.response_range).and_then(|r| r.kvs.into_iter().next());
        match held {
            Some(kv) => Ok(Campaign::Held { leader: super::decode("leader key", &kv.value)?, create_revision: kv.create_revision }),
            // Gone between the compare and the read-back: try again.
            None => Err(store_error(format!("the leader key {key} vanished during a campaign"))),
        }
    }
}
