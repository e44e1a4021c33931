//! Durable state: partners, accounts, plans, keys and usage. The `Store` trait is what the rest
//! of the gateway sees; `sqlite` is the embedded default. Ordinary proxied requests never call
//! the store: keys are loaded into memory at start and kept in sync by the management surfaces.
//! The one exception is the kubo ledger commands (pins, IPNS names), whose changes are written
//! before the client hears back, like a management write.

pub mod cluster;
mod common;
pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::model::{Plan, StoreConfig, StoreUrl};
use crate::domain::key::{Account, Digest, Key, Partner};
use crate::meter::Batch;
use crate::meter::llm_usage::LlmRow;

pub use crate::meter::pins::{IpnsRow, PinRow};
pub use crate::meter::usage::CounterRow;

/// Faults of the store. Not-found is `Ok(None)`, not an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open store `{url}`: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the store `{url}` was migrated by a newer Tollgate (schema version {version} is unknown \
         to this binary); upgrade this binary, Tollgate never migrates down"
    )]
    TooNew { url: String, version: i64 },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("a record with this {0} already exists")]
    Conflict(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store kind not supported yet: {0}")]
    Unsupported(String),
    #[error("store background work interrupted: {0}")]
    Interrupted(String),
    #[error("the store did not answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// A key change applied by the management APIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Enable (`disabled: false`) or disable the key, recording when and by whom if that
    /// changes its state.
    SetDisabled { disabled: bool, at: i64, by: String },
    /// Revoke the key for good.
    Revoke { at: i64, by: String },
    /// Write the editable fields (label, description, permissions, IP allow-list, expiration
    /// date, limits) of the given key; identity, credential and history are left alone.
    Edit(Box<Key>),
}

/// Health, settings and the plan mirror.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// Cheap round-trip used by `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Reads a named setting (e.g. the generated server secret).
    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Writes a named setting only if it is not set yet; returns the value now stored.
    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Mirrors the TOML plans into the `plans` table (insert or update by id).
    async fn sync_plans(&self, plans: &[Plan]) -> Result<(), StoreError>;
}

/// Partners (resellers): identity, management token, balance, tier and suspension.
#[async_trait]
pub trait PartnerStore: Send + Sync {
    /// Creates a partner together with its default account (used by reseller keys).
    async fn create_partner(
        &self,
        partner: &Partner,
        default_account: &Account,
    ) -> Result<(), StoreError>;
    /// Partners whose token lookup prefix equals `prefix`.
    async fn partners_by_token_prefix(&self, prefix: &str) -> Result<Vec<Partner>, StoreError>;
    /// A partner by id.
    async fn get_partner(&self, id: Uuid) -> Result<Option<Partner>, StoreError>;
    /// Every partner (for the meter at start).
    async fn load_partners(&self) -> Result<Vec<Partner>, StoreError>;
    /// A page of the partners, oldest first (by creation time, then id).
    async fn partners_page(&self, page: Page) -> Result<Vec<Partner>, StoreError>;
    /// Replaces a partner's token (prefix and argon2id hash).
    async fn set_partner_token(
        &self,
        id: Uuid,
        prefix: &str,
        hash: &str,
    ) -> Result<bool, StoreError>;
    /// Sets a partner's tier multiplier (ppm) and/or suspension; `false` if no such partner.
    async fn update_partner(
        &self,
        id: Uuid,
        tier_ppm: Option<u64>,
        suspended: Option<bool>,
    ) -> Result<bool, StoreError>;
    /// Adds `micros` (may be negative) to a partner's balance with a `top_up` ledger entry at
    /// `at`, in one transaction; the new balance, or `None`.
    async fn add_partner_balance(
        &self,
        id: Uuid,
        micros: i64,
        at: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// A page of a partner's money ledger, oldest first (by time, then id).
    async fn ledger_page(
        &self,
        partner_id: Uuid,
        page: Page,
    ) -> Result<Vec<crate::domain::money::LedgerEntry>, StoreError>;
    /// `(at, amount)` of a partner's `plan_change` entries from `since` on.
    async fn plan_charges_since(
        &self,
        partner_id: Uuid,
        since: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
}

/// Accounts (Gateway3 users) and their plans.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; a duplicate `(partner_id, external_id)` is `Conflict("uuid")`.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    /// The partner's default account (the one reseller keys belong to).
    async fn default_account(&self, partner_id: Uuid) -> Result<Option<Account>, StoreError>;
    /// A partner's account by the partner's own identifier for it (Gateway3 `uuid`). The
    /// partner's default account is never returned.
    async fn account_by_external_id(
        &self,
        partner_id: Uuid,
        external_id: &str,
    ) -> Result<Option<Account>, StoreError>;
    /// An account by id.
    async fn get_account(&self, id: Uuid) -> Result<Option<Account>, StoreError>;
    /// Every account (for the meter at start).
    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// A page of the partner's Gateway3 accounts (its default account left out), oldest first
    /// (by creation time, then id).
    async fn accounts_page(&self, partner_id: Uuid, page: Page)
    -> Result<Vec<Account>, StoreError>;
    /// The billing period (`YYYY-MM`) of an account's plan and the highest plan price it
    /// held in that period; `None` if there is no such account.
    async fn plan_period(
        &self,
        account_id: Uuid,
    ) -> Result<Option<(Option<String>, u64)>, StoreError>;
    /// Moves an account to a plan: the plan, the period and its peak, the debit of the charge
    /// from the partner's balance and the `plan_change` ledger entry, in one transaction; if
    /// the balance does not cover the charge, nothing changes.
    async fn set_account_plan(
        &self,
        account_id: Uuid,
        change: &PlanMove,
    ) -> Result<PlanChange, StoreError>;
}

/// Sub-keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a key (digest only). A name already used by a live (not revoked) key of the
    /// account is `Conflict("name")`.
    async fn create_key(&self, key: &Key) -> Result<(), StoreError>;
    /// A key by id.
    async fn get_key(&self, id: Uuid) -> Result<Option<Key>, StoreError>;
    /// Every key, revoked ones included, oldest first.
    async fn load_keys(&self) -> Result<Vec<Key>, StoreError>;
    /// Every key, revoked ones included, handed to `each` one at a time as the rows stream in
    /// (the index at start), in no particular order.
    async fn for_each_key(&self, each: &mut (dyn FnMut(Key) + Send)) -> Result<(), StoreError>;
    /// A page of a partner's keys (all its accounts), revoked ones included, oldest first (by
    /// creation time, then id): at most `page.limit` of those after `page.after`.
    /// With `search`, only the keys whose name, label or description contains it (ignoring
    /// ASCII case) or whose id it is.
    async fn keys_of_partner(
        &self,
        partner_id: Uuid,
        page: Page,
        search: Option<&str>,
    ) -> Result<Vec<Key>, StoreError>;
    /// A page of the account's keys that are not revoked, oldest first (by creation time,
    /// then id).
    async fn live_keys_of_account(
        &self,
        account_id: Uuid,
        page: Page,
    ) -> Result<Vec<Key>, StoreError>;
    /// Applies a change; returns the updated key, or `None` if there is no such key.
    async fn update_key(&self, id: Uuid, change: &KeyChange) -> Result<Option<Key>, StoreError>;
    /// Records `last_used_at` for many keys in one transaction.
    async fn touch_keys(&self, used: &[(Uuid, i64)]) -> Result<(), StoreError>;
}

