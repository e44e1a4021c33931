//! Keeping this instance in step with the store and, on a shared (PostgreSQL) store, with the
//! other instances: the usage sync (`sync`: deltas out, every instance's totals and balances
//! back, every `store.sync_interval`), the change feed and reconcile
//! (`feed`: key, partner and account changes made anywhere are in force here within a second),
//! the store's health as `/readyz` and the metrics report it (`health`), and the budget leases
//! money limits are spent from in strict mode (`lease`).
//!
//! When the store cannot be reached the data plane keeps serving from memory (fail-static):
//! the last known keys and counters; deltas keep accumulating and are applied exactly
//! once when the store is back (each batch carries an idempotency token). Budget leases last
//! until `store.lease_ttl`; then money-limited requests are refused until the store is back.

pub mod feed;
pub mod health;
pub mod lease;
pub mod sync;
