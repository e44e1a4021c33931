//! `Idempotency-Key` on key creation: the same key with the same body within 24 hours replays
//! the first response — including the minted `api_key`, so a timed-out retry neither loses the
//! key nor mints a second one; the same key with another body (compared as canonical JSON:
//! spacing and key order do not matter) is a 422. The stored response is
//! sealed with ChaCha20-Poly1305 under a key derived from the server secret.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key as AeadKey, Nonce};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::domain::secret::{self, KeyHasher};
use crate::manage::Manager;

/// How long a response can be replayed.
pub const TTL_SECS: i64 = 86_400;
/// Longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 255;

/// Seals and opens stored responses.
pub struct Sealer(ChaCha20Poly1305);

impl Sealer {
    /// A sealer keyed from the server secret (via its HMAC), never from the secret itself.
    pub fn new(hasher: &KeyHasher) -> Self {
        let key = hasher.digest(b"tollgate/idempotency-seal/v1");
        Sealer(ChaCha20Poly1305::new(&AeadKey::from(key)))
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; 12] = secret::random_bytes()[..12]
            .try_into()
            .expect("12 of 32 bytes");
        let nonce = Nonce::from(nonce_bytes);
        let mut out = nonce_bytes.to_vec();
        // Encryption cannot fail for in-memory buffers of this size.
        out.extend(self.0.encrypt(&nonce, plain).unwrap_or_default());
        out
    }

    /// The plaintext, or `None` if it was tampered with or sealed under another secret.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.0.decrypt(&Nonce::from(nonce), ciphertext).ok()
    }
}

/// A validated `Idempotency-Key` header value.
pub fn header_key(value: &http::HeaderValue) -> Result<String, ApiError> {
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "Idempotency-Key: must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })
}

/// SHA-256 of the request body's canonical JSON (keys sorted, no whitespace), so the same
/// request written with other spacing or key order is the same request. A body that is not
/// JSON is hashed as sent.
pub fn body_hash(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let canonical = serde_json::to_vec(&canonical(value)).unwrap_or_default();
            Sha256::digest(canonical).to_vec()
        }
        Err(_) => Sha256::digest(body).to_vec(),
    }
}

/// `value` with every object's keys in sorted order (whatever map the build's `serde_json`
/// uses).
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The replayable response for `(partner, key)`, if any: `Ok(Some(json))` to replay,
/// 422 if the body differs.
pub async fn replay(
    manager: &Manager,
    partner: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Option<Vec<u8>>, ApiError> {
    let since = manager.clock.now_unix() - TTL_SECS;
    let Some((stored_hash, sealed)) = manager
        .store
        .get_idempotent(partner, key, since)
        .await
        .map_err(crate::manage::ManageError::from)?
    else {
        return Ok(None);
    };
    if stored_hash != hash {
        return Err(ApiError::Validation(
            "Idempotency-Key was already used with a different request body".into(),
        ));
    }
    Sealer::new(&manager.hasher)
        .open(&sealed)
        .map(Some)
        .ok_or_else(|| {
            ApiError::Validation("Idempotency-Key: stored response is unreadable".into())
        })
}

/// Remembers `response` for `(partner, key)`.
pub async fn remember(
    manager: &Manager,
    partner: Uuid,
    key: &str,
    hash: &[u8],
    response: &[u8],
) -> Result<(), ApiError> {
    let sealed = Sealer::new(&manager.hasher).seal(response);
    let now = manager.clock.now_unix();
    manager
        .store
        .put_idempotent(partner, key, hash, &sealed, now, now - TTL_SECS)
        .await
        .map_err(|e| ApiError::from(crate::manage::ManageError::from(e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_json_in_other_spacing_or_key_order_is_the_same_body() {
        let a = br#"{"label":"x","limits":{"b":1,"a":[1,{"z":2,"y":3}]}}"#;
        let b =
            b"{ \"limits\" : { \"a\": [1, {\"y\":3, \"z\":2}], \"b\": 1 },\n \"label\": \"x\" }";
        assert_eq!(body_hash(a), body_hash(b));
        let other = br#"{"label":"y","limits":{"b":1,"a":[1,{"z":2,"y":3}]}}"#;
        assert_ne!(body_hash(a), body_hash(other));
        let reordered_array = br#"{"label":"x","limits":{"b":1,"a":[{"z":2,"y":3},1]}}"#;
        assert_ne!(
            body_hash(a),
            body_hash(reordered_array),
            "array order matters"
        );
    }

    use super::*;

    #[test]
    fn sealed_responses_open_only_under_the_same_secret() {
        let a = Sealer::new(&KeyHasher::new(b"secret-a"));
        let b = Sealer::new(&KeyHasher::new(b"secret-b"));
        let sealed = a.seal(b"{\"api_key\":\"cr_x\"}");
        assert!(
            !sealed.windows(4).any(|w| w == b"cr_x"),
            "stored in the clear"
        );
        assert_eq!(a.open(&sealed).unwrap(), b"{\"api_key\":\"cr_x\"}");
        assert!(b.open(&sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(a.open(&tampered).is_none());
    }
}
