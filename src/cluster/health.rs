//! The store's health as this instance sees it: up, or down since when and why. `/readyz`
//! reports it (degraded, not failed: the data plane keeps serving from memory), the
//! `tollgate_store_up` gauge follows it, and each transition is logged once.

use std::sync::Mutex;

use crate::metrics::Metrics;

/// Why the store is considered down, if it is.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<Option<String>>,
}

impl Health {
    /// Records a failed store round-trip (`what` failed with `err`).
    pub fn down(&self, metrics: &Metrics, what: &str, err: &dyn std::fmt::Display) {
        let reason = format!("{what}: {err}");
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            tracing::error!(
                reason = %reason,
                "store unreachable: serving from memory (last known keys and counters); \
                 usage is kept and synced once the store is back"
            );
        }
        *down = Some(reason);
        metrics.cluster.store_up.set(0);
    }

    /// Records a successful store round-trip.
    pub fn up(&self, metrics: &Metrics) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = down.take() {
            tracing::info!(was = %reason, "store reachable again; pending usage synced");
        }
        metrics.cluster.store_up.set(1);
    }

    /// The reason the store is down, or `None` while it is up.
    pub fn degraded(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
