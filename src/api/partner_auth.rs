//! Partner authentication: `Authorization: Bearer rsk_...` → the partner, or 401/403.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use super::limits::Caller;
use crate::domain::key::Partner;
use crate::domain::secret;
use crate::metrics::AuthSurface;

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The authenticated, active partner making the call, counted against its token's call budget.
pub struct AuthPartner(pub Partner);

impl FromRequestParts<ApiState> for AuthPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let (partner, token) = authenticate(parts, state).await?;
        let caller = Caller {
            partner: partner.id,
            token: secret::partner_token_lookup(token).unwrap_or_default(),
        };
        state.limits.call(caller).await?;
        Ok(AuthPartner(partner))
    }
}

/// The authenticated, active partner, not counted against any budget: for reading `/me` and
/// rotating the token, which whoever holds a leaked token must never be able to block by
/// spending the token's budget.
pub struct UnmeteredPartner(pub Partner);

impl FromRequestParts<ApiState> for UnmeteredPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        authenticate(parts, state)
            .await
            .map(|(partner, _)| UnmeteredPartner(partner))
    }
}

/// The partner behind the bearer token, with the token; a failure counts in
/// `tollgate_management_auth_failures_total{surface="partner"}`.
async fn authenticate<'a>(
    parts: &'a Parts,
    state: &ApiState,
) -> Result<(Partner, &'a str), ApiError> {
    let verifier = &state.manager.verifier;
    let client = crate::api::client(parts, state);
    let failed = || {
        state.metrics.record_auth_failure(AuthSurface::Partner);
        verifier.failed(client);
        ApiError::Unauthorized
    };
    let token = bearer_token(&parts.headers).ok_or_else(failed)?;
    verifier
        .may_verify(&state.manager.hasher, token, client)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let partner = state
        .manager
        .authenticate_partner(token)
        .await?
        .ok_or_else(failed)?;
    if partner.suspended {
        return Err(ApiError::Forbidden(
            "partner account is suspended".to_string(),
        ));
    }
    Ok((partner, token))
}
