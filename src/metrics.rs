//! Prometheus metrics. Label values are resolved once at start, so recording a request is a few
//! atomic adds with no hashing or locking.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::domain::decision::{DenyCode, Quota};

/// Why an upstream exchange failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Other,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 3] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Other,
    ];
    fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// The management surfaces whose failed authentications are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthSurface {
    /// `rsk_` partner tokens (reseller v1 and the Gateway3 partner API).
    Partner,
    /// Operator tokens (`/api/v1/admin`).
    Operator,
    /// Gateway3 account keys (`/api/v0` account API).
    Account,
}

impl AuthSurface {
    pub const ALL: [AuthSurface; 3] = [
        AuthSurface::Partner,
        AuthSurface::Operator,
        AuthSurface::Account,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthSurface::Partner => "partner",
            AuthSurface::Operator => "operator",
            AuthSurface::Account => "account",
        }
    }
}

/// All metrics of one gateway process.
pub struct Metrics {
    registry: Registry,
    allowed: IntCounter,
    /// Requests whose client went away (reset the stream, closed the connection) before the
    /// answer's head: `code="client_closed"`, nginx's 499.
    client_closed: IntCounter,
    denied: Vec<IntCounter>,
    latency: Histogram,
    upstream_errors: Vec<IntCounter>,
    /// Number of keys in the in-memory index.
    pub keys_loaded: IntGauge,
    /// Idle keep-alive connections to a cleartext upstream, as of the last reap.
    pub upstream_idle: IntGauge,
    /// Failed background flushes to the store.
    pub store_flush_errors: IntCounter,
    /// Request body bytes read from clients.
    pub bytes_in: IntCounter,
    /// Response body bytes written to clients.
    pub bytes_out: IntCounter,
    /// Cost charged, micro-USD at upstream price.
    pub cost_micros: IntCounter,
    /// LLM answers that reported no usage (charged by the documented fallback).
    pub usage_missing: IntCounter,
    quota_denials: IntCounterVec,
    auth_failures: IntCounterVec,
    /// Several instances on one store.
    pub cluster: ClusterMetrics,
}

/// Series of the store sync and, on a shared store, of the change feed.
pub struct ClusterMetrics {
    /// 1 while the last store round-trip of the sync succeeded, 0 while serving from memory.
    pub store_up: IntGauge,
    /// Duration of each usage sync transaction (apply deltas, read back totals).
    pub sync_seconds: Histogram,
    /// Changes applied from other instances, by kind (`key`, `partner`, `account`, `resync`).
    pub changes: IntCounterVec,
    /// Keys, partners and accounts re-read by the periodic reconcile.
    pub reconciled: IntCounter,
    /// Budget leases this instance holds (lease mode).
    pub leases_held: IntGauge,
    /// Lease requests to the store, by what came of them (`granted`, `empty`, `error`).
    pub lease_grants: IntCounterVec,
    /// Leases given back, by why (`idle`, `shutdown`, `lapsed`).
    pub leases_returned: IntCounterVec,
}

