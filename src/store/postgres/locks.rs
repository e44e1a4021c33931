//! Locks for every instance: named advisory locks held in a transaction for as long as one
//! change takes (a kubo ledger change: node call and store write; an idempotent key creation),
//! and the kubo ledger's rows of one account read under them.

use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::cluster::LedgerView;
use crate::store::rows::account_uuid;
use crate::store::{PinRow, StoreError};

/// One named lock (one-bigint advisory locks, a key space apart from the sync's).
const NAMED_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':lock:' || $1))";

/// The locks' transaction, rolled back (locks released) when dropped, at once; and its place
/// among the connections lock holders may take.
struct Held(Option<(Transaction<'static, Postgres>, OwnedSemaphorePermit)>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((tx, permit)) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = tx.rollback().await;
                drop(permit);
            });
        }
    }
}

impl PostgresStore {
    /// Takes the named locks in one global order (sorted), in a new transaction. Lock holders
    /// use at most half the pool (`lock_slots`): each also writes through another connection
    /// while it holds its own, so holders alone must never take every connection.
    async fn locked(
        &self,
        mut names: Vec<String>,
    ) -> Result<(Transaction<'static, Postgres>, OwnedSemaphorePermit), StoreError> {
        let permit = self
            .lock_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Interrupted("lock slots closed".into()))?;
        let mut tx = self.pool.begin().await?;
        names.sort_unstable();
        names.dedup();
        for name in &names {
            sqlx::query(NAMED_LOCK).bind(name).execute(&mut *tx).await?;
        }
        Ok((tx, permit))
    }

    /// See `ClusterStore::lock`.
    pub(super) async fn lock_named(
        &self,
        names: &[&str],
    ) -> Result<Box<dyn Send + Sync>, StoreError> {
        let tx = self
            .locked(names.iter().map(|n| format!("n:{n}")).collect())
            .await?;
        Ok(Box::new(Held(Some(tx))))
    }

    /// See `ClusterStore::lock_ledger`.
    pub(super) async fn lock_ledger_of(
        &self,
        account: Uuid,
        items: &[&str],
    ) -> Result<LedgerView, StoreError> {
        let mut names: Vec<String> = items.iter().map(|i| format!("i:{i}")).collect();
        names.push(format!("a:{account}"));
        let (mut tx, permit) = self.locked(names).await?;
        let mut view = read(&mut tx, account).await?;
        let cids: Vec<&str> = items.to_vec();
        let holders: Vec<(String, i64)> =
            sqlx::query_as("SELECT cid, count(*) FROM pins WHERE cid = ANY($1) GROUP BY cid")
                .bind(cids)
                .fetch_all(&mut *tx)
                .await?;
        view.holders = holders
            .into_iter()
            .map(|(cid, n)| (cid, u32::try_from(n).unwrap_or(u32::MAX)))
            .collect();
        view.guard = Some(Box::new(Held(Some((tx, permit)))));
        Ok(view)
    }

    /// See `ClusterStore::read_ledger`.
    pub(super) async fn read_ledger_of(&self, account: Uuid) -> Result<LedgerView, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, account).await
    }
}

async fn read(conn: &mut PgConnection, account: Uuid) -> Result<LedgerView, StoreError> {
    let id = account.to_string();
    let rows: Vec<(String, String, i64, bool)> =
        sqlx::query_as("SELECT account_id, cid, size, recursive FROM pins WHERE account_id = $1")
            .bind(&id)
            .fetch_all(&mut *conn)
            .await?;
    let pins = rows
        .into_iter()
        .map(|(account, cid, size, recursive)| {
            Ok(PinRow {
                account_id: account_uuid(&account)?,
                size: u64::try_from(size)
                    .map_err(|_| StoreError::Corrupt(format!("pin {cid}: size {size}")))?,
                cid,
                recursive,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let names = sqlx::query_scalar("SELECT name FROM ipns_names WHERE account_id = $1")
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(LedgerView {
        pins,
        names,
        ..LedgerView::default()
    })
}
