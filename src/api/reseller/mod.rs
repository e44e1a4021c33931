//! The QCode-compatible reseller API under `/api/v1/reseller`: account summary, balance, daily
//! usage, token rotation and sub-keys (create with `Idempotency-Key`, read, list, PATCH,
//! enable, disable). Success is `{"ok":true,"data":...}`; errors are `{"detail":...}` with
//! 401/403/404/422/429; every call counts against the token's management rate limits.

mod account;
mod fields;
pub mod idempotency;
mod keys;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::ApiState;

/// The reseller routes (relative to `/api/v1/reseller`).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/me", get(account::me))
        .route("/balance", get(account::balance))
        .route("/usage", get(account::usage))
        .route("/token/rotate", post(account::rotate_token))
        .route("/keys", post(keys::create).get(keys::list))
        .route("/keys/{id}", get(keys::get).patch(keys::patch))
        .route("/keys/{id}/enable", post(keys::enable))
        .route("/keys/{id}/disable", post(keys::disable))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .method_not_allowed_fallback(crate::api::method_not_allowed)
}

/// `{"ok": true, "data": ...}`.
#[derive(Serialize)]
pub struct Ok<T> {
    ok: bool,
    data: T,
}

/// Wraps `data` in the success envelope.
pub fn ok<T>(data: T) -> Json<Ok<T>> {
    Json(Ok { ok: true, data })
}

/// Micro-USD as USD for responses.
pub fn usd(micros: i64) -> f64 {
    micros as f64 / 1e6
}
