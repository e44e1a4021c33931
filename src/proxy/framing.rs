//! The HTTP/1 framing watch: a read-side wrapper in front of hyper that follows the request
//! stream's framing (heads, `Content-Length` bodies, chunked bodies) the way hyper reads it, so
//! a chunked body whose declared sizes add up to more than `limits.max_request_body` is refused
//! *before* hyper yields a byte of that chunk. hyper does not expose chunk sizes; this is the
//! least invasive place to see them.
//!
//! - A head without a `Content-Length` or `Transfer-Encoding` line frames no body; a line scan
//!   finds its end. Other heads are parsed with `httparse` under hyper's own rules (its parser configuration, its
//!   100-header cap, the last `Transfer-Encoding` deciding chunked, `Content-Length` ignored
//!   beside it), so both agree on where each body ends.
//! - A chunk size is judged digit by digit: the digit that makes the body's declared total pass
//!   the limit is never handed to hyper. hyper gets the bytes before it, then the next read fails
//!   with [`DeclaredTooLarge`], which reaches the handler as the request body's error (413).
//! - It fails closed: on anything it cannot follow (a head hyper will refuse, a framing error),
//!   it hands the bytes over so hyper answers its own 400/431, and the stream ends there for
//!   hyper, so it can never go on parsing a stream the watch has lost track of.
//!
//! Only HTTP/1 connections are watched (HTTP/2 has no chunk sizes). Upgraded connections are
//! not supported by the gateway, so the watch never needs to step aside.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's caps on a chunked body's extension bytes and trailer bytes
/// (`CHUNKED_EXTENSIONS_LIMIT`, `TRAILER_LIMIT`).
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 << 10;
const TRAILERS_LIMIT: u64 = 16 << 10;
/// hyper's cap on request headers (`DEFAULT_MAX_HEADERS`): a head with more is refused by both.
const MAX_HEADERS: usize = 100;

/// The read error of a request whose chunk sizes declare more than the body limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body's chunk sizes declare more than the limit of {limit} bytes")]
pub struct DeclaredTooLarge {
    pub limit: u64,
}

/// The read error after the watch lost track of the stream (hyper refuses it first).
#[derive(Debug, thiserror::Error)]
#[error("the connection's HTTP/1 framing is invalid")]
pub struct Unframed;

/// Whether `err`, or any error it was caused by, is a [`DeclaredTooLarge`].
pub fn is_declared_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<DeclaredTooLarge>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<DeclaredTooLarge>())
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Where the watch stands in the request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a request head (its bytes so far are in `Watch::head`).
    Head,
    /// A body of known length: bytes left.
    Fixed(u64),
    Chunk(Chunk),
}

/// A chunked body's grammar, as hyper's `ChunkedState` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// The first digit of a size line.
    Start,
    /// More digits of a size line (the size so far).
    Size(u64),
    /// Blanks after the size.
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    /// Chunk data: bytes left.
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// How a request's body is framed, as hyper decides it from the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    Empty,
    Fixed(u64),
    Chunked,
}

/// What [`Watch::body_step`] found: how many bytes of body data, or of framing, come first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStep {
    Data(usize),
    Framing(usize),
}

/// The body framing of a parsed request head, as hyper decides it: `None` when hyper refuses
/// the head with 400.
pub fn body_framing(req: &httparse::Request<'_, '_>) -> Option<BodyFraming> {
    Some(match framing(req).ok()? {
        State::Head => BodyFraming::Empty,
        State::Fixed(len) => BodyFraming::Fixed(len),
        State::Chunk(_) => BodyFraming::Chunked,
    })
}

/// Why the watch stops handing bytes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The byte at `at` would make the declared body pass the limit.
    TooLarge { at: usize },
    /// The stream is malformed from `at` on (hyper refuses it).
    Unframed { at: usize },
}

/// The framing state machine, fed every byte the client sends, in order.
#[derive(Debug)]
pub struct Watch {
    limit: u64,
    /// hyper's head size cap; a longer head is refused by hyper before the watch gives up.
    max_head: usize,
    state: State,
    /// A head split across reads, gathered until it is complete.
    head: Vec<u8>,
    /// The sizes of the current chunked body's completed chunks.
    declared: u64,
    /// Chunk-extension bytes of the current body (hyper refuses 16 KiB of them).
    extensions: u64,
    /// Trailer bytes of the current body (hyper refuses 16 KiB of them).
    trailers: u64,
    /// The trailer lines, checked as header fields at the body's end (as hyper parses them).
    trailer_bytes: Vec<u8>,
}

