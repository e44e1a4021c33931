//! Usage on PostgreSQL: the sync. Each instance applies its deltas every interval in one
//! transaction that also reads back what every instance has counted since its last sync. The
//! syncs take one advisory lock, so the counter sequence numbers they stamp are in commit order
//! and "changed since my cursor" never misses a row. Each batch carries an idempotency token,
//! so a sync whose commit acknowledgement was lost is never applied twice.

use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{LOCK, PostgresStore, SYNC_LOCK};
use crate::meter::llm_usage::LlmRow;
use crate::meter::window::Window;
use crate::meter::{Batch, Delta};
use crate::store::rows::{int, usage_day};
use crate::store::sql::{ADD_USAGE_LEDGER, LLM_USAGE_CONFLICT};
use crate::store::{CounterRow, StoreError, Synced, UsageStore};

/// How long applied batch tokens are remembered (a retried flush is far younger).
const TOKEN_TTL_SECS: i64 = 86_400;

#[async_trait]
impl UsageStore for PostgresStore {
    async fn load_counters(&self, windows: &[String]) -> Result<Vec<CounterRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, scope_id, metric, time_window, value FROM counters \
             WHERE time_window = ANY($1)",
        )
        .bind(windows)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(counter_row).collect()
    }

    async fn apply_usage(
        &self,
        token: &str,
        batch: &Batch,
        now: i64,
        since: i64,
    ) -> Result<Synced, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).bind(SYNC_LOCK).execute(&mut *tx).await?;
        let applied = !batch.is_empty() && claim_token(&mut tx, token, now).await?;
        if applied {
            write_batch(&mut tx, batch).await?;
            write_usage_ledger(&mut tx, batch, now).await?;
            self.deduct(&mut tx, batch).await?;
        }
        let leases = self.renew(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT scope, scope_id, metric, time_window, value, seq FROM counters \
             WHERE seq > $1",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;
        let mut cursor = since;
        let mut totals = Vec::with_capacity(rows.len());
        for row in &rows {
            cursor = cursor.max(row.try_get::<i64, _>("seq")?);
            totals.push(counter_row(row)?);
        }
        let balances: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, balance_micros FROM partners")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let balances = balances
            .into_iter()
            .filter_map(|(id, b)| Uuid::parse_str(&id).ok().map(|id| (id, b)))
            .collect();
        Ok(Synced {
            applied,
            totals,
            balances,
            cursor,
            leases,
        })
    }

    async fn usage_daily(
        &self,
        scope: &str,
        id: Uuid,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
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
        let column = |f: fn(&LlmRow) -> u64| rows.iter().map(|r| int(f(r))).collect::<Vec<_>>();
        let sql = format!(
            "INSERT INTO llm_usage_daily (day, key_id, model, requests, input_tokens, \
             cached_input_tokens, output_tokens, cost_micros) \
             SELECT $1, k, m, SUM(r)::BIGINT, SUM(i)::BIGINT, SUM(c)::BIGINT, SUM(o)::BIGINT, \
             SUM(x)::BIGINT FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
             $6::BIGINT[], $7::BIGINT[], $8::BIGINT[]) AS t(k, m, r, i, c, o, x) \
             GROUP BY k, m{LLM_USAGE_CONFLICT}"
        );
        sqlx::query(&sql)
            .bind(day)
            .bind(
                rows.iter()
                    .map(|r| r.key_id.to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.model.clone()).collect::<Vec<_>>())
            .bind(column(|r| r.requests))
            .bind(column(|r| r.input_tokens))
            .bind(column(|r| r.cached_input_tokens))
            .bind(column(|r| r.output_tokens))
            .bind(column(|r| r.cost_micros))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn llm_usage_of_key(&self, key: Uuid) -> Result<Vec<LlmRow>, StoreError> {
        self.llm_rows_of_key(key).await
    }
}

