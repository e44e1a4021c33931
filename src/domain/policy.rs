//! The key policy check: status, expiry, client IP and permission, in the documented order.

use std::net::IpAddr;

use super::decision::{Decision, DenyCode};
use super::hot_key::HotKey;
use super::permission::Permission;

/// Checks a known key against the request: revoked → disabled → expired → IP → permission.
///
/// `now` is Unix seconds; `required` is the permission the route needs.
pub fn check_key(key: &HotKey, now: i64, client_ip: IpAddr, required: Permission) -> Decision {
    if key.revoked {
        return Decision::deny(DenyCode::KeyRevoked);
    }
    if key.disabled {
        return Decision::deny(DenyCode::KeyDisabled);
    }
    if key.expires_at().is_some_and(|at| now >= at) {
        return Decision::deny(DenyCode::KeyExpired);
    }
    if !key.ip_whitelist.allows(client_ip) {
        return Decision::deny(DenyCode::IpNotAllowed);
    }
    if !key.permissions.allows(required) {
        return Decision::deny(DenyCode::PermissionDenied);
    }
    Decision::Allow
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::NaiveDate;
    use uuid::Uuid;

    use super::*;
    use crate::domain::ip::IpAllowList;
    use crate::domain::key::{Credential, Key, KeyLimits};
    use crate::domain::permission::PermissionSet;

    /// A usable key with `read` permission and no restrictions, for tests.
    pub(crate) fn sample_key() -> Key {
        Key {
            id: Uuid::new_v4(),
            account_id: Uuid::new_v4(),
            partner_id: Uuid::new_v4(),
            name: "k".into(),
            label: None,
            description: None,
            credential: Credential::Token { digest: [7; 32] },
            permissions: PermissionSet::from_slice(&[Permission::Read]),
            ip_whitelist: IpAllowList::default(),
            expiration_date: None,
            disabled: false,
            created_at: 0,
            created_by: "test".into(),
            revoked_at: None,
            revoked_by: None,
            status_changed_at: None,
            status_changed_by: None,
            last_used_at: None,
            limits: KeyLimits::default(),
        }
    }

    const NOW: i64 = 1_795_400_000; // 2026-11-23 UTC
    fn ip() -> IpAddr {
        "192.0.2.10".parse().unwrap()
    }
    fn code(d: Decision) -> Option<&'static str> {
        match d {
            Decision::Allow => None,
            Decision::Deny(d) => Some(d.code.as_str()),
        }
    }

    #[test]
    fn healthy_key_is_allowed() {
        assert_eq!(
            check_key(&HotKey::from(&sample_key()), NOW, ip(), Permission::Read),
            Decision::Allow
        );
    }

    #[test]
    fn each_denial_has_its_code() {
        let mut k = sample_key();
        k.revoked_at = Some(1);
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Read)),
            Some("key_revoked")
        );

        let mut k = sample_key();
        k.disabled = true;
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Read)),
            Some("key_disabled")
        );

        let mut k = sample_key();
        k.expiration_date = NaiveDate::from_ymd_opt(2026, 11, 23);
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Read)),
            Some("key_expired")
        );

        let mut k = sample_key();
        k.ip_whitelist = IpAllowList::parse(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Read)),
            Some("ip_not_allowed")
        );

        let k = sample_key();
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Write)),
            Some("permission_denied")
        );
    }

    #[test]
    fn revoked_wins_over_every_other_problem() {
        let mut k = sample_key();
        k.revoked_at = Some(1);
        k.disabled = true;
        k.expiration_date = NaiveDate::from_ymd_opt(2000, 1, 1);
        k.ip_whitelist = IpAllowList::parse(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            code(check_key(&HotKey::from(&k), NOW, ip(), Permission::Admin)),
            Some("key_revoked")
        );
    }

    #[test]
    fn key_is_valid_until_midnight_before_its_expiration_date() {
        let mut k = sample_key();
        k.expiration_date = NaiveDate::from_ymd_opt(2026, 11, 24);
        let midnight = k.expires_at().unwrap();
        assert_eq!(
            check_key(&HotKey::from(&k), midnight - 1, ip(), Permission::Read),
            Decision::Allow
        );
        assert_eq!(
            code(check_key(
                &HotKey::from(&k),
                midnight,
                ip(),
                Permission::Read
            )),
            Some("key_expired")
        );
    }

    #[test]
    fn admin_key_passes_any_route() {
        let mut k = sample_key();
        k.permissions = PermissionSet::from_slice(&[Permission::Admin]);
        for p in Permission::ALL {
            assert_eq!(check_key(&HotKey::from(&k), NOW, ip(), p), Decision::Allow);
        }
    }
}
