//! Account SQL for the Gateway3 APIs: accounts by the partner's own identifier, plan changes
//! paid from the partner's balance in the same transaction, and an account's live keys.

use sqlx::SqlitePool;
use uuid::Uuid;

use super::rows::{AccountRow, KeyRow, int};
use super::{PlanChange, StoreError};
use crate::domain::key::{Account, Key};

/// Every account column, in `AccountRow` order.
const ACCOUNT_COLUMNS: &str = "id, partner_id, external_id, email, name, plan_id, created_at";

/// Every key column, in `KeyRow` order.
const KEY_COLUMNS: &str = "id, account_id, partner_id, name, label, description, kind, \
     access_key, digest, permissions, ip_whitelist, expiration_date, disabled, created_at, \
     created_by, revoked_at, revoked_by, last_used_at, daily_cost_limit_micros, \
     total_cost_limit_micros, concurrency_limit, rate_limit_per_minute, models";

/// A partner's account by its external id; the default account is never returned.
pub async fn account_by_external_id(
    pool: &SqlitePool,
    partner_id: Uuid,
    external_id: &str,
) -> Result<Option<Account>, StoreError> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts \
         WHERE partner_id = $1 AND external_id = $2 AND is_default = 0"
    );
    sqlx::query_as::<_, AccountRow>(&sql)
        .bind(partner_id.to_string())
        .bind(external_id)
        .fetch_optional(pool)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// An account by id.
