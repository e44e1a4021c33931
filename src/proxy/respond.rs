//! The one place denials become HTTP responses: `{"error":{"code":..,"message":..}}`.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::domain::decision::Denial;
use crate::proxy::ProxyBody;

/// The JSON body of a denial.
pub fn denial_body(denial: &Denial) -> String {
    serde_json::json!({
        "error": { "code": denial.code.as_str(), "message": denial.message }
    })
    .to_string()
}

/// The full HTTP response for a denial (status, JSON body, `Retry-After` when known).
pub fn denial_response(denial: &Denial) -> Response<ProxyBody> {
    let status =
        StatusCode::from_u16(denial.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Full::new(Bytes::from(denial_body(denial)))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = denial.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::DenyCode;

    #[tokio::test]
    async fn every_code_maps_to_status_and_body() {
        for code in DenyCode::ALL {
            let resp = denial_response(&Denial::new(code));
            assert_eq!(resp.status().as_u16(), code.status());
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"]["code"], code.as_str());
            assert_eq!(json["error"]["message"], code.default_message());
        }
    }

    #[test]
    fn retry_after_is_sent() {
        let resp = denial_response(&Denial::new(DenyCode::RateLimited).retry_after(7));
        assert_eq!(resp.headers()[RETRY_AFTER], "7");
    }
}
