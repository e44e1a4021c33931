//! The usage sync, every `store.sync_interval` and on shutdown: the meter's deltas go to the
//! store as one idempotent batch (a failed batch is retried as is, with the same token, so a
//! commit whose acknowledgement was lost never counts twice), then LLM usage and `last_used_at`.
//! On a shared store the same transaction reads back every counter any instance changed since
//! this one's last sync, and every partner's balance, so admission here counts the others'
//! usage: overshoot of a shared limit is at most what all instances admit in one interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::health::Health;
use super::lease::Leases;
use crate::manage::Manager;
use crate::meter::{Batch, Meter};
use crate::metrics::Metrics;
use crate::shutdown;
use crate::store::StoreError;

/// Usage records taken between two yields to the runtime while a batch is built: with
/// thousands of keys in use, taking them all at once held the serving thread for ~10 ms.
const STEP: usize = 256;

/// The sync task's state.
pub struct Syncer {
    pub manager: Manager,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Counter sequence number read back last (shared store).
    cursor: AtomicI64,
    shared: bool,
    /// One pass at a time (the task's, shutdown's, a test's, a lease grant): the read-back
    /// balances and lease caps assume no other batch is in flight.
    pass: Arc<tokio::sync::Mutex<()>>,
    /// Budget leases (lease mode on a shared store).
    pub leases: Option<Arc<Leases>>,
}

impl Syncer {
    /// A syncer reading back from `cursor` (see `ClusterStore::counter_cursor`; 0 alone).
    pub fn new(manager: Manager, metrics: Arc<Metrics>, health: Arc<Health>, cursor: i64) -> Self {
        let shared = manager.store.cluster().is_some();
        Syncer {
            manager,
            metrics,
            health,
            cursor: AtomicI64::new(cursor),
            shared,
            pass: Arc::default(),
            leases: None,
        }
    }

    /// This syncer, keeping budget leases in lease mode (`fraction` of what is left at a
    /// time, lasting `ttl` past their last renewal).
    pub fn with_leases(mut self, fraction: f64, ttl: Duration) -> Self {
        let store = self.manager.store.clone();
        let leases = Leases::new(
            store,
            self.metrics.clone(),
            fraction,
            ttl,
            self.pass.clone(),
        );
        self.leases = Some(Arc::new(leases));
        self
    }

    /// Syncs every `every` (and when woken through `Meter::sync_now`) until `stopped`, then
    /// once more.
    pub async fn run(self: Arc<Self>, every: Duration, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.once().await,
                _ = self.manager.meter.sync_now.notified() => self.once().await,
                _ = shutdown::stopped(&mut stopped) => break,
            }
        }
        self.once().await;
    }

    /// One sync of everything pending; what fails is kept for the next one.
    pub async fn once(&self) {
        let _pass = self.pass.lock().await;
        self.usage().await;
        self.llm_usage().await;
        self.touches().await;
        if let Some(leases) = &self.leases {
            leases.maintain_locked().await;
        }
    }

    fn failed(&self, what: &'static str, err: &StoreError) {
        self.metrics.store_flush_errors.inc();
        self.health.down(&self.metrics, what, err);
    }

    /// Writes the meter's deltas as one idempotent batch and applies what was read back.
    async fn usage(&self) {
        let meter = &self.manager.meter;
        let now = self.manager.clock.now_unix();
        let pending = meter
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (token, batch) = match pending {
            Some(pending) => pending,
            None => (
                uuid::Uuid::new_v4().to_string(),
                take_batch_in_steps(meter, now).await,
            ),
        };
        if batch.is_empty() && !self.shared {
            return;
        }
        let since = self.cursor.load(Ordering::Acquire);
        let started = Instant::now();
        let started_ms = self.leases.as_ref().map_or(0, |l| l.clock_ms());
        match self
            .manager
            .store
            .apply_usage(&token, &batch, now, since)
            .await
        {
            Ok(synced) => {
                self.metrics
                    .cluster
                    .sync_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.health.up(&self.metrics, "usage sync");
                if self.shared {
                    meter.apply_synced(&synced.totals, &synced.balances, now);
                    self.cursor.store(synced.cursor, Ordering::Release);
                }
                if let Some(leases) = &self.leases {
                    leases.apply_synced(&synced.leases, started_ms).await;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, deltas = batch.deltas.len(), "usage sync failed; will retry");
                self.failed("usage sync", &err);
                if !batch.is_empty() {
                    *meter.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((token, batch));
                }
            }
        }
    }

    /// Writes the LLM usage by key and model; a failed batch is retried as is.
    async fn llm_usage(&self) {
        let meter = &self.manager.meter;
        let (token, rows) = meter.llm.take_batch();
        if rows.is_empty() {
            return;
        }
        let now = self.manager.clock.now_unix();
        let day = meter.day_label(now);
        let store = &self.manager.store;
        match store.apply_llm_usage(&token, &day, &rows, now).await {
            Ok(_) => self.health.up(&self.metrics, "LLM usage sync"),
            Err(err) => {
                tracing::warn!(error = %err, rows = rows.len(), "syncing LLM usage failed; will retry");
                self.failed("LLM usage sync", &err);
                meter.llm.keep_failed(token, rows);
            }
        }
    }

    /// Writes `last_used_at` of the keys used since the last sync.
    async fn touches(&self) {
        let index = &self.manager.index;
        let used = index.take_used();
        if used.is_empty() {
            return;
        }
        match self.manager.store.touch_keys(&used).await {
            Ok(()) => self.health.up(&self.metrics, "last_used_at sync"),
            Err(err) => {
                tracing::warn!(error = %err, keys = used.len(), "syncing last_used_at failed; will retry");
                self.failed("last_used_at sync", &err);
                index.restore_used(&used);
            }
        }
    }
}

/// Takes every unflushed amount into a batch, yielding to the requests waiting on this thread
/// every `STEP` usage records.
async fn take_batch_in_steps(meter: &Meter, now: i64) -> Batch {
    let today = meter.today(now);
    let usages = meter.usages();
    let mut batch = Batch::default();
    for step in usages.chunks(STEP) {
        Meter::take_usages(&mut batch, step, &today);
        tokio::task::yield_now().await;
    }
    meter.take_rest(&mut batch, &today);
    batch
}
