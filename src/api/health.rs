//! `/healthz` (process up), `/readyz` (store reachable) and `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

use super::ApiState;
use crate::store::StoreError;

/// How long `/readyz` waits for the store.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The health, readiness and metrics routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(crate::api::method_not_allowed)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Ready while the store answers. With a shared store that stops answering the instance is
/// `degraded` but still ready (200): it keeps serving from memory (fail-static), so taking it
/// out of a load balancer would turn a store outage into a gateway outage.
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let shared = state.manager.store.cluster().is_some();
    // Bounded: a store that hangs must not make the probe time out (the instance is still
    // serving from memory).
    let ping = match tokio::time::timeout(PING_TIMEOUT, state.manager.store.ping()).await {
        Ok(ping) => ping,
        Err(_) => Err(StoreError::Interrupted(format!(
            "no answer within {} ms",
            PING_TIMEOUT.as_millis()
        ))),
    };
    if !shared {
        return match ping {
            Ok(()) => (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "status": "ready" })),
            ),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check: store unreachable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({ "status": "store unreachable" })),
                )
            }
        };
    }
    match &ping {
        Ok(()) => state.health.up(&state.metrics, "readiness ping"),
        Err(err) => state.health.down(&state.metrics, "readiness ping", err),
    }
    let body = match state.health.degraded() {
        None => serde_json::json!({ "status": "ready" }),
        Some(reason) => serde_json::json!({ "status": "degraded", "reason": reason }),
    };
    (StatusCode::OK, axum::Json(body))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state
        .metrics
        .keys_loaded
        .set(state.manager.index.len() as i64);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
