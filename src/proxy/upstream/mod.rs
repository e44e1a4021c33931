//! The upstream client and the translation of transport failures into denials.
//!
//! A cleartext `http://` upstream (the sidecar case) is reached through Tollgate's own
//! HTTP/1.1 client ([`own::OwnPool`], `listen.http1 = "tollgate"`) or hyper's ([`h1::H1Pool`]);
//! either way its connections are driven by the request's own task. An `https://` upstream goes through
//! hyper-util's pooled client (HTTP/1.1, or HTTP/2 when the upstream offers it via ALPN), where
//! the TLS work dwarfs the cost of its connection tasks.

mod call;
mod h1;
mod idle;
mod own;
mod response_head;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::model::{self, TlsRoots};
use crate::domain::decision::{Denial, DenyCode};
use crate::metrics::UpstreamErrorKind;
use crate::proxy::ProxyBody;

pub use call::Upstream;
pub use h1::PooledBody;
pub use own::OwnBody;

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot load the system's root certificates: {0}")]
    NativeRoots(String),
    #[error("upstream.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("upstream URL has no host")]
    NoHost,
}

/// Why an exchange with the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(std::io::Error),
    #[error("connecting to the upstream took longer than upstream.connect_timeout")]
    ConnectTimeout,
    #[error("the upstream closed the connection before answering")]
    Closed,
    #[error(transparent)]
    Http(hyper::Error),
    #[error(transparent)]
    Tls(hyper_util::client::legacy::Error),
    /// The own HTTP/1.1 client's transport failed.
    #[error("upstream connection: {0}")]
    Io(std::io::Error),
    /// The upstream's answer broke HTTP/1.1.
    #[error("the upstream's response is not valid HTTP/1.1: {0}")]
    Protocol(&'static str),
}

/// Why an upstream response body failed, from either client.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SendError {
    /// Whether no connection could be made (the upstream is down or unreachable).
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::ConnectTimeout => true,
            SendError::Tls(err) => err.is_connect(),
            SendError::Closed | SendError::Http(_) | SendError::Io(_) | SendError::Protocol(_) => {
                false
            }
        }
    }
}

/// How requests reach the upstream.
#[derive(Clone)]
enum Transport {
    /// Tollgate's own HTTP/1.1 client (`listen.http1 = "tollgate"`).
    Own(Arc<own::OwnPool>),
    /// hyper's HTTP/1.1 client (`listen.http1 = "hyper"`).
    Plain(Arc<h1::H1Pool>),
    Tls(Box<Client<HttpsConnector<HttpConnector>, ProxyBody>>),
}

/// A client bound to one upstream base URL.
#[derive(Clone)]
pub struct UpstreamClient {
    transport: Transport,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing `/` (empty for the root).
    base_path: String,
}

impl UpstreamClient {
    /// Builds the connection pool from the `[upstream]` settings; a cleartext upstream is
    /// reached with Tollgate's own HTTP/1.1 client when `own_http1`, else with hyper's.
    pub fn new(cfg: &model::Upstream, own_http1: bool) -> Result<Self, UpstreamError> {
        let host = cfg.url.host_str().ok_or(UpstreamError::NoHost)?;
        let https = cfg.url.scheme() == "https";
        let port = cfg.url.port_or_known_default().unwrap_or(80);
        let authority = match cfg.url.port() {
            Some(port) => format!("{}:{port}", bracket(host)),
            None => bracket(host),
        };
        let transport = if https {
            Transport::Tls(Box::new(tls_client(cfg)?))
        } else {
            let host_header =
                HeaderValue::from_str(&authority).map_err(|_| UpstreamError::NoHost)?;
            let addr = format!("{}:{port}", bracket(host));
            let (connect, idle, max_idle) = (
                cfg.connect_timeout,
                cfg.pool_idle_timeout,
                cfg.pool_max_idle_per_host,
            );
            if own_http1 {
                Transport::Own(Arc::new(own::OwnPool::new(
                    addr,
                    host_header,
                    connect,
                    idle,
                    max_idle,
                )))
            } else {
                Transport::Plain(Arc::new(h1::H1Pool::new(
                    addr,
                    host_header,
                    connect,
                    idle,
                    max_idle,
                )))
            }
        };
        Ok(UpstreamClient {
            transport,
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            authority: authority.parse().map_err(|_| UpstreamError::NoHost)?,
            base_path: cfg.url.path().trim_end_matches('/').to_string(),
        })
    }

