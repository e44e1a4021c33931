//! Keys, accounts and partners as the gateway sees them.

use std::num::NonZeroU32;

use chrono::NaiveDate;
use uuid::Uuid;

use super::ip::IpAllowList;
use super::permission::PermissionSet;

/// A 32-byte keyed digest (HMAC-SHA-256) of a key secret. The secret itself is never stored.
pub type Digest = [u8; 32];

/// How a key is presented on the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A single bearer token (`cr_...`), found by its digest.
    Token { digest: Digest },
    /// A Gateway3 pair: a public `access_key` UUID and a secret checked against its digest.
    Pair { access_key: Uuid, digest: Digest },
}

impl Credential {
    /// The stored digest of the secret part.
    pub fn digest(&self) -> &Digest {
        match self {
            Credential::Token { digest } | Credential::Pair { digest, .. } => digest,
        }
    }

    /// The public access key of a pair, if this is one.
    pub fn access_key(&self) -> Option<Uuid> {
        match self {
            Credential::Token { .. } => None,
            Credential::Pair { access_key, .. } => Some(*access_key),
        }
    }
}

/// Per-key limits; `None` means "no limit at this level".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub daily_cost_limit_micros: Option<u64>,
    pub total_cost_limit_micros: Option<u64>,
    pub concurrency_limit: Option<NonZeroU32>,
    pub rate_limit_per_minute: Option<NonZeroU32>,
    /// LLM models this key may call; `None` = every model of the price table.
    pub models: Option<Vec<String>>,
}

/// A sub-key with everything the data plane checks and the management APIs return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub id: Uuid,
    pub account_id: Uuid,
    pub partner_id: Uuid,
    pub name: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub credential: Credential,
    pub permissions: PermissionSet,
    pub ip_whitelist: IpAllowList,
    /// The key stops working at 00:00 UTC of this day.
    pub expiration_date: Option<NaiveDate>,
    pub disabled: bool,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// When the key was last disabled or enabled (`disabled` says which), and by whom.
    pub status_changed_at: Option<i64>,
    pub status_changed_by: Option<String>,
    pub last_used_at: Option<i64>,
    pub limits: KeyLimits,
}

impl Key {
    /// The Unix second at which the key expires, if it has an expiration date.
    pub fn expires_at(&self) -> Option<i64> {
        self.expiration_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| dt.and_utc().timestamp())
    }
}

/// A reseller (partner) account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    pub id: Uuid,
    pub name: String,
    /// Public lookup prefix of the management token (first characters after `rsk_`).
    pub token_prefix: String,
    /// argon2id PHC string of the management token.
    pub token_hash: String,
    pub balance_micros: i64,
    /// Tier multiplier in parts per million (1_000_000 = ×1.0).
    pub tier_multiplier_ppm: u64,
    pub suspended: bool,
    pub created_at: i64,
}

/// An end-user account under a partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub partner_id: Uuid,
    /// The partner's own identifier for the user (Gateway3 `uuid`).
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub plan_id: Option<i64>,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_midnight_utc_of_the_date() {
        let key = Key {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            partner_id: Uuid::nil(),
            name: String::new(),
            label: None,
            description: None,
            credential: Credential::Token { digest: [0; 32] },
            permissions: PermissionSet::EMPTY,
            ip_whitelist: IpAllowList::default(),
            expiration_date: NaiveDate::from_ymd_opt(2026, 11, 24),
            disabled: false,
            created_at: 0,
            created_by: String::new(),
            revoked_at: None,
            revoked_by: None,
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: None,
            limits: KeyLimits::default(),
        };
        assert_eq!(key.expires_at(), Some(1_795_478_400));
    }
}
