//! Reseller sub-keys: create (once, or replayed with `Idempotency-Key`), list with per-key
//! cost, read, PATCH, enable, disable. Another partner's key is a 404, never a 403.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::fields::KeyFields;
use super::names::Names;
use super::{Ok, idempotency, ok, usd};
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::json::{self, RawBody};
use crate::api::key_object::{KeyObject, PARTNER_PERMISSIONS};
use crate::api::openapi::{Detail, PartnerErrors};
use crate::api::paging::{PageOf, PageQuery};
use crate::api::partner_auth::AuthPartner;
use crate::api::query::ApiQuery;
use crate::domain::ip::IpAllowList;
use crate::domain::key::{Key, KeyLimits, Partner};
use crate::domain::permission::PermissionSet;
use crate::manage::{KeyKind, NewKey};
use crate::meter::llm_usage::{LlmRow, merge_by_model};
use crate::store::KeyChange;

/// The `{id}` of a key path.
#[derive(utoipa::IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
pub struct KeyId(
    /// The key's id; another partner's key, or no key, is a 404.
    Uuid,
);

/// No such key, or another partner's.
#[derive(utoipa::IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)] // a response in the document only
pub struct KeyNotFound(#[to_schema] Detail);

/// The key is revoked: a revoked key cannot be enabled or changed.
#[derive(utoipa::IntoResponses)]
#[response(status = 409)]
#[allow(dead_code)] // a response in the document only
pub struct KeyRevoked(#[to_schema] Detail);

/// A new key with its secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyData {
    #[serde(flatten)]
    key: KeyObject,
    /// The `cr_` key, shown this once.
    api_key: String,
    /// What may be unintended about the key (e.g. no cost limit).
    warnings: Vec<String>,
}

/// A key with its spend so far.
#[derive(Serialize, ToSchema)]
pub struct KeyWithCost {
    #[serde(flatten)]
    key: KeyObject,
    /// Spent today (UTC), live.
    cost_today_usd: f64,
    /// Spent in all, live.
    cost_total_usd: f64,
}

/// `GET /keys/{id}`: the key with its cost, plus its LLM usage by model (an extension of the
/// seed's key detail; empty for keys that made no priced LLM call).
#[derive(Serialize, ToSchema)]
pub struct KeyDetail {
    #[serde(flatten)]
    key: KeyWithCost,
    llm_usage: Vec<ModelUsage>,
}

/// A key's lifetime LLM usage of one model (written or not yet flushed).
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelUsage {
    model: String,
    requests: u64,
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
}

impl From<LlmRow> for ModelUsage {
    fn from(r: LlmRow) -> Self {
        ModelUsage {
            model: r.model,
            requests: r.requests,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: usd(i64::try_from(r.cost_micros).unwrap_or(i64::MAX)),
        }
    }
}

/// Create a sub-key.
///
/// With an `Idempotency-Key`, a retry with the same key and the same JSON body (compared as
/// parsed JSON) within 24 hours answers the first creation's body again instead of creating
/// another key; the same key with another body is a 422.
#[utoipa::path(post, path = "/keys", operation_id = "create_key", tag = "reseller", security(("partnerToken" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters; makes retries safe")),
    request_body = KeyFields,
    responses((status = 200, body = Ok<CreatedKeyData>),
        (status = 422, description = "A field is invalid (named in `detail`), the Idempotency-Key is malformed or was used with another body", body = Detail),
        (status = 429, description = "The partner's hourly key creations are spent, or the token's call budget", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        PartnerErrors))]
pub async fn create(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let fields: KeyFields = json::parse(&body)?;
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(json_response(create_now(&state, &partner, &fields).await?));
    };
    let key = idempotency::header_key(value)?;
    let hash = idempotency::body_hash(&body);
    // One creation per key at a time, so two retries racing cannot both mint a key: in this
    // process, and on a shared store in every instance.
    let _once = state.idempotency_lock.lock().await;
    let manager = &state.manager;
    let _everywhere = match manager.store.cluster() {
        Some(cluster) => Some(
            cluster
                .lock(&[&format!("idempotency:{}:{key}", partner.id)])
                .await
                .map_err(crate::manage::ManageError::from)?,
        ),
        None => None,
    };
    if let Some(replayed) = idempotency::replay(manager, partner.id, &key, &hash).await? {
        return Ok(json_response(replayed));
    }
    let response = create_now(&state, &partner, &fields).await?;
    idempotency::remember(manager, partner.id, &key, &hash, &response).await?;
    Ok(json_response(response))
}

