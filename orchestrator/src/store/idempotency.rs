//! Stored answers to `POST`s that carried an `Idempotency-Key`, keyed by the caller's token
//! and the key, so a retried request gets the first answer, also after a restart.
//!
//! NB: the answer to `POST /v1/tokens` holds a token's secret, which herd never stores in
//! the clear. Every stored answer is therefore sealed with XChaCha20-Poly1305 (the RustCrypto
//! `chacha20poly1305` crate) under a key derived from the caller's own bearer secret
//! (SHA-256 over a label and the secret) and a random 192-bit nonce, with the caller's token
//! id and the key as associated data: only a caller presenting that secret again can read it
//! back, a tampered or moved row does not open, and the store alone reveals nothing, as it
//! holds only the hash of the caller's secret (a different hash: no label). Stored and read
//! with [`Tx::put_idempotent`](super::Tx::put_idempotent) and [`Tx::idempotent`](super::Tx::idempotent).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

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

/// A stored answer with its key and time, as [`migrate`](super::migrate) copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub actor: String,
    pub key: String,
    pub stored: Stored,
    pub at_ms: u64,
}

/// The fingerprint of a request.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
        h.update(part);
    }
    hex(&h.finalize())
}

/// The sealing key for a caller's `secret`.
fn cipher(secret: &str) -> XChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"herd-idempotency-v2\0");
    h.update(secret.as_bytes());
    XChaCha20Poly1305::new(&h.finalize())
}

/// What binds a sealed answer to its row: the caller's token id and the key.
fn bound_to(actor: &str, key: &str) -> Vec<u8> {
    [actor.as_bytes(), b"\0", key.as_bytes()].concat()
}

/// Seals `plain` with the caller's secret for row `(actor, key)`: `v2.nonce.ciphertext`, hex.
pub fn seal(secret: &str, actor: &str, key: &str, plain: &str) -> String {
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let aad = bound_to(actor, key);
    // NB: encryption fails only for inputs beyond the cipher's 256 GiB limit; answers are small.
    let sealed = cipher(secret).encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &aad }).unwrap_or_default();
    format!("v2.{}.{}", hex(&nonce), hex(&sealed))
}

/// Opens what [`seal`] sealed; `None` when it is malformed, tampered with, from another row,
/// or the secret is another (or it was sealed by an older herd: the caller then uses a new key).
pub fn open(secret: &str, actor: &str, key: &str, sealed: &str) -> Option<String> {
    let mut parts = sealed.split('.');
    let (Some("v2"), Some(nonce), Some(data), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let nonce = unhex(nonce).filter(|n| n.len() == 24)?;
    let data = unhex(data)?;
    let aad = bound_to(actor, key);
    let plain = cipher(secret).decrypt(XNonce::from_slice(&nonce), Payload { msg: &data, aad: &aad }).ok()?;
    String::from_utf8(plain).ok()
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
        let sealed = seal("caller-secret", "t1", "k1", body);
        assert!(!sealed.contains("herd_abc"), "sealed text shows the plain text: {sealed}");
        assert_eq!(open("caller-secret", "t1", "k1", &sealed).as_deref(), Some(body));
        assert_eq!(open("another-secret", "t1", "k1", &sealed), None);
        assert_eq!(open("caller-secret", "t2", "k1", &sealed), None, "bound to its row");
        assert_eq!(open("caller-secret", "t1", "k2", &sealed), None, "bound to its row");
        assert_ne!(seal("caller-secret", "t1", "k1", body), sealed, "a fresh nonce each time");
        assert_eq!(open("caller-secret", "t1", "k1", "zz.00"), None);
        // One flipped bit anywhere in the ciphertext: refused, not garbage.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(open("caller-secret", "t1", "k1", &String::from_utf8(tampered).unwrap()), None);
        // What an older herd sealed (`nonce.data`, no version) does not open.
        assert_eq!(open("caller-secret", "t1", "k1", "00112233445566778899aabbccddeeff.00"), None);
    }

    #[test]
    fn fingerprints_differ_by_body_and_path() {
        let a = fingerprint("POST", "/v1/tenants", b"{}");
        assert_eq!(a, fingerprint("POST", "/v1/tenants", b"{}"));
        assert_ne!(a, fingerprint("POST", "/v1/tenants", b"{ }"));
        assert_ne!(a, fingerprint("POST", "/v1/tokens", b"{}"));
    }
}
