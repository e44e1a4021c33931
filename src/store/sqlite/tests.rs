//! Tests of the SQLite store against real database files in temporary directories.

use std::num::NonZeroU32;

use chrono::NaiveDate;
use tempfile::TempDir;

use super::*;
use crate::config::model::StoreUrl;
use crate::domain::ip::IpAllowList;
use crate::domain::key::{Credential, KeyLimits};
use crate::domain::key::{Key, Partner};
use crate::domain::permission::{Permission, PermissionSet};
use crate::store::*;
use uuid::Uuid;

async fn store() -> (TempDir, SqliteStore) {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(&dir.path().join("tollgate.db"))
        .await
        .unwrap();
    (dir, store)
}

fn partner(prefix: &str) -> Partner {
    Partner {
        id: Uuid::new_v4(),
        name: "Acme Resale".into(),
        token_prefix: prefix.into(),
        token_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        balance_micros: -1_500_000,
        tier_multiplier_ppm: 850_000,
        suspended: true,
        created_at: 1_700_000_000,
    }
}

fn account(partner_id: Uuid, external_id: &str) -> Account {
    Account {
        id: Uuid::new_v4(),
        partner_id,
        external_id: external_id.into(),
        email: Some(format!("{external_id}@example.com")),
        name: Some("Ada".into()),
        plan_id: None,
        created_at: 1_700_000_100,
    }
}

/// A partner with its default account, stored.
async fn tenant(store: &SqliteStore) -> (Partner, Account) {
    let p = partner("abcd1234");
    let a = account(p.id, "default");
    store.create_partner(&p, &a).await.unwrap();
    (p, a)
}

fn key(account: &Account, name: &str, credential: Credential) -> Key {
    Key {
        id: Uuid::new_v4(),
        account_id: account.id,
        partner_id: account.partner_id,
        name: name.into(),
        label: Some("CI".into()),
        description: Some("used by the build".into()),
        credential,
        permissions: PermissionSet::from_slice(&[Permission::Read, Permission::Pin]),
        ip_whitelist: IpAllowList::parse(&["10.0.0.0/8", "2001:db8::1"]).unwrap(),
        expiration_date: NaiveDate::from_ymd_opt(2027, 3, 1),
        disabled: true,
        created_at: 1_700_000_200,
        created_by: "partner:acme".into(),
        revoked_at: Some(1_700_000_900),
        revoked_by: Some("admin".into()),
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: Some(1_700_000_500),
        limits: KeyLimits {
            daily_cost_limit_micros: Some(5_000_000),
            total_cost_limit_micros: Some(u64::MAX / 4),
            concurrency_limit: NonZeroU32::new(8),
            rate_limit_per_minute: NonZeroU32::new(600),
            models: Some(vec!["gpt-4o-mini".into(), "claude-3-5-haiku".into()]),
        },
    }
}

fn token(byte: u8) -> Credential {
    Credential::Token { digest: [byte; 32] }
}

/// A plain, enabled, never-used key.
fn fresh_key(account: &Account, name: &str, byte: u8) -> Key {
    Key {
        revoked_at: None,
        revoked_by: None,
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: None,
        disabled: false,
        ..key(account, name, token(byte))
    }
}

#[tokio::test]
async fn reopen_is_idempotent_and_keeps_data() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first.ping().await.unwrap();
    let (p, a) = tenant(&first).await;
    let k = fresh_key(&a, "ci", 1);
    first.create_key(&k).await.unwrap();
    first.pool.close().await;

    let second = SqliteStore::open(&path).await.unwrap();
    assert_eq!(second.get_partner(p.id).await.unwrap(), Some(p));
    assert_eq!(second.load_keys().await.unwrap(), vec![k]);
}

