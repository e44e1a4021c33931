//! Cleartext HTTP/1.1 to the upstream on Tollgate's own codec (`listen.http1 = "tollgate"`,
//! the default), driven by the task that serves the request, as [`super::h1`] drives hyper's.
//!
//! The request goes out the way hyper's client frames it (`proto::h1::role::Client`): origin
//! form, the headers as they are (names in lower case), `Host` when the request has none, the
//! body by its `Content-Length` or length, else chunked (an unknown-length `GET`, `HEAD` or
//! `CONNECT` sends none), the head and the first piece of a body that is ready at once in one
//! `writev`. The response head is parsed with `httparse` (1xx skipped, no body for `HEAD`,
//! 204 and 304, chunked by the framing watch's grammar, else `Content-Length`, else until the
//! upstream closes), its header values views of the connection's buffer. The rest of the upload
//! is sent while the response is read; once the response has ended the connection goes back to
//! the pool if the upload is complete and the upstream keeps it alive, else it is dropped.
//! `tests/h1_differential.rs` holds both legs to hyper's bytes.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use smallvec::SmallVec;
use tokio::net::TcpStream;

use super::SendError;
use super::idle::IdleConns;
use super::response_head::{Receiving, content_length, parse_response};
use crate::proxy::ProxyBody;
use crate::proxy::codec::body::{poll_fill, poll_fill_by};
use crate::proxy::codec::write::chunk_size;
use crate::proxy::framing::{BodyFraming, BodyStep, Watch, ends_chunked};

/// The longest response head accepted (hyper's client buffers up to ~400 KiB).
const MAX_HEAD: usize = 400 << 10;
/// Room per read of a response body: large bodies stream in fewer, larger pieces.
const BODY_READ: usize = 64 << 10;

/// Connections to one upstream, idle ones kept for reuse.
pub struct OwnPool {
    /// `host:port` to connect to.
    addr: String,
    /// The `Host` header for requests that carry none.
    host: HeaderValue,
    connect_timeout: Duration,
    idle: IdleConns<Conn>,
}

/// One upstream connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Follows chunked response bodies.
    watch: Watch,
}

impl Conn {
    /// Whether the upstream has sent something (its close, or bytes nobody asked for) since the
    /// connection went idle: then it cannot carry another request.
    fn spoiled(&self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        // A peek, not tokio's readiness: that can read as "nothing yet" when the task's I/O
        // budget is spent, and a dead connection would be taken for a live one.
        let mut probe = [MaybeUninit::<u8>::uninit()];
        !matches!(
            socket2::SockRef::from(&self.stream).peek(&mut probe),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

impl OwnPool {
    pub fn new(
        addr: String,
        host: HeaderValue,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        OwnPool {
            addr,
            host,
            connect_timeout,
            idle: IdleConns::new(idle_timeout, max_idle),
        }
    }

    /// Sends `req` and returns the response head; the body streams through [`OwnBody`].
    pub async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
    ) -> Result<Response<OwnBody>, SendError> {
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .entry(HOST)
            .or_insert_with(|| self.host.clone());
        let framing = request_framing(&mut parts, &body);
        let mut head = Vec::with_capacity(256 + 64 * parts.headers.len());
        encode_head(&mut head, &parts);
        let mut upload = Upload::new(Bytes::from(head), body, framing);
        let method = parts.method;
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match exchange(&mut conn, &mut upload, &method).await {
                Ok((head, framing, keep_alive)) => {
                    let body = OwnBody {
                        conn: Some(conn),
                        upload: Some(upload),
                        framing,
                        keep_alive,
                        pool: self.clone(),
                    };
                    return Ok(body.start(head));
                }
                // A pooled connection the upstream had closed, before anything was written.
                Err(_) if reused && upload.written == 0 && !upload.failed => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Drops idle connections past the idle timeout and those the upstream has closed.
    pub fn reap(&self) {
        self.idle.reap(|conn| !conn.spoiled());
    }

    /// How many connections wait in the pool.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// The most recently used idle connection that is still usable.
    fn checkout(&self) -> Option<Box<Conn>> {
        self.idle.checkout(|conn| !conn.spoiled())
    }

    fn checkin(&self, conn: Box<Conn>) {
        self.idle.checkin(conn);
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let stream = super::connect_tcp(&self.addr, self.connect_timeout).await?;
        Ok(Box::new(Conn {
            stream,
            buf: BytesMut::with_capacity(16 << 10),
            watch: Watch::new(u64::MAX, MAX_HEAD),
        }))
    }
}

/// How the request body goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Exactly this many more bytes.
    Length(u64),
    Chunked,
}

/// hyper's client framing: sets `Content-Length` or `Transfer-Encoding` as it would.
fn request_framing(parts: &mut http::request::Parts, body: &ProxyBody) -> Sending {
    let headers = &mut parts.headers;
    if body.is_end_stream() {
        headers.remove(TRANSFER_ENCODING);
        return Sending::Length(0);
    }
    if let Some(te) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        if !ends_chunked(te.as_bytes()) {
            let mut value = te.as_bytes().to_vec();
            value.extend_from_slice(b", chunked");
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(TRANSFER_ENCODING, value);
            }
        }
        headers.remove(CONTENT_LENGTH);
        return Sending::Chunked;
    }
    if let Some(len) = content_length(headers) {
        return Sending::Length(len);
    }
    match body.size_hint().exact() {
        Some(len) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            Sending::Length(len)
        }
        None if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) => {
            Sending::Length(0)
        }
        None => {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            headers.remove(CONTENT_LENGTH);
            Sending::Chunked
        }
    }
}