impl Watch {
    pub fn new(limit: u64, max_head: usize) -> Self {
        Watch {
            limit,
            max_head,
            state: State::Head,
            head: Vec::new(),
            declared: 0,
            extensions: 0,
            trailers: 0,
            trailer_bytes: Vec::new(),
        }
    }

    /// Follows `input`, the next bytes of the stream: `Ok` if all of it may go to hyper.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), Stop> {
        let mut pos = 0;
        while pos < input.len() {
            pos += match self.state {
                State::Head => self
                    .head_step(&input[pos..])
                    .map_err(|()| Stop::Unframed { at: input.len() })?,
                State::Fixed(left) => {
                    let take = left.min((input.len() - pos) as u64);
                    self.state = match left - take {
                        0 => State::Head,
                        rest => State::Fixed(rest),
                    };
                    take as usize
                }
                State::Chunk(Chunk::Data(left)) => {
                    let take = left.min((input.len() - pos) as u64);
                    self.state = State::Chunk(match left - take {
                        0 => Chunk::DataCr,
                        rest => Chunk::Data(rest),
                    });
                    take as usize
                }
                State::Chunk(chunk) => {
                    self.state = match self.chunk_byte(chunk, input[pos]) {
                        Ok(next) => next,
                        Err(Verdict::TooLarge) => return Err(Stop::TooLarge { at: pos }),
                        Err(Verdict::Invalid) => return Err(Stop::Unframed { at: pos + 1 }),
                    };
                    1
                }
            };
        }
        Ok(())
    }

    /// Follows a body framed as `framing` says, whose head was parsed elsewhere (Tollgate's own
    /// HTTP/1.1 server, `proxy::h1`, which reads bodies through [`Watch::body_step`]).
    pub fn start_body(&mut self, framing: BodyFraming) {
        self.declared = 0;
        self.extensions = 0;
        self.trailers = 0;
        self.trailer_bytes.clear();
        self.head.clear();
        self.state = match framing {
            BodyFraming::Empty => State::Head,
            BodyFraming::Fixed(len) => State::Fixed(len),
            BodyFraming::Chunked => State::Chunk(Chunk::Start),
        };
    }

    /// The body limit chunk sizes are held to.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether the body [`Watch::start_body`] began has ended.
    pub fn body_done(&self) -> bool {
        self.state == State::Head
    }

    /// The body bytes still to come, when its length is known.
    pub fn body_left(&self) -> Option<u64> {
        match self.state {
            State::Head => Some(0),
            State::Fixed(left) => Some(left),
            State::Chunk(_) => None,
        }
    }

    /// One step through a body's bytes at the start of `input`: a run of data, or of framing
    /// (chunk sizes, extensions, line ends, trailers) up to the next data or the body's end.
    /// The same grammar and size check as [`Watch::feed`].
    pub fn body_step(&mut self, input: &[u8]) -> Result<BodyStep, Stop> {
        match self.state {
            State::Head => Ok(BodyStep::Framing(0)),
            State::Fixed(left) => {
                let take = left.min(input.len() as u64);
                self.state = match left - take {
                    0 => State::Head,
                    rest => State::Fixed(rest),
                };
                Ok(BodyStep::Data(take as usize))
            }
            State::Chunk(Chunk::Data(left)) => {
                let take = left.min(input.len() as u64);
                self.state = State::Chunk(match left - take {
                    0 => Chunk::DataCr,
                    rest => Chunk::Data(rest),
                });
                Ok(BodyStep::Data(take as usize))
            }
            State::Chunk(_) => {
                let mut pos = 0;
                while pos < input.len() {
                    let State::Chunk(chunk) = self.state else {
                        break;
                    };
                    if matches!(chunk, Chunk::Data(_)) {
                        break;
                    }
                    self.state = match self.chunk_byte(chunk, input[pos]) {
                        Ok(next) => next,
                        Err(Verdict::TooLarge) => return Err(Stop::TooLarge { at: pos }),
                        Err(Verdict::Invalid) => return Err(Stop::Unframed { at: pos }),
                    };
                    pos += 1;
                }
                Ok(BodyStep::Framing(pos))
            }
        }
    }

    /// Reads head bytes from `input`; how many belong to the head. `Err` when hyper refuses it.
    fn head_step(&mut self, input: &[u8]) -> Result<usize, ()> {
        if self.head.is_empty() {
            if let Some(len) = self.parse(input)? {
                return Ok(len);
            }
            self.keep(input)?;
            return Ok(input.len());
        }
        let before = self.head.len();
        self.keep(input)?;
        // As hyper does, a partial head is parsed again only once its end may have come.
        if !ends_head(&self.head, before) {
            return Ok(input.len());
        }
        let head = std::mem::take(&mut self.head);
        match self.parse(&head)? {
            Some(len) => Ok(len - before),
            None => {
                self.head = head;
                Ok(input.len())
            }
        }
    }

    /// Gathers a partial head, up to twice hyper's cap (hyper refuses it before that).
    fn keep(&mut self, input: &[u8]) -> Result<(), ()> {
        if self.head.len() + input.len() > 2 * self.max_head {
            return Err(());
        }
        self.head.extend_from_slice(input);
        Ok(())
    }

    /// Parses a head at the start of `bytes`: its length once complete, with the state of the
    /// body that follows.
    fn parse(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        self.declared = 0;
        self.extensions = 0;
        self.trailers = 0;
        self.trailer_bytes.clear();
        if let Some(len) = bodiless_head(bytes) {
            self.state = State::Head;
            return Ok(Some(len));
        }
        // Uninitialised, as in hyper: the parser writes before anything reads.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_request_with_uninit_headers(&mut req, bytes, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(()),
        };
        self.state = framing(&req)?;
        Ok(Some(len))
    }

    /// One byte of chunked framing.
    fn chunk_byte(&mut self, chunk: Chunk, b: u8) -> Result<State, Verdict> {
        use Chunk::*;
        let next = match (chunk, b) {
            (Start, _) => self.digit(0, b)?,
            (Size(size), b'\t' | b' ') => SizeLws(size),
            (Size(size), b';') | (SizeLws(size), b';') => Extension(size),
            (Size(size), b'\r') | (SizeLws(size), b'\r') | (Extension(size), b'\r') => SizeLf(size),
            (Size(size), _) => self.digit(size, b)?,
            (SizeLws(size), b'\t' | b' ') => SizeLws(size),
            (Extension(_), b'\n') => return Err(Verdict::Invalid),
            (Extension(size), _) => {
                self.extensions += 1;
                if self.extensions >= CHUNK_EXTENSIONS_LIMIT {
                    return Err(Verdict::Invalid);
                }
                Extension(size)
            }
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(size), b'\n') => {
                self.declared += size;
                Data(size)
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            // A trailer byte (an `EndCr` that is not the final CR starts a trailer line).
            (Trailer | TrailerLf | EndCr, _) if !(chunk == EndCr && b == b'\r') => {
                self.trailers += 1;
                if self.trailers >= TRAILERS_LIMIT {
                    return Err(Verdict::Invalid);
                }
                self.trailer_bytes.push(b);
                match (chunk, b) {
                    (Trailer, b'\r') => TrailerLf,
                    (Trailer, _) => Trailer,
                    (TrailerLf, b'\n') => EndCr,
                    (EndCr, _) => Trailer,
                    _ => return Err(Verdict::Invalid),
                }
            }
            (EndCr, b'\r') => EndLf,
            (EndLf, b'\n') if self.trailer_bytes.is_empty() => return Ok(State::Head),
            (EndLf, b'\n') => {
                self.trailer_bytes.extend_from_slice(b"\r\n");
                let valid = valid_trailers(&self.trailer_bytes);
                self.trailer_bytes.clear();
                return if valid {
                    Ok(State::Head)
                } else {
                    Err(Verdict::Invalid)
                };
            }
            _ => return Err(Verdict::Invalid),
        };
        Ok(State::Chunk(next))
    }

    /// A size digit: the size so far, checked against what the body may still declare.
    fn digit(&self, size: u64, b: u8) -> Result<Chunk, Verdict> {
        let value = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Verdict::Invalid),
        };
        let size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(value)))
            .ok_or(Verdict::TooLarge)?;
        if self.declared.saturating_add(size) > self.limit {
            return Err(Verdict::TooLarge);
        }
        Ok(Chunk::Size(size))
    }
}

