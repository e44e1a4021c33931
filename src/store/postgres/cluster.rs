//! The cluster feed on PostgreSQL: a dedicated connection `LISTEN`s on this schema's channel
//! (triggers `NOTIFY` with `key:<id>`, `partner:<id>`, `account:<id>`), reconnecting with a
//! back-off and announcing every (re)connection as [`Change::Resync`]; rows changed since a
//! cursor for the periodic reconcile; shared rate-limit windows.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PostgresStore;
use crate::domain::key::{Account, Key, Partner};
use crate::store::StoreError;
use crate::store::cluster::{Change, Changed, ClusterStore, LeaseId, LeaseRequest, LedgerView};
use crate::store::rows::{AccountRow, KeyRow, PartnerRow};
use crate::store::sql::{select_accounts, select_keys, select_partners};
use uuid::Uuid;

/// Changes buffered between the listener and the instance applying them.
const FEED_BUFFER: usize = 4096;
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn subscribe(&self) -> Result<mpsc::Receiver<Change>, StoreError> {
        let (tx, rx) = mpsc::channel(FEED_BUFFER);
        // The first connection is made here, so a store that cannot be reached at start is an
        // error at start.
        let listener = listen(self).await?;
        let store = self.clone();
        tokio::spawn(async move { feed(store, listener, tx).await });
        Ok(rx)
    }

    async fn counter_cursor(&self) -> Result<i64, StoreError> {
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM counters")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq)
    }

    async fn clock_micros(&self) -> Result<i64, StoreError> {
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT")
                .fetch_one(&self.pool)
                .await?;
        Ok(now)
    }

    async fn changed_since(&self, since_micros: i64) -> Result<Changed, StoreError> {
        let now_micros = self.clock_micros().await?;
        let keys = sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE updated_at >= $1"))
            .bind(since_micros)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Key::try_from)
            .collect::<Result<_, _>>()?;
        let partners = sqlx::query_as::<_, PartnerRow>(select_partners!(" WHERE updated_at >= $1"))
            .bind(since_micros)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Partner::try_from)
            .collect::<Result<_, _>>()?;
        let accounts = sqlx::query_as::<_, AccountRow>(select_accounts!(" WHERE updated_at >= $1"))
            .bind(since_micros)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Account::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Changed {
            keys,
            partners,
            accounts,
            now_micros,
        })
    }

    async fn hit(&self, bucket: &str, now: i64, expires_at: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM rate_windows WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let hits: i64 = sqlx::query_scalar(
            "INSERT INTO rate_windows (bucket, hits, expires_at) VALUES ($1, 1, $2) \
             ON CONFLICT (bucket) DO UPDATE SET hits = rate_windows.hits + 1 RETURNING hits",
        )
        .bind(bucket)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(hits.max(0) as u64)
    }

    async fn grant_leases(&self, requests: &[LeaseRequest]) -> Result<Vec<u64>, StoreError> {
        self.grant(requests).await
    }

    async fn return_leases(&self, leases: &[LeaseId]) -> Result<(), StoreError> {
        self.give_back(leases).await
    }

    async fn lock_ledger(&self, account: Uuid, items: &[&str]) -> Result<LedgerView, StoreError> {
        self.lock_ledger_of(account, items).await
    }

    async fn read_ledger(&self, account: Uuid) -> Result<LedgerView, StoreError> {
        self.read_ledger_of(account).await
    }

    async fn lock(&self, names: &[&str]) -> Result<Box<dyn Send + Sync>, StoreError> {
        self.lock_named(names).await
    }
}

/// A listening connection on the store's channel.
async fn listen(store: &PostgresStore) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect_with(&store.pool).await?;
    // A dropped connection is replaced by `feed` itself, so it can announce the reconnection.
    listener.ignore_pool_close_event(true);
    listener.listen(&store.channel).await?;
    Ok(listener)
}

/// Forwards notifications until the receiver is gone; on a lost connection reconnects (with a
/// back-off) and sends `Resync`, since notifications sent meanwhile are lost.
async fn feed(store: PostgresStore, mut listener: PgListener, tx: mpsc::Sender<Change>) {
    if tx.send(Change::Resync).await.is_err() {
        return;
    }
    loop {
        // Stops (giving the connection back) as soon as the receiver is gone, not at the next
        // notification: a pool being closed waits for its connections.
        let received = tokio::select! {
            received = listener.try_recv() => received,
            _ = tx.closed() => return,
        };
        match received {
            Ok(Some(note)) => {
                if let Some(change) = Change::parse(note.payload())
                    && tx.send(change).await.is_err()
                {
                    return;
                }
                continue;
            }
            Ok(None) => tracing::warn!(store = %store.url, "store notification connection lost"),
            Err(err) => {
                tracing::warn!(store = %store.url, error = %err, "store notifications failed")
            }
        }
        listener = match reconnect(&store, &tx).await {
            Some(listener) => listener,
            None => return,
        };
        if tx.send(Change::Resync).await.is_err() {
            return;
        }
    }
}

/// Connects again, waiting longer after each failure; `None` once the receiver is gone.
async fn reconnect(store: &PostgresStore, tx: &mpsc::Sender<Change>) -> Option<PgListener> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if tx.is_closed() {
            return None;
        }
        match listen(store).await {
            Ok(listener) => {
                tracing::info!(store = %store.url, "store notifications reconnected");
                return Some(listener);
            }
            Err(err) => {
                tracing::debug!(store = %store.url, error = %err, "store reconnect failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