pub async fn get_account(pool: &SqlitePool, id: Uuid) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
    sqlx::query_as::<_, AccountRow>(&sql)
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// Moves an account to `plan_id` and debits `charge_micros` from its partner's balance, in one
/// transaction; nothing changes if the balance does not cover the charge.
pub async fn set_account_plan(
    pool: &SqlitePool,
    account_id: Uuid,
    plan_id: i64,
    charge_micros: u64,
) -> Result<PlanChange, StoreError> {
    let id = account_id.to_string();
    let mut tx = pool.begin().await?;
    // The write comes first, so concurrent writers queue on the busy timeout.
    let sql = format!("UPDATE accounts SET plan_id = $1 WHERE id = $2 RETURNING {ACCOUNT_COLUMNS}");
    let Some(row) = sqlx::query_as::<_, AccountRow>(&sql)
        .bind(plan_id)
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(PlanChange::NoAccount);
    };
    let account = Account::try_from(row)?;
    if charge_micros > 0 {
        let charged = sqlx::query(
            "UPDATE partners SET balance_micros = balance_micros - $1 \
             WHERE id = $2 AND balance_micros >= $1 RETURNING balance_micros",
        )
        .bind(int(charge_micros))
        .bind(account.partner_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if charged.is_none() {
            let balance: Option<i64> =
                sqlx::query_scalar("SELECT balance_micros FROM partners WHERE id = $1")
                    .bind(account.partner_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(PlanChange::InsufficientBalance(balance.unwrap_or(0)));
        }
    }
    tx.commit().await?;
    Ok(PlanChange::Changed(account))
}

/// The account's keys that are not revoked, oldest first.
pub async fn live_keys_of_account(
    pool: &SqlitePool,
    account_id: Uuid,
) -> Result<Vec<Key>, StoreError> {
    super::usage_journal::fold_touches_now(pool).await?;
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND revoked_at IS NULL \
         ORDER BY created_at, rowid"
    );
    sqlx::query_as::<_, KeyRow>(&sql)
        .bind(account_id.to_string())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(Key::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use crate::config::model::Plan;
    use crate::domain::ip::IpAllowList;
    use crate::domain::key::{Credential, KeyLimits, Partner};
    use crate::domain::permission::{Permission, PermissionSet};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{KeyChange, PlanChange, Store, StoreError};

    use super::*;

    async fn store() -> (TempDir, SqliteStore) {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let plan = |id, name: &str| Plan {
            id,
            name: name.into(),
            price_micros: 0,
            pinned_count_limit: None,
            pinned_bytes_limit: None,
            ingress_limit: None,
            egress_limit: None,
            ipns_limit: None,
        };
        store
            .sync_plans(&[plan(1, "Free"), plan(2, "Pro")])
            .await
            .unwrap();
        (dir, store)
    }

    fn account(partner_id: Uuid, external_id: &str) -> Account {
        Account {
            id: Uuid::new_v4(),
            partner_id,
            external_id: external_id.into(),
            email: Some("a@example.com".into()),
            name: Some("Ada".into()),
            plan_id: Some(1),
            created_at: 10,
        }
    }

    /// A partner with `balance` and its default account (external id `default`).
    async fn partner(store: &SqliteStore, balance: i64) -> Partner {
        let p = Partner {
            id: Uuid::new_v4(),
            name: "p".into(),
            token_prefix: "x".into(),
            token_hash: "h".into(),
            balance_micros: balance,
            tier_multiplier_ppm: 1_000_000,
            suspended: false,
            created_at: 1,
        };
        store
            .create_partner(&p, &account(p.id, "default"))
            .await
            .unwrap();
        p
    }

    fn key(account: &Account, name: &str, byte: u8) -> Key {
        Key {
            id: Uuid::new_v4(),
            account_id: account.id,
            partner_id: account.partner_id,
            name: name.into(),
            label: None,
            description: None,
            credential: Credential::Pair {
                access_key: Uuid::new_v4(),
                digest: [byte; 32],
            },
            permissions: PermissionSet::from_slice(&[Permission::Read]),
            ip_whitelist: IpAllowList::default(),
            expiration_date: None,
            disabled: false,
            created_at: i64::from(byte),
            created_by: "t".into(),
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
            limits: KeyLimits::default(),
        }
    }

    #[tokio::test]
    async fn accounts_are_found_by_partner_and_external_id_only() {
        let (_dir, store) = store().await;
        let (p, q) = (partner(&store, 0).await, partner(&store, 0).await);
        let a = account(p.id, "user-1");
        store.create_account(&a).await.unwrap();
        let found = store.account_by_external_id(p.id, "user-1").await.unwrap();
        assert_eq!(found.as_ref(), Some(&a));
        assert_eq!(store.get_account(a.id).await.unwrap(), Some(a));
        // Another partner's id space, and the default account, are invisible.
        assert_eq!(
            store.account_by_external_id(q.id, "user-1").await.unwrap(),
            None
        );
        assert_eq!(
            store.account_by_external_id(p.id, "default").await.unwrap(),
            None
        );
        assert_eq!(store.get_account(Uuid::new_v4()).await.unwrap(), None);
    }

    async fn balance(store: &SqliteStore, partner: Uuid) -> i64 {
        let p = store.get_partner(partner).await.unwrap().unwrap();
        p.balance_micros
    }

    #[tokio::test]
    async fn a_plan_change_and_its_charge_are_one_transaction() {
        let (_dir, store) = store().await;
        let p = partner(&store, 5_000_000).await;
        let a = account(p.id, "u");
        store.create_account(&a).await.unwrap();

        let refused = store.set_account_plan(a.id, 2, 5_000_001).await.unwrap();
        assert_eq!(refused, PlanChange::InsufficientBalance(5_000_000));
        assert_eq!(
            store.get_account(a.id).await.unwrap().unwrap().plan_id,
            Some(1)
        );
        assert_eq!(balance(&store, p.id).await, 5_000_000);

        let done = store.set_account_plan(a.id, 2, 5_000_000).await.unwrap();
        let PlanChange::Changed(changed) = done else {
            panic!("{done:?}")
        };
        assert_eq!(changed.plan_id, Some(2));
        assert_eq!(store.get_account(a.id).await.unwrap(), Some(changed));
        assert_eq!(balance(&store, p.id).await, 0);

        // A free change needs no balance.
        let done = store.set_account_plan(a.id, 1, 0).await.unwrap();
        assert!(matches!(done, PlanChange::Changed(ref a) if a.plan_id == Some(1)));
        let none = store.set_account_plan(Uuid::new_v4(), 1, 0).await.unwrap();
        assert_eq!(none, PlanChange::NoAccount);
    }

    #[tokio::test]
    async fn names_are_unique_among_live_keys_only() {
        let (_dir, store) = store().await;
        let p = partner(&store, 0).await;
        let a = account(p.id, "u");
        store.create_account(&a).await.unwrap();
        let first = key(&a, "ci", 1);
        store.create_key(&first).await.unwrap();
        let err = store.create_key(&key(&a, "ci", 2)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict("name")), "{err:?}");
        let other = key(&a, "other", 3);
        store.create_key(&other).await.unwrap();
        let revoke = KeyChange::Revoke {
            at: 50,
            by: "t".into(),
        };
        store.update_key(first.id, &revoke).await.unwrap();
        let again = key(&a, "ci", 4);
        store.create_key(&again).await.unwrap();
        let live = store.live_keys_of_account(a.id).await.unwrap();
        assert_eq!(live, vec![other, again]);
        assert!(store.get_key(first.id).await.unwrap().is_some(), "kept");
    }

    #[tokio::test]
    async fn the_name_migration_keeps_existing_keys() {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let run = |sql: &'static str| sqlx::raw_sql(sql).execute(&pool);
        run(include_str!("../../migrations/sqlite/0001_init.sql"))
            .await
            .unwrap();
        run(
            "INSERT INTO partners (id, name, token_prefix, token_hash, created_at) \
             VALUES ('p', 'p', 'x', 'h', 1); \
             INSERT INTO accounts (id, partner_id, external_id, created_at) \
             VALUES ('a', 'p', 'u', 1); \
             INSERT INTO keys (id, account_id, partner_id, name, kind, digest, permissions, \
             created_at, created_by, revoked_at) VALUES \
             ('k1', 'a', 'p', 'ci', 'token', x'01', 2, 5, 't', NULL), \
             ('k2', 'a', 'p', 'old', 'token', x'02', 2, 6, 't', 9);",
        )
        .await
        .unwrap();
        run(include_str!(
            "../../migrations/sqlite/0002_key_names_unique_among_live_keys.sql"
        ))
        .await
        .unwrap();
        let rows: Vec<(String, String, Option<i64>)> =
            sqlx::query_as("SELECT id, name, revoked_at FROM keys ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let expected = [("k1", "ci", None), ("k2", "old", Some(9))];
        let expected: Vec<_> = expected
            .iter()
            .map(|(id, name, at)| (id.to_string(), name.to_string(), *at))
            .collect();
        assert_eq!(rows, expected);
        let insert = |id: &'static str, name: &'static str, digest: &'static [u8]| {
            sqlx::query(
                "INSERT INTO keys (id, account_id, partner_id, name, kind, digest, \
                 permissions, created_at, created_by) VALUES ($1, 'a', 'p', $2, 'token', $3, \
                 2, 7, 't')",
            )
            .bind(id)
            .bind(name)
            .bind(digest)
            .execute(&pool)
        };
        insert("k3", "old", b"\x03").await.unwrap();
        let dup = insert("k4", "ci", b"\x04").await.unwrap_err();
        assert!(dup.to_string().contains("UNIQUE"), "{dup}");
        // The key's foreign key to its account survived the rebuild.
        let orphan = sqlx::query(
            "INSERT INTO keys (id, account_id, partner_id, name, kind, digest, permissions, \
             created_at, created_by) VALUES ('k5', 'nope', 'p', 'z', 'token', x'05', 2, 7, 't')",
        )
        .execute(&pool)
        .await;
        assert!(orphan.is_err());
    }
}
