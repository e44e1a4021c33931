//! The operator surface under `/api/v1/admin`: create partners, set tier multipliers, top up
//! balances, suspend and reinstate partners. Authenticated with an operator token whose
//! argon2id hash is in `security.operator_tokens` (made with `tollgate hash-token`).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::ApiState;
use super::error::ApiError;
use super::json::JsonBody;
use super::openapi::{Detail, OperatorErrors};
use super::paging::{PageOf, PageQuery};
use super::partner_auth::bearer_token;
use super::query::ApiQuery;
use super::reseller::{Ok, ok, usd};
use crate::domain::key::Partner;
use crate::metrics::AuthSurface;

/// The operator routes (relative to `/api/v1/admin`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::default()
        .routes(routes!(create_partner, list_partners))
        .routes(routes!(get_partner))
        .routes(routes!(top_up))
        .routes(routes!(set_tier))
        .routes(routes!(suspend))
        .routes(routes!(unsuspend))
}

/// The `{id}` of a partner path.
#[derive(utoipa::IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)]
struct PartnerId(
    /// The partner's id.
    Uuid,
);

/// No partner with this id.
#[derive(utoipa::IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)] // a response in the document only
struct PartnerNotFound(#[to_schema] Detail);

/// A field is invalid (named in `detail`).
#[derive(utoipa::IntoResponses)]
#[response(status = 422)]
#[allow(dead_code)] // a response in the document only
struct Invalid(#[to_schema] Detail);

/// A caller holding an operator token.
pub struct Operator;

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let manager = &state.manager;
        let client = crate::api::client(parts, state);
        if let Some(token) = bearer_token(&parts.headers) {
            manager
                .verifier
                .may_verify(&manager.hasher, token, client)
                .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
            for (i, phc) in state.operator_tokens.iter().enumerate() {
                let owner = Uuid::from_u128(i as u128);
                if manager
                    .verifier
                    .verify_phc(&manager.hasher, token, owner, phc)
                    .await
                {
                    return Ok(Operator);
                }
            }
        }
        state.metrics.record_auth_failure(AuthSurface::Operator);
        manager.verifier.failed(client);
        Err(ApiError::Unauthorized)
    }
}

/// A partner as the operator sees it.
#[derive(Serialize, ToSchema)]
pub struct PartnerView {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    /// The live prepaid balance.
    balance_usd: f64,
    /// Multiplier applied to upstream cost.
    tier_multiplier: f64,
    suspended: bool,
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

fn view(state: &ApiState, p: &Partner) -> PartnerView {
    let live = state.manager.meter.partner(p.id);
    PartnerView {
        id: p.id.to_string(),
        name: p.name.clone(),
        balance_usd: usd(live.map_or(p.balance_micros, |l| l.balance())),
        tier_multiplier: p.tier_multiplier_ppm as f64 / 1e6,
        suspended: p.suspended,
        created_at: super::key_object::timestamp(Some(p.created_at)),
    }
}

/// List partners.
///
/// A page of the partners, oldest first; follow `next_cursor` until it is null.
#[utoipa::path(get, path = "/partners", operation_id = "list_partners", tag = "operator", security(("operatorToken" = [])), params(PageQuery),
    responses((status = 200, body = PageOf<PartnerView>), Invalid, OperatorErrors))]
async fn list_partners(
    State(state): State<ApiState>,
    _: Operator,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageOf<PartnerView>>, ApiError> {
    let store = &state.manager.store;
    super::paging::answer(
        &query,
        |page| store.partners_page(page),
        |p| (p.created_at, p.id),
        |p| view(&state, &p),
    )
    .await
}

fn partner_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound("partner not found".into()))
}

async fn load(state: &ApiState, id: Uuid) -> Result<Partner, ApiError> {
    state
        .manager
        .store
        .get_partner(id)
        .await
        .map_err(crate::manage::ManageError::from)?
        .ok_or_else(|| ApiError::NotFound("partner not found".into()))
}

/// Body of a partner creation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartner {
    /// 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
}

/// A new partner with its token.
#[derive(Serialize, ToSchema)]
pub struct CreatedPartner {
    #[serde(flatten)]
    partner: PartnerView,
    /// The `rsk_` token, shown once.
    token: String,
}

/// Create a partner.
#[utoipa::path(post, path = "/partners", operation_id = "create_partner", tag = "operator", security(("operatorToken" = [])),
    request_body = CreatePartner,
    responses((status = 200, body = Ok<CreatedPartner>), Invalid, OperatorErrors))]
