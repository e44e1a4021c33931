//! LLM usage SQL: per-day, per-key, per-model sums added by the flush (idempotent by batch
//! token, like the counters) and read back per key.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::StoreError;
use crate::meter::llm_usage::LlmRow;

/// Adds `rows` to `day`'s sums in one transaction; `Ok(false)` if `token` was applied before.
pub async fn apply_llm_usage(
    pool: &SqlitePool,
    token: &str,
    day: &str,
    rows: &[LlmRow],
    now: i64,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    if !super::usage_sql::claim_token(&mut tx, token, now).await? {
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
        q.push(
            " ON CONFLICT (day, key_id, model) DO UPDATE SET \
             requests = llm_usage_daily.requests + excluded.requests, \
             input_tokens = llm_usage_daily.input_tokens + excluded.input_tokens, \
             cached_input_tokens = llm_usage_daily.cached_input_tokens \
             + excluded.cached_input_tokens, \
             output_tokens = llm_usage_daily.output_tokens + excluded.output_tokens, \
             cost_micros = llm_usage_daily.cost_micros + excluded.cost_micros",
        );
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A key's lifetime sums by model.
pub async fn llm_usage_of_key(pool: &SqlitePool, key: Uuid) -> Result<Vec<LlmRow>, StoreError> {
    type Sums = (String, i64, i64, i64, i64, i64);
    let rows: Vec<Sums> = sqlx::query_as(
        "SELECT model, SUM(requests), SUM(input_tokens), SUM(cached_input_tokens), \
         SUM(output_tokens), SUM(cost_micros) FROM llm_usage_daily WHERE key_id = $1 \
         GROUP BY model ORDER BY model",
    )
    .bind(key.to_string())
    .fetch_all(pool)
    .await?;
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(rows
        .into_iter()
        .map(|(model, requests, input, cached, output, cost)| LlmRow {
            key_id: key,
            model,
            requests: count(requests),
            input_tokens: count(input),
            cached_input_tokens: count(cached),
            output_tokens: count(output),
            cost_micros: count(cost),
        })
        .collect())
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
