//! Pure types and decisions of the gateway: permissions, keys, IP allow-lists, denials and the
//! policy check. Nothing in here performs I/O, so everything is unit-tested directly.

pub mod clock;
pub mod decision;
pub mod hot_key;
pub mod ip;
pub mod key;
pub mod money;
pub mod permission;
pub mod policy;
pub mod price;
pub mod secret;