/// The request line (origin form) and headers.
fn encode_head(out: &mut Vec<u8>, parts: &http::request::Parts) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The request on its way out: bytes waiting for the socket, and the body they come from.
struct Upload {
    pending: SmallVec<[Bytes; 4]>,
    body: Option<ProxyBody>,
    sending: Sending,
    /// Bytes handed to the socket so far.
    written: u64,
    /// The client's body failed (its error is the exchange's).
    failed: bool,
    /// The upload was given up unfinished: the upstream may still wait for the rest, so the
    /// connection is never pooled.
    aborted: bool,
}

impl Upload {
    fn new(head: Bytes, body: ProxyBody, sending: Sending) -> Self {
        let done = sending == Sending::Length(0);
        Upload {
            pending: SmallVec::from_iter([head]),
            body: (!done).then_some(body),
            sending,
            written: 0,
            failed: false,
            aborted: false,
        }
    }

    /// Whether everything has been written.
    fn done(&self) -> bool {
        self.body.is_none() && self.pending.is_empty()
    }

    /// Gives the rest of the upload up.
    fn abort(&mut self) {
        self.body = None;
        self.pending.clear();
        self.aborted = true;
    }

    /// Writes what is pending and what the body has ready: `Ready(Ok)` once all is written.
    fn poll(&mut self, cx: &mut Context<'_>, stream: &TcpStream) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_write(cx, stream))?;
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let frame = ready!(Pin::new(body).poll_frame(cx));
            self.take(frame)?;
        }
    }

    /// One piece of the body, framed into `pending`.
    fn take(
        &mut self,
        frame: Option<Result<Frame<Bytes>, crate::proxy::BoxError>>,
    ) -> io::Result<()> {
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => return Ok(()),
            },
            Some(Err(err)) => {
                self.body = None;
                self.failed = true;
                return Err(io::Error::other(err));
            }
            None => {
                self.body = None;
                return match self.sending {
                    Sending::Chunked => {
                        self.pending.push(Bytes::from_static(b"0\r\n\r\n"));
                        Ok(())
                    }
                    Sending::Length(0) => Ok(()),
                    Sending::Length(_) => {
                        self.failed = true;
                        Err(io::Error::other("the request body ended early"))
                    }
                };
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.sending {
            Sending::Chunked => {
                let mut size = [0u8; 18];
                let size = chunk_size(&mut size, data.len());
                self.pending.push(Bytes::copy_from_slice(size));
                self.pending.push(data);
                self.pending.push(Bytes::from_static(b"\r\n"));
            }
            Sending::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    self.body = None;
                    self.failed = true;
                    return Err(io::Error::other("the request body is longer than declared"));
                }
                *left -= n;
                self.pending.push(data);
                if *left == 0 {
                    self.body = None;
                }
            }
        }
        Ok(())
    }

    /// Writes `pending`, several pieces per `writev`.
    fn poll_write(&mut self, cx: &mut Context<'_>, stream: &TcpStream) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = {
                let slices: SmallVec<[IoSlice<'_>; 8]> = self
                    .pending
                    .iter()
                    .take(8)
                    .map(|b| IoSlice::new(b))
                    .collect();
                stream.try_write_vectored(&slices)
            };
            match written {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(mut n) => {
                    self.written += n as u64;
                    while n > 0 {
                        let first = &mut self.pending[0];
                        if n >= first.len() {
                            n -= first.len();
                            self.pending.remove(0);
                        } else {
                            first.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Sends the request (as far as the body allows) and reads the response head, skipping 1xx.
async fn exchange(
    conn: &mut Conn,
    upload: &mut Upload,
    method: &Method,
) -> Result<(http::response::Parts, Receiving, bool), SendError> {
    poll_fn(|cx| {
        if !upload.done() {
            match upload.poll(cx, &conn.stream) {
                Poll::Ready(Err(err)) if upload.failed || upload.written == 0 => {
                    return Poll::Ready(Err(SendError::Io(err)));
                }
                // The upstream stopped reading; it may still answer.
                Poll::Ready(Err(_)) => upload.abort(),
                _ => {}
            }
        }
        loop {
            if !conn.buf.is_empty() {
                match parse_response(&mut conn.buf, method) {
                    Ok(Some(Some(head))) => return Poll::Ready(Ok(head)),
                    // A 1xx: the real answer follows.
                    Ok(Some(None)) => continue,
                    Ok(None) if conn.buf.len() >= MAX_HEAD => {
                        return Poll::Ready(Err(SendError::Protocol("response head too large")));
                    }
                    Ok(None) => {}
                    Err(what) => return Poll::Ready(Err(SendError::Protocol(what))),
                }
            }
            match ready!(poll_fill(&conn.stream, &mut conn.buf, cx)) {
                Ok(0) => return Poll::Ready(Err(SendError::Closed)),
                Ok(_) => {}
                Err(err) => return Poll::Ready(Err(SendError::Io(err))),
            }
        }
    })
    .await
}

/// A response body read from its connection; the connection goes back to the pool at its end.
pub struct OwnBody {
    conn: Option<Box<Conn>>,
    /// What is left of the request to send.
    upload: Option<Upload>,
    framing: Receiving,
    keep_alive: bool,
    pool: Arc<OwnPool>,
}

impl OwnBody {
    fn start(mut self, head: http::response::Parts) -> Response<OwnBody> {
        if self.framing == Receiving::Chunked
            && let Some(conn) = &mut self.conn
        {
            conn.watch.start_body(BodyFraming::Chunked);
        }
        if self.framing == Receiving::Empty {
            self.finish();
        }
        Response::from_parts(head, self)
    }

    /// The body has ended: the connection is pooled if it can carry another request.
    fn finish(&mut self) {
        self.framing = Receiving::Empty;
        let upload_done = self.upload.take().is_none_or(|u| u.done() && !u.aborted);
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && upload_done
            && conn.buf.is_empty()
        {
            self.pool.checkin(conn);
        }
    }

    /// Reads the next piece of the body.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match &mut self.framing {
                Receiving::Empty => return Poll::Ready(None),
                Receiving::Length(left) if !conn.buf.is_empty() => {
                    let n = (*left).min(conn.buf.len() as u64);
                    *left -= n;
                    return Poll::Ready(Some(Ok(conn.buf.split_to(n as usize).freeze())));
                }
                Receiving::Close if !conn.buf.is_empty() => {
                    return Poll::Ready(Some(Ok(conn.buf.split().freeze())));
                }
                Receiving::Chunked if !conn.buf.is_empty() => match conn.watch.body_step(&conn.buf)
                {
                    Ok(BodyStep::Data(n)) => {
                        return Poll::Ready(Some(Ok(conn.buf.split_to(n).freeze())));
                    }
                    Ok(BodyStep::Framing(n)) => {
                        conn.buf.advance(n);
                        if conn.watch.body_done() {
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    Err(_) => {
                        return Poll::Ready(Some(Err(io::Error::other("invalid chunked body"))));
                    }
                },
                _ => {}
            }
            match ready!(poll_fill_by(&conn.stream, &mut conn.buf, BODY_READ, cx)) {
                Ok(0) if self.framing == Receiving::Close => return Poll::Ready(None),
                Ok(0) => {
                    let eof = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the body ended",
                    );
                    return Poll::Ready(Some(Err(eof)));
                }
                Ok(_) => {}
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
        }
    }
}

impl Body for OwnBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        // The rest of the upload goes while the response is read.
        if let (Some(upload), Some(conn)) = (&mut this.upload, &this.conn)
            && !upload.done()
            && let Poll::Ready(Err(_)) = upload.poll(cx, &conn.stream)
        {
            upload.abort();
        }
        let piece = ready!(this.poll_piece(cx));
        match &piece {
            None => this.finish(),
            Some(Err(_)) => {
                this.conn = None;
                this.framing = Receiving::Empty;
            }
            Some(Ok(_)) if this.framing == Receiving::Length(0) => this.finish(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(piece.map(|p| p.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Receiving::Empty | Receiving::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Receiving::Empty => SizeHint::with_exact(0),
            Receiving::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}
