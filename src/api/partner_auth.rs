//! Partner authentication: `Authorization: Bearer rsk_...` → the partner, or 401/403.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::domain::key::Partner;

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The authenticated, active partner making the call.
pub struct AuthPartner(pub Partner);

impl FromRequestParts<ApiState> for AuthPartner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let partner = state
            .manager
            .authenticate_partner(token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if partner.suspended {
            return Err(ApiError::Forbidden(
                "partner account is suspended".to_string(),
            ));
        }
        state.limits.call(partner.id).await?;
        Ok(AuthPartner(partner))
    }
}
