//! The key object returned by every surface (Partoo fields plus Tollgate's limits), and the
//! validation of the key fields callers may set.

use chrono::{DateTime, NaiveDate};
use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::ip::IpAllowList;
use crate::domain::key::Key;
use crate::domain::permission::{Permission, PermissionSet};

/// Largest cost limit accepted, in USD (keeps micro-USD far from overflow).
const MAX_USD: f64 = 1e9;

/// The permissions a partner's keys carry unless restricted (Partoo's "the same permissions
/// as the user who created the key"): everything but `admin`.
pub const PARTNER_PERMISSIONS: [Permission; 4] = [
    Permission::Read,
    Permission::Write,
    Permission::Pin,
    Permission::Unpin,
];

/// Who a key belongs to (Partoo's `user_*` fields): the partner itself for keys of its own
/// book (`user_type` `partner`), or one of its Gateway3 accounts (`user`).
#[derive(Debug, Default, Clone)]
pub struct KeyOwner {
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub user_role: Option<&'static str>,
    pub user_type: Option<&'static str>,
}

/// The JSON key object: Partoo's fields, the reseller surface's and Tollgate's limits. The
/// `*_by` fields hold who acted (`partner:<id>`, `key:<id>`); `*_by_name` that actor's name
/// where one is known (a partner's or a key's name), else null.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyObject {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    pub label: Option<String>,
    pub description: Option<String>,
    /// The public half of a Gateway3 key pair; null for a `cr_` token key.
    pub access_key: Option<String>,
    /// The owner's id: the partner's id, or the account's Gateway3 `uuid`.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    /// `partner` or `account`.
    pub user_role: Option<&'static str>,
    /// `partner` (the partner's own keys) or `user` (a Gateway3 account's).
    pub user_type: Option<&'static str>,
    /// False when the key carries its creator's permissions (read, write, pin, unpin).
    pub has_restricted_permissions: bool,
    pub permissions: Vec<Permission>,
    /// IP addresses and CIDR networks the key may be used from; empty = anywhere.
    pub ip_whitelist: Vec<String>,
    #[schema(format = Date)]
    pub expiration_date: Option<String>,
    pub disabled: bool,
    /// When and by whom the key was disabled, while it is.
    #[schema(format = DateTime)]
    pub disabled_at: Option<String>,
    pub disabled_by: Option<String>,
    pub disabled_by_name: Option<String>,
    /// When and by whom a disabled key was last enabled again.
    #[schema(format = DateTime)]
    pub enabled_at: Option<String>,
    pub enabled_by: Option<String>,
    pub enabled_by_name: Option<String>,
    pub revoked: bool,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    pub created_by: String,
    pub created_by_name: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub revoked_by_name: Option<String>,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    pub daily_cost_limit_usd: Option<f64>,
    pub total_cost_limit_usd: Option<f64>,
    pub concurrency_limit: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
    /// LLM models the key may call; `null` = any priced model.
    pub models: Option<Vec<String>>,
}

impl KeyObject {
    /// The object of `k`, owned by `owner`, with `name_of` giving the name behind a `*_by`.
    pub fn new(k: &Key, owner: KeyOwner, name_of: impl Fn(&str) -> Option<String>) -> Self {
        let by_name = |by: &Option<String>| by.as_deref().and_then(&name_of);
        let (disabled_side, enabled_side) = match (k.disabled, k.status_changed_at) {
            (_, None) => ((None, None), (None, None)),
            (true, at) => ((at, k.status_changed_by.clone()), (None, None)),
            (false, at) => ((None, None), (at, k.status_changed_by.clone())),
        };
        KeyObject {
            id: k.id.to_string(),
            name: k.name.clone(),
            label: k.label.clone(),
            description: k.description.clone(),
            access_key: k.credential.access_key().map(|a| a.to_string()),
            user_id: owner.user_id,
            user_name: owner.user_name,
            user_role: owner.user_role,
            user_type: owner.user_type,
            has_restricted_permissions: k.permissions
                != PermissionSet::from_slice(&PARTNER_PERMISSIONS),
            permissions: k.permissions.to_vec(),
            ip_whitelist: k.ip_whitelist.entries().to_vec(),
            expiration_date: k.expiration_date.map(|d| d.format("%Y-%m-%d").to_string()),
            disabled: k.disabled,
            disabled_at: timestamp(disabled_side.0),
            disabled_by_name: by_name(&disabled_side.1),
            disabled_by: disabled_side.1,
            enabled_at: timestamp(enabled_side.0),
            enabled_by_name: by_name(&enabled_side.1),
            enabled_by: enabled_side.1,
            revoked: k.revoked_at.is_some(),
            created_at: timestamp(Some(k.created_at)),
            created_by: k.created_by.clone(),
            created_by_name: name_of(&k.created_by),
            revoked_at: timestamp(k.revoked_at),
            revoked_by: k.revoked_by.clone(),
            revoked_by_name: by_name(&k.revoked_by),
            last_used_at: timestamp(k.last_used_at),
            daily_cost_limit_usd: k.limits.daily_cost_limit_micros.map(usd),
            total_cost_limit_usd: k.limits.total_cost_limit_micros.map(usd),
            concurrency_limit: k.limits.concurrency_limit.map(|n| n.get()),
            models: k.limits.models.clone(),
            rate_limit_per_minute: k.limits.rate_limit_per_minute.map(|n| n.get()),
        }
    }
}

