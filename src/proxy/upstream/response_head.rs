//! The upstream's response head on the own HTTP/1.1 client: parsed with `httparse` as hyper's
//! client parses it (`proto::h1::role::Client::parse`), the body's framing decided as hyper
//! decides it, and the hop-by-hop headers read here and left out of the map.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::ext::ReasonPhrase;
use smallvec::SmallVec;

use crate::proxy::codec::head::ConnectionTokens;
use crate::proxy::framing::{digits, ends_chunked};
use crate::proxy::headers::{is_hop_by_hop, remove_connection_named};

/// hyper's cap on response headers.
const MAX_HEADERS: usize = 100;

/// How the response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiving {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// Every `Content-Length` value, when they all agree (hyper's `content_length_parse_all`).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let all = headers.get_all(CONTENT_LENGTH).iter();
    match all.fold(Length::Absent, |len, v| len.and(v.as_bytes())) {
        Length::Valid(len) => Some(len),
        Length::Absent | Length::Invalid => None,
    }
}

/// The `Content-Length` values of a message, read one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Absent,
    /// Every value and every comma-separated part of one says this length.
    Valid(u64),
    /// A part is not decimal digits, or the parts disagree.
    Invalid,
}

impl Length {
    /// With one more value.
    pub fn and(self, value: &[u8]) -> Length {
        let mut len = self;
        for part in value.split(|&b| b == b',') {
            len = match (len, digits(part.trim_ascii())) {
                (Length::Invalid, _) | (_, None) => return Length::Invalid,
                (Length::Valid(seen), Some(n)) if seen != n => return Length::Invalid,
                (_, Some(n)) => Length::Valid(n),
            };
        }
        len
    }
}

/// A response head at the start of `buf`, taken out of it: `None` while incomplete,
/// `Some(None)` for a 1xx to skip.
#[allow(clippy::type_complexity)]
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<Option<(http::response::Parts, Receiving, bool)>>, &'static str> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let bytes: &[u8] = buf;
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        bytes,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("invalid response head"),
    };
    let code = resp.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| "invalid response status")?;
    let http11 = resp.version == Some(1);
    // The upstream's own reason phrase, kept for the client when it is not the usual one.
    let reason = resp
        .reason
        .filter(|r| status.canonical_reason() != Some(*r))
        .and_then(|r| ReasonPhrase::try_from(r.as_bytes().to_vec()).ok());
    let base = bytes.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    // Filled in place: a collected `SmallVec` is moved (copied whole) on return.
    let mut indices: SmallVec<[(std::ops::Range<usize>, std::ops::Range<usize>); 24]> =
        SmallVec::new();
    indices.extend(
        resp.headers
            .iter()
            .map(|h| (at(h.name.as_bytes()), at(h.value))),
    );
    let head = buf.split_to(len).freeze();
    if status.is_informational() && code != 101 {
        return Ok(Some(None));
    }
    // Hop-by-hop headers are read here and never enter the map: the pipeline would remove
    // them (`headers::remove_hop_by_hop`) at a cost of a map search per name.
    let mut map = HeaderMap::with_capacity(indices.len());
    let mut te = None;
    let mut length = Length::Absent;
    let mut tokens = ConnectionTokens::default();
    let mut connection: SmallVec<[HeaderValue; 1]> = SmallVec::new();
    for (name, value) in indices {
        let name = HeaderName::from_bytes(&head[name]).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value))
            .map_err(|_| "invalid header value")?;
        if name == TRANSFER_ENCODING {
            te = Some(value);
        } else if name == CONNECTION {
            tokens.read(value.as_bytes());
            connection.push(value);
        } else if !is_hop_by_hop(&name) {
            if name == CONTENT_LENGTH {
                length = length.and(value.as_bytes());
            }
            map.append(name, value);
        }
    }
    let receiving = receiving(status, method, length, te.as_ref(), http11)?;
    if te.is_some() {
        // The coding frames the body: a length beside it must not reach the client.
        map.remove(CONTENT_LENGTH);
    }
    // `Connection: keep-alive` alone, the usual case, names nothing to look for.
    if tokens.names {
        remove_connection_named(&mut map, &connection);
    }
    let keep_alive = tokens.keeps_alive(http11);
    // After a 101 or a 2xx to CONNECT the connection is no longer HTTP (hyper upgrades it):
    // never pooled.
    let tunnel = code == 101 || (method == Method::CONNECT && status.is_success());
    let keep_alive = keep_alive && receiving != Receiving::Close && !tunnel;
    let mut parts = Response::new(()).into_parts().0;
    if let Some(reason) = reason {
        parts.extensions.insert(reason);
    }
    parts.status = status;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    parts.headers = map;
    Ok(Some(Some((parts, receiving, keep_alive))))
}