    /// The absolute upstream URI for a normalised path and the original query.
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Option<Uri> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq).ok()?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// [`uri_for`](Self::uri_for) the request whose URI is `original` and whose normalised path
    /// is `path`. When the upstream sits at its root and normalising changed nothing (the usual
    /// case), the request's own path and query are shared rather than copied and parsed again.
    pub fn uri_for_request(&self, path: &str, original: &Uri) -> Option<Uri> {
        match original.path_and_query() {
            // `path()` says `/` for a target with no path (`http://host?q`); the bytes of such a
            // target are not a path, so it takes the general way, which writes the `/`.
            Some(pq)
                if self.base_path.is_empty()
                    && pq.as_str().starts_with('/')
                    && pq.path() == path =>
            {
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(self.scheme.clone());
                parts.authority = Some(self.authority.clone());
                parts.path_and_query = Some(pq.clone());
                Uri::from_parts(parts).ok()
            }
            _ => self.uri_for(path, original.query()),
        }
    }

    /// Sends a request; the caller applies the response timeout.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<UpstreamBody>, SendError> {
        match &self.transport {
            Transport::Own(pool) => Ok(pool.send(req).await?.map(UpstreamBody::Own)),
            Transport::Plain(pool) => Ok(pool.send(req).await?.map(UpstreamBody::Pooled)),
            Transport::Tls(client) => client
                .request(req)
                .await
                .map(|resp| resp.map(UpstreamBody::Shared))
                .map_err(SendError::Tls),
        }
    }

    /// Closes idle pooled connections past `upstream.pool_idle_timeout` (called periodically).
    pub fn reap_idle(&self) {
        match &self.transport {
            Transport::Own(pool) => pool.reap(),
            Transport::Plain(pool) => pool.reap(),
            Transport::Tls(_) => {}
        }
    }

    /// How many idle connections wait in the cleartext pool (0 for an HTTPS upstream).
    pub fn idle_connections(&self) -> usize {
        match &self.transport {
            Transport::Own(pool) => pool.idle_count(),
            Transport::Plain(pool) => pool.idle_count(),
            Transport::Tls(_) => 0,
        }
    }
}

/// An upstream response body, from either transport.
pub enum UpstreamBody {
    Own(OwnBody),
    Pooled(PooledBody),
    Shared(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Own(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Io),
            UpstreamBody::Pooled(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Hyper),
            UpstreamBody::Shared(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Hyper),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Own(body) => body.is_end_stream(),
            UpstreamBody::Pooled(body) => body.is_end_stream(),
            UpstreamBody::Shared(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Own(body) => body.size_hint(),
            UpstreamBody::Pooled(body) => body.size_hint(),
            UpstreamBody::Shared(body) => body.size_hint(),
        }
    }
}

/// TCP keep-alive on cleartext upstream connections.
const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// A TCP connection to a cleartext upstream within `timeout`, without Nagle, with keep-alive
/// (either HTTP/1.1 client's).
async fn connect_tcp(
    addr: &str,
    timeout: std::time::Duration,
) -> Result<tokio::net::TcpStream, SendError> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| SendError::ConnectTimeout)?
        .map_err(SendError::Connect)?;
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// hyper-util's pooled client over rustls, for an `https://` upstream.
fn tls_client(
    cfg: &model::Upstream,
) -> Result<Client<HttpsConnector<HttpConnector>, ProxyBody>, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(cfg)?)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// The configured roots plus the operator's own CA, if any.
fn root_store(cfg: &model::Upstream) -> Result<rustls::RootCertStore, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    match cfg.tls_roots {
        TlsRoots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TlsRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(UpstreamError::NativeRoots(errors.join("; ")));
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    if let Some(path) = &cfg.ca_file {
        let ca_err = |reason: String| UpstreamError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no certificate found".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    Ok(roots)
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Maps a failed exchange to the denial sent to the client and the metric kind.
pub fn classify(err: &SendError) -> (Denial, UpstreamErrorKind) {
    if err.is_connect() {
        return (
            Denial::new(DenyCode::UpstreamUnavailable),
            UpstreamErrorKind::Connect,
        );
    }
    (
        Denial::new(DenyCode::UpstreamUnavailable),
        UpstreamErrorKind::Other,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> UpstreamClient {
        let text = format!("[upstream]\nurl = \"{url}\"\n");
        let cfg = crate::config::parse(&text, &|_| None).unwrap();
        UpstreamClient::new(&cfg.upstream, true).unwrap()
    }

    #[test]
    fn a_request_uri_maps_as_its_normalised_path_does() {
        let cases = [
            ("/small", "/small"),
            ("/a/b?x=1&y", "/a/b"),
            ("/a/./b/../c?q", "/a/c"),
            ("http://gw.example/p?q=2", "/p"),
            ("/", "/"),
            ("http://gw.example?q=1", "/"),
            ("http://gw.example", "/"),
            ("/?", "/"),
        ];
        for base in ["http://127.0.0.1:5001", "http://up.example/v1/"] {
            let up = client(base);
            for (sent, normalised) in cases {
                let original: Uri = sent.parse().unwrap();
                // `Uri`'s `==` and `Display` go through `path()`, which makes up a `/`, and so
                // does `PathAndQuery`'s `Display`: compare the bytes the upstream is sent.
                let target =
                    |uri: Option<Uri>| uri.unwrap().path_and_query().unwrap().as_str().to_string();
                assert_eq!(
                    target(up.uri_for_request(normalised, &original)),
                    target(up.uri_for(normalised, original.query())),
                    "{base} {sent}"
                );
            }
        }
        let up = client("http://127.0.0.1:5001");
        let mapped = up.uri_for_request("/a/c", &"/a/./b/../c?q".parse().unwrap());
        assert_eq!(mapped.unwrap().to_string(), "http://127.0.0.1:5001/a/c?q");
    }
}
