//! The pooled upstream client (HTTP/1.1, and HTTP/2 when an HTTPS upstream offers it via ALPN)
//! and the translation of transport failures into denials.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::model::{TlsRoots, Upstream};
use crate::domain::decision::{Denial, DenyCode};
use crate::metrics::UpstreamErrorKind;
use crate::proxy::ProxyBody;

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

/// A pooled client bound to one upstream base URL.
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing `/` (empty for the root).
    base_path: String,
}

impl UpstreamClient {
    /// Builds the connector and pool from the `[upstream]` settings.
    pub fn new(cfg: &Upstream) -> Result<Self, UpstreamError> {
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
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let host = cfg.url.host_str().ok_or(UpstreamError::NoHost)?;
        let authority = match cfg.url.port() {
            Some(port) => format!("{}:{port}", bracket(host)),
            None => bracket(host),
        };
        Ok(UpstreamClient {
            client,
            scheme: if cfg.url.scheme() == "https" {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            },
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

    /// Sends a request; the caller applies the response timeout.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
    }
}

/// The configured roots plus the operator's own CA, if any.
fn root_store(cfg: &Upstream) -> Result<rustls::RootCertStore, UpstreamError> {
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
pub fn classify(err: &hyper_util::client::legacy::Error) -> (Denial, UpstreamErrorKind) {
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