/// Usage: counter totals per window, daily series, LLM usage by model.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Counter totals of the given windows (e.g. today, this month, `lifetime`).
    async fn load_counters(&self, windows: &[String]) -> Result<Vec<CounterRow>, StoreError>;
    /// Applies a usage batch in one transaction: counter totals, daily sums and partner balance
    /// charges. `token` makes it idempotent: a batch already applied is `applied: false`. In
    /// the same transaction it reads back what changed since `since` (see [`Synced`]).
    async fn apply_usage(
        &self,
        token: &str,
        batch: &Batch,
        now: i64,
        since: i64,
    ) -> Result<Synced, StoreError>;
    /// `(day, metric, value)` daily sums of one scope (`key`, `account`, `partner`) from `from`
    /// to `to` (`YYYY-MM-DD`, inclusive).
    async fn usage_daily(
        &self,
        scope: &str,
        id: Uuid,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// Adds LLM usage rows to `day`'s sums; `token` makes it idempotent like `apply_usage`.
    async fn apply_llm_usage(
        &self,
        token: &str,
        day: &str,
        rows: &[LlmRow],
        now: i64,
    ) -> Result<bool, StoreError>;
    /// A key's lifetime LLM usage by model.
    async fn llm_usage_of_key(&self, key_id: Uuid) -> Result<Vec<LlmRow>, StoreError>;
}

/// Replayable responses of creations sent with an `Idempotency-Key`.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// An idempotent create response stored at or after `since`: `(body hash, sealed)`.
    async fn get_idempotent(
        &self,
        partner: Uuid,
        key: &str,
        since: i64,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError>;
    /// Stores an idempotent create response; forgets those older than `expire_before`.
    async fn put_idempotent(
        &self,
        partner: Uuid,
        key: &str,
        body_hash: &[u8],
        sealed: &[u8],
        now: i64,
        expire_before: i64,
    ) -> Result<(), StoreError>;
}

/// The kubo ledger: pins and IPNS names per account.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Every pin of the kubo ledger.
    async fn load_pins(&self) -> Result<Vec<PinRow>, StoreError>;
    /// Records a pin (updating size and kind if the account holds the CID already); with
    /// `replaces`, removes that pin of the same account in the same transaction.
    async fn put_pin(
        &self,
        pin: &PinRow,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Removes an account's pin; `false` if it held none.
    async fn remove_pin(&self, account_id: Uuid, cid: &str) -> Result<bool, StoreError>;
    /// Every IPNS name of every account.
    async fn load_ipns(&self) -> Result<Vec<IpnsRow>, StoreError>;
    /// Records an account's IPNS name (idempotent).
    async fn put_ipns(&self, account_id: Uuid, name: &str, now: i64) -> Result<(), StoreError>;
    /// Forgets an account's IPNS name; `false` if it owned none by that name.
    async fn remove_ipns(&self, account_id: Uuid, name: &str) -> Result<bool, StoreError>;
}

