//! Usage persistence in SQL shared by the stores: counter totals per window, daily sums and
//! partner balance charges, applied as one idempotent transaction per flush batch.

use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::rows::int;
use super::{CounterRow, StoreError};
use crate::meter::Batch;
use crate::meter::window::Window;

/// How long applied batch tokens are remembered (a retried flush is far younger).
const TOKEN_TTL_SECS: i64 = 86_400;

/// Counter totals of the given windows.
pub async fn load_counters(
    pool: &SqlitePool,
    windows: &[String],
) -> Result<Vec<CounterRow>, StoreError> {
    let mut out = Vec::new();
    for window in windows {
        let rows = sqlx::query(
            "SELECT scope, scope_id, metric, time_window, value FROM counters \
             WHERE time_window = $1",
        )
        .bind(window)
        .fetch_all(pool)
        .await?;
        for row in rows {
            let id: String = row.try_get("scope_id")?;
            let value: i64 = row.try_get("value")?;
            out.push(CounterRow {
                scope: row.try_get("scope")?,
                scope_id: Uuid::parse_str(&id)
                    .map_err(|_| StoreError::Corrupt(format!("counter scope_id `{id}`")))?,
                metric: row.try_get("metric")?,
                window: row.try_get("time_window")?,
                value: value.max(0) as u64,
            });
        }
    }
    Ok(out)
}

/// Applies a batch once; `Ok(false)` if its token was applied before.
pub async fn apply_usage(
    pool: &SqlitePool,
    token: &str,
    batch: &Batch,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO flush_batches (token, applied_at) VALUES ($1, $2) \
         ON CONFLICT (token) DO NOTHING",
    )
    .bind(token)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.rollback().await?;
        return Ok(false);
    }
    for d in &batch.deltas {
        let (scope, id, metric) = (d.scope.as_str(), d.id.to_string(), d.metric.as_str());
        sqlx::query(
            "INSERT INTO counters (scope, scope_id, metric, time_window, value) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, scope_id, metric, time_window) \
             DO UPDATE SET value = counters.value + excluded.value",
        )
        .bind(scope)
        .bind(&id)
        .bind(metric)
        .bind(&d.label)
        .bind(int(d.amount))
        .execute(&mut *tx)
        .await?;
        // Lifetime totals duplicate the daily cost; daily sums take each amount once.
        if d.window != Window::Lifetime {
            sqlx::query(
                "INSERT INTO usage_daily (day, scope, scope_id, metric, value) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (day, scope, scope_id, metric) \
                 DO UPDATE SET value = usage_daily.value + excluded.value",
            )
            .bind(&d.day)
            .bind(scope)
            .bind(&id)
            .bind(metric)
            .bind(int(d.amount))
            .execute(&mut *tx)
            .await?;
        }
    }
    for (partner, amount) in &batch.charges {
        sqlx::query("UPDATE partners SET balance_micros = balance_micros - $1 WHERE id = $2")
            .bind(int(*amount))
            .bind(partner.to_string())
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM flush_batches WHERE applied_at < $1")
        .bind(now - TOKEN_TTL_SECS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Adds `micros` to a partner's balance; the new balance, or `None` if there is no partner.
pub async fn add_partner_balance(
    pool: &SqlitePool,
    id: Uuid,
    micros: i64,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "UPDATE partners SET balance_micros = balance_micros + $1 WHERE id = $2 \
         RETURNING balance_micros",
    )
    .bind(micros)
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    row.map(|r| r.try_get::<i64, _>("balance_micros"))
        .transpose()
        .map_err(StoreError::from)
}
