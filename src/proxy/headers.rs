//! Header hygiene between client and upstream: hop-by-hop removal, request ids, and the
//! `X-Forwarded-*` headers.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// The request-id header sent on every response and forwarded upstream.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the others a proxy must not forward.
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHORIZATION,
    &header::PROXY_AUTHENTICATE,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any named in `Connection`. A head
/// without any (the common case) is only scanned, never rebuilt.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(&name)) {
        return;
    }
    let connection: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    remove_connection_named(headers, &connection);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether `name` is one of the hop-by-hop headers every proxy drops.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Removes the headers that `Connection` values name as hop-by-hop for this connection.
pub fn remove_connection_named(headers: &mut HeaderMap, connection: &[HeaderValue]) {
    let named = connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual token names a header that is hop-by-hop in any case (no map search).
        .filter(|name| !name.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok());
    for name in named {
        headers.remove(name);
    }
}

/// The body length a request declares (`Content-Length`), if it declares a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The client's request id if it is a sane token (1–128 of `[A-Za-z0-9._-]`), else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| is_valid_request_id(v.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id)
}

fn is_valid_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn new_request_id() -> HeaderValue {
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    HeaderValue::from_str(id.simple().encode_lower(&mut buf)).expect("hex is a valid header")
}

static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers through which a client could claim another address or scheme to the upstream.
const CLIENT_HINTS: [&str; 4] = ["forwarded", "x-real-ip", "true-client-ip", "x-client-ip"];

/// Removes what an untrusted client could use to spoof its origin: `Forwarded`, `X-Real-IP`
/// and friends, every `X-Forwarded-*` (unless the peer is a trusted proxy), and any header
/// whose name has an underscore (WSGI-style servers fold `X_Forwarded_For` into the real one).
pub fn scrub_client_hints(headers: &mut HeaderMap, trusted_peer: bool) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            n.contains('_')
                || (!trusted_peer && (n.starts_with("x-forwarded-") || CLIENT_HINTS.contains(&n)))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Joins several `Cookie` headers (as HTTP/2 clients send them) into one, as RFC 9113 §8.2.3
/// requires before forwarding over HTTP/1.1.
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// Sets `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto` and `X-Forwarded-Host` on a
/// forwarded request. `client` is the computed client IP.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    forwarded_for: HeaderValue,
    client: std::net::IpAddr,
    tls: bool,
    host: Option<HeaderValue>,
) {
    // Without trusted proxies the chain is the client alone: one value serves both headers.
    let real = if forwarded_for.as_bytes().contains(&b',') {
        super::client_ip::ip_value(client)
    } else {
        forwarded_for.clone()
    };
    headers.insert(&X_REAL_IP, real);
    headers.insert(&X_FORWARDED_FOR, forwarded_for);
    match host {
        Some(host) => headers.insert(&X_FORWARDED_HOST, host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    let proto = if tls { "https" } else { "http" };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_tokens_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert("x-keep", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn request_id_is_kept_when_valid_and_replaced_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(&REQUEST_ID, HeaderValue::from_static("abc-123_X.y"));
        assert_eq!(request_id(&h), "abc-123_X.y");
        h.insert(&REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 32);
        assert_ne!(fresh, request_id(&h));
        h.insert(
            &REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let client = "203.0.113.1".parse().unwrap();
        let host = Some(HeaderValue::from_static("gw"));
        let chain = HeaderValue::from_static("203.0.113.1, 10.0.0.1");
        set_forwarded(&mut h, chain, client, true, host);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 10.0.0.1");
        assert_eq!(h["x-real-ip"], "203.0.113.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw");
        // Untrusted peer: the chain is the client, both headers say it.
        let peer = "2001:db8::7".parse().unwrap();
        set_forwarded(
            &mut h,
            HeaderValue::from_static("2001:db8::7"),
            peer,
            false,
            None,
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
        assert_eq!(h["x-real-ip"], "2001:db8::7");
        assert!(!h.contains_key("x-forwarded-host"));
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn a_head_without_hop_by_hop_headers_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert("x-keep", HeaderValue::from_static("yes"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn spoofable_hints_are_scrubbed_from_untrusted_peers() {
        let mut h = HeaderMap::new();
        let names = [
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x-forwarded-port",
            "x_forwarded_for",
            "x-ok",
        ];
        for name in names {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_static("1"));
        }
        let mut trusted = h.clone();
        scrub_client_hints(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-ok"]);
        scrub_client_hints(&mut trusted, true);
        assert!(trusted.contains_key("x-forwarded-port"));
        assert!(
            !trusted.contains_key("x_forwarded_for"),
            "underscores never pass"
        );
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
    }
}