/// Durable storage behind the gateway: every role, implemented by each back-end.
pub trait Store:
    SettingsStore
    + PartnerStore
    + AccountStore
    + KeyStore
    + UsageStore
    + IdempotencyStore
    + LedgerStore
    + 'static
{
    /// The back-end's change feed, if it is shared by several instances (PostgreSQL).
    fn cluster(&self) -> Option<&dyn cluster::ClusterStore> {
        None
    }
}

/// A page of a list ordered by creation time, then id: the items after `after` (the last
/// item of the previous page), at most `limit` of them. Items inserted while a client pages
/// never make it see an existing item twice or miss one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub after: Option<(i64, Uuid)>,
    pub limit: u32,
}

impl Page {
    /// The SQL parameters of a page: the creation time and id to start after, and the limit.
    pub(crate) fn binds(&self) -> (i64, String, i64) {
        let (at, id) = self.after.unwrap_or((i64::MIN, Uuid::nil()));
        (at, id.to_string(), i64::from(self.limit))
    }

    /// Everything, from the start.
    pub const ALL: Page = Page {
        after: None,
        limit: u32::MAX,
    };
}

/// What one usage sync read back besides applying its batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Whether the batch was applied now (`false`: its token was applied before).
    pub applied: bool,
    /// Counter totals changed by anyone since the cursor given (empty for a store that only one
    /// instance uses).
    pub totals: Vec<CounterRow>,
    /// Every partner's stored balance: `(partner, balance)` (empty for a store that only one
    /// instance uses).
    pub balances: Vec<(Uuid, i64)>,
    /// The cursor to give next time.
    pub cursor: i64,
    /// This instance's budget leases after the sync (less what it applied; renewed).
    pub leases: Vec<(cluster::LeaseId, u64)>,
}

/// Opens (and migrates) the store named by `config.url`.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match &config.url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StoreUrl::Postgres(url) => {
            let settings = postgres::PgSettings {
                pool_size: config.pool_size,
                statement_timeout: config.statement_timeout,
                lease_ttl: config.lease_ttl,
            };
            Ok(Arc::new(
                postgres::PostgresStore::open(url, settings).await?,
            ))
        }
    }
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Applies the pending migrations; a schema with versions this binary does not know (a newer
/// Tollgate migrated it) is `TooNew` and left untouched.
pub(crate) async fn migrate<'a, A>(
    migrator: &sqlx::migrate::Migrator,
    pool: A,
    url: &str,
) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    match migrator.run(pool).await {
        Err(sqlx::migrate::MigrateError::VersionMissing(version)) => Err(StoreError::TooNew {
            url: redact(url),
            version,
        }),
        other => Ok(other?),
    }
}

/// Maps a unique-constraint violation to `Conflict(field)`, anything else to `Query`.
pub(crate) fn write_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let what = db.constraint().unwrap_or_else(|| db.message());
            StoreError::Conflict(conflict_field(what))
        }
        _ => StoreError::Query(err),
    }
}

/// The field a unique violation is about, from SQLite's message (`UNIQUE constraint failed:
/// keys.account_id, keys.name`) or a PostgreSQL constraint name (`keys_account_id_name_key`).
fn conflict_field(what: &str) -> &'static str {
    if what.contains("digest") || what.contains("access_key") {
        "credential"
    } else if what.contains("external_id") {
        "uuid"
    } else if what.contains("name") {
        "name"
    } else {
        "id"
    }
}

/// Digest bytes from a stored blob.
pub(crate) fn digest_from(bytes: &[u8]) -> Result<Digest, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("digest of {} bytes", bytes.len())))
}

/// A plan change as stored by [`AccountStore::set_account_plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanMove {
    /// The account's plan, period and peak as read when the charge was computed: the move
    /// happens only if they are still the stored ones (else [`PlanChange::Raced`]).
    pub expected: (Option<i64>, Option<String>, u64),
    pub plan_id: i64,
    /// What the partner pays, in micro-USD.
    pub charge_micros: u64,
    /// The billing period (`YYYY-MM`) and the highest plan price held in it, after the move.
    pub period: String,
    pub peak_micros: u64,
    /// When (Unix seconds), and what the ledger entry says.
    pub at: i64,
    pub note: String,
}

/// The outcome of [`Store::set_account_plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanChange {
    /// Done: the account as now stored.
    Changed(Account),
    /// The partner's stored balance (given) does not cover the charge; nothing changed.
    InsufficientBalance(i64),
    /// There is no such account.
    NoAccount,
    /// Another writer (another instance) changed the account's plan since it was read; nothing
    /// changed, the charge must be computed again.
    Raced,
}

#[cfg(test)]
pub(crate) mod tests;
