//! Stored answers to `POST`s that carried an `Idempotency-Key`, keyed by the caller's token
//! and the key, so a retried request gets the first answer, also after a restart.
//!
//! NB: the answer to `POST /v1/tokens` holds a token's secret, which herd never stores in
//! the clear. Every stored answer is therefore sealed with a keystream derived from the
//! caller's own bearer secret (SHA-256 in counter mode over secret, a random nonce and the
//! block number): only a caller presenting that secret again can read it back, and the
//! store alone reveals nothing, as it holds only the hash of the caller's secret.

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// How long an answer is kept for replays.
pub const KEEP_MS: u64 = 24 * 3600 * 1000;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the request (method, path, body) it answered.
    pub fingerprint: String,
    pub status: u16,
    /// The sealed body.
    pub body: String,
}

/// The answer stored for `(actor, key)`, unless older than [`KEEP_MS`].
pub fn get(c: &Connection, actor: &str, key: &str, now_ms: u64) -> Result<Option<Stored>> {
    let row = c
        .query_row(
            "SELECT fingerprint, status, body FROM idempotency WHERE actor = ?1 AND key = ?2 AND at_ms >= ?3",
            params![actor, key, now_ms.saturating_sub(KEEP_MS) as i64],
            |r| Ok(Stored { fingerprint: r.get(0)?, status: r.get::<_, i64>(1)? as u16, body: r.get(2)? }),
        )
        .optional()?;
    Ok(row)
}

/// Stores an answer, dropping answers past [`KEEP_MS`].
pub fn put(c: &Connection, actor: &str, key: &str, stored: &Stored, now_ms: u64) -> Result<()> {
    c.execute("DELETE FROM idempotency WHERE at_ms < ?1", [now_ms.saturating_sub(KEEP_MS) as i64])?;
    c.execute(
        "INSERT OR REPLACE INTO idempotency (actor, key, fingerprint, status, body, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![actor, key, stored.fingerprint, stored.status, stored.body, now_ms as i64],
    )?;
    Ok(())
}

/// The fingerprint of a request.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
        h.update(part);
    }
    hex(&h.finalize())
}

fn keystream_xor(secret: &str, nonce: &[u8], data: &mut [u8]) {
    for (block, chunk) in data.chunks_mut(32).enumerate() {
        let mut h = Sha256::new();
        h.update(b"herd-idempotency-v1\0");
        h.update(secret.as_bytes());
        h.update(b"\0");
        h.update(nonce);
        h.update((block as u64).to_be_bytes());
        for (b, k) in chunk.iter_mut().zip(h.finalize()) {
            *b ^= k;
        }
    }
}

/// Seals `plain` with the caller's secret: `nonce.ciphertext`, both hex.
pub fn seal(secret: &str, plain: &str) -> String {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let mut data = plain.as_bytes().to_vec();
    keystream_xor(secret, &nonce, &mut data);
    format!("{}.{}", hex(&nonce), hex(&data))
}

/// Opens what [`seal`] sealed; `None` when it is malformed or the secret is another.
pub fn open(secret: &str, sealed: &str) -> Option<String> {
    let (nonce, data) = sealed.split_once('.')?;
    let nonce = unhex(nonce)?;
    let mut data = unhex(data)?;
    keystream_xor(secret, &nonce, &mut data);
    String::from_utf8(data).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_answers_open_only_with_the_same_secret() {
        let body = r#"{"secret":"herd_abc_0123456789abcdef0123456789abcdef0123456789abcdef"}"#;
        let sealed = seal("caller-secret", body);
        assert!(!sealed.contains("herd_abc"), "sealed text shows the plain text: {sealed}");
        assert_eq!(open("caller-secret", &sealed).as_deref(), Some(body));
        assert_ne!(open("another-secret", &sealed).as_deref(), Some(body));
        assert_ne!(seal("caller-secret", body), sealed, "a fresh nonce each time");
        assert_eq!(open("caller-secret", "zz.00"), None);
    }

    #[test]
    fn fingerprints_differ_by_body_and_path() {
        let a = fingerprint("POST", "/v1/tenants", b"{}");
        assert_eq!(a, fingerprint("POST", "/v1/tenants", b"{}"));
        assert_ne!(a, fingerprint("POST", "/v1/tenants", b"{ }"));
        assert_ne!(a, fingerprint("POST", "/v1/tokens", b"{}"));
    }
}
