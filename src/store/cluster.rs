//! What a store shared by several instances adds: a feed of changes made by any instance
//! (PostgreSQL `LISTEN/NOTIFY` carrying ids), the rows changed since a point in time (the
//! periodic reconcile that covers missed notifications), and counters that every instance
//! shares (management rate limits, budget leases).

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

/// Which money limit a lease is a slice of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// A key's cost limit for one window (its day, or `lifetime`), in micro-USD.
    KeyCost,
    /// A partner's prepaid balance, in micro-USD.
    PartnerBalance,
}

impl Budget {
    /// `(scope, metric)` as stored.
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Budget::KeyCost => ("key", "cost_micros"),
            Budget::PartnerBalance => ("partner", "balance"),
        }
    }

    /// The budget of stored names.
    pub fn parse(scope: &str, metric: &str) -> Option<Budget> {
        [Budget::KeyCost, Budget::PartnerBalance]
            .into_iter()
            .find(|b| b.names() == (scope, metric))
    }
}

/// One lease of one instance: a budget of one key or partner in one window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId {
    pub budget: Budget,
    pub id: Uuid,
    /// Window label (`2026-11-23`, `lifetime`).
    pub window: String,
}

/// A request for more of a budget.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub lease: LeaseId,
    /// The key's cost limit ([`Budget::KeyCost`]; a partner's limit is its stored balance).
    pub limit: u64,
    /// The least that is of use (what a waiting request needs); 0 for a background refill.
    pub need: u64,
    /// The share to hold of what is left (0–1]; never less than `need`.
    pub fraction: f64,
    /// What the asking instance still has of its lease, not yet reserved or spent: a refill
    /// tops the lease up to `fraction` of what is left (this included) and does not add to it
    /// blindly, so a few busy instances cannot gather all of a budget between them.
    pub unspent: u64,
}

/// One account's part of the kubo ledger as the store holds it, read under the ledger locks
/// of a [`ClusterStore::lock_ledger`] (or without, for reading).
#[derive(Default)]
pub struct LedgerView {
    /// The account's pins.
    pub pins: Vec<super::PinRow>,
    /// The account's IPNS names.
    pub names: Vec<String>,
    /// How many accounts hold each CID asked about (missing: none).
    pub holders: Vec<(String, u32)>,
    /// Holds the locks until dropped.
    pub guard: Option<Box<dyn Send + Sync>>,
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
    /// The counter sequence number of the last sync (read before loading the counters at
    /// start, so the first sync reads back everything counted since).
    async fn counter_cursor(&self) -> Result<i64, StoreError>;
    /// The store's clock, µs since the epoch (the first reconcile cursor).
    async fn clock_micros(&self) -> Result<i64, StoreError>;
    /// Counts one hit in the shared window `bucket` (e.g. `partner:<id>:minute:<n>`) and returns
    /// the count including it; windows are forgotten once `now` passes their `expires_at` (Unix
    /// seconds).
    async fn hit(&self, bucket: &str, now: i64, expires_at: i64) -> Result<u64, StoreError>;
    /// Grants this instance more of each budget, in one transaction: at least `need` and
    /// about `fraction` of what is left (the limit less what is counted and every unexpired
    /// lease), never more than is left, and nothing when less than `need` is left. Returns this instance's whole lease of each,
    /// in order. Expired leases of any instance are reclaimed first. Leases are renewed (and
    /// reduced by what each sync applies) by `apply_usage`, whose `Synced::leases` lists them.
    async fn grant_leases(&self, requests: &[LeaseRequest]) -> Result<Vec<u64>, StoreError>;
    /// Takes the ledger locks of `account` and of each of `items` (CIDs, IPNS names) for every
    /// instance, in one global order, and reads the account's ledger and the CIDs' holders
    /// under them. The locks last until the view's `guard` is dropped: pin and unpin on the
    /// node and record in the store meanwhile, so two instances never interleave on one CID
    /// or one account's limits.
    async fn lock_ledger(&self, account: Uuid, items: &[&str]) -> Result<LedgerView, StoreError>;
    /// Takes named locks for every instance (e.g. `idempotency:<partner>:<key>`), held until
    /// the returned guard is dropped.
    async fn lock(&self, names: &[&str]) -> Result<Box<dyn Send + Sync>, StoreError>;
    /// The account's ledger as stored now (no locks).
    async fn read_ledger(&self, account: Uuid) -> Result<LedgerView, StoreError>;
    /// Gives back this instance's leases (what they hold returns to the budget).
    async fn return_leases(&self, leases: &[LeaseId]) -> Result<(), StoreError>;
}
