//! The one place denials become HTTP responses: `{"error":{"code":..,"message":..}}`.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use std::sync::OnceLock;

use serde::Serialize;

use crate::domain::decision::{Denial, DenyCode};
use crate::proxy::ProxyBody;

/// The JSON body of a denial: `code` and `message`, plus the error `type` the OpenAI and
/// Anthropic SDKs read (and Anthropic's top-level `"type":"error"`), so their clients show a
/// gateway refusal as cleanly as one of the provider's own.
pub fn denial_body(denial: &Denial) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        r#type: &'static str,
        error: Error<'a>,
    }
    #[derive(Serialize)]
    struct Error<'a> {
        r#type: &'static str,
        code: &'static str,
        message: &'a str,
    }
    let body = Body {
        r#type: "error",
        error: Error {
            r#type: sdk_type(denial.code.status()),
            code: denial.code.as_str(),
            message: &denial.message,
        },
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// The body of a denial with its code's default message (most denials: an unknown key, a
/// limit), serialised once per code.
fn default_body(code: DenyCode) -> Bytes {
    static BODIES: OnceLock<Vec<Bytes>> = OnceLock::new();
    let bodies = BODIES.get_or_init(|| {
        DenyCode::ALL
            .iter()
            .map(|&c| Bytes::from(denial_body(&Denial::new(c))))
            .collect()
    });
    bodies[code as usize].clone()
}

/// The provider error type of a status, in the names both LLM APIs use.
fn sdk_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// The retry hint the official OpenAI and Anthropic SDKs read before anything else.
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The full HTTP response for a denial (status, JSON body, `Retry-After` when known).
pub fn denial_response(denial: &Denial) -> Response<ProxyBody> {
    let status =
        StatusCode::from_u16(denial.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if denial.message == denial.code.default_message() {
        default_body(denial.code)
    } else {
        Bytes::from(denial_body(denial))
    };
    let body = Full::new(body).map_err(|never| match never {}).boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = denial.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if !denial.retry_soon() {
        headers.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_code_maps_to_status_and_body() {
        for code in DenyCode::ALL {
            let resp = denial_response(&Denial::new(code));
            assert_eq!(resp.status().as_u16(), code.status());
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"]["code"], code.as_str());
            assert_eq!(json["type"], "error");
            assert!(json["error"]["type"].is_string());
            assert_eq!(json["error"]["message"], code.default_message());
        }
    }

    #[tokio::test]
    async fn a_precomputed_body_is_the_codes_own_and_a_message_of_its_own_is_shown() {
        for code in DenyCode::ALL {
            let body = default_body(code);
            assert_eq!(body, denial_body(&Denial::new(code)).as_bytes(), "{code:?}");
        }
        let odd = Denial::with_message(DenyCode::BadRequest, "a \"quoted\" reason");
        let body = denial_response(&odd).into_body().collect().await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert_eq!(json["error"]["message"], "a \"quoted\" reason");
        assert_eq!(json["error"]["code"], "bad_request");
    }

    #[test]
    fn sdk_error_types_follow_the_status() {
        let table = [
            (DenyCode::InvalidKey, "authentication_error"),
            (DenyCode::ModelNotAllowed, "permission_error"),
            (DenyCode::QuotaExceeded, "rate_limit_error"),
            (DenyCode::InsufficientBalance, "billing_error"),
            (DenyCode::BadRequest, "invalid_request_error"),
            (DenyCode::UpstreamTimeout, "api_error"),
        ];
        for (code, kind) in table {
            let json: serde_json::Value =
                serde_json::from_str(&denial_body(&Denial::new(code))).unwrap();
            assert_eq!(json["error"]["type"], kind, "{code:?}");
        }
    }

    #[test]
    fn retry_after_is_sent() {
        let resp = denial_response(&Denial::new(DenyCode::RateLimited).retry_after(7));
        assert_eq!(resp.headers()[RETRY_AFTER], "7");
        assert!(resp.headers().get(SHOULD_RETRY).is_none());
    }

    #[test]
    fn only_refusals_a_retry_cannot_soon_lift_say_should_retry_false() {
        let says = |d: Denial| denial_response(&d).headers().get(SHOULD_RETRY).cloned();
        let quota = || Denial::new(DenyCode::QuotaExceeded);
        assert_eq!(says(quota().retry_after(43_200)).unwrap(), "false");
        assert_eq!(says(quota()).unwrap(), "false", "no end in sight");
        assert_eq!(says(quota().retry_after(60)), None, "back within a minute");
        let balance = || Denial::new(DenyCode::InsufficientBalance);
        assert_eq!(says(balance()).unwrap(), "false");
        assert_eq!(
            says(balance().retry_after(1)),
            None,
            "a lease being shared out"
        );
        for code in [
            DenyCode::RateLimited,
            DenyCode::ConcurrencyLimit,
            DenyCode::UpstreamTimeout,
        ] {
            assert_eq!(says(Denial::new(code).retry_after(2)), None, "{code:?}");
        }
        for code in [
            DenyCode::InvalidKey,
            DenyCode::KeyExpired,
            DenyCode::ModelNotAllowed,
        ] {
            assert_eq!(says(Denial::new(code)).unwrap(), "false", "{code:?}");
        }
    }
}