/// The length of a complete head with no `Content-Length` or `Transfer-Encoding` line, which
/// frames no body: most requests, found by a line scan far cheaper than a second parse. `None`
/// sends the head to the full parse: incomplete, empty lines before it, a line that starts with
/// a blank or with either name in any case. A head this scan passes but hyper refuses does not
/// matter: hyper answers it and reads nothing more.
fn bodiless_head(bytes: &[u8]) -> Option<usize> {
    if matches!(bytes.first(), None | Some(b'\r' | b'\n')) {
        return None;
    }
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        let line = &bytes[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some(end + 1);
        }
        // The request line (start 0) names no header.
        if start > 0 && (line[0] == b' ' || line[0] == b'\t' || names_framing(line)) {
            return None;
        }
        start = end + 1;
    }
    None
}

/// Whether a header line starts with `content-length` or `transfer-encoding`, in any case.
fn names_framing(line: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding"]
        .iter()
        .any(|name| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name))
}

/// Whether `bytes`, of which the first `prev_len` were already scanned, now hold an empty line
/// (hyper's `is_complete_fast`, which decides when a partial head is parsed again).
pub fn ends_head(bytes: &[u8], prev_len: usize) -> bool {
    let bytes = &bytes[prev_len.saturating_sub(3)..];
    bytes.iter().enumerate().any(|(i, &b)| {
        let rest = &bytes[i + 1..];
        (b == b'\r' && rest.starts_with(b"\n\r\n"))
            || (b == b'\n' && (rest.starts_with(b"\n") || rest.starts_with(b"\r\n")))
    })
}

