//! Changes made on other instances, applied here: the store notifies `key:<id>`,
//! `partner:<id>` or `account:<id>` (PostgreSQL triggers, so every writer, CLI included, is
//! heard) and this task re-reads the row and applies it to the key index or the meter. Every
//! `store.reconcile_interval`, and at once after the notification connection comes back, it
//! re-reads every row changed since its last pass (minus a margin for transactions that commit
//! late), the safety net for notifications lost while disconnected.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::health::Health;
use crate::manage::Manager;
use crate::metrics::Metrics;
use crate::shutdown;
use crate::store::StoreError;
use crate::store::cluster::{Change, Changed};

/// Rows changed this long before the last reconcile are read again (a transaction stamps
/// `updated_at` when it writes and may commit later, within the statement timeout).
const LOOKBACK_MICROS: i64 = 60_000_000;
/// The feed's name in the store's health.
const COMPONENT: &str = "change feed";
/// How soon a reconcile that failed (store down) is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The change feed's state.
pub struct Feed {
    pub manager: Manager,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Store clock (µs) of the last successful reconcile.
    pub cursor: i64,
}

impl Feed {
    /// Applies changes from `rx` and reconciles every `every` until `stopped`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Change>,
        every: Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut next = tokio::time::Instant::now() + every;
        loop {
            tokio::select! {
                change = rx.recv() => match change {
                    Some(Change::Resync) => {
                        self.count("resync");
                        next = self.reconcile_or_retry(every).await;
                    }
                    Some(change) => match self.apply(change).await {
                        Ok(()) => self.health.up(&self.metrics, COMPONENT),
                        Err(err) => {
                            tracing::warn!(error = %err, ?change, "applying a change failed; reconciling");
                            self.health.down(&self.metrics, COMPONENT, &err);
                            next = tokio::time::Instant::now() + RETRY;
                        }
                    },
                    None => break,
                },
                _ = tokio::time::sleep_until(next) => next = self.reconcile_or_retry(every).await,
                _ = shutdown::stopped(&mut stopped) => break,
            }
        }
    }

    fn count(&self, kind: &str) {
        self.metrics
            .cluster
            .changes
            .with_label_values(&[kind])
            .inc();
    }

    /// Re-reads one changed row and applies it.
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        let m = &self.manager;
        let now = m.clock.now_unix();
        // Serialised with local writes, so the index never ends up older than the store.
        let _write = m.write_lock.lock().await;
        match change {
            Change::Key(id) => {
                self.count("key");
                if let Some(key) = m.store.get_key(id).await? {
                    m.index.upsert(&key);
                }
            }
            Change::Partner(id) => {
                self.count("partner");
                if let Some(partner) = m.store.get_partner(id).await? {
                    m.meter.upsert_partner(&partner, now);
                    // A rotated token: the old one must stop working here too.
                    m.verifier.forget(id);
                }
            }
            Change::Account(id) => {
                self.count("account");
                if let Some(account) = m.store.get_account(id).await? {
                    m.meter.upsert_account(&account, now);
                }
            }
            Change::Resync => {}
        }
        Ok(())
    }

    /// Reconciles; the time of the next pass (sooner after a failure).
    async fn reconcile_or_retry(&mut self, every: Duration) -> tokio::time::Instant {
        match self.reconcile().await {
            Ok(()) => {
                self.health.up(&self.metrics, COMPONENT);
                tokio::time::Instant::now() + every
            }
            Err(err) => {
                tracing::warn!(error = %err, "reconcile failed; retrying");
                self.health.down(&self.metrics, COMPONENT, &err);
                tokio::time::Instant::now() + RETRY
            }
        }
    }

    /// Re-reads every row changed since the last pass and applies it.
    async fn reconcile(&mut self) -> Result<(), StoreError> {
        let m = &self.manager;
        let Some(cluster) = m.store.cluster() else {
            return Ok(());
        };
        let since = self.cursor.saturating_sub(LOOKBACK_MICROS);
        // Read under the write lock: a local write between the read and the apply would
        // otherwise be overwritten with the older row.
        let _write = m.write_lock.lock().await;
        let Changed {
            keys,
            partners,
            accounts,
            now_micros,
        } = cluster.changed_since(since).await?;
        let now = m.clock.now_unix();
        for partner in &partners {
            m.meter.upsert_partner(partner, now);
            m.verifier.forget(partner.id);
        }
        for account in &accounts {
            m.meter.upsert_account(account, now);
        }
        for key in &keys {
            m.index.upsert(key);
        }
        let rows = keys.len() + partners.len() + accounts.len();
        self.metrics.cluster.reconciled.inc_by(rows as u64);
        self.cursor = now_micros;
        Ok(())
    }
}
