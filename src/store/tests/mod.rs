//! One store test suite, run against both back-ends: every test in `suite` runs once on a
//! SQLite file in a temporary directory and once on PostgreSQL (`TOLLGATE_TEST_POSTGRES_URL`,
//! default the local server) in a schema of its own, so the tests run in parallel and never
//! skip.

mod cluster;
mod lease;
mod suite;

use std::ops::Deref;
use std::sync::Arc;

use tempfile::TempDir;

use super::Store;
use super::postgres::{PgSettings, PostgresStore, scratch};
use super::sqlite::SqliteStore;

/// A store of either back-end, dropped with its directory or schema.
pub struct TestStore {
    store: Arc<dyn Store>,
    sqlite: Option<(TempDir, SqliteStore)>,
    postgres: Option<(scratch::Schema, PostgresStore)>,
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        self.store.as_ref()
    }
}

impl TestStore {
    /// A fresh SQLite store.
    pub async fn sqlite() -> Self {
        let dir = TempDir::new().unwrap();
        let store = SqliteStore::open(&dir.path().join("tollgate.db"))
            .await
            .unwrap();
        TestStore {
            store: Arc::new(store.clone()),
            sqlite: Some((dir, store)),
            postgres: None,
        }
    }

    /// A fresh PostgreSQL store in a schema of its own.
    pub async fn postgres() -> Self {
        let schema = scratch::Schema::create(&scratch::test_url()).await.unwrap();
        let store = PostgresStore::open(&schema.url, PgSettings::default())
            .await
            .unwrap();
        TestStore {
            store: Arc::new(store.clone()),
            sqlite: None,
            postgres: Some((schema, store)),
        }
    }

    /// The store as the gateway holds it.
    pub fn shared(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The URL of the PostgreSQL schema, if this is one (for a second "instance").
    pub fn schema_url(&self) -> Option<String> {
        self.postgres.as_ref().map(|(schema, _)| schema.url.clone())
    }

    /// The PostgreSQL schema's name (also the connections' `application_name`).
    pub fn schema_name(&self) -> Option<String> {
        self.postgres
            .as_ref()
            .map(|(schema, _)| schema.name.clone())
    }

    /// The PostgreSQL store, if this is one.
    pub fn pg(&self) -> Option<&PostgresStore> {
        self.postgres.as_ref().map(|(_, s)| s)
    }

    /// Runs a statement with text parameters directly on the database.
    pub async fn exec(&self, sql: &str, args: &[&str]) {
        if let Some((_, s)) = &self.sqlite {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(*a);
            }
            q.execute(s.pool()).await.unwrap();
        }
        if let Some((_, s)) = &self.postgres {
            let mut q = sqlx::query(sql);
            for a in args {
                q = q.bind(*a);
            }
            q.execute(s.pool()).await.unwrap();
        }
    }

    /// Sets a key's stored digest to raw bytes.
    pub async fn set_digest(&self, id: &str, digest: &[u8]) {
        let sql = "UPDATE keys SET digest = $1 WHERE id = $2";
        if let Some((_, s)) = &self.sqlite {
            let q = sqlx::query(sql).bind(digest).bind(id);
            q.execute(s.pool()).await.unwrap();
        }
        if let Some((_, s)) = &self.postgres {
            let q = sqlx::query(sql).bind(digest).bind(id);
            q.execute(s.pool()).await.unwrap();
        }
    }

    /// Rows of one query returning `(BIGINT, TEXT, BIGINT, BIGINT NULL, BIGINT NULL)`.
    pub async fn fetch_plans(&self) -> Vec<(i64, String, i64, Option<i64>, Option<i64>)> {
        let sql = "SELECT id, name, price_micros, pinned_bytes_limit, ipns_limit FROM plans \
                   ORDER BY id";
        if let Some((_, s)) = &self.sqlite {
            return sqlx::query_as(sql).fetch_all(s.pool()).await.unwrap();
        }
        let (_, s) = self.postgres.as_ref().unwrap();
        sqlx::query_as(sql).fetch_all(s.pool()).await.unwrap()
    }

    /// Drops the PostgreSQL schema (the SQLite directory goes with the value).
    pub async fn finish(self) {
        if let Some((schema, store)) = self.postgres {
            store.pool().close().await;
            schema.drop().await.unwrap();
        }
    }
}

/// `#[tokio::test]`s named after each suite function, once per back-end:
/// `store::tests::sqlite::<name>` and `store::tests::postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = crate::store::tests::TestStore::sqlite().await;
                    super::$name(&t).await;
                    t.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let t = crate::store::tests::TestStore::postgres().await;
                    super::$name(&t).await;
                    t.finish().await;
                }
            )*
        }
    };
}
use on_both_backends;
