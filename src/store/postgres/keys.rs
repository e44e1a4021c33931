//! Keys on PostgreSQL. Triggers stamp `updated_at` and notify the other instances whenever a
//! field the data plane uses changes; `last_used_at` is written in one statement per flush and
//! notifies nobody.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use uuid::Uuid;

use super::PostgresStore;
use crate::domain::key::Key;
use crate::store::rows::{self, KeyRow};
use crate::store::sql::{INSERT_KEY, select_keys};
use crate::store::{KeyChange, KeyStore, Page, StoreError, write_error};

#[async_trait]
impl KeyStore for PostgresStore {
    async fn create_key(&self, key: &Key) -> Result<(), StoreError> {
        rows::bind_key(sqlx::query(INSERT_KEY), key)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn get_key(&self, id: Uuid) -> Result<Option<Key>, StoreError> {
        sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(Key::try_from)
            .transpose()
    }

    async fn load_keys(&self) -> Result<Vec<Key>, StoreError> {
        sqlx::query_as::<_, KeyRow>(select_keys!(" ORDER BY created_at, id COLLATE \"C\""))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Key::try_from)
            .collect()
    }

    async fn for_each_key(&self, each: &mut (dyn FnMut(Key) + Send)) -> Result<(), StoreError> {
        let mut rows = sqlx::query_as::<_, KeyRow>(select_keys!("")).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            each(Key::try_from(row)?);
        }
        Ok(())
    }

    async fn keys_of_partner(
        &self,
        partner_id: Uuid,
        page: Page,
        search: Option<&str>,
    ) -> Result<Vec<Key>, StoreError> {
        self.partner_key_rows(partner_id, page, search).await
    }

    async fn live_keys_of_account(
        &self,
        account_id: Uuid,
        page: Page,
    ) -> Result<Vec<Key>, StoreError> {
        self.live_key_rows(account_id, page).await
    }

    async fn update_key(&self, id: Uuid, change: &KeyChange) -> Result<Option<Key>, StoreError> {
        self.change_key_row(id, change).await
    }

    /// One statement for the whole flush; `last_used_at` only moves forward.
    async fn touch_keys(&self, used: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = used.iter().map(|(id, _)| id.to_string()).collect();
        let times: Vec<i64> = used.iter().map(|(_, at)| *at).collect();
        sqlx::query(
            "UPDATE keys SET last_used_at = GREATEST(COALESCE(keys.last_used_at, 0), t.at) \
             FROM (SELECT id, MAX(at) AS at FROM UNNEST($1::TEXT[], $2::BIGINT[]) AS u(id, at) \
             GROUP BY id) AS t WHERE keys.id = t.id",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
