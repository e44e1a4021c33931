//! kubo ledger SQL: the pins each account holds (with their size) and the IPNS names it owns.
//! Every change is one statement or one transaction, committed before the client hears back.

use sqlx::SqlitePool;
use uuid::Uuid;

use super::{IpnsRow, PinRow, StoreError};

/// Every pin of every account, for the ledger at start.
pub async fn load_pins(pool: &SqlitePool) -> Result<Vec<PinRow>, StoreError> {
    let rows: Vec<(String, String, i64, bool)> =
        sqlx::query_as("SELECT account_id, cid, size, recursive FROM pins")
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(account, cid, size, recursive)| {
            Ok(PinRow {
                account_id: uuid(&account)?,
                size: u64::try_from(size)
                    .map_err(|_| StoreError::Corrupt(format!("pin {cid}: size {size}")))?,
                cid,
                recursive,
            })
        })
        .collect()
}

/// Records a pin (or updates its size and kind if the account already holds the CID), and,
/// when `replaces` is given, removes that pin of the same account in the same transaction.
pub async fn put_pin(
    pool: &SqlitePool,
    pin: &PinRow,
    replaces: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let account = pin.account_id.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO pins (account_id, cid, size, recursive, created_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (account_id, cid) DO UPDATE SET size = excluded.size, \
         recursive = excluded.recursive",
    )
    .bind(&account)
    .bind(&pin.cid)
    .bind(i64::try_from(pin.size).unwrap_or(i64::MAX))
    .bind(pin.recursive)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if let Some(old) = replaces.filter(|old| *old != pin.cid) {
        sqlx::query("DELETE FROM pins WHERE account_id = $1 AND cid = $2")
            .bind(&account)
            .bind(old)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes one pin of an account; `false` if it held none.
pub async fn remove_pin(pool: &SqlitePool, account: Uuid, cid: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM pins WHERE account_id = $1 AND cid = $2")
        .bind(account.to_string())
        .bind(cid)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every IPNS name of every account.
pub async fn load_ipns(pool: &SqlitePool) -> Result<Vec<IpnsRow>, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT account_id, name FROM ipns_names")
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|(account, name)| {
            Ok(IpnsRow {
                account_id: uuid(&account)?,
                name,
            })
        })
        .collect()
}

/// Records that an account owns an IPNS name (idempotent).
pub async fn put_ipns(
    pool: &SqlitePool,
    account: Uuid,
    name: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ipns_names (account_id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id, name) DO NOTHING",
    )
    .bind(account.to_string())
    .bind(name)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets an IPNS name of an account; `false` if it owned none by that name.
pub async fn remove_ipns(pool: &SqlitePool, account: Uuid, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM ipns_names WHERE account_id = $1 AND name = $2")
        .bind(account.to_string())
        .bind(name)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("account id {text}: {e}")))
}
