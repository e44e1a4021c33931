//! Writing a response the way hyper's server frames it (`proto::h1::role::Server::encode`):
//! the status line in the request's version, the headers as they are (names in lower case), a
//! `date` unless one is set, and the body framed by its declared or known length, else chunked
//! (HTTP/1.1) or delimited by the connection's close (HTTP/1.0). No body for `HEAD`, 1xx, 204
//! and 304. The head and the first piece of a body that is ready at once go out in one
//! `writev`, and so do a chunk and the body's end.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode, Version};
use http_body::Body;
use hyper::ext::ReasonPhrase;
use tokio::net::TcpStream;

use crate::proxy::ProxyBody;

/// What the response's framing depends on in the request.
#[derive(Clone, Copy)]
pub struct Asked {
    pub head: bool,
    /// The request was a `CONNECT`: a 2xx to it ends HTTP on the connection.
    pub connect: bool,
    pub version: Version,
    pub keep_alive: bool,
}

/// How the body goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Writes `resp`; whether the connection may carry another request after it.
pub async fn write_response(
    stream: &TcpStream,
    resp: Response<ProxyBody>,
    asked: Asked,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let (parts, body) = resp.into_parts();
    let mut body = std::pin::pin!(body);
    // An HTTP/1.0 answer (from the upstream) goes out as HTTP/1.0, as hyper does.
    let asked = if parts.version == Version::HTTP_10 {
        Asked {
            version: Version::HTTP_10,
            ..asked
        }
    } else {
        asked
    };
    let framing = framing(&parts, &body, asked);
    // After a 101, or a 2xx to CONNECT, the connection is no longer HTTP: it closes.
    let tunnel = parts.status == StatusCode::SWITCHING_PROTOCOLS
        || (asked.connect && parts.status.is_success());
    let keep_alive = asked.keep_alive && framing != Framing::Close && !tunnel;
    out.clear();
    let known_len = body.size_hint().exact();
    encode_head(out, &parts, asked, (framing, known_len), keep_alive);
    if framing == Framing::None {
        write_all(stream, &mut [IoSlice::new(out)]).await?;
        return Ok(keep_alive);
    }
    let mut sent: u64 = 0;
    let mut head = Some(std::mem::take(out));
    let result = stream_body(stream, body.as_mut(), framing, &mut head, &mut sent).await;
    // Hand the head buffer back for the next response.
    *out = match head {
        Some(buf) => buf,
        None => Vec::with_capacity(512),
    };
    let complete = result?;
    let whole = match framing {
        Framing::Length(len) => complete && sent == len,
        _ => complete,
    };
    Ok(keep_alive && whole)
}

/// Streams the body, the head in front of the first write; whether it ended cleanly.
async fn stream_body(
    stream: &TcpStream,
    mut body: Pin<&mut ProxyBody>,
    framing: Framing,
    head: &mut Option<Vec<u8>>,
    sent: &mut u64,
) -> io::Result<bool> {
    loop {
        // A piece not ready at once: the head goes out first, so the client sees it now.
        let frame = match poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(h) = head.as_ref() {
                    write_all(stream, &mut [IoSlice::new(h)]).await?;
                    *head = None;
                }
                poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => {
                let end: &[u8] = if framing == Framing::Chunked {
                    b"0\r\n\r\n"
                } else {
                    b""
                };
                let h = head.as_deref().unwrap_or_default();
                write_all(stream, &mut [IoSlice::new(h), IoSlice::new(end)]).await?;
                *head = None;
                return Ok(true);
            }
            // The upstream failed mid-body: the message cannot be completed.
            Some(Err(_)) => return Ok(false),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not forwarded.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let data = match framing {
            Framing::Length(len) if *sent + data.len() as u64 > len => {
                // More than the declared length: what fits goes, then the connection closes.
                let fits = (len - *sent) as usize;
                let h = head.take().unwrap_or_default();
                write_all(stream, &mut [IoSlice::new(&h), IoSlice::new(&data[..fits])]).await?;
                *sent = len;
                return Ok(false);
            }
            _ => data,
        };
        *sent += data.len() as u64;
        let last = body.is_end_stream();
        write_piece(stream, head.take().as_deref(), &data, framing, last).await?;
        if last {
            return Ok(true);
        }
    }
}

/// One piece of the body (with the head before it, once), framed.
async fn write_piece(
    stream: &TcpStream,
    head: Option<&[u8]>,
    data: &Bytes,
    framing: Framing,
    last: bool,
) -> io::Result<()> {
    let h = head.unwrap_or_default();
    if framing != Framing::Chunked {
        return write_all(stream, &mut [IoSlice::new(h), IoSlice::new(data)]).await;
    }
    let mut size = [0u8; 18];
    let size = chunk_size(&mut size, data.len());
    let end: &[u8] = if last { b"\r\n0\r\n\r\n" } else { b"\r\n" };
    let mut bufs = [
        IoSlice::new(h),
        IoSlice::new(size),
        IoSlice::new(data),
        IoSlice::new(end),
    ];
    write_all(stream, &mut bufs).await
}

/// `{len:X}\r\n` in `buf` (upper-case hex, as hyper writes it).
pub fn chunk_size(buf: &mut [u8; 18], len: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 16;
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[i..]
}

/// The body framing hyper would choose.
fn framing(parts: &http::response::Parts, body: &ProxyBody, asked: Asked) -> Framing {
    let status = parts.status;
    let no_body = status.is_informational()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    if no_body || asked.head {
        return Framing::None;
    }
    if let Some(len) = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        return Framing::Length(len);
    }
    if body.is_end_stream() {
        return Framing::Length(0);
    }
    if let Some(len) = body.size_hint().exact() {
        return Framing::Length(len);
    }
    if asked.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::Close
    }
}

/// The status line and headers.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    asked: Asked,
    (framing, known_len): (Framing, Option<u64>),
    keep_alive: bool,
) {
    out.extend_from_slice(if asked.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    // The upstream's own reason phrase where it had one (hyper keeps it the same way).
    match parts.extensions.get::<ReasonPhrase>() {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or_default()
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in &parts.headers {
        // Framing and connection handling are this writer's.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        has_date |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None if asked.head => {
            // A HEAD answer keeps the length the GET would have (hyper: when it is not 0).
            if let Some(len) = parts.headers.get(CONTENT_LENGTH) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(len.as_bytes());
                out.extend_from_slice(b"\r\n");
            } else if let Some(len) = known_len.filter(|&len| len != 0) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        Framing::None => {}
        Framing::Close => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        crate::proxy::codec::date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    match (keep_alive, asked.version) {
        (false, Version::HTTP_11) => out.extend_from_slice(b"connection: close\r\n"),
        (true, Version::HTTP_10) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes every byte of `bufs` (trying at once; waiting only when the socket is full).
pub async fn write_all(stream: &TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match stream.try_write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
