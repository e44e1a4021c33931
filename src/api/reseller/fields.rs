//! The key fields a reseller may set on create and PATCH, validated into the key record.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::key_object;
use crate::domain::key::Key;
use crate::domain::permission::{Permission, PermissionSet};

/// Editable key fields; every one optional. `expiration_date` distinguishes "absent" (keep)
/// from `null` (clear).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyFields {
    /// The key's name (create only): generated when absent.
    #[schema(max_length = 128)]
    pub name: Option<String>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[schema(max_length = 128)]
    pub label: Option<String>,
    /// What the key may do; `read`, `write`, `pin` and `unpin` when absent at creation.
    #[schema(min_items = 1)]
    pub permissions: Option<Vec<Permission>>,
    /// Partoo's switch: `false` gives the key its creator's permissions (read, write, pin,
    /// unpin) and takes no `permissions`; `true` needs `permissions`. A `permissions` list alone
    /// restricts the key to it.
    pub has_restricted_permissions: Option<bool>,
    /// IP addresses and CIDR networks the key may be used from; empty = anywhere.
    pub ip_whitelist: Option<Vec<String>>,
    /// `YYYY-MM-DD`, at least tomorrow (UTC); null = never expires; absent = keep.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = Date)]
    pub expiration_date: Option<Value>,
    /// Spend allowed per UTC day.
    #[schema(exclusive_minimum = 0.0, maximum = 1e9)]
    pub daily_cost_limit_usd: Option<f64>,
    /// Spend allowed in all.
    #[schema(exclusive_minimum = 0.0, maximum = 1e9)]
    pub total_cost_limit_usd: Option<f64>,
    /// Requests in flight at once.
    #[schema(minimum = 1, maximum = 4294967295_i64)]
    pub concurrency_limit: Option<i64>,
    /// Requests a minute.
    #[schema(minimum = 1, maximum = 4294967295_i64)]
    pub rate_limit_per_minute: Option<i64>,
    /// LLM models the key may call; `null` = any priced model. Absent = keep.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, max_items = 100)]
    pub models: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn text(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    value
        .as_deref()
        .map(|v| key_object::text(field, v, max))
        .transpose()
}

impl KeyFields {
    /// Applies every given field to `key` (validating each; the first error wins).
    pub fn apply(&self, key: &mut Key, today: chrono::NaiveDate) -> Result<(), ApiError> {
        if let Some(label) = text("label", &self.label, 128)? {
            key.label = Some(label);
        }
        if let Some(description) = text("description", &self.description, 1024)? {
            key.description = Some(description);
        }
        match (self.has_restricted_permissions, &self.permissions) {
            (Some(false), Some(_)) => {
                return Err(ApiError::Validation(
                    "permissions: must be absent when has_restricted_permissions is false (the \
                     key then carries its creator's permissions)"
                        .into(),
                ));
            }
            (Some(false), None) => {
                key.permissions = PermissionSet::from_slice(&key_object::PARTNER_PERMISSIONS);
            }
            (Some(true), None) => {
                return Err(ApiError::Validation(
                    "permissions: required when has_restricted_permissions is true".into(),
                ));
            }
            (_, Some(list)) => key.permissions = key_object::permissions(list)?,
            (None, None) => {}
        }
        if let Some(list) = &self.ip_whitelist {
            key.ip_whitelist = key_object::ip_whitelist(list)?;
        }
        if let Some(date) = &self.expiration_date {
            key.expiration_date = key_object::expiration_date(date, today)?;
        }
        let limits = &mut key.limits;
        if let Some(v) = self.daily_cost_limit_usd {
            limits.daily_cost_limit_micros =
                Some(key_object::usd_to_micros("daily_cost_limit_usd", v)?);
        }
        if let Some(v) = self.total_cost_limit_usd {
            limits.total_cost_limit_micros =
                Some(key_object::usd_to_micros("total_cost_limit_usd", v)?);
        }
        if let Some(v) = self.concurrency_limit {
            limits.concurrency_limit = Some(key_object::positive_u32("concurrency_limit", v)?);
        }
        if let Some(v) = self.rate_limit_per_minute {
            limits.rate_limit_per_minute =
                Some(key_object::positive_u32("rate_limit_per_minute", v)?);
        }
        if let Some(v) = &self.models {
            limits.models = key_object::models(v)?;
        }
        Ok(())
    }

    /// The key's name (create only), trimmed; `None` for a generated one.
    pub fn name(&self) -> Result<Option<String>, ApiError> {
        Ok(text("name", &self.name, 128)?.filter(|n| !n.is_empty()))
    }
}
