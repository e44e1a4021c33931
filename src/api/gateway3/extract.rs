//! Extractors of the v0 APIs, each failing with a [`V0Error`]: JSON bodies and query strings
//! whose errors name the field, the partner behind a `rsk_` token, and the account key behind
//! an `admin` credential.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::V0Error;
use crate::api::partner_auth::AuthPartner;
use crate::api::{self, ApiState, json};
use crate::auth::{self, CredentialSource};
use crate::domain::decision::{Decision, Denial, DenyCode};
use crate::domain::hot_key::HotKey;
use crate::domain::key::Partner;
use crate::domain::permission::Permission;
use crate::domain::policy::check_key;
use crate::metrics::AuthSurface;

/// Where the account API looks for a key: `Authorization: Bearer` and `Basic`.
const ACCOUNT_SOURCES: [CredentialSource; 2] = [CredentialSource::Bearer, CredentialSource::Basic];

/// A JSON body; invalid JSON, wrong types, missing and unknown fields are 400s naming the field.
pub struct V0Json<T>(pub T);

impl<S, T> FromRequest<S> for V0Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = V0Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, V0Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        Ok(V0Json(json::parse(&bytes)?))
    }
}

fn body_error(err: BytesRejection) -> V0Error {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        V0Error::PayloadTooLarge
    } else {
        V0Error::BadRequest(format!("cannot read body: {}", err.body_text()))
    }
}

/// A query string; a missing or mistyped parameter is a 400 naming it.
pub struct V0Query<T>(pub T);

impl<S, T> FromRequestParts<S> for V0Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = V0Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, V0Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| V0Query(q))
            .map_err(|e| V0Error::BadRequest(crate::api::query::rejection_detail(&e)))
    }
}

/// The active partner behind `Authorization: Bearer rsk_...`.
pub struct V0Partner(pub Partner);

impl FromRequestParts<ApiState> for V0Partner {
    type Rejection = V0Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, V0Error> {
        let AuthPartner(partner) = AuthPartner::from_request_parts(parts, state).await?;
        Ok(V0Partner(partner))
    }
}

/// The key behind the account API call: usable now, from this client IP, with `admin`.
pub struct AdminKey(pub HotKey);

impl FromRequestParts<ApiState> for AdminKey {
    type Rejection = V0Error;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, V0Error> {
        let manager = &state.manager;
        let entry = auth::authenticate(
            &parts.headers,
            &ACCOUNT_SOURCES,
            &manager.index,
            &manager.hasher,
            None,
        )
        .inspect_err(|_| state.metrics.record_auth_failure(AuthSurface::Account))
        .map_err(|d| match d.code {
            DenyCode::MissingCredentials => denied(
                d.code,
                "send Authorization: Basic base64(access_key:access_secret) of a key with the \
                 admin permission",
            ),
            _ => V0Error::Denied(d),
        })?;
        let now = manager.clock.now_unix();
        match check_key(
            &entry.key,
            now,
            api::client(parts, state),
            Permission::Admin,
        ) {
            Decision::Allow => {}
            Decision::Deny(d) if d.code == DenyCode::PermissionDenied => {
                return Err(denied(
                    DenyCode::PermissionDenied,
                    "the account API needs a key with the admin permission",
                ));
            }
            Decision::Deny(d) => return Err(V0Error::Denied(d)),
        }
        let partner = manager.meter.partner(entry.key.partner_id);
        if partner.is_some_and(|p| p.suspended()) {
            return Err(denied(
                DenyCode::KeyDisabled,
                "the partner account of this key is suspended",
            ));
        }
        // Reseller keys live in the partner's default account, which is the partner's own
        // book: letting them use the account API would let a customer mint unlimited keys and
        // revoke the reseller's other keys.
        let default = manager.default_account(entry.key.partner_id).await?;
        if default.id == entry.key.account_id {
            return Err(denied(
                DenyCode::PermissionDenied,
                "reseller keys cannot use the account API; use a key of a Gateway3 account",
            ));
        }
        manager.index.mark_used(&entry, now);
        Ok(AdminKey(entry.key.clone()))
    }
}

fn denied(code: DenyCode, message: &'static str) -> V0Error {
    V0Error::Denied(Denial::with_message(code, message))
}
