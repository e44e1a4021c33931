//! The compact record of a key that the data plane holds in memory for every key: what the
//! checks and quotas read, and nothing else. The descriptive fields (name, label, description,
//! created/revoked by and at, last use, the allow-list as written) stay in the store, where the
//! management API reads them.

use std::num::NonZeroU32;

use uuid::Uuid;

use super::ip::IpNets;
use super::key::{Credential, Key};
use super::permission::PermissionSet;

/// Stands for "no limit" in the cost limits (8 bytes instead of an `Option`'s 16).
const UNLIMITED: u64 = u64::MAX;

/// The per-key limits the data plane enforces; `None` means "no limit at this level".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotLimits {
    daily_cost_limit_micros: u64,
    total_cost_limit_micros: u64,
    pub concurrency_limit: Option<NonZeroU32>,
    pub rate_limit_per_minute: Option<NonZeroU32>,
    /// LLM models this key may call; `None` = every model of the price table.
    pub models: Option<Box<[String]>>,
}

impl Default for HotLimits {
    fn default() -> Self {
        HotLimits {
            daily_cost_limit_micros: UNLIMITED,
            total_cost_limit_micros: UNLIMITED,
            concurrency_limit: None,
            rate_limit_per_minute: None,
            models: None,
        }
    }
}

impl HotLimits {
    /// The key's daily cost limit in micro-USD.
    pub fn daily_cost_limit_micros(&self) -> Option<u64> {
        Some(self.daily_cost_limit_micros).filter(|v| *v != UNLIMITED)
    }

    /// The key's lifetime cost limit in micro-USD.
    pub fn total_cost_limit_micros(&self) -> Option<u64> {
        Some(self.total_cost_limit_micros).filter(|v| *v != UNLIMITED)
    }
}

/// A key as the data plane checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotKey {
    pub id: Uuid,
    pub account_id: Uuid,
    pub partner_id: Uuid,
    pub credential: Credential,
    pub permissions: PermissionSet,
    pub disabled: bool,
    pub revoked: bool,
    /// Unix second the key stops working (00:00 UTC of its expiration date); `i64::MAX` if
    /// it never expires.
    expires_at: i64,
    pub ip_whitelist: IpNets,
    pub limits: HotLimits,
}

impl HotKey {
    /// The Unix second at which the key expires, if it has an expiration date.
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires_at != i64::MAX).then_some(self.expires_at)
    }
}

impl From<&Key> for HotKey {
    fn from(key: &Key) -> Self {
        let limits = &key.limits;
        HotKey {
            id: key.id,
            account_id: key.account_id,
            partner_id: key.partner_id,
            credential: key.credential.clone(),
            permissions: key.permissions,
            disabled: key.disabled,
            revoked: key.revoked_at.is_some(),
            expires_at: key.expires_at().unwrap_or(i64::MAX),
            ip_whitelist: key.ip_whitelist.nets(),
            limits: HotLimits {
                // A limit of u64::MAX micro-USD admits everything, exactly like no limit.
                daily_cost_limit_micros: limits.daily_cost_limit_micros.unwrap_or(UNLIMITED),
                total_cost_limit_micros: limits.total_cost_limit_micros.unwrap_or(UNLIMITED),
                concurrency_limit: limits.concurrency_limit,
                rate_limit_per_minute: limits.rate_limit_per_minute,
                models: limits.models.as_ref().map(|m| m.as_slice().into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::ip::IpAllowList;
    use crate::domain::key::KeyLimits;
    use crate::domain::permission::Permission;

    #[test]
    fn keeps_what_the_checks_read() {
        let key = Key {
            id: Uuid::new_v4(),
            account_id: Uuid::new_v4(),
            partner_id: Uuid::new_v4(),
            name: "n".into(),
            label: Some("l".into()),
            description: Some("d".into()),
            credential: Credential::Token { digest: [3; 32] },
            permissions: PermissionSet::from_slice(&[Permission::Pin]),
            ip_whitelist: IpAllowList::parse(&["10.0.0.0/8"]).unwrap(),
            expiration_date: NaiveDate::from_ymd_opt(2026, 11, 24),
            disabled: true,
            created_at: 5,
            created_by: "me".into(),
            revoked_at: Some(9),
            revoked_by: Some("you".into()),
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: Some(7),
            limits: KeyLimits {
                daily_cost_limit_micros: Some(1),
                total_cost_limit_micros: Some(2),
                concurrency_limit: NonZeroU32::new(3),
                rate_limit_per_minute: NonZeroU32::new(4),
                models: Some(vec!["gpt-x".into()]),
            },
        };
        let hot = HotKey::from(&key);
        assert_eq!(
            (hot.id, hot.account_id, hot.partner_id),
            (key.id, key.account_id, key.partner_id)
        );
        assert_eq!(hot.credential, key.credential);
        assert_eq!(hot.permissions, key.permissions);
        assert!(hot.disabled && hot.revoked);
        assert_eq!(hot.expires_at(), key.expires_at());
        assert_eq!(hot.ip_whitelist, key.ip_whitelist.nets());
        assert_eq!(hot.limits.daily_cost_limit_micros(), Some(1));
        assert_eq!(hot.limits.total_cost_limit_micros(), Some(2));
        assert_eq!(hot.limits.concurrency_limit, NonZeroU32::new(3));
        assert_eq!(hot.limits.rate_limit_per_minute, NonZeroU32::new(4));
        assert_eq!(
            hot.limits.models.as_deref(),
            Some(&["gpt-x".to_string()][..])
        );
        let never = Key {
            expiration_date: None,
            limits: KeyLimits::default(),
            ..key
        };
        let hot = HotKey::from(&never);
        assert_eq!(hot.expires_at(), None);
        assert_eq!(hot.limits.daily_cost_limit_micros(), None);
        assert_eq!(hot.limits.total_cost_limit_micros(), None);
    }
}
