//! One-time sign-in links for the console (`tollgate demo` prints one): the link carries a
//! random code in its fragment (never sent in a request line, so never in a log); the console
//! posts it to `POST /api/v1/console/login`, which answers the partner token once, within ten
//! minutes, and forgets the code. The `rsk_` token itself never appears in a URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::json::JsonBody;
use crate::api::openapi::Detail;
use crate::domain::clock::Clock;
use crate::domain::secret;

/// How long a sign-in link works.
pub const LINK_TTL_SECS: i64 = 600;

/// The codes of the sign-in links issued and not yet used, with their token and expiry.
pub struct ConsoleLogins {
    clock: Arc<dyn Clock>,
    codes: Mutex<HashMap<String, (String, i64)>>,
}

impl ConsoleLogins {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        ConsoleLogins {
            clock,
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// A new one-time code that signs `token`'s holder in.
    pub fn issue(&self, token: &str) -> String {
        let code = URL_SAFE_NO_PAD.encode(secret::random_bytes());
        let expires = self.clock.now_unix() + LINK_TTL_SECS;
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now_unix();
        codes.retain(|_, (_, until)| *until > now);
        codes.insert(code.clone(), (token.to_string(), expires));
        code
    }

    /// The token of `code`, once: the code is gone afterwards, used or expired.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let (token, until) = codes.remove(code)?;
        (until > self.clock.now_unix()).then_some(token)
    }
}

/// Body of a sign-in exchange.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginCode {
    /// The code of a one-time sign-in link.
    #[schema(min_length = 1, max_length = 64)]
    code: String,
}

/// The partner token a sign-in link stood for.
#[derive(Serialize, ToSchema)]
pub struct LoginToken {
    /// The `rsk_` token, for the console to send in `Authorization`.
    token: String,
}

/// Exchange a console sign-in link.
///
/// Answers the partner token of a one-time code (from a link `tollgate demo` prints), once and
/// within ten minutes. A wrong code counts as a failed authentication of the client.
#[utoipa::path(post, path = "/login", operation_id = "console_login", tag = "console",
    request_body = LoginCode,
    responses((status = 200, body = LoginToken),
        (status = 401, description = "No such code, or it was used or expired", body = Detail),
        (status = 422, description = "The body is malformed", body = Detail),
        (status = 429, description = "The client failed authentication too often this minute", body = Detail,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn login(
    State(state): State<ApiState>,
    parts: axum::http::request::Parts,
    JsonBody(body): JsonBody<LoginCode>,
) -> Result<Json<LoginToken>, ApiError> {
    let verifier = &state.manager.verifier;
    let client = crate::api::client(&parts, &state);
    verifier
        .may_verify(&state.manager.hasher, &body.code, client)
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    match state.console_logins.redeem(&body.code) {
        Some(token) => Ok(Json(LoginToken { token })),
        None => {
            verifier.failed(client);
            Err(ApiError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::FakeClock;

    #[test]
    fn a_code_works_once_and_not_after_ten_minutes() {
        let clock = Arc::new(FakeClock::new(1_000));
        let logins = ConsoleLogins::new(clock.clone());
        let code = logins.issue("rsk_a");
        assert_eq!(logins.redeem(&code).as_deref(), Some("rsk_a"));
        assert_eq!(logins.redeem(&code), None, "used");
        let late = logins.issue("rsk_b");
        clock.advance(LINK_TTL_SECS);
        assert_eq!(logins.redeem(&late), None, "expired");
        assert_eq!(logins.redeem("made-up"), None);
    }
}
