//! TLS termination for the proxy listener (rustls, PEM files from config).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::model::TlsFiles;

/// Errors loading the certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no certificate found")]
    NoCert(String),
    #[error("{0}: no private key found")]
    NoKey(String),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds an acceptor that offers HTTP/2 and HTTP/1.1 via ALPN.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = rustls_pemfile::certs(&mut reader(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| read_err(&files.cert, source))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(files.cert.display().to_string()));
    }
    let key = rustls_pemfile::private_key(&mut reader(&files.key)?)
        .map_err(|source| read_err(&files.key, source))?
        .ok_or_else(|| TlsError::NoKey(files.key.display().to_string()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn reader(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| read_err(path, source))
}

fn read_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Read {
        path: path.display().to_string(),
        source,
    }
}
