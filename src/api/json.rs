//! A JSON body extractor whose every failure is a 422 naming the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Like `axum::Json`, but errors are `ApiError::Validation` with the field path.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::Validation(format!("cannot read body: {}", e.body_text())))?;
        parse(&bytes).map(JsonBody)
    }
}

/// The raw request body (up to the router's limit); an unreadable or oversize body is a 422.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| ApiError::Validation(format!("cannot read body: {}", e.body_text())))
    }
}

/// Parses `bytes` as `T`, naming the field on failure.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." || path == "?" || path.is_empty() {
            ApiError::Validation(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::Validation(format!("{path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        limit: Option<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse::<Body>(br#"{"limit":"x"}"#).unwrap_err().to_string();
        assert!(err.starts_with("limit: invalid type"), "{err}");
        let err = parse::<Body>(br#"{"other":1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `other`"), "{err}");
        let err = parse::<Body>(b"{").unwrap_err().to_string();
        assert!(err.starts_with("invalid JSON body"), "{err}");
    }
}
