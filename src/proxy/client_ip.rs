//! The client's address, and the `X-Forwarded-For` chain sent upstream.
//!
//! `X-Forwarded-For` is believed only as far as it was written by trusted proxies: it is read
//! right to left from a trusted socket peer, and the first untrusted hop is the client.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use crate::domain::ip::{IpSet, canonical};

/// The de-facto standard header (not in `http::header`).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// At most this many `X-Forwarded-For` entries are examined.
pub const MAX_HOPS: usize = 32;

/// The client's address: the socket peer, unless the peer is a trusted proxy; only then is
/// `X-Forwarded-For` read right to left, returning the first hop that is not trusted.
///
/// If every hop is trusted, the leftmost is returned. An unparseable entry stops the walk and
/// the last trusted hop to its right (the one that handed it over) is returned; so is the last
/// examined hop once [`MAX_HOPS`] entries have been read. Addresses are canonical (IPv4-mapped
/// IPv6 becomes IPv4).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &IpSet) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let mut last_trusted = peer;
    let mut examined = 0;
    for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            return last_trusted;
        };
        for entry in line.rsplit(',') {
            if examined == MAX_HOPS {
                return last_trusted;
            }
            examined += 1;
            match parse_hop(entry) {
                Some(hop) if trusted.contains(hop) => last_trusted = hop,
                Some(hop) => return hop,
                None => return last_trusted,
            }
        }
    }
    last_trusted
}

/// The `X-Forwarded-For` value to send upstream: the incoming chain plus the peer when the peer
/// is trusted, otherwise just the peer (a client cannot forge the chain through an untrusted hop).
///
/// The incoming entries are trimmed and joined with `", "`; empty entries and header lines that
/// are not visible ASCII are dropped, so the result is always a valid header value.
pub fn forwarded_for(peer: IpAddr, headers: &HeaderMap, trusted: &IpSet) -> HeaderValue {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return ip_value(peer);
    }
    let mut chain = String::new();
    let incoming = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    for entry in incoming {
        chain.push_str(entry);
        chain.push_str(", ");
    }
    chain.push_str(&peer.to_string());
    HeaderValue::from_str(&chain).unwrap_or_else(|_| ip_value(peer))
}

/// An IP address as a header value, formatted on the stack (one copy into the value).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 64];
    let mut out = &mut buf[..];
    let _ = write!(out, "{ip}");
    let len = 64 - out.len();
    HeaderValue::from_bytes(&buf[..len]).expect("an IP address is a valid header value")
}

/// One hop: `a.b.c.d`, `::1`, `a.b.c.d:port`, `[::1]` or `[::1]:port`, made canonical.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| bracketed(entry))?;
    Some(canonical(ip))
}

