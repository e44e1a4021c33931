//! The in-memory key index: every key, looked up per request without touching the store.
//!
//! Token keys are found by the keyed digest of the presented secret; Gateway3 pairs by their
//! public `access_key`, then the secret is checked in constant time. Management writes replace
//! a key's entry after the store has committed, so a change is in force on the next request.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::domain::key::{Credential, Digest, Key};
use crate::domain::secret::KeyHasher;
use crate::meter::Meter;
use crate::meter::admit::Links;
use crate::meter::hold::InFlight;
use crate::proxy::credential::Presented;

/// A key's request-rate limiter (GCRA, `governor`), rebuilt only when the limit changes.
#[derive(Debug)]
struct RateLimit {
    per_minute: NonZeroU32,
    limiter: DefaultDirectRateLimiter,
}

/// Per-key state that lives across updates of the key's record: last use, requests in flight,
/// rate limiter and the links to its usage counters.
#[derive(Debug, Default)]
pub struct KeyLive {
    last_used: AtomicI64,
    dirty: AtomicBool,
    /// Requests of this key in flight (its concurrency limit).
    pub in_flight: Arc<InFlight>,
    rate: ArcSwapOption<RateLimit>,
    links: OnceLock<Links>,
}

impl KeyLive {
    fn set_rate(&self, limit: Option<NonZeroU32>) {
        let current = self.rate.load();
        if current.as_ref().map(|r| r.per_minute) == limit {
            return;
        }
        self.rate.store(limit.map(|per_minute| {
            Arc::new(RateLimit {
                per_minute,
                limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
            })
        }));
    }

    /// Takes one request token; `Err(seconds)` says when the next one is due.
    pub fn check_rate(&self) -> Result<(), u64> {
        let guard = self.rate.load();
        let Some(rate) = guard.as_ref() else {
            return Ok(());
        };
        rate.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// The key's usage counters with its account's and partner's; `None` if the account or
    /// partner is not registered with the meter.
    pub fn links(&self, key: &Key, meter: &Meter, now: i64) -> Option<&Links> {
        if let Some(links) = self.links.get() {
            return Some(links);
        }
        let links = Links {
            key: meter.key_usage(key.id, now),
            account: meter.account(key.account_id)?,
            partner: meter.partner(key.partner_id)?,
        };
        Some(self.links.get_or_init(|| links))
    }
}

/// A key as the data plane holds it: the immutable record plus its live state.
#[derive(Debug)]
pub struct KeyEntry {
    pub key: Key,
    pub live: Arc<KeyLive>,
}

/// Hashes a digest by its first 8 bytes. Digests are HMAC outputs under the server secret, so
/// callers cannot choose them and SipHash's flooding protection buys nothing here.
#[derive(Clone, Copy, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(buf);
        }
    }
}

#[derive(Clone, Copy, Default)]
struct BuildDigestHasher;

impl BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// Every key by digest, by access key and by id.
#[derive(Default)]
pub struct KeyIndex {
    by_digest: DashMap<Digest, Arc<KeyEntry>, BuildDigestHasher>,
    by_access_key: DashMap<Uuid, Arc<KeyEntry>>,
    by_id: DashMap<Uuid, Arc<KeyEntry>>,
    /// Keys whose `last_used_at` changed since the last flush.
    used: Mutex<Vec<Uuid>>,
}

