//! `/healthz` (process up), `/readyz` (store reachable) and `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header::CONTENT_TYPE};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::openapi::Status;
use crate::store::StoreError;

/// How long `/readyz` waits for the store.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The health, readiness, metrics and OpenAPI routes.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(super::openapi::serve))
}

fn status(status: &str, reason: Option<String>) -> Json<Status> {
    Json(Status {
        status: status.into(),
        reason,
    })
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Status)))]
async fn healthz() -> Json<Status> {
    status("ok", None)
}

/// Readiness: the store is reachable.
///
/// Ready while the store answers. With a shared store that stops answering the instance is
/// `degraded` but still ready (200): it keeps serving from memory (fail-static), so taking it
/// out of a load balancer would turn a store outage into a gateway outage.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health", responses(
    (status = 200, description = "`ready`, or `degraded` with its reason", body = Status),
    (status = 503, description = "`store unreachable` (single-instance store only)", body = Status),
))]
async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Status>) {
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
            Ok(()) => (StatusCode::OK, status("ready", None)),
            Err(err) => {
                tracing::warn!(error = %err, "readiness check: store unreachable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    status("store unreachable", None),
                )
            }
        };
    }
    match &ping {
        Ok(()) => state.health.up(&state.metrics, "readiness ping"),
        Err(err) => state.health.down(&state.metrics, "readiness ping", err),
    }
    let body = match state.health.degraded() {
        None => status("ready", None),
        Some(reason) => status("degraded", Some(reason)),
    };
    (StatusCode::OK, body)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health", responses(
    (status = 200, description = "The Prometheus text exposition format", content_type = "text/plain", body = String),
))]
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