/// The response body's framing, as hyper's client decides it.
fn receiving(
    status: StatusCode,
    method: &Method,
    length: Length,
    te: Option<&HeaderValue>,
    http11: bool,
) -> Result<Receiving, &'static str> {
    let code = status.as_u16();
    if code == 101 || code == 204 || code == 304 || method == Method::HEAD {
        return Ok(Receiving::Empty);
    }
    if method == Method::CONNECT && status.is_success() {
        return Ok(Receiving::Empty);
    }
    if let Some(te) = te {
        if !http11 {
            return Err("HTTP/1.0 response with Transfer-Encoding");
        }
        return Ok(if ends_chunked(te.as_bytes()) {
            Receiving::Chunked
        } else {
            Receiving::Close
        });
    }
    match length {
        Length::Valid(0) => Ok(Receiving::Empty),
        Length::Valid(len) => Ok(Receiving::Length(len)),
        Length::Invalid => Err("invalid Content-Length"),
        Length::Absent => Ok(Receiving::Close),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str, method: Method) -> (http::response::Parts, Receiving, bool) {
        let mut buf = BytesMut::from(head);
        parse_response(&mut buf, &method).unwrap().unwrap().unwrap()
    }

    #[test]
    fn lengths_agree_or_are_invalid() {
        let of = |values: &[&str]| {
            let read = |len: Length, v: &&str| len.and(v.as_bytes());
            values.iter().fold(Length::Absent, read)
        };
        assert_eq!(of(&[]), Length::Absent);
        assert_eq!(of(&["12"]), Length::Valid(12));
        assert_eq!(of(&["12, 12", " 12 "]), Length::Valid(12));
        for bad in [
            &["12", "13"][..],
            &["12,"],
            &["+12"],
            &[""],
            &["1 2"],
            &["99999999999999999999"],
        ] {
            assert_eq!(of(bad), Length::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn connection_tokens_decide_reuse_and_removal() {
        let (parts, receiving, keep) = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             Content-Length: 2\r\n\r\n",
            Method::GET,
        );
        assert_eq!((receiving, keep), (Receiving::Length(2), true));
        assert_eq!(parts.headers.len(), 1, "{:?}", parts.headers);
        let (parts, _, keep) = parse(
            "HTTP/1.1 200 OK\r\nConnection: x-hop, CLOSE\r\nx-hop: 1\r\nclose: 1\r\n\
             x-end: 1\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!keep);
        let mut names: Vec<_> = parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-end"]);
        let (_, _, keep) = parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET);
        assert!(!keep, "HTTP/1.0 without keep-alive closes");
        let keep_10 = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(parse(keep_10, Method::GET).2);
    }

    #[test]
    fn a_coding_frames_the_body_and_drops_the_length() {
        let (parts, receiving, _) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(receiving, Receiving::Chunked);
        assert!(parts.headers.is_empty(), "{:?}", parts.headers);
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n");
        assert!(parse_response(&mut buf, &Method::GET).is_err());
        let (_, receiving, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD);
        assert_eq!(receiving, Receiving::Empty);
        // The coding decides, whatever the length says; HTTP/1.0 has no codings.
        let (_, receiving, _) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(receiving, Receiving::Chunked);
        let mut buf = BytesMut::from("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(parse_response(&mut buf, &Method::GET).is_err());
    }

    #[test]
    fn a_connection_value_that_is_not_text_names_nothing_but_may_close() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nConnection: x-a, \xff, close\r\n\
            x-a: 1\r\nContent-Length: 0\r\n\r\n"[..],
        );
        let (parts, _, keep) = parse_response(&mut buf, &Method::GET)
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(!keep);
        assert!(parts.headers.contains_key("x-a"), "{:?}", parts.headers);
    }
}
