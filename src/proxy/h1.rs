//! Tollgate's own HTTP/1.1 server for cleartext connections on the proxy listener
//! (`listen.http1 = "tollgate"`, the default; TLS and HTTP/2 stay with hyper, as does
//! `listen.http1 = "hyper"`).
//!
//! hyper's server runs a general state machine (dispatcher, buffered IO, header-map rebuilds,
//! a boxed timer per head) for what a proxy does with one request at a time on a keep-alive
//! connection. This loop reads a head with `httparse` into a buffer reused for the whole
//! connection (`codec::head`: hyper's rules and refusals), hands the pipeline a request whose
//! header values are views of that buffer and whose body is read from the same socket on
//! demand (`codec::body`: the framing watch's grammar and size check), and writes the response
//! with `writev` (`codec::write`: hyper's framing rules). hyper stays the oracle: `tests/h1_differential.rs`
//! sends the same corpus to both servers and requires the same upstream bytes or the same
//! refusal.
//!
//! Per connection: one request at a time (pipelined requests wait in the buffer), the head
//! within `limits.header_read_timeout` (an idle keep-alive connection too), at most
//! `limits.max_header_bytes` (at least 8 KiB) of head. While the pipeline works on a request
//! whose body has been read, the socket is watched: a client that closes abandons the request
//! (`client_closed`), as with hyper. After the response, what has already arrived of an unread
//! body is discarded; if the body has not ended the connection closes.

use std::future::{Future, poll_fn};
use std::io::IoSlice;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Poll, ready};
use std::time::Duration;

use http::{Method, Request, StatusCode, Version};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::proxy::handler::{self, Connection, ProxyState};
use crate::proxy::inbound::Inbound;
use crate::proxy::phases::Phases;

use crate::proxy::codec::body::{ClientBody, Reader, Shared};
use crate::proxy::codec::date;
use crate::proxy::codec::head::{self, Head};
use crate::proxy::codec::write::{self, Asked};
use crate::proxy::framing;

/// The limits one connection is served with.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The longest request head.
    pub max_head: usize,
    pub header_read_timeout: Duration,
    /// `limits.max_request_body`, which chunk sizes are checked against as they are read.
    pub body_limit: u64,
}

/// What waiting for the next request head came to.
enum Next {
    Head(Box<Head>),
    /// A head hyper refuses, with the status it answers.
    Refuse(StatusCode),
    /// Closed, failed, silent past the header timeout, or shutting down.
    Closed,
}

/// Serves one cleartext HTTP/1 connection through the pipeline until it closes, fails, or the
/// gateway stops.
pub async fn serve<P: Phases>(
    stream: TcpStream,
    conn: Arc<Connection>,
    state: Arc<ProxyState>,
    profile: Arc<P>,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) {
    let stream = Arc::new(stream);
    let reader = Reader::new(stream.clone(), settings.body_limit, settings.max_head);
    let serving = Serving {
        stream: &stream,
        reader: &reader,
        conn,
        settings,
    };
    serving.requests(state, profile, shutdown).await;
    // A body still held elsewhere (an upstream connection task) reads nothing more, and the
    // client sees the close now rather than when the last holder lets go.
    {
        let mut r = Reader::lock(&reader);
        r.generation += 1;
        r.failed = true;
    }
    let _ = socket2::SockRef::from(&*stream).shutdown(std::net::Shutdown::Write);
}

/// One connection being served.
struct Serving<'a> {
    stream: &'a Arc<TcpStream>,
    reader: &'a Shared,
    conn: Arc<Connection>,
    settings: Settings,
}

