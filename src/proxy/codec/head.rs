//! A request head read the way hyper's server reads it (`proto::h1::role::Server::parse`): the
//! same `httparse` configuration and 100-header cap, the same refusals (400, 414, 431),
//! the same body framing (`framing::body_framing`), the same `Content-Length` and
//! `Transfer-Encoding` clean-up, keep-alive and `Expect` rules. The header values are views
//! of the connection's read buffer, not copies.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use smallvec::SmallVec;

use crate::proxy::framing::{self, BodyFraming};

/// hyper's cap on request headers (`DEFAULT_MAX_HEADERS`).
const MAX_HEADERS: usize = 100;
/// Headers the pipeline adds to a forwarded request (see `header_map`).
const ADDED_HEADERS: usize = 6;
/// hyper's longest request target (`MAX_URI_LEN`); a longer one is refused with 414.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// A parsed request head and what it says about the connection.
pub struct Head {
    pub parts: Parts,
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1): a `100 Continue` is owed before the body is read.
    pub expect_continue: bool,
}

/// Where a header's name and value lie in the head's bytes.
struct Indices {
    name: Range<usize>,
    value: Range<usize>,
}

/// Parses the head at the start of `buf` and takes its bytes out of `buf`: `Ok(None)` while it
/// is incomplete, `Err` with the status hyper refuses it with.
pub fn parse(buf: &mut BytesMut, max_head: usize) -> Result<Option<Head>, StatusCode> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let bytes: &[u8] = buf;
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        bytes,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() >= max_head => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    if len > max_head {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let path = req.path.unwrap_or_default();
    if path.len() > MAX_URI_LEN {
        return Err(StatusCode::URI_TOO_LONG);
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let http11 = req.version == Some(1);
    let framing = framing::body_framing(&req).ok_or(StatusCode::BAD_REQUEST)?;
    let base = bytes.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let path_range = at(path.as_bytes());
    // Filled in place: a collected `SmallVec` is moved (copied whole) on return.
    let mut indices: SmallVec<[Indices; 24]> = SmallVec::new();
    indices.extend(req.headers.iter().map(|h| Indices {
        name: at(h.name.as_bytes()),
        value: at(h.value),
    }));
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(path_range)).map_err(|_| StatusCode::BAD_REQUEST)?;
    let (headers, seen) = header_map(&head, &indices)?;
    let mut keep_alive = seen.connection.keeps_alive(http11);
    if seen.te && seen.cl {
        keep_alive = false;
    }
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
        expect_continue: http11 && seen.expect_continue,
    }))
}

/// What the header loop noticed.
#[derive(Default)]
struct Seen {
    te: bool,
    cl: bool,
    connection: ConnectionTokens,
    expect_continue: bool,
}

/// The header map as hyper builds it: a `Content-Length` beside a `Transfer-Encoding` is
/// dropped, a repeated (equal) `Content-Length` is kept once.
fn header_map(head: &Bytes, indices: &[Indices]) -> Result<(HeaderMap, Seen), StatusCode> {
    // Room for what the pipeline adds (the `X-Forwarded-*` set, `X-Request-Id`, the upstream's
    // credential) without the map growing and hashing every name again.
    let mut headers = HeaderMap::with_capacity(indices.len() + ADDED_HEADERS);
    let mut seen = Seen::default();
    let mut cl_kept = false;
    for h in indices {
        let name =
            HeaderName::from_bytes(&head[h.name.clone()]).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_maybe_shared(head.slice(h.value.clone()))
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        if name == TRANSFER_ENCODING {
            seen.te = true;
            if cl_kept {
                headers.remove(CONTENT_LENGTH);
                cl_kept = false;
            }
        } else if name == CONTENT_LENGTH {
            seen.cl = true;
            if seen.te || cl_kept {
                continue;
            }
            cl_kept = true;
        } else if name == CONNECTION {
            seen.connection.read(value.as_bytes());
        } else if name == EXPECT {
            seen.expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    Ok((headers, seen))
}

/// What a head's `Connection` values say (tokens split at commas, trimmed, ASCII case
/// ignored), for the request and the response parsers alike.
#[derive(Default)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    /// A token other than `keep-alive` (`close` included): it may name a header to remove.
    pub names: bool,
}

impl ConnectionTokens {
    /// With one more `Connection` value.
    pub fn read(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                self.names = true;
                self.close |= token.eq_ignore_ascii_case(b"close");
            }
        }
    }

    /// Whether the connection may carry another message: HTTP/1.1 unless `close`, HTTP/1.0
    /// only with `keep-alive`.
    pub fn keeps_alive(&self, http11: bool) -> bool {
        !self.close && (http11 || self.keep_alive)
    }
}
