//! Access keys of one account, shared by the partner API (`/partner/user/key(s)`) and the
//! account API (`/key(s)`): Gateway3 `access_key` + `access_secret` pairs, addressed by name.

use serde::Serialize;

use super::V0Error;
use crate::api::ApiState;
use crate::api::key_object;
use crate::domain::key::{Account, Key, KeyLimits};
use crate::domain::permission::Permission;
use crate::manage::{KeyKind, NewKey};

/// Longest key name accepted.
const MAX_NAME: usize = 128;

/// `data` of a key creation: the secret is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedPair {
    pub access_key: String,
    pub access_secret: String,
}

/// One entry of a key listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyItem {
    pub name: String,
    /// `null` for a `cr_` token key (only reseller keys are tokens).
    pub access_key: Option<String>,
    pub permissions: Vec<Permission>,
}

impl From<&Key> for KeyItem {
    fn from(k: &Key) -> Self {
        KeyItem {
            name: k.name.clone(),
            access_key: k.credential.access_key().map(|a| a.to_string()),
            permissions: k.permissions.to_vec(),
        }
    }
}

/// A key name: trimmed, 1 to 128 characters.
pub fn name(value: &str) -> Result<String, V0Error> {
    let name = key_object::text("name", value, MAX_NAME)?;
    if name.is_empty() {
        return Err(V0Error::BadRequest("name: must not be empty".into()));
    }
    Ok(name)
}

/// Creates a pair key named `name` in `account`; a live key with that name is a 409.
pub async fn create(
    state: &ApiState,
    account: &Account,
    name: &str,
    permissions: &[Permission],
    created_by: String,
) -> Result<CreatedPair, V0Error> {
    let name = self::name(name)?;
    // Every surface that mints keys draws on the partner's hourly creation budget.
    state.limits.create(account.partner_id).await?;
    let new = NewKey {
        account_id: account.id,
        partner_id: account.partner_id,
        name: Some(name),
        label: None,
        description: None,
        permissions: key_object::permissions(permissions)?,
        ip_whitelist: Default::default(),
        expiration_date: None,
        limits: KeyLimits::default(),
        kind: KeyKind::Pair,
        created_by,
    };
    let created = state.manager.create_key(new).await?;
    let access_key = created.key.credential.access_key().map(|a| a.to_string());
    Ok(CreatedPair {
        access_key: access_key.unwrap_or_default(),
        access_secret: created.secret,
    })
}

/// The account's live (not revoked) keys, oldest first.
pub async fn list(state: &ApiState, account: &Account) -> Result<Vec<KeyItem>, V0Error> {
    let keys = state.manager.live_keys(account.id).await?;
    Ok(keys.iter().map(KeyItem::from).collect())
}

/// Revokes the account's live key called `name` for good; 404 if there is none.
pub async fn delete(
    state: &ApiState,
    account: &Account,
    name: &str,
    by: String,
) -> Result<(), V0Error> {
    let name = self::name(name)?;
    state
        .manager
        .revoke_key_by_name(account.id, &name, by)
        .await?
        .map(|_| ())
        .ok_or_else(|| V0Error::NotFound(format!("name: no key named `{name}`")))
}
