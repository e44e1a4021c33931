//! Errors of the reseller API and their one mapping to `{"detail": ...}` responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};

use crate::manage::ManageError;
use crate::store::StoreError;

/// A failed management call, as the caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid or missing token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Validation(String),
    /// The request conflicts with the resource's state (e.g. changing a revoked key).
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded")]
    RateLimited { retry_after: u64 },
    #[error("internal error")]
    Internal(#[source] ManageError),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(err: ManageError) -> Self {
        match err {
            ManageError::Store(StoreError::Conflict(field)) => {
                ApiError::Validation(format!("{field}: already exists"))
            }
            other => ApiError::Internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            // Details go to the log, never to the caller.
            tracing::error!(error = %err, "management call failed");
        }
        let status = self.status();
        let mut resp = (
            status,
            Json(serde_json::json!({ "detail": self.to_string() })),
        )
            .into_response();
        if let ApiError::RateLimited { retry_after } = self {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status() {
        let cases = [
            (ApiError::Unauthorized, 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::Validation("x".into()), 422),
            (ApiError::RateLimited { retry_after: 3 }, 429),
            (
                ApiError::Internal(ManageError::NoDefaultAccount(uuid::Uuid::nil())),
                500,
            ),
        ];
        for (err, status) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
        }
        let resp = ApiError::RateLimited { retry_after: 3 }.into_response();
        assert_eq!(resp.headers()[RETRY_AFTER], "3");
        let conflict: ApiError = ManageError::Store(StoreError::Conflict("name")).into();
        assert_eq!(conflict.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