fn json_response(body: Vec<u8>) -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// Validates the fields, counts the creation against the hourly limit (only valid requests
/// count), mints the key and returns the serialised success body.
async fn create_now(
    state: &ApiState,
    partner: &Partner,
    fields: &KeyFields,
) -> Result<Vec<u8>, ApiError> {
    let manager = &state.manager;
    let mut draft = draft_key(partner);
    fields.apply(&mut draft, manager.today())?;
    let mut warnings = Vec::new();
    let limits = &draft.limits;
    if limits.daily_cost_limit_micros.is_none() && limits.total_cost_limit_micros.is_none() {
        warnings.push(
            "no daily or total cost limit: this key can spend the whole partner balance".into(),
        );
    }
    let name = fields.name()?;
    state.limits.create(partner.id).await?;
    let new = NewKey {
        account_id: manager.default_account(partner.id).await?.id,
        partner_id: partner.id,
        name,
        label: draft.label,
        description: draft.description,
        permissions: draft.permissions,
        ip_whitelist: draft.ip_whitelist,
        expiration_date: draft.expiration_date,
        limits: draft.limits,
        kind: KeyKind::Token,
        created_by: format!("partner:{}", partner.id),
    };
    let created = manager.create_key(new).await?;
    let data = CreatedKeyData {
        key: Names::new(state, partner).object(&created.key).await?,
        api_key: created.secret,
        warnings,
    };
    serde_json::to_vec(&ok(data).0).map_err(|e| ApiError::Validation(e.to_string()))
}

/// A key record with the reseller defaults, for the fields to be applied to.
fn draft_key(partner: &Partner) -> Key {
    Key {
        id: Uuid::nil(),
        account_id: Uuid::nil(),
        partner_id: partner.id,
        name: String::new(),
        label: None,
        description: None,
        credential: crate::domain::key::Credential::Token { digest: [0; 32] },
        permissions: PermissionSet::from_slice(&PARTNER_PERMISSIONS),
        ip_whitelist: IpAllowList::default(),
        expiration_date: None,
        disabled: false,
        created_at: 0,
        created_by: String::new(),
        revoked_at: None,
        revoked_by: None,
        status_changed_at: None,
        status_changed_by: None,
        last_used_at: None,
        limits: KeyLimits::default(),
    }
}

/// The partner's own key, or 404 (another partner's key does not "exist").
async fn own_key(state: &ApiState, partner: Uuid, id: &str) -> Result<Key, ApiError> {
    let not_found = || ApiError::NotFound("key not found".to_string());
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    state
        .manager
        .key(id)
        .await?
        .filter(|k| k.partner_id == partner)
        .ok_or_else(not_found)
}

async fn with_cost(
    state: &ApiState,
    names: &mut Names<'_>,
    key: &Key,
) -> Result<KeyWithCost, ApiError> {
    let meter = &state.manager.meter;
    let now = state.manager.clock.now_unix();
    let usage = meter.key_usage(key.id, now);
    let today = usage.cost_day().current(now, &meter.retired).total_used();
    let total = usage.cost_total().current(now, &meter.retired).total_used();
    Ok(KeyWithCost {
        key: names.object(key).await?,
        cost_today_usd: usd(today as i64),
        cost_total_usd: usd(total as i64),
    })
}

/// `?limit=&cursor=&q=` of the key list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysQuery {
    /// Items per page: 1 to 1000, 100 when not given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page (of the same search).
    cursor: Option<String>,
    /// Only keys whose name, label or description contains this (ignoring case), or whose id
    /// it is; at most 128 characters.
    #[param(max_length = 128)]
    q: Option<String>,
}

/// Longest key search.
const MAX_SEARCH: usize = 128;

/// List sub-keys with their cost.
///
/// A page of the partner's keys, oldest first, optionally only those matching `q`; follow
/// `next_cursor` until it is null.
#[utoipa::path(get, path = "/keys", operation_id = "list_keys", tag = "reseller", security(("partnerToken" = [])), params(KeysQuery),
    responses((status = 200, body = PageOf<KeyWithCost>),
        (status = 422, description = "`limit`, `cursor` or `q` is malformed", body = Detail), PartnerErrors))]
pub async fn list(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    ApiQuery(query): ApiQuery<KeysQuery>,
) -> Result<Json<PageOf<KeyWithCost>>, ApiError> {
    let wanted = PageQuery::new(query.limit, query.cursor).wanted()?;
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if search.is_some_and(|q| q.chars().count() > MAX_SEARCH) {
        return Err(ApiError::Validation(format!(
            "q: at most {MAX_SEARCH} characters"
        )));
    }
    let mut keys = state
        .manager
        .keys_of_partner(partner.id, wanted.page(), search)
        .await?;
    let next_cursor = wanted.cut(&mut keys, |k| (k.created_at, k.id));
    let mut names = Names::new(&state, &partner);
    let mut data = Vec::with_capacity(keys.len());
    for key in &keys {
        data.push(with_cost(&state, &mut names, key).await?);
    }
    Ok(Json(PageOf::new(data, next_cursor)))
}

/// One sub-key.
///
/// The key with its cost and its LLM usage by model.
#[utoipa::path(get, path = "/keys/{id}", operation_id = "get_key", tag = "reseller", security(("partnerToken" = [])), params(KeyId),
    responses((status = 200, body = Ok<KeyDetail>), KeyNotFound, PartnerErrors))]
