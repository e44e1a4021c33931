//! The read side of a connection, shared by the connection loop (heads) and the request's
//! [`ClientBody`] (its body), which the pipeline polls from the same task. Bodies are read
//! through [`framing::Watch::body_step`]: the grammar of the framing watch in front of hyper,
//! with the same per-digit chunk-size check against `limits.max_request_body`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::proxy::BoxError;
use crate::proxy::framing::{BodyFraming, BodyStep, DeclaredTooLarge, Stop, Unframed, Watch};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 << 10;
/// The interim answer to `Expect: 100-continue`, sent when the body is first read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The connection's read buffer and where its request stream stands.
pub struct Reader {
    stream: Arc<TcpStream>,
    pub buf: BytesMut,
    watch: Watch,
    /// The body can no longer be followed (framing error, client gone): the connection ends
    /// after this exchange.
    pub failed: bool,
    /// Bytes of `100 Continue` still to write before the body is read (0: none owed).
    continue_left: usize,
    /// Counts the requests read on the connection: a body of an earlier one (still held, say,
    /// by an upstream connection task) reads nothing of a later one's bytes.
    pub generation: u64,
    /// The response has started: a `100 Continue` can no longer be sent.
    pub responding: bool,
    /// How much of a partial head was scanned (it is parsed again only once its end may have
    /// come, as hyper does, so a head sent a byte at a time costs no quadratic work).
    pub head_scanned: usize,
    /// Woken when the body ends, for the connection's watch on the client (which only reads
    /// once the body is done), wherever the body is read.
    pub body_watch: Option<Waker>,
}

/// Reads what `stream` has into `buf` (at least [`READ_CHUNK`] of room): the count, 0 at the
/// end of the stream.
pub fn poll_fill(
    stream: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    poll_fill_by(stream, buf, READ_CHUNK, cx)
}

/// [`poll_fill`] with `room` bytes of room (larger for bodies streaming through).
pub fn poll_fill_by(
    stream: &TcpStream,
    buf: &mut BytesMut,
    room: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        buf.reserve(room);
        match read_some(stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return Poll::Ready(done),
        }
    }
}

/// One `recv` into `buf`'s spare room. A read that leaves room unfilled has emptied the
/// socket, and epoll (edge-triggered under tokio) raises a new event when more comes, so the
/// readiness is cleared then, as tokio's own `poll_read` does (`PollEvented::poll_read`; nginx
/// does the same in `ngx_unix_recv`): the next read waits for that event instead of costing a
/// `recv` that says `EAGAIN`. `try_io` clears only the readiness its own snapshot saw (an event
/// that came in meanwhile is kept) and never a close. Edge-triggered readiness is what tokio
/// uses on Linux (epoll) and the BSDs and macOS (kqueue), where tokio does the same; Tollgate
/// runs on Linux.
fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut got = 0;
    let room = buf.capacity() - buf.len();
    let result = stream.try_io(Interest::READABLE, || {
        got = stream.try_read_buf(buf)?;
        if 0 < got && got < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        Err(e) => Err(e),
        Ok(()) => Ok(got),
    }
}

/// The read side, shared between the connection loop and the request body.
pub type Shared = Arc<Mutex<Reader>>;

impl Reader {
    pub fn new(stream: Arc<TcpStream>, body_limit: u64, max_head: usize) -> Shared {
        Arc::new(Mutex::new(Reader {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            watch: Watch::new(body_limit, max_head),
            failed: false,
            continue_left: 0,
            generation: 0,
            responding: false,
            head_scanned: 0,
            body_watch: None,
        }))
    }

    pub fn lock(shared: &Shared) -> MutexGuard<'_, Reader> {
        shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the body of the head just parsed; its generation (see [`ClientBody::new`]).
    pub fn start_body(&mut self, framing: BodyFraming, expect_continue: bool) -> u64 {
        self.generation += 1;
        self.responding = false;
        self.head_scanned = 0;
        self.watch.start_body(framing);
        self.continue_left = if expect_continue && framing != BodyFraming::Empty {
            CONTINUE.len()
        } else {
            0
        };
        self.generation
    }

    /// Whether the current request's body has been read to its end.
    pub fn body_done(&self) -> bool {
        self.watch.body_done() && !self.failed
    }

