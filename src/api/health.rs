//! `/healthz` (process up), `/readyz` (store reachable) and `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

use super::ApiState;

/// The health, readiness and metrics routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Ready while the store answers. With a shared store that stops answering the instance is
/// `degraded` but still ready (200): it keeps serving from memory (fail-static), so taking it
/// out of a load balancer would turn a store outage into a gateway outage.
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let shared = state.manager.store.cluster().is_some();
    let ping = state.manager.store.ping().await;
    let reason = match (&ping, state.health.degraded()) {
        (Err(err), _) => Some(format!("store unreachable: {err}")),
        (Ok(()), reason) => reason,
    };
    match (reason, shared) {
        (None, _) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        ),
        (Some(reason), true) => {
            if let Err(err) = &ping {
                state.health.down(&state.metrics, "readiness ping", err);
            }
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "status": "degraded", "reason": reason })),
            )
        }
        (Some(_), false) if ping.is_ok() => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        ),
        (Some(reason), false) => {
            tracing::warn!(reason = %reason, "readiness check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "store unreachable" })),
            )
        }
    }
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
