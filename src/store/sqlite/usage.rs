//! Usage on SQLite: counter totals per window, daily sums and partner balance charges, applied
//! as one idempotent transaction per flush batch (counter deltas through the usage journal, see
//! `journal`), and LLM usage by key and model.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use super::{SqliteStore, journal};
use crate::meter::llm_usage::LlmRow;
use crate::meter::window::Window;
use crate::meter::{Batch, Delta};
use crate::store::rows::{int, usage_day};
use crate::store::sql::{ADD_USAGE_LEDGER, LLM_USAGE_CONFLICT};
use crate::store::{CounterRow, StoreError, Synced, UsageStore};

#[async_trait]
impl UsageStore for SqliteStore {
    async fn load_counters(&self, windows: &[String]) -> Result<Vec<CounterRow>, StoreError> {
        load_counters(&self.pool, windows).await
    }

    /// One instance uses a SQLite store, so nothing is read back: the totals are its own.
    async fn apply_usage(
        &self,
        token: &str,
        batch: &Batch,
        now: i64,
        since: i64,
    ) -> Result<Synced, StoreError> {
        let applied = apply_usage(&self.pool, token, batch, now).await?;
        Ok(Synced {
            applied,
            cursor: since,
            ..Synced::default()
        })
    }

    async fn usage_daily(
        &self,
        scope: &str,
        id: Uuid,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        journal::fold_now(&self.pool).await?;
        self.daily_rows(scope, id, from, to).await
    }

    async fn apply_llm_usage(
        &self,
        token: &str,
        day: &str,
        rows: &[LlmRow],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !claim_token(&mut tx, token, now).await? {
            return Ok(false);
        }
        // 500 rows × 8 binds stays far below SQLite's bind limit.
        for chunk in rows.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO llm_usage_daily (day, key_id, model, requests, input_tokens, \
                 cached_input_tokens, output_tokens, cost_micros) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(day.to_string())
                    .push_bind(r.key_id.to_string())
                    .push_bind(r.model.clone())
                    .push_bind(int(r.requests))
                    .push_bind(int(r.input_tokens))
                    .push_bind(int(r.cached_input_tokens))
                    .push_bind(int(r.output_tokens))
                    .push_bind(int(r.cost_micros));
            });
            q.push(LLM_USAGE_CONFLICT);
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn llm_usage_of_key(&self, key: Uuid) -> Result<Vec<LlmRow>, StoreError> {
        self.llm_rows_of_key(key).await
    }
}

/// Rows per multi-row upsert (5 bound values each, far under SQLite's variable limit).
const ROWS_PER_STATEMENT: usize = 500;

/// How long applied batch tokens are remembered (a retried flush is far younger).
const TOKEN_TTL_SECS: i64 = 86_400;

/// Counter totals of the given windows (the journal folded in first).
async fn load_counters(
    pool: &SqlitePool,
    windows: &[String],
) -> Result<Vec<CounterRow>, StoreError> {
    journal::fold_now(pool).await?;
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

/// Records a flush batch's idempotency token in `tx`; `false` if it was applied before.
pub async fn claim_token(
    tx: &mut Transaction<'_, Sqlite>,
    token: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO flush_batches (token, applied_at) VALUES ($1, $2) \
         ON CONFLICT (token) DO NOTHING",
    )
    .bind(token)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Applies a batch once; `Ok(false)` if its token was applied before.
async fn apply_usage(
    pool: &SqlitePool,
    token: &str,
    batch: &Batch,
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    if !claim_token(&mut tx, token, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    // The deltas go to the journal; they reach `counters` and `usage_daily` when it is folded.
    journal::append(&mut tx, &batch.deltas).await?;
    let day = usage_day(now);
    for (partner, amount) in &batch.charges {
        sqlx::query("UPDATE partners SET balance_micros = balance_micros - $1 WHERE id = $2")
            .bind(int(*amount))
            .bind(partner.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(ADD_USAGE_LEDGER)
            .bind(Uuid::now_v7().to_string())
            .bind(partner.to_string())
            .bind(now)
            .bind(-int(*amount))
            .bind(&day)
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

/// Adds deltas to their window totals and daily sums (the journal fold).
pub async fn write_totals(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &[Delta],
) -> Result<(), StoreError> {
    // Multi-row upserts: one statement per chunk instead of two per delta.
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        upsert_counters(tx, chunk).await?;
        let daily: Vec<&Delta> = chunk
            .iter()
            .filter(|d| d.window != Window::Lifetime)
            .collect();
        if !daily.is_empty() {
            upsert_daily(tx, &daily).await?;
        }
    }
    Ok(())
}

/// Adds the deltas to their window totals.
async fn upsert_counters(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &[Delta],
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO counters (scope, scope_id, metric, time_window, value) ",
    );
    q.push_values(deltas, |mut row, d| {
        row.push_bind(d.scope.as_str())
            .push_bind(d.id.to_string())
            .push_bind(d.metric.as_str())
            .push_bind(d.label.clone())
            .push_bind(int(d.amount));
    });
    q.push(
        " ON CONFLICT (scope, scope_id, metric, time_window) \
         DO UPDATE SET value = counters.value + excluded.value",
    );
    q.build().execute(&mut **tx).await.map(|_| ())
}

/// Adds the deltas to their daily sums (lifetime totals duplicate the daily cost, so they are
/// left out by the caller).
async fn upsert_daily(
    tx: &mut Transaction<'_, Sqlite>,
    deltas: &[&Delta],
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO usage_daily (day, scope, scope_id, metric, value) ",
    );
    q.push_values(deltas, |mut row, d| {
        row.push_bind(d.day.clone())
            .push_bind(d.scope.as_str())
            .push_bind(d.id.to_string())
            .push_bind(d.metric.as_str())
            .push_bind(int(d.amount));
    });
    q.push(
        " ON CONFLICT (day, scope, scope_id, metric) \
         DO UPDATE SET value = usage_daily.value + excluded.value",
    );
    q.build().execute(&mut **tx).await.map(|_| ())
}
