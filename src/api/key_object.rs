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

/// The JSON key object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyObject {
    pub id: String,
    pub name: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub access_key: Option<String>,
    pub permissions: Vec<Permission>,
    pub ip_whitelist: Vec<String>,
    pub expiration_date: Option<String>,
    pub disabled: bool,
    pub revoked: bool,
    pub created_at: Option<String>,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<String>,
    pub daily_cost_limit_usd: Option<f64>,
    pub total_cost_limit_usd: Option<f64>,
    pub concurrency_limit: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
    /// LLM models the key may call; `null` = any priced model.
    pub models: Option<Vec<String>>,
}

impl From<&Key> for KeyObject {
    fn from(k: &Key) -> Self {
        KeyObject {
            id: k.id.to_string(),
            name: k.name.clone(),
            label: k.label.clone(),
            description: k.description.clone(),
            access_key: k.credential.access_key().map(|a| a.to_string()),
            permissions: k.permissions.to_vec(),
            ip_whitelist: k.ip_whitelist.entries().to_vec(),
            expiration_date: k.expiration_date.map(|d| d.format("%Y-%m-%d").to_string()),
            disabled: k.disabled,
            revoked: k.revoked_at.is_some(),
            created_at: timestamp(Some(k.created_at)),
            created_by: k.created_by.clone(),
            revoked_at: timestamp(k.revoked_at),
            revoked_by: k.revoked_by.clone(),
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
