//! The in-memory key index: every key, looked up per request without touching the store.
//!
//! Token keys are found by the keyed digest of the presented secret; Gateway3 pairs by their
//! public `access_key`, then the secret is checked in constant time. Management writes replace
//! a key's entry after the store has committed, so a change is in force on the next request.
//!
//! Memory: each key is one allocation, its compact [`HotKey`] (the descriptive fields stay in
//! the store); the maps hold only a pointer per key; the live state (last use, and the meter's
//! [`KeyGate`]: requests in flight, rate limiter, counter links) is created on the key's first
//! use.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::domain::hot_key::HotKey;
use crate::domain::key::{Credential, Digest, Key};
use crate::domain::secret::{DigestMemo, KeyHasher};
use crate::meter::gate::KeyGate;

/// Per-key state that lives across updates of the key's record: the last use (this index's
/// business) and the admission state the meter owns ([`KeyGate`]: rate limiter, requests in
/// flight, counter links), which it dereferences to.
#[derive(Debug, Default)]
pub struct KeyLive {
    last_used: AtomicI64,
    dirty: AtomicBool,
    gate: KeyGate,
}

impl KeyLive {
    fn new(limit: Option<NonZeroU32>) -> Self {
        KeyLive {
            gate: KeyGate::new(limit),
            ..KeyLive::default()
        }
    }
}

impl Deref for KeyLive {
    type Target = KeyGate;
    fn deref(&self) -> &KeyGate {
        &self.gate
    }
}

/// A key's live state, created on first use (most loaded keys are never used between two
/// restarts). Dereferences to the [`KeyLive`], creating it if needed.
#[derive(Debug)]
pub struct LazyLive {
    cell: OnceLock<Arc<KeyLive>>,
    /// The rate limit the live state starts with.
    per_minute: Option<NonZeroU32>,
}

impl LazyLive {
    fn new(per_minute: Option<NonZeroU32>) -> Self {
        LazyLive {
            cell: OnceLock::new(),
            per_minute,
        }
    }

    /// The live state of a key whose record is replaced: the same one as before, with the new
    /// rate limit. It is forced into existence on the old record first, so a request still
    /// holding the old record and the ones finding the new record share it.
    fn carried(old: &LazyLive, per_minute: Option<NonZeroU32>) -> Self {
        let live = old.force().clone();
        live.set_rate(per_minute);
        LazyLive {
            cell: OnceLock::from(live),
            per_minute,
        }
    }

    fn force(&self) -> &Arc<KeyLive> {
        self.cell
            .get_or_init(|| Arc::new(KeyLive::new(self.per_minute)))
    }

    /// The live state if the key was used (or changed) since start.
    fn get(&self) -> Option<&KeyLive> {
        self.cell.get().map(|l| &**l)
    }
}

impl Deref for LazyLive {
    type Target = KeyLive;
    fn deref(&self) -> &KeyLive {
        self.force()
    }
}

/// A key as the data plane holds it: the immutable record plus its live state.
#[derive(Debug)]
pub struct KeyEntry {
    pub key: HotKey,
    pub live: LazyLive,
}

impl KeyEntry {
    fn new(key: HotKey, old: Option<&KeyEntry>) -> Self {
        let per_minute = key.limits.rate_limit_per_minute;
        let live = match old {
            Some(old) => LazyLive::carried(&old.live, per_minute),
            None => LazyLive::new(per_minute),
        };
        KeyEntry { key, live }
    }
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

/// A map entry that is its own key: an entry, hashed and compared by one of its fields, so a
/// map holds one pointer per key and is searched by that field (`Borrow`).
macro_rules! keyed_by {
    ($name:ident, $key:ty, |$e:ident| $field:expr) => {
        #[derive(Clone)]
        struct $name(Arc<KeyEntry>);

        impl $name {
            fn field(&self) -> &$key {
                let $e = &self.0;
                $field
            }
        }
        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.field().hash(state)
            }
        }
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.field() == other.field()
            }
        }
        impl Eq for $name {}
        impl Borrow<$key> for $name {
            fn borrow(&self) -> &$key {
                self.field()
            }
        }
    };
}

keyed_by!(ByDigest, Digest, |e| e.key.credential.digest());
keyed_by!(ById, Uuid, |e| &e.key.id);
// Only pairs go into the access-key map; a token key would be keyed by its id there.
keyed_by!(ByAccessKey, Uuid, |e| match &e.key.credential {
    Credential::Pair { access_key, .. } => access_key,
    Credential::Token { .. } => &e.key.id,
});

