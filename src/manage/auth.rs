//! Verifying partner management tokens without letting argon2 become a denial-of-service lever:
//! at most one argon2id run per core at a time, a token verified once is recognised again by
//! its keyed digest for as long as the partner's stored hash is unchanged (rotation clears it),
//! and a client that fails `MAX_FAILURES` times in a minute gets no more verifications until
//! the minute is over (tokens it already proved stay recognised).

use std::net::IpAddr;
use std::time::Instant;

use dashmap::DashMap;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::domain::key::{Digest, Partner};
use crate::domain::secret::{self, KeyHasher};

/// Failed authentications a client may make in a minute before it is refused unverified.
pub const MAX_FAILURES: u32 = 20;

/// Verified-token cache and argon2 throttle.
pub struct TokenVerifier {
    permits: Semaphore,
    /// HMAC(token) → (partner id, the argon2 hash it was verified against).
    verified: DashMap<Digest, (Uuid, String)>,
    /// Client → (the minute, counted from `epoch`, and its failed authentications).
    failures: DashMap<IpAddr, (u64, u32)>,
    epoch: Instant,
}

impl Default for TokenVerifier {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        TokenVerifier {
            permits: Semaphore::new(cores),
            verified: DashMap::new(),
            failures: DashMap::new(),
            epoch: Instant::now(),
        }
    }
}

impl TokenVerifier {
    /// Whether `token` is `partner`'s current token.
    pub async fn verify(&self, hasher: &KeyHasher, token: &str, partner: &Partner) -> bool {
        self.verify_phc(hasher, token, partner.id, &partner.token_hash)
            .await
    }

    /// Whether `token` matches the argon2 PHC string `phc` owned by `owner`.
    pub async fn verify_phc(
        &self,
        hasher: &KeyHasher,
        token: &str,
        owner: Uuid,
        phc: &str,
    ) -> bool {
        let digest = hasher.digest(token.as_bytes());
        if let Some(hit) = self.verified.get(&digest)
            && hit.0 == owner
            && hit.1 == phc
        {
            return true;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (t, h) = (token.to_string(), phc.to_string());
        let ok = tokio::task::spawn_blocking(move || secret::verify_token(&t, &h))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.insert(digest, (owner, phc.to_string()));
        }
        ok
    }

    /// Whether `client` may have `token` verified: `Err(seconds)` when it failed
    /// `MAX_FAILURES` times this minute, until the minute is over, unless `token` was verified
    /// before (a caller with a proven token is never throttled).
    pub fn may_verify(&self, hasher: &KeyHasher, token: &str, client: IpAddr) -> Result<(), u64> {
        if self.verified.contains_key(&hasher.digest(token.as_bytes())) {
            return Ok(());
        }
        let (minute, into) = self.minute();
        match self.failures.get(&client) {
            Some(f) if f.0 == minute && f.1 >= MAX_FAILURES => Err((60 - into).max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication of `client`.
    pub fn failed(&self, client: IpAddr) {
        let (minute, _) = self.minute();
        if self.failures.len() > 100_000 {
            self.failures.retain(|_, f| f.0 == minute);
        }
        let mut entry = self.failures.entry(client).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// The current minute since start, and the seconds into it.
    fn minute(&self) -> (u64, u64) {
        let secs = self.epoch.elapsed().as_secs();
        (secs / 60, secs % 60)
    }

    /// Forgets every verified token of `partner` (after a rotation).
    pub fn forget(&self, partner: Uuid) {
        self.verified.retain(|_, (id, _)| *id != partner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(token: &str) -> Partner {
        Partner {
            id: Uuid::new_v4(),
            name: "p".into(),
            token_prefix: String::new(),
            token_hash: secret::hash_token(token).unwrap(),
            balance_micros: 0,
            tier_multiplier_ppm: 1_000_000,
            suspended: false,
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn cached_only_while_the_hash_is_current() {
        let hasher = KeyHasher::new(b"k");
        let v = TokenVerifier::default();
        let mut p = partner("rsk_a");
        assert!(v.verify(&hasher, "rsk_a", &p).await);
        assert!(!v.verify(&hasher, "rsk_b", &p).await);
        assert!(v.verify(&hasher, "rsk_a", &p).await, "cache hit");
        // Rotated: the stored hash changed, the old token must fail even though it is cached.
        p.token_hash = secret::hash_token("rsk_new").unwrap();
        assert!(!v.verify(&hasher, "rsk_a", &p).await);
        assert!(v.verify(&hasher, "rsk_new", &p).await);
        v.forget(p.id);
        assert!(v.verified.is_empty());
    }
}
