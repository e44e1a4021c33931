//! The accept loop shared by both listeners: TCP (optionally TLS), HTTP/1.1 and HTTP/2 (h2c by
//! prior knowledge, h2 by ALPN) with hyper, hardened against idle and slow clients, and drained
//! on shutdown.
//!
//! Hardening: at most `limits.max_connections` connections; the protocol is chosen from the
//! first bytes within `header_read_timeout` (so a silent connection cannot sit in detection
//! forever); HTTP/1 headers must arrive within `header_read_timeout`; HTTP/2 connections are
//! pinged and closed when the peer stops answering, and every HTTP/2 limit (streams, resets,
//! windows, frame and buffer sizes, header list) is set below with its reason; HTTP/1 reads go
//! through the framing watch (`proxy::framing`), which refuses chunk sizes past
//! `limits.max_request_body`; a connection whose response has waited on the client past
//! `limits.send_timeout` is closed (`proxy::stall`). On shutdown, connections get
//! `limits.shutdown_grace` to finish, then are aborted.

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::model::Limits;
use crate::proxy::framing::Watched;
use crate::proxy::stall::Stalls;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive ping interval and the time allowed for its answer.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// HTTP/2 limits, set here rather than left to the library's defaults (hyper 1.x's are noted):
/// streams open at once per connection (hyper: 200). A client needs few; each open stream
/// can hold a concurrency slot, a body and an upstream connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams a client may open and reset before the server has accepted them (rapid reset,
/// CVE-2023-44487): beyond this the connection is closed (hyper: 20).
const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset for protocol errors before it closes the connection (hyper:
/// 1024).
const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// Flow-control windows: what a client may send before the server reads (hyper: 1 MiB each).
/// The connection window bounds the memory one connection's unread uploads can take.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 2 << 20;
/// Largest frame the server accepts (the protocol's minimum and hyper's default, 16 KiB).
const H2_MAX_FRAME_SIZE: u32 = 16 << 10;
/// Most response bytes buffered per stream for a client that does not read (hyper: 400 KiB):
/// a window that never opens costs at most this per stream.
const H2_MAX_SEND_BUF: usize = 256 << 10;
/// The HTTP/2 connection preface a prior-knowledge (h2c) client starts with.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves a cleartext HTTP/1 connection without hyper (the proxy's own server, `proxy::h1`):
/// given the socket, the peer and the connection's stall watch.
pub type OwnHttp1 = Arc<
    dyn Fn(TcpStream, SocketAddr, Arc<Stalls>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Accepts connections until `shutdown` turns true, serving each with the service `make`
/// builds for its peer, or cleartext HTTP/1 with `own` when given; then drains (see the module
/// doc).
pub async fn serve<M, S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    make: M,
    own: Option<OwnHttp1>,
) where
    M: Fn(SocketAddr, &Arc<Stalls>) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = builder(&limits);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        // The connection's stall watch, shared with the service for its response bodies.
        let stalls = Stalls::new();
        let service = make(peer, &stalls);
        let conn = Conn {
            builder: builder.clone(),
            watcher: graceful.watcher(),
            detect_timeout: limits.header_read_timeout,
            max_body: limits.max_request_body.get(),
            max_head: h1_max_buf(&limits),
            own: own.clone().map(|serve| (serve, stalls.clone())),
        };
        let tls = tls.clone();
        let serving = conns.spawn(async move {
            match tls {
                None => conn.serve_tcp(stream, peer, service).await,
                Some(acceptor) => conn.serve_tls(acceptor, stream, peer, service).await,
            }
            drop(permit);
        });
        // The stall watch runs beside the connection, not in its task: polled there, it
        // would cost every wake-up of the connection.
        let stalled = Stalls::watch(Arc::downgrade(&stalls), limits.send_timeout);
        drop(stalls);
        tokio::spawn(async move {
            if stalled.await {
                tracing::info!(%peer, "a response waited on the client past limits.send_timeout; connection closed");
                serving.abort();
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(h1_max_buf(limits));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME_SIZE)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .keep_alive_interval(Some(H2_KEEPALIVE))
        .keep_alive_timeout(H2_KEEPALIVE);
    builder
}

/// hyper's HTTP/1 read buffer cap, which bounds a request head (also for the own server).
pub fn h1_max_buf(limits: &Limits) -> usize {
    limits.max_header_bytes.max(8192)
}

struct Conn {
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
    detect_timeout: Duration,
    /// The body limit the framing watch holds chunk sizes to.
    max_body: u64,
    /// hyper's HTTP/1 read buffer cap (the longest head it accepts).
    max_head: usize,
    /// The own server for cleartext HTTP/1, with the connection's stall watch.
    own: Option<(OwnHttp1, Arc<Stalls>)>,
}

impl Conn {
    /// An HTTP/1 connection's stream behind the framing watch (`proxy::framing`).
    fn watched<I>(&self, io: I) -> Watched<I> {
        Watched::new(io, self.max_body, self.max_head)
    }

    async fn serve_tcp<S, B>(self, stream: TcpStream, peer: SocketAddr, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match tokio::time::timeout(self.detect_timeout, sniff_h2(&stream)).await {
            Ok(Ok(Some(true))) => self.serve(TokioIo::new(stream), peer, service, true).await,
            Ok(Ok(Some(false))) if self.own.is_some() => {
                // Counted by the graceful shutdown until the connection ends.
                let _watcher = self.watcher;
                if let Some((serve, stalls)) = self.own {
                    serve(stream, peer, stalls).await;
                }
            }
            Ok(Ok(Some(false))) => {
                let watched = self.watched(stream);
                self.serve(TokioIo::new(watched), peer, service, false)
                    .await
            }
            // Closed, failed or silent past the header timeout.
            _ => {}
        }
    }

    async fn serve_tls<S, B>(
        self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        service: S,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                self.serve(TokioIo::new(tls), peer, service, true).await
            }
            Ok(Ok(tls)) => {
                let watched = self.watched(tls);
                self.serve(TokioIo::new(watched), peer, service, false)
                    .await
            }
            Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve<I, S, B>(self, io: TokioIo<I>, peer: SocketAddr, service: S, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let builder = if h2 {
            self.builder.http2_only()
        } else {
            self.builder.http1_only()
        };
        let conn = builder.serve_connection(io, service).into_owned();
        if let Err(err) = self.watcher.watch(conn).await {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    }
}

/// Whether the client opens with the HTTP/2 preface (`Some(true)`), with anything else
/// (`Some(false)`), or closes first (`None`). Reads nothing: the bytes stay for hyper.
async fn sniff_h2(stream: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        // A partial preface: the rest is on its way (the caller's timeout bounds the wait).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
