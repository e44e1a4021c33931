//! Management operations shared by the API surfaces and the CLI. Every change is written to the
//! store first (durably) and only then applied to the in-memory index, so a key the API reports
//! as disabled is refused on the very next request, and a crash never loses an acknowledged write.
//! Writes to keys are serialised so the index can never end up older than the store.

pub mod accounts;
pub mod auth;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use uuid::Uuid;

use crate::domain::clock::Clock;
use crate::domain::ip::IpAllowList;
use crate::domain::key::{Account, Credential, Key, KeyLimits, Partner};
use crate::domain::permission::PermissionSet;
use crate::domain::secret::{self, KeyHasher};
use crate::index::KeyIndex;
use crate::meter::Meter;
use crate::store::{KeyChange, Page, Store, StoreError};

/// Faults of management operations (validation problems are reported by the API layer).
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hashing failed: {0}")]
    Hash(#[from] secret::HashError),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("partner {0} has no default account")]
    NoDefaultAccount(Uuid),
}

/// Which credential form a new key gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A `cr_...` bearer token.
    Token,
    /// A Gateway3 `access_key` UUID + `access_secret`.
    Pair,
}

/// What a caller asks for when creating a key.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub account_id: Uuid,
    pub partner_id: Uuid,
    /// `None` → `key-` + the first 8 hex digits of the id.
    pub name: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub permissions: PermissionSet,
    pub ip_whitelist: IpAllowList,
    pub expiration_date: Option<NaiveDate>,
    pub limits: KeyLimits,
    pub kind: KeyKind,
    pub created_by: String,
}

/// A freshly created key with its secret, which is shown once and never stored.
#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub key: Key,
    /// The `cr_...` token, or the pair's `access_secret`.
    pub secret: String,
}

/// The management operations.
#[derive(Clone)]
pub struct Manager {
    pub store: Arc<dyn Store>,
    pub index: Arc<KeyIndex>,
    pub hasher: KeyHasher,
    pub clock: Arc<dyn Clock>,
    pub default_plan: Option<i64>,
    /// Live counters, plans and balances of the data plane.
    pub meter: Arc<Meter>,
    /// Partner-token verification (argon2 throttle and cache).
    pub verifier: Arc<auth::TokenVerifier>,
    /// Serialises store write + index update of keys.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Manager {
    /// Creates a partner and its default account; returns the partner and its `rsk_` token.
    pub async fn create_partner(&self, name: &str) -> Result<(Partner, String), ManageError> {
        let token = secret::generate_partner_token();
        let hash = hash_blocking(token.clone()).await?;
        // Stamped and stored under the write lock, so this instance stores partners in the
        // order of their (created_at, id): a page walk never skips one created meanwhile.
        let _write = self.write_lock.lock().await;
        let now = self.clock.now_unix();
        let partner = Partner {
            id: Uuid::now_v7(),
            name: name.to_string(),
            token_prefix: lookup_prefix(&token),
            token_hash: hash,
            balance_micros: 0,
            tier_multiplier_ppm: 1_000_000,
            suspended: false,
            created_at: now,
        };
        let account = Account {
            id: Uuid::now_v7(),
            partner_id: partner.id,
            external_id: format!("default-{}", partner.id),
            email: None,
            name: Some(name.to_string()),
            plan_id: self.default_plan,
            created_at: now,
        };
        self.store.create_partner(&partner, &account).await?;
        drop(_write);
        self.meter.upsert_partner(&partner, now);
        self.meter.upsert_account(&account, now);
        Ok((partner, token))
    }

    /// Replaces a partner's token; the old one stops working at once. `None` if no such partner.
    pub async fn rotate_partner_token(&self, id: Uuid) -> Result<Option<String>, ManageError> {
        let token = secret::generate_partner_token();
        let hash = hash_blocking(token.clone()).await?;
        let found = self
            .store
            .set_partner_token(id, &lookup_prefix(&token), &hash)
            .await?;
        self.verifier.forget(id);
        Ok(found.then_some(token))
    }

    /// The partner a management token belongs to (argon2id, off the async threads).
    pub async fn authenticate_partner(&self, token: &str) -> Result<Option<Partner>, ManageError> {
        let Some(prefix) = secret::partner_token_lookup(token) else {
            return Ok(None);
        };
        for partner in self.store.partners_by_token_prefix(prefix).await? {
            if self.verifier.verify(&self.hasher, token, &partner).await {
                self.ensure_registered(&partner).await?;
                return Ok(Some(partner));
            }
        }
        Ok(None)
    }

    /// Makes a partner created by another process (e.g. `tollgate partner create` while the
    /// gateway runs) known to the data plane, with its default account.
    async fn ensure_registered(&self, partner: &Partner) -> Result<(), ManageError> {
        if self.meter.partner(partner.id).is_some() {
            return Ok(());
        }
        let now = self.clock.now_unix();
        self.meter.upsert_partner(partner, now);
        if let Some(account) = self.store.default_account(partner.id).await? {
            self.meter.upsert_account(&account, now);
        }
        Ok(())
    }

    /// Adds `micros` (may be negative) to a partner's prepaid balance; the new stored balance,
    /// or `None` if there is no such partner.
    pub async fn top_up(&self, partner: Uuid, micros: i64) -> Result<Option<i64>, ManageError> {
        let now = self.clock.now_unix();
        let balance = self.store.add_partner_balance(partner, micros, now).await?;
        if self.store.cluster().is_some() {
            // Shared store: the sync reads every balance back (this one's and the others'
            // charges applied); wake it now rather than adding here and racing it.
            self.meter.sync_now.notify_one();
        } else if balance.is_some()
            && let Some(live) = self.meter.partner(partner)
        {
            live.credit_add_signed(micros);
        }
        Ok(balance)
    }

