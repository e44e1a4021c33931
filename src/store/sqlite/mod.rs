//! SQLite store, the embedded zero-setup default. One database file in WAL mode with
//! `synchronous = FULL` (a crash never loses a committed key, partner or payment) and foreign
//! keys on, migrated from `migrations/sqlite/` on open. Every multi-statement change runs in one
//! transaction that writes first, so concurrent writers queue on the busy timeout instead of
//! failing on a lock upgrade. One file per role trait; a SQLite store serves one instance, so it
//! has no cluster feed.

mod journal;
mod keys;
mod usage;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use super::rows;
use super::sql::{INSERT_ACCOUNT, UPSERT_PLAN};
use super::{SettingsStore, Store, StoreError};
use crate::config::model::Plan;
use crate::domain::key::Account;

/// The embedded SQLite migrations.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite allows one writer at a time; a few connections are enough for concurrent readers.
const MAX_CONNECTIONS: u32 = 4;

/// SQLite-backed store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file (creating it if missing) and applies pending migrations.
    /// A path that cannot be opened or created is `StoreError::Open` naming it; a database
    /// migrated by a newer Tollgate is `StoreError::TooNew`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let url = format!("sqlite://{}", path.display());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: url.clone(),
                source,
            })?;
        super::migrate(&MIGRATOR, &pool, &url).await?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool (tests look inside).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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
            .map_err(super::write_error)?;
        Ok(())
    }
}

impl Store for SqliteStore {}

#[async_trait]
impl SettingsStore for SqliteStore {
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
        let mut tx = self.pool.begin().await?;
        for plan in plans {
            let limits = rows::plan_limits(plan);
            sqlx::query(UPSERT_PLAN)
                .bind(plan.id)
                .bind(&plan.name)
                .bind(rows::int(plan.price_micros))
                .bind(limits[0])
                .bind(limits[1])
                .bind(limits[2])
                .bind(limits[3])
                .bind(limits[4])
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

super::common::row_stores!(SqliteStore, "");

#[cfg(test)]
mod tests;
