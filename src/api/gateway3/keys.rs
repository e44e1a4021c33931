//! Access keys of one account, shared by the partner API (`/partner/user/key(s)`) and the
//! account API (`/key(s)`): Gateway3 `access_key` + `access_secret` pairs, addressed by name.

use serde::Serialize;

use super::V0Error;
use crate::api::ApiState;
use crate::api::key_object;
use crate::api::paging::PageQuery;
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

/// A page of the account's live (not revoked) keys, oldest first, with the cursor of the next
/// page. Without paging parameters a v0 list answers up to [`V0_DEFAULT_LIMIT`] keys, so a
/// Gateway3 client that knows nothing of paging sees every key of any account up to that size.
pub async fn list(
    state: &ApiState,
    account: &Account,
    page: &PageQuery,
) -> Result<(Vec<KeyItem>, Option<String>), V0Error> {
    let wanted = page.wanted_or(V0_DEFAULT_LIMIT)?;
    let mut keys = state.manager.live_keys(account.id, wanted.page()).await?;
    let next_cursor = wanted.cut(&mut keys, |k| (k.created_at, k.id));
    Ok((keys.iter().map(KeyItem::from).collect(), next_cursor))
}

/// `?limit=&cursor=` of a v0 key list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct V0Paging {
    /// Keys per page: 1 to 1000; without it, every key up to 1000 (the Gateway3 shape).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Keys a v0 list answers when no `limit` is given: the largest page.
pub const V0_DEFAULT_LIMIT: u32 = crate::api::paging::MAX_LIMIT;

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
