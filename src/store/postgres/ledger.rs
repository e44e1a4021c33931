//! The kubo ledger across instances: advisory locks per account and per CID or IPNS name, held
//! in a transaction for as long as one ledger change takes (node call and store write), and the
//! account's rows read under them.

use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::PostgresStore;
use crate::store::cluster::LedgerView;
use crate::store::rows::account_uuid;
use crate::store::{PinRow, StoreError};

/// One lock of the ledger's key space (one-bigint advisory locks, apart from the sync's).
const LEDGER_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':ledger:' || $1))";

/// The locks' transaction: rolled back (locks released) when dropped, at once.
struct Held(Option<Transaction<'static, Postgres>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = tx.rollback().await;
            });
        }
    }
}

impl PostgresStore {
    /// See `ClusterStore::lock_ledger`.
    pub(super) async fn lock_ledger_of(
        &self,
        account: Uuid,
        items: &[&str],
    ) -> Result<LedgerView, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut keys: Vec<String> = items.iter().map(|i| format!("i:{i}")).collect();
        keys.push(format!("a:{account}"));
        keys.sort_unstable();
        keys.dedup();
        for key in &keys {
            sqlx::query(LEDGER_LOCK).bind(key).execute(&mut *tx).await?;
        }
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
        view.guard = Some(Box::new(Held(Some(tx))));
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
