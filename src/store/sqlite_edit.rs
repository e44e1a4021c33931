//! SQL for key edits (PATCH) and the reseller API's reads: daily usage series and idempotent
//! create responses.

use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::StoreError;
use super::rows;
use crate::domain::key::Key;

/// Writes the editable fields of `key` onto the row `id`.
pub async fn edit_key(
    tx: &mut Transaction<'_, Sqlite>,
    id: &str,
    key: &Key,
) -> Result<SqliteQueryResult, sqlx::Error> {
    let limits = &key.limits;
    sqlx::query(
        "UPDATE keys SET label = $1, description = $2, permissions = $3, ip_whitelist = $4, \
         expiration_date = $5, daily_cost_limit_micros = $6, total_cost_limit_micros = $7, \
         concurrency_limit = $8, rate_limit_per_minute = $9, models = $10 WHERE id = $11",
    )
    .bind(&key.label)
    .bind(&key.description)
    .bind(i64::from(key.permissions.bits()))
    .bind(rows::ip_whitelist_json(&key.ip_whitelist))
    .bind(rows::date_text(key.expiration_date))
    .bind(limits.daily_cost_limit_micros.map(rows::int))
    .bind(limits.total_cost_limit_micros.map(rows::int))
    .bind(limits.concurrency_limit.map(|v| i64::from(v.get())))
    .bind(limits.rate_limit_per_minute.map(|v| i64::from(v.get())))
    .bind(rows::models_json(&limits.models))
    .bind(id)
    .execute(&mut **tx)
    .await
}

/// `(day, metric, value)` rows of `usage_daily` for one scope between two days (inclusive).
pub async fn usage_daily(
    pool: &SqlitePool,
    scope: &str,
    id: Uuid,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    super::usage_journal::fold_now(pool).await?;
    let rows = sqlx::query(
        "SELECT day, metric, value FROM usage_daily \
         WHERE scope = $1 AND scope_id = $2 AND day >= $3 AND day <= $4 ORDER BY day",
    )
    .bind(scope)
    .bind(id.to_string())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            let value: i64 = r.try_get("value")?;
            Ok((r.try_get("day")?, r.try_get("metric")?, value.max(0) as u64))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// A stored idempotent response younger than `since`: `(body hash, sealed response)`.
pub async fn get_idempotent(
    pool: &SqlitePool,
    partner: Uuid,
    key: &str,
    since: i64,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
    let row = sqlx::query(
        "SELECT body_hash, response FROM idempotency \
         WHERE partner_id = $1 AND idem_key = $2 AND created_at >= $3",
    )
    .bind(partner.to_string())
    .bind(key)
    .bind(since)
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.try_get("body_hash")?, r.try_get("response")?)))
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// Stores an idempotent response (replacing an expired one) and forgets those older than
/// `expire_before`.
pub async fn put_idempotent(
    pool: &SqlitePool,
    partner: Uuid,
    key: &str,
    body_hash: &[u8],
    sealed: &[u8],
    now: i64,
    expire_before: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
        .bind(expire_before)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO idempotency (partner_id, idem_key, body_hash, response, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (partner_id, idem_key) DO UPDATE SET \
         body_hash = excluded.body_hash, response = excluded.response, \
         created_at = excluded.created_at",
    )
    .bind(partner.to_string())
    .bind(key)
    .bind(body_hash)
    .bind(sealed)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sets a partner's tier multiplier and/or suspension; `false` if there is no such partner.
pub async fn update_partner(
    pool: &SqlitePool,
    id: Uuid,
    tier_ppm: Option<u64>,
    suspended: Option<bool>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE partners SET tier_multiplier_ppm = COALESCE($1, tier_multiplier_ppm), \
         suspended = COALESCE($2, suspended) WHERE id = $3",
    )
    .bind(tier_ppm.map(rows::int))
    .bind(suspended)
    .bind(id.to_string())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
