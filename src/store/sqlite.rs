//! SQLite store, the embedded zero-setup default. One database file in WAL mode with
//! `synchronous = FULL` (a crash never loses a committed key, partner or payment) and foreign
//! keys on, migrated from `migrations/sqlite/` on open. Every multi-statement change runs in one
//! transaction that writes first, so concurrent writers queue on the busy timeout instead of
//! failing on a lock upgrade.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::rows::{self, AccountRow, KeyRow, PartnerRow};
use super::{Batch, CounterRow};
use super::{KeyChange, Store, StoreError};
use crate::config::model::Plan;
use crate::domain::key::{Account, Key, Partner};

/// The embedded SQLite migrations.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite allows one writer at a time; a few connections are enough for concurrent readers.
const MAX_CONNECTIONS: u32 = 4;

/// `SELECT <every key column> FROM keys` followed by `$tail`.
macro_rules! select_keys {
    ($tail:literal) => {
        concat!(
            "SELECT id, account_id, partner_id, name, label, description, kind, access_key, \
             digest, permissions, ip_whitelist, expiration_date, disabled, created_at, \
             created_by, revoked_at, revoked_by, last_used_at, daily_cost_limit_micros, \
             total_cost_limit_micros, concurrency_limit, rate_limit_per_minute, models FROM keys",
            $tail
        )
    };
}

/// `SELECT <every partner column> FROM partners` followed by `$tail`.
macro_rules! select_partners {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, token_prefix, token_hash, balance_micros, tier_multiplier_ppm, \
             suspended, created_at FROM partners",
            $tail
        )
    };
}

