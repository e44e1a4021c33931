//! Throwaway schemas for tests and benchmarks: each gets a schema of its own in one database,
//! so many can run against the same server at once. Schemas left behind by a crashed run are
//! dropped by the next one after an hour.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::store::StoreError;

/// The server tests use: `TOLLGATE_TEST_POSTGRES_URL`, else the local one.
pub fn test_url() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema made for one test or benchmark run.
#[derive(Debug)]
pub struct Schema {
    /// The server URL with `search_path` set to the schema, and the schema's name as
    /// `application_name` (so a test can find its own connections in `pg_stat_activity`).
    pub url: String,
    /// The schema's name (`tgt_<unix seconds>_<random>`).
    pub name: String,
    admin: String,
}

/// Schemas older than this are left-overs of a crashed run.
const STALE_SECS: u64 = 3_600;

impl Schema {
    /// Creates a fresh schema on the server at `url` (and drops stale ones).
    pub async fn create(url: &str) -> Result<Schema, StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("tgt_{now}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = connect(url).await?;
        drop_stale(&mut conn, now).await?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(Schema {
            url: format!("{url}{sep}options=-c%20search_path%3D{name}&application_name={name}"),
            name,
            admin: url.to_string(),
        })
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) -> Result<(), StoreError> {
        let mut conn = connect(&self.admin).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }
}

async fn connect(url: &str) -> Result<PgConnection, StoreError> {
    PgConnection::connect(url)
        .await
        .map_err(|source| StoreError::Open {
            url: crate::store::redact(url),
            source,
        })
}

/// Drops `tgt_` schemas made more than an hour before `now`.
async fn drop_stale(conn: &mut PgConnection, now: u64) -> Result<(), StoreError> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'tgt\\_%'")
            .fetch_all(&mut *conn)
            .await?;
    for name in names {
        let made: Option<u64> = name.split('_').nth(1).and_then(|s| s.parse().ok());
        if made.is_some_and(|made| made + STALE_SECS < now) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
    Ok(())
}