impl ClusterMetrics {
    fn new(registry: &Registry) -> Self {
        let store_up = IntGauge::new(
            "tollgate_store_up",
            "1 while the store answered the last sync, 0 while serving from memory.",
        )
        .expect("valid metric");
        let sync_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_store_sync_seconds",
                "Duration of one usage sync transaction (deltas applied, totals read back).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("valid metric");
        let changes = IntCounterVec::new(
            Opts::new(
                "tollgate_cluster_changes_total",
                "Changes made on other instances applied here, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let reconciled = IntCounter::new(
            "tollgate_cluster_reconciled_total",
            "Rows re-read by the periodic reconcile (the safety net under notifications).",
        )
        .expect("valid metric");
        let leases_held = IntGauge::new(
            "tollgate_cluster_leases_held",
            "Budget leases (slices of key cost limits and partner balances) this instance holds.",
        )
        .expect("valid metric");
        let lease_grants = IntCounterVec::new(
            Opts::new(
                "tollgate_cluster_lease_grants_total",
                "Budget lease requests to the store by result (granted, empty: nothing left, \
                 error: store unreachable).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let leases_returned = IntCounterVec::new(
            Opts::new(
                "tollgate_cluster_leases_returned_total",
                "Budget leases given up, by reason (idle, shutdown, lapsed: not renewed in time).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [
            Box::new(store_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sync_seconds.clone()),
            Box::new(changes.clone()),
            Box::new(reconciled.clone()),
            Box::new(leases_held.clone()),
            Box::new(lease_grants.clone()),
            Box::new(leases_returned.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        store_up.set(1);
        for kind in ["key", "partner", "account", "resync"] {
            changes.with_label_values(&[kind]);
        }
        for result in ["granted", "empty", "error"] {
            lease_grants.with_label_values(&[result]);
        }
        for reason in ["idle", "shutdown", "lapsed"] {
            leases_returned.with_label_values(&[reason]);
        }
        ClusterMetrics {
            store_up,
            sync_seconds,
            changes,
            reconciled,
            leases_held,
            lease_grants,
            leases_returned,
        }
    }
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Proxied requests by outcome code (`ok` when forwarded).",
            ),
            &["code"],
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from request head to response head on the proxy listener.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let upstream = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_errors_total",
                "Upstream exchanges that failed, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let keys_loaded =
            IntGauge::new("tollgate_keys_loaded", "Keys held in memory.").expect("valid metric");
        let upstream_idle = IntGauge::new(
            "tollgate_upstream_idle_connections",
            "Idle keep-alive connections to a cleartext upstream (as of the last reap).",
        )
        .expect("valid metric");
        let store_flush_errors = IntCounter::new(
            "tollgate_store_flush_errors_total",
            "Background flushes to the store that failed (retried on the next interval).",
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "tollgate_bytes_total",
                "Body bytes through the proxy by direction (in = from clients, out = to clients).",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let cost_micros = IntCounter::new(
            "tollgate_cost_micros_total",
            "Cost charged to keys, in micro-USD at upstream price.",
        )
        .expect("valid metric");
        let usage_missing = IntCounter::new(
            "tollgate_usage_missing_total",
            "LLM answers without a usage report, charged from the request and streamed text.",
        )
        .expect("valid metric");
        let quota_denials = IntCounterVec::new(
            Opts::new(
                "tollgate_quota_denials_total",
                "Requests refused with quota_exceeded, by quota.",
            ),
            &["quota"],
        )
        .expect("valid metric");
        // Every series exists from the start (at 0), so `rate()` and alerts see the first one.
        for quota in Quota::ALL {
            quota_denials.with_label_values(&[quota.as_str()]);
        }
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "tollgate_management_auth_failures_total",
                "Management calls refused for a missing or wrong credential, by surface.",
            ),
            &["surface"],
        )
        .expect("valid metric");
        for surface in AuthSurface::ALL {
            auth_failures.with_label_values(&[surface.as_str()]);
        }
        for c in [
            Box::new(bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cost_micros.clone()),
            Box::new(usage_missing.clone()),
            Box::new(quota_denials.clone()),
            Box::new(auth_failures.clone()),
            Box::new(requests.clone()),
            Box::new(latency.clone()),
            Box::new(upstream.clone()),
            Box::new(keys_loaded.clone()),
            Box::new(upstream_idle.clone()),
            Box::new(store_flush_errors.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        // Codes sharing a public name (502/504) share a series.
        let denied = DenyCode::ALL
            .iter()
            .map(|c| requests.with_label_values(&[c.as_str()]))
            .collect();
        let cluster = ClusterMetrics::new(&registry);
        Metrics {
            cluster,
            registry,
            allowed: requests.with_label_values(&["ok"]),
            client_closed: requests.with_label_values(&["client_closed"]),
            denied,
            latency,
            upstream_errors: UpstreamErrorKind::ALL
                .iter()
                .map(|k| upstream.with_label_values(&[k.as_str()]))
                .collect(),
            keys_loaded,
            upstream_idle,
            store_flush_errors,
            bytes_in: bytes.with_label_values(&["in"]),
            bytes_out: bytes.with_label_values(&["out"]),
            cost_micros,
            usage_missing,
            quota_denials,
            auth_failures,
        }
    }

    /// Records a `quota_exceeded` denial by quota name.
    /// Counts a management call refused for its credential.
    pub fn record_auth_failure(&self, surface: AuthSurface) {
        self.auth_failures
            .with_label_values(&[surface.as_str()])
            .inc();
    }

    pub fn record_quota_denial(&self, quota: Quota) {
        self.quota_denials
            .with_label_values(&[quota.as_str()])
            .inc();
    }

    /// Records one finished request: `None` = forwarded, `Some(code)` = refused.
    pub fn record_request(&self, denied: Option<DenyCode>, elapsed: Duration) {
        match denied {
            None => self.allowed.inc(),
            Some(code) => self.denied[code as usize].inc(),
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Records a request given up by its client before it was answered.
    pub fn record_client_closed(&self) {
        self.client_closed.inc();
    }

    /// Records a failed upstream exchange.
    pub fn record_upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_code() {
        let m = Metrics::new();
        m.record_request(None, Duration::from_millis(1));
        m.record_request(Some(DenyCode::InvalidKey), Duration::from_millis(1));
        m.record_request(Some(DenyCode::InvalidKey), Duration::from_millis(1));
        m.record_upstream_error(UpstreamErrorKind::Timeout);
        let text = m.render();
        assert!(
            text.contains(r#"tollgate_requests_total{code="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"tollgate_requests_total{code="invalid_key"} 2"#));
        assert!(text.contains(r#"tollgate_upstream_errors_total{kind="timeout"} 1"#));
        assert!(text.contains("tollgate_request_duration_seconds_count 3"));
    }

    #[test]
    fn every_labelled_series_exists_before_its_first_event() {
        let m = Metrics::new();
        let text = m.render();
        for quota in Quota::ALL {
            let series = format!(
                "tollgate_quota_denials_total{{quota=\"{}\"}} 0",
                quota.as_str()
            );
            assert!(text.contains(&series), "{series} missing:\n{text}");
        }
        for code in DenyCode::ALL {
            let series = format!("tollgate_requests_total{{code=\"{}\"}} 0", code.as_str());
            assert!(text.contains(&series), "{series}");
        }
        m.record_quota_denial(Quota::PinnedBytes);
        assert!(
            m.render()
                .contains(r#"tollgate_quota_denials_total{quota="pinned_bytes_limit"} 1"#)
        );
    }
}
