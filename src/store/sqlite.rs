//! SQLite store (embedded default). SKELETON: to be implemented.
use std::path::Path;

use super::StoreError;

/// SQLite-backed store.
pub struct SqliteStore;

impl SqliteStore {
    /// Opens the database file, creating it if needed.
    pub async fn open(_path: &Path) -> Result<Self, StoreError> {
        Err(StoreError::Unsupported("sqlite skeleton".into()))
    }
}
