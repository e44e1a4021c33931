//! The Gateway3-compatible v0 APIs under `/api/v0` (see `seeds/000` and `seeds/001`): the
//! partner API (`/partner/user/...`, authenticated with the partner's `rsk_` token) and the
//! account API (`/stats`, `/plans`, `/key`, `/keys`, authenticated with one of the account's
//! own keys holding `admin`). Every answer, success or error, is the envelope
//! `{"code":<status>,"msg":"...","data":...}` with the HTTP status line equal to `code`.

mod account;
pub mod error;
mod extract;
mod keys;
mod partner;

use axum::Json;
use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{Method, Uri};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use crate::domain::key::Account;
use crate::meter::stats::{AccountStats, account_stats};
pub use error::V0Error;

/// The envelope of every v0 answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// The HTTP status.
    pub code: u16,
    pub msg: String,
    /// Absent when the call returns nothing (as in the seed documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// On a list, the `cursor` of the next page; absent on the last (or only) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a v0 handler returns.
pub type V0Result<T> = Result<Json<Envelope<T>>, V0Error>;

/// `{"code":200,"msg":"ok","data":...}`.
pub fn ok<T: Serialize>(data: T) -> V0Result<T> {
    Ok(Json(Envelope {
        code: 200,
        msg: "ok".into(),
        data: Some(data),
        next_cursor: None,
    }))
}

/// `{"code":200,"msg":"ok","data":[...],"next_cursor":...}`: a page of a list.
pub fn page<T: Serialize>((data, next_cursor): (Vec<T>, Option<String>)) -> V0Result<Vec<T>> {
    Ok(Json(Envelope {
        code: 200,
        msg: "ok".into(),
        data: Some(data),
        next_cursor,
    }))
}

/// `{"code":200,"msg":"ok"}`.
pub fn done() -> V0Result<()> {
    Ok(Json(Envelope {
        code: 200,
        msg: "ok".into(),
        data: None,
        next_cursor: None,
    }))
}

/// The v0 routes (relative to `/api/v0`) with their OpenAPI paths. Unknown paths and methods
/// get the envelope too.
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::default()
        .routes(routes!(partner::create_user))
        .routes(routes!(partner::user_stats))
        .routes(routes!(partner::update_plan))
        .routes(routes!(partner::create_key, partner::delete_key))
        .routes(routes!(partner::list_keys))
        .routes(routes!(account::stats))
        .routes(routes!(account::plans))
        .routes(routes!(account::create_key, account::delete_key))
        .routes(routes!(account::list_keys))
        .split_for_parts();
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    (router, doc)
}

async fn not_found(uri: Uri) -> V0Error {
    V0Error::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> V0Error {
    V0Error::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// Live usage of `account` with its plan's limits (counters include what is not flushed yet;
/// on a shared store the pin ledger is read afresh, as other instances change it too).
pub(crate) async fn usage(state: &ApiState, account: &Account) -> AccountStats {
    let manager = &state.manager;
    let now = manager.clock.now_unix();
    let live = manager
        .meter
        .account(account.id)
        .unwrap_or_else(|| manager.meter.upsert_account(account, now));
    let mut stats = account_stats(&live, &state.plans, now);
    if let Some(ledger) = &state.pins {
        let store = manager.store.as_ref();
        if let Err(err) = crate::proxy::kubo::refresh_account(store, ledger, account.id).await {
            tracing::warn!(error = %err, "reading the pin ledger failed; showing the last known");
        }
        (stats.pinned_count, stats.pinned_bytes) = ledger.usage(account.id);
        stats.ipns = ledger.names(account.id).len() as u64;
    }
    stats
}