impl KeyIndex {
    /// An index holding `keys`.
    pub fn from_keys(keys: Vec<Key>) -> Self {
        let index = KeyIndex::default();
        for key in keys {
            index.upsert(key);
        }
        index
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Inserts or replaces a key, keeping its live state.
    pub fn upsert(&self, key: Key) {
        let live = match self.by_id.get(&key.id) {
            Some(old) => old.live.clone(),
            None => {
                let live = KeyLive::default();
                live.last_used
                    .store(key.last_used_at.unwrap_or(0), Ordering::Relaxed);
                Arc::new(live)
            }
        };
        live.set_rate(key.limits.rate_limit_per_minute);
        let entry = Arc::new(KeyEntry { key, live });
        match &entry.key.credential {
            Credential::Token { digest } => {
                self.by_digest.insert(*digest, entry.clone());
            }
            Credential::Pair { access_key, .. } => {
                self.by_access_key.insert(*access_key, entry.clone());
            }
        }
        self.by_id.insert(entry.key.id, entry);
    }

    /// Every key of a partner (a scan: management calls only, never the data plane).
    pub fn keys_of_partner(&self, partner: Uuid) -> Vec<Arc<KeyEntry>> {
        let mut keys: Vec<Arc<KeyEntry>> = self
            .by_id
            .iter()
            .filter(|e| e.key.partner_id == partner)
            .map(|e| e.clone())
            .collect();
        keys.sort_by_key(|e| (e.key.created_at, e.key.id));
        keys
    }

    /// A key by id.
    pub fn get(&self, id: Uuid) -> Option<Arc<KeyEntry>> {
        self.by_id.get(&id).map(|e| e.clone())
    }

    /// Finds the key a presented credential belongs to, or `None` if it matches no key.
    pub fn lookup(&self, presented: &Presented<'_>, hasher: &KeyHasher) -> Option<Arc<KeyEntry>> {
        match presented {
            Presented::Token(token) => {
                let digest = hasher.digest(token.as_bytes());
                let entry = self.by_digest.get(&digest)?.clone();
                // The map found it by this digest; compare in constant time all the same.
                hasher
                    .verify(token.as_bytes(), entry.key.credential.digest())
                    .then_some(entry)
            }
            Presented::Pair { access_key, secret } => {
                let entry = self.by_access_key.get(access_key)?.clone();
                hasher
                    .verify(secret.as_bytes(), entry.key.credential.digest())
                    .then_some(entry)
            }
        }
    }

    /// Records that `entry` was used at `now` (Unix seconds). Costs one atomic load per request
    /// and a short lock at most once per key per flush.
    pub fn mark_used(&self, entry: &KeyEntry, now: i64) {
        let live = &entry.live;
        if live.last_used.load(Ordering::Relaxed) >= now {
            return;
        }
        live.last_used.fetch_max(now, Ordering::Relaxed);
        self.mark_dirty(entry);
    }

    /// Takes the `(key id, last_used_at)` pairs changed since the last call.
    pub fn take_used(&self) -> Vec<(Uuid, i64)> {
        let ids = std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()));
        ids.into_iter()
            .filter_map(|id| {
                let entry = self.get(id)?;
                entry.live.dirty.store(false, Ordering::Release);
                Some((id, entry.live.last_used.load(Ordering::Relaxed)))
            })
            .collect()
    }

    /// Puts back pairs whose flush failed, so the next flush retries them.
    pub fn restore_used(&self, pairs: &[(Uuid, i64)]) {
        for (id, _) in pairs {
            if let Some(entry) = self.get(*id) {
                self.mark_dirty(&entry);
            }
        }
    }

    /// Queues the key for the next flush, once until that flush takes it.
    fn mark_dirty(&self, entry: &KeyEntry) {
        if !entry.live.dirty.swap(true, Ordering::AcqRel) {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(entry.key.id);
        }
    }

    /// The live `last_used_at` of a key (newer than the store's until the next flush).
    pub fn last_used(&self, id: Uuid) -> Option<i64> {
        self.get(id)
            .map(|e| e.live.last_used.load(Ordering::Relaxed))
            .filter(|t| *t > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::domain::policy::tests::sample_key;

    fn token_key(hasher: &KeyHasher, token: &str) -> Key {
        let mut k = sample_key();
        k.credential = Credential::Token {
            digest: hasher.digest(token.as_bytes()),
        };
        k
    }

    #[test]
    fn token_lookup_and_update_keep_live_state() {
        let hasher = KeyHasher::new(b"server-secret");
        let key = token_key(&hasher, "cr_one");
        let id = key.id;
        let index = KeyIndex::from_keys(vec![key.clone()]);
        let found = index
            .lookup(&Presented::Token(Cow::Borrowed("cr_one")), &hasher)
            .unwrap();
        assert_eq!(found.key.id, id);
        assert!(
            index
                .lookup(&Presented::Token(Cow::Borrowed("cr_two")), &hasher)
                .is_none()
        );

        index.mark_used(&found, 100);
        let mut disabled = key;
        disabled.disabled = true;
        index.upsert(disabled);
        let again = index
            .lookup(&Presented::Token(Cow::Borrowed("cr_one")), &hasher)
            .unwrap();
        assert!(again.key.disabled);
        assert_eq!(index.last_used(id), Some(100));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn pair_lookup_checks_the_secret() {
        let hasher = KeyHasher::new(b"server-secret");
        let access_key = Uuid::new_v4();
        let mut key = sample_key();
        key.credential = Credential::Pair {
            access_key,
            digest: hasher.digest(b"s3cret"),
        };
        let index = KeyIndex::from_keys(vec![key]);
        let good = Presented::Pair {
            access_key,
            secret: "s3cret".into(),
        };
        let bad = Presented::Pair {
            access_key,
            secret: "s3cres".into(),
        };
        assert!(index.lookup(&good, &hasher).is_some());
        assert!(index.lookup(&bad, &hasher).is_none());
    }

    #[test]
    fn used_keys_are_reported_once_per_change() {
        let hasher = KeyHasher::new(b"s");
        let key = token_key(&hasher, "cr_a");
        let id = key.id;
        let index = KeyIndex::from_keys(vec![key]);
        let entry = index.get(id).unwrap();
        index.mark_used(&entry, 10);
        index.mark_used(&entry, 10);
        index.mark_used(&entry, 11);
        assert_eq!(index.take_used(), vec![(id, 11)]);
        assert!(index.take_used().is_empty());
        index.mark_used(&entry, 9); // older than what we have: nothing to do
        assert!(index.take_used().is_empty());
        index.restore_used(&[(id, 11)]);
        assert_eq!(index.take_used(), vec![(id, 11)]);
    }
}
