//! A query-string extractor for the v1 surfaces whose every failure is a 422 naming the
//! parameter, in the `{"detail"}` body (axum's own rejection is a plain-text 400).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::extract::Query`, but a malformed, duplicated or mistyped parameter is
/// `ApiError::Validation`.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::Validation(rejection_detail(&e)))
    }
}

/// `query: <what is wrong>`, from axum's rejection of a query string.
pub fn rejection_detail(rejection: &axum::extract::rejection::QueryRejection) -> String {
    let text = rejection.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    format!("query: {detail}")
}
