//! The store's health as this instance sees it, per component (usage sync, LLM usage sync,
//! `last_used_at` sync, change feed, readiness ping): up, or down and why. `/readyz` reports
//! degraded while any component is down (degraded, not failed: the data plane keeps serving
//! from memory), the `tollgate_store_up` gauge follows it, and each transition is logged once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::metrics::Metrics;

/// Why the store is considered down, per component.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<BTreeMap<&'static str, String>>,
}

impl Health {
    /// Records a failed store round-trip of `component`.
    pub fn down(&self, metrics: &Metrics, component: &'static str, err: &dyn std::fmt::Display) {
        let reason = format!("{component}: {err}");
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_empty() {
            tracing::error!(
                reason = %reason,
                "store unreachable: serving from memory (last known keys and counters); \
                 usage is kept and synced once the store is back"
            );
        }
        down.insert(component, reason);
        metrics.cluster.store_up.set(0);
    }

    /// Records a successful store round-trip of `component`.
    pub fn up(&self, metrics: &Metrics, component: &'static str) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.remove(component).is_some() && down.is_empty() {
            tracing::info!(component, "store reachable again");
        }
        if down.is_empty() {
            metrics.cluster.store_up.set(1);
        }
    }

    /// Why the store is down (every component that says so), or `None` while it is up.
    pub fn degraded(&self) -> Option<String> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        (!down.is_empty()).then(|| down.values().cloned().collect::<Vec<_>>().join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_while_any_component_is_down() {
        let (h, m) = (Health::default(), Metrics::new());
        assert_eq!(h.degraded(), None);
        h.down(&m, "usage sync", &"connection refused");
        h.down(&m, "change feed", &"connection refused");
        h.up(&m, "usage sync");
        assert_eq!(
            h.degraded().as_deref(),
            Some("change feed: connection refused")
        );
        assert!(m.render().contains("tollgate_store_up 0"));
        h.up(&m, "change feed");
        assert_eq!(h.degraded(), None);
        assert!(m.render().contains("tollgate_store_up 1"));
    }
}