/// Records a batch's idempotency token in `tx` (forgetting old ones); `false` if it was
/// applied before.
async fn claim_token(
    tx: &mut Transaction<'_, Postgres>,
    token: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM flush_batches WHERE applied_at < $1")
        .bind(now - TOKEN_TTL_SECS)
        .execute(&mut **tx)
        .await?;
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

/// Adds the batch's deltas to their window totals (stamped with a fresh counter sequence
/// number) and daily sums, and charges the partners' balances: one statement each.
async fn write_batch(tx: &mut Transaction<'_, Postgres>, batch: &Batch) -> Result<(), StoreError> {
    let deltas = &batch.deltas;
    let text = |f: fn(&Delta) -> String| deltas.iter().map(f).collect::<Vec<_>>();
    let amounts: Vec<i64> = deltas.iter().map(|d| int(d.amount)).collect();
    if !deltas.is_empty() {
        let seq: i64 = sqlx::query_scalar("SELECT nextval('counter_seq')")
            .fetch_one(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO counters (scope, scope_id, metric, time_window, value, seq) \
             SELECT s, i, m, w, SUM(v)::BIGINT, $6 \
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
             AS t(s, i, m, w, v) GROUP BY s, i, m, w \
             ON CONFLICT (scope, scope_id, metric, time_window) \
             DO UPDATE SET value = counters.value + excluded.value, seq = excluded.seq",
        )
        .bind(text(|d| d.scope.as_str().to_string()))
        .bind(text(|d| d.id.to_string()))
        .bind(text(|d| d.metric.as_str().to_string()))
        .bind(text(|d| d.label.clone()))
        .bind(&amounts)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
        // Lifetime totals duplicate the daily cost, so they stay out of the daily sums.
        let daily: Vec<usize> = (0..deltas.len())
            .filter(|i| deltas[*i].window != Window::Lifetime)
            .collect();
        let pick =
            |f: fn(&Delta) -> String| daily.iter().map(|i| f(&deltas[*i])).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO usage_daily (day, scope, scope_id, metric, value) \
             SELECT d, s, i, m, SUM(v)::BIGINT \
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) \
             AS t(d, s, i, m, v) GROUP BY d, s, i, m \
             ON CONFLICT (day, scope, scope_id, metric) \
             DO UPDATE SET value = usage_daily.value + excluded.value",
        )
        .bind(pick(|d| d.day.clone()))
        .bind(pick(|d| d.scope.as_str().to_string()))
        .bind(pick(|d| d.id.to_string()))
        .bind(pick(|d| d.metric.as_str().to_string()))
        .bind(daily.iter().map(|i| amounts[*i]).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !batch.charges.is_empty() {
        sqlx::query(
            "UPDATE partners SET balance_micros = partners.balance_micros - t.v \
             FROM (SELECT p, SUM(v)::BIGINT AS v FROM UNNEST($1::TEXT[], $2::BIGINT[]) \
             AS u(p, v) GROUP BY p) AS t WHERE partners.id = t.p",
        )
        .bind(
            batch
                .charges
                .iter()
                .map(|(p, _)| p.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .charges
                .iter()
                .map(|(_, v)| int(*v))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Grows each charged partner's usage ledger entry of the day by its charges in `batch`.
async fn write_usage_ledger(
    tx: &mut Transaction<'_, Postgres>,
    batch: &Batch,
    now: i64,
) -> Result<(), StoreError> {
    let day = usage_day(now);
    let mut by_partner: std::collections::BTreeMap<Uuid, u64> = Default::default();
    for (partner, amount) in &batch.charges {
        *by_partner.entry(*partner).or_default() += *amount;
    }
    for (partner, amount) in by_partner {
        sqlx::query(ADD_USAGE_LEDGER)
            .bind(Uuid::now_v7().to_string())
            .bind(partner.to_string())
            .bind(now)
            .bind(-int(amount))
            .bind(&day)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A `counters` row.
fn counter_row(row: &sqlx::postgres::PgRow) -> Result<CounterRow, StoreError> {
    let id: String = row.try_get("scope_id")?;
    let value: i64 = row.try_get("value")?;
    Ok(CounterRow {
        scope: row.try_get("scope")?,
        scope_id: Uuid::parse_str(&id)
            .map_err(|_| StoreError::Corrupt(format!("counter scope_id `{id}`")))?,
        metric: row.try_get("metric")?,
        window: row.try_get("time_window")?,
        value: value.max(0) as u64,
    })
}