    /// Changes a partner's tier multiplier and/or suspension (store first, then the data
    /// plane); the updated partner, or `None` if there is none.
    pub async fn update_partner(
        &self,
        id: Uuid,
        tier_ppm: Option<u64>,
        suspended: Option<bool>,
    ) -> Result<Option<Partner>, ManageError> {
        // Serialised with every other write, so racing updates cannot leave the data plane
        // with an older snapshot than the store.
        let _write = self.write_lock.lock().await;
        if !self.store.update_partner(id, tier_ppm, suspended).await? {
            return Ok(None);
        }
        let Some(partner) = self.store.get_partner(id).await? else {
            return Ok(None);
        };
        self.meter.upsert_partner(&partner, self.clock.now_unix());
        Ok(Some(partner))
    }

    /// The account reseller keys of `partner` belong to.
    pub async fn default_account(&self, partner: Uuid) -> Result<Account, ManageError> {
        self.store
            .default_account(partner)
            .await?
            .ok_or(ManageError::NoDefaultAccount(partner))
    }

    /// Mints a key, stores its digest, then makes it usable on the data plane.
    pub async fn create_key(&self, new: NewKey) -> Result<CreatedKey, ManageError> {
        // A UUIDv7 (time-ordered) stamped and stored under the write lock, so this instance
        // stores keys in the order of their (created_at, id): a page walk never skips a key
        // created while it runs.
        let _write = self.write_lock.lock().await;
        let id = Uuid::now_v7();
        let (credential, secret) = match new.kind {
            KeyKind::Token => {
                let token = secret::generate_key_token();
                let digest = self.hasher.digest(token.as_bytes());
                (Credential::Token { digest }, token)
            }
            KeyKind::Pair => {
                let secret = secret::generate_pair_secret();
                let digest = self.hasher.digest(secret.as_bytes());
                let access_key = Uuid::new_v4();
                (Credential::Pair { access_key, digest }, secret)
            }
        };
        let key = Key {
            id,
            account_id: new.account_id,
            partner_id: new.partner_id,
            name: new
                .name
                // The id's last 8 hex digits: its random part (the first are its time).
                .unwrap_or_else(|| format!("key-{}", &id.simple().to_string()[24..])),
            label: new.label,
            description: new.description,
            credential,
            permissions: new.permissions,
            ip_whitelist: new.ip_whitelist,
            expiration_date: new.expiration_date,
            disabled: false,
            created_at: self.clock.now_unix(),
            created_by: new.created_by,
            revoked_at: None,
            revoked_by: None,
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: None,
            limits: new.limits,
        };
        self.store.create_key(&key).await?;
        self.index.upsert(&key);
        Ok(CreatedKey { key, secret })
    }

    /// Applies a change durably, then to the index. `None` if there is no such key.
    pub async fn change_key(
        &self,
        id: Uuid,
        change: KeyChange,
    ) -> Result<Option<Key>, ManageError> {
        let _write = self.write_lock.lock().await;
        let Some(mut key) = self.store.update_key(id, &change).await? else {
            return Ok(None);
        };
        self.index.upsert(&key);
        drop(_write);
        self.with_live_last_use(&mut key);
        Ok(Some(key))
    }

    /// Edits a key: `edit` changes the current record, which is then stored and applied.
    /// `None` if there is no such key.
    pub async fn edit_key(
        &self,
        id: Uuid,
        edit: impl FnOnce(&mut Key),
    ) -> Result<Option<Key>, ManageError> {
        let _write = self.write_lock.lock().await;
        let Some(mut key) = self.store.get_key(id).await? else {
            return Ok(None);
        };
        edit(&mut key);
        let Some(stored) = self
            .store
            .update_key(id, &KeyChange::Edit(Box::new(key)))
            .await?
        else {
            return Ok(None);
        };
        self.index.upsert(&stored);
        drop(_write);
        let mut stored = stored;
        self.with_live_last_use(&mut stored);
        Ok(Some(stored))
    }

    /// A key with every field, from the store, with its live `last_used_at`.
    pub async fn key(&self, id: Uuid) -> Result<Option<Key>, ManageError> {
        let Some(mut key) = self.store.get_key(id).await? else {
            return Ok(None);
        };
        self.with_live_last_use(&mut key);
        Ok(Some(key))
    }

    /// A page of a partner's keys (those matching `search`, if given), oldest first, from
    /// the store, with their live `last_used_at`.
    pub async fn keys_of_partner(
        &self,
        partner: Uuid,
        page: Page,
        search: Option<&str>,
    ) -> Result<Vec<Key>, ManageError> {
        let mut keys = self.store.keys_of_partner(partner, page, search).await?;
        for key in &mut keys {
            self.with_live_last_use(key);
        }
        Ok(keys)
    }

    /// Sets `last_used_at` to the last use seen by the data plane when that is newer than the
    /// stored one (it reaches the store at the next flush).
    fn with_live_last_use(&self, key: &mut Key) {
        key.last_used_at = key.last_used_at.max(self.index.last_used(key.id));
    }

    /// Today's date (UTC) by the gateway's clock.
    pub fn today(&self) -> NaiveDate {
        DateTime::from_timestamp(self.clock.now_unix(), 0)
            .map(|dt| dt.date_naive())
            .unwrap_or_default()
    }
}

fn lookup_prefix(token: &str) -> String {
    secret::partner_token_lookup(token)
        .unwrap_or_default()
        .to_string()
}

async fn hash_blocking(token: String) -> Result<String, ManageError> {
    Ok(tokio::task::spawn_blocking(move || secret::hash_token(&token)).await??)
}