/// Whether a chunked body's trailer section (its lines and the final empty line) parses as
/// header fields, as hyper's `decode_trailers` requires.
fn valid_trailers(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete((_, headers))) => headers.iter().all(|h| {
            http::HeaderName::from_bytes(h.name.as_bytes()).is_ok()
                && http::HeaderValue::from_bytes(h.value).is_ok()
        }),
        _ => false,
    }
}

/// What a byte of chunked framing is, when it is not the next state.
enum Verdict {
    TooLarge,
    Invalid,
}

/// The body framing of a parsed head, as hyper decides it (`proto::h1::role::Server::parse`):
/// `Err` when hyper refuses the head.
fn framing(req: &httparse::Request<'_, '_>) -> Result<State, ()> {
    let http11 = req.version == Some(1);
    let (mut te, mut chunked, mut length) = (false, false, None::<u64>);
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(());
            }
            te = true;
            length = None;
            chunked = ends_chunked(header.value);
        } else if header.name.eq_ignore_ascii_case("content-length") && !te {
            let len = digits(header.value).ok_or(())?;
            if length.is_some_and(|prev| prev != len) {
                return Err(());
            }
            length = Some(len);
        }
    }
    match (te, chunked, length) {
        (true, false, _) => Err(()),
        (true, true, _) => Ok(State::Chunk(Chunk::Start)),
        (false, _, Some(0) | None) => Ok(State::Head),
        (false, _, Some(len)) => Ok(State::Fixed(len)),
    }
}

/// Whether the last of a `Transfer-Encoding` value's codings is `chunked` (hyper's
/// `is_chunked_`, which needs a value of visible ASCII).
pub fn ends_chunked(value: &[u8]) -> bool {
    let visible = value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    visible
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// A `Content-Length` value as hyper reads it: decimal digits only, no sign, no overflow.
pub fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// A connection whose reads go through a [`Watch`].
pub struct Watched<I> {
    inner: I,
    watch: Watch,
    /// Set once the watch stopped: every later read fails with it (too large) or finds the end
    /// of the stream (unframed).
    failed: Option<Stop>,
}

impl<I> Watched<I> {
    pub fn new(inner: I, limit: u64, max_head: usize) -> Self {
        Watched {
            inner,
            watch: Watch::new(limit, max_head),
            failed: None,
        }
    }
}

fn stop_error(stop: Stop, limit: u64) -> io::Error {
    match stop {
        Stop::TooLarge { .. } => {
            io::Error::new(io::ErrorKind::InvalidData, DeclaredTooLarge { limit })
        }
        Stop::Unframed { .. } => io::Error::new(io::ErrorKind::InvalidData, Unframed),
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.failed {
            Some(stop @ Stop::TooLarge { .. }) => {
                return Poll::Ready(Err(stop_error(stop, this.watch.limit)));
            }
            // hyper has refused what it read and is answering: an error now would close the
            // connection before that answer is out. The stream ends here for hyper.
            Some(Stop::Unframed { .. }) => return Poll::Ready(Ok(())),
            None => {}
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Err(stop) = this.watch.feed(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        this.failed = Some(stop);
        let at = match stop {
            Stop::TooLarge { at } | Stop::Unframed { at } => at,
        };
        if at == 0 {
            // Nothing of this read may go on, and an empty read would mean the end.
            buf.set_filled(before);
            return Poll::Ready(Err(stop_error(stop, this.watch.limit)));
        }
        buf.set_filled(before + at);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