async fn create_partner(
    State(state): State<ApiState>,
    _: Operator,
    JsonBody(body): JsonBody<CreatePartner>,
) -> Result<Json<Ok<CreatedPartner>>, ApiError> {
    let name = super::key_object::text("name", &body.name, 128)?;
    if name.is_empty() {
        return Err(ApiError::Validation("name: must not be empty".into()));
    }
    let (partner, token) = state.manager.create_partner(&name).await?;
    Ok(ok(CreatedPartner {
        partner: view(&state, &partner),
        token,
    }))
}

/// One partner.
#[utoipa::path(get, path = "/partners/{id}", operation_id = "get_partner", tag = "operator", security(("operatorToken" = [])),
    params(PartnerId),
    responses((status = 200, body = Ok<PartnerView>), PartnerNotFound, OperatorErrors))]
async fn get_partner(
    State(state): State<ApiState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    let partner = load(&state, partner_id(&id)?).await?;
    Ok(ok(view(&state, &partner)))
}

/// Body of a top-up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// USD to add (negative for a correction); not zero.
    #[schema(minimum = -1e9, maximum = 1e9)]
    amount_usd: f64,
}

/// Top up a balance.
#[utoipa::path(post, path = "/partners/{id}/topup", operation_id = "top_up_partner", tag = "operator", security(("operatorToken" = [])),
    params(PartnerId), request_body = TopUp,
    responses((status = 200, body = Ok<PartnerView>), PartnerNotFound, Invalid, OperatorErrors))]
async fn top_up(
    State(state): State<ApiState>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TopUp>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    let id = partner_id(&id)?;
    let amount = body.amount_usd;
    if !amount.is_finite() || amount == 0.0 || amount.abs() > 1e9 {
        return Err(ApiError::Validation(
            "amount_usd: must be a non-zero amount of at most 1e9".into(),
        ));
    }
    let micros = (amount * 1e6).round() as i64;
    if micros == 0 {
        return Err(ApiError::Validation(
            "amount_usd: must be at least 0.000001 (one micro-USD) in size".into(),
        ));
    }
    state
        .manager
        .top_up(id, micros)
        .await?
        .ok_or_else(|| ApiError::NotFound("partner not found".into()))?;
    let partner = load(&state, id).await?;
    Ok(ok(view(&state, &partner)))
}

/// Body of a tier change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Multiplier applied to upstream cost (e.g. 0.8 for a 20 % discount).
    #[schema(exclusive_minimum = 0.0, maximum = 100.0)]
    tier_multiplier: f64,
}

/// Set the tier multiplier.
#[utoipa::path(post, path = "/partners/{id}/tier", operation_id = "set_partner_tier", tag = "operator", security(("operatorToken" = [])),
    params(PartnerId), request_body = Tier,
    responses((status = 200, body = Ok<PartnerView>), PartnerNotFound, Invalid, OperatorErrors))]
async fn set_tier(
    State(state): State<ApiState>,
    _: Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Tier>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    let m = body.tier_multiplier;
    if !m.is_finite() || m <= 0.0 || m > 100.0 {
        return Err(ApiError::Validation(
            "tier_multiplier: must be greater than 0 and at most 100".into(),
        ));
    }
    let ppm = (m * 1e6).round() as u64;
    update(&state, &id, Some(ppm), None).await
}

/// Suspend a partner.
///
/// Its keys are refused and its management calls answer 403 until it is reinstated.
#[utoipa::path(post, path = "/partners/{id}/suspend", operation_id = "suspend_partner", tag = "operator", security(("operatorToken" = [])),
    params(PartnerId),
    responses((status = 200, body = Ok<PartnerView>), PartnerNotFound, OperatorErrors))]
async fn suspend(
    State(state): State<ApiState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    update(&state, &id, None, Some(true)).await
}

/// Reinstate a partner.
#[utoipa::path(post, path = "/partners/{id}/unsuspend", operation_id = "unsuspend_partner", tag = "operator", security(("operatorToken" = [])),
    params(PartnerId),
    responses((status = 200, body = Ok<PartnerView>), PartnerNotFound, OperatorErrors))]
async fn unsuspend(
    State(state): State<ApiState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    update(&state, &id, None, Some(false)).await
}

async fn update(
    state: &ApiState,
    id: &str,
    tier: Option<u64>,
    suspended: Option<bool>,
) -> Result<Json<Ok<PartnerView>>, ApiError> {
    let partner = state
        .manager
        .update_partner(partner_id(id)?, tier, suspended)
        .await?
        .ok_or_else(|| ApiError::NotFound("partner not found".into()))?;
    Ok(ok(view(state, &partner)))
}
