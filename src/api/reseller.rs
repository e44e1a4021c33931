//! The QCode-compatible reseller API under `/api/v1/reseller`: keys (create, read, enable,
//! disable). Success is `{"ok":true,"data":...}`; errors are `{"detail":...}`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::ApiState;
use super::error::ApiError;
use super::json::JsonBody;
use super::key_object::{self, KeyObject};
use super::partner_auth::AuthPartner;
use crate::domain::key::{Key, KeyLimits};
use crate::domain::permission::{Permission, PermissionSet};
use crate::manage::{KeyKind, NewKey};
use crate::store::KeyChange;

/// Permissions of a reseller key when the caller names none: everything but `admin`.
const DEFAULT_PERMISSIONS: [Permission; 4] = [
    Permission::Read,
    Permission::Write,
    Permission::Pin,
    Permission::Unpin,
];

/// The reseller routes (relative to `/api/v1/reseller`).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/keys", post(create_key))
        .route("/keys/{id}", get(get_key))
        .route("/keys/{id}/enable", post(enable_key))
        .route("/keys/{id}/disable", post(disable_key))
}

/// `{"ok": true, "data": ...}`.
#[derive(Serialize)]
struct Ok<T> {
    ok: bool,
    data: T,
}

fn ok<T>(data: T) -> Json<Ok<T>> {
    Json(Ok { ok: true, data })
}

/// Body of `POST /keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    name: Option<String>,
    description: Option<String>,
    label: Option<String>,
    permissions: Option<Vec<Permission>>,
    ip_whitelist: Option<Vec<String>>,
    #[serde(default)]
    expiration_date: Value,
    daily_cost_limit_usd: Option<f64>,
    total_cost_limit_usd: Option<f64>,
    concurrency_limit: Option<i64>,
    rate_limit_per_minute: Option<i64>,
}

#[derive(Serialize)]
struct CreatedKeyData {
    #[serde(flatten)]
    key: KeyObject,
    api_key: String,
    warnings: Vec<String>,
}

async fn create_key(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    JsonBody(body): JsonBody<CreateKeyBody>,
) -> Result<Json<Ok<CreatedKeyData>>, ApiError> {
    let manager = &state.manager;
    let limits = KeyLimits {
        daily_cost_limit_micros: body
            .daily_cost_limit_usd
            .map(|v| key_object::usd_to_micros("daily_cost_limit_usd", v))
            .transpose()?,
        total_cost_limit_micros: body
            .total_cost_limit_usd
            .map(|v| key_object::usd_to_micros("total_cost_limit_usd", v))
            .transpose()?,
        concurrency_limit: body
            .concurrency_limit
            .map(|v| key_object::positive_u32("concurrency_limit", v))
            .transpose()?,
        rate_limit_per_minute: body
            .rate_limit_per_minute
            .map(|v| key_object::positive_u32("rate_limit_per_minute", v))
            .transpose()?,
    };
    let permissions = match &body.permissions {
        Some(list) => key_object::permissions(list)?,
        None => PermissionSet::from_slice(&DEFAULT_PERMISSIONS),
    };
    let mut warnings = Vec::new();
    if limits.daily_cost_limit_micros.is_none() && limits.total_cost_limit_micros.is_none() {
        warnings.push(
            "no daily or total cost limit: this key can spend the whole partner balance"
                .to_string(),
        );
    }
    let optional_text = |field: &str, value: &Option<String>, max: usize| {
        value
            .as_deref()
            .map(|v| key_object::text(field, v, max))
            .transpose()
    };
    let new = NewKey {
        account_id: manager.default_account(partner.id).await?.id,
        partner_id: partner.id,
        name: optional_text("name", &body.name, 128)?.filter(|n| !n.is_empty()),
        label: optional_text("label", &body.label, 128)?,
        description: optional_text("description", &body.description, 1024)?,
        permissions,
        ip_whitelist: key_object::ip_whitelist(body.ip_whitelist.as_deref().unwrap_or_default())?,
        expiration_date: key_object::expiration_date(&body.expiration_date, manager.today())?,
        limits,
        kind: KeyKind::Token,
        created_by: format!("partner:{}", partner.id),
    };
    let created = manager.create_key(new).await?;
    Ok(ok(CreatedKeyData {
        key: KeyObject::from(&created.key),
        api_key: created.secret,
        warnings,
    }))
}

/// The partner's own key, or 404 (never 403: another partner's key does not "exist").
fn own_key(state: &ApiState, partner: Uuid, id: &str) -> Result<Key, ApiError> {
    let not_found = || ApiError::NotFound("key not found".to_string());
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    state
        .manager
        .key(id)
        .filter(|k| k.partner_id == partner)
        .ok_or_else(not_found)
}

async fn get_key(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    let key = own_key(&state, partner.id, &id)?;
    Ok(ok(KeyObject::from(&key)))
}

async fn enable_key(
    state: State<ApiState>,
    partner: AuthPartner,
    id: Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    set_disabled(state, partner, id, false).await
}

async fn disable_key(
    state: State<ApiState>,
    partner: AuthPartner,
    id: Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    set_disabled(state, partner, id, true).await
}

async fn set_disabled(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    let key = own_key(&state, partner.id, &id)?;
    let updated = state
        .manager
        .change_key(key.id, KeyChange::SetDisabled(disabled))
        .await?
        .ok_or_else(|| ApiError::NotFound("key not found".to_string()))?;
    Ok(ok(KeyObject::from(&updated)))
}
