//! The built-in echo upstream used by `tollgate demo` and the tests. It answers every request
//! with JSON describing what it received: method, HTTP version, path, query, headers and body
//! size. The body is counted as it streams, never buffered.
//!
//! Query parameters change its answer, for tests: `echo_bytes=N` streams N bytes of `x` instead
//! of JSON, `echo_status=NNN` sets the status, `echo_delay_ms=N` waits before answering.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::{BoxError, ProxyBody};

const CHUNK: usize = 64 * 1024;

/// A running echo server; stops when dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

/// Starts an echo server on `addr` (port 0 for an ephemeral port).
pub async fn spawn(addr: SocketAddr) -> std::io::Result<EchoServer> {
    spawn_with_tls(addr, None).await
}

/// Starts an echo server that speaks TLS (h2 or HTTP/1.1 by ALPN) when `tls` is given.
pub async fn spawn_with_tls(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<EchoServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        let builder = Builder::new(TokioExecutor::new());
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = stopped.changed() => break,
            };
            let (builder, tls) = (builder.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => {
                        let io = TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service_fn(echo)).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let io = TokioIo::new(stream);
                            let _ = builder.serve_connection(io, service_fn(echo)).await;
                        }
                    }
                }
            });
        }
    });
    Ok(EchoServer { addr, _stop: stop })
}

fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn echo(req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(ms) = param(&query, "echo_delay_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = param(&query, "echo_status")
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let (parts, mut body) = req.into_parts();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let mut resp = match param(&query, "echo_bytes") {
        Some(n) => Response::new(stream_bytes(n)),
        None => {
            let headers: BTreeMap<String, String> = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let json = serde_json::json!({
                "method": parts.method.as_str(),
                "version": format!("{:?}", parts.version),
                "path": parts.uri.path(),
                "query": query,
                "headers": headers,
                "body_bytes": body_bytes,
            });
            let mut resp = Response::new(full(json.to_string()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                "application/json".parse().expect("static"),
            );
            resp
        }
    };
    *resp.status_mut() = status;
    Ok(resp)
}

fn full(text: String) -> ProxyBody {
    http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

/// A body of `n` bytes of `x`, produced chunk by chunk.
fn stream_bytes(n: u64) -> ProxyBody {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_stream(n, chunk);
    StreamBody::new(stream).boxed()
}

fn futures_stream(
    total: u64,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + Sync {
    let mut left = total;
    futures_util::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = left.min(chunk.len() as u64) as usize;
        left -= n as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))))
    })
}