/// `[v6]` without a port.
fn bracketed(entry: &str) -> Option<IpAddr> {
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ip::parse_net;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(nets: &[&str]) -> IpSet {
        IpSet::new(nets.iter().map(|n| parse_net(n).unwrap()).collect())
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn trusted() -> IpSet {
        set(&["10.0.0.0/8", "192.168.1.1", "fd00::/8"])
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let h = xff(&["1.2.3.4, 10.0.0.1"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted()),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &IpSet::default()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_hop() {
        let h = xff(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn chain_of_trusted_proxies_is_skipped() {
        let h = xff(&["6.6.6.6, 198.51.100.7, 10.1.1.1, 192.168.1.1"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_yields_leftmost() {
        let h = xff(&["10.3.3.3, 10.2.2.2, 192.168.1.1"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted()), ip("10.3.3.3"));
    }

    #[test]
    fn garbage_stops_at_the_hop_that_handed_it_over() {
        let t = trusted();
        let h = xff(&["198.51.100.7, garbage, 10.2.2.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.2.2.2"));
        let h = xff(&["198.51.100.7, unknown"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
        let h = xff(&["198.51.100.7,,10.2.2.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.2.2.2"));
        let h = xff(&[""]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
        let h = xff(&["198.51.100.7, fe80::1%eth0"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("10.0.0.1"));
    }

    #[test]
    fn non_text_header_line_counts_as_garbage() {
        let mut h = xff(&["198.51.100.7"]);
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted()), ip("10.0.0.1"));
    }

    #[test]
    fn ports_and_brackets_are_accepted() {
        let t = trusted();
        let h = xff(&["198.51.100.7:4711, 10.2.2.2:80"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("198.51.100.7"));
        let h = xff(&["[2001:db8::7]:443, [fd00::2]"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("2001:db8::7"));
        let h = xff(&["[2001:db8::8]"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &t), ip("2001:db8::8"));
    }

    #[test]
    fn ipv6_hops_and_peers() {
        let t = trusted();
        let h = xff(&["2001:db8::1, fd00::5"]);
        assert_eq!(client_ip(ip("fd00::1"), &h, &t), ip("2001:db8::1"));
        assert_eq!(client_ip(ip("2001:db8::9"), &h, &t), ip("2001:db8::9"));
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let t = trusted();
        let h = xff(&["::ffff:198.51.100.7, ::ffff:10.2.2.2"]);
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &h, &t), ip("198.51.100.7"));
        let untrusted = ip("::ffff:203.0.113.9");
        assert_eq!(client_ip(untrusted, &h, &t), ip("203.0.113.9"));
    }

    #[test]
    fn multiple_header_lines_are_one_chain() {
        let h = xff(&["198.51.100.7, 10.9.9.9", "10.8.8.8", "10.7.7.7, 10.6.6.6"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
        let h = xff(&["6.6.6.6", "198.51.100.7", "10.7.7.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn walk_is_capped() {
        let hops: Vec<String> = (0..40).map(|i| format!("10.0.1.{i}")).collect();
        let mut line = String::from("198.51.100.7, ");
        line.push_str(&hops.join(", "));
        let h = xff(&[&line]);
        // Rightmost is 10.0.1.39; the 32nd examined is 10.0.1.8.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted()), ip("10.0.1.8"));
        let short = xff(&[&format!("198.51.100.7, {}", hops[..31].join(", "))]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &short, &trusted()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_for_from_untrusted_peer_is_just_the_peer() {
        let h = xff(&["1.2.3.4, 10.0.0.9"]);
        assert_eq!(
            forwarded_for(ip("203.0.113.9"), &h, &trusted()),
            "203.0.113.9"
        );
        assert_eq!(
            forwarded_for(ip("::ffff:203.0.113.9"), &h, &trusted()),
            "203.0.113.9"
        );
        assert_eq!(
            forwarded_for(ip("2001:db8::1"), &h, &trusted()),
            "2001:db8::1"
        );
    }

    #[test]
    fn forwarded_for_from_trusted_peer_extends_the_chain() {
        let t = trusted();
        let h = xff(&["198.51.100.7 ,10.9.9.9", " 10.8.8.8 "]);
        assert_eq!(
            forwarded_for(ip("10.0.0.1"), &h, &t),
            "198.51.100.7, 10.9.9.9, 10.8.8.8, 10.0.0.1"
        );
        assert_eq!(
            forwarded_for(ip("10.0.0.1"), &HeaderMap::new(), &t),
            "10.0.0.1"
        );
        let h = xff(&["198.51.100.7,, "]);
        assert_eq!(
            forwarded_for(ip("::ffff:10.0.0.1"), &h, &t),
            "198.51.100.7, 10.0.0.1"
        );
    }

    #[test]
    fn forwarded_for_is_a_valid_header_value() {
        let mut h = xff(&["198.51.100.7"]);
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        let value = forwarded_for(ip("10.0.0.1"), &h, &trusted());
        assert_eq!(value, "198.51.100.7, 10.0.0.1");
        assert!(value.to_str().is_ok());
        assert_eq!(ip_value(ip("2001:db8::1")), "2001:db8::1");
    }
}
