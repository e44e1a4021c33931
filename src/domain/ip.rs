//! IP allow-lists: single addresses and CIDR networks, parsed once, matched per request.

use std::net::IpAddr;
use std::str::FromStr;

use ipnetwork::IpNetwork;

/// A parsed allow-list. Empty means "any address".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpAllowList {
    nets: Vec<IpNetwork>,
    /// The entries as the user wrote them, returned unchanged by the APIs.
    source: Vec<String>,
}

/// An entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not an IP address or CIDR network")]
pub struct InvalidIpEntry {
    pub entry: String,
}

impl IpAllowList {
    /// Parses every entry; the first invalid one is reported by name.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidIpEntry> {
        let mut nets = Vec::with_capacity(entries.len());
        let mut source = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            nets.push(parse_net(entry)?);
            source.push(entry.to_string());
        }
        Ok(IpAllowList { nets, source })
    }

    /// Whether `ip` may use the key. IPv4-mapped IPv6 addresses match IPv4 entries.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// Whether the list is empty (no restriction).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The entries as given.
    pub fn entries(&self) -> &[String] {
        &self.source
    }

    /// The networks alone, compact, for the data plane.
    pub fn nets(&self) -> IpNets {
        match self.nets.as_slice() {
            [] => IpNets::Any,
            [one] => IpNets::One(*one),
            many => IpNets::Many(many.into()),
        }
    }
}

/// The networks of an allow-list without the entries' text, as the in-memory key index holds
/// them: an empty or one-entry list (the usual ones) needs no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IpNets {
    /// No restriction.
    #[default]
    Any,
    One(IpNetwork),
    Many(Box<[IpNetwork]>),
}

impl IpNets {
    /// Whether `ip` may use the key. IPv4-mapped IPv6 addresses match IPv4 entries.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match self {
            IpNets::Any => true,
            IpNets::One(net) => net.contains(canonical(ip)),
            IpNets::Many(nets) => {
                let ip = canonical(ip);
                nets.iter().any(|net| net.contains(ip))
            }
        }
    }
}

/// A set of networks, e.g. the trusted proxies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSet {
    nets: Vec<IpNetwork>,
}

impl IpSet {
    /// A set from already-parsed networks.
    pub fn new(nets: Vec<IpNetwork>) -> Self {
        IpSet { nets }
    }

    /// Whether `ip` is in one of the networks (an empty set holds nothing).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Parses an address (`10.0.0.1`, `::1`) or a network (`10.0.0.0/8`). A network whose host bits
/// are set (`10.0.0.1/8`) is refused as ambiguous.
pub fn parse_net(entry: &str) -> Result<IpNetwork, InvalidIpEntry> {
    let invalid = || InvalidIpEntry {
        entry: entry.to_string(),
    };
    if entry.contains('/') {
        let net = IpNetwork::from_str(entry).map_err(|_| invalid())?;
        if net.network() != net.ip() {
            return Err(invalid());
        }
        Ok(net)
    } else {
        let ip = IpAddr::from_str(entry).map_err(|_| invalid())?;
        Ok(IpNetwork::from(canonical(ip)))
    }
}

/// Maps `::ffff:a.b.c.d` to `a.b.c.d` so IPv4 rules apply to dual-stack sockets.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_allows_any() {
        let list = IpAllowList::parse::<&str>(&[]).unwrap();
        assert!(list.allows(ip("203.0.113.9")));
        assert!(list.allows(ip("::1")));
    }

    #[test]
    fn cidr_and_single_addresses() {
        let list = IpAllowList::parse(&["172.16.0.0/12", "127.0.0.1", "2001:db8::/32"]).unwrap();
        assert!(list.allows(ip("172.16.0.1")));
        assert!(list.allows(ip("172.31.255.255")));
        assert!(!list.allows(ip("172.32.0.0")));
        assert!(list.allows(ip("127.0.0.1")));
        assert!(!list.allows(ip("127.0.0.2")));
        assert!(list.allows(ip("2001:db8::42")));
        assert!(!list.allows(ip("2001:db9::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_matches_ipv4_rules() {
        let list = IpAllowList::parse(&["10.0.0.0/8"]).unwrap();
        assert!(list.allows(ip("::ffff:10.1.2.3")));
        assert!(!list.allows(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn compact_nets_match_like_the_list() {
        let lists = [
            IpAllowList::default(),
            IpAllowList::parse(&["10.0.0.0/8"]).unwrap(),
            IpAllowList::parse(&["127.0.0.1", "2001:db8::/32"]).unwrap(),
        ];
        for list in &lists {
            let nets = list.nets();
            for addr in [
                "10.1.2.3",
                "::ffff:10.1.2.3",
                "127.0.0.1",
                "2001:db8::1",
                "192.0.2.1",
            ] {
                assert_eq!(
                    nets.allows(ip(addr)),
                    list.allows(ip(addr)),
                    "{addr} in {list:?}"
                );
            }
        }
        assert!(matches!(lists[1].nets(), IpNets::One(_)));
    }

    #[test]
    fn invalid_entries_are_named() {
        for bad in ["10.0.0.0/33", "300.1.1.1", "example.com", "10.0.0.1/8", ""] {
            let err = IpAllowList::parse(&["10.0.0.0/8", bad]).unwrap_err();
            assert_eq!(err.entry, bad);
        }
    }

    #[test]
    fn ip_set_contains() {
        let set = IpSet::new(vec![parse_net("10.0.0.0/8").unwrap()]);
        assert!(set.contains(ip("10.9.9.9")));
        assert!(!set.contains(ip("192.168.1.1")));
        assert!(!IpSet::default().contains(ip("10.0.0.1")));
    }
}