impl Serving<'_> {
    /// Serves requests until the connection is to close.
    async fn requests<P: Phases>(
        self,
        state: Arc<ProxyState>,
        profile: Arc<P>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Serving {
            stream,
            reader,
            conn,
            settings,
        } = self;
        let reader = reader.clone();
        let mut out = Vec::with_capacity(1024);
        // The version of the connection's last request: a refusal answers in it (as hyper does).
        let mut version = Version::HTTP_11;
        // One header timer for the connection, pushed back before each wait: moving a timer's
        // deadline later is an update in place, where a new timer per request is registered
        // in the wheel and removed again.
        let mut header_timer = pin!(tokio::time::sleep(settings.header_read_timeout));
        loop {
            let head =
                match next_head(&reader, settings, &mut shutdown, header_timer.as_mut()).await {
                    Next::Head(head) => head,
                    Next::Refuse(status) => {
                        let _ = refuse(stream, status, version, &mut out).await;
                        return;
                    }
                    Next::Closed => return,
                };
            version = head.parts.version;
            let Head {
                parts,
                framing,
                keep_alive,
                expect_continue,
            } = *head;
            let generation = Reader::lock(&reader).start_body(framing, expect_continue);
            let asked = Asked {
                head: parts.method == Method::HEAD,
                connect: parts.method == Method::CONNECT,
                version: parts.version,
                keep_alive,
            };
            let body = Inbound::Own(ClientBody::new(reader.clone(), generation, framing));
            let req = Request::from_parts(parts, body);
            // Pinned where it is built: `select!` would move (copy) the whole future, kilobytes.
            let handling = pin!(handler::handle(
                state.clone(),
                profile.clone(),
                conn.clone(),
                req
            ));
            let resp = tokio::select! {
                biased;
                resp = handling => resp,
                () = client_gone(&reader, settings.max_head) => return,
            };
            let Ok(resp) = resp;
            let asked = Asked {
                keep_alive: asked.keep_alive && !*shutdown.borrow(),
                ..asked
            };
            Reader::lock(&reader).responding = true;
            match write::write_response(stream, resp, asked, &mut out).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
            if !Reader::lock(&reader).drain() {
                return;
            }
        }
    }
}

/// Waits for the next request head: parsed at once when it has already arrived (the common
/// case, without a timer), else within the header timeout.
async fn next_head(
    reader: &Shared,
    settings: Settings,
    shutdown: &mut watch::Receiver<bool>,
    mut timer: Pin<&mut Sleep>,
) -> Next {
    if *shutdown.borrow() {
        return Next::Closed;
    }
    let mut reading = pin!(poll_fn(|cx| {
        let mut r = Reader::lock(reader);
        loop {
            let scanned = r.head_scanned;
            if !r.buf.is_empty() && (scanned == 0 || framing::ends_head(&r.buf, scanned)) {
                match head::parse(&mut r.buf, settings.max_head) {
                    Ok(Some(head)) => {
                        r.head_scanned = 0;
                        return Poll::Ready(Next::Head(Box::new(head)));
                    }
                    Ok(None) => r.head_scanned = r.buf.len(),
                    Err(status) => return Poll::Ready(Next::Refuse(status)),
                }
            } else if r.buf.len() >= settings.max_head {
                return Poll::Ready(Next::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            } else if !r.buf.is_empty() {
                r.head_scanned = r.buf.len();
            }
            match ready!(r.poll_fill(cx)) {
                Ok(n) if n > 0 => {}
                _ => return Poll::Ready(Next::Closed),
            }
        }
    }));
    if let Poll::Ready(next) = poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        return next;
    }
    timer
        .as_mut()
        .reset(Instant::now() + settings.header_read_timeout);
    tokio::select! {
        biased;
        next = reading => next,
        () = timer => Next::Closed,
        () = crate::shutdown::stopped(shutdown) => Next::Closed,
    }
}

/// Resolves once the client closes the connection while its request (whose body has been
/// read) is being served. Pipelined bytes are kept, up to a head's worth.
async fn client_gone(reader: &Shared, max_head: usize) {
    poll_fn(|cx| {
        let mut r = Reader::lock(reader);
        if !r.body_done() {
            // The body is still being read (maybe by another task): woken when it ends.
            if !r
                .body_watch
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                r.body_watch = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        while r.buf.len() < max_head {
            match ready!(r.poll_fill(cx)) {
                Ok(n) if n > 0 => {}
                _ => return Poll::Ready(()),
            }
        }
        Poll::Pending
    })
    .await
}

/// hyper's answer to a head it refuses: the status, no body, and the connection closes.
async fn refuse(
    stream: &TcpStream,
    status: StatusCode,
    version: Version,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    out.clear();
    if version == Version::HTTP_10 {
        out.extend_from_slice(b"HTTP/1.0 ");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
    }
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    if version != Version::HTTP_10 {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\ncontent-length: 0\r\ndate: ");
    date::extend(out);
    out.extend_from_slice(b"\r\n\r\n");
    write::write_all(stream, &mut [IoSlice::new(out)]).await
}