#[tokio::test]
async fn generic_open_returns_a_working_store() {
    let dir = TempDir::new().unwrap();
    let url = StoreUrl::Sqlite(dir.path().join("t.db"));
    let store = crate::store::open(&crate::config::model::StoreConfig::for_url(url))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(store.load_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn unopenable_paths_are_open_errors_naming_the_path() {
    let dir = TempDir::new().unwrap();
    let missing_dir = dir.path().join("no").join("such").join("t.db");
    for path in [missing_dir.as_path(), dir.path()] {
        let Err(err) = SqliteStore::open(path).await else {
            panic!("{} opened", path.display());
        };
        match &err {
            StoreError::Open { url, .. } => assert!(url.contains(&*path.to_string_lossy())),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&*path.to_string_lossy()));
    }
}

#[tokio::test]
async fn connections_use_wal_full_sync_and_foreign_keys() {
    let (_dir, store) = store().await;
    let mut conn = store.pool.acquire().await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
}

#[tokio::test]
async fn the_usage_journal_folds_after_enough_batches_and_before_reads() {
    use super::journal::FOLD_AFTER_BATCHES;
    use crate::meter::usage::{Metric, Scope};
    use crate::meter::window::Window;
    use crate::meter::{Batch, Delta};

    let (_dir, store) = store().await;
    let id = Uuid::new_v4();
    let batch = Batch {
        deltas: vec![Delta {
            scope: Scope::Key,
            id,
            metric: Metric::Requests,
            window: Window::Day,
            label: "2026-11-23".into(),
            day: "2026-11-23".into(),
            amount: 2,
        }],
        charges: vec![],
    };
    let count = |sql: &'static str| {
        let pool = store.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let journal = "SELECT COUNT(*) FROM usage_journal";
    let total = "SELECT COALESCE(SUM(value), 0) FROM counters";
    for i in 1..FOLD_AFTER_BATCHES {
        assert!(
            store
                .apply_usage(&format!("t{i}"), &batch, 100, 0)
                .await
                .unwrap()
                .applied
        );
    }
    assert_eq!(count(journal).await, FOLD_AFTER_BATCHES - 1);
    assert_eq!(count(total).await, 0, "not folded yet");
    assert!(
        store
            .apply_usage("last", &batch, 100, 0)
            .await
            .unwrap()
            .applied
    );
    assert_eq!(count(journal).await, 0);
    assert_eq!(count(total).await, 2 * FOLD_AFTER_BATCHES);
    // A batch still in the journal is in what the readers see.
    assert!(
        store
            .apply_usage("one-more", &batch, 100, 0)
            .await
            .unwrap()
            .applied
    );
    let rows = store.load_counters(&["2026-11-23".into()]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, 2 * FOLD_AFTER_BATCHES as u64 + 2);
    let daily = store
        .usage_daily("key", id, "2026-11-23", "2026-11-23")
        .await
        .unwrap();
    assert_eq!(daily[0].2, 2 * FOLD_AFTER_BATCHES as u64 + 2);
}

#[tokio::test]
async fn touch_journal_folds_by_itself() {
    let (_dir, store) = store().await;
    let (_, a) = tenant(&store).await;
    let k2 = fresh_key(&a, "two", 2);
    store.create_key(&k2).await.unwrap();
    // The journal folds by itself once it holds enough batches.
    let batches = super::journal::FOLD_AFTER_BATCHES;
    for at in 1000..1000 + batches {
        store.touch_keys(&[(k2.id, at)]).await.unwrap();
    }
    let pool = store.pool.clone();
    let journal: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM touch_journal")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(journal, 0);
    let stored: Option<i64> = sqlx::query_scalar("SELECT last_used_at FROM keys WHERE id = $1")
        .bind(k2.id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, Some(999 + batches));
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
    run(include_str!("../../../migrations/sqlite/0001_init.sql"))
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
        "../../../migrations/sqlite/0002_key_names_unique_among_live_keys.sql"
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

/// Upgrading a store with funded partners: the ledger migration opens each one's ledger with
/// its balance, so the entries sum to the balance from the start.
#[tokio::test]
async fn the_ledger_migration_opens_every_funded_partner_with_its_balance() {
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
    for sql in [
        include_str!("../../../migrations/sqlite/0001_init.sql"),
        include_str!("../../../migrations/sqlite/0002_key_names_unique_among_live_keys.sql"),
        include_str!("../../../migrations/sqlite/0003_idempotency.sql"),
        include_str!("../../../migrations/sqlite/0004_key_models.sql"),
        include_str!("../../../migrations/sqlite/0005_kubo_ledger.sql"),
        include_str!("../../../migrations/sqlite/0006_llm_usage.sql"),
        include_str!("../../../migrations/sqlite/0007_usage_journal.sql"),
        include_str!("../../../migrations/sqlite/0008_key_status_changes.sql"),
    ] {
        run(sql).await.unwrap();
    }
    run(
        "INSERT INTO partners (id, name, token_prefix, token_hash, balance_micros, created_at) \
         VALUES ('p1', 'funded', 'x', 'h', 12500000, 40), ('p2', 'empty', 'y', 'h', 0, 50), \
         ('p3', 'owing', 'z', 'h', -300, 60);",
    )
    .await
    .unwrap();
    run(include_str!(
        "../../../migrations/sqlite/0009_money_ledger.sql"
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
        "SELECT id, partner_id, at, kind, amount_micros FROM money_ledger ORDER BY partner_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let summary: Vec<_> = rows
        .iter()
        .map(|(_, p, at, kind, amount)| (p.as_str(), *at, kind.as_str(), *amount))
        .collect();
    assert_eq!(
        summary,
        [
            ("p1", 40, "opening", 12_500_000),
            ("p3", 60, "opening", -300)
        ]
    );
    for (id, ..) in &rows {
        Uuid::parse_str(id).unwrap_or_else(|_| panic!("`{id}` is not a UUID"));
    }
}
