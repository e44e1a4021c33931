//! PostgreSQL store, for several instances acting as one gateway. Same tables as the SQLite
//! store (row-level SQL shared through `store::sql`), migrated from `migrations/postgres/` on
//! open, plus what sharing needs: change notifications from triggers (`cluster`), usage syncs
//! that read back every instance's totals (`usage`), shared rate-limit windows. One file per
//! role trait; what is the same on both back-ends comes from `store::common`.

mod cluster;
mod keys;
mod lease;
mod locks;
pub mod scratch;
mod usage;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::cluster::ClusterStore;
use super::rows;
use super::sql::{INSERT_ACCOUNT, UPSERT_PLAN};
use super::{SettingsStore, Store, StoreError, redact};
use crate::config::model::Plan;
use crate::domain::key::Account;

/// The embedded PostgreSQL migrations.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a query waits for a free connection (or a new one) before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection settings from `[store]`.
#[derive(Clone, Copy, Debug)]
pub struct PgSettings {
    pub pool_size: u32,
    pub statement_timeout: Duration,
    /// How long a budget lease outlives its last renewal.
    pub lease_ttl: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            pool_size: 10,
            statement_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// PostgreSQL-backed store.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The URL with its password hidden, for messages.
    url: String,
    /// The notification channel of this schema (`tollgate_<schema>`).
    channel: String,
    /// This process's name in the `leases` table (new at every start).
    instance: String,
    /// `PgSettings::lease_ttl` in µs.
    lease_ttl_micros: i64,
    /// Connections lock holders may take at once (half the pool; see `locks`).
    lock_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl PostgresStore {
    /// Connects and applies pending migrations. A wrong URL, host or password is
    /// `StoreError::Open` naming the URL with the password redacted; a schema migrated by a
    /// newer Tollgate is `StoreError::TooNew`.
    pub async fn open(url: &str, settings: PgSettings) -> Result<Self, StoreError> {
        let shown = redact(url);
        let open_error = |source| StoreError::Open {
            url: shown.clone(),
            source,
        };
        let timeout_ms = settings.statement_timeout.as_millis().max(1).to_string();
        let mut options = PgConnectOptions::from_str(url)
            .map_err(open_error)?
            .options([("statement_timeout", timeout_ms.as_str())]);
        // `tollgate` in `pg_stat_activity`, unless the URL names the application itself.
        if options.get_application_name().is_none() {
            options = options.application_name("tollgate");
        }
        // One connection first, so a wrong host, database or password fails at once with the
        // server's own reason instead of after the pool's retries.
        let first = PgConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        first.close().await.map_err(open_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        super::migrate(&MIGRATOR, &pool, url).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        Ok(PostgresStore {
            pool,
            url: shown,
            channel: format!("tollgate_{schema}"),
            instance: Uuid::new_v4().to_string(),
            lease_ttl_micros: i64::try_from(settings.lease_ttl.as_micros()).unwrap_or(i64::MAX),
            lock_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                (settings.pool_size as usize / 2).max(1),
            )),
        })
    }

    /// The connection pool (tests and benchmarks look inside).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn insert_account(
        conn: &mut sqlx::PgConnection,
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

impl Store for PostgresStore {
    fn cluster(&self) -> Option<&dyn ClusterStore> {
        Some(self)
    }
}

#[async_trait]
impl SettingsStore for PostgresStore {
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

    /// One statement: two instances starting at once both end up with the first value.
    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let stored = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(stored)
    }

    /// Serialised by an advisory lock: instances starting together would otherwise deadlock
    /// upserting the same plans in different orders.
    async fn sync_plans(&self, plans: &[Plan]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).bind(PLANS_LOCK).execute(&mut *tx).await?;
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

/// Advisory locks, one per serialised operation and schema (several gateways or test runs may
/// share a database): `pg_advisory_xact_lock(hashtext(current_schema()), <id>)`.
pub(super) const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext(current_schema()), $1)";
const PLANS_LOCK: i32 = 1;
pub(super) const SYNC_LOCK: i32 = 2;

super::common::row_stores!(PostgresStore, " COLLATE \"C\"");
