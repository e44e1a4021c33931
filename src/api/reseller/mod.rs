//! The QCode-compatible reseller API under `/api/v1/reseller`: account summary, balance, daily
//! usage, the money ledger, the Gateway3 accounts, token rotation and sub-keys (create with `Idempotency-Key`, read,
//! list, PATCH, enable, disable, revoke). Success is `{"ok":true,"data":...}`; errors are `{"detail":...}` with
//! 401/403/404/422/429; every call counts against the token's management rate limits.

mod account;
mod accounts;
mod fields;
pub mod idempotency;
mod keys;
mod ledger;
mod names;

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;

/// The reseller routes (relative to `/api/v1/reseller`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(account::me))
        .routes(routes!(account::balance))
        .routes(routes!(account::usage))
        .routes(routes!(account::rotate_token))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::get, keys::patch))
        .routes(routes!(keys::enable))
        .routes(routes!(keys::disable))
        .routes(routes!(keys::revoke))
        .routes(routes!(ledger::list))
        .routes(routes!(accounts::list))
}

/// `{"ok": true, "data": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Ok<T> {
    /// Always `true`.
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