/// Inserts `k`, replacing an equal key (and its entry) in place, so readers never miss it.
fn put<K: Hash + Eq, S: BuildHasher + Clone>(map: &DashMap<K, (), S>, k: K) {
    match map.entry(k) {
        Entry::Occupied(o) => {
            o.replace_entry(());
        }
        Entry::Vacant(v) => {
            v.insert(());
        }
    }
}

/// Every key by digest, by access key and by id.
#[derive(Default)]
pub struct KeyIndex {
    by_digest: DashMap<ByDigest, (), BuildDigestHasher>,
    by_access_key: DashMap<ByAccessKey, (), RandomState>,
    by_id: DashMap<ById, (), RandomState>,
    /// Keys whose `last_used_at` changed since the last flush.
    used: Mutex<Vec<Uuid>>,
}

impl KeyIndex {
    /// An index holding `keys`.
    pub fn from_keys(keys: Vec<Key>) -> Self {
        let index = KeyIndex::default();
        for key in keys {
            index.upsert(&key);
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
    pub fn upsert(&self, key: &Key) {
        self.upsert_hot(HotKey::from(key));
    }

    /// Inserts or replaces a key given as its compact record, keeping its live state.
    pub fn upsert_hot(&self, key: HotKey) {
        let old = self.get(key.id);
        let entry = Arc::new(KeyEntry::new(key, old.as_deref()));
        if let Some(old) = old
            && old.key.credential != entry.key.credential
        {
            self.by_digest.remove(old.key.credential.digest());
            if let Some(access_key) = old.key.credential.access_key() {
                self.by_access_key.remove(&access_key);
            }
        }
        match &entry.key.credential {
            Credential::Token { .. } => put(&self.by_digest, ByDigest(entry.clone())),
            Credential::Pair { .. } => put(&self.by_access_key, ByAccessKey(entry.clone())),
        }
        put(&self.by_id, ById(entry));
    }

    /// A key by id.
    pub fn get(&self, id: Uuid) -> Option<Arc<KeyEntry>> {
        self.by_id.get(&id).map(|e| e.key().0.clone())
    }

    /// The key whose token is `token`, or `None` if it matches no key.
    pub fn lookup_token(
        &self,
        token: &[u8],
        hasher: &KeyHasher,
        memo: Option<&DigestMemo>,
    ) -> Option<Arc<KeyEntry>> {
        let digest = hasher.digest_with(token, memo);
        let entry = self.by_digest.get(&digest)?.key().0.clone();
        // The map found it by this digest; compare in constant time all the same (without
        // hashing the token a second time).
        bool::from(digest.ct_eq(entry.key.credential.digest())).then_some(entry)
    }

    /// The key of `access_key` if `secret` is its secret, or `None`.
    pub fn lookup_pair(
        &self,
        access_key: &Uuid,
        secret: &[u8],
        hasher: &KeyHasher,
        memo: Option<&DigestMemo>,
    ) -> Option<Arc<KeyEntry>> {
        let entry = self.by_access_key.get(access_key)?.key().0.clone();
        let digest = hasher.digest_with(secret, memo);
        bool::from(digest.ct_eq(entry.key.credential.digest())).then_some(entry)
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

    /// The `last_used_at` of a key recorded since start (newer than the store's until the
    /// next flush); `None` if the key was not used since start.
    pub fn last_used(&self, id: Uuid) -> Option<i64> {
        self.get(id)?
            .live
            .get()
            .map(|live| live.last_used.load(Ordering::Relaxed))
            .filter(|t| *t > 0)
    }
}

#[cfg(test)]
mod tests {
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
        let found = index.lookup_token(b"cr_one", &hasher, None).unwrap();
        assert_eq!(found.key.id, id);
        assert!(index.lookup_token(b"cr_two", &hasher, None).is_none());

        index.mark_used(&found, 100);
        let mut disabled = key;
        disabled.disabled = true;
        index.upsert(&disabled);
        let again = index.lookup_token(b"cr_one", &hasher, None).unwrap();
        assert!(again.key.disabled);
        assert_eq!(index.last_used(id), Some(100));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_memoised_digest_still_finds_the_key_as_it_is_now() {
        let hasher = KeyHasher::new(b"server-secret");
        let memo = DigestMemo::default();
        let key = token_key(&hasher, "cr_one");
        let id = key.id;
        let index = KeyIndex::from_keys(vec![key.clone()]);
        let found = index.lookup_token(b"cr_one", &hasher, Some(&memo)).unwrap();
        assert_eq!(found.key.id, id);
        // The key changes, then goes: the memo keeps only the digest, never the answer.
        let mut disabled = key;
        disabled.disabled = true;
        index.upsert(&disabled);
        let again = index.lookup_token(b"cr_one", &hasher, Some(&memo)).unwrap();
        assert!(again.key.disabled);
        let mut rotated = disabled;
        rotated.credential = Credential::Token {
            digest: hasher.digest(b"cr_new"),
        };
        index.upsert(&rotated);
        assert!(
            index
                .lookup_token(b"cr_one", &hasher, Some(&memo))
                .is_none()
        );
        let new = index.lookup_token(b"cr_new", &hasher, Some(&memo)).unwrap();
        assert_eq!(new.key.id, id);
        assert!(
            index
                .lookup_token(b"cr_onf", &hasher, Some(&memo))
                .is_none()
        );
    }

    #[test]
    fn a_memoised_pair_secret_opens_only_its_own_access_key() {
        let hasher = KeyHasher::new(b"server-secret");
        let memo = DigestMemo::default();
        let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let keys = [(mine, b"s3cret"), (theirs, b"0ther!")].map(|(access_key, secret)| {
            let mut key = sample_key();
            key.id = Uuid::new_v4();
            key.credential = Credential::Pair {
                access_key,
                digest: hasher.digest(secret),
            };
            key
        });
        let index = KeyIndex::from_keys(keys.to_vec());
        let found = index.lookup_pair(&mine, b"s3cret", &hasher, Some(&memo));
        assert_eq!(found.unwrap().key.credential.access_key(), Some(mine));
        // The memo holds `s3cret` now: under another access key it opens nothing.
        assert!(
            index
                .lookup_pair(&theirs, b"s3cret", &hasher, Some(&memo))
                .is_none()
        );
        assert!(
            index
                .lookup_pair(&mine, b"s3creT", &hasher, Some(&memo))
                .is_none()
        );
        assert!(
            index
                .lookup_pair(&theirs, b"0ther!", &hasher, Some(&memo))
                .is_some()
        );
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
        assert!(
            index
                .lookup_pair(&access_key, b"s3cret", &hasher, None)
                .is_some()
        );
        assert!(
            index
                .lookup_pair(&access_key, b"s3cres", &hasher, None)
                .is_none()
        );
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

    #[test]
    fn a_key_loaded_lazily_still_enforces_its_rate_limit() {
        let hasher = KeyHasher::new(b"s");
        let mut key = token_key(&hasher, "cr_rate");
        key.limits.rate_limit_per_minute = NonZeroU32::new(2);
        let id = key.id;
        let index = KeyIndex::from_keys(vec![key.clone()]);
        let entry = index.get(id).unwrap();
        assert!(
            entry.live.get().is_none(),
            "no live state before the first use"
        );
        assert_eq!(index.last_used(id), None);
        assert!(entry.live.check_rate().is_ok());
        assert!(entry.live.check_rate().is_ok());
        let wait = entry.live.check_rate().unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");

        // Raising the limit replaces the limiter; the record held by a request in flight
        // shares the new one.
        key.limits.rate_limit_per_minute = NonZeroU32::new(1000);
        index.upsert(&key);
        let again = index.get(id).unwrap();
        assert!(again.live.check_rate().is_ok());
        assert!(entry.live.check_rate().is_ok());
        key.limits.rate_limit_per_minute = None;
        index.upsert(&key);
        for _ in 0..10_000 {
            assert!(entry.live.check_rate().is_ok());
        }
    }

    #[test]
    fn a_change_before_the_first_use_keeps_one_live_state() {
        let hasher = KeyHasher::new(b"s");
        let mut key = token_key(&hasher, "cr_conc");
        key.limits.concurrency_limit = NonZeroU32::new(1);
        let id = key.id;
        let index = KeyIndex::from_keys(vec![key.clone()]);
        let old = index.get(id).unwrap();
        key.disabled = true;
        index.upsert(&key);
        let new = index.get(id).unwrap();
        // A request still holding the old record and one finding the new record count
        // against the same concurrency limit.
        let slot = old.live.in_flight.try_acquire(1).unwrap();
        assert!(new.live.in_flight.try_acquire(1).is_none());
        drop(slot);
        assert!(new.live.in_flight.try_acquire(1).is_some());
        index.mark_used(&old, 50);
        assert_eq!(index.last_used(id), Some(50));
        assert_eq!(index.len(), 1);
    }
}
