//! What a store shared by several instances adds: a feed of changes made by any instance
//! (PostgreSQL `LISTEN/NOTIFY` carrying ids), the rows changed since a point in time (the
//! periodic reconcile that covers missed notifications), and counters that every instance
//! shares (management rate limits).

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::StoreError;
use crate::domain::key::{Account, Key, Partner};

/// A change announced by some instance; the receiver re-reads the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Key(Uuid),
    Partner(Uuid),
    Account(Uuid),
    /// The feed (re)connected: notifications may have been missed, reconcile now.
    Resync,
}

impl Change {
    /// Parses a notification payload (`key:<uuid>`, `partner:<uuid>`, `account:<uuid>`).
    pub fn parse(payload: &str) -> Option<Change> {
        let (kind, id) = payload.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "key" => Some(Change::Key(id)),
            "partner" => Some(Change::Partner(id)),
            "account" => Some(Change::Account(id)),
            _ => None,
        }
    }
}

/// Rows changed since a reconcile cursor.
#[derive(Debug, Default)]
pub struct Changed {
    pub keys: Vec<Key>,
    pub partners: Vec<Partner>,
    pub accounts: Vec<Account>,
    /// The store's clock when the rows were read: the next cursor.
    pub now_micros: i64,
}

/// The shared-store side of cluster mode.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Starts listening for changes; the feed sends [`Change::Resync`] after every
    /// (re)connection, and ends only when the receiver is dropped.
    async fn subscribe(&self) -> Result<mpsc::Receiver<Change>, StoreError>;
    /// Keys, partners and accounts changed at or after `since_micros` (store clock, µs since
    /// the epoch; 0 = everything).
    async fn changed_since(&self, since_micros: i64) -> Result<Changed, StoreError>;
    /// Counts one hit in the shared window `bucket` (e.g. `partner:<id>:minute:<n>`) and returns
    /// the count including it; windows are forgotten once `now` passes their `expires_at` (Unix
    /// seconds).
    /// The counter sequence number of the last sync (read before loading the counters at
    /// start, so the first sync reads back everything counted since).
    async fn counter_cursor(&self) -> Result<i64, StoreError>;
    /// The store's clock, µs since the epoch (the first reconcile cursor).
    async fn clock_micros(&self) -> Result<i64, StoreError>;
    async fn hit(&self, bucket: &str, now: i64, expires_at: i64) -> Result<u64, StoreError>;
}
