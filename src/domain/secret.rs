//! Secrets: generating keys and partner tokens, the keyed digest used on the hot path, and the
//! argon2id hashes used for rarely verified management tokens.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use std::sync::Mutex;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::key::Digest;

/// Prefix of sub-keys minted by Tollgate.
pub const KEY_PREFIX: &str = "cr_";
/// Prefix of partner management tokens.
pub const PARTNER_TOKEN_PREFIX: &str = "rsk_";
/// Length of the public lookup prefix of a partner token (after `rsk_`).
pub const PARTNER_LOOKUP_LEN: usize = 8;

/// 32 fresh random bytes from the operating system.
pub fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    OsRng.fill_bytes(&mut buf);
    buf
}

/// A new sub-key: `cr_` + 43 base64url characters (256 random bits).
pub fn generate_key_token() -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// A new Gateway3 `access_secret` (256 random bits, standard base64 as in the Gateway3 docs).
pub fn generate_pair_secret() -> String {
    STANDARD.encode(random_bytes())
}

/// A new partner management token: `rsk_` + 43 base64url characters.
pub fn generate_partner_token() -> String {
    format!(
        "{PARTNER_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes())
    )
}

/// The public lookup prefix of a partner token, or `None` if it is not shaped like one.
pub fn partner_token_lookup(token: &str) -> Option<&str> {
    let body = token.strip_prefix(PARTNER_TOKEN_PREFIX)?;
    (body.len() == 43).then(|| &body[..PARTNER_LOOKUP_LEN])
}

/// HMAC-SHA-256 keyed with the server secret. Cloning the prepared state per request costs a
/// copy, not a re-keying.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// Prepares the HMAC state from the server secret.
    pub fn new(server_secret: &[u8]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(server_secret).expect("HMAC takes any key length");
        KeyHasher { mac }
    }

    /// The keyed digest of a presented secret.
    pub fn digest(&self, secret: &[u8]) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check that `secret` hashes to `expected`.
    pub fn verify(&self, secret: &[u8], expected: &Digest) -> bool {
        self.digest(secret).ct_eq(expected).into()
    }

    /// [`digest`](Self::digest), remembered in `memo` (one connection's) when there is one.
    pub fn digest_with(&self, secret: &[u8], memo: Option<&DigestMemo>) -> Digest {
        match memo {
            Some(memo) => memo.digest(self, secret),
            None => self.digest(secret),
        }
    }
}

/// The longest secret a [`DigestMemo`] keeps (keys and pair secrets are far shorter).
const MEMO_MAX_SECRET: usize = 256;

/// The last secret digested on one client connection, with its digest. A keep-alive client
/// sends the same credential with every request; remembering its digest for the connection
/// saves the HMAC (two SHA-256 blocks; on CPUs without SHA extensions the largest single cost
/// of an allowed request). The secret is compared in constant time, never leaves the
/// connection, and is wiped when replaced or dropped. Only the digest is remembered, not the
/// key: the key is looked up (and its state checked) on every request.
#[derive(Default)]
pub struct DigestMemo(Mutex<Option<Memo>>);

struct Memo {
    secret: Zeroizing<Vec<u8>>,
    digest: Digest,
}

impl DigestMemo {
    fn digest(&self, hasher: &KeyHasher, secret: &[u8]) -> Digest {
        {
            let memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = memo.as_ref()
                && m.secret.len() == secret.len()
                && bool::from(m.secret.as_slice().ct_eq(secret))
            {
                return m.digest;
            }
        }
        // Outside the lock: the streams of one HTTP/2 connection do not wait on each other.
        let digest = hasher.digest(secret);
        let mut memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match memo.as_mut() {
            _ if secret.len() > MEMO_MAX_SECRET => *memo = None,
            // Another credential on the same connection (a client rotating keys): the buffer
            // is wiped and reused, not freed and allocated again.
            Some(m) => {
                m.secret.zeroize();
                m.secret.extend_from_slice(secret);
                m.digest = digest;
            }
            None => {
                *memo = Some(Memo {
                    secret: Zeroizing::new(secret.to_vec()),
                    digest,
                })
            }
        }
        digest
    }
}

impl std::fmt::Debug for DigestMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestMemo(..)")
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

/// Errors of the argon2id helpers.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("not a valid argon2 PHC string: {0}")]
    InvalidHash(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

/// The argon2id PHC string of a management token (for the TOML file or the store).
pub fn hash_token(token: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hashing(e.to_string()))
}

/// Checks that `phc` is a parseable argon2 PHC string.
pub fn validate_token_hash(phc: &str) -> Result<(), HashError> {
    let parsed = PasswordHash::new(phc).map_err(|e| HashError::InvalidHash(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(HashError::InvalidHash(format!(
            "algorithm `{}` is not argon2",
            parsed.algorithm
        )));
    }
    Ok(())
}

/// Verifies a management token against its argon2 PHC string (constant-time inside argon2).
pub fn verify_token(token: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(token.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tokens_have_the_documented_shape() {
        let t = generate_key_token();
        assert!(t.starts_with("cr_"));
        assert_eq!(t.len(), 3 + 43);
        assert!(
            t[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(t, generate_key_token());
    }

    #[test]
    fn digest_depends_on_server_secret_and_verifies() {
        let a = KeyHasher::new(b"secret-a");
        let b = KeyHasher::new(b"secret-b");
        let d = a.digest(b"cr_x");
        assert_ne!(d, b.digest(b"cr_x"));
        assert!(a.verify(b"cr_x", &d));
        assert!(!a.verify(b"cr_y", &d));
    }

    #[test]
    fn a_memo_gives_the_digest_of_the_secret_presented_now() {
        let hasher = KeyHasher::new(b"server");
        let memo = DigestMemo::default();
        for secret in [
            &b"cr_one"[..],
            b"cr_one",
            b"cr_two",
            b"cr_one",
            b"cr_longer",
            b"",
        ] {
            assert_eq!(
                hasher.digest_with(secret, Some(&memo)),
                hasher.digest(secret)
            );
        }
        // Too long to keep: digested every time, and the memo holds nothing.
        let long = vec![b'k'; MEMO_MAX_SECRET + 1];
        assert_eq!(hasher.digest_with(&long, Some(&memo)), hasher.digest(&long));
        assert!(memo.0.lock().unwrap().is_none());
    }

    #[test]
    fn partner_token_lookup_prefix() {
        let t = generate_partner_token();
        let lookup = partner_token_lookup(&t).unwrap();
        assert_eq!(lookup, &t[4..12]);
        assert_eq!(partner_token_lookup("rsk_short"), None);
        assert_eq!(partner_token_lookup("cr_whatever"), None);
    }

    #[test]
    fn argon2_round_trip() {
        let phc = hash_token("rsk_abc").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        validate_token_hash(&phc).unwrap();
        assert!(verify_token("rsk_abc", &phc));
        assert!(!verify_token("rsk_abd", &phc));
        assert!(validate_token_hash("plain").is_err());
        assert!(!verify_token("rsk_abc", "plain"));
    }
}
