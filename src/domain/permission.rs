//! Key permissions (`admin, read, write, pin, unpin`) and the compact set a key holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission a key can hold or a route can require. `Admin` implies every other one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Permission {
    Admin,
    Read,
    Write,
    Pin,
    Unpin,
}

impl Permission {
    /// Every permission, in the documented order.
    pub const ALL: [Permission; 5] = [
        Permission::Admin,
        Permission::Read,
        Permission::Write,
        Permission::Pin,
        Permission::Unpin,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Pin => "pin",
            Permission::Unpin => "unpin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a permission name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}` (expected one of admin, read, write, pin, unpin)")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_string()))
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The set of permissions a key holds, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// The empty set: a key holding it can do nothing.
    pub const EMPTY: PermissionSet = PermissionSet(0);

    /// Builds a set from a list of permissions.
    pub fn from_slice(perms: &[Permission]) -> Self {
        PermissionSet(perms.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Whether the set holds `p` itself.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether a key with this set may do what needs `required` (`admin` grants everything).
    pub fn allows(self, required: Permission) -> bool {
        self.contains(Permission::Admin) || self.contains(required)
    }

    /// The permissions in the set, in the documented order.
    pub fn to_vec(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.contains(*p))
            .collect()
    }

    /// Raw bits, for storage.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Rebuilds a set from stored bits, ignoring unknown bits.
    pub fn from_bits(bits: u8) -> Self {
        PermissionSet(bits & 0b1_1111)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_allows_everything() {
        let set = PermissionSet::from_slice(&[Permission::Admin]);
        for p in Permission::ALL {
            assert!(set.allows(p), "{p}");
        }
    }

    #[test]
    fn plain_permissions_allow_only_themselves() {
        let set = PermissionSet::from_slice(&[Permission::Read, Permission::Pin]);
        assert!(set.allows(Permission::Read));
        assert!(set.allows(Permission::Pin));
        assert!(!set.allows(Permission::Write));
        assert!(!set.allows(Permission::Unpin));
        assert!(!set.allows(Permission::Admin));
        assert_eq!(set.to_vec(), vec![Permission::Read, Permission::Pin]);
    }

    #[test]
    fn parse_round_trip_and_unknown() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        assert!("Admin".parse::<Permission>().is_err());
        assert!("delete".parse::<Permission>().is_err());
    }

    #[test]
    fn bits_round_trip() {
        let set = PermissionSet::from_slice(&[Permission::Write, Permission::Unpin]);
        assert_eq!(PermissionSet::from_bits(set.bits()), set);
        assert_eq!(PermissionSet::from_bits(0xff).bits(), 0b1_1111);
    }
}
