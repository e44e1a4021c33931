//! Budget leases on PostgreSQL: grants (row by row under the sync lock, so what is counted
//! plus every lease never exceeds a limit), returns, and the deduction and renewal each sync
//! makes. See `migrations/postgres/0002_leases.sql`.

use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{LOCK, PostgresStore, SYNC_LOCK};
use crate::meter::Batch;
use crate::meter::usage::{Metric, Scope};
use crate::store::StoreError;
use crate::store::cluster::{Budget, LeaseId, LeaseRequest};
use crate::store::rows::int;

/// The database's clock, µs since the epoch.
const NOW_MICROS: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT";

impl PostgresStore {
    /// See `ClusterStore::grant_leases`.
    pub(super) async fn grant(&self, requests: &[LeaseRequest]) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(LOCK).bind(SYNC_LOCK).execute(&mut *tx).await?;
        let now: i64 = sqlx::query_scalar(&format!("SELECT {NOW_MICROS}"))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM leases WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut granted = Vec::with_capacity(requests.len());
        for request in requests {
            granted.push(self.grant_one(&mut tx, request, now).await?);
        }
        tx.commit().await?;
        Ok(granted)
    }

    async fn grant_one(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        request: &LeaseRequest,
        now: i64,
    ) -> Result<u64, StoreError> {
        let LeaseId { budget, id, window } = &request.lease;
        let (scope, metric) = budget.names();
        let id = id.to_string();
        let (others, mine): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(amount) FILTER (WHERE instance <> $5), 0)::BIGINT, \
             COALESCE(SUM(amount) FILTER (WHERE instance = $5), 0)::BIGINT FROM leases \
             WHERE scope = $1 AND scope_id = $2 AND metric = $3 AND time_window = $4",
        )
        .bind(scope)
        .bind(&id)
        .bind(metric)
        .bind(window)
        .bind(&self.instance)
        .fetch_one(&mut **tx)
        .await?;
        let budget: i64 = match budget {
            Budget::KeyCost => {
                let counted: Option<i64> = sqlx::query_scalar(
                    "SELECT value FROM counters WHERE scope = 'key' AND scope_id = $1 \
                     AND metric = $2 AND time_window = $3",
                )
                .bind(&id)
                .bind(Metric::Cost.as_str())
                .bind(window)
                .fetch_optional(&mut **tx)
                .await?;
                int(request.limit).saturating_sub(counted.unwrap_or(0))
            }
            Budget::PartnerBalance => {
                sqlx::query_scalar::<_, i64>("SELECT balance_micros FROM partners WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .unwrap_or(0)
            }
        };
        let left = budget.saturating_sub(others).saturating_sub(mine).max(0) as u64;
        let grant = grant_size(left, request);
        if grant == 0 {
            return Ok(mine.max(0) as u64);
        }
        let amount: i64 = sqlx::query_scalar(
            "INSERT INTO leases (scope, scope_id, metric, time_window, instance, amount, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (scope, scope_id, metric, time_window, instance) DO UPDATE \
             SET amount = leases.amount + excluded.amount, expires_at = excluded.expires_at \
             RETURNING amount",
        )
        .bind(scope)
        .bind(&id)
        .bind(metric)
        .bind(window)
        .bind(&self.instance)
        .bind(int(grant))
        .bind(now.saturating_add(self.lease_ttl_micros))
        .fetch_one(&mut **tx)
        .await?;
        Ok(amount.max(0) as u64)
    }

    /// See `ClusterStore::return_leases`.
    pub(super) async fn give_back(&self, leases: &[LeaseId]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let [scopes, ids, metrics, windows] =
            columns(leases.iter().map(|l| (l.budget, l.id, l.window.as_str())));
        sqlx::query(
            "DELETE FROM leases USING UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[]) \
             AS t(s, i, m, w) WHERE leases.instance = $1 AND leases.scope = t.s \
             AND leases.scope_id = t.i AND leases.metric = t.m AND leases.time_window = t.w",
        )
        .bind(&self.instance)
        .bind(scopes)
        .bind(ids)
        .bind(metrics)
        .bind(windows)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// In a sync's transaction: takes what the applied `batch` spent from this instance's
    /// leases (key costs, partner charges).
    pub(super) async fn deduct(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &Batch,
    ) -> Result<(), StoreError> {
        let key_costs = batch
            .deltas
            .iter()
            .filter(|d| d.scope == Scope::Key && d.metric == Metric::Cost)
            .map(|d| (Budget::KeyCost, d.id, d.label.as_str(), d.amount));
        let charges = batch
            .charges
            .iter()
            .map(|(id, v)| (Budget::PartnerBalance, *id, "lifetime", *v));
        let spent: Vec<_> = key_costs.chain(charges).collect();
        if spent.is_empty() {
            return Ok(());
        }
        let [scopes, ids, metrics, windows] =
            columns(spent.iter().map(|(b, i, w, _)| (*b, *i, *w)));
        let amounts: Vec<i64> = spent.iter().map(|(.., amount)| int(*amount)).collect();
        sqlx::query(
            "UPDATE leases SET amount = GREATEST(leases.amount - t.v, 0) \
             FROM (SELECT s, i, m, w, SUM(v)::BIGINT AS v FROM UNNEST($2::TEXT[], $3::TEXT[], \
             $4::TEXT[], $5::TEXT[], $6::BIGINT[]) AS u(s, i, m, w, v) GROUP BY s, i, m, w) AS t \
             WHERE leases.instance = $1 AND leases.scope = t.s AND leases.scope_id = t.i \
             AND leases.metric = t.m AND leases.time_window = t.w",
        )
        .bind(&self.instance)
        .bind(scopes)
        .bind(ids)
        .bind(metrics)
        .bind(windows)
        .bind(amounts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// In a sync's transaction: renews every lease of this instance and lists them.
    pub(super) async fn renew(
        &self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<Vec<(LeaseId, u64)>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE leases SET expires_at = {NOW_MICROS} + $2 WHERE instance = $1 \
             RETURNING scope, scope_id, metric, time_window, amount"
        ))
        .bind(&self.instance)
        .bind(self.lease_ttl_micros)
        .fetch_all(&mut **tx)
        .await?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in rows {
            let (scope, metric): (String, String) = (row.try_get("scope")?, row.try_get("metric")?);
            let id: String = row.try_get("scope_id")?;
            let (Some(budget), Ok(id)) = (Budget::parse(&scope, &metric), Uuid::parse_str(&id))
            else {
                return Err(StoreError::Corrupt(format!("lease {scope}/{metric}/{id}")));
            };
            let amount: i64 = row.try_get("amount")?;
            let window = row.try_get("time_window")?;
            leases.push((LeaseId { budget, id, window }, amount.max(0) as u64));
        }
        Ok(leases)
    }
}

/// The key columns (scope, scope_id, metric, time_window) of leases, for `UNNEST`.
fn columns<'a>(leases: impl Iterator<Item = (Budget, Uuid, &'a str)>) -> [Vec<String>; 4] {
    let mut columns: [Vec<String>; 4] = Default::default();
    for (budget, id, window) in leases {
        let (scope, metric) = budget.names();
        columns[0].push(scope.to_string());
        columns[1].push(id.to_string());
        columns[2].push(metric.to_string());
        columns[3].push(window.to_string());
    }
    columns
}

/// How much to add to a lease with `left` unleased: enough to hold `fraction` of what this
/// instance could hold (what it has unspent plus `left`), and at least the need. A slice
/// smaller than the need is of no use and would strand budget another instance could spend:
/// then nothing is granted.
fn grant_size(left: u64, request: &LeaseRequest) -> u64 {
    if left < request.need {
        return 0;
    }
    let target = (left.saturating_add(request.unspent) as f64 * request.fraction).ceil() as u64;
    target
        .saturating_sub(request.unspent)
        .max(request.need)
        .min(left)
}