    /// Reads what the socket has into `buf`: the count, 0 at the end of the stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&self.stream, &mut self.buf, cx)
    }

    /// Discards what has arrived of the current body without waiting for more (hyper's
    /// drain after a response): whether the body has ended, so another request may follow.
    pub fn drain(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !self.body_done() {
            if self.failed || self.continue_left > 0 {
                return false;
            }
            if self.buf.is_empty() {
                match self.poll_fill(&mut cx) {
                    Poll::Ready(Ok(n)) if n > 0 => {}
                    _ => return false,
                }
            }
            match self.watch.body_step(&self.buf) {
                Ok(BodyStep::Data(n) | BodyStep::Framing(n)) => self.buf.advance(n),
                Err(_) => self.failed = true,
            }
        }
        true
    }

    /// Writes what is left of the `100 Continue` (nothing once the response has started, as
    /// hyper: it would land inside the response).
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.responding && self.continue_left == CONTINUE.len() {
            self.continue_left = 0;
        }
        while self.continue_left > 0 {
            ready!(self.stream.poll_write_ready(cx))?;
            let from = CONTINUE.len() - self.continue_left;
            match self.stream.try_write(&CONTINUE[from..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.continue_left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next piece of the body: data, its end (`None`) or why it cannot go on.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        if let Err(e) = ready!(self.poll_continue(cx)) {
            self.failed = true;
            return Poll::Ready(Some(Err(e.into())));
        }
        loop {
            if self.failed {
                return Poll::Ready(Some(Err(Box::new(Unframed))));
            }
            if self.watch.body_done() {
                return Poll::Ready(None);
            }
            if !self.buf.is_empty() {
                match self.watch.body_step(&self.buf) {
                    Ok(BodyStep::Data(n)) => {
                        return Poll::Ready(Some(Ok(self.buf.split_to(n).freeze())));
                    }
                    Ok(BodyStep::Framing(n)) => {
                        self.buf.advance(n);
                        continue;
                    }
                    Err(stop) => {
                        self.failed = true;
                        let err: BoxError = match stop {
                            Stop::TooLarge { .. } => Box::new(DeclaredTooLarge {
                                limit: self.watch.limit(),
                            }),
                            Stop::Unframed { .. } => Box::new(Unframed),
                        };
                        return Poll::Ready(Some(Err(err)));
                    }
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(n) if n > 0 => {}
                Ok(_) => {
                    self.failed = true;
                    let eof = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection before the body ended",
                    );
                    return Poll::Ready(Some(Err(eof.into())));
                }
                Err(e) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

/// A request body read from the connection as the pipeline polls it.
pub struct ClientBody {
    reader: Shared,
    /// The request this body belongs to ([`Reader::start_body`]).
    generation: u64,
    /// Whether the body has ended (or failed).
    end: bool,
    /// Body bytes still to come, when known.
    left: Option<u64>,
}

impl ClientBody {
    /// The body of the request `generation` on the connection `reader` reads.
    pub fn new(reader: Shared, generation: u64, framing: BodyFraming) -> Self {
        let (end, left) = match framing {
            BodyFraming::Empty => (true, Some(0)),
            BodyFraming::Fixed(len) => (false, Some(len)),
            BodyFraming::Chunked => (false, None),
        };
        ClientBody {
            reader,
            generation,
            end,
            left,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.end {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let mut reader = Reader::lock(&this.reader);
        if reader.generation != this.generation {
            // The connection has moved on to another request: this body was abandoned unread.
            this.end = true;
            return Poll::Ready(Some(Err(Box::new(Unframed))));
        }
        let piece = ready!(reader.poll_piece(cx));
        this.left = reader.watch.body_left();
        this.end = !matches!(piece, Some(Ok(_))) || reader.watch.body_done();
        let watch = if this.end {
            reader.body_watch.take()
        } else {
            None
        };
        drop(reader);
        if let Some(waker) = watch {
            waker.wake();
        }
        Poll::Ready(piece.map(|p| p.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.end
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    /// A connection's server side, and the client side to write requests on.
    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(server), client)
    }

    #[tokio::test]
    async fn a_body_reads_its_own_bytes_then_ends() {
        let (server, mut client) = pair().await;
        let reader = Reader::new(server, 1 << 20, 8192);
        let generation = Reader::lock(&reader).start_body(BodyFraming::Chunked, false);
        let body = ClientBody::new(reader.clone(), generation, BodyFraming::Chunked);
        client
            .write_all(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\nGET /next HTTP/1.1\r\n")
            .await
            .unwrap();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcde");
        // The next request's bytes stay for the connection.
        assert_eq!(&Reader::lock(&reader).buf[..], b"GET /next HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_body_left_over_from_an_earlier_request_reads_nothing_of_the_next() {
        let (server, mut client) = pair().await;
        let reader = Reader::new(server, 1 << 20, 8192);
        let first = Reader::lock(&reader).start_body(BodyFraming::Fixed(10), false);
        let mut stale = ClientBody::new(reader.clone(), first, BodyFraming::Fixed(10));
        // The connection gave up on the first body and went on to the next request.
        Reader::lock(&reader).start_body(BodyFraming::Fixed(5), false);
        client.write_all(b"hello").await.unwrap();
        let got = stale.frame().await.expect("an answer");
        assert!(got.is_err(), "the stale body read {got:?}");
        assert!(stale.frame().await.is_none());
    }

    #[tokio::test]
    async fn chunk_sizes_past_the_limit_fail_before_their_data() {
        let (server, mut client) = pair().await;
        let reader = Reader::new(server, 100, 8192);
        let generation = Reader::lock(&reader).start_body(BodyFraming::Chunked, false);
        let mut body = ClientBody::new(reader.clone(), generation, BodyFraming::Chunked);
        // 0x50 = 80 bytes fit; the next size passes 100 at its second digit (80 + 0x65).
        let mut stream = b"50\r\n".to_vec();
        stream.extend_from_slice(&[b'x'; 80]);
        stream.extend_from_slice(b"\r\n65\r\n");
        client.write_all(&stream).await.unwrap();
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => {}
                Some(Err(err)) => break err,
                None => panic!("the body ended"),
            }
        };
        assert!(err.is::<DeclaredTooLarge>(), "{err}");
        assert!(!Reader::lock(&reader).body_done());
    }
}