pub async fn get(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
) -> Result<Json<Ok<KeyDetail>>, ApiError> {
    let key = own_key(&state, partner.id, &id).await?;
    let manager = &state.manager;
    let stored = manager
        .store
        .llm_usage_of_key(key.id)
        .await
        .map_err(crate::manage::ManageError::from)?;
    let pending = manager.meter.llm.pending_for(key.id);
    let llm_usage = merge_by_model(stored, pending)
        .into_iter()
        .map(ModelUsage::from)
        .collect();
    Ok(ok(KeyDetail {
        key: with_cost(&state, &mut Names::new(&state, &partner), &key).await?,
        llm_usage,
    }))
}

/// Update a sub-key.
///
/// Any key field but the name; fields not given keep their value. Answers the key as stored.
#[utoipa::path(patch, path = "/keys/{id}", operation_id = "update_key", tag = "reseller", security(("partnerToken" = [])), params(KeyId),
    request_body = KeyFields,
    responses((status = 200, body = Ok<KeyObject>), KeyNotFound, KeyRevoked,
        (status = 422, description = "A field is invalid, or is `name` (named in `detail`)", body = Detail),
        PartnerErrors))]
pub async fn patch(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    let fields: KeyFields = json::parse(&body)?;
    if fields.name.is_some() {
        return Err(ApiError::Validation("name: cannot be changed".into()));
    }
    let key = own_key(&state, partner.id, &id).await?;
    refuse_revoked(&key)?;
    let manager = &state.manager;
    // Validate on a copy first, so a bad field changes nothing; the same `today` is used for
    // the write, so the second application cannot fail where the first passed.
    let today = manager.today();
    let mut check = key.clone();
    fields.apply(&mut check, today)?;
    let updated = manager
        .edit_key(key.id, |k| {
            if let Err(err) = fields.apply(k, today) {
                tracing::error!(error = %err, "PATCH failed after validation");
            }
        })
        .await?
        .ok_or_else(|| ApiError::NotFound("key not found".to_string()))?;
    Ok(ok(Names::new(&state, &partner).object(&updated).await?))
}

/// Enable a sub-key.
#[utoipa::path(post, path = "/keys/{id}/enable", operation_id = "enable_key", tag = "reseller", security(("partnerToken" = [])),
    params(KeyId), responses((status = 200, body = Ok<KeyObject>), KeyNotFound, KeyRevoked, PartnerErrors))]
pub async fn enable(
    state: State<ApiState>,
    partner: AuthPartner,
    id: Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    set_disabled(state, partner, id, false).await
}

/// Disable a sub-key.
///
/// The data plane refuses the key from its next request until it is enabled again.
#[utoipa::path(post, path = "/keys/{id}/disable", operation_id = "disable_key", tag = "reseller", security(("partnerToken" = [])),
    params(KeyId), responses((status = 200, body = Ok<KeyObject>), KeyNotFound, PartnerErrors))]
pub async fn disable(
    state: State<ApiState>,
    partner: AuthPartner,
    id: Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    set_disabled(state, partner, id, true).await
}

/// Revoke a sub-key for good.
///
/// The data plane refuses the key from its next request; the first revocation's time and
/// author stay.
#[utoipa::path(post, path = "/keys/{id}/revoke", operation_id = "revoke_key", tag = "reseller", security(("partnerToken" = [])),
    params(KeyId), responses((status = 200, body = Ok<KeyObject>), KeyNotFound, PartnerErrors))]
pub async fn revoke(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    let key = own_key(&state, partner.id, &id).await?;
    let at = state.manager.clock.now_unix();
    let by = format!("partner:{}", partner.id);
    let updated = state
        .manager
        .change_key(key.id, KeyChange::Revoke { at, by })
        .await?
        .ok_or_else(|| ApiError::NotFound("key not found".to_string()))?;
    Ok(ok(Names::new(&state, &partner).object(&updated).await?))
}

/// 409 for a change to a revoked key, which no change can bring back.
fn refuse_revoked(key: &Key) -> Result<(), ApiError> {
    match key.revoked_at {
        Some(_) => Err(ApiError::Conflict(
            "the key is revoked; a revoked key cannot be enabled or changed".to_string(),
        )),
        None => Ok(()),
    }
}

async fn set_disabled(
    State(state): State<ApiState>,
    AuthPartner(partner): AuthPartner,
    Path(id): Path<String>,
    disabled: bool,
) -> Result<Json<Ok<KeyObject>>, ApiError> {
    let key = own_key(&state, partner.id, &id).await?;
    if !disabled {
        refuse_revoked(&key)?;
    }
    let updated = state
        .manager
        .change_key(
            key.id,
            KeyChange::SetDisabled {
                disabled,
                at: state.manager.clock.now_unix(),
                by: format!("partner:{}", partner.id),
            },
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("key not found".to_string()))?;
    Ok(ok(Names::new(&state, &partner).object(&updated).await?))
}