const INSERT_ACCOUNT: &str = "INSERT INTO accounts \
     (id, partner_id, external_id, email, name, plan_id, is_default, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// SQLite-backed store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file (creating it if missing) and applies pending migrations.
    /// A path that cannot be opened or created is `StoreError::Open` naming it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: format!("sqlite://{}", path.display()),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    async fn insert_account(
        conn: &mut sqlx::SqliteConnection,
        account: &Account,
        partner_id: Uuid,
        is_default: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(INSERT_ACCOUNT)
            .bind(account.id.to_string())
            .bind(partner_id.to_string())
            .bind(&account.external_id)
            .bind(&account.email)
            .bind(&account.name)
            .bind(account.plan_id)
            .bind(is_default)
            .bind(account.created_at)
            .execute(conn)
            .await
            .map_err(write_error)?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let stored = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn sync_plans(&self, plans: &[Plan]) -> Result<(), StoreError> {
        let limit = |v: Option<std::num::NonZeroU64>| v.map(|v| rows::int(v.get()));
        let mut tx = self.pool.begin().await?;
        for plan in plans {
            sqlx::query(
                "INSERT INTO plans (id, name, price_micros, pinned_count_limit, \
                 pinned_bytes_limit, ingress_limit, egress_limit, ipns_limit) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 price_micros = excluded.price_micros, \
                 pinned_count_limit = excluded.pinned_count_limit, \
                 pinned_bytes_limit = excluded.pinned_bytes_limit, \
                 ingress_limit = excluded.ingress_limit, egress_limit = excluded.egress_limit, \
                 ipns_limit = excluded.ipns_limit",
            )
            .bind(plan.id)
            .bind(&plan.name)
            .bind(rows::int(plan.price_micros))
            .bind(limit(plan.pinned_count_limit))
            .bind(limit(plan.pinned_bytes_limit))
            .bind(limit(plan.ingress_limit))
            .bind(limit(plan.egress_limit))
            .bind(plan.ipns_limit.map(|v| i64::from(v.get())))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_partner(
        &self,
        partner: &Partner,
        default_account: &Account,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(partner.id, default_account.partner_id);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO partners (id, name, token_prefix, token_hash, balance_micros, \
             tier_multiplier_ppm, suspended, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(partner.id.to_string())
        .bind(&partner.name)
        .bind(&partner.token_prefix)
        .bind(&partner.token_hash)
        .bind(partner.balance_micros)
        .bind(rows::int(partner.tier_multiplier_ppm))
        .bind(partner.suspended)
        .bind(partner.created_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        Self::insert_account(&mut tx, default_account, partner.id, true).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn partners_by_token_prefix(&self, prefix: &str) -> Result<Vec<Partner>, StoreError> {
        sqlx::query_as::<_, PartnerRow>(select_partners!(
            " WHERE token_prefix = $1 ORDER BY created_at, id"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(Partner::try_from)
        .collect()
    }

    async fn get_partner(&self, id: Uuid) -> Result<Option<Partner>, StoreError> {
        sqlx::query_as::<_, PartnerRow>(select_partners!(" WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(Partner::try_from)
            .transpose()
    }

    async fn set_partner_token(
        &self,
        id: Uuid,
        prefix: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE partners SET token_prefix = $1, token_hash = $2 WHERE id = $3")
                .bind(prefix)
                .bind(hash)
                .bind(id.to_string())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::insert_account(&mut conn, account, account.partner_id, false).await
    }

    async fn default_account(&self, partner_id: Uuid) -> Result<Option<Account>, StoreError> {
        sqlx::query_as::<_, AccountRow>(
            "SELECT id, partner_id, external_id, email, name, plan_id, created_at \
             FROM accounts WHERE partner_id = $1 AND is_default = $2",
        )
        .bind(partner_id.to_string())
        .bind(true)
        .fetch_optional(&self.pool)
        .await?
        .map(Account::try_from)
        .transpose()
    }

    async fn create_key(&self, key: &Key) -> Result<(), StoreError> {
        let limits = &key.limits;
        sqlx::query(
            "INSERT INTO keys (id, account_id, partner_id, name, label, description, kind, \
             access_key, digest, permissions, ip_whitelist, expiration_date, disabled, \
             created_at, created_by, revoked_at, revoked_by, last_used_at, \
             daily_cost_limit_micros, total_cost_limit_micros, concurrency_limit, \
             rate_limit_per_minute, models) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(key.id.to_string())
        .bind(key.account_id.to_string())
        .bind(key.partner_id.to_string())
        .bind(&key.name)
        .bind(&key.label)
        .bind(&key.description)
        .bind(rows::kind(&key.credential))
        .bind(key.credential.access_key().map(|k| k.to_string()))
        .bind(&key.credential.digest()[..])
        .bind(i64::from(key.permissions.bits()))
        .bind(rows::ip_whitelist_json(&key.ip_whitelist))
        .bind(rows::date_text(key.expiration_date))
        .bind(key.disabled)
        .bind(key.created_at)
        .bind(&key.created_by)
        .bind(key.revoked_at)
        .bind(&key.revoked_by)
        .bind(key.last_used_at)
        .bind(limits.daily_cost_limit_micros.map(rows::int))
        .bind(limits.total_cost_limit_micros.map(rows::int))
        .bind(limits.concurrency_limit.map(|v| i64::from(v.get())))
        .bind(limits.rate_limit_per_minute.map(|v| i64::from(v.get())))
        .bind(rows::models_json(&limits.models))
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn get_key(&self, id: Uuid) -> Result<Option<Key>, StoreError> {
        super::usage_journal::fold_touches_now(&self.pool).await?;
        sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(Key::try_from)
            .transpose()
    }

    async fn load_keys(&self) -> Result<Vec<Key>, StoreError> {
        super::usage_journal::fold_touches_now(&self.pool).await?;
        sqlx::query_as::<_, KeyRow>(select_keys!(" ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Key::try_from)
            .collect()
    }

    async fn for_each_key(&self, each: &mut (dyn FnMut(Key) + Send)) -> Result<(), StoreError> {
        super::usage_journal::fold_touches_now(&self.pool).await?;
        let mut rows = sqlx::query_as::<_, KeyRow>(select_keys!("")).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            each(Key::try_from(row)?);
        }
        Ok(())
    }

    async fn keys_of_partner(&self, partner_id: Uuid) -> Result<Vec<Key>, StoreError> {
        super::usage_journal::fold_touches_now(&self.pool).await?;
        sqlx::query_as::<_, KeyRow>(select_keys!(
            " WHERE partner_id = $1 ORDER BY created_at, id"
        ))
        .bind(partner_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(Key::try_from)
        .collect()
    }

    async fn update_key(&self, id: Uuid, change: &KeyChange) -> Result<Option<Key>, StoreError> {
        let id = id.to_string();
        let mut tx = self.pool.begin().await?;
        match change {
            KeyChange::SetDisabled(disabled) => {
                sqlx::query("UPDATE keys SET disabled = $1 WHERE id = $2")
                    .bind(*disabled)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?
            }
            // Revocation is permanent: the first `revoked_at/by` stay.
            KeyChange::Revoke { at, by } => {
                sqlx::query(
                    "UPDATE keys SET revoked_at = $1, revoked_by = $2 \
                 WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(*at)
                .bind(by)
                .bind(&id)
                .execute(&mut *tx)
                .await?
            }
            KeyChange::Edit(key) => super::sqlite_edit::edit_key(&mut tx, &id, key).await?,
        };
        let key = sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE id = $1"))
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .map(Key::try_from)
            .transpose()?;
        tx.commit().await?;
        Ok(key)
    }

    async fn touch_keys(&self, used: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        super::usage_journal::append_touches(&mut tx, used).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_accounts(&self) -> Result<Vec<Account>, StoreError> {
        sqlx::query_as::<_, AccountRow>(
            "SELECT id, partner_id, external_id, email, name, plan_id, created_at              FROM accounts ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
    }

    async fn load_partners(&self) -> Result<Vec<Partner>, StoreError> {
        sqlx::query_as::<_, PartnerRow>(select_partners!(" ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Partner::try_from)
            .collect()
    }

    async fn load_counters(&self, windows: &[String]) -> Result<Vec<CounterRow>, StoreError> {
        super::usage_sql::load_counters(&self.pool, windows).await
    }

    async fn apply_usage(&self, token: &str, batch: &Batch, now: i64) -> Result<bool, StoreError> {
        super::usage_sql::apply_usage(&self.pool, token, batch, now).await
    }

    async fn add_partner_balance(&self, id: Uuid, micros: i64) -> Result<Option<i64>, StoreError> {
        super::usage_sql::add_partner_balance(&self.pool, id, micros).await
    }

    async fn usage_daily(
        &self,
        scope: &str,
        id: Uuid,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        super::sqlite_edit::usage_daily(&self.pool, scope, id, from, to).await
    }

    async fn get_idempotent(
        &self,
        partner: Uuid,
        key: &str,
        since: i64,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        super::sqlite_edit::get_idempotent(&self.pool, partner, key, since).await
    }

    async fn put_idempotent(
        &self,
        partner: Uuid,
        key: &str,
        body_hash: &[u8],
        sealed: &[u8],
        now: i64,
        expire_before: i64,
    ) -> Result<(), StoreError> {
        let pool = &self.pool;
        super::sqlite_edit::put_idempotent(
            pool,
            partner,
            key,
            body_hash,
            sealed,
            now,
            expire_before,
        )
        .await
    }

    async fn update_partner(
        &self,
        id: Uuid,
        tier_ppm: Option<u64>,
        suspended: Option<bool>,
    ) -> Result<bool, StoreError> {
        super::sqlite_edit::update_partner(&self.pool, id, tier_ppm, suspended).await
    }

    async fn account_by_external_id(
        &self,
        partner: Uuid,
        ext: &str,
    ) -> Result<Option<Account>, StoreError> {
        super::sqlite_accounts::account_by_external_id(&self.pool, partner, ext).await
    }

    async fn get_account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        super::sqlite_accounts::get_account(&self.pool, id).await
    }

    async fn set_account_plan(
        &self,
        id: Uuid,
        plan: i64,
        charge: u64,
    ) -> Result<super::PlanChange, StoreError> {
        super::sqlite_accounts::set_account_plan(&self.pool, id, plan, charge).await
    }

    async fn live_keys_of_account(&self, id: Uuid) -> Result<Vec<Key>, StoreError> {
        super::sqlite_accounts::live_keys_of_account(&self.pool, id).await
    }

    async fn load_pins(&self) -> Result<Vec<super::PinRow>, StoreError> {
        super::sqlite_kubo::load_pins(&self.pool).await
    }

    async fn put_pin(
        &self,
        pin: &super::PinRow,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        super::sqlite_kubo::put_pin(&self.pool, pin, replaces, now).await
    }

    async fn remove_pin(&self, account: Uuid, cid: &str) -> Result<bool, StoreError> {
        super::sqlite_kubo::remove_pin(&self.pool, account, cid).await
    }

    async fn load_ipns(&self) -> Result<Vec<super::IpnsRow>, StoreError> {
        super::sqlite_kubo::load_ipns(&self.pool).await
    }

    async fn put_ipns(&self, account: Uuid, name: &str, now: i64) -> Result<(), StoreError> {
        super::sqlite_kubo::put_ipns(&self.pool, account, name, now).await
    }

    async fn remove_ipns(&self, account: Uuid, name: &str) -> Result<bool, StoreError> {
        super::sqlite_kubo::remove_ipns(&self.pool, account, name).await
    }

    async fn apply_llm_usage(
        &self,
        token: &str,
        day: &str,
        rows: &[crate::meter::llm_usage::LlmRow],
        now: i64,
    ) -> Result<bool, StoreError> {
        super::sqlite_llm::apply_llm_usage(&self.pool, token, day, rows, now).await
    }

    async fn llm_usage_of_key(
        &self,
        key: Uuid,
    ) -> Result<Vec<crate::meter::llm_usage::LlmRow>, StoreError> {
        super::sqlite_llm::llm_usage_of_key(&self.pool, key).await
    }
}

/// Maps a unique-constraint violation to `Conflict(field)`, anything else to `Query`.
fn write_error(err: sqlx::Error) -> StoreError {
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

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
