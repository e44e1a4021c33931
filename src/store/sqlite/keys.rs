//! Keys on SQLite. `last_used_at` goes through the touch journal (see `journal`), which is
//! folded in before any read of the keys table.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use uuid::Uuid;

use super::{SqliteStore, journal};
use crate::domain::key::Key;
use crate::store::rows::{self, KeyRow};
use crate::store::sql::{INSERT_KEY, select_keys};
use crate::store::{KeyChange, KeyStore, Page, StoreError, write_error};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: &Key) -> Result<(), StoreError> {
        rows::bind_key(sqlx::query(INSERT_KEY), key)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn get_key(&self, id: Uuid) -> Result<Option<Key>, StoreError> {
        journal::fold_touches_now(&self.pool).await?;
        sqlx::query_as::<_, KeyRow>(select_keys!(" WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(Key::try_from)
            .transpose()
    }

    async fn load_keys(&self) -> Result<Vec<Key>, StoreError> {
        journal::fold_touches_now(&self.pool).await?;
        sqlx::query_as::<_, KeyRow>(select_keys!(" ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Key::try_from)
            .collect()
    }

    async fn for_each_key(&self, each: &mut (dyn FnMut(Key) + Send)) -> Result<(), StoreError> {
        journal::fold_touches_now(&self.pool).await?;
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
        journal::fold_touches_now(&self.pool).await?;
        self.partner_key_rows(partner_id, page, search).await
    }

    async fn live_keys_of_account(
        &self,
        account_id: Uuid,
        page: Page,
    ) -> Result<Vec<Key>, StoreError> {
        journal::fold_touches_now(&self.pool).await?;
        self.live_key_rows(account_id, page).await
    }

    async fn update_key(&self, id: Uuid, change: &KeyChange) -> Result<Option<Key>, StoreError> {
        self.change_key_row(id, change).await
    }

    async fn touch_keys(&self, used: &[(Uuid, i64)]) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        journal::append_touches(&mut tx, used).await?;
        tx.commit().await?;
        Ok(())
    }
}