/// RFC 3339 UTC timestamp of Unix seconds.
pub fn timestamp(unix: Option<i64>) -> Option<String> {
    unix.and_then(|s| DateTime::from_timestamp(s, 0))
        .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A positive USD amount → micro-USD.
pub fn usd_to_micros(field: &str, value: f64) -> Result<u64, ApiError> {
    if !value.is_finite() || value <= 0.0 {
        return Err(ApiError::Validation(format!(
            "{field}: must be greater than 0"
        )));
    }
    if value > MAX_USD {
        return Err(ApiError::Validation(format!(
            "{field}: must be at most {MAX_USD}"
        )));
    }
    let micros = (value * 1e6).round() as u64;
    if micros == 0 {
        return Err(ApiError::Validation(format!(
            "{field}: must be at least 0.000001"
        )));
    }
    Ok(micros)
}

/// A positive integer that fits `u32`.
pub fn positive_u32(field: &str, value: i64) -> Result<std::num::NonZeroU32, ApiError> {
    u32::try_from(value)
        .ok()
        .and_then(std::num::NonZeroU32::new)
        .ok_or_else(|| ApiError::Validation(format!("{field}: must be between 1 and {}", u32::MAX)))
}

/// `YYYY-MM-DD`, at least tomorrow (UTC); `null` means "never expires".
pub fn expiration_date(value: &Value, today: NaiveDate) -> Result<Option<NaiveDate>, ApiError> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        _ => {
            return Err(ApiError::Validation(
                "expiration_date: must be a YYYY-MM-DD string or null".into(),
            ));
        }
    };
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::Validation(format!(
            "expiration_date: `{text}` is not a YYYY-MM-DD date"
        ))
    })?;
    if date <= today {
        return Err(ApiError::Validation(
            "expiration_date: must be at least tomorrow (to stop a key today, disable or revoke it)"
                .into(),
        ));
    }
    Ok(Some(date))
}

/// The `models` field: `null` (any priced model) or an array of up to 100 model names.
pub fn models(value: &serde_json::Value) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || {
        ApiError::Validation("models: expected null or an array of up to 100 model names".into())
    };
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(items) if items.len() <= 100 => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 128)
                    .map(str::to_string)
                    .ok_or_else(bad)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad()),
    }
}

/// Parses an allow-list, naming the first invalid entry.
pub fn ip_whitelist(entries: &[String]) -> Result<IpAllowList, ApiError> {
    IpAllowList::parse(entries).map_err(|e| ApiError::Validation(format!("ip_whitelist: {e}")))
}

/// A non-empty permission list.
pub fn permissions(list: &[Permission]) -> Result<PermissionSet, ApiError> {
    if list.is_empty() {
        return Err(ApiError::Validation(
            "permissions: must name at least one permission".into(),
        ));
    }
    Ok(PermissionSet::from_slice(list))
}

/// A trimmed text field of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ApiError::Validation(format!(
            "{field}: at most {max} characters"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn expiration_must_be_tomorrow_or_later() {
        assert_eq!(expiration_date(&Value::Null, today()).unwrap(), None);
        let tomorrow = Value::String("2026-11-24".into());
        assert_eq!(
            expiration_date(&tomorrow, today()).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24)
        );
        for bad in ["2026-11-23", "2020-01-01", "24/11/2026", "2026-02-30"] {
            let err = expiration_date(&Value::String(bad.into()), today()).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{bad}");
        }
        assert!(expiration_date(&Value::from(5), today()).is_err());
    }

    #[test]
    fn usd_amounts() {
        assert_eq!(usd_to_micros("x", 5.0).unwrap(), 5_000_000);
        assert_eq!(usd_to_micros("x", 0.000_001).unwrap(), 1);
        for bad in [0.0, -1.0, f64::NAN, 2e9, 1e-9] {
            assert!(usd_to_micros("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_ip_entry_is_named() {
        let err = ip_whitelist(&["10.0.0.0/8".into(), "nope".into()]).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }
}
