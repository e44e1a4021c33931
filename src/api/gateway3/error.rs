//! Errors of the Gateway3 v0 APIs and their one mapping to responses: the same envelope as a
//! success, `{"code":<status>,"msg":"..."}`, with the HTTP status line equal to `code`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Envelope;
use crate::api::error::ApiError;
use crate::domain::decision::Denial;
use crate::manage::ManageError;
use crate::store::StoreError;

/// A failed v0 call, as the caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum V0Error {
    /// Malformed or invalid input; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PaymentRequired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A record with the same identifier or name exists.
    #[error("{0}")]
    Conflict(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("rate limit exceeded")]
    RateLimited { retry_after: u64 },
    /// The caller's key was refused (its status and code come from the data plane's table).
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Denied(Denial),
    #[error("internal error")]
    Internal(#[source] ManageError),
}

impl V0Error {
    /// The HTTP status of this error (also the envelope's `code`).
    pub fn status(&self) -> StatusCode {
        match self {
            V0Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            V0Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            V0Error::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            V0Error::Forbidden(_) => StatusCode::FORBIDDEN,
            V0Error::NotFound(_) => StatusCode::NOT_FOUND,
            V0Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            V0Error::Conflict(_) => StatusCode::CONFLICT,
            V0Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            V0Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            V0Error::Denied(d) => {
                StatusCode::from_u16(d.code.status()).unwrap_or(StatusCode::FORBIDDEN)
            }
            V0Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ManageError> for V0Error {
    fn from(err: ManageError) -> Self {
        match err {
            ManageError::Store(StoreError::Conflict("uuid")) => {
                V0Error::Conflict("uuid: an account with this uuid already exists".into())
            }
            ManageError::Store(StoreError::Conflict("name")) => {
                V0Error::Conflict("name: the account already has a key with this name".into())
            }
            ManageError::Store(StoreError::Conflict(field)) => {
                V0Error::Conflict(format!("{field}: already exists"))
            }
            other => V0Error::Internal(other),
        }
    }
}

/// The shared extractors (partner authentication, JSON bodies) speak `ApiError`.
impl From<ApiError> for V0Error {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Unauthorized => V0Error::Unauthorized(
                "invalid or missing partner token (Authorization: Bearer rsk_...)".into(),
            ),
            ApiError::Forbidden(msg) => V0Error::Forbidden(msg),
            ApiError::NotFound(msg) => V0Error::NotFound(msg),
            ApiError::Validation(msg) => V0Error::BadRequest(msg),
            ApiError::Conflict(msg) => V0Error::Conflict(msg),
            ApiError::RateLimited { retry_after } => V0Error::RateLimited { retry_after },
            ApiError::Internal(err) => V0Error::Internal(err),
        }
    }
}

impl IntoResponse for V0Error {
    fn into_response(self) -> Response {
        if let V0Error::Internal(err) = &self {
            // Details go to the log, never to the caller.
            tracing::error!(error = %err, "gateway3 call failed");
        }
        let status = self.status();
        let retry_after = match &self {
            V0Error::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        let body = Envelope::<()> {
            code: status.as_u16(),
            msg: self.to_string(),
            data: None,
            next_cursor: None,
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::DenyCode;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn each_error_maps_to_its_status_and_envelope() {
        let cases = [
            (V0Error::BadRequest("uuid: missing".into()), 400),
            (V0Error::Unauthorized("x".into()), 401),
            (V0Error::PaymentRequired("x".into()), 402),
            (V0Error::Forbidden("x".into()), 403),
            (V0Error::NotFound("x".into()), 404),
            (V0Error::MethodNotAllowed("x".into()), 405),
            (V0Error::Conflict("x".into()), 409),
            (V0Error::PayloadTooLarge, 413),
            (V0Error::RateLimited { retry_after: 3 }, 429),
            (V0Error::Denied(Denial::new(DenyCode::KeyRevoked)), 403),
            (V0Error::Denied(Denial::new(DenyCode::InvalidKey)), 401),
            (
                V0Error::Internal(ManageError::NoDefaultAccount(uuid::Uuid::nil())),
                500,
            ),
        ];
        for (err, status) in cases {
            let msg = err.to_string();
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            let json = body(resp).await;
            assert_eq!(json["code"], status);
            assert!(json.get("data").is_none(), "{json}");
            if status == 500 {
                assert_eq!(json["msg"], "internal error", "no internals leak");
            } else {
                assert_eq!(json["msg"], msg);
            }
        }
    }

    #[test]
    fn conflicts_and_shared_errors_are_mapped() {
        let dup: V0Error = ManageError::Store(StoreError::Conflict("uuid")).into();
        assert_eq!(dup.status(), StatusCode::CONFLICT);
        assert!(dup.to_string().starts_with("uuid:"), "{dup}");
        let name: V0Error = ManageError::Store(StoreError::Conflict("name")).into();
        assert!(name.to_string().starts_with("name:"), "{name}");
        let invalid: V0Error = ApiError::Validation("plan_id: invalid type".into()).into();
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let denied = V0Error::Denied(Denial::new(DenyCode::KeyRevoked));
        assert!(denied.to_string().starts_with("key_revoked: "), "{denied}");
    }
}
