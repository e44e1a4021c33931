//! Properties of the parsers on the hot path, checked with `proptest` on generated inputs:
//! path normalisation is idempotent (what is forwarded normalises to itself, so a route rule
//! cannot be dodged by a second pass upstream), and IP allow-lists match CIDR networks exactly
//! as a naive bit-mask reference does. (SSE usage parsing split at every byte boundary is a unit
//! test of `proxy::llm::usage`.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tollgate::domain::ip::IpAllowList;
use tollgate::proxy::path::normalize;

/// Paths made of the pieces that matter to normalisation: dot segments (plain and encoded),
/// empty segments, escapes of reserved and unreserved characters, `;` parameters.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%41".to_string()),
        Just("%7e".to_string()),
        Just("%3a".to_string()),
        Just("a;b".to_string()),
        Just("..;".to_string()),
        "[a-zA-Z0-9._~-]{1,4}",
        "%[0-9a-fA-F]{2}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| format!("/{}", pieces.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn normalising_a_normalised_path_changes_nothing(p in path()) {
        if let Ok(once) = normalize(&p) {
            let twice = normalize(&once);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()), "{} -> {}", p, once);
        }
    }

    #[test]
    fn an_ipv4_network_matches_exactly_the_addresses_under_its_mask(
        net in any::<u32>(),
        prefix in 0u32..=32,
        ip in any::<u32>(),
        near in any::<bool>(),
    ) {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let net = net & mask;
        // Half the addresses share the network's prefix, so both answers are exercised.
        let ip = if near { net | (ip & !mask) } else { ip };
        let list = IpAllowList::parse(&[format!("{}/{prefix}", Ipv4Addr::from(net))]).unwrap();
        let naive = ip & mask == net;
        prop_assert_eq!(list.allows(IpAddr::V4(Ipv4Addr::from(ip))), naive);
    }

    #[test]
    fn an_ipv6_network_matches_exactly_the_addresses_under_its_mask(
        net in any::<u128>(),
        prefix in 0u32..=128,
        ip in any::<u128>(),
        near in any::<bool>(),
    ) {
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        let net = net & mask;
        let ip = if near { net | (ip & !mask) } else { ip };
        // IPv4-mapped addresses are matched as IPv4 (tested in domain::ip); leave them out.
        let addr = Ipv6Addr::from(ip);
        prop_assume!(addr.to_ipv4_mapped().is_none());
        let list = IpAllowList::parse(&[format!("{}/{prefix}", Ipv6Addr::from(net))]).unwrap();
        let naive = ip & mask == net;
        prop_assert_eq!(list.allows(IpAddr::V6(addr)), naive);
    }
}
